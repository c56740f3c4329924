//! `scorecard`: the scaler against the searched references over a set of traces, one
//! config for all of them.

use super::error::SimError;
use std::{
    collections::BTreeMap,
    fmt::Write,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::reload::read_bounded;

use super::{
    backtest::{BacktestArgs, Prepared, feasible_shares, figures, parse_target, prepare},
    fleet::Router,
    model::ModelProfile,
    plot::ScorePanel,
    run::{Outcome, Policy},
    trace::Trace,
};

/// `keda-llm-scaler scorecard`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScorecardArgs {
    /// The scaler's config file, used unchanged for every trace.
    #[arg(long)]
    pub config: PathBuf,
    /// The manifest (YAML): a list of `{name, trace, lengths?, rate_scale?, time_scale?,
    /// prompt_scale?, answer_scale?, start?, max_replicas?, min_replicas?, model?, seed?,
    /// scaled_object?}`, or a mapping whose `traces` key holds that list. Paths are
    /// relative to the manifest's folder.
    #[arg(long)]
    pub traces: PathBuf,
    /// The feasible attainment the references must reach, between 0 and 1.
    #[arg(long, default_value_t = 0.99, value_parser = parse_target)]
    pub target: f64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also plot, per trace, each policy's GPU-hours against its attainment (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also run `oracle-hpa` (the oracle's fleets asked through the scaler's
    /// ScaledObject) and give the scaler's GPU-hours as a ratio to it: how much of the
    /// gap to the oracle the HPA's behavior and the cold start leave to any demand.
    #[arg(long)]
    pub hpa_floor: bool,
}

impl ScorecardArgs {
    /// The policies this scorecard compares, in its order.
    fn policies(&self) -> Vec<Policy> {
        let mut policies = POLICIES.to_vec();
        if self.hpa_floor {
            policies.insert(2, Policy::OracleHpa);
        }
        policies
    }
}

/// The policies a scorecard compares, in its order.
pub const POLICIES: [Policy; 5] = [
    Policy::Scaler,
    Policy::Oracle,
    Policy::StaticBest,
    Policy::KedaTuned,
    Policy::KedaSeed,
];

/// The keys a manifest entry may have.
const KEYS: [&str; 13] = [
    "name",
    "trace",
    "lengths",
    "rate_scale",
    "time_scale",
    "prompt_scale",
    "answer_scale",
    "start",
    "max_replicas",
    "min_replicas",
    "model",
    "seed",
    "scaled_object",
];

/// One entry of the manifest, checked.
struct Entry {
    name: String,
    args: BacktestArgs,
}

