//! The SLO and forecast terms against a real Prometheus holding days of history,
//! written with `promtool tsdb create-blocks-from openmetrics`.

use keda_llm_scaler_test_support as common;

use std::{
    fmt::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use common::{PrometheusServer, Scaler, demand, open_activity_stream, scaled_object};

const DAY: i64 = 86_400;
const STEP: i64 = 15;

/// A counter's samples from `from` to `to` (seconds), growing at `rate(t)` per second.
fn counter(out: &mut String, series: &str, from: i64, to: i64, rate: impl Fn(i64) -> f64) {
    let mut value = 0.0;
    let mut t = from;
    while t <= to {
        let _ = writeln!(out, "{series} {value} {t}");
        value += rate(t) * STEP as f64;
        t += STEP;
    }
}

fn gauge(out: &mut String, series: &str, from: i64, to: i64, value: f64) {
    let mut t = from;
    while t <= to {
        let _ = writeln!(out, "{series} {value} {t}");
        t += STEP;
    }
}

/// History for two fleets, `now` in seconds:
/// - seed engine: for three days, output tokens at 1000/s from 10 to 40 minutes after
///   this time of day, and nothing otherwise;
/// - vLLM: two replicas serving 10 requests/s each over the last two hours, 20 % of
///   them slower than 2 s (TTFT buckets 1 and 2.5 s around it).
fn history(now: i64) -> String {
    let mut out = String::new();
    let spike = |t: i64| {
        let into_day = (t - now).rem_euclid(DAY);
        if (600..2400).contains(&into_day) {
            1000.0
        } else {
            0.0
        }
    };
    counter(
        &mut out,
        r#"llm_tokens_processed_total{token_type="output",model_id="m",pod="gen-1"}"#,
        now - 3 * DAY - 3600,
        now - DAY + 3 * 3600,
        spike,
    );
    let start = now - 2 * 3600;
    let end = now - STEP;
    for pod in ["p1", "p2"] {
        for (le, per_second) in [("0.5", 4.0), ("1.0", 6.0), ("2.5", 9.0), ("+Inf", 10.0)] {
            counter(
                &mut out,
                &format!(
                    r#"vllm:time_to_first_token_seconds_bucket{{model_name="base",pod="{pod}",le="{le}"}}"#
                ),
                start,
                end,
                |_| per_second,
            );
        }
    }
    // Two more vLLM fleets with 30 % of TTFTs over 2 s, whose prefill times say why:
    // `split` has 10 % of prefills over 2 s (two thirds of the misses are queueing),
    // `unfixable` 30 % (every miss is a prompt too long for 2 s on any replica).
    for (model, prefill_within_2s) in [("split", 9.0), ("unfixable", 7.0)] {
        for pod in ["q1", "q2"] {
            let labels = format!(r#"model_name="{model}",pod="{model}-{pod}""#);
            for (le, per_second) in [("1", 5.0), ("2", 7.0), ("+Inf", 10.0)] {
                counter(
                    &mut out,
                    &format!(r#"vllm:time_to_first_token_seconds_bucket{{{labels},le="{le}"}}"#),
                    start,
                    end,
                    |_| per_second,
                );
            }
            for (le, per_second) in [("1", 5.0), ("2", prefill_within_2s), ("+Inf", 10.0)] {
                counter(
                    &mut out,
                    &format!(r#"vllm:request_prefill_time_seconds_bucket{{{labels},le="{le}"}}"#),
                    start,
                    end,
                    |_| per_second,
                );
            }
        }
    }
    for pod in ["p1", "p2"] {
        gauge(
            &mut out,
            &format!(r#"vllm:num_requests_waiting{{model_name="base",pod="{pod}"}}"#),
            start,
            end,
            0.0,
        );
    }
    // Three vLLM fleets generating 2,000 tokens/s between two pods, at 1 request/s per
    // pod: `long-out` at 1,000 prompt and 1,000 output tokens a request, `short-in` at
    // 100 and 316.2 (sqrt(100 x 1000), halfway on the profile's log scale), and
    // `short-share` at long-out's mix with a quarter of its answers at 20 tokens or fewer
    // (its output-length buckets, with the bounds as vLLM's Python client writes them);
    // `torn-share` the same, but its `+Inf` bucket was never exported.
    for (model, prompt, output) in [
        ("long-out", 1000.0, 1000.0),
        ("short-in", 100.0, 100_000f64.sqrt()),
        ("short-share", 1000.0, 1000.0),
        ("torn-share", 1000.0, 1000.0),
    ] {
        for pod in ["r1", "r2"] {
            let labels = format!(r#"model_name="{model}",pod="{model}-{pod}""#);
            let series = [
                ("vllm:generation_tokens_total", 1000.0),
                ("vllm:request_prompt_tokens_sum", prompt),
                ("vllm:request_prompt_tokens_count", 1.0),
                ("vllm:request_generation_tokens_sum", output),
                ("vllm:request_generation_tokens_count", 1.0),
            ];
            for (name, per_second) in series {
                counter(&mut out, &format!("{name}{{{labels}}}"), start, end, |_| {
                    per_second
                });
            }
            let buckets = [
                ("1.0", 0.05),
                ("5.0", 0.1),
                ("20.0", 0.25),
                ("1000.0", 0.5),
                ("+Inf", 1.0),
            ];
            let exported = |le: &str| match model {
                "short-share" => true,
                "torn-share" => le != "+Inf",
                _ => false,
            };
            for (le, per_second) in buckets.iter().filter(|(le, _)| exported(le)) {
                let series =
                    format!(r#"vllm:request_generation_tokens_bucket{{{labels},le="{le}"}}"#);
                counter(&mut out, &series, start, end, |_| *per_second);
            }
            gauge(
                &mut out,
                &format!("vllm:num_requests_waiting{{{labels}}}"),
                start,
                end,
                0.0,
            );
        }
    }
    // Two vLLM fleets with 30 % of TPOTs over 50 ms, whose prompt lengths say why:
    // `tpot-split` has 10 % of its prompts past the 100,000-token floor context (two
    // thirds of the misses are batch interference), `tpot-floor` 30 % (every miss is a
    // context too long for 50 ms a token on any replica). Both export only the
    // inter-token latency, as vLLM did before its per-request TPOT. `tpot-request` is
    // `tpot-split` on a vLLM with both: 30 % of its requests miss, but their tokens are
    // only 5 % of the inter-token latency's (the misses are short answers).
    for (model, within_floor) in [
        ("tpot-split", 9.0),
        ("tpot-floor", 7.0),
        ("tpot-request", 9.0),
    ] {
        for pod in ["q1", "q2"] {
            let labels = format!(r#"model_name="{model}",pod="{model}-{pod}""#);
            let (itl, per_request) = if model == "tpot-request" {
                (9.5, Some(7.0))
            } else {
                (7.0, None)
            };
            let mut histograms = vec![
                (
                    "vllm:inter_token_latency_seconds_bucket",
                    [("0.025", 5.0), ("0.05", itl), ("+Inf", 10.0)],
                ),
                (
                    "vllm:request_prompt_tokens_bucket",
                    [("10000", 5.0), ("100000", within_floor), ("+Inf", 10.0)],
                ),
            ];
            if let Some(within) = per_request {
                histograms.push((
                    "vllm:request_time_per_output_token_seconds_bucket",
                    [("0.025", 5.0), ("0.05", within), ("+Inf", 10.0)],
                ));
            }
            for (name, buckets) in histograms {
                for (le, per_second) in buckets {
                    counter(
                        &mut out,
                        &format!(r#"{name}{{{labels},le="{le}"}}"#),
                        start,
                        end,
                        |_| per_second,
                    );
                }
            }
        }
    }
    for model in [
        "split",
        "unfixable",
        "tpot-split",
        "tpot-floor",
        "tpot-request",
    ] {
        for pod in ["q1", "q2"] {
            gauge(
                &mut out,
                &format!(
                    r#"vllm:num_requests_waiting{{model_name="{model}",pod="{model}-{pod}"}}"#
                ),
                start,
                end,
                0.0,
            );
        }
    }
    // A vLLM fleet whose output rate held at 1,000 tokens/s for three days and has run
    // at 1,200 for the last five hours.
    counter(
        &mut out,
        r#"vllm:generation_tokens_total{model_name="steady",pod="s1"}"#,
        now - 3 * DAY - 5 * 3600,
        end,
        |t| if t >= now - 5 * 3600 { 1200.0 } else { 1000.0 },
    );
    gauge(
        &mut out,
        r#"vllm:num_requests_waiting{model_name="steady",pod="s1"}"#,
        start,
        end,
        0.0,
    );
    out.push_str("# EOF\n");
    out
}

fn config(url: &str) -> String {
    format!(
        r#"
prometheus: {{url: "{url}", timeout: 5s}}
evaluation: {{cache_ttl: 1s}}
profiles:
  warm30:
    engine: seed
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 500}}
    predictive:
      lead: 30m
      history: {{period: 1d, periods: 3, headroom: 1.1}}
  steady:
    engine: vllm
    selector: {{model_name: steady}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 500}}
    predictive:
      lead: 30m
      history: {{period: 1d, periods: 3, headroom: 1.1}}
  warm5:
    engine: seed
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 500}}
    predictive:
      lead: 5m
      history: {{period: 1d, periods: 3, headroom: 1.1}}
  slo:
    engine: vllm
    selector: {{model_name: base}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    slos:
      - {{name: ttft-2s, signal: ttft, threshold: 2s, objective: 0.9, windows: [5m, 1h], gain: 0.25, max_boost: 2}}
  split:
    engine: vllm
    selector: {{model_name: split}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    slos:
      - {{name: ttft-2s, signal: ttft, threshold: 2s, objective: 0.9, windows: [5m, 1h], gain: 0.25, max_boost: 2}}
  long-out:
    engine: vllm
    selector: {{model_name: long-out}}
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      profile: &grid
        - {{input_tokens: 100, output_tokens: 100, output_tokens_per_second: 1000, input_tokens_per_second: 1000}}
        - {{input_tokens: 100, output_tokens: 1000, output_tokens_per_second: 4000, input_tokens_per_second: 400}}
        - {{input_tokens: 1000, output_tokens: 100, output_tokens_per_second: 250, input_tokens_per_second: 2500}}
        - {{input_tokens: 1000, output_tokens: 1000, output_tokens_per_second: 1000, input_tokens_per_second: 1000}}
  short-in:
    engine: vllm
    selector: {{model_name: short-in}}
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      profile: *grid
  short-share:
    engine: vllm
    selector: {{model_name: short-share}}
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      profile: &shares
        - {{input_tokens: 1000, output_tokens: 1000, short_output_share: 0, output_tokens_per_second: 1000, input_tokens_per_second: 1000}}
        - {{input_tokens: 1000, output_tokens: 1000, short_output_share: 0.5, output_tokens_per_second: 250, input_tokens_per_second: 1000}}
  short-share-from-2:
    engine: vllm
    selector: {{model_name: short-share}}
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      short_output_min_tokens: 2
      profile: *shares
  torn-share:
    engine: vllm
    selector: {{model_name: torn-share}}
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      profile: *shares
  unfixable:
    engine: vllm
    selector: {{model_name: unfixable}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    slos:
      - {{name: ttft-2s, signal: ttft, threshold: 2s, objective: 0.9, windows: [5m, 1h], gain: 0.25, max_boost: 2}}
  tpot-split:
    engine: vllm
    selector: {{model_name: tpot-split}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    slos:
      - &tpot {{name: tpot-50ms, signal: tpot, threshold: 50ms, objective: 0.9, windows: [5m, 1h], gain: 0.25, max_boost: 2, floor_context_tokens: 100000}}
  tpot-floor:
    engine: vllm
    selector: {{model_name: tpot-floor}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    slos: [*tpot]
  tpot-request:
    engine: vllm
    selector: {{model_name: tpot-request}}
    capacity: {{queue_per_replica: 15, output_tokens_per_second: 5000}}
    slos: [*tpot]
"#
    )
}

/// Prometheus holding [`history`] up to now, and the scaler on [`config`].
async fn start() -> (PrometheusServer, Scaler) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let now = now - now % STEP;
    let prometheus = PrometheusServer::start_with_history(&history(now)).await;
    let scaler = Scaler::start(&config(&prometheus.url())).await;
    (prometheus, scaler)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[tokio::test]
async fn history_warms_a_fleet_lead_before_its_daily_spike_and_slow_requests_burn() {
    let (_prometheus, scaler) = start().await;
    let mut client = scaler.client().await;
    let mut explain = scaler.explain_client().await;

    // The spike starts 10 minutes from now: a 30-minute lead sees it in every past day,
    // and the idle fleet becomes active; a 5-minute lead does not yet.
    let warm30 = scaled_object("warm30", &[("profile", "warm30")]);
    let wanted = demand(&mut client, &warm30).await.unwrap();
    let explanation = explain.explain(warm30.clone()).await.unwrap().into_inner();
    let forecast = explanation.forecast.expect("a forecast from history");
    assert!(close(forecast.past_peak, 1000.0), "{explanation:#?}");
    assert_eq!(forecast.periods, 3);
    // Both views read their levels from Prometheus: idle at this time of day in each.
    assert!(
        close(forecast.level_window_tokens_per_second, 1000.0)
            && close(forecast.long_window_tokens_per_second.unwrap(), 1000.0),
        "{explanation:#?}"
    );
    assert!(
        close(wanted, 1000.0 * 1.1 / 500.0),
        "demand {wanted}: {explanation:#?}"
    );
    // The recent levels are one range vector: Prometheus answered the subquery with a
    // sample per step in each past period that has data (none today, which has no
    // series): not enough of today to score the candidates on.
    let recent = explanation
        .queries
        .iter()
        .find(|q| q.signal == "history_recent")
        .expect("the recent levels are queried");
    assert!(recent.error.is_empty(), "{recent:#?}");
    assert!(recent.series >= 3, "{recent:#?}");
    assert_eq!(forecast.candidates, None, "{explanation:#?}");
    assert_eq!(explanation.winning_term, "forecast");
    let active = client.is_active(warm30.clone()).await.unwrap().into_inner();
    assert!(active.result, "pre-warming from zero");
    let (_stream, first) = open_activity_stream(&mut client, &warm30).await;
    assert!(first, "StreamIsActive pushes true for a forecast");

    let warm5 = scaled_object("warm5", &[("profile", "warm5")]);
    assert_eq!(demand(&mut client, &warm5).await.unwrap(), 0.0);
    assert!(!client.is_active(warm5).await.unwrap().into_inner().result);

    // 20 % of requests over 2 s against a 10 % budget: burn 2 over both windows. The
    // load terms read 0 (no queue, no token series), so the term is
    // max(L, 1) x min(2, 1 + 0.25 x (2 - 1)) = 1 x 1.25.
    let slo = scaled_object("slo", &[("profile", "slo")]);
    let wanted = demand(&mut client, &slo).await.unwrap();
    let explanation = explain.explain(slo).await.unwrap().into_inner();
    let status = &explanation.slos[0];
    assert!(
        close(status.short_burn_rate.unwrap(), 2.0) && close(status.long_burn_rate.unwrap(), 2.0),
        "{explanation:#?}"
    );
    assert!(status.burning);
    assert!(close(wanted, 1.25), "demand {wanted}: {explanation:#?}");
    assert_eq!(explanation.winning_term, "slo");
    let metrics = scaler.metrics().await;
    assert!(
        metrics.contains(r#"keda_llm_scaler_slo_burn_rate{namespace="inference",scaledobject="slo",slo="ttft-2s",window="long"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"keda_llm_scaler_forecast_tokens_per_second{namespace="inference",scaledobject="warm30"}"#
    ));
}

/// The value of one series in /metrics.
fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

/// TTFT misses split by the prefill-time histogram, through a real Prometheus: the term
/// acts on the share queueing caused, and not at all when every miss is a prompt too
/// long for the threshold on any replica.
#[tokio::test]
async fn the_forecasts_candidates_are_scored_on_prometheus_recent_levels() {
    let (_prometheus, scaler) = start().await;
    let mut client = scaler.client().await;
    let mut explain = scaler.explain_client().await;
    let steady = scaled_object("steady", &[("profile", "steady")]);
    assert!(demand(&mut client, &steady).await.is_ok());
    let explanation = explain.explain(steady).await.unwrap().into_inner();
    let forecast = explanation.forecast.expect("a forecast from history");
    let c = forecast.candidates.expect("today has a series to score on");
    assert_eq!(c.points, 12, "{c:#?}");
    // Today runs at 1.2 times the past days: the day-old peak is 1,000 and was a sixth
    // short at every scored point; today's level and the scaled peaks were exact.
    let naive = c.seasonal_naive.unwrap();
    assert!(close(naive.tokens_per_second, 1000.0), "{c:#?}");
    assert!(close(naive.recent_error, 1.0 / 6.0), "{c:#?}");
    assert!(naive.weight < 1e-6, "{c:#?}");
    let scaled = c
        .scaled_peaks
        .expect("six windows of today and the past days");
    assert!(scaled.recent_error < 1e-6, "{c:#?}");
    assert!(c.last_value.unwrap().recent_error < 1e-6, "{c:#?}");
    // Now, the newest level window may reach past the last sample by the seconds the
    // test took to get here, which reads a little low: within 1 %.
    let near = |a: f64| (a - 1200.0).abs() < 12.0;
    assert!(near(scaled.tokens_per_second), "{c:#?}");
    assert!(near(forecast.tokens_per_second), "{explanation:#?}");
    // /metrics says the same, for dashboards.
    let metrics = scaler.metrics().await;
    let series = |name: &str, candidate: &str| {
        metric_value(
            &metrics,
            &format!(
                r#"keda_llm_scaler_forecast_candidate_{name}{{namespace="inference",scaledobject="steady",candidate="{candidate}"}}"#
            ),
        )
    };
    assert!((series("error", "seasonal_naive") - 1.0 / 6.0).abs() < 1e-6);
    assert!(series("weight", "seasonal_naive") < 1e-6);
    assert!(series("error", "scaled_peaks") < 1e-6);
    assert!(series("weight", "scaled_peaks") > 0.3, "{metrics}");
}

#[tokio::test]
async fn the_ttft_term_acts_only_on_misses_replicas_can_fix() {
    let (_prometheus, scaler) = start().await;
    let mut client = scaler.client().await;
    let mut explain = scaler.explain_client().await;

    // 30 % of TTFTs over 2 s (burn 3 against a 10 % budget), 10 % of prefills over
    // 2 s: fixable 20 %, burn 2, so max(L, 1) x min(2, 1 + 0.25 x (2 - 1)) = 1.25
    // (the whole burn would have asked for 1.5).
    let split = scaled_object("split", &[("profile", "split")]);
    let wanted = demand(&mut client, &split).await.unwrap();
    let explanation = explain.explain(split).await.unwrap().into_inner();
    let status = &explanation.slos[0];
    assert!(
        close(status.short_burn_rate.unwrap(), 3.0),
        "{explanation:#?}"
    );
    assert!(
        close(status.short_unfixable_ratio.unwrap(), 0.1),
        "{explanation:#?}"
    );
    assert!(
        close(status.long_unfixable_ratio.unwrap(), 0.1),
        "{explanation:#?}"
    );
    assert!(
        close(status.short_fixable_burn_rate.unwrap(), 2.0),
        "{explanation:#?}"
    );
    assert!(
        close(status.long_fixable_burn_rate.unwrap(), 2.0),
        "{explanation:#?}"
    );
    assert!(status.burning);
    assert!(close(wanted, 1.25), "demand {wanted}: {explanation:#?}");
    let slo_term = explanation.terms.iter().find(|t| t.name == "slo").unwrap();
    assert!(
        slo_term.formula.contains("b_fixable_short"),
        "{slo_term:#?}"
    );
    // GetMetrics asked first and the scaler kept that rise: Explain, the trigger's next
    // evaluation, judges the same burn against it and follows.
    assert_eq!(status.control, "follow", "{explanation:#?}");
    assert!(close(status.boost.unwrap(), 1.25), "{explanation:#?}");
    let rise = status.last_rise.as_ref().expect("the rise GetMetrics kept");
    assert!(
        close(rise.boost, 1.25) && close(rise.fixable_burn, 2.0) && rise.trim == 1.0,
        "{rise:#?}"
    );
    let split_metrics = scaler.metrics().await;
    let labels = r#"{namespace="inference",scaledobject="split",slo="ttft-2s"}"#;
    // rate() over backfilled samples is exact only to a few ulps: 1.2499999999999998.
    let boost = metric_value(
        &split_metrics,
        &format!("keda_llm_scaler_slo_boost{labels}"),
    );
    assert!(close(boost, 1.25), "{split_metrics}");
    let held = metric_value(
        &split_metrics,
        &format!("keda_llm_scaler_slo_boost_held{labels}"),
    );
    assert_eq!(held, 0.0, "{split_metrics}");
    // No rise has been served yet, so nothing is kept under the boost.
    let trim = metric_value(&split_metrics, &format!("keda_llm_scaler_slo_trim{labels}"));
    assert_eq!(trim, 1.0, "{split_metrics}");

    // Every miss is a long prompt: burn 3, fixable 0, no term; the idle fleet wants 0.
    let unfixable = scaled_object("unfixable", &[("profile", "unfixable")]);
    let wanted = demand(&mut client, &unfixable).await.unwrap();
    let explanation = explain.explain(unfixable).await.unwrap().into_inner();
    let status = &explanation.slos[0];
    assert!(
        close(status.short_burn_rate.unwrap(), 3.0),
        "{explanation:#?}"
    );
    assert!(
        close(status.short_unfixable_ratio.unwrap(), 0.3),
        "{explanation:#?}"
    );
    assert!(
        status.short_fixable_burn_rate.unwrap() < 1e-9,
        "{explanation:#?}"
    );
    assert!(!status.burning);
    assert_eq!(status.control, "idle", "{explanation:#?}");
    assert!(status.last_rise.is_none(), "{explanation:#?}");
    assert_eq!(wanted, 0.0, "{explanation:#?}");
    let metrics = scaler.metrics().await;
    let value = |series: &str| metric_value(&metrics, series);
    let labels = r#"{namespace="inference",scaledobject="unfixable",slo="ttft-2s",window="short"}"#;
    assert!(close(
        value(&format!("keda_llm_scaler_slo_unfixable_ratio{labels}")),
        0.3
    ));
    assert!(value(&format!("keda_llm_scaler_slo_fixable_burn_rate{labels}")) < 1e-9);
}

/// TPOT misses split by the prompt-length histogram at `floor_context_tokens`, through
/// a real Prometheus: the term acts on the share batch interference caused, and not at
/// all when every miss is a context past the model's floor.
#[tokio::test]
async fn the_tpot_term_acts_only_on_misses_past_no_floor() {
    let (_prometheus, scaler) = start().await;
    let mut client = scaler.client().await;
    let mut explain = scaler.explain_client().await;
    // (fleet, unfixable share, fixable burn, demand): 30 % of TPOTs over 50 ms is burn
    // 3 against a 10 % budget. With 10 % of prompts past the floor the fixable burn is
    // 2: max(L, 1) x min(2, 1 + 0.25 x (2 - 1)) = 1.25. With 30 %, nothing is fixable
    // and the idle fleet wants 0. `tpot-request` reads its requests' TPOTs, not the
    // inter-token latency's 5 % (burn 0.5, which would not act).
    for (fleet, unfixable, fixable, expected) in [
        ("tpot-split", 0.1, 2.0, 1.25),
        ("tpot-floor", 0.3, 0.0, 0.0),
        ("tpot-request", 0.1, 2.0, 1.25),
    ] {
        let object = scaled_object(fleet, &[("profile", fleet)]);
        let wanted = demand(&mut client, &object).await.unwrap();
        let explanation = explain.explain(object).await.unwrap().into_inner();
        let status = &explanation.slos[0];
        assert_eq!(status.signal, "tpot");
        assert!(
            close(status.short_burn_rate.unwrap(), 3.0),
            "{explanation:#?}"
        );
        for ratio in [status.short_unfixable_ratio, status.long_unfixable_ratio] {
            assert!(
                close(ratio.unwrap(), unfixable),
                "{fleet}: {explanation:#?}"
            );
        }
        for burn in [
            status.short_fixable_burn_rate,
            status.long_fixable_burn_rate,
        ] {
            assert!(close(burn.unwrap(), fixable), "{fleet}: {explanation:#?}");
        }
        assert_eq!(status.burning, fixable > 1.0, "{explanation:#?}");
        assert!(
            close(wanted, expected),
            "{fleet}: demand {wanted}: {explanation:#?}"
        );
    }
    let object = scaled_object("tpot-floor", &[("profile", "tpot-floor")]);
    let explanation = explain.explain(object).await.unwrap().into_inner();
    let text = keda_llm_scaler::server::render_explanation(&explanation);
    assert!(
        text.contains("unfixable (prompt over the floor context) 30.00 % / 30.00 %"),
        "{text}"
    );
}

/// capacity.profile through a real Prometheus: the throughput term divides by the
/// profile's rate at the mix vLLM's request-length histograms report.
/// The throughput term Explain shows for profile `name`'s ScaledObject, once it answered.
async fn throughput_term(
    scaler: &Scaler,
    name: &str,
) -> keda_llm_scaler::proto::llmscaler::v1::Term {
    let mut client = scaler.client().await;
    let mut explain = scaler.explain_client().await;
    let object = scaled_object(name, &[("profile", name)]);
    assert!(demand(&mut client, &object).await.is_ok());
    let explanation = explain.explain(object).await.unwrap().into_inner();
    explanation
        .terms
        .into_iter()
        .find(|t| t.name == "throughput")
        .unwrap()
}

#[tokio::test]
async fn the_throughput_term_follows_the_mix_being_served() {
    let (_prometheus, scaler) = start().await;
    // At 1,000/1,000 the profile's point says 1,000 output tokens/s a replica; at
    // 100/316, halfway between 1,000 and 4,000 on a log scale, 2,000. (The token rate
    // itself reads low: the history ends a scrape ago and rate() extrapolates little.)
    for (name, capacity) in [("long-out", 1000.0), ("short-in", 2000.0)] {
        let term = throughput_term(&scaler, name).await;
        let input = |key: &str| term.inputs.get(key).copied();
        assert!(
            input("capacity_output_tokens_per_second")
                .is_some_and(|c| (c - capacity).abs() < 1e-3 * capacity),
            "{name}: {term:#?}"
        );
        assert!(term.formula.contains("capacity.profile at"), "{term:#?}");
        let t_out = input("output_tokens_per_second").unwrap();
        assert!(t_out > 0.0, "{term:#?}");
        assert!(
            (term.replicas - t_out / capacity).abs() < 1e-6,
            "{name}: {term:#?}"
        );
    }
}

#[tokio::test]
async fn the_throughput_term_follows_the_share_of_short_answers() {
    let (_prometheus, scaler) = start().await;
    // A quarter of the answers at 20 tokens or fewer, halfway between the points at 0
    // (1,000 output tokens/s a replica) and 0.5 (250): 500, their geometric mean.
    let term = throughput_term(&scaler, "short-share").await;
    let input = |key: &str| term.inputs.get(key).copied();
    assert!(
        input("short_output_share").is_some_and(|s| (s - 0.25).abs() < 1e-6),
        "{term:#?}"
    );
    assert!(
        input("capacity_output_tokens_per_second").is_some_and(|c| (c - 500.0).abs() < 1e-3),
        "{term:#?}"
    );
    assert!(
        term.formula.contains("0.25 of answers at most 20 tokens"),
        "{term:#?}"
    );
    // /metrics says the same, for dashboards.
    let metrics = scaler.metrics().await;
    let mix = |quantity: &str| {
        metric_value(
            &metrics,
            &format!(
                r#"keda_llm_scaler_capacity_mix{{namespace="inference",scaledobject="short-share",quantity="{quantity}"}}"#
            ),
        )
    };
    assert!((mix("short_output_share") - 0.25).abs() < 1e-6);
    assert!((mix("capacity_output_tokens_per_second") - 500.0).abs() < 1e-3);
    assert!((mix("mean_input_tokens") - 1000.0).abs() < 1e-3);
    // The same fleet counting from 2 tokens: a fifth of the answers (the one-token ones,
    // 5 %, have no TPOT to miss), so 1,000 x 0.25^0.4 = 574.3.
    let term = throughput_term(&scaler, "short-share-from-2").await;
    let input = |key: &str| term.inputs.get(key).copied();
    assert!(
        input("short_output_share").is_some_and(|s| (s - 0.2).abs() < 1e-6),
        "{term:#?}"
    );
    let expected = 1000.0 * 0.25f64.powf(0.4);
    assert!(
        input("capacity_output_tokens_per_second").is_some_and(|c| (c - expected).abs() < 1e-3),
        "{term:#?}"
    );
    assert!(
        term.formula.contains("0.2 of answers of 2 to 20 tokens"),
        "{term:#?}"
    );
}

#[tokio::test]
async fn an_output_length_histogram_without_its_inf_bucket_is_refused_with_its_cause() {
    let (_prometheus, scaler) = start().await;
    let mut client = scaler.client().await;
    let object = scaled_object("torn-share", &[("profile", "torn-share")]);
    // Under the default on_term_error (fail): UNAVAILABLE, naming the histogram and why,
    // rather than a demand read at a share nobody measured.
    let status = demand(&mut client, &object).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(
            "output_lengths histogram cannot be read: the histogram has no `+Inf` bucket"
        ),
        "{status:?}"
    );
    let metrics = scaler.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("keda_llm_scaler_signal_read_errors_total")
                && l.contains(r#"kind="bad_histogram""#)
        ),
        "{metrics}"
    );
}
