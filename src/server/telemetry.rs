//! The scaler's own metrics, in an explicit registry shared by the gRPC service and
//! the `/metrics` endpoint.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

use strum::IntoEnumIterator;

use crate::demand::{Demand, TermKind, Winner};
use crate::source::{Observation, Readings};

/// The labels of a ScaledObject's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaledObjectLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub scaledobject: String,
}

/// The labels of a term's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TermLabels {
    /// The ScaledObject's namespace.
    pub namespace: String,
    /// Its name.
    pub scaledobject: String,
    /// The term (`queue`, `throughput`, ...).
    pub term: String,
}

/// The labels of a capacity-mix series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MixLabels {
    /// The ScaledObject's namespace.
    pub namespace: String,
    /// Its name.
    pub scaledobject: String,
    /// What the value is: one of [`MIX_QUANTITIES`].
    pub quantity: String,
}

/// What `capacity_mix` exports: the per-replica rates the throughput terms divided by,
/// and the mix `capacity.profile` read them at.
pub const MIX_QUANTITIES: [&str; 5] = [
    "capacity_output_tokens_per_second",
    "capacity_input_tokens_per_second",
    "mean_input_tokens",
    "mean_output_tokens",
    "short_output_share",
];

/// The labels of a forecast candidate's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CandidateLabels {
    /// The ScaledObject's namespace.
    pub namespace: String,
    /// Its name.
    pub scaledobject: String,
    /// Which candidate: one of [`FORECAST_CANDIDATES`].
    pub candidate: String,
}

/// The forecast's candidates, as `forecast_candidate_weight` names them.
pub const FORECAST_CANDIDATES: [&str; 4] =
    ["seasonal", "last_value", "seasonal_naive", "scaled_peaks"];

/// The labels of an SLO window's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BurnLabels {
    /// The ScaledObject's namespace.
    pub namespace: String,
    /// Its name.
    pub scaledobject: String,
    /// The SLO's name.
    pub slo: String,
    /// `short` or `long`.
    pub window: String,
}

/// The labels of an SLO's control series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabels {
    /// The ScaledObject's namespace.
    pub namespace: String,
    /// Its name.
    pub scaledobject: String,
    /// The SLO's name.
    pub slo: String,
}

/// The labels of a gRPC call count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// The RPC.
    pub method: String,
    /// The status code it ended with.
    pub code: String,
}

/// The labels of an RPC's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The RPC.
    pub method: String,
}

/// The labels of a query's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    /// The signal the query read.
    pub signal: String,
}

/// The labels of a failed query count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryErrorLabels {
    /// The signal the query read.
    pub signal: String,
    /// The error's kind (`timeout`, `unreachable`, ...).
    pub kind: String,
}

/// The labels of an evaluation count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

type Gauges<L> = Family<L, Gauge<f64, AtomicU64>>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to about 6.5 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 17,
    ))
}

