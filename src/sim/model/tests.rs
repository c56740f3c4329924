use super::*;
use crate::sim::stats::{SloThresholds, Stats};

fn run_one(model: &ModelProfile, role: Role, request: Request) -> (Replica, Stats, Vec<Handoff>) {
    let mut replica = Replica::new("r".into(), role, 0.0, 0.0);
    let mut stats = Stats::new(SloThresholds::default());
    let mut handoffs = Vec::new();
    stats.arrived(&request);
    replica.accept(request, request.arrival);
    replica.advance(100.0, model, &mut stats, &mut handoffs);
    (replica, stats, handoffs)
}

#[test]
fn one_request_on_an_idle_replica_matches_the_hand_computed_times() {
    let model = ModelProfile::llama3_70b_tp4_h100();
    let (replica, stats, _) = run_one(&model, Role::Unified, Request::new(0.0, 1000, 11));
    // Prefill, one step with no decoding sequence: a + b n + q n^2.
    let ttft = 0.020 + 70e-6 * 1000.0 + 0.65e-9 * 1000.0 * 1000.0;
    // Ten decode steps of one sequence whose context grows from 1001 tokens.
    let decode: f64 = (0..10)
        .map(|j| 0.018 + 0.01e-3 + 35e-9 * f64::from(1001 + j))
        .sum();
    assert!((stats.ttft.quantile(1.0).unwrap() / ttft - 1.0).abs() < 0.011);
    assert!((stats.tpot.quantile(1.0).unwrap() / (decode / 10.0) - 1.0).abs() < 0.011);
    assert_eq!(stats.finished, 1);
    assert_eq!(replica.counters.prompt_tokens, 1000.0);
    assert_eq!(replica.counters.generation_tokens, 11.0);
    assert_eq!(replica.counters.requests_finished, 1.0);
    // 0.09065 s is in the (0.08, 0.1] bucket; TPOT 18 ms in (0.01, 0.025].
    assert_eq!(replica.counters.ttft_buckets[7], 1.0);
    assert_eq!(replica.counters.tpot_buckets[1], 1.0);
    assert_eq!(replica.outstanding(), 0);
    assert_eq!(replica.kv_usage(&model), 0.0);
}

#[test]
fn step_time_rises_faster_past_the_batch_knee() {
    let model = ModelProfile::llama3_70b_tp4_h100();
    let expected = 0.018 + 0.01e-3 * 128.0 + 0.025e-3 * 72.0 + 35e-9 * 10_000.0;
    assert!((model.decode_step(200, 10_000) - expected).abs() < 1e-12);
    // A 4096-token prompt in two chunks costs what it costs whole: b n + q n^2.
    let whole = model.prefill_piece(4096, 0);
    let chunked = model.prefill_piece(2048, 0) + model.prefill_piece(2048, 2048);
    assert!((whole - chunked).abs() < 1e-12);
}

#[test]
fn requests_wait_for_kv_cache_and_oversized_ones_are_refused() {
    let model = ModelProfile {
        kv_capacity_tokens: 1500,
        ..ModelProfile::llama3_8b_h100()
    };
    let mut replica = Replica::new("r".into(), Role::Unified, 0.0, 0.0);
    let mut stats = Stats::new(SloThresholds::default());
    let mut handoffs = Vec::new();
    for request in [
        Request::new(0.0, 500, 500),
        Request::new(0.0, 500, 500),
        Request::new(0.0, 1000, 501),
    ] {
        stats.arrived(&request);
        replica.accept(request, 0.0);
    }
    replica.advance(0.001, &model, &mut stats, &mut handoffs);
    // The first holds 1000 of 1500 tokens: the second waits.
    assert_eq!(replica.running(), 1);
    assert_eq!(replica.waiting(), 2);
    assert!((replica.kv_usage(&model) - 1000.0 / 1500.0).abs() < 1e-12);
    replica.advance(1000.0, &model, &mut stats, &mut handoffs);
    assert_eq!(stats.finished, 2);
    assert_eq!(stats.refused, 1);
    // The second started after the first finished: its TTFT exceeds a whole request.
    let first_total = 0.008 + 28e-6 * 500.0 + 0.5e-9 * 250_000.0;
    assert!(stats.ttft.quantile(1.0).unwrap() > first_total + 499.0 * 0.007);
}

