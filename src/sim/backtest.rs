//! `backtest`: every policy over the same fleet and trace, as a table, JSON and a plot.

use std::{fmt::Write, path::PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::{
    fleet::Router,
    hpa::ScaledObjectSpec,
    model::ModelProfile,
    run::{Found, Outcome, Policy, PoolSetup, Setup},
    search::evaluate,
    stats::SloThresholds,
    trace::{AZURE_CONV, AZURE_CONV_NAME, Arrivals, Replay, RequestTrace, Trace},
};
use crate::config::Config;

/// `keda-llm-scaler backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// The scaler's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// A request trace (Azure CSV, Mooncake JSONL) or a rate file (`window_start_s,rate`).
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
    /// Seeds arrivals and token draws: the same seed gives the same figures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// minReplicaCount of this scaler's ScaledObject.
    #[arg(long, default_value_t = 2)]
    pub min_replicas: u32,
    /// maxReplicaCount of this scaler's ScaledObject.
    #[arg(long, default_value_t = 20)]
    pub max_replicas: u32,
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
    Policy::parse(text)
        .ok_or_else(|| format!("unknown policy `{text}`: expected {}", Policy::NAMES))
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

fn parse_seconds(text: &str) -> Result<f64, String> {
    let duration: crate::config::ConfigDuration = text
        .parse()
        .map_err(|e: crate::config::duration::ParseDurationError| e.to_string())?;
    Ok(duration.0.as_secs_f64())
}

/// A loaded backtest: the setup and how to replay the trace.
pub struct Prepared {
    pub setup: Setup,
    pub policies: Vec<Policy>,
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
    pub fn run_all(&self, target: f64) -> Vec<Outcome> {
        use rayon::prelude::*;
        self.policies
            .par_iter()
            .map(|policy| evaluate(&self.setup, *policy, &|| self.arrivals(), target))
            .collect()
    }
}

/// Reads the config and traces and builds the setup; every error names what is wrong.
pub fn prepare(args: &BacktestArgs) -> Result<Prepared, String> {
    let config =
        Config::load(&args.config).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let trace = Trace::load(&args.trace).map_err(|e| e.to_string())?;
    let lengths = match (&trace, &args.lengths) {
        (Trace::Requests(_), _) => None,
        (Trace::Rates(_), Some(path)) => match Trace::load(path).map_err(|e| e.to_string())? {
            Trace::Requests(requests) => Some(requests),
            Trace::Rates(_) => {
                return Err(format!(
                    "--lengths {}: a rate file has no token lengths: give a request trace",
                    path.display()
                ));
            }
        },
        (Trace::Rates(_), None) => match Trace::parse(AZURE_CONV_NAME, AZURE_CONV) {
            Ok(Trace::Requests(requests)) => Some(requests),
            _ => unreachable!("the bundled trace is a request trace"),
        },
    };
    let start = args.start.unwrap_or_else(|| match &trace {
        Trace::Requests(RequestTrace {
            start: Some(start), ..
        }) => *start,
        _ => Utc
            .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
            .single()
            .expect("a valid date"),
    });
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
    let mut pools = names
        .iter()
        .map(|name| PoolSetup::new(&config, name, scaled_object.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--profile: {e}"))?;
    use super::model::Role;
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
    for pool in &pools {
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
        let wanted = |p: &Policy| args.policies.is_empty() || args.policies.contains(p);
        if capacity.is_none() && sized.iter().any(wanted) {
            return Err(format!(
                "profile `{}` has no capacity for its pool's tokens: the static and just-in-time fleets are sized from it (leave them out with --policy)",
                pool.target.profile_name
            ));
        }
    }
    let mut model = args.model.clone();
    if let Some(cold_start) = args.cold_start {
        model.cold_start = cold_start;
    }
    let replay = Replay {
        time_scale: args.time_scale,
        rate_scale: args.rate_scale,
        seed: args.seed,
    };
    let duration = Arrivals::new(trace.clone(), lengths.as_ref(), replay)?.duration();
    let setup = Setup {
        model,
        router: args.router,
        pools,
        seed: ScaledObjectSpec::seed(),
        thresholds: SloThresholds::default(),
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
        Policy::ALL.to_vec()
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

/// Runs a backtest: the table or JSON to print; the plot is written to `args.plot`.
pub fn backtest(args: &BacktestArgs) -> Result<String, String> {
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
    std::fs::write(&args.plot, to_svg(&title, &outcomes))
        .map_err(|e| format!("cannot write the plot to {}: {e}", args.plot.display()))?;
    if let Some(path) = &args.timeline {
        std::fs::write(path, to_csv(&outcomes))
            .map_err(|e| format!("cannot write the timeline to {}: {e}", path.display()))?;
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
    let quantile = |h: &super::stats::LogHistogram, q: f64| h.quantile(q);
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
        Some(Found::Windows { windows, capped }) => {
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
        Some(Found::Windows { windows, capped }) => format!(
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

/// The timeline as CSV: one row per sample, columns per policy and pool.
pub fn to_csv(outcomes: &[Outcome]) -> String {
    let mut out = String::from("at_s,arrivals_per_s");
    for outcome in outcomes {
        let pools = outcome.timeline.first().map_or(0, |p| p.pods.len());
        for pool in 0..pools {
            let name = outcome.policy.as_str();
            let _ = write!(
                out,
                ",{name}_pods_{pool},{name}_serving_{pool},{name}_demand_{pool}"
            );
        }
    }
    out.push('\n');
    let rows = outcomes.iter().map(|o| o.timeline.len()).max().unwrap_or(0);
    for row in 0..rows {
        let Some(point) = outcomes.iter().find_map(|o| o.timeline.get(row)) else {
            break;
        };
        let _ = write!(out, "{},{}", point.at, point.arrivals);
        for outcome in outcomes {
            match outcome.timeline.get(row) {
                Some(p) => {
                    for pool in 0..p.pods.len() {
                        let _ = write!(
                            out,
                            ",{},{},{:.3}",
                            p.pods[pool], p.serving[pool], p.demand[pool]
                        );
                    }
                }
                None => {
                    let pools = outcome.timeline.first().map_or(0, |p| p.pods.len());
                    out.push_str(&",,,".repeat(pools));
                }
            }
        }
        out.push('\n');
    }
    out
}

/// One color per policy, in [`Policy::ALL`]'s order.
const COLORS: [&str; 9] = [
    "#7f7f7f", "#bcbd22", "#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#d62728", "#8c564b",
    "#2ca02c",
];

pub(crate) fn color(policy: Policy) -> &'static str {
    let index = Policy::ALL.iter().position(|p| *p == policy).unwrap_or(0);
    COLORS[index]
}

/// A plot of load, pods per policy and this scaler's demand over time, as SVG.
pub fn to_svg(title: &str, outcomes: &[Outcome]) -> String {
    const WIDTH: f64 = 1160.0;
    const LEFT: f64 = 70.0;
    // Room for the longest legend entry, "just-in-time (12,345.6 GPU-h)", at 12 px.
    const RIGHT: f64 = 230.0;
    const TOP: f64 = 40.0;
    const LOAD_HEIGHT: f64 = 150.0;
    const GAP: f64 = 50.0;
    const PODS_HEIGHT: f64 = 300.0;
    let height = TOP + LOAD_HEIGHT + GAP + PODS_HEIGHT + 50.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let end = outcomes
        .iter()
        .flat_map(|o| o.timeline.last().map(|p| p.at))
        .fold(1.0, f64::max);
    let x = |t: f64| LEFT + t / end * plot_width;
    let hours = end > 4.0 * 3600.0;
    let (unit, unit_seconds) = if hours { ("h", 3600.0) } else { ("min", 60.0) };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"##,
        escape(title)
    );

    let panel = |svg: &mut String, top: f64, panel_height: f64, label: &str, max: f64| {
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{panel_height}" fill="none" stroke="#ccc"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{label}</text>"##,
            top + panel_height / 2.0,
            top + panel_height / 2.0
        );
        for i in 0..=4 {
            let value = max * f64::from(i) / 4.0;
            let y = top + panel_height - panel_height * f64::from(i) / 4.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_width,
                LEFT - 6.0,
                y + 4.0,
                trim(value)
            );
        }
        let ticks = 8;
        for i in 0..=ticks {
            let t = end * f64::from(i) / f64::from(ticks);
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.1} {unit}</text>"##,
                x(t),
                top + panel_height + 16.0,
                t / unit_seconds
            );
        }
    };

    let series = |points: &[(f64, f64)], top: f64, panel_height: f64, max: f64| -> String {
        points
            .iter()
            .map(|(t, v)| {
                format!(
                    "{:.1},{:.1}",
                    x(*t),
                    top + panel_height - (v / max).min(1.0) * panel_height
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };

    // Load, from the first run (every run replays the same arrivals).
    if let Some(first) = outcomes.first() {
        let load: Vec<(f64, f64)> = first.timeline.iter().map(|p| (p.at, p.arrivals)).collect();
        let max = nice(load.iter().map(|p| p.1).fold(0.0, f64::max));
        panel(&mut svg, TOP, LOAD_HEIGHT, "arrivals / s", max);
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="#444" stroke-width="1" points="{}"/>"##,
            series(&load, TOP, LOAD_HEIGHT, max)
        );
    }

    let pods_top = TOP + LOAD_HEIGHT + GAP;
    let max_pods = nice(
        outcomes
            .iter()
            .flat_map(|o| o.timeline.iter())
            .map(|p| f64::from(p.pods.iter().sum::<u32>()))
            .fold(1.0, f64::max),
    );
    panel(
        &mut svg,
        pods_top,
        PODS_HEIGHT,
        "pods (all pools)",
        max_pods,
    );
    let mut legend_y = pods_top + 10.0;
    for outcome in outcomes {
        let pods: Vec<(f64, f64)> = outcome
            .timeline
            .iter()
            .map(|p| (p.at, f64::from(p.pods.iter().sum::<u32>())))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"##,
            color(outcome.policy),
            series(&pods, pods_top, PODS_HEIGHT, max_pods)
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{} ({:.1} GPU-h)</text>"##,
            WIDTH - RIGHT + 10.0,
            WIDTH - RIGHT + 30.0,
            color(outcome.policy),
            WIDTH - RIGHT + 35.0,
            legend_y + 4.0,
            outcome.policy.as_str(),
            outcome.gpu_hours
        );
        legend_y += 18.0;
        if outcome.policy == Policy::Scaler {
            let demand: Vec<(f64, f64)> = outcome
                .timeline
                .iter()
                .map(|p| (p.at, p.demand.iter().sum::<f64>()))
                .collect();
            let _ = writeln!(
                svg,
                r##"<polyline fill="none" stroke="{}" stroke-width="1" stroke-dasharray="4 3" points="{}"/>"##,
                color(outcome.policy),
                series(&demand, pods_top, PODS_HEIGHT, max_pods)
            );
            let _ = writeln!(
                svg,
                r##"<line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{}" stroke-dasharray="4 3"/><text x="{}" y="{}">scaler demand</text>"##,
                WIDTH - RIGHT + 10.0,
                WIDTH - RIGHT + 30.0,
                color(outcome.policy),
                WIDTH - RIGHT + 35.0,
                legend_y + 4.0
            );
            legend_y += 18.0;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round axis maximum at or above `value`.
pub(crate) fn nice(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&m| m >= value)
        .unwrap_or(10.0 * magnitude)
}

pub(crate) fn trim(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    format!("{rounded}")
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(1.2), 2.0);
        assert_eq!(nice(180.0), 200.0);
        assert_eq!(nice(0.0), 1.0);
    }
}
