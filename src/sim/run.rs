//! One run: a trace through a fleet under one scaling policy.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::{
    fleet::{Pool, Router},
    hpa::{Hpa, MetricValue, ScaledObjectSpec},
    model::{Handoff, ModelProfile, PROMPT_TOKEN_BUCKETS, Role},
    stats::{SloThresholds, Stats},
    trace::Arrivals,
    tsdb::Tsdb,
};
use strum::IntoEnumIterator as _;

use crate::{
    config::{Config, OnTermError, Pool as PoolKind, metadata::Target},
    demand::TermKind,
    query,
    source::{QueryPlan, Signal},
};

/// The scaling policies a backtest compares.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
    strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Policy {
    /// Enough replicas for the trace's peak by the profile's capacity, all the time.
    Static,
    /// The smallest fixed fleet whose feasible attainment reaches the target (searched).
    StaticBest,
    /// KEDA's Prometheus trigger on `sum(llm_queue_depth)`, threshold 15.
    KedaQueue,
    /// KEDA's Prometheus trigger on output tokens/s, threshold 5000.
    KedaTokens,
    /// Both triggers, as the seed's ScaledObject has them.
    KedaSeed,
    /// Both triggers with thresholds chosen with hindsight on the trace (searched).
    KedaTuned,
    /// This scaler, through KEDA and the HPA.
    Scaler,
    /// Knows future arrivals and starts replicas one cold start ahead, sized by the
    /// profile's capacity.
    JustInTime,
    /// Knows future arrivals; per window the fewest replicas the simulator shows reach
    /// the target (searched): the cost floor.
    Oracle,
    /// The oracle's fleets, asked of this scaler's ScaledObject one cold start ahead and
    /// shaped by its HPA (stabilization, rate policies, tolerance): the floor for any
    /// demand behind that ScaledObject. Run only when named.
    OracleHpa,
}

impl Policy {
    /// The name `--policy` takes.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The policy of that name, if there is one.
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    /// Policies whose fleet size is set from outside the HPA loop (a plan or a search):
    /// they read no metrics.
    fn is_planned(self) -> bool {
        matches!(
            self,
            Policy::Static
                | Policy::StaticBest
                | Policy::JustInTime
                | Policy::Oracle
                | Policy::OracleHpa
        )
    }

    /// Whether `backtest` runs it when no `--policy` is named: all but `oracle-hpa`,
    /// which searches the oracle a second time and is asked for by name.
    pub fn runs_by_default(self) -> bool {
        self != Policy::OracleHpa
    }

    /// Policies that follow a fleet size given to them and hold it between changes.
    fn holds(self) -> bool {
        matches!(self, Policy::StaticBest | Policy::Oracle)
    }
}

/// The seed's stock trigger thresholds: queue 15 per replica, 5000 output tokens/s (and
/// its 40000 input tokens/s for a prefill pool).
pub const SEED_QUEUE_THRESHOLD: f64 = 15.0;
/// Per replica, of the output token rate.
pub const SEED_OUTPUT_TOKENS_THRESHOLD: f64 = 5000.0;
/// Per replica, of the input token rate (a prefill pool).
pub const SEED_INPUT_TOKENS_THRESHOLD: f64 = 40000.0;

/// The thresholds of the stock KEDA triggers (`keda-*` policies), per replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KedaThresholds {
    /// Of `sum(llm_queue_depth)`.
    pub queue: f64,
    /// Of the output token rate (unified and decode pools).
    pub output_tokens: f64,
    /// Of the input token rate (a prefill pool).
    pub input_tokens: f64,
}

impl KedaThresholds {
    /// The seed's ScaledObject's.
    pub const SEED: Self = Self {
        queue: SEED_QUEUE_THRESHOLD,
        output_tokens: SEED_OUTPUT_TOKENS_THRESHOLD,
        input_tokens: SEED_INPUT_TOKENS_THRESHOLD,
    };
}

/// One pool of the fleet and the scaler's view of it.
#[derive(Debug, Clone)]
pub struct PoolSetup {
    /// Which role the pool's replicas play.
    pub role: Role,
    /// The trigger as the service resolves it.
    pub target: Target,
    /// The queries the service would send for this trigger.
    pub plan: QueryPlan,
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
        let planned = query::plan(profile_config, &target);
        let role = match target.pool {
            PoolKind::Unified => Role::Unified,
            PoolKind::Prefill => Role::Prefill,
            PoolKind::Decode => Role::Decode,
        };
        Ok(Self {
            role,
            plan: planned.plan,
            target,
            scaled_object,
        })
    }
}

