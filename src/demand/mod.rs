//! The demand model: signals in, terms and a replica demand out. Pure (no I/O, no
//! clock), so the server, the simulator and `explain` all run this same code.
//!
//! Terms, in replicas:
//! - queue = Q / queue_per_replica
//! - throughput = T_out / output_tokens_per_second (decode, unified), T_in / input_tokens_per_second (prefill)
//! - input_throughput = T_in / input_tokens_per_second (unified, with `capacity.input_term`)
//! - kv = R x K / target_ratio (decode, unified): the replicas that bring KV usage back to the target
//! - slo = max(L, 1) x min(max_boost, trim x (1 + gain x (b_short - 1))) while an SLO's
//!   burn rate exceeds burn_threshold over both its windows (the largest over the SLOs),
//!   L the largest of the terms above (the load-based demand); see [`slo`]. The boost is
//!   held at its last rise once the fleet served that rise without the burn falling
//!   (anti-windup, see [`control`]), which is the one thing carried between evaluations,
//!   and is the trim alone while the fleet serves under three quarters of L (its misses
//!   are the shortfall's). The trim is the boost of a served rise that lowered the burn
//!   without ending it (1 until one has); after the burn the term is L x trim while
//!   the trim, decaying, stands
//! - schedule = the largest min_replicas of the cron windows overlapping [now, now + lead]
//! - forecast = forecast token rate x headroom / per-replica capacity; see [`forecast`]
//!
//! D = clamp(max(terms), min_demand, max_demand); active when Q > 0, T_out + T_in > 0 or D > 0.
//!
//! A signal may be missing (its query failed and the operator chose `on_term_error: skip`):
//! the terms that need it are skipped and listed, and a demand with no term left is an error.

pub mod control;
mod error;
pub mod forecast;
pub mod schedule;
pub mod slo;

use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};

use crate::config::{
    KvAggregate, LatencySignal, Pool, anticipation::ScheduleConfig, metadata::Target,
};
pub use error::SignalError;
use forecast::{Forecast, HistoryWindow};
use schedule::ScheduledWindow;
pub use slo::SloWindows;

/// One replica's value of a per-replica gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaValue {
    /// The value of the profile's `replica_label`.
    pub replica: String,
    /// Its value.
    pub value: f64,
}

/// What the metrics source observed for one fleet; `None` is a signal that could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Waiting requests per replica; the number of entries is R.
    pub queue_by_replica: Option<Vec<ReplicaValue>>,
    /// T_out: output tokens per second over the fleet.
    pub output_tokens_per_second: Option<f64>,
    /// T_in: input tokens per second over the fleet.
    pub input_tokens_per_second: Option<f64>,
    /// KV-cache usage ratio per replica (not read for pools that don't scale on it).
    pub kv_by_replica: Option<Vec<ReplicaValue>>,
    /// Per SLO of [`Params::slos`], in order: its latency over the two windows.
    pub slos: Vec<Option<SloWindows>>,
    /// The token rate's history, for the forecast.
    pub history: Option<HistoryWindow>,
    /// Mean prompt and output tokens per finished request, for `capacity.profile`.
    pub mean_lengths: Option<(f64, f64)>,
    /// The output-length histogram of the requests finished over the mix window, for a
    /// profile with `short_output_share` points.
    pub output_lengths: Option<slo::LatencyWindow>,
    /// When the signals were observed: schedules are read against it.
    pub now: Option<DateTime<Utc>>,
}

/// One SLO's settings, as the term uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct SloParams {
    /// The SLO's name, for Explain and metric labels.
    pub name: String,
    /// The latency it is set on.
    pub signal: LatencySignal,
    /// Seconds.
    pub threshold: f64,
    /// The share of requests that must be under the threshold, such as 0.99.
    pub objective: f64,
    /// The burn rate both windows must exceed before the term acts.
    pub burn_threshold: f64,
    /// Replicas asked per unit of burn above the threshold, as a share of the load.
    pub gain: f64,
    /// The most the term multiplies the load-based demand by.
    pub max_boost: f64,
    /// For a TPOT SLO: the prompt length from which a request alone on an idle replica
    /// misses the threshold; the split's bound on the prompt-length histogram.
    pub floor_context_tokens: Option<f64>,
    /// The short window, in seconds: how long the fleet must serve a rise of the term
    /// before anti-windup judges it (see [`control`]).
    pub short_window_s: f64,
    /// The trim's half-life, in seconds; 0 keeps no trim (see [`control`]).
    pub trim_half_life_s: f64,
}

