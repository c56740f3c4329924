//! The seasonal forecast of a token rate over the coming lead, from the same stretch of
//! past periods (days or weeks). The server feeds it Prometheus' history; `forecast-eval`
//! feeds it a recorded trace; both run this code.
//!
//! For each past period k: `peak_k`, the highest rate over [now - kP, now - kP + lead],
//! and `level_k`, the mean rate over the level window ending at now - kP. `level_now` is
//! the mean rate over the level window ending now.
//!
//! - past level L = median(level_k); seasonal change g_k = ln(peak_k / level_k)
//! - ratio = clip(level_now / L, 0.5, 2): today against the same time in the past
//! - g = median(g_k), trusted as far as the periods agree on it:
//!   w = g^2 / (g^2 + 16 var(g_k) / n)   (with one period, w = 1)
//! - view = L x ratio x e^(w g)
//!
//! The forecast is the mean of two such views: one from the level window and one from a
//! window three times as long ([`LONG_LEVEL_WINDOWS`]), each with its own levels and
//! seasonal change. The short view follows the latest change; the long one averages the
//! sampling noise of a small fleet out of today's level. Without long levels the short
//! view is the forecast.
//!
//! Where the past level is 0 (the fleet was idle at this time of day), a view is the
//! median peak: a daily spike from zero is still foreseen. No past period at all: no
//! forecast.

use std::time::Duration;

/// One past period's stretch of the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PastPeriod {
    /// Periods back (1 = one period ago).
    pub periods_back: u32,
    /// The highest rate over [now - kP, now - kP + lead].
    pub peak: f64,
    /// The mean rate over the level window ending at now - kP.
    pub level: f64,
    /// The mean rate over the long level window ending at now - kP, where it was read.
    pub long_level: Option<f64>,
}

/// What the forecast is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryWindow {
    /// The past periods Prometheus had data for, most recent first.
    pub past: Vec<PastPeriod>,
    /// The mean rate over the level window ending now; `None` where the fleet has no
    /// series now (scaled to zero), which is not the same as a measured 0.
    pub level_now: Option<f64>,
    /// The mean rate over the long level window ending now.
    pub long_level_now: f64,
    /// The levels of the last few level windows, today and at the same time in the past
    /// periods, on which the candidate forecasts are scored; `None` where not read.
    pub recent: Option<RecentLevels>,
}

/// The level in each of the last level windows, now and at the same time in each past
/// period: what the forecast would have said then, and what came, for each candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentLevels {
    /// `bands[k][n]`: the mean rate over the level window ending n level windows before
    /// now - kP (band 0 is today, band k the k-th past period); `None` where Prometheus
    /// had no sample. Bands may be shorter than [`recent_steps`]: what is missing is
    /// missing data.
    pub bands: Vec<Vec<Option<f64>>>,
    /// Level windows per lead (rounded up): the peak a forecast at a past step is scored
    /// against is the highest level of the lead_steps windows that followed it.
    pub lead_steps: usize,
}

/// The forecast and its parts, for Explain. The parts are the level window's view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The rate expected over [now, now + lead]: the mean of the views.
    pub rate: f64,
    /// Median of the past periods' peaks.
    pub past_peak: f64,
    /// Median of the past periods' levels (L).
    pub past_level: f64,
    /// level_now / L after clipping.
    pub level_ratio: f64,
    /// e^(w g): the seasonal change from now to the coming lead, as trusted.
    pub seasonal_change: f64,
    /// How far the periods agree on the seasonal change (w, 0..1).
    pub agreement: f64,
    /// Periods that had data.
    pub periods: usize,
    /// The level window's view of the rate.
    pub level_window_rate: f64,
    /// The long level window's view, where long levels were read.
    pub long_window: Option<LongView>,
    /// The weight of the seasonal views against today's level in `rate`, from replaying
    /// the forecast in each past period (see [`forecast`]); `None` with fewer than two
    /// periods to replay (the seasonal views alone).
    pub seasonal_weight: Option<f64>,
    /// The candidates as scored on the recent level windows, where enough of them were
    /// read: `rate` is then their weighted mean.
    pub candidates: Option<Candidates>,
}

/// The candidate forecasts, each scored on the last [`RECENT_POINTS`] level windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidates {
    /// The seasonal forecast, weighted against today's level by the replay.
    pub seasonal: Candidate,
    /// Today's level: the rate over the lead stays what it is now.
    pub last_value: Candidate,
    /// One period ago's peak over the same stretch.
    pub seasonal_naive: Candidate,
    /// The past periods' peaks, each scaled by today's level against that period's over
    /// the last [`SCALED_PEAKS_WINDOWS`] level windows: their median. `None` where too
    /// few of those windows were read, now or at enough of the scored points.
    pub scaled_peaks: Option<Candidate>,
    /// Recent level windows the candidates were scored on.
    pub points: usize,
}

