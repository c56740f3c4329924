//! The scaler against a real Prometheus scraping an exporter with known series: the
//! answers equal the formulas, and an outage gives UNAVAILABLE, never a made-up 0.

use keda_llm_scaler_test_support as common;

use std::time::Duration;

use common::{
    Exporter, PrometheusServer, Scaler, demand, eventually, metric_name, open_activity_stream,
    scaled_object,
};
use keda_llm_scaler::proto::externalscaler::{GetMetricsRequest, ScaledObjectRef};
use tonic::Code;

const SEED_MODEL: &str = r#"model_id="llama-3-70b""#;
const VLLM_MODEL: &str = r#"model_name="meta-llama/Llama-3.1-70B-Instruct""#;

fn config(prometheus_url: &str) -> String {
    format!(
        r#"
prometheus:
  url: {prometheus_url}
  timeout: 1s
evaluation:
  cache_ttl: 500ms
  push_interval: 500ms
  max_staleness: 3s
profiles:
  seed:
    engine: seed
    selector: {{model_id: llama-3-70b}}
    rate_window: 10s
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}}
  vllm:
    engine: vllm
    selector: {{model_name: meta-llama/Llama-3.1-70B-Instruct}}
    rate_window: 10s
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000, input_tokens_per_second: 40000}}
  broken:
    engine: custom
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    queries:
      queue_depth: llm_queue_depth{{$selector
      output_tokens_per_second: sum(rate(llm_tokens_processed_total[$rate_window]))
      input_tokens_per_second: vector(0)
      kv_cache_usage: llm_kv_cache_usage_ratio
"#
    )
}

