//! `backtest`: every policy over the same fleet and trace, as a table, JSON and a plot.

use super::error::SimError;
use std::{
    fmt::Write,
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use strum::{IntoEnumIterator, VariantNames};

use super::{
    fleet::Router,
    hpa::ScaledObjectSpec,
    model::{ModelProfile, Role},
    run::{Found, Outcome, Policy, PoolSetup, Setup, SloSample},
    search::evaluate,
    stats::SloThresholds,
    trace::{AZURE_CONV, AZURE_CONV_NAME, Arrivals, Replay, RequestTrace, Trace},
};
use crate::config::Config;
use crate::config::reload::read_bounded;
use crate::demand::TermKind;
use crate::engine::LatencySignal;

/// `keda-llm-scaler backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// The scaler's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// A request trace (Azure CSV, BurstGPT CSV, Mooncake JSONL) or a rate file
    /// (`window_start_s,rate`).
    #[arg(long)]
    pub trace: PathBuf,
    /// For a rate file: the request trace token lengths are drawn from (default: the
    /// bundled Azure conversation trace).
    #[arg(long)]
    pub lengths: Option<PathBuf>,
    /// The profile that scales the fleet; give a prefill and a decode profile for a
    /// disaggregated fleet (default: the config's only profile).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Policies to run, in order (default: all): static, static-best, keda-queue,
    /// keda-tokens, keda-seed, keda-tuned, scaler, just-in-time, oracle.
    #[arg(long = "policy", value_parser = parse_policy)]
    pub policies: Vec<Policy>,
    /// The replica model: llama-3-70b-tp4-h100 (70b) or llama-3-8b-h100 (8b).
    #[arg(long, default_value = "70b", value_parser = parse_model)]
    pub model: ModelProfile,
    /// Seconds from pod creation to serving (default: the model's, 180 s for 70B).
    #[arg(long, value_parser = parse_seconds)]
    pub cold_start: Option<f64>,
    /// least-outstanding or round-robin.
    #[arg(long, default_value = "least-outstanding", value_parser = parse_router)]
    pub router: Router,
    /// Multiplies the request rate (a request trace's requests are repeated or thinned).
    #[arg(long, default_value_t = 1.0, value_parser = parse_factor)]
    pub rate_scale: f64,
    /// Multiplies time: 0.5 replays twice as fast.
    #[arg(long, default_value_t = 1.0, value_parser = parse_factor)]
    pub time_scale: f64,
    /// Multiplies each request's prompt tokens (at least 1 a request), keeping the
    /// trace's arrivals and the spread of its lengths: the same traffic with longer or
    /// shorter prompts. Above 0, at most 100.
    #[arg(long, default_value_t = 1.0, value_parser = parse_length_scale)]
    pub prompt_scale: f64,
    /// Multiplies each request's output tokens (at least 1 a request). Above 0, at most
    /// 100.
    #[arg(long, default_value_t = 1.0, value_parser = parse_length_scale)]
    pub answer_scale: f64,
    /// Seeds arrivals and token draws: the same seed gives the same figures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// minReplicaCount of this scaler's ScaledObject.
    #[arg(long, default_value_t = 2)]
    pub min_replicas: u32,
    /// maxReplicaCount of this scaler's ScaledObject.
    #[arg(long, default_value_t = 20)]
    pub max_replicas: u32,
    /// This scaler's ScaledObject from a manifest (YAML, one ScaledObject for every
    /// pool or one per --profile in order): its bounds, polling, fallback and HPA
    /// behavior, in place of deploy/examples' with --min-replicas and --max-replicas.
    #[arg(long, conflicts_with_all = ["min_replicas", "max_replicas"])]
    pub scaled_object: Option<PathBuf>,
    /// The wall-clock time the trace starts at, for schedules (default: the trace's own,
    /// or 2026-01-05T00:00:00Z, a Monday).
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// Where the plot goes (SVG).
    #[arg(long, default_value = "backtest.svg")]
    pub plot: PathBuf,
    /// Also write the timeline (load, and per policy pods, serving replicas and
    /// demand, per pool) as CSV.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// The feasible attainment the searched references (static-best, keda-tuned,
    /// oracle) must reach, between 0 and 1.
    #[arg(long, default_value_t = 0.99, value_parser = parse_target)]
    pub target: f64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A target attainment: strictly between 0 and 1.
pub(crate) fn parse_target(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v < 1.0)
        .ok_or_else(|| format!("`{text}` is not a number between 0 and 1 (exclusive)"))
}