impl SloParams {
    /// The bound above which a request in the SLO's split histogram misses on any
    /// replica: the threshold on prefill times (TTFT), the floor context on prompt
    /// lengths (TPOT). `None`: the SLO has no split.
    pub fn split_bound(&self) -> Option<slo::Split> {
        match self.signal {
            LatencySignal::Ttft => Some(slo::Split::Seconds(self.threshold)),
            LatencySignal::Tpot => self.floor_context_tokens.map(slo::Split::Other),
        }
    }
}

/// The settings the terms use, taken from a resolved [`Target`].
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The pool's role: which token rate sizes it, whether KV counts.
    pub pool: Pool,
    /// Waiting requests one replica may hold.
    pub queue_per_replica: f64,
    /// Output tokens per second one replica sustains.
    pub output_tokens_per_second: Option<f64>,
    /// Input tokens per second one replica sustains.
    pub input_tokens_per_second: Option<f64>,
    /// A unified pool's input term (`capacity.input_term`).
    pub input_term: bool,
    /// Rates by request mix; with the mix read, they replace the two numbers above.
    pub capacity_profile: Option<crate::config::capacity::CapacityProfile>,
    /// The KV-cache usage a replica should run at.
    pub kv_target: f64,
    /// How per-replica KV usage becomes one K.
    pub kv_aggregate: KvAggregate,
    /// The lowest demand answered.
    pub min_demand: f64,
    /// The highest demand answered.
    pub max_demand: f64,
    /// The SLOs that count for the pool.
    pub slos: Vec<SloParams>,
    /// How far ahead schedules and the forecast look.
    pub lead: Duration,
    /// Cron windows with a floor of replicas.
    pub schedules: Vec<ScheduleConfig>,
    /// The forecast's headroom; `None` without a forecast.
    pub forecast_headroom: Option<f64>,
}

impl From<&Target> for Params {
    fn from(target: &Target) -> Self {
        Self {
            pool: target.pool,
            queue_per_replica: target.queue_per_replica,
            output_tokens_per_second: target.output_tokens_per_second,
            input_tokens_per_second: target.input_tokens_per_second,
            input_term: target.input_term,
            capacity_profile: target.capacity_profile.clone(),
            kv_target: target.kv_target,
            kv_aggregate: target.kv_aggregate,
            min_demand: target.min_demand,
            max_demand: target.max_demand,
            slos: target
                .slos
                .iter()
                .map(|slo| SloParams {
                    name: slo.name.as_str().to_owned(),
                    signal: slo.signal,
                    threshold: slo.threshold.value.0.as_secs_f64(),
                    objective: slo.objective.0,
                    burn_threshold: slo.burn_threshold.0,
                    gain: slo.gain.0,
                    max_boost: slo.max_boost.0,
                    floor_context_tokens: slo.floor_context_tokens.as_ref().map(|f| f.value.0),
                    short_window_s: slo.short_window().0.as_secs_f64(),
                    trim_half_life_s: slo.trim_half_life.value.0.as_secs_f64(),
                })
                .collect(),
            lead: target
                .predictive
                .as_ref()
                .map_or(Duration::ZERO, |p| p.lead.value.0),
            schedules: target
                .predictive
                .as_ref()
                .map_or_else(Vec::new, |p| p.schedules.clone()),
            forecast_headroom: target
                .predictive
                .as_ref()
                .and_then(|p| p.history.as_ref())
                .map(|h| h.headroom.0),
        }
    }
}

/// The kinds of term that compete in max(terms), in tie-break order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum TermKind {
    /// Q / queue_per_replica.
    Queue,
    /// The pool's token rate over one replica's.
    Throughput,
    /// A unified pool's prompt load (`capacity.input_term`).
    InputThroughput,
    /// R x K / kv_target.
    Kv,
    /// The load-based demand boosted while an SLO burns on misses replicas fix.
    Slo,
    /// A schedule window's floor.
    Schedule,
    /// The forecast rate over the lead, over one replica's.
    Forecast,
}

