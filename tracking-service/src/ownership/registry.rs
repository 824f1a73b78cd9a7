//! external-dns's TXT registry format: where an ownership marker lives and
//! what it says.
//!
//! external-dns proves it owns a record with a TXT record beside it. In its
//! current ("new") format the marker of the `A` record `www.example.com` is the
//! TXT record `a-www.example.com` whose text is
//! `heritage=external-dns,external-dns/owner=<id>[,external-dns/resource=…]`.
//! A configured prefix goes before the first label (`txt-a-www.example.com`),
//! and a prefix holding `%{record_type}` places the type itself
//! (`%{record_type}-txt.` gives `a-txt.www.example.com`). The older format has
//! no type (`www.example.com`, or `<prefix>www.example.com`).
//!
//! The same shape serves two ends here: the markers this project writes (with
//! its own heritage, [`OWN_HERITAGE`], so external-dns never takes them for its
//! own) and the markers external-dns wrote, read when its users migrate. These
//! are pure functions over names and texts; deciding what a marker proves is
//! the caller's business (a marker of another owner, or any marker when no
//! owner id is set, proves nothing).
//!
//! Two cases external-dns leaves to its users are fixed here so a marker
//! always lies inside the zone and never on a hostname: the zone apex's marker
//! takes `_apex` as its first label (`a-_apex.example.com`, where external-dns
//! would write `a-example.com`, outside the zone), and a wildcard's `*` becomes
//! `_wildcard`.

/// The heritage this project writes in its markers.
pub const OWN_HERITAGE: &str = "trafegodns";

/// The heritage external-dns writes.
pub const EXTERNAL_DNS_HERITAGE: &str = "external-dns";

/// The template external-dns replaces with the lowercase record type.
const TYPE_TEMPLATE: &str = "%{record_type}";

/// The first label standing for the zone apex in a marker's name.
const APEX_LABEL: &str = "_apex";

/// The first label standing for `*` in a marker's name.
const WILDCARD_LABEL: &str = "_wildcard";

/// Record types a marker name may carry, lowercase as external-dns writes them.
const TYPES: [&str; 9] = ["a", "aaaa", "cname", "txt", "mx", "srv", "caa", "ns", "ptr"];

/// Where markers live and what they say, for one heritage and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    heritage: String,
    prefix: String,
}

/// What a marker's text says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Who wrote it: `external-dns`, `trafegodns`, or anything else.
    pub heritage: String,
    /// The owner id it names ("" when none).
    pub owner: String,
    /// external-dns's `resource` label ("" when none).
    pub resource: String,
}

/// The record a marker's name points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Record type, uppercase; `None` for the older format, which does not say.
    pub rtype: Option<String>,
    /// Fully qualified name, lowercase.
    pub name: String,
}

