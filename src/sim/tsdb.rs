//! What Prometheus would hold and answer for a simulated pool: a scrape of every
//! serving replica each `scrape_interval`, and for each signal of a query plan the
//! samples the plan's PromQL would return: gauges from the last scrape, `rate()` over
//! the scrapes inside the window, histogram buckets by `le`, and the token rate's
//! history at `offset`s for the forecast.
//!
//! The answers go through the same [`Observation::readings`] and demand code as
//! Prometheus' answers do in the service.

use std::{
    collections::VecDeque,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{
    fleet::Pool,
    model::{Counters, REQUEST_TIME_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS},
};
use crate::{
    config::{LatencySignal, Profile, metadata::Target},
    demand::forecast::LONG_LEVEL_WINDOWS,
    source::{
        LEVEL_LABEL, LONG_LEVEL, LatencyKind, Observation, PERIOD_LABEL, QueryPlan, Sample, Signal,
    },
};

/// One replica's gauges at a scrape.
#[derive(Debug, Clone)]
struct ReplicaGauges {
    name: String,
    waiting: f64,
    kv_usage: f64,
}

#[derive(Debug, Clone)]
struct Scrape {
    at: f64,
    replicas: Vec<ReplicaGauges>,
    counters: Counters,
}

/// A histogram's per-bucket counts in a replica's counters.
type BucketCounts = fn(&Counters) -> &Vec<f64>;

/// Which token counter is the pool's throughput signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokens {
    Output,
    Input,
}

/// The windows and labels a plan's queries use, from the profile and trigger.
#[derive(Debug, Clone)]
pub struct QueryShape {
    replica_label: String,
    rate_window: f64,
    tokens: Tokens,
    /// Per SLO: its latency and its two windows, in seconds.
    slos: Vec<(LatencySignal, f64, f64)>,
    /// period, periods, lead and level window, in seconds.
    history: Option<(f64, u32, f64, f64)>,
}

impl QueryShape {
    pub fn new(profile: &Profile, target: &Target) -> Self {
        let secs = |d: Duration| d.as_secs_f64();
        Self {
            replica_label: profile.replica_label.as_str().to_owned(),
            rate_window: secs(profile.rate_window.value.0),
            tokens: match target.pool {
                crate::config::Pool::Prefill => Tokens::Input,
                _ => Tokens::Output,
            },
            slos: target
                .slos
                .iter()
                .map(|slo| {
                    (
                        slo.signal,
                        secs(slo.short_window().0),
                        secs(slo.long_window().0),
                    )
                })
                .collect(),
            history: target.predictive.as_ref().and_then(|p| {
                p.history.as_ref().map(|h| {
                    (
                        secs(h.period.value.0),
                        h.periods.value,
                        secs(p.lead.value.0),
                        secs(h.level_window.value.0),
                    )
                })
            }),
        }
    }

    /// SLO `index`'s latency and its short or long window, in seconds.
    fn slo_window(&self, index: usize, short: bool) -> Result<(LatencySignal, f64), String> {
        let &(latency, short_window, long_window) = self
            .slos
            .get(index)
            .ok_or_else(|| format!("the plan's SLO {index} is not in the profile"))?;
        Ok((latency, if short { short_window } else { long_window }))
    }

    /// The longest range a query reads, for how long scrapes are kept.
    fn longest_window(&self) -> f64 {
        self.slos
            .iter()
            .map(|s| s.2.max(s.1))
            .fold(self.rate_window, f64::max)
            .max(crate::source::MIX_WINDOW.as_secs_f64())
    }
}

/// The scrapes of one pool.
#[derive(Debug, Clone)]
pub struct Tsdb {
    pub scrape_interval: f64,
    /// Recent scrapes, as far back as the longest range any query reads.
    recent: VecDeque<Scrape>,
    retention: f64,
    /// Each scrape's token rates over the rate window (output, input), as far back as
    /// the history queries reach.
    rates: VecDeque<(f64, f64, f64)>,
    /// How far back the history queries reach, seconds.
    history_span: f64,
    /// Every scrape's cumulative token counters (output, input), for the rates.
    totals: VecDeque<(f64, f64, f64)>,
    rate_window: f64,
}

