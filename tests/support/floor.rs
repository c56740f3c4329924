//! The floor a gRPC answer cannot beat here: a tonic server with nothing but KEDA's
//! service, answering every call with a constant. The latency example and the soak run
//! the same client against it, side by side with the scaler, and report ratios to it.

use std::{net::SocketAddr, pin::Pin};

use keda_llm_scaler::proto::externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
    external_scaler_server::{ExternalScaler, ExternalScalerServer},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::{Stream, wrappers::TcpListenerStream};
use tonic::{Request, Response, Status};

/// Answers with constants: the metric name asked, a value of 1, active.
pub struct Floor;

type Pushed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn spec() -> GetMetricSpecResponse {
    #[allow(deprecated)]
    GetMetricSpecResponse {
        metric_specs: vec![MetricSpec {
            metric_name: "llm-demand".into(),
            target_size: 1,
            target_size_float: 1.0,
        }],
    }
}

#[tonic::async_trait]
impl ExternalScaler for Floor {
    async fn is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        Ok(Response::new(IsActiveResponse { result: true }))
    }

    type StreamIsActiveStream = Pushed<IsActiveResponse>;

    async fn stream_is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let once = tokio_stream::once(Ok(IsActiveResponse { result: true }));
        let held = tokio_stream::StreamExt::chain(once, tokio_stream::pending());
        Ok(Response::new(Box::pin(held)))
    }

    async fn get_metric_spec(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        Ok(Response::new(spec()))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        #[allow(deprecated)]
        let value = MetricValue {
            metric_name: request.into_inner().metric_name,
            metric_value: 1,
            metric_value_float: 1.0,
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![value],
        }))
    }

    type StreamMetricSpecStream = Pushed<GetMetricSpecResponse>;

    async fn stream_metric_spec(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let once = tokio_stream::once(Ok(spec()));
        let held = tokio_stream::StreamExt::chain(once, tokio_stream::pending());
        Ok(Response::new(Box::pin(held)))
    }
}

/// The floor server on a loopback listener, until dropped or stopped.
pub struct FloorServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FloorServer {
    /// Serves on `listener` (bound by the caller, so no port is guessed).
    pub fn start(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // TCP_NODELAY on every connection, as the scaler's listener sets it.
            let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |tcp| {
                tcp.inspect(|stream| {
                    let _ = stream.set_nodelay(true);
                })
            });
            tonic::transport::Server::builder()
                .add_service(ExternalScalerServer::new(Floor))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
