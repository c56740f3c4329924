//! KEDA and the Kubernetes HPA, as they act on one ScaledObject: the HPA's 15 s sync
//! with `AverageValue` targets and a tolerance, stabilization windows and rate policies
//! (the controller's `normalizeDesiredReplicasWithBehaviors`), min and max replicas;
//! KEDA's activation (0 <-> 1, `cooldownPeriod`) and its fallback after failed metric
//! calls.

use std::collections::VecDeque;

/// A scaling policy: at most `value` pods (or percent) per `period` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RatePolicy {
    /// `type: Pods`.
    Pods {
        /// Pods added or removed at most.
        value: u32,
        /// Over this many seconds.
        period: f64,
    },
    /// `type: Percent`.
    Percent {
        /// Percent of the current replicas added or removed at most.
        value: u32,
        /// Over this many seconds.
        period: f64,
    },
}

impl RatePolicy {
    fn period(&self) -> f64 {
        match self {
            RatePolicy::Pods { period, .. } | RatePolicy::Percent { period, .. } => *period,
        }
    }
}

/// Which policy wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The one allowing the largest change (Kubernetes' default).
    Max,
    /// The one allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// One direction of `behavior`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub stabilization: f64,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<RatePolicy>,
}

impl Rules {
    /// Kubernetes' default scale-up: 4 pods or 100 % per 15 s, no stabilization.
    pub fn default_up() -> Self {
        Self {
            stabilization: 0.0,
            select: Select::Max,
            policies: vec![
                RatePolicy::Pods {
                    value: 4,
                    period: 15.0,
                },
                RatePolicy::Percent {
                    value: 100,
                    period: 15.0,
                },
            ],
        }
    }

    /// Kubernetes' default scale-down: 100 % per 15 s after 300 s of stabilization.
    pub fn default_down() -> Self {
        Self {
            stabilization: 300.0,
            select: Select::Max,
            policies: vec![RatePolicy::Percent {
                value: 100,
                period: 15.0,
            }],
        }
    }
}

/// The ScaledObject fields that decide scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledObjectSpec {
    /// KEDA's activation poll, seconds.
    pub polling_interval: f64,
    /// Seconds without activity before 1 -> 0 (with `min_replicas` 0).
    pub cooldown_period: f64,
    /// `minReplicaCount`.
    pub min_replicas: u32,
    /// `maxReplicaCount`.
    pub max_replicas: u32,
    /// `fallback`: after more than `failure_threshold` failed calls, `replicas`.
    pub fallback: Option<(u32, u32)>,
    /// `behavior.scaleUp`.
    pub scale_up: Rules,
    /// `behavior.scaleDown`.
    pub scale_down: Rules,
    /// The HPA's tolerance (0.1).
    pub tolerance: f64,
    /// The HPA's sync period (15 s).
    pub sync_period: f64,
}

impl ScaledObjectSpec {
    /// The seed's ScaledObject: min 2, max 20, scale up 3 pods per 60 s, scale down 1 pod
    /// per 120 s after 300 s of stabilization.
    pub fn seed() -> Self {
        Self {
            polling_interval: 30.0,
            cooldown_period: 300.0,
            min_replicas: 2,
            max_replicas: 20,
            fallback: None,
            scale_up: Rules {
                stabilization: 0.0,
                select: Select::Max,
                policies: vec![RatePolicy::Pods {
                    value: 3,
                    period: 60.0,
                }],
            },
            scale_down: Rules {
                stabilization: 300.0,
                select: Select::Max,
                policies: vec![RatePolicy::Pods {
                    value: 1,
                    period: 120.0,
                }],
            },
            tolerance: 0.1,
            sync_period: 15.0,
        }
    }
}

