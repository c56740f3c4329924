use super::*;

fn replicas(values: &[f64]) -> Vec<ReplicaValue> {
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| ReplicaValue {
            replica: format!("pod-{i}"),
            value,
        })
        .collect()
}

fn params(pool: Pool) -> Params {
    Params {
        pool,
        queue_per_replica: 15.0,
        output_tokens_per_second: Some(5000.0),
        input_tokens_per_second: Some(40000.0),
        input_term: false,
        capacity_profile: None,
        kv_target: 0.75,
        kv_aggregate: KvAggregate::Mean,
        min_demand: 0.0,
        max_demand: 100.0,
        slos: Vec::new(),
        lead: Duration::ZERO,
        schedules: Vec::new(),
        forecast_headroom: None,
    }
}

fn signals(queue: &[f64], t_out: f64, t_in: f64, kv: &[f64]) -> Signals {
    Signals {
        queue_by_replica: Some(replicas(queue)),
        output_tokens_per_second: Some(t_out),
        input_tokens_per_second: Some(t_in),
        kv_by_replica: Some(replicas(kv)),
        ..Signals::default()
    }
}

fn term(demand: &Demand, kind: TermKind) -> f64 {
    demand.term(kind).unwrap().replicas
}

#[test]
fn queue_term_is_total_queue_over_capacity() {
    let d = compute(
        &signals(&[10.0, 20.0, 15.0], 0.0, 0.0, &[]),
        &params(Pool::Unified),
    )
    .unwrap();
    assert_eq!(term(&d, TermKind::Queue), 3.0);
    assert_eq!(d.inputs.queue_depth, Some(45.0));
    assert_eq!(d.inputs.replicas, Some(3.0));
    assert_eq!(d.replicas, 3.0);
    assert_eq!(d.winner, Winner::Term(TermKind::Queue));
}

#[test]
fn the_input_term_counts_prompt_load_in_unified_pools_only_when_asked() {
    let signals = signals(&[0.0, 0.0], 1000.0, 120_000.0, &[0.1, 0.1]);
    let off = compute(&signals, &params(Pool::Unified)).unwrap();
    assert!(off.term(TermKind::InputThroughput).is_none());
    assert_eq!(off.winner, Winner::Term(TermKind::Kv));
    let on = Params {
        input_term: true,
        ..params(Pool::Unified)
    };
    let d = compute(&signals, &on).unwrap();
    assert_eq!(term(&d, TermKind::InputThroughput), 3.0);
    assert_eq!(d.replicas, 3.0);
    assert_eq!(d.winner, Winner::Term(TermKind::InputThroughput));
    assert_eq!(
        d.term(TermKind::InputThroughput).unwrap().formula,
        "T_in / input_tokens_per_second = 120000 / 40000"
    );
    // Missing input rate: the term is skipped and named, the others stand.
    let mut unread = signals.clone();
    unread.input_tokens_per_second = None;
    let d = compute(&unread, &on).unwrap();
    assert_eq!(d.skipped, vec![TermKind::InputThroughput]);
    // A decode pool does no prefill: the setting does not apply.
    let decode = Params {
        input_term: true,
        ..params(Pool::Decode)
    };
    assert!(
        compute(&signals, &decode)
            .unwrap()
            .term(TermKind::InputThroughput)
            .is_none()
    );
}

#[test]
fn throughput_term_uses_output_tokens_for_unified_and_decode() {
    for pool in [Pool::Unified, Pool::Decode] {
        let d = compute(&signals(&[0.0], 12_500.0, 400_000.0, &[0.1]), &params(pool)).unwrap();
        assert_eq!(term(&d, TermKind::Throughput), 2.5, "{pool:?}");
        assert!(
            d.term(TermKind::Throughput)
                .unwrap()
                .formula
                .starts_with("T_out")
        );
    }
}

#[test]
fn throughput_term_uses_input_tokens_for_prefill() {
    let mut s = signals(&[0.0, 0.0], 1_000_000.0, 100_000.0, &[]);
    s.kv_by_replica = None;
    let d = compute(&s, &params(Pool::Prefill)).unwrap();
    assert_eq!(term(&d, TermKind::Throughput), 2.5);
    assert!(
        d.term(TermKind::Kv).is_none(),
        "prefill pools have no kv term"
    );
    assert_eq!(d.inputs.kv_cache_ratio, None);
    assert_eq!(d.replicas, 2.5);
}

#[test]
fn kv_term_brings_usage_back_to_target() {
    // 4 replicas at 0.9 mean usage want 4 x 0.9 / 0.75 = 4.8 replicas.
    let d = compute(
        &signals(&[0.0; 4], 0.0, 0.0, &[0.9, 0.8, 1.0, 0.9]),
        &params(Pool::Decode),
    )
    .unwrap();
    assert!((term(&d, TermKind::Kv) - 4.8).abs() < 1e-12);
    assert_eq!(d.winner, Winner::Term(TermKind::Kv));
}

#[test]
fn kv_aggregate_max_takes_the_fullest_replica() {
    let mut p = params(Pool::Unified);
    p.kv_aggregate = KvAggregate::Max;
    let d = compute(&signals(&[0.0, 0.0], 0.0, 0.0, &[0.3, 0.9]), &p).unwrap();
    assert!((term(&d, TermKind::Kv) - 2.0 * 0.9 / 0.75).abs() < 1e-12);
    assert_eq!(d.inputs.kv_cache_ratio, Some(0.9));
}