/// Everything a run needs besides its policy and arrivals.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The replica model every pod runs.
    pub model: ModelProfile,
    /// How requests are spread over a pool's replicas.
    pub router: Router,
    /// One unified pool, or a prefill pool then a decode pool.
    pub pools: Vec<PoolSetup>,
    /// The seed's ScaledObject, for the stock triggers.
    pub seed: ScaledObjectSpec,
    /// The TTFT and TPOT thresholds attainment is scored against.
    pub thresholds: SloThresholds,
    /// Seconds between two scrapes of the simulated Prometheus.
    pub scrape_interval: f64,
    /// The wall-clock time of the trace's start, for schedules.
    pub start: DateTime<Utc>,
    /// Requests held by the router longer than this are refused.
    pub request_timeout: f64,
    /// What the simulated scaler does when a term's query fails, as the config says.
    pub on_term_error: OnTermError,
    /// The timeline's resolution, seconds.
    pub sample_every: f64,
    /// Seconds after the last arrival for in-flight requests to finish.
    pub drain_limit: f64,
    /// The just-in-time reference's look-ahead for the rate it provisions for, seconds.
    pub oracle_window: f64,
    /// The stock triggers' thresholds.
    pub keda: KedaThresholds,
}

/// One point of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Seconds since the trace's start.
    pub at: f64,
    /// Arrivals per second over the sample.
    pub arrivals: f64,
    /// Per pool: pods (starting or serving), serving replicas, and the replicas the
    /// policy asked for.
    pub pods: Vec<u32>,
    /// Per pool: the serving replicas.
    pub serving: Vec<u32>,
    /// Per pool: the replicas the policy asked for.
    pub demand: Vec<f64>,
    /// Per pool, for this scaler: each term of its last evaluation, in
    /// [`TermKind`]'s order (`None`: not computed); empty for the other policies.
    pub terms: Vec<Vec<Option<f64>>>,
    /// Per pool, for this scaler: each SLO's reading at its last evaluation, in the
    /// config's order (see [`SloSample`]); empty for the other policies.
    pub slos: Vec<Vec<SloSample>>,
}

/// What one SLO read at an evaluation: the shares the term judged by, which say why it
/// acted or did not (`None`: not read, or no request in the window).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SloSample {
    /// The short window's fixable burn.
    pub short_fixable_burn: Option<f64>,
    /// The long window's fixable burn.
    pub long_fixable_burn: Option<f64>,
    /// The short window's share of requests no replica count serves in time.
    pub short_unfixable_ratio: Option<f64>,
    /// The long window's share of them.
    pub long_unfixable_ratio: Option<f64>,
}

impl SloSample {
    /// The CSV columns, in the order of [`Self::values`].
    pub const COLUMNS: [&'static str; 4] = [
        "short_fixable_burn",
        "long_fixable_burn",
        "short_unfixable_ratio",
        "long_unfixable_ratio",
    ];

    /// The values, in the order of [`Self::COLUMNS`].
    pub fn values(&self) -> [Option<f64>; 4] {
        [
            self.short_fixable_burn,
            self.long_fixable_burn,
            self.short_unfixable_ratio,
            self.long_unfixable_ratio,
        ]
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The policy that ran.
    pub policy: Policy,
    /// What the requests met.
    pub stats: Stats,
    /// Pod-seconds, starting pods included.
    pub replica_seconds: f64,
    /// GPU-hours: pod-seconds times the model's GPUs per replica.
    pub gpu_hours: f64,
    /// Changes of a pool's pod count.
    pub scale_events: u64,
    /// The timeline, one point per sample.
    pub timeline: Vec<Point>,
    /// Per pool, the names of the SLOs whose readings [`Point::slos`] holds (this
    /// scaler's; empty for the other policies).
    pub slo_names: Vec<Vec<String>>,
    /// Simulated seconds.
    pub simulated: f64,
    /// Failed evaluations of this scaler (the HPA saw an error).
    pub evaluation_errors: u64,
    /// What a searched reference found.
    pub found: Option<Found>,
}

/// What the search of a reference policy chose.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// `static-best`: the fixed fleet per pool, and whether it reaches the target.
    Replicas {
        /// Per pool, the fixed fleet.
        replicas: Vec<u32>,
        /// Whether it reaches the target.
        reached: bool,
    },
    /// `keda-tuned`: the chosen thresholds, and whether they reach the target.
    Thresholds {
        /// The thresholds chosen.
        thresholds: KedaThresholds,
        /// Whether they reach the target.
        reached: bool,
    },
    /// `oracle`: windows searched, and those where maxReplicaCount kept it from the target.
    Windows {
        /// Windows searched.
        windows: u64,
        /// Windows where maxReplicaCount kept it from the target.
        capped: u64,
        /// Per window, the fleet chosen for each pool (what `oracle-hpa` asks for).
        fleets: Vec<Vec<u32>>,
    },
}

