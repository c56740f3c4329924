//! Credentials and headers on every query: a bearer token file re-read when rotated,
//! basic auth, extra headers such as Mimir's `X-Scope-OrgID`, and a reload that changes
//! them. The endpoint here checks them as an authenticating proxy in front of Prometheus
//! would, and answers in Prometheus' JSON.

use keda_llm_scaler_test_support as common;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use common::{Scaler, demand, eventually, scaled_object};
use tokio::net::TcpListener;
use tonic::Code;

/// What the endpoint insists on.
#[derive(Default)]
struct Expected {
    authorization: Option<String>,
    org_id: Option<String>,
}

fn guarded_app(expected: Arc<Mutex<Expected>>) -> axum::Router {
    axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move |headers: HeaderMap, query: axum::extract::RawQuery| {
            let expected = expected.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                {
                    let expected = expected.lock().unwrap();
                    if expected.authorization.is_some()
                        && header("authorization") != expected.authorization
                    {
                        return (StatusCode::UNAUTHORIZED, "unauthorized\n".to_owned())
                            .into_response();
                    }
                    if expected.org_id.is_some() && header("x-scope-orgid") != expected.org_id {
                        return (StatusCode::UNAUTHORIZED, "no org id\n".to_owned())
                            .into_response();
                    }
                }
                let query = query.0.unwrap_or_default();
                let result = if query.contains("llm_queue_depth") {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    format!(r#"[{{"metric":{{"pod":"a"}},"value":[{now},"30"]}}]"#)
                } else {
                    "[]".to_owned()
                };
                let body = format!(
                    r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#
                );
                ([("content-type", "application/json")], body).into_response()
            }
        }),
    )
}

