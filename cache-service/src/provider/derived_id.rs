//! The id scheme of providers that keep no per-record ids (a zone file;
//! PowerDNS, RFC 2136 and Route53 address records by name, type and
//! content), in one place so every such provider derives the same ids.
//! Re-exported as `provider::derived_id` and `provider::DERIVED_ID_FORMAT`.

use sha2::{Digest, Sha256};
use trafego_proto::validate::IdFormat;

/// The shape of every [`derived_id`]: 32 lowercase hex digits.
pub const DERIVED_ID_FORMAT: IdFormat = IdFormat::HEX32;

/// The id of a record at a provider that keeps no per-record ids (a zone
/// file; PowerDNS, RFC 2136 and Route53 address records by name, type and
/// content): the first 32 hex digits of SHA-256 over `TYPE\0name\0content`,
/// with the type uppercase and name and content canonical. The same record
/// gets the same id across restarts, processes and providers; the TTL is
/// left out so a TTL change keeps the id, while an update that changes the
/// content gives a new one. Every such provider uses this one function.
pub fn derived_id(rtype: &str, name: &str, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(rtype.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(content.as_bytes());
    let mut id = hex::encode(h.finalize());
    id.truncate(32);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Derived ids are stored in caches, journals and tracking tables: the
    /// scheme must never change under them.
    #[test]
    fn derived_ids_are_stable_and_of_their_format() {
        let id = derived_id("A", "a.example.com", "192.0.2.1");
        assert_eq!(id, "9043fbdddc4245bacd89b472e85e1f8b");
        assert_eq!(
            derived_id("TXT", "a.example.com", "192.0.2.1"),
            "219db8fe66fa0f57da8b151f1750d188"
        );
        assert_eq!(DERIVED_ID_FORMAT.check("record_id", &id), Ok(id));
    }
}
