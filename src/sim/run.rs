//! One run: a trace through a fleet under one scaling policy.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::{
    fleet::{Pool, Router},
    hpa::{Hpa, MetricValue, ScaledObjectSpec},
    model::{Handoff, ModelProfile, Role},
    stats::{SloThresholds, Stats},
    trace::Arrivals,
    tsdb::{QueryShape, Tsdb},
};
use crate::{
    config::{Config, OnTermError, Pool as PoolKind, metadata::Target},
    source::{QueryPlan, Signal, promql},
};

/// The scaling policies a backtest compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Enough replicas for the trace's peak, all the time.
    Static,
    /// KEDA's Prometheus trigger on `sum(llm_queue_depth)`, threshold 15.
    KedaQueue,
    /// KEDA's Prometheus trigger on output tokens/s, threshold 5000.
    KedaTokens,
    /// Both triggers, as the seed's ScaledObject has them.
    KedaSeed,
    /// This scaler, through KEDA and the HPA.
    Scaler,
    /// Knows future arrivals and starts replicas one cold start ahead: the cost floor.
    Oracle,
}

impl Policy {
    pub const ALL: [Policy; 6] = [
        Policy::Static,
        Policy::KedaQueue,
        Policy::KedaTokens,
        Policy::KedaSeed,
        Policy::Scaler,
        Policy::Oracle,
    ];
    pub const NAMES: &'static str = "static, keda-queue, keda-tokens, keda-seed, scaler, oracle";

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::KedaQueue => "keda-queue",
            Policy::KedaTokens => "keda-tokens",
            Policy::KedaSeed => "keda-seed",
            Policy::Scaler => "scaler",
            Policy::Oracle => "oracle",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// The seed's stock trigger thresholds: queue 15 per replica, 5000 output tokens/s (and
/// its 40000 input tokens/s for a prefill pool).
pub const SEED_QUEUE_THRESHOLD: f64 = 15.0;
pub const SEED_OUTPUT_TOKENS_THRESHOLD: f64 = 5000.0;
pub const SEED_INPUT_TOKENS_THRESHOLD: f64 = 40000.0;

/// One pool of the fleet and the scaler's view of it.
#[derive(Debug, Clone)]
pub struct PoolSetup {
    pub role: Role,
    /// The trigger as the service resolves it.
    pub target: Target,
    pub plan: QueryPlan,
    pub shape: QueryShape,
    /// This scaler's ScaledObject for the pool.
    pub scaled_object: ScaledObjectSpec,
}

impl PoolSetup {
    /// A pool scaled on `profile` of `config`, with this scaler's ScaledObject.
    pub fn new(
        config: &Config,
        profile: &str,
        scaled_object: ScaledObjectSpec,
    ) -> Result<Self, String> {
        let metadata = [("profile".to_owned(), profile.to_owned())].into();
        let target =
            crate::config::metadata::resolve(config, &metadata).map_err(|e| e.to_string())?;
        let profile_config = config.profile(profile).expect("resolved profiles exist");
        let planned = promql::plan(profile_config, &target);
        let role = match target.pool {
            PoolKind::Unified => Role::Unified,
            PoolKind::Prefill => Role::Prefill,
            PoolKind::Decode => Role::Decode,
        };
        Ok(Self {
            role,
            shape: QueryShape::new(profile_config, &target),
            plan: planned.plan,
            target,
            scaled_object,
        })
    }

