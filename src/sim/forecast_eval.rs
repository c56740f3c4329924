//! `forecast-eval`: replays a rate trace through the forecast the service runs
//! ([`crate::demand::forecast`]) and measures its error at a lead against two baselines.
//!
//! The trace is a CSV of equal windows, `window_start_s,rate` (a window with no row is a
//! gap, [`super::rates`]). At the start of each window
//! i, every method forecasts the highest rate over the coming lead (windows i to
//! i + L - 1, L = ceil(lead / window)) from windows before i only:
//! - `shipped`: the service's forecast, fed what its history queries would return: the
//!   same specs the service renders to PromQL ([`crate::query::history_specs`]),
//!   evaluated over the trace's windows;
//! - `last-value`: the rate of window i - 1;
//! - `seasonal-naive`: the highest rate over the same stretch one period ago.
//!
//! A window of rate 0 is, by default, a gap in the recording (`--zeros gap`): Prometheus
//! has no sample there, so a history query skips it as it skips any missing data (a
//! past period whose stretch or level window holds only gaps is absent, as its series
//! would be), and seasonal-naive with nothing one period ago falls back to the last value,
//! as the shipped forecast does without history. A gap's edge window whose rate is under
//! half the rate beyond it was recorded for part of its length and is no data either
//! (`partial_edges`). For a fleet that really idles at 0, `--zeros idle` reads 0 as a
//! rate like any other.
//!
//! All methods are scored on the same windows: the first has `periods` full periods (and
//! the long level window) behind it. Left out of the scores: windows whose actual rate is 0
//! (a percentage error of 0 is undefined) and, with gaps, windows right after a gap, where
//! no method has a current reading.

use super::error::SimError;
use std::{fmt::Write as _, time::Duration};

pub use super::rates::{RateTrace, read_rate_trace};
use super::trace::{Draws, SimRng, seeded};
use crate::{
    config::anticipation::{DEFAULT_LEVEL_WINDOW, DEFAULT_PERIODS},
    demand::forecast::{HistoryWindow, PastPeriod, RecentLevels, forecast},
    query::{CustomShape, QuerySpec, Read, Signal},
};

/// How the replay is set up.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// How far ahead each forecast looks.
    pub lead: Duration,
    /// The season the forecasts repeat over.
    pub period: Duration,
    /// Past periods the shipped forecast combines; `None`: [`DEFAULT_PERIODS`], or as
    /// many as the trace holds before a window to score.
    pub periods: Option<u32>,
    /// The stretch the current level is averaged over; `None`: [`DEFAULT_LEVEL_WINDOW`],
    /// or the trace's window where that is longer.
    pub level_window: Option<Duration>,
    /// What a window of rate 0 means.
    pub zeros: ZeroRate,
    /// Replays the trace's shape at another fleet's size.
    pub resample: Option<Resample>,
}

/// The trace's shape at another fleet's size: each recorded window's count of requests is
/// drawn from a Poisson process at `scale` times its rate, so a smaller fleet's sampling
/// noise is in the rates the methods see. Gaps stay gaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resample {
    /// The rate's multiplier.
    pub scale: f64,
    /// Seeds the draws.
    pub seed: u64,
}

/// What a window of rate 0 in a trace means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ZeroRate {
    /// A gap in the recording: no data, as in Prometheus.
    #[default]
    Gap,
    /// A fleet with no traffic: a rate of 0 like any other.
    Idle,
}

/// One method's error.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodScore {
    /// `shipped`, `last-value` or `seasonal-naive`.
    pub name: &'static str,
    /// Mean absolute percentage error, as a fraction (0.07 = 7 %).
    pub mape: f64,
    /// Weighted absolute percentage error: the sum of absolute errors over the sum of
    /// actual rates, as a fraction. Unlike MAPE, a few near-zero windows cannot dominate
    /// it: each window weighs as much as its traffic.
    pub wape: f64,
    /// The share of forecasts below the actual rate.
    pub under_rate: f64,
    /// How far below, on average over those forecasts, as a fraction of the actual rate.
    pub under_mean: f64,
}