#[test]
fn demand_is_the_largest_term() {
    // queue 2, throughput 3, kv 2 x 0.6 / 0.75 = 1.6
    let d = compute(
        &signals(&[15.0, 15.0], 15_000.0, 0.0, &[0.6, 0.6]),
        &params(Pool::Unified),
    )
    .unwrap();
    assert_eq!(d.replicas, 3.0);
    assert_eq!(d.unclamped, 3.0);
    assert_eq!(d.winner, Winner::Term(TermKind::Throughput));
    assert_eq!(d.terms.len(), 3);
}

#[test]
fn clamping_to_min_and_max() {
    let mut p = params(Pool::Unified);
    p.min_demand = 2.0;
    p.max_demand = 10.0;
    let low = compute(&signals(&[1.5], 0.0, 0.0, &[0.0]), &p).unwrap();
    assert_eq!(
        (low.replicas, low.unclamped, low.winner),
        (2.0, 0.1, Winner::MinDemand)
    );
    let high = compute(&signals(&[300.0], 0.0, 0.0, &[0.0]), &p).unwrap();
    assert_eq!(
        (high.replicas, high.unclamped, high.winner),
        (10.0, 20.0, Winner::MaxDemand)
    );
    let inside = compute(&signals(&[75.0], 0.0, 0.0, &[0.0]), &p).unwrap();
    assert_eq!(
        (inside.replicas, inside.winner),
        (5.0, Winner::Term(TermKind::Queue))
    );
}

#[test]
fn fleet_at_zero_is_zero_demand_and_inactive() {
    let d = compute(&signals(&[], 0.0, 0.0, &[]), &params(Pool::Unified)).unwrap();
    assert_eq!(d.replicas, 0.0);
    assert_eq!(d.inputs.replicas, Some(0.0));
    assert_eq!(d.inputs.kv_cache_ratio, Some(0.0));
    assert!(!d.active);
}

#[test]
fn activity_rules() {
    let p = params(Pool::Unified);
    assert!(
        compute(&signals(&[1.0], 0.0, 0.0, &[]), &p).unwrap().active,
        "Q > 0"
    );
    assert!(
        compute(&signals(&[], 0.0, 3.0, &[]), &p).unwrap().active,
        "T_in > 0"
    );
    assert!(
        compute(&signals(&[], 0.5, 0.0, &[]), &p).unwrap().active,
        "T_out > 0"
    );
    let mut warm = p.clone();
    warm.min_demand = 1.0;
    assert!(
        compute(&signals(&[], 0.0, 0.0, &[]), &warm).unwrap().active,
        "D > 0"
    );
    // Idle replicas holding KV cache keep a demand, so the fleet is active.
    assert!(
        compute(&signals(&[0.0], 0.0, 0.0, &[0.5]), &p)
            .unwrap()
            .active
    );
    assert!(
        !compute(&signals(&[0.0], 0.0, 0.0, &[0.0]), &p)
            .unwrap()
            .active
    );
}

#[test]
fn ties_go_to_the_queue_term() {
    let d = compute(
        &signals(&[15.0], 5000.0, 0.0, &[0.75]),
        &params(Pool::Unified),
    )
    .unwrap();
    assert_eq!(d.replicas, 1.0);
    assert_eq!(d.winner, Winner::Term(TermKind::Queue));
}

#[test]
fn untrustworthy_signals_are_errors_not_numbers() {
    let p = params(Pool::Unified);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
        let e = compute(&signals(&[1.0, bad], 0.0, 0.0, &[]), &p).unwrap_err();
        assert!(
            matches!(&e, SignalError::BadReplicaValue { replica, .. } if replica == "pod-1"),
            "{e}"
        );
        assert!(compute(&signals(&[], bad, 0.0, &[]), &p).is_err());
        assert!(compute(&signals(&[], 0.0, bad, &[]), &p).is_err());
        assert!(compute(&signals(&[0.0], 0.0, 0.0, &[bad]), &p).is_err());
    }
    let e = compute(&signals(&[0.0], 0.0, 0.0, &[3.0]), &p).unwrap_err();
    assert!(
        e.to_string().contains("expected a ratio from 0 to 1"),
        "{e}"
    );
    // A hair above 1 is float noise from the exporter, not an error.
    let d = compute(&signals(&[0.0], 0.0, 0.0, &[1.0 + 1e-9]), &p).unwrap();
    assert_eq!(d.inputs.kv_cache_ratio, Some(1.0));
}

