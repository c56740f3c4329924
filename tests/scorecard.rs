//! `scorecard` as users run it: the shipped manifest's traces (cut short so that debug
//! builds run them in seconds), the references' promises, and bad manifests.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod cli;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/backtest/llama-70b.yaml");
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/backtest/scorecard.yaml");
const AZURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/azure2023_conv.csv");
const SCALED_OBJECT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/examples/unified-vllm/scaledobject.yaml"
);

/// The first `minutes` of a trace, in its own format: Azure CSV rows by timestamp,
/// Mooncake JSON lines by `timestamp` (ms), rate files by window start.
fn cut(path: &Path, minutes: f64, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let mut kept: Vec<&str> = Vec::new();
    let name = path.file_name().unwrap().to_str().unwrap();
    if name.ends_with(".jsonl") {
        kept.extend(lines.take_while(|line| {
            let request: Value = serde_json::from_str(line).unwrap();
            request["timestamp"].as_f64().unwrap() < minutes * 60_000.0
        }));
    } else {
        let header = lines.next().unwrap();
        kept.push(header);
        let rows: Vec<&str> = lines.collect();
        if header.starts_with("TIMESTAMP") {
            let at = |row: &str| {
                chrono::NaiveDateTime::parse_from_str(
                    row.split(',').next().unwrap(),
                    "%Y-%m-%d %H:%M:%S%.f",
                )
                .unwrap()
            };
            let start = at(rows[0]);
            kept.extend(
                rows.iter()
                    .take_while(|row| (at(row) - start).as_seconds_f64() < minutes * 60.0),
            );
        } else {
            kept.extend(rows.iter().take_while(|row| {
                row.split(',').next().unwrap().parse::<f64>().unwrap() < minutes * 60.0
            }));
        }
    }
    let out = dir.join(format!("cut-{name}"));
    std::fs::write(&out, kept.join("\n") + "\n").unwrap();
    out
}

/// The shipped manifest with every trace cut to its first `minutes`, as JSON (which
/// YAML reads); `lengths` files stay whole.
fn shipped_manifest_cut(dir: &Path, minutes: f64) -> PathBuf {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    let mut manifest: Value = serde_saphyr::from_str(&text).unwrap();
    let base = Path::new(MANIFEST).parent().unwrap();
    for entry in manifest["traces"].as_array_mut().unwrap() {
        let trace = base.join(entry["trace"].as_str().unwrap());
        entry["trace"] = cut(&trace, minutes, dir).to_str().unwrap().into();
        if let Some(lengths) = entry.get("lengths").and_then(Value::as_str) {
            entry["lengths"] = base.join(lengths).to_str().unwrap().into();
        }
    }
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, manifest.to_string()).unwrap();
    path
}

fn scorecard(args: &[&str]) -> (bool, String, String) {
    cli::run_binary(&[&["scorecard"], args].concat())
}

fn policy<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {trace}"))
}