/// The outcome of one replay.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// How far ahead each forecast looked.
    pub lead: Duration,
    /// Windows ahead each forecast covers.
    pub lead_windows: usize,
    /// The trace's window.
    pub window: Duration,
    /// Past periods the shipped forecast combined.
    pub periods: usize,
    /// Windows scored.
    pub scored: usize,
    /// Windows left out because their actual rate was 0.
    pub zero_windows: usize,
    /// Windows left out because the window before them was a gap.
    pub after_gap_windows: usize,
    /// Gap edges read as partly recorded: no data, as the gap itself.
    pub partial_windows: usize,
    /// Each method's scores.
    pub methods: Vec<MethodScore>,
    /// Every scored window, in order: what each method forecast for it.
    pub points: Vec<ScoredPoint>,
}

/// One scored window: the actual peak over the lead and each method's forecast of it, in
/// the order of [`EvalReport::methods`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    /// The window's index in the trace (0 is the first row).
    pub window: usize,
    /// The highest recorded rate over the lead from this window on.
    pub actual: f64,
    /// Each method's forecast.
    pub forecasts: [f64; 3],
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The highest rate recorded in a stretch; `None` when it holds only gaps.
fn peak(values: &[Option<f64>]) -> Option<f64> {
    values.iter().flatten().copied().reduce(f64::max)
}

/// The mean rate recorded in a stretch, as `avg_over_time` skips missing samples;
/// `None` when it holds only gaps.
fn recorded_mean(values: &[Option<f64>]) -> Option<f64> {
    let recorded: Vec<f64> = values.iter().flatten().copied().collect();
    (!recorded.is_empty()).then(|| mean(&recorded))
}

/// Arrivals within `window` seconds of a Poisson process at `rate` per second.
fn poisson_count(rng: &mut SimRng, rate: f64, window: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    let mut count = 0;
    let mut at = rng.exponential(rate);
    while at < window {
        count += 1;
        at += rng.exponential(rate);
    }
    count
}

/// The trace's rates as the methods see them: a gap is no reading (unless `--zeros
/// idle`), a gap's partly recorded edge is none either ([`partial_edges`]), and with
/// `--rate-scale` each window's count is drawn anew. Also: how many edges were read as
/// partly recorded.
fn recorded_rates(trace: &RateTrace, settings: &EvalSettings) -> (Vec<Option<f64>>, usize) {
    let window = trace.window.as_secs_f64();
    let mut rates: Vec<Option<f64>> = trace
        .rates
        .iter()
        .map(|&rate| rate.filter(|&r| r > 0.0 || settings.zeros == ZeroRate::Idle))
        .collect();
    let partial = partial_edges(&rates);
    for &i in &partial {
        rates[i] = None;
    }
    if let Some(resample) = settings.resample {
        let mut rng = seeded(resample.seed);
        for rate in rates.iter_mut().flatten() {
            *rate = poisson_count(&mut rng, *rate * resample.scale, window) as f64 / window;
        }
    }
    (rates, partial.len())
}

/// A gap's edge windows that were recorded for part of their length only: the window
/// right before a gap and the one right after it, when its rate is under
/// [`PARTIAL_EDGE`] times the rate of the window beyond it. A recording that stops or
/// resumes inside a window counts only part of that window's requests, so its rate is
/// not the traffic's; the service never reads it either, as its history queries
/// average the rate's samples and a stopped scrape leaves none. At most one window on
/// each side: the recording stops at one moment. A window with no recorded neighbour
/// beyond it cannot be judged and is kept.
fn partial_edges(rates: &[Option<f64>]) -> Vec<usize> {
    let cut = |edge: usize, beyond: Option<usize>| -> bool {
        let beyond = beyond.and_then(|b| rates.get(b).copied().flatten());
        matches!((rates[edge], beyond), (Some(e), Some(b)) if e < PARTIAL_EDGE * b)
    };
    (0..rates.len())
        .filter(|&i| {
            let gap_after = rates.get(i + 1).is_some_and(Option::is_none);
            let gap_before = i > 0 && rates[i - 1].is_none();
            (gap_after && cut(i, i.checked_sub(1))) || (gap_before && cut(i, Some(i + 1)))
        })
        .collect()
}

/// Under this share of the rate beyond it, a gap's edge window is read as partly
/// recorded. Only such edges can make a percentage error many times the window's own
/// rate; an edge recorded for most of its length is kept as the traffic it was.
const PARTIAL_EDGE: f64 = 0.5;

