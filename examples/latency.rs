//! Measures gRPC answer latency against a real Prometheus: GetMetricSpec, GetMetrics
//! from a cached evaluation, and GetMetrics that evaluates (four PromQL queries).
//!
//! cargo run --release --example latency [-- --calls 5000]
//!
//! Needs Debian's `prometheus` on PATH. Loopback only; bounded in calls and time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Exporter, PrometheusServer, Scaler, eventually, scaled_object};
use keda_llm_scaler::proto::externalscaler::GetMetricsRequest;

fn config(url: &str, cache_ttl: &str) -> String {
    format!(
        "prometheus:\n  url: {url}\nevaluation:\n  cache_ttl: {cache_ttl}\nprofiles:\n  vllm:\n    engine: vllm\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n"
    )
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        samples.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    );
}

async fn measure<F, Fut>(calls: usize, limit: Duration, mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Instant::now() + limit;
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
        if Instant::now() > deadline {
            break;
        }
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .map_or(5000, |n| n.parse().expect("--calls takes a number"));
    let exporter = Exporter::start().await;
    exporter.set(|e| {
        for pod in 0..8 {
            let labels = format!(r#"model_name="m",pod="p{pod}",engine="0""#);
            e.gauge(&format!("vllm:num_requests_waiting{{{labels}}}"), 5.0);
            e.gauge(&format!("vllm:kv_cache_usage_perc{{{labels}}}"), 0.5);
            e.counter(&format!("vllm:generation_tokens_total{{{labels}}}"), 1000.0);
            e.counter(&format!("vllm:prompt_tokens_total{{{labels}}}"), 8000.0);
        }
    });
    let prometheus = PrometheusServer::start(exporter.addr).await;
    let object = scaled_object("bench", &[("profile", "vllm")]);
    let request = GetMetricsRequest {
        scaled_object_ref: Some(object.clone()),
        metric_name: "llm-demand-vllm-unified".into(),
    };

    let query = format!(
        "{}/api/v1/query?query=vllm:num_requests_waiting",
        prometheus.url()
    );
    eventually(Duration::from_secs(30), "data in Prometheus", || {
        let query = query.clone();
        async move {
            common::http_get(&query)
                .await
                .ok()?
                .contains(r#""pod":"p7""#)
                .then_some(())
        }
    })
    .await;

    println!("| call | n | p50 µs | p90 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|---|");
    for (cache_ttl, label) in [("5m", "cached"), ("0s", "evaluating")] {
        let scaler = Scaler::start(&config(&prometheus.url(), cache_ttl)).await;
        let client = scaler.client().await;
        if label == "cached" {
            let samples = measure(calls, Duration::from_secs(60), || {
                let mut client = client.clone();
                let object = object.clone();
                async move {
                    client.get_metric_spec(object).await.unwrap();
                }
            })
            .await;
            report("GetMetricSpec", samples);
        }
        let n = if label == "cached" { calls } else { calls / 10 };
        let samples = measure(n, Duration::from_secs(60), || {
            let mut client = client.clone();
            let request = request.clone();
            async move {
                client.get_metrics(request).await.unwrap();
            }
        })
        .await;
        report(&format!("GetMetrics ({label})"), samples);
        scaler.shutdown().await.unwrap();
    }
}
