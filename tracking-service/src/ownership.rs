//! Ownership beyond the tracked table: markers written beside the records the
//! app creates, and the registries other tools keep.
//!
//! The tracked table stays the first authority: a marker is never needed to
//! manage a tracked record and never overrides a row tracked as not
//! app-managed. Markers are read in two places only: the rebuild after a lost
//! table ([`rebuild`]), and the upkeep of the markers themselves
//! ([`markers`]: written with their records in one provider group, deleted
//! with them, mended when missing, swept when their record is gone). A
//! marker proves ownership only when it names this installation's
//! `OWNER_ID` ([`registry::Registry::proves`]); with no owner id nothing is
//! ever proof. `registry` holds the TXT registry format shared by this
//! project's own markers and external-dns's; [`import`] claims what
//! TrafegoDNS or external-dns managed.

pub mod import;
pub mod markers;
pub mod rebuild;
pub mod registry;

use registry::Registry;
use trafego_proto::validate::Hostname;

/// The comment the app writes on records it creates, kept readable beside a
/// comment marker.
pub const MANAGED_COMMENT: &str = "Managed by TrafegoDNS";

/// Longest OWNER_ID: a comment marker (`MANAGED_COMMENT`, `; `, the registry
/// text) must fit the 100 characters a record comment may hold.
pub const MAX_OWNER_ID_LEN: usize = 40;

/// Where a record's marker lives (OWNERSHIP_MARKER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerMode {
    /// In the record's own comment (providers whose records carry comments).
    Comment,
    /// In a TXT record beside it, external-dns's registry format.
    Txt,
}

/// This installation's markers: its owner id, the mode and the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// OWNER_ID.
    pub owner: String,
    /// OWNERSHIP_MARKER.
    pub mode: MarkerMode,
    /// Marker names (OWNERSHIP_TXT_PREFIX) and texts, this project's heritage.
    pub registry: Registry,
}

/// The longest of `zones` that `name` lies in: the zone whose marker names
/// are built for it ("" when none: the record cannot be written anyway, as
/// no served zone holds it, and a marker name outside every zone reads back
/// as nothing).
pub fn zone_of<'a>(zones: &'a [Hostname], name: &str) -> &'a str {
    zones
        .iter()
        .map(Hostname::as_str)
        .filter(|z| name == *z || name.strip_suffix(z).is_some_and(|h| h.ends_with('.')))
        .max_by_key(|z| z.len())
        .unwrap_or("")
}

/// Checks OWNER_ID: 1 to [`MAX_OWNER_ID_LEN`] letters, digits, `-`, `_`, `.`.
pub fn parse_owner_id(id: &str) -> anyhow::Result<String> {
    if id.is_empty()
        || id.len() > MAX_OWNER_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        anyhow::bail!(
            "OWNER_ID {id:?} must be 1 to {MAX_OWNER_ID_LEN} letters, digits, '-', '_' or '.'"
        );
    }
    Ok(id.to_string())
}

impl Ownership {
    /// The ownership settings: `None` when OWNERSHIP_MARKER is `off`. Any
    /// other mode needs OWNER_ID; a bad id, mode or prefix is refused.
    pub fn from_settings(
        owner_id: Option<&str>,
        mode: &str,
        prefix: &str,
    ) -> anyhow::Result<Option<Self>> {
        let owner = owner_id
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_owner_id(s.trim()))
            .transpose()?;
        let mode = match mode.trim().to_ascii_lowercase().as_str() {
            "" | "off" => return Ok(None),
            "comment" => MarkerMode::Comment,
            "txt" => MarkerMode::Txt,
            other => anyhow::bail!("OWNERSHIP_MARKER {other:?} must be off, comment or txt"),
        };
        let Some(owner) = owner else {
            anyhow::bail!(
                "OWNERSHIP_MARKER={} needs OWNER_ID: a marker proves ownership only with this \
                 installation's owner id",
                if mode == MarkerMode::Txt {
                    "txt"
                } else {
                    "comment"
                }
            );
        };
        let registry =
            Registry::own(prefix).map_err(|e| anyhow::anyhow!("OWNERSHIP_TXT_PREFIX: {e}"))?;
        Ok(Some(Self {
            owner,
            mode,
            registry,
        }))
    }

    /// The marker text naming this owner.
    pub fn content(&self) -> String {
        self.registry.marker_content(&self.owner)
    }

    /// Whether a TXT marker's text proves this owner.
    pub fn proves(&self, content: &str) -> bool {
        self.registry.proves(content, &self.owner)
    }

    /// The comment a record carries in comment mode: the readable note, then
    /// the registry text.
    pub fn comment(&self) -> String {
        format!("{MANAGED_COMMENT}; {}", self.content())
    }

    /// Whether a record's comment carries a marker proving this owner: the
    /// registry text after the readable note (or alone).
    pub fn comment_proves(&self, comment: &str) -> bool {
        let text = comment
            .strip_prefix(MANAGED_COMMENT)
            .map_or(comment, |t| t.trim_start_matches([';', ' ']));
        self.proves(text)
    }

    /// The name of the TXT marker of record `rtype` `name` in `zone`.
    pub fn marker_name(&self, rtype: &str, name: &str, zone: &str) -> String {
        self.registry.marker_name(rtype, name, zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert_eq!(Ownership::from_settings(None, "off", "").unwrap(), None);
        assert_eq!(
            Ownership::from_settings(Some("a"), "off", "").unwrap(),
            None
        );
        let e = Ownership::from_settings(None, "txt", "").unwrap_err();
        assert!(e.to_string().contains("needs OWNER_ID"), "{e}");
        let e = Ownership::from_settings(Some("blue"), "tags", "").unwrap_err();
        assert!(e.to_string().contains("OWNERSHIP_MARKER"), "{e}");
        for bad in ["a b", "a,b", "a/b", "a=b", &"x".repeat(41)] {
            let e = Ownership::from_settings(Some(bad), "txt", "").unwrap_err();
            assert!(e.to_string().contains("OWNER_ID"), "{bad}: {e}");
        }
        let e = Ownership::from_settings(Some("blue"), "txt", "a b").unwrap_err();
        assert!(e.to_string().contains("OWNERSHIP_TXT_PREFIX"), "{e}");
        let o = Ownership::from_settings(Some("blue-1.x_y"), "TXT", "%{record_type}-own.")
            .unwrap()
            .unwrap();
        assert_eq!(o.mode, MarkerMode::Txt);
        assert_eq!(
            o.marker_name("A", "www.example.com", "example.com"),
            "a-own.www.example.com"
        );
    }

    #[test]
    fn comment_markers_keep_the_note_and_prove_only_this_owner() {
        let o = Ownership::from_settings(Some(&"b".repeat(40)), "comment", "")
            .unwrap()
            .unwrap();
        let c = o.comment();
        assert!(
            c.starts_with("Managed by TrafegoDNS; heritage=trafegodns,"),
            "{c}"
        );
        assert!(c.chars().count() <= 100, "fits a record comment: {c}");
        assert!(o.comment_proves(&c));
        let blue = Ownership::from_settings(Some("blue"), "comment", "")
            .unwrap()
            .unwrap();
        assert!(!blue.comment_proves(&c), "another owner");
        assert!(!blue.comment_proves(MANAGED_COMMENT), "the note alone");
        assert!(!blue.comment_proves(""));
        assert!(
            !blue.comment_proves(
                "Managed by TrafegoDNS; heritage=external-dns,external-dns/owner=blue"
            ),
            "external-dns's heritage"
        );
        assert!(blue.comment_proves(&blue.content()), "the text alone");
    }
}