    /// Tokens per second one replica sustains on the pool's signal, from the profile.
    fn capacity(&self) -> Option<(f64, bool)> {
        match self.role {
            Role::Prefill => self.target.input_tokens_per_second.map(|c| (c, false)),
            _ => self.target.output_tokens_per_second.map(|c| (c, true)),
        }
    }
}

/// Everything a run needs besides its policy and arrivals.
#[derive(Debug, Clone)]
pub struct Setup {
    pub model: ModelProfile,
    pub router: Router,
    /// One unified pool, or a prefill pool then a decode pool.
    pub pools: Vec<PoolSetup>,
    /// The seed's ScaledObject, for the stock triggers.
    pub seed: ScaledObjectSpec,
    pub thresholds: SloThresholds,
    pub scrape_interval: f64,
    /// The wall-clock time of the trace's start, for schedules.
    pub start: DateTime<Utc>,
    /// Requests held by the router longer than this are refused.
    pub request_timeout: f64,
    pub on_term_error: OnTermError,
    /// The timeline's resolution, seconds.
    pub sample_every: f64,
    /// Seconds after the last arrival for in-flight requests to finish.
    pub drain_limit: f64,
    /// The oracle's look-ahead for the rate it provisions for, seconds.
    pub oracle_window: f64,
}

/// One point of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: f64,
    /// Arrivals per second over the sample.
    pub arrivals: f64,
    /// Per pool: pods (starting or serving), serving replicas, and the replicas the
    /// policy asked for.
    pub pods: Vec<u32>,
    pub serving: Vec<u32>,
    pub demand: Vec<f64>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub policy: Policy,
    pub stats: Stats,
    pub replica_seconds: f64,
    pub gpu_hours: f64,
    pub scale_events: u64,
    pub timeline: Vec<Point>,
    /// Simulated seconds.
    pub simulated: f64,
    /// Failed evaluations of this scaler (the HPA saw an error).
    pub evaluation_errors: u64,
}

/// Per 15 s slot: the replicas each pool needs for the tokens arriving in the oracle
/// window from the slot's start.
fn needs(setup: &Setup, arrivals: Arrivals) -> Vec<Vec<u32>> {
    const SLOT: f64 = 15.0;
    let mut tokens: Vec<(f64, f64)> = Vec::new();
    for request in arrivals {
        let slot = (request.arrival / SLOT) as usize;
        if tokens.len() <= slot {
            tokens.resize(slot + 1, (0.0, 0.0));
        }
        tokens[slot].0 += f64::from(request.output);
        tokens[slot].1 += f64::from(request.input);
    }
    let window = (setup.oracle_window / SLOT).ceil().max(1.0) as usize;
    let mut sums = (0.0, 0.0);
    let mut out = vec![Vec::new(); tokens.len()];
    // A trailing sum over [slot, slot + window).
    for slot in (0..tokens.len()).rev() {
        sums.0 += tokens[slot].0;
        sums.1 += tokens[slot].1;
        if slot + window < tokens.len() {
            sums.0 -= tokens[slot + window].0;
            sums.1 -= tokens[slot + window].1;
        }
        let seconds = window as f64 * SLOT;
        out[slot] = setup
            .pools
            .iter()
            .map(|pool| {
                let output = sums.0 / seconds;
                let input = sums.1 / seconds;
                let by_output = pool.target.output_tokens_per_second.map(|c| output / c);
                let by_input = pool.target.input_tokens_per_second.map(|c| input / c);
                let need = match pool.role {
                    Role::Prefill => by_input.unwrap_or(0.0),
                    Role::Decode => by_output.unwrap_or(0.0),
                    Role::Unified => by_output.unwrap_or(0.0).max(by_input.unwrap_or(0.0)),
                };
                (need.ceil() as u32).max(1)
            })
            .collect();
    }
    out
}

