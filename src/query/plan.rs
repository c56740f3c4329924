//! The queries of a resolved trigger: which series carry each signal for its engine,
//! and how the profile's selector and the trigger's `model` and namespace enter them,
//! quoted so that no value can widen or break a query.

use std::time::Duration;

use super::{
    signal::{LatencyKind, MIX_WINDOW, Signal},
    spec::{Aggregation, CustomShape, QuerySpec, Read, quote},
};
use crate::{
    config::{CustomQueries, LatencySignal, Profile, SloConfig, metadata::Target},
    demand::forecast::long_level_window,
    engine::{KvSeries, Latency, Preset, preset},
};

/// The queries one evaluation runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryPlan {
    /// The label that tells replicas apart in the per-replica answers.
    pub replica_label: String,
    /// When set, the queries cover every model of the profile, grouped by this label, and
    /// each trigger reads its own model's series from the shared answers: a thousand
    /// ScaledObjects that differ only by `model` cost Prometheus one round of queries.
    pub model_label: Option<String>,
    /// Each query's description: waiting requests (one series per replica), output and
    /// input tokens per second (one series, or none for a fleet at zero), KV-cache usage
    /// (one series per replica; not for prefill pools), each SLO's latency over its two
    /// windows, the fleet's request mix and the forecast's history.
    pub specs: Vec<QuerySpec>,
    /// The same queries rendered to PromQL, each with its signal, in the same order.
    pub queries: Vec<(Signal, String)>,
    /// How each SLO's latency is exported, in the target's SLO order.
    pub latency_kinds: Vec<LatencyKind>,
}

impl QueryPlan {
    fn new(
        replica_label: &str,
        model_label: Option<&str>,
        specs: Vec<QuerySpec>,
        latency_kinds: Vec<LatencyKind>,
    ) -> Self {
        let queries = specs.iter().map(|s| (s.signal, s.promql())).collect();
        Self {
            replica_label: replica_label.to_owned(),
            model_label: model_label.map(str::to_owned),
            specs,
            queries,
            latency_kinds,
        }
    }

    /// The recent levels' window and level windows per lead, where the plan reads them.
    pub fn recent_shape(&self) -> Option<(Duration, u32)> {
        self.specs.iter().find_map(|spec| match spec.read {
            Read::HistoryRecent {
                window, lead_steps, ..
            } => Some((window, lead_steps)),
            _ => None,
        })
    }

    /// The PromQL of one signal, if the plan asks for it.
    pub fn query(&self, signal: Signal) -> Option<&str> {
        self.queries
            .iter()
            .find(|(s, _)| *s == signal)
            .map(|(_, q)| q.as_str())
    }

    /// The description of one signal's query, if the plan asks for it.
    pub fn spec(&self, signal: Signal) -> Option<&QuerySpec> {
        self.specs.iter().find(|s| s.signal == signal)
    }
}

/// A plan and the model whose series a trigger reads from its answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The queries.
    pub plan: QueryPlan,
    /// The value of `plan.model_label` this trigger reads; `None` when the plan is its own.
    pub model: Option<String>,
}

/// The profile's matchers, as `a="x"`. A trigger's `model` is applied by grouping
/// (see [`QueryPlan::model_label`]), so the profile's own model matcher is dropped.
fn matchers(profile: &Profile, target: &Target, model_label: Option<&str>) -> Vec<String> {
    let mut pairs: Vec<(String, &str)> = profile
        .selector
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_str()))
        .collect();
    if let (Some(_), Some(label)) = (target.model.as_deref(), model_label) {
        pairs.retain(|(name, _)| name != label);
    }
    if let Some(namespace) = target.namespace_scope.as_deref() {
        pairs.retain(|(name, _)| name != "namespace");
        pairs.push(("namespace".to_owned(), namespace));
    }
    pairs.sort();
    pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={}", quote(value)))
        .collect()
}

/// The token rate a pool is sized on.
fn tokens_signal(target: &Target) -> Signal {
    if target.pool.reads_input_tokens() {
        Signal::InputTokens
    } else {
        Signal::OutputTokens
    }
}

