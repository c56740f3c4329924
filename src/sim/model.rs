//! One replica of an LLM server with continuous batching (vLLM's scheduler, simplified).
//!
//! Every engine step runs all decoding sequences for one token each, plus up to
//! `chunk_tokens` of prompt (chunked prefill). A step takes
//!
//! ```text
//! step = c + d x B + e x C + b x p + q x p x (2 x prefix + p)
//! ```
//!
//! with B decoding sequences holding C context tokens, and p prompt tokens whose prompt
//! already has `prefix` tokens prefilled (so a whole prompt of n tokens costs b n + q n^2,
//! as in `prefill(n) = a + b n + q n^2`; a step with no decoding sequence costs `a`
//! instead of `c`). `d` rises past `batch_knee` sequences. The figures of each preset and
//! their sources are in `docs/simulator.md`.
//!
//! A request is admitted when the batch has room (`max_batch`) and the KV cache can hold
//! its whole context (prompt plus output): requests wait otherwise, and none is preempted.
//! A replica starts `cold_start` seconds after it is created and serves nothing before.
//! Draining, it takes no new request and finishes the ones it holds.
//!
//! Stretches of decoding without prefill run as one block of up to [`MAX_BLOCK_STEPS`]
//! identical steps, ending early at the first sequence to finish: the model is exact at
//! the step level and a 14-day trace runs in seconds.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
};

/// Whether a request can meet each SLO at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feasible {
    /// Its TTFT alone on an idle replica meets the TTFT threshold.
    pub ttft: bool,
    /// Its TPOT alone on an idle replica meets the TPOT threshold.
    pub tpot: bool,
}

impl Feasible {
    /// Feasible for both SLOs: what a request is when nobody asked.
    pub const BOTH: Self = Self {
        ttft: true,
        tpot: true,
    };
}

/// Where a replica reports what becomes of its requests: the run's statistics. The
/// replica model knows nothing of how they are counted.
pub trait Recorder {
    /// The replica cannot hold the request's context.
    fn refused(&mut self, request: &Request);
    /// The request's first token is out.
    fn first_token(&mut self, request: &Request);
    /// The request's last token is out at `at`.
    fn finished(&mut self, request: &Request, at: f64);
    /// The replica went away with the request unfinished.
    fn unfinished(&mut self, request: &Request);
}

/// Decode steps run as one block at most: context grows inside a block, and the block's
/// duration accounts for it exactly.
pub const MAX_BLOCK_STEPS: u64 = 32;

/// Performance figures of one replica (a model on its GPUs). Times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelProfile {
    /// The preset's name, as `--model` takes it.
    pub name: &'static str,
    /// a: the fixed cost of a step that holds only prefill.
    pub prefill_fixed: f64,
    /// b: per prompt token.
    pub prefill_per_token: f64,
    /// q: per prompt token squared (attention over the prompt).
    pub prefill_quadratic: f64,
    /// c: the fixed cost of a step with decoding sequences.
    pub step_fixed: f64,
    /// d: per decoding sequence, up to `batch_knee` sequences.
    pub step_per_sequence: f64,
    /// d past the knee.
    pub step_per_sequence_past_knee: f64,
    /// The batch size past which each sequence costs `step_per_sequence_past_knee`.
    pub batch_knee: u32,
    /// e: per context token of the decoding sequences.
    pub step_per_context_token: f64,
    /// Tokens the KV cache holds.
    pub kv_capacity_tokens: u64,
    /// Sequences a step may hold (vLLM's `max_num_seqs`).
    pub max_batch: u32,
    /// Tokens a step may hold, decode tokens included (vLLM's `max_num_batched_tokens`).
    pub chunk_tokens: u32,
    /// Seconds from pod creation to serving.
    pub cold_start: f64,
    /// GPUs one replica holds, for GPU-hours.
    pub gpus: u32,
}

