//! Ownership beyond the tracked table: markers written beside the records the
//! app creates, and the registries other tools keep.
//!
//! The tracked table stays the first authority. `registry` holds the TXT
//! registry format shared by this project's own markers and external-dns's.

pub mod registry;