impl TermKind {
    /// The term's name, for Explain and metric labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How one SLO stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SloStatus {
    /// The SLO's name.
    pub name: String,
    /// The latency it is set on.
    pub signal: LatencySignal,
    /// Share of requests slower than the threshold; `None` when the window held no requests.
    pub short_error_ratio: Option<f64>,
    /// The same over the long window.
    pub long_error_ratio: Option<f64>,
    /// error_ratio / (1 - objective); `None` without requests.
    pub short_burn: Option<f64>,
    /// The same over the long window.
    pub long_burn: Option<f64>,
    /// Share of requests that miss on any replica: for TTFT those whose prefill alone
    /// took longer than the threshold, for TPOT those whose prompt is longer than
    /// `floor_context_tokens`. `None` without a split (see [`SloWindows::unfixable`])
    /// or without requests.
    pub short_unfixable_ratio: Option<f64>,
    /// The same over the long window.
    pub long_unfixable_ratio: Option<f64>,
    /// The burn rate of the misses replicas can fix:
    /// max(0, error_ratio - unfixable_ratio) / (1 - objective). Equal to the burn rate
    /// without a split.
    pub short_fixable_burn: Option<f64>,
    /// The same over the long window.
    pub long_fixable_burn: Option<f64>,
    /// Both windows' fixable burn is above burn_threshold: the SLO asks for replicas.
    pub burning: bool,
    /// The replicas it asks for while burning.
    pub replicas: Option<f64>,
    /// The boost in force while burning: the burn's, or the held one.
    pub boost: Option<f64>,
    /// What anti-windup did with the boost.
    pub control: control::Control,
    /// Why the term did or did not act, in words.
    pub control_reason: String,
    /// The term's last rise during this burn, which the next evaluation judges.
    pub rise: Option<control::Rise>,
}

/// One term: its value in replicas, and the numbers it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// Which term.
    pub kind: TermKind,
    /// Its value, in replicas.
    pub replicas: f64,
    /// The formula with the numbers filled in.
    pub formula: String,
    /// The inputs by name, for Explain.
    pub inputs: Vec<(&'static str, f64)>,
}

/// What decided the demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// The largest term.
    Term(TermKind),
    /// Every term was below min_demand.
    MinDemand,
    /// The largest term was above max_demand.
    MaxDemand,
}

impl fmt::Display for Winner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Winner::Term(kind) => kind.as_str(),
            Winner::MinDemand => "min_demand",
            Winner::MaxDemand => "max_demand",
        })
    }
}

/// The aggregated signals the terms read; `None` where the signal was not read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Q
    pub queue_depth: Option<f64>,
    /// R
    pub replicas: Option<f64>,
    /// T_out
    pub output_tokens_per_second: Option<f64>,
    /// T_in
    pub input_tokens_per_second: Option<f64>,
    /// K
    pub kv_cache_ratio: Option<f64>,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Replicas wanted, clamped: what GetMetrics answers.
    pub replicas: f64,
    /// max(terms) before clamping.
    pub unclamped: f64,
    /// What decided it.
    pub winner: Winner,
    /// Every term that was computed.
    pub terms: Vec<Term>,
    /// The aggregated signals the terms read.
    pub inputs: Inputs,
    /// What IsActive answers.
    pub active: bool,
    /// Terms left out because a signal they need was not read.
    pub skipped: Vec<TermKind>,
    /// Every SLO that was read, burning or not.
    pub slos: Vec<SloStatus>,
    /// The schedule window in force over the lead, if any.
    pub schedule: Option<ScheduledWindow>,
    /// The forecast, when there is history to make one.
    pub forecast: Option<Forecast>,
    /// What to carry to the next evaluation of the same trigger: each burning SLO's
    /// last rise (see [`control`]).
    pub rises: Vec<control::Rise>,
}

impl Demand {
    /// One term, if it was computed.
    pub fn term(&self, kind: TermKind) -> Option<&Term> {
        self.terms.iter().find(|t| t.kind == kind)
    }
}

/// KV ratios a hair above 1 come from float arithmetic in exporters, not from overload.
const KV_RATIO_SLACK: f64 = 1e-6;

/// Computes the terms and the demand of a first evaluation, with nothing carried.
pub fn compute(signals: &Signals, params: &Params) -> Result<Demand, SignalError> {
    compute_after(signals, params, &[])
}

/// Computes the terms and the demand, given the rises the last evaluation of the same
/// trigger carried ([`Demand::rises`]).
pub fn compute_after(
    signals: &Signals,
    params: &Params,
    rises: &[control::Rise],
) -> Result<Demand, SignalError> {
    let inputs = aggregate(signals, params.kv_aggregate)?;
    let mut terms = Vec::with_capacity(3);
    let mut skipped = Vec::new();
    queue_term(&inputs, params, &mut terms, &mut skipped);
    let capacity = throughput_terms(signals, params, &inputs, &mut terms, &mut skipped);
    kv_term(&inputs, params, &mut terms, &mut skipped);
    // The SLO term scales the load-based demand, never the fleet it has: a burn that
    // more replicas do not cure cannot ratchet the fleet up to max_demand.
    let load = terms
        .iter()
        .map(|t| t.replicas)
        .fold(None, |best: Option<f64>, r| {
            Some(best.map_or(r, |b| b.max(r)))
        });
    let (slos, rises) = slo_term(
        signals,
        params,
        (inputs.replicas, load, rises),
        &mut terms,
        &mut skipped,
    )?;
    let schedule = schedule_term(signals, params, &mut terms, &mut skipped);
    let forecast = forecast_term(signals, params, capacity, &mut terms, &mut skipped);
    let (replicas, unclamped, winner) = decide(&terms, params)?;
    // Schedules and forecasts ask for replicas before any request arrives: that is what
    // wakes a fleet at zero in time.
    let active = inputs.queue_depth.is_some_and(|q| q > 0.0)
        || inputs.output_tokens_per_second.unwrap_or(0.0)
            + inputs.input_tokens_per_second.unwrap_or(0.0)
            > 0.0
        || replicas > 0.0;
    Ok(Demand {
        replicas,
        unclamped,
        winner,
        terms,
        inputs,
        active,
        skipped,
        slos,
        schedule,
        forecast,
        rises,
    })
}