/// Every metric the scaler exports, with the registry that encodes them.
pub struct Telemetry {
    registry: Registry,
    /// The demand last answered per ScaledObject (replicas, after clamping).
    pub demand: Gauges<ScaledObjectLabels>,
    /// Each term's value per ScaledObject (replicas).
    pub term: Gauges<TermLabels>,
    /// 1 when the ScaledObject was last found active.
    pub active: Gauges<ScaledObjectLabels>,
    /// 1 when the last demand was clamped to max_demand (the fleet may need more).
    pub at_max: Gauges<ScaledObjectLabels>,
    /// R: the replicas exporting metrics at the last evaluation, to set against the demand.
    pub replicas: Gauges<ScaledObjectLabels>,
    /// Prometheus query latency by signal.
    pub query_duration: Histograms<SignalLabels>,
    /// Prometheus queries that failed, by signal and kind.
    pub query_errors: Family<QueryErrorLabels, Counter>,
    /// Signals a demand was computed without, by signal and the label of the
    /// [`ReadError`](crate::source::ReadError) (one count per demand computed).
    pub read_errors: Family<QueryErrorLabels, Counter>,
    /// Evaluations (one per cache miss), by result.
    pub evaluations: Family<ResultLabels, Counter>,
    /// gRPC requests by method and status code.
    pub grpc_requests: Family<GrpcLabels, Counter>,
    /// gRPC latency by method (unary calls).
    pub grpc_duration: Histograms<MethodLabels>,
    /// Open StreamIsActive and StreamMetricSpec streams.
    pub open_streams: Family<MethodLabels, Gauge>,
    /// Age of the evaluation behind the last answer, per ScaledObject.
    pub answer_age: Gauges<ScaledObjectLabels>,
    /// Answers given from the last complete evaluation while the newest failed.
    pub stale_answers: Family<ScaledObjectLabels, Counter>,
    /// Config files refused by hot reload.
    pub config_reload_failures: Counter,
    /// When the config in force was loaded.
    pub config_last_reload_success: Gauge<f64, AtomicU64>,
    /// Each SLO's burn rate per ScaledObject and window (absent without requests).
    pub slo_burn_rate: Gauges<BurnLabels>,
    /// The part of it replicas can fix, which the SLO term acts on.
    pub slo_fixable_burn_rate: Gauges<BurnLabels>,
    /// Share of requests that miss on any replica: prefill alone over the threshold (TTFT
    /// SLOs on engines exporting per-request prefill time), or a prompt longer than
    /// `floor_context_tokens` (TPOT SLOs that set it); absent otherwise.
    pub slo_unfixable_ratio: Gauges<BurnLabels>,
    /// The boost the SLO term multiplies the load by while the SLO burns or a trim
    /// stands (absent otherwise).
    pub slo_boost: Gauges<SloLabels>,
    /// The trim under the boost: the boost of a served rise that lowered the fixable
    /// burn without ending it, decaying once the SLO holds with room (absent where the
    /// term does not act).
    pub slo_trim: Gauges<SloLabels>,
    /// 1 while anti-windup holds the boost below what the burn asks, else 0 (absent
    /// while not burning).
    pub slo_boost_held: Gauges<SloLabels>,
    /// The forecast token rate over the lead per ScaledObject.
    pub forecast_tokens: Gauges<ScaledObjectLabels>,
    /// The capacity the throughput terms divided by and the mix it was read at.
    pub capacity_mix: Gauges<MixLabels>,
    /// Each forecast candidate's share of the forecast, where the candidates were scored.
    pub forecast_candidate_weight: Gauges<CandidateLabels>,
    /// Each forecast candidate's mean absolute percentage error over the recent points,
    /// as a fraction, where the candidates were scored.
    pub forecast_candidate_error: Gauges<CandidateLabels>,
    /// The SLO names each ScaledObject has burn-rate series for, to drop them later.
    slo_names: std::sync::Mutex<std::collections::HashMap<(String, String), Vec<String>>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` under `name` and hands back the handle the code records on.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Per ScaledObject: the demand, its terms and how it was answered.
struct ObjectMetrics {
    demand: Gauges<ScaledObjectLabels>,
    term: Gauges<TermLabels>,
    active: Gauges<ScaledObjectLabels>,
    at_max: Gauges<ScaledObjectLabels>,
    replicas: Gauges<ScaledObjectLabels>,
    answer_age: Gauges<ScaledObjectLabels>,
    stale_answers: Family<ScaledObjectLabels, Counter>,
    forecast_tokens: Gauges<ScaledObjectLabels>,
}

impl ObjectMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            demand: registered(
                registry,
                "demand_replicas",
                "Replica demand last answered per ScaledObject",
                Gauges::<ScaledObjectLabels>::default(),
            ),
            term: registered(
                registry,
                "term_replicas",
                "Each demand term per ScaledObject, in replicas",
                Gauges::<TermLabels>::default(),
            ),
            active: registered(
                registry,
                "active",
                "1 when the ScaledObject was last found active",
                Gauges::<ScaledObjectLabels>::default(),
            ),
            at_max: registered(
                registry,
                "demand_at_max",
                "1 when the last demand was clamped to the profile's max_demand",
                Gauges::<ScaledObjectLabels>::default(),
            ),
            replicas: registered(
                registry,
                "observed_replicas",
                "Replicas exporting the engine's metrics at the last evaluation (R)",
                Gauges::<ScaledObjectLabels>::default(),
            ),
            answer_age: registered(
                registry,
                "answer_age_seconds",
                "Age of the evaluation behind the last answer per ScaledObject",
                Gauges::<ScaledObjectLabels>::default(),
            ),
            stale_answers: registered(
                registry,
                "stale_answers",
                "Answers from the last complete evaluation (within max_staleness) while the newest failed",
                Family::<ScaledObjectLabels, Counter>::default(),
            ),
            forecast_tokens: registered(
                registry,
                "forecast_tokens_per_second",
                "The seasonal forecast of the token rate over the predictive lead",
                Gauges::<ScaledObjectLabels>::default(),
            ),
        }
    }
}

/// Per ScaledObject, SLO and window: the burn and its split.
struct SloMetrics {
    slo_burn_rate: Gauges<BurnLabels>,
    slo_fixable_burn_rate: Gauges<BurnLabels>,
    slo_unfixable_ratio: Gauges<BurnLabels>,
    slo_boost: Gauges<SloLabels>,
    slo_trim: Gauges<SloLabels>,
    slo_boost_held: Gauges<SloLabels>,
}

impl SloMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            slo_burn_rate: registered(
                registry,
                "slo_burn_rate",
                "Error-budget burn rate per SLO and window (1 = burning exactly the budget)",
                Gauges::<BurnLabels>::default(),
            ),
            slo_fixable_burn_rate: registered(
                registry,
                "slo_fixable_burn_rate",
                "The burn rate of the misses more replicas remove, per SLO and window: what the SLO term acts on",
                Gauges::<BurnLabels>::default(),
            ),
            slo_unfixable_ratio: registered(
                registry,
                "slo_unfixable_ratio",
                "Share of requests no replica count serves in time (TTFT: prefill alone over the threshold; TPOT: prompt over floor_context_tokens), per SLO and window",
                Gauges::<BurnLabels>::default(),
            ),
            slo_boost: registered(
                registry,
                "slo_boost",
                "The factor the SLO term multiplies the load-based demand by, while the SLO burns or a trim stands",
                Gauges::<SloLabels>::default(),
            ),
            slo_trim: registered(
                registry,
                "slo_trim",
                "The trim under an SLO's boost: the boost of a served rise that lowered the fixable burn without ending it, kept after the burn and decaying once the SLO holds with room",
                Gauges::<SloLabels>::default(),
            ),
            slo_boost_held: registered(
                registry,
                "slo_boost_held",
                "1 while anti-windup holds an SLO's boost at its last rise (served for a short window without lowering the fixable burn), else 0",
                Gauges::<SloLabels>::default(),
            ),
        }
    }
}

/// The service's own work: Prometheus queries, evaluations, gRPC calls and streams.
struct ServiceMetrics {
    query_duration: Histograms<SignalLabels>,
    query_errors: Family<QueryErrorLabels, Counter>,
    read_errors: Family<QueryErrorLabels, Counter>,
    evaluations: Family<ResultLabels, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: Histograms<MethodLabels>,
    open_streams: Family<MethodLabels, Gauge>,
}

impl ServiceMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            query_duration: registered(
                registry,
                "prometheus_query_duration_seconds",
                "Prometheus query latency by signal",
                Family::new_with_constructor(latency_histogram),
            ),
            query_errors: registered(
                registry,
                "prometheus_query_errors",
                "Prometheus queries that failed",
                Family::<QueryErrorLabels, Counter>::default(),
            ),
            read_errors: registered(
                registry,
                "signal_read_errors",
                "Signals a demand was computed without, by signal and cause",
                Family::<QueryErrorLabels, Counter>::default(),
            ),
            evaluations: registered(
                registry,
                "evaluations",
                "Evaluations run against the metrics source",
                Family::<ResultLabels, Counter>::default(),
            ),
            grpc_requests: registered(
                registry,
                "grpc_requests",
                "gRPC requests by method and status code",
                Family::<GrpcLabels, Counter>::default(),
            ),
            grpc_duration: registered(
                registry,
                "grpc_request_duration_seconds",
                "gRPC unary call latency",
                Family::new_with_constructor(latency_histogram),
            ),
            open_streams: registered(
                registry,
                "grpc_open_streams",
                "Open server streams by method",
                Family::<MethodLabels, Gauge>::default(),
            ),
        }
    }
}

/// Hot reload.
struct ConfigMetrics {
    config_reload_failures: Counter,
    config_last_reload_success: Gauge<f64, AtomicU64>,
}

impl ConfigMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            config_reload_failures: registered(
                registry,
                "config_reload_failures",
                "Config files refused by hot reload (the last good config keeps serving)",
                Counter::default(),
            ),
            config_last_reload_success: {
                let loaded = Gauge::<f64, AtomicU64>::default();
                loaded.set(unix_seconds(std::time::SystemTime::now()));
                registered(
                    registry,
                    "config_last_reload_success_timestamp_seconds",
                    "When the config in force was loaded",
                    loaded,
                )
            },
        }
    }
}

impl Telemetry {
    /// Every metric, registered on a registry of its own (prefix `keda_llm_scaler`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keda_llm_scaler");
        let ObjectMetrics {
            demand,
            term,
            active,
            at_max,
            replicas,
            answer_age,
            stale_answers,
            forecast_tokens,
        } = ObjectMetrics::register(&mut registry);
        let SloMetrics {
            slo_burn_rate,
            slo_fixable_burn_rate,
            slo_unfixable_ratio,
            slo_boost,
            slo_trim,
            slo_boost_held,
        } = SloMetrics::register(&mut registry);
        let ServiceMetrics {
            query_duration,
            query_errors,
            read_errors,
            evaluations,
            grpc_requests,
            grpc_duration,
            open_streams,
        } = ServiceMetrics::register(&mut registry);
        let ConfigMetrics {
            config_reload_failures,
            config_last_reload_success,
        } = ConfigMetrics::register(&mut registry);
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build
            .get_or_create(&vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])
            .set(1);
        registry.register("build_info", "The scaler's version", build);
        let capacity_mix = registered(
            &mut registry,
            "capacity_mix",
            "Per-replica token rates the throughput terms divided by, and the mix capacity.profile read them at (mean lengths, share of short answers), by quantity",
            Gauges::<MixLabels>::default(),
        );
        let forecast_candidate_weight = registered(
            &mut registry,
            "forecast_candidate_weight",
            "Each forecast candidate's share of the forecast, by how close it came lately",
            Gauges::<CandidateLabels>::default(),
        );
        let forecast_candidate_error = registered(
            &mut registry,
            "forecast_candidate_error",
            "Each forecast candidate's mean absolute percentage error over the recent level windows, as a fraction",
            Gauges::<CandidateLabels>::default(),
        );
        Self {
            registry,
            demand,
            term,
            active,
            at_max,
            replicas,
            answer_age,
            stale_answers,
            forecast_tokens,
            capacity_mix,
            forecast_candidate_weight,
            forecast_candidate_error,
            slo_burn_rate,
            slo_fixable_burn_rate,
            slo_unfixable_ratio,
            slo_boost,
            slo_trim,
            slo_boost_held,
            query_duration,
            query_errors,
            read_errors,
            evaluations,
            grpc_requests,
            grpc_duration,
            open_streams,
            config_reload_failures,
            config_last_reload_success,
            slo_names: Default::default(),
        }
    }

    /// The outcome of the latest config reloads.
    pub fn record_reload(&self, status: &crate::config::reload::ReloadStatus) {
        // A counter cannot be set, so it is brought up to the reloader's count.
        let counted = self.config_reload_failures.get();
        if status.failures > counted {
            self.config_reload_failures
                .inc_by(status.failures - counted);
        }
        self.config_last_reload_success
            .set(unix_seconds(status.last_success));
    }

    /// The registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Each query of an evaluation, and the evaluation's result.
    pub fn record_observation(&self, observation: &Observation) {
        for query in &observation.queries {
            let signal = query.signal.as_str().to_owned();
            self.query_duration
                .get_or_create(&SignalLabels {
                    signal: signal.clone(),
                })
                .observe(query.duration.as_secs_f64());
            if let Some(kind) = query.error_kind {
                self.query_errors
                    .get_or_create(&QueryErrorLabels {
                        signal,
                        kind: kind.to_owned(),
                    })
                    .inc();
            }
        }
        let result = if observation.is_complete() {
            "ok"
        } else {
            "error"
        };
        self.evaluations
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The signals a demand was computed without, each under its error's label.
    pub fn record_read_errors(&self, readings: &Readings) {
        for (signal, error) in readings.errors() {
            self.read_errors
                .get_or_create(&QueryErrorLabels {
                    signal: signal.as_str().to_owned(),
                    kind: error.label().to_owned(),
                })
                .inc();
        }
    }

    /// The demand last answered for a ScaledObject, its terms, forecast and SLOs.
    pub fn record_demand(
        &self,
        namespace: &str,
        name: &str,
        demand: &Demand,
        age_seconds: f64,
        stale: bool,
    ) {
        let labels = ScaledObjectLabels {
            namespace: namespace.to_owned(),
            scaledobject: name.to_owned(),
        };
        self.answer_age.get_or_create(&labels).set(age_seconds);
        if stale {
            self.stale_answers.get_or_create(&labels).inc();
        }
        self.demand.get_or_create(&labels).set(demand.replicas);
        self.active
            .get_or_create(&labels)
            .set(if demand.active { 1.0 } else { 0.0 });
        match demand.inputs.replicas {
            Some(r) => {
                self.replicas.get_or_create(&labels).set(r);
            }
            None => {
                self.replicas.remove(&labels);
            }
        }
        self.at_max
            .get_or_create(&labels)
            .set(if demand.winner == Winner::MaxDemand {
                1.0
            } else {
                0.0
            });
        self.record_terms(namespace, name, demand);
        self.record_mix(namespace, name, demand);
        match &demand.forecast {
            Some(forecast) => {
                self.forecast_tokens
                    .get_or_create(&labels)
                    .set(forecast.rate);
            }
            None => {
                self.forecast_tokens.remove(&labels);
            }
        }
        self.record_candidates(namespace, name, demand);
        self.record_slos(namespace, name, demand);
    }

    /// Each forecast candidate's weight and recent error; a candidate not scored this
    /// time has no series.
    fn record_candidates(&self, namespace: &str, name: &str, demand: &Demand) {
        let scored = demand.forecast.as_ref().and_then(|f| f.candidates);
        let candidates = scored.map(|c| {
            [
                Some(c.seasonal),
                Some(c.last_value),
                Some(c.seasonal_naive),
                c.scaled_peaks,
            ]
        });
        for (i, candidate) in FORECAST_CANDIDATES.iter().enumerate() {
            let labels = CandidateLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                candidate: (*candidate).to_owned(),
            };
            match candidates.and_then(|all| all[i]) {
                Some(c) => {
                    self.forecast_candidate_weight
                        .get_or_create(&labels)
                        .set(c.weight);
                    self.forecast_candidate_error
                        .get_or_create(&labels)
                        .set(c.recent_error);
                }
                None => {
                    self.forecast_candidate_weight.remove(&labels);
                    self.forecast_candidate_error.remove(&labels);
                }
            }
        }
    }

    /// Each term's value; a term not computed this time has no series.
    fn record_terms(&self, namespace: &str, name: &str, demand: &Demand) {
        for kind in TermKind::iter() {
            let labels = TermLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                term: kind.as_str().to_owned(),
            };
            match demand.term(kind) {
                Some(term) => {
                    self.term.get_or_create(&labels).set(term.replicas);
                }
                None => {
                    self.term.remove(&labels);
                }
            }
        }
    }

    /// The throughput terms' capacity and mix, as their inputs say; a quantity no term
    /// read this time has no series.
    fn record_mix(&self, namespace: &str, name: &str, demand: &Demand) {
        let terms = [TermKind::Throughput, TermKind::InputThroughput];
        for quantity in MIX_QUANTITIES {
            let labels = MixLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                quantity: quantity.to_owned(),
            };
            let value = terms
                .iter()
                .filter_map(|kind| demand.term(*kind))
                .flat_map(|term| term.inputs.iter())
                .find(|(key, _)| *key == quantity)
                .map(|(_, value)| *value);
            match value {
                Some(value) => {
                    self.capacity_mix.get_or_create(&labels).set(value);
                }
                None => {
                    self.capacity_mix.remove(&labels);
                }
            }
        }
    }

    /// Each SLO's burn, fixable burn and unfixable share over both windows.
    fn record_slos(&self, namespace: &str, name: &str, demand: &Demand) {
        self.forget_burn_rates(namespace, name);
        let mut names = Vec::with_capacity(demand.slos.len());
        for slo in &demand.slos {
            let windows = [
                (
                    "short",
                    slo.short_burn,
                    slo.short_fixable_burn,
                    slo.short_unfixable_ratio,
                ),
                (
                    "long",
                    slo.long_burn,
                    slo.long_fixable_burn,
                    slo.long_unfixable_ratio,
                ),
            ];
            for (window, burn, fixable, unfixable) in windows {
                let labels = BurnLabels {
                    namespace: namespace.to_owned(),
                    scaledobject: name.to_owned(),
                    slo: slo.name.clone(),
                    window: window.to_owned(),
                };
                for (gauges, value) in [
                    (&self.slo_burn_rate, burn),
                    (&self.slo_fixable_burn_rate, fixable),
                    (&self.slo_unfixable_ratio, unfixable),
                ] {
                    if let Some(value) = value {
                        gauges.get_or_create(&labels).set(value);
                    }
                }
            }
            let labels = SloLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                slo: slo.name.clone(),
            };
            if let Some(boost) = slo.boost {
                self.slo_boost.get_or_create(&labels).set(boost);
                let trim = slo.rise.as_ref().map_or(1.0, |r| r.trim);
                self.slo_trim.get_or_create(&labels).set(trim);
                let held = slo.control == crate::demand::control::Control::Hold;
                self.slo_boost_held
                    .get_or_create(&labels)
                    .set(if held { 1.0 } else { 0.0 });
            }
            names.push(slo.name.clone());
        }
        if !names.is_empty() {
            self.slo_names
                .lock()
                .expect("slo names lock")
                .insert((namespace.to_owned(), name.to_owned()), names);
        }
    }

    fn forget_burn_rates(&self, namespace: &str, name: &str) {
        let names = self
            .slo_names
            .lock()
            .expect("slo names lock")
            .remove(&(namespace.to_owned(), name.to_owned()));
        for slo in names.into_iter().flatten() {
            let labels = SloLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                slo: slo.clone(),
            };
            self.slo_boost.remove(&labels);
            self.slo_trim.remove(&labels);
            self.slo_boost_held.remove(&labels);
            for window in ["short", "long"] {
                let labels = BurnLabels {
                    namespace: namespace.to_owned(),
                    scaledobject: name.to_owned(),
                    slo: slo.clone(),
                    window: window.to_owned(),
                };
                self.slo_burn_rate.remove(&labels);
                self.slo_fixable_burn_rate.remove(&labels);
                self.slo_unfixable_ratio.remove(&labels);
            }
        }
    }

    /// Drops a ScaledObject's series (it stopped calling).
    pub fn forget(&self, namespace: &str, name: &str) {
        let labels = ScaledObjectLabels {
            namespace: namespace.to_owned(),
            scaledobject: name.to_owned(),
        };
        self.demand.remove(&labels);
        self.active.remove(&labels);
        self.at_max.remove(&labels);
        self.replicas.remove(&labels);
        self.answer_age.remove(&labels);
        self.stale_answers.remove(&labels);
        self.forecast_tokens.remove(&labels);
        for quantity in MIX_QUANTITIES {
            self.capacity_mix.remove(&MixLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                quantity: quantity.to_owned(),
            });
        }
        for candidate in FORECAST_CANDIDATES {
            let labels = CandidateLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                candidate: candidate.to_owned(),
            };
            self.forecast_candidate_weight.remove(&labels);
            self.forecast_candidate_error.remove(&labels);
        }
        self.forget_burn_rates(namespace, name);
        for kind in TermKind::iter() {
            self.term.remove(&TermLabels {
                namespace: namespace.to_owned(),
                scaledobject: name.to_owned(),
                term: kind.as_str().to_owned(),
            });
        }
    }

    /// One gRPC call, and its latency for unary calls.
    pub fn record_grpc(&self, method: &str, code: tonic::Code, seconds: Option<f64>) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.to_owned(),
                code: code_name(code).to_owned(),
            })
            .inc();
        if let Some(seconds) = seconds {
            self.grpc_duration
                .get_or_create(&MethodLabels {
                    method: method.to_owned(),
                })
                .observe(seconds);
        }
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// gRPC code names as the spec writes them (OK, NOT_FOUND, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demand::Inputs;

    fn candidate(rate: f64, recent_error: f64, weight: f64) -> crate::demand::forecast::Candidate {
        crate::demand::forecast::Candidate {
            rate,
            recent_error,
            weight,
        }
    }

    #[test]
    fn the_forecast_candidates_are_exported_while_scored() {
        let telemetry = Telemetry::new();
        let mut demand = queue_demand();
        let candidates = crate::demand::forecast::Candidates {
            seasonal: candidate(120.0, 0.1, 0.5),
            last_value: candidate(100.0, 0.2, 0.125),
            seasonal_naive: candidate(90.0, 0.2, 0.125),
            scaled_peaks: None,
            points: 12,
        };
        demand.forecast = Some(crate::demand::forecast::Forecast {
            rate: 110.0,
            past_peak: 100.0,
            past_level: 100.0,
            level_ratio: 1.0,
            seasonal_change: 1.0,
            agreement: 1.0,
            periods: 3,
            level_window_rate: 110.0,
            long_window: None,
            seasonal_weight: None,
            candidates: Some(candidates),
        });
        let series = |name: &str, candidate: &str| {
            format!(
                r#"keda_llm_scaler_forecast_candidate_{name}{{namespace="ns",scaledobject="so",candidate="{candidate}"}}"#
            )
        };
        telemetry.record_demand("ns", "so", &demand, 0.1, false);
        let text = telemetry.encode();
        assert!(
            text.contains(&format!("{} 0.5", series("weight", "seasonal"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 0.2", series("error", "last_value"))),
            "{text}"
        );
        assert!(!text.contains(&series("weight", "scaled_peaks")), "{text}");
        // Scored with the fourth candidate, then not scored at all.
        let mut with = candidates;
        with.scaled_peaks = Some(candidate(130.0, 0.05, 0.25));
        demand.forecast.as_mut().unwrap().candidates = Some(with);
        telemetry.record_demand("ns", "so", &demand, 0.1, false);
        let text = telemetry.encode();
        assert!(
            text.contains(&format!("{} 0.25", series("weight", "scaled_peaks"))),
            "{text}"
        );
        demand.forecast.as_mut().unwrap().candidates = None;
        telemetry.record_demand("ns", "so", &demand, 0.1, false);
        let text = telemetry.encode();
        assert!(!text.contains("forecast_candidate_weight{"), "{text}");
        assert!(!text.contains("forecast_candidate_error{"), "{text}");
    }

    /// A queue-bound demand with one burning SLO and no forecast.
    fn queue_demand() -> Demand {
        Demand {
            replicas: 2.0,
            unclamped: 2.0,
            winner: Winner::Term(TermKind::Queue),
            terms: vec![crate::demand::Term {
                kind: TermKind::Queue,
                replicas: 2.0,
                formula: String::new(),
                inputs: Vec::new(),
            }],
            inputs: Inputs {
                queue_depth: Some(30.0),
                replicas: Some(1.0),
                output_tokens_per_second: None,
                input_tokens_per_second: None,
                kv_cache_ratio: None,
            },
            active: true,
            skipped: Vec::new(),
            slos: vec![crate::demand::SloStatus {
                name: "ttft-2s".into(),
                signal: crate::config::LatencySignal::Ttft,
                short_error_ratio: Some(0.02),
                long_error_ratio: Some(0.02),
                short_burn: Some(2.0),
                long_burn: Some(2.0),
                short_unfixable_ratio: Some(0.005),
                long_unfixable_ratio: Some(0.005),
                short_fixable_burn: Some(1.5),
                long_fixable_burn: Some(1.5),
                burning: true,
                replicas: Some(1.25),
                boost: Some(1.125),
                control: crate::demand::control::Control::Hold,
                control_reason: String::new(),
                rise: None,
            }],
            schedule: None,
            forecast: None,
            rises: Vec::new(),
        }
    }

    #[test]
    fn forgetting_a_scaled_object_drops_all_its_series() {
        let telemetry = Telemetry::new();
        let demand = queue_demand();
        telemetry.record_demand("ns", "gone", &demand, 0.1, true);
        telemetry.record_demand("ns", "kept", &demand, 0.1, false);
        let before = telemetry.encode();
        assert!(before.contains(r#"scaledobject="gone""#));
        assert!(
            before.contains(r#"keda_llm_scaler_slo_burn_rate{namespace="ns",scaledobject="gone",slo="ttft-2s",window="short"} 2.0"#),
            "{before}"
        );
        assert!(
            before.contains(r#"keda_llm_scaler_slo_fixable_burn_rate{namespace="ns",scaledobject="gone",slo="ttft-2s",window="long"} 1.5"#),
            "{before}"
        );
        assert!(
            before.contains(r#"keda_llm_scaler_slo_unfixable_ratio{namespace="ns",scaledobject="gone",slo="ttft-2s",window="short"} 0.005"#),
            "{before}"
        );
        assert!(before.contains(
            r#"keda_llm_scaler_observed_replicas{namespace="ns",scaledobject="gone"} 1.0"#
        ));
        assert!(
            before.contains(
                r#"keda_llm_scaler_slo_boost{namespace="ns",scaledobject="gone",slo="ttft-2s"} 1.125"#
            ),
            "{before}"
        );
        assert!(
            before.contains(
                r#"keda_llm_scaler_slo_boost_held{namespace="ns",scaledobject="gone",slo="ttft-2s"} 1.0"#
            ),
            "{before}"
        );
        assert!(
            before.contains(
                r#"keda_llm_scaler_slo_trim{namespace="ns",scaledobject="gone",slo="ttft-2s"} 1.0"#
            ),
            "{before}"
        );
        assert!(
            before.contains(
                r#"keda_llm_scaler_demand_at_max{namespace="ns",scaledobject="gone"} 0.0"#
            )
        );
        let clamped = Demand {
            winner: Winner::MaxDemand,
            ..demand.clone()
        };
        telemetry.record_demand("ns", "pinned", &clamped, 0.1, false);
        assert!(telemetry.encode().contains(
            r#"keda_llm_scaler_demand_at_max{namespace="ns",scaledobject="pinned"} 1.0"#
        ));
        telemetry.forget("ns", "gone");
        let text = telemetry.encode();
        assert!(!text.contains(r#"scaledobject="gone""#), "{text}");
        assert!(
            text.contains(
                r#"keda_llm_scaler_demand_replicas{namespace="ns",scaledobject="kept"} 2.0"#
            ),
            "{text}"
        );
    }
}