impl ModelProfile {
    /// Llama-3.x-70B on 4x H100 (TP4), BF16.
    pub fn llama3_70b_tp4_h100() -> Self {
        Self {
            name: "llama-3-70b-tp4-h100",
            prefill_fixed: 0.020,
            prefill_per_token: 70e-6,
            prefill_quadratic: 0.65e-9,
            step_fixed: 0.018,
            step_per_sequence: 0.01e-3,
            step_per_sequence_past_knee: 0.025e-3,
            batch_knee: 128,
            step_per_context_token: 35e-9,
            kv_capacity_tokens: 468_752,
            max_batch: 256,
            chunk_tokens: 2048,
            cold_start: 180.0,
            gpus: 4,
        }
    }

    /// Llama-3.x-8B on 1x H100, BF16.
    pub fn llama3_8b_h100() -> Self {
        Self {
            name: "llama-3-8b-h100",
            prefill_fixed: 0.008,
            prefill_per_token: 28e-6,
            prefill_quadratic: 0.5e-9,
            step_fixed: 0.007,
            step_per_sequence: 0.01e-3,
            step_per_sequence_past_knee: 0.025e-3,
            batch_knee: 128,
            step_per_context_token: 55e-9,
            kv_capacity_tokens: 450_000,
            max_batch: 256,
            chunk_tokens: 2048,
            cold_start: 40.0,
            gpus: 1,
        }
    }

    /// The presets by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "llama-3-70b-tp4-h100" | "70b" => Some(Self::llama3_70b_tp4_h100()),
            "llama-3-8b-h100" | "8b" => Some(Self::llama3_8b_h100()),
            _ => None,
        }
    }

    /// What `--model` takes, for error messages.
    pub const PRESETS: &'static str = "llama-3-70b-tp4-h100 (70b) or llama-3-8b-h100 (8b)";

    /// The time of one step without prefill: B sequences holding C context tokens.
    pub fn decode_step(&self, batch: u64, context: u64) -> f64 {
        let knee = u64::from(self.batch_knee);
        let sequences = self.step_per_sequence * batch.min(knee) as f64
            + self.step_per_sequence_past_knee * batch.saturating_sub(knee) as f64;
        self.step_fixed + sequences + self.step_per_context_token * context as f64
    }

    /// The prompt part of a step: `tokens` of a prompt whose first `prefix` are done.
    pub fn prefill_piece(&self, tokens: u64, prefix: u64) -> f64 {
        let p = tokens as f64;
        self.prefill_per_token * p + self.prefill_quadratic * p * (2.0 * prefix as f64 + p)
    }
}

/// What a replica does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Prefill and decode.
    Unified,
    /// Prefill only: the request moves to a decode replica after its first token.
    Prefill,
    /// Decode only: the request arrives with its prompt's KV cache and first token.
    Decode,
}

/// A request as the simulator carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Seconds since the trace's start.
    pub arrival: f64,
    /// Prompt tokens.
    pub input: u32,
    /// Output tokens (at least 1).
    pub output: u32,
    /// When a replica first scheduled it (its queue time ends); NaN before.
    pub scheduled: f64,
    /// When its first token came out; NaN before.
    pub first_token: f64,
    /// Which SLOs it can meet at all (alone on an idle replica).
    pub feasible: Feasible,
}

impl Request {
    /// A request arriving at `arrival` seconds, not yet scheduled.
    pub fn new(arrival: f64, input: u32, output: u32) -> Self {
        Self {
            arrival,
            input,
            output: output.max(1),
            scheduled: f64::NAN,
            first_token: f64::NAN,
            feasible: Feasible::BOTH,
        }
    }
}

/// The lifecycle of a replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Loading the model; serves from `ready_at`.
    Starting {
        /// When it starts serving, in seconds since the trace's start.
        ready_at: f64,
    },
    /// Serving.
    Ready,
    /// Taking no new requests; gone once empty.
    Draining,
}

