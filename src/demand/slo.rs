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
                signal: "histogram bucket rate",
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

/// The bound a split histogram is read at (see [`SloWindows::unfixable`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// Seconds, as the SLO's latency is (TTFT's prefill time at the threshold): read at
    /// the latency histogram's resolution, so that the two shares carry the same
    /// interpolation (see [`unfixable_ratio`]).
    Seconds(f64),
    /// Another quantity (TPOT's prompt length at the floor context): read at its own
    /// buckets.
    Other(f64),
}

/// The finite bucket bounds of a latency histogram around `threshold`: the threshold
/// twice when it is a bound (or beyond the last one: the last bound twice), else the
/// bounds of the bucket that holds it (0 below the first). `None` for a gauge's window.
fn bracket(window: &LatencyWindow, threshold: f64) -> Option<(f64, f64)> {
    let LatencyWindow::Buckets(buckets) = window else {
        return None;
    };
    let mut bounds: Vec<f64> = buckets
        .iter()
        .map(|b| b.le)
        .filter(|le| le.is_finite())
        .collect();
    bounds.sort_by(f64::total_cmp);
    match bounds.iter().position(|&le| le >= threshold) {
        Some(i) if bounds[i] == threshold => Some((threshold, threshold)),
        Some(0) => Some((0.0, bounds[0])),
        Some(i) => Some((bounds[i - 1], bounds[i])),
        None => bounds.last().map(|&last| (last, last)),
    }
}

