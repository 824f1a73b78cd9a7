//! What a provider accepts, as data: record ids ([`record_id`], the shared
//! conservative check, and [`IdFormat`], a provider's exact shape), TTLs
//! ([`parse_ttl`], the contract's range, and [`ProviderRules::check_ttl`], the
//! provider's), and [`ProviderRules`], read from a provider's capabilities.
//! Nothing here names a provider.

use super::{
    FieldError, MAX_RECORD_ID_LEN, RecordType, TTL_AUTO, TTL_MAX, TTL_MIN, reject_control,
};

/// Validates a TTL: 0 or 1 mean automatic (1), otherwise 30 to 86400 seconds.
pub fn parse_ttl(field: &str, ttl: u32) -> Result<u32, FieldError> {
    match ttl {
        0 | TTL_AUTO => Ok(TTL_AUTO),
        TTL_MIN..=TTL_MAX => Ok(ttl),
        _ => Err(FieldError::new(
            field,
            format!("TTL {ttl} is out of range; use 1 (automatic) or {TTL_MIN} to {TTL_MAX}"),
        )),
    }
}

/// The shared conservative check of a record id, which every edge runs
/// whatever the provider: 1 to 128 characters of letters, digits, `.`, `_`,
/// `:` and `-`, never `..`. No id that passes can change a URL path or query
/// (`../../zones`, `abc?x=1`) or a log line. cache-service then checks the
/// provider's exact format ([`IdFormat::check`]).
pub fn record_id(field: &str, id: &str) -> Result<String, FieldError> {
    reject_control(field, id)?;
    if id.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if id.len() > MAX_RECORD_ID_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "is {} characters long; at most {MAX_RECORD_ID_LEN} allowed",
                id.len()
            ),
        ));
    }
    if let Some(c) = id.chars().find(|c| !IdCharset::Safe.allows(*c)) {
        return Err(FieldError::new(
            field,
            format!(
                "contains {c:?}; a record id holds only letters, digits, '.', '_', ':' and '-'"
            ),
        ));
    }
    if id.contains("..") {
        return Err(FieldError::new(field, "must not contain \"..\""));
    }
    Ok(id.to_string())
}

/// The characters a provider's record ids are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCharset {
    /// `0-9a-f`: Cloudflare's ids and the zone-file provider's derived ids.
    LowerHex,
    /// Letters, digits, `.`, `_`, `:` and `-`: the shared conservative set.
    Safe,
    /// `0-9`: DigitalOcean's integer ids.
    Decimal,
}

impl IdCharset {
    /// Whether `c` may appear in an id of this charset.
    pub fn allows(self, c: char) -> bool {
        match self {
            IdCharset::LowerHex => matches!(c, '0'..='9' | 'a'..='f'),
            IdCharset::Safe => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
            IdCharset::Decimal => c.is_ascii_digit(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            IdCharset::LowerHex => "lowercase hexadecimal digits",
            IdCharset::Safe => "letters, digits, '.', '_', ':' or '-'",
            IdCharset::Decimal => "decimal digits",
        }
    }
}

/// The exact shape of a provider's record ids, as data (no regular
/// expression), so both services check an id the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdFormat {
    /// The characters of an id.
    pub charset: IdCharset,
    /// Fewest characters.
    pub min_len: u32,
    /// Most characters.
    pub max_len: u32,
}

impl IdFormat {
    /// What any provider's ids satisfy: the check of [`record_id`].
    pub const CONSERVATIVE: IdFormat = IdFormat {
        charset: IdCharset::Safe,
        min_len: 1,
        max_len: 128,
    };

    /// 32 lowercase hex digits (Cloudflare's ids; the zone-file provider's).
    pub const HEX32: IdFormat = IdFormat {
        charset: IdCharset::LowerHex,
        min_len: 32,
        max_len: 32,
    };

    /// 1 to 19 decimal digits: DigitalOcean's integer ids (19 digits hold
    /// every id below 2^63, the largest its API's integers carry).
    pub const DECIMAL: IdFormat = IdFormat {
        charset: IdCharset::Decimal,
        min_len: 1,
        max_len: 19,
    };

    /// Runs [`record_id`], then checks `id` against this format.
    pub fn check(&self, field: &str, id: &str) -> Result<String, FieldError> {
        let id = record_id(field, id)?;
        let len = u32::try_from(id.len()).unwrap_or(u32::MAX);
        let fits = len >= self.min_len
            && len <= self.max_len
            && id.chars().all(|c| self.charset.allows(c));
        if !fits {
            let size = if self.min_len == self.max_len {
                format!("{}", self.min_len)
            } else {
                format!("{} to {}", self.min_len, self.max_len)
            };
            return Err(FieldError::new(
                field,
                format!(
                    "{id:?} is not an id of this provider: its ids are {size} {}",
                    self.charset.describe()
                ),
            ));
        }
        Ok(id)
    }