/// Per 15 s slot: the replicas each pool needs for the tokens arriving in the oracle
/// window from the slot's start, at the rates the pool's capacity gives for the window's
/// mix (`capacity.profile` at its mean lengths and share of short answers, else the
/// fixed numbers): the fleet the scaler would have been holding.
pub fn needs(
    setup: &Setup,
    arrivals: impl Iterator<Item = super::model::Request>,
) -> Vec<Vec<u32>> {
    const SLOT: f64 = 15.0;
    let mut slots: Vec<Arrived> = Vec::new();
    for request in arrivals {
        let slot = (request.arrival / SLOT) as usize;
        if slots.len() <= slot {
            slots.resize(slot + 1, Arrived::default());
        }
        slots[slot].add(&request);
    }
    let window = (setup.oracle_window / SLOT).ceil().max(1.0) as usize;
    let seconds = window as f64 * SLOT;
    let mut sum = Arrived::default();
    let mut out = vec![Vec::new(); slots.len()];
    // A trailing sum over [slot, slot + window).
    for slot in (0..slots.len()).rev() {
        sum.merge(&slots[slot], 1.0);
        if let Some(leaving) = slots.get(slot + window) {
            sum.merge(leaving, -1.0);
        }
        out[slot] = setup
            .pools
            .iter()
            .map(|pool| pool_needs(pool, &sum, seconds))
            .collect();
    }
    out
}

/// What arrived in a stretch of time: output tokens, input tokens and requests, and the
/// requests by output length (per bucket of vLLM's length histogram, then the overflow).
#[derive(Debug, Clone, PartialEq)]
struct Arrived {
    /// Output tokens, input tokens, requests.
    tokens: [f64; 3],
    /// Requests per bucket of output length (not cumulative), then the overflow.
    output_lengths: [f64; PROMPT_TOKEN_BUCKETS.len() + 1],
}

impl Default for Arrived {
    fn default() -> Self {
        Self {
            tokens: [0.0; 3],
            output_lengths: [0.0; PROMPT_TOKEN_BUCKETS.len() + 1],
        }
    }
}

impl Arrived {
    fn add(&mut self, request: &super::model::Request) {
        self.tokens[0] += f64::from(request.output);
        self.tokens[1] += f64::from(request.input);
        self.tokens[2] += 1.0;
        let bucket = PROMPT_TOKEN_BUCKETS.partition_point(|&le| le < f64::from(request.output));
        self.output_lengths[bucket] += 1.0;
    }

    /// Adds (`sign` 1) or takes away (-1) another stretch.
    fn merge(&mut self, other: &Arrived, sign: f64) {
        for (a, b) in self.tokens.iter_mut().zip(other.tokens) {
            *a += sign * b;
        }
        for (a, b) in self.output_lengths.iter_mut().zip(other.output_lengths) {
            *a += sign * b;
        }
    }

    /// The output lengths as the histogram the scaler reads (cumulative, by `le`).
    fn length_window(&self) -> crate::demand::slo::LatencyWindow {
        let mut cumulative = 0.0;
        let buckets = PROMPT_TOKEN_BUCKETS
            .iter()
            .chain([f64::INFINITY].iter())
            .zip(self.output_lengths)
            .map(|(&le, count)| {
                cumulative += count;
                crate::demand::slo::Bucket {
                    le,
                    rate: cumulative,
                }
            })
            .collect();
        crate::demand::slo::LatencyWindow::Buckets(buckets)
    }
}

