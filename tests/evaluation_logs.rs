//! A failed evaluation's warning names the ScaledObject, namespace and profile that
//! started it. In a test binary of its own: the subscriber is the process' global one,
//! as in the service, so no other test's threads can race its callsites' registration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keda_llm_scaler_test_support as common;
use tonic::Code;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_evaluation_is_logged_with_the_scaled_object_that_started_it() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    // Nothing listens on port 1: every query fails at once.
    let scaler = common::Scaler::start(
        "prometheus:\n  url: http://127.0.0.1:1\nprofiles:\n  seed:\n    engine: seed\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}\n",
    )
    .await;
    let mut client = scaler.client().await;
    let mut object = common::scaled_object("chat", &[("profile", "seed")]);
    object.namespace = "team-a".to_owned();
    let status = common::demand(&mut client, &object).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let line = common::eventually(Duration::from_secs(5), "the warning", || {
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("evaluation failed"))
            .map(str::to_owned);
        async move { line }
    })
    .await;
    for expected in [
        r#"namespace="team-a""#,
        r#"name="chat""#,
        r#"profile="seed""#,
        "Prometheus is unreachable",
    ] {
        assert!(line.contains(expected), "{expected} in {line}");
    }
    scaler.shutdown().await.unwrap();
}