fn parse_policy(text: &str) -> Result<Policy, String> {
    Policy::parse(text).ok_or_else(|| {
        format!(
            "unknown policy `{text}`: expected {}",
            Policy::VARIANTS.join(", ")
        )
    })
}

pub(crate) fn parse_model(text: &str) -> Result<ModelProfile, String> {
    ModelProfile::preset(text)
        .ok_or_else(|| format!("unknown model `{text}`: expected {}", ModelProfile::PRESETS))
}

fn parse_router(text: &str) -> Result<Router, String> {
    Router::parse(text).ok_or_else(|| {
        format!("unknown router `{text}`: expected least-outstanding or round-robin")
    })
}

/// A positive finite factor, for command-line flags.
pub(crate) fn parse_factor(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("`{text}` is not a number above 0"))
}

/// The most a length scale may multiply: a 2,000-token prompt becomes 200,000, past
/// what one replica of either model holds in its KV cache.
pub(crate) const MAX_LENGTH_SCALE: f64 = 100.0;

/// Whether `scale` may multiply lengths: above 0, at most [`MAX_LENGTH_SCALE`].
pub(crate) fn is_length_scale(scale: f64) -> bool {
    scale.is_finite() && scale > 0.0 && scale <= MAX_LENGTH_SCALE
}

/// A `--prompt-scale` or `--answer-scale` (see [`is_length_scale`]).
pub(crate) fn parse_length_scale(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| is_length_scale(*v))
        .ok_or_else(|| format!("`{text}` is not a number above 0 and at most {MAX_LENGTH_SCALE}"))
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let duration: crate::config::ConfigDuration = text
        .parse()
        .map_err(|e: crate::config::duration::ParseDurationError| e.to_string())?;
    Ok(duration.0.as_secs_f64())
}

/// A loaded backtest: the setup and how to replay the trace.
pub struct Prepared {
    /// The fleet, the scaler's view of it, and the run's settings.
    pub setup: Setup,
    /// The policies to run, in order.
    pub policies: Vec<Policy>,
    /// The trace's name, for reports.
    pub trace_name: String,
    trace: Trace,
    lengths: Option<RequestTrace>,
    replay: Replay,
}

impl Prepared {
    /// Fresh arrivals (each run replays the same ones).
    pub fn arrivals(&self) -> Arrivals {
        Arrivals::new(self.trace.clone(), self.lengths.as_ref(), self.replay)
            .expect("lengths were loaded for rate files")
    }

    /// Runs every policy (in parallel; the outcomes in the policies' order).
    /// `oracle-hpa` takes the oracle's fleets from its run when both are asked for,
    /// rather than searching them again.
    pub fn run_all(&self, target: f64) -> Vec<Outcome> {
        use rayon::prelude::*;
        let arrivals = || self.arrivals();
        let reuse = self.policies.contains(&Policy::Oracle);
        let mut outcomes: Vec<Option<Outcome>> = self
            .policies
            .par_iter()
            .map(|&policy| {
                (policy != Policy::OracleHpa || !reuse)
                    .then(|| evaluate(&self.setup, policy, &arrivals, target))
            })
            .collect();
        let waiting = outcomes.iter().any(Option::is_none);
        let floor = outcomes
            .iter()
            .flatten()
            .find(|o| waiting && o.policy == Policy::Oracle)
            .map(|oracle| super::search::through_hpa(&self.setup, oracle, &arrivals));
        if let Some(floor) = floor {
            for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
                *slot = Some(floor.clone());
            }
        }
        outcomes.into_iter().flatten().collect()
    }
}