/// Runs `policy` over the arrivals `make_arrivals` yields (called twice: the oracle and
/// the static fleet see the whole trace first, and every fleet starts at the size the
/// first minutes need).
pub fn run(setup: &Setup, policy: Policy, make_arrivals: &dyn Fn() -> Arrivals) -> Outcome {
    let mut stats = Stats::new(setup.thresholds);
    // Every policy starts from the fleet the first minutes need (as a fleet that has been
    // serving before the trace would); only the oracle and static fleets look further.
    let lookahead = needs(setup, make_arrivals());
    let peak: Vec<u32> = (0..setup.pools.len())
        .map(|p| lookahead.iter().map(|n| n[p]).max().unwrap_or(1))
        .collect();
    let oracle_wants = |now: f64, pool: usize| -> u32 {
        let cold = setup.model.cold_start;
        let from = (now / 15.0) as usize;
        let to = ((now + cold) / 15.0) as usize;
        (from..=to)
            .filter_map(|slot| lookahead.get(slot).map(|n| n[pool]))
            .max()
            .unwrap_or(1)
    };

    let mut pools: Vec<Pool> = setup
        .pools
        .iter()
        .map(|p| {
            Pool::new(
                p.role,
                setup.model.clone(),
                setup.router,
                setup.request_timeout,
            )
        })
        .collect();
    let mut hpas: Vec<Hpa> = setup
        .pools
        .iter()
        .map(|p| {
            Hpa::new(match policy {
                Policy::Scaler => p.scaled_object.clone(),
                _ => setup.seed.clone(),
            })
        })
        .collect();
    let mut tsdbs: Vec<Tsdb> = setup
        .pools
        .iter()
        .map(|p| Tsdb::new(setup.scrape_interval, &p.shape))
        .collect();
    for (index, pool) in pools.iter_mut().enumerate() {
        let initial = match policy {
            Policy::Static => peak[index],
            Policy::Oracle => oracle_wants(0.0, index),
            _ => {
                let spec = &hpas[index].spec;
                oracle_wants(0.0, index).clamp(spec.min_replicas.max(1), spec.max_replicas)
            }
        };
        pool.start_warm(initial, 0.0);
        pool.scale_events = 0;
    }

    let mut arrivals = make_arrivals();
    let duration = arrivals.duration();
    let mut handoffs: Vec<Handoff> = Vec::new();
    let mut demand: Vec<f64> = pools.iter().map(|p| f64::from(p.pods())).collect();
    let mut timeline = Vec::new();
    let mut arrived_in_sample = 0u64;
    let mut evaluation_errors = 0;
    let sync_offset = 5.0;
    let mut next_scrape = 0.0f64;
    let mut next_sync = sync_offset;
    let mut next_sample = 0.0;
    let mut pending = arrivals.next();
    let mut now = 0.0f64;
    let last_time = duration + setup.drain_limit;

    loop {
        let arrival_at = pending.as_ref().map_or(f64::INFINITY, |r| r.arrival);
        let timer = next_scrape.min(next_sync).min(next_sample);
        if pending.is_none()
            && (now > duration && pools.iter().all(Pool::is_idle) || timer > last_time)
        {
            break;
        }
        if arrival_at < timer {
            let request = pending.take().expect("an arrival is pending");
            now = request.arrival;
            step_to(&mut pools, now, &mut stats, &mut handoffs);
            stats.arrived();
            arrived_in_sample += 1;
            pools[0].route(request, now);
            pending = arrivals.next();
            continue;
        }
        now = timer;
        step_to(&mut pools, now, &mut stats, &mut handoffs);
        if next_scrape <= now {
            for (tsdb, pool) in tsdbs.iter_mut().zip(&pools) {
                tsdb.scrape(pool, now);
            }
            next_scrape += setup.scrape_interval;
        }
        if next_sync <= now {
            for index in 0..pools.len() {
                let current = pools[index].pods();
                let wanted = match policy {
                    Policy::Static => peak[index],
                    Policy::Oracle => oracle_wants(now, index),
                    _ => {
                        let (metrics, active, asked) =
                            measure(setup, policy, index, &tsdbs[index], now);
                        if metrics.is_err() {
                            evaluation_errors += 1;
                        }
                        if let Some(asked) = asked {
                            demand[index] = asked;
                        }
                        let hpa = &mut hpas[index];
                        match active.and_then(|active| hpa.poll(now, current, active)) {
                            Some(keda) => keda,
                            None => hpa.sync(now, current, metrics),
                        }
                    }
                };
                if matches!(policy, Policy::Static | Policy::Oracle) {
                    demand[index] = f64::from(wanted);
                }
                pools[index].scale_to(wanted, now);
            }
            next_sync += 15.0;
        }
        if next_sample <= now {
            timeline.push(Point {
                at: now,
                arrivals: arrived_in_sample as f64 / setup.sample_every,
                pods: pools.iter().map(Pool::pods).collect(),
                serving: pools.iter().map(|p| p.serving().count() as u32).collect(),
                demand: demand.clone(),
            });
            arrived_in_sample = 0;
            next_sample += setup.sample_every;
        }
    }
    for pool in &mut pools {
        pool.abandon(&mut stats);
    }
    let replica_seconds: f64 = pools.iter().map(|p| p.replica_seconds(now)).sum();
    Outcome {
        policy,
        stats,
        replica_seconds,
        gpu_hours: replica_seconds * f64::from(setup.model.gpus) / 3600.0,
        scale_events: pools.iter().map(|p| p.scale_events).sum(),
        timeline,
        simulated: now,
        evaluation_errors,
    }
}

