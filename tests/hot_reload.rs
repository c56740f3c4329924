//! ConfigMap hot reload, with files swapped exactly as the kubelet swaps them: a new
//! timestamped directory, a `..data_tmp` symlink renamed over `..data`, the old
//! directory removed. A bad file is refused and the last good config keeps serving.

use keda_llm_scaler_test_support as common;

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{Scaler, eventually, metric_name, rss_mib, scaled_object};
use keda_llm_scaler::proto::externalscaler::ScaledObjectRef;

/// A ConfigMap volume: `config.yaml -> ..data/config.yaml`, `..data -> ..<version>`.
struct ConfigMapVolume {
    dir: tempfile::TempDir,
    version: usize,
    current: Option<PathBuf>,
}

impl ConfigMapVolume {
    fn new(content: &str) -> Self {
        let mut volume = Self {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
            current: None,
        };
        volume.update(content);
        symlink("..data/config.yaml", volume.dir.path().join("config.yaml")).unwrap();
        volume
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// The kubelet's atomic update.
    fn update(&mut self, content: &str) {
        self.version += 1;
        let name = format!(
            "..2026_11_24_12_00_{:02}.{}",
            self.version,
            1000 + self.version
        );
        let new_dir = self.dir.path().join(&name);
        std::fs::create_dir(&new_dir).unwrap();
        std::fs::write(new_dir.join("config.yaml"), content).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        if let Some(old) = self.current.replace(new_dir) {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

fn config(pool: &str) -> String {
    format!(
        "prometheus:\n  url: http://127.0.0.1:1\nprofiles:\n  chat:\n    engine: seed\n    pool: {pool}\n    capacity:\n      queue_per_replica: 15\n      output_tokens_per_second: 5000\n      input_tokens_per_second: 40000\n"
    )
}

async fn wait_for_spec(scaler: &Scaler, object: &ScaledObjectRef, expected: &str) {
    let client = scaler.client().await;
    eventually(Duration::from_secs(15), &format!("spec {expected}"), || {
        let mut client = client.clone();
        let object = object.clone();
        async move { (metric_name(&mut client, &object).await == expected).then_some(()) }
    })
    .await;
}

fn read_metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_style_swaps_reload_and_bad_files_keep_the_last_good_config() {
    let mut volume = ConfigMapVolume::new(&config("unified"));
    let scaler = Scaler::start_from_file(&volume.path()).await;
    let mut client = scaler.client().await;
    let object = scaled_object("chat", &[("profile", "chat")]);
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
    let mut specs = client
        .stream_metric_spec(object.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        specs.message().await.unwrap().unwrap().metric_specs[0].metric_name,
        "llm-demand-chat-unified"
    );

    // Several swaps in a row: each one is seen (a watch on the file would stop after one).
    for (round, pool) in ["decode", "prefill", "unified", "decode"]
        .into_iter()
        .enumerate()
    {
        volume.update(&config(pool));
        let expected = format!("llm-demand-chat-{pool}");
        let pushed = tokio::time::timeout(Duration::from_secs(15), specs.message())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no spec pushed for {pool}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            pushed.metric_specs[0].metric_name, expected,
            "round {round}"
        );
        wait_for_spec(&scaler, &object, &expected).await;
    }

    // A bad file: refused, counted, explained; the last good config keeps serving.
    volume.update(&config("decode").replace("queue_per_replica: 15", "queue_per_replica: many"));
    let metrics = eventually(
        Duration::from_secs(15),
        "the refusal to be counted",
        || async {
            let metrics = scaler.metrics().await;
            (read_metric(&metrics, "keda_llm_scaler_config_reload_failures_total") == Some(1.0))
                .then_some(metrics)
        },
    )
    .await;
    assert!(
        read_metric(
            &metrics,
            "keda_llm_scaler_config_last_reload_success_timestamp_seconds"
        )
        .unwrap()
            > 1.7e9
    );
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-decode"
    );
    let explanation = scaler
        .explain_client()
        .await
        .explain(object.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        explanation.config_error.contains("line 8")
            && explanation.config_error.contains("queue_per_replica"),
        "{}",
        explanation.config_error
    );

    // The next good file loads and clears the error.
    volume.update(&config("prefill"));
    wait_for_spec(&scaler, &object, "llm-demand-chat-prefill").await;
    let explanation = scaler
        .explain_client()
        .await
        .explain(object.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explanation.config_error, "");
    let metrics = scaler.metrics().await;
    assert_eq!(
        read_metric(&metrics, "keda_llm_scaler_config_reload_failures_total"),
        Some(1.0)
    );
    scaler.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_file_rewritten_in_place_reloads_too() {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("config.yaml");
    std::fs::write(path, config("unified")).unwrap();
    let scaler = Scaler::start_from_file(path).await;
    let object = scaled_object("chat", &[("profile", "chat")]);
    wait_for_spec(&scaler, &object, "llm-demand-chat-unified").await;
    std::fs::write(path, config("decode")).unwrap();
    wait_for_spec(&scaler, &object, "llm-demand-chat-decode").await;
    scaler.shutdown().await.unwrap();
}

/// Explain's `config_error` for `object`.
async fn config_error(scaler: &Scaler, object: &ScaledObjectRef) -> String {
    scaler
        .explain_client()
        .await
        .explain(object.clone())
        .await
        .unwrap()
        .into_inner()
        .config_error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_path_that_hangs_or_never_ends_is_refused_and_the_service_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("config.yaml");
    let good = config("unified");
    std::fs::write(path, &good).unwrap();
    let scaler = Scaler::start_from_file(path).await;
    let object = scaled_object("chat", &[("profile", "chat")]);
    wait_for_spec(&scaler, &object, "llm-demand-chat-unified").await;
    let mut client = scaler.client().await;

    // An endless file: refused at the size limit, not read without end.
    let before = rss_mib();
    std::fs::remove_file(path).unwrap();
    symlink("/dev/zero", path).unwrap();
    let error = eventually(Duration::from_secs(20), "/dev/zero refused", || async {
        let error = config_error(&scaler, &object).await;
        error.contains("larger than").then_some(error)
    })
    .await;
    assert!(error.contains("4194304 bytes"), "{error}");
    // The scaler runs in this process: at most the 4 MiB read stayed.
    let after = rss_mib();
    assert!(after - before < 32.0, "RSS {before:.1} -> {after:.1} MiB");

    // The same good file again: the error clears (its text equals the config in force).
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, &good).unwrap();
    eventually(Duration::from_secs(20), "the error to clear", || async {
        config_error(&scaler, &object)
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // A FIFO nobody writes to: the read gives up, gRPC and Explain keep answering, and
    // shutdown does not wait for the stuck read.
    std::fs::remove_file(path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
    let error = eventually(Duration::from_secs(30), "the FIFO refused", || async {
        let error = config_error(&scaler, &object).await;
        error.contains("took longer than").then_some(error)
    })
    .await;
    assert!(error.contains("FIFO"), "{error}");
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
    // Refusals are counted every time they happen.
    let failures =
        |metrics: &str| read_metric(metrics, "keda_llm_scaler_config_reload_failures_total");
    let before = failures(&scaler.metrics().await).unwrap();
    eventually(
        Duration::from_secs(20),
        "another refusal counted",
        || async { (failures(&scaler.metrics().await).unwrap() > before).then_some(()) },
    )
    .await;
    // The FIFO's read still hangs; a good file in its place is read by a new one.
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, config("decode")).unwrap();
    wait_for_spec(&scaler, &object, "llm-demand-chat-decode").await;
    assert_eq!(config_error(&scaler, &object).await, "");
    // And another FIFO: shutdown does not wait for its hung read.
    std::fs::remove_file(path).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), scaler.shutdown()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
}
