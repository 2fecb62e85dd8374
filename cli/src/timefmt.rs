//! RFC 3339 timestamps in UTC, as OCI runtimes print them (`created` in the
//! state, `time` in log lines), without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds past `secs`.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(_) => Timestamp { secs: 0, nanos: 0 },
        }
    }

    /// `2024-05-01T12:34:56.789Z`: nanoseconds with trailing zeros dropped
    /// (none at all on a whole second).
    pub fn rfc3339_nano(self) -> String {
        let mut text = self.date_time();
        if self.nanos != 0 {
            let fraction = format!("{:09}", self.nanos);
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        text.push('Z');
        text
    }

    /// `2024-05-01T12:34:56Z`.
    pub fn rfc3339(self) -> String {
        format!("{}Z", self.date_time())
    }

    fn date_time(self) -> String {
        let days = self.secs.div_euclid(86_400);
        let of_day = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_date(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01.
fn civil_date(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01, so that leap days end each 4-, 100- and
    // 400-year cycle; 719468 days separate that date from the epoch.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> Timestamp {
        Timestamp { secs, nanos }
    }

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(at(0, 0).rfc3339_nano(), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400, 0).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_210_096, 0).rfc3339(), "2024-02-29T12:34:56Z");
        assert_eq!(at(4_102_444_799, 0).rfc3339(), "2099-12-31T23:59:59Z");
        assert_eq!(at(-1, 0).rfc3339(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn fractions_drop_trailing_zeros() {
        assert_eq!(at(0, 500_000_000).rfc3339_nano(), "1970-01-01T00:00:00.5Z");
        assert_eq!(
            at(0, 123_456_789).rfc3339_nano(),
            "1970-01-01T00:00:00.123456789Z"
        );
        assert_eq!(at(0, 1_000).rfc3339_nano(), "1970-01-01T00:00:00.000001Z");
    }
}
