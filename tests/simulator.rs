//! The simulator as users run it: `backtest` on a slice of Azure's trace, and `demo`
//! answering grpcurl.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod cli;
use keda_llm_scaler_test_support as common;

const BINARY: &str = env!("CARGO_BIN_EXE_keda-llm-scaler");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/backtest/llama-70b.yaml");
const AZURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/azure2023_conv.csv");
const MOONCAKE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/traces/mooncake_synthetic_trace.jsonl"
);

/// The first `minutes` of Azure's conversation trace.
fn azure_slice(dir: &Path, minutes: i64) -> PathBuf {
    let text = std::fs::read_to_string(AZURE).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let parse = |line: &str| {
        chrono::NaiveDateTime::parse_from_str(
            line.split(',').next().unwrap(),
            "%Y-%m-%d %H:%M:%S%.f",
        )
        .unwrap()
    };
    let rows: Vec<&str> = lines.collect();
    let start = parse(rows[0]);
    let kept: Vec<&str> = rows
        .into_iter()
        .take_while(|row| parse(row) - start < chrono::TimeDelta::minutes(minutes))
        .collect();
    let path = dir.join("azure-slice.csv");
    std::fs::write(&path, format!("{header}\n{}\n", kept.join("\n"))).unwrap();
    path
}

fn backtest(args: &[&str]) -> (bool, String, String) {
    cli::run_binary(&[&["backtest"], args].concat())
}

/// Every policy `backtest` runs by default, in its order.
const ALL_POLICIES: [&str; 9] = [
    "static",
    "static-best",
    "keda-queue",
    "keda-tokens",
    "keda-seed",
    "keda-tuned",
    "scaler",
    "just-in-time",
    "oracle",
];

#[test]
fn backtest_compares_every_policy_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let trace = azure_slice(dir.path(), 12);
    let plot = dir.path().join("plot.svg");
    let timeline = dir.path().join("timeline.csv");
    let args = [
        "--config",
        CONFIG,
        "--trace",
        trace.to_str().unwrap(),
        "--rate-scale",
        "3",
        "--plot",
        plot.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
        "--json",
    ];
    let (ok, first, stderr) = backtest(&args);
    assert!(ok, "{stderr}");
    let (ok, second, _) = backtest(&args);
    assert!(ok);
    assert_eq!(first, second, "the same seed gives the same figures");

    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    let policies = report["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALL_POLICIES);
    let by_name = |name: &str| policies.iter().find(|p| p["name"] == name).unwrap();
    let requests = by_name("static")["requests"].as_u64().unwrap();
    // About 3 x 3,900 requests in 12 minutes.
    assert!((10_000..13_000).contains(&requests), "{requests}");
    for policy in policies {
        assert_eq!(policy["requests"].as_u64(), Some(requests), "same arrivals");
        for key in ["ttft_attainment", "tpot_attainment"] {
            let value = policy[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&value), "{key} {value}");
        }
        for key in ["ttft_p99_s", "tpot_p99_s", "gpu_hours", "scale_events"] {
            assert!(policy[key].as_f64().unwrap() >= 0.0, "{key}");
        }
    }
    let gpu_hours = |name: &str| by_name(name)["gpu_hours"].as_f64().unwrap();
    assert_eq!(by_name("static")["scale_events"], 0);
    assert!(gpu_hours("just-in-time") < gpu_hours("static"));
    assert!(gpu_hours("oracle") <= gpu_hours("static-best"));
    assert_eq!(report["target"], 0.99);
    assert_eq!(
        report["feasible"]["ttft_share"], 1.0,
        "short chats are all feasible"
    );
    assert!(by_name("static-best")["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(by_name("oracle")["capped_windows"], 0);
    assert_eq!(by_name("oracle")["windows_below_target"], 0);
    let thresholds = &by_name("keda-tuned")["thresholds"];
    assert!(thresholds["queue"].as_f64().unwrap() > 0.0, "{thresholds}");
    assert!(thresholds["output_tokens_per_second"].as_f64().unwrap() > 0.0);
    // The scaler holds the SLOs the seed's stock thresholds miss on this prompt-heavy
    // workload, within a quarter of the capacity-sized just-in-time fleet's cost.
    let scaler = by_name("scaler");
    assert!(
        scaler["ttft_attainment"].as_f64().unwrap() >= 0.99,
        "{scaler}"
    );
    assert!(
        scaler["tpot_attainment"].as_f64().unwrap() >= 0.99,
        "{scaler}"
    );
    assert!(
        gpu_hours("scaler") <= 1.25 * gpu_hours("just-in-time"),
        "{report}"
    );
    assert!(
        by_name("keda-tokens")["tpot_attainment"].as_f64().unwrap()
            < scaler["tpot_attainment"].as_f64().unwrap()
    );

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    // Nine policies' pods, drawn 2 px wide, each named with its GPU-hours in the legend,
    // and the scaler's demand beside them.
    let policy_lines = svg
        .lines()
        .filter(|l| l.starts_with("<polyline") && l.contains(r#"stroke-width="2""#))
        .count();
    assert_eq!(policy_lines, 9, "{svg}");
    for name in ALL_POLICIES {
        assert!(svg.contains(&format!("{name} (")), "{name} in the legend");
    }
    assert!(svg.contains("scaler demand"));
    let csv = std::fs::read_to_string(&timeline).unwrap();
    assert!(csv.starts_with("at_s,arrivals_per_s,static_pods_0,static_serving_0,static_demand_0,"));
    assert!(csv.lines().count() > 40);
    assert_demand_is_the_largest_term(&csv);

    let (ok, table, _) = backtest(&args[..args.len() - 1]);
    assert!(ok);
    assert!(
        table.starts_with("| policy | TTFT <= 2.00 s | TPOT <= 50 ms |"),
        "{table}"
    );
    let rows = table.lines().filter(|l| l.starts_with("| ")).count();
    assert_eq!(rows, 10, "{table}");
    assert!(table.contains("\nstatic-best: "), "{table}");
    assert!(table.contains("\noracle: "), "{table}");
}

/// Each timeline row of this scaler: its demand is its largest term (the config's
/// demand bounds, 0 and 100, are never reached here), and the terms are written.
fn assert_demand_is_the_largest_term(csv: &str) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name);
    let demand = at("scaler_demand_0").unwrap();
    let terms: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.starts_with("scaler_term_"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(terms.len(), 7, "{header:?}");
    assert!(at("scaler_term_input_throughput_0").is_some() && at("static_term_queue_0").is_none());
    let mut checked = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let largest = terms
            .iter()
            .filter_map(|&i| fields[i].parse::<f64>().ok())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        if let Some(largest) = largest {
            let asked: f64 = fields[demand].parse().unwrap();
            assert!((asked - largest).abs() < 0.0015, "{line}");
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} rows with terms");
    assert_slo_readings_are_written(csv);
}

/// The scaler's SLO readings, per SLO of the config: fixable burns of at least 0 and
/// unfixable shares within 0 and 1, the latter only for the TTFT SLO (vLLM's prefill
/// times split it; the TPOT SLO sets no `floor_context_tokens`); where an SLO burns over
/// both windows (the config's threshold is 1), its term is there.
fn assert_slo_readings_are_written(csv: &str) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    let slo_term = at("scaler_term_slo_0");
    let mut read = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        for slo in ["ttft-2s", "tpot-50ms"] {
            let value = |column: &str| -> Option<f64> {
                let field = fields[at(&format!("scaler_slo_{slo}_{column}_0"))];
                (!field.is_empty()).then(|| field.parse().unwrap())
            };
            let (Some(short), Some(long)) =
                (value("short_fixable_burn"), value("long_fixable_burn"))
            else {
                continue;
            };
            assert!(short >= 0.0 && long >= 0.0, "{line}");
            for column in ["short_unfixable_ratio", "long_unfixable_ratio"] {
                match value(column) {
                    Some(share) => {
                        assert!(slo == "ttft-2s" && (0.0..=1.0).contains(&share), "{line}")
                    }
                    None => assert_eq!(slo, "tpot-50ms", "{column}: {line}"),
                }
            }
            if short > 1.0 && long > 1.0 {
                assert!(!fields[slo_term].is_empty(), "{slo} burns: {line}");
            }
            read += 1;
        }
    }
    assert!(read > 80, "{read} readings");
}