#[test]
fn prefill_replicas_hand_off_after_the_first_token_and_decode_replicas_finish() {
    let model = ModelProfile::llama3_8b_h100();
    let (prefill, stats, handoffs) = run_one(&model, Role::Prefill, Request::new(1.0, 300, 5));
    assert_eq!(handoffs.len(), 1);
    let at = 1.0 + 0.008 + 28e-6 * 300.0 + 0.5e-9 * 90_000.0;
    assert!((handoffs[0].at - at).abs() < 1e-9);
    assert_eq!(handoffs[0].request.first_token, handoffs[0].at);
    assert_eq!(stats.finished, 0);
    assert_eq!(prefill.counters.generation_tokens, 1.0);
    assert_eq!(prefill.outstanding(), 0);

    let mut decode = Replica::new("d".into(), Role::Decode, 0.0, 0.0);
    let mut stats = Stats::new(SloThresholds::default());
    decode.accept(handoffs[0].request, handoffs[0].at);
    decode.advance(100.0, &model, &mut stats, &mut Vec::new());
    assert_eq!(stats.finished, 1);
    // Four decode steps (tokens 2 to 5), context 301 to 304.
    let steps: f64 = (0..4)
        .map(|j| 0.007 + 0.01e-3 + 55e-9 * f64::from(301 + j))
        .sum();
    assert!((stats.tpot.quantile(1.0).unwrap() / (steps / 4.0) - 1.0).abs() < 0.011);
    assert_eq!(decode.counters.generation_tokens, 4.0);
    assert_eq!(decode.counters.prompt_tokens, 0.0);
}

#[test]
fn a_starting_replica_serves_nothing_before_it_is_ready() {
    let model = ModelProfile::llama3_8b_h100();
    let mut replica = Replica::new("r".into(), Role::Unified, 0.0, 40.0);
    assert!(!replica.is_serving());
    let mut stats = Stats::new(SloThresholds::default());
    replica.accept(Request::new(10.0, 100, 2), 10.0);
    replica.advance(39.0, &model, &mut stats, &mut Vec::new());
    assert_eq!(stats.ttft.count(), 0);
    replica.advance(41.0, &model, &mut stats, &mut Vec::new());
    assert!(replica.is_serving());
    let ttft = stats.ttft.quantile(1.0).unwrap();
    assert!((ttft / (30.0 + 0.008 + 28e-6 * 100.0 + 0.5e-9 * 10_000.0) - 1.0).abs() < 0.011);
}

#[test]
fn a_long_run_conserves_tokens_and_kv() {
    let model = ModelProfile::llama3_8b_h100();
    let mut replica = Replica::new("r".into(), Role::Unified, 0.0, 0.0);
    let mut stats = Stats::new(SloThresholds::default());
    use crate::sim::trace::Draws;
    let mut rng = crate::sim::trace::seeded(3);
    let mut t = 0.0;
    let (mut input, mut output) = (0u64, 0u64);
    for _ in 0..2_000 {
        t += rng.exponential(20.0);
        replica.advance(t, &model, &mut stats, &mut Vec::new());
        let request = Request::new(t, 50 + rng.below(3000) as u32, 1 + rng.below(400) as u32);
        input += u64::from(request.input);
        output += u64::from(request.output);
        stats.arrived(&request);
        replica.accept(request, t);
    }
    replica.advance(t + 3600.0, &model, &mut stats, &mut Vec::new());
    assert_eq!(stats.finished, 2_000);
    assert_eq!(replica.counters.prompt_tokens, input as f64);
    assert_eq!(replica.counters.generation_tokens, output as f64);
    assert_eq!(replica.kv_usage(&model), 0.0);
    assert_eq!(replica.outstanding(), 0);
}
