//! What the gRPC service, the HTTP endpoints and the streams share: the config in force,
//! the evaluator, telemetry and readiness, and one trigger's resolution and evaluation.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::Status;

use super::{carried::Carried, evaluator::Evaluator, telemetry::Telemetry, tls, tracked};
use crate::{
    config::{
        Config,
        metadata::{self, Target},
        reload::ReloadStatus,
    },
    demand::Demand,
    proto::externalscaler::ScaledObjectRef,
    query,
    source::{DemandError, MetricsSource, Observation, QueryPlan},
};

/// What the gRPC service, the HTTP endpoints and the streams share.
pub struct State<S> {
    /// The config in force; a reload sends a new one and streams see it.
    pub config: watch::Receiver<Arc<Config>>,
    /// Shared evaluations of each plan.
    pub evaluator: Evaluator<S>,
    /// The scaler's own metrics.
    pub telemetry: Arc<Telemetry>,
    /// Cancelled at shutdown: streams end with OK, listeners drain.
    pub shutdown: CancellationToken,
    /// False until the listeners serve, and again once shutdown starts.
    pub ready: AtomicBool,
    /// How the latest config reloads went.
    pub reload: Arc<std::sync::Mutex<ReloadStatus>>,
    /// How often TLS files are checked for rotation.
    pub tls_reload_interval: Duration,
    /// The ScaledObjects /metrics reports on, bounded.
    pub tracked: std::sync::Mutex<tracked::Tracked>,
    /// Every task the service spawns (evaluations, streams, listeners, watchers):
    /// shutdown waits for them, up to the drain grace.
    pub tasks: TaskTracker,
    /// Triggers already resolved and planned against the config in force.
    resolutions: std::sync::Mutex<Resolutions>,
    /// What each trigger's last evaluation carries to its next (SLO anti-windup).
    carried: std::sync::Mutex<Carried>,
}

/// The most distinct triggers whose resolution is kept: far more than a cluster's
/// ScaledObjects; past it (metadata that changes on every call) the cache starts over.
const MAX_RESOLUTIONS: usize = 10_000;

/// A trigger as the cache knows it: its namespace and its metadata, sorted.
type TriggerKey = (String, Vec<(String, String)>);

/// Resolutions of one config: a trigger's metadata is resolved and its queries planned
/// once per config, not on every call.
#[derive(Default)]
struct Resolutions {
    /// The config they were made against; a reload starts the cache over.
    config: Option<Arc<Config>>,
    by_trigger: HashMap<TriggerKey, Arc<Resolved>>,
}

impl Resolutions {
    /// The key of a trigger: its namespace and its metadata, sorted.
    fn key(scaled_object: &ScaledObjectRef) -> TriggerKey {
        (
            scaled_object.namespace.clone(),
            super::carried::sorted_metadata(scaled_object),
        )
    }

    /// The cached resolution, when the config is still the one it was made against.
    fn get(&mut self, config: &Arc<Config>, key: &TriggerKey) -> Option<Arc<Resolved>> {
        if !self.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, config)) {
            self.config = Some(config.clone());
            self.by_trigger.clear();
            return None;
        }
        self.by_trigger.get(key).cloned()
    }

    fn insert(&mut self, key: TriggerKey, resolved: Arc<Resolved>) {
        if self.by_trigger.len() >= MAX_RESOLUTIONS {
            self.by_trigger.clear();
        }
        self.by_trigger.insert(key, resolved);
    }
}

/// A trigger resolved against the config in force.
pub(crate) struct Resolved {
    pub config: Arc<Config>,
    pub target: Target,
    pub plan: QueryPlan,
    /// The model whose series this trigger reads when the plan is shared.
    pub model: Option<String>,
}

/// The outcome of evaluating one trigger.
pub(crate) struct Evaluated {
    /// The observation the demand came from (the last complete one when stale).
    pub observation: Arc<Observation>,
    pub demand: Result<Demand, DemandError>,
    /// Why the newest evaluation was not used, when the answer is stale.
    pub stale_cause: Option<String>,
    /// Failures that removed terms under `on_term_error: skip`.
    pub skipped: Vec<String>,
}

