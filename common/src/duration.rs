//! Duration settings as TrafegoDNS users write them: `90s`, `15m`, `1h`, or a
//! bare number in the unit TrafegoDNS used for that variable (minutes for the
//! grace period, milliseconds for intervals).

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
/// bare number in `unit`.
pub fn parse(s: &str, unit: BareUnit) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(match unit {
            BareUnit::Millis => Duration::from_millis(n),
            BareUnit::Seconds => Duration::from_secs(n),
            BareUnit::Minutes => Duration::from_secs(n.saturating_mul(60)),
        });
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (use e.g. 90s, 15m, 1h): {e}"))
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
    }
}