/// One candidate forecast and how it did recently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The rate it forecasts now.
    pub rate: f64,
    /// Its mean absolute percentage error over the recent points it could be made at, as
    /// a fraction.
    pub recent_error: f64,
    /// Its share of the forecast (the weights add up to 1).
    pub weight: f64,
}

/// Recent level windows each candidate is scored on: two hours of 10-minute windows.
/// Long enough that one burst does not decide, short enough to follow a change of regime
/// within the day (chosen over 6 to 72 on the bundled trace and traces reshaped from it,
/// see BENCHMARKS.md).
pub const RECENT_POINTS: usize = 12;

/// Fewer scored points than this and the candidates are not weighed (the seasonal
/// forecast alone, as without recent levels).
const MIN_RECENT_POINTS: usize = 3;

/// Level windows of recent history the forecast reads per band for a lead of
/// `lead_steps` level windows: the scored points, their leads and their long windows.
pub fn recent_steps(lead_steps: usize) -> usize {
    let reach = SCALED_PEAKS_WINDOWS.max(LONG_LEVEL_WINDOWS as usize);
    lead_steps + RECENT_POINTS + reach - 1
}

/// Level windows over which the scaled-peaks candidate compares today with each past
/// period: an hour of 10-minute windows. One window's level carries that window's noise
/// into the ratio; an hour averages most of it out and still follows a change within the
/// day (chosen over 3, 6 and 12 windows, see BENCHMARKS.md).
pub const SCALED_PEAKS_WINDOWS: usize = 6;

/// The most the scaled peaks multiply a past period's peak by: today's hour against a
/// period's hour beyond this says that period was down for that hour (an outage, a
/// recording cut short), not that traffic grew. Uncapped, an hour at a hundredth of the
/// usual rate a day ago made the next day's forecast a hundred times its peak. The
/// seasonal views' level ratio may span [`LEVEL_RATIO_RANGE`]; this is its width, so a
/// real change of level is followed as far (a cap of 2 cost a weekly cycle of +-50 % 4 to
/// 5 % of its error at 30 minutes and 1 hour, see BENCHMARKS.md).
pub const SCALED_RATIO_MAX: f64 = 4.0;

/// Past periods the scaled peaks need. With one, the candidate is the day-old peak with
/// all of that day's noise in it, only level-adjusted: on the bundled trace with
/// `--periods 1` it cost 2 to 3 % of the error at every lead (see BENCHMARKS.md).
const MIN_SCALED_PERIODS: usize = 2;

/// The scaled-peaks candidate `steps` level windows ago: each past period's peak times
/// today's summed levels over the [`SCALED_PEAKS_WINDOWS`] windows from `steps` back
/// against that period's over the windows both have; the median over the periods, where
/// [`MIN_SCALED_PERIODS`] are left. A period with fewer than half those windows in common
/// is left out.
fn scaled_peaks(past: &[PastPeriod], recent: &RecentLevels, steps: usize) -> Option<f64> {
    let (today, bands) = recent.bands.split_first()?;
    let at = |band: &[Option<f64>], n: usize| band.get(n).copied().flatten().filter(|v| usable(*v));
    let mut scaled: Vec<f64> = past
        .iter()
        .filter(|p| usable(p.peak))
        .filter_map(|p| {
            let band = bands.get((p.periods_back as usize).checked_sub(1)?)?;
            let common: Vec<(f64, f64)> = (steps..steps + SCALED_PEAKS_WINDOWS)
                .filter_map(|n| Some((at(today, n)?, at(band, n)?)))
                .collect();
            let (now, then) = common
                .iter()
                .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
            (2 * common.len() >= SCALED_PEAKS_WINDOWS && then > 0.0)
                .then(|| p.peak * (now / then).min(SCALED_RATIO_MAX))
        })
        .collect();
    // One period's peak carries that day's noise whole: a median needs two.
    (scaled.len() >= MIN_SCALED_PERIODS).then(|| median(&mut scaled))
}

/// The long level window's view, for Explain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongView {
    /// The forecast rate this view gives.
    pub rate: f64,
    /// Today's long level against the past periods' long levels, after clipping.
    pub level_ratio: f64,
}

/// Bounds on today's level against the past: beyond them, one of the two is not a level
/// but an outage or a one-off, and the forecast should not follow it all the way.
pub const LEVEL_RATIO_RANGE: (f64, f64) = (0.5, 2.0);

/// How many level windows the long level window spans.
pub const LONG_LEVEL_WINDOWS: u32 = 3;

/// The long level window for a level window.
pub fn long_level_window(level_window: Duration) -> Duration {
    level_window * LONG_LEVEL_WINDOWS
}