/// The timeline's column `name` for `policy`, by sample.
fn column(timeline: &str, name: &str) -> Vec<f64> {
    let mut lines = timeline.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let index = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("{name} in {header:?}"));
    lines
        .map(|line| line.split(',').nth(index).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn oracle_hpa_asks_the_oracles_fleets_through_the_scalers_scaled_object() {
    let dir = tempfile::tempdir().unwrap();
    let trace = azure_slice(dir.path(), 30);
    let timeline = dir.path().join("timeline.csv");
    let plot = dir.path().join("plot.svg");
    let chat_4x = [
        "--config",
        CONFIG,
        "--trace",
        trace.to_str().unwrap(),
        "--rate-scale",
        "4",
        "--plot",
        plot.to_str().unwrap(),
        "--json",
    ];
    let (ok, json, stderr) = backtest(
        &[
            &chat_4x[..],
            &["--policy", "oracle", "--policy", "oracle-hpa"],
            &["--timeline", timeline.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let policies = report["policies"].as_array().unwrap();
    let by_name = |name: &str| policies.iter().find(|p| p["name"] == name).unwrap();
    let (oracle, floor) = (by_name("oracle"), by_name("oracle-hpa"));
    let gpu_hours = |p: &serde_json::Value| p["gpu_hours"].as_f64().unwrap();
    // The HPA holds replicas the oracle lets go: the floor behind a ScaledObject costs
    // more, and asking one cold start ahead keeps the oracle's attainment.
    assert!(gpu_hours(floor) > gpu_hours(oracle), "{report}");
    for key in ["ttft_attainment_feasible", "tpot_attainment_feasible"] {
        assert!(floor[key].as_f64().unwrap() >= 0.99, "{key}: {floor}");
    }

    let timeline = std::fs::read_to_string(&timeline).unwrap();
    let at = column(&timeline, "at_s");
    let asked = column(&timeline, "oracle-hpa_demand_0");
    let pods = column(&timeline, "oracle-hpa_pods_0");
    let oracle_serving = column(&timeline, "oracle_serving_0");
    for i in 0..at.len() {
        // Between window starts, while the trace lasts, it asks at least the fleet the
        // oracle serves with.
        if at[i] % 300.0 != 0.0 && at[i] < 30.0 * 60.0 {
            assert!(asked[i] >= oracle_serving[i], "at {} s", at[i]);
        }
        // The recommended ScaledObject lets 20 % of the pods go a minute, at least one
        // (the controller truncates what is left).
        for j in i + 1..at.len() {
            if at[j] - at[i] < 60.0 {
                let lowest = (pods[i] * 0.8).floor();
                assert!(pods[j] >= lowest, "{} s to {} s", at[i], at[j]);
            }
        }
    }
    assert!(
        (0..at.len()).any(|i| pods[i] > oracle_serving[i]),
        "the HPA holds replicas the oracle has let go"
    );

    // Asked alone, it searches the oracle itself: the same fleets, the same figures.
    let (ok, alone, stderr) = backtest(&[&chat_4x[..], &["--policy", "oracle-hpa"]].concat());
    assert!(ok, "{stderr}");
    let alone: serde_json::Value = serde_json::from_str(&alone).unwrap();
    assert_eq!(alone["policies"][0], *floor, "{alone}");
}

#[test]
fn backtest_prices_the_scaled_object_a_user_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let shipped = format!("{root}/deploy/examples/unified-vllm/scaledobject.yaml");
    let plot = dir.path().join("plot.svg");
    let run = |extra: &[&str]| {
        let chat_4x = [
            "--config",
            CONFIG,
            "--trace",
            AZURE,
            "--rate-scale",
            "4",
            "--policy",
            "scaler",
            "--plot",
            plot.to_str().unwrap(),
            "--json",
        ];
        let (ok, json, stderr) = backtest(&[&chat_4x[..], extra].concat());
        assert!(ok, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    };
    // The example is what the backtest simulates without the flag: the same figures.
    let default = run(&[]);
    assert_eq!(run(&["--scaled-object", &shipped]), default);

    // The seed's behavior, one pod per 2 minutes after 5 minutes: the fleet keeps the
    // burst's replicas longer, and the timeline shows the pace.
    let text = std::fs::read_to_string(&shipped).unwrap();
    let start = text.find("        scaleDown:").unwrap();
    let end = text.find("  triggers:").unwrap();
    let seed_down = "        scaleDown:\n          stabilizationWindowSeconds: 300\n          policies:\n            - type: Pods\n              value: 1\n              periodSeconds: 120\n";
    let seed = dir.path().join("seed-behavior.yaml");
    std::fs::write(
        &seed,
        format!("{}{seed_down}{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let timeline = dir.path().join("timeline.csv");
    let slow = run(&[
        "--scaled-object",
        seed.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
    ]);
    let gpu_hours = |r: &serde_json::Value| r["policies"][0]["gpu_hours"].as_f64().unwrap();
    assert!(
        gpu_hours(&slow) > gpu_hours(&default),
        "{slow} against {default}"
    );
    let timeline = std::fs::read_to_string(&timeline).unwrap();
    let (at, pods) = (
        column(&timeline, "at_s"),
        column(&timeline, "scaler_pods_0"),
    );
    let mut dropped = false;
    for i in 0..at.len() {
        for j in i + 1..at.len() {
            if at[j] - at[i] < 120.0 {
                assert!(pods[j] >= pods[i] - 1.0, "{} s to {} s", at[i], at[j]);
            }
        }
        dropped |= i > 0 && pods[i] < pods[i - 1];
    }
    assert!(dropped, "the fleet never scaled down");

    // Bounds come from the file, not from both; a file must fit the pools.
    let refused = |extra: &[&str]| {
        let (ok, _, stderr) = backtest(
            &[
                &["--config", CONFIG, "--trace", AZURE, "--scaled-object"][..],
                extra,
            ]
            .concat(),
        );
        assert!(!ok, "{extra:?} was accepted");
        stderr
    };
    let stderr = refused(&[&shipped, "--max-replicas", "5"]);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let two = format!("{root}/deploy/examples/prefill-decode/scaledobjects.yaml");
    let stderr = refused(&[&two]);
    assert!(
        stderr.contains("holds 2 ScaledObjects for 1 pool(s)"),
        "{stderr}"
    );
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().unwrap();
    let stderr = refused(&[missing]);
    assert!(stderr.contains(missing), "{stderr}");
}

#[test]
fn backtest_runs_a_disaggregated_fleet_and_a_rate_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pd.yaml");
    std::fs::write(
        &config,
        "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  prefill:\n    engine: vllm\n    pool: prefill\n    capacity: {queue_per_replica: 2, input_tokens_per_second: 8000}\n  decode:\n    engine: vllm\n    pool: decode\n    capacity: {queue_per_replica: 2, output_tokens_per_second: 2000}\n",
    )
    .unwrap();
    let rates = dir.path().join("rates.csv");
    std::fs::write(&rates, "window_start_s,rate\n0,4\n300,40\n900,4\n").unwrap();
    let plot = dir.path().join("plot.svg");
    let timeline = dir.path().join("timeline.csv");
    let (ok, out, stderr) = backtest(&[
        "--config",
        config.to_str().unwrap(),
        "--profile",
        "decode",
        "--profile",
        "prefill",
        "--trace",
        rates.to_str().unwrap(),
        "--policy",
        "scaler",
        "--policy",
        "oracle",
        "--plot",
        plot.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let scaler = &report["policies"][0];
    assert_eq!(scaler["name"], "scaler");
    let requests = scaler["requests"].as_u64().unwrap();
    // 4 x 300 + 40 x 600 + 4 x 600 requests expected.
    assert!((26_800..28_400).contains(&requests), "{requests}");
    assert!(scaler["scale_events"].as_u64().unwrap() > 0, "{scaler}");
    // Both pools grow with the load, each on its own signal: the prefill pool (0) on
    // input tokens, the decode pool (1) on output tokens.
    let csv = std::fs::read_to_string(&timeline).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let peak = |index: usize| {
        csv.lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(index)?.parse::<u32>().ok())
            .max()
            .unwrap()
    };
    assert!(peak(column("scaler_pods_0")) >= 4, "{csv}");
    assert!(peak(column("scaler_pods_1")) >= 3, "{csv}");
}

/// A trace of `rate` requests/s for an hour, every request of `input` prompt and
/// `output` generated tokens: its rate and lengths files in `dir`.
fn uniform_trace(dir: &Path, rate: f64, input: u32, output: u32) -> (PathBuf, PathBuf) {
    let lengths = dir.join("long.csv");
    let rows: Vec<String> = (0..50)
        .map(|i| format!("2026-01-05 00:00:{:02}.000000,{input},{output}", i % 60))
        .collect();
    std::fs::write(
        &lengths,
        format!(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n{}\n",
            rows.join("\n")
        ),
    )
    .unwrap();
    (rate_file(dir, rate, 6), lengths)
}

/// `windows` ten-minute windows of `rate` requests/s, as a rate file in `dir`.
fn rate_file(dir: &Path, rate: f64, windows: usize) -> PathBuf {
    let rates = dir.join("rates.csv");
    let rows: Vec<String> = (0..windows)
        .map(|i| format!("{},{rate}", i * 600))
        .collect();
    std::fs::write(
        &rates,
        format!("window_start_s,rate\n{}\n", rows.join("\n")),
    )
    .unwrap();
    rates
}

/// The scaler's backtest of a trace under `config`: its JSON report and its peak pods.
fn scaler_run(
    dir: &Path,
    config: &Path,
    (rates, lengths): &(PathBuf, PathBuf),
    extra: &[&str],
) -> (serde_json::Value, u32) {
    let timeline = dir.join("timeline.csv");
    let plot = dir.join("plot.svg");
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--trace",
        rates.to_str().unwrap(),
        "--lengths",
        lengths.to_str().unwrap(),
        "--policy",
        "scaler",
        "--plot",
        plot.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let (ok, out, stderr) = backtest(&args);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let csv = std::fs::read_to_string(&timeline).unwrap();
    let peak = csv
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(2)?.parse::<u32>().ok())
        .max()
        .unwrap();
    (report, peak)
}

/// The shipped config with `from` replaced by `to`, written to `dir/name`.
fn shipped_with(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let shipped = std::fs::read_to_string(CONFIG).unwrap();
    assert!(
        shipped.contains(from),
        "backtest/llama-70b.yaml changed: no {from:?}"
    );
    let path = dir.join(name);
    std::fs::write(&path, shipped.replace(from, to)).unwrap();
    path
}

#[test]
fn stock_keda_does_not_move_with_the_scalers_capacity_numbers() {
    // The references are the yardstick: the scaler's capacity numbers size only its
    // own fleet (and just-in-time's), never stock KEDA's, whose start fleet follows its
    // own thresholds.
    let dir = tempfile::tempdir().unwrap();
    let trace = azure_slice(dir.path(), 10);
    let halved = shipped_with(
        dir.path(),
        "halved.yaml",
        "output_tokens_per_second: 1000",
        "output_tokens_per_second: 500",
    );
    let keda = |config: &Path| {
        let plot = dir.path().join("plot.svg");
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend(["--trace", trace.to_str().unwrap(), "--json"]);
        args.extend(["--plot", plot.to_str().unwrap()]);
        args.extend(["--rate-scale", "4"]);
        for policy in ["keda-queue", "keda-tokens", "keda-seed", "scaler"] {
            args.extend(["--policy", policy]);
        }
        let (ok, out, stderr) = backtest(&args);
        assert!(ok, "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        report["policies"].as_array().unwrap().clone()
    };
    let (shipped, other) = (keda(Path::new(CONFIG)), keda(&halved));
    for (a, b) in shipped.iter().zip(&other).take(3) {
        assert_eq!(a, b, "{} moved with the scaler's capacity", a["name"]);
    }
    // The scaler itself does follow them.
    assert_ne!(shipped[3]["gpu_hours"], other[3]["gpu_hours"]);
}

#[test]
fn long_prompts_at_low_load_never_drive_the_fleet_to_max_replicas() {
    // Prompts of 40,000 tokens need 4.2 s of prefill on any replica: every TTFT misses
    // its 2 s SLO, and no fleet size changes that.
    let dir = tempfile::tempdir().unwrap();
    let trace = uniform_trace(dir.path(), 0.1, 40_000, 50);
    // The same fleet without its TTFT SLO (the TPOT one stays: chunked prefill of these
    // prompts slows everyone's decoding, and more replicas do fix that).
    let ttft = "      - name: ttft-2s\n        signal: ttft\n        threshold: 2s\n        objective: 0.99\n        windows: [2m, 1h]\n";
    let without_ttft = shipped_with(dir.path(), "no-ttft.yaml", ttft, "");
    let (report, peak) = scaler_run(dir.path(), Path::new(CONFIG), &trace, &[]);
    let (load_only, load_peak) = scaler_run(dir.path(), &without_ttft, &trace, &[]);
    assert_eq!(report["feasible"]["ttft_share"], 0.0, "{report}");
    assert_eq!(
        report["policies"][0]["ttft_attainment"], 0.0,
        "every TTFT misses: {report}"
    );
    // The TTFT SLO burns all hour, but every miss is a prompt whose prefill alone takes
    // longer than 2 s: its fixable burn is 0 and it asks for nothing; the fleet is what
    // the load and the TPOT SLO ask for, not the 20 of a ratchet.
    println!("peak {peak} pods, {load_peak} without the TTFT SLO");
    assert!(peak <= 8, "peak {peak} pods of 20");
    assert_eq!(
        report["policies"][0]["gpu_hours"], load_only["policies"][0]["gpu_hours"],
        "the TTFT SLO added replicas for misses no replica fixes: {report} against {load_only}"
    );
}

#[test]
fn a_mix_the_profile_overstates_is_held_by_the_trim_where_the_burn_alone_settles_short() {
    // An hour of Mooncake's lengths with prompts x0.13 (2,000 tokens) and answers x3
    // (450 tokens, a sixth of them 6 to 20): few answers of 2 to 5 tokens, so the
    // profile reads chat's rates, where a replica holds about half. A boost that follows
    // the burn alone settles where the SLO still misses; the trim keeps the boost that
    // lowered the burn, and the fleet closes most of the gap.
    let dir = tempfile::tempdir().unwrap();
    let rates = rate_file(dir.path(), 4.0, 6);
    let run = |config: &Path| {
        let (report, _) = scaler_run(
            dir.path(),
            config,
            &(rates.clone(), PathBuf::from(MOONCAKE)),
            &[
                "--prompt-scale",
                "0.13",
                "--answer-scale",
                "3",
                "--max-replicas",
                "60",
            ],
        );
        report
    };
    let with = run(Path::new(CONFIG));
    let without = run(&shipped_with(
        dir.path(),
        "no-trim.yaml",
        "windows: [2m, 1h]",
        "windows: [2m, 1h]\n        trim_half_life: 0s",
    ));
    let below = |r: &serde_json::Value| r["policies"][0]["windows_below_target"].as_u64().unwrap();
    let (held, short) = (attainment(&with, "tpot"), attainment(&without, "tpot"));
    println!(
        "tpot {held} against {short}; windows under {} against {}",
        below(&with),
        below(&without)
    );
    assert!(held > short + 0.003, "{with} against {without}");
    assert!(below(&with) < below(&without), "{with} against {without}");
    assert!(
        gpu_hours(&with) > gpu_hours(&without),
        "{with} against {without}"
    );
}

#[test]
fn without_a_split_long_prompts_still_cannot_drive_the_fleet_to_max_replicas() {
    // SGLang exports no per-request prefill time: every TTFT miss counts as one replicas
    // fix, so the TTFT term burns all hour on 40,000-token prompts. Bounded by the
    // load, it asks for max_boost x L, not for the 20 of maxReplicaCount.
    let dir = tempfile::tempdir().unwrap();
    let trace = uniform_trace(dir.path(), 0.1, 40_000, 50);
    let shipped = std::fs::read_to_string(CONFIG).unwrap();
    // SGLang has no request-length histograms either: the fixed numbers size the load.
    // The profile and its comments: everything between `input_term` and `kv_cache`.
    let term = shipped
        .find("input_term: true")
        .expect("the shipped input term");
    let start = term + shipped[term..].find('\n').unwrap() + 1;
    let end = shipped.find("    kv_cache:").expect("kv_cache after it");
    let sglang = format!("{}{}", &shipped[..start], &shipped[end..])
        .replace("engine: vllm", "engine: sglang");
    let ttft = "      - name: ttft-2s\n        signal: ttft\n        threshold: 2s\n        objective: 0.99\n        windows: [2m, 1h]\n";
    assert!(sglang.contains(ttft), "the shipped TTFT SLO moved");
    let with_ttft = dir.path().join("sglang.yaml");
    std::fs::write(&with_ttft, &sglang).unwrap();
    let without_ttft = dir.path().join("sglang-no-ttft.yaml");
    std::fs::write(&without_ttft, sglang.replace(ttft, "")).unwrap();
    let (report, peak) = scaler_run(dir.path(), &with_ttft, &trace, &[]);
    let (load_only, load_peak) = scaler_run(dir.path(), &without_ttft, &trace, &[]);
    assert_eq!(report["policies"][0]["evaluation_errors"], 0, "{report}");
    assert_eq!(report["policies"][0]["ttft_attainment"], 0.0, "{report}");
    println!("peak {peak} pods with the TTFT SLO, {load_peak} without it");
    // The term acts: the same fleet without the TTFT SLO costs less...
    let gpu_hours = |r: &serde_json::Value| r["policies"][0]["gpu_hours"].as_f64().unwrap();
    assert!(
        gpu_hours(&report) > gpu_hours(&load_only) * 1.05,
        "{report} against {load_only}"
    );
    // ...but it stays within twice the load's fleet, far from the maximum of 20.
    assert!(peak <= 2 * load_peak.max(3), "peak {peak} pods of 20");
    assert!(peak < 10, "peak {peak} pods of 20");
}

#[test]
fn attainment_is_counted_against_the_configs_slos() {
    // 40,000-token prompts need 4.2 s of prefill: out of reach of the shipped 2 s TTFT
    // SLO, within a 5 s one. The backtest judges the fleet by the SLOs its config sets.
    let dir = tempfile::tempdir().unwrap();
    let trace = uniform_trace(dir.path(), 0.1, 40_000, 50);
    let (shipped, _) = scaler_run(dir.path(), Path::new(CONFIG), &trace, &[]);
    let loose = shipped_with(dir.path(), "5s.yaml", "threshold: 2s", "threshold: 5s");
    let loose = std::fs::read_to_string(&loose)
        .unwrap()
        .replace("threshold: 50ms", "threshold: 80ms");
    let loose_path = dir.path().join("loose.yaml");
    std::fs::write(&loose_path, loose).unwrap();
    let (report, _) = scaler_run(dir.path(), &loose_path, &trace, &[]);
    assert_eq!(shipped["thresholds"]["ttft_s"], 2.0, "{shipped}");
    assert_eq!(shipped["thresholds"]["tpot_s"], 0.05, "{shipped}");
    assert_eq!(shipped["feasible"]["ttft_share"], 0.0, "{shipped}");
    assert_eq!(report["thresholds"]["ttft_s"], 5.0, "{report}");
    assert_eq!(report["thresholds"]["tpot_s"], 0.08, "{report}");
    assert_eq!(report["feasible"]["ttft_share"], 1.0, "{report}");
    let attainment = report["policies"][0]["ttft_attainment"].as_f64().unwrap();
    assert!(attainment > 0.9, "TTFT within 5 s: {report}");
    // Only a TTFT SLO: TPOT falls back to the seed's 50 ms, TTFT keeps the config's 5 s.
    let tpot_slo = "      - name: tpot-50ms\n        signal: tpot\n        threshold: 50ms\n        objective: 0.99\n        windows: [2m, 1h]\n";
    let shipped_text = std::fs::read_to_string(CONFIG).unwrap();
    assert!(
        shipped_text.contains(tpot_slo),
        "the shipped config's TPOT SLO moved"
    );
    let ttft_only = dir.path().join("ttft-only.yaml");
    std::fs::write(
        &ttft_only,
        shipped_text
            .replace(tpot_slo, "")
            .replace("threshold: 2s", "threshold: 5s"),
    )
    .unwrap();
    let (ttft_only, _) = scaler_run(dir.path(), &ttft_only, &trace, &[]);
    assert_eq!(ttft_only["thresholds"]["ttft_s"], 5.0, "{ttft_only}");
    assert_eq!(ttft_only["thresholds"]["tpot_s"], 0.05, "{ttft_only}");
    // A config without SLOs is judged by the seed's 2 s and 50 ms.
    let slos = shipped_text;
    let start = slos
        .find("    slos:\n")
        .expect("the shipped config has slos");
    let end = slos
        .find("    predictive:\n")
        .expect("and predictive after them");
    let bare = dir.path().join("bare.yaml");
    std::fs::write(&bare, format!("{}{}", &slos[..start], &slos[end..])).unwrap();
    let (bare, _) = scaler_run(dir.path(), &bare, &trace, &[]);
    assert_eq!(bare["thresholds"]["ttft_s"], 2.0, "{bare}");
    assert_eq!(bare["thresholds"]["tpot_s"], 0.05, "{bare}");
}

#[test]
fn the_shipped_8b_config_scales_the_8b_preset() {
    // backtest/llama-8b.yaml is what backtest/scorecard-8b.yaml replays: it must load,
    // resolve and answer on the 8B replica model without an evaluation error.
    let dir = tempfile::tempdir().unwrap();
    let trace = uniform_trace(dir.path(), 20.0, 1_000, 200);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("backtest/llama-8b.yaml");
    let (report, _) = scaler_run(dir.path(), &config, &trace, &["--model", "8b"]);
    let scaler = &report["policies"][0];
    assert_eq!(scaler["evaluation_errors"], 0, "{report}");
    assert_eq!(scaler["refused"], 0, "{report}");
    assert!(scaler["gpu_hours"].as_f64().unwrap() > 0.0, "{report}");
    let tpot = scaler["tpot_attainment_feasible"].as_f64().unwrap();
    assert!(tpot >= 0.99, "20 req/s of chat on the 8B: {report}");
}

/// 30 minutes at `rate` requests/s with Azure's conversation lengths; reshape them with
/// `--prompt-scale` and `--answer-scale`.
fn azure_lengths_at(dir: &Path, rate: f64) -> (PathBuf, PathBuf) {
    (rate_file(dir, rate, 3), PathBuf::from(AZURE))
}

/// The shipped config without the profile's points that any of `drop` names (rows or
/// columns of the grid), written to `dir/name`.
fn shipped_without(dir: &Path, name: &str, drop: &[&str]) -> PathBuf {
    config_without(CONFIG, dir, name, drop)
}

/// The config at `from` without the profile points that mention any of `drop`, written
/// to `dir/name`.
fn config_without(from: &str, dir: &Path, name: &str, drop: &[&str]) -> PathBuf {
    let shipped = std::fs::read_to_string(from).unwrap();
    let kept: Vec<&str> = shipped
        .lines()
        .filter(|line| {
            !(line.trim_start().starts_with("- {input_tokens")
                && drop.iter().any(|d| line.contains(d)))
        })
        .collect();
    assert!(
        kept.len() < shipped.lines().count(),
        "{from} changed: no point with {drop:?}"
    );
    let path = dir.join(name);
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    path
}

/// The scaler alone over Mooncake's trace reshaped by `reshape` (backtest flags), with
/// `config`: the JSON report.
fn mooncake_scaler_run(config: &Path, reshape: &[&str]) -> serde_json::Value {
    let config = config.to_str().unwrap();
    let mut args = vec!["--config", config, "--trace", MOONCAKE];
    args.extend_from_slice(reshape);
    args.extend(["--policy", "scaler", "--json"]);
    let (ok, out, stderr) = backtest(&args);
    assert!(ok, "{stderr}");
    serde_json::from_str(&out).unwrap()
}

/// `report` holds both SLOs at 99 % where `other` misses `slo`, on more than `more`
/// times its GPU-hours: what a profile point buys.
fn holds_where_the_other_misses(
    slo: &str,
    report: &serde_json::Value,
    other: &serde_json::Value,
    more: f64,
) {
    let (with, without) = (attainment(report, slo), attainment(other, slo));
    println!("{slo}: {with} against {without}");
    assert!(
        attainment(report, "ttft") >= 0.99 && attainment(report, "tpot") >= 0.99,
        "{report}"
    );
    assert!(without < 0.99, "{other}");
    assert!(
        gpu_hours(report) > more * gpu_hours(other),
        "{report} against {other}"
    );
}

fn attainment(report: &serde_json::Value, slo: &str) -> f64 {
    report["policies"][0][format!("{slo}_attainment_feasible")]
        .as_f64()
        .unwrap()
}

fn gpu_hours(report: &serde_json::Value) -> f64 {
    report["policies"][0]["gpu_hours"].as_f64().unwrap()
}

#[test]
fn short_answers_to_long_prompts_are_sized_on_the_profiles_short_answer_columns() {
    // Code completion's lengths: prompts twice chat's, answers a sixth. A request
    // decoding a few dozen tokens has few steps to spread a prefill stall over, so a
    // replica holds TPOT at fewer prompt tokens a second than with chat's answers. The
    // shipped profile's 20-, 50- and 100-token columns say so; sized on chat's columns alone
    // at chat's share of short answers, the same traffic misses TPOT.
    let dir = tempfile::tempdir().unwrap();
    let trace = azure_lengths_at(dir.path(), 5.5);
    let code = ["--prompt-scale", "2", "--answer-scale", "0.1667"];
    let (report, _) = scaler_run(dir.path(), Path::new(CONFIG), &trace, &code);
    let chat_only = shipped_without(
        dir.path(),
        "chat-only.yaml",
        &[
            "output_tokens: 20,",
            "output_tokens: 50,",
            "output_tokens: 100,",
        ],
    );
    let chat_only = at_one_share(&chat_only, dir.path(), "chat-only-few-short.yaml", true);
    let (chat, _) = scaler_run(dir.path(), &chat_only, &trace, &code);
    let (with, without) = (attainment(&report, "tpot"), attainment(&chat, "tpot"));
    println!("TPOT {with} with the columns, {without} without");
    assert!(with >= 0.99, "{report}");
    assert!(without < 0.99, "{chat}");
    assert!(
        gpu_hours(&report) > gpu_hours(&chat),
        "{report} against {chat}"
    );
}

#[test]
fn short_prompts_are_sized_on_the_profiles_short_prompt_row() {
    // Prompts a quarter of chat's: little prefill between decode steps, so a replica
    // decodes several times chat's output tokens a second within TPOT. Without the
    // 250-token row the profile holds chat's numbers below 700 tokens and the fleet is
    // far larger than the traffic needs.
    let dir = tempfile::tempdir().unwrap();
    let trace = azure_lengths_at(dir.path(), 44.0);
    let short = ["--prompt-scale", "0.25"];
    let (report, _) = scaler_run(dir.path(), Path::new(CONFIG), &trace, &short);
    let chat_rows = shipped_without(dir.path(), "chat-rows.yaml", &["input_tokens: 250,"]);
    let (chat, _) = scaler_run(dir.path(), &chat_rows, &trace, &short);
    println!(
        "{} GPU-hours with the row, {} without",
        gpu_hours(&report),
        gpu_hours(&chat)
    );
    assert!(attainment(&report, "tpot") >= 0.99, "{report}");
    assert!(attainment(&report, "ttft") >= 0.99, "{report}");
    assert!(
        gpu_hours(&chat) > 1.5 * gpu_hours(&report),
        "{report} against {chat}"
    );
}

#[test]
fn long_answers_to_long_prompts_are_sized_on_the_long_context_long_answer_point() {
    // Mooncake's prompts (mean 15,000 tokens) with answers ten times as long (about
    // 1,500): each request holds a long context in the KV cache for minutes, and every
    // decode step of its replica slows. The profile's point at 16,000 tokens and
    // 1,500-token answers sizes that; with chat's long-answer numbers there, the fleet is
    // a fraction of what the traffic needs and TTFT misses.
    let dir = tempfile::tempdir().unwrap();
    let point = "{input_tokens: 16000, output_tokens: 1500, output_tokens_per_second: 67, input_tokens_per_second: 705}";
    let chat = "{input_tokens: 16000, output_tokens: 1500, output_tokens_per_second: 1250, input_tokens_per_second: 1750}";
    let chats = shipped_with(dir.path(), "chat-point.yaml", point, chat);
    let reshaped = [
        "--answer-scale",
        "10",
        "--rate-scale",
        "0.25",
        "--max-replicas",
        "60",
    ];
    let run = |config: &Path| mooncake_scaler_run(config, &reshaped);
    let (report, chat) = (run(Path::new(CONFIG)), run(&chats));
    holds_where_the_other_misses("ttft", &report, &chat, 1.5);
}

#[test]
fn an_agents_long_contexts_are_sized_on_the_mid_length_rows() {
    // Mooncake's shape with an agent's lengths (prompts x0.56: a mean of 8,600 tokens;
    // answers x1.2): a third of the requests decode 20 tokens or fewer, and each of those
    // that starts behind a queue of long prefills misses TPOT. The profile's rows at 5,000
    // and 8,000 tokens hold the prompt rate such traffic sustains; read in log space
    // between 2,000 and 16,000 tokens instead (and column 600 at chat's numbers, whose
    // share points at 2,000 tokens would pull that read down too), the fleet is too
    // small and TPOT misses.
    let dir = tempfile::tempdir().unwrap();
    let no_rows = shipped_without(
        dir.path(),
        "no-mid-rows.yaml",
        &[
            "input_tokens: 5000,",
            "input_tokens: 8000,",
            "output_tokens: 600, short_output_share: 0.06,",
            "output_tokens: 600, short_output_share: 0.15,",
        ],
    );
    let agent = [
        "--prompt-scale",
        "0.56",
        "--answer-scale",
        "1.2",
        "--max-replicas",
        "40",
    ];
    let run = |config: &Path| mooncake_scaler_run(config, &agent);
    let (report, log_space) = (run(Path::new(CONFIG)), run(&no_rows));
    holds_where_the_other_misses("tpot", &report, &log_space, 1.0);
}

#[test]
fn long_answers_to_mid_length_prompts_are_sized_on_the_long_answer_points() {
    // The reasoning day with its prompts x4 (a mean of 5,100 tokens; answers of 1,500):
    // long answers behind long prompts wait for their first token behind each other's
    // prefills. The profile's 1,500-token points at 2,000 to 8,000 tokens size that; with
    // chat's 1,250 at 2,000 and the log-space reads between 2,000 and 16,000 in their
    // place the fleet is half as large and TTFT misses.
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(CONFIG).unwrap();
    let points = [
        ("2000", "500", "1600", "1250", "4000"),
        ("5000", "155", "765", "344", "1700"),
        ("8000", "89", "628", "178", "1257"),
    ];
    let point = |input: &str, output: &str, prompt: &str| {
        format!(
            "{{input_tokens: {input}, output_tokens: 1500, output_tokens_per_second: {output}, input_tokens_per_second: {prompt}}}"
        )
    };
    let read_between = points
        .iter()
        .fold(shipped, |config, (i, o, p, old_o, old_p)| {
            let (now, before) = (point(i, o, p), point(i, old_o, old_p));
            assert!(
                config.contains(&now),
                "backtest/llama-70b.yaml changed: no {now}"
            );
            config.replace(&now, &before)
        });
    let old = dir.path().join("read-between.yaml");
    std::fs::write(&old, read_between).unwrap();
    let reasoning = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/traces/servegen_reason_deepseek-r1_rate_10min.csv"
    );
    let lengths = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/traces/servegen_reason_deepseek-r1_lengths.csv"
    );
    let run = |config: &str| {
        let args = [
            "--config",
            config,
            "--trace",
            reasoning,
            "--lengths",
            lengths,
            "--rate-scale",
            "0.1",
            "--prompt-scale",
            "4",
            "--max-replicas",
            "60",
            "--policy",
            "scaler",
            "--json",
        ];
        let (ok, out, stderr) = backtest(&args);
        assert!(ok, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let (report, before) = (run(CONFIG), run(old.to_str().unwrap()));
    holds_where_the_other_misses("ttft", &report, &before, 1.5);
}

/// The config at `from` with one point per cell: where a cell has points at several
/// shares of short answers, only the lowest (`lowest`) or the highest, without its share.
fn at_one_share(from: &Path, dir: &Path, name: &str, lowest: bool) -> PathBuf {
    let shipped = std::fs::read_to_string(from).unwrap();
    let share = |line: &str| -> Option<(String, f64)> {
        let rest = line.split("short_output_share: ").nth(1)?;
        let value = rest.split(',').next()?;
        let cell = line.split(", short_output_share").next()?.trim().to_owned();
        Some((cell, value.parse().ok()?))
    };
    let mut picked: std::collections::HashMap<String, f64> = Default::default();
    for (cell, value) in shipped.lines().filter_map(share) {
        let best = picked.entry(cell).or_insert(value);
        *best = if lowest {
            best.min(value)
        } else {
            best.max(value)
        };
    }
    assert!(!picked.is_empty(), "{} has no share points", from.display());
    let kept: Vec<String> = shipped
        .lines()
        .filter_map(|line| match share(line) {
            None => Some(line.to_owned()),
            Some((cell, value)) if picked[&cell] == value => {
                Some(line.replace(&format!(" short_output_share: {value},"), ""))
            }
            Some(_) => None,
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    path
}

/// Azure's conversation trace with every third answer cut to 1 to 20 tokens.
fn azure_with_a_third_of_short_answers(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(AZURE).unwrap();
    let mut lines = text.lines();
    let mut out = vec![lines.next().unwrap().to_owned()];
    for (i, row) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = row.split(',').collect();
        let answer = if i % 3 == 0 {
            (1 + (i / 3) % 20).to_string()
        } else {
            fields[2].to_owned()
        };
        out.push(format!("{},{},{answer}", fields[0], fields[1]));
    }
    let path = dir.join("azure-third-short.csv");
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    path
}

/// The scaler's report with `config` over `trace`, reshaped by `flags`.
fn scaler_on(config: &Path, trace: &Path, flags: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    scaler_report(&args)
}

fn scaler_report(args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["--policy", "scaler", "--json"]);
    let (ok, out, stderr) = backtest(&args);
    assert!(ok, "{stderr}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_third_of_short_answers_is_sized_on_the_short_answer_points() {
    // Chat with a third of its answers cut to 20 tokens or fewer: the short ones have no
    // steps to spread a prefill stall over, so the same means hold fewer prompt tokens a
    // second. The profile reads the share (answers of 2 to 5 tokens) from the
    // output-length histogram and sizes on its points at this shape's share; at chat's
    // numbers TPOT misses. The SLO term's trim makes up part of the gap there, so the
    // points cost 1.13 times chat's GPU-hours (more than 1.2 without the trim).
    let dir = tempfile::tempdir().unwrap();
    let trace = azure_with_a_third_of_short_answers(dir.path());
    let chat_only = at_one_share(Path::new(CONFIG), dir.path(), "chat-only.yaml", true);
    let run = |config: &Path| {
        scaler_on(
            config,
            &trace,
            &["--rate-scale", "2", "--max-replicas", "40"],
        )
    };
    let (report, chat) = (run(Path::new(CONFIG)), run(&chat_only));
    holds_where_the_other_misses("tpot", &report, &chat, 1.1);
}

#[test]
fn chats_long_prompts_are_sized_on_the_long_rows_few_short_answer_points() {
    // Azure's prompts x4 (4,600 tokens) with chat's answers, 2 % of them short: the rows
    // from 5,000 tokens hold Mooncake's shape at less than this traffic needs, and
    // their points at few short answers size it on what chat's shape holds there.
    let dir = tempfile::tempdir().unwrap();
    let long_context_only = at_one_share(
        Path::new(CONFIG),
        dir.path(),
        "long-context-only.yaml",
        false,
    );
    let run = |config: &Path| {
        scaler_report(&[
            "--config",
            config.to_str().unwrap(),
            "--trace",
            AZURE,
            "--prompt-scale",
            "4",
            "--max-replicas",
            "40",
        ])
    };
    let (report, long_context) = (run(Path::new(CONFIG)), run(&long_context_only));
    for r in [&report, &long_context] {
        assert!(
            attainment(r, "ttft") >= 0.99 && attainment(r, "tpot") >= 0.99,
            "{r}"
        );
    }
    println!(
        "GPU-hours {} against {}",
        gpu_hours(&report),
        gpu_hours(&long_context)
    );
    assert!(
        gpu_hours(&report) < 0.8 * gpu_hours(&long_context),
        "{report} against {long_context}"
    );
}

#[test]
fn contexts_past_the_tpot_floor_at_low_load_ask_for_no_replicas() {
    // A 25 ms TPOT SLO: one request alone on a replica decodes at 18 ms + 35 ns per
    // token of context, which reaches 25 ms at about 199,700 tokens. Prompts of 250,000
    // tokens miss it on any fleet; one every 100 s is a replica's worth of load.
    let dir = tempfile::tempdir().unwrap();
    let trace = uniform_trace(dir.path(), 0.01, 250_000, 100);
    let tpot = "        threshold: 50ms\n        objective: 0.99\n";
    let floor =
        "        threshold: 25ms\n        objective: 0.99\n        floor_context_tokens: 199000\n";
    let with_floor = shipped_with(dir.path(), "floor.yaml", tpot, floor);
    let no_floor = shipped_with(
        dir.path(),
        "no-floor.yaml",
        tpot,
        "        threshold: 25ms\n        objective: 0.99\n",
    );
    let tpot_slo = "      - name: tpot-50ms\n        signal: tpot\n        threshold: 50ms\n        objective: 0.99\n        windows: [2m, 1h]\n";
    let no_tpot = shipped_with(dir.path(), "no-tpot.yaml", tpot_slo, "");
    // minReplicaCount 1, so that the fleet shows what the terms ask for.
    let one = ["--min-replicas", "1"];
    let (report, peak) = scaler_run(dir.path(), &with_floor, &trace, &one);
    let (unsplit, unsplit_peak) = scaler_run(dir.path(), &no_floor, &trace, &one);
    let (load_only, _) = scaler_run(dir.path(), &no_tpot, &trace, &one);
    // Every miss is a context past the floor: the split leaves the TPOT term nothing to
    // act on, so the fleet is what the load asks for.
    println!("peak {peak} pods, {unsplit_peak} without floor_context_tokens");
    assert_eq!(
        report["policies"][0]["gpu_hours"], load_only["policies"][0]["gpu_hours"],
        "the TPOT SLO added replicas for misses no replica fixes: {report} against {load_only}"
    );
    // Without the key the same misses count as fixable and the term nearly doubles the
    // fleet at its peak.
    let gpu = |r: &serde_json::Value| r["policies"][0]["gpu_hours"].as_f64().unwrap();
    assert!(unsplit_peak >= peak + 3, "{unsplit_peak} against {peak}");
    assert!(
        gpu(&unsplit) > 1.4 * gpu(&report),
        "{unsplit} against {report}"
    );
}

/// Runs a backtest that must fail; its stderr.
fn refused(args: &[&str]) -> String {
    let (ok, stdout, stderr) = backtest(args);
    assert!(!ok, "accepted: {stdout}");
    stderr
}

#[test]
fn backtest_refuses_bad_input_with_the_value_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("p.svg");
    let plot = plot.to_str().unwrap();
    let stderr = refused(&[
        "--config", CONFIG, "--trace", AZURE, "--policy", "hpa", "--plot", plot,
    ]);
    assert!(
        stderr.contains("unknown policy `hpa`: expected static, static-best, keda-queue, keda-tokens, keda-seed, keda-tuned, scaler, just-in-time, oracle, oracle-hpa"),
        "{stderr}"
    );
    let missing = dir.path().join("missing.csv");
    let stderr = refused(&[
        "--config",
        CONFIG,
        "--trace",
        missing.to_str().unwrap(),
        "--plot",
        plot,
    ]);
    assert!(
        stderr.contains("cannot read trace") && stderr.contains("missing.csv"),
        "{stderr}"
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,12,-3\n",
    )
    .unwrap();
    let stderr = refused(&[
        "--config",
        CONFIG,
        "--trace",
        bad.to_str().unwrap(),
        "--plot",
        plot,
    ]);
    assert!(
        stderr.contains("line 2: GeneratedTokens `-3` is not a whole number of tokens"),
        "{stderr}"
    );
    let stderr = refused(&[
        "--config",
        CONFIG,
        "--trace",
        AZURE,
        "--rate-scale",
        "0",
        "--plot",
        plot,
    ]);
    assert!(stderr.contains("`0` is not a number above 0"), "{stderr}");
    for (flag, value) in [
        ("--prompt-scale", "0"),
        ("--answer-scale", "101"),
        ("--answer-scale", "NaN"),
    ] {
        let stderr = refused(&[
            "--config", CONFIG, "--trace", AZURE, flag, value, "--plot", plot,
        ]);
        assert!(
            stderr.contains(&format!(
                "`{value}` is not a number above 0 and at most 100"
            )) && stderr.contains(flag),
            "{stderr}"
        );
    }
    let stderr = refused(&[
        "--config",
        CONFIG,
        "--trace",
        AZURE,
        "--profile",
        "nope",
        "--plot",
        plot,
    ]);
    assert!(stderr.contains("nope"), "{stderr}");
    let stderr = refused(&[
        "--config",
        CONFIG,
        "--trace",
        AZURE,
        "--max-replicas",
        "0",
        "--plot",
        plot,
    ]);
    assert!(
        stderr.contains("--max-replicas 0: expected at least 1"),
        "{stderr}"
    );
    let gauges = dir.path().join("seed.yaml");
    std::fs::write(
        &gauges,
        "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  seed:\n    engine: seed\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 700}\n    slos:\n      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}\n",
    )
    .unwrap();
    let stderr = refused(&[
        "--config",
        gauges.to_str().unwrap(),
        "--trace",
        AZURE,
        "--plot",
        plot,
    ]);
    assert!(
        stderr.contains("profile `seed` reads its SLO latencies from gauges (engine seed)"),
        "{stderr}"
    );
}

/// The demo binary, killed on drop.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_answers_grpcurl_from_the_simulated_fleet() {
    let mut child = Command::new(BINARY)
        .args([
            "demo",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--speed",
            "60",
        ])
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (grpc, _) = common::read_from_stderr(&mut child, common::logged_addrs);
    let _demo = Demo(child);
    let addr = grpc.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the demo did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, list) = common::grpcurl(&["-plaintext", &addr, "list"]);
    assert!(
        ok && list.contains("externalscaler.ExternalScaler"),
        "{list}"
    );

    let reference =
        r#"{"name":"demo","namespace":"default","scalerMetadata":{"profile":"llama-70b"}}"#;
    let (ok, spec) = common::grpcurl(&[
        "-plaintext",
        "-d",
        reference,
        &addr,
        "externalscaler.ExternalScaler/GetMetricSpec",
    ]);
    assert!(ok, "{spec}");
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let metric = spec["metricSpecs"][0]["metricName"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first scrapes take a few simulated seconds; then the demand is the fleet's.
    let request = format!(r#"{{"scaledObjectRef":{reference},"metricName":"{metric}"}}"#);
    let mut last = String::new();
    let demand = loop {
        assert!(Instant::now() < deadline, "no demand from the demo: {last}");
        let (ok, answer) = common::grpcurl(&[
            "-plaintext",
            "-d",
            &request,
            &addr,
            "externalscaler.ExternalScaler/GetMetrics",
        ]);
        if ok {
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            break answer["metricValues"][0]["metricValueFloat"]
                .as_f64()
                .unwrap();
        }
        last = answer;
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(demand.is_finite() && demand > 0.0, "{demand}");
    // The fleet lives: later answers follow the replayed load.
    let changed = loop {
        assert!(
            Instant::now() < deadline,
            "the demand never moved from {demand}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let (ok, answer) = common::grpcurl(&[
            "-plaintext",
            "-d",
            &request,
            &addr,
            "externalscaler.ExternalScaler/GetMetrics",
        ]);
        assert!(ok, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let value = answer["metricValues"][0]["metricValueFloat"]
            .as_f64()
            .unwrap();
        if value != demand {
            break value;
        }
    };
    assert!(changed.is_finite() && changed > 0.0, "{changed}");
    let (ok, active) = common::grpcurl(&[
        "-plaintext",
        "-d",
        reference,
        &addr,
        "externalscaler.ExternalScaler/IsActive",
    ]);
    assert!(ok && active.contains("\"result\": true"), "{active}");

    // Another profile's queries are not the simulated fleet's: UNAVAILABLE, with why.
    let other = r#"{"name":"demo","namespace":"default","scalerMetadata":{"profile":"llama-70b","model":"other"}}"#;
    let (ok, error) = common::grpcurl(&[
        "-plaintext",
        "-d",
        other,
        &addr,
        "externalscaler.ExternalScaler/IsActive",
    ]);
    assert!(!ok);
    assert!(
        error.contains("Unavailable") && error.contains("simulated fleet"),
        "{error}"
    );
}

#[test]
fn calibrate_prints_a_profile_the_config_takes_and_refuses_bad_grids() {
    let (ok, out, stderr) =
        cli::run_binary(&["calibrate", "--inputs", "1000,4000", "--outputs", "200"]);
    assert!(ok, "{stderr}");
    let points: Vec<&str> = out.lines().filter(|l| l.starts_with("  - {")).collect();
    assert_eq!(points.len(), 2, "{out}");
    // Longer prompts at the same output: fewer output tokens a replica.
    let rate = |line: &str| -> f64 {
        let (_, rest) = line.split_once("output_tokens_per_second: ").unwrap();
        rest.split(',').next().unwrap().parse().unwrap()
    };
    assert!(rate(points[1]) < rate(points[0]), "{out}");
    // At 50 ms the 70B decodes in time at any context its KV cache holds.
    assert!(out.contains("needs no floor_context_tokens"), "{out}");
    // Pasted under `capacity:`, it is a valid profile.
    let (_dir, config) = common::config_with_printed_profile(&out);
    let (ok, _, stderr) = cli::run_binary(&["check-config", config.to_str().unwrap()]);
    assert!(ok, "{stderr}\n{out}");

    let (ok, _, stderr) = cli::run_binary(&["calibrate", "--inputs", "0,100"]);
    assert!(!ok);
    assert!(
        stderr.contains("--inputs") && stderr.contains("1 to 1000000"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli::run_binary(&["calibrate", "--tpot=-1"]);
    assert!(!ok);
    assert!(stderr.contains("--tpot"), "{stderr}");
}

#[test]
fn mooncakes_answers_of_two_to_five_tokens_are_sized_on_its_own_points() {
    // Mooncake's prompts x0.09 (a mean of 1,380 tokens): 15 % of its answers decode 2 to
    // 5 tokens, twice the share of Azure's trace with a third of its answers cut to 1 to
    // 20 (which holds at its 0.075 points). Counted up to 20 tokens both shapes read
    // 0.34 and one point served both; from 2 to 5, Mooncake's share reaches the points
    // measured on its own shape. Without them TPOT misses.
    mooncake_holds_tpot_only_with(&["--prompt-scale", "0.09"], &["short_output_share: 0.1,"]);
}

#[test]
fn short_answers_to_mooncakes_prompts_are_sized_on_the_short_columns_share_points() {
    // Mooncake's prompts x0.13 (a mean of 2,000 tokens) with answers x0.3 (a mean of 45
    // tokens, a fifth of them 2 to 5): the short answers among a few dozen tokens' stall
    // behind the long prompts' prefill chunks, so a replica holds TPOT at 1,700 prompt
    // tokens a second, where code's shape (Azure's answers cut as short, few of them 2 to
    // 5 tokens) holds 2,500 at the same prompt length. The 20- and 50-token columns read
    // the share; with their low-share points alone the same traffic misses TPOT.
    mooncake_holds_tpot_only_with(
        &["--prompt-scale", "0.13", "--answer-scale", "0.3"],
        &["short_output_share: 0.18,"],
    );
}

/// Mooncake's trace reshaped by `reshape` holds TPOT on the shipped 70B config and
/// misses it without the points that mention any of `points`.
fn mooncake_holds_tpot_only_with(reshape: &[&str], points: &[&str]) {
    mooncake_holds_tpot_only_with_config(CONFIG, reshape, points);
}

/// The same with the shipped config at `config` (its model among `reshape`'s flags).
fn mooncake_holds_tpot_only_with_config(config: &str, reshape: &[&str], points: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let report = mooncake_scaler_run(Path::new(config), reshape);
    let without = config_without(config, dir.path(), "without-points.yaml", points);
    let other = mooncake_scaler_run(&without, reshape);
    holds_where_the_other_misses("tpot", &report, &other, 1.0);
}

#[test]
fn the_8bs_short_columns_read_the_share_of_short_answers_too() {
    // The 8B at five times the rate, same shape as the 70B's test above: its 20- and
    // 50-token columns' points at share 0.18 hold TPOT, their 0.02 points alone miss.
    mooncake_holds_tpot_only_with_config(
        concat!(env!("CARGO_MANIFEST_DIR"), "/backtest/llama-8b.yaml"),
        &[
            "--model",
            "8b",
            "--rate-scale",
            "5",
            "--prompt-scale",
            "0.13",
            "--answer-scale",
            "0.3",
        ],
        &["short_output_share: 0.18,"],
    );
}

/// Mooncake's trace with every answer above 5 tokens multiplied by `scale`: long answers
/// among the trace's own short ones (2 to 5 tokens, 15 % of its requests).
fn mooncake_with_longer_answers_but_the_short(dir: &Path, scale: f64) -> PathBuf {
    let text = std::fs::read_to_string(MOONCAKE).unwrap();
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut request: serde_json::Value = serde_json::from_str(line).unwrap();
        let answer = request["output_length"].as_u64().unwrap();
        if answer > 5 {
            request["output_length"] = ((answer as f64 * scale).round() as u64).into();
        }
        out.push_str(&request.to_string());
        out.push('\n');
    }
    let path = dir.join("mooncake-longer-answers.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn long_answers_among_short_ones_are_sized_on_the_600_columns_share_points() {
    // Mooncake's prompts x0.13 (2,000 tokens) with its answers above 5 tokens x4: a mean
    // of 600 answer tokens, 15 % of them still 2 to 5. The long decodes keep a large
    // batch that every long prefill chunk stalls, and the short answers behind it miss
    // TPOT: a replica holds about 1,200 prompt tokens a second, where chat's answers of
    // that length hold 4,000. Column 600 reads the share; with its chat point alone the
    // same traffic misses TPOT.
    let dir = tempfile::tempdir().unwrap();
    let trace = mooncake_with_longer_answers_but_the_short(dir.path(), 4.0);
    let run = |config: &Path| scaler_on(config, &trace, &["--prompt-scale", "0.13"]);
    let report = run(Path::new(CONFIG));
    let without = shipped_without(
        dir.path(),
        "without-600-share-points.yaml",
        &[
            "output_tokens: 600, short_output_share: 0.06,",
            "output_tokens: 600, short_output_share: 0.15,",
        ],
    );
    let other = run(&without);
    holds_where_the_other_misses("tpot", &report, &other, 1.5);
}
