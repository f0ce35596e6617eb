//! An exchange's regular trading hours, for the detector's session mute.
//!
//! Measured on real equity and futures bars (docs/detection_real.md): the open and close minutes
//! (auctions, opening and closing crosses) and extended-hours single prints produce most of the
//! alerts a trader would discard. A [`Session`] names the hours in the exchange's own time zone,
//! so daylight-saving changes move them correctly; weekends are outside the session. Holidays
//! are not special-cased: a closed day has no bars to alert on.
//!
//! Written as `"<IANA zone> HH:MM-HH:MM[,HH:MM-HH:MM…]"`, e.g. `"America/New_York 09:30-16:00"`
//! or `"Asia/Hong_Kong 09:30-12:00,13:00-16:00"` (a lunch break is two windows).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

use crate::config::ConfigError;

/// Most windows a session may have (a lunch break makes two).
pub const MAX_WINDOWS: usize = 4;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// Regular hours: up to [`MAX_WINDOWS`] windows `[open, close)` of minutes after local midnight,
/// in order and not overlapping, on weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    tz: Tz,
    windows: [(u16, u16); MAX_WINDOWS],
    count: usize,
}

/// Where a bar falls relative to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPhase {
    /// Inside a window, more than `edge` minutes from its open and its close.
    Regular,
    /// Inside a window, within `edge` minutes of its open or its close (auctions, crosses).
    Edge,
    /// Outside every window, or on a weekend (pre-market, post-market, overnight, lunch).
    Outside,
}

impl Session {
    pub fn tz(&self) -> Tz {
        self.tz
    }

    pub fn windows(&self) -> &[(u16, u16)] {
        &self.windows[..self.count]
    }

    /// The phase of the bar that starts at `ts_us` (µs since the epoch, UTC).
    pub fn phase(&self, ts_us: i64, edge_minutes: u16) -> SessionPhase {
        let Some(utc) = chrono::DateTime::from_timestamp_micros(ts_us) else {
            return SessionPhase::Outside;
        };
        let local = self.tz.from_utc_datetime(&utc.naive_utc());
        if matches!(local.weekday(), Weekday::Sat | Weekday::Sun) {
            return SessionPhase::Outside;
        }
        let minute = (local.hour() * 60 + local.minute()) as u16;
        for &(open, close) in self.windows() {
            if (open..close).contains(&minute) {
                let near_edge = minute < open.saturating_add(edge_minutes)
                    || minute >= close.saturating_sub(edge_minutes);
                return if near_edge {
                    SessionPhase::Edge
                } else {
                    SessionPhase::Regular
                };
            }
        }
        SessionPhase::Outside
    }
}

fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 closes a window at midnight.
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

impl FromStr for Session {
    type Err = ConfigError;

    fn from_str(spec: &str) -> Result<Self, ConfigError> {
        let fail = |why: &str| {
            Err(ConfigError(format!(
                "session {spec:?}: {why} (expected e.g. \"America/New_York 09:30-16:00\")"
            )))
        };
        let Some((zone, hours)) = spec.trim().split_once(char::is_whitespace) else {
            return fail("needs a time zone and hours");
        };
        let Ok(tz) = zone.parse::<Tz>() else {
            return fail("unknown IANA time zone");
        };
        let mut windows = [(0, 0); MAX_WINDOWS];
        let mut count = 0;
        let mut previous_close = 0;
        for part in hours.trim().split(',') {
            let Some((open, close)) = part.trim().split_once('-') else {
                return fail("a window is HH:MM-HH:MM");
            };
            let (Some(open), Some(close)) = (parse_clock(open.trim()), parse_clock(close.trim()))
            else {
                return fail("a window is HH:MM-HH:MM");
            };
            if open >= close || close > MINUTES_PER_DAY || (count > 0 && open < previous_close) {
                return fail(
                    "windows must be non-empty, within one day, in order, not overlapping",
                );
            }
            if count == MAX_WINDOWS {
                return fail("too many windows");
            }
            windows[count] = (open, close);
            count += 1;
            previous_close = close;
        }
        Ok(Session { tz, windows, count })
    }
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tz.name())?;
        for (i, (open, close)) in self.windows().iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ',' };
            write!(
                f,
                "{sep}{:02}:{:02}-{:02}:{:02}",
                open / 60,
                open % 60,
                close / 60,
                close % 60
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn parses_and_prints_back() {
        for spec in [
            "America/New_York 09:30-16:00",
            "Asia/Hong_Kong 09:30-12:00,13:00-16:00",
        ] {
            let s: Session = spec.parse().unwrap();
            assert_eq!(s.to_string(), spec);
        }
        for bad in [
            "",
            "America/New_York",
            "Mars/Olympus 09:30-16:00",
            "America/New_York 16:00-09:30",
            "America/New_York 09:30-16:00,15:00-17:00",
            "America/New_York 9h30-16h",
            "UTC 00:00-01:00,01:00-02:00,02:00-03:00,03:00-04:00,04:00-05:00",
        ] {
            assert!(bad.parse::<Session>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn follows_daylight_saving_and_weekends() {
        let nyse: Session = "America/New_York 09:30-16:00".parse().unwrap();
        // 14:30 UTC is 09:30 New York in winter (EST) but 10:30 in summer (EDT).
        assert_eq!(nyse.phase(us(2020, 12, 18, 14, 30), 2), SessionPhase::Edge);
        assert_eq!(
            nyse.phase(us(2020, 12, 18, 14, 32), 2),
            SessionPhase::Regular
        );
        assert_eq!(
            nyse.phase(us(2020, 6, 18, 14, 30), 2),
            SessionPhase::Regular
        );
        assert_eq!(nyse.phase(us(2020, 6, 18, 13, 30), 2), SessionPhase::Edge);
        // 15:58 and 15:59 New York are the last two minutes; 16:00 is post-market.
        assert_eq!(
            nyse.phase(us(2020, 12, 18, 20, 57), 2),
            SessionPhase::Regular
        );
        assert_eq!(nyse.phase(us(2020, 12, 18, 20, 58), 2), SessionPhase::Edge);
        assert_eq!(
            nyse.phase(us(2020, 12, 18, 21, 0), 2),
            SessionPhase::Outside
        );
        assert_eq!(
            nyse.phase(us(2020, 12, 18, 12, 0), 2),
            SessionPhase::Outside
        );
        // Saturday.
        assert_eq!(
            nyse.phase(us(2020, 12, 19, 16, 0), 2),
            SessionPhase::Outside
        );
    }

    #[test]
    fn a_lunch_break_is_outside() {
        let hk: Session = "Asia/Hong_Kong 09:30-12:00,13:00-16:00".parse().unwrap();
        // 04:30 UTC = 12:30 Hong Kong (no DST).
        assert_eq!(hk.phase(us(2022, 5, 20, 4, 30), 2), SessionPhase::Outside);
        assert_eq!(hk.phase(us(2022, 5, 20, 5, 0), 2), SessionPhase::Edge);
        assert_eq!(hk.phase(us(2022, 5, 20, 5, 2), 2), SessionPhase::Regular);
        assert_eq!(hk.phase(us(2022, 5, 20, 5, 2), 0), SessionPhase::Regular);
    }
}