/// The names of a trace's policies, in the report's order.
fn policy_names(trace: &Value) -> Vec<&str> {
    trace["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

/// The lower of a policy's two feasible attainments.
fn worst(policy: &Value) -> f64 {
    number(policy, "ttft_attainment_feasible").min(number(policy, "tpot_attainment_feasible"))
}

#[test]
fn the_references_keep_their_promises_on_every_shipped_trace() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = shipped_manifest_cut(dir.path(), 20.0);
    let plot = dir.path().join("scorecard.svg");
    let args = [
        "--config",
        CONFIG,
        "--traces",
        manifest.to_str().unwrap(),
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ];
    let (ok, first, stderr) = scorecard(&args);
    assert!(ok, "{stderr}");
    let (ok, second, _) = scorecard(&args);
    assert!(ok);
    assert_eq!(first, second, "the same manifest gives the same figures");

    let report: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(report["target"], 0.99);
    let traces = report["traces"].as_array().unwrap();
    let names: Vec<&str> = traces.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "azure-conv",
            "azure-conv-4x",
            "mooncake",
            "reasoning-day",
            "m-small-14d"
        ]
    );
    for trace in traces {
        let name = &trace["name"];
        assert_eq!(
            policy_names(trace),
            ["scaler", "oracle", "static-best", "keda-tuned", "keda-seed"]
        );
        // The oracle reaches the target in every window it is not capped in, and in
        // all when none is, at no more than the best fixed fleet's cost.
        let oracle = policy(trace, "oracle");
        let capped = oracle["capped_windows"].as_u64().unwrap();
        assert!(
            oracle["windows_below_target"].as_u64().unwrap() <= capped,
            "{name}: {oracle}"
        );
        if capped == 0 {
            assert!(worst(oracle) >= 0.99, "{name}: {oracle}");
        }
        let static_best = policy(trace, "static-best");
        assert!(static_best["replicas"].as_u64().unwrap() >= 1);
        assert!(
            number(oracle, "gpu_hours") <= number(static_best, "gpu_hours") + 1e-9,
            "{name}: oracle {oracle} static-best {static_best}"
        );
        // Tuning with hindsight never loses to the seed's thresholds: cheaper, or
        // buying attainment the seed lacks.
        let tuned = policy(trace, "keda-tuned");
        let seed = policy(trace, "keda-seed");
        assert!(
            number(tuned, "gpu_hours") <= number(seed, "gpu_hours") + 1e-9
                || worst(tuned) > worst(seed),
            "{name}: tuned {tuned} seed {seed}"
        );
        if worst(seed) >= 0.99 {
            assert!(number(tuned, "gpu_hours") <= number(seed, "gpu_hours") + 1e-9);
        }
        if tuned["reached"] == true {
            assert!(worst(tuned) >= 0.99, "{name}: {tuned}");
        }
        for key in ["queue", "output_tokens_per_second"] {
            assert!(tuned["thresholds"][key].as_f64().unwrap() > 0.0, "{tuned}");
        }
        let feasible = &trace["feasible"];
        for key in ["ttft_share", "tpot_share"] {
            let share = number(feasible, key);
            assert!((0.0..=1.0).contains(&share), "{name}: {feasible}");
        }
    }
    // Long prompts: some cannot reach a first token in 2 s on any replica.
    let mooncake = &traces[2];
    assert!(
        number(&mooncake["feasible"], "ttft_share") < 0.9,
        "{mooncake}"
    );
    assert_eq!(number(&traces[0]["feasible"], "ttft_share"), 1.0);

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Five policies on each of five traces, and the legend's five.
    assert_eq!(svg.matches("<circle").count(), 30);

    let (ok, table, _) = scorecard(&args[..4]);
    assert!(ok);
    assert!(
        table.starts_with("| trace | policy | feasible TTFT | feasible TPOT |"),
        "{table}"
    );
    assert!(table.contains("| mooncake | scaler |"), "{table}");
}

/// Runs a scorecard that must fail: its stderr, after checking nothing was written.
fn refused(manifest: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest).unwrap();
    let plot = dir.path().join("plot.svg");
    let args = [
        &[
            "--config",
            CONFIG,
            "--traces",
            path.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    let (ok, stdout, stderr) = scorecard(&args);
    assert!(!ok, "{manifest}: {stdout}");
    assert!(stdout.is_empty(), "nothing half-written: {stdout}");
    assert!(!plot.exists(), "no plot for a refused manifest");
    stderr
}

#[test]
fn a_bad_manifest_is_refused_naming_the_entry_and_the_key() {
    let rates = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/traces/servegen_m-small_rate_10min.csv"
    );
    let good = format!("  - name: ok\n    trace: {AZURE}\n");
    let cases = [
        (
            format!("{good}  - name: gone\n    trace: /nonexistent/trace.csv\n"),
            "entry `gone`: `trace`: /nonexistent/trace.csv is not a readable file",
        ),
        (
            format!("{good}  - name: daily\n    trace: {rates}\n"),
            "entry `daily`: `lengths`:",
        ),
        (
            format!("{good}  - name: typo\n    trace: {AZURE}\n    rate_scal: 2\n"),
            "entry `typo`: `rate_scal`: unknown key: expected one of name, trace, lengths",
        ),
        (
            format!("{good}  - name: fast\n    trace: {AZURE}\n    rate_scale: -1\n"),
            "entry `fast`: `rate_scale`: expected a number above 0, found -1",
        ),
        (
            format!("{good}  - name: huge\n    trace: {AZURE}\n    prompt_scale: 1000\n"),
            "entry `huge`: `prompt_scale`: expected a number above 0 and at most 100, found 1000",
        ),
        (
            format!("{good}  - name: none\n    trace: {AZURE}\n    answer_scale: 0\n"),
            "entry `none`: `answer_scale`: expected a number above 0 and at most 100, found 0",
        ),
        (
            format!("{good}  - name: model\n    trace: {AZURE}\n    model: 405b\n"),
            "entry `model`: `model`: unknown model `405b`",
        ),
        (
            format!("{good}  - trace: {AZURE}\n"),
            "entry 2: `name` is missing",
        ),
        (
            format!("{good}{good}"),
            "entry `ok`: `name` repeats an earlier entry's",
        ),
        (
            format!(
                "{good}  - name: both\n    trace: {AZURE}\n    scaled_object: {SCALED_OBJECT}\n    max_replicas: 5\n"
            ),
            "entry `both`: `max_replicas`: the ScaledObject in `scaled_object` sets the bounds",
        ),
        (
            format!("{good}  - name: notso\n    trace: {AZURE}\n    scaled_object: {CONFIG}\n"),
            "entry `notso`: `scaled_object`:",
        ),
    ];
    for (manifest, expected) in cases {
        let manifest = format!("traces:\n{manifest}");
        let stderr = refused(&manifest, &[]);
        assert!(stderr.contains(expected), "{manifest}\n{stderr}");
    }
    for target in ["0", "1", "1.5", "-0.2", "nan"] {
        let flag = format!("--target={target}");
        let stderr = refused(&format!("traces:\n{good}"), &[&flag]);
        assert!(
            stderr.contains(&format!("`{target}` is not a number between 0 and 1")),
            "{stderr}"
        );
    }
}