/// Runs the pools to `until`, moving prefilled requests to the decode pool.
fn step_to(pools: &mut [Pool], until: f64, stats: &mut Stats, handoffs: &mut Vec<Handoff>) {
    pools[0].advance(until, stats, handoffs);
    if pools.len() < 2 {
        handoffs.clear();
        return;
    }
    handoffs.sort_by(|a, b| a.at.total_cmp(&b.at));
    for handoff in handoffs.drain(..) {
        pools[1].advance(handoff.at, stats, &mut Vec::new());
        pools[1].route(handoff.request, handoff.at);
    }
    pools[1].advance(until, stats, &mut Vec::new());
}

/// What KEDA hands the HPA for one pool at `now`: the metrics (or a failed call),
/// whether the triggers are active, and the replicas the policy asked for.
fn measure(
    setup: &Setup,
    policy: Policy,
    index: usize,
    tsdb: &Tsdb,
    now: f64,
) -> (Result<Vec<MetricValue>, ()>, Option<bool>, Option<f64>) {
    let pool = &setup.pools[index];
    let wall = SystemTime::from(setup.start) + Duration::from_secs_f64(now.max(0.0));
    if policy == Policy::Scaler {
        let observation = tsdb.observe(&pool.plan, &pool.shape, now, wall);
        return match observation
            .readings(None)
            .demand(&pool.target, setup.on_term_error)
        {
            Ok((demand, _)) => (
                Ok(vec![MetricValue {
                    value: demand.replicas,
                    target: 1.0,
                }]),
                Some(demand.active),
                Some(demand.replicas),
            ),
            Err(_) => (Err(()), None, None),
        };
    }
    let value = |signal: Signal| -> f64 {
        tsdb.answer(signal, &pool.plan, &pool.shape, now)
            .map(|samples| samples.iter().map(|s| s.value).sum())
            .unwrap_or(0.0)
    };
    let mut metrics = Vec::new();
    if matches!(policy, Policy::KedaQueue | Policy::KedaSeed) {
        metrics.push(MetricValue {
            value: value(Signal::Queue),
            target: SEED_QUEUE_THRESHOLD,
        });
    }
    if matches!(policy, Policy::KedaTokens | Policy::KedaSeed) {
        metrics.push(match pool.capacity() {
            Some((_, false)) => MetricValue {
                value: value(Signal::InputTokens),
                target: SEED_INPUT_TOKENS_THRESHOLD,
            },
            _ => MetricValue {
                value: value(Signal::OutputTokens),
                target: SEED_OUTPUT_TOKENS_THRESHOLD,
            },
        });
    }
    let active = metrics.iter().any(|m| m.value > 0.0);
    let asked = metrics
        .iter()
        .map(|m| m.value / m.target)
        .fold(0.0, f64::max);
    (Ok(metrics), Some(active), Some(asked))
}