/// Q / queue_per_replica.
fn queue_term(
    inputs: &Inputs,
    params: &Params,
    terms: &mut Vec<Term>,
    skipped: &mut Vec<TermKind>,
) {
    match inputs.queue_depth {
        Some(q) => terms.push(Term {
            kind: TermKind::Queue,
            replicas: q / params.queue_per_replica,
            formula: format!(
                "Q / queue_per_replica = {} / {}",
                num(q),
                num(params.queue_per_replica)
            ),
            inputs: vec![
                ("queue_depth", q),
                ("queue_per_replica", params.queue_per_replica),
            ],
        }),
        None => skipped.push(TermKind::Queue),
    }
}

/// The pool's token rate over one replica's, and a unified pool's input term; returns
/// the per-replica rate the forecast divides by.
fn throughput_terms(
    signals: &Signals,
    params: &Params,
    inputs: &Inputs,
    terms: &mut Vec<Term>,
    skipped: &mut Vec<TermKind>,
) -> Option<f64> {
    let rates = capacity_at_mix(signals, params);
    let (tokens, capacity, names) = match params.pool.reads_input_tokens() {
        true => (
            inputs.input_tokens_per_second,
            rates.input,
            (
                "T_in / input_tokens_per_second",
                "input_tokens_per_second",
                "capacity_input_tokens_per_second",
            ),
        ),
        false => (
            inputs.output_tokens_per_second,
            rates.output,
            (
                "T_out / output_tokens_per_second",
                "output_tokens_per_second",
                "capacity_output_tokens_per_second",
            ),
        ),
    };
    match (tokens, capacity) {
        (Some(t), Some(capacity)) => terms.push(Term {
            kind: TermKind::Throughput,
            replicas: t / capacity,
            formula: format!(
                "{} = {} / {}{}",
                names.0,
                num(t),
                num(capacity),
                rates.note()
            ),
            inputs: rates.with_mix(vec![(names.1, t), (names.2, capacity)]),
        }),
        (None, Some(_)) => skipped.push(TermKind::Throughput),
        (_, None) => {}
    }
    if params.input_term && params.pool == Pool::Unified {
        match (inputs.input_tokens_per_second, rates.input) {
            (Some(t), Some(capacity)) => terms.push(Term {
                kind: TermKind::InputThroughput,
                replicas: t / capacity,
                formula: format!(
                    "T_in / input_tokens_per_second = {} / {}{}",
                    num(t),
                    num(capacity),
                    rates.note()
                ),
                inputs: rates.with_mix(vec![
                    ("input_tokens_per_second", t),
                    ("capacity_input_tokens_per_second", capacity),
                ]),
            }),
            (None, Some(_)) => skipped.push(TermKind::InputThroughput),
            (_, None) => {}
        }
    }

    capacity
}

/// R x K / target_ratio, for pools that hold a decode KV cache.
fn kv_term(inputs: &Inputs, params: &Params, terms: &mut Vec<Term>, skipped: &mut Vec<TermKind>) {
    if params.pool.uses_kv_cache() {
        match (inputs.replicas, inputs.kv_cache_ratio) {
            (Some(r), Some(k)) => terms.push(Term {
                kind: TermKind::Kv,
                replicas: r * k / params.kv_target,
                formula: format!(
                    "R x K / target_ratio = {} x {} / {}",
                    num(r),
                    num(k),
                    num(params.kv_target)
                ),
                inputs: vec![
                    ("replicas", r),
                    ("kv_cache_ratio", k),
                    ("kv_target_ratio", params.kv_target),
                ],
            }),
            _ => skipped.push(TermKind::Kv),
        }
    }
}