/// Reads and checks the manifest; every error names the entry and the key.
fn read_manifest(args: &ScorecardArgs) -> Result<Vec<Entry>, String> {
    let path = &args.traces;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--traces {}: cannot read: {e}", path.display()))?;
    let document: Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("--traces {}: not YAML: {e}", path.display()))?;
    let list = match document {
        Value::Array(list) => list,
        Value::Object(mut map) if map.len() == 1 && map.contains_key("traces") => {
            match map.remove("traces") {
                Some(Value::Array(list)) => list,
                _ => {
                    return Err(format!(
                        "--traces {}: `traces` must be a list",
                        path.display()
                    ));
                }
            }
        }
        _ => {
            return Err(format!(
                "--traces {}: expected a list of entries, or a mapping with only `traces`",
                path.display()
            ));
        }
    };
    if list.is_empty() {
        return Err(format!(
            "--traces {}: the manifest lists no trace",
            path.display()
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut entries: Vec<Entry> = Vec::new();
    for (index, value) in list.into_iter().enumerate() {
        let entry = read_entry(index, value, base, args)
            .map_err(|e| format!("--traces {}: {e}", path.display()))?;
        if entries.iter().any(|e| e.name == entry.name) {
            return Err(format!(
                "--traces {}: entry `{}`: `name` repeats an earlier entry's",
                path.display(),
                entry.name
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// An entry's keys, read one by one; every error names the entry and the key.
struct Fields<'a> {
    map: BTreeMap<String, Value>,
    /// "entry `name`", for errors.
    label: String,
    /// Paths are relative to this folder.
    base: &'a Path,
}

impl Fields<'_> {
    fn fail(&self, key: &str, problem: impl std::fmt::Display) -> String {
        format!("{}: `{key}`: {problem}", self.label)
    }

    /// An existing file, relative to the manifest's folder.
    fn path(&self, key: &str) -> Result<Option<PathBuf>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => {
                let path = self.base.join(text);
                if path.is_file() {
                    Ok(Some(path))
                } else {
                    Err(self.fail(key, format!("{} is not a readable file", path.display())))
                }
            }
            Some(other) => Err(self.fail(key, format!("expected a file path, found {other}"))),
        }
    }

    /// A positive finite factor, 1 when absent.
    fn factor(&self, key: &str) -> Result<f64, String> {
        match self.map.get(key) {
            None => Ok(1.0),
            Some(value) => value
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| self.fail(key, format!("expected a number above 0, found {value}"))),
        }
    }

    /// A length scale: above 0, at most the backtest's bound; 1 when absent.
    fn length_scale(&self, key: &str) -> Result<f64, String> {
        let bound = super::backtest::MAX_LENGTH_SCALE;
        match self.map.get(key) {
            None => Ok(1.0),
            Some(value) => value
                .as_f64()
                .filter(|v| super::backtest::is_length_scale(*v))
                .ok_or_else(|| {
                    let problem =
                        format!("expected a number above 0 and at most {bound}, found {value}");
                    self.fail(key, problem)
                }),
        }
    }

    /// A whole number of at least `least`, `default` when absent.
    fn count(&self, key: &str, default: u64, least: u64) -> Result<u64, String> {
        match self.map.get(key) {
            None => Ok(default),
            Some(value) => value.as_u64().filter(|v| *v >= least).ok_or_else(|| {
                let problem = format!("expected a whole number of at least {least}, found {value}");
                self.fail(key, problem)
            }),
        }
    }

    /// A replica count, which fits a u32.
    fn replicas(&self, key: &str, default: u64, least: u64) -> Result<u32, String> {
        let value = self.count(key, default, least)?;
        u32::try_from(value).map_err(|_| self.fail(key, format!("{value} is too large")))
    }

    fn start(&self) -> Result<Option<DateTime<Utc>>, String> {
        match self.map.get("start") {
            None => Ok(None),
            Some(Value::String(text)) => text.parse().map(Some).map_err(|e| {
                let problem =
                    format!("`{text}` is not an RFC 3339 time such as 2026-01-05T00:00:00Z: {e}");
                self.fail("start", problem)
            }),
            Some(other) => {
                Err(self.fail("start", format!("expected an RFC 3339 time, found {other}")))
            }
        }
    }

    fn model(&self) -> Result<ModelProfile, String> {
        match self.map.get("model") {
            None => Ok(ModelProfile::llama3_70b_tp4_h100()),
            Some(Value::String(name)) => ModelProfile::preset(name).ok_or_else(|| {
                let problem = format!("unknown model `{name}`: expected {}", ModelProfile::PRESETS);
                self.fail("model", problem)
            }),
            Some(other) => Err(self.fail("model", format!("expected a model name, found {other}"))),
        }
    }
}

/// One entry: its keys checked against [`KEYS`], each value's type and range.
fn read_entry(
    index: usize,
    value: Value,
    base: &Path,
    args: &ScorecardArgs,
) -> Result<Entry, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "entry {}: expected a mapping of keys, found {value}",
            index + 1
        ));
    };
    let name = match map.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(other) => {
            return Err(format!(
                "entry {}: `name`: expected a non-empty string, found {other}",
                index + 1
            ));
        }
        None => return Err(format!("entry {}: `name` is missing", index + 1)),
    };
    let fields = Fields {
        map: map.into_iter().collect(),
        label: format!("entry `{name}`"),
        base,
    };
    if let Some(key) = fields.map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(fields.fail(
            key,
            format!("unknown key: expected one of {}", KEYS.join(", ")),
        ));
    }
    let trace = fields
        .path("trace")?
        .ok_or_else(|| fields.fail("trace", "is missing"))?;
    let lengths = fields.path("lengths")?;
    if lengths.is_none() && matches!(Trace::load(&trace), Ok(Trace::Rates(_))) {
        let problem = format!(
            "{} is a rate file, which has no token lengths: give a request trace in `lengths`",
            trace.display()
        );
        return Err(fields.fail("lengths", problem));
    }
    let max_replicas = fields.replicas("max_replicas", 20, 1)?;
    let min_replicas = fields.replicas("min_replicas", 2.min(u64::from(max_replicas)), 0)?;
    if min_replicas > max_replicas {
        let problem = format!("{min_replicas} is above max_replicas {max_replicas}");
        return Err(fields.fail("min_replicas", problem));
    }
    let scaled_object = fields.path("scaled_object")?;
    if let Some(path) = &scaled_object {
        // Checked now, so that a wrong file stops the run before anything is simulated.
        let text = read_bounded(path).map_err(|e| fields.fail("scaled_object", e.to_string()))?;
        super::hpa::manifest::scaled_objects(&text)
            .map_err(|e| fields.fail("scaled_object", format!("{}: {e}", path.display())))?;
        if let Some(key) = ["min_replicas", "max_replicas"]
            .into_iter()
            .find(|k| fields.map.contains_key(*k))
        {
            let problem = "the ScaledObject in `scaled_object` sets the bounds: leave this out";
            return Err(fields.fail(key, problem));
        }
    }
    let args = BacktestArgs {
        config: args.config.clone(),
        trace,
        lengths,
        profiles: Vec::new(),
        policies: args.policies(),
        model: fields.model()?,
        cold_start: None,
        router: Router::LeastOutstanding,
        rate_scale: fields.factor("rate_scale")?,
        time_scale: fields.factor("time_scale")?,
        prompt_scale: fields.length_scale("prompt_scale")?,
        answer_scale: fields.length_scale("answer_scale")?,
        seed: fields.count("seed", 1, 0)?,
        min_replicas,
        max_replicas,
        scaled_object,
        start: fields.start()?,
        plot: PathBuf::new(),
        timeline: None,
        target: args.target,
        json: args.json,
    };
    Ok(Entry { name, args })
}

