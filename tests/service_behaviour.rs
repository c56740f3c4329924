//! Service behaviour that needs control over timing and failures: shared evaluations,
//! the cache window, slow and broken Prometheus endpoints, config changes pushed to
//! StreamMetricSpec, and graceful shutdown.

use keda_llm_scaler_test_support as common;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Scaler, rss_mib, scaled_object};
use keda_llm_scaler::{
    config::Config,
    proto::{
        externalscaler::{
            GetMetricsRequest, GetMetricsResponse, external_scaler_client::ExternalScalerClient,
        },
        llmscaler::v1::explain_client::ExplainClient,
    },
    server::{self, State},
    source::{MetricsSource, Sample, SourceError},
};
use tokio::{net::TcpListener, sync::watch};
use tonic::Code;

/// A metrics source the test steers: one replica with a queue, counted calls, an
/// optional delay and an optional failure.
#[derive(Default)]
struct SteeredSource {
    calls: AtomicUsize,
    delay_ms: AtomicUsize,
    failing: AtomicBool,
    /// Queries starting with this fail while the others answer.
    failing_prefix: std::sync::Mutex<Option<String>>,
    queue: std::sync::Mutex<f64>,
    /// Every query asked, in order.
    asked: std::sync::Mutex<Vec<String>>,
}

impl MetricsSource for SteeredSource {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, SourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(promql.to_owned());
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let prefix_fails = self
            .failing_prefix
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|prefix| promql.starts_with(prefix));
        if self.failing.load(Ordering::SeqCst) || prefix_fails {
            return Err(SourceError::Unreachable("connection refused".into()));
        }
        if promql.starts_with("sum by (pod) (llm_queue_depth") && !promql.contains("team-b") {
            let labels = HashMap::from([("pod".to_owned(), "a".to_owned())]);
            return Ok(vec![Sample {
                labels,
                value: *self.queue.lock().unwrap(),
            }]);
        }
        Ok(Vec::new())
    }
}

fn config_text(cache_ttl: &str, queue_per_replica: u32) -> String {
    config_with(cache_ttl, queue_per_replica, "max_staleness: 0s")
}

fn config_with(cache_ttl: &str, queue_per_replica: u32, evaluation: &str) -> String {
    format!(
        r#"
prometheus:
  url: http://127.0.0.1:1
evaluation:
  cache_ttl: {cache_ttl}
  push_interval: 200ms
  {evaluation}
profiles:
  seed:
    engine: seed
    capacity: {{queue_per_replica: {queue_per_replica}, output_tokens_per_second: 5000}}
"#
    )
}

struct Running {
    source: Arc<SteeredSource>,
    config: watch::Sender<Arc<Config>>,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    state: Arc<State<Arc<SteeredSource>>>,
}

async fn start(cache_ttl: &str) -> Running {
    start_with(&config_text(cache_ttl, 15)).await
}

