//! KEDA's `externalscaler.ExternalScaler` service.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{deadline, state::State};
use crate::{
    proto::externalscaler::{
        GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
        MetricValue, ScaledObjectRef, external_scaler_server::ExternalScaler,
    },
    source::MetricsSource,
};

/// Messages a slow stream reader may fall behind by before the producer waits.
const STREAM_BUFFER: usize = 4;

pub struct Scaler<S> {
    state: Arc<State<S>>,
}

impl<S> Scaler<S> {
    pub fn new(state: Arc<State<S>>) -> Self {
        Self { state }
    }
}

impl<S: MetricsSource> Scaler<S> {
    /// Counts the call by method and code.
    fn finish<T>(
        &self,
        method: &str,
        started: tokio::time::Instant,
        result: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.state
            .telemetry
            .record_grpc(method, code, Some(started.elapsed().as_secs_f64()));
        if let Err(status) = &result {
            tracing::debug!(method, code = ?status.code(), message = status.message(), "call failed");
        }
        result.map(Response::new)
    }

    fn metric_spec(
        &self,
        scaled_object: &ScaledObjectRef,
    ) -> Result<GetMetricSpecResponse, Status> {
        let resolved = self.state.resolve(scaled_object)?;
        Ok(spec_for(&resolved.target.metric_name))
    }
}

fn spec_for(metric_name: &str) -> GetMetricSpecResponse {
    #[allow(deprecated)]
    let spec = MetricSpec {
        metric_name: metric_name.to_owned(),
        target_size: 1,
        target_size_float: 1.0,
    };
    GetMetricSpecResponse {
        metric_specs: vec![spec],
    }
}

fn scaled_object_of(request: &GetMetricsRequest) -> Result<&ScaledObjectRef, Status> {
    request
        .scaled_object_ref
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("GetMetricsRequest.scaledObjectRef is required"))
}

