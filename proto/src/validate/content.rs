//! Record types and their content: [`RecordType`], the canonical content of
//! each type ([`parse_content`]), priorities, and comparing a provider's form
//! of a content with the canonical one ([`same_content`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::{FieldError, Hostname, MAX_TXT_LEN, reject_control};

/// A DNS record type this project manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Alias to another name.
    Cname,
    /// Free text.
    Txt,
    /// Mail exchanger, with a priority.
    Mx,
    /// Service location, with a priority.
    Srv,
    /// Certification authority authorisation.
    Caa,
    /// Delegation to a name server.
    Ns,
}

impl RecordType {
    /// Every supported type, in a fixed order.
    pub const ALL: [RecordType; 8] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Txt,
        RecordType::Mx,
        RecordType::Srv,
        RecordType::Caa,
        RecordType::Ns,
    ];

    /// The uppercase name used on the wire and at providers.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Mx => "MX",
            RecordType::Srv => "SRV",
            RecordType::Caa => "CAA",
            RecordType::Ns => "NS",
        }
    }

    /// Whether records of this type carry a priority (MX, SRV).
    pub fn has_priority(self) -> bool {
        matches!(self, RecordType::Mx | RecordType::Srv)
    }

    /// Whether a provider can proxy records of this type (Cloudflare: A, AAAA, CNAME).
    pub fn proxiable(self) -> bool {
        matches!(self, RecordType::A | RecordType::Aaaa | RecordType::Cname)
    }

    /// Parses a type name (case-insensitive) for `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        reject_control(field, s)?;
        s.parse().map_err(|()| {
            FieldError::new(
                field,
                format!(
                    "unsupported record type {s:?}; expected one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS"
                ),
            )
        })
    }
}

impl FromStr for RecordType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validates `content` for a record of type `rtype` and returns its canonical
/// presentation form (addresses compressed, names lowercase without the dot).
pub fn parse_content(field: &str, rtype: RecordType, content: &str) -> Result<String, FieldError> {
    reject_control(field, content)?;
    if content.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    match rtype {
        RecordType::A => Ipv4Addr::from_str(content)
            .map(|a| a.to_string())
            .map_err(|_| FieldError::new(field, format!("{content:?} is not an IPv4 address"))),
        RecordType::Aaaa => Ipv6Addr::from_str(content)
            .map(|a| a.to_string())
            .map_err(|_| FieldError::new(field, format!("{content:?} is not an IPv6 address"))),
        // The null MX of RFC 7505: "this name accepts no mail" (priority 0,
        // checked with the priority by `check_null_mx`).
        RecordType::Mx if content == "." => Ok(".".to_string()),
        RecordType::Cname | RecordType::Ns | RecordType::Mx => {
            reject_ip_target(field, rtype, content)?;
            Hostname::parse_target(field, content).map(|h| h.0)
        }
        RecordType::Txt => {
            if content.len() > MAX_TXT_LEN {
                return Err(FieldError::new(
                    field,
                    format!(
                        "TXT content is {} bytes; at most {MAX_TXT_LEN} allowed",
                        content.len()
                    ),
                ));
            }
            Ok(content.to_string())
        }
        RecordType::Srv => parse_srv(field, content),
        RecordType::Caa => parse_caa(field, content),
    }
}

/// Refuses an IP address where a record points to a name (CNAME, MX, NS and
/// SRV targets): `192.0.2.1` parses as a name of digit labels, which no
/// resolver would take as the address it looks like.
fn reject_ip_target(field: &str, rtype: RecordType, target: &str) -> Result<(), FieldError> {
    let bare = target.strip_suffix('.').unwrap_or(target);
    if bare.parse::<IpAddr>().is_ok() {
        return Err(FieldError::new(
            field,
            format!(
                "{target:?} is an IP address; a {rtype} record points to a host name (use an A or AAAA record for an address)"
            ),
        ));
    }
    Ok(())
}

/// Refuses a null MX (content ".", RFC 7505) with a priority other than 0.
pub fn check_null_mx(
    field: &str,
    rtype: RecordType,
    content: &str,
    priority: Option<u16>,
) -> Result<(), FieldError> {
    if rtype == RecordType::Mx && content == "." && priority != Some(0) {
        return Err(FieldError::new(
            field,
            "a null MX (content \".\", RFC 7505) must have priority 0",
        ));
    }
    Ok(())
}

