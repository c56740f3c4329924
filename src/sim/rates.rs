//! Rate files, `window_start_s,rate`: equal windows of a recorded request rate, read with
//! every absurd number refused (line, value and what is allowed), for the backtest's
//! arrivals and for `forecast-eval`. For `forecast-eval` the windows are a grid: a window
//! with no row is a gap in the recording (Prometheus's `query_range` leaves out the steps
//! it has no sample for), and starts may be Unix times, as Prometheus exports them.

use super::error::SimError;
use std::{path::Path, time::Duration};

/// A rate trace of equal windows.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTrace {
    /// Width of every window.
    pub window: Duration,
    /// The rate of each window, in order; `None` for a window the file has no row for.
    pub rates: Vec<Option<f64>>,
}

impl RateTrace {
    /// A trace with every window recorded.
    pub fn recorded(window: Duration, rates: impl IntoIterator<Item = f64>) -> Self {
        RateTrace {
            window,
            rates: rates.into_iter().map(Some).collect(),
        }
    }
}

/// Reads a `window_start_s,rate` CSV (a header line, then rows at a fixed spacing).
pub fn read_rate_trace(path: &Path) -> Result<RateTrace, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_rate_trace(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The latest window start a replayed rate file may have: ten years of seconds. Later ones
/// are typos or milliseconds, and would overflow the replay's clock.
pub const MAX_WINDOW_START_S: f64 = 10.0 * 366.0 * 86_400.0;
/// The latest window start `forecast-eval` reads: 2200-01-01 as a Unix time, so a
/// Prometheus export's timestamps pass and milliseconds do not.
pub const MAX_UNIX_START_S: f64 = 7_258_118_400.0;
/// The most windows a `forecast-eval` trace may span, gaps included: 38 years of
/// 10-minute windows. Past it a start is a typo, and the grid would not fit in memory.
pub const MAX_WINDOWS: usize = 2_000_000;
/// The highest rate a rate file may give, requests per second: a million, far past any
/// fleet, so that a typo cannot make a replay draw arrivals without end.
pub const MAX_RATE: f64 = 1e6;

/// The rows of a `window_start_s,rate` file to be replayed: (line number, window start,
/// rate).
pub fn parse_rate_rows(text: &str) -> Result<Vec<(usize, f64, f64)>, String> {
    parse_rows(text, (MAX_WINDOW_START_S, "10 years"))
}

/// The rows, each start from 0 to `latest.0` seconds (`latest.1` says what that is).
fn parse_rows(text: &str, latest: (f64, &str)) -> Result<Vec<(usize, f64, f64)>, String> {
    let (max_start, what) = latest;
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
        let text = start.trim();
        let start: f64 = text
            .parse()
            .map_err(|_| format!("line {row}: window_start_s `{start}` is not a number"))?;
        if !(0.0..=max_start).contains(&start) {
            return Err(format!(
                "line {row}: window_start_s `{text}` is not allowed: expected seconds from 0 to {max_start} ({what})"
            ));
        }
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=MAX_RATE).contains(r))
            .ok_or_else(|| {
                format!("line {row}: rate `{rate}` is not allowed: expected requests per second from 0 to {MAX_RATE}")
            })?;
        rows.push((row, start, rate));
    }
    Ok(rows)
}

/// Parses a rate file's text (`window_start_s,<rate>`) onto its grid of windows: the
/// window is the smallest step between two rows, every row's start is a whole number of
/// windows after the first's, and a window with no row is a gap (`None`).
pub fn parse_rate_trace(text: &str) -> Result<RateTrace, SimError> {
    let rows = parse_rows(text, (MAX_UNIX_START_S, "a Unix time before 2200"))?;
    if rows.len() < 2 {
        return Err("expected at least two windows".to_owned().into());
    }
    for pair in rows.windows(2) {
        if pair[1].1 <= pair[0].1 {
            return Err(format!(
                "line {}: window_start_s {} does not follow {}: window starts must increase",
                pair[1].0, pair[1].1, pair[0].1
            )
            .into());
        }
    }
    let width = rows
        .windows(2)
        .map(|pair| pair[1].1 - pair[0].1)
        .fold(f64::INFINITY, f64::min);
    let first = rows[0].1;
    let mut rates: Vec<Option<f64>> = Vec::new();
    for &(line, start, rate) in &rows {
        let steps = (start - first) / width;
        let index = steps.round();
        if (steps - index).abs() > 1e-6 * steps.max(1.0) {
            return Err(format!(
                "line {line}: window_start_s {start} is {} s after the first row, not a whole number of the trace's {width} s windows (the smallest step between two rows)",
                start - first
            )
            .into());
        }
        let index = index as usize;
        if index >= MAX_WINDOWS {
            return Err(format!(
                "line {line}: window_start_s {start} would make the trace span more than {MAX_WINDOWS} windows of {width} s"
            )
            .into());
        }
        rates.resize(index, None);
        rates.push(Some(rate));
    }
    Ok(RateTrace {
        window: Duration::from_secs_f64(width),
        rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_window_starts_and_rates_are_refused_naming_the_line() {
        let e = parse_rate_rows("window_start_s,rate\n0,5\n1e20,5\n").unwrap_err();
        assert!(
            e.starts_with("line 3: window_start_s `1e20` is not allowed"),
            "{e}"
        );
        for start in ["-600", "inf", "NaN"] {
            let text = format!("window_start_s,rate\n0,5\n{start},5\n");
            assert!(parse_rate_rows(&text).is_err(), "{start}");
        }
        let e = parse_rate_rows("window_start_s,rate\n0,1e300\n").unwrap_err();
        assert!(e.contains("rate `1e300` is not allowed"), "{e}");
        assert_eq!(parse_rate_rows("w,r\n0,5\n600,0\n").unwrap().len(), 2);
    }
}