/// One method's scores over its `(forecast, actual)` pairs.
fn score(name: &'static str, pairs: &[(f64, f64)]) -> MethodScore {
    let n = pairs.len().max(1) as f64;
    let mape = pairs.iter().map(|(f, a)| (f - a).abs() / a).sum::<f64>() / n;
    let actual: f64 = pairs.iter().map(|(_, a)| a).sum();
    let missed: f64 = pairs.iter().map(|(f, a)| (f - a).abs()).sum();
    let wape = if actual > 0.0 { missed / actual } else { 0.0 };
    let under: Vec<f64> = pairs
        .iter()
        .filter(|(f, a)| f < a)
        .map(|(f, a)| (a - f) / a)
        .collect();
    MethodScore {
        name,
        mape,
        wape,
        under_rate: under.len() as f64 / n,
        under_mean: if under.is_empty() { 0.0 } else { mean(&under) },
    }
}

/// The level window the replay uses over windows of `window`: the one given, or the
/// default, raised to one window of a coarser trace (a level cannot be read finer than
/// the trace records it).
fn level_window(settings: &EvalSettings, window: Duration) -> Duration {
    settings
        .level_window
        .unwrap_or_else(|| DEFAULT_LEVEL_WINDOW.max(window))
}

/// The history queries the service sends for these settings: `forecast-eval` evaluates
/// the same specs over the trace. The rate file stands for the token-rate query they read.
fn history_specs(settings: &EvalSettings, periods: u32, level_window: Duration) -> [QuerySpec; 3] {
    let rate = QuerySpec {
        signal: Signal::OutputTokens,
        read: Read::Custom {
            expression: "the trace's rate".to_owned(),
            shape: CustomShape::Fleet,
        },
        matchers: Vec::new(),
        replica_label: String::new(),
        model_label: None,
    };
    crate::query::history_specs(
        rate,
        settings.period,
        periods.max(1),
        settings.lead,
        level_window,
    )
}

/// The replay's shape over the trace: the periods given, or the most up to
/// [`DEFAULT_PERIODS`] that leave a window to score (a two-day trace is scored on its
/// second day from one period back).
fn replay_shape(trace: &RateTrace, settings: &EvalSettings) -> Result<HistoryShape, String> {
    let level = level_window(settings, trace.window);
    let window = trace.window.as_secs_f64();
    let shape = |periods| HistoryShape::of(&history_specs(settings, periods, level), window);
    if let Some(periods) = settings.periods {
        return shape(periods);
    }
    let fits = |shape: &HistoryShape| trace.rates.len() >= shape.first() + shape.lead;
    for periods in (1..=DEFAULT_PERIODS).rev() {
        let candidate = shape(periods)?;
        if fits(&candidate) {
            return Ok(candidate);
        }
    }
    // Not even one period fits: the default's shape, for its error.
    shape(DEFAULT_PERIODS)
}

/// The history specs in windows of the trace: what each reads, how far back.
#[derive(Debug, Clone, Copy)]
struct HistoryShape {
    /// Windows per period.
    period: usize,
    /// Past periods read.
    periods: usize,
    /// Windows the peak is looked for over (the lead, rounded up).
    lead: usize,
    /// Windows of the level.
    level: usize,
    /// Windows of the long level.
    long: usize,
    /// Samples per band of the recent levels.
    recent_steps: usize,
    /// Level windows per lead, as the recent levels are scored.
    lead_steps: usize,
}

