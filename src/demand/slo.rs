//! Latency objectives: the share of slow requests in a window, and how fast the error
//! budget burns (Google's SRE workbook, multi-window burn-rate alerts).

use super::SignalError;

/// One histogram bucket: requests per second with a latency at or below `le`
/// (cumulative, as Prometheus exports them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The upper bound in seconds; `f64::INFINITY` for `+Inf`.
    pub le: f64,
    pub rate: f64,
}

/// What the source observed about a latency in one window.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencyWindow {
    /// A histogram's bucket rates (any order; equal bounds are summed).
    Buckets(Vec<Bucket>),
    /// For engines that export only a last-value gauge: the share of the gauge's samples
    /// above the threshold, or `None` when the window holds no samples.
    SlowShare(Option<f64>),
}

/// The share of requests slower than `threshold` seconds; `None` when the window holds
/// no requests. Inside a bucket the requests are taken as evenly spread (linear
/// interpolation, as `histogram_quantile` does); a threshold above the last finite bound
/// counts every request beyond that bound as slow.
pub fn error_ratio(window: &LatencyWindow, threshold: f64) -> Result<Option<f64>, SignalError> {
    let buckets = match window {
        LatencyWindow::SlowShare(None) => return Ok(None),
        LatencyWindow::SlowShare(Some(share)) => {
            return if share.is_finite() && (0.0..=1.0).contains(share) {
                Ok(Some(*share))
            } else {
                Err(SignalError::BadFleetValue {
                    signal: "share of slow latency samples",
                    value: *share,
                })
            };
        }
        LatencyWindow::Buckets(buckets) => buckets,
    };
    let mut sorted: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        if bucket.le.is_nan() || !(bucket.rate.is_finite() && bucket.rate >= 0.0) {
            return Err(SignalError::BadFleetValue {
                signal: "latency histogram bucket rate",
                value: if bucket.le.is_nan() {
                    bucket.le
                } else {
                    bucket.rate
                },
            });
        }
        match sorted.iter_mut().find(|b| b.le == bucket.le) {
            Some(same) => same.rate += bucket.rate,
            None => sorted.push(*bucket),
        }
    }
    sorted.sort_by(|a, b| a.le.total_cmp(&b.le));
    let Some(total) = sorted
        .last()
        .filter(|b| b.le == f64::INFINITY)
        .map(|b| b.rate)
    else {
        return if sorted.is_empty() {
            // No series at all: nothing was served in the window.
            Ok(None)
        } else {
            Err(SignalError::NoInfBucket)
        };
    };
    // Buckets scraped a moment apart can dip; like histogram_quantile, keep them monotonic.
    let mut running = 0.0f64;
    for bucket in &mut sorted {
        running = running.max(bucket.rate);
        bucket.rate = running;
    }
    let total = total.max(running);
    if total <= 0.0 {
        return Ok(None);
    }
    let mut lower = (0.0, 0.0);
    let mut good = None;
    for bucket in &sorted {
        if bucket.le >= threshold {
            good = Some(if bucket.le == f64::INFINITY {
                lower.1
            } else if bucket.le == threshold || bucket.le <= lower.0 {
                bucket.rate
            } else {
                lower.1 + (bucket.rate - lower.1) * (threshold - lower.0) / (bucket.le - lower.0)
            });
            break;
        }
        lower = (bucket.le, bucket.rate);
    }
    let good = good.unwrap_or(total);
    Ok(Some((1.0 - good / total).clamp(0.0, 1.0)))
}

/// How many times faster than allowed the error budget burns.
pub fn burn_rate(error_ratio: f64, objective: f64) -> f64 {
    error_ratio / (1.0 - objective)
}
