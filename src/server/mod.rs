//! The network edge: KEDA's gRPC protocol, Explain, health and reflection on one
//! listener; `/metrics`, `/healthz` and `/readyz` on another.

mod carried;
mod deadline;
mod evaluator;
mod explain;
pub mod guard;
mod http;
mod scaler;
mod state;
pub mod telemetry;
pub mod tls;
pub mod tracked;

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::FutureExt;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

pub use evaluator::Evaluator;
pub use explain::render_explanation;
pub use state::State;

use crate::{
    config::{
        Config, ConfigError,
        reload::{self, Reloader},
    },
    proto::{
        externalscaler::external_scaler_server::ExternalScalerServer,
        llmscaler::v1::explain_server::ExplainServer,
    },
    source::{MetricsSource, prometheus::Prometheus},
};

/// The largest request accepted: trigger metadata is a few hundred bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// How long in-flight calls may take to finish once shutdown begins; well inside
/// Kubernetes' default 30 s termination grace period.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// HTTP/2 and TCP keepalive on the gRPC listener: a ping every 30 s, and a peer that
/// does not answer within 20 s is gone.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config file could not be loaded at start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Prometheus client could not be built (an unreadable CA file, say).
    #[error("cannot reach Prometheus: {0}")]
    Source(String),
    /// The gRPC listener failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP listener failed.
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    /// The TLS files could not be loaded at start.
    #[error("{0}")]
    Tls(String),
}

/// Serves against the Prometheus the config names, until `shutdown` resolves.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let source = Prometheus::new(&config.prometheus).map_err(ServeError::Source)?;
    let (_config_tx, config_rx) = watch::channel(Arc::new(config));
    let state = Arc::new(State::new(config_rx, source));
    serve(state, grpc, http, shutdown).await
}

/// Serves the config file at `path`, reloading it when it changes (a mounted ConfigMap),
/// until `shutdown` resolves.
pub async fn run_from_file(
    path: &std::path::Path,
    grpc: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Off the runtime and bounded, as every later read: a FIFO or a device at the path
    // is refused instead of freezing the start.
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let text = reload::read_off_runtime(path, &busy)
        .await
        .map_err(ConfigError::from)?;
    let config = Config::parse(&text)?;
    let source = Arc::new(Prometheus::new(&config.prometheus).map_err(ServeError::Source)?);
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let state = Arc::new(State::new(config_rx.clone(), source.clone()));
    state.tasks.spawn(follow_prometheus_changes(
        source,
        config_rx,
        state.shutdown.clone(),
    ));
    let telemetry = state.telemetry.clone();
    let reloader = Reloader {
        path: path.to_path_buf(),
        configs: config_tx,
        status: state.reload.clone(),
        on_reload: Box::new(move |status| telemetry.record_reload(status)),
        poll_interval: reload::POLL_INTERVAL,
    };
    state
        .tasks
        .spawn(reloader.run(text, state.shutdown.clone()));
    serve(state, grpc, http, shutdown).await
}

/// Rebuilds the Prometheus client when a reload changes the `prometheus` section.
async fn follow_prometheus_changes(
    source: Arc<Prometheus>,
    mut configs: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = configs.changed() => if changed.is_err() { return },
        }
        let config = configs.borrow_and_update().clone();
        if let Err(e) = source.reconfigure(&config.prometheus) {
            // The section validated, but e.g. its CA file is unreadable: keep the old client.
            tracing::error!(error = %e, "cannot apply the new prometheus section; the previous one stays");
        }
    }
}