impl HistoryShape {
    /// The shape of the specs over windows of `window` seconds: a whole number of windows
    /// per period, and a lead shorter than the period.
    fn of([peaks, levels, recent]: &[QuerySpec; 3], window: f64) -> Result<Self, String> {
        let (
            Read::HistoryPeaks {
                period,
                periods,
                lead,
                ..
            },
            Read::HistoryLevels {
                window: level,
                long_window,
                ..
            },
        ) = (&peaks.read, &levels.read)
        else {
            unreachable!("history_specs gives the peaks, then the levels");
        };
        let windows = period.as_secs_f64() / window;
        if (windows - windows.round()).abs() > 1e-6 || windows < 1.0 {
            return Err(format!(
                "--period {} is not a whole number of the trace's {} s windows",
                crate::config::ConfigDuration(*period),
                window
            ));
        }
        let lead = ((lead.as_secs_f64() / window).ceil() as usize).max(1);
        if lead >= windows.round() as usize {
            return Err("--lead must be shorter than --period".to_owned());
        }
        if level.is_zero() {
            return Err("--level-window 0s: expected a duration above 0".to_owned());
        }
        let Read::HistoryRecent {
            steps, lead_steps, ..
        } = recent.read
        else {
            unreachable!("history_specs gives the recent levels third");
        };
        let level_windows = level.as_secs_f64() / window;
        if (level_windows - level_windows.round()).abs() > 1e-6 * level_windows.max(1.0)
            || level_windows.round() < 1.0
        {
            return Err(format!(
                "--level-window {} is not a whole number of the trace's {} s windows: the level is averaged over whole windows (give {} or a multiple of it)",
                crate::config::ConfigDuration(*level),
                window,
                crate::config::ConfigDuration(Duration::from_secs_f64(window))
            ));
        }
        let level_windows = level_windows.round() as usize;
        let long_per_level = (long_window.as_secs_f64() / level.as_secs_f64()).round() as usize;
        Ok(Self {
            period: windows.round() as usize,
            periods: *periods as usize,
            lead,
            level: level_windows,
            long: level_windows * long_per_level,
            recent_steps: steps as usize,
            lead_steps: lead_steps as usize,
        })
    }

    /// The first window that can be scored: `periods` full periods and the long level
    /// window behind it.
    fn first(&self) -> usize {
        self.periods * self.period + self.long
    }

    /// What the specs return at the start of window `i`, as Prometheus would: a past
    /// period whose stretch or level holds only gaps is absent. `None` when the level now
    /// is all gaps.
    fn history_at(&self, rates: &[Option<f64>], i: usize) -> Option<HistoryWindow> {
        let level_now = recorded_mean(&rates[i - self.level..i])?;
        let past = |k: usize| {
            let back = i - k * self.period;
            Some(PastPeriod {
                periods_back: k as u32,
                peak: peak(&rates[back..back + self.lead])?,
                level: recorded_mean(&rates[back - self.level..back])?,
                long_level: recorded_mean(&rates[back - self.long..back]),
            })
        };
        Some(HistoryWindow {
            past: (1..=self.periods).filter_map(past).collect(),
            level_now: Some(level_now),
            // As the server reads it: no series now is a level of 0.
            long_level_now: recorded_mean(&rates[i - self.long..i]).unwrap_or(0.0),
            recent: Some(self.recent_at(rates, i)),
        })
    }

    /// The recent levels at the start of window `i`: band k's sample n is the level
    /// over the level window ending n level windows before i - k periods; windows before
    /// the trace began are missing.
    fn recent_at(&self, rates: &[Option<f64>], i: usize) -> RecentLevels {
        let band = |k: usize| {
            (0..self.recent_steps)
                .map(|n| {
                    let end = (i - k * self.period).checked_sub(n * self.level)?;
                    recorded_mean(&rates[end.checked_sub(self.level)?..end])
                })
                .collect()
        };
        RecentLevels {
            bands: (0..=self.periods).map(band).collect(),
            lead_steps: self.lead_steps,
        }
    }
}

