//! What a user types: grpcurl through reflection, `keda-llm-scaler explain`, and
//! `keda-llm-scaler check-config`.

use keda_llm_scaler_test_support as common;

use std::{process::Command, time::Duration};

use common::{Exporter, PrometheusServer, Scaler, eventually, scaled_object};

const BINARY: &str = env!("CARGO_BIN_EXE_keda-llm-scaler");

fn config(prometheus_url: &str) -> String {
    format!(
        r#"
prometheus:
  url: {prometheus_url}
profiles:
  seed:
    engine: seed
    selector: {{model_id: llama-3-70b}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
"#
    )
}

/// Q = 30 + 15 over two pods: demand 45 / 15 = 3.
async fn fleet_with_demand_3() -> (Exporter, PrometheusServer, Scaler) {
    let exporter = Exporter::start().await;
    exporter.set(|e| {
        e.gauge(r#"llm_queue_depth{model_id="llama-3-70b",pod="a"}"#, 30.0);
        e.gauge(r#"llm_queue_depth{model_id="llama-3-70b",pod="b"}"#, 15.0);
        e.gauge(
            r#"llm_kv_cache_usage_ratio{model_id="llama-3-70b",pod="a"}"#,
            0.3,
        );
        e.gauge(
            r#"llm_kv_cache_usage_ratio{model_id="llama-3-70b",pod="b"}"#,
            0.3,
        );
    });
    let prometheus = PrometheusServer::start(exporter.addr).await;
    let scaler = Scaler::start(&config(&prometheus.url())).await;
    let mut explain = scaler.explain_client().await;
    eventually(Duration::from_secs(30), "the first scrape", || {
        let mut explain = explain.clone();
        async move {
            let e = explain
                .explain(scaled_object("chat", &[("profile", "seed")]))
                .await
                .ok()?;
            (e.into_inner().demand == 3.0).then_some(())
        }
    })
    .await;
    let _ = &mut explain;
    (exporter, prometheus, scaler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let (_exporter, _prometheus, scaler) = fleet_with_demand_3().await;
    let addr = scaler.grpc_addr.to_string();

    let (ok, list) = common::grpcurl(&["-plaintext", &addr, "list"]);
    assert!(ok, "{list}");
    for service in [
        "externalscaler.ExternalScaler",
        "llmscaler.v1.Explain",
        "grpc.health.v1.Health",
    ] {
        assert!(
            list.lines().any(|l| l.trim() == service),
            "`{service}` missing from:\n{list}"
        );
    }

    let (ok, described) = common::grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "externalscaler.ExternalScaler",
    ]);
    assert!(ok, "{described}");
    for rpc in [
        "IsActive",
        "StreamIsActive",
        "GetMetricSpec",
        "GetMetrics",
        "StreamMetricSpec",
    ] {
        assert!(
            described.contains(&format!("rpc {rpc} (")),
            "{rpc} missing from:\n{described}"
        );
    }
    let (ok, message) = common::grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "externalscaler.MetricValue",
    ]);
    assert!(ok && message.contains("metricValueFloat"), "{message}");

    let request = r#"{"scaledObjectRef": {"name": "chat", "namespace": "inference", "scalerMetadata": {"profile": "seed"}}, "metricName": "llm-demand-seed-unified"}"#;
    let (ok, answer) = common::grpcurl(&[
        "-plaintext",
        "-d",
        request,
        &addr,
        "externalscaler.ExternalScaler/GetMetrics",
    ]);
    assert!(ok, "{answer}");
    let json: serde_json::Value =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(json["metricValues"][0]["metricValueFloat"], 3.0, "{answer}");
    assert_eq!(json["metricValues"][0]["metricValue"], "3", "{answer}");
    assert_eq!(
        json["metricValues"][0]["metricName"],
        "llm-demand-seed-unified"
    );

    let (ok, health) = common::grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
    assert!(ok && health.contains("SERVING"), "{health}");
    let (ok, health) = common::grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"service": "externalscaler.ExternalScaler"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(ok && health.contains("SERVING"), "{health}");

    let bad = r#"{"name": "chat", "namespace": "inference", "scalerMetadata": {"profile": "seed", "queuePerReplica": "lots"}}"#;
    let (ok, answer) = common::grpcurl(&[
        "-plaintext",
        "-d",
        bad,
        &addr,
        "externalscaler.ExternalScaler/GetMetricSpec",
    ]);
    assert!(
        !ok && answer.contains("InvalidArgument") && answer.contains("queuePerReplica"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_command_prints_terms_inputs_and_promql() {
    let (_exporter, _prometheus, scaler) = fleet_with_demand_3().await;
    let addr = scaler.grpc_addr.to_string();
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--addr",
            &addr,
            "--namespace",
            "inference",
            "--name",
            "chat",
        ];
        args.extend_from_slice(extra);
        let output = Command::new(BINARY).args(&args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, text, _) = explain(&["--metadata", "profile=seed"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("demand     3.000 replicas (HPA asks for 3), set by queue"),
        "{text}"
    );
    assert!(text.contains("Q / queue_per_replica = 45 / 15"), "{text}");
    assert!(
        text.contains("R x K / target_ratio = 2 x 0.3 / 0.75"),
        "{text}"
    );
    assert!(
        text.contains(r#"sum by (pod) (llm_queue_depth{model_id="llama-3-70b"})"#),
        "{text}"
    );
    assert!(text.contains("a: queue 30, KV 0.3000"), "{text}");

    let (code, json, _) = explain(&["--metadata", "profile=seed", "--json"]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["demand"], 3.0);
    assert_eq!(json["winning_term"], "queue");
    assert_eq!(json["inputs"]["replicas"], 2.0);
    assert_eq!(json["queries"].as_array().unwrap().len(), 4);

    let (code, _, stderr) = explain(&["--metadata", "profile=seed", "--metadata", "pool=sideways"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("pool")
            && stderr.contains("sideways")
            && stderr.contains("unified, prefill or decode"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_example_and_rejects_bad_files() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base/config.yaml");
    let output = Command::new(BINARY)
        .args(["check-config", example])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok (2 profiles: llama-70b, seed)"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("config.yaml");
    std::fs::write(&bad, "prometheus:\n  url: http://x:9090\nprofiles:\n  p:\n    engine: vllm\n    capacity:\n      queue_per_replica: 0\n").unwrap();
    let output = Command::new(BINARY)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 7")
            && stderr.contains("queue_per_replica")
            && stderr.contains("greater than 0"),
        "{stderr}"
    );

    let output = Command::new(BINARY)
        .arg("check-config")
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read config file"));
}

#[test]
fn check_scaledobject_passes_the_shipped_manifest_and_names_bad_triggers() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base/config.yaml");
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/unified-vllm/scaledobject.yaml"
    );
    let output = Command::new(BINARY)
        .args(["check-scaledobject", manifest, "--config", config])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("ScaledObject inference/llama-70b trigger 0: profile llama-70b, metric llm-demand-llama-70b-unified: ok")
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "kind: ScaledObject\nmetadata: {name: b, namespace: ml}\nspec:\n  triggers:\n    - type: external\n      metadata: {scalerAddress: \"s:6000\", profile: llama-70b, pool: sideways}\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .arg("check-scaledobject")
        .arg(manifest)
        .arg(&bad)
        .args(["--config", config])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml: ScaledObject ml/b trigger 0: scalerMetadata key `pool`")
            && stderr.contains("sideways"),
        "{stderr}"
    );
}
