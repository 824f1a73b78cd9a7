//! Integer conversions between the database (SQLite's signed integers), the
//! wire (unsigned) and counters, without lossy `as` casts: each saturates or
//! floors where the value cannot be out of range anyway (TTLs and priorities
//! are validated, counts are never negative), so a corrupt row can never turn
//! into a huge or negative number.

use std::time::Instant;

/// A validated `u32` (TTL, priority) as the `i32` the database stores.
pub fn to_db(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// An `i32` read from the database as the `u32` the wire carries (a
/// negative value, impossible, reads as 0).
pub fn from_db(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// A count or generation read from the database as the `u64` the API carries.
pub fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A count as the `u32` a response field carries, saturating.
pub fn count_u32(v: impl TryInto<u32>) -> u32 {
    v.try_into().unwrap_or(u32::MAX)
}

/// Milliseconds since `t0`, saturating.
pub fn elapsed_ms(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate_or_floor() {
        assert_eq!(to_db(86_400), 86_400);
        assert_eq!(to_db(u32::MAX), i32::MAX);
        assert_eq!(from_db(-5), 0);
        assert_eq!(from_db(300), 300);
        assert_eq!(count(-1), 0);
        assert_eq!(count_u32(u64::MAX), u32::MAX);
        assert_eq!(count_u32(7usize), 7);
    }
}