/// Replays the trace; an error says which setting does not fit it.
pub fn evaluate(trace: &RateTrace, settings: &EvalSettings) -> Result<EvalReport, SimError> {
    let shape = replay_shape(trace, settings)?;
    let HistoryShape {
        period,
        periods,
        lead: lead_windows,
        ..
    } = shape;
    let first = shape.first();
    let (rates, partial_windows) = recorded_rates(trace, settings);
    if rates.len() < first + lead_windows {
        return Err(format!(
            "the trace has {} windows: the forecast needs {periods} periods of {period} windows before the first scored one",
            rates.len()
        ).into());
    }
    let mut errors: [Vec<(f64, f64)>; 3] = Default::default();
    let mut points = Vec::new();
    let mut zero_windows = 0;
    let mut after_gap_windows = 0;
    for i in first..=rates.len() - lead_windows {
        let actual = match peak(&rates[i..i + lead_windows]) {
            Some(actual) if actual > 0.0 => actual,
            _ => {
                zero_windows += 1;
                continue;
            }
        };
        let (Some(last_value), Some(history)) = (rates[i - 1], shape.history_at(&rates, i)) else {
            after_gap_windows += 1;
            continue;
        };
        let level_now = history.level_now.unwrap_or(last_value);
        let shipped = forecast(&history).map_or(level_now, |f| f.rate);
        let seasonal_naive =
            peak(&rates[i - period..i - period + lead_windows]).unwrap_or(last_value);
        let forecasts = [shipped, last_value, seasonal_naive];
        for (slot, predicted) in errors.iter_mut().zip(forecasts) {
            slot.push((predicted, actual));
        }
        points.push(ScoredPoint {
            window: i,
            actual,
            forecasts,
        });
    }
    if points.is_empty() {
        // Scores over no window would read as errors of 0.
        return Err(format!(
            "no window could be scored: of the {} from the first with {periods} periods behind it, {zero_windows} have no recorded rate over the lead and {after_gap_windows} follow a gap",
            rates.len() + 1 - lead_windows - first
        )
        .into());
    }
    let names = ["shipped", "last-value", "seasonal-naive"];
    let methods = names
        .iter()
        .zip(&errors)
        .map(|(name, pairs)| score(name, pairs))
        .collect();
    Ok(EvalReport {
        lead: settings.lead,
        lead_windows,
        window: trace.window,
        periods,
        scored: errors[0].len(),
        zero_windows,
        after_gap_windows,
        partial_windows,
        methods,
        points,
    })
}

