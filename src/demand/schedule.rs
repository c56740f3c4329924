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
    pub min_replicas: f64,
    /// When the window starts and ends.
    pub start: DateTime<Utc>,
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
