//! A short run of the load generator in CI: KEDA's call pattern for 50 ScaledObjects
//! (each its own model) and 50 open StreamIsActive streams against a real Prometheus,
//! with the HPA and poll intervals shortened tenfold. No errors, no lost stream, and
//! Prometheus is asked at most once per ScaledObject per cache_ttl (here, as the objects
//! differ only by model, once per cache_ttl for all of them).

use keda_llm_scaler_test_support as common;

use std::time::Duration;

use common::loadgen::{self, LoadPlan};
use common::{Exporter, PrometheusServer, Scaler, eventually, http_get, metric_sum};

const OBJECTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kedas_call_pattern_for_fifty_scaled_objects() {
    let exporter = Exporter::start().await;
    exporter.set(|e| common::seed_fleet(e, OBJECTS));
    let prometheus = PrometheusServer::start(exporter.addr).await;
    let url = format!(
        "{}/api/v1/query?query=count(llm_queue_depth)",
        prometheus.url()
    );
    eventually(Duration::from_secs(30), "the first scrape", || {
        let url = url.clone();
        async move {
            http_get(&url)
                .await
                .ok()?
                .contains(r#""100""#)
                .then_some(())
        }
    })
    .await;
    let scaler = Scaler::start(&format!(
        "prometheus:\n  url: {}\nevaluation:\n  cache_ttl: 1s\n  push_interval: 1s\nprofiles:\n  seed:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n",
        prometheus.url()
    ))
    .await;
    let _ = scaler.client().await;

    let duration = Duration::from_secs(10);
    let report = loadgen::run(LoadPlan {
        endpoint: format!("http://{}", scaler.grpc_addr),
        scaled_objects: OBJECTS,
        streams: OBJECTS,
        duration,
        hpa_sync: Duration::from_millis(1500),
        poll: Duration::from_secs(3),
        call_timeout: Duration::from_secs(3),
        metadata: loadgen::one_model_each("seed"),
    })
    .await
    .unwrap();
    println!("{}", report.table());

    assert_eq!(report.error_count(), 0, "{:?}", report.errors);
    assert_eq!(report.streams_lost, 0);
    assert!(
        report.stream_messages >= OBJECTS as u64,
        "every stream gets its first state"
    );
    // One round per object per interval: 10 s / 1.5 s and 10 s / 3 s.
    let rounds = report.per_rpc()["GetMetrics"].calls;
    assert!(
        (OBJECTS * 8..=OBJECTS * 11).contains(&rounds),
        "{rounds} rounds"
    );

    // At most one evaluation (four queries) per ScaledObject per cache_ttl (1 s), plus one.
    let metrics = scaler.metrics().await;
    let evaluations = metric_sum(&metrics, "keda_llm_scaler_evaluations_total");
    let queries = metric_sum(
        &metrics,
        "keda_llm_scaler_prometheus_query_duration_seconds_count",
    );
    let bound = (OBJECTS as f64) * (duration.as_secs_f64() / 1.0 + 2.0);
    println!("evaluations {evaluations}, queries {queries}, bound {bound}");
    assert!(
        evaluations > 0.0 && evaluations <= bound,
        "{evaluations} evaluations > {bound}"
    );
    assert_eq!(queries, evaluations * 4.0);
}