impl EvalReport {
    /// `{"lead_s": N, "methods": [{"name", "mape", "wape", "under_rate", ...}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "lead_s": self.lead.as_secs_f64(),
            "lead_windows": self.lead_windows,
            "periods": self.periods,
            "points": self.scored,
            "zero_windows": self.zero_windows,
            "after_gap_windows": self.after_gap_windows,
            "partial_windows": self.partial_windows,
            "methods": self.methods.iter().map(|m| serde_json::json!({
                "name": m.name,
                "mape": m.mape,
                "wape": m.wape,
                "under_rate": m.under_rate,
                "under_mean": m.under_mean,
            })).collect::<Vec<_>>(),
        })
    }

    /// Every scored window as CSV: `window,window_start_s,actual` and one column per
    /// method, the start counted from the trace's first window. Sorted by the share of
    /// the MAPE a window makes, it shows which windows decide the scores.
    pub fn points_csv(&self) -> Result<String, SimError> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["window", "window_start_s", "actual"];
        header.extend(self.methods.iter().map(|m| m.name));
        let rows = self.points.iter().map(|p| {
            let start = p.window as f64 * self.window.as_secs_f64();
            let mut row = vec![
                p.window.to_string(),
                start.to_string(),
                p.actual.to_string(),
            ];
            row.extend(p.forecasts.iter().map(f64::to_string));
            row
        });
        std::iter::once(header.iter().map(|h| h.to_string()).collect())
            .chain(rows)
            .try_for_each(|row: Vec<String>| out.write_record(&row))
            .map_err(|e| format!("writing the points: {e}"))?;
        let bytes = out
            .into_inner()
            .map_err(|e| format!("writing the points: {e}"))?;
        Ok(String::from_utf8(bytes).expect("CSV of ASCII numbers and names"))
    }

    /// A table a person reads.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lead {} ({} window(s)), {} past period(s), {} windows scored; left out: {} with an actual rate of 0, {} right after a gap; {} gap edge(s) read as partly recorded\n",
            crate::config::ConfigDuration(self.lead),
            self.lead_windows,
            self.periods,
            self.scored,
            self.zero_windows,
            self.after_gap_windows,
            self.partial_windows
        );
        let _ = writeln!(
            out,
            "| method | MAPE | WAPE | under-predicted | mean shortfall when under |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for m in &self.methods {
            let _ = writeln!(
                out,
                "| {} | {:.2} % | {:.2} % | {:.1} % | {:.2} % |",
                m.name,
                m.mape * 100.0,
                m.wape * 100.0,
                m.under_rate * 100.0,
                m.under_mean * 100.0
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rates::parse_rate_trace;

    fn settings(lead_s: u64) -> EvalSettings {
        EvalSettings {
            lead: Duration::from_secs(lead_s),
            period: Duration::from_secs(86_400),
            periods: Some(3),
            level_window: Some(Duration::from_secs(600)),
            zeros: ZeroRate::Gap,
            resample: None,
        }
    }

    /// Ten days of 10-minute windows with a clean daily cycle.
    fn daily_cycle() -> RateTrace {
        let rates = (0..10 * 144).map(|i| {
            let phase = (i % 144) as f64 / 144.0 * std::f64::consts::TAU;
            1000.0 + 400.0 * phase.sin()
        });
        RateTrace::recorded(Duration::from_secs(600), rates)
    }

    #[test]
    fn a_clean_season_is_forecast_exactly_and_beats_both_baselines() {
        let report = evaluate(&daily_cycle(), &settings(1800)).unwrap();
        let [shipped, last, naive] = &report.methods[..] else {
            panic!()
        };
        assert!(shipped.mape < 1e-9, "{report:?}");
        assert!(naive.mape < 1e-9);
        assert!(last.mape > 0.01);
        assert!(shipped.wape < 1e-9 && naive.wape < 1e-9 && last.wape > 0.01);
        assert_eq!(report.lead_windows, 3);
        // Scored from the first window with three days and the long level window behind.
        assert_eq!(report.scored, 10 * 144 - (3 * 144 + 3) - 3 + 1);
    }

    #[test]
    fn gaps_are_missing_data_as_in_prometheus() {
        // Half an hour unrecorded on day 6: days 7 to 9 see it one, two and three periods
        // back. Read as no data, the other periods still give the season, but for long
        // level windows the gap cuts short (their mean is over what was recorded).
        let mut trace = daily_cycle();
        let gap = 6 * 144 + 50;
        trace.rates[gap..gap + 3].fill(Some(0.0));
        let gaps = evaluate(&trace, &settings(600)).unwrap();
        assert!(gaps.methods[0].mape < 1e-4, "{gaps:?}");
        assert_eq!(gaps.zero_windows, 3);
        assert_eq!(gaps.after_gap_windows, 1);
        // Read as an idle fleet, the same zeros pull the forecast down on later days.
        let idle = EvalSettings {
            zeros: ZeroRate::Idle,
            ..settings(600)
        };
        let zeros = evaluate(&trace, &idle).unwrap();
        assert!(
            zeros.methods[0].mape > 10.0 * gaps.methods[0].mape,
            "{zeros:?}"
        );
        assert!(zeros.methods[2].mape > gaps.methods[2].mape + 1e-3);
        assert_eq!(zeros.after_gap_windows, 0);
        assert_eq!(zeros.scored, gaps.scored + 1);
    }

    #[test]
    fn only_a_gaps_edge_far_under_the_rate_beyond_it_is_partly_recorded() {
        let r =
            |v: &[f64]| -> Vec<Option<f64>> { v.iter().map(|&x| (x > 0.0).then_some(x)).collect() };
        // Both edges cut short; the windows beyond them are whole.
        assert_eq!(
            partial_edges(&r(&[900.0, 1000.0, 10.0, 0.0, 0.0, 20.0, 1000.0])),
            [2, 5]
        );
        // Edges at half the rate beyond them or more are kept, as is an edge with nothing
        // recorded beyond it (the trace's first window, a window between two gaps).
        assert!(partial_edges(&r(&[1000.0, 500.0, 0.0, 600.0, 1000.0])).is_empty());
        assert!(partial_edges(&r(&[10.0, 0.0, 5.0, 0.0, 1000.0])).is_empty());
        // One window a side: the recording stops at one moment.
        assert_eq!(partial_edges(&r(&[1000.0, 100.0, 10.0, 0.0, 1000.0])), [2]);
    }

    #[test]
    fn partly_recorded_edges_are_read_as_gaps() {
        let mut trace = daily_cycle();
        let gap = 6 * 144 + 50;
        trace.rates[gap..gap + 3].fill(Some(0.0));
        for edge in [gap - 1, gap + 3] {
            trace.rates[edge] = trace.rates[edge].map(|r| r * 0.01);
        }
        let (rates, partial) = recorded_rates(&trace, &settings(600));
        assert_eq!(partial, 2);
        assert!(rates[gap - 1..gap + 4].iter().all(Option::is_none));
        assert_eq!(rates[gap - 2], trace.rates[gap - 2]);
        let idle = EvalSettings {
            zeros: ZeroRate::Idle,
            ..settings(600)
        };
        assert_eq!(recorded_rates(&trace, &idle), (trace.rates.clone(), 0));
        // A window with no row is no data whatever a 0 means.
        trace.rates[gap] = None;
        assert_eq!(recorded_rates(&trace, &idle).0[gap], None);
    }

    #[test]
    fn the_level_window_is_whole_windows_of_the_trace() {
        // Hourly windows: by default the level is one window, and a lead of 10 minutes,
        // 30 or an hour is the same one window ahead.
        let hourly = RateTrace {
            window: Duration::from_secs(3600),
            rates: daily_cycle().rates.chunks(6).map(|c| c[0]).collect(),
        };
        let at = |lead_s| {
            let settings = EvalSettings {
                level_window: None,
                ..settings(lead_s)
            };
            evaluate(&hourly, &settings).unwrap()
        };
        let (ten, hour) = (at(600), at(3600));
        assert_eq!((ten.lead_windows, hour.lead_windows), (1, 1));
        assert_eq!(ten.methods, hour.methods);
        assert_eq!(ten.points, hour.points);
        // A level window that is not whole windows is refused, naming what fits.
        let error = evaluate(&hourly, &settings(600)).unwrap_err().to_string();
        assert!(
            error.contains("--level-window 10m is not a whole number") && error.contains("give 1h"),
            "{error}"
        );
        let half = EvalSettings {
            level_window: Some(Duration::from_secs(300)),
            ..settings(600)
        };
        assert!(evaluate(&daily_cycle(), &half).is_err());
    }

    #[test]
    fn without_periods_given_a_short_trace_is_read_from_as_many_as_it_holds() {
        let days = |n: usize| RateTrace {
            window: Duration::from_secs(600),
            rates: daily_cycle().rates[..n * 144].to_vec(),
        };
        let default = EvalSettings {
            periods: None,
            ..settings(600)
        };
        for (n, periods) in [(2, 1), (3, 2), (4, 3), (10, 3)] {
            let report = evaluate(&days(n), &default).unwrap();
            assert_eq!(report.periods, periods, "{n} days");
            assert!(report.scored > 0);
        }
        // Given, they are what the replay uses, or an error says what it needs.
        let error = evaluate(&days(2), &settings(600)).unwrap_err().to_string();
        assert!(error.contains("needs 3 periods"), "{error}");
        let one_day = RateTrace {
            window: Duration::from_secs(600),
            rates: daily_cycle().rates[..144].to_vec(),
        };
        let error = evaluate(&one_day, &default).unwrap_err().to_string();
        assert!(error.contains("needs 3 periods"), "{error}");
    }

    #[test]
    fn a_trace_with_nothing_to_score_is_an_error_not_errors_of_zero() {
        let mut trace = daily_cycle();
        let first = 3 * 144 + 3;
        trace.rates[first - 1..].fill(None);
        let error = evaluate(&trace, &settings(600)).unwrap_err().to_string();
        assert!(error.starts_with("no window could be scored"), "{error}");
    }

    #[test]
    fn the_history_read_is_the_services_own_query_description() {
        let settings = settings(1800);
        let specs = history_specs(&settings, 3, Duration::from_secs(600));
        let shape = HistoryShape::of(&specs, 600.0).unwrap();
        // A day of 10-minute windows, three past days, the 30-minute lead in three
        // windows, and the long level three times the 10-minute level window.
        assert_eq!(
            (
                shape.period,
                shape.periods,
                shape.lead,
                shape.level,
                shape.long
            ),
            (144, 3, 3, 1, 3)
        );
        assert!(
            specs[0].promql().contains("offset"),
            "{}",
            specs[0].promql()
        );
        let zero = EvalSettings {
            level_window: Some(Duration::ZERO),
            ..settings
        };
        let trace = RateTrace::recorded(Duration::from_secs(600), vec![1.0; 6 * 144]);
        let error = evaluate(&trace, &zero).unwrap_err().to_string();
        assert!(error.contains("--level-window 0s"), "{error}");
    }

    #[test]
    fn seasonal_naive_without_its_period_falls_back_to_the_last_value() {
        // Constant traffic with all of day 3 unrecorded: on day 4 seasonal-naive has
        // nothing one period ago and predicts the last value, which is exact here.
        let mut trace = RateTrace::recorded(Duration::from_secs(600), vec![500.0; 6 * 144]);
        trace.rates[3 * 144..4 * 144].fill(Some(0.0));
        let one_period = EvalSettings {
            periods: Some(1),
            ..settings(600)
        };
        let report = evaluate(&trace, &one_period).unwrap();
        assert!(report.methods.iter().all(|m| m.mape < 1e-9), "{report:?}");
    }

    #[test]
    fn resampling_adds_a_smaller_fleets_noise_and_keeps_gaps() {
        let mut trace = RateTrace::recorded(Duration::from_secs(600), vec![100.0; 6 * 144]);
        trace.rates[5 * 144..5 * 144 + 2].fill(Some(0.0));
        let at = |scale: f64, seed: u64| EvalSettings {
            resample: Some(Resample { scale, seed }),
            ..settings(600)
        };
        let exact = evaluate(&trace, &settings(600)).unwrap();
        assert!(exact.methods.iter().all(|m| m.mape < 1e-9));
        // 6,000 requests a window: about 1 % noise, so each window's error is of that order.
        let noisy = evaluate(&trace, &at(0.1, 7)).unwrap();
        let last_value = noisy.methods[1].mape;
        assert!(last_value > 0.005 && last_value < 0.03, "{noisy:?}");
        assert_eq!(noisy.zero_windows, exact.zero_windows);
        assert_eq!(noisy.after_gap_windows, exact.after_gap_windows);
        assert_eq!(noisy, evaluate(&trace, &at(0.1, 7)).unwrap());
        assert_ne!(noisy, evaluate(&trace, &at(0.1, 8)).unwrap());
        // Fewer requests, more noise.
        let smaller = evaluate(&trace, &at(0.01, 7)).unwrap();
        assert!(smaller.methods[1].mape > 2.0 * last_value, "{smaller:?}");
    }

    #[test]
    fn the_csv_is_checked_row_by_row() {
        let trace = parse_rate_trace("window_start_s,rate\n0,1\n600,2\n1200,3\n").unwrap();
        assert_eq!(trace.window, Duration::from_secs(600));
        assert_eq!(trace.rates, vec![Some(1.0), Some(2.0), Some(3.0)]);
        // As Prometheus exports it: Unix times, and no row where it had no sample. The
        // window is the smallest step, even where the first two rows straddle a gap.
        let export = "window_start_s,rate\n1733500000,1\n1733501200,3\n1733501800,4\n";
        let trace = parse_rate_trace(export).unwrap();
        assert_eq!(trace.window, Duration::from_secs(600));
        assert_eq!(trace.rates, vec![Some(1.0), None, Some(3.0), Some(4.0)]);
        // Each refused file, the line it names and what the error says.
        let refused = [
            ("0,1\n600,2\n1500,3", "line 4", "not a whole number"),
            ("0,1\n600,2\n600,3", "line 4", "must increase"),
            ("1733500000000,1\n1733500600000,2", "line 2", "before 2200"),
            ("0,1\n1,2\n3000000,3", "line 4", "more than 2000000 windows"),
            ("0,1\n600,-2", "line 3", "`-2`"),
        ];
        for (rows, line, says) in refused {
            let error = parse_rate_trace(&format!("window_start_s,rate\n{rows}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(line) && error.contains(says),
                "{rows}: {error}"
            );
        }
    }

    #[test]
    fn settings_that_do_not_fit_the_trace_are_refused() {
        let short = RateTrace::recorded(Duration::from_secs(600), vec![1.0; 100]);
        assert!(
            evaluate(&short, &settings(600))
                .unwrap_err()
                .to_string()
                .contains("needs 3 periods")
        );
        let mut odd = settings(600);
        odd.period = Duration::from_secs(86_000);
        assert!(
            evaluate(&daily_cycle(), &odd)
                .unwrap_err()
                .to_string()
                .contains("whole number")
        );
    }
}
