//! The Prometheus client against a fault-injecting fake Prometheus on loopback: answers
//! past the size and series limits, duplicate series, non-2xx bodies, redirects to
//! another origin, and more concurrent queries than `max_connections`. Each is refused
//! (or bounded) with an error that names the limit; a good answer still reads.

use keda_llm_scaler_test_support as common;
use keda_llm_scaler_test_support::fake_prometheus;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use fake_prometheus::{Fake, Reply, vector};
use keda_llm_scaler::{
    config::Config,
    source::{MetricsSource, SourceError, prometheus::Prometheus},
};

/// A client of `url` with the given extra `prometheus` keys.
fn client(url: &str, extra: &str) -> Prometheus {
    let text = format!(
        "prometheus:\n  url: {url}\n  timeout: 5s\n  headers: {{X-Scope-OrgID: tenant-a}}\n{extra}profiles:\n  p: {{engine: vllm, capacity: {{queue_per_replica: 2, output_tokens_per_second: 700}}}}\n"
    );
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    Prometheus::new(&config.prometheus).unwrap()
}

fn bad(result: Result<Vec<keda_llm_scaler::source::Sample>, SourceError>) -> String {
    match result {
        Err(SourceError::BadResponse(message)) => message,
        other => panic!("expected a bad response, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_answer_reads_and_answers_past_a_limit_are_refused_naming_it() {
    let good = vector(&[r#"{"pod":"a"}"#, r#"{"pod":"b"}"#]);
    let fake = Fake::start(move |_| Reply::json(200, &good)).await;
    let samples = client(&fake.url, "").query("up").await.unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].value, 3.0);
    let head = fake.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /api/v1/query?query=up "), "{head}");
    assert!(
        head.to_lowercase().contains("x-scope-orgid: tenant-a"),
        "{head}"
    );

    // Two series are within max_series 2; three are not.
    let two = client(&fake.url, "  max_series: 2\n")
        .query("up")
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    let three = vector(&[r#"{"pod":"a"}"#, r#"{"pod":"b"}"#, r#"{"pod":"c"}"#]);
    let fake = Fake::start(move |_| Reply::json(200, &three)).await;
    let error = bad(client(&fake.url, "  max_series: 2\n").query("up").await);
    assert!(error.contains("prometheus.max_series (2)"), "{error}");

    // 5,000 bytes against max_response_bytes 1024, announced and streamed.
    let big = vector(&[r#"{"pod":"x"}"#]) + &" ".repeat(5_000);
    for chunked in [None, Some(100)] {
        let body = big.clone();
        let fake = Fake::start(move |_| Reply {
            chunked,
            ..Reply::json(200, &body)
        })
        .await;
        let error = bad(client(&fake.url, "  max_response_bytes: 1024\n")
            .query("up")
            .await);
        assert!(
            error.contains("over prometheus.max_response_bytes (1024)"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn duplicates_and_non_2xx_bodies_are_never_data() {
    let twice = vector(&[r#"{"pod":"a"}"#, r#"{"pod":"a"}"#]);
    let fake = Fake::start(move |_| Reply::json(200, &twice)).await;
    let error = bad(client(&fake.url, "").query("up").await);
    assert!(error.contains("two series with the same labels"), "{error}");

    // A proxy's 503 around a success body.
    let body = vector(&[r#"{"pod":"a"}"#]);
    let fake = Fake::start(move |_| Reply::json(503, &body)).await;
    let error = bad(client(&fake.url, "").query("up").await);
    assert!(error.contains("HTTP 503"), "{error}");

    // Prometheus' own error answer keeps its kind and message.
    let fake = Fake::start(|_| {
        Reply::json(
            422,
            r#"{"status":"error","errorType":"execution","error":"query timed out"}"#,
        )
    })
    .await;
    match client(&fake.url, "").query("up").await {
        Err(SourceError::Query { kind, message }) => {
            assert_eq!(kind, "execution");
            assert_eq!(message, "query timed out");
        }
        other => panic!("{other:?}"),
    }

    // An HTML error page.
    let fake = Fake::start(|_| Reply {
        headers: vec![("Content-Type".into(), "text/html".into())],
        ..Reply::json(502, "<html>Bad gateway</html>")
    })
    .await;
    let error = bad(client(&fake.url, "").query("up").await);
    assert!(error.contains("HTTP 502"), "{error}");
}

#[tokio::test]
async fn redirects_are_followed_within_the_origin_only() {
    let good = vector(&[r#"{"pod":"a"}"#]);
    let elsewhere = {
        let good = good.clone();
        Fake::start(move |_| Reply::json(200, &good)).await
    };
    let target = format!("{}/api/v1/query?query=up", elsewhere.url);
    let away = Fake::start(move |_| Reply {
        headers: vec![("Location".into(), target.clone())],
        ..Reply::json(302, "")
    })
    .await;
    let error = bad(client(&away.url, "").query("up").await);
    assert!(error.contains("is not followed"), "{error}");
    assert!(
        elsewhere.requests.lock().unwrap().is_empty(),
        "neither the query nor the tenant header reached another origin"
    );

    // Within the origin: followed, headers included.
    let home = Fake::start(move |path| {
        if path.starts_with("/moved") {
            Reply::json(200, &good)
        } else {
            Reply {
                headers: vec![("Location".into(), "/moved/api/v1/query?query=up".into())],
                ..Reply::json(307, "")
            }
        }
    })
    .await;
    let samples = client(&home.url, "").query("up").await.unwrap();
    assert_eq!(samples.len(), 1);
    let requests = home.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1]
            .to_lowercase()
            .contains("x-scope-orgid: tenant-a")
    );
}

#[tokio::test]
async fn at_most_max_connections_queries_are_open_at_once() {
    let good = vector(&[r#"{"pod":"a"}"#]);
    let fake = Fake::start(move |_| Reply {
        delay: Duration::from_millis(100),
        ..Reply::json(200, &good)
    })
    .await;
    let prometheus = Arc::new(client(&fake.url, "  max_connections: 2\n"));
    let queries: Vec<_> = (0..6)
        .map(|_| {
            let prometheus = prometheus.clone();
            tokio::spawn(async move { prometheus.query("up").await })
        })
        .collect();
    for query in queries {
        assert!(query.await.unwrap().is_ok());
    }
    assert_eq!(fake.requests.lock().unwrap().len(), 6);
    assert!(fake.most_open.load(Ordering::SeqCst) <= 2);
}

#[test]
fn the_limits_are_checked_in_the_config() {
    for (key, value) in [
        ("max_series", "0"),
        ("max_response_bytes", "10"),
        ("max_connections", "100000"),
    ] {
        let text = format!(
            "prometheus:\n  url: http://127.0.0.1:9090\n  {key}: {value}\nprofiles:\n  p: {{engine: vllm, capacity: {{queue_per_replica: 2, output_tokens_per_second: 700}}}}\n"
        );
        let error = Config::parse(&text).unwrap_err().to_string();
        assert!(
            error.contains(&format!("prometheus.{key}: {value} is out of range")),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_trickling_body_times_out_and_a_stale_or_skewed_answer_is_refused() {
    // One byte every 50 ms: the 1 s query timeout covers the body, not just the headers.
    let body = vector(&[r#"{"pod":"a"}"#]);
    let fake = Fake::start(move |_| Reply {
        chunked: Some(1),
        chunk_delay: Duration::from_millis(50),
        ..Reply::json(200, &body)
    })
    .await;
    let text = format!(
        "prometheus:\n  url: {}\n  timeout: 1s\nprofiles:\n  p: {{engine: vllm, capacity: {{queue_per_replica: 2, output_tokens_per_second: 700}}}}\n",
        fake.url
    );
    let prometheus = Prometheus::new(&Config::parse(&text).unwrap().prometheus).unwrap();
    let started = std::time::Instant::now();
    match prometheus.query("up").await {
        Err(SourceError::Timeout(limit)) => assert_eq!(limit, Duration::from_secs(1)),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    // An answer stamped an hour ago (a cache in front of Prometheus, or a skewed clock).
    let old = fake_prometheus::now() - 3600.0;
    let stale = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"pod":"a"}},"value":[{old},"3"]}}]}}}}"#
    );
    let fake = Fake::start(move |_| Reply::json(200, &stale)).await;
    let error = bad(client(&fake.url, "").query("up").await);
    assert!(error.contains("-3600 s from now"), "{error}");

    // Warnings do not discard an answer.
    let warned = vector(&[r#"{"pod":"a"}"#]).replacen(
        r#"{"status":"success","#,
        r#"{"status":"success","warnings":["store-gateway timed out: partial result"],"#,
        1,
    );
    let fake = Fake::start(move |_| Reply::json(200, &warned)).await;
    assert_eq!(client(&fake.url, "").query("up").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finite_queues_whose_sum_overflows_are_unavailable_through_the_service() {
    // Two replicas each with a queue of 1e308: every sample is finite, the sum is not.
    let overflow = vector(&[r#"{"pod":"a"}"#, r#"{"pod":"b"}"#]).replace(r#""3""#, r#""1e308""#);
    let fake = Fake::start(move |path| {
        if path.contains("llm_queue_depth") {
            Reply::json(200, &overflow)
        } else {
            Reply::json(200, &vector(&[]))
        }
    })
    .await;
    let scaler = common::Scaler::start(&format!(
        "prometheus:\n  url: {}\nevaluation:\n  max_staleness: 0s\nprofiles:\n  p:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n",
        fake.url
    ))
    .await;
    let mut client = scaler.client().await;
    let object = common::scaled_object("overflow", &[("profile", "p")]);
    let status = common::demand(&mut client, &object).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("queue depth summed over replicas is inf"),
        "{status:?}"
    );
}
