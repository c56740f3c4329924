//! Shares evaluations: callers asking for the same queries within `cache_ttl` get one
//! observation, and concurrent callers wait for the one already running instead of
//! asking Prometheus again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::task::TaskTracker;

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use tokio::time::Instant;

use super::telemetry::Telemetry;
use crate::source::{MetricsSource, Observation, QueryPlan, observe};

/// Whether a failure with `cause` is logged now, recording it when it is.
fn should_warn(slot: &std::sync::Weak<Mutex<Slot>>, cause: &str) -> bool {
    let Some(slot) = slot.upgrade() else {
        return true;
    };
    let mut slot = slot.lock().expect("slot lock");
    let repeat = slot
        .last_warned
        .as_ref()
        .is_some_and(|(last, at)| last == cause && at.elapsed() < WARN_EVERY);
    if !repeat {
        slot.last_warned = Some((cause.to_owned(), Instant::now()));
    }
    !repeat
}

/// Slots not asked for this long are dropped, so ScaledObjects that went away cost nothing.
const IDLE_EVICTION: Duration = Duration::from_secs(600);

/// What a caller gets: the newest observation, and the last good one (see
/// [`Evaluator::mark_good`]).
pub struct Observed {
    pub current: Arc<Observation>,
    pub last_good: Option<Arc<Observation>>,
    /// The plan's slot, so that marking the observation good needs no second lookup.
    slot: Arc<Mutex<Slot>>,
}

impl Observed {
    /// Records that the current observation read every signal and gave a demand: it may
    /// stand in for later ones that fail (a query error, or a value the demand model
    /// refuses: NaN, negative, out of range), within `max_staleness`.
    pub fn mark_good(&self) {
        if !self.current.is_complete() {
            return;
        }
        let mut slot = self.slot.lock().expect("slot lock");
        let newer = slot
            .last_good
            .as_ref()
            .is_none_or(|good| good.started < self.current.started);
        if newer {
            slot.last_good = Some(self.current.clone());
        }
    }
}

/// At most this many distinct plans are cached; past it the least recently used goes.
const MAX_SLOTS: usize = 10_000;

type InFlight = Shared<BoxFuture<'static, Arc<Observation>>>;

#[derive(Default)]
struct Slot {
    /// The last finished observation.
    last: Option<Arc<Observation>>,
    /// The last observation that read every signal and gave a demand, for stale answers.
    last_good: Option<Arc<Observation>>,
    /// The observation being made, which late callers join.
    in_flight: Option<InFlight>,
    /// When a caller last asked, for eviction.
    last_used: Option<Instant>,
    /// The failure last logged for this plan, and when: the same one is logged at most
    /// once per [`WARN_EVERY`] (every failure is counted in /metrics).
    last_warned: Option<(String, Instant)>,
}

/// Who asked for an evaluation, for its log lines (empty: nobody in particular).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The ScaledObject's namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The profile its trigger names.
    pub profile: &'a str,
}

/// How often the same evaluation failure of one plan is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Runs query plans against a source, with sharing and caching.
pub struct Evaluator<S> {
    /// Where the queries go.
    source: Arc<S>,
    /// Where each observation is counted.
    telemetry: Arc<Telemetry>,
    /// Each plan's latest observation and the one in flight.
    slots: Mutex<HashMap<QueryPlan, Arc<Mutex<Slot>>>>,
    /// The service's tasks: an evaluation runs on as one, so that a caller who gives up
    /// does not cancel it for the others, and shutdown waits for it.
    tasks: TaskTracker,
}

impl<S: MetricsSource> Evaluator<S> {
    /// An evaluator over `source` whose evaluations run on `tasks`.
    pub fn new(source: Arc<S>, telemetry: Arc<Telemetry>, tasks: TaskTracker) -> Self {
        Self {
            source,
            telemetry,
            slots: Mutex::new(HashMap::new()),
            tasks,
        }
    }

    /// An observation of the plan no older than `ttl` (cached, joined, or made now),
    /// with the last complete one.
    pub async fn observe(&self, plan: &QueryPlan, ttl: Duration) -> Observed {
        self.observe_for(plan, ttl, &Caller::default()).await
    }

    /// The same, for a caller whose name an evaluation it starts logs under.
    pub async fn observe_for(
        &self,
        plan: &QueryPlan,
        ttl: Duration,
        caller: &Caller<'_>,
    ) -> Observed {
        let slot_ref = self.slot(plan);
        let in_flight = {
            let mut slot = slot_ref.lock().expect("slot lock");
            slot.last_used = Some(Instant::now());
            if let Some(last) = &slot.last
                && last.started.elapsed() < ttl
            {
                return Observed {
                    current: last.clone(),
                    last_good: slot.last_good.clone(),
                    slot: slot_ref.clone(),
                };
            }
            match &slot.in_flight {
                Some(running) => running.clone(),
                None => {
                    let running = self.start(plan.clone(), Arc::downgrade(&slot_ref), caller);
                    slot.in_flight = Some(running.clone());
                    running
                }
            }
        };
        let current = in_flight.await;
        let last_good = slot_ref.lock().expect("slot lock").last_good.clone();
        Observed {
            current,
            last_good,
            slot: slot_ref,
        }
    }