impl Tsdb {
    pub fn new(scrape_interval: f64, shape: &QueryShape) -> Self {
        Self {
            scrape_interval,
            recent: VecDeque::new(),
            retention: shape.longest_window() + 2.0 * scrape_interval,
            rates: VecDeque::new(),
            history_span: shape
                .history
                .map_or(0.0, |(period, periods, lead, level_window)| {
                    let long_window = level_window * f64::from(LONG_LEVEL_WINDOWS);
                    period * f64::from(periods) + lead.max(long_window) + 2.0 * scrape_interval
                }),
            totals: VecDeque::new(),
            rate_window: shape.rate_window,
        }
    }

    /// Scrapes every serving replica of the pool at `at`.
    pub fn scrape(&mut self, pool: &Pool, at: f64) {
        let replicas = pool
            .serving()
            .map(|r| ReplicaGauges {
                name: r.name.clone(),
                waiting: r.waiting() as f64,
                kv_usage: r.kv_usage(&pool.model),
            })
            .collect();
        let counters = pool.counters();
        self.totals
            .push_back((at, counters.generation_tokens, counters.prompt_tokens));
        while self
            .totals
            .front()
            .is_some_and(|t| t.0 <= at - self.rate_window - self.scrape_interval)
        {
            self.totals.pop_front();
        }
        let mut window = self.totals.iter().filter(|t| t.0 > at - self.rate_window);
        let (first, last) = (window.next(), window.next_back());
        let (output, input) = match (first, last) {
            (Some(a), Some(b)) => ((b.1 - a.1) / (b.0 - a.0), (b.2 - a.2) / (b.0 - a.0)),
            _ => (0.0, 0.0),
        };
        self.rates.push_back((at, output, input));
        while self
            .rates
            .front()
            .is_some_and(|r| r.0 < at - self.history_span)
        {
            self.rates.pop_front();
        }
        self.recent.push_back(Scrape {
            at,
            replicas,
            counters,
        });
        while self
            .recent
            .front()
            .is_some_and(|s| s.at < at - self.retention)
        {
            self.recent.pop_front();
        }
    }

    /// What the plan's queries would return at `now`, as the service's observe() builds it.
    pub fn observe(
        &self,
        plan: &QueryPlan,
        shape: &QueryShape,
        now: f64,
        wall_clock: SystemTime,
    ) -> Observation {
        let answers = plan
            .queries
            .iter()
            .map(|(signal, _)| (*signal, self.answer(*signal, plan, shape, now)))
            .collect();
        Observation::of_plan(
            plan,
            answers,
            Vec::new(),
            wall_clock,
            Instant::now(),
            Duration::ZERO,
        )
    }