impl ScaledObjectSpec {
    /// This scaler's ScaledObject in deploy/examples and the chart: a warm pool of 2, max
    /// 20, up 3 pods a minute (the seed's), down 20 % of the pods a minute (at least one)
    /// after 3 minutes of stabilization, polling every 15 s, fallback to 6 replicas after
    /// 3 failures. The stabilization window is the lull a replica is held through: about
    /// the 70B cold start, the time it takes to get a replica back. The HPA scales down
    /// to the highest demand of the window, so a longer one also holds a burst's peak
    /// for longer; the rate then lets a fleet that grew for a burst give it back in
    /// minutes, not in one pod per 2 minutes (BENCHMARKS.md, "How fast the fleet gives
    /// replicas back").
    pub fn recommended() -> Self {
        let seed = Self::seed();
        Self {
            polling_interval: 15.0,
            fallback: Some((3, 6)),
            scale_down: Rules {
                stabilization: 180.0,
                select: Select::Max,
                policies: vec![RatePolicy::Percent {
                    value: 20,
                    period: 60.0,
                }],
            },
            ..seed
        }
    }
}

/// One metric's value for the HPA: `AverageValue` with its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricValue {
    /// The metric's value for the whole target.
    pub value: f64,
    /// The target per replica.
    pub target: f64,
}

/// The HPA's state for one ScaledObject.
#[derive(Debug, Clone)]
pub struct Hpa {
    /// The ScaledObject it acts on.
    pub spec: ScaledObjectSpec,
    /// Past recommendations, for the stabilization windows.
    recommendations: VecDeque<(f64, u32)>,
    /// Past replica changes (time, change), for the rate policies.
    changes: VecDeque<(f64, i64)>,
    /// Consecutive failed metric calls, for the fallback.
    failures: u32,
    /// The last time a trigger was active, for the cooldown.
    last_active: f64,
    /// When KEDA polls next (every `polling_interval`).
    next_poll: f64,
}

impl Hpa {
    /// The HPA of a ScaledObject that has not acted yet.
    pub fn new(spec: ScaledObjectSpec) -> Self {
        Self {
            spec,
            recommendations: VecDeque::new(),
            changes: VecDeque::new(),
            failures: 0,
            last_active: 0.0,
            next_poll: 0.0,
        }
    }

    /// Remembers `replicas` as recommended at `now`: the HPA of a fleet that has been
    /// serving at that size, whose scale-down stabilization window holds it until the
    /// window has passed. Without it, the first sync of a fleet started warm would read
    /// Prometheus before its first scrapes, see no load and begin a scale-down no
    /// running fleet would.
    pub fn settle(&mut self, now: f64, replicas: u32) {
        self.recommendations.push_back((now, replicas));
    }

    /// The replica count one metric asks for (`AverageValue`): unchanged inside the
    /// tolerance.
    pub fn metric_replicas(&self, metric: MetricValue, current: u32) -> u32 {
        let ratio = metric.value / (metric.target * f64::from(current));
        if current > 0 && (ratio - 1.0).abs() <= self.spec.tolerance {
            return current;
        }
        (metric.value / metric.target - 1e-9).ceil().max(0.0) as u32
    }

    /// One HPA sync at `now` with `current` pods: the new pod count. `metrics` is
    /// `Err` when the metric call failed. A fleet at 0 is KEDA's, not the HPA's.
    pub fn sync(&mut self, now: f64, current: u32, metrics: Result<Vec<MetricValue>, ()>) -> u32 {
        if current == 0 {
            return 0;
        }
        let metrics = match metrics {
            Ok(metrics) => {
                self.failures = 0;
                metrics
            }
            Err(()) => {
                self.failures += 1;
                match self.spec.fallback {
                    Some((threshold, replicas)) if self.failures > threshold => {
                        vec![MetricValue {
                            value: f64::from(replicas),
                            target: 1.0,
                        }]
                    }
                    // The HPA does not scale on a failed metric.
                    _ => return current,
                }
            }
        };
        let Some(desired) = metrics
            .iter()
            .map(|m| self.metric_replicas(*m, current))
            .max()
        else {
            return current;
        };
        let min = self.spec.min_replicas.max(1);
        let stabilized = self.stabilize(now, current, desired);
        let next = self.limit_rate(now, current, stabilized, min);
        if next != current {
            self.changes
                .push_back((now, i64::from(next) - i64::from(current)));
        }
        next
    }