async fn start_with(config_text: &str) -> Running {
    let source = Arc::new(SteeredSource::default());
    *source.queue.lock().unwrap() = 30.0;
    let (config, config_rx) = watch::channel(Arc::new(Config::parse(config_text).unwrap()));
    let state = Arc::new(State::new(config_rx, source.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(state.clone(), listener, None, async move {
        let _ = stopped.await;
    }));
    Running {
        source,
        config,
        addr,
        stop: Some(stop),
        task,
        state,
    }
}

async fn client(addr: std::net::SocketAddr) -> ExternalScalerClient<tonic::transport::Channel> {
    for _ in 0..100 {
        if let Ok(client) = ExternalScalerClient::connect(format!("http://{addr}")).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot connect to {addr}");
}

/// Explain for ScaledObject `a` on profile `seed`.
async fn explain_seed(
    addr: std::net::SocketAddr,
) -> keda_llm_scaler::proto::llmscaler::v1::Explanation {
    let mut explain = ExplainClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    explain
        .explain(scaled_object("a", &[("profile", "seed")]))
        .await
        .unwrap()
        .into_inner()
}

fn metrics_request(name: &str) -> GetMetricsRequest {
    GetMetricsRequest {
        scaled_object_ref: Some(scaled_object(name, &[("profile", "seed")])),
        metric_name: "llm-demand-seed-unified".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_evaluation() {
    let running = start("5s").await;
    running.source.delay_ms.store(200, Ordering::SeqCst);
    let client = client(running.addr).await;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                // Different ScaledObjects with the same trigger share the same queries.
                let request = metrics_request(&format!("so-{}", i % 5));
                client
                    .get_metrics(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .metric_values[0]
                    .metric_value_float
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 2.0);
    }
    // One evaluation of a seed unified plan is four queries (queue, output, input, kv).
    assert_eq!(running.source.calls.load(Ordering::SeqCst), 4);

    // Inside cache_ttl, IsActive reuses the same evaluation.
    let mut c = client.clone();
    assert!(
        c.is_active(scaled_object("so-0", &[("profile", "seed")]))
            .await
            .unwrap()
            .into_inner()
            .result
    );
    assert_eq!(running.source.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_are_reused_within_cache_ttl_and_not_past_it() {
    // The TTL's timing is tested in paused time (server::evaluator); end to end, a TTL
    // no call can outlast and one of 0 leave no race with a loaded machine.
    let running = start("5m").await;
    let mut client = client(running.addr).await;
    client.get_metrics(metrics_request("a")).await.unwrap();
    assert_eq!(running.source.calls.load(Ordering::SeqCst), 4);
    *running.source.queue.lock().unwrap() = 60.0;
    let cached = client
        .get_metrics(metrics_request("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cached.metric_values[0].metric_value_float, 2.0,
        "still the cached evaluation"
    );
    assert_eq!(running.source.calls.load(Ordering::SeqCst), 4);

    let running = start("0s").await;
    let mut uncached = self::client(running.addr).await;
    uncached.get_metrics(metrics_request("a")).await.unwrap();
    *running.source.queue.lock().unwrap() = 60.0;
    let fresh = uncached
        .get_metrics(metrics_request("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.metric_values[0].metric_value_float, 4.0);
    assert_eq!(running.source.calls.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_is_unavailable_never_zero() {
    let running = start("0s").await;
    let mut client = client(running.addr).await;
    running.source.failing.store(true, Ordering::SeqCst);
    let status = client.get_metrics(metrics_request("a")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("connection refused"),
        "{status:?}"
    );
    assert_eq!(
        client
            .is_active(scaled_object("a", &[("profile", "seed")]))
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    running.source.failing.store(false, Ordering::SeqCst);
    let ok = client
        .get_metrics(metrics_request("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.metric_values[0].metric_value_float, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metric_spec_pushes_changed_specs_and_streams_end_ok_on_shutdown() {
    let mut running = start("5s").await;
    let mut client = client(running.addr).await;
    let object = scaled_object("a", &[("profile", "seed")]);

    let mut specs = client
        .stream_metric_spec(object.clone())
        .await
        .unwrap()
        .into_inner();
    let first = specs.message().await.unwrap().unwrap();
    assert_eq!(first.metric_specs[0].metric_name, "llm-demand-seed-unified");

    let mut activity = client
        .stream_is_active(object.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        activity.message().await.unwrap().unwrap().result,
        "current state sent at once"
    );

    // A reload that does not change the spec sends nothing; one that removes the
    // profile ends the stream with INVALID_ARGUMENT.
    running
        .config
        .send(Arc::new(Config::parse(&config_text("5s", 30)).unwrap()))
        .unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), specs.message()).await;
    assert!(
        nothing.is_err(),
        "an unchanged spec is not pushed again: {nothing:?}"
    );

    let renamed = config_text("5s", 30).replace("  seed:", "  other:");
    running
        .config
        .send(Arc::new(Config::parse(&renamed).unwrap()))
        .unwrap();
    let status = specs.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    running
        .config
        .send(Arc::new(Config::parse(&config_text("5s", 15)).unwrap()))
        .unwrap();
    let mut specs = client
        .stream_metric_spec(object.clone())
        .await
        .unwrap()
        .into_inner();
    specs.message().await.unwrap().unwrap();

    // Shutdown: both streams end with status OK, and the server exits.
    running.stop.take().unwrap().send(()).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), activity.message())
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(None)),
        "StreamIsActive ends with OK: {end:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), specs.message())
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(None)),
        "StreamMetricSpec ends with OK: {end:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Every task the service spawned (streams, evaluations, the listener, the shutdown
    // watcher) has ended by the time serve returns.
    assert!(running.state.tasks.is_closed());
    assert!(
        running.state.tasks.is_empty(),
        "{} tasks left",
        running.state.tasks.len()
    );
}

/// A TCP server that accepts connections and never answers.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            if held.len() > 1000 {
                break;
            }
        }
    });
    (addr, task)
}

/// An HTTP server answering every request with a proxy's HTML error page.
async fn html_proxy() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_GATEWAY,
            [(axum::http::header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

fn prometheus_config(url: &str) -> String {
    format!(
        "prometheus:\n  url: {url}\n  timeout: 500ms\nprofiles:\n  seed:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_prometheus_is_unavailable_within_the_deadline() {
    let (addr, _hole) = black_hole().await;
    let scaler = Scaler::start(&prometheus_config(&format!("http://{addr}"))).await;
    let mut client = scaler.client().await;
    let started = Instant::now();
    let mut request = tonic::Request::new(metrics_request("a"));
    request.set_timeout(Duration::from_secs(3));
    let status = client.get_metrics(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("did not answer within"),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        client
            .get_metric_spec(scaled_object("a", &[("profile", "seed")]))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_bounds_a_slow_prometheus_even_with_a_long_timeout() {
    let (addr, _hole) = black_hole().await;
    let config =
        prometheus_config(&format!("http://{addr}")).replace("timeout: 500ms", "timeout: 20s");
    let scaler = Scaler::start(&config).await;
    let mut client = scaler.client().await;
    for deadline in [Duration::from_millis(800), Duration::from_millis(1500)] {
        let started = Instant::now();
        let mut request = tonic::Request::new(metrics_request("a"));
        request.set_timeout(deadline);
        let status = client.get_metrics(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("deadline"), "{status:?}");
        assert!(
            started.elapsed() < deadline,
            "{:?} for a deadline of {deadline:?}",
            started.elapsed()
        );
    }
    let mut request = tonic::Request::new(scaled_object("a", &[("profile", "seed")]));
    request.set_timeout(Duration::from_millis(800));
    assert_eq!(
        client.is_active(request).await.unwrap_err().code(),
        Code::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_error_page_is_unavailable() {
    let (addr, _proxy) = html_proxy().await;
    let scaler = Scaler::start(&prometheus_config(&format!("http://{addr}"))).await;
    let mut client = scaler.client().await;
    let status = client.get_metrics(metrics_request("a")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("not an instant vector") || status.message().contains("refused"),
        "{status:?}"
    );
    let metrics = scaler.metrics().await;
    assert!(
        metrics.contains(r#"keda_llm_scaler_evaluations_total{result="error"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_health_follow_the_lifecycle() {
    let scaler = Scaler::start(&prometheus_config("http://127.0.0.1:1")).await;
    let _ = scaler.client().await;
    let ready = common::http_get(&format!("http://{}/readyz", scaler.http_addr))
        .await
        .unwrap();
    assert!(
        ready.starts_with("HTTP/1.1 200") || ready.starts_with("HTTP/1.0 200"),
        "{ready}"
    );
    let healthz = common::http_get(&format!("http://{}/healthz", scaler.http_addr))
        .await
        .unwrap();
    assert!(healthz.contains("200"), "{healthz}");
    scaler.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_evaluation_answers_from_the_last_complete_one_within_max_staleness() {
    let running = start_with(&config_with("0s", 15, "max_staleness: 1s")).await;
    let mut client = client(running.addr).await;
    let value = |r: GetMetricsResponse| r.metric_values[0].metric_value_float;
    assert_eq!(
        value(
            client
                .get_metrics(metrics_request("a"))
                .await
                .unwrap()
                .into_inner()
        ),
        2.0
    );
    running.source.failing.store(true, Ordering::SeqCst);
    *running.source.queue.lock().unwrap() = 300.0;
    let stale = client
        .get_metrics(metrics_request("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        value(stale),
        2.0,
        "the last complete evaluation, not a guess"
    );
    let e = explain_seed(running.addr).await;
    assert!(
        e.stale && e.stale_cause.contains("connection refused"),
        "{e:?}"
    );
    assert_eq!(e.demand, 2.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = client.get_metrics(metrics_request("a")).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "past max_staleness: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrustworthy_reading_answers_from_the_last_good_one_within_max_staleness() {
    let running = start_with(&config_with("0s", 15, "max_staleness: 1s")).await;
    let mut client = client(running.addr).await;
    let value = |r: GetMetricsResponse| r.metric_values[0].metric_value_float;
    let good = client.get_metrics(metrics_request("a")).await.unwrap();
    assert_eq!(value(good.into_inner()), 2.0);
    // Prometheus answers, but with values the demand model refuses.
    for bad in [f64::NAN, -5.0, f64::INFINITY] {
        *running.source.queue.lock().unwrap() = bad;
        let stale = client.get_metrics(metrics_request("a")).await.unwrap();
        assert_eq!(
            value(stale.into_inner()),
            2.0,
            "{bad}: the last good evaluation"
        );
        let e = explain_seed(running.addr).await;
        assert!(e.stale && e.stale_cause.contains("queue depth"), "{e:?}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = client.get_metrics(metrics_request("a")).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "past max_staleness: {status:?}"
    );
    assert!(status.message().contains("queue depth"), "{status:?}");
    // A good reading again is used at once.
    *running.source.queue.lock().unwrap() = 60.0;
    let fresh = client.get_metrics(metrics_request("a")).await.unwrap();
    assert_eq!(value(fresh.into_inner()), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_term_error_skip_leaves_out_only_the_terms_that_need_the_failed_query() {
    // Throughput's query fails; queue (30 / 15 = 2) still answers under skip.
    let skip = start_with(&config_with(
        "0s",
        15,
        "max_staleness: 0s\n  on_term_error: skip",
    ))
    .await;
    *skip.source.failing_prefix.lock().unwrap() =
        Some("sum(rate(llm_tokens_processed_total{token_type=\"output\"".into());
    let mut skip_client = client(skip.addr).await;
    let answer = skip_client
        .get_metrics(metrics_request("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.metric_values[0].metric_value_float, 2.0);
    let e = explain_seed(skip.addr).await;
    assert_eq!(e.skipped_terms.len(), 1, "{e:?}");
    assert!(
        e.skipped_terms[0].starts_with("throughput left out: output_tokens query failed"),
        "{e:?}"
    );
    assert!(e.terms.iter().all(|t| t.name != "throughput"), "{e:?}");
    assert_eq!(e.inputs.unwrap().output_tokens_per_second, None);

    // Everything failing leaves no term: UNAVAILABLE even under skip.
    skip.source.failing.store(true, Ordering::SeqCst);
    assert_eq!(
        skip_client
            .get_metrics(metrics_request("a"))
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );

    // The default, fail: one failed query is UNAVAILABLE.
    let fail = start_with(&config_text("0s", 15)).await;
    *fail.source.failing_prefix.lock().unwrap() =
        Some("sum(rate(llm_tokens_processed_total{token_type=\"output\"".into());
    let mut fail_client = client(fail.addr).await;
    let status = fail_client
        .get_metrics(metrics_request("a"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("output_tokens query failed"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_scopes_queries_to_the_namespace_and_refuses_other_teams() {
    let text = config_text("0s", 15)
        .replace(
            "profiles:",
            "tenancy:\n  scope_by_namespace: true\nprofiles:",
        )
        .replace(
            "    engine: seed\n",
            "    engine: seed\n    allowed_namespaces: [inference, team-b]\n",
        );
    let running = start_with(&text).await;
    let mut client = client(running.addr).await;
    let answer = client
        .get_metrics(metrics_request("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.metric_values[0].metric_value_float, 2.0);
    {
        let asked = running.source.asked.lock().unwrap();
        assert_eq!(asked.len(), 4);
        assert!(
            asked.iter().all(|q| q.contains(r#"namespace="inference""#)),
            "{asked:?}"
        );
    }

    // Another allowed namespace gets its own queries (here: its fleet has no series).
    let mut other = scaled_object("a", &[("profile", "seed")]);
    other.namespace = "team-b".into();
    let request = GetMetricsRequest {
        scaled_object_ref: Some(other.clone()),
        metric_name: "llm-demand-seed-unified".into(),
    };
    assert_eq!(
        client
            .get_metrics(request)
            .await
            .unwrap()
            .into_inner()
            .metric_values[0]
            .metric_value_float,
        0.0
    );

    // A namespace the profile does not allow is refused on every call.
    other.namespace = "team-c".into();
    let status = client.get_metric_spec(other.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("team-c") && status.message().contains("allowed_namespaces"),
        "{status:?}"
    );
    assert_eq!(
        client.is_active(other).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn names_kubernetes_would_refuse_are_invalid_argument_and_leave_no_trace() {
    let running = start("5s").await;
    let mut client = client(running.addr).await;
    let huge = "a".repeat(500_000);
    let cases = [
        (huge, "inference".to_owned(), "500000 bytes"),
        ("a".repeat(254), "inference".to_owned(), "254 bytes"),
        ("Llama".to_owned(), "inference".to_owned(), "`Llama`"),
        ("-llama".to_owned(), "inference".to_owned(), "`-llama`"),
        (String::new(), "inference".to_owned(), "name ``"),
        ("llama".to_owned(), "n".repeat(64), "64 bytes"),
        ("llama".to_owned(), "in.ference".to_owned(), "`in.ference`"),
    ];
    for (name, namespace, shown) in cases {
        let mut object = scaled_object(&name, &[("profile", "seed")]);
        object.namespace = namespace.clone();
        let request = GetMetricsRequest {
            scaled_object_ref: Some(object.clone()),
            metric_name: "llm-demand-seed-unified".into(),
        };
        let status = client.get_metrics(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains(shown), "{}", status.message());
        // The error echoes at most a bounded, escaped prefix of what was sent.
        assert!(
            status.message().len() < 600,
            "{} bytes",
            status.message().len()
        );
        let status = client.is_active(object).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    // The longest names Kubernetes allows still work.
    let mut object = scaled_object(&"a".repeat(253), &[("profile", "seed")]);
    object.namespace = "n".repeat(63);
    assert!(client.is_active(object).await.is_ok());
    // Fifty more half-megabyte names leave nothing behind (the scaler runs in this
    // process), and other callers keep their answers.
    let before = rss_mib();
    for i in 0..50 {
        let name = format!("{i}{}", "a".repeat(500_000));
        let request = GetMetricsRequest {
            scaled_object_ref: Some(scaled_object(&name, &[("profile", "seed")])),
            metric_name: "llm-demand-seed-unified".into(),
        };
        assert_eq!(
            client.get_metrics(request).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    let after = rss_mib();
    assert!(after - before < 32.0, "RSS {before:.1} -> {after:.1} MiB");
    assert!(client.get_metrics(metrics_request("a")).await.is_ok());
}