    /// One signal's answer at `now`.
    pub fn answer(
        &self,
        signal: Signal,
        plan: &QueryPlan,
        shape: &QueryShape,
        now: f64,
    ) -> Result<Vec<Sample>, String> {
        let last = self.recent.iter().rev().find(|s| s.at <= now);
        let per_replica = |value: fn(&ReplicaGauges) -> f64| -> Vec<Sample> {
            last.map_or_else(Vec::new, |scrape| {
                scrape
                    .replicas
                    .iter()
                    .map(|r| sample(&[(&shape.replica_label, &r.name)], value(r)))
                    .collect()
            })
        };
        let fleet = |value: Option<f64>| value.map_or_else(Vec::new, |v| vec![sample(&[], v)]);
        Ok(match signal {
            Signal::Queue => per_replica(|r| r.waiting),
            Signal::KvCache => per_replica(|r| r.kv_usage),
            Signal::OutputTokens => {
                fleet(self.rate(now, shape.rate_window, |c| c.generation_tokens))
            }
            Signal::InputTokens => fleet(self.rate(now, shape.rate_window, |c| c.prompt_tokens)),
            Signal::SloShort { slo } | Signal::SloLong { slo } => {
                let index = usize::from(slo);
                let (latency, window) =
                    shape.slo_window(index, matches!(signal, Signal::SloShort { .. }))?;
                let Some(LatencyKind::Histogram { le_scale_millis }) =
                    plan.latency_kinds.get(index).copied()
                else {
                    return Err(
                        "the simulated fleet exports latency histograms (as vLLM does), not gauges: simulate a profile whose engine has histograms"
                            .to_owned(),
                    );
                };
                self.buckets(now, window, latency, le_scale_millis)
            }
            Signal::SloPrefillShort { slo } | Signal::SloPrefillLong { slo } => {
                let short = matches!(signal, Signal::SloPrefillShort { .. });
                let (_, window) = shape.slo_window(usize::from(slo), short)?;
                self.histogram(
                    now,
                    window,
                    &REQUEST_TIME_BUCKETS,
                    |c| &c.prefill_buckets,
                    false,
                )
            }
            Signal::MeanInputTokens | Signal::MeanOutputTokens => {
                let window = crate::source::MIX_WINDOW.as_secs_f64();
                let tokens = if signal == Signal::MeanInputTokens {
                    self.rate(now, window, |c| c.finished_prompt_tokens)
                } else {
                    self.rate(now, window, |c| c.finished_generation_tokens)
                };
                let count = self.rate(now, window, |c| c.finished_length_count);
                // `sum / (count > 0)`: no series while no request finished.
                match (tokens, count) {
                    (Some(tokens), Some(count)) if count > 0.0 => vec![sample(&[], tokens / count)],
                    _ => Vec::new(),
                }
            }
            Signal::HistoryPeak => self.history(now, shape, true)?,
            Signal::HistoryLevel => self.history(now, shape, false)?,
        })
    }

    /// The first and last scrapes inside (now - window, now], when there are two.
    fn span(&self, now: f64, window: f64) -> Option<(&Scrape, &Scrape)> {
        let mut inside = self
            .recent
            .iter()
            .filter(|s| s.at > now - window && s.at <= now);
        Some((inside.next()?, inside.next_back()?))
    }

    /// `rate()` of a fleet counter over `window`: no series with fewer than two scrapes.
    fn rate(&self, now: f64, window: f64, counter: fn(&Counters) -> f64) -> Option<f64> {
        let (first, last) = self.span(now, window)?;
        Some((counter(&last.counters) - counter(&first.counters)) / (last.at - first.at))
    }

    fn buckets(
        &self,
        now: f64,
        window: f64,
        latency: LatencySignal,
        le_scale_millis: bool,
    ) -> Vec<Sample> {
        let (bounds, pick): (&[f64], BucketCounts) = match latency {
            LatencySignal::Ttft => (&TTFT_BUCKETS, |c| &c.ttft_buckets),
            LatencySignal::Tpot => (&TPOT_BUCKETS, |c| &c.tpot_buckets),
        };
        self.histogram(now, window, bounds, pick, le_scale_millis)
    }

    /// `sum by (le) (rate(<histogram>_bucket[window]))` of a fleet histogram.
    fn histogram(
        &self,
        now: f64,
        window: f64,
        bounds: &[f64],
        pick: BucketCounts,
        le_scale_millis: bool,
    ) -> Vec<Sample> {
        let Some((first, last)) = self.span(now, window) else {
            return Vec::new();
        };
        let span = last.at - first.at;
        let (before, after) = (pick(&first.counters), pick(&last.counters));
        let mut cumulative = 0.0;
        (0..=bounds.len())
            .map(|i| {
                cumulative += after[i] - before[i];
                let le = match bounds.get(i) {
                    Some(bound) if le_scale_millis => format!("{}", bound * 1000.0),
                    Some(bound) => format!("{bound}"),
                    None => "+Inf".to_owned(),
                };
                sample(&[("le", &le)], cumulative / span)
            })
            .collect()
    }

