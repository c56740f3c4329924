//! What users felt: TTFT and TPOT per request, against the SLO thresholds.

use std::collections::BTreeMap;

use super::model::{Recorder, Request};

/// The windows attainment is judged in, and the oracle's window: one fleet size per pool
/// for each (seconds).
pub const ORACLE_WINDOW: f64 = 300.0;

/// A latency distribution, for percentiles of millions of requests in constant memory:
/// `hdrhistogram` in microseconds at two significant digits (1 %), up to 30 hours.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(hdrhistogram::Histogram<u32>);

/// The longest latency told apart, microseconds; longer ones count as this.
const LONGEST_MICROS: u64 = 30 * 3600 * 1_000_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, LONGEST_MICROS, 2)
                .expect("the bounds are valid"),
        )
    }
}

impl LatencyHistogram {
    /// Counts one latency, in seconds.
    pub fn record(&mut self, seconds: f64) {
        let micros = (seconds * 1e6).round().clamp(1.0, LONGEST_MICROS as f64) as u64;
        self.0.saturating_record(micros);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0..1), seconds, to within 1 %; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.0.value_at_quantile(q) as f64 / 1e6)
    }
}

/// The SLO thresholds attainment is counted against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloThresholds {
    /// Seconds to the first token.
    pub ttft: f64,
    /// Seconds per output token after the first.
    pub tpot: f64,
}

impl Default for SloThresholds {
    /// The seed's SLOs: TTFT 2 s, TPOT 50 ms.
    fn default() -> Self {
        Self {
            ttft: 2.0,
            tpot: 0.050,
        }
    }
}

/// Attainment over the requests that can meet an SLO at all (see [`super::feasible`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeasibleCounts {
    /// Arrived requests feasible for the TTFT SLO.
    pub ttft_feasible: u64,
    /// Of those, the ones whose TTFT met the threshold.
    pub ttft_met: u64,
    /// Arrived requests feasible for the TPOT SLO.
    pub tpot_feasible: u64,
    /// Of those, the ones whose TPOT met the threshold.
    pub tpot_met: u64,
    /// Arrived requests (feasible or not).
    pub arrived: u64,
    /// Requests finished or refused: a window is complete when this reaches `arrived`.
    pub done: u64,
}

impl FeasibleCounts {
    /// The share of TTFT-feasible requests that met the TTFT SLO (1 when none is).
    pub fn ttft_attainment(&self) -> f64 {
        ratio(self.ttft_met, self.ttft_feasible)
    }

    /// The share of TPOT-feasible requests that met the TPOT SLO (1 when none is).
    pub fn tpot_attainment(&self) -> f64 {
        ratio(self.tpot_met, self.tpot_feasible)
    }

    /// Both feasible attainments reach `target`.
    pub fn reaches(&self, target: f64) -> bool {
        self.ttft_attainment() >= target && self.tpot_attainment() >= target
    }

    /// Every arrived request has finished or been refused.
    pub fn is_complete(&self) -> bool {
        self.done >= self.arrived
    }
}

/// Per-request outcomes of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// What attainment is counted against.
    pub thresholds: SloThresholds,
    /// Requests that arrived.
    pub arrived: u64,
    /// Requests whose TTFT met the threshold.
    pub ttft_met: u64,
    /// Requests whose TPOT met the threshold.
    pub tpot_met: u64,
    /// Over feasible requests only.
    pub feasible: FeasibleCounts,
    /// When set, feasible counts per window of this many seconds of arrival time, keyed
    /// by window index (the oracle's search reads them).
    pub window: Option<f64>,
    /// The counts per window (see `window`).
    pub windows: BTreeMap<u64, FeasibleCounts>,
    /// Sums of every TTFT and TPOT recorded, seconds, for means.
    pub ttft_sum: f64,
    /// See `ttft_sum`.
    pub tpot_sum: f64,
    /// Requests finished.
    pub finished: u64,
    /// Requests no replica could ever hold, or that waited past the request timeout.
    pub refused: u64,
    /// Requests still in flight when the run ended.
    pub unfinished: u64,
    /// Every TTFT recorded, for quantiles.
    pub ttft: LatencyHistogram,
    /// Every TPOT recorded, for quantiles.
    pub tpot: LatencyHistogram,
}

