//! Wall-clock times as every raftmq tool reads and writes them: ms since the Unix epoch,
//! and RFC 3339 in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A time in ms since the Unix epoch as RFC 3339 UTC, to the millisecond.
pub fn utc(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// Parses ms since the epoch or an RFC 3339 time: `2026-11-24T08:00:00Z`,
/// `2026-11-24T10:00:00.250+02:00` (a fraction and a `±HH:MM` offset are optional).
///
/// # Errors
/// Anything else, with an example of what is accepted.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    rfc3339_ms(s).ok_or_else(|| {
        format!(
            "{s:?} is neither ms since the epoch nor an RFC 3339 time like \
             2026-11-24T08:00:00Z or 2026-11-24T10:00:00+02:00"
        )
    })
}

/// `n` ASCII digits as a number, or `None`.
fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// RFC 3339 (`date-time` of section 5.6; `t`, `z` and a space separator allowed) as ms since
/// the epoch; `None` when malformed or before 1970.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = (s.get(..10)?, s.get(11..)?);
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let mut d = date.split('-');
    let (y, m, day) = (
        digits(d.next()?, 4)?,
        digits(d.next()?, 2)?,
        digits(d.next()?, 2)?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // The offset: `Z`, or `+HH:MM` / `-HH:MM` at the end.
    let (time, offset_s) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else {
        let at = rest.len().checked_sub(6)?;
        let (t, off) = (rest.get(..at)?, rest.get(at..)?);
        let sign = match off.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (digits(oh, 2)?, digits(om, 2)?);
        if oh > 23 || om > 59 {
            return None;
        }
        (t, sign * (oh * 3600 + om * 60))
    };
    let (hms, frac) = match time.split_once('.') {
        Some((hms, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => (hms, f),
        Some(_) => return None,
        None => (time, "0"),
    };
    let mut t = hms.split(':');
    let (hh, mm, ss) = (
        digits(t.next()?, 2)?,
        digits(t.next()?, 2)?,
        digits(t.next()?, 2)?,
    );
    if t.next().is_some() || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms_frac: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_s;
    u64::try_from(secs * 1000 + ms_frac).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("2026-11-24T08:00:00.5Z").unwrap(),
            1_795_507_200_500
        );
        assert_eq!(
            parse_time("2026-11-24T10:00:00.5+02:00").unwrap(),
            1_795_507_200_500
        );
        assert_eq!(
            parse_time("2026-11-24t03:30:00-04:30").unwrap(),
            1_795_507_200_000
        );
        assert_eq!(
            parse_time("2026-11-24 08:00:00z").unwrap(),
            1_795_507_200_000
        );
        for bad in [
            "yesterday",
            "",
            "2026-11-24",
            "2026-11-24T08:00:00",
            "2026-13-24T08:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T08:00:00.Z",
            "2026-11-24T08:00:00+2:00",
            "2026-11-24T08:00:00+02:00x",
            "1969-12-31T23:59:59Z",
            "+30s",
            "２026-11-24T08:00:00Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} parsed");
        }
    }
}
