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
    /// The replicas in turn.
    RoundRobin,
}

impl Router {
    /// The router `--router` names (`least-outstanding`, `round-robin`).
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
    /// Which role its replicas play.
    pub role: Role,
    /// The replica model every pod runs.
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
    /// An empty pool whose router refuses requests held longer than `request_timeout`.
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

    /// Scales to `target` pods serving at `now`: new ones were created one cold start
    /// earlier and are billed from then (perfect foresight); surplus ones go as in
    /// [`Self::scale_to`].
    pub fn scale_ready(&mut self, target: u32, now: f64) {
        let pods = self.pods();
        if target <= pods {
            self.scale_to(target, now);
            return;
        }
        self.scale_events += 1;
        for _ in pods..target {
            self.create(now - self.model.cold_start, now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::stats::SloThresholds;

    fn pool(router: Router) -> Pool {
        Pool::new(Role::Unified, ModelProfile::llama3_8b_h100(), router, 300.0)
    }

    #[test]
    fn least_outstanding_fills_the_emptiest_replica_and_round_robin_cycles() {
        let mut stats = Stats::new(SloThresholds::default());
        let mut least = pool(Router::LeastOutstanding);
        least.start_warm(3, 0.0);
        let mut rr = pool(Router::RoundRobin);
        rr.start_warm(3, 0.0);
        for pool in [&mut least, &mut rr] {
            for _ in 0..6 {
                let request = Request::new(0.0, 100_000, 100);
                stats.arrived(&request);
                pool.route(request, 0.0);
            }
        }
        let held = |p: &Pool| {
            p.replicas
                .iter()
                .map(Replica::outstanding)
                .collect::<Vec<_>>()
        };
        assert_eq!(held(&least), [2, 2, 2]);
        assert_eq!(held(&rr), [2, 2, 2]);
        // After the first replica drains its two, least-outstanding sends it the next two.
        least.replicas[0].abandon(&mut stats);
        least.route(Request::new(0.0, 10, 10), 0.0);
        least.route(Request::new(0.0, 10, 10), 0.0);
        assert_eq!(held(&least), [2, 2, 2]);
        rr.route(Request::new(0.0, 10, 10), 0.0);
        assert_eq!(held(&rr), [3, 2, 2]);
    }

    #[test]
    fn scaling_starts_cold_replicas_and_drains_the_idlest() {
        let mut stats = Stats::new(SloThresholds::default());
        let mut pool = pool(Router::LeastOutstanding);
        pool.start_warm(2, 0.0);
        pool.scale_to(4, 10.0);
        assert_eq!(pool.pods(), 4);
        assert_eq!(pool.serving().count(), 2);
        pool.advance(49.0, &mut stats, &mut Vec::new());
        assert_eq!(pool.serving().count(), 2);
        pool.advance(50.0, &mut stats, &mut Vec::new());
        assert_eq!(pool.serving().count(), 4, "cold start is 40 s");
        // Scale-in drains the idlest: the three idle replicas go, the busy one stays.
        pool.route(Request::new(50.0, 500, 200), 50.0);
        let busy = pool
            .replicas
            .iter()
            .position(|r| r.outstanding() == 1)
            .unwrap();
        let busy = pool.replicas[busy].name.clone();
        pool.scale_to(1, 50.0);
        assert_eq!(pool.pods(), 1);
        pool.advance(51.0, &mut stats, &mut Vec::new());
        assert_eq!(pool.replicas.len(), 1);
        assert_eq!(pool.replicas[0].name, busy);
        assert!(!pool.is_idle());
        pool.advance(100.0, &mut stats, &mut Vec::new());
        assert!(pool.is_idle());
        assert_eq!(stats.finished, 1);
        // The kept replica 0-100 s; the others until they left at 51 s (two from 0, two from 10).
        let seconds = pool.replica_seconds(100.0);
        assert!(
            (seconds - (100.0 + 51.0 + 41.0 + 41.0)).abs() < 1e-9,
            "{seconds}"
        );
        // Draining a busy replica: its request finishes before it leaves.
        pool.route(Request::new(100.0, 500, 200), 100.0);
        pool.scale_to(0, 100.0);
        assert_eq!(pool.pods(), 0);
        pool.advance(100.5, &mut stats, &mut Vec::new());
        assert_eq!(pool.replicas.len(), 1, "still draining");
        pool.advance(200.0, &mut stats, &mut Vec::new());
        assert!(pool.replicas.is_empty());
        assert_eq!(stats.finished, 2);
        assert_eq!(pool.scale_events, 3);
    }

    #[test]
    fn the_router_holds_requests_while_no_replica_serves_and_refuses_them_after_the_timeout() {
        let mut stats = Stats::new(SloThresholds::default());
        let mut pool = pool(Router::LeastOutstanding);
        pool.scale_to(1, 0.0);
        let request = Request::new(0.0, 10, 2);
        stats.arrived(&request);
        pool.route(request, 0.0);
        assert_eq!(pool.gateway_len(), 1);
        pool.advance(41.0, &mut stats, &mut Vec::new());
        assert_eq!(pool.gateway_len(), 0);
        pool.advance(42.0, &mut stats, &mut Vec::new());
        assert_eq!(stats.finished, 1);
        assert!(stats.ttft.quantile(1.0).unwrap() > 40.0);

        let mut empty = Pool::new(
            Role::Unified,
            ModelProfile::llama3_8b_h100(),
            Router::RoundRobin,
            300.0,
        );
        empty.route(Request::new(0.0, 10, 2), 0.0);
        empty.advance(301.0, &mut stats, &mut Vec::new());
        assert_eq!(stats.refused, 1);
    }
}
