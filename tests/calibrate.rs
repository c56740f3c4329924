//! `calibrate` from a load test's CSV and from a fleet's own history in a real
//! Prometheus (written with `promtool tsdb create-blocks-from openmetrics`): the profile
//! it prints holds the rates the fleet held its SLOs at, and the config takes it.

use keda_llm_scaler_test_support as common;

mod cli;

use std::{
    fmt::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use common::PrometheusServer;

/// One point of a printed profile: (input, output, output rate, input rate, comment).
fn points(out: &str) -> Vec<(f64, f64, f64, f64, String)> {
    out.lines()
        .filter(|l| l.starts_with("  - {"))
        .map(|line| {
            let field = |name: &str| -> f64 {
                let (_, rest) = line.split_once(&format!("{name}: ")).unwrap();
                rest.split([',', '}']).next().unwrap().parse().unwrap()
            };
            let comment = line.split_once('#').map_or("", |(_, c)| c).to_owned();
            (
                field("input_tokens"),
                field("output_tokens"),
                field("output_tokens_per_second"),
                field("input_tokens_per_second"),
                comment,
            )
        })
        .collect()
}

/// The printed profile pasted under a vLLM profile's `capacity:` passes check-config.
fn assert_config_takes(out: &str) {
    let (_dir, config) = common::config_with_printed_profile(out);
    let (ok, _, stderr) = cli::run_binary(&["check-config", config.to_str().unwrap()]);
    assert!(ok, "{stderr}\n{out}");
}

/// Runs the binary with `args`, which it must refuse; its stderr.
fn refused(args: &[&str]) -> String {
    let (ok, _, stderr) = cli::run_binary(args);
    assert!(!ok, "{args:?} was taken");
    stderr
}

fn close(value: f64, expected: f64) -> bool {
    (value - expected).abs() <= 0.02 * expected
}

#[test]
fn a_load_test_gives_each_mix_the_highest_step_that_held() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("steps.csv");
    // Two replicas; at 1,000-token prompts TPOT misses from 2,400 output tokens/s (1,200
    // each) and TTFT from 14,000 prompt tokens/s; at 8,000 TTFT misses from 4,800.
    // Columns in vLLM's names and order, and one the fit does not read.
    std::fs::write(
        &csv,
        "input_tokens,output_tokens,replicas,request_rate,output_tokens_per_second,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms\n\
         1000,200,2,4,800,4000,300,20\n\
         1000,200,2,10,2000,10000,800,45\n\
         1000,200,2,12,2400,12000,1200,61\n\
         1000,200,2,14,2800,14000,2600,90\n\
         8000,200,2,0.3,60,2400,900,30\n\
         8000,200,2,0.5,100,4000,1800,35\n\
         8000,200,2,0.6,120,4800,2400,38\n",
    )
    .unwrap();
    let (ok, out, stderr) = cli::run_binary(&["calibrate", "--load-test", csv.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let found = points(&out);
    assert_eq!(found.len(), 2, "{out}");
    let (input, output, out_rate, in_rate, comment) = &found[0];
    assert_eq!((*input, *output), (1000.0, 200.0), "{out}");
    assert_eq!((*out_rate, *in_rate), (1000.0, 6000.0), "{out}");
    assert!(
        comment.contains("output missed at 1200") && comment.contains("input missed at 7000"),
        "{out}"
    );
    let (input, _, out_rate, in_rate, comment) = &found[1];
    assert_eq!(
        (*input, *out_rate, *in_rate),
        (8000.0, 50.0, 2000.0),
        "{out}"
    );
    assert!(comment.contains("output missed at 60"), "{out}");
    assert_config_takes(&out);

    // A stricter TPOT: no step at 1,000-token prompts held it.
    let csv = csv.to_str().unwrap();
    let stderr = refused(&["calibrate", "--load-test", csv, "--tpot", "0.015"]);
    assert!(
        stderr.contains(
            "input_tokens 1000, output_tokens 200: 4 measured, 0 held every SLO, 3 held TTFT"
        ),
        "{stderr}"
    );
    // The 99.9th percentile is not in the file.
    let stderr = refused(&["calibrate", "--load-test", csv, "--target", "0.999"]);
    assert!(stderr.contains("no column `p99.9_ttft_ms`"), "{stderr}");
    // Flags of the other sources do not mix with it.
    let stderr = refused(&["calibrate", "--load-test", csv, "--replicas", "2"]);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn a_load_test_with_shares_of_short_answers_gives_each_share_its_point() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("steps.csv");
    // One mix run with 2 % and with a third of its answers short: the short answers
    // miss TPOT from a lower prompt rate.
    std::fs::write(
        &csv,
        "input_tokens,output_tokens,short_output_share,output_tokens_per_second,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms\n\
         1000,200,0.02,600,3000,500,30\n\
         1000,200,0.02,800,4000,700,45\n\
         1000,200,0.02,900,4500,900,60\n\
         1000,200,0.33,400,2000,500,40\n\
         1000,200,0.33,500,2500,600,55\n",
    )
    .unwrap();
    let (ok, out, stderr) = cli::run_binary(&["calibrate", "--load-test", csv.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let found = points(&out);
    assert_eq!(found.len(), 2, "{out}");
    assert!(
        out.contains("short_output_share: 0.02, output_tokens_per_second: 800,")
            && out.contains("short_output_share: 0.33, output_tokens_per_second: 400,"),
        "{out}"
    );
    assert_config_takes(&out);
}

const STEP: i64 = 15;
/// Ten minutes a level.
const LEVEL: i64 = 600;

/// One level of the history: the mix and each pod's token rates, and which SLOs miss.
struct Level {
    prompt: f64,
    output: f64,
    output_per_pod: f64,
    ttft_misses: bool,
    tpot_misses: bool,
    /// The share of requests with 20 output tokens or fewer.
    short: f64,
}

/// Twelve ten-minute levels from `start`: six at 1,000-token prompts (output 400 to 1,400
/// tokens/s a pod; TPOT misses above 1,000, TTFT above 6,000 prompt tokens/s), then six at
/// 8,000 (prompt 800 to 4,800 tokens/s a pod; TTFT misses above 2,400).
fn level(start: i64, t: i64) -> Level {
    let i = ((t - start).max(0) / LEVEL).min(11);
    if i < 6 {
        let out = 400.0 + 200.0 * i as f64;
        Level {
            prompt: 1000.0,
            output: 200.0,
            output_per_pod: out,
            ttft_misses: out * 5.0 > 6000.0,
            tpot_misses: out > 1000.0,
            short: 0.02,
        }
    } else {
        let input = 800.0 * (i - 5) as f64;
        Level {
            prompt: 8000.0,
            output: 200.0,
            output_per_pod: input / 40.0,
            ttft_misses: input > 2400.0,
            tpot_misses: false,
            short: 0.02,
        }
    }
}

/// Six ten-minute levels from `start` of a fleet at 1,000-token prompts: three with 2 %
/// of its answers short (output 400, 800 and 1,200 tokens/s a pod, TPOT missing at the
/// last), then three with 30 % (400, 600 and 800, TPOT missing from 600).
fn share_level(start: i64, t: i64) -> Level {
    let i = ((t - start).max(0) / LEVEL).min(5);
    let (short, out, misses) = [
        (0.02, 400.0, false),
        (0.02, 800.0, false),
        (0.02, 1200.0, true),
        (0.3, 400.0, false),
        (0.3, 600.0, true),
        (0.3, 800.0, true),
    ][i as usize];
    Level {
        prompt: 1000.0,
        output: 200.0,
        output_per_pod: out,
        ttft_misses: false,
        tpot_misses: misses,
        short,
    }
}

/// Every series the calibration plan reads, for pods p1 and p2 of model `m` (levels of
/// [`level`]) and pods s1 and s2 of model `s` (levels of [`share_level`], from an hour
/// after `start`), every 15 s from 15 minutes before `start` to `end`.
fn history(start: i64, end: i64) -> String {
    let mut out = String::new();
    fleet(&mut out, "m", ["p1", "p2"], start, end, |t| level(start, t));
    fleet(&mut out, "s", ["s1", "s2"], start, end, |t| {
        share_level(start + 6 * LEVEL, t)
    });
    out.push_str("# EOF\n");
    out
}

/// One fleet's series, its level at each time given by `level`.
fn fleet(
    out: &mut String,
    model: &str,
    pods: [&str; 2],
    start: i64,
    end: i64,
    level: impl Fn(i64) -> Level,
) {
    // name, le, per-second rate at a level
    type Rate = fn(&Level) -> f64;
    let series: Vec<(&str, Option<&str>, Rate)> = vec![
        ("vllm:generation_tokens_total", None, |l| l.output_per_pod),
        ("vllm:prompt_tokens_total", None, |l| {
            l.output_per_pod / l.output * l.prompt
        }),
        ("vllm:request_prompt_tokens_sum", None, |l| {
            l.output_per_pod / l.output * l.prompt
        }),
        ("vllm:request_prompt_tokens_count", None, |l| {
            l.output_per_pod / l.output
        }),
        ("vllm:request_generation_tokens_sum", None, |l| {
            l.output_per_pod
        }),
        ("vllm:request_generation_tokens_count", None, |l| {
            l.output_per_pod / l.output
        }),
        // 5 % of TTFTs between 2 and 5 s while TTFT misses; every prefill under 1 s.
        ("vllm:time_to_first_token_seconds_bucket", Some("1"), |l| {
            l.output_per_pod / l.output * if l.ttft_misses { 0.95 } else { 1.0 }
        }),
        ("vllm:time_to_first_token_seconds_bucket", Some("5"), |l| {
            l.output_per_pod / l.output
        }),
        (
            "vllm:time_to_first_token_seconds_bucket",
            Some("+Inf"),
            |l| l.output_per_pod / l.output,
        ),
        ("vllm:request_prefill_time_seconds_bucket", Some("1"), |l| {
            l.output_per_pod / l.output
        }),
        (
            "vllm:request_prefill_time_seconds_bucket",
            Some("+Inf"),
            |l| l.output_per_pod / l.output,
        ),
        // 5 % of output tokens between 50 and 100 ms while TPOT misses.
        (
            "vllm:inter_token_latency_seconds_bucket",
            Some("0.025"),
            |l| l.output_per_pod * if l.tpot_misses { 0.95 } else { 1.0 },
        ),
        (
            "vllm:inter_token_latency_seconds_bucket",
            Some("0.1"),
            |l| l.output_per_pod,
        ),
        (
            "vllm:inter_token_latency_seconds_bucket",
            Some("+Inf"),
            |l| l.output_per_pod,
        ),
        // The share of short answers, with vLLM's bounds as its Python client writes them.
        ("vllm:request_generation_tokens_bucket", Some("20.0"), |l| {
            l.output_per_pod / l.output * l.short
        }),
        ("vllm:request_generation_tokens_bucket", Some("+Inf"), |l| {
            l.output_per_pod / l.output
        }),
    ];
    for pod in pods {
        for (name, le, rate) in &series {
            let labels = match le {
                Some(le) => format!(r#"model_name="{model}",pod="{pod}",le="{le}""#),
                None => format!(r#"model_name="{model}",pod="{pod}""#),
            };
            let mut value = 0.0;
            let mut t = start - 900;
            while t <= end {
                let _ = writeln!(out, "{name}{{{labels}}} {value} {t}");
                value += rate(&level(t)) * STEP as f64;
                t += STEP;
            }
        }
        let mut t = start - 900;
        while t <= end {
            let _ = writeln!(
                out,
                r#"vllm:num_requests_waiting{{model_name="{model}",pod="{pod}"}} 0 {t}"#
            );
            t += STEP;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_gives_each_mix_the_rate_its_fleet_held_its_slos_at() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // calibrate reads moments at whole minutes up to now: the levels start 2 hours back.
    let end = now - now % 60;
    let start = end - 12 * LEVEL;
    let prometheus = PrometheusServer::start_with_history(&history(start, now)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "prometheus:\n  url: {}\nprofiles:\n  llama:\n    engine: vllm\n    selector: {{model_name: m}}\n    capacity: {{queue_per_replica: 2, output_tokens_per_second: 700}}\n    slos:\n      - {{name: ttft, signal: ttft, threshold: 2s, objective: 0.99, windows: [2m, 1h]}}\n      - {{name: tpot, signal: tpot, threshold: 50ms, objective: 0.99, windows: [2m, 1h]}}\n  shares:\n    engine: vllm\n    selector: {{model_name: s}}\n    capacity: {{queue_per_replica: 2, output_tokens_per_second: 700}}\n    slos:\n      - {{name: ttft, signal: ttft, threshold: 2s, objective: 0.99, windows: [2m, 1h]}}\n      - {{name: tpot, signal: tpot, threshold: 50ms, objective: 0.99, windows: [2m, 1h]}}\n",
            prometheus.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    // The command blocks: off the runtime that Prometheus' handle lives on.
    tokio::task::spawn_blocking(move || {
        read_history(&config);
        read_shares(&config);
    })
    .await
    .unwrap();
    drop(prometheus);
}

/// `calibrate --config --shares` on fleet `s` of [`history`]: a point per share of
/// short answers, each with the rate the fleet held its SLOs at with that share.
fn read_shares(config: &str) {
    let (ok, out, stderr) = cli::run_binary(&[
        "calibrate",
        "--config",
        config,
        "--profile",
        "shares",
        "--range",
        "1h",
        "--step",
        "1m",
        "--min-moments",
        "3",
        "--inputs",
        "1000",
        "--outputs",
        "200",
        "--shares",
        "0.3,0.02",
    ]);
    assert!(ok, "{stderr}");
    let rate = |share: &str| {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("short_output_share: {share},")))
            .unwrap_or_else(|| panic!("no point at share {share}: {out}"));
        points(line)[0].2
    };
    assert!(close(rate("0.02"), 800.0), "{out}");
    assert!(close(rate("0.3"), 400.0), "{out}");
    assert_config_takes(&out);
    let (ok, _, stderr) = cli::run_binary(&[
        "calibrate",
        "--config",
        config,
        "--profile",
        "shares",
        "--shares",
        "1.5",
    ]);
    assert!(!ok && stderr.contains("a share from 0 to 1"), "{stderr}");
}

/// `calibrate --config` on the history of [`history`].
fn read_history(config: &str) {
    let args = |extra: &[&'static str]| {
        let mut args = vec![
            "calibrate",
            "--config",
            config,
            "--profile",
            "llama",
            "--min-moments",
            "3",
        ];
        args.extend_from_slice(extra);
        args
    };
    let window = ["--range", "2h", "--step", "1m", "--outputs", "200"];
    let (ok, out, stderr) = cli::run_binary(&args(
        &[window.as_slice(), &["--inputs", "1000,8000"]].concat(),
    ));
    assert!(ok, "{stderr}");
    let found = points(&out);
    assert_eq!(found.len(), 2, "{out}");
    // 1,000-token prompts: TPOT held up to 1,000 output tokens/s a pod, TTFT up to 6,000
    // prompt tokens/s; the next levels missed.
    let (input, output, out_rate, in_rate, comment) = &found[0];
    assert_eq!((*input, *output), (1000.0, 200.0), "{out}");
    assert!(close(*out_rate, 1000.0) && close(*in_rate, 6000.0), "{out}");
    assert!(
        comment.contains("output missed at") && comment.contains("input missed at"),
        "{out}"
    );
    // 8,000-token prompts: TTFT held up to 2,400 prompt tokens/s (60 output tokens/s).
    let (input, _, out_rate, in_rate, _) = &found[1];
    assert_eq!(*input, 8000.0, "{out}");
    assert!(close(*in_rate, 2400.0) && close(*out_rate, 60.0), "{out}");
    assert_config_takes(&out);

    // A mix the fleet never served is named, with what to change.
    let stderr = refused(&args(
        &[window.as_slice(), &["--inputs", "1000,8000,64000"]].concat(),
    ));
    assert!(
        stderr.contains("input_tokens 64000, output_tokens 200: 0 measured")
            && stderr.contains("--range"),
        "{stderr}"
    );
    // A week at one moment every 15 s is more than one run reads.
    let stderr = refused(&args(&["--range", "7d", "--step", "15s"]));
    assert!(
        stderr.contains("--range 1w at --step 15s is 40320 moments"),
        "{stderr}"
    );
}

#[test]
fn history_names_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    // Nothing listens on port 9 of the loopback.
    std::fs::write(
        &config,
        "prometheus:\n  url: http://127.0.0.1:9\nprofiles:\n  llama:\n    engine: vllm\n    capacity: {queue_per_replica: 2, output_tokens_per_second: 700}\n    slos:\n      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}\n  plain:\n    engine: vllm\n    capacity: {queue_per_replica: 2, output_tokens_per_second: 700}\n  seed:\n    engine: seed\n    capacity: {queue_per_replica: 2, output_tokens_per_second: 700}\n    slos:\n      - {name: ttft, signal: ttft, threshold: 2s, objective: 0.99}\n  team:\n    engine: vllm\n    allowed_namespaces: [inference]\n    capacity: {queue_per_replica: 2, output_tokens_per_second: 700}\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = |profile: &str| {
        refused(&[
            "calibrate",
            "--config",
            config,
            "--profile",
            profile,
            "--range",
            "10m",
        ])
    };
    // A namespace the profile does not allow.
    let stderr = refused(&[
        "calibrate",
        "--config",
        config,
        "--profile",
        "team",
        "--namespace",
        "other",
    ]);
    assert!(
        stderr.contains("--namespace other: profile `team` is not allowed for namespace `other`"),
        "{stderr}"
    );
    for (profile, says) in [
        ("llama", "unreachable"),
        ("plain", "profile `plain` has no slos"),
        ("seed", "exports no request-length histograms"),
        ("nope", "--profile `nope`: the config has no such profile"),
    ] {
        let stderr = run(profile);
        assert!(stderr.contains(says), "{profile}: {stderr}");
    }
    // With queries scoped by namespace, a fleet is only read in one.
    let scoped = dir.path().join("scoped.yaml");
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        &scoped,
        text.replacen(
            "profiles:",
            "tenancy: {scope_by_namespace: true}\nprofiles:",
            1,
        ),
    )
    .unwrap();
    let scoped = scoped.to_str().unwrap();
    let stderr = refused(&["calibrate", "--config", scoped, "--profile", "llama"]);
    assert!(
        stderr.contains("--namespace is required: tenancy.scope_by_namespace is on"),
        "{stderr}"
    );
}
