//! Measures gRPC answer latency against a real Prometheus: GetMetricSpec, GetMetrics
//! from a cached evaluation, and GetMetrics that evaluates (four PromQL queries), each
//! side by side with the same calls to a floor: a tonic server in the same process that
//! answers with a constant. Blocks of calls alternate between the two, so both see the
//! same machine; the ratios to the floor are what the scaler adds.
//!
//! cargo run --release --example latency [-- --calls 5000]
//!
//! Needs Debian's `prometheus` on PATH. Loopback only; bounded in calls and time.

use keda_llm_scaler_test_support as common;

use std::time::{Duration, Instant};

use common::{
    Exporter, PrometheusServer, Scaler, eventually, external_client, floor::FloorServer,
    scaled_object,
};
use hdrhistogram::Histogram;
use keda_llm_scaler::proto::externalscaler::{
    GetMetricsRequest, ScaledObjectRef, external_scaler_client::ExternalScalerClient,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// Blocks each series is cut into, alternating scaler and floor.
const BLOCKS: usize = 50;

fn config(url: &str, cache_ttl: &str) -> String {
    format!(
        "prometheus:\n  url: {url}\nevaluation:\n  cache_ttl: {cache_ttl}\nprofiles:\n  vllm:\n    engine: vllm\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n"
    )
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn report(name: &str, ours: &Histogram<u64>, floor: &Histogram<u64>) {
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
        ours.len(),
        micros(ours, 0.5),
        micros(ours, 0.9),
        micros(ours, 0.99),
        ours.max() as f64 / 1e3,
        micros(floor, 0.5),
        micros(floor, 0.99),
        micros(ours, 0.5) / micros(floor, 0.5),
        micros(ours, 0.99) / micros(floor, 0.99),
    );
}

/// Which call a series makes.
#[derive(Clone, Copy)]
enum Call {
    Spec,
    Metrics,
}

async fn call(client: &mut ExternalScalerClient<Channel>, which: Call, object: &ScaledObjectRef) {
    match which {
        Call::Spec => {
            client.get_metric_spec(object.clone()).await.unwrap();
        }
        Call::Metrics => {
            let request = GetMetricsRequest {
                scaled_object_ref: Some(object.clone()),
                metric_name: "llm-demand-vllm-unified".into(),
            };
            client.get_metrics(request).await.unwrap();
        }
    }
}

/// `calls` sequential calls to each server, in alternating blocks, within `limit`.
async fn side_by_side(
    calls: usize,
    limit: Duration,
    which: Call,
    object: &ScaledObjectRef,
    ours: &mut ExternalScalerClient<Channel>,
    floor: &mut ExternalScalerClient<Channel>,
) -> (Histogram<u64>, Histogram<u64>) {
    // One call each first: it opens the HTTP/2 connection, which is not an answer.
    call(ours, which, object).await;
    call(floor, which, object).await;
    let deadline = Instant::now() + limit;
    let (mut ours_h, mut floor_h) = (histogram(), histogram());
    let block = (calls / BLOCKS).max(1);
    for _ in 0..BLOCKS {
        for (client, h) in [(&mut *ours, &mut ours_h), (&mut *floor, &mut floor_h)] {
            for _ in 0..block {
                let started = Instant::now();
                call(client, which, object).await;
                h.record(started.elapsed().as_nanos() as u64).unwrap();
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    (ours_h, floor_h)
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

    let floor = FloorServer::start(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let mut floor_client = external_client(floor.addr).await;
    println!(
        "| call | n | p50 µs | p90 µs | p99 µs | max µs | floor p50 µs | floor p99 µs | p50 / floor | p99 / floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (cache_ttl, label) in [("5m", "cached"), ("0s", "evaluating")] {
        let scaler = Scaler::start(&config(&prometheus.url(), cache_ttl)).await;
        let mut client = scaler.client().await;
        let limit = Duration::from_secs(60);
        if label == "cached" {
            let (ours, floor) = side_by_side(
                calls,
                limit,
                Call::Spec,
                &object,
                &mut client,
                &mut floor_client,
            )
            .await;
            report("GetMetricSpec", &ours, &floor);
        }
        let n = if label == "cached" { calls } else { calls / 10 };
        let (ours, floor) = side_by_side(
            n,
            limit,
            Call::Metrics,
            &object,
            &mut client,
            &mut floor_client,
        )
        .await;
        report(&format!("GetMetrics ({label})"), &ours, &floor);
        scaler.shutdown().await.unwrap();
    }
    floor.shutdown().await;
}
