use super::*;

fn value(value: f64) -> Result<Vec<MetricValue>, ()> {
    Ok(vec![MetricValue { value, target: 1.0 }])
}

fn open(min: u32, max: u32) -> ScaledObjectSpec {
    ScaledObjectSpec {
        min_replicas: min,
        max_replicas: max,
        scale_up: Rules::default_up(),
        scale_down: Rules {
            stabilization: 0.0,
            ..Rules::default_down()
        },
        ..ScaledObjectSpec::seed()
    }
}

#[test]
fn average_value_asks_for_ceil_of_value_over_target_outside_the_tolerance() {
    let hpa = Hpa::new(ScaledObjectSpec::seed());
    let m = |value: f64, target: f64| MetricValue { value, target };
    assert_eq!(hpa.metric_replicas(m(10.0, 1.0), 10), 10);
    // 10.5 / 10 = 1.05: inside the 0.1 tolerance.
    assert_eq!(hpa.metric_replicas(m(10.5, 1.0), 10), 10);
    assert_eq!(hpa.metric_replicas(m(9.0, 1.0), 10), 10);
    assert_eq!(hpa.metric_replicas(m(11.5, 1.0), 10), 12);
    assert_eq!(hpa.metric_replicas(m(8.9, 1.0), 10), 9);
    // sum(llm_queue_depth) = 100 against 15 per replica.
    assert_eq!(hpa.metric_replicas(m(100.0, 15.0), 2), 7);
    assert_eq!(hpa.metric_replicas(m(0.0, 15.0), 2), 0);
}

#[test]
fn the_largest_metric_wins_and_min_max_clamp() {
    let mut hpa = Hpa::new(open(2, 5));
    let both = Ok(vec![
        MetricValue {
            value: 30.0,
            target: 15.0,
        },
        MetricValue {
            value: 12000.0,
            target: 5000.0,
        },
    ]);
    assert_eq!(hpa.sync(0.0, 2, both), 3);
    assert_eq!(hpa.sync(15.0, 3, value(40.0)), 5);
    assert_eq!(hpa.sync(30.0, 5, value(0.0)), 2);
}

#[test]
fn the_seeds_scale_up_policy_adds_three_pods_a_minute() {
    let mut hpa = Hpa::new(ScaledObjectSpec::seed());
    assert_eq!(hpa.sync(0.0, 2, value(20.0)), 5);
    assert_eq!(hpa.sync(15.0, 5, value(20.0)), 5);
    assert_eq!(hpa.sync(45.0, 5, value(20.0)), 5);
    // The first change leaves the 60 s period.
    assert_eq!(hpa.sync(60.0, 5, value(20.0)), 8);
    assert_eq!(hpa.sync(120.0, 8, value(20.0)), 11);
}

#[test]
fn kubernetes_default_scale_up_is_four_pods_or_double_per_period() {
    let mut hpa = Hpa::new(open(1, 100));
    assert_eq!(hpa.sync(0.0, 2, value(50.0)), 6);
    assert_eq!(hpa.sync(15.0, 6, value(50.0)), 12);
    assert_eq!(hpa.sync(30.0, 12, value(50.0)), 24);
}

#[test]
fn scale_down_waits_out_the_stabilization_window_then_one_pod_per_two_minutes() {
    let mut hpa = Hpa::new(ScaledObjectSpec::seed());
    assert_eq!(hpa.sync(0.0, 10, value(10.0)), 10);
    let mut current = 10;
    let mut history = Vec::new();
    for step in 1..=40 {
        let now = f64::from(step) * 15.0;
        current = hpa.sync(now, current, value(2.0));
        history.push((now, current));
    }
    // The recommendation of 10 at t = 0 holds the fleet until it leaves the 300 s window
    // (a recommendation counts while strictly newer than the cutoff).
    assert!(history.iter().filter(|h| h.0 < 300.0).all(|h| h.1 == 10));
    assert_eq!(history.iter().find(|h| h.1 == 9).unwrap().0, 300.0);
    assert_eq!(history.iter().find(|h| h.1 == 8).unwrap().0, 420.0);
    assert_eq!(history.iter().find(|h| h.1 == 7).unwrap().0, 540.0);
}