#[test]
fn every_shipped_manifest_names_traces_that_are_there() {
    // Users run these as the docs print them: a path that moved breaks the command.
    let base = Path::new(MANIFEST).parent().unwrap();
    for name in [
        "scorecard.yaml",
        "scorecard-rates.yaml",
        "scorecard-8b.yaml",
        "scorecard-8b-rates.yaml",
        "scorecard-shapes.yaml",
        "scorecard-8b-shapes.yaml",
    ] {
        let text = std::fs::read_to_string(base.join(name)).unwrap();
        let manifest: Value = serde_saphyr::from_str(&text).unwrap();
        let entries = manifest["traces"].as_array().unwrap();
        assert!(!entries.is_empty(), "{name} lists no trace");
        for entry in entries {
            for key in ["trace", "lengths"] {
                if let Some(path) = entry.get(key).and_then(Value::as_str) {
                    assert!(base.join(path).is_file(), "{name}: {key} {path} is missing");
                }
            }
        }
    }
}

#[test]
fn hpa_floor_adds_the_oracle_through_the_scaled_object_and_its_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let cut_trace = cut(Path::new(AZURE), 15.0, dir.path());
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            "traces:\n  - name: chat-4x\n    trace: {}\n    rate_scale: 4\n",
            cut_trace.display()
        ),
    )
    .unwrap();
    let base = ["--config", CONFIG, "--traces", manifest.to_str().unwrap()];
    let (ok, json, stderr) = scorecard(&[&base[..], &["--hpa-floor", "--json"]].concat());
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let trace = &report["traces"][0];
    assert_eq!(
        policy_names(trace),
        [
            "scaler",
            "oracle",
            "oracle-hpa",
            "static-best",
            "keda-tuned",
            "keda-seed"
        ]
    );
    let gpu_hours = |name: &str| number(policy(trace, name), "gpu_hours");
    assert!(gpu_hours("oracle-hpa") >= gpu_hours("oracle"), "{trace}");

    let (ok, table, _) = scorecard(&[&base[..], &["--hpa-floor"]].concat());
    assert!(ok);
    assert!(
        table.starts_with(
            "| trace | policy | feasible TTFT | feasible TPOT | windows < 99 % | GPU-hours | / oracle | / oracle-hpa | / keda-tuned | chosen |"
        ),
        "{table}"
    );
    let scaler_row = table
        .lines()
        .find(|l| l.starts_with("| chat-4x | scaler |"))
        .unwrap();
    let cells: Vec<&str> = scaler_row.split('|').map(str::trim).collect();
    let expected = gpu_hours("scaler") / gpu_hours("oracle-hpa");
    let shown: f64 = cells[8].parse().unwrap();
    assert!((shown - expected).abs() < 0.006, "{scaler_row}: {expected}");
    assert!(table.contains("|  | oracle-hpa |"), "{table}");
    // Without the flag the table keeps its columns.
    let (ok, plain, _) = scorecard(&base);
    assert!(ok);
    assert!(!plain.contains("oracle-hpa"), "{plain}");

    // An entry's `scaled_object` is what the scaler and oracle-hpa run behind: the
    // shipped example is the ScaledObject they run behind without it.
    let with_file = dir.path().join("with-file.yaml");
    std::fs::write(
        &with_file,
        format!(
            "traces:\n  - name: chat-4x\n    trace: {}\n    rate_scale: 4\n    scaled_object: {SCALED_OBJECT}\n",
            cut_trace.display()
        ),
    )
    .unwrap();
    let (ok, same, stderr) = scorecard(&[
        "--config",
        CONFIG,
        "--traces",
        with_file.to_str().unwrap(),
        "--hpa-floor",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&same).unwrap(), report);
}