    /// The format as `GetCacheStatus` reports it.
    pub fn to_proto(&self) -> crate::cache::RecordIdFormat {
        use crate::cache::RecordIdCharset;
        crate::cache::RecordIdFormat {
            charset: match self.charset {
                IdCharset::LowerHex => RecordIdCharset::LowerHex,
                IdCharset::Safe => RecordIdCharset::Safe,
                IdCharset::Decimal => RecordIdCharset::Decimal,
            } as i32,
            min_length: self.min_len,
            max_length: self.max_len,
        }
    }

    /// The format `GetCacheStatus` reported; [`IdFormat::CONSERVATIVE`] when
    /// absent or of a charset this build does not know. Lengths are clamped
    /// to the conservative 1 to 128.
    pub fn from_proto(f: Option<&crate::cache::RecordIdFormat>) -> IdFormat {
        use crate::cache::RecordIdCharset;
        let Some(f) = f else {
            return IdFormat::CONSERVATIVE;
        };
        let charset = match RecordIdCharset::try_from(f.charset) {
            Ok(RecordIdCharset::LowerHex) => IdCharset::LowerHex,
            Ok(RecordIdCharset::Safe) => IdCharset::Safe,
            Ok(RecordIdCharset::Decimal) => IdCharset::Decimal,
            _ => return IdFormat::CONSERVATIVE,
        };
        let max = f.max_length.clamp(1, 128);
        IdFormat {
            charset,
            min_len: f.min_length.clamp(1, max),
            max_len: max,
        }
    }
}

/// What a provider can hold, as far as validation needs to know: the part of
/// its capabilities that decides whether a write is refused. cache-service
/// builds it from its provider's capabilities; tracking-service from what
/// `GetCacheStatus` reports. Both validate with it, never with a provider's
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRules {
    /// Record types the provider serves.
    pub record_types: Vec<RecordType>,
    /// Whether it can proxy records.
    pub proxied: bool,
    /// Shortest explicit TTL (1, automatic, is always accepted).
    pub min_ttl: u32,
    /// Longest TTL.
    pub max_ttl: u32,
    /// Whether a CNAME may sit at the zone apex.
    pub cname_at_apex: bool,
    /// The shape of its record ids.
    pub id_format: IdFormat,
}

impl ProviderRules {
    /// The rules in a `GetCacheStatus` answer. Types this build does not know
    /// are left out; TTL bounds are kept within [`TTL_MIN`]..=[`TTL_MAX`], the
    /// range every edge accepts anyway.
    pub fn from_proto(c: &crate::cache::Capabilities) -> ProviderRules {
        let max_ttl = c.max_ttl.clamp(TTL_MIN, TTL_MAX);
        ProviderRules {
            record_types: c
                .record_types
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
            proxied: c.proxied,
            min_ttl: c.min_ttl.clamp(TTL_MIN, max_ttl),
            max_ttl,
            cname_at_apex: c.cname_at_apex,
            id_format: IdFormat::from_proto(c.record_id_format.as_ref()),
        }
    }

