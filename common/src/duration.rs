//! Duration settings as TrafegoDNS users write them: `90s`, `15m`, `1h`, or a
//! bare number in the unit TrafegoDNS used for that variable (minutes for the
//! grace period, milliseconds for intervals), and the conversions of durations
//! to the integer milliseconds the stores and clocks count in.
//!
//! A value too large to hold never wraps: it saturates to [`Duration::MAX`]
//! ("forever"), and converting it to milliseconds saturates too, so a huge
//! grace period means "not yet", never "now".

use std::time::Duration;

/// The unit a bare number is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    /// Bare numbers are milliseconds (TrafegoDNS intervals).
    Millis,
    /// Bare numbers are seconds.
    Seconds,
    /// Bare numbers are minutes (TrafegoDNS's grace period).
    Minutes,
}

/// Parses `s` as a duration: humantime syntax (`90s`, `15m`, `1h 30m`) or a
/// bare number in `unit`. A value too large for a [`Duration`] (a bare number
/// past `u64::MAX`, or a humantime sum that overflows) is [`Duration::MAX`].
pub fn parse(s: &str, unit: BareUnit) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: a bare number. Past u64::MAX it can only mean "huge".
        let Ok(n) = s.parse::<u64>() else {
            return Ok(Duration::MAX);
        };
        return Ok(match unit {
            BareUnit::Millis => Duration::from_millis(n),
            BareUnit::Seconds => Duration::from_secs(n),
            BareUnit::Minutes => Duration::from_secs(n.saturating_mul(60)),
        });
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(d),
        Err(humantime::DurationError::NumberOverflow) => Ok(Duration::MAX),
        Err(e) => Err(format!(
            "{s:?} is not a duration (use e.g. 90s, 15m, 1h): {e}"
        )),
    }
}

/// clap value parser: bare numbers are milliseconds.
pub fn parse_millis(s: &str) -> Result<Duration, String> {
    parse(s, BareUnit::Millis)
}

/// clap value parser: bare numbers are seconds.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    parse(s, BareUnit::Seconds)
}

/// clap value parser: bare numbers are minutes.
pub fn parse_minutes(s: &str) -> Result<Duration, String> {
    parse(s, BareUnit::Minutes)
}

/// `d` in whole milliseconds as the `i64` that clocks and stores use,
/// saturating at `i64::MAX` (about 292 million years: "forever").
pub fn millis_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `d` in whole milliseconds as a `u64` (for logs and responses), saturating
/// at `u64::MAX`.
pub fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_millis("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_minutes("15").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_minutes("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_millis("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_seconds("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_millis("soon").is_err());
        assert!(parse_millis("").is_err());
        assert!(parse_millis("-5").is_err());
    }

    #[test]
    fn huge_values_saturate_instead_of_wrapping() {
        let max = u64::MAX.to_string();
        assert_eq!(
            parse_minutes(&max).unwrap(),
            Duration::from_secs(u64::MAX),
            "minutes saturate"
        );
        assert_eq!(parse_millis(&max).unwrap(), Duration::from_millis(u64::MAX));
        assert_eq!(
            parse_minutes("99999999999999999999999999").unwrap(),
            Duration::MAX
        );
        assert_eq!(
            parse_seconds("99999999999999999999999999s").unwrap(),
            Duration::MAX
        );
        assert_eq!(
            parse_seconds("18446744073709551615h").unwrap(),
            Duration::MAX
        );
        let grace = parse_minutes(&max).unwrap();
        assert_eq!(millis_i64(grace), i64::MAX);
        assert_eq!(millis_i64(Duration::MAX), i64::MAX);
        assert_eq!(millis_u64(Duration::MAX), u64::MAX);
        assert_eq!(millis_i64(Duration::from_millis(1500)), 1500);
    }
}
