//! Keyset paging shared by both services' list RPCs: a page starts strictly
//! after the (name, type, record_id) of the previous page's last record, so
//! paging stays stable while rows are added or removed.

/// Where a page starts: strictly after this (name, type, record_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    /// Name of the last record of the previous page.
    pub name: String,
    /// Type of the last record of the previous page.
    pub rtype: String,
    /// Id of the last record of the previous page.
    pub record_id: String,
}

impl PageKey {
    /// The opaque token for this key.
    pub fn encode(&self) -> String {
        hex::encode(format!(
            "p1\n{}\n{}\n{}",
            self.name, self.rtype, self.record_id
        ))
    }

    /// Decodes a token made by [`PageKey::encode`]; `None` for anything else.
    pub fn decode(token: &str) -> Option<PageKey> {
        let s = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let mut it = s.splitn(4, '\n');
        if it.next()? != "p1" {
            return None;
        }
        Some(PageKey {
            name: it.next()?.to_string(),
            rtype: it.next()?.to_string(),
            record_id: it.next()?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let k = PageKey {
            name: "a.example.com".into(),
            rtype: "A".into(),
            record_id: "abc".into(),
        };
        assert_eq!(PageKey::decode(&k.encode()), Some(k));
        assert_eq!(PageKey::decode("zz"), None);
        assert_eq!(PageKey::decode(&hex::encode("x\ny\nz")), None);
    }
}