/// Counters and gauges a replica exports, as the engine's /metrics would.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Prompt tokens processed (`prompt_tokens_total`).
    pub prompt_tokens: f64,
    /// Output tokens generated (`generation_tokens_total`).
    pub generation_tokens: f64,
    /// Requests finished (`request_success_total`).
    pub requests_finished: f64,
    /// Per bucket of [`TTFT_BUCKETS`] (not cumulative), then the overflow.
    pub ttft_buckets: Vec<f64>,
    /// Per bucket of [`TPOT_BUCKETS`], then the overflow.
    pub tpot_buckets: Vec<f64>,
    /// Per bucket of [`REQUEST_TIME_BUCKETS`], then the overflow: each request's prefill
    /// time, from its first schedule to its first token (`request_prefill_time_seconds`).
    pub prefill_buckets: Vec<f64>,
    /// The same for each request's time waiting before that schedule
    /// (`request_queue_time_seconds`).
    pub queue_buckets: Vec<f64>,
    /// Finished requests' prompt and output tokens, summed, and their count: the `_sum`
    /// and `_count` of `request_prompt_tokens` and `request_generation_tokens`.
    pub finished_prompt_tokens: f64,
    /// See `finished_prompt_tokens`.
    pub finished_generation_tokens: f64,
    /// See `finished_prompt_tokens`.
    pub finished_length_count: f64,
    /// Per bucket of [`PROMPT_TOKEN_BUCKETS`], then the overflow: each finished request's
    /// prompt length (the buckets of `request_prompt_tokens`).
    pub prompt_length_buckets: Vec<f64>,
    /// The same for each finished request's output length (the buckets of
    /// `request_generation_tokens`).
    pub output_length_buckets: Vec<f64>,
}

/// vLLM's `time_to_first_token_seconds` bucket bounds.
pub const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's bucket bounds of `request_time_per_output_token_seconds` (the same as its
/// inter-token latency's).
pub const TPOT_BUCKETS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// vLLM's bucket bounds for its request-length histograms, prompt and output alike: 1, 2,
/// 5 per decade up to the model's context (128k tokens here).
pub const PROMPT_TOKEN_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5,
];

/// vLLM's bucket bounds for its per-request phase times (queue, prefill, decode).
pub const REQUEST_TIME_BUCKETS: [f64; 21] = [
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

impl Counters {
    /// Counters at zero, with every histogram's buckets.
    pub fn new() -> Self {
        Self {
            ttft_buckets: vec![0.0; TTFT_BUCKETS.len() + 1],
            tpot_buckets: vec![0.0; TPOT_BUCKETS.len() + 1],
            prefill_buckets: vec![0.0; REQUEST_TIME_BUCKETS.len() + 1],
            queue_buckets: vec![0.0; REQUEST_TIME_BUCKETS.len() + 1],
            prompt_length_buckets: vec![0.0; PROMPT_TOKEN_BUCKETS.len() + 1],
            output_length_buckets: vec![0.0; PROMPT_TOKEN_BUCKETS.len() + 1],
            ..Self::default()
        }
    }

    /// Adds another replica's counters: the fleet's sum, as PromQL's `sum` gives it.
    pub fn add(&mut self, other: &Counters) {
        self.prompt_tokens += other.prompt_tokens;
        self.generation_tokens += other.generation_tokens;
        self.requests_finished += other.requests_finished;
        self.finished_prompt_tokens += other.finished_prompt_tokens;
        self.finished_generation_tokens += other.finished_generation_tokens;
        self.finished_length_count += other.finished_length_count;
        for (a, b) in self.ttft_buckets.iter_mut().zip(&other.ttft_buckets) {
            *a += b;
        }
        for (a, b) in self.tpot_buckets.iter_mut().zip(&other.tpot_buckets) {
            *a += b;
        }
        for (a, b) in self.prefill_buckets.iter_mut().zip(&other.prefill_buckets) {
            *a += b;
        }
        for (a, b) in self.queue_buckets.iter_mut().zip(&other.queue_buckets) {
            *a += b;
        }
        for (a, b) in self
            .prompt_length_buckets
            .iter_mut()
            .zip(&other.prompt_length_buckets)
        {
            *a += b;
        }
        for (a, b) in self
            .output_length_buckets
            .iter_mut()
            .zip(&other.output_length_buckets)
        {
            *a += b;
        }
    }
}

fn observe(buckets: &mut [f64], bounds: &[f64], value: f64) {
    let index = bounds.partition_point(|&le| le < value);
    buckets[index] += 1.0;
}

/// A request moving from a prefill replica to the decode pool, at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Handoff {
    /// When it reaches the decode pool, in seconds since the trace's start.
    pub at: f64,
    /// The request, its prefill done.
    pub request: Request,
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its pod name, the value of the replica label.
    pub name: String,
    /// Which role it plays.
    pub role: Role,
    /// Where it is in its lifecycle.
    pub phase: Phase,
    /// When the pod was created, for GPU-hours.
    pub created_at: f64,
    /// How far the replica has run; it may run past the last `advance` target by part
    /// of a step.
    clock: f64,
    /// Steps run so far; a decoding sequence's progress is counted in steps.
    steps: u64,
    /// Admitted by the router, not yet by the scheduler.
    waiting: VecDeque<Request>,
    /// Admitted, prompt not fully processed: the request and its prompt tokens done.
    prefilling: VecDeque<(Request, u64)>,
    /// Decoding, by the step at which each finishes.
    decoding: BinaryHeap<Reverse<(u64, usize)>>,
    /// The decoding requests, by slot.
    slots: Vec<Request>,
    free_slots: Vec<usize>,
    /// sum(input + 1 - join step) over decoding sequences: C = this + B x steps.
    context_offset: i64,
    /// KV tokens held by admitted requests.
    kv_reserved: u64,
    /// What it exports.
    pub counters: Counters,
}