#[test]
fn sums_and_terms_that_overflow_are_errors_not_max_demand() {
    let p = params(Pool::Unified);
    // Each replica's queue is finite; their sum is not.
    let e = compute(&signals(&[1e308, 1e308], 0.0, 0.0, &[]), &p).unwrap_err();
    assert!(
        matches!(e, SignalError::Overflow { value, .. } if value == f64::INFINITY),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("queue depth summed over replicas is inf"),
        "{e}"
    );
    // A finite token rate over a tiny capacity overflows the term.
    let tiny = Params {
        output_tokens_per_second: Some(1e-300),
        ..params(Pool::Unified)
    };
    let e = compute(&signals(&[], 1e10, 0.0, &[]), &tiny).unwrap_err();
    assert!(matches!(e, SignalError::Overflow { .. }), "{e}");
    // Large finite values still give a demand (clamped as documented).
    let d = compute(&signals(&[1e300, 1e300], 0.0, 0.0, &[]), &p).unwrap();
    assert_eq!(d.replicas, p.max_demand);
}

#[test]
fn prefill_ignores_kv_values_it_was_not_asked_for() {
    let mut s = signals(&[0.0], 0.0, 0.0, &[]);
    s.kv_by_replica = None;
    assert!(compute(&s, &params(Pool::Prefill)).is_ok());
}

#[test]
fn formulas_show_the_numbers() {
    let d = compute(&signals(&[30.0], 0.0, 0.0, &[]), &params(Pool::Unified)).unwrap();
    assert_eq!(
        d.term(TermKind::Queue).unwrap().formula,
        "Q / queue_per_replica = 30 / 15"
    );
    assert_eq!(d.winner.to_string(), "queue");
}

#[test]
fn missing_signals_skip_the_terms_that_need_them() {
    let p = params(Pool::Unified);
    let mut s = signals(&[30.0, 0.0], 20_000.0, 0.0, &[0.9, 0.9]);
    s.output_tokens_per_second = None;
    let d = compute(&s, &p).unwrap();
    assert_eq!(d.skipped, vec![TermKind::Throughput]);
    assert_eq!(
        d.replicas, 2.4,
        "kv 2 x 0.9 / 0.75 wins without the throughput term"
    );

    // Without the queue there is no R, so the kv term goes too.
    let mut s = signals(&[30.0], 20_000.0, 0.0, &[0.9]);
    s.queue_by_replica = None;
    let d = compute(&s, &p).unwrap();
    assert_eq!(d.skipped, vec![TermKind::Queue, TermKind::Kv]);
    assert_eq!(
        (d.replicas, d.winner),
        (4.0, Winner::Term(TermKind::Throughput))
    );
    assert_eq!(d.inputs.queue_depth, None);

    let mut s = signals(&[30.0], 0.0, 0.0, &[0.9]);
    s.kv_by_replica = None;
    assert_eq!(compute(&s, &p).unwrap().skipped, vec![TermKind::Kv]);

    let nothing = Signals::default();
    assert_eq!(compute(&nothing, &p).unwrap_err(), SignalError::NoTerms);
}

#[test]
fn activity_counts_only_signals_that_were_read() {
    let mut s = signals(&[0.0], 0.0, 0.0, &[0.0]);
    s.input_tokens_per_second = None;
    assert!(!compute(&s, &params(Pool::Unified)).unwrap().active);
    s.output_tokens_per_second = Some(3.0);
    assert!(compute(&s, &params(Pool::Unified)).unwrap().active);
}

/// A term's value rounded to 9 decimals: burn rates divide by 1 - objective.
fn rounded(demand: &Demand, kind: TermKind) -> f64 {
    (term(demand, kind) * 1e9).round() / 1e9
}

fn slo(name: &str, signal: LatencySignal) -> SloParams {
    SloParams {
        name: name.to_owned(),
        signal,
        threshold: 2.0,
        objective: 0.99,
        burn_threshold: 1.0,
        gain: 0.25,
        max_boost: 2.0,
        floor_context_tokens: None,
        short_window_s: 300.0,
        trim_half_life_s: 1800.0,
    }
}

fn slow_share(short: f64, long: f64) -> Option<SloWindows> {
    Some(SloWindows {
        short: slo::LatencyWindow::SlowShare(Some(short)),
        long: slo::LatencyWindow::SlowShare(Some(long)),
        unfixable: None,
    })
}

/// A histogram window from (le, cumulative requests per second) pairs.
fn histogram(points: &[(f64, f64)]) -> slo::LatencyWindow {
    slo::LatencyWindow::Buckets(
        points
            .iter()
            .map(|&(le, rate)| slo::Bucket { le, rate })
            .collect(),
    )
}

/// A latency histogram and the histogram splitting its misses (prefill times, prompt
/// lengths), the same in both windows: 100 requests/s.
fn latency_and_split(ttft: &[(f64, f64)], prefill: &[(f64, f64)]) -> Option<SloWindows> {
    Some(SloWindows {
        short: histogram(ttft),
        long: histogram(ttft),
        unfixable: Some((histogram(prefill), histogram(prefill))),
    })
}

/// TTFT buckets of 100 requests/s, 10 % of them over 2 s.
const TEN_PERCENT_OVER_2S: [(f64, f64); 4] = [
    (1.0, 80.0),
    (2.0, 90.0),
    (5.0, 95.0),
    (f64::INFINITY, 100.0),
];