/// The replicas one pool needs for what arrived over `seconds`.
fn pool_needs(pool: &PoolSetup, arrived: &Arrived, seconds: f64) -> u32 {
    let target = &pool.target;
    let [output, input, requests] = arrived.tokens;
    let (out_rate, in_rate) = match &target.capacity_profile {
        Some(profile) if requests > 0.0 => {
            // The share as the scaler reads it, only for a profile that has share points.
            let share = profile
                .reads_short_share()
                .then(|| arrived.length_window())
                .and_then(|lengths| {
                    crate::demand::short_share(Some(&lengths), profile.short_answers())
                });
            let rates = profile.at(input / requests, output / requests, share);
            (
                Some(rates.output_tokens_per_second),
                Some(rates.input_tokens_per_second),
            )
        }
        _ => (
            target.output_tokens_per_second,
            target.input_tokens_per_second,
        ),
    };
    let by_output = out_rate.map(|c| output / seconds / c);
    let by_input = in_rate.map(|c| input / seconds / c);
    let need = match pool.role {
        Role::Prefill => by_input.unwrap_or(0.0),
        Role::Decode => by_output.unwrap_or(0.0),
        Role::Unified => by_output.unwrap_or(0.0).max(by_input.unwrap_or(0.0)),
    };
    (need.ceil() as u32).max(1)
}

/// A fleet under one policy, run step by step: `backtest` runs it to the end of a
/// trace, `demo` in (accelerated) real time while the gRPC service reads its metrics.
/// The oracle's search clones it to try fleet sizes from the same state.
#[derive(Clone)]
pub struct Simulation {
    /// Everything the run needs besides its policy and arrivals.
    pub setup: Setup,
    /// The policy that sizes the fleet.
    pub policy: Policy,
    /// Per 15 s slot and pool: the replicas the arriving tokens need (oracle, static).
    lookahead: Vec<Vec<u32>>,
    /// The fleet's pools, in the setup's order.
    pub pools: Vec<Pool>,
    hpas: Vec<Hpa>,
    /// What Prometheus holds, per pool.
    pub tsdbs: Vec<Tsdb>,
    /// What the requests met so far.
    pub stats: Stats,
    handoffs: Vec<Handoff>,
    /// The replicas the policy last asked for, per pool.
    demand: Vec<f64>,
    /// What the scaler's last evaluation of each pool carried (its SLO terms' rises),
    /// as the service keeps it per trigger.
    rises: Vec<Vec<crate::demand::control::Rise>>,
    /// The terms of the scaler's last evaluation of each pool (see [`Point::terms`]).
    terms: Vec<Vec<Option<f64>>>,
    /// The SLO readings of the scaler's last evaluation of each pool (see [`Point::slos`]).
    slos: Vec<Vec<SloSample>>,
    /// The timeline so far.
    pub timeline: Vec<Point>,
    arrived_in_sample: u64,
    evaluation_errors: u64,
    next_scrape: f64,
    next_sync: f64,
    next_sample: f64,
    /// Simulated seconds since the start.
    pub now: f64,
}

/// The HPA syncs this long after each scrape: its metrics are that old at best.
const SYNC_OFFSET: f64 = 5.0;

impl Simulation {
    /// A fleet at the size the first minutes of `lookahead` need (as a fleet that has been
    /// serving before the trace would), within each ScaledObject's bounds.
    pub fn new(setup: Setup, policy: Policy, lookahead: Vec<Vec<u32>>) -> Self {
        Self::build(setup, policy, lookahead, None)
    }

    /// A fleet that starts warm at `fleet` replicas per pool and holds them until told
    /// otherwise ([`Self::set_fleet`]): the searched references.
    pub fn with_fleet(setup: Setup, policy: Policy, fleet: &[u32]) -> Self {
        Self::build(setup, policy, Vec::new(), Some(fleet))
    }