    /// Refuses a TTL (already through [`parse_ttl`]) outside the provider's
    /// range, naming the range; 1 (automatic) always passes.
    pub fn check_ttl(&self, field: &str, ttl: u32) -> Result<(), FieldError> {
        if ttl == TTL_AUTO || (self.min_ttl..=self.max_ttl).contains(&ttl) {
            return Ok(());
        }
        let side = if ttl < self.min_ttl {
            format!("below the provider's minimum of {}", self.min_ttl)
        } else {
            format!("above the provider's maximum of {}", self.max_ttl)
        };
        Err(FieldError::new(
            field,
            format!(
                "TTL {ttl} is {side}; use 1 (automatic) or {} to {}",
                self.min_ttl, self.max_ttl
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::RecordInput;
    use crate::validate::record_input;
    use crate::validate::tests::{input, zone};

    #[test]
    fn record_ids_are_checked_conservatively_then_exactly() {
        for bad in [
            "",
            "../../zones",
            "abc?x=1",
            "a/b",
            "a..b",
            "a b",
            "a%2Fb",
            "a#b",
            "a\nb",
            "caf\u{e9}",
        ] {
            let e = record_id("record_id", bad).expect_err(bad);
            assert_eq!(e.field, "record_id");
        }
        assert!(record_id("record_id", &"a".repeat(129)).is_err());
        record_id("record_id", &"a".repeat(128)).unwrap();
        record_id("record_id", "Rec-1:2_3.x").unwrap();

        let hex = "0123456789abcdef0123456789abcdef";
        assert_eq!(IdFormat::HEX32.check("record_id", hex).unwrap(), hex);
        for bad in [
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
            "missing",
            "../../zones",
        ] {
            let e = IdFormat::HEX32
                .check("changes[1].delete.record_id", bad)
                .expect_err(bad);
            assert_eq!(e.field, "changes[1].delete.record_id");
        }
        let e = IdFormat::HEX32.check("record_id", "missing").unwrap_err();
        assert!(e.message.contains("32 lowercase hexadecimal"), "{e}");
        // A format reported over the wire comes back the same; an unknown or
        // missing one is the conservative check.
        assert_eq!(
            IdFormat::from_proto(Some(&IdFormat::HEX32.to_proto())),
            IdFormat::HEX32
        );
        assert_eq!(IdFormat::from_proto(None), IdFormat::CONSERVATIVE);
        let unknown = crate::cache::RecordIdFormat {
            charset: 99,
            min_length: 5,
            max_length: 5,
        };
        assert_eq!(IdFormat::from_proto(Some(&unknown)), IdFormat::CONSERVATIVE);
    }

    #[test]
    fn decimal_ids_are_digits_only() {
        for ok in ["1", "28448429", "9223372036854775807"] {
            assert_eq!(IdFormat::DECIMAL.check("record_id", ok).unwrap(), ok);
        }
        for bad in ["abc", "12a", "-1", "1.5", "12345678901234567890"] {
            let e = IdFormat::DECIMAL.check("record_id", bad).expect_err(bad);
            assert_eq!(e.field, "record_id");
        }
        let e = IdFormat::DECIMAL.check("record_id", "f00").unwrap_err();
        assert!(e.message.contains("1 to 19 decimal digits"), "{e}");
        assert_eq!(
            IdFormat::from_proto(Some(&IdFormat::DECIMAL.to_proto())),
            IdFormat::DECIMAL
        );
    }

    fn rules() -> ProviderRules {
        ProviderRules {
            record_types: RecordType::ALL.to_vec(),
            proxied: false,
            min_ttl: 60,
            max_ttl: 86_400,
            cname_at_apex: false,
            id_format: IdFormat::HEX32,
        }
    }

    fn check(i: &RecordInput, rules: &ProviderRules) -> Result<(), FieldError> {
        let v = record_input("record", Some(i), &zone())?;
        v.spec.check_for("record", "name", &zone(), rules)
    }

    #[test]
    fn provider_rules_decide_by_data() {
        let r = rules();
        let mut i = input("A", "a.example.com", "192.0.2.1", None);
        for (ttl, ok) in [
            (1, true),
            (0, true),
            (59, false),
            (30, false),
            (60, true),
            (86_400, true),
        ] {
            i.ttl = ttl;
            let got = check(&i, &r);
            assert_eq!(got.is_ok(), ok, "ttl {ttl}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.field, "record.ttl");
                assert!(e.message.contains("minimum of 60"), "{e}");
            }
        }
        let mut short = r.clone();
        short.max_ttl = 3600;
        i.ttl = 7200;
        let e = check(&i, &short).unwrap_err();
        assert!(e.message.contains("maximum of 3600"), "{e}");

        i.ttl = 300;
        i.proxied = true;
        assert_eq!(check(&i, &r).unwrap_err().field, "record.proxied");
        let mut proxying = r.clone();
        proxying.proxied = true;
        check(&i, &proxying).unwrap();

        let apex = input("CNAME", "example.com", "target.example.net", None);
        let e = check(&apex, &r).unwrap_err();
        assert_eq!(e.field, "record.type");
        assert!(e.message.contains("apex"), "{e}");
        let mut flattening = r.clone();
        flattening.cname_at_apex = true;
        check(&apex, &flattening).unwrap();
        // NS at the apex is refused whatever the provider says.
        let ns = input("NS", "example.com", "ns1.example.net", None);
        assert_eq!(check(&ns, &flattening).unwrap_err().field, "record.type");

        let mut few = r.clone();
        few.record_types = vec![RecordType::A];
        let txt = input("TXT", "a.example.com", "hello", None);
        let e = check(&txt, &few).unwrap_err();
        assert_eq!(e.field, "record.type");
        assert!(e.message.contains("TXT"), "{e}");
    }

    #[test]
    fn provider_rules_read_from_the_wire() {
        let c = crate::cache::Capabilities {
            record_types: vec!["A".into(), "TXT".into(), "HTTPS".into()],
            proxied: true,
            min_ttl: 5,
            max_ttl: 1_000_000,
            cname_at_apex: true,
            batch_size: 200,
            comments: true,
            record_id_format: Some(IdFormat::HEX32.to_proto()),
        };
        let r = ProviderRules::from_proto(&c);
        assert_eq!(r.record_types, vec![RecordType::A, RecordType::Txt]);
        assert!(r.proxied && r.cname_at_apex);
        assert_eq!(
            (r.min_ttl, r.max_ttl),
            (TTL_MIN, TTL_MAX),
            "clamped to the contract"
        );
        assert_eq!(r.id_format, IdFormat::HEX32);
    }
}
