//! Prometheus' answers read as values: per replica, for the fleet, latency buckets by
//! `le`, the history's periods. A series without the label it needs is an error.

use super::{api::Sample, error::ReadError};
use crate::{
    demand::{
        ReplicaValue,
        forecast::{HistoryWindow, PastPeriod, RecentLevels, recent_steps},
        slo::{Bucket, LatencyWindow},
    },
    query::{AGO_LABEL, LEVEL_LABEL, LONG_LEVEL, LatencyKind, PERIOD_LABEL, Signal},
};

pub(super) fn latency_window(
    kind: LatencyKind,
    samples: Vec<Sample>,
) -> Result<LatencyWindow, ReadError> {
    match kind {
        LatencyKind::Gauge => match samples.as_slice() {
            [] => Ok(LatencyWindow::SlowShare(None)),
            [only] => Ok(LatencyWindow::SlowShare(Some(only.value))),
            many => Err(ReadError::SeriesCount {
                signal: "latency",
                count: many.len(),
                expected: "share",
            }),
        },
        LatencyKind::Histogram { le_scale_millis } => samples
            .into_iter()
            .map(|sample| {
                let text = sample.labels.get("le").ok_or(ReadError::NoBucketLabel)?;
                let le = parse_le(text)
                    .ok_or_else(|| ReadError::BadBucketBound(text.escape_debug().to_string()))?;
                Ok(Bucket {
                    le: if le_scale_millis { le / 1000.0 } else { le },
                    rate: sample.value,
                })
            })
            .collect::<Result<Vec<_>, ReadError>>()
            .map(LatencyWindow::Buckets),
    }
}

/// The output-length histogram, checked as a distribution: its buckets must have a
/// `+Inf` bound and finite rates at or above 0. A malformed one is a read error, so
/// the share of short answers it would give is reported unread with its cause rather
/// than silently unknown.
pub(super) fn length_window(samples: Vec<Sample>) -> Result<LatencyWindow, ReadError> {
    let kind = LatencyKind::Histogram {
        le_scale_millis: false,
    };
    let window = latency_window(kind, samples)?;
    // The bound is arbitrary: any read walks every bucket and checks it.
    crate::demand::slo::error_ratio(&window, 1.0).map_err(|cause| ReadError::BadHistogram {
        signal: "output_lengths",
        cause,
    })?;
    Ok(window)
}

/// A bucket bound as Prometheus writes it: `0.5`, `1`, `1e+00`, `+Inf`.
fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => text.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

fn by_period(samples: &[Sample], what: &'static str) -> Result<Vec<(u32, f64)>, ReadError> {
    samples
        .iter()
        .map(|sample| {
            sample
                .labels
                .get(PERIOD_LABEL)
                .and_then(|k| k.parse::<u32>().ok())
                .map(|k| (k, sample.value))
                .ok_or(ReadError::NoPeriodLabel(what))
        })
        .collect()
}

pub(super) fn history_window(
    peaks: Vec<Sample>,
    levels: Vec<Sample>,
) -> Result<HistoryWindow, ReadError> {
    let peaks = by_period(&peaks, "history peak")?;
    let (long_levels, levels): (Vec<Sample>, Vec<Sample>) = levels
        .into_iter()
        .partition(|s| s.labels.get(LEVEL_LABEL).is_some_and(|l| l == LONG_LEVEL));
    let levels = by_period(&levels, "history level")?;
    let long_levels = by_period(&long_levels, "history long level")?;
    let at = |series: &[(u32, f64)], k: u32| series.iter().find(|(l, _)| *l == k).map(|l| l.1);
    let mut past: Vec<PastPeriod> = peaks
        .iter()
        .filter(|(k, _)| *k > 0)
        .filter_map(|&(k, peak)| {
            Some(PastPeriod {
                periods_back: k,
                peak,
                level: at(&levels, k)?,
                long_level: at(&long_levels, k),
            })
        })
        .collect();
    past.sort_by_key(|p| p.periods_back);
    // A fleet with no traffic now has no series now: no level, which the forecast
    // tells from a measured 0.
    Ok(HistoryWindow {
        past,
        level_now: at(&levels, 0),
        long_level_now: at(&long_levels, 0).unwrap_or(0.0),
        recent: None,
    })
}

/// More bands than a config can ask for (eight past periods and today).
const MAX_BANDS: usize = 16;

/// The recent levels from the range vector's samples, each tagged with its period and
/// how many seconds before the query it was taken: sample n of a band is the one taken
/// n windows (rounded down) before the latest step. Samples past the bands' length are
/// left out.
pub(super) fn recent_levels(
    samples: Vec<Sample>,
    window: std::time::Duration,
    lead_steps: u32,
) -> Result<RecentLevels, ReadError> {
    let steps = recent_steps(lead_steps as usize);
    let window = window.as_secs_f64().max(1.0);
    let mut bands: Vec<Vec<Option<f64>>> = Vec::new();
    for sample in samples {
        let k = sample
            .labels
            .get(PERIOD_LABEL)
            .and_then(|k| k.parse::<usize>().ok())
            .ok_or(ReadError::NoPeriodLabel("history recent"))?;
        let ago = sample
            .labels
            .get(AGO_LABEL)
            .and_then(|a| a.parse::<f64>().ok())
            .ok_or(ReadError::NoPeriodLabel("history recent"))?;
        let n = (ago / window).floor() as usize;
        // A period past what any config reads is not ours (and would size the bands).
        if k > MAX_BANDS || n >= steps {
            continue;
        }
        if bands.len() <= k {
            bands.resize(k + 1, vec![None; steps]);
        }
        bands[k][n] = Some(sample.value);
    }
    Ok(RecentLevels {
        bands,
        lead_steps: lead_steps as usize,
    })
}