/// One trace's result.
struct Scored {
    name: String,
    prepared: Prepared,
    outcomes: Vec<Outcome>,
}

impl Scored {
    fn gpu_hours(&self, policy: Policy) -> Option<f64> {
        self.outcomes
            .iter()
            .find(|o| o.policy == policy)
            .map(|o| o.gpu_hours)
    }
}

/// Runs a scorecard: the table or JSON to print; the plot goes to `args.plot`.
pub fn scorecard(args: &ScorecardArgs) -> Result<String, SimError> {
    let entries = read_manifest(args)?;
    // Every entry is checked and loaded before anything runs or is written.
    let prepared = entries
        .into_iter()
        .map(|entry| {
            prepare(&entry.args)
                .map(|prepared| (entry.name.clone(), prepared))
                .map_err(|e| {
                    format!(
                        "--traces {}: entry `{}`: {e}",
                        args.traces.display(),
                        entry.name
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scored: Vec<Scored> = prepared
        .into_iter()
        .map(|(name, prepared)| Scored {
            outcomes: prepared.run_all(args.target),
            name,
            prepared,
        })
        .collect();
    if let Some(path) = &args.plot {
        std::fs::write(path, plot(&scored, args.target, &args.policies())?).map_err(|source| {
            SimError::Write {
                what: "plot",
                path: path.display().to_string(),
                source,
            }
        })?;
    }
    Ok(if args.json {
        serde_json::to_string_pretty(&to_json(&scored, args.target)).expect("JSON values serialize")
            + "\n"
    } else {
        to_table(&scored, args.target, args.hpa_floor)
    })
}

/// `{"target", "traces": [{"name", "feasible", "policies"}]}`.
fn to_json(scored: &[Scored], target: f64) -> Value {
    let traces: Vec<Value> = scored
        .iter()
        .map(|s| {
            let (ttft_share, tpot_share) = feasible_shares(&s.outcomes);
            let roles: Vec<_> = s.prepared.setup.pools.iter().map(|p| p.role).collect();
            json!({
                "name": s.name,
                "feasible": {"ttft_share": ttft_share, "tpot_share": tpot_share},
                "policies": s.outcomes.iter().map(|o| figures(o, &roles, target)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"target": target, "traces": traces})
}

/// `a / b` to two places, or `-` when either is missing or `b` is 0.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    }
}

/// One markdown table over every trace; the scaler's row carries its ratios (to
/// `oracle-hpa` too with `hpa_floor`).
fn to_table(scored: &[Scored], target: f64, hpa_floor: bool) -> String {
    let mut out = String::new();
    let floor_heading = if hpa_floor { " / oracle-hpa |" } else { "" };
    let _ = writeln!(
        out,
        "| trace | policy | feasible TTFT | feasible TPOT | windows < {:.0} % | GPU-hours | / oracle |{floor_heading} / keda-tuned | chosen |",
        target * 100.0
    );
    let floor_rule = if hpa_floor { "---:|" } else { "" };
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|{floor_rule}---:|---|"
    );
    for s in scored {
        let (ttft, tpot) = feasible_shares(&s.outcomes);
        for outcome in &s.outcomes {
            let scaler = outcome.policy == Policy::Scaler;
            let feasible = &outcome.stats.feasible;
            let to = |policy: Policy| match scaler {
                true => ratio(Some(outcome.gpu_hours), s.gpu_hours(policy)),
                false => String::new(),
            };
            let floor = match hpa_floor {
                true => format!(" {} |", to(Policy::OracleHpa)),
                false => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} % | {:.2} % | {} | {:.1} | {} |{floor} {} | {} |",
                if scaler { s.name.as_str() } else { "" },
                outcome.policy.as_str(),
                feasible.ttft_attainment() * 100.0,
                feasible.tpot_attainment() * 100.0,
                super::search::missed_windows(outcome, target).len(),
                outcome.gpu_hours,
                to(Policy::Oracle),
                to(Policy::KedaTuned),
                super::backtest::found_text(outcome),
            );
        }
        let floor_blank = if hpa_floor { " |" } else { "" };
        let _ = writeln!(
            out,
            "| | feasible share | {:.2} % | {:.2} % | | | |{floor_blank} | |",
            ttft * 100.0,
            tpot * 100.0
        );
    }
    out
}

/// The points of every trace's panel, for [`super::plot::scorecard`].
fn plot(scored: &[Scored], target: f64, policies: &[Policy]) -> Result<String, SimError> {
    let panels: Vec<ScorePanel> = scored
        .iter()
        .map(|s| ScorePanel {
            name: &s.name,
            points: s
                .outcomes
                .iter()
                .map(|o| {
                    let f = &o.stats.feasible;
                    let attainment = f.ttft_attainment().min(f.tpot_attainment());
                    (o.policy, o.gpu_hours, attainment)
                })
                .collect(),
        })
        .collect();
    super::plot::scorecard(&panels, policies, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_manifest_reads_as_scorecard_reads_it() {
        // A misspelt key or a value out of range in a shipped manifest would only show
        // when a user runs it: each entry is read here as `scorecard` reads it.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("backtest");
        let mut read = 0;
        for file in std::fs::read_dir(&dir).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            if !(name.starts_with("scorecard") && name.ends_with(".yaml")) {
                continue;
            }
            let config = if name.contains("-8b") {
                "llama-8b.yaml"
            } else {
                "llama-70b.yaml"
            };
            let args = ScorecardArgs {
                config: dir.join(config),
                traces: dir.join(&name),
                target: 0.99,
                json: false,
                plot: None,
                hpa_floor: false,
            };
            let entries = read_manifest(&args).unwrap_or_else(|e| panic!("{e}"));
            assert!(!entries.is_empty(), "{name}");
            read += 1;
        }
        assert_eq!(read, 6, "backtest/ holds six scorecard manifests");
    }
}