impl Registry {
    /// A registry writing and reading markers of `heritage` under `prefix`.
    /// The prefix may hold `%{record_type}` once, and otherwise only what a
    /// DNS label holds (letters, digits, `-`, `_`, and `.` to add labels).
    pub fn new(heritage: &str, prefix: &str) -> Result<Self, String> {
        if heritage.is_empty()
            || !heritage
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "heritage {heritage:?} must be letters, digits, '-' or '_'"
            ));
        }
        let rest = prefix.replacen(TYPE_TEMPLATE, "", 1);
        if !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || rest.starts_with('.')
            || rest.contains("..")
        {
            return Err(format!(
                "prefix {prefix:?} may hold only letters, digits, '-', '_', '.' and one {TYPE_TEMPLATE}"
            ));
        }
        Ok(Self {
            heritage: heritage.to_string(),
            prefix: prefix.to_ascii_lowercase(),
        })
    }

    /// This project's registry: its own heritage, under `prefix`.
    pub fn own(prefix: &str) -> Result<Self, String> {
        Self::new(OWN_HERITAGE, prefix)
    }

    /// The heritage this registry writes and recognises.
    pub fn heritage(&self) -> &str {
        &self.heritage
    }

    /// The marker's name for the record `rtype` `name` in `zone` (names
    /// lowercase, fully qualified, no trailing dot).
    pub fn marker_name(&self, rtype: &str, name: &str, zone: &str) -> String {
        let t = rtype.to_ascii_lowercase();
        let (first, rest) = if name == zone {
            (APEX_LABEL, zone)
        } else {
            match name.split_once('.') {
                Some(("*", rest)) => (WILDCARD_LABEL, rest),
                Some((first, rest)) => (first, rest),
                None => (name, ""),
            }
        };
        let label = if self.prefix.contains(TYPE_TEMPLATE) {
            format!("{}{first}", self.prefix.replacen(TYPE_TEMPLATE, &t, 1))
        } else {
            format!("{}{t}-{first}", self.prefix)
        };
        if rest.is_empty() {
            label
        } else {
            format!("{label}.{rest}")
        }
    }

    /// The marker's text naming `owner`.
    pub fn marker_content(&self, owner: &str) -> String {
        let h = &self.heritage;
        format!("heritage={h},{h}/owner={owner}")
    }

    /// Whether `content` is a marker of this registry's heritage naming
    /// `owner`: the one test of ownership. An empty owner never matches.
    pub fn proves(&self, content: &str, owner: &str) -> bool {
        !owner.is_empty()
            && parse_content(content)
                .is_some_and(|m| m.heritage == self.heritage && m.owner == owner)
    }

    /// The record the marker named `marker` in `zone` points at, in the
    /// current format (with its type), or `None` when the name does not carry
    /// this registry's prefix and a type.
    pub fn target_of(&self, marker: &str, zone: &str) -> Option<Target> {
        let tail = self.unprefixed(marker, zone)?;
        let after = self
            .prefix
            .split_once(TYPE_TEMPLATE)
            .map_or("-", |(_, a)| a);
        // The longest type that fits: "aaaa-x" is AAAA, not A with "aa-x" after.
        let t = TYPES
            .iter()
            .filter(|t| tail.starts_with(*t) && tail[t.len()..].starts_with(after))
            .max_by_key(|t| t.len())?;
        Some(Target {
            rtype: Some(t.to_ascii_uppercase()),
            name: target_name(&tail[t.len() + after.len()..], zone)?,
        })
    }

    /// The record an older-format marker (no type) named `marker` points at:
    /// the name with the prefix taken off. external-dns wrote these before
    /// its current format and still reads them.
    pub fn legacy_target_of(&self, marker: &str, zone: &str) -> Option<Target> {
        if self.prefix.contains(TYPE_TEMPLATE) {
            return None;
        }
        Some(Target {
            rtype: None,
            name: target_name(self.unprefixed(marker, zone)?, zone)?,
        })
    }

    /// `marker` inside `zone` with the prefix's fixed part (what comes before
    /// `%{record_type}`, or all of it) taken off.
    fn unprefixed<'a>(&self, marker: &'a str, zone: &str) -> Option<&'a str> {
        if !in_zone(marker, zone) || marker == zone {
            return None;
        }
        let fixed = self
            .prefix
            .split_once(TYPE_TEMPLATE)
            .map_or(self.prefix.as_str(), |(before, _)| before);
        marker.strip_prefix(fixed)
    }
}

/// What a marker's text says, or `None` when it is not a registry marker (it
/// must start with `heritage=`). Surrounding quotes, as some providers return
/// TXT content, are taken off.
pub fn parse_content(content: &str) -> Option<Marker> {
    let text = content.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let mut parts = text.split(',');
    let heritage = parts.next()?.strip_prefix("heritage=")?.trim().to_string();
    if heritage.is_empty() {
        return None;
    }
    let mut marker = Marker {
        heritage,
        owner: String::new(),
        resource: String::new(),
    };
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let Some(key) = key.trim().strip_prefix(&format!("{}/", marker.heritage)) else {
            continue;
        };
        match key {
            "owner" => marker.owner = value.trim().to_string(),
            "resource" => marker.resource = value.trim().to_string(),
            _ => {}
        }
    }
    Some(marker)
}

/// Whether `name` is `zone` or lies inside it.
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.strip_suffix(zone).is_some_and(|h| h.ends_with('.'))
}