    fn build(
        setup: Setup,
        policy: Policy,
        lookahead: Vec<Vec<u32>>,
        fleet: Option<&[u32]>,
    ) -> Self {
        let pools: Vec<Pool> = setup
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
        let hpas: Vec<Hpa> = setup
            .pools
            .iter()
            .map(|p| {
                Hpa::new(match policy {
                    Policy::Scaler | Policy::OracleHpa => p.scaled_object.clone(),
                    _ => setup.seed.clone(),
                })
            })
            .collect();
        let tsdbs = setup
            .pools
            .iter()
            .map(|p| Tsdb::new(setup.scrape_interval, &p.plan))
            .collect();
        let mut simulation = Self {
            stats: Stats::windowed(setup.thresholds, super::stats::ORACLE_WINDOW),
            demand: vec![0.0; pools.len()],
            rises: vec![Vec::new(); pools.len()],
            terms: vec![Vec::new(); pools.len()],
            slos: vec![Vec::new(); pools.len()],
            setup,
            policy,
            lookahead,
            pools,
            hpas,
            tsdbs,
            handoffs: Vec::new(),
            timeline: Vec::new(),
            arrived_in_sample: 0,
            evaluation_errors: 0,
            next_scrape: 0.0,
            next_sync: SYNC_OFFSET,
            next_sample: 0.0,
            now: 0.0,
        };
        for index in 0..simulation.pools.len() {
            let initial = match (policy, fleet) {
                (_, Some(fleet)) => fleet[index],
                (Policy::Static, None) => simulation.peak(index),
                (Policy::JustInTime, None) => simulation.oracle_wants(0.0, index),
                _ => {
                    let spec = &simulation.hpas[index].spec;
                    simulation
                        .oracle_wants(0.0, index)
                        .clamp(spec.min_replicas.max(1), spec.max_replicas.max(1))
                }
            };
            simulation.pools[index].start_warm(initial, 0.0);
            simulation.hpas[index].settle(0.0, initial);
            simulation.demand[index] = f64::from(initial);
        }
        simulation
    }

    fn peak(&self, pool: usize) -> u32 {
        self.lookahead.iter().map(|n| n[pool]).max().unwrap_or(1)
    }

    /// What the oracle runs at `now`: the most any moment until a replica started now
    /// would serve needs.
    fn oracle_wants(&self, now: f64, pool: usize) -> u32 {
        let from = (now / 15.0) as usize;
        let to = ((now + self.setup.model.cold_start) / 15.0) as usize;
        (from..=to)
            .filter_map(|slot| self.lookahead.get(slot).map(|n| n[pool]))
            .max()
            .unwrap_or(1)
    }

    /// Sets pool `index` to `replicas` serving from `now`, new ones created one cold
    /// start earlier (billed from then): perfect foresight.
    pub fn set_fleet(&mut self, index: usize, replicas: u32, now: f64) {
        self.run_timers(now);
        self.pools[index].scale_ready(replicas, now);
        self.demand[index] = f64::from(replicas);
    }

    /// A request arrives now (`request.arrival`, not before the simulation's clock).
    pub fn arrive(&mut self, mut request: super::model::Request) {
        request.feasible =
            self.setup
                .model
                .feasible(request.input, request.output, self.setup.thresholds);
        self.run_timers(request.arrival);
        self.now = self.now.max(request.arrival);
        step_to(
            &mut self.pools,
            self.now,
            &mut self.stats,
            &mut self.handoffs,
        );
        self.stats.arrived(&request);
        self.arrived_in_sample += 1;
        self.pools[0].route(request, self.now);
    }

    /// Runs scrapes, HPA syncs and samples due up to `until`, and the fleet to `until`.
    pub fn run_timers(&mut self, until: f64) {
        loop {
            let timer = self.next_scrape.min(self.next_sync).min(self.next_sample);
            if timer > until {
                break;
            }
            self.now = timer;
            step_to(&mut self.pools, timer, &mut self.stats, &mut self.handoffs);
            if self.next_scrape <= timer {
                // Policies that read no metrics keep no history (and clone cheaply).
                if !self.policy.is_planned() {
                    for (tsdb, pool) in self.tsdbs.iter_mut().zip(&self.pools) {
                        tsdb.scrape(pool, timer);
                    }
                }
                self.next_scrape += self.setup.scrape_interval;
            }
            if self.next_sync <= timer {
                self.sync(timer);
                self.next_sync += 15.0;
            }
            if self.next_sample <= timer {
                self.timeline.push(Point {
                    at: timer,
                    arrivals: self.arrived_in_sample as f64 / self.setup.sample_every,
                    pods: self.pools.iter().map(Pool::pods).collect(),
                    serving: self
                        .pools
                        .iter()
                        .map(|p| p.serving().count() as u32)
                        .collect(),
                    demand: self.demand.clone(),
                    terms: self.terms.clone(),
                    slos: self.slos.clone(),
                });
                self.arrived_in_sample = 0;
                self.next_sample += self.setup.sample_every;
            }
        }
        if until > self.now {
            self.now = until;
            step_to(&mut self.pools, until, &mut self.stats, &mut self.handoffs);
        }
    }

