//! Both listeners close a connection that does not send its opening within
//! `server.handshake_timeout` (a silent TCP connection, a partial HTTP request, an
//! HTTP/2 preface without its SETTINGS frame), refuse connections past
//! `server.max_connections`, and keep an idle client that did open properly (KEDA's one
//! long-lived connection) for longer than the timeout.

use keda_llm_scaler_test_support as common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{Scaler, metric_name, rss_mib, scaled_object};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const CONFIG: &str = "server:\n  handshake_timeout: 1s\n  max_connections: 8\nprometheus:\n  url: http://127.0.0.1:1\nprofiles:\n  chat:\n    engine: seed\n    capacity:\n      queue_per_replica: 15\n      output_tokens_per_second: 5000\n";

/// Connects, sends `bytes`, and returns how long until the server closed the
/// connection (EOF or reset), or `None` if it is still open after `limit`.
async fn closed_after(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // The server may write (an HTTP/2 SETTINGS frame) before giving up.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_open_are_closed_after_the_handshake_timeout() {
    let scaler = Scaler::start(CONFIG).await;
    let limit = Duration::from_secs(5);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let cases: [(&str, SocketAddr, &[u8]); 4] = [
        ("silent gRPC", scaler.grpc_addr, b""),
        ("HTTP/2 preface without SETTINGS", scaler.grpc_addr, preface),
        ("silent HTTP", scaler.http_addr, b""),
        (
            "partial HTTP request",
            scaler.http_addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        ),
    ];
    let closes = cases
        .iter()
        .map(|(_, addr, bytes)| closed_after(*addr, bytes, limit));
    let closes = futures::future::join_all(closes).await;
    for ((what, _, _), closed) in cases.iter().zip(closes) {
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
        assert!(
            closed >= Duration::from_millis(900),
            "{what}: closed after {closed:?}"
        );
    }
    // A complete HTTP request is answered.
    let metrics = common::http_get(&format!("http://{}/metrics", scaler.http_addr))
        .await
        .unwrap();
    assert!(metrics.contains("200"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_ones_are_closed_until_some_go() {
    let scaler = Scaler::start(CONFIG).await;
    // Eight silent connections hold every permit of the gRPC listener...
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(scaler.grpc_addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a ninth is closed at once, long before the handshake timeout.
    let ninth = closed_after(scaler.grpc_addr, b"", Duration::from_secs(5))
        .await
        .expect("the ninth connection is closed");
    assert!(ninth < Duration::from_millis(800), "closed after {ninth:?}");
    // The HTTP listener has its own permits.
    let metrics = common::http_get(&format!("http://{}/metrics", scaler.http_addr))
        .await
        .unwrap();
    assert!(metrics.contains("200"));
    // Once the silent ones time out, clients get in again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(held);
    let mut client = scaler.client().await;
    let object = scaled_object("chat", &[("profile", "chat")]);
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_opened_properly_may_idle_longer_than_the_timeout() {
    let scaler = Scaler::start(CONFIG).await;
    let mut client = scaler.client().await;
    let object = scaled_object("chat", &[("profile", "chat")]);
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
    // Idle for three handshake timeouts on one connection, as KEDA's is between polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_that_never_open_cost_little_and_go() {
    let config = CONFIG.replace("max_connections: 8", "max_connections: 4096");
    let scaler = Scaler::start(&config).await;
    let mut client = scaler.client().await;
    let object = scaled_object("chat", &[("profile", "chat")]);
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
    let before = rss_mib();
    // 500 silent gRPC connections, 250 HTTP/2 prefaces without SETTINGS, 250 partial
    // HTTP requests: bounded in count and in time.
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let partial: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
    let mut open = Vec::new();
    for i in 0..1000 {
        let (addr, bytes) = match i % 4 {
            0 | 1 => (scaler.grpc_addr, &b""[..]),
            2 => (scaler.grpc_addr, preface),
            _ => (scaler.http_addr, partial),
        };
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        open.push(stream);
    }
    // Other callers are served meanwhile.
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
    let during = rss_mib();
    // Every one is closed by the server after the 1 s handshake timeout.
    let closed = futures::future::join_all(open.iter_mut().map(|stream| async move {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }))
    .await;
    assert!(
        closed.iter().all(|c| *c),
        "{} still open",
        closed.iter().filter(|c| !**c).count()
    );
    drop(open);
    eprintln!("RSS before {before:.1} MiB, with 1,000 waiting connections {during:.1} MiB");
    assert!(during - before < 64.0, "{before:.1} -> {during:.1} MiB");
    assert_eq!(
        metric_name(&mut client, &object).await,
        "llm-demand-chat-unified"
    );
}