/// Reads the config and traces and builds the setup; every error names what is wrong.
pub fn prepare(args: &BacktestArgs) -> Result<Prepared, SimError> {
    let config =
        Config::load(&args.config).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let trace = Trace::load(&args.trace).map_err(|e| e.to_string())?;
    let lengths = lengths_for(&trace, args.lengths.as_deref())?;
    let start = args.start.unwrap_or_else(|| match &trace {
        Trace::Requests(RequestTrace {
            start: Some(start), ..
        }) => *start,
        _ => Utc
            .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
            .single()
            .expect("a valid date"),
    });
    let pools = pool_setups(args, &config)?;
    for pool in &pools {
        check_simulable(pool, &args.policies)?;
    }
    let mut model = args.model.clone();
    if let Some(cold_start) = args.cold_start {
        model.cold_start = cold_start;
    }
    let replay = Replay {
        time_scale: args.time_scale,
        rate_scale: args.rate_scale,
        prompt_scale: args.prompt_scale,
        answer_scale: args.answer_scale,
        seed: args.seed,
    };
    let duration = Arrivals::new(trace.clone(), lengths.as_ref(), replay)?.duration();
    let thresholds = slo_thresholds(&pools);
    let setup = Setup {
        model,
        router: args.router,
        pools,
        seed: ScaledObjectSpec::seed(),
        thresholds,
        scrape_interval: 15.0,
        start,
        request_timeout: 300.0,
        on_term_error: config.evaluation.on_term_error,
        sample_every: (duration / 1500.0).max(15.0).ceil(),
        drain_limit: 1800.0,
        oracle_window: 60.0,
        keda: super::run::KedaThresholds::SEED,
    };
    let policies = if args.policies.is_empty() {
        Policy::iter().filter(|p| p.runs_by_default()).collect()
    } else {
        args.policies.clone()
    };
    Ok(Prepared {
        setup,
        policies,
        trace_name: args.trace.display().to_string(),
        trace,
        lengths,
        replay,
    })
}

/// The request trace a rate file's token lengths are drawn from: `--lengths`, or the
/// bundled Azure trace; none for a request trace, which carries its own.
fn lengths_for(trace: &Trace, lengths: Option<&Path>) -> Result<Option<RequestTrace>, String> {
    match (trace, lengths) {
        (Trace::Requests(_), _) => Ok(None),
        (Trace::Rates(_), Some(path)) => match Trace::load(path).map_err(|e| e.to_string())? {
            Trace::Requests(requests) => Ok(Some(requests)),
            Trace::Rates(_) => Err(format!(
                "--lengths {}: a rate file has no token lengths: give a request trace",
                path.display()
            )),
        },
        (Trace::Rates(_), None) => match Trace::parse(AZURE_CONV_NAME, AZURE_CONV) {
            Ok(Trace::Requests(requests)) => Ok(Some(requests)),
            _ => unreachable!("the bundled trace is a request trace"),
        },
    }
}

/// The thresholds attainment is counted against: for each latency, the strictest the
/// pools' SLOs set, so a backtest judges the fleet by the objectives its config holds it
/// to; 2 s and 50 ms (the seed's) for a latency no SLO names.
fn slo_thresholds(pools: &[PoolSetup]) -> SloThresholds {
    let strictest = |signal: LatencySignal| {
        pools
            .iter()
            .flat_map(|pool| &pool.target.slos)
            .filter(|slo| slo.signal == signal)
            .map(|slo| slo.threshold.value.0.as_secs_f64())
            .reduce(f64::min)
    };
    let seed = SloThresholds::default();
    SloThresholds {
        ttft: strictest(LatencySignal::Ttft).unwrap_or(seed.ttft),
        tpot: strictest(LatencySignal::Tpot).unwrap_or(seed.tpot),
    }
}