/// With every miss in the split's unfixable share (burn 10 over a 1 % budget, 10 %
/// unfixable), the SLO asks for nothing and says why.
fn assert_unfixable_misses_ask_for_nothing(slo: SloParams, windows: Option<SloWindows>) {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo];
    let mut s = signals(&[15.0, 15.0], 0.0, 0.0, &[0.1; 2]);
    s.slos = vec![windows];
    let d = compute(&s, &p).unwrap();
    assert!(d.term(TermKind::Slo).is_none(), "{:?}", d.terms);
    let status = &d.slos[0];
    assert!(!status.burning);
    let rounded = |v: Option<f64>| v.map(|v| (v * 1e9).round() / 1e9);
    assert_eq!(rounded(status.short_burn), Some(10.0));
    assert_eq!(rounded(status.short_unfixable_ratio), Some(0.1));
    assert_eq!(status.short_fixable_burn, Some(0.0));
}

#[test]
fn misses_from_prompts_too_long_for_any_replica_ask_for_nothing() {
    // 10 % of requests over 2 s, and the same 10 % took over 2 s in prefill alone:
    // their prompts are too long for 2 s on any replica.
    let prefill = [
        (1.0, 85.0),
        (2.0, 90.0),
        (5.0, 96.0),
        (f64::INFINITY, 100.0),
    ];
    assert_unfixable_misses_ask_for_nothing(
        slo("ttft-2s", LatencySignal::Ttft),
        latency_and_split(&TEN_PERCENT_OVER_2S, &prefill),
    );
}

#[test]
fn misses_from_queueing_ask_for_replicas() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    // L = 2 replicas of queue.
    let mut s = signals(&[15.0, 15.0], 0.0, 0.0, &[0.1; 2]);
    // 10 % over 2 s; every prefill took under 1 s: all of the misses are queueing.
    let ttft = TEN_PERCENT_OVER_2S;
    let prefill = [(1.0, 100.0), (2.0, 100.0), (f64::INFINITY, 100.0)];
    s.slos = vec![latency_and_split(&ttft, &prefill)];
    let d = compute(&s, &p).unwrap();
    // Fixable burn 0.1 / 0.01 = 10: 2 x min(2, 1 + 0.25 x 9) = 4.
    assert_eq!(rounded(&d, TermKind::Slo), 4.0);
    assert!(d.slos[0].burning);
    // 7 % of the prefills took over 2 s: 3 % fixable, burn 3: 2 x (1 + 0.25 x 2) = 3.
    let prefill = [(1.0, 90.0), (2.0, 93.0), (f64::INFINITY, 100.0)];
    s.slos = vec![latency_and_split(&ttft, &prefill)];
    let d = compute(&s, &p).unwrap();
    assert_eq!(rounded(&d, TermKind::Slo), 3.0);
    assert_eq!(
        d.slos[0]
            .short_fixable_burn
            .map(|b| (b * 1e9).round() / 1e9),
        Some(3.0)
    );
}

/// A TPOT SLO of 50 ms whose model reaches that TPOT alone from 100,000-token prompts.
fn tpot_with_floor() -> SloParams {
    SloParams {
        threshold: 0.05,
        floor_context_tokens: Some(100_000.0),
        ..slo("tpot-50ms", LatencySignal::Tpot)
    }
}

/// TPOT buckets of 100 requests/s, 10 % of them over 50 ms.
const TEN_PERCENT_OVER_50MS: [(f64, f64); 4] = [
    (0.025, 70.0),
    (0.05, 90.0),
    (0.1, 97.0),
    (f64::INFINITY, 100.0),
];

#[test]
fn tpot_misses_from_prompts_past_the_floor_context_ask_for_nothing() {
    // 10 % of the requests had prompts over 100,000 tokens: the model's own floor.
    let prompts = [
        (1_000.0, 60.0),
        (10_000.0, 80.0),
        (100_000.0, 90.0),
        (f64::INFINITY, 100.0),
    ];
    assert_unfixable_misses_ask_for_nothing(
        tpot_with_floor(),
        latency_and_split(&TEN_PERCENT_OVER_50MS, &prompts),
    );
}

#[test]
fn tpot_misses_from_sharing_a_replica_ask_for_replicas() {
    let mut p = params(Pool::Unified);
    p.slos = vec![tpot_with_floor()];
    // L = 2 replicas of queue.
    let mut s = signals(&[15.0, 15.0], 0.0, 0.0, &[0.1; 2]);
    // 10 % over 50 ms, no prompt near the floor: batch interference, all fixable.
    let prompts = [(10_000.0, 100.0), (f64::INFINITY, 100.0)];
    s.slos = vec![latency_and_split(&TEN_PERCENT_OVER_50MS, &prompts)];
    let d = compute(&s, &p).unwrap();
    // Fixable burn 10: 2 x min(2, 1 + 0.25 x 9) = 4.
    assert_eq!(rounded(&d, TermKind::Slo), 4.0);
    // Inside the bucket from 50,000 to 200,000 tokens the prompts are taken as evenly
    // spread: 90 + 6 x 50/150 = 92 at or below 100,000, so 8 % past the floor, 2 %
    // fixable, burn 2: 2 x (1 + 0.25 x 1) = 2.5.
    let prompts = [(50_000.0, 90.0), (200_000.0, 96.0), (f64::INFINITY, 100.0)];
    s.slos = vec![latency_and_split(&TEN_PERCENT_OVER_50MS, &prompts)];
    let d = compute(&s, &p).unwrap();
    assert_eq!(rounded(&d, TermKind::Slo), 2.5);
    // The same histograms without floor_context_tokens: no split, every miss counts.
    p.slos = vec![SloParams {
        floor_context_tokens: None,
        ..tpot_with_floor()
    }];
    let d = compute(&s, &p).unwrap();
    assert_eq!(rounded(&d, TermKind::Slo), 4.0);
    assert_eq!(d.slos[0].short_unfixable_ratio, None);
}