#[test]
fn a_settled_hpa_holds_its_fleet_through_the_stabilization_window() {
    // A fleet started warm at 16 whose first reading is empty (Prometheus has no
    // scrape yet): a fresh HPA starts shrinking at once, a settled one waits out the
    // window as it would after serving at 16.
    let spec = ScaledObjectSpec::recommended();
    let window = spec.scale_down.stabilization;
    let mut fresh = Hpa::new(spec.clone());
    assert!(fresh.sync(5.0, 16, value(0.0)) < 16);
    let mut settled = Hpa::new(spec);
    settled.settle(0.0, 16);
    let mut current = 16;
    let mut now = 5.0;
    while now < window {
        current = settled.sync(now, current, value(if now == 5.0 { 0.0 } else { 12.0 }));
        assert_eq!(current, 16, "at {now} s");
        now += 15.0;
    }
    // Past the window, the demand of 12 it has read since is what it scales to.
    assert_eq!(settled.sync(window + 20.0, current, value(12.0)), 12);
}

#[test]
fn scale_down_percent_policies_truncate_and_select_max_allows_the_most_change() {
    let spec = ScaledObjectSpec {
        scale_down: Rules {
            stabilization: 0.0,
            select: Select::Max,
            policies: vec![
                RatePolicy::Percent {
                    value: 50,
                    period: 60.0,
                },
                RatePolicy::Pods {
                    value: 1,
                    period: 60.0,
                },
            ],
        },
        min_replicas: 1,
        ..ScaledObjectSpec::seed()
    };
    let mut hpa = Hpa::new(spec.clone());
    // 9 x 0.5 = 4.5, truncated to 4; the Pods policy would allow 8: Max takes 4.
    assert_eq!(hpa.sync(0.0, 9, value(1.0)), 4);
    let mut hpa = Hpa::new(ScaledObjectSpec {
        scale_down: Rules {
            select: Select::Min,
            ..spec.scale_down.clone()
        },
        ..spec
    });
    assert_eq!(hpa.sync(0.0, 9, value(1.0)), 8);
}

#[test]
fn failed_metrics_hold_the_fleet_then_the_fallback_takes_over() {
    let mut hpa = Hpa::new(ScaledObjectSpec {
        fallback: Some((3, 6)),
        ..open(1, 20)
    });
    assert_eq!(hpa.sync(0.0, 2, Err(())), 2);
    assert_eq!(hpa.sync(15.0, 2, Err(())), 2);
    assert_eq!(hpa.sync(30.0, 2, Err(())), 2);
    assert_eq!(hpa.sync(45.0, 2, Err(())), 6);
    // A good answer resets the count.
    assert_eq!(hpa.sync(60.0, 6, value(6.0)), 6);
    assert_eq!(hpa.sync(75.0, 6, Err(())), 6);
}

#[test]
fn keda_activates_from_zero_and_deactivates_after_the_cooldown() {
    let mut hpa = Hpa::new(open(0, 10));
    assert_eq!(hpa.poll(0.0, 0, false), None);
    // Polls come every pollingInterval (30 s): activity between them waits.
    assert_eq!(hpa.poll(15.0, 0, true), None);
    assert_eq!(hpa.poll(30.0, 0, true), Some(1));
    assert_eq!(hpa.poll(60.0, 1, false), None);
    assert_eq!(hpa.poll(300.0, 1, false), None);
    assert_eq!(hpa.poll(330.0, 1, false), Some(0));
    // With a minimum the HPA owns the count.
    let mut warm = Hpa::new(ScaledObjectSpec::seed());
    assert_eq!(warm.poll(0.0, 0, true), None);
    assert_eq!(warm.sync(0.0, 0, value(5.0)), 0);
}
