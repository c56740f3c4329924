//! What Prometheus would hold and answer for a simulated pool: a scrape of every
//! serving replica each `scrape_interval`, and for each [`QuerySpec`] of a plan the
//! samples its PromQL would return. The description is evaluated as it is: gauges from
//! the last scrape, `rate()` over the scrapes inside the spec's window, histogram
//! buckets by `le`, means per request, and the token rate's history at the spec's
//! offsets. Nothing is re-derived from the config.
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
    model::{Counters, PROMPT_TOKEN_BUCKETS, REQUEST_TIME_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS},
};
use crate::{
    config::LatencySignal,
    engine::Series,
    query::{AGO_LABEL, LEVEL_LABEL, LONG_LEVEL, PERIOD_LABEL, QueryPlan, QuerySpec, Read, Signal},
    source::{Observation, ReadError, Sample, SourceError},
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

/// A fleet counter of the replicas' [`Counters`].
type Counter = fn(&Counters) -> f64;

/// The counter a token-rate query reads: the one place the simulated fleet maps the
/// token signals to what its replicas count.
fn token_counter(signal: Signal) -> Result<Counter, String> {
    match signal {
        Signal::OutputTokens => Ok(|c| c.generation_tokens),
        Signal::InputTokens => Ok(|c| c.prompt_tokens),
        other => Err(format!(
            "the simulated fleet counts no rate for signal {}",
            other.as_str()
        )),
    }
}

/// How far back each part of the store must reach for a plan's queries.
#[derive(Debug, Clone, Copy)]
struct Reach {
    /// The longest window of any query but the history's, seconds.
    recent: f64,
    /// The history's rate: its window, and its counter.
    history_rate: Option<(f64, Counter)>,
    /// How far back the history reads that rate, seconds.
    history: f64,
}

impl Reach {
    fn of(plan: &QueryPlan) -> Self {
        let secs = Duration::as_secs_f64;
        let mut reach = Self {
            recent: 0.0,
            history_rate: None,
            history: 0.0,
        };
        for spec in &plan.specs {
            let Some((of, span)) = spec.history() else {
                reach.recent = reach.recent.max(secs(&spec.reach()));
                continue;
            };
            reach.history = reach.history.max(secs(&span));
            if let (Read::Rate { window, .. }, Ok(counter)) = (&of.read, token_counter(of.signal)) {
                reach.history_rate = Some((secs(window), counter));
            }
        }
        reach
    }
}

/// The scrapes of one pool.
#[derive(Debug, Clone)]
pub struct Tsdb {
    /// Seconds between two scrapes.
    pub scrape_interval: f64,
    /// Recent scrapes, as far back as the longest range any query reads.
    recent: VecDeque<Scrape>,
    retention: f64,
    /// Each scrape's value of the history's token rate, as far back as the history
    /// queries reach.
    rates: VecDeque<(f64, f64)>,
    /// How far back the history queries reach, seconds.
    history_span: f64,
    /// The history's rate: its window (seconds) and counter; `None`: no history.
    history_rate: Option<(f64, Counter)>,
    /// Each scrape's cumulative history counter, over the history rate's window.
    totals: VecDeque<(f64, f64)>,
}

impl Tsdb {
    /// A store for the queries of `plan`, scraped every `scrape_interval` seconds.
    pub fn new(scrape_interval: f64, plan: &QueryPlan) -> Self {
        let reach = Reach::of(plan);
        Self {
            scrape_interval,
            recent: VecDeque::new(),
            retention: reach.recent + 2.0 * scrape_interval,
            rates: VecDeque::new(),
            history_span: reach.history + 2.0 * scrape_interval,
            history_rate: reach.history_rate,
            totals: VecDeque::new(),
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
        if let Some((window, counter)) = self.history_rate {
            self.record_rate(at, window, counter(&counters));
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

    /// Keeps the history's token rate at this scrape: what a subquery over the rate
    /// would see at this step.
    fn record_rate(&mut self, at: f64, window: f64, total: f64) {
        self.totals.push_back((at, total));
        while self
            .totals
            .front()
            .is_some_and(|t| t.0 <= at - window - self.scrape_interval)
        {
            self.totals.pop_front();
        }
        let mut inside = self.totals.iter().filter(|t| t.0 > at - window);
        let rate = match (inside.next(), inside.next_back()) {
            (Some(a), Some(b)) => (b.1 - a.1) / (b.0 - a.0),
            _ => 0.0,
        };
        self.rates.push_back((at, rate));
        while self
            .rates
            .front()
            .is_some_and(|r| r.0 < at - self.history_span)
        {
            self.rates.pop_front();
        }
    }

    /// What the plan's queries would return at `now`, as the service's observe() builds it.
    pub fn observe(&self, plan: &QueryPlan, now: f64, wall_clock: SystemTime) -> Observation {
        let answers = plan
            .specs
            .iter()
            .map(|spec| {
                // A spec the simulated Prometheus cannot evaluate fails as Prometheus
                // fails a query it cannot run.
                let answer = self.answer(spec, now).map_err(|message| {
                    ReadError::Query(SourceError::Query {
                        kind: "unsupported".to_owned(),
                        message,
                    })
                });
                (spec.signal, answer)
            })
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

    /// One query's answer at `now`.
    pub fn answer(&self, spec: &QuerySpec, now: f64) -> Result<Vec<Sample>, String> {
        if spec.model_label.is_some() {
            return Err(
                "the simulated fleet serves one model: leave `model` out of its trigger metadata"
                    .to_owned(),
            );
        }
        let secs = Duration::as_secs_f64;
        let fleet = |value: Option<f64>| value.map_or_else(Vec::new, |v| vec![sample(&[], v)]);
        Ok(match &spec.read {
            Read::Gauge { .. } | Read::Quotient { .. } => self.gauges(spec, now)?,
            Read::Rate { window, .. } => {
                fleet(self.rate(now, secs(window), token_counter(spec.signal)?))
            }
            Read::Buckets {
                series,
                window,
                millis,
            } => {
                let (bounds, counts) = histogram_of(spec.signal, series)?;
                self.histogram(now, secs(window), bounds, counts, *millis)
            }
            Read::MeanPerRequest { window, .. } => {
                self.mean_length(spec.signal, now, secs(window))?
            }
            Read::ShareAbove { .. } => {
                return Err(
                    "the simulated fleet exports latency histograms (as vLLM does), not gauges: simulate a profile whose engine has histograms"
                        .to_owned(),
                );
            }
            Read::HistoryPeaks {
                period,
                periods,
                lead,
                ..
            } => self.peaks(now, secs(period), *periods, secs(lead)),
            Read::HistoryLevels {
                period,
                periods,
                window,
                long_window,
                ..
            } => self.levels(
                now,
                secs(period),
                *periods,
                [secs(window), secs(long_window)],
            ),
            Read::HistoryRecent {
                period,
                periods,
                window,
                steps,
                ..
            } => self.recent(now, secs(period), *periods, secs(window), *steps),
            Read::Custom { .. } => {
                return Err(
                    "the simulated fleet answers the queries of preset engines, not a custom profile's expressions"
                        .to_owned(),
                );
            }
        })
    }

    /// Each serving replica's gauge at the last scrape, labelled as the spec groups it.
    fn gauges(&self, spec: &QuerySpec, now: f64) -> Result<Vec<Sample>, String> {
        let value: fn(&ReplicaGauges) -> f64 = match spec.signal {
            Signal::Queue => |r| r.waiting,
            Signal::KvCache => |r| r.kv_usage,
            other => {
                return Err(format!(
                    "the simulated fleet exports no gauge for signal {}",
                    other.as_str()
                ));
            }
        };
        let last = self.recent.iter().rev().find(|s| s.at <= now);
        Ok(last.map_or_else(Vec::new, |scrape| {
            scrape
                .replicas
                .iter()
                .map(|r| sample(&[(&spec.replica_label, &r.name)], value(r)))
                .collect()
        }))
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
    fn rate(&self, now: f64, window: f64, counter: Counter) -> Option<f64> {
        let (first, last) = self.span(now, window)?;
        Some((counter(&last.counters) - counter(&first.counters)) / (last.at - first.at))
    }

    /// `sum / (count > 0)` of a length histogram: no series while no request finished.
    fn mean_length(&self, signal: Signal, now: f64, window: f64) -> Result<Vec<Sample>, String> {
        let tokens: Counter = match signal {
            Signal::MeanInputTokens => |c| c.finished_prompt_tokens,
            Signal::MeanOutputTokens => |c| c.finished_generation_tokens,
            other => {
                return Err(format!(
                    "the simulated fleet keeps no request lengths for signal {}",
                    other.as_str()
                ));
            }
        };
        let count = self.rate(now, window, |c| c.finished_length_count);
        Ok(match (self.rate(now, window, tokens), count) {
            (Some(tokens), Some(count)) if count > 0.0 => vec![sample(&[], tokens / count)],
            _ => Vec::new(),
        })
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

    /// The history's rates recorded in [from, to].
    fn rates_between(&self, from: f64, to: f64) -> impl ExactSizeIterator<Item = f64> + '_ {
        let start = self.rates.partition_point(|r| r.0 < from);
        let end = self.rates.partition_point(|r| r.0 <= to);
        self.rates.range(start..end.max(start)).map(|r| r.1)
    }

    /// Per past period k >= 1, the peak rate over the lead after the same time k
    /// periods ago, tagged with the period label.
    fn peaks(&self, now: f64, period: f64, periods: u32, lead: f64) -> Vec<Sample> {
        (1..=periods)
            .filter_map(|k| {
                let back = now - period * f64::from(k);
                let points = self.rates_between(back, back + lead);
                (points.len() > 0).then(|| {
                    let peak = points.fold(0.0, f64::max);
                    sample(&[(PERIOD_LABEL, &k.to_string())], peak)
                })
            })
            .collect()
    }

    /// Per period k >= 0, the mean rate over each window before the same time k periods
    /// ago; the second window's series carry the long level's label.
    fn levels(&self, now: f64, period: f64, periods: u32, windows: [f64; 2]) -> Vec<Sample> {
        let mut samples = Vec::new();
        for (window, long) in [(windows[0], false), (windows[1], true)] {
            for k in 0..=periods {
                let back = now - period * f64::from(k);
                let Some(level) = self.mean_between(back - window, back) else {
                    continue;
                };
                let k = k.to_string();
                let labels: &[(&str, &str)] = if long {
                    &[(PERIOD_LABEL, &k), (LEVEL_LABEL, LONG_LEVEL)]
                } else {
                    &[(PERIOD_LABEL, &k)]
                };
                samples.push(sample(labels, level));
            }
        }
        samples
    }
}

impl Tsdb {
    /// The mean of the rates recorded in [from, to]; `None` when there are none, as
    /// `avg_over_time` over no samples has no value.
    fn mean_between(&self, from: f64, to: f64) -> Option<f64> {
        let points = self.rates_between(from, to);
        let count = points.len();
        (count > 0).then(|| points.sum::<f64>() / count as f64)
    }

    /// Per period k >= 0, the mean rate over the window ending at each of the last
    /// `steps` multiples of `window` (as a subquery aligns its steps), before the same
    /// time k periods ago; each sample says how many seconds before now it was taken,
    /// as the source labels a range vector's points.
    fn recent(&self, now: f64, period: f64, periods: u32, window: f64, steps: u32) -> Vec<Sample> {
        let latest = (now / window).floor() * window;
        let mut samples = Vec::new();
        for k in 0..=periods {
            for n in 0..steps {
                let at = latest - window * f64::from(n);
                let back = at - period * f64::from(k);
                let Some(level) = self.mean_between(back - window, back) else {
                    continue;
                };
                let ago = format!("{:.0}", (now - at).floor());
                samples.push(sample(
                    &[(PERIOD_LABEL, &k.to_string()), (AGO_LABEL, &ago)],
                    level,
                ));
            }
        }
        samples
    }
}

/// The histogram a bucket query reads: prefill times for the prefill signals, prompt
/// lengths for the context signals, output lengths for the mix's, else the latency whose
/// preset series the query names.
fn histogram_of(
    signal: Signal,
    series: &[Series],
) -> Result<(&'static [f64], BucketCounts), String> {
    if matches!(
        signal,
        Signal::SloPrefillShort { .. } | Signal::SloPrefillLong { .. }
    ) {
        return Ok((&REQUEST_TIME_BUCKETS, |c| &c.prefill_buckets));
    }
    if matches!(
        signal,
        Signal::SloContextShort { .. } | Signal::SloContextLong { .. }
    ) {
        return Ok((&PROMPT_TOKEN_BUCKETS, |c| &c.prompt_length_buckets));
    }
    if signal == Signal::OutputLengths {
        return Ok((&PROMPT_TOKEN_BUCKETS, |c| &c.output_length_buckets));
    }
    let latency = series
        .iter()
        .find_map(|s| crate::engine::latency_named(s.name))
        .ok_or_else(|| {
            let names: Vec<&str> = series.iter().map(|s| s.name).collect();
            format!(
                "the simulated fleet exports no latency histogram {}",
                names.join(" or ")
            )
        })?;
    Ok(match latency {
        LatencySignal::Ttft => (&TTFT_BUCKETS, |c| &c.ttft_buckets),
        LatencySignal::Tpot => (&TPOT_BUCKETS, |c| &c.tpot_buckets),
    })
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

    const CONFIG: &str = "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  chat:\n    engine: vllm\n    replica_label: pod\n    rate_window: 1m\n    capacity:\n      queue_per_replica: 2\n      output_tokens_per_second: 700\n      profile:\n        - {input_tokens: 100, output_tokens: 100, short_output_share: 0.2, output_tokens_per_second: 700, input_tokens_per_second: 4000}\n    slos:\n      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99, windows: [1m, 2m]}\n    predictive:\n      lead: 1m\n      history: {period: 1d, periods: 2, level_window: 2m}\n";

    /// Two warm 8B replicas behind round-robin.
    fn warm_pool() -> Pool {
        let mut pool = Pool::new(
            Role::Unified,
            ModelProfile::llama3_8b_h100(),
            Router::RoundRobin,
            300.0,
        );
        pool.start_warm(2, 0.0);
        pool
    }

    #[test]
    fn answers_are_what_prometheus_would_return_for_the_plan() {
        let config = crate::config::Config::parse(CONFIG).unwrap();
        let setup = PoolSetup::new(&config, "chat", ScaledObjectSpec::recommended()).unwrap();
        let mut pool = warm_pool();
        let mut tsdb = Tsdb::new(15.0, &setup.plan);
        let mut stats = Stats::new(SloThresholds::default());
        let answer = |tsdb: &Tsdb, signal: Signal, now: f64| {
            let spec = setup.plan.spec(signal).unwrap();
            tsdb.answer(spec, now).unwrap()
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
        // Their output lengths by vLLM's bounds: none at 50 or fewer, all at 100.
        let lengths = answer(&tsdb, Signal::OutputLengths, 30.0);
        let at = |le: &str| lengths.iter().find(|s| s.labels["le"] == le).unwrap().value;
        assert_eq!(at("50"), 0.0);
        assert!((at("100") - 40.0 / 30.0).abs() < 1e-9, "{lengths:?}");
        assert!((at("+Inf") - 40.0 / 30.0).abs() < 1e-9, "{lengths:?}");
        // Readings from these answers: what the service would compute.
        let observation = tsdb.observe(&setup.plan, 30.0, SystemTime::UNIX_EPOCH);
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
        let mut tsdb = Tsdb::new(15.0, &setup.plan);
        // A fleet at zero all along: history exists and is 0, not missing.
        let day = 86_400.0;
        let mut at = 0.0;
        while at <= 2.0 * day + 60.0 {
            tsdb.scrape(&pool, at);
            at += 15.0;
        }
        let now = 2.0 * day;
        let peaks = tsdb
            .answer(setup.plan.spec(Signal::HistoryPeak).unwrap(), now)
            .unwrap();
        let periods: Vec<&str> = peaks
            .iter()
            .map(|s| s.labels[PERIOD_LABEL].as_str())
            .collect();
        assert_eq!(periods, ["1", "2"]);
        assert!(peaks.iter().all(|s| s.value == 0.0));
        let levels = tsdb
            .answer(setup.plan.spec(Signal::HistoryLevel).unwrap(), now)
            .unwrap();
        let long = |s: &&Sample| s.labels.get(LEVEL_LABEL).map(String::as_str) == Some(LONG_LEVEL);
        assert_eq!(levels.iter().filter(|s| !long(s)).count(), 3);
        assert_eq!(levels.iter().filter(long).count(), 3);
        let history = tsdb
            .observe(&setup.plan, now, SystemTime::UNIX_EPOCH)
            .readings(None)
            .history
            .unwrap()
            .unwrap();
        assert!(history.past.iter().all(|p| p.long_level == Some(0.0)));
        assert_eq!(history.level_now, Some(0.0));
        // The recent levels: today and yesterday in full, measured at 0; two days ago
        // the windows before the first scrape are missing, as in Prometheus.
        let recent = history.recent.unwrap();
        let (window, lead_steps) = setup.plan.recent_shape().unwrap();
        assert_eq!(recent.lead_steps, lead_steps as usize);
        assert!(recent.bands[..2].iter().flatten().all(|l| *l == Some(0.0)));
        assert!(recent.bands[0].len() > 1);
        assert_eq!(recent.bands.get(2).and_then(|b| b[1]), None);
        let raw = tsdb
            .answer(setup.plan.spec(Signal::HistoryRecent).unwrap(), now + 42.0)
            .unwrap();
        let ago = window.as_secs_f64() + 42.0;
        assert!(
            raw.iter()
                .any(|s| s.labels[AGO_LABEL] == format!("{ago:.0}"))
        );
    }

    /// Every engine preset with every query it has: all SLOs it exports, the mix where it
    /// has request lengths, and the forecast's history.
    fn every_preset() -> String {
        let slos = |engine: &str| match engine {
            "tgi" => "[{name: tpot, signal: tpot, threshold: 50ms, objective: 0.99}]",
            "trtllm" => "[{name: ttft, signal: ttft, threshold: 2s, objective: 0.99}]",
            _ => {
                "[{name: ttft, signal: ttft, threshold: 2s, objective: 0.99}, {name: tpot, signal: tpot, threshold: 50ms, objective: 0.99}]"
            }
        };
        let mut text = "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n".to_owned();
        for engine in ["seed", "vllm", "sglang", "tgi", "trtllm", "dynamo"] {
            let mix = if engine == "vllm" {
                ", profile: [{input_tokens: 100, output_tokens: 100, output_tokens_per_second: 700, input_tokens_per_second: 4000}]"
            } else {
                ""
            };
            text.push_str(&format!(
                "  {engine}:\n    engine: {engine}\n    capacity: {{queue_per_replica: 2, output_tokens_per_second: 700, input_tokens_per_second: 4000{mix}}}\n    slos: {}\n    predictive: {{lead: 1m, history: {{period: 1d, periods: 2}}}}\n",
                slos(engine)
            ));
        }
        text
    }

    #[test]
    fn the_simulator_answers_every_query_of_every_engine_preset() {
        let config = crate::config::Config::parse(&every_preset()).unwrap();
        let mut answered = 0;
        for profile in config.profile_names() {
            let mut pool = warm_pool();
            let mut stats = Stats::new(SloThresholds::default());
            let setup = PoolSetup::new(&config, profile, ScaledObjectSpec::recommended()).unwrap();
            let mut tsdb = Tsdb::new(15.0, &setup.plan);
            for i in 0..=8 {
                let at = f64::from(i) * 15.0;
                pool.advance(at, &mut stats, &mut Vec::new());
                pool.route(Request::new(at, 100, 20), at);
                tsdb.scrape(&pool, at);
            }
            for spec in &setup.plan.specs {
                let promql = spec.promql();
                let opened = promql.matches('(').count();
                assert_eq!(opened, promql.matches(')').count(), "{profile}: {promql}");
                assert_eq!(promql.matches('{').count(), promql.matches('}').count());
                let answer = tsdb.answer(spec, 120.0);
                if let Read::ShareAbove { .. } = spec.read {
                    // The seed's latencies are gauges; the simulated fleet exports
                    // histograms, and says so rather than answering something else.
                    assert!(answer.unwrap_err().contains("histograms"), "{profile}");
                    continue;
                }
                let samples = answer.unwrap_or_else(|e| panic!("{profile} {promql}: {e}"));
                // Two minutes in, no past day has a peak yet (the history test has days).
                let past = matches!(spec.read, Read::HistoryPeaks { .. });
                assert!(
                    past || !samples.is_empty(),
                    "{profile}: no answer to {promql}"
                );
                answered += 1;
            }
            // The service's own reading of the simulated answers gives a demand.
            let observation = tsdb.observe(&setup.plan, 120.0, SystemTime::UNIX_EPOCH);
            let readings = observation.readings(None);
            assert!(
                readings.queue.is_ok() && readings.output_tokens.is_ok(),
                "{profile}"
            );
        }
        // 6 presets x (queue, two token rates, KV, two history queries), SLO windows, prefill, mix.
        assert!(answered >= 6 * 5 + 2 * 8, "{answered}");
    }
}
