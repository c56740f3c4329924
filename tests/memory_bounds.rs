//! The real binary's memory under the largest answers Prometheus may send: a 15 MB
//! answer of 60,000 series (inside the default limits) read again and again, answers
//! past `max_response_bytes` (streamed, no Content-Length) and past `max_series`, and
//! 200 distinct ScaledObjects with long names. Peak and settled RSS come from /proc;
//! another ScaledObject keeps its exact value throughout.

use keda_llm_scaler_test_support as common;
use keda_llm_scaler_test_support::fake_prometheus;

use std::{
    process::Child,
    time::{Duration, Instant},
};

use common::{demand, scaled_object, spawn_serve};
use fake_prometheus::{Fake, Reply, now};
use keda_llm_scaler::proto::externalscaler::external_scaler_client::ExternalScalerClient;

/// A vector of `n` queue series with pod names of about `pad` bytes, value 3 each.
fn queue_vector(n: usize, pad: usize) -> String {
    let padding = "p".repeat(pad);
    let at = now();
    let series: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"metric":{{"pod":"{padding}-{i}"}},"value":[{at},"3"]}}"#))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

/// `VmHWM` (peak) and `VmRSS` (now) of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap()
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_answers_keep_memory_bounded_and_others_served() {
    let huge = queue_vector(60_000, 200);
    assert!((14 << 20..16 << 20).contains(&huge.len()), "{}", huge.len());
    let too_large = queue_vector(150_000, 200);
    let too_many = queue_vector(150_000, 0);
    assert!(too_many.len() < 16 << 20);
    let small = queue_vector(2, 0);
    let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let fake = Fake::start(move |path| {
        let queue = path.contains("llm_queue_depth");
        let body = match () {
            _ if !queue => empty.to_owned(),
            _ if path.contains("model_id%3D%22huge%22") => huge.clone(),
            _ if path.contains("model_id%3D%22toolarge%22") => {
                return Reply {
                    chunked: Some(64 << 10),
                    ..Reply::json(200, &too_large)
                };
            }
            _ if path.contains("model_id%3D%22toomany%22") => too_many.clone(),
            _ => small.clone(),
        };
        Reply::json(200, &body)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let profile = |name: &str| {
        format!(
            "  {name}:\n    engine: seed\n    selector: {{model_id: {name}}}\n    capacity: {{queue_per_replica: 3, output_tokens_per_second: 5000}}\n    max_demand: 100\n"
        )
    };
    let text = format!(
        "prometheus:\n  url: {}\n  timeout: 10s\nevaluation:\n  cache_ttl: 0s\n  max_staleness: 0s\nprofiles:\n{}{}{}{}",
        fake.url,
        profile("huge"),
        profile("toolarge"),
        profile("toomany"),
        profile("normal")
    );
    std::fs::write(&config, text).unwrap();
    // KEDA_LLM_SCALER_BIN measures another build (BENCHMARKS.md uses the release one).
    let binary = std::env::var("KEDA_LLM_SCALER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keda-llm-scaler").to_owned());
    let (child, grpc_addr, _) = spawn_serve(&binary, &config);
    let child = Killed(child);
    let pid = child.0.id();
    let endpoint = format!("http://{grpc_addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match ExternalScalerClient::connect(endpoint.clone()).await {
            Ok(client) => break client,
            Err(e) => {
                assert!(Instant::now() < deadline, "the scaler did not start: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let normal = scaled_object("normal", &[("profile", "normal")]);
    // Two replicas with a queue of 3 each, at 3 a replica.
    assert_eq!(demand(&mut client, &normal).await.unwrap(), 2.0);
    let (_, baseline) = rss_mib(pid);

    let refused = |status: tonic::Status, what: &str| {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains(what),
            "{what}: {}",
            status.message()
        );
    };
    for round in 0..20 {
        let object = scaled_object(&format!("huge-{round}"), &[("profile", "huge")]);
        // 60,000 replicas with a queue of 3: the demand is clamped to max_demand.
        assert_eq!(demand(&mut client, &object).await.unwrap(), 100.0);
        let object = scaled_object("toolarge", &[("profile", "toolarge")]);
        refused(
            demand(&mut client, &object).await.unwrap_err(),
            "max_response_bytes",
        );
        let object = scaled_object("toomany", &[("profile", "toomany")]);
        refused(
            demand(&mut client, &object).await.unwrap_err(),
            "max_series",
        );
        assert_eq!(
            demand(&mut client, &normal).await.unwrap(),
            2.0,
            "round {round}"
        );
    }
    // 200 distinct ScaledObjects with names of the longest length Kubernetes allows.
    for i in 0..200 {
        let name = format!("{:0>253}", i);
        let object = scaled_object(&name, &[("profile", "normal")]);
        assert_eq!(demand(&mut client, &object).await.unwrap(), 2.0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (peak, settled) = rss_mib(pid);
    eprintln!("RSS: baseline {baseline:.1} MiB, peak {peak:.1} MiB, settled {settled:.1} MiB");
    // The Deployment's limit is 256 Mi: the largest allowed answer, parsed, with the
    // evaluations the cache holds, stays under it, and the refused ones are never
    // buffered past their limit. Afterwards memory goes back to the system: what stays
    // is the cache (the last and the last good evaluation of the 60,000-series plan).
    assert!(peak < 240.0, "peak RSS {peak:.1} MiB");
    assert!(settled < 120.0, "settled RSS {settled:.1} MiB");
}
