//! `forecast-eval`: replays a rate trace through the forecast the service runs
//! ([`crate::demand::forecast`]) and measures its error at a lead against two baselines.
//!
//! The trace is a CSV of equal windows, `window_start_s,rate`. At the start of each window
//! i, every method forecasts the highest rate over the coming lead (windows i to
//! i + L - 1, L = ceil(lead / window)) from windows before i only:
//! - `shipped`: the service's forecast, fed what the history queries would return;
//! - `last-value`: the rate of window i - 1;
//! - `seasonal-naive`: the highest rate over the same stretch one period ago.
//!
//! All methods are scored on the same windows: the first has `periods` full periods (and
//! the level window) behind it. Windows whose actual rate is 0 (gaps in the recording)
//! are left out of the scores, since a percentage error of 0 is undefined.

use std::{fmt::Write as _, path::Path, time::Duration};

use crate::demand::forecast::{HistoryWindow, PastPeriod, forecast};

/// How the replay is set up.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    pub lead: Duration,
    pub period: Duration,
    /// Past periods the shipped forecast combines.
    pub periods: u32,
    /// The stretch the current level is averaged over.
    pub level_window: Duration,
}

/// A rate trace of equal windows.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTrace {
    /// Width of every window.
    pub window: Duration,
    pub rates: Vec<f64>,
}

/// One method's error.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodScore {
    pub name: &'static str,
    /// Mean absolute percentage error, as a fraction (0.07 = 7 %).
    pub mape: f64,
    /// The share of forecasts below the actual rate.
    pub under_rate: f64,
    /// How far below, on average over those forecasts, as a fraction of the actual rate.
    pub under_mean: f64,
}

/// The outcome of one replay.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    pub lead: Duration,
    /// Windows ahead each forecast covers.
    pub lead_windows: usize,
    /// Windows scored.
    pub points: usize,
    /// Windows left out because their actual rate was 0.
    pub zero_windows: usize,
    pub methods: Vec<MethodScore>,
}

/// Reads a `window_start_s,rate` CSV (a header line, then rows at a fixed spacing).
pub fn read_rate_trace(path: &Path) -> Result<RateTrace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_rate_trace(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The rows of a `window_start_s,rate` file: (line number, window start, rate).
pub fn parse_rate_rows(text: &str) -> Result<Vec<(usize, f64, f64)>, String> {
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (number == 0 && line.starts_with(|c: char| c.is_alphabetic())) {
            continue;
        }
        let row = number + 1;
        let (start, rate) = line
            .split_once(',')
            .ok_or_else(|| format!("line {row}: expected `window_start_s,rate`, got `{line}`"))?;
        let start: f64 = start
            .trim()
            .parse()
            .map_err(|_| format!("line {row}: window_start_s `{start}` is not a number"))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| {
                format!("line {row}: rate `{rate}` is not allowed: expected a number at or above 0")
            })?;
        rows.push((row, start, rate));
    }
    Ok(rows)
}

