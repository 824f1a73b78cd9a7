//! Unit tests of the RFC 2136 provider's pure parts.