    /// The forecast's history: per past period k, the peak rate over the lead (k >= 1)
    /// or the levels over the level window and the long level window (k >= 0), tagged
    /// with the period label (and the long level's label).
    fn history(&self, now: f64, shape: &QueryShape, peaks: bool) -> Result<Vec<Sample>, String> {
        let (period, periods, lead, level_window) =
            shape.history.ok_or("the profile has no history section")?;
        let value = |&(_, output, input): &(f64, f64, f64)| match shape.tokens {
            Tokens::Output => output,
            Tokens::Input => input,
        };
        let between = |from: f64, to: f64| {
            let start = self.rates.partition_point(|r| r.0 < from);
            let end = self.rates.partition_point(|r| r.0 <= to);
            self.rates.range(start..end.max(start))
        };
        let mut samples = Vec::new();
        if peaks {
            for k in 1..=periods {
                let back = now - period * f64::from(k);
                let points = between(back, back + lead);
                if points.len() > 0 {
                    let peak = points.map(value).fold(0.0, f64::max);
                    samples.push(sample(&[(PERIOD_LABEL, &k.to_string())], peak));
                }
            }
            return Ok(samples);
        }
        let long_window = level_window * f64::from(LONG_LEVEL_WINDOWS);
        for (window, long) in [(level_window, false), (long_window, true)] {
            for k in 0..=periods {
                let back = now - period * f64::from(k);
                let points = between(back - window, back);
                let count = points.len();
                if count == 0 {
                    continue;
                }
                let level = points.map(value).sum::<f64>() / count as f64;
                let k = k.to_string();
                let labels: &[(&str, &str)] = if long {
                    &[(PERIOD_LABEL, &k), (LEVEL_LABEL, LONG_LEVEL)]
                } else {
                    &[(PERIOD_LABEL, &k)]
                };
                samples.push(sample(labels, level));
            }
        }
        Ok(samples)
    }
}

fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{
        fleet::Router,
        hpa::ScaledObjectSpec,
        model::{ModelProfile, Request, Role},
        run::PoolSetup,
        stats::{SloThresholds, Stats},
    };

    const CONFIG: &str = "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  chat:\n    engine: vllm\n    replica_label: pod\n    rate_window: 1m\n    capacity: {queue_per_replica: 2, output_tokens_per_second: 700}\n    slos:\n      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99, windows: [1m, 2m]}\n    predictive:\n      lead: 1m\n      history: {period: 1d, periods: 2, level_window: 2m}\n";

    #[test]
    fn answers_are_what_prometheus_would_return_for_the_plan() {
        let config = crate::config::Config::parse(CONFIG).unwrap();
        let setup = PoolSetup::new(&config, "chat", ScaledObjectSpec::recommended()).unwrap();
        let mut pool = Pool::new(
            Role::Unified,
            ModelProfile::llama3_8b_h100(),
            Router::RoundRobin,
            300.0,
        );
        pool.start_warm(2, 0.0);
        let mut tsdb = Tsdb::new(15.0, &setup.shape);
        let mut stats = Stats::new(SloThresholds::default());
        let answer = |tsdb: &Tsdb, signal: Signal, now: f64| {
            tsdb.answer(signal, &setup.plan, &setup.shape, now).unwrap()
        };
        tsdb.scrape(&pool, 0.0);
        // One scrape: no rate yet, gauges per replica.
        assert!(answer(&tsdb, Signal::OutputTokens, 0.0).is_empty());
        let queue = answer(&tsdb, Signal::Queue, 0.0);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue[0].labels["pod"], "replica-1");
        for i in 0..40 {
            let at = f64::from(i) * 0.5;
            pool.advance(at, &mut stats, &mut Vec::new());
            pool.route(Request::new(at, 100, 51), at);
        }
        pool.advance(15.0, &mut stats, &mut Vec::new());
        tsdb.scrape(&pool, 15.0);
        pool.advance(30.0, &mut stats, &mut Vec::new());
        tsdb.scrape(&pool, 30.0);
        // 40 requests x 51 tokens, all out by 30 s: the rate is over the scrapes' span.
        let generated = pool.counters().generation_tokens;
        assert_eq!(generated, 40.0 * 51.0);
        let rate = answer(&tsdb, Signal::OutputTokens, 30.0)[0].value;
        assert!((rate - generated / 30.0).abs() < 1e-9, "{rate}");
        let input = answer(&tsdb, Signal::InputTokens, 30.0)[0].value;
        assert!((input - 4000.0 / 30.0).abs() < 1e-9, "{input}");
        // TTFT buckets: cumulative per `le`, ending at +Inf with every request.
        let buckets = answer(&tsdb, Signal::SloShort { slo: 0 }, 30.0);
        assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
        assert!((buckets.last().unwrap().value - 40.0 / 30.0).abs() < 1e-9);
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
        assert_eq!(buckets[11].labels["le"], "1");
        // Each finished request's prefill time, with vLLM's phase-time bounds.
        let prefill = answer(&tsdb, Signal::SloPrefillShort { slo: 0 }, 30.0);
        assert_eq!(prefill.len(), REQUEST_TIME_BUCKETS.len() + 1);
        assert_eq!(prefill[0].labels["le"], "0.3");
        assert!((prefill.last().unwrap().value - 40.0 / 30.0).abs() < 1e-9);
        // The mix: 100 prompt and 51 output tokens a request.
        let mean_in = answer(&tsdb, Signal::MeanInputTokens, 30.0);
        let mean_out = answer(&tsdb, Signal::MeanOutputTokens, 30.0);
        assert!((mean_in[0].value - 100.0).abs() < 1e-9, "{mean_in:?}");
        assert!((mean_out[0].value - 51.0).abs() < 1e-9, "{mean_out:?}");
        // Readings from these answers: what the service would compute.
        let observation = tsdb.observe(&setup.plan, &setup.shape, 30.0, SystemTime::UNIX_EPOCH);
        let (demand, skipped) = observation
            .readings(None)
            .demand(&setup.target, crate::config::OnTermError::Fail)
            .unwrap();
        assert!(skipped.is_empty());
        assert_eq!(demand.inputs.replicas, Some(2.0));
        assert!((demand.inputs.output_tokens_per_second.unwrap() - rate).abs() < 1e-9);
        // No day of history yet: the forecast has nothing to go on.
        assert!(answer(&tsdb, Signal::HistoryPeak, 30.0).is_empty());
        // Today's level over the level window and the long one.
        assert_eq!(answer(&tsdb, Signal::HistoryLevel, 30.0).len(), 2);
    }

    #[test]
    fn history_reads_the_same_stretch_of_past_days() {
        let config = crate::config::Config::parse(CONFIG).unwrap();
        let setup = PoolSetup::new(&config, "chat", ScaledObjectSpec::recommended()).unwrap();
        let pool = Pool::new(
            Role::Unified,
            ModelProfile::llama3_8b_h100(),
            Router::RoundRobin,
            300.0,
        );
        let mut tsdb = Tsdb::new(15.0, &setup.shape);
        // A fleet at zero all along: history exists and is 0, not missing.
        let day = 86_400.0;
        let mut at = 0.0;
        while at <= 2.0 * day + 60.0 {
            tsdb.scrape(&pool, at);
            at += 15.0;
        }
        let now = 2.0 * day;
        let peaks = tsdb
            .answer(Signal::HistoryPeak, &setup.plan, &setup.shape, now)
            .unwrap();
        let periods: Vec<&str> = peaks
            .iter()
            .map(|s| s.labels[PERIOD_LABEL].as_str())
            .collect();
        assert_eq!(periods, ["1", "2"]);
        assert!(peaks.iter().all(|s| s.value == 0.0));
        let levels = tsdb
            .answer(Signal::HistoryLevel, &setup.plan, &setup.shape, now)
            .unwrap();
        let long = |s: &&Sample| s.labels.get(LEVEL_LABEL).map(String::as_str) == Some(LONG_LEVEL);
        assert_eq!(levels.iter().filter(|s| !long(s)).count(), 3);
        assert_eq!(levels.iter().filter(long).count(), 3);
        let history = tsdb
            .observe(&setup.plan, &setup.shape, now, SystemTime::UNIX_EPOCH)
            .readings(None)
            .history
            .unwrap()
            .unwrap();
        assert!(history.past.iter().all(|p| p.long_level == Some(0.0)));
    }
}