/// How much disagreement between periods it takes to distrust the seasonal change.
/// Tuned on the first week of ServeGen's trace (see BENCHMARKS.md).
const DISAGREEMENT_WEIGHT: f64 = 16.0;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn usable(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

/// One view: the rate over the lead from (peak, level) pairs and today's level.
#[derive(Debug, Clone, Copy, PartialEq)]
struct View {
    rate: f64,
    past_peak: f64,
    past_level: f64,
    level_ratio: f64,
    seasonal_change: f64,
    agreement: f64,
    periods: usize,
}

/// One view. `level_now` is `None` where today's level was not read: the view then
/// keeps the lower bound of [`LEVEL_RATIO_RANGE`] (a fleet scaled to zero still sees its
/// usual traffic coming); a measured level is followed down as far as it goes.
fn view(past: &[(f64, f64)], level_now: Option<f64>) -> Option<View> {
    let past: Vec<(f64, f64)> = past
        .iter()
        .copied()
        .filter(|&(peak, level)| usable(peak) && usable(level))
        .collect();
    if past.is_empty() {
        return None;
    }
    let (level_now, low) = match level_now {
        Some(level) if usable(level) => (level, 0.0),
        _ => (0.0, LEVEL_RATIO_RANGE.0),
    };
    let past_peak = median(&mut past.iter().map(|p| p.0).collect::<Vec<_>>());
    let past_level = median(&mut past.iter().map(|p| p.1).collect::<Vec<_>>());
    if past_level <= 0.0 {
        return Some(View {
            rate: past_peak,
            past_peak,
            past_level,
            level_ratio: 1.0,
            seasonal_change: 1.0,
            agreement: 0.0,
            periods: past.len(),
        });
    }
    let level_ratio = (level_now / past_level).clamp(low, LEVEL_RATIO_RANGE.1);
    let mut changes: Vec<f64> = past
        .iter()
        .filter(|&&(peak, level)| peak > 0.0 && level > 0.0)
        .map(|&(peak, level)| (peak / level).ln())
        .collect();
    let (change, agreement) = match changes.len() {
        0 => (0.0, 0.0),
        1 => (changes[0], 1.0),
        n => {
            let mean = changes.iter().sum::<f64>() / n as f64;
            let variance = changes.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n as f64;
            let change = median(&mut changes);
            let signal = change * change;
            let noise = DISAGREEMENT_WEIGHT * variance / n as f64;
            let agreement = if signal + noise > 0.0 {
                signal / (signal + noise)
            } else {
                0.0
            };
            (change, agreement)
        }
    };
    let seasonal_change = (agreement * change).exp();
    Some(View {
        rate: past_level * level_ratio * seasonal_change,
        past_peak,
        past_level,
        level_ratio,
        seasonal_change,
        agreement,
        periods: past.len(),
    })
}

/// The forecast; `None` without any usable past period (a new model).
///
/// The seasonal views are blended with today's level (last-value) by how each did in
/// the past periods: the forecast is replayed at the same time in each past period k
/// from the periods before it, against period k's peak, and so is level_k. With errors
/// E_s and E_l summed over the replays, the weight of the seasonal views is
/// E_l^2 / (E_s^2 + E_l^2). A traffic whose days repeat keeps the seasonal forecast; one
/// whose daily shape drifts or breaks leans on today's level.
///
/// With recent levels, that forecast, last-value, seasonal-naive and the scaled peaks
/// are each made again at every one of the last [`RECENT_POINTS`] level windows whose
/// lead has passed, and scored against the peak that came; the forecast is their mean
/// weighted by the inverse square of their mean absolute percentage errors, leaving out
/// the point every candidate missed most: whichever has been closest lately counts most,
/// and one clearly closer nearly alone. The scaled peaks carry yesterday's shape at
/// today's hourly level: where one daily shape recurs under noise, they beat both the
/// seasonal views (which read one window's level) and seasonal-naive (which misses a
/// trend).
pub fn forecast(history: &HistoryWindow) -> Option<Forecast> {
    let mut f = blended(history)?;
    if let Some(recent) = &history.recent
        && let Some(candidates) = scored(history, recent, f.rate)
    {
        f.rate = [
            Some(candidates.seasonal),
            Some(candidates.last_value),
            Some(candidates.seasonal_naive),
            candidates.scaled_peaks,
        ]
        .iter()
        .flatten()
        .map(|c| c.weight * c.rate)
        .sum();
        f.candidates = Some(candidates);
    }
    Some(f)
}

/// The seasonal forecast blended with today's level by the replay in the past periods.
fn blended(history: &HistoryWindow) -> Option<Forecast> {
    let mut f = seasonal(history)?;
    if let Some((seasonal_error, last_error)) = replayed_errors(history) {
        // Weighted by how close each came in the past periods, as inverse variances: the
        // better one counts more, and a clearly better one nearly alone.
        let total = seasonal_error.powi(2) + last_error.powi(2);
        if total > 0.0 {
            let w = last_error.powi(2) / total;
            f.rate = w * f.rate + (1.0 - w) * history.level_now.unwrap_or(0.0).max(0.0);
            f.seasonal_weight = Some(w);
        }
    }
    Some(f)
}

/// The candidates' rates `steps` level windows ago, from the history then: the blended
/// seasonal forecast, today's level, the peak one period ago (today's level where that
/// period is missing) and the scaled peaks, where they can be made.
fn candidate_rates(
    history: &HistoryWindow,
    seasonal: f64,
    recent: &RecentLevels,
    steps: usize,
) -> [Option<f64>; 4] {
    let last = history.level_now.unwrap_or(0.0).max(0.0);
    let naive = history
        .past
        .iter()
        .find(|p| p.periods_back == 1 && usable(p.peak))
        .map_or(last, |p| p.peak);
    let scaled = scaled_peaks(&history.past, recent, steps);
    [Some(seasonal), Some(last), Some(naive), scaled]
}

/// What the history would have been `steps` level windows ago, from the recent levels:
/// with the peaks over the lead that followed then, and that peak today's band saw.
fn history_then(recent: &RecentLevels, steps: usize) -> Option<(HistoryWindow, f64)> {
    let lead = recent.lead_steps.max(1);
    let at = |band: &[Option<f64>], n: usize| band.get(n).copied().flatten().filter(|v| usable(*v));
    let peak = |band: &[Option<f64>]| {
        (steps - lead..steps)
            .filter_map(|n| at(band, n))
            .reduce(f64::max)
    };
    let long = |band: &[Option<f64>]| {
        let values: Vec<f64> = (steps..steps + LONG_LEVEL_WINDOWS as usize)
            .filter_map(|n| at(band, n))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let (today, past) = recent.bands.split_first()?;
    let actual = peak(today).filter(|&a| a > 0.0)?;
    let past = past
        .iter()
        .zip(1..)
        .filter_map(|(band, k)| {
            Some(PastPeriod {
                periods_back: k,
                peak: peak(band)?,
                level: at(band, steps)?,
                long_level: long(band),
            })
        })
        .collect();
    let history = HistoryWindow {
        past,
        level_now: Some(at(today, steps)?),
        long_level_now: long(today).unwrap_or(0.0),
        recent: None,
    };
    Some((history, actual))
}

/// Scores the candidates on the recent levels and weighs them; `None` with fewer than
/// [`MIN_RECENT_POINTS`] points scored. A candidate that could be made at fewer points,
/// or cannot be made now, has no weight.
fn scored(history: &HistoryWindow, recent: &RecentLevels, seasonal: f64) -> Option<Candidates> {
    let lead = recent.lead_steps.max(1);
    let mut points: Vec<[Option<f64>; 4]> = Vec::with_capacity(RECENT_POINTS);
    for steps in lead..lead + RECENT_POINTS {
        let Some((then, actual)) = history_then(recent, steps) else {
            continue;
        };
        let Some(predicted) = blended(&then) else {
            continue;
        };
        let rates = candidate_rates(&then, predicted.rate, recent, steps);
        points.push(rates.map(|rate| rate.map(|rate| (rate - actual).abs() / actual)));
    }
    let (errors, made) = summed_errors(&points);
    let points = points.len();
    if points < MIN_RECENT_POINTS {
        return None;
    }
    let rates = candidate_rates(history, seasonal, recent, 0);
    let mean_errors: [Option<f64>; 4] = std::array::from_fn(|i| {
        (made[i] >= MIN_RECENT_POINTS && rates[i].is_some()).then(|| errors[i] / made[i] as f64)
    });
    // Inverse squared errors; a candidate that was exact takes it all.
    let inverse = mean_errors.map(|e| e.map_or(0.0, |e| 1.0 / e.max(1e-9).powi(2)));
    let total: f64 = inverse.iter().sum();
    let candidate = |i: usize| {
        Some(Candidate {
            rate: rates[i]?,
            recent_error: mean_errors[i]?,
            weight: inverse[i] / total,
        })
    };
    Some(Candidates {
        seasonal: candidate(0)?,
        last_value: candidate(1)?,
        seasonal_naive: candidate(2)?,
        scaled_peaks: candidate(3),
        points,
    })
}

/// Each candidate's summed error and the points it was made at, over the scored points
/// but the one every candidate missed most (the largest of the points' least errors),
/// where more than [`MIN_RECENT_POINTS`] were scored. That point is a change of regime
/// none saw coming, such as the first window of an outage: an error of 200,000 % for
/// each, which would make their means alike until it leaves the recent points.
fn summed_errors(points: &[[Option<f64>; 4]]) -> ([f64; 4], [usize; 4]) {
    let least = |point: &[Option<f64>; 4]| {
        point
            .iter()
            .flatten()
            .copied()
            .reduce(f64::min)
            .unwrap_or(0.0)
    };
    let shared_miss = (points.len() > MIN_RECENT_POINTS)
        .then(|| (0..points.len()).max_by(|&a, &b| least(&points[a]).total_cmp(&least(&points[b]))))
        .flatten()
        .filter(|&n| least(&points[n]) > 0.0);
    let mut errors = [0.0; 4];
    let mut made = [0usize; 4];
    for (n, point) in points.iter().enumerate() {
        if Some(n) == shared_miss {
            continue;
        }
        for (i, error) in point.iter().enumerate() {
            if let Some(error) = error {
                errors[i] += error;
                made[i] += 1;
            }
        }
    }
    (errors, made)
}

/// Replays the seasonal forecast at the same time in each past period from the periods
/// before it, and that period's level, against its peak: their summed absolute errors,
/// where at least two periods could be replayed.
fn replayed_errors(history: &HistoryWindow) -> Option<(f64, f64)> {
    let mut seasonal_error = 0.0;
    let mut last_error = 0.0;
    let mut scored = 0;
    for k in 0..history.past.len() {
        let then = &history.past[k];
        let earlier = HistoryWindow {
            past: history.past[k + 1..].to_vec(),
            level_now: Some(then.level),
            long_level_now: then.long_level.unwrap_or(0.0),
            recent: None,
        };
        let Some(predicted) = seasonal(&earlier) else {
            continue;
        };
        if !(usable(then.peak) && usable(then.level)) {
            continue;
        }
        seasonal_error += (predicted.rate - then.peak).abs();
        last_error += (then.level - then.peak).abs();
        scored += 1;
    }
    (scored >= 2).then_some((seasonal_error, last_error))
}

fn seasonal(history: &HistoryWindow) -> Option<Forecast> {
    let short: Vec<(f64, f64)> = history.past.iter().map(|p| (p.peak, p.level)).collect();
    let short = view(&short, history.level_now)?;
    let long: Vec<(f64, f64)> = history
        .past
        .iter()
        .filter_map(|p| Some((p.peak, p.long_level?)))
        .collect();
    // The long level is read with today's level: missing together.
    let long = view(&long, history.level_now.map(|_| history.long_level_now));
    let rate = long.map_or(short.rate, |long| (short.rate + long.rate) / 2.0);
    Some(Forecast {
        rate,
        past_peak: short.past_peak,
        past_level: short.past_level,
        level_ratio: short.level_ratio,
        seasonal_change: short.seasonal_change,
        agreement: short.agreement,
        periods: short.periods,
        level_window_rate: short.rate,
        long_window: long.map(|long| LongView {
            rate: long.rate,
            level_ratio: long.level_ratio,
        }),
        seasonal_weight: None,
        candidates: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(values: &[(f64, f64)]) -> Vec<PastPeriod> {
        values
            .iter()
            .enumerate()
            .map(|(i, &(peak, level))| PastPeriod {
                periods_back: i as u32 + 1,
                peak,
                level,
                long_level: None,
            })
            .collect()
    }

    /// Past periods with long levels too: (peak, level, long level).
    fn past_long(values: &[(f64, f64, f64)]) -> Vec<PastPeriod> {
        values
            .iter()
            .enumerate()
            .map(|(i, &(peak, level, long_level))| PastPeriod {
                periods_back: i as u32 + 1,
                peak,
                level,
                long_level: Some(long_level),
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn identical_periods_give_their_peak_scaled_by_todays_level() {
        let history = HistoryWindow {
            past: past(&[(1000.0, 100.0), (1000.0, 100.0), (1000.0, 100.0)]),
            level_now: Some(100.0),
            long_level_now: 0.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        assert!(close(f.rate, 1000.0), "{f:?}");
        assert_eq!(f.agreement, 1.0);
        let busier = HistoryWindow {
            level_now: Some(150.0),
            ..history
        };
        assert!(close(forecast(&busier).unwrap().rate, 1500.0));
    }

    #[test]
    fn the_level_ratio_is_clipped() {
        let history = HistoryWindow {
            past: past(&[(200.0, 100.0); 3]),
            level_now: Some(1000.0),
            long_level_now: 0.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        assert_eq!(f.level_ratio, LEVEL_RATIO_RANGE.1);
        assert!(close(f.rate, 400.0));
        // No level today (a fleet scaled to zero has no series) still gets half the
        // usual forecast...
        let scaled_to_zero = HistoryWindow {
            level_now: None,
            ..history.clone()
        };
        assert!(close(forecast(&scaled_to_zero).unwrap().rate, 100.0));
        // ...while a level measured near zero is followed: the traffic went away.
        let quiet = HistoryWindow {
            level_now: Some(2.0),
            ..history
        };
        let f = forecast(&quiet).unwrap();
        assert!(close(f.level_ratio, 0.02) && close(f.rate, 4.0), "{f:?}");
    }

    #[test]
    fn combination_is_robust_to_one_odd_period() {
        // One period had an outage (0) and one a one-off surge: the median ignores both.
        let history = HistoryWindow {
            past: past(&[
                (1000.0, 500.0),
                (0.0, 0.0),
                (1000.0, 500.0),
                (9000.0, 500.0),
            ]),
            level_now: Some(500.0),
            long_level_now: 0.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        assert_eq!(f.past_peak, 1000.0);
        assert!(f.rate >= 500.0 && f.rate <= 1000.0 + 1e-9, "{f:?}");
    }

    #[test]
    fn disagreeing_periods_are_trusted_less() {
        let agree = HistoryWindow {
            past: past(&[(200.0, 100.0), (200.0, 100.0), (200.0, 100.0)]),
            level_now: Some(100.0),
            long_level_now: 0.0,
            recent: None,
        };
        let disagree = HistoryWindow {
            past: past(&[(200.0, 100.0), (400.0, 100.0), (60.0, 100.0)]),
            level_now: Some(100.0),
            long_level_now: 0.0,
            recent: None,
        };
        let a = forecast(&agree).unwrap();
        let d = forecast(&disagree).unwrap();
        assert!(close(a.seasonal_change, 2.0));
        assert!(d.agreement < 0.5, "{d:?}");
        assert!(d.seasonal_change > 1.0 && d.seasonal_change < 2.0, "{d:?}");
    }

    #[test]
    fn a_spike_from_an_idle_time_of_day_is_the_past_peak() {
        let history = HistoryWindow {
            past: past(&[(800.0, 0.0), (900.0, 0.0), (1000.0, 0.0)]),
            level_now: Some(0.0),
            long_level_now: 0.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        // Replayed, the median peak missed by 150 and 100, an idle level by 800 and 900:
        // the seasonal view keeps 1700^2 / (250^2 + 1700^2) of the weight.
        let w = 1700.0f64.powi(2) / (250.0f64.powi(2) + 1700.0f64.powi(2));
        assert!(close(f.rate, 900.0 * w), "{f:?}");
        assert!(close(f.seasonal_weight.unwrap(), w));
        assert!(f.rate > 850.0, "the spike is still foreseen: {f:?}");
    }

    #[test]
    fn a_daily_shape_that_stopped_repeating_leans_on_todays_level() {
        // Each past period's peak came nowhere near what the periods before it said,
        // while the level then was within 10 of it: the forecast is nearly today's level.
        let history = HistoryWindow {
            past: past(&[(110.0, 100.0), (1000.0, 990.0), (100.0, 90.0)]),
            level_now: Some(100.0),
            long_level_now: 0.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        assert!(f.seasonal_weight.unwrap() < 0.01, "{f:?}");
        assert!(
            (f.rate - 100.0).abs() < 0.02 * 100.0 + 0.01 * f.level_window_rate,
            "{f:?}"
        );
    }

    #[test]
    fn the_forecast_is_the_mean_of_the_level_and_long_level_views() {
        // The last level window ran 30 % above its usual level, the long window did not:
        // the short view follows it all the way, the long one not at all.
        let history = HistoryWindow {
            past: past_long(&[(200.0, 100.0, 100.0); 3]),
            level_now: Some(130.0),
            long_level_now: 100.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        assert!(close(f.level_window_rate, 260.0), "{f:?}");
        let long = f.long_window.unwrap();
        assert!(
            close(long.rate, 200.0) && close(long.level_ratio, 1.0),
            "{f:?}"
        );
        assert!(close(f.rate, 230.0), "{f:?}");
        // The parts Explain shows are the level window's.
        assert!(close(f.level_ratio, 1.3) && close(f.seasonal_change, 2.0));
        // Each view has its own seasonal change: here the long window ends lower in a
        // rising hour, so its change to the peak is larger and its view the same.
        let rising = HistoryWindow {
            past: past_long(&[(200.0, 100.0, 80.0); 3]),
            level_now: Some(100.0),
            long_level_now: 80.0,
            recent: None,
        };
        let f = forecast(&rising).unwrap();
        assert!(close(f.rate, 200.0) && close(f.long_window.unwrap().rate, 200.0));
    }

    #[test]
    fn without_long_levels_the_level_window_is_the_forecast() {
        let mut periods = past_long(&[(200.0, 100.0, 100.0); 3]);
        let history = HistoryWindow {
            past: past(&[(200.0, 100.0); 3]),
            level_now: Some(130.0),
            long_level_now: 100.0,
            recent: None,
        };
        let f = forecast(&history).unwrap();
        assert_eq!(f.long_window, None);
        assert!(close(f.rate, 260.0), "{f:?}");
        // A period without its long level leaves the long view to the others.
        periods[1].long_level = None;
        periods[2].long_level = Some(50.0);
        let f = forecast(&HistoryWindow {
            past: periods,
            ..history
        })
        .unwrap();
        let long = f.long_window.unwrap();
        assert!(close(long.level_ratio, 100.0 / 75.0), "{f:?}");
        assert_eq!(f.periods, 3);
    }

    #[test]
    fn no_history_means_no_forecast() {
        let empty = HistoryWindow {
            past: Vec::new(),
            level_now: Some(300.0),
            long_level_now: 0.0,
            recent: None,
        };
        assert_eq!(forecast(&empty), None);
        let unusable = HistoryWindow {
            past: past(&[(f64::NAN, 1.0), (-1.0, 1.0)]),
            level_now: Some(300.0),
            long_level_now: 0.0,
            recent: None,
        };
        assert_eq!(forecast(&unusable), None);
    }

    /// Recent levels: today flat at 100; in each past period, levels that alternated
    /// between 100 and 300 every level window.
    fn flat_today_spiky_past(lead_steps: usize) -> RecentLevels {
        let steps = recent_steps(lead_steps);
        let spiky = (0..steps)
            .map(|n| Some(if n % 2 == 0 { 100.0 } else { 300.0 }))
            .collect();
        let mut bands = vec![vec![Some(100.0); steps]];
        bands.extend(std::iter::repeat_n(spiky, 3));
        RecentLevels { bands, lead_steps }
    }

    #[test]
    fn the_candidate_that_was_right_lately_takes_the_forecast() {
        // The past periods say a spike to 300 comes; lately they said so every other
        // window and it never came, while today's level was exact every time.
        let history = HistoryWindow {
            past: past(&[(300.0, 100.0); 3]),
            level_now: Some(100.0),
            long_level_now: 100.0,
            recent: Some(flat_today_spiky_past(1)),
        };
        let f = forecast(&history).unwrap();
        let c = f.candidates.unwrap();
        assert_eq!(c.points, RECENT_POINTS);
        assert!(close(c.seasonal.rate, 300.0) && close(c.seasonal_naive.rate, 300.0));
        assert!(c.last_value.recent_error < 1e-9, "{c:?}");
        // Six of the twelve points foresaw 300 for an actual 100. Today's level was
        // exact at each, so none was missed by every candidate, and none is left out.
        assert!(close(c.seasonal_naive.recent_error, 1.0), "{c:?}");
        assert!(c.last_value.weight > 0.999, "{c:?}");
        assert!((f.rate - 100.0).abs() < 0.1, "{f:?}");
        let total = c.seasonal.weight + c.last_value.weight + c.seasonal_naive.weight;
        assert!(close(total, 1.0));
    }

    /// Past periods flat at 1,000; today too, until the traffic fell to 1 four level
    /// windows ago.
    fn a_drop_four_windows_ago() -> HistoryWindow {
        let today = (0..recent_steps(1)).map(|n| if n < 4 { 1.0 } else { 1_000.0 });
        flat_past_and(today.collect(), 1_000.0, 1.0)
    }

    /// Three past periods flat at `past_level` (their peaks too) and today's recent
    /// levels `today` (latest first, `today[0]` the level now), a lead of one window.
    fn flat_past_and(today: Vec<f64>, past_level: f64, long_level_now: f64) -> HistoryWindow {
        let steps = today.len();
        let mut bands = vec![today.iter().copied().map(Some).collect()];
        bands.extend(std::iter::repeat_n(vec![Some(past_level); steps], 3));
        HistoryWindow {
            past: past(&[(past_level, past_level); 3]),
            level_now: Some(today[0]),
            long_level_now,
            recent: Some(RecentLevels {
                bands,
                lead_steps: 1,
            }),
        }
    }

    #[test]
    fn a_change_every_candidate_missed_does_not_decide_their_weights() {
        // Every candidate forecast 1,000 for the first window of the drop. Counted, that
        // miss outweighed the three windows since, where today's level was exact and the
        // past periods' peaks were 1,000 times too high, and the forecast stayed near 80.
        let f = forecast(&a_drop_four_windows_ago()).unwrap();
        let c = f.candidates.unwrap();
        assert!(c.last_value.recent_error < 1e-9, "{c:?}");
        assert!(
            close(c.seasonal_naive.recent_error, 3.0 * 999.0 / 11.0),
            "{c:?}"
        );
        assert!(f.rate < 2.0, "{f:?}");
    }

    #[test]
    fn scaled_peaks_do_not_scale_by_a_past_hour_that_was_down() {
        // Two past periods with a peak of 200 over the lead; in the first, the hour before
        // it ran at a hundredth of today's 100.
        let steps = recent_steps(1);
        let bands = vec![
            vec![Some(100.0); steps],
            vec![Some(1.0); steps],
            vec![Some(100.0); steps],
        ];
        let history = HistoryWindow {
            past: past(&[(200.0, 1.0), (200.0, 100.0)]),
            level_now: Some(100.0),
            long_level_now: 100.0,
            recent: Some(RecentLevels {
                bands,
                lead_steps: 1,
            }),
        };
        let c = forecast(&history).unwrap().candidates.unwrap();
        // The median of 200 x 4 and 200 x 1, where uncapped it was 200 x 100 and 200.
        assert!(close(c.scaled_peaks.unwrap().rate, 500.0), "{c:?}");
    }

    /// Past periods flat at 100; today 1.3 times that, with each window 0.2 above or
    /// below in turn (1.5 at the latest).
    fn steady_past_noisy_today() -> HistoryWindow {
        let today = (0..recent_steps(1)).map(|n| 100.0 * if n % 2 == 0 { 1.5 } else { 1.1 });
        flat_past_and(today.collect(), 100.0, 370.0 / 3.0)
    }

    #[test]
    fn scaled_peaks_follow_todays_hour_against_the_past_periods() {
        let f = forecast(&steady_past_noisy_today()).unwrap();
        let c = f.candidates.unwrap();
        let scaled = c.scaled_peaks.unwrap();
        // The hour's ratio is 1.3 whatever window it ends at; one window's level is not.
        assert!(close(scaled.rate, 130.0), "{c:?}");
        for other in [c.seasonal, c.last_value, c.seasonal_naive] {
            assert!(scaled.recent_error < other.recent_error, "{c:?}");
            assert!(scaled.weight > other.weight, "{c:?}");
        }
        let total = c.seasonal.weight + c.last_value.weight + c.seasonal_naive.weight;
        assert!(close(total + scaled.weight, 1.0));
    }

    #[test]
    fn scaled_peaks_need_two_periods() {
        let mut history = steady_past_noisy_today();
        history.past.truncate(1);
        let c = forecast(&history).unwrap().candidates.unwrap();
        assert_eq!(c.scaled_peaks, None);
        history.past = past(&[(100.0, 100.0); 2]);
        let c = forecast(&history).unwrap().candidates.unwrap();
        assert!(close(c.scaled_peaks.unwrap().rate, 130.0), "{c:?}");
    }

    #[test]
    fn scaled_peaks_need_half_the_hour_read() {
        let mut history = steady_past_noisy_today();
        let recent = history.recent.as_mut().unwrap();
        // Two of the last six windows read today; the points from the seventh back on are
        // still scored for the other candidates.
        for n in [1, 2, 4, 5] {
            recent.bands[0][n] = None;
        }
        let c = forecast(&history).unwrap().candidates.unwrap();
        assert_eq!(c.points, RECENT_POINTS - 6);
        assert_eq!(c.scaled_peaks, None);
        let total = c.seasonal.weight + c.last_value.weight + c.seasonal_naive.weight;
        assert!(close(total, 1.0), "{c:?}");
    }

    #[test]
    fn too_few_recent_levels_leave_the_seasonal_forecast_alone() {
        let mut recent = flat_today_spiky_past(1);
        // Today's band read only for the latest two windows: one point can be scored.
        for level in recent.bands[0].iter_mut().skip(2) {
            *level = None;
        }
        let with = HistoryWindow {
            past: past(&[(300.0, 100.0); 3]),
            level_now: Some(100.0),
            long_level_now: 100.0,
            recent: Some(recent),
        };
        let without = HistoryWindow {
            recent: None,
            ..with.clone()
        };
        let f = forecast(&with).unwrap();
        assert_eq!(f.candidates, None);
        assert_eq!(f.rate, forecast(&without).unwrap().rate);
    }

    #[test]
    fn a_recent_point_is_scored_against_the_peak_over_its_lead() {
        // A lead of three level windows: the point three windows back is scored against
        // the highest of the three that followed it.
        let mut recent = flat_today_spiky_past(3);
        recent.bands[0][1] = Some(250.0);
        let (then, actual) = history_then(&recent, 3).unwrap();
        assert_eq!(actual, 250.0);
        assert_eq!(then.level_now, Some(100.0));
        // Each past period's peak over the same windows: 300 at n = 1.
        assert!(
            then.past
                .iter()
                .all(|p| p.peak == 300.0 && p.level == 300.0)
        );
        assert_eq!(then.past.len(), 3);
        // Its long level: windows 3, 4 and 5 of today's band.
        assert!(close(then.long_level_now, 100.0));
    }
}