/// The target's name from what follows the type in a marker's name, undoing
/// the apex and wildcard labels; `None` when it falls outside `zone`.
fn target_name(name: &str, zone: &str) -> Option<String> {
    let (first, rest) = name.split_once('.')?;
    if first.is_empty() {
        return None;
    }
    let name = match first {
        APEX_LABEL if rest == zone => zone.to_string(),
        WILDCARD_LABEL => format!("*.{rest}"),
        _ => name.to_string(),
    };
    (in_zone(&name, zone) && !name.starts_with(&format!("{APEX_LABEL}."))).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: &str = "example.com";

    fn ext(prefix: &str) -> Registry {
        Registry::new(EXTERNAL_DNS_HERITAGE, prefix).unwrap()
    }

    #[test]
    fn names_as_external_dns_writes_them() {
        let r = ext("");
        assert_eq!(
            r.marker_name("A", "www.example.com", Z),
            "a-www.example.com"
        );
        assert_eq!(
            r.marker_name("CNAME", "app.dev.example.com", Z),
            "cname-app.dev.example.com"
        );
        assert_eq!(
            ext("txt-").marker_name("AAAA", "www.example.com", Z),
            "txt-aaaa-www.example.com"
        );
        assert_eq!(
            ext("%{record_type}-txt.").marker_name("A", "www.example.com", Z),
            "a-txt.www.example.com"
        );
        assert_eq!(
            ext("pre-%{record_type}-").marker_name("MX", "mail.example.com", Z),
            "pre-mx-mail.example.com"
        );
    }

    #[test]
    fn apex_and_wildcard_markers_stay_inside_the_zone() {
        let r = Registry::own("").unwrap();
        assert_eq!(r.marker_name("A", Z, Z), "a-_apex.example.com");
        assert_eq!(
            r.marker_name("A", "*.dev.example.com", Z),
            "a-_wildcard.dev.example.com"
        );
        for (t, n) in [
            ("A", Z),
            ("A", "*.dev.example.com"),
            ("TXT", "x.y.example.com"),
        ] {
            let m = r.marker_name(t, n, Z);
            let back = r.target_of(&m, Z).unwrap();
            assert_eq!(
                (back.rtype.as_deref(), back.name.as_str()),
                (Some(t), n),
                "{m}"
            );
        }
    }

    #[test]
    fn target_of_undoes_marker_name_for_every_prefix_form() {
        for prefix in [
            "",
            "txt-",
            "own.",
            "%{record_type}-txt.",
            "x%{record_type}y-",
        ] {
            let r = ext(prefix);
            for t in ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"] {
                for n in ["www.example.com", "a.b.example.com", "a-b.example.com"] {
                    let m = r.marker_name(t, n, Z);
                    let back = r.target_of(&m, Z);
                    assert_eq!(
                        back,
                        Some(Target {
                            rtype: Some(t.to_string()),
                            name: n.to_string()
                        }),
                        "prefix {prefix:?} marker {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_that_are_not_markers_are_not_taken_for_markers() {
        let r = ext("txt-");
        assert_eq!(r.target_of("www.example.com", Z), None);
        assert_eq!(r.target_of("txt-www.example.com", Z), None, "no type");
        assert_eq!(
            r.target_of("txt-bogus-www.example.com", Z),
            None,
            "unknown type"
        );
        assert_eq!(
            r.target_of("txt-a-www.other.org", Z),
            None,
            "outside the zone"
        );
        assert_eq!(ext("").target_of("a-.example.com", Z), None, "empty label");
    }

    #[test]
    fn legacy_markers_name_the_record_itself() {
        assert_eq!(
            ext("").legacy_target_of("www.example.com", Z),
            Some(Target {
                rtype: None,
                name: "www.example.com".into()
            })
        );
        assert_eq!(
            ext("txt.").legacy_target_of("txt.www.example.com", Z),
            Some(Target {
                rtype: None,
                name: "www.example.com".into()
            }),
            "a prefix ending in '.' makes a label of its own"
        );
        assert_eq!(
            ext("txt-").legacy_target_of("txt-www.example.com", Z),
            Some(Target {
                rtype: None,
                name: "www.example.com".into()
            })
        );
    }

    #[test]
    fn content_round_trips_and_parses_external_dns_text() {
        let r = Registry::own("").unwrap();
        assert_eq!(
            r.marker_content("blue"),
            "heritage=trafegodns,trafegodns/owner=blue"
        );
        assert!(r.proves(&r.marker_content("blue"), "blue"));
        let m = parse_content(
            "\"heritage=external-dns,external-dns/owner=default,external-dns/resource=ingress/ns/web\"",
        )
        .unwrap();
        assert_eq!(
            m,
            Marker {
                heritage: "external-dns".into(),
                owner: "default".into(),
                resource: "ingress/ns/web".into()
            }
        );
        assert!(ext("").proves(
            "heritage=external-dns,external-dns/owner=default",
            "default"
        ));
    }

    #[test]
    fn nothing_but_the_same_heritage_and_owner_proves_ownership() {
        let r = Registry::own("").unwrap();
        assert!(
            !r.proves(&r.marker_content("blue"), "green"),
            "another owner"
        );
        assert!(!r.proves(&r.marker_content("blue"), ""), "no owner id set");
        assert!(
            !r.proves(&r.marker_content(""), ""),
            "a marker naming no owner"
        );
        assert!(
            !r.proves(&ext("").marker_content("blue"), "blue"),
            "external-dns's heritage"
        );
        assert!(!r.proves("v=spf1 -all", "blue"), "not a marker");
        assert!(!r.proves("heritage=trafegodns", "blue"), "no owner label");
        assert!(
            !r.proves("heritage=trafegodnsx,trafegodnsx/owner=blue", "blue"),
            "a heritage that only starts the same"
        );
    }

    #[test]
    fn bad_prefixes_and_heritages_are_refused() {
        assert!(Registry::new("external-dns", "a b").is_err());
        assert!(Registry::new("external-dns", ".x").is_err());
        assert!(Registry::new("", "").is_err());
        assert!(Registry::new("a,b", "").is_err());
        assert!(Registry::new("x", "%{record_type}-ok.").is_ok());
    }
}