/// The SLO's index as the signals carry it.
fn slo_index(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// The queries for a resolved trigger.
pub fn plan(profile: &Profile, target: &Target) -> Planned {
    match preset(profile.engine) {
        Some(preset) => preset_plan(&preset, profile, target, false),
        None => custom_plan(profile, target),
    }
}

/// The queries `calibrate` reads a fleet's past with: the trigger's own, without the
/// forecast's, and with the mean request lengths and the output-length histogram
/// whether or not the profile has a `capacity.profile` yet. Refused for an engine
/// without request-length histograms.
pub fn calibration_plan(profile: &Profile, target: &Target) -> Result<QueryPlan, String> {
    let preset = preset(profile.engine)
        .filter(|p| p.request_lengths.is_some())
        .ok_or_else(|| crate::engine::Unsupported::RequestLengths(profile.engine).to_string())?;
    let target = Target {
        predictive: None,
        ..target.clone()
    };
    Ok(preset_plan(&preset, profile, &target, true).plan)
}

/// The queries for a resolved trigger on a preset engine; `read_mix`: the mean request
/// lengths even without a `capacity.profile`.
fn preset_plan(preset: &Preset, profile: &Profile, target: &Target, read_mix: bool) -> Planned {
    let model_label = target.model.as_ref().and(preset.model_label);
    let matchers = matchers(profile, target, preset.model_label);
    let spec = |signal: Signal, read: Read| QuerySpec {
        signal,
        read,
        matchers: matchers.clone(),
        replica_label: profile.replica_label.as_str().to_owned(),
        model_label: model_label.map(str::to_owned),
    };
    let window = profile.rate_window.value.0;
    let mut specs = vec![
        spec(
            Signal::Queue,
            Read::Gauge {
                series: preset.queue,
                aggregation: Aggregation::Sum,
            },
        ),
        spec(
            Signal::OutputTokens,
            Read::Rate {
                series: preset.output_tokens,
                window,
            },
        ),
        spec(
            Signal::InputTokens,
            Read::Rate {
                series: preset.input_tokens,
                window,
            },
        ),
    ];
    if target.pool.uses_kv_cache() {
        let read = match preset.kv_cache {
            KvSeries::Ratio(series) => Read::Gauge {
                series,
                aggregation: Aggregation::Avg,
            },
            KvSeries::Quotient { used, total } => Read::Quotient { used, total },
        };
        specs.push(spec(Signal::KvCache, read));
    }
    if let (true, Some((prompt, generation))) = (
        read_mix || target.capacity_profile.is_some(),
        preset.request_lengths,
    ) {
        for (signal, histogram) in [
            (Signal::MeanInputTokens, prompt),
            (Signal::MeanOutputTokens, generation),
        ] {
            let window = MIX_WINDOW;
            specs.push(spec(signal, Read::MeanPerRequest { histogram, window }));
        }
    }
    let reads_share = target
        .capacity_profile
        .as_ref()
        .is_some_and(|p| p.reads_short_share());
    if (read_mix || reads_share) && !preset.output_lengths.is_empty() {
        let read = Read::Buckets {
            series: preset.output_lengths,
            window: MIX_WINDOW,
            millis: false,
        };
        specs.push(spec(Signal::OutputLengths, read));
    }
    let mut latency_kinds = Vec::new();
    for (i, slo) in target.slos.iter().enumerate() {
        let (reads, kind) = slo_reads(preset, slo, slo_index(i));
        specs.extend(reads.into_iter().map(|(signal, read)| spec(signal, read)));
        latency_kinds.push(kind);
    }
    add_history(&mut specs, target);
    let plan = QueryPlan::new(
        profile.replica_label.as_str(),
        model_label,
        specs,
        latency_kinds,
    );
    Planned {
        plan,
        model: model_label.and(target.model.clone()),
    }
}

/// The histogram that splits an SLO's misses into those replicas fix and those they
/// don't, over both windows: prefill times for a TTFT histogram, prompt lengths for a
/// TPOT histogram with `floor_context_tokens`; none where the engine exports neither.
fn split_reads(preset: &Preset, slo: &SloConfig, index: u16) -> Vec<(Signal, Read)> {
    if !matches!(preset.latency(slo.signal), Latency::Histogram { .. }) {
        return Vec::new();
    }
    let (short, long) = (slo.short_window().0, slo.long_window().0);
    let (series, signals) = match slo.signal {
        LatencySignal::Ttft => (
            preset.prefill_time,
            [
                Signal::SloPrefillShort { slo: index },
                Signal::SloPrefillLong { slo: index },
            ],
        ),
        LatencySignal::Tpot if slo.floor_context_tokens.is_some() => (
            preset.prompt_lengths,
            [
                Signal::SloContextShort { slo: index },
                Signal::SloContextLong { slo: index },
            ],
        ),
        LatencySignal::Tpot => return Vec::new(),
    };
    if series.is_empty() {
        return Vec::new();
    }
    let read = |window| Read::Buckets {
        series,
        window,
        millis: false,
    };
    vec![(signals[0], read(short)), (signals[1], read(long))]
}

/// One SLO's reads on a preset engine: its latency over both windows, and the histogram
/// that splits its misses (prefill times for a TTFT histogram, prompt lengths for a TPOT
/// histogram with `floor_context_tokens`); and how the latency is exported.
fn slo_reads(preset: &Preset, slo: &SloConfig, index: u16) -> (Vec<(Signal, Read)>, LatencyKind) {
    let latency = preset.latency(slo.signal);
    let (short, long) = (slo.short_window().0, slo.long_window().0);
    let mut reads = split_reads(preset, slo, index);
    let windows = [
        (Signal::SloShort { slo: index }, short),
        (Signal::SloLong { slo: index }, long),
    ];
    let kind = match latency {
        Latency::None(_) => LatencyKind::Gauge,
        Latency::Gauge(gauge) => {
            let threshold = slo.threshold.value.0;
            reads.extend(windows.map(|(signal, window)| {
                let read = Read::ShareAbove {
                    gauge,
                    threshold,
                    window,
                };
                (signal, read)
            }));
            LatencyKind::Gauge
        }
        Latency::Histogram {
            alternatives,
            millis,
        } => {
            reads.extend(windows.map(|(signal, window)| {
                let read = Read::Buckets {
                    series: alternatives,
                    window,
                    millis,
                };
                (signal, read)
            }));
            LatencyKind::Histogram {
                le_scale_millis: millis,
            }
        }
    };
    (reads, kind)
}

/// The forecast's two queries, over the same token-rate query the throughput term reads:
/// each past period's peak over the lead, and the level now and at the same time in each
/// past period.
fn add_history(specs: &mut Vec<QuerySpec>, target: &Target) {
    let Some(predictive) = &target.predictive else {
        return;
    };
    let Some(history) = &predictive.history else {
        return;
    };
    let tokens = tokens_signal(target);
    let Some(rate) = specs.iter().find(|s| s.signal == tokens).cloned() else {
        return;
    };
    let [peaks, levels, recent] = history_specs(
        rate,
        history.period.value.0,
        history.periods.value,
        predictive.lead.value.0,
        history.level_window.value.0,
    );
    specs.push(peaks);
    specs.push(levels);
    specs.push(recent);
}

/// The forecast's three queries over the token-rate query `rate`: each of the past
/// `periods` periods' peak over `lead`; the level over `level_window` (and the long
/// window) now and at the same time in each past period; and the level at each of the
/// last few level windows, now and then, on which the candidates are scored.
/// `forecast-eval` evaluates these same specs over a rate file.
pub fn history_specs(
    rate: QuerySpec,
    period: Duration,
    periods: u32,
    lead: Duration,
    level_window: Duration,
) -> [QuerySpec; 3] {
    let of = Box::new(rate);
    let with = |signal, read| QuerySpec {
        signal,
        read,
        ..(*of).clone()
    };
    let peaks = Read::HistoryPeaks {
        of: of.clone(),
        period,
        periods,
        lead,
    };
    let levels = Read::HistoryLevels {
        of: of.clone(),
        period,
        periods,
        window: level_window,
        long_window: long_level_window(level_window),
    };
    let lead_steps = lead_steps(lead, level_window);
    let recent = Read::HistoryRecent {
        of: of.clone(),
        period,
        periods,
        window: level_window,
        steps: crate::demand::forecast::recent_steps(lead_steps as usize) as u32,
        lead_steps,
    };
    [
        with(Signal::HistoryPeak, peaks),
        with(Signal::HistoryLevel, levels),
        with(Signal::HistoryRecent, recent),
    ]
}

/// The plan of engine `custom`: the config's expressions, aggregated as for the presets.
fn custom_plan(profile: &Profile, target: &Target) -> Planned {
    // Validation refuses a custom profile without queries; an empty plan (every signal
    // missing, so UNAVAILABLE) is the safe answer should one get here.
    let Some(queries) = profile.queries.as_ref().map(|q| &q.value) else {
        let label = profile.replica_label.as_str();
        let plan = QueryPlan::new(label, None, Vec::new(), Vec::new());
        return Planned { plan, model: None };
    };
    let matchers = matchers(profile, target, None);
    let joined = matchers.join(",");
    let window = profile.rate_window.value.0;
    let fill = |q: &str, window: Duration| {
        let window = crate::config::ConfigDuration(window).to_string();
        q.replace("$selector", &joined)
            .replace("$rate_window", &window)
    };
    let spec = |signal, expression, shape| QuerySpec {
        signal,
        read: Read::Custom { expression, shape },
        matchers: matchers.clone(),
        replica_label: profile.replica_label.as_str().to_owned(),
        model_label: None,
    };
    let mut specs = vec![
        spec(
            Signal::Queue,
            fill(&queries.queue_depth, window),
            CustomShape::PerReplica(Aggregation::Sum),
        ),
        spec(
            Signal::OutputTokens,
            fill(&queries.output_tokens_per_second, window),
            CustomShape::Fleet,
        ),
        spec(
            Signal::InputTokens,
            fill(&queries.input_tokens_per_second, window),
            CustomShape::Fleet,
        ),
    ];
    if target.pool.uses_kv_cache() {
        specs.push(spec(
            Signal::KvCache,
            fill(&queries.kv_cache_usage, window),
            CustomShape::PerReplica(Aggregation::Avg),
        ));
    }
    let mut latency_kinds = Vec::new();
    for (i, slo) in target.slos.iter().enumerate() {
        let index = slo_index(i);
        for (signal, buckets, window) in custom_slo_reads(queries, slo, index) {
            specs.push(spec(
                signal,
                fill(buckets, window),
                CustomShape::Buckets { window },
            ));
        }
        latency_kinds.push(LatencyKind::Histogram {
            le_scale_millis: false,
        });
    }
    add_history(&mut specs, target);
    let plan = QueryPlan::new(profile.replica_label.as_str(), None, specs, latency_kinds);
    Planned { plan, model: None }
}

/// A custom SLO's bucket queries over both windows (and the histogram splitting its
/// misses: prefill times for TTFT, prompt lengths for TPOT with `floor_context_tokens`).
fn custom_slo_reads<'q>(
    queries: &'q CustomQueries,
    slo: &SloConfig,
    index: u16,
) -> Vec<(Signal, &'q str, Duration)> {
    let (short, long) = (slo.short_window().0, slo.long_window().0);
    let buckets = match slo.signal {
        LatencySignal::Ttft => queries.ttft_buckets.as_deref(),
        LatencySignal::Tpot => queries.tpot_buckets.as_deref(),
    };
    let mut reads = Vec::new();
    if let Some(buckets) = buckets {
        reads.push((Signal::SloShort { slo: index }, buckets, short));
        reads.push((Signal::SloLong { slo: index }, buckets, long));
    }
    let split = match slo.signal {
        LatencySignal::Ttft => queries.prefill_time_buckets.as_deref().map(|q| {
            (
                q,
                Signal::SloPrefillShort { slo: index },
                Signal::SloPrefillLong { slo: index },
            )
        }),
        LatencySignal::Tpot => queries
            .prompt_tokens_buckets
            .as_deref()
            .filter(|_| slo.floor_context_tokens.is_some())
            .map(|q| {
                (
                    q,
                    Signal::SloContextShort { slo: index },
                    Signal::SloContextLong { slo: index },
                )
            }),
    };
    if let Some((query, short_signal, long_signal)) = split {
        reads.push((short_signal, query, short));
        reads.push((long_signal, query, long));
    }
    reads
}

/// Level windows per lead, rounded up (at least one).
pub fn lead_steps(lead: Duration, level_window: Duration) -> u32 {
    if level_window.is_zero() {
        return 1;
    }
    (lead.as_secs_f64() / level_window.as_secs_f64())
        .ceil()
        .max(1.0) as u32
}
