//! TLS (and mTLS) on the gRPC listener. Certificate, key and client CA are re-read when
//! their files change (cert-manager rotates them in place), and new connections use the
//! new ones; connections already open keep theirs.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::aws_lc_rs,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::TlsSection;

/// How often the files are compared with what is in use.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The listener's TLS files and how often to look for new ones.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// The CA client certificates must be signed by (mTLS); `None`: no client certificate.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are compared for a rotation.
    pub reload_interval: Duration,
    /// ALPN protocols offered, `h2` for gRPC.
    pub alpn_protocols: Vec<Vec<u8>>,
}

impl From<&TlsSection> for TlsFiles {
    fn from(section: &TlsSection) -> Self {
        Self {
            cert_file: section.cert_file.clone(),
            key_file: section.key_file.clone(),
            client_ca_file: section.client_ca_file.clone(),
            reload_interval: RELOAD_INTERVAL,
            alpn_protocols: vec![b"h2".to_vec()],
        }
    }
}

/// The files' contents, to notice a rotation.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    fn read(&self) -> Result<Contents, String> {
        let read = |path: &PathBuf, key: &str| {
            std::fs::read(path).map_err(|e| format!("server.tls.{key} {}: {e}", path.display()))
        };
        Ok(Contents {
            cert: read(&self.cert_file, "cert_file")?,
            key: read(&self.key_file, "key_file")?,
            client_ca: self
                .client_ca_file
                .as_ref()
                .map(|path| read(path, "client_ca_file"))
                .transpose()?,
        })
    }

    /// Builds the rustls config from the files as they are now.
    fn load(&self) -> Result<(Contents, Arc<ServerConfig>), String> {
        let contents = self.read()?;
        let config = server_config(&contents, &self.alpn_protocols)?;
        Ok((contents, config))
    }
}

fn server_config(
    contents: &Contents,
    alpn_protocols: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&contents.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls.cert_file: {e}"))?;
    if certs.is_empty() {
        return Err("server.tls.cert_file: no PEM certificate in it".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&contents.key)
        .map_err(|e| format!("server.tls.key_file: {e}"))?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &contents.client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("server.tls.client_ca_file: no PEM certificate in it".into());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: the key does not fit the certificate: {e}"))?;
    config.alpn_protocols = alpn_protocols.to_vec();
    Ok(Arc::new(config))
}

/// Accepted TLS connections, for tonic's `serve_with_incoming_shutdown`.
pub type Incoming =
    ReceiverStream<Result<super::guard::Guarded<TlsStream<TcpStream>>, std::io::Error>>;

/// Starts accepting TLS connections on `listener` until `shutdown`; fails at once when
/// the files do not make a valid configuration.
pub fn incoming(
    listener: TcpListener,
    files: TlsFiles,
    limits: super::guard::Limits,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<Incoming, String> {
    let (contents, config) = files.load()?;
    let current = Arc::new(RwLock::new(config));
    tasks.spawn(watch_files(
        files,
        contents,
        current.clone(),
        shutdown.clone(),
    ));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = tasks.clone();
    tasks.spawn(async move {
        let mut refused_log = None;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = super::guard::accept(&listener, &limits, &mut refused_log) => accepted,
            };
            let (tcp, permit) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = tcp
                .peer_addr()
                .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
            let acceptor = TlsAcceptor::from(current.read().expect("TLS config lock").clone());
            let tx = tx.clone();
            // The TLS handshake and the HTTP/2 opening share one budget.
            let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
            handshakes.spawn(async move {
                match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let opening =
                            super::guard::Opening::Bytes(super::guard::HTTP2_OPENING_BYTES);
                        let guarded = super::guard::Guarded::new(stream, permit, opening, deadline);
                        let _ = tx.send(Ok(guarded)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Swaps in new certificates when the files change; a broken set is logged and ignored.
async fn watch_files(
    files: TlsFiles,
    mut in_use: Contents,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(files.reload_interval) => {}
        }
        // Off the runtime: a hung mount must not stall the threads serving KEDA.
        let reader = files.clone();
        let read = tokio::task::spawn_blocking(move || reader.read())
            .await
            .unwrap_or_else(|e| Err(format!("the TLS file read failed: {e}")));
        let contents = match read {
            Ok(contents) if contents != in_use => contents,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the TLS files; the current certificate stays");
                continue;
            }
        };
        // A rotation writes the files one by one: a half-written set fails here and is
        // tried again next round.
        match server_config(&contents, &files.alpn_protocols) {
            Ok(config) => {
                *current.write().expect("TLS config lock") = config;
                in_use = contents;
                tracing::info!("TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS files refused; the current certificate stays")
            }
        }
    }
}
