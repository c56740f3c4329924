//! The binary on SIGTERM: health turns NOT_SERVING, streams end with status OK, and the
//! process exits with 0 well within Kubernetes' grace period, even with a client still
//! watching health.

use keda_llm_scaler_test_support as common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use keda_llm_scaler::proto::externalscaler::{
    ScaledObjectRef, external_scaler_client::ExternalScalerClient,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_streams_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "prometheus:\n  url: http://127.0.0.1:1\nprofiles:\n  p:\n    engine: seed\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}\n",
    )
    .unwrap();
    let (mut child, grpc_addr, _) =
        common::spawn_serve(env!("CARGO_BIN_EXE_keda-llm-scaler"), &config);
    let endpoint = format!("http://{grpc_addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = loop {
        match tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(e) => {
                assert!(Instant::now() < deadline, "the scaler did not start: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "externalscaler.ExternalScaler".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let mut scaler = ExternalScalerClient::new(channel);
    let object = ScaledObjectRef {
        name: "a".into(),
        namespace: "default".into(),
        scaler_metadata: [("profile".to_owned(), "p".to_owned())]
            .into_iter()
            .collect(),
    };
    let mut activity = scaler.stream_is_active(object).await.unwrap().into_inner();

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap();
    match next {
        Ok(Some(update)) => assert_eq!(update.status(), ServingStatus::NotServing),
        other => panic!("health must say NOT_SERVING before the stream ends: {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), activity.message())
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(None)),
        "StreamIsActive ends with status OK: {end:?}"
    );

    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("still running 20 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    // The open health Watch is the client's; it gets the drain grace, then the process goes.
    assert!(signalled.elapsed() < keda_llm_scaler::server::DRAIN_GRACE + Duration::from_secs(5));
    println!("exited {:?} after SIGTERM", signalled.elapsed());
}