impl<S: MetricsSource> State<S> {
    /// A state serving the configs `config` sends, asking `source`.
    pub fn new(config: watch::Receiver<Arc<Config>>, source: S) -> Self {
        let telemetry = Arc::new(Telemetry::new());
        let tasks = TaskTracker::new();
        Self {
            config,
            evaluator: Evaluator::new(Arc::new(source), telemetry.clone(), tasks.clone()),
            tasks,
            telemetry,
            shutdown: CancellationToken::new(),
            ready: AtomicBool::new(false),
            reload: Arc::new(std::sync::Mutex::new(ReloadStatus::new())),
            tls_reload_interval: tls::RELOAD_INTERVAL,
            tracked: std::sync::Mutex::new(tracked::Tracked::default()),
            resolutions: std::sync::Mutex::new(Resolutions::default()),
            carried: std::sync::Mutex::new(Carried::default()),
        }
    }

    /// Reads a trigger's metadata against the current config; bad metadata is INVALID_ARGUMENT.
    /// Resolved once per config and trigger: later calls reuse the target and the plan.
    pub(crate) fn resolve(&self, scaled_object: &ScaledObjectRef) -> Result<Arc<Resolved>, Status> {
        metadata::check_scaled_object_name(&scaled_object.name, &scaled_object.namespace)
            .map_err(Status::invalid_argument)?;
        let config = self.config.borrow().clone();
        let key = Resolutions::key(scaled_object);
        let cached = self
            .resolutions
            .lock()
            .expect("resolutions lock")
            .get(&config, &key);
        if let Some(resolved) = cached {
            return Ok(resolved);
        }
        let resolved = Arc::new(Self::resolve_now(config.clone(), scaled_object)?);
        let mut resolutions = self.resolutions.lock().expect("resolutions lock");
        if resolutions
            .config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &config))
        {
            resolutions.insert(key, resolved.clone());
        }
        Ok(resolved)
    }

    /// Resolves the metadata and plans the queries.
    fn resolve_now(
        config: Arc<Config>,
        scaled_object: &ScaledObjectRef,
    ) -> Result<Resolved, Status> {
        let target = metadata::resolve_scaled_object(
            &config,
            &scaled_object.namespace,
            &scaled_object.scaler_metadata,
        )
        .map_err(|e| match e {
            metadata::ResolveError::Metadata(e) => Status::invalid_argument(e.to_string()),
            metadata::ResolveError::Forbidden(reason) => Status::permission_denied(reason),
        })?;
        let profile = config
            .profile(&target.profile_name)
            .expect("resolve only returns profiles of this config");
        let planned = query::plan(profile, &target);
        Ok(Resolved {
            config,
            target,
            plan: planned.plan,
            model: planned.model,
        })
    }

    /// Observes (or reuses an observation) and computes the demand.
    pub(crate) async fn evaluate(
        &self,
        scaled_object: &ScaledObjectRef,
        resolved: &Resolved,
    ) -> Evaluated {
        let evaluation = &resolved.config.evaluation;
        let observed = self
            .evaluator
            .observe_for(
                &resolved.plan,
                evaluation.cache_ttl.value.0,
                &super::evaluator::Caller {
                    namespace: &scaled_object.namespace,
                    name: &scaled_object.name,
                    profile: &resolved.target.profile_name,
                },
            )
            .await;
        let policy = evaluation.on_term_error;
        let model = resolved.model.as_deref();
        let readings = observed.current.readings(model);
        self.telemetry.record_read_errors(&readings);
        // Evaluations of one trigger that overlap read the same rises; from the same
        // observation they carry the same ones, so the last to finish is as good as any.
        let rises = self
            .carried
            .lock()
            .expect("carried lock")
            .get(scaled_object);
        let mut evaluated = match readings.demand_after(&resolved.target, policy, &rises) {
            Ok((demand, skipped)) => {
                observed.mark_good();
                self.carried
                    .lock()
                    .expect("carried lock")
                    .set(scaled_object, demand.rises.clone());
                Evaluated {
                    observation: observed.current,
                    demand: Ok(demand),
                    stale_cause: None,
                    skipped,
                }
            }
            Err(cause) => {
                // The last good observation stands in while it is recent enough.
                let stale = observed
                    .last_good
                    .filter(|good| good.started.elapsed() <= evaluation.max_staleness.value.0)
                    .and_then(|good| {
                        // Judged against the rises kept, but not kept itself: the
                        // stale observation is older than what they record.
                        let demand = good
                            .readings(model)
                            .demand_after(&resolved.target, policy, &rises)
                            .ok()?
                            .0;
                        Some((good, demand))
                    });
                match stale {
                    Some((good, demand)) => Evaluated {
                        observation: good,
                        demand: Ok(demand),
                        stale_cause: Some(cause.to_string()),
                        skipped: Vec::new(),
                    },
                    None => Evaluated {
                        observation: observed.current,
                        demand: Err(cause),
                        stale_cause: None,
                        skipped: Vec::new(),
                    },
                }
            }
        };
        self.record(scaled_object, &evaluated);
        if evaluated.stale_cause.is_some() {
            evaluated.skipped.clear();
        }
        evaluated
    }

    /// Exports the demand answered for a ScaledObject, and forgets the series of those
    /// no longer asked about.
    fn record(&self, scaled_object: &ScaledObjectRef, evaluated: &Evaluated) {
        let forgotten = self
            .tracked
            .lock()
            .expect("tracked lock")
            .seen(&scaled_object.namespace, &scaled_object.name);
        for (namespace, name) in forgotten {
            self.telemetry.forget(&namespace, &name);
            self.carried
                .lock()
                .expect("carried lock")
                .forget(&namespace, &name);
        }
        if let Ok(demand) = &evaluated.demand {
            self.telemetry.record_demand(
                &scaled_object.namespace,
                &scaled_object.name,
                demand,
                evaluated.observation.started.elapsed().as_secs_f64(),
                evaluated.stale_cause.is_some(),
            );
        }
    }

    /// The demand, or UNAVAILABLE with the cause so KEDA's fallback takes over.
    pub(crate) async fn demand(
        &self,
        scaled_object: &ScaledObjectRef,
    ) -> Result<(Arc<Resolved>, Demand), Status> {
        let resolved = self.resolve(scaled_object)?;
        let demand = self.demand_of(scaled_object, &resolved).await?;
        Ok((resolved, demand))
    }

    /// The demand of a trigger already resolved, or UNAVAILABLE with the cause.
    pub(crate) async fn demand_of(
        &self,
        scaled_object: &ScaledObjectRef,
        resolved: &Resolved,
    ) -> Result<Demand, Status> {
        let evaluated = self.evaluate(scaled_object, resolved).await;
        match evaluated.demand {
            Ok(demand) => Ok(demand),
            Err(cause) => Err(Status::unavailable(format!(
                "cannot compute the demand of {}/{}: {cause}",
                scaled_object.namespace, scaled_object.name
            ))),
        }
    }

    pub(crate) fn push_interval(&self) -> Duration {
        self.config.borrow().evaluation.push_interval.value.0
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;
    use crate::source::{Sample, SourceError};

    /// A source that is never asked: resolving does not query.
    struct Unasked;

    impl MetricsSource for Unasked {
        fn query(&self, _: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send {
            std::future::ready(Err(SourceError::BadResponse("not asked".into())))
        }
    }

    fn config(queue_per_replica: u32) -> Arc<Config> {
        let text = format!(
            "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  seed:\n    engine: seed\n    capacity: {{queue_per_replica: {queue_per_replica}, output_tokens_per_second: 5000}}\n"
        );
        Arc::new(Config::parse(&text).unwrap())
    }

    fn object(metadata: &[(&str, &str)]) -> ScaledObjectRef {
        ScaledObjectRef {
            name: "chat".into(),
            namespace: "team".into(),
            scaler_metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_trigger_is_resolved_and_planned_once_per_config() {
        let (configs, rx) = watch::channel(config(15));
        let state = State::new(rx, Unasked);
        let seed = object(&[("profile", "seed")]);
        let first = state.resolve(&seed).unwrap();
        assert!(Arc::ptr_eq(&first, &state.resolve(&seed).unwrap()));
        // Other metadata is another trigger.
        let other = state
            .resolve(&object(&[("profile", "seed"), ("queuePerReplica", "5")]))
            .unwrap();
        assert_eq!(other.target.queue_per_replica, 5.0);
        assert_eq!(first.target.queue_per_replica, 15.0);
        // A reload: the next call resolves against the new config.
        configs.send(config(30)).unwrap();
        let reloaded = state.resolve(&seed).unwrap();
        assert!(!Arc::ptr_eq(&first, &reloaded));
        assert_eq!(reloaded.target.queue_per_replica, 30.0);
        // Bad metadata is refused every time, never remembered as good.
        for _ in 0..2 {
            let refused = state.resolve(&object(&[("profile", "nope")]));
            assert_eq!(refused.err().unwrap().code(), tonic::Code::InvalidArgument);
        }
    }
}