#[test]
fn slo_term_boosts_the_load_while_both_windows_burn() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    // A queue of 60 at 15 a replica: the load needs L = 4 replicas.
    let mut s = signals(&[15.0, 15.0, 15.0, 15.0], 0.0, 0.0, &[0.1; 4]);
    // 5 % slow against a 1 % budget: burn 5 over the short window, 2 over the long one.
    s.slos = vec![slow_share(0.05, 0.02)];
    let d = compute(&s, &p).unwrap();
    // L x min(2, 1 + 0.25 x (5 - 1)) = 4 x 2 = 8
    assert_eq!(rounded(&d, TermKind::Slo), 8.0);
    assert_eq!(d.winner, Winner::Term(TermKind::Slo));
    assert!(d.slos[0].burning);
    // Short burn 3: 4 x (1 + 0.25 x 2) = 6, under max_boost.
    s.slos = vec![slow_share(0.03, 0.02)];
    assert_eq!(rounded(&compute(&s, &p).unwrap(), TermKind::Slo), 6.0);
    // Only one window burning: no term, but the SLO is still reported.
    s.slos = vec![slow_share(0.05, 0.005)];
    let d = compute(&s, &p).unwrap();
    assert!(d.term(TermKind::Slo).is_none());
    assert!(!d.slos[0].burning);
    assert_eq!(
        d.slos[0].long_burn.map(|b| (b * 1e9).round() / 1e9),
        Some(0.5)
    );
    // No requests in a window: no burn.
    s.slos = vec![Some(SloWindows {
        short: slo::LatencyWindow::SlowShare(None),
        long: slo::LatencyWindow::SlowShare(Some(0.5)),
        unfixable: None,
    })];
    assert!(compute(&s, &p).unwrap().term(TermKind::Slo).is_none());
}

#[test]
fn the_slo_term_follows_the_load_not_the_fleet_it_has() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    // The same burn and the same load (a queue of 30: L = 2) on 2 replicas and on 20.
    let burn = slow_share(0.05, 0.05);
    let mut small = signals(&[15.0, 15.0], 0.0, 0.0, &[]);
    small.slos = vec![burn.clone()];
    let mut large = signals(&[1.5; 20], 0.0, 0.0, &[]);
    large.slos = vec![burn];
    for s in [small, large] {
        let d = compute(&s, &p).unwrap();
        assert_eq!(rounded(&d, TermKind::Slo), 4.0, "{:?}", d.terms);
        assert!(
            d.term(TermKind::Slo)
                .unwrap()
                .formula
                .contains("max(L, 1) x min")
        );
    }
    // A load under one replica counts as one: the requests that burn are being served.
    let mut idle = signals(&[0.0; 6], 0.0, 0.0, &[]);
    idle.slos = vec![slow_share(0.05, 0.05)];
    assert_eq!(rounded(&compute(&idle, &p).unwrap(), TermKind::Slo), 2.0);
}

#[test]
fn an_unread_slo_is_skipped_and_others_still_count() {
    let mut p = params(Pool::Unified);
    p.slos = vec![
        slo("ttft-2s", LatencySignal::Ttft),
        slo("tpot-50ms", LatencySignal::Tpot),
    ];
    let mut s = signals(&[15.0, 15.0], 0.0, 0.0, &[0.1; 2]);
    s.slos = vec![None, slow_share(0.05, 0.05)];
    let d = compute(&s, &p).unwrap();
    assert!(d.skipped.contains(&TermKind::Slo));
    assert_eq!(rounded(&d, TermKind::Slo), 4.0);
    assert!(
        d.term(TermKind::Slo)
            .unwrap()
            .formula
            .starts_with("tpot-50ms")
    );
}

