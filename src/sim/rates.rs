//! Rate files, `window_start_s,rate`: equal windows of a recorded request rate, read with
//! every absurd number refused (line, value and what is allowed), for the backtest's
//! arrivals and for `forecast-eval`.

use super::error::SimError;
use std::{path::Path, time::Duration};

/// A rate trace of equal windows.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTrace {
    /// Width of every window.
    pub window: Duration,
    /// The rate of each window, in order.
    pub rates: Vec<f64>,
}

/// Reads a `window_start_s,rate` CSV (a header line, then rows at a fixed spacing).
pub fn read_rate_trace(path: &Path) -> Result<RateTrace, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_rate_trace(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The latest window start a rate file may have: ten years of seconds. Later ones are
/// typos or milliseconds, and would overflow the replay's clock.
pub const MAX_WINDOW_START_S: f64 = 10.0 * 366.0 * 86_400.0;
/// The highest rate a rate file may give, requests per second: a million, far past any
/// fleet, so that a typo cannot make a replay draw arrivals without end.
pub const MAX_RATE: f64 = 1e6;

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
        let text = start.trim();
        let start: f64 = text
            .parse()
            .map_err(|_| format!("line {row}: window_start_s `{start}` is not a number"))?;
        if !(0.0..=MAX_WINDOW_START_S).contains(&start) {
            return Err(format!(
                "line {row}: window_start_s `{text}` is not allowed: expected seconds from 0 to {MAX_WINDOW_START_S} (10 years)"
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

/// Parses a rate file's text (`window_start_s,<rate>`).
pub fn parse_rate_trace(text: &str) -> Result<RateTrace, SimError> {
    let rows = parse_rate_rows(text)?;
    let starts: Vec<(usize, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let rates: Vec<f64> = rows.iter().map(|r| r.2).collect();
    if rates.len() < 2 {
        return Err("expected at least two windows".to_owned().into());
    }
    let width = starts[1].1 - starts[0].1;
    if !(width.is_finite() && width > 0.0) {
        return Err("window starts must increase".to_owned().into());
    }
    for pair in starts.windows(2) {
        if ((pair[1].1 - pair[0].1) - width).abs() > 1e-6 * width {
            return Err(format!(
                "line {}: window starts {} s after the previous one, expected {} s like the first two: the trace must have equal windows with none missing",
                pair[1].0,
                pair[1].1 - pair[0].1,
                width
            ).into());
        }
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