    /// `stabilizeRecommendationWithBehaviors`: the recommendation within the lowest of the
    /// scale-up window and the highest of the scale-down window.
    fn stabilize(&mut self, now: f64, current: u32, desired: u32) -> u32 {
        let up_cutoff = now - self.spec.scale_up.stabilization;
        let down_cutoff = now - self.spec.scale_down.stabilization;
        let mut up = desired;
        let mut down = desired;
        for &(at, recommendation) in &self.recommendations {
            if at > up_cutoff {
                up = up.min(recommendation);
            }
            if at > down_cutoff {
                down = down.max(recommendation);
            }
        }
        let keep = self
            .spec
            .scale_up
            .stabilization
            .max(self.spec.scale_down.stabilization);
        while self
            .recommendations
            .front()
            .is_some_and(|r| r.0 <= now - keep)
        {
            self.recommendations.pop_front();
        }
        self.recommendations.push_back((now, desired));
        let mut recommendation = current;
        if recommendation < up {
            recommendation = up;
        }
        if recommendation > down {
            recommendation = down;
        }
        recommendation
    }

    /// `convertDesiredReplicasWithBehaviorRate`: the rate policies, then min and max.
    /// The HPA first brings a count outside [min, max] inside (`reconcileAutoscaler`).
    fn limit_rate(&mut self, now: f64, current: u32, desired: u32, min: u32) -> u32 {
        let longest = self
            .spec
            .scale_up
            .policies
            .iter()
            .chain(&self.spec.scale_down.policies)
            .map(RatePolicy::period)
            .fold(0.0, f64::max);
        while self.changes.front().is_some_and(|c| c.0 <= now - longest) {
            self.changes.pop_front();
        }
        let changed_within = |period: f64, up: bool| -> i64 {
            self.changes
                .iter()
                .filter(|c| c.0 > now - period && (c.1 > 0) == up)
                .map(|c| c.1.abs())
                .sum()
        };
        let current = i64::from(current);
        let (min, max) = (i64::from(min), i64::from(self.spec.max_replicas));
        let desired = i64::from(desired);
        if desired > current {
            let rules = &self.spec.scale_up;
            let proposals = rules.policies.iter().map(|policy| {
                let start = current - changed_within(policy.period(), true);
                match *policy {
                    RatePolicy::Pods { value, .. } => start + i64::from(value),
                    RatePolicy::Percent { value, .. } => {
                        (start as f64 * (1.0 + f64::from(value) / 100.0)).ceil() as i64
                    }
                }
            });
            let limit = match rules.select {
                Select::Max => proposals.max().unwrap_or(current),
                Select::Min => proposals.min().unwrap_or(current),
                Select::Disabled => current,
            }
            .max(current);
            desired.min(max.min(limit)) as u32
        } else if desired < current {
            let rules = &self.spec.scale_down;
            let proposals = rules.policies.iter().map(|policy| {
                let start = current + changed_within(policy.period(), false);
                match *policy {
                    RatePolicy::Pods { value, .. } => start - i64::from(value),
                    // Truncated, as the controller's int32 conversion does.
                    RatePolicy::Percent { value, .. } => {
                        (start as f64 * (1.0 - f64::from(value) / 100.0)) as i64
                    }
                }
            });
            let limit = match rules.select {
                Select::Max => proposals.min().unwrap_or(current),
                Select::Min => proposals.max().unwrap_or(current),
                Select::Disabled => current,
            }
            .min(current);
            desired.max(min.max(limit)) as u32
        } else {
            desired as u32
        }
    }

    /// KEDA's activation poll, when one is due: the pod count KEDA sets itself (0 -> 1 when active,
    /// 1.. -> 0 after the cooldown), or `None` to leave scaling to the HPA.
    pub fn poll(&mut self, now: f64, current: u32, active: bool) -> Option<u32> {
        if now < self.next_poll {
            return None;
        }
        self.next_poll = now + self.spec.polling_interval;
        if active {
            self.last_active = now;
        }
        if self.spec.min_replicas > 0 {
            return None;
        }
        if current == 0 && active {
            return Some(1);
        }
        if current > 0 && !active && now - self.last_active >= self.spec.cooldown_period {
            return Some(0);
        }
        None
    }
}

#[cfg(test)]
mod tests;

pub mod manifest;
