//! `/metrics` (OpenMetrics), `/healthz` and `/readyz`.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Router,
    extract::State as AxumState,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use super::state::State;
use crate::source::MetricsSource;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router<S: MetricsSource>(state: Arc<State<S>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .with_state(state)
}

async fn metrics<S: MetricsSource>(
    AxumState(state): AxumState<Arc<State<S>>>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.telemetry.encode(),
    )
}

async fn readyz<S: MetricsSource>(AxumState(state): AxumState<Arc<State<S>>>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