#[test]
fn forecast_and_schedule_terms_wake_an_idle_fleet() {
    use chrono::TimeZone as _;
    let config = crate::config::Config::parse(
        r#"
prometheus: {url: "http://127.0.0.1:9090"}
profiles:
  p:
    engine: seed
    capacity: {queue_per_replica: 15, output_tokens_per_second: 500}
    predictive:
      lead: 10m
      schedules:
        - {cron: "0 9 * * *", duration: 1h, timezone: UTC, min_replicas: 3}
      history: {period: 1d, periods: 3, headroom: 1.2}
"#,
    )
    .unwrap();
    let target =
        crate::config::metadata::resolve(&config, &[("profile".to_owned(), "p".to_owned())].into())
            .unwrap();
    let p = Params::from(&target);
    assert_eq!(p.lead, Duration::from_secs(600));
    let mut s = signals(&[], 0.0, 0.0, &[]);
    s.now = Some(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 8, 55, 0)
            .unwrap(),
    );
    s.history = Some(forecast::HistoryWindow {
        past: (1..=3)
            .map(|k| forecast::PastPeriod {
                periods_back: k,
                peak: 1000.0,
                level: 0.0,
                long_level: Some(0.0),
            })
            .collect(),
        level_now: Some(0.0),
        long_level_now: 0.0,
        recent: None,
    });
    let d = compute(&s, &p).unwrap();
    assert_eq!(term(&d, TermKind::Schedule), 3.0);
    // 1000 tokens/s x 1.2 / 500 = 2.4
    assert!((term(&d, TermKind::Forecast) - 2.4).abs() < 1e-9);
    assert_eq!(d.winner, Winner::Term(TermKind::Schedule));
    assert!(d.active, "pre-warming from zero");
    // Without history there is no forecast, and that is not an error.
    s.history = Some(forecast::HistoryWindow {
        past: Vec::new(),
        level_now: Some(0.0),
        long_level_now: 0.0,
        recent: None,
    });
    let d = compute(&s, &p).unwrap();
    assert!(d.term(TermKind::Forecast).is_none() && !d.skipped.contains(&TermKind::Forecast));
    // History that could not be read is a skipped term.
    s.history = None;
    assert!(
        compute(&s, &p)
            .unwrap()
            .skipped
            .contains(&TermKind::Forecast)
    );
}

#[test]
fn a_capacity_profile_sizes_throughput_at_the_mix_being_served() {
    use crate::config::{
        Positive,
        capacity::{CapacityProfile, ProfilePoint},
    };
    let point = |i: f64, o: f64, out: f64, input: f64| ProfilePoint {
        input_tokens: Positive(i),
        output_tokens: Positive(o),
        short_output_share: None,
        output_tokens_per_second: Positive(out),
        input_tokens_per_second: Positive(input),
    };
    let mut p = params(Pool::Unified);
    p.input_term = true;
    p.capacity_profile = Some(
        CapacityProfile::from_points(&[
            point(1000.0, 100.0, 500.0, 5000.0),
            point(1000.0, 1000.0, 3000.0, 3000.0),
        ])
        .unwrap(),
    );
    let mut s = signals(&[0.0], 6000.0, 6000.0, &[0.0]);
    // Without the mix (nothing finished yet): the fixed numbers, 6000 / 5000.
    assert_eq!(
        rounded(&compute(&s, &p).unwrap(), TermKind::Throughput),
        1.2
    );
    // Long outputs: 3000 output tokens/s a replica, so 2 replicas; the input term 2.
    s.mean_lengths = Some((1000.0, 1000.0));
    let d = compute(&s, &p).unwrap();
    assert_eq!(rounded(&d, TermKind::Throughput), 2.0);
    assert_eq!(rounded(&d, TermKind::InputThroughput), 2.0);
    let term = d.term(TermKind::Throughput).unwrap();
    assert!(
        term.formula
            .contains("capacity.profile at 1000 prompt and 1000 output"),
        "{}",
        term.formula
    );
    assert!(term.inputs.contains(&("mean_output_tokens", 1000.0)));
    // Short outputs: 500 a replica, 12 replicas for the same token rate.
    s.mean_lengths = Some((1000.0, 100.0));
    assert_eq!(
        rounded(&compute(&s, &p).unwrap(), TermKind::Throughput),
        12.0
    );
}

#[test]
fn the_slo_term_ends_when_the_short_window_stops_burning_though_the_long_one_still_does() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    let mut s = signals(&[15.0, 15.0], 0.0, 0.0, &[]);
    // Burning over both windows: a term.
    s.slos = vec![slow_share(0.05, 0.05)];
    assert!(compute(&s, &p).unwrap().term(TermKind::Slo).is_some());
    // The cause is gone: the last 5 minutes are clean while the hour still remembers it.
    s.slos = vec![slow_share(0.0, 0.05)];
    let d = compute(&s, &p).unwrap();
    assert!(d.term(TermKind::Slo).is_none(), "{:?}", d.terms);
    assert!(!d.slos[0].burning);
    assert!(d.slos[0].long_fixable_burn.unwrap() > 1.0);
}

/// A queue of 60 on `fleet` replicas (L = 4) and a TTFT SLO's short burn of `burn` at
/// `seconds` (the long window's at 5).
fn queue_burning(seconds: i64, fleet: usize, burn: f64) -> Signals {
    let mut s = signals(&vec![60.0 / fleet as f64; fleet], 0.0, 0.0, &[]);
    s.slos = vec![slow_share(burn / 100.0, 0.05)];
    s.now = DateTime::from_timestamp(1_700_000_000 + seconds, 0);
    s
}

