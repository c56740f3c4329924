//! Latency objectives: the share of slow requests in a window, and how fast the error
//! budget burns (Google's SRE workbook, multi-window burn-rate alerts).

use super::error::SignalError;

/// One SLO's latency over its short and long window.
#[derive(Debug, Clone, PartialEq)]
pub struct SloWindows {
    /// The latency over the short window.
    pub short: LatencyWindow,
    /// The latency over the long window.
    pub long: LatencyWindow,
    /// The histogram that splits the misses, over the same two windows: a request above
    /// its bound misses however many replicas there are. For a TTFT SLO on an engine
    /// that exports each request's prefill time (vLLM's `request_prefill_time_seconds`)
    /// that histogram, bounded by the threshold; for a TPOT SLO with
    /// `floor_context_tokens`, the prompt-length histogram (vLLM's
    /// `request_prompt_tokens`), bounded by that length. `None` without one: every miss
    /// counts as one replicas can fix.
    pub unfixable: Option<(LatencyWindow, LatencyWindow)>,
}

/// One histogram bucket: requests per second with a latency at or below `le`
/// (cumulative, as Prometheus exports them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The upper bound in seconds; `f64::INFINITY` for `+Inf`.
    pub le: f64,
    /// Requests per second at or below `le`.
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

/// One window of an SLO, read: all misses, and the part replicas can fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowReading {
    /// Share of requests slower than the threshold; `None` without requests.
    pub error_ratio: Option<f64>,
    /// error_ratio / (1 - objective).
    pub burn: Option<f64>,
    /// Share of requests above the split's bound (see [`SloWindows::unfixable`]); `None`
    /// without a split.
    pub unfixable_ratio: Option<f64>,
    /// max(0, error_ratio - unfixable_ratio) / (1 - objective): what the term acts on.
    pub fixable_burn: Option<f64>,
}

/// Both windows of an SLO, read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The short window, which reacts.
    pub short: WindowReading,
    /// The long window, which keeps a blip from scaling.
    pub long: WindowReading,
}