/// One value per replica from a per-replica answer.
pub fn by_replica(
    signal: Signal,
    label: &str,
    samples: Vec<Sample>,
) -> Result<Vec<ReplicaValue>, ReadError> {
    samples
        .into_iter()
        .map(|sample| match sample.labels.get(label) {
            Some(replica) if !replica.is_empty() => Ok(ReplicaValue {
                replica: replica.clone(),
                value: sample.value,
            }),
            _ => Err(ReadError::NoReplicaLabel {
                signal: signal.as_str(),
                label: label.to_owned(),
            }),
        })
        .collect()
}

/// A fleet-wide sum: no series means a fleet at zero.
/// A mean over finished requests: no series (none finished) is no mean, not 0.
pub(super) fn mean(signal: Signal, samples: Vec<Sample>) -> Result<Option<f64>, ReadError> {
    if samples.is_empty() {
        return Ok(None);
    }
    let value = fleet_value(signal, samples)?;
    if value.is_finite() && value > 0.0 {
        Ok(Some(value))
    } else {
        Err(ReadError::BadMean {
            signal: signal.as_str(),
            value,
        })
    }
}

/// The fleet's one value from a fleet answer; no series is 0 (a fleet with no traffic
/// exports no rate), several are an error.
pub fn fleet_value(signal: Signal, samples: Vec<Sample>) -> Result<f64, ReadError> {
    match samples.as_slice() {
        [] => Ok(0.0),
        [only] => Ok(only.value),
        many => Err(ReadError::SeriesCount {
            signal: signal.as_str(),
            count: many.len(),
            expected: "sum",
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn tagged(period: &str, value: f64) -> Sample {
        Sample {
            labels: HashMap::from([(PERIOD_LABEL.to_owned(), period.to_owned())]),
            value,
        }
    }

    #[test]
    fn a_period_prometheus_has_no_samples_for_is_left_out() {
        // Period 2 fell in a scrape outage: neither its peak nor its level came back.
        let peaks = vec![tagged("1", 900.0), tagged("3", 1100.0)];
        let levels = vec![tagged("0", 500.0), tagged("1", 450.0), tagged("3", 550.0)];
        let history = history_window(peaks, levels).unwrap();
        let back: Vec<u32> = history.past.iter().map(|p| p.periods_back).collect();
        assert_eq!(back, [1, 3]);
        assert_eq!(history.past[1].peak, 1100.0);
        assert_eq!(history.past[1].level, 550.0);
        assert_eq!(history.level_now, Some(500.0));
        // A peak without its level is no period either.
        let history = history_window(vec![tagged("2", 700.0)], vec![tagged("0", 1.0)]).unwrap();
        assert!(history.past.is_empty());
    }

    #[test]
    fn no_series_now_is_no_level_and_an_untagged_series_is_an_error() {
        let history = history_window(vec![tagged("1", 10.0)], vec![tagged("1", 5.0)]).unwrap();
        assert_eq!(history.level_now, None);
        let untagged = Sample {
            labels: HashMap::new(),
            value: 1.0,
        };
        let error = history_window(vec![untagged], Vec::new()).unwrap_err();
        assert_eq!(error, ReadError::NoPeriodLabel("history peak"));
    }

    #[test]
    fn recent_levels_are_placed_by_period_and_age() {
        let point = |k: &str, ago: &str, value: f64| Sample {
            labels: HashMap::from([
                (PERIOD_LABEL.to_owned(), k.to_owned()),
                (AGO_LABEL.to_owned(), ago.to_owned()),
            ]),
            value,
        };
        let window = std::time::Duration::from_secs(600);
        // Taken 42 s after the latest step: ages 42, 642, ... are steps 0, 1, ...
        let samples = vec![
            point("0", "42", 10.0),
            point("0", "642", 11.0),
            point("2", "1242", 12.0),
            // Older than the bands hold, and a period no config reads: left out.
            point("0", "999999", 1.0),
            point("99", "42", 1.0),
        ];
        let recent = recent_levels(samples, window, 1).unwrap();
        let steps = recent_steps(1);
        assert_eq!(recent.bands.len(), 3);
        assert!(recent.bands.iter().all(|b| b.len() == steps));
        assert_eq!(recent.bands[0][..2], [Some(10.0), Some(11.0)]);
        assert_eq!(recent.bands[1], vec![None; steps]);
        assert_eq!(recent.bands[2][2], Some(12.0));
        assert_eq!(recent.lead_steps, 1);
        let untagged = point("0", "x", 1.0);
        assert_eq!(
            recent_levels(vec![untagged], window, 1).unwrap_err(),
            ReadError::NoPeriodLabel("history recent")
        );
    }
}
