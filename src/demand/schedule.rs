//! Known events: cron windows in a time zone that want a number of replicas.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::anticipation::ScheduleConfig;

/// The schedule window that wants the most replicas over the coming lead.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledWindow {
    /// The schedule's index in the profile.
    pub index: usize,
    /// Its cron expression, as written.
    pub cron: String,
    /// The floor it sets.
    pub min_replicas: f64,
    /// When the window starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
}

/// The start of the window (at or before `at`) whose window still covers a time after
/// `since`; `None` when no window of this schedule overlaps (since, at].
fn overlapping_start(
    schedule: &ScheduleConfig,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local = at.with_timezone(&schedule.timezone.0);
    // The latest start at or before `at`: earlier starts end earlier, so it is the only
    // one that can still be open.
    let start = schedule
        .cron
        .cron
        .find_previous_occurrence(&local, true)
        .ok()?
        .with_timezone(&Utc);
    let end = start + chrono::Duration::from_std(schedule.duration.value.0).ok()?;
    (end > since).then_some(start)
}

/// The window among `schedules` that overlaps [now, now + lead] and wants the most
/// replicas (the earliest listed on a tie).
pub fn wanted(
    schedules: &[ScheduleConfig],
    now: DateTime<Utc>,
    lead: Duration,
) -> Option<ScheduledWindow> {
    let horizon = now + chrono::Duration::from_std(lead).ok()?;
    let mut best: Option<ScheduledWindow> = None;
    for (index, schedule) in schedules.iter().enumerate() {
        let Some(start) = overlapping_start(schedule, now, horizon) else {
            continue;
        };
        let min_replicas = schedule.min_replicas.0;
        if best.as_ref().is_none_or(|b| min_replicas > b.min_replicas) {
            best = Some(ScheduledWindow {
                index,
                cron: schedule.cron.text.clone(),
                min_replicas,
                start,
                end: start + chrono::Duration::from_std(schedule.duration.value.0).ok()?,
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::anticipation::{CronSpec, TimeZone};
    use chrono::TimeZone as _;

    fn schedule(cron: &str, duration_s: u64, tz: &str, min_replicas: f64) -> ScheduleConfig {
        ScheduleConfig {
            cron: CronSpec::try_from(cron.to_owned()).unwrap(),
            duration: serde_saphyr::Spanned::new(
                crate::config::ConfigDuration(Duration::from_secs(duration_s)),
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            ),
            timezone: TimeZone::try_from(tz.to_owned()).unwrap(),
            min_replicas: crate::config::NonNegative(min_replicas),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    const LEAD: Duration = Duration::from_secs(300);

    #[test]
    fn a_window_counts_from_lead_before_its_start_to_its_end() {
        // Weekdays 08:00 to 18:00 in Berlin (UTC+1 in winter). 2026-11-24 is a Tuesday.
        let office = [schedule("0 8 * * 1-5", 10 * 3600, "Europe/Berlin", 6.0)];
        assert_eq!(wanted(&office, utc(2026, 11, 24, 6, 54), LEAD), None);
        let w = wanted(&office, utc(2026, 11, 24, 6, 55), LEAD).unwrap();
        assert_eq!(w.min_replicas, 6.0);
        assert_eq!(w.start, utc(2026, 11, 24, 7, 0));
        assert_eq!(w.end, utc(2026, 11, 24, 17, 0));
        assert!(wanted(&office, utc(2026, 11, 24, 16, 59), LEAD).is_some());
        assert_eq!(wanted(&office, utc(2026, 11, 24, 17, 0), LEAD), None);
        // Saturday: no window.
        assert_eq!(wanted(&office, utc(2026, 11, 28, 7, 0), LEAD), None);
    }

    #[test]
    fn windows_follow_daylight_saving_changes() {
        let office = [schedule("0 8 * * *", 3600, "Europe/Berlin", 4.0)];
        // Before the spring change (Sunday 2026-03-29) 08:00 Berlin is 07:00 UTC, after it 06:00 UTC.
        let before = wanted(&office, utc(2026, 3, 28, 6, 56), LEAD).unwrap();
        assert_eq!(before.start, utc(2026, 3, 28, 7, 0));
        assert_eq!(wanted(&office, utc(2026, 3, 29, 5, 54), LEAD), None);
        let after = wanted(&office, utc(2026, 3, 29, 5, 56), LEAD).unwrap();
        assert_eq!(after.start, utc(2026, 3, 29, 6, 0));
        // And back in autumn (Sunday 2026-10-25): 08:00 Berlin is 07:00 UTC again.
        let autumn = wanted(&office, utc(2026, 10, 25, 6, 56), LEAD).unwrap();
        assert_eq!(autumn.start, utc(2026, 10, 25, 7, 0));
        assert_eq!(wanted(&office, utc(2026, 10, 25, 5, 56), LEAD), None);
    }

    #[test]
    fn the_largest_overlapping_window_wins() {
        let both = [
            schedule("0 8 * * *", 10 * 3600, "UTC", 6.0),
            schedule("0 12 * * *", 3600, "UTC", 10.0),
        ];
        assert_eq!(
            wanted(&both, utc(2026, 11, 24, 9, 0), LEAD)
                .unwrap()
                .min_replicas,
            6.0
        );
        let noon = wanted(&both, utc(2026, 11, 24, 11, 56), LEAD).unwrap();
        assert_eq!((noon.index, noon.min_replicas), (1, 10.0));
        assert_eq!(
            wanted(&both, utc(2026, 11, 24, 13, 0), LEAD)
                .unwrap()
                .min_replicas,
            6.0
        );
    }

    #[test]
    fn a_window_spanning_midnight_is_open_after_midnight() {
        let night = [schedule("0 22 * * *", 4 * 3600, "UTC", 2.0)];
        assert!(wanted(&night, utc(2026, 11, 25, 1, 0), Duration::ZERO).is_some());
        assert!(wanted(&night, utc(2026, 11, 25, 2, 0), Duration::ZERO).is_none());
    }
}