/// Reads both windows, splitting the misses with the histogram of
/// [`SloWindows::unfixable`] at `split_bound` (no split without one).
///
/// TTFT is queueing plus prefill, so TTFT >= prefill: every request whose prefill alone
/// exceeds the threshold misses, and the misses above that share (prefill within the
/// threshold, TTFT over it) are the ones queueing caused, which more replicas remove.
/// vLLM records a request's prefill time when it finishes and its TTFT at the first
/// token, so the two histograms count slightly different requests in a window; over
/// minutes of traffic their shares agree. The prefill slowdown that sharing a replica
/// causes counts with the unfixable share here: the split never asks for replicas a
/// miss may not need.
///
/// TPOT on an idle replica grows with the context each decode step reads, so a request
/// whose prompt is longer than the model's floor context misses on any fleet; the misses
/// above that share come from sharing a replica (larger batches, other requests'
/// chunked prefill), which more replicas remove. The prompt-length histogram counts
/// requests; where the TPOT histogram counts tokens (vLLM's inter-token latency), the
/// shares agree when long prompts produce as many tokens as short ones.
pub fn read_windows(
    windows: &SloWindows,
    threshold: f64,
    objective: f64,
    split_bound: Option<f64>,
) -> Result<Reading, SignalError> {
    let read = |latency: &LatencyWindow, split: Option<&LatencyWindow>| {
        let misses = error_ratio(latency, threshold)?;
        let unfixable_ratio = match (split, split_bound) {
            (Some(split), Some(bound)) => error_ratio(split, bound)?,
            _ => None,
        };
        let fixable = misses.map(|e| (e - unfixable_ratio.unwrap_or(0.0)).max(0.0));
        Ok::<_, SignalError>(WindowReading {
            error_ratio: misses,
            burn: misses.map(|e| burn_rate(e, objective)),
            unfixable_ratio: misses.and(unfixable_ratio),
            fixable_burn: fixable.map(|e| burn_rate(e, objective)),
        })
    };
    let (short_split, long_split) = match &windows.unfixable {
        Some((short, long)) => (Some(short), Some(long)),
        None => (None, None),
    };
    Ok(Reading {
        short: read(&windows.short, short_split)?,
        long: read(&windows.long, long_split)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vLLM's TTFT buckets around 2 s, cumulative: 60 requests/s at or below 1 s,
    /// 90 at or below 2.5 s, 100 in all.
    fn vllm_like() -> Vec<Bucket> {
        [
            (0.5, 20.0),
            (1.0, 60.0),
            (2.5, 90.0),
            (5.0, 98.0),
            (f64::INFINITY, 100.0),
        ]
        .into_iter()
        .map(|(le, rate)| Bucket { le, rate })
        .collect()
    }

    /// The ratio rounded to 12 decimals, so expected values can be written plainly.
    fn ratio(buckets: Vec<Bucket>, threshold: f64) -> Option<f64> {
        error_ratio(&LatencyWindow::Buckets(buckets), threshold)
            .unwrap()
            .map(|r| (r * 1e12).round() / 1e12)
    }

    #[test]
    fn a_threshold_on_a_bound_reads_that_bucket() {
        assert_eq!(ratio(vllm_like(), 1.0), Some(0.4));
        assert_eq!(ratio(vllm_like(), 5.0), Some(0.02));
    }

    #[test]
    fn a_threshold_inside_a_bucket_interpolates_linearly() {
        // 2 s is 2/3 of the way from 1 to 2.5: 60 + (90 - 60) x 2/3 = 80 good.
        let r = ratio(vllm_like(), 2.0).unwrap();
        assert!((r - 0.2).abs() < 1e-12, "{r}");
        // Below the first bound, from 0: 20 x 0.25 / 0.5 = 10 good.
        let r = ratio(vllm_like(), 0.25).unwrap();
        assert!((r - 0.9).abs() < 1e-12, "{r}");
    }

    #[test]
    fn a_threshold_above_the_last_finite_bound_counts_the_rest_as_slow() {
        assert_eq!(ratio(vllm_like(), 60.0), Some(0.02));
    }

    #[test]
    fn buckets_in_any_order_and_split_series_are_combined() {
        let mut buckets = vllm_like();
        buckets.reverse();
        // The same histogram from a second engine version, its le written differently.
        buckets.extend(vllm_like());
        assert_eq!(ratio(buckets, 1.0), Some(0.4));
    }

    #[test]
    fn a_dip_between_buckets_is_flattened() {
        let mut buckets = vllm_like();
        buckets[2].rate = 55.0; // below the 1 s bucket: scraped a moment apart
        let r = ratio(buckets, 2.5).unwrap();
        assert!((r - 0.4).abs() < 1e-12, "{r}");
    }

    #[test]
    fn no_requests_means_no_ratio() {
        let idle: Vec<Bucket> = vllm_like()
            .into_iter()
            .map(|b| Bucket { rate: 0.0, ..b })
            .collect();
        assert_eq!(ratio(idle, 2.0), None);
        assert_eq!(ratio(Vec::new(), 2.0), None);
        assert_eq!(
            error_ratio(&LatencyWindow::SlowShare(None), 2.0).unwrap(),
            None
        );
    }

    #[test]
    fn bad_values_are_errors_not_numbers() {
        let mut nan = vllm_like();
        nan[1].rate = f64::NAN;
        assert!(error_ratio(&LatencyWindow::Buckets(nan), 2.0).is_err());
        let mut negative = vllm_like();
        negative[0].rate = -1.0;
        assert!(error_ratio(&LatencyWindow::Buckets(negative), 2.0).is_err());
        let no_inf: Vec<Bucket> = vllm_like().into_iter().take(4).collect();
        assert_eq!(
            error_ratio(&LatencyWindow::Buckets(no_inf), 2.0),
            Err(SignalError::NoInfBucket)
        );
        assert!(error_ratio(&LatencyWindow::SlowShare(Some(1.5)), 2.0).is_err());
    }

    #[test]
    fn a_gauge_share_is_the_ratio() {
        assert_eq!(
            error_ratio(&LatencyWindow::SlowShare(Some(0.25)), 2.0).unwrap(),
            Some(0.25)
        );
    }

    #[test]
    fn burn_rate_is_error_ratio_over_budget() {
        assert!((burn_rate(0.02, 0.99) - 2.0).abs() < 1e-9);
        assert_eq!(burn_rate(0.0, 0.99), 0.0);
    }
}
