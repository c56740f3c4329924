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
//! - forecast = L x ratio x e^(w g)
//!
//! Where the past level is 0 (the fleet was idle at this time of day), the forecast is the
//! median peak: a daily spike from zero is still foreseen. No past period at all: no
//! forecast.

/// One past period's stretch of the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PastPeriod {
    /// Periods back (1 = one period ago).
    pub periods_back: u32,
    /// The highest rate over [now - kP, now - kP + lead].
    pub peak: f64,
    /// The mean rate over the level window ending at now - kP.
    pub level: f64,
}

/// What the forecast is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryWindow {
    pub past: Vec<PastPeriod>,
    /// The mean rate over the level window ending now.
    pub level_now: f64,
}

/// The forecast and its parts, for Explain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The rate expected over [now, now + lead].
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
}

/// Bounds on today's level against the past: beyond them, one of the two is not a level
/// but an outage or a one-off, and the forecast should not follow it all the way.
pub const LEVEL_RATIO_RANGE: (f64, f64) = (0.5, 2.0);

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

/// The forecast; `None` without any usable past period (a new model).
pub fn forecast(history: &HistoryWindow) -> Option<Forecast> {
    let past: Vec<&PastPeriod> = history
        .past
        .iter()
        .filter(|p| usable(p.peak) && usable(p.level))
        .collect();
    if past.is_empty() {
        return None;
    }
    let level_now = if usable(history.level_now) {
        history.level_now
    } else {
        0.0
    };
    let past_peak = median(&mut past.iter().map(|p| p.peak).collect::<Vec<_>>());
    let past_level = median(&mut past.iter().map(|p| p.level).collect::<Vec<_>>());
    if past_level <= 0.0 {
        return Some(Forecast {
            rate: past_peak,
            past_peak,
            past_level,
            level_ratio: 1.0,
            seasonal_change: 1.0,
            agreement: 0.0,
            periods: past.len(),
        });
    }
    let level_ratio = (level_now / past_level).clamp(LEVEL_RATIO_RANGE.0, LEVEL_RATIO_RANGE.1);
    let mut changes: Vec<f64> = past
        .iter()
        .filter(|p| p.peak > 0.0 && p.level > 0.0)
        .map(|p| (p.peak / p.level).ln())
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
    Some(Forecast {
        rate: past_level * level_ratio * seasonal_change,
        past_peak,
        past_level,
        level_ratio,
        seasonal_change,
        agreement,
        periods: past.len(),
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
            level_now: 100.0,
        };
        let f = forecast(&history).unwrap();
        assert!(close(f.rate, 1000.0), "{f:?}");
        assert_eq!(f.agreement, 1.0);
        let busier = HistoryWindow {
            level_now: 150.0,
            ..history
        };
        assert!(close(forecast(&busier).unwrap().rate, 1500.0));
    }

    #[test]
    fn the_level_ratio_is_clipped() {
        let history = HistoryWindow {
            past: past(&[(200.0, 100.0); 3]),
            level_now: 1000.0,
        };
        let f = forecast(&history).unwrap();
        assert_eq!(f.level_ratio, LEVEL_RATIO_RANGE.1);
        assert!(close(f.rate, 400.0));
        // Today at zero (a fleet scaled to zero) still gets half the usual forecast.
        let idle = HistoryWindow {
            level_now: 0.0,
            ..history
        };
        assert!(close(forecast(&idle).unwrap().rate, 100.0));
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
            level_now: 500.0,
        };
        let f = forecast(&history).unwrap();
        assert_eq!(f.past_peak, 1000.0);
        assert!(f.rate >= 500.0 && f.rate <= 1000.0 + 1e-9, "{f:?}");
    }

    #[test]
    fn disagreeing_periods_are_trusted_less() {
        let agree = HistoryWindow {
            past: past(&[(200.0, 100.0), (200.0, 100.0), (200.0, 100.0)]),
            level_now: 100.0,
        };
        let disagree = HistoryWindow {
            past: past(&[(200.0, 100.0), (400.0, 100.0), (60.0, 100.0)]),
            level_now: 100.0,
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
            level_now: 0.0,
        };
        let f = forecast(&history).unwrap();
        assert_eq!(f.rate, 900.0);
    }

    #[test]
    fn no_history_means_no_forecast() {
        let empty = HistoryWindow {
            past: Vec::new(),
            level_now: 300.0,
        };
        assert_eq!(forecast(&empty), None);
        let unusable = HistoryWindow {
            past: past(&[(f64::NAN, 1.0), (-1.0, 1.0)]),
            level_now: 300.0,
        };
        assert_eq!(forecast(&unusable), None);
    }
}
