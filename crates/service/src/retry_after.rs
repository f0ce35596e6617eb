//! Slack's `429 Too Many Requests` carries `Retry-After`; RFC 9110 allows delay-seconds or an HTTP-date.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The wait a `Retry-After` value asks for, measured from `now`; None when the header is absent or
/// unreadable (the caller then uses its default). A date in the past means "now".
pub fn parse_retry_after(value: Option<&str>, now: DateTime<Utc>) -> Option<Duration> {
    let value = value?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Fractional seconds are not in the RFC, but accepting them costs nothing and beats the default.
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is an RFC 2822 date with the zone spelled GMT.
    let when = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
    }

    #[test]
    fn delay_seconds() {
        assert_eq!(
            parse_retry_after(Some("30"), now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after(Some(" 0 "), now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(Some("1.5"), now()),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn http_date_in_the_future_and_past() {
        assert_eq!(
            parse_retry_after(Some("Mon, 05 Jan 2026 12:00:42 GMT"), now()),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_retry_after(Some("Mon, 05 Jan 2026 11:00:00 GMT"), now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn absent_or_garbage_gives_none() {
        assert_eq!(parse_retry_after(None, now()), None);
        assert_eq!(parse_retry_after(Some("soon"), now()), None);
        assert_eq!(parse_retry_after(Some("-5"), now()), None);
        assert_eq!(parse_retry_after(Some(""), now()), None);
    }
}