#[test]
fn a_burn_the_served_rise_did_not_lower_holds_the_term_and_the_burn_ending_drops_it() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    let observe = queue_burning;
    // Burn 3: 4 x 1.5 = 6, remembered.
    let first = compute_after(&observe(0, 4, 3.0), &p, &[]).unwrap();
    assert_eq!(rounded(&first, TermKind::Slo), 6.0);
    assert_eq!(first.slos[0].control, control::Control::Rise);
    assert_eq!(first.rises.len(), 1);
    // The fleet runs the 6 from 180 s; polled every minute, the burn has not fallen 5
    // minutes later.
    let mut rises = first.rises;
    for seconds in (60..=420).step_by(60) {
        let fleet = if seconds < 180 { 4 } else { 6 };
        rises = compute_after(&observe(seconds, fleet, 3.0), &p, &rises)
            .unwrap()
            .rises;
    }
    let settled = compute_after(&observe(480, 6, 3.0), &p, &rises).unwrap();
    assert_eq!(settled.slos[0].control, control::Control::Follow);
    // Burn 5 would ask 4 x 2 = 8: held at 6, and Explain says why.
    let held = compute_after(&observe(500, 6, 5.0), &p, &settled.rises).unwrap();
    assert_eq!(rounded(&held, TermKind::Slo), 6.0);
    assert_eq!(held.slos[0].control, control::Control::Hold);
    assert!((held.slos[0].boost.unwrap() - 1.5).abs() < 1e-9);
    assert!(held.slos[0].control_reason.starts_with("held at 1.500"));
    assert!(
        held.term(TermKind::Slo)
            .unwrap()
            .formula
            .contains("held boost"),
        "{:?}",
        held.terms
    );
    // The same SLO unread: what it last asked stands for the next evaluation.
    let mut unread = observe(520, 6, 5.0);
    unread.slos = vec![None];
    let carried = compute_after(&unread, &p, &held.rises).unwrap();
    assert_eq!(carried.rises, held.rises);
    // The burn ends: no term and nothing carried, so the next burn starts free.
    let mut clean = observe(600, 6, 0.0);
    clean.slos = vec![slow_share(0.0, 0.05)];
    let ended = compute_after(&clean, &p, &carried.rises).unwrap();
    assert!(ended.term(TermKind::Slo).is_none());
    assert_eq!(ended.slos[0].control, control::Control::Idle);
    assert!(ended.rises.is_empty());
    let again = compute_after(&observe(700, 6, 5.0), &p, &ended.rises).unwrap();
    assert_eq!(rounded(&again, TermKind::Slo), 8.0);
}

#[test]
fn a_boost_that_lowered_the_burn_without_ending_it_stays_as_a_trim_after_the_burn() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    let observe = queue_burning;
    // Burn 3 asks 4 x 1.5 = 6; the fleet runs them from 180 s, and once it has for a
    // short window the burn is down to 2, not ended.
    let mut rises = Vec::new();
    for seconds in (0..=480).step_by(60) {
        let (fleet, burn) = if seconds < 180 { (4, 3.0) } else { (6, 2.0) };
        rises = compute_after(&observe(seconds, fleet, burn), &p, &rises)
            .unwrap()
            .rises;
    }
    let kept = compute_after(&observe(540, 6, 2.0), &p, &rises).unwrap();
    // The 1.5 is kept under the boost burn 2 asks (1.25): 4 x 1.875.
    assert_eq!(rounded(&kept, TermKind::Slo), 7.5);
    let kept_trim = kept.slos[0].rise.as_ref().map_or(1.0, |r| r.trim);
    assert!((kept_trim - 1.5).abs() < 1e-9, "{kept_trim}");
    let formula = &kept.term(TermKind::Slo).unwrap().formula;
    assert!(formula.contains("trim x (1 + gain"), "{formula}");
    // The burn ends: the term stands at the trim, and says so.
    let mut clean = observe(600, 8, 0.0);
    clean.slos = vec![slow_share(0.0, 0.0)];
    let calm = compute_after(&clean, &p, &kept.rises).unwrap();
    assert_eq!(calm.slos[0].control, control::Control::Sustain);
    assert!(!calm.slos[0].burning);
    let trim = calm.slos[0].boost.unwrap();
    // A minute of calm (the fixable burn at 0) since it was last seen: decayed by that.
    let decayed = 1.0 + (kept_trim - 1.0) * 0.5f64.powf(60.0 / 1800.0);
    assert!((trim - decayed).abs() < 1e-9, "{trim}");
    let term = calm.term(TermKind::Slo).unwrap();
    assert!((term.replicas - 4.0 * trim).abs() < 1e-9, "{term:?}");
    assert!(term.formula.contains("L x trim"), "{}", term.formula);
    // With no load the trim asks nothing: the fleet may scale to zero while it decays.
    let mut idle = queue_burning(600, 8, 0.0);
    idle.queue_by_replica = Some(replicas(&[0.0; 8]));
    idle.slos = vec![slow_share(0.0, 0.0)];
    let idle = compute_after(&idle, &p, &kept.rises).unwrap();
    assert_eq!(idle.slos[0].control, control::Control::Sustain);
    assert_eq!(idle.term(TermKind::Slo).map(|t| t.replicas), Some(0.0));
    assert_eq!(idle.replicas, 0.0);
    // With no trim kept (trim_half_life 0s), the term ends with the burn.
    p.slos[0].trim_half_life_s = 0.0;
    let ended = compute_after(&clean, &p, &kept.rises).unwrap();
    assert!(ended.term(TermKind::Slo).is_none());
    assert_eq!(ended.slos[0].control, control::Control::Idle);
}

