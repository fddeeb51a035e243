//! Laying out a campaign's posts in time (DESIGN §13): posts sent without a `scheduled_time` get
//! one from `scheduling_options`: the first at the next `start_time` in the time zone, each next
//! one `interval_hours` later.
//!
//! Rules, in the zone's own wall time (IANA database through chrono-tz):
//! - "the next `start_time`" is today's if it is still ahead, else tomorrow's.
//! - An interval of whole days steps the wall clock, so a daily post stays at 09:00 across a DST
//!   change (09:00 Europe/Berlin is 08:00Z in winter and 07:00Z in summer). Any other interval
//!   steps real time (every 90 minutes stays 90 minutes apart through the change).
//! - A wall time that does not exist (the hour skipped in spring) moves forward by the length of
//!   the gap (02:30 becomes 03:30); one that occurs twice (the hour repeated in autumn) is the
//!   first of the two. These are the rules of RFC 5545 and of java.time.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::ValidationError;

/// Longest interval accepted, in hours (a quarter of a year).
const MAX_INTERVAL_HOURS: f64 = 24.0 * 92.0;

/// How to lay out posts that have no time of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulingOptions {
    /// Hours between consecutive posts (more than 0; fractions allowed).
    pub interval_hours: f64,
    /// Wall time of the first post, `HH:MM` (24-hour).
    pub start_time: String,
    /// IANA time zone name; UTC when absent.
    pub timezone: Option<String>,
}

/// A parsed, checked layout.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    zone: Tz,
    start: NaiveTime,
    interval: Duration,
    whole_days: Option<i64>,
}

impl Layout {
    /// Checks the options; errors name the field.
    pub fn parse(options: &SchedulingOptions) -> Result<Self, ValidationError> {
        let hours = options.interval_hours;
        if !hours.is_finite() || hours <= 0.0 || hours > MAX_INTERVAL_HOURS {
            return Err(ValidationError::new(
                "scheduling_options.interval_hours",
                format!("must be more than 0 and at most {MAX_INTERVAL_HOURS}"),
            ));
        }
        let interval = Duration::milliseconds((hours * 3_600_000.0).round() as i64);
        let whole_days = (interval.num_milliseconds() % 86_400_000 == 0).then(|| interval.num_days());
        let start = NaiveTime::parse_from_str(options.start_time.trim(), "%H:%M").map_err(|_| {
            ValidationError::new("scheduling_options.start_time", "must be a 24-hour wall time such as `09:00`")
        })?;
        let zone = match options.timezone.as_deref().map(str::trim) {
            None | Some("") => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ValidationError::new(
                    "scheduling_options.timezone",
                    format!("`{name}` is not an IANA time zone name (such as `Europe/Berlin`)"),
                )
            })?,
        };
        Ok(Self { zone, start, interval, whole_days })
    }

    /// The times of `count` posts laid out from `now`.
    pub fn times(&self, count: usize, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let local_now = now.with_timezone(&self.zone).naive_local();
        let mut first = local_now.date().and_time(self.start);
        if resolve(self.zone, first) <= now {
            first += Duration::days(1);
        }
        (0..count)
            .map(|k| {
                let k = i32::try_from(k).unwrap_or(i32::MAX);
                match self.whole_days {
                    Some(days) => resolve(self.zone, first + Duration::days(days * i64::from(k))),
                    None => resolve(self.zone, first) + self.interval * k,
                }
            })
            .collect()
    }
}

/// The instant of a wall time in `zone`, by the rules in the module docs.
fn resolve(zone: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: read the wall time with the offset in force before it, which lands as far
            // past the gap as the wall time was into it. Gaps are at most a few hours long.
            let before = zone.offset_from_utc_datetime(&(wall - Duration::hours(6)));
            let offset = chrono::Offset::fix(&before);
            (wall - Duration::seconds(i64::from(offset.local_minus_utc()))).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(interval_hours: f64, start: &str, zone: &str) -> Layout {
        Layout::parse(&SchedulingOptions { interval_hours, start_time: start.into(), timezone: Some(zone.into()) })
            .expect("valid options")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").to_utc()
    }

    fn iso(times: &[DateTime<Utc>]) -> Vec<String> {
        times.iter().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).collect()
    }

    #[test]
    fn nine_in_berlin_is_eight_zulu_in_winter_and_seven_in_summer() {
        let daily = layout(24.0, "09:00", "Europe/Berlin");
        assert_eq!(iso(&daily.times(1, at("2027-01-10T06:00:00Z"))), ["2027-01-10T08:00:00Z"]);
        assert_eq!(iso(&daily.times(1, at("2027-06-22T06:00:00Z"))), ["2027-06-22T07:00:00Z"]);
        // Past today's 09:00: tomorrow's.
        assert_eq!(iso(&daily.times(1, at("2027-06-22T07:00:00Z"))), ["2027-06-23T07:00:00Z"]);
    }

    #[test]
    fn daily_posts_keep_their_wall_time_across_the_change() {
        let daily = layout(24.0, "09:00", "Europe/Berlin");
        // Europe/Berlin springs forward on 2027-03-28.
        assert_eq!(
            iso(&daily.times(3, at("2027-03-27T00:00:00Z"))),
            ["2027-03-27T08:00:00Z", "2027-03-28T07:00:00Z", "2027-03-29T07:00:00Z"]
        );
    }

    #[test]
    fn shorter_intervals_step_real_time_through_the_gap() {
        let hourly = layout(1.5, "01:00", "Europe/Berlin");
        // 01:00 CET is 00:00Z; then every 90 real minutes, whatever the clocks say.
        assert_eq!(
            iso(&hourly.times(3, at("2027-03-27T23:00:00Z"))),
            ["2027-03-28T00:00:00Z", "2027-03-28T01:30:00Z", "2027-03-28T03:00:00Z"]
        );
    }

    #[test]
    fn a_skipped_wall_time_moves_forward_and_a_repeated_one_is_the_first() {
        // 02:30 does not exist in Berlin on 2027-03-28: it becomes 03:30 CEST (01:30Z).
        let gap = layout(24.0, "02:30", "Europe/Berlin");
        assert_eq!(iso(&gap.times(1, at("2027-03-27T23:00:00Z"))), ["2027-03-28T01:30:00Z"]);
        // 02:30 happens twice on 2027-10-31: the first, still CEST (00:30Z).
        let overlap = layout(24.0, "02:30", "Europe/Berlin");
        assert_eq!(iso(&overlap.times(1, at("2027-10-30T23:00:00Z"))), ["2027-10-31T00:30:00Z"]);
    }

    #[test]
    fn utc_by_default_and_bad_options_name_their_field() {
        let options = SchedulingOptions { interval_hours: 1.0, start_time: "15:00".into(), timezone: None };
        let utc = Layout::parse(&options).expect("valid");
        assert_eq!(iso(&utc.times(2, at("2027-06-22T10:00:00Z"))), ["2027-06-22T15:00:00Z", "2027-06-22T16:00:00Z"]);
        for (options, field) in [
            (SchedulingOptions { interval_hours: 0.0, ..options.clone() }, "scheduling_options.interval_hours"),
            (SchedulingOptions { interval_hours: f64::NAN, ..options.clone() }, "scheduling_options.interval_hours"),
            (SchedulingOptions { start_time: "9am".into(), ..options.clone() }, "scheduling_options.start_time"),
            (
                SchedulingOptions { timezone: Some("Mars/Olympus".into()), ..options.clone() },
                "scheduling_options.timezone",
            ),
        ] {
            assert_eq!(Layout::parse(&options).expect_err("refused").field, field);
        }
    }
}