impl Replica {
    /// A pod created at `created_at` that serves from `ready_at` (at once when not later).
    pub fn new(name: String, role: Role, created_at: f64, ready_at: f64) -> Self {
        Self {
            name,
            role,
            phase: if ready_at <= created_at {
                Phase::Ready
            } else {
                Phase::Starting { ready_at }
            },
            created_at,
            clock: ready_at,
            steps: 0,
            waiting: VecDeque::new(),
            prefilling: VecDeque::new(),
            decoding: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            context_offset: 0,
            kv_reserved: 0,
            counters: Counters::new(),
        }
    }

    /// Requests it holds: waiting, prefilling and decoding.
    pub fn outstanding(&self) -> usize {
        self.waiting.len() + self.prefilling.len() + self.decoding.len()
    }

    /// Requests admitted, waiting for the scheduler (`num_requests_waiting`).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requests being prefilled or decoded (`num_requests_running`).
    pub fn running(&self) -> usize {
        self.prefilling.len() + self.decoding.len()
    }

    /// KV-cache usage, 0 to 1.
    pub fn kv_usage(&self, model: &ModelProfile) -> f64 {
        self.kv_reserved as f64 / model.kv_capacity_tokens as f64
    }

    /// True once the model is loaded (draining replicas still serve what they hold).
    pub fn is_serving(&self) -> bool {
        !matches!(self.phase, Phase::Starting { .. })
    }

    /// Takes a request from the router at `now`.
    pub fn accept(&mut self, request: Request, now: f64) {
        if self.outstanding() == 0 && self.clock < now {
            self.clock = now;
        }
        self.waiting.push_back(request);
    }

    /// The KV tokens a request holds on this replica.
    fn kv_need(&self, request: &Request) -> u64 {
        match self.role {
            Role::Prefill => u64::from(request.input),
            Role::Unified | Role::Decode => u64::from(request.input) + u64::from(request.output),
        }
    }