/// The schedule window in force over the lead, as a term.
fn schedule_term(
    signals: &Signals,
    params: &Params,
    terms: &mut Vec<Term>,
    skipped: &mut Vec<TermKind>,
) -> Option<ScheduledWindow> {
    let schedule = match (params.schedules.is_empty(), signals.now) {
        (true, _) => None,
        (false, None) => {
            skipped.push(TermKind::Schedule);
            None
        }
        (false, Some(now)) => schedule::wanted(&params.schedules, now, params.lead),
    };
    if let Some(window) = &schedule {
        terms.push(Term {
            kind: TermKind::Schedule,
            replicas: window.min_replicas,
            formula: format!(
                "min_replicas of \"{}\" ({} to {}) = {}",
                window.cron,
                window.start.format("%Y-%m-%dT%H:%MZ"),
                window.end.format("%Y-%m-%dT%H:%MZ"),
                num(window.min_replicas)
            ),
            inputs: vec![
                ("min_replicas", window.min_replicas),
                ("lead_seconds", params.lead.as_secs_f64()),
            ],
        });
    }
    schedule
}

/// max(terms), clamped to [min_demand, max_demand], and what decided it.
fn decide(terms: &[Term], params: &Params) -> Result<(f64, f64, Winner), SignalError> {
    if terms.is_empty() {
        return Err(SignalError::NoTerms);
    }
    // A term that overflowed would win and be clamped to max_demand: a number nobody
    // measured. Refuse it instead, so KEDA's fallback decides.
    if let Some(term) = terms.iter().find(|t| !t.replicas.is_finite()) {
        return Err(SignalError::Overflow {
            what: "a term's replicas",
            value: term.replicas,
        });
    }

    // Ties go to the earlier term, in the order TermKind declares.
    let (best_kind, unclamped) = terms.iter().fold((terms[0].kind, 0.0f64), |best, term| {
        if term.replicas > best.1 {
            (term.kind, term.replicas)
        } else {
            best
        }
    });
    let (replicas, winner) = if unclamped < params.min_demand {
        (params.min_demand, Winner::MinDemand)
    } else if unclamped > params.max_demand {
        (params.max_demand, Winner::MaxDemand)
    } else {
        (unclamped, Winner::Term(best_kind))
    };
    Ok((replicas, unclamped, winner))
}

/// The per-replica token rates the terms divide by: the profile's at the fleet's
/// current mix, or the fixed numbers while there is no profile or no mix to read.
struct MixRates {
    output: Option<f64>,
    input: Option<f64>,
    /// The mean (input, output) lengths the profile was read at.
    mix: Option<(f64, f64)>,
    /// For a profile with `short_output_share` points: which answers count as short, and
    /// the share read (`None`: unknown, so each cell's highest share was read).
    short: Option<(crate::config::capacity::ShortAnswers, Option<f64>)>,
}

impl MixRates {
    /// What the formula says about where the capacity came from.
    fn note(&self) -> String {
        let Some((i, o)) = self.mix else {
            return String::new();
        };
        let short = match self.short {
            Some((answers, Some(share))) => {
                format!(", {} of answers {}", num(share), short_words(answers))
            }
            Some((answers, None)) => format!(
                ", the share of answers {} unknown: read at each point's highest",
                short_words(answers)
            ),
            None => String::new(),
        };
        format!(
            " (capacity.profile at {} prompt and {} output tokens per request{short})",
            num(i),
            num(o)
        )
    }