#[tonic::async_trait]
impl<S: MetricsSource> ExternalScaler for Scaler<S> {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let started = tokio::time::Instant::now();
        let timeout = deadline::caller_timeout(request.metadata());
        let scaled_object = request.into_inner();
        let result = deadline::within(timeout, self.state.demand(&scaled_object))
            .await
            .map(|(_, demand)| IsActiveResponse {
                result: demand.active,
            });
        self.finish("IsActive", started, result)
    }

    type StreamIsActiveStream = ReceiverStream<Result<IsActiveResponse, Status>>;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let scaled_object = request.into_inner();
        if let Err(status) = self.state.resolve(&scaled_object) {
            self.state
                .telemetry
                .record_grpc("StreamIsActive", status.code(), None);
            return Err(status);
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let state = self.state.clone();
        let span = tracing::info_span!(
            "StreamIsActive",
            namespace = %scaled_object.namespace,
            name = %scaled_object.name
        );
        self.state.tasks.spawn(tracing::Instrument::instrument(
            async move {
                let streams = state
                    .telemetry
                    .open_streams
                    .get_or_create(&super::telemetry::MethodLabels {
                        method: "StreamIsActive".into(),
                    })
                    .clone();
                streams.inc();
                let code = push_activity(&state, &scaled_object, &tx).await;
                streams.dec();
                state.telemetry.record_grpc("StreamIsActive", code, None);
            },
            span,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let started = tokio::time::Instant::now();
        let result = self.metric_spec(request.get_ref());
        self.finish("GetMetricSpec", started, result)
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let started = tokio::time::Instant::now();
        let timeout = deadline::caller_timeout(request.metadata());
        let request = request.into_inner();
        let result = async {
            let scaled_object = scaled_object_of(&request)?;
            let resolved = self.state.resolve(scaled_object)?;
            let expected = &resolved.target.metric_name;
            if !request.metric_name.eq_ignore_ascii_case(expected) {
                return Err(Status::not_found(format!(
                    "metric `{}` is not served for {}/{}: expected `{expected}`",
                    crate::source::truncated(&request.metric_name),
                    scaled_object.namespace,
                    scaled_object.name
                )));
            }
            let demand = self.state.demand_of(scaled_object, &resolved);
            let demand = deadline::within(timeout, demand).await?;
            #[allow(deprecated)]
            let value = MetricValue {
                metric_name: expected.clone(),
                metric_value: demand.replicas.ceil() as i64,
                metric_value_float: demand.replicas,
            };
            Ok(GetMetricsResponse {
                metric_values: vec![value],
            })
        }
        .await;
        self.finish("GetMetrics", started, result)
    }

    type StreamMetricSpecStream = ReceiverStream<Result<GetMetricSpecResponse, Status>>;

    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let scaled_object = request.into_inner();
        let first = match self.metric_spec(&scaled_object) {
            Ok(spec) => spec,
            Err(status) => {
                self.state
                    .telemetry
                    .record_grpc("StreamMetricSpec", status.code(), None);
                return Err(status);
            }
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let state = self.state.clone();
        self.state.tasks.spawn(async move {
            let code = push_specs(&state, &scaled_object, first, &tx).await;
            state.telemetry.record_grpc("StreamMetricSpec", code, None);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends the activity at once, then on transitions only; returns the code the stream ended with.
/// How often a stream logs the same failure.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

async fn push_activity<S: MetricsSource>(
    state: &State<S>,
    scaled_object: &ScaledObjectRef,
    tx: &mpsc::Sender<Result<IsActiveResponse, Status>>,
) -> tonic::Code {
    let mut last_sent: Option<bool> = None;
    let mut warned: Option<(String, tokio::time::Instant)> = None;
    loop {
        match state.demand(scaled_object).await {
            Ok((_, demand)) if last_sent != Some(demand.active) => {
                if tx
                    .send(Ok(IsActiveResponse {
                        result: demand.active,
                    }))
                    .await
                    .is_err()
                {
                    return tonic::Code::Cancelled;
                }
                last_sent = Some(demand.active);
            }
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // The config changed under the stream and no longer accepts its metadata.
                let code = status.code();
                let _ = tx.send(Err(status)).await;
                return code;
            }
            Err(status) => {
                // Keep the stream: KEDA ignores `false`, and a guessed `true` would scale a
                // fleet. The same problem is logged once a minute per stream.
                let repeat =
                    warned
                        .as_ref()
                        .is_some_and(|(last, at): &(String, tokio::time::Instant)| {
                            last == status.message() && at.elapsed() < WARN_EVERY
                        });
                if !repeat {
                    tracing::warn!(
                        namespace = scaled_object.namespace,
                        name = scaled_object.name,
                        error = status.message(),
                        "StreamIsActive: no trustworthy activity this round"
                    );
                    warned = Some((status.message().to_owned(), tokio::time::Instant::now()));
                }
            }
        }
        if let std::ops::ControlFlow::Break(code) = wait(state, tx, state.push_interval()).await {
            return code;
        }
    }
}

/// Sends the spec at once, then again whenever a config change changes it.
async fn push_specs<S: MetricsSource>(
    state: &State<S>,
    scaled_object: &ScaledObjectRef,
    first: GetMetricSpecResponse,
    tx: &mpsc::Sender<Result<GetMetricSpecResponse, Status>>,
) -> tonic::Code {
    if tx.send(Ok(first.clone())).await.is_err() {
        return tonic::Code::Cancelled;
    }
    let mut last = first;
    let mut config = state.config.clone();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return tonic::Code::Ok,
            () = tx.closed() => return tonic::Code::Cancelled,
            changed = config.changed() => {
                if changed.is_err() {
                    return tonic::Code::Ok;
                }
                let resolved = match state.resolve(scaled_object) {
                    Ok(resolved) => resolved,
                    Err(status) => {
                        let code = status.code();
                        let _ = tx.send(Err(status)).await;
                        return code;
                    }
                };
                let spec = spec_for(&resolved.target.metric_name);
                if spec != last {
                    if tx.send(Ok(spec.clone())).await.is_err() {
                        return tonic::Code::Cancelled;
                    }
                    last = spec;
                }
            }
        }
    }
}

/// Sleeps until the next round; breaks on shutdown (the stream ends OK) or when the client left.
async fn wait<S, T>(
    state: &State<S>,
    tx: &mpsc::Sender<T>,
    period: Duration,
) -> std::ops::ControlFlow<tonic::Code> {
    tokio::select! {
        () = tokio::time::sleep(period) => std::ops::ControlFlow::Continue(()),
        // Our shutdown ends the stream cleanly; a caller that went away cancelled it.
        () = state.shutdown.cancelled() => std::ops::ControlFlow::Break(tonic::Code::Ok),
        () = tx.closed() => std::ops::ControlFlow::Break(tonic::Code::Cancelled),
    }
}