/// Seed: Q = 45 over R = 3, T_out = 10000, K = 0.9. vLLM: Q = 50 over R = 2 (pod v1 runs
/// two engines), T_out = 12000, T_in = 100000, K = mean(0.3 on the old name, 0.45) = 0.375.
fn fleet(exporter: &Exporter) {
    exporter.set(|e| {
        for (pod, queue, out, kv) in [
            ("p0", 10.0, 2000.0, 0.9),
            ("p1", 20.0, 3000.0, 0.9),
            ("p2", 15.0, 5000.0, 0.9),
        ] {
            e.gauge(
                &format!(r#"llm_queue_depth{{{SEED_MODEL},pod="{pod}"}}"#),
                queue,
            );
            e.gauge(
                &format!(r#"llm_kv_cache_usage_ratio{{{SEED_MODEL},pod="{pod}"}}"#),
                kv,
            );
            e.counter(
                &format!(
                    r#"llm_tokens_processed_total{{{SEED_MODEL},pod="{pod}",token_type="output"}}"#
                ),
                out,
            );
            e.counter(
                &format!(
                    r#"llm_tokens_processed_total{{{SEED_MODEL},pod="{pod}",token_type="input"}}"#
                ),
                20000.0,
            );
        }
        // Another model's fleet: the selector must keep it out.
        e.gauge(r#"llm_queue_depth{model_id="other",pod="q0"}"#, 999.0);
        e.gauge(
            r#"llm_kv_cache_usage_ratio{model_id="other",pod="q0"}"#,
            1.0,
        );

        for (pod, engine, waiting, generated, prompt) in [
            ("v0", "0", 30.0, 6000.0, 40000.0),
            ("v1", "0", 12.0, 3000.0, 20000.0),
            ("v1", "1", 8.0, 3000.0, 40000.0),
        ] {
            let labels = format!(r#"{VLLM_MODEL},pod="{pod}",engine="{engine}""#);
            e.gauge(&format!("vllm:num_requests_waiting{{{labels}}}"), waiting);
            e.counter(
                &format!("vllm:generation_tokens_total{{{labels}}}"),
                generated,
            );
            e.counter(&format!("vllm:prompt_tokens_total{{{labels}}}"), prompt);
        }
        e.gauge(
            &format!(r#"vllm:gpu_cache_usage_perc{{{VLLM_MODEL},pod="v0",engine="0"}}"#),
            0.3,
        );
        e.gauge(
            &format!(r#"vllm:kv_cache_usage_perc{{{VLLM_MODEL},pod="v1",engine="0"}}"#),
            0.4,
        );
        e.gauge(
            &format!(r#"vllm:kv_cache_usage_perc{{{VLLM_MODEL},pod="v1",engine="1"}}"#),
            0.5,
        );
    });
}

fn metrics_request(object: &ScaledObjectRef, metric_name: &str) -> GetMetricsRequest {
    GetMetricsRequest {
        scaled_object_ref: Some(object.clone()),
        metric_name: metric_name.to_owned(),
    }
}

/// Waits (up to 30 s) until GetMetrics answers `expected` for the ScaledObject.
async fn until_demand_is(
    client: &keda_llm_scaler::proto::externalscaler::external_scaler_client::ExternalScalerClient<
        tonic::transport::Channel,
    >,
    object: &ScaledObjectRef,
    metric: &str,
    expected: f64,
    what: &str,
) {
    eventually(Duration::from_secs(30), what, || {
        let mut client = client.clone();
        let request = metrics_request(object, metric);
        async move {
            let value = client
                .get_metrics(request)
                .await
                .ok()?
                .into_inner()
                .metric_values[0]
                .metric_value_float;
            close(value, expected, 1e-9).then_some(())
        }
    })
    .await;
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance * expected.abs().max(1e-9)
}

/// Waits until the rate windows hold enough samples that T_out is exact.
async fn wait_for_full_rate_window(scaler: &Scaler, object: &ScaledObjectRef, expected_t_out: f64) {
    let mut explain = scaler.explain_client().await;
    eventually(
        Duration::from_secs(60),
        "a full rate window in Prometheus",
        || {
            let mut explain = explain.clone();
            let object = object.clone();
            async move {
                let e = explain.explain(object).await.ok()?.into_inner();
                let t_out = e.inputs?.output_tokens_per_second?;
                close(t_out, expected_t_out, 0.01).then_some(())
            }
        },
    )
    .await;
    let _ = &mut explain;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_equal_the_formulas_for_seed_and_vllm_fleets() {
    let exporter = Exporter::start().await;
    fleet(&exporter);
    let prometheus = PrometheusServer::start(exporter.addr).await;
    let scaler = Scaler::start(&config(&prometheus.url())).await;
    let mut client = scaler.client().await;
    let mut explain = scaler.explain_client().await;

    let seed = scaled_object(
        "chat",
        &[("profile", "seed"), ("scalerAddress", "scaler:6000")],
    );
    let vllm = scaled_object("llama", &[("profile", "vllm")]);

    // GetMetricSpec never needs Prometheus.
    let spec = client
        .get_metric_spec(seed.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    let seed_metric = spec.metric_specs[0].metric_name.clone();
    assert_eq!(seed_metric, "llm-demand-seed-unified");
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
    #[allow(deprecated)]
    let target_size = spec.metric_specs[0].target_size;
    assert_eq!(target_size, 1);

    wait_for_full_rate_window(&scaler, &seed, 10_000.0).await;
    wait_for_full_rate_window(&scaler, &vllm, 12_000.0).await;

    // Seed: queue 45/15 = 3, throughput 10000/5000 = 2, kv 3 x 0.9 / 0.75 = 3.6.
    let values = client
        .get_metrics(metrics_request(&seed, &seed_metric))
        .await
        .unwrap()
        .into_inner()
        .metric_values;
    assert_eq!(values.len(), 1);
    assert!(close(values[0].metric_value_float, 3.6, 1e-9), "{values:?}");
    #[allow(deprecated)]
    let ceiled = values[0].metric_value;
    assert_eq!(ceiled, 4);
    assert!(
        client
            .is_active(seed.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );

    let e = explain.explain(seed.clone()).await.unwrap().into_inner();
    assert!(e.demand_available && e.errors.is_empty(), "{e:?}");
    assert_eq!(e.winning_term, "kv");
    let inputs = e.inputs.clone().unwrap();
    assert_eq!(
        (inputs.queue_depth, inputs.replicas),
        (Some(45.0), Some(3.0))
    );
    assert!(close(inputs.kv_cache_ratio.unwrap(), 0.9, 1e-9));
    assert!(
        close(inputs.input_tokens_per_second.unwrap(), 60_000.0, 0.01),
        "{inputs:?}"
    );
    let term = |name: &str| e.terms.iter().find(|t| t.name == name).unwrap().replicas;
    assert!(close(term("queue"), 3.0, 1e-9));
    assert!(close(term("throughput"), 2.0, 0.01));
    assert!(close(term("kv"), 3.6, 1e-9));
    assert_eq!(e.queries.len(), 4);
    assert!(e.terms.iter().all(|t| !t.promql.is_empty()), "{e:?}");

    // vLLM: queue 50/15, throughput 12000/5000 = 2.4, kv 2 x 0.375 / 0.75 = 1.
    let vllm_metric = client
        .get_metric_spec(vllm.clone())
        .await
        .unwrap()
        .into_inner()
        .metric_specs[0]
        .metric_name
        .clone();
    let value = client
        .get_metrics(metrics_request(&vllm, &vllm_metric.to_uppercase()))
        .await
        .expect("the metric name matches case-insensitively")
        .into_inner()
        .metric_values[0]
        .metric_value_float;
    assert!(close(value, 50.0 / 15.0, 1e-9), "{value}");
    let e = explain.explain(vllm.clone()).await.unwrap().into_inner();
    let inputs = e.inputs.unwrap();
    assert_eq!(
        (inputs.queue_depth, inputs.replicas),
        (Some(50.0), Some(2.0))
    );
    assert!(
        close(inputs.kv_cache_ratio.unwrap(), 0.375, 1e-9),
        "{inputs:?}"
    );
    assert!(close(
        e.terms.iter().find(|t| t.name == "kv").unwrap().replicas,
        1.0,
        1e-9
    ));

    // A prefill pool scales on input tokens: 100000 / 40000 = 2.5 beats 50 / 30.
    let prefill = scaled_object(
        "llama-prefill",
        &[
            ("profile", "vllm"),
            ("pool", "prefill"),
            ("queuePerReplica", "30"),
        ],
    );
    assert_eq!(
        metric_name(&mut client, &prefill).await,
        "llm-demand-vllm-prefill"
    );
    let value = demand(&mut client, &prefill).await.unwrap();
    assert!(close(value, 2.5, 0.01), "{value}");

    // Triggers naming their model share one grouped plan and read only their model's
    // series: the other model's 999 waiting requests stay out.
    let seed_by_model = scaled_object(
        "chat-model",
        &[("profile", "seed"), ("model", "llama-3-70b")],
    );
    assert!(close(
        demand(&mut client, &seed_by_model).await.unwrap(),
        3.6,
        1e-9
    ));
    let other_model = scaled_object("other-model", &[("profile", "seed"), ("model", "other")]);
    // other: Q = 999 over one replica, K = 1: kv 1 x 1 / 0.75; queue 999 / 15 = 66.6.
    assert!(close(
        demand(&mut client, &other_model).await.unwrap(),
        999.0 / 15.0,
        1e-9
    ));
    let vllm_by_model = scaled_object(
        "llama-model",
        &[
            ("profile", "vllm"),
            ("model", "meta-llama/Llama-3.1-70B-Instruct"),
        ],
    );
    assert!(close(
        demand(&mut client, &vllm_by_model).await.unwrap(),
        50.0 / 15.0,
        1e-9
    ));

    // A model with no series is a fleet at zero: demand 0, inactive.
    let idle = scaled_object("idle", &[("profile", "seed"), ("model", "no-such-model")]);
    assert_eq!(demand(&mut client, &idle).await.unwrap(), 0.0);
    assert!(!client.is_active(idle).await.unwrap().into_inner().result);

    // A hostile model neither widens the query (999 waiting elsewhere) nor breaks it.
    for hostile in [
        r#"x"} or vector(1000) or llm_queue_depth{model_id=~".*"#,
        r#"llama-3-70b\"} or vector(1) #"#,
        "llama-3-70b\n} or vector(7)",
    ] {
        let object = scaled_object("hostile", &[("profile", "seed"), ("model", hostile)]);
        let value = demand(&mut client, &object)
            .await
            .unwrap_or_else(|s| panic!("hostile model {hostile:?} broke the query: {s:?}"));
        assert_eq!(value, 0.0, "{hostile:?}");
    }

    // Wrong metric name: NOT_FOUND naming the expected one.
    let status = client
        .get_metrics(metrics_request(&seed, "s0-other"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains(&seed_metric), "{status:?}");

    // Bad metadata: INVALID_ARGUMENT naming key, value and what is allowed, on every RPC.
    let bad = scaled_object("bad", &[("profile", "seed"), ("kvCacheTarget", "2")]);
    let status = client.get_metric_spec(bad.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("kvCacheTarget") && status.message().contains("`2`"),
        "{status:?}"
    );
    assert_eq!(
        client.is_active(bad.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        client
            .get_metrics(metrics_request(&bad, "x"))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        client
            .stream_is_active(bad.clone())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let status = client
        .get_metric_spec(scaled_object("bad", &[("profile", "nope")]))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("seed") && status.message().contains("vllm"),
        "{status:?}"
    );

    // Our own /metrics shows the demand, the terms, query latency and gRPC codes.
    let metrics = scaler.metrics().await;
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"keda_llm_scaler_demand_replicas{namespace="inference",scaledobject="chat"} 3.6"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"keda_llm_scaler_term_replicas{namespace="inference",scaledobject="chat",term="kv"} 3.6"#), "{metrics}");
    assert!(
        metrics.contains(
            r#"keda_llm_scaler_grpc_requests_total{method="GetMetrics",code="NOT_FOUND"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("keda_llm_scaler_prometheus_query_duration_seconds_bucket"),
        "{metrics}"
    );

    // A pod restart resets its counters: rate() accounts for it, and T_out stays right.
    // Within 10 %: rate()'s extrapolation across the reset, with scrapes landing where
    // they land on a loaded machine, dips a few percent (5.3 % seen once); a reset that
    // was not accounted for would lose p2's half of the rate.
    exporter.set(|e| {
        e.reset_counter(&format!(
            r#"llm_tokens_processed_total{{{SEED_MODEL},pod="p2",token_type="output"}}"#
        ))
    });
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let e = explain.explain(seed.clone()).await.unwrap().into_inner();
        let t_out = e.inputs.unwrap().output_tokens_per_second.unwrap();
        assert!(
            close(t_out, 10_000.0, 0.10),
            "T_out {t_out} after a counter reset"
        );
    }

    // StreamIsActive: true at once; false once the fleet goes idle.
    let (mut stream, first) = open_activity_stream(&mut client, &seed).await;
    assert!(first);
    exporter.set(|e| {
        for pod in ["p0", "p1", "p2"] {
            e.gauge(&format!(r#"llm_queue_depth{{{SEED_MODEL},pod="{pod}"}}"#), 0.0);
            e.gauge(&format!(r#"llm_kv_cache_usage_ratio{{{SEED_MODEL},pod="{pod}"}}"#), 0.0);
            for kind in ["output", "input"] {
                e.counter(&format!(r#"llm_tokens_processed_total{{{SEED_MODEL},pod="{pod}",token_type="{kind}"}}"#), 0.0);
            }
        }
    });
    let next = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("the transition to idle is pushed")
        .unwrap()
        .unwrap();
    assert!(
        !next.result,
        "only transitions are pushed, so the next message is the change"
    );

    drop(stream);
    scaler.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_outage_gives_unavailable_and_the_scaler_recovers() {
    let exporter = Exporter::start().await;
    fleet(&exporter);
    let mut prometheus = PrometheusServer::start(exporter.addr).await;
    let scaler = Scaler::start(&config(&prometheus.url())).await;
    let mut client = scaler.client().await;
    let seed = scaled_object("chat", &[("profile", "seed")]);
    let metric = client
        .get_metric_spec(seed.clone())
        .await
        .unwrap()
        .into_inner()
        .metric_specs[0]
        .metric_name
        .clone();

    // Queue and KV gauges are exact from the first scrape: 3 x 0.9 / 0.75 = 3.6.
    until_demand_is(&client, &seed, &metric, 3.6, "the first scrape").await;

    // Prometheus refusing a query (here a syntax error) is UNAVAILABLE with its reason.
    let broken = scaled_object("broken", &[("profile", "broken")]);
    let status = client
        .get_metrics(metrics_request(&broken, "llm-demand-broken-unified"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("bad_data") && status.message().contains("queue"),
        "{status:?}"
    );

    prometheus.stop();
    let stopped = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await; // past cache_ttl
    // Within max_staleness (3 s) the last complete evaluation answers, and says so.
    let value = client
        .get_metrics(metrics_request(&seed, &metric))
        .await
        .unwrap()
        .into_inner();
    assert!(
        close(value.metric_values[0].metric_value_float, 3.6, 1e-9),
        "{value:?}"
    );
    let explanation = scaler
        .explain_client()
        .await
        .explain(seed.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        explanation.stale && explanation.stale_cause.contains("unreachable"),
        "{explanation:?}"
    );
    assert!(scaler.metrics().await.contains(
        r#"keda_llm_scaler_stale_answers_total{namespace="inference",scaledobject="chat"}"#
    ));
    // Past it: UNAVAILABLE.
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(stopped.elapsed()) + Duration::from_millis(600),
    )
    .await;
    let started = std::time::Instant::now();
    let status = client
        .get_metrics(metrics_request(&seed, &metric))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("unreachable"),
        "the cause is named: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered inside KEDA's deadline"
    );
    assert_eq!(
        client.is_active(seed.clone()).await.unwrap_err().code(),
        Code::Unavailable
    );
    // The spec does not depend on Prometheus.
    assert!(client.get_metric_spec(seed.clone()).await.is_ok());
    let metrics = scaler.metrics().await;
    assert!(
        metrics.contains(
            r#"keda_llm_scaler_prometheus_query_errors_total{signal="queue",kind="unreachable"}"#
        ),
        "{metrics}"
    );
    // The demand was refused for want of the queue, counted under the same label.
    assert!(
        metrics.contains(
            r#"keda_llm_scaler_signal_read_errors_total{signal="queue",kind="unreachable"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"keda_llm_scaler_grpc_requests_total{method="GetMetrics",code="UNAVAILABLE"}"#
        ),
        "{metrics}"
    );

    prometheus.restart().await;
    // A killed Prometheus may lose its unflushed samples: wait until it has scraped again.
    until_demand_is(
        &client,
        &seed,
        &metric,
        3.6,
        "the right demand after Prometheus returns",
    )
    .await;
    scaler.shutdown().await.unwrap();
}