/// This scaler's ScaledObject for each of `pools` pools: from `--scaled-object` (one for
/// every pool, or one each), or deploy/examples' with `--min-replicas` and
/// `--max-replicas`.
fn scaled_objects(args: &BacktestArgs, pools: usize) -> Result<Vec<ScaledObjectSpec>, String> {
    let Some(path) = &args.scaled_object else {
        if args.max_replicas == 0 {
            return Err("--max-replicas 0: expected at least 1".to_owned());
        }
        if args.min_replicas > args.max_replicas {
            return Err(format!(
                "--min-replicas {} is above --max-replicas {}",
                args.min_replicas, args.max_replicas
            ));
        }
        let scaled_object = ScaledObjectSpec {
            min_replicas: args.min_replicas,
            max_replicas: args.max_replicas,
            ..ScaledObjectSpec::recommended()
        };
        return Ok(vec![scaled_object; pools]);
    };
    let shown = path.display();
    let text = read_bounded(path).map_err(|e| format!("--scaled-object {shown}: {e}"))?;
    let specs = super::hpa::manifest::scaled_objects(&text)
        .map_err(|e| format!("--scaled-object {shown}: {e}"))?;
    match specs.len() {
        1 => Ok(vec![specs[0].clone(); pools]),
        n if n == pools => Ok(specs),
        n => Err(format!(
            "--scaled-object {shown}: holds {n} ScaledObjects for {pools} pool(s): expected one for every pool, or one per --profile in order"
        )),
    }
}

/// The pools `--profile` names (or the config's only profile), as this scaler's
/// ScaledObjects (`--scaled-object`, or deploy/examples' with `--min-replicas` and
/// `--max-replicas`): one unified pool, or a prefill pool then a decode pool.
fn pool_setups(args: &BacktestArgs, config: &Config) -> Result<Vec<PoolSetup>, String> {
    let names: Vec<String> = match args.profiles.as_slice() {
        [] => match config.profile_names().as_slice() {
            [only] => vec![(*only).to_owned()],
            names => {
                return Err(format!(
                    "the config has {} profiles ({}): choose one with --profile, or a prefill and a decode profile",
                    names.len(),
                    names.join(", ")
                ));
            }
        },
        names => names.to_vec(),
    };
    let scaled_objects = scaled_objects(args, names.len())?;
    let mut pools = names
        .iter()
        .zip(scaled_objects)
        .map(|(name, scaled_object)| PoolSetup::new(config, name, scaled_object))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--profile: {e}"))?;
    match pools.as_slice() {
        [one] if one.role == Role::Unified => {}
        [one] => {
            return Err(format!(
                "profile `{}` scales a {} pool: give a prefill and a decode profile together, or a unified one",
                one.target.profile_name,
                one.target.pool.as_str()
            ));
        }
        [a, b] if a.role == Role::Decode && b.role == Role::Prefill => pools.swap(0, 1),
        [a, b] if a.role == Role::Prefill && b.role == Role::Decode => {}
        _ => {
            return Err(
                "a disaggregated fleet needs exactly one prefill profile and one decode profile"
                    .to_owned(),
            );
        }
    }
    Ok(pools)
}

/// Refuses a pool the simulated fleet cannot stand for: one whose SLO latencies are
/// gauges, or one without the capacity the static and just-in-time fleets are sized by
/// when those policies run.
fn check_simulable(pool: &PoolSetup, policies: &[Policy]) -> Result<(), String> {
    if pool
        .plan
        .latency_kinds
        .contains(&crate::source::LatencyKind::Gauge)
    {
        return Err(format!(
            "profile `{}` reads its SLO latencies from gauges (engine {}); the simulated fleet exports vLLM's histograms: simulate it with a profile whose engine has latency histograms, such as vllm",
            pool.target.profile_name,
            pool.target.engine.as_str()
        ));
    }
    let capacity = match pool.role {
        Role::Prefill => pool.target.input_tokens_per_second,
        _ => pool.target.output_tokens_per_second,
    };
    let sized = [Policy::Static, Policy::JustInTime];
    let wanted = |p: &Policy| policies.is_empty() || policies.contains(p);
    if capacity.is_none() && sized.iter().any(wanted) {
        return Err(format!(
            "profile `{}` has no capacity for its pool's tokens: the static and just-in-time fleets are sized from it (leave them out with --policy)",
            pool.target.profile_name
        ));
    }
    Ok(())
}

