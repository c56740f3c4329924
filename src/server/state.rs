//! What the gRPC service, the HTTP endpoints and the streams share: the config in force,
//! the evaluator, telemetry and readiness, and one trigger's resolution and evaluation.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::Status;

use super::{evaluator::Evaluator, telemetry::Telemetry, tls, tracked};
use crate::{
    config::{
        Config,
        metadata::{self, Target},
        reload::ReloadStatus,
    },
    demand::Demand,
    proto::externalscaler::ScaledObjectRef,
    query,
    source::{MetricsSource, Observation, QueryPlan},
};

/// What the gRPC service, the HTTP endpoints and the streams share.
pub struct State<S> {
    /// The config in force; a reload sends a new one and streams see it.
    pub config: watch::Receiver<Arc<Config>>,
    pub evaluator: Evaluator<S>,
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
    pub demand: Result<Demand, String>,
    /// Why the newest evaluation was not used, when the answer is stale.
    pub stale_cause: Option<String>,
    /// Failures that removed terms under `on_term_error: skip`.
    pub skipped: Vec<String>,
}

impl<S: MetricsSource> State<S> {
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
        }
    }

    /// Reads a trigger's metadata against the current config; bad metadata is INVALID_ARGUMENT.
    pub(crate) fn resolve(&self, scaled_object: &ScaledObjectRef) -> Result<Resolved, Status> {
        metadata::check_scaled_object_name(&scaled_object.name, &scaled_object.namespace)
            .map_err(Status::invalid_argument)?;
        let config = self.config.borrow().clone();
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
            .observe(&resolved.plan, evaluation.cache_ttl.value.0)
            .await;
        let policy = evaluation.on_term_error;
        let model = resolved.model.as_deref();
        let mut evaluated = match observed
            .current
            .readings(model)
            .demand(&resolved.target, policy)
        {
            Ok((demand, skipped)) => {
                observed.mark_good();
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
                        let demand = good
                            .readings(model)
                            .demand(&resolved.target, policy)
                            .ok()?
                            .0;
                        Some((good, demand))
                    });
                match stale {
                    Some((good, demand)) => Evaluated {
                        observation: good,
                        demand: Ok(demand),
                        stale_cause: Some(cause),
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
        let forgotten = self
            .tracked
            .lock()
            .expect("tracked lock")
            .seen(&scaled_object.namespace, &scaled_object.name);
        for (namespace, name) in forgotten {
            self.telemetry.forget(&namespace, &name);
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
        if evaluated.stale_cause.is_some() {
            evaluated.skipped.clear();
        }
        evaluated
    }

    /// The demand, or UNAVAILABLE with the cause so KEDA's fallback takes over.
    pub(crate) async fn demand(
        &self,
        scaled_object: &ScaledObjectRef,
    ) -> Result<(Resolved, Demand), Status> {
        let resolved = self.resolve(scaled_object)?;
        let evaluated = self.evaluate(scaled_object, &resolved).await;
        match evaluated.demand {
            Ok(demand) => Ok((resolved, demand)),
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