impl Stats {
    /// Counts over the whole run only.
    pub fn new(thresholds: SloThresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// Counts per window of `seconds` of arrival time too.
    pub fn windowed(thresholds: SloThresholds, seconds: f64) -> Self {
        Self {
            window: Some(seconds),
            ..Self::new(thresholds)
        }
    }

    /// Applies `change` to the overall feasible counts and to the request's window's.
    fn count(&mut self, request: &Request, change: impl Fn(&mut FeasibleCounts)) {
        change(&mut self.feasible);
        if let Some(window) = self.window {
            let index = (request.arrival / window).max(0.0) as u64;
            change(self.windows.entry(index).or_default());
        }
    }

    /// Counts an arrival.
    pub fn arrived(&mut self, request: &Request) {
        self.arrived += 1;
        let feasible = request.feasible;
        self.count(request, |c| {
            c.arrived += 1;
            c.ttft_feasible += u64::from(feasible.ttft);
            c.tpot_feasible += u64::from(feasible.tpot);
        });
    }

    /// Counts a first token, against the TTFT threshold.
    pub fn first_token(&mut self, request: &Request) {
        let ttft = request.first_token - request.arrival;
        self.ttft.record(ttft);
        self.ttft_sum += ttft;
        if ttft <= self.thresholds.ttft {
            self.ttft_met += 1;
            if request.feasible.ttft {
                self.count(request, |c| c.ttft_met += 1);
            }
        }
    }

    /// Counts a finished request at `at`, against the TPOT threshold.
    pub fn finished(&mut self, request: &Request, at: f64) {
        self.finished += 1;
        let met = if request.output <= 1 {
            true
        } else {
            let tpot = (at - request.first_token) / f64::from(request.output - 1);
            self.tpot.record(tpot);
            self.tpot_sum += tpot;
            tpot <= self.thresholds.tpot
        };
        let feasible = met && request.feasible.tpot;
        if met {
            self.tpot_met += 1;
        }
        self.count(request, |c| {
            c.done += 1;
            c.tpot_met += u64::from(feasible);
        });
    }

    /// Counts a request refused: it met neither SLO.
    pub fn refused(&mut self, request: &Request) {
        self.refused += 1;
        self.count(request, |c| c.done += 1);
    }

    /// Counts a request still in flight at the end.
    pub fn unfinished(&mut self, _request: &Request) {
        self.unfinished += 1;
    }

    /// Share of arrived requests whose TTFT met the threshold (refused ones did not).
    pub fn ttft_attainment(&self) -> f64 {
        ratio(self.ttft_met, self.arrived)
    }

    /// Share of arrived requests whose TPOT met the threshold (refused ones did not).
    pub fn tpot_attainment(&self) -> f64 {
        ratio(self.tpot_met, self.arrived)
    }

    /// The counts of requests that arrived in window `index` (empty when none did).
    pub fn window_counts(&self, index: u64) -> FeasibleCounts {
        self.windows.get(&index).copied().unwrap_or_default()
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

impl Recorder for Stats {
    fn refused(&mut self, request: &Request) {
        Stats::refused(self, request);
    }

    fn first_token(&mut self, request: &Request) {
        Stats::first_token(self, request);
    }

    fn finished(&mut self, request: &Request, at: f64) {
        Stats::finished(self, request, at);
    }

    fn unfinished(&mut self, request: &Request) {
        Stats::unfinished(self, request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut histogram = LatencyHistogram::default();
        for i in 1..=1000 {
            histogram.record(f64::from(i) * 0.001);
        }
        let p50 = histogram.quantile(0.5).unwrap();
        let p99 = histogram.quantile(0.99).unwrap();
        assert!((p50 / 0.5 - 1.0).abs() < 0.011, "{p50}");
        assert!((p99 / 0.99 - 1.0).abs() < 0.011, "{p99}");
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn attainment_counts_refused_requests_as_misses() {
        let mut stats = Stats::new(SloThresholds::default());
        let mut fast = Request::new(0.0, 100, 11);
        fast.first_token = 0.5;
        let mut slow = Request::new(0.0, 100, 11);
        slow.first_token = 3.0;
        for request in [&fast, &slow] {
            stats.arrived(request);
            stats.first_token(request);
        }
        stats.finished(&fast, 0.5 + 10.0 * 0.04);
        stats.finished(&slow, 3.0 + 10.0 * 0.06);
        stats.arrived(&fast);
        stats.refused(&fast);
        assert_eq!(stats.ttft_met, 1);
        assert_eq!(stats.tpot_met, 1);
        assert!((stats.ttft_attainment() - 1.0 / 3.0).abs() < 1e-12);
    }
}
