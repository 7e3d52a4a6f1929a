//! Wall-clock instants as the host hands them in, and the two text forms the contract uses.
//!
//! The core never reads a clock: every entry point takes a [`Now`] from the adapter.

/// An instant in microseconds since the Unix epoch, from the host's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now(pub u64);

impl Now {
    /// Whole milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0 / 1_000
    }

    /// Whole seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-28T18:40:05.123Z`.
    pub fn rfc3339(self) -> String {
        let secs = self.secs();
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            self.millis() % 1000
        )
    }
}

/// Parses an alert `timestamp`: RFC 3339 (`{{timenow}}`, e.g. `2025-01-15T14:30:05Z`, with an
/// optional fraction and a `Z` or `±hh:mm` offset), or Unix seconds, or Unix milliseconds
/// (any value above 10^11 is taken as milliseconds). Returns seconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = t.parse().ok()?;
        return Some(if n > 100_000_000_000 { n / 1000 } else { n });
    }
    parse_rfc3339(t)
}

fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if rb[0] == b'+' { 1 } else { -1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

// Howard Hinnant's civil calendar algorithms (public domain), proleptic Gregorian.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Now(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Now(1_616_492_376_594_123).rfc3339(),
            "2021-03-23T09:39:36.594Z"
        );
        assert_eq!(
            Now(951_782_400_000_000).rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_every_timestamp_form() {
        assert_eq!(parse_timestamp("2021-03-23T09:39:36Z"), Some(1_616_492_376));
        assert_eq!(
            parse_timestamp("2021-03-23T09:39:36.594Z"),
            Some(1_616_492_376)
        );
        assert_eq!(
            parse_timestamp("2021-03-23T10:39:36+01:00"),
            Some(1_616_492_376)
        );
        assert_eq!(parse_timestamp("1616492376"), Some(1_616_492_376));
        assert_eq!(parse_timestamp("1616492376594"), Some(1_616_492_376));
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Some(951_782_400));
    }

    #[test]
    fn refuses_malformed_timestamps() {
        for bad in [
            "",
            "yesterday",
            "2021-13-01T00:00:00Z",
            "2021-03-23 09:39",
            "2021-03-23T09:39:36",
            "2021-03-23T09:39:36+1:00",
            "-5",
            "2021-03-23T09:39:36.Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
