//! TLS and mTLS on the gRPC listener with a real TLS client (tonic over rustls), as
//! KEDA connects with `enableTLS`, `caCert`, `tlsClientCert` and `tlsClientKey`; and a
//! certificate rotated in place is picked up without a restart.

use std::{path::Path, sync::Arc, time::Duration};

use keda_llm_scaler::{
    config::Config,
    proto::externalscaler::{ScaledObjectRef, external_scaler_client::ExternalScalerClient},
    server::{self, State},
    source::prometheus::Prometheus,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate and its key, in PEM.
fn leaf(ca: &Ca, name: &str, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write_server_files(dir: &Path, ca_for_server: &Ca) {
    let (cert, key) = leaf(
        ca_for_server,
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

async fn start(dir: &Path, client_ca: Option<&Ca>) -> u16 {
    let client_ca_line = match client_ca {
        Some(ca) => {
            std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
            format!("    client_ca_file: {}\n", dir.join("ca.crt").display())
        }
        None => String::new(),
    };
    let text = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n{client_ca_line}prometheus:\n  url: http://127.0.0.1:1\nprofiles:\n  p:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n",
        dir.join("tls.crt").display(),
        dir.join("tls.key").display(),
    );
    let config = Config::parse(&text).unwrap();
    let source = Prometheus::new(&config.prometheus).unwrap();
    let (_tx, rx) = watch::channel(Arc::new(config));
    let mut state = State::new(rx, source);
    state.tls_reload_interval = Duration::from_millis(200);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server::serve(
        Arc::new(state),
        listener,
        None,
        std::future::pending(),
    ));
    port
}

async fn call(port: u16, tls: Option<ClientTlsConfig>) -> Result<String, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let object = ScaledObjectRef {
        name: "a".into(),
        namespace: "default".into(),
        scaler_metadata: [("profile".to_owned(), "p".to_owned())]
            .into_iter()
            .collect(),
    };
    ExternalScalerClient::new(channel)
        .get_metric_spec(object)
        .await
        .map(|r| r.into_inner().metric_specs[0].metric_name.clone())
        .map_err(|s| format!("call: {s:?}"))
}

fn trusting(ca: &Ca) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    write_server_files(dir.path(), &server_ca);
    let port = start(dir.path(), None).await;
    assert_eq!(
        call(port, Some(trusting(&server_ca))).await.unwrap(),
        "llm-demand-p-unified"
    );
    assert!(
        call(port, None).await.is_err(),
        "plaintext must not be served on a TLS listener"
    );
    assert!(
        call(port, Some(trusting(&ca("someone else"))))
            .await
            .is_err(),
        "an untrusted server certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    write_server_files(dir.path(), &server_ca);
    let port = start(dir.path(), Some(&client_ca)).await;

    let (cert, key) = leaf(
        &client_ca,
        "keda-operator",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let valid = trusting(&server_ca).identity(Identity::from_pem(cert, key));
    assert_eq!(
        call(port, Some(valid)).await.unwrap(),
        "llm-demand-p-unified"
    );

    let without = call(port, Some(trusting(&server_ca))).await;
    assert!(
        without.is_err(),
        "a client without a certificate: {without:?}"
    );
    let stranger_ca = ca("stranger CA");
    let (cert, key) = leaf(
        &stranger_ca,
        "intruder",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let forged = call(
        port,
        Some(trusting(&server_ca).identity(Identity::from_pem(cert, key))),
    )
    .await;
    assert!(
        forged.is_err(),
        "a client certificate from another CA: {forged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = ca("old CA");
    write_server_files(dir.path(), &old_ca);
    let port = start(dir.path(), None).await;
    assert!(call(port, Some(trusting(&old_ca))).await.is_ok());

    let new_ca = ca("new CA");
    write_server_files(dir.path(), &new_ca);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if call(port, Some(trusting(&new_ca))).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        call(port, Some(trusting(&old_ca))).await.is_err(),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn unusable_tls_files_stop_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let text = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\nprometheus:\n  url: http://127.0.0.1:1\nprofiles:\n  p:\n    engine: seed\n    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}\n",
        dir.path().join("tls.crt").display(),
        dir.path().join("tls.key").display(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = server::run(
        Config::parse(&text).unwrap(),
        listener,
        None,
        std::future::pending(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("server.tls.cert_file"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explain_command_speaks_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    write_server_files(dir.path(), &server_ca);
    let port = start(dir.path(), Some(&client_ca)).await;
    std::fs::write(dir.path().join("server-ca.crt"), server_ca.pem()).unwrap();
    let (cert, key) = leaf(&client_ca, "operator", ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.path().join("client.crt"), cert).unwrap();
    std::fs::write(dir.path().join("client.key"), key).unwrap();
    let base = dir.path().to_path_buf();
    let path = move |name: &str| base.join(name).display().to_string();
    let explain = move |with_identity: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keda-llm-scaler"));
        command.args([
            "explain",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--name",
            "a",
            "--metadata",
            "profile=p",
            "--ca-cert",
            &path("server-ca.crt"),
            "--tls-server-name",
            "localhost",
        ]);
        if with_identity {
            command.args([
                "--client-cert",
                &path("client.crt"),
                "--client-key",
                &path("client.key"),
            ]);
        }
        command.output().unwrap()
    };
    let output = tokio::task::spawn_blocking(move || (explain(true), explain(false)))
        .await
        .unwrap();
    let (with, without) = output;
    // Prometheus is unreachable here: the explanation says so (exit 2), over mTLS.
    assert_eq!(
        with.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(String::from_utf8_lossy(&with.stdout).contains("llm-demand-p-unified"));
    assert_eq!(without.status.code(), Some(1));
}
