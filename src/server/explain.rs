//! The Explain service: the demand, and everything it came from.

use std::{fmt::Write, sync::Arc, time::UNIX_EPOCH};

use tonic::{Request, Response, Status};

use super::{deadline, state::State};
use crate::{
    demand::{self, Demand, Signals, TermKind},
    proto::{
        externalscaler::ScaledObjectRef,
        llmscaler::v1::{
            Explanation, Forecast, ForecastCandidate, ForecastCandidates, Inputs, Query,
            ReplicaInputs, ScheduleWindow, SloRise, SloStatus, Term, explain_server::Explain,
        },
    },
    source::{MetricsSource, QueryRecord, Signal},
};

pub struct ExplainService<S> {
    state: Arc<State<S>>,
}

impl<S> ExplainService<S> {
    pub fn new(state: Arc<State<S>>) -> Self {
        Self { state }
    }
}

/// Whether a term reads a signal, to show the PromQL behind it.
fn term_reads(kind: TermKind, pool: crate::config::Pool, signal: Signal) -> bool {
    match kind {
        TermKind::Queue => signal == Signal::Queue,
        TermKind::Throughput if pool.reads_input_tokens() => signal == Signal::InputTokens,
        TermKind::Throughput => signal == Signal::OutputTokens,
        TermKind::InputThroughput => signal == Signal::InputTokens,
        TermKind::Kv => matches!(signal, Signal::Queue | Signal::KvCache),
        TermKind::Slo => signal == Signal::Queue || signal.slo_index().is_some(),
        TermKind::Schedule => false,
        TermKind::Forecast => matches!(
            signal,
            Signal::HistoryPeak | Signal::HistoryLevel | Signal::HistoryRecent
        ),
    }
}

/// The PromQL of the queries whose signal a predicate accepts.
type PromqlOf<'a> = dyn Fn(&dyn Fn(Signal) -> bool) -> Vec<String> + 'a;

fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tonic::async_trait]
impl<S: MetricsSource> Explain for ExplainService<S> {
    async fn explain(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Explanation>, Status> {
        let started = tokio::time::Instant::now();
        let timeout = deadline::caller_timeout(request.metadata());
        let scaled_object = request.into_inner();
        let result = async {
            let resolved = self.state.resolve(&scaled_object)?;
            let evaluated = deadline::within(timeout, async {
                Ok(self.state.evaluate(&scaled_object, &resolved).await)
            })
            .await?;
            let observation = &evaluated.observation;
            let target = &resolved.target;
            let promql_of = |reads: &dyn Fn(Signal) -> bool| {
                observation
                    .queries
                    .iter()
                    .filter(|q| reads(q.signal))
                    .map(|q| q.promql.clone())
                    .collect::<Vec<_>>()
            };
            let mut explanation = Explanation {
                metric_name: target.metric_name.clone(),
                profile: target.profile_name.clone(),
                engine: target.engine.as_str().to_owned(),
                pool: target.pool.as_str().to_owned(),
                min_demand: target.min_demand,
                max_demand: target.max_demand,
                queries: observation.queries.iter().map(query).collect(),
                evaluated_at_unix_ms: unix_ms(observation.started_at),
                evaluation_seconds: observation.duration.as_secs_f64(),
                age_seconds: observation.started.elapsed().as_secs_f64(),
                ..Default::default()
            };
            {
                let reload = self.state.reload.lock().expect("reload status lock");
                explanation.config_error = reload.last_error.clone().unwrap_or_default();
                explanation.config_loaded_at_unix_ms = unix_ms(reload.last_success);
            }
            match &evaluated.demand {
                Ok(demand) => fill_demand(&mut explanation, demand, &promql_of, target.pool),
                Err(e) => explanation.errors.push(e.to_string()),
            }
            explanation.stale = evaluated.stale_cause.is_some();
            explanation.stale_cause = evaluated.stale_cause.clone().unwrap_or_default();
            explanation.skipped_terms = evaluated.skipped.clone();
            if let Some(inputs) = explanation.inputs.as_mut() {
                let signals = observation.readings(resolved.model.as_deref()).signals();
                inputs.per_replica = per_replica(&signals);
            }
            Ok(explanation)
        }
        .await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.state
            .telemetry
            .record_grpc("Explain", code, Some(started.elapsed().as_secs_f64()));
        result.map(Response::new)
    }
}

fn fill_demand(
    explanation: &mut Explanation,
    demand: &Demand,
    promql_of: &PromqlOf<'_>,
    pool: crate::config::Pool,
) {
    explanation.demand_available = true;
    explanation.demand = demand.replicas;
    explanation.unclamped_demand = demand.unclamped;
    explanation.winning_term = demand.winner.to_string();
    explanation.active = demand.active;
    explanation.terms = demand
        .terms
        .iter()
        .map(|term| Term {
            name: term.kind.as_str().to_owned(),
            replicas: term.replicas,
            formula: term.formula.clone(),
            inputs: term
                .inputs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            promql: promql_of(&|signal| term_reads(term.kind, pool, signal)),
        })
        .collect();
    explanation.inputs = Some(Inputs {
        queue_depth: demand.inputs.queue_depth,
        replicas: demand.inputs.replicas,
        output_tokens_per_second: demand.inputs.output_tokens_per_second,
        input_tokens_per_second: demand.inputs.input_tokens_per_second,
        kv_cache_ratio: demand.inputs.kv_cache_ratio,
        per_replica: Vec::new(),
    });
    explanation.slos = demand
        .slos
        .iter()
        .map(|slo| SloStatus {
            name: slo.name.clone(),
            signal: slo.signal.as_str().to_owned(),
            short_error_ratio: slo.short_error_ratio,
            long_error_ratio: slo.long_error_ratio,
            short_burn_rate: slo.short_burn,
            long_burn_rate: slo.long_burn,
            short_unfixable_ratio: slo.short_unfixable_ratio,
            long_unfixable_ratio: slo.long_unfixable_ratio,
            short_fixable_burn_rate: slo.short_fixable_burn,
            long_fixable_burn_rate: slo.long_fixable_burn,
            burning: slo.burning,
            replicas: slo.replicas,
            boost: slo.boost,
            control: slo.control.as_str().to_owned(),
            control_reason: slo.control_reason.clone(),
            last_rise: slo.rise.as_ref().map(|r| SloRise {
                boost: r.boost,
                fixable_burn: r.fixable_burn,
                replicas: r.replicas,
                at_unix_ms: r.at.timestamp_millis(),
                served_at_unix_ms: r.served_at.map(|t| t.timestamp_millis()),
                lowest_fixable_burn_after: r.lowest_burn_after,
                trim: r.trim,
            }),
        })
        .collect();
    explanation.schedule = demand.schedule.as_ref().map(|w| ScheduleWindow {
        cron: w.cron.clone(),
        min_replicas: w.min_replicas,
        start_unix_ms: w.start.timestamp_millis(),
        end_unix_ms: w.end.timestamp_millis(),
    });
    explanation.forecast = demand.forecast.map(|f| Forecast {
        tokens_per_second: f.rate,
        past_peak: f.past_peak,
        past_level: f.past_level,
        level_ratio: f.level_ratio,
        seasonal_change: f.seasonal_change,
        agreement: f.agreement,
        periods: u32::try_from(f.periods).unwrap_or(u32::MAX),
        level_window_tokens_per_second: f.level_window_rate,
        long_window_tokens_per_second: f.long_window.map(|l| l.rate),
        long_level_ratio: f.long_window.map(|l| l.level_ratio),
        seasonal_weight: f.seasonal_weight,
        candidates: f.candidates.map(|c| {
            let one = |c: demand::forecast::Candidate| ForecastCandidate {
                tokens_per_second: c.rate,
                recent_error: c.recent_error,
                weight: c.weight,
            };
            ForecastCandidates {
                seasonal: Some(one(c.seasonal)),
                last_value: Some(one(c.last_value)),
                seasonal_naive: Some(one(c.seasonal_naive)),
                scaled_peaks: c.scaled_peaks.map(one),
                points: u32::try_from(c.points).unwrap_or(u32::MAX),
            }
        }),
    });
}

/// An explanation as a person reads it in a terminal.
pub fn render_explanation(e: &Explanation) -> String {
    let mut out = String::new();
    render_summary(&mut out, e);
    render_inputs(&mut out, e);
    render_terms(&mut out, e);
    render_slos(&mut out, e);
    render_anticipation(&mut out, e);
    render_queries(&mut out, e);
    out
}

/// The demand, what decided it, and why it may be missing or stale.
fn render_summary(out: &mut String, e: &Explanation) {
    let _ = writeln!(out, "metric     {}", e.metric_name);
    let _ = writeln!(
        out,
        "profile    {} (engine {}, pool {})",
        e.profile, e.engine, e.pool
    );
    if e.demand_available {
        let _ = writeln!(
            out,
            "demand     {:.3} replicas (HPA asks for {}), set by {}",
            e.demand,
            e.demand.ceil(),
            e.winning_term
        );
        if e.demand != e.unclamped_demand {
            let _ = writeln!(
                out,
                "           max(terms) = {:.3}, clamped to [{}, {}]",
                e.unclamped_demand, e.min_demand, e.max_demand
            );
        }
        let _ = writeln!(out, "active     {}", e.active);
    } else {
        let _ = writeln!(
            out,
            "demand     UNAVAILABLE (GetMetrics fails; KEDA's fallback applies)"
        );
    }
    for error in &e.errors {
        let _ = writeln!(out, "error      {error}");
    }
    if !e.config_error.is_empty() {
        let _ = writeln!(
            out,
            "config     the newest config file was refused (the last good one serves):"
        );
        for line in e.config_error.lines() {
            let _ = writeln!(out, "           {line}");
        }
    }
    if e.stale {
        let _ = writeln!(
            out,
            "stale      answering from the evaluation of {:.1} s ago: {}",
            e.age_seconds, e.stale_cause
        );
    }
    for skipped in &e.skipped_terms {
        let _ = writeln!(out, "skipped    {skipped}");
    }
}

/// The aggregated signals and each replica's.
fn render_inputs(out: &mut String, e: &Explanation) {
    if let Some(inputs) = &e.inputs {
        let shown = |value: Option<f64>, decimals: usize| {
            value.map_or("not read".to_owned(), |v| format!("{v:.decimals$}"))
        };
        let _ = writeln!(out, "\ninputs");
        let count = |value: Option<f64>| value.map_or("not read".to_owned(), |v| v.to_string());
        let _ = writeln!(
            out,
            "  Q     queue depth            {}",
            count(inputs.queue_depth)
        );
        let _ = writeln!(
            out,
            "  R     replicas               {}",
            count(inputs.replicas)
        );
        let _ = writeln!(
            out,
            "  T_out output tokens/s        {}",
            shown(inputs.output_tokens_per_second, 3)
        );
        let _ = writeln!(
            out,
            "  T_in  input tokens/s         {}",
            shown(inputs.input_tokens_per_second, 3)
        );
        if let Some(k) = inputs.kv_cache_ratio {
            let _ = writeln!(out, "  K     KV-cache usage         {k:.4}");
        }
        for replica in &inputs.per_replica {
            let kv = replica
                .kv_cache_ratio
                .map_or(String::new(), |k| format!(", KV {k:.4}"));
            let _ = writeln!(
                out,
                "        {}: queue {}{kv}",
                replica.replica, replica.queue_depth
            );
        }
    }
}

/// Each term with its formula; the winner is starred.
fn render_terms(out: &mut String, e: &Explanation) {
    if !e.terms.is_empty() {
        let _ = writeln!(out, "\nterms");
        for term in &e.terms {
            let mark = if term.name == e.winning_term {
                "*"
            } else {
                " "
            };
            let _ = writeln!(
                out,
                "{mark} {:<16} {:>9.3}   {}",
                term.name, term.replicas, term.formula
            );
        }
    }
}

/// Each SLO's burn over both windows, and its fixable share.
fn render_slos(out: &mut String, e: &Explanation) {
    if !e.slos.is_empty() {
        let _ = writeln!(out, "\nslos (burn rate over the short and long window)");
        for slo in &e.slos {
            let burn = |b: Option<f64>| b.map_or("no requests".to_owned(), |b| format!("{b:.2}"));
            let _ = writeln!(
                out,
                "  {:<14} {}  short {}  long {}{}",
                slo.name,
                slo.signal,
                burn(slo.short_burn_rate),
                burn(slo.long_burn_rate),
                if slo.burning { "  BURNING" } else { "" }
            );
            // With a split: how much of the miss replicas can remove, which the term acts on.
            if let (Some(short), Some(long)) = (slo.short_unfixable_ratio, slo.long_unfixable_ratio)
            {
                let why = if slo.signal == "tpot" {
                    "prompt over the floor context"
                } else {
                    "prefill alone over the threshold"
                };
                let _ = writeln!(
                    out,
                    "  {:<14}       unfixable ({why}) {:.2} % / {:.2} %; fixable burn short {}  long {}",
                    "",
                    short * 100.0,
                    long * 100.0,
                    burn(slo.short_fixable_burn_rate),
                    burn(slo.long_fixable_burn_rate),
                );
            }
        }
    }
}

/// The schedule window and the forecast.
fn render_anticipation(out: &mut String, e: &Explanation) {
    if let Some(w) = &e.schedule {
        let _ = writeln!(
            out,
            "\nschedule   \"{}\" wants {} replicas",
            w.cron, w.min_replicas
        );
    }
    if let Some(f) = &e.forecast {
        let _ = writeln!(
            out,
            "\nforecast   {:.3} tokens/s over the lead (past peak {:.3}, past level {:.3}, level ratio {:.3}, seasonal change {:.3}, {} periods)",
            f.tokens_per_second,
            f.past_peak,
            f.past_level,
            f.level_ratio,
            f.seasonal_change,
            f.periods
        );
        let _ = match (f.long_window_tokens_per_second, f.long_level_ratio) {
            (Some(rate), Some(ratio)) => writeln!(
                out,
                "           mean of the level window's {:.3} and the long window's {:.3} (long level ratio {:.3})",
                f.level_window_tokens_per_second, rate, ratio
            ),
            _ => writeln!(
                out,
                "           from the level window alone (no long levels)"
            ),
        };
        if let Some(w) = f.seasonal_weight {
            let _ = writeln!(
                out,
                "           weighted {w:.3} against today's level, by how each did in the past periods"
            );
        }
        if let Some(c) = &f.candidates {
            let _ = writeln!(
                out,
                "           candidates scored on the last {} level windows (rate, recent error, weight):",
                c.points
            );
            for (name, one) in [
                ("seasonal", &c.seasonal),
                ("last-value", &c.last_value),
                ("seasonal-naive", &c.seasonal_naive),
                ("scaled-peaks", &c.scaled_peaks),
            ] {
                if let Some(one) = one {
                    let _ = writeln!(
                        out,
                        "             {name:<15} {:.3}  {:.1} %  {:.3}",
                        one.tokens_per_second,
                        one.recent_error * 100.0,
                        one.weight
                    );
                }
            }
        }
    }
}

/// Each query as it ran.
fn render_queries(out: &mut String, e: &Explanation) {
    let _ = writeln!(
        out,
        "\nqueries (evaluated {:.3} s, {:.1} s ago)",
        e.evaluation_seconds, e.age_seconds
    );
    for q in &e.queries {
        let status = if q.error.is_empty() {
            format!("{} series", q.series)
        } else {
            format!("ERROR {}", q.error)
        };
        let _ = writeln!(
            out,
            "  {:<13} {:.3} s  {status}\n    {}",
            q.signal, q.duration_seconds, q.promql
        );
    }
}

/// One query of the evaluation, as Explain shows it.
fn query(q: &QueryRecord) -> Query {
    Query {
        signal: q.signal.as_str().to_owned(),
        promql: q.promql.clone(),
        duration_seconds: q.duration.as_secs_f64(),
        series: u32::try_from(q.series).unwrap_or(u32::MAX),
        error: q.error.clone().unwrap_or_default(),
    }
}

/// Each replica's queue and KV-cache usage, by the replicas that report a queue.
fn per_replica(signals: &Signals) -> Vec<ReplicaInputs> {
    let kv: std::collections::HashMap<&str, f64> = signals
        .kv_by_replica
        .iter()
        .flatten()
        .map(|r| (r.replica.as_str(), r.value))
        .collect();
    signals
        .queue_by_replica
        .iter()
        .flatten()
        .map(|r| ReplicaInputs {
            replica: r.replica.clone(),
            queue_depth: r.value,
            kv_cache_ratio: kv.get(r.replica.as_str()).copied(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_forecast(forecast: Forecast) -> String {
        render_explanation(&Explanation {
            forecast: Some(forecast),
            ..Explanation::default()
        })
    }

    #[test]
    fn the_forecast_shows_both_views_or_says_there_was_one() {
        let both = Forecast {
            tokens_per_second: 230.0,
            past_peak: 200.0,
            past_level: 100.0,
            level_ratio: 1.3,
            seasonal_change: 2.0,
            agreement: 1.0,
            periods: 3,
            level_window_tokens_per_second: 260.0,
            long_window_tokens_per_second: Some(200.0),
            long_level_ratio: Some(1.0),
            seasonal_weight: Some(0.8),
            candidates: None,
        };
        let text = with_forecast(both);
        assert!(
            text.contains("weighted 0.800 against today's level"),
            "{text}"
        );
        assert!(text.contains("forecast   230.000 tokens/s"), "{text}");
        assert!(
            text.contains("mean of the level window's 260.000 and the long window's 200.000 (long level ratio 1.000)"),
            "{text}"
        );
        assert!(!text.contains("candidates"), "{text}");
        let short_only = Forecast {
            long_window_tokens_per_second: None,
            long_level_ratio: None,
            seasonal_weight: None,
            ..both
        };
        let text = with_forecast(short_only);
        assert!(text.contains("from the level window alone"), "{text}");
        assert!(!text.contains("weighted"), "{text}");
        let one = |rate, error, weight| {
            Some(ForecastCandidate {
                tokens_per_second: rate,
                recent_error: error,
                weight,
            })
        };
        let scored = Forecast {
            candidates: Some(ForecastCandidates {
                seasonal: one(240.0, 0.05, 0.7),
                last_value: one(200.0, 0.1, 0.2),
                seasonal_naive: one(300.0, 0.2, 0.1),
                scaled_peaks: one(260.0, 0.08, 0.0),
                points: 12,
            }),
            ..both
        };
        let text = with_forecast(scored);
        assert!(
            text.contains("candidates scored on the last 12 level windows"),
            "{text}"
        );
        assert!(
            text.contains("last-value      200.000  10.0 %  0.200"),
            "{text}"
        );
        assert!(
            text.contains("scaled-peaks    260.000  8.0 %  0.000"),
            "{text}"
        );
    }
}