pub fn parse_rate_trace(text: &str) -> Result<RateTrace, String> {
    let rows = parse_rate_rows(text)?;
    let starts: Vec<(usize, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let rates: Vec<f64> = rows.iter().map(|r| r.2).collect();
    if rates.len() < 2 {
        return Err("expected at least two windows".to_owned());
    }
    let width = starts[1].1 - starts[0].1;
    if !(width.is_finite() && width > 0.0) {
        return Err("window starts must increase".to_owned());
    }
    for pair in starts.windows(2) {
        if ((pair[1].1 - pair[0].1) - width).abs() > 1e-6 * width {
            return Err(format!(
                "line {}: window starts {} s after the previous one, expected {} s like the first two: the trace must have equal windows with none missing",
                pair[1].0,
                pair[1].1 - pair[0].1,
                width
            ));
        }
    }
    Ok(RateTrace {
        window: Duration::from_secs_f64(width),
        rates,
    })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn peak(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Replays the trace; an error says which setting does not fit it.
pub fn evaluate(trace: &RateTrace, settings: &EvalSettings) -> Result<EvalReport, String> {
    let window = trace.window.as_secs_f64();
    let windows_of = |d: Duration| d.as_secs_f64() / window;
    let period = windows_of(settings.period);
    if (period - period.round()).abs() > 1e-6 || period < 1.0 {
        return Err(format!(
            "--period {} is not a whole number of the trace's {} s windows",
            crate::config::ConfigDuration(settings.period),
            window
        ));
    }
    let period = period.round() as usize;
    let lead_windows = (windows_of(settings.lead).ceil() as usize).max(1);
    if lead_windows >= period {
        return Err("--lead must be shorter than --period".to_owned());
    }
    let level_windows = (windows_of(settings.level_window).round() as usize).max(1);
    let periods = settings.periods.max(1) as usize;
    let first = periods * period + level_windows;
    let rates = &trace.rates;
    if rates.len() < first + lead_windows {
        return Err(format!(
            "the trace has {} windows: the forecast needs {periods} periods of {period} windows before the first scored one",
            rates.len()
        ));
    }
    let mut errors: [Vec<(f64, f64)>; 3] = Default::default();
    let mut zero_windows = 0;
    for i in first..=rates.len() - lead_windows {
        let actual = peak(&rates[i..i + lead_windows]);
        if actual <= 0.0 {
            zero_windows += 1;
            continue;
        }
        let history = HistoryWindow {
            past: (1..=periods)
                .map(|k| {
                    let back = i - k * period;
                    PastPeriod {
                        periods_back: k as u32,
                        peak: peak(&rates[back..back + lead_windows]),
                        level: mean(&rates[back - level_windows..back]),
                    }
                })
                .collect(),
            level_now: mean(&rates[i - level_windows..i]),
        };
        let shipped = forecast(&history).map_or(history.level_now, |f| f.rate);
        let last_value = rates[i - 1];
        let seasonal_naive = peak(&rates[i - period..i - period + lead_windows]);
        for (slot, predicted) in errors.iter_mut().zip([shipped, last_value, seasonal_naive]) {
            slot.push((predicted, actual));
        }
    }
    let names = ["shipped", "last-value", "seasonal-naive"];
    let methods = names
        .iter()
        .zip(&errors)
        .map(|(name, pairs)| {
            let n = pairs.len().max(1) as f64;
            let mape = pairs.iter().map(|(f, a)| (f - a).abs() / a).sum::<f64>() / n;
            let under: Vec<f64> = pairs
                .iter()
                .filter(|(f, a)| f < a)
                .map(|(f, a)| (a - f) / a)
                .collect();
            MethodScore {
                name,
                mape,
                under_rate: under.len() as f64 / n,
                under_mean: if under.is_empty() { 0.0 } else { mean(&under) },
            }
        })
        .collect();
    Ok(EvalReport {
        lead: settings.lead,
        lead_windows,
        points: errors[0].len(),
        zero_windows,
        methods,
    })
}

impl EvalReport {
    /// `{"lead_s": N, "methods": [{"name", "mape", "under_rate", ...}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "lead_s": self.lead.as_secs_f64(),
            "lead_windows": self.lead_windows,
            "points": self.points,
            "zero_windows": self.zero_windows,
            "methods": self.methods.iter().map(|m| serde_json::json!({
                "name": m.name,
                "mape": m.mape,
                "under_rate": m.under_rate,
                "under_mean": m.under_mean,
            })).collect::<Vec<_>>(),
        })
    }

    /// A table a person reads.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lead {} ({} window(s)), {} windows scored, {} zero-rate windows left out\n",
            crate::config::ConfigDuration(self.lead),
            self.lead_windows,
            self.points,
            self.zero_windows
        );
        let _ = writeln!(
            out,
            "| method | MAPE | under-predicted | mean shortfall when under |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for m in &self.methods {
            let _ = writeln!(
                out,
                "| {} | {:.2} % | {:.1} % | {:.2} % |",
                m.name,
                m.mape * 100.0,
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

    fn settings(lead_s: u64) -> EvalSettings {
        EvalSettings {
            lead: Duration::from_secs(lead_s),
            period: Duration::from_secs(86_400),
            periods: 3,
            level_window: Duration::from_secs(600),
        }
    }

    /// Ten days of 10-minute windows with a clean daily cycle.
    fn daily_cycle() -> RateTrace {
        let rates = (0..10 * 144)
            .map(|i| {
                let phase = (i % 144) as f64 / 144.0 * std::f64::consts::TAU;
                1000.0 + 400.0 * phase.sin()
            })
            .collect();
        RateTrace {
            window: Duration::from_secs(600),
            rates,
        }
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
        assert_eq!(report.lead_windows, 3);
        assert_eq!(report.points, 10 * 144 - (3 * 144 + 1) - 3 + 1);
    }

    #[test]
    fn the_csv_is_checked_row_by_row() {
        let trace = parse_rate_trace("window_start_s,rate\n0,1\n600,2\n1200,3\n").unwrap();
        assert_eq!(trace.window, Duration::from_secs(600));
        assert_eq!(trace.rates, vec![1.0, 2.0, 3.0]);
        let gap = parse_rate_trace("window_start_s,rate\n0,1\n600,2\n1800,3\n").unwrap_err();
        assert!(
            gap.contains("line 4") && gap.contains("none missing"),
            "{gap}"
        );
        let bad = parse_rate_trace("window_start_s,rate\n0,1\n600,-2\n").unwrap_err();
        assert!(bad.contains("line 3") && bad.contains("`-2`"), "{bad}");
    }

    #[test]
    fn settings_that_do_not_fit_the_trace_are_refused() {
        let short = RateTrace {
            window: Duration::from_secs(600),
            rates: vec![1.0; 100],
        };
        assert!(
            evaluate(&short, &settings(600))
                .unwrap_err()
                .contains("needs 3 periods")
        );
        let mut odd = settings(600);
        odd.period = Duration::from_secs(86_000);
        assert!(
            evaluate(&daily_cycle(), &odd)
                .unwrap_err()
                .contains("whole number")
        );
    }
}