    /// One HPA sync (and KEDA poll) for every pool.
    fn sync(&mut self, now: f64) {
        for index in 0..self.pools.len() {
            let current = self.pools[index].pods();
            // What the policy asks (the timeline's demand) and the pods it gets.
            let (asked, wanted) = match self.policy {
                Policy::Static => planned(self.peak(index)),
                Policy::JustInTime => planned(self.oracle_wants(now, index)),
                Policy::OracleHpa => {
                    let asked = f64::from(self.oracle_wants(now, index));
                    let metric = MetricValue {
                        value: asked,
                        target: 1.0,
                    };
                    let wanted = self.hpas[index].sync(now, current, Ok(vec![metric]));
                    (Some(asked), wanted)
                }
                policy if policy.holds() => planned(current),
                policy => {
                    let (metrics, active, asked) = measure(
                        &self.setup,
                        policy,
                        (
                            index,
                            &mut self.rises[index],
                            &mut self.terms[index],
                            &mut self.slos[index],
                        ),
                        &self.tsdbs[index],
                        now,
                    );
                    if metrics.is_err() {
                        self.evaluation_errors += 1;
                    }
                    let hpa = &mut self.hpas[index];
                    let wanted = match active.and_then(|active| hpa.poll(now, current, active)) {
                        Some(keda) => keda,
                        None => hpa.sync(now, current, metrics),
                    };
                    (asked, wanted)
                }
            };
            if let Some(asked) = asked {
                self.demand[index] = asked;
            }
            self.pools[index].scale_to(wanted, now);
        }
    }

    /// True when no request is in flight.
    pub fn is_idle(&self) -> bool {
        self.pools.iter().all(Pool::is_idle)
    }

    /// Ends the run: requests still in flight count as unfinished.
    pub fn finish(mut self) -> Outcome {
        for pool in &mut self.pools {
            pool.abandon(&mut self.stats);
        }
        let replica_seconds: f64 = self.pools.iter().map(|p| p.replica_seconds(self.now)).sum();
        Outcome {
            policy: self.policy,
            stats: self.stats,
            replica_seconds,
            gpu_hours: replica_seconds * f64::from(self.setup.model.gpus) / 3600.0,
            scale_events: self.pools.iter().map(|p| p.scale_events).sum(),
            timeline: self.timeline,
            slo_names: match self.policy {
                Policy::Scaler => self
                    .setup
                    .pools
                    .iter()
                    .map(|p| {
                        p.target
                            .slos
                            .iter()
                            .map(|s| s.name.as_str().to_owned())
                            .collect()
                    })
                    .collect(),
                _ => vec![Vec::new(); self.setup.pools.len()],
            },
            simulated: self.now,
            evaluation_errors: self.evaluation_errors,
            found: None,
        }
    }
}

/// A fleet size set from outside the HPA loop: it is both what was asked and what runs.
fn planned(replicas: u32) -> (Option<f64>, u32) {
    (Some(f64::from(replicas)), replicas)
}

/// Runs `policy` over the arrivals `make_arrivals` yields. It is called twice: the
/// just-in-time reference and the static fleet see the whole trace first, and every
/// fleet starts at the size the first minutes need (by the profile's capacity, or for
/// the stock KEDA policies by their own token thresholds).
pub fn run(setup: &Setup, policy: Policy, make_arrivals: &dyn Fn() -> Arrivals) -> Outcome {
    let lookahead = match policy {
        Policy::KedaQueue | Policy::KedaTokens | Policy::KedaSeed | Policy::KedaTuned => {
            needs(&sized_by_keda(setup), make_arrivals())
        }
        _ => needs(setup, make_arrivals()),
    };
    let simulation = Simulation::new(setup.clone(), policy, lookahead);
    drive(simulation, make_arrivals())
}

/// The setup a stock KEDA policy's start fleet is sized with: its own token thresholds
/// in place of the profile's capacity, so that it starts where its own trigger would
/// hold a fleet that has been serving, and a reference searched over those thresholds
/// does not move when the scaler's capacity numbers do.
fn sized_by_keda(setup: &Setup) -> Setup {
    let mut sized = setup.clone();
    for pool in &mut sized.pools {
        let prefill = pool.role == Role::Prefill;
        pool.target.output_tokens_per_second = (!prefill).then_some(setup.keda.output_tokens);
        pool.target.input_tokens_per_second = prefill.then_some(setup.keda.input_tokens);
        // Stock KEDA knows nothing of the scaler's profile.
        pool.target.capacity_profile = None;
    }
    sized
}