/// Every gRPC service on one listener: health, reflection, KEDA's protocol and Explain.
fn grpc_router<S: MetricsSource>(
    state: &Arc<State<S>>,
    section: &crate::config::ServerSection,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .max_concurrent_streams(section.max_concurrent_streams)
        // Pings notice a peer that went away without closing (a node lost): its
        // connection and streams are dropped instead of held.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        .add_service(health)
        .add_service(reflection_v1())
        .add_service(reflection_v1alpha())
        .add_service(
            ExternalScalerServer::new(scaler::Scaler::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ExplainServer::new(explain::ExplainService::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
}

/// Serves a prepared state (any metrics source) until `shutdown` resolves. On shutdown,
/// health and readiness turn NOT_SERVING first, streams end with status OK, and in-flight
/// calls finish.
pub async fn serve<S: MetricsSource>(
    state: Arc<State<S>>,
    grpc: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExternalScalerServer<scaler::Scaler<S>>>()
        .await;
    health
        .set_serving::<ExplainServer<explain::ExplainService<S>>>()
        .await;

    let token = state.shutdown.clone();
    watch_shutdown(&state, health.clone(), shutdown);
    let server_section = state.config.borrow().server.clone();
    let limits = || {
        guard::Limits::new(
            server_section.handshake_timeout.value.0,
            server_section.max_connections,
        )
    };
    let router = grpc_router(&state, &server_section, health_service);
    let signal = {
        let token = token.clone();
        async move { token.cancelled().await }
    };
    let grpc_server = match &server_section.tls {
        None => router
            .serve_with_incoming_shutdown(
                guard::incoming(grpc, limits(), token.clone(), &state.tasks),
                signal,
            )
            .boxed(),
        Some(section) => {
            let mut files = tls::TlsFiles::from(section);
            files.reload_interval = state.tls_reload_interval;
            let incoming = tls::incoming(grpc, files, limits(), token.clone(), &state.tasks)
                .map_err(|e| {
                    token.cancel();
                    ServeError::Tls(e)
                })?;
            router
                .serve_with_incoming_shutdown(incoming, signal)
                .boxed()
        }
    };
    state.ready.store(true, Ordering::SeqCst);
    // /readyz answers from here on: never "not ready" once the gRPC side can serve.
    let http_task = http.map(|listener| {
        let router = http::router(state.clone());
        let token = token.clone();
        let listener = guard::HttpListener::new(listener, limits());
        state.tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        })
    });
    tracing::info!("serving");
    drain(&state, grpc_server, http_task).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Reflection over this service's and health's descriptors.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The reflection service (v1).
fn reflection_v1() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    reflection()
        .build_v1()
        .expect("descriptors compiled into the binary are valid")
}

/// The same for clients that still speak v1alpha (grpcurl's older releases).
fn reflection_v1alpha() -> tonic_reflection::server::v1alpha::ServerReflectionServer<
    impl tonic_reflection::server::v1alpha::ServerReflection,
> {
    reflection()
        .build_v1alpha()
        .expect("descriptors compiled into the binary are valid")
}

/// On `shutdown` (or a cancel from elsewhere): readiness and health turn NOT_SERVING,
/// then the token every listener and stream watches is cancelled.
fn watch_shutdown<S: MetricsSource>(
    state: &Arc<State<S>>,
    health: tonic_health::server::HealthReporter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = state.shutdown.cancelled() => {}
        }
        state.ready.store(false, Ordering::SeqCst);
        health
            .set_not_serving::<ExternalScalerServer<scaler::Scaler<S>>>()
            .await;
        health
            .set_not_serving::<ExplainServer<explain::ExplainService<S>>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        state.shutdown.cancel();
    });
}

/// Runs the listeners until shutdown, then drains: calls get DRAIN_GRACE, then every
/// tracked task gets it again.
async fn drain<S: MetricsSource>(
    state: &Arc<State<S>>,
    grpc_server: futures::future::BoxFuture<'_, Result<(), tonic::transport::Error>>,
    http_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
) -> Result<(), ServeError> {
    let token = state.shutdown.clone();
    // Streams of ours end at shutdown; a client's own long call (a health Watch) would
    // hold the drain open, so it gets DRAIN_GRACE and no more.
    let drain_limit = async {
        token.cancelled().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    let grpc_result = tokio::select! {
        result = grpc_server => result,
        () = drain_limit => {
            tracing::warn!("calls still open {DRAIN_GRACE:?} after shutdown began; stopping anyway");
            Ok(())
        }
    };
    token.cancel();
    if let Some(task) = http_task {
        match task.await {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
    }
    grpc_result?;
    // Streams, watchers and evaluations end on the cancelled token; an evaluation waits
    // for its Prometheus answer (at most the query timeout), so the wait is bounded.
    state.tasks.close();
    if tokio::time::timeout(DRAIN_GRACE, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = state.tasks.len(),
            "tasks still running {DRAIN_GRACE:?} after the listeners stopped; stopping anyway"
        );
    }
    Ok(())
}