    /// Moves waiting requests into the batch while they fit; a request that can never
    /// fit is refused.
    fn admit(&mut self, model: &ModelProfile, stats: &mut dyn Recorder) {
        while let Some(front) = self.waiting.front() {
            let need = self.kv_need(front);
            if need > model.kv_capacity_tokens {
                let request = self.waiting.pop_front().expect("front exists");
                stats.refused(&request);
                continue;
            }
            if self.running() >= model.max_batch as usize
                || self.kv_reserved + need > model.kv_capacity_tokens
            {
                return;
            }
            let mut request = self.waiting.pop_front().expect("front exists");
            self.kv_reserved += need;
            match self.role {
                Role::Unified | Role::Prefill => {
                    request.scheduled = self.clock;
                    self.prefilling.push_back((request, 0));
                }
                Role::Decode => {
                    if request.output <= 1 {
                        self.kv_reserved -= need;
                        self.finish(request, self.clock, stats);
                    } else {
                        self.join_decode(request);
                    }
                }
            }
        }
    }

    /// A request with its first token joins the decoding batch at the current step.
    fn join_decode(&mut self, request: Request) {
        let finish_step = self.steps + u64::from(request.output) - 1;
        self.context_offset += i64::from(request.input) + 1 - self.steps as i64;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = request;
                slot
            }
            None => {
                self.slots.push(request);
                self.slots.len() - 1
            }
        };
        self.decoding.push(Reverse((finish_step, slot)));
    }

    fn finish(&mut self, request: Request, at: f64, stats: &mut dyn Recorder) {
        self.counters.requests_finished += 1.0;
        self.observe_phases(&request);
        if request.output > 1 {
            let tpot = (at - request.first_token) / f64::from(request.output - 1);
            observe(&mut self.counters.tpot_buckets, &TPOT_BUCKETS, tpot);
        }
        stats.finished(&request, at);
    }

    /// A finished request's lengths, and its queue and prefill time, recorded when it
    /// finishes as vLLM does; a decode replica took neither time (the prefill replica
    /// recorded them).
    fn observe_phases(&mut self, request: &Request) {
        let generated = match self.role {
            Role::Prefill => 1,
            Role::Unified | Role::Decode => request.output,
        };
        self.counters.finished_prompt_tokens += f64::from(request.input);
        self.counters.finished_generation_tokens += f64::from(generated);
        self.counters.finished_length_count += 1.0;
        observe(
            &mut self.counters.prompt_length_buckets,
            &PROMPT_TOKEN_BUCKETS,
            f64::from(request.input),
        );
        observe(
            &mut self.counters.output_length_buckets,
            &PROMPT_TOKEN_BUCKETS,
            f64::from(generated),
        );
        if self.role == Role::Decode || request.scheduled.is_nan() {
            return;
        }
        let queue = request.scheduled - request.arrival;
        let prefill = request.first_token - request.scheduled;
        observe(
            &mut self.counters.queue_buckets,
            &REQUEST_TIME_BUCKETS,
            queue,
        );
        observe(
            &mut self.counters.prefill_buckets,
            &REQUEST_TIME_BUCKETS,
            prefill,
        );
    }

    fn context(&self) -> u64 {
        (self.context_offset + (self.decoding.len() as u64 * self.steps) as i64).max(0) as u64
    }

    /// Runs the replica up to `until` (it may stop past it, inside a step). Requests
    /// that finish prefill on a prefill replica go to `handoffs`.
    pub fn advance(
        &mut self,
        until: f64,
        model: &ModelProfile,
        stats: &mut dyn Recorder,
        handoffs: &mut Vec<Handoff>,
    ) {
        if let Phase::Starting { ready_at } = self.phase {
            if until < ready_at {
                return;
            }
            self.phase = Phase::Ready;
            self.clock = self.clock.max(ready_at);
        }
        while self.clock < until {
            self.admit(model, stats);
            if !self.prefilling.is_empty() {
                self.prefill_step(model, stats, handoffs);
            } else if !self.decoding.is_empty() {
                self.decode_block(until, model, stats);
            } else {
                self.clock = until;
            }
        }
    }

    /// One step holding prompt tokens (and every decoding sequence).
    fn prefill_step(
        &mut self,
        model: &ModelProfile,
        stats: &mut dyn Recorder,
        handoffs: &mut Vec<Handoff>,
    ) {
        let batch = self.decoding.len() as u64;
        let context = self.context();
        let mut budget = u64::from(model.chunk_tokens).saturating_sub(batch).max(1);
        let mut time = if batch == 0 {
            model.prefill_fixed
        } else {
            model.decode_step(batch, context)
        };
        let mut completed = 0;
        let mut tokens = 0;
        for (request, done) in self.prefilling.iter_mut() {
            if budget == 0 {
                break;
            }
            let left = u64::from(request.input) - *done;
            let piece = left.min(budget);
            time += model.prefill_piece(piece, *done);
            *done += piece;
            budget -= piece;
            tokens += piece;
            if *done == u64::from(request.input) {
                completed += 1;
            }
        }
        self.clock += time;
        self.steps += 1;
        self.counters.prompt_tokens += tokens as f64;
        self.counters.generation_tokens += batch as f64 + completed as f64;
        self.finish_due(stats);
        for _ in 0..completed {
            let (mut request, _) = self.prefilling.pop_front().expect("completed prompts lead");
            request.first_token = self.clock;
            observe(
                &mut self.counters.ttft_buckets,
                &TTFT_BUCKETS,
                self.clock - request.arrival,
            );
            stats.first_token(&request);
            match self.role {
                Role::Prefill => {
                    self.kv_reserved -= self.kv_need(&request);
                    self.counters.requests_finished += 1.0;
                    self.observe_phases(&request);
                    handoffs.push(Handoff {
                        at: self.clock,
                        request,
                    });
                }
                _ if request.output <= 1 => {
                    self.kv_reserved -= self.kv_need(&request);
                    self.finish(request, self.clock, stats);
                }
                _ => self.join_decode(request),
            }
        }
    }

    /// Up to [`MAX_BLOCK_STEPS`] decode-only steps, ending at the first sequence to
    /// finish or once past `until`.
    fn decode_block(&mut self, until: f64, model: &ModelProfile, stats: &mut dyn Recorder) {
        let batch = self.decoding.len() as u64;
        let Reverse((next_finish, _)) = *self.decoding.peek().expect("decoding is not empty");
        let to_finish = next_finish.saturating_sub(self.steps).max(1);
        let first = model.decode_step(batch, self.context());
        // Context grows by B tokens a step: step j (from 0) takes first + growth x j.
        let growth = model.step_per_context_token * batch as f64;
        let mut steps = to_finish.min(MAX_BLOCK_STEPS);
        let span = |k: u64| k as f64 * first + growth * (k * k.saturating_sub(1)) as f64 / 2.0;
        let remaining = until - self.clock;
        if span(steps) > remaining {
            // Just enough steps to reach `until`.
            let mut k = ((remaining / first).ceil() as u64).clamp(1, steps);
            while k > 1 && span(k - 1) >= remaining {
                k -= 1;
            }
            steps = k;
        }
        self.clock += span(steps);
        self.steps += steps;
        self.counters.generation_tokens += (batch * steps) as f64;
        self.finish_due(stats);
    }

    /// Retires the sequences whose last token came out at the current step.
    fn finish_due(&mut self, stats: &mut dyn Recorder) {
        while let Some(&Reverse((finish_step, slot))) = self.decoding.peek() {
            if finish_step > self.steps {
                break;
            }
            self.decoding.pop();
            let request = self.slots[slot];
            self.free_slots.push(slot);
            self.context_offset -=
                i64::from(request.input) + 1 - (finish_step + 1 - u64::from(request.output)) as i64;
            self.kv_reserved -= u64::from(request.input) + u64::from(request.output);
            self.finish(request, self.clock, stats);
        }
        if self.decoding.is_empty() {
            self.context_offset = 0;
        }
    }

    /// Requests still held, for a drain that ends the run.
    pub fn abandon(&mut self, stats: &mut dyn Recorder) {
        for request in self.waiting.drain(..) {
            stats.unfinished(&request);
        }
        for (request, _) in self.prefilling.drain(..) {
            stats.unfinished(&request);
        }
        while let Some(Reverse((_, slot))) = self.decoding.pop() {
            stats.unfinished(&self.slots[slot]);
        }
    }
}

#[cfg(test)]
mod tests;
