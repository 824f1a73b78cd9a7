//! PRESERVED_HOSTNAMES: names the orphan sweep must never delete, as exact
//! names and `*.suffix` patterns (TrafegoDNS's format).
//!
//! This module only answers "is this name preserved?"; it never decides to
//! delete anything, and an entry it cannot parse stops the service at start.

use trafego_proto::validate::Hostname;

/// The preserved names and suffixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preserved {
    exact: Vec<String>,
    /// Each suffix with its leading dot, e.g. `.example.com` for `*.example.com`.
    suffixes: Vec<String>,
}

impl Preserved {
    /// Parses a comma-separated list; blank entries are ignored.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut p = Preserved::default();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some(suffix) = raw.strip_prefix("*.") {
                let h = Hostname::parse("PRESERVED_HOSTNAMES", suffix)
                    .map_err(|e| anyhow::anyhow!("{e} (entry {raw:?})"))?;
                p.suffixes.push(format!(".{h}"));
            } else {
                let h = Hostname::parse("PRESERVED_HOSTNAMES", raw)
                    .map_err(|e| anyhow::anyhow!("{e} (entry {raw:?})"))?;
                p.exact.push(h.as_str().to_string());
            }
        }
        Ok(p)
    }

    /// Whether `name` (lowercase, no trailing dot) is preserved. A `*.suffix`
    /// pattern covers every name below the suffix, not the suffix itself.
    pub fn contains(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.exact.contains(&name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }

    /// Whether nothing is preserved.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_suffix() {
        let p = Preserved::parse("keep.example.com, *.internal.example.com,").unwrap();
        assert!(p.contains("keep.example.com"));
        assert!(p.contains("KEEP.example.com."));
        assert!(p.contains("a.internal.example.com"));
        assert!(p.contains("b.a.internal.example.com"));
        assert!(!p.contains("internal.example.com"));
        assert!(!p.contains("xinternal.example.com"));
        assert!(!p.contains("other.example.com"));
        assert!(Preserved::parse("bad name").is_err());
        assert!(Preserved::parse("").unwrap().is_empty());
    }
}