async fn guarded_prometheus(expected: Arc<Mutex<Expected>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = guarded_app(expected);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The scaler's own TLS listener, serving HTTP for the fake Prometheus.
struct TlsListener {
    incoming: keda_llm_scaler::server::tls::Incoming,
    addr: std::net::SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = keda_llm_scaler::server::guard::Guarded<
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    >;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_stream::StreamExt;
        loop {
            if let Some(Ok(io)) = self.incoming.next().await {
                return (io, self.addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_lets_the_scaler_trust_a_private_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    write(&dir.path().join("tls.crt"), &cert.pem());
    write(&dir.path().join("tls.key"), &key.serialize_pem());
    write(&dir.path().join("ca.crt"), &ca.pem());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let files = keda_llm_scaler::server::tls::TlsFiles {
        cert_file: dir.path().join("tls.crt"),
        key_file: dir.path().join("tls.key"),
        client_ca_file: None,
        reload_interval: Duration::from_secs(60),
        alpn_protocols: vec![b"http/1.1".to_vec()],
    };
    let limits = keda_llm_scaler::server::guard::Limits::new(Duration::from_secs(10), 64);
    let incoming = keda_llm_scaler::server::tls::incoming(
        listener,
        files,
        limits,
        Default::default(),
        &Default::default(),
    )
    .unwrap();
    let app = guarded_app(Arc::new(Mutex::new(Expected::default())));
    tokio::spawn(async move {
        axum::serve(TlsListener { incoming, addr }, app)
            .await
            .unwrap()
    });
    let url = format!("https://localhost:{}", addr.port());

    let trusted = Scaler::start(&config_url(
        &url,
        &format!("  ca_file: {}\n", dir.path().join("ca.crt").display()),
    ))
    .await;
    let object = scaled_object("a", &[("profile", "seed")]);
    assert_eq!(
        demand(&mut trusted.client().await, &object).await.unwrap(),
        2.0
    );

    let untrusted = Scaler::start(&config_url(&url, "")).await;
    let status = demand(&mut untrusted.client().await, &object)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

fn config(addr: std::net::SocketAddr, auth: &str) -> String {
    config_url(&format!("http://{addr}"), auth)
}

fn config_url(url: &str, auth: &str) -> String {
    format!(
        "prometheus:\n  url: {url}\n{auth}evaluation:\n  cache_ttl: 0s\n  max_staleness: 0s\nprofiles:\n  seed:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n"
    )
}

fn write(path: &PathBuf, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_sent_and_re_read_when_rotated() {
    let expected = Arc::new(Mutex::new(Expected {
        authorization: Some("Bearer first-token".into()),
        org_id: Some("team-a".into()),
    }));
    let addr = guarded_prometheus(expected.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "first-token\n");
    let auth = format!(
        "  bearer_token_file: {}\n  headers:\n    X-Scope-OrgID: team-a\n",
        token.display()
    );
    let scaler = Scaler::start(&config(addr, &auth)).await;
    let mut client = scaler.client().await;
    let object = scaled_object("a", &[("profile", "seed")]);
    assert_eq!(demand(&mut client, &object).await.unwrap(), 2.0);

    // The token rotates: the endpoint wants the new one, and gets it without a restart.
    expected.lock().unwrap().authorization = Some("Bearer second-token".into());
    assert_eq!(
        demand(&mut client, &object).await.unwrap_err().code(),
        Code::Unavailable
    );
    write(&token, "second-token");
    assert_eq!(demand(&mut client, &object).await.unwrap(), 2.0);

    // No token file: UNAVAILABLE naming the file.
    std::fs::remove_file(&token).unwrap();
    let status = demand(&mut client, &object).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("no credentials") && status.message().contains("token"),
        "{status:?}"
    );
    let metrics = scaler.metrics().await;
    assert!(
        metrics.contains(
            r#"keda_llm_scaler_prometheus_query_errors_total{signal="queue",kind="auth"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent() {
    // base64("scaler:s3cret")
    let expected = Arc::new(Mutex::new(Expected {
        authorization: Some("Basic c2NhbGVyOnMzY3JldA==".into()),
        org_id: None,
    }));
    let addr = guarded_prometheus(expected).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    write(&password, "s3cret\n");
    let auth = format!(
        "  basic_auth:\n    username: scaler\n    password_file: {}\n",
        password.display()
    );
    let scaler = Scaler::start(&config(addr, &auth)).await;
    let mut client = scaler.client().await;
    let object = scaled_object("a", &[("profile", "seed")]);
    assert_eq!(demand(&mut client, &object).await.unwrap(), 2.0);
    write(&password, "wrong");
    assert_eq!(
        demand(&mut client, &object).await.unwrap_err().code(),
        Code::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_prometheus_section_applies_it() {
    let expected = Arc::new(Mutex::new(Expected {
        authorization: None,
        org_id: Some("team-a".into()),
    }));
    let addr = guarded_prometheus(expected.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    write(&path, &config(addr, "  headers: {X-Scope-OrgID: team-a}\n"));
    let scaler = Scaler::start_from_file(&path).await;
    let mut client = scaler.client().await;
    let object = scaled_object("a", &[("profile", "seed")]);
    assert_eq!(demand(&mut client, &object).await.unwrap(), 2.0);

    expected.lock().unwrap().org_id = Some("team-b".into());
    write(&path, &config(addr, "  headers: {X-Scope-OrgID: team-b}\n"));
    eventually(Duration::from_secs(15), "the new header", || {
        let mut client = client.clone();
        let object = object.clone();
        async move { demand(&mut client, &object).await.ok() }
    })
    .await;
    scaler.shutdown().await.unwrap();
}

#[test]
fn auth_settings_are_checked() {
    use keda_llm_scaler::config::Config;
    let base = "prometheus:\n  url: http://x:9090\nAUTHprofiles:\n  p:\n    engine: seed\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}\n";
    let error = |auth: &str| {
        Config::parse(&base.replace("AUTH", auth))
            .unwrap_err()
            .to_string()
    };
    let e = error("  bearer_token_file: /t\n  basic_auth: {username: u, password_file: /p}\n");
    assert!(e.contains("at most one"), "{e}");
    let e = error("  headers: {Authorization: Bearer x}\n");
    assert!(
        e.contains("prometheus.headers.Authorization") && e.contains("bearer_token_file"),
        "{e}"
    );
    let e = error("  headers: {\"Bad Header\": x}\n");
    assert!(e.contains("not a valid HTTP header name"), "{e}");
    let e = error("  basic_auth: {username: u}\n");
    assert!(e.contains("password_file"), "{e}");
}
