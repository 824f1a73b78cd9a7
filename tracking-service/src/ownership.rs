//! Ownership beyond the tracked table: markers written beside the records the
//! app creates, and the registries other tools keep.
//!
//! The tracked table stays the first authority. `registry` holds the TXT
//! registry format shared by this project's own markers and external-dns's;
//! `import` claims what TrafegoDNS or external-dns managed.

pub mod import;
pub mod registry;
