//! Civil dates as day numbers (days since 1970-01-01), China Standard Time.

/// Local offset of every generated terminal (China Standard Time).
pub const UTC_OFFSET_MIN: i16 = 480;
const OFFSET_MS: i64 = UTC_OFFSET_MIN as i64 * 60_000;
pub const DAY_MS: i64 = 86_400_000;
pub const MINUTE_MS: i64 = 60_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

/// `YYYY-MM-DD`.
pub fn format_date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// ISO weekday, Monday = 0 ... Sunday = 6.
pub fn weekday(day: i64) -> u32 {
    (day + 3).rem_euclid(7) as u32
}

/// The Monday of the ISO week containing `day`.
pub fn week_start(day: i64) -> i64 {
    day - i64::from(weekday(day))
}

/// Days in a month.
pub fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

/// The first day of the month `delta` months after (y, m).
pub fn add_months(y: i32, m: u32, delta: i32) -> (i32, u32) {
    let total = y * 12 + (m as i32 - 1) + delta;
    (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32)
}

/// UTC milliseconds of local time `minute` (minutes after local midnight) on `day`.
pub fn local_ms(day: i64, minute: i64) -> i64 {
    day * DAY_MS + minute * MINUTE_MS - OFFSET_MS
}

/// The local day of a UTC instant.
pub fn local_day(ms: i64) -> i64 {
    (ms + OFFSET_MS).div_euclid(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_weekdays() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(weekday(0), 3); // Thursday
        let d = days_from_civil(2026, 11, 16);
        assert_eq!(weekday(d), 0); // a Monday
        assert_eq!(civil_from_days(d), (2026, 11, 16));
        assert_eq!(format_date(days_from_civil(2024, 2, 29)), "2024-02-29");
        assert_eq!(days_in_month(2026, 2), 28);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(add_months(2026, 11, 3), (2027, 2));
        assert_eq!(add_months(2026, 1, -2), (2025, 11));
        // The protocol example: 2026-11-16 08:02:11 +08:00.
        assert_eq!(local_ms(d, 8 * 60 + 2) + 11_000, 1_794_787_331_000);
        assert_eq!(local_day(1_794_787_331_000), d);
    }
}
