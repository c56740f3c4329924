//! A pool of replicas behind a router: what a Deployment plus a load balancer does.

use std::collections::VecDeque;

use super::{
    model::{Counters, Handoff, ModelProfile, Phase, Replica, Request, Role},
    stats::Stats,
};

/// How the router picks a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Router {
    /// The replica holding the fewest requests (queue-aware; what the seed recommends).
    LeastOutstanding,
    RoundRobin,
}

impl Router {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "least-outstanding" => Some(Router::LeastOutstanding),
            "round-robin" => Some(Router::RoundRobin),
            _ => None,
        }
    }
}

/// One Deployment's replicas, its router, and what it cost.
#[derive(Debug, Clone)]
pub struct Pool {
    pub role: Role,
    pub model: ModelProfile,
    router: Router,
    replicas: Vec<Replica>,
    /// Requests the router holds while no replica serves (a fleet at zero, or starting).
    gateway: VecDeque<Request>,
    /// Requests waiting in the gateway longer than this are refused.
    request_timeout: f64,
    next_round_robin: usize,
    created: u64,
    /// Counters of replicas that are gone: the fleet's counters only grow.
    retired: Counters,
    /// Replica-seconds of replicas that are gone.
    retired_seconds: f64,
    /// Pod-count changes, for scale events.
    pub scale_events: u64,
}

impl Pool {
    pub fn new(role: Role, model: ModelProfile, router: Router, request_timeout: f64) -> Self {
        Self {
            role,
            model,
            router,
            replicas: Vec::new(),
            gateway: VecDeque::new(),
            request_timeout,
            next_round_robin: 0,
            created: 0,
            retired: Counters::new(),
            retired_seconds: 0.0,
            scale_events: 0,
        }
    }

    /// Pods that count for the HPA: starting or serving, not draining.
    pub fn pods(&self) -> u32 {
        self.replicas
            .iter()
            .filter(|r| r.phase != Phase::Draining)
            .count() as u32
    }

    /// Replicas that export metrics: serving or draining.
    pub fn serving(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| r.is_serving())
    }

    /// Starts `n` replicas now, warm (no cold start): the fleet a run begins with.
    pub fn start_warm(&mut self, n: u32, now: f64) {
        for _ in 0..n {
            self.create(now, now);
        }
    }

    fn create(&mut self, now: f64, ready_at: f64) {
        self.created += 1;
        let name = format!("replica-{}", self.created);
        self.replicas
            .push(Replica::new(name, self.role, now, ready_at));
    }

    /// Scales to `target` pods: new ones start cold; surplus ones go, starting ones
    /// first, then the serving ones holding the least work, which drain.
    pub fn scale_to(&mut self, target: u32, now: f64) {
        let pods = self.pods();
        if target == pods {
            return;
        }
        self.scale_events += 1;
        if target > pods {
            for _ in pods..target {
                self.create(now, now + self.model.cold_start);
            }
            return;
        }
        let mut surplus = pods - target;
        while surplus > 0 {
            let starting = self
                .replicas
                .iter()
                .rposition(|r| matches!(r.phase, Phase::Starting { .. }));
            if let Some(index) = starting {
                let replica = self.replicas.remove(index);
                self.retired_seconds += now - replica.created_at;
            } else {
                let Some(index) = self
                    .replicas
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.phase == Phase::Ready)
                    .min_by_key(|(_, r)| r.outstanding())
                    .map(|(i, _)| i)
                else {
                    break;
                };
                self.replicas[index].phase = Phase::Draining;
            }
            surplus -= 1;
        }
    }

    /// Runs every replica up to `until`; drained replicas leave.
    pub fn advance(&mut self, until: f64, stats: &mut Stats, handoffs: &mut Vec<Handoff>) {
        for replica in &mut self.replicas {
            replica.advance(until, &self.model, stats, handoffs);
        }
        let mut index = 0;
        while index < self.replicas.len() {
            let replica = &self.replicas[index];
            if replica.phase == Phase::Draining && replica.outstanding() == 0 {
                let replica = self.replicas.remove(index);
                self.retired_seconds += until - replica.created_at;
                self.retired.add(&replica.counters);
            } else {
                index += 1;
            }
        }
        self.release_gateway(until, stats);
    }

    /// Hands held requests to replicas that serve; refuses those held too long.
    fn release_gateway(&mut self, now: f64, stats: &mut Stats) {
        while let Some(front) = self.gateway.front() {
            if now - front.arrival > self.request_timeout {
                let request = self.gateway.pop_front().expect("front exists");
                stats.refused(&request);
                continue;
            }
            let Some(index) = self.pick() else {
                return;
            };
            let request = self.gateway.pop_front().expect("front exists");
            self.replicas[index].accept(request, now);
        }
    }

    fn pick(&mut self) -> Option<usize> {
        let ready = |r: &Replica| r.phase == Phase::Ready;
        match self.router {
            Router::LeastOutstanding => self
                .replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| ready(r))
                .min_by_key(|(_, r)| r.outstanding())
                .map(|(i, _)| i),
            Router::RoundRobin => {
                let n = self.replicas.len();
                (0..n)
                    .map(|k| (self.next_round_robin + k) % n)
                    .find(|&i| ready(&self.replicas[i]))
                    .inspect(|&i| self.next_round_robin = i + 1)
            }
        }
    }

    /// Routes a request arriving at `now` (the pool must have been advanced to `now`).
    pub fn route(&mut self, request: Request, now: f64) {
        if self.gateway.is_empty()
            && let Some(index) = self.pick()
        {
            self.replicas[index].accept(request, now);
        } else {
            self.gateway.push_back(request);
        }
    }

    /// The fleet's counters: every replica's, the departed ones' included.
    pub fn counters(&self) -> Counters {
        let mut total = self.retired.clone();
        for replica in self.serving() {
            total.add(&replica.counters);
        }
        total
    }

    /// Replica-seconds so far, cold starts and drains included.
    pub fn replica_seconds(&self, now: f64) -> f64 {
        self.retired_seconds
            + self
                .replicas
                .iter()
                .map(|r| now - r.created_at)
                .sum::<f64>()
    }

    /// Requests the router holds.
    pub fn gateway_len(&self) -> usize {
        self.gateway.len()
    }

    /// True when nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.gateway.is_empty() && self.replicas.iter().all(|r| r.outstanding() == 0)
    }

    /// Ends a run: whatever is still held counts as unfinished.
    pub fn abandon(&mut self, stats: &mut Stats) {
        for request in self.gateway.drain(..) {
            stats.unfinished(&request);
        }
        for replica in &mut self.replicas {
            replica.abandon(stats);
        }
    }
}