    fn with_mix(&self, mut inputs: Vec<(&'static str, f64)>) -> Vec<(&'static str, f64)> {
        if let Some((i, o)) = self.mix {
            inputs.push(("mean_input_tokens", i));
            inputs.push(("mean_output_tokens", o));
        }
        if let Some((_, Some(share))) = self.short {
            inputs.push(("short_output_share", share));
        }
        inputs
    }
}

/// Which answers count as short, in the formula's words.
fn short_words(answers: crate::config::capacity::ShortAnswers) -> String {
    if answers.min_tokens <= 1.0 {
        format!("at most {} tokens", num(answers.max_tokens))
    } else {
        format!(
            "of {} to {} tokens",
            num(answers.min_tokens),
            num(answers.max_tokens)
        )
    }
}

fn capacity_at_mix(signals: &Signals, params: &Params) -> MixRates {
    match (&params.capacity_profile, signals.mean_lengths) {
        (Some(profile), Some((input, output))) => {
            let short = profile.reads_short_share().then(|| {
                let short = profile.short_answers();
                (short, short_share(signals.output_lengths.as_ref(), short))
            });
            let rates = profile.at(input, output, short.and_then(|s| s.1));
            MixRates {
                output: Some(rates.output_tokens_per_second),
                input: Some(rates.input_tokens_per_second),
                mix: Some((input, output)),
                short,
            }
        }
        _ => MixRates {
            output: params.output_tokens_per_second,
            input: params.input_tokens_per_second,
            mix: None,
            short: None,
        },
    }
}

/// The share of finished requests whose answers count as short, from the output-length
/// histogram (interpolated inside a bucket); `None` when it was not read, holds no
/// request or cannot be read.
pub fn short_share(
    lengths: Option<&slo::LatencyWindow>,
    short: crate::config::capacity::ShortAnswers,
) -> Option<f64> {
    let lengths = lengths?;
    let longer = slo::error_ratio(lengths, short.max_tokens).ok().flatten()?;
    // Lengths are whole tokens: "at least min" is "more than min - 1".
    let at_least = if short.min_tokens <= 1.0 {
        1.0
    } else {
        slo::error_ratio(lengths, short.min_tokens - 1.0)
            .ok()
            .flatten()?
    };
    Some((at_least - longer).max(0.0))
}

/// The slo term's formula in words and numbers, as Explain shows it: the boost the burn
/// asks on the load (with the trim under it), or why another was taken.
fn slo_formula(
    slo: &SloParams,
    (r, l, b): (f64, f64, f64),
    (asked, trim): (f64, f64),
    decision: &control::Decision,
) -> String {
    let trimmed = trim > 1.0;
    if decision.control == control::Control::Shortfall && trimmed {
        format!(
            "{}: max(L, 1) x trim = {} x {} (no boost over the trim: the burn asks {}, but the fleet serves {} of the load's replicas, so the misses are the shortfall's)",
            slo.name,
            num(l),
            num(trim),
            num(asked),
            num(r)
        )
    } else if decision.control == control::Control::Shortfall {
        format!(
            "{}: max(L, 1) with no boost = {} (the burn asks {}, but the fleet serves {} of the load's replicas: the misses are the shortfall's)",
            slo.name,
            num(l),
            num(asked),
            num(r)
        )
    } else if decision.control == control::Control::Sustain {
        format!(
            "{}: L x trim = {} x {} (not burning: the boost kept from the last burn)",
            slo.name,
            num(l),
            num(decision.boost)
        )
    } else if decision.control == control::Control::Hold {
        format!(
            "{}: max(L, 1) x held boost = {} x {} (the burn asks {}, but the last rise was served a short window and the fixable burn did not fall)",
            slo.name,
            num(l),
            num(decision.boost),
            num(asked)
        )
    } else if trimmed {
        format!(
            "{}: max(L, 1) x min(max_boost, trim x (1 + gain x (b_fixable_short - 1))) = {} x min({}, {} x (1 + {} x ({} - 1)))",
            slo.name,
            num(l),
            num(slo.max_boost),
            num(trim),
            num(slo.gain),
            num(b)
        )
    } else {
        format!(
            "{}: max(L, 1) x min(max_boost, 1 + gain x (b_fixable_short - 1)) = {} x min({}, 1 + {} x ({} - 1))",
            slo.name,
            num(l),
            num(slo.max_boost),
            num(slo.gain),
            num(b)
        )
    }
}

/// The slo term of one SLO that acts (burning, or keeping a trim): the load `l` times
/// the boost anti-windup let through, with the fleet of `r` replicas among its inputs.
fn slo_boost(
    slo: &SloParams,
    read: &slo::Reading,
    (r, l, b): (f64, f64, f64),
    decision: &control::Decision,
) -> Term {
    let asked = slo.max_boost.min(1.0 + slo.gain * (b - 1.0));
    let trim = decision.rise.as_ref().map_or(1.0, |r| r.trim);
    let formula = slo_formula(slo, (r, l, b), (asked, trim), decision);
    let mut inputs = vec![
        ("replicas", r),
        ("load_replicas", l),
        ("burn_short", read.short.burn.unwrap_or(0.0)),
        ("burn_long", read.long.burn.unwrap_or(0.0)),
        ("fixable_burn_short", b),
        ("fixable_burn_long", read.long.fixable_burn.unwrap_or(0.0)),
        (
            "unfixable_ratio_short",
            read.short.unfixable_ratio.unwrap_or(0.0),
        ),
        ("burn_threshold", slo.burn_threshold),
        ("gain", slo.gain),
        ("max_boost", slo.max_boost),
        ("trim", trim),
        ("boost", decision.boost),
    ];
    if let Some(rise) = &decision.rise {
        inputs.push(("last_rise_boost", rise.boost));
        inputs.push(("last_rise_fixable_burn", rise.fixable_burn));
    }
    Term {
        kind: TermKind::Slo,
        replicas: l * decision.boost,
        formula,
        inputs,
    }
}

/// The SLO term: the largest ask among the SLOs that burn over both windows, each
/// boost judged against its last rise, or that keep a trim from their last burn; returns
/// each SLO's status and the rises to carry.
fn slo_term(
    signals: &Signals,
    params: &Params,
    (fleet, load, rises): (Option<f64>, Option<f64>, &[control::Rise]),
    terms: &mut Vec<Term>,
    skipped: &mut Vec<TermKind>,
) -> Result<(Vec<SloStatus>, Vec<control::Rise>), SignalError> {
    let mut statuses = Vec::with_capacity(params.slos.len());
    let mut carried = Vec::new();
    let mut best: Option<Term> = None;
    let mut unread = false;
    for (i, slo) in params.slos.iter().enumerate() {
        let last = rises.iter().find(|r| r.slo == slo.name);
        let Some(Some(windows)) = signals.slos.get(i) else {
            // Unread: what it last asked stands until it is read again.
            carried.extend(last.cloned());
            unread = true;
            continue;
        };
        let read = slo::read_windows(windows, slo.threshold, slo.objective, slo.split_bound())?;
        let mut status = slo_status(slo, &read);
        let observed = SloObserved {
            now: signals.now,
            fleet,
            load,
            max_demand: params.max_demand,
        };
        match slo_decision(slo, &read, status.burning, &observed, last) {
            Decided::Acts(decision, inputs) => {
                let term = slo_boost(slo, &read, inputs, &decision);
                status.replicas = Some(term.replicas);
                status.boost = Some(decision.boost);
                status.control = decision.control;
                status.control_reason = decision.reason.clone();
                status.rise = decision.rise.clone();
                carried.extend(decision.rise);
                if best.as_ref().is_none_or(|t| term.replicas > t.replicas) {
                    best = Some(term);
                }
            }
            Decided::Unread => {
                carried.extend(last.cloned());
                unread = true;
            }
            Decided::Quiet => {}
        }
        statuses.push(status);
    }
    if unread {
        skipped.push(TermKind::Slo);
    }
    terms.extend(best);
    Ok((statuses, carried))
}

/// What an SLO's decision reads beyond its own windows.
struct SloObserved {
    now: Option<DateTime<Utc>>,
    fleet: Option<f64>,
    load: Option<f64>,
    max_demand: f64,
}

/// One SLO's part in the term this evaluation.
enum Decided {
    /// It asks: the decision and the (R, L, b) it was made on.
    Acts(control::Decision, (f64, f64, f64)),
    /// Burning, but the fleet or the short burn was not read: what it last asked stands.
    Unread,
    /// Neither burning nor keeping a trim.
    Quiet,
}

/// The burn's boost judged against the last rise while the SLO burns; the trim kept
/// from the last burn while it does not.
fn slo_decision(
    slo: &SloParams,
    read: &slo::Reading,
    burning: bool,
    observed: &SloObserved,
    last: Option<&control::Rise>,
) -> Decided {
    // At least one replica's worth of load: a fleet whose load terms read 0 still serves
    // the requests that burn.
    let l = observed.load.unwrap_or(0.0).max(1.0);
    if burning {
        let (Some(r), Some(b)) = (observed.fleet, read.short.fixable_burn) else {
            return Decided::Unread;
        };
        let step = control::Step {
            now: observed.now,
            fleet: r,
            load: l,
            fixable_burn: b,
            boost: slo.max_boost.min(1.0 + slo.gain * (b - 1.0)),
            max_boost: slo.max_boost,
            trim_half_life_s: slo.trim_half_life_s,
            short_window_s: slo.short_window_s,
            max_demand: observed.max_demand,
        };
        return Decided::Acts(control::decide(&slo.name, last, &step), (r, l, b));
    }
    let (Some(r), Some(now)) = (observed.fleet, observed.now) else {
        return Decided::Quiet;
    };
    // Not burning, the trim scales the load as it is: a fleet with no load keeps no
    // replica for it, and may scale to zero while the trim decays.
    let l = observed.load.unwrap_or(0.0).max(0.0);
    let b = read.short.fixable_burn.unwrap_or(0.0);
    let calm = control::Calm {
        now,
        load: l,
        fixable_burn: b,
        burn_threshold: slo.burn_threshold,
        trim_half_life_s: slo.trim_half_life_s,
    };
    match control::sustain(&slo.name, last, &calm) {
        Some(decision) => Decided::Acts(decision, (r, l, b)),
        None => Decided::Quiet,
    }
}

/// An SLO's status from its windows, before the term decides.
fn slo_status(slo: &SloParams, read: &slo::Reading) -> SloStatus {
    let burning = read
        .short
        .fixable_burn
        .is_some_and(|b| b > slo.burn_threshold)
        && read
            .long
            .fixable_burn
            .is_some_and(|b| b > slo.burn_threshold);
    SloStatus {
        name: slo.name.clone(),
        signal: slo.signal,
        short_error_ratio: read.short.error_ratio,
        long_error_ratio: read.long.error_ratio,
        short_burn: read.short.burn,
        long_burn: read.long.burn,
        short_unfixable_ratio: read.short.unfixable_ratio,
        long_unfixable_ratio: read.long.unfixable_ratio,
        short_fixable_burn: read.short.fixable_burn,
        long_fixable_burn: read.long.fixable_burn,
        burning,
        replicas: None,
        boost: None,
        control: control::Control::Idle,
        control_reason: if burning {
            "burning, but the fleet's size was not read".to_owned()
        } else {
            format!(
                "not burning: the term acts when the fixable burn exceeds {} over both windows",
                num(slo.burn_threshold)
            )
        },
        rise: None,
    }
}

/// The forecast term: the rate expected over the lead, in replicas.
fn forecast_term(
    signals: &Signals,
    params: &Params,
    capacity: Option<f64>,
    terms: &mut Vec<Term>,
    skipped: &mut Vec<TermKind>,
) -> Option<Forecast> {
    let headroom = params.forecast_headroom?;
    let Some(history) = &signals.history else {
        skipped.push(TermKind::Forecast);
        return None;
    };
    let forecast = forecast::forecast(history)?;
    if let Some(capacity) = capacity {
        terms.push(Term {
            kind: TermKind::Forecast,
            replicas: forecast.rate * headroom / capacity,
            formula: format!(
                "forecast x headroom / capacity = {} x {} / {}",
                num(forecast.rate),
                num(headroom),
                num(capacity)
            ),
            inputs: vec![
                ("forecast_tokens_per_second", forecast.rate),
                ("headroom", headroom),
                ("capacity_tokens_per_second", capacity),
                ("past_peak_tokens_per_second", forecast.past_peak),
                ("past_level_tokens_per_second", forecast.past_level),
                ("level_ratio", forecast.level_ratio),
                ("seasonal_change", forecast.seasonal_change),
            ],
        });
    }
    Some(forecast)
}

fn aggregate(signals: &Signals, kv_aggregate: KvAggregate) -> Result<Inputs, SignalError> {
    let queue_depth = match &signals.queue_by_replica {
        None => None,
        Some(values) => {
            let mut total = 0.0;
            for entry in values {
                if !(entry.value.is_finite() && entry.value >= 0.0) {
                    return Err(SignalError::BadReplicaValue {
                        signal: "queue depth",
                        replica: entry.replica.clone(),
                        value: entry.value,
                    });
                }
                total += entry.value;
            }
            // Each replica's value is finite; their sum can still overflow.
            if !total.is_finite() {
                return Err(SignalError::Overflow {
                    what: "queue depth summed over replicas",
                    value: total,
                });
            }
            Some(total)
        }
    };
    for (signal, value) in [
        ("output tokens per second", signals.output_tokens_per_second),
        ("input tokens per second", signals.input_tokens_per_second),
    ] {
        if let Some(value) = value
            && !(value.is_finite() && value >= 0.0)
        {
            return Err(SignalError::BadFleetValue { signal, value });
        }
    }
    let kv_cache_ratio = match &signals.kv_by_replica {
        None => None,
        Some(values) => {
            for entry in values {
                if !(entry.value.is_finite() && (0.0..=1.0 + KV_RATIO_SLACK).contains(&entry.value))
                {
                    return Err(SignalError::KvOutOfRange {
                        replica: entry.replica.clone(),
                        value: entry.value,
                    });
                }
            }
            // A fleet at zero replicas has no KV series: its usage counts as 0.
            Some(match values.len() {
                0 => 0.0,
                n => {
                    let clipped = values.iter().map(|e| e.value.min(1.0));
                    match kv_aggregate {
                        KvAggregate::Mean => clipped.sum::<f64>() / n as f64,
                        KvAggregate::Max => clipped.fold(0.0, f64::max),
                    }
                }
            })
        }
    };
    Ok(Inputs {
        queue_depth,
        replicas: signals.queue_by_replica.as_ref().map(|v| v.len() as f64),
        output_tokens_per_second: signals.output_tokens_per_second,
        input_tokens_per_second: signals.input_tokens_per_second,
        kv_cache_ratio,
    })
}

/// Numbers in formulas: as short as they can be without losing precision.
fn num(value: f64) -> String {
    let rounded = (value * 1e6).round() / 1e6;
    format!("{rounded}")
}

#[cfg(test)]
mod tests;