#[test]
fn a_fleet_short_of_its_load_gets_no_boost_and_explain_says_why() {
    let mut p = params(Pool::Unified);
    p.slos = vec![slo("ttft-2s", LatencySignal::Ttft)];
    // A queue of 60 asks L = 4; a burn of 3 asks a boost of 1.5.
    let observe = |fleet: usize| {
        let mut s = signals(&vec![60.0 / fleet as f64; fleet], 0.0, 0.0, &[]);
        s.slos = vec![slow_share(0.03, 0.05)];
        s.now = DateTime::from_timestamp(1_700_000_000, 0);
        s
    };
    // Two serve (the other two still starting): the misses are the shortfall's.
    let short = compute(&observe(2), &p).unwrap();
    assert_eq!(rounded(&short, TermKind::Slo), 4.0);
    assert_eq!(short.slos[0].control, control::Control::Shortfall);
    assert!(
        short.slos[0].control_reason.contains("serves 2 of the 4.0"),
        "{}",
        short.slos[0].control_reason
    );
    let formula = &short.term(TermKind::Slo).unwrap().formula;
    assert!(formula.contains("no boost"), "{formula}");
    // Three serve: one short is the lag of a ramp, and the boost applies.
    let lagging = compute(&observe(3), &p).unwrap();
    assert_eq!(rounded(&lagging, TermKind::Slo), 6.0);
    assert_eq!(lagging.slos[0].control, control::Control::Rise);
}

#[test]
fn the_share_of_short_answers_picks_the_input_rate_of_a_cell_measured_at_two_shares() {
    use crate::config::{
        Positive, Share,
        capacity::{CapacityProfile, ProfilePoint},
    };
    use crate::demand::slo::{Bucket, LatencyWindow};
    let point = |share: f64, input: f64| ProfilePoint {
        input_tokens: Positive(4000.0),
        output_tokens: Positive(200.0),
        short_output_share: Some(Share(share)),
        output_tokens_per_second: Positive(1000.0),
        input_tokens_per_second: Positive(input),
    };
    let mut p = params(Pool::Unified);
    p.input_term = true;
    p.capacity_profile =
        Some(CapacityProfile::from_points(&[point(0.0, 3000.0), point(0.3, 1500.0)]).unwrap());
    // 12,000 prompt tokens/s at a mean of 4,000 tokens.
    let mut s = signals(&[0.0], 0.0, 12000.0, &[0.0]);
    s.mean_lengths = Some((4000.0, 200.0));
    // Requests per second by output length: `short` of 10 at most 20 tokens.
    let lengths = |short: f64| {
        LatencyWindow::Buckets(vec![
            Bucket { le: 5.0, rate: 0.0 },
            Bucket {
                le: 20.0,
                rate: short,
            },
            Bucket {
                le: f64::INFINITY,
                rate: 10.0,
            },
        ])
    };
    let input_term = |s: &Signals| rounded(&compute(s, &p).unwrap(), TermKind::InputThroughput);
    // Chat's shape, no short answers: 3,000 a replica, 4 replicas.
    s.output_lengths = Some(lengths(0.0));
    assert_eq!(input_term(&s), 4.0);
    let d = compute(&s, &p).unwrap();
    let term = d.term(TermKind::InputThroughput).unwrap();
    assert!(
        term.formula.contains("0 of answers at most 20 tokens"),
        "{}",
        term.formula
    );
    assert!(term.inputs.contains(&("short_output_share", 0.0)));
    // A third short (held at the 0.3 point): 1,500 a replica, 8 replicas.
    s.output_lengths = Some(lengths(10.0 / 3.0));
    assert_eq!(input_term(&s), 8.0);
    // Unknown (not read, or no request in it): the highest share's 1,500.
    s.output_lengths = None;
    assert_eq!(input_term(&s), 8.0);
    s.output_lengths = Some(LatencyWindow::Buckets(Vec::new()));
    assert_eq!(input_term(&s), 8.0);
    let d = compute(&s, &p).unwrap();
    let formula = &d.term(TermKind::InputThroughput).unwrap().formula;
    assert!(formula.contains("unknown"), "{formula}");
}

#[test]
fn one_token_answers_can_be_left_out_of_the_short_share() {
    use crate::config::capacity::ShortAnswers;
    use crate::demand::slo::{Bucket, LatencyWindow};
    // Of 10 requests a second: 1 of one token, 2 more of up to 5, 1 more of up to 20.
    let lengths = LatencyWindow::Buckets(
        [
            (1.0, 1.0),
            (2.0, 2.0),
            (5.0, 3.0),
            (20.0, 4.0),
            (f64::INFINITY, 10.0),
        ]
        .into_iter()
        .map(|(le, rate)| Bucket { le, rate })
        .collect(),
    );
    let share = |min_tokens: f64, max_tokens: f64| {
        let short = ShortAnswers {
            min_tokens,
            max_tokens,
        };
        super::short_share(Some(&lengths), short).unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(share(1.0, 20.0), 0.4));
    assert!(close(share(1.0, 5.0), 0.3));
    // From 2 tokens: the one-token answers, which have no TPOT, are not counted.
    assert!(close(share(2.0, 5.0), 0.2));
    assert!(close(share(2.0, 20.0), 0.3));
    // From 3: "more than 2", read at the bucket bound.
    assert!(close(share(3.0, 5.0), 0.1));
    assert_eq!(super::short_share(None, ShortAnswers::default()), None);
}
