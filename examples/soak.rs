//! Load and soak: KEDA's call pattern for many ScaledObjects and open StreamIsActive
//! streams against a real Prometheus, for minutes. Reports latency per RPC, the queries
//! per second the scaler sent to Prometheus, and the scaler's memory over time (it runs
//! as a child process so its RSS is its own).
//!
//! The same load also goes to a floor: a child process of the same kind serving KEDA's
//! protocol with constants. The run alternates between the two in `--phases` pairs of
//! equal length, so both see the same machine, and reports the scaler's percentiles as
//! ratios to the floor's.
//!
//! cargo run --release --example soak -- [--scaled-objects 1000] [--streams 1000]
//!     [--duration 600] [--hpa-sync 15] [--poll 30] [--phases 4]
//!
//! Loopback only; stops by itself after --duration seconds.

use keda_llm_scaler_test_support as common;

use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    Exporter, PrometheusServer, eventually,
    floor::FloorServer,
    http_get,
    loadgen::{self, LoadPlan, LoadReport},
    metric_sum,
};

fn arg(name: &str, default: u64) -> u64 {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}

/// Reads a `Vm*` line of /proc/PID/status, in MiB.
fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--floor-child") {
        // The floor, in a process of its own as the scaler is.
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let floor = FloorServer::start(listener);
            println!("{}", floor.addr.port());
            let _ = tokio::signal::ctrl_c().await;
            floor.shutdown().await;
        });
        return;
    }
    if args.get(1).map(String::as_str) == Some("--serve-child") {
        // The scaler under test, in its own process, on ports the OS picks: it prints
        // them for the harness.
        let config = args[2].clone();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = |l: &tokio::net::TcpListener| l.local_addr().unwrap().port();
                println!("{} {}", port(&grpc), port(&http));
                keda_llm_scaler::server::run_from_file(
                    std::path::Path::new(&config),
                    grpc,
                    Some(http),
                    async {
                        let _ = tokio::signal::ctrl_c().await;
                    },
                )
                .await
                .unwrap();
            });
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(harness());
}

