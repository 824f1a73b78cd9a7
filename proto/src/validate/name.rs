//! Host names: [`Hostname`], lowercase ASCII with punycode A-labels checked
//! to round-trip, so no name that a provider or a DNS server would refuse or
//! show as garbage gets past the edge.

use std::fmt;

use super::{FieldError, MAX_LABEL_LEN, MAX_NAME_LEN, reject_control};

/// A fully qualified DNS name: lowercase ASCII (punycode for Unicode names),
/// no trailing dot, labels of 1 to 63 octets of letters, digits, `-` and `_`,
/// an optional leading `*` label, at most 253 octets in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(pub(super) String);

impl Hostname {
    /// Validates and normalises `s` for `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        Self::parse_inner(field, s, true)
    }

    /// Like [`Hostname::parse`], but refuses a wildcard label: for targets of
    /// CNAME, MX, NS and SRV records.
    pub fn parse_target(field: &str, s: &str) -> Result<Self, FieldError> {
        Self::parse_inner(field, s, false)
    }

    fn parse_inner(field: &str, s: &str, allow_wildcard: bool) -> Result<Self, FieldError> {
        reject_control(field, s)?;
        if s.chars().any(char::is_whitespace) {
            return Err(FieldError::new(field, "must not contain whitespace"));
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if trimmed.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            // Convert each label on its own so `_` and `*` labels survive.
            let mut labels = Vec::new();
            for label in trimmed.split('.') {
                if label.is_ascii() {
                    labels.push(label.to_ascii_lowercase());
                } else {
                    let converted = idna::domain_to_ascii(label).map_err(|_| {
                        FieldError::new(
                            field,
                            format!("{s:?} is not a valid internationalised name"),
                        )
                    })?;
                    labels.push(converted);
                }
            }
            labels.join(".")
        };
        if ascii.len() > MAX_NAME_LEN {
            return Err(FieldError::new(
                field,
                format!(
                    "name is {} octets long; at most {MAX_NAME_LEN} allowed",
                    ascii.len()
                ),
            ));
        }
        for (i, label) in ascii.split('.').enumerate() {
            if label.is_empty() {
                return Err(FieldError::new(field, format!("{s:?} has an empty label")));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(FieldError::new(
                    field,
                    format!(
                        "label {label:?} is {} octets long; at most {MAX_LABEL_LEN} allowed",
                        label.len()
                    ),
                ));
            }
            if label == "*" {
                if i == 0 && allow_wildcard {
                    continue;
                }
                return Err(FieldError::new(
                    field,
                    if allow_wildcard {
                        "a wildcard `*` is only allowed as the first label"
                    } else {
                        "a target name must not be a wildcard"
                    },
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(FieldError::new(
                    field,
                    format!(
                        "label {label:?} contains {c:?}; only letters, digits, '-' and '_' are allowed"
                    ),
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(FieldError::new(
                    field,
                    format!("label {label:?} must not start or end with '-'"),
                ));
            }
            if label.starts_with("xn--") && !is_valid_a_label(label) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "label {label:?} starts with \"xn--\" but is not a valid internationalised (punycode) label"
                    ),
                ));
            }
        }
        Ok(Hostname(ascii))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this name is `zone` itself or lies below it.
    pub fn is_in_zone(&self, zone: &Hostname) -> bool {
        self.0 == zone.0
            || (self.0.len() > zone.0.len()
                && self.0.ends_with(zone.as_str())
                && self.0.as_bytes()[self.0.len() - zone.0.len() - 1] == b'.')
    }

    /// Refuses this name for `field` unless it lies in `zone`.
    pub fn require_in_zone(&self, field: &str, zone: &Hostname) -> Result<(), FieldError> {
        if self.is_in_zone(zone) {
            Ok(())
        } else {
            Err(FieldError::new(
                field,
                format!("{} is outside the zone {}", self.0, zone.0),
            ))
        }
    }
}

/// Whether an `xn--` label (lowercase) is an A-label: valid punycode that
/// decodes to a valid IDNA name and encodes back to exactly this label. A
/// provider or a DNS server would refuse the others, or show them as garbage.
fn is_valid_a_label(label: &str) -> bool {
    let (unicode, decoded) = idna::domain_to_unicode(label);
    decoded.is_ok()
        && unicode != label
        && idna::domain_to_ascii(&unicode).is_ok_and(|back| back == label)
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::zone;

    #[test]
    fn hostnames_are_normalised() {
        let h = Hostname::parse("n", "WWW.Example.COM.").unwrap();
        assert_eq!(h.as_str(), "www.example.com");
        let h = Hostname::parse("n", "bücher.example.com").unwrap();
        assert_eq!(h.as_str(), "xn--bcher-kva.example.com");
        let h = Hostname::parse("n", "*.example.com").unwrap();
        assert_eq!(h.as_str(), "*.example.com");
        let h = Hostname::parse("n", "_dmarc.example.com").unwrap();
        assert!(h.is_in_zone(&zone()));
        assert!(
            !Hostname::parse("n", "badexample.com")
                .unwrap()
                .is_in_zone(&zone())
        );
        assert!(zone().is_in_zone(&zone()));
    }
}