/// Runs a backtest: the table or JSON to print; the plot is written to `args.plot`.
pub fn backtest(args: &BacktestArgs) -> Result<String, SimError> {
    let prepared = prepare(args)?;
    let outcomes = prepared.run_all(args.target);
    for outcome in &outcomes {
        if outcome.evaluation_errors > 0 {
            eprintln!(
                "warning: {}: {} evaluations failed (the HPA held the fleet, then KEDA's fallback)",
                outcome.policy.as_str(),
                outcome.evaluation_errors
            );
        }
    }
    let title = format!(
        "{} on {} ({}, cold start {} s)",
        file_name(&prepared.trace_name),
        prepared.setup.model.name,
        prepared
            .setup
            .pools
            .iter()
            .map(|p| p.target.profile_name.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
        prepared.setup.model.cold_start
    );
    std::fs::write(&args.plot, super::plot::timeline(&title, &outcomes)?).map_err(|source| {
        SimError::Write {
            what: "plot",
            path: args.plot.display().to_string(),
            source,
        }
    })?;
    if let Some(path) = &args.timeline {
        std::fs::write(path, to_csv(&outcomes)).map_err(|source| SimError::Write {
            what: "timeline",
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(if args.json {
        serde_json::to_string_pretty(&to_json(
            &prepared.trace_name,
            &prepared.setup,
            args.target,
            &outcomes,
        ))
        .expect("JSON values serialize")
            + "\n"
    } else {
        to_table(&prepared.setup, &outcomes) + &found_lines(&outcomes)
    })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The figures of one policy, as the table and JSON give them.
pub(crate) fn figures(
    outcome: &Outcome,
    pools: &[super::model::Role],
    target: f64,
) -> serde_json::Value {
    let stats = &outcome.stats;
    let quantile = |h: &super::stats::LatencyHistogram, q: f64| h.quantile(q);
    let mut figures = json!({
        "name": outcome.policy.as_str(),
        "ttft_attainment": stats.ttft_attainment(),
        "tpot_attainment": stats.tpot_attainment(),
        "ttft_p50_s": quantile(&stats.ttft, 0.5),
        "ttft_p99_s": quantile(&stats.ttft, 0.99),
        "tpot_p50_s": quantile(&stats.tpot, 0.5),
        "tpot_p99_s": quantile(&stats.tpot, 0.99),
        "gpu_hours": outcome.gpu_hours,
        "replica_hours": outcome.replica_seconds / 3600.0,
        "scale_events": outcome.scale_events,
        "requests": stats.arrived,
        "refused": stats.refused,
        "unfinished": stats.unfinished,
        "evaluation_errors": outcome.evaluation_errors,
        "ttft_attainment_feasible": stats.feasible.ttft_attainment(),
        "tpot_attainment_feasible": stats.feasible.tpot_attainment(),
        "windows_below_target": super::search::missed_windows(outcome, target).len(),
    });
    let object = figures.as_object_mut().expect("an object");
    match &outcome.found {
        Some(Found::Replicas { replicas, reached }) => {
            // One pool: its count; a disaggregated fleet: prefill then decode.
            object.insert(
                "replicas".into(),
                match replicas.as_slice() {
                    [one] => json!(one),
                    many => json!(many),
                },
            );
            object.insert("reached".into(), json!(reached));
        }
        Some(Found::Thresholds {
            thresholds,
            reached,
        }) => {
            let mut chosen = json!({
                "queue": thresholds.queue,
                "output_tokens_per_second": thresholds.output_tokens,
            });
            if pools.contains(&super::model::Role::Prefill) {
                chosen["input_tokens_per_second"] = json!(thresholds.input_tokens);
            }
            object.insert("thresholds".into(), chosen);
            object.insert("reached".into(), json!(reached));
        }
        Some(Found::Windows {
            windows, capped, ..
        }) => {
            object.insert("windows".into(), json!(windows));
            object.insert("capped_windows".into(), json!(capped));
        }
        None => {}
    }
    figures
}

/// The share of the trace's requests feasible for each SLO (the same for every policy:
/// they replay the same arrivals).
pub fn feasible_shares(outcomes: &[Outcome]) -> (f64, f64) {
    let Some(first) = outcomes.first() else {
        return (1.0, 1.0);
    };
    let counts = &first.stats.feasible;
    let share = |part: u64| {
        if counts.arrived == 0 {
            1.0
        } else {
            part as f64 / counts.arrived as f64
        }
    };
    (share(counts.ttft_feasible), share(counts.tpot_feasible))
}

/// What a searched reference chose, in words (empty for the other policies).
pub(crate) fn found_text(outcome: &Outcome) -> String {
    let missed = |reached: bool| if reached { "" } else { " (misses the target)" };
    match &outcome.found {
        Some(Found::Replicas { replicas, reached }) => {
            let counts: Vec<String> = replicas.iter().map(u32::to_string).collect();
            format!("{} replicas{}", counts.join(" + "), missed(*reached))
        }
        Some(Found::Thresholds {
            thresholds,
            reached,
        }) => format!(
            "queue {}, {} output tokens/s per replica{}",
            thresholds.queue,
            thresholds.output_tokens,
            missed(*reached)
        ),
        Some(Found::Windows {
            windows, capped, ..
        }) => format!(
            "{windows} windows of {} s, {capped} capped at maxReplicaCount",
            super::search::ORACLE_WINDOW
        ),
        None => String::new(),
    }
}

/// What the searched references chose, one line each, after the table.
pub fn found_lines(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let (ttft, tpot) = feasible_shares(outcomes);
    let _ = writeln!(
        out,
        "\nfeasible requests (alone on an idle replica they meet the SLO): TTFT {:.2} %, TPOT {:.2} %",
        ttft * 100.0,
        tpot * 100.0
    );
    for outcome in outcomes {
        if outcome.found.is_some() {
            let _ = writeln!(out, "{}: {}", outcome.policy.as_str(), found_text(outcome));
        }
    }
    out
}

/// The report as JSON: `{"trace", "model", "simulated_s", "target", "feasible",
/// "policies": [...]}`.
pub fn to_json(trace: &str, setup: &Setup, target: f64, outcomes: &[Outcome]) -> serde_json::Value {
    let (ttft_share, tpot_share) = feasible_shares(outcomes);
    let roles: Vec<_> = setup.pools.iter().map(|p| p.role).collect();
    json!({
        "trace": trace,
        "target": target,
        "feasible": {"ttft_share": ttft_share, "tpot_share": tpot_share},
        "model": setup.model.name,
        "cold_start_s": setup.model.cold_start,
        "simulated_s": outcomes.iter().map(|o| o.simulated).fold(0.0, f64::max),
        "thresholds": {"ttft_s": setup.thresholds.ttft, "tpot_s": setup.thresholds.tpot},
        "policies": outcomes.iter().map(|o| figures(o, &roles, target)).collect::<Vec<_>>(),
    })
}

fn seconds(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Some(v) => format!("{v:.2} s"),
    }
}

/// The report as a markdown table.
pub fn to_table(setup: &Setup, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| policy | TTFT <= {} | TPOT <= {} | feasible TTFT / TPOT | TTFT p50 / p99 | TPOT p50 / p99 | GPU-hours | scale events | refused |",
        seconds(Some(setup.thresholds.ttft)),
        seconds(Some(setup.thresholds.tpot))
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for outcome in outcomes {
        let stats = &outcome.stats;
        let _ = writeln!(
            out,
            "| {} | {:.2} % | {:.2} % | {:.2} / {:.2} % | {} / {} | {} / {} | {:.1} | {} | {} |",
            outcome.policy.as_str(),
            stats.ttft_attainment() * 100.0,
            stats.tpot_attainment() * 100.0,
            stats.feasible.ttft_attainment() * 100.0,
            stats.feasible.tpot_attainment() * 100.0,
            seconds(stats.ttft.quantile(0.5)),
            seconds(stats.ttft.quantile(0.99)),
            seconds(stats.tpot.quantile(0.5)),
            seconds(stats.tpot.quantile(0.99)),
            outcome.gpu_hours,
            outcome.scale_events,
            stats.refused + stats.unfinished,
        );
    }
    out
}

/// The timeline as CSV: one row per sample, columns per policy and pool; for this
/// scaler also each term of its last evaluation (`scaler_term_<kind>_<pool>`, empty
/// where the term was not computed), so a row says why it asked what it did, and each
/// SLO's reading (`scaler_slo_<name>_<short|long>_<fixable_burn|unfixable_ratio>_<pool>`,
/// empty where it was not read), which says why the SLO term acted or did not.
pub fn to_csv(outcomes: &[Outcome]) -> String {
    let kinds: Vec<&'static str> = TermKind::iter().map(<&str>::from).collect();
    // Per outcome: its pools, and whether it carries terms (this scaler's).
    let shape: Vec<(usize, bool)> = outcomes
        .iter()
        .map(|o| {
            let pools = o.timeline.first().map_or(0, |p| p.pods.len());
            (pools, o.policy == Policy::Scaler)
        })
        .collect();
    let mut out = String::from("at_s,arrivals_per_s");
    for (outcome, &(pools, with_terms)) in outcomes.iter().zip(&shape) {
        let name = outcome.policy.as_str();
        for pool in 0..pools {
            let _ = write!(
                out,
                ",{name}_pods_{pool},{name}_serving_{pool},{name}_demand_{pool}"
            );
            if with_terms {
                for kind in &kinds {
                    let _ = write!(out, ",{name}_term_{kind}_{pool}");
                }
            }
            for slo in outcome.slo_names.get(pool).into_iter().flatten() {
                for column in SloSample::COLUMNS {
                    let _ = write!(out, ",{name}_slo_{slo}_{column}_{pool}");
                }
            }
        }
    }
    out.push('\n');
    let rows = outcomes.iter().map(|o| o.timeline.len()).max().unwrap_or(0);
    for row in 0..rows {
        let Some(point) = outcomes.iter().find_map(|o| o.timeline.get(row)) else {
            break;
        };
        let _ = write!(out, "{},{}", point.at, point.arrivals);
        for (outcome, &(pools, with_terms)) in outcomes.iter().zip(&shape) {
            let point = outcome.timeline.get(row);
            for pool in 0..pools {
                match point {
                    Some(p) => {
                        let _ = write!(
                            out,
                            ",{},{},{:.3}",
                            p.pods[pool], p.serving[pool], p.demand[pool]
                        );
                    }
                    None => out.push_str(",,,"),
                }
                if with_terms {
                    for k in 0..kinds.len() {
                        out.push(',');
                        let value = point.and_then(|p| p.terms.get(pool)?.get(k).copied()?);
                        if let Some(value) = value {
                            let _ = write!(out, "{value:.3}");
                        }
                    }
                }
                let slos = outcome.slo_names.get(pool).map_or(0, Vec::len);
                for s in 0..slos {
                    let sample = point.and_then(|p| p.slos.get(pool)?.get(s).copied());
                    for value in sample.unwrap_or_default().values() {
                        out.push(',');
                        if let Some(value) = value {
                            let _ = write!(out, "{value:.4}");
                        }
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}