    fn slot(&self, plan: &QueryPlan) -> Arc<Mutex<Slot>> {
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(slot) = slots.get(plan) {
            return slot.clone();
        }
        let now = Instant::now();
        slots.retain(|_, slot| {
            let slot = slot.lock().expect("slot lock");
            slot.in_flight.is_some()
                || slot
                    .last_used
                    .is_some_and(|t| now.duration_since(t) < IDLE_EVICTION)
        });
        if slots.len() >= MAX_SLOTS {
            let least_recent = slots
                .iter()
                .min_by_key(|(_, slot)| slot.lock().expect("slot lock").last_used)
                .map(|(plan, _)| plan.clone());
            if let Some(plan) = least_recent {
                slots.remove(&plan);
            }
        }
        let slot = Arc::new(Mutex::new(Slot::default()));
        slots.insert(plan.clone(), slot.clone());
        slot
    }

    /// Starts an observation on its own task, so a caller that gives up (its deadline
    /// passed) does not cancel it for the others.
    fn start(
        &self,
        plan: QueryPlan,
        slot: std::sync::Weak<Mutex<Slot>>,
        caller: &Caller<'_>,
    ) -> InFlight {
        // Made only when an evaluation starts (once per plan and cache_ttl), not on every
        // call: its warnings say which ScaledObject started it.
        let span = tracing::warn_span!(
            "evaluation",
            namespace = caller.namespace,
            name = caller.name,
            profile = caller.profile
        );
        let source = self.source.clone();
        let telemetry = self.telemetry.clone();
        let finish = |slot: &std::sync::Weak<Mutex<Slot>>, observation: &Arc<Observation>| {
            if let Some(slot) = slot.upgrade() {
                let mut slot = slot.lock().expect("slot lock");
                slot.last = Some(observation.clone());
                slot.in_flight = None;
            }
        };
        let task_slot = slot.clone();
        let task = self.tasks.spawn(tracing::Instrument::instrument(async move {
            let observation = Arc::new(observe(source.as_ref(), &plan).await);
            telemetry.record_observation(&observation);
            if let Some(cause) = observation.error_summary()
                && should_warn(&task_slot, &cause)
            {
                tracing::warn!(
                    queue_query = plan.query(crate::source::Signal::Queue),
                    %cause,
                    "evaluation failed (the same failure of this plan is logged at most once a minute)"
                );
            }
            finish(&task_slot, &observation);
            observation
        }, span));
        async move {
            match task.await {
                Ok(observation) => observation,
                Err(e) => {
                    let observation = Arc::new(Observation::failed(format!(
                        "the evaluation task failed: {e}"
                    )));
                    finish(&slot, &observation);
                    observation
                }
            }
        }
        .boxed()
        .shared()
    }

    /// Plans with a slot, for tests and eviction checks.
    pub fn tracked(&self) -> usize {
        self.slots.lock().expect("slots lock").len()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::{
        config::{Config, metadata},
        source::{Sample, SourceError},
    };

    /// Counts the queries it is asked, and answers each after `delay` of tokio time.
    #[derive(Default)]
    struct Counting {
        asked: AtomicUsize,
        delay: Duration,
    }

    impl MetricsSource for Counting {
        fn query(&self, _: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                Ok(Vec::new())
            }
        }
    }

    fn plan() -> QueryPlan {
        let config = Config::parse(
            "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  seed:\n    engine: seed\n    capacity: {queue_per_replica: 15, output_tokens_per_second: 5000}\n",
        )
        .unwrap();
        let metadata = [("profile".to_owned(), "seed".to_owned())].into();
        let target = metadata::resolve(&config, &metadata).unwrap();
        crate::query::plan(config.profile("seed").unwrap(), &target).plan
    }

    fn evaluator(delay: Duration) -> (Arc<Counting>, Evaluator<Counting>) {
        let source = Arc::new(Counting {
            asked: AtomicUsize::new(0),
            delay,
        });
        let evaluator = Evaluator::new(
            source.clone(),
            Arc::new(Telemetry::new()),
            TaskTracker::new(),
        );
        (source, evaluator)
    }

    #[tokio::test(start_paused = true)]
    async fn an_observation_is_reused_for_exactly_the_ttl() {
        let (source, evaluator) = evaluator(Duration::ZERO);
        let plan = plan();
        let queries = plan.queries.len();
        let ttl = Duration::from_millis(300);
        let first = evaluator.observe(&plan, ttl).await.current;
        assert_eq!(source.asked.load(Ordering::SeqCst), queries);
        tokio::time::advance(Duration::from_millis(299)).await;
        let again = evaluator.observe(&plan, ttl).await.current;
        assert!(Arc::ptr_eq(&first, &again), "reused inside the ttl");
        assert_eq!(source.asked.load(Ordering::SeqCst), queries);
        tokio::time::advance(Duration::from_millis(1)).await;
        let fresh = evaluator.observe(&plan, ttl).await.current;
        assert!(!Arc::ptr_eq(&first, &fresh), "made anew at the ttl");
        assert_eq!(source.asked.load(Ordering::SeqCst), 2 * queries);
    }

    #[tokio::test(start_paused = true)]
    async fn callers_during_an_evaluation_join_it() {
        let (source, evaluator) = evaluator(Duration::from_secs(2));
        let evaluator = Arc::new(evaluator);
        let plan = plan();
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (evaluator, plan) = (evaluator.clone(), plan.clone());
                tokio::spawn(async move { evaluator.observe(&plan, Duration::ZERO).await.current })
            })
            .collect();
        let mut observations = Vec::new();
        for caller in callers {
            observations.push(caller.await.unwrap());
        }
        // Ten callers with a TTL of 0, one evaluation: they all arrived while it ran.
        assert_eq!(source.asked.load(Ordering::SeqCst), plan.queries.len());
        assert!(
            observations
                .iter()
                .all(|o| Arc::ptr_eq(o, &observations[0]))
        );
    }
}