/// The share of requests above the split's bound. A time split is read where the
/// latency histogram can tell misses apart: at the bounds of the latency bucket that
/// holds the threshold, interpolated between them as [`error_ratio`] interpolates the
/// misses. vLLM's TTFT buckets jump from 1 s to 2.5 s, so a 2 s threshold counts a third
/// of every request in between as a miss; read at 2 s exactly, the prefill histogram
/// would not, and requests that never queued would pass for misses replicas fix. Read
/// this way, a fleet where no request queues has no fixable miss.
fn unfixable_ratio(
    latency: &LatencyWindow,
    threshold: f64,
    split: &LatencyWindow,
    bound: Split,
) -> Result<Option<f64>, SignalError> {
    let bound = match bound {
        Split::Other(bound) => return error_ratio(split, bound),
        Split::Seconds(bound) => bound,
    };
    match bracket(latency, threshold) {
        Some((lo, hi)) if lo < hi => {
            let (Some(above_lo), Some(above_hi)) =
                (error_ratio(split, lo)?, error_ratio(split, hi)?)
            else {
                return Ok(None);
            };
            Ok(Some(
                above_lo + (above_hi - above_lo) * (threshold - lo) / (hi - lo),
            ))
        }
        Some((at, _)) => error_ratio(split, at),
        None => error_ratio(split, bound),
    }
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
    split_bound: Option<Split>,
) -> Result<Reading, SignalError> {
    let read = |latency: &LatencyWindow, split: Option<&LatencyWindow>| {
        let misses = error_ratio(latency, threshold)?;
        let unfixable_ratio = match (split, split_bound) {
            (Some(split), Some(bound)) => unfixable_ratio(latency, threshold, split, bound)?,
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

    /// A cumulative histogram of `requests` (latency, requests/s) over `bounds`.
    fn histogram(requests: &[(f64, f64)], bounds: &[f64]) -> LatencyWindow {
        let count = |le: f64| requests.iter().filter(|r| r.0 <= le).map(|r| r.1).sum();
        let mut buckets: Vec<Bucket> = bounds
            .iter()
            .map(|&le| Bucket {
                le,
                rate: count(le),
            })
            .collect();
        buckets.push(Bucket {
            le: f64::INFINITY,
            rate: count(f64::INFINITY),
        });
        LatencyWindow::Buckets(buckets)
    }

    /// vLLM's TTFT bounds (1 s then 2.5 s around a 2 s threshold) and its request
    /// phase-time bounds (2 s among them).
    const TTFT_BOUNDS: [f64; 6] = [0.25, 0.5, 0.75, 1.0, 2.5, 5.0];
    const PHASE_BOUNDS: [f64; 8] = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0];

    /// Prefill times of 100 requests/s, long prompts among them.
    const PREFILLS: [(f64, f64); 7] = [
        (0.4, 20.0),
        (0.9, 40.0),
        (1.2, 10.0),
        (1.8, 15.0),
        (2.2, 5.0),
        (3.0, 8.0),
        (6.0, 2.0),
    ];

    fn fixable(ttft: &[(f64, f64)]) -> (f64, f64) {
        let windows = SloWindows {
            short: histogram(ttft, &TTFT_BOUNDS),
            long: histogram(ttft, &TTFT_BOUNDS),
            unfixable: Some((
                histogram(&PREFILLS, &PHASE_BOUNDS),
                histogram(&PREFILLS, &PHASE_BOUNDS),
            )),
        };
        let read = read_windows(&windows, 2.0, 0.99, Some(Split::Seconds(2.0))).unwrap();
        (
            read.short.error_ratio.unwrap(),
            read.short.fixable_burn.unwrap(),
        )
    }

    #[test]
    fn where_no_request_queued_no_miss_is_fixable() {
        // TTFT is the prefill: every miss is a prompt too long for the threshold. Read
        // at 2 s exactly, the prefill histogram says 15 % miss while the TTFT histogram
        // interpolates 20 % between 1 and 2.5 s; read at the TTFT's bounds, both say 20 %.
        let (misses, fixable_burn) = fixable(&PREFILLS);
        assert!((misses - 0.2).abs() < 1e-9, "{misses}");
        assert!(fixable_burn.abs() < 1e-9, "{fixable_burn}");
    }

    #[test]
    fn queueing_that_pushes_requests_past_the_threshold_is_fixable() {
        // The 1.2 s prefills wait 1.5 s in the queue: 10 % of the requests move from
        // the (1, 2.5] bucket to (2.5, 5], so 10 x (1 - 1/3) = 6.7 % more misses.
        let queued: Vec<(f64, f64)> = PREFILLS
            .iter()
            .map(|&(t, n)| if t == 1.2 { (2.7, n) } else { (t, n) })
            .collect();
        let (misses, fixable_burn) = fixable(&queued);
        assert!((misses - (0.2 + 0.1 * 2.0 / 3.0)).abs() < 1e-9, "{misses}");
        assert!(
            (fixable_burn - 100.0 * 0.1 * 2.0 / 3.0).abs() < 1e-9,
            "{fixable_burn}"
        );
    }

    #[test]
    fn a_threshold_on_a_latency_bound_reads_the_split_there() {
        let latency = histogram(&PREFILLS, &TTFT_BOUNDS);
        let split = histogram(&PREFILLS, &PHASE_BOUNDS);
        // 2.5 s is a bound of both: 10 % above it, read directly.
        let r = unfixable_ratio(&latency, 2.5, &split, Split::Seconds(2.5)).unwrap();
        assert!((r.unwrap() - 0.1).abs() < 1e-9);
        // Past the last finite bound, the split is read at that bound, as the misses are.
        let r = unfixable_ratio(&latency, 8.0, &split, Split::Seconds(8.0)).unwrap();
        assert!((r.unwrap() - 0.02).abs() < 1e-9);
        // Prompt lengths are not seconds: read at their own bound.
        let prompts = histogram(&[(1_000.0, 90.0), (40_000.0, 10.0)], &[2e3, 5e4]);
        let r = unfixable_ratio(&latency, 2.0, &prompts, Split::Other(2_000.0)).unwrap();
        assert!((r.unwrap() - 0.1).abs() < 1e-9);
        // A gauge's window has no bounds: the split is read at its own bound.
        let gauge = LatencyWindow::SlowShare(Some(0.3));
        let r = unfixable_ratio(&gauge, 2.0, &split, Split::Seconds(2.0)).unwrap();
        assert!((r.unwrap() - 0.15).abs() < 1e-9);
    }

    #[test]
    fn burn_rate_is_error_ratio_over_budget() {
        assert!((burn_rate(0.02, 0.99) - 2.0).abs() < 1e-9);
        assert_eq!(burn_rate(0.0, 0.99), 0.0);
    }
}