fn parse_u16(field: &str, what: &str, s: &str) -> Result<u16, FieldError> {
    s.parse::<u16>().map_err(|_| {
        FieldError::new(
            field,
            format!("SRV {what} {s:?} is not a number from 0 to 65535"),
        )
    })
}

/// SRV content is `weight port target` (the priority is its own field).
fn parse_srv(field: &str, content: &str) -> Result<String, FieldError> {
    let parts: Vec<&str> = content.split_ascii_whitespace().collect();
    let [weight, port, target] = parts.as_slice() else {
        return Err(FieldError::new(
            field,
            "SRV content must be \"weight port target\" (the priority goes in its own field)",
        ));
    };
    let weight = parse_u16(field, "weight", weight)?;
    let port = parse_u16(field, "port", port)?;
    let target = if *target == "." {
        ".".to_string()
    } else {
        reject_ip_target(field, RecordType::Srv, target)?;
        Hostname::parse_target(field, target)?.0
    };
    Ok(format!("{weight} {port} {target}"))
}

/// CAA content is `flags tag value`, e.g. `0 issue "letsencrypt.org"`.
fn parse_caa(field: &str, content: &str) -> Result<String, FieldError> {
    let mut it = content.splitn(3, ' ');
    let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
        return Err(FieldError::new(
            field,
            "CAA content must be \"flags tag value\", e.g. 0 issue \"letsencrypt.org\"",
        ));
    };
    let flags: u8 = flags.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("CAA flags {flags:?} is not a number from 0 to 255"),
        )
    })?;
    let tag = tag.to_ascii_lowercase();
    if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(FieldError::new(
            field,
            format!(
                "CAA tag {tag:?} must be 1 to 15 letters or digits (issue, issuewild, iodef...)"
            ),
        ));
    }
    let value = value.trim();
    let inner = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner,
        None => value,
    };
    if inner.contains('"') || inner.contains('\\') {
        return Err(FieldError::new(
            field,
            "CAA value must not contain '\"' or '\\'",
        ));
    }
    if inner.is_empty() && tag != "issue" && tag != "issuewild" {
        return Err(FieldError::new(field, "CAA value must not be empty"));
    }
    Ok(format!("{flags} {tag} \"{inner}\""))
}

/// Validates the priority against the type: required for MX and SRV, refused otherwise.
pub fn parse_priority(
    field: &str,
    rtype: RecordType,
    priority: Option<u32>,
) -> Result<Option<u16>, FieldError> {
    match (rtype.has_priority(), priority) {
        (true, Some(p)) => u16::try_from(p).map(Some).map_err(|_| {
            FieldError::new(field, format!("priority {p} is out of range 0 to 65535"))
        }),
        (true, None) => Err(FieldError::new(
            field,
            format!("{rtype} records need a priority"),
        )),
        (false, Some(_)) => Err(FieldError::new(
            field,
            format!("{rtype} records have no priority"),
        )),
        (false, None) => Ok(None),
    }
}

/// Whether `content`, as a provider reports it for type `rtype`, is the
/// canonical content `canonical` (a provider may quote, case or dot a value
/// differently from the canonical form validation produces).
pub fn same_content(rtype: &str, content: &str, canonical: &str) -> bool {
    if content == canonical {
        return true;
    }
    match rtype.parse::<RecordType>() {
        Ok(t) => parse_content("content", t, content).is_ok_and(|c| c == canonical),
        Err(()) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_canonical() {
        assert_eq!(
            parse_content("c", RecordType::Aaaa, "2001:DB8:0:0::1").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_content("c", RecordType::Cname, "Target.Example.com.").unwrap(),
            "target.example.com"
        );
        assert_eq!(
            parse_content("c", RecordType::Srv, "5  443 sip.example.com.").unwrap(),
            "5 443 sip.example.com"
        );
        assert_eq!(
            parse_content("c", RecordType::Caa, "0 ISSUE \"letsencrypt.org\"").unwrap(),
            "0 issue \"letsencrypt.org\""
        );
    }
}
