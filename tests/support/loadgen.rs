//! A generator of KEDA's call pattern, for load and soak tests: per ScaledObject,
//! GetMetricSpec + GetMetrics + IsActive on every HPA sync and every operator poll, plus
//! open StreamIsActive streams, all over one HTTP/2 connection as KEDA's operator does.
//! Bounded in time (it stops by itself) and in calls (one round per interval per object).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use keda_llm_scaler::proto::externalscaler::{
    GetMetricsRequest, ScaledObjectRef, external_scaler_client::ExternalScalerClient,
};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// What to send.
#[derive(Clone)]
pub struct LoadPlan {
    /// `http://host:port` of the scaler.
    pub endpoint: String,
    pub scaled_objects: usize,
    /// How many of them (the first ones) also hold a StreamIsActive stream open.
    pub streams: usize,
    pub duration: Duration,
    /// The HPA's sync period (15 s in Kubernetes).
    pub hpa_sync: Duration,
    /// KEDA's `pollingInterval` (30 s by default).
    pub poll: Duration,
    /// KEDA's deadline on each call.
    pub call_timeout: Duration,
    /// The trigger metadata of ScaledObject `i`.
    pub metadata: Arc<dyn Fn(usize) -> HashMap<String, String> + Send + Sync>,
}

/// Metadata for ScaledObjects on one profile, ScaledObject i serving `model-i`.
pub fn one_model_each(
    profile: &'static str,
) -> Arc<dyn Fn(usize) -> HashMap<String, String> + Send + Sync> {
    Arc::new(move |i| {
        HashMap::from([
            ("profile".to_owned(), profile.to_owned()),
            ("model".to_owned(), format!("model-{i}")),
        ])
    })
}

/// Latencies of one RPC.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// A latency histogram in nanoseconds, three significant digits, up to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