/// Feeds every arrival to `simulation`, lets in-flight requests finish (up to the drain
/// limit) and ends the run.
pub fn drive(mut simulation: Simulation, arrivals: Arrivals) -> Outcome {
    let duration = arrivals.duration();
    for request in arrivals {
        simulation.arrive(request);
    }
    simulation.drain(duration)
}

impl Simulation {
    /// After the last arrival (the trace lasts `duration`): runs until nothing is in
    /// flight or the drain limit, then ends the run.
    pub fn drain(mut self, duration: f64) -> Outcome {
        let last = duration + self.setup.drain_limit;
        let mut until = duration.max(self.now);
        while until < last && !(until >= duration && self.is_idle()) {
            until = (until + self.setup.scrape_interval).min(last);
            self.run_timers(until);
        }
        self.finish()
    }
}

/// Runs the pools to `until`, moving prefilled requests to the decode pool.
pub(super) fn step_to(
    pools: &mut [Pool],
    until: f64,
    stats: &mut Stats,
    handoffs: &mut Vec<Handoff>,
) {
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
    (index, rises, terms, slos): (
        usize,
        &mut Vec<crate::demand::control::Rise>,
        &mut Vec<Option<f64>>,
        &mut Vec<SloSample>,
    ),
    tsdb: &Tsdb,
    now: f64,
) -> (Result<Vec<MetricValue>, ()>, Option<bool>, Option<f64>) {
    let pool = &setup.pools[index];
    let wall = SystemTime::from(setup.start) + Duration::from_secs_f64(now.max(0.0));
    if policy == Policy::Scaler {
        let observation = tsdb.observe(&pool.plan, now, wall);
        return match observation.readings(None).demand_after(
            &pool.target,
            setup.on_term_error,
            rises,
        ) {
            Ok((demand, _)) => {
                *terms = TermKind::iter()
                    .map(|kind| demand.term(kind).map(|t| t.replicas))
                    .collect();
                // In the config's order, an SLO that was not read left empty.
                *slos = pool
                    .target
                    .slos
                    .iter()
                    .map(|config| {
                        let read = demand.slos.iter().find(|s| s.name == config.name.as_str());
                        read.map_or_else(SloSample::default, |s| SloSample {
                            short_fixable_burn: s.short_fixable_burn,
                            long_fixable_burn: s.long_fixable_burn,
                            short_unfixable_ratio: s.short_unfixable_ratio,
                            long_unfixable_ratio: s.long_unfixable_ratio,
                        })
                    })
                    .collect();
                let answer = (
                    Ok(vec![MetricValue {
                        value: demand.replicas,
                        target: 1.0,
                    }]),
                    Some(demand.active),
                    Some(demand.replicas),
                );
                *rises = demand.rises;
                answer
            }
            Err(_) => {
                *terms = vec![None; TermKind::iter().count()];
                slos.clear();
                (Err(()), None, None)
            }
        };
    }
    let value = |signal: Signal| -> f64 {
        let Some(spec) = pool.plan.spec(signal) else {
            return 0.0;
        };
        tsdb.answer(spec, now)
            .map(|samples| samples.iter().map(|s| s.value).sum())
            .unwrap_or(0.0)
    };
    let mut metrics = Vec::new();
    let thresholds = setup.keda;
    if matches!(
        policy,
        Policy::KedaQueue | Policy::KedaSeed | Policy::KedaTuned
    ) {
        metrics.push(MetricValue {
            value: value(Signal::Queue),
            target: thresholds.queue,
        });
    }
    if matches!(
        policy,
        Policy::KedaTokens | Policy::KedaSeed | Policy::KedaTuned
    ) {
        metrics.push(match pool.role {
            Role::Prefill => MetricValue {
                value: value(Signal::InputTokens),
                target: thresholds.input_tokens,
            },
            _ => MetricValue {
                value: value(Signal::OutputTokens),
                target: thresholds.output_tokens,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A unified vLLM pool; `profile` lines go under its `capacity:`.
    fn pool(profile: &str) -> PoolSetup {
        let config = format!(
            "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  chat:\n    engine: vllm\n    capacity:\n      queue_per_replica: 2\n      output_tokens_per_second: 1000\n      input_tokens_per_second: 4000\n      input_term: true\n{profile}"
        );
        let config = crate::config::Config::parse(&config).unwrap();
        PoolSetup::new(&config, "chat", ScaledObjectSpec::recommended()).unwrap()
    }

    /// `requests` requests of `output` and `input` tokens each.
    fn arrived(output: f64, input: f64, requests: f64) -> Arrived {
        let mut arrived = Arrived::default();
        let request = super::super::model::Request::new(0.0, input as u32, output as u32);
        for _ in 0..requests as usize {
            arrived.add(&request);
        }
        arrived
    }

    const FALLING: &str = "      profile:\n        - {input_tokens: 1000, output_tokens: 200, output_tokens_per_second: 1000, input_tokens_per_second: 5000}\n        - {input_tokens: 16000, output_tokens: 200, output_tokens_per_second: 1000, input_tokens_per_second: 2000}\n";

    #[test]
    fn without_a_profile_the_fixed_numbers_size_the_fleet() {
        // 60 s of 10 requests/s with 16,000-token prompts: 160,000 prompt tokens/s.
        let tokens = arrived(100.0, 16_000.0, 600.0);
        assert_eq!(pool_needs(&pool(""), &tokens, 60.0), 40);
    }

    #[test]
    fn with_a_profile_the_window_mix_picks_the_rates() {
        let falling = pool(FALLING);
        // Long prompts: 160,000 prompt tokens/s at 2,000 a replica.
        let long = arrived(100.0, 16_000.0, 600.0);
        assert_eq!(pool_needs(&falling, &long, 60.0), 80);
        // Short prompts: 10,000 prompt tokens/s at 5,000 a replica.
        let short = arrived(100.0, 1_000.0, 600.0);
        assert_eq!(pool_needs(&falling, &short, 60.0), 2);
        // No request in the window: the fixed numbers, and at least one replica.
        assert_eq!(pool_needs(&falling, &Arrived::default(), 60.0), 1);
    }

    #[test]
    fn with_share_points_the_share_of_short_answers_picks_the_rates() {
        let shares = pool(
            "      profile:\n        - {input_tokens: 1000, output_tokens: 100, short_output_share: 0, output_tokens_per_second: 1000, input_tokens_per_second: 5000}\n        - {input_tokens: 1000, output_tokens: 100, short_output_share: 0.5, output_tokens_per_second: 1000, input_tokens_per_second: 2500}\n",
        );
        // 10,000 prompt tokens/s: 2 replicas at 5,000 with no short answer.
        let long = arrived(100.0, 1_000.0, 600.0);
        assert_eq!(pool_needs(&shares, &long, 60.0), 2);
        // Half of them with 10 output tokens: 4 at 2,500.
        let mut half = arrived(100.0, 1_000.0, 300.0);
        half.merge(&arrived(10.0, 1_000.0, 300.0), 1.0);
        assert_eq!(pool_needs(&shares, &half, 60.0), 4);
    }

    #[test]
    fn needs_sums_each_window_ahead_of_its_slot() {
        let setup_pool = pool(FALLING);
        let setup = Setup {
            model: super::super::model::ModelProfile::llama3_70b_tp4_h100(),
            router: Router::LeastOutstanding,
            pools: vec![setup_pool],
            seed: ScaledObjectSpec::seed(),
            thresholds: SloThresholds::default(),
            scrape_interval: 15.0,
            start: chrono::Utc::now(),
            request_timeout: 300.0,
            on_term_error: crate::config::OnTermError::Fail,
            sample_every: 15.0,
            drain_limit: 0.0,
            oracle_window: 60.0,
            keda: KedaThresholds::SEED,
        };
        // A minute of short prompts, then a minute of long ones, 10 requests/s.
        let arrivals = (0..1200).map(|i| {
            let input = if i < 600 { 1_000 } else { 16_000 };
            super::super::model::Request::new(f64::from(i) / 10.0, input, 100)
        });
        let needs = needs(&setup, arrivals);
        assert_eq!(needs.len(), 8);
        assert_eq!(needs[0], vec![2], "the short minute at 5,000 a replica");
        assert_eq!(needs[4], vec![80], "the long minute at 2,000 a replica");
        // Stock KEDA's start fleet never reads the profile.
        assert!(
            sized_by_keda(&setup).pools[0]
                .target
                .capacity_profile
                .is_none()
        );
    }
}