async fn harness() {
    let objects = arg("--scaled-objects", 1000) as usize;
    let streams = arg("--streams", 1000) as usize;
    let duration = Duration::from_secs(arg("--duration", 600));
    let hpa_sync = Duration::from_secs(arg("--hpa-sync", 15));
    let poll = Duration::from_secs(arg("--poll", 30));

    let exporter = Exporter::start().await;
    exporter.set(|e| common::seed_fleet(e, objects));
    let prometheus = PrometheusServer::start_scraping_every(exporter.addr, "5s").await;
    let count = format!(
        "{}/api/v1/query?query=count(llm_queue_depth)",
        prometheus.url()
    );
    let expected = format!(r#""{}""#, objects * 2);
    eventually(Duration::from_secs(60), "the first scrape", || {
        let (count, expected) = (count.clone(), expected.clone());
        async move {
            http_get(&count)
                .await
                .ok()?
                .contains(&expected)
                .then_some(())
        }
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "prometheus:\n  url: {}\nprofiles:\n  seed:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n",
            prometheus.url()
        ),
    )
    .unwrap();
    let (mut child, ports) = spawn_child(&["--serve-child", config.to_str().unwrap()]);
    let (grpc, http) = (ports[0], ports[1]);
    let (mut floor_child, floor_ports) = spawn_child(&["--floor-child"]);
    let pid = child.id();
    let metrics_url = format!("http://127.0.0.1:{http}/metrics");
    eventually(Duration::from_secs(30), "the scaler", || {
        let url = metrics_url.clone();
        async move { http_get(&url).await.ok() }
    })
    .await;
    let rss_start = memory_mib(pid, "VmRSS:").unwrap();

    // Memory, sampled while the load runs.
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, f64)>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                match memory_mib(pid, "VmRSS:") {
                    Some(rss) => samples
                        .lock()
                        .unwrap()
                        .push((started.elapsed().as_secs(), rss)),
                    None => return,
                }
            }
        })
    };

    let phases = arg("--phases", 4).max(1);
    let phase = duration / (2 * phases as u32);
    let load = |port: u16| LoadPlan {
        endpoint: format!("http://127.0.0.1:{port}"),
        scaled_objects: objects,
        streams,
        duration: phase,
        hpa_sync,
        poll,
        call_timeout: Duration::from_secs(3),
        metadata: loadgen::one_model_each("seed"),
    };
    let (mut report, mut floor) = (LoadReport::default(), LoadReport::default());
    let mut scaler_time = Duration::ZERO;
    for _ in 0..phases {
        let started = Instant::now();
        report.merge(loadgen::run(load(grpc)).await.unwrap());
        scaler_time += started.elapsed();
        floor.merge(loadgen::run(load(floor_ports[0])).await.unwrap());
    }
    let elapsed = scaler_time.as_secs_f64();
    let metrics = http_get(&metrics_url).await.unwrap();
    let peak = memory_mib(pid, "VmHWM:").unwrap();
    let rss_end = memory_mib(pid, "VmRSS:").unwrap();
    sampler.abort();
    for child in [&mut child, &mut floor_child] {
        let _ = child.kill();
        let _ = child.wait();
    }

    let queries = metric_sum(
        &metrics,
        "keda_llm_scaler_prometheus_query_duration_seconds_count",
    );
    let evaluations = metric_sum(&metrics, "keda_llm_scaler_evaluations_total");
    let query_seconds = metric_sum(
        &metrics,
        "keda_llm_scaler_prometheus_query_duration_seconds_sum",
    );
    println!(
        "{objects} ScaledObjects ({} models), {streams} StreamIsActive streams, {:.0} s, HPA sync {:?}, poll {:?}\n",
        objects, elapsed, hpa_sync, poll
    );
    print!("{}", report.table());
    println!("\nthe floor (constant answers, same process kind, same load, alternating phases):\n");
    print!("{}", floor.table());
    println!("\n| rpc | p50 / floor | p99 / floor |\n|---|---|---|");
    let floor_rpcs = floor.per_rpc();
    for (rpc, ours) in report.per_rpc() {
        if let Some(base) = floor_rpcs.get(rpc) {
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            println!(
                "| {rpc} | {:.2} | {:.2} |",
                ratio(ours.p50, base.p50),
                ratio(ours.p99, base.p99)
            );
        }
    }
    println!(
        "\nerrors: {} {:?}\nstreams lost: {}, stream messages: {}",
        report.error_count(),
        report.errors,
        report.streams_lost,
        report.stream_messages
    );
    println!(
        "Prometheus: {queries:.0} queries ({:.1}/s), {evaluations:.0} evaluations ({:.2} per ScaledObject per 5 s cache_ttl)",
        queries / elapsed,
        evaluations / objects as f64 / (elapsed / 5.0)
    );
    println!(
        "Prometheus query time: {:.2} ms per query on average (the floor has none: an\n\
         evaluation's calls wait for it, which is where the scaler's p99 above the floor's\n\
         comes from)",
        query_seconds / queries.max(1.0) * 1e3
    );
    println!(
        "scaler RSS: {rss_start:.1} MiB at start, {rss_end:.1} MiB at end, peak {peak:.1} MiB"
    );
    let samples = samples.lock().unwrap();
    let step = (samples.len() / 10).max(1);
    let over_time: Vec<String> = samples
        .iter()
        .step_by(step)
        .map(|(t, rss)| format!("{t}s {rss:.1}"))
        .collect();
    println!("scaler RSS over time (MiB): {}", over_time.join(", "));
    if floor.error_count() > 0 {
        println!("floor errors: {:?}", floor.errors);
    }
    if report.error_count() > 0 || report.streams_lost > 0 {
        std::process::exit(1);
    }
}

/// Starts this binary as a child with `args`; it prints its ports on one line.
fn spawn_child(args: &[&str]) -> (std::process::Child, Vec<u16>) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let ports = line
        .split_whitespace()
        .map(|p| p.parse().expect("the child prints its ports"))
        .collect();
    (child, ports)
}