impl Latencies {
    fn of(h: &Histogram<u64>) -> Self {
        let at = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
        Self {
            calls: h.len() as usize,
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_nanos(h.max()),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Each RPC's latencies, in nanoseconds.
    pub histograms: BTreeMap<&'static str, Histogram<u64>>,
    /// Failed calls by RPC and status code, with the first message seen.
    pub errors: BTreeMap<String, (u64, String)>,
    /// Messages received on the streams.
    pub stream_messages: u64,
    /// Streams that ended or failed before the run did.
    pub streams_lost: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    /// Each RPC's call count and percentiles.
    pub fn per_rpc(&self) -> BTreeMap<&'static str, Latencies> {
        self.histograms
            .iter()
            .map(|(rpc, h)| (*rpc, Latencies::of(h)))
            .collect()
    }

    /// Adds another run's calls, errors and streams to this one's.
    pub fn merge(&mut self, other: LoadReport) {
        for (rpc, h) in other.histograms {
            self.histograms
                .entry(rpc)
                .or_insert_with(histogram)
                .add(h)
                .expect("same bounds");
        }
        for (key, (n, message)) in other.errors {
            self.errors.entry(key).or_insert((0, message)).0 += n;
        }
        self.stream_messages += other.stream_messages;
        self.streams_lost += other.streams_lost;
        self.elapsed += other.elapsed;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// A markdown table of the latencies.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| rpc | calls | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
        for (rpc, l) in &self.per_rpc() {
            out.push_str(&format!(
                "| {rpc} | {} | {:.2} | {:.2} | {:.2} |\n",
                l.calls,
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3,
                l.max.as_secs_f64() * 1e3
            ));
        }
        out
    }
}

#[derive(Default)]
struct Recorder {
    samples: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, (u64, String)>>,
    stream_messages: AtomicU64,
    streams_lost: AtomicU64,
}

impl Recorder {
    fn record<T>(&self, rpc: &'static str, started: Instant, result: Result<T, tonic::Status>) {
        self.samples
            .lock()
            .expect("samples lock")
            .entry(rpc)
            .or_insert_with(histogram)
            .saturating_record(started.elapsed().as_nanos() as u64);
        if let Err(status) = result {
            let mut errors = self.errors.lock().expect("errors lock");
            let entry = errors
                .entry(format!("{rpc} {:?}", status.code()))
                .or_insert_with(|| (0, status.message().to_owned()));
            entry.0 += 1;
        }
    }
}

fn object(plan: &LoadPlan, i: usize) -> ScaledObjectRef {
    ScaledObjectRef {
        name: format!("load-{i}"),
        namespace: "load".into(),
        scaler_metadata: (plan.metadata)(i),
    }
}

/// Runs the plan to its end and reports.
pub async fn run(plan: LoadPlan) -> Result<LoadReport, tonic::transport::Error> {
    let channel = Endpoint::from_shared(plan.endpoint.clone())?
        .connect()
        .await?;
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let end = started + plan.duration;
    let mut tasks = Vec::with_capacity(plan.scaled_objects + plan.streams);

    for i in 0..plan.streams.min(plan.scaled_objects) {
        let mut client = ExternalScalerClient::new(channel.clone());
        let object = object(&plan, i);
        let recorder = recorder.clone();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let stream = client.stream_is_active(object).await;
            let mut stream = match stream {
                Ok(stream) => stream.into_inner(),
                Err(status) => {
                    recorder.record::<()>("StreamIsActive", begun, Err(status));
                    recorder.streams_lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            loop {
                match tokio::time::timeout_at(end, stream.message()).await {
                    Err(_) => return, // the run is over; dropping the stream cancels it
                    Ok(Ok(Some(_))) => {
                        recorder.stream_messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => {
                        recorder.streams_lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }

    for i in 0..plan.scaled_objects {
        let client = ExternalScalerClient::new(channel.clone());
        let object = object(&plan, i);
        let recorder = recorder.clone();
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the objects over the intervals, as independent ScaledObjects are.
            let spread =
                |period: Duration| period.mul_f64(i as f64 / plan.scaled_objects.max(1) as f64);
            let mut next_sync = started + spread(plan.hpa_sync);
            let mut next_poll = started + spread(plan.poll);
            loop {
                let next = next_sync.min(next_poll);
                if next >= end {
                    return;
                }
                tokio::time::sleep_until(next).await;
                if next == next_sync {
                    next_sync += plan.hpa_sync;
                } else {
                    next_poll += plan.poll;
                }
                one_round(&client, &object, &recorder, plan.call_timeout).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }

    let histograms = std::mem::take(&mut *recorder.samples.lock().expect("samples lock"));
    Ok(LoadReport {
        histograms,
        errors: std::mem::take(&mut *recorder.errors.lock().expect("errors lock")),
        stream_messages: recorder.stream_messages.load(Ordering::Relaxed),
        streams_lost: recorder.streams_lost.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// GetMetricSpec, GetMetrics with its name, then IsActive: one HPA sync or operator poll.
async fn one_round(
    client: &ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
    recorder: &Recorder,
    timeout: Duration,
) {
    let mut client = client.clone();
    fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        request
    }
    let begun = Instant::now();
    let spec = client
        .get_metric_spec(request(object.clone(), timeout))
        .await;
    let metric_name = spec
        .as_ref()
        .ok()
        .and_then(|s| s.get_ref().metric_specs.first())
        .map(|s| s.metric_name.clone());
    recorder.record("GetMetricSpec", begun, spec);
    let Some(metric_name) = metric_name else {
        return;
    };
    let begun = Instant::now();
    let metrics = client
        .get_metrics(request(
            GetMetricsRequest {
                scaled_object_ref: Some(object.clone()),
                metric_name,
            },
            timeout,
        ))
        .await;
    recorder.record("GetMetrics", begun, metrics);
    let begun = Instant::now();
    let active = client.is_active(request(object.clone(), timeout)).await;
    recorder.record("IsActive", begun, active);
}
