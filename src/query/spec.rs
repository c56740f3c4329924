//! One description of each query: what it reads (series with their old and new
//! spellings, window, offsets, threshold), how the answer is aggregated and which labels
//! it keeps. [`QuerySpec::promql`] renders it for Prometheus; the simulated Prometheus
//! evaluates the same description, so the two cannot drift apart.

use std::{fmt::Write, time::Duration};

use super::signal::{LEVEL_LABEL, LONG_LEVEL, PERIOD_LABEL, Signal};
use crate::{config::ConfigDuration, engine::Series};

/// One query of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuerySpec {
    /// What the answer means to the demand model.
    pub signal: Signal,
    /// What is read, and over which stretch of time.
    pub read: Read,
    /// The profile's selector (and the namespace scope), each `name="value"` with the
    /// value quoted, sorted: added to every series the query reads.
    pub matchers: Vec<String>,
    /// The label that tells replicas apart.
    pub replica_label: String,
    /// When set, the answer keeps this label: one series per model of a shared plan.
    pub model_label: Option<String>,
}

/// How one replica's gauges are combined when it exports several series of one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Aggregation {
    /// Added up (waiting requests).
    Sum,
    /// Averaged (usage ratios).
    Avg,
}

impl Aggregation {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a query reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Read {
    /// Each replica's gauge now. Alternatives (newest name first) are joined with `or`
    /// per replica, so a replica exporting both spellings counts once.
    Gauge {
        /// The gauge's names, newest first.
        series: &'static [Series],
        /// How one replica's several series of a name combine.
        aggregation: Aggregation,
    },
    /// Each replica's `used / total` (TGI's batch tokens).
    Quotient {
        /// The tokens in use.
        used: Series,
        /// The tokens the replica can hold.
        total: Series,
    },
    /// The fleet's `rate()` of a counter over `window`.
    Rate {
        /// The counter's names, newest first.
        series: &'static [Series],
        /// The rate's range.
        window: Duration,
    },
    /// The fleet's histogram bucket rates over `window`, one series per `le`; `millis`:
    /// the engine's buckets are in milliseconds.
    Buckets {
        /// The histogram's base names (without `_bucket`), newest first.
        series: &'static [Series],
        /// The rate's range.
        window: Duration,
        /// The buckets are in milliseconds.
        millis: bool,
    },
    /// The fleet's mean per finished request of a histogram (tokens per request):
    /// `rate(_sum) / (rate(_count) > 0)` over `window`, no series while none finished.
    MeanPerRequest {
        /// The histogram's base name.
        histogram: Series,
        /// The rates' range.
        window: Duration,
    },
    /// The share of `window` in which the slowest replica's gauge exceeded `threshold`.
    ShareAbove {
        /// The latency gauge, in seconds.
        gauge: Series,
        /// The SLO's threshold.
        threshold: Duration,
        /// The stretch of time the share is over.
        window: Duration,
    },
    /// Another query's value in each of the past `periods`: its peak over the `lead`
    /// that follows the same time one to `periods` periods ago.
    HistoryPeaks {
        /// The query whose past is read (the pool's token rate).
        of: Box<QuerySpec>,
        /// The season: a day or a week.
        period: Duration,
        /// How many past periods.
        periods: u32,
        /// How far ahead of the same time the peak is looked for.
        lead: Duration,
    },
    /// Another query's level (mean) over `window` and over `long_window`, now and at the
    /// same time in each of the past `periods`.
    HistoryLevels {
        /// The query whose past is read (the pool's token rate).
        of: Box<QuerySpec>,
        /// The season: a day or a week.
        period: Duration,
        /// How many past periods.
        periods: u32,
        /// The level window.
        window: Duration,
        /// The long level window.
        long_window: Duration,
    },
    /// Another query's level (mean) over `window` at the end of each of the last `steps`
    /// windows, now and at the same time in each of the past `periods`: one range vector
    /// with a series per period (tagged as the other history queries are). The forecast
    /// scores its candidates on it.
    HistoryRecent {
        /// The query whose past is read (the pool's token rate).
        of: Box<QuerySpec>,
        /// The season: a day or a week.
        period: Duration,
        /// How many past periods.
        periods: u32,
        /// The level window, which is also the step between samples.
        window: Duration,
        /// Samples per period.
        steps: u32,
        /// Level windows per lead, rounded up: how the samples are scored.
        lead_steps: u32,
    },
    /// Engine `custom`: the config's expression with `$selector` and `$rate_window`
    /// filled in, aggregated as `shape` says.
    Custom {
        /// The expression as the config wrote it, filled in.
        expression: String,
        /// How it is aggregated.
        shape: CustomShape,
    },
}

/// How a `custom` query's expression is aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomShape {
    /// One series per replica.
    PerReplica(Aggregation),
    /// One series for the fleet.
    Fleet,
    /// `_bucket` series: their rate over `window`, summed by `le`.
    Buckets {
        /// The rate's range.
        window: Duration,
    },
}

impl QuerySpec {
    /// The PromQL Prometheus is asked.
    pub fn promql(&self) -> String {
        let m = &self.matchers;
        let label = self.replica_label.as_str();
        let by = match &self.model_label {
            Some(model) => format!("{model}, {label}"),
            None => label.to_owned(),
        };
        match &self.read {
            Read::Gauge {
                series,
                aggregation,
            } => per_replica(aggregation.as_str(), &by, series, m, |s| s),
            Read::Quotient { used, total } => format!(
                "sum by ({by}) ({}) / sum by ({by}) ({})",
                selector(used.name, used.matchers, m),
                selector(total.name, total.matchers, m)
            ),
            Read::Rate { series, window } => {
                let window = ConfigDuration(*window);
                let rate = |s: String| format!("rate({s}[{window}])");
                match series {
                    [only] => self.fleet(rate(selector(only.name, only.matchers, m))),
                    _ => self.fleet(per_replica("sum", &by, series, m, rate)),
                }
            }
            Read::Buckets { series, window, .. } => self.buckets(series, *window, &by),
            Read::MeanPerRequest { histogram, window } => {
                let part = |suffix: &str| {
                    let name = format!("{}_{suffix}", histogram.name);
                    let series = selector(&name, histogram.matchers, m);
                    self.fleet(format!("rate({series}[{}])", ConfigDuration(*window)))
                };
                format!("{} / ({} > 0)", part("sum"), part("count"))
            }
            Read::ShareAbove {
                gauge,
                threshold,
                window,
            } => {
                let slow = format!(
                    "max by ({by}) ({}) > bool {}",
                    selector(gauge.name, gauge.matchers, m),
                    threshold.as_secs_f64()
                );
                let share = format!(
                    "avg_over_time(({slow})[{}:{}])",
                    ConfigDuration(*window),
                    subquery_step(*window)
                );
                match &self.model_label {
                    Some(model) => format!("avg by ({model}) ({share})"),
                    None => format!("avg({share})"),
                }
            }
            Read::HistoryPeaks {
                of,
                period,
                periods,
                lead,
            } => history_peaks(&of.promql(), *period, *periods, *lead),
            Read::HistoryLevels {
                of,
                period,
                periods,
                window,
                long_window,
            } => history_levels(&of.promql(), *period, *periods, *window, *long_window),
            Read::HistoryRecent {
                of,
                period,
                periods,
                window,
                steps,
                ..
            } => history_recent(&of.promql(), *period, *periods, *window, *steps),
            Read::Custom { expression, shape } => match shape {
                CustomShape::PerReplica(aggregation) => {
                    format!("{} by ({label}) ({expression})", aggregation.as_str())
                }
                CustomShape::Fleet => format!("sum({expression})"),
                CustomShape::Buckets { window } => format!(
                    "sum by (le) (rate({expression}[{}]))",
                    ConfigDuration(*window)
                ),
            },
        }
    }

    /// The longest stretch of past samples the query reads, offsets included.
    pub fn reach(&self) -> Duration {
        if let Some((of, span)) = self.history() {
            return span + of.reach();
        }
        match &self.read {
            Read::Rate { window, .. }
            | Read::Buckets { window, .. }
            | Read::MeanPerRequest { window, .. }
            | Read::ShareAbove { window, .. } => *window,
            _ => Duration::ZERO,
        }
    }

    /// For a history query: the query whose past it reads, and how far back (at most)
    /// it reads that query's values.
    pub fn history(&self) -> Option<(&QuerySpec, Duration)> {
        match &self.read {
            Read::HistoryPeaks {
                of,
                period,
                periods,
                lead,
            } => Some((of, *period * *periods + *lead)),
            Read::HistoryLevels {
                of,
                period,
                periods,
                window,
                long_window,
            } => Some((of, *period * *periods + (*window).max(*long_window))),
            Read::HistoryRecent {
                of,
                period,
                periods,
                window,
                steps,
                ..
            } => Some((of, *period * *periods + *window * (*steps + 1))),
            _ => None,
        }
    }

    /// The whole fleet's sum, per model when the plan is shared.
    fn fleet(&self, inner: String) -> String {
        match &self.model_label {
            Some(model) => format!("sum by ({model}) ({inner})"),
            None => format!("sum({inner})"),
        }
    }

    /// The bucket rates of a histogram over `window`, summed over its alternative names.
    fn buckets(&self, series: &[Series], window: Duration, by: &str) -> String {
        let by_le = match &self.model_label {
            Some(model) => format!("{model}, le"),
            None => "le".to_owned(),
        };
        let window = ConfigDuration(window);
        let rate = |s: &Series| {
            let bucket = format!("{}_bucket", s.name);
            let selected = selector(&bucket, s.matchers, &self.matchers);
            format!("rate({selected}[{window}])")
        };
        match series {
            [only] => format!("sum by ({by_le}) ({})", rate(only)),
            _ => format!(
                "sum by ({by_le}) ({})",
                series
                    .iter()
                    .map(|s| format!("sum by ({by}, le) ({})", rate(s)))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    }
}

/// Quotes a value as a PromQL string literal. Everything that could end the string or
/// start an escape is escaped, so the value is always one literal.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str(r"\n"),
            '\r' => quoted.push_str(r"\r"),
            '\t' => quoted.push_str(r"\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `name{fixed,matchers}`, or the bare name when there are none.
fn selector(name: &str, fixed: &str, matchers: &[String]) -> String {
    let mut all: Vec<&str> = Vec::with_capacity(matchers.len() + 1);
    if !fixed.is_empty() {
        all.push(fixed);
    }
    all.extend(matchers.iter().map(String::as_str));
    if all.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", all.join(","))
    }
}

/// `agg by (label) (A) or agg by (label) (B)`: a replica exporting both names counts once.
fn per_replica(
    agg: &str,
    by: &str,
    alternatives: &[Series],
    matchers: &[String],
    wrap: impl Fn(String) -> String,
) -> String {
    alternatives
        .iter()
        .map(|s| {
            let selected = selector(s.name, s.matchers, matchers);
            format!("{agg} by ({by}) ({})", wrap(selected))
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A subquery resolution: fine enough to see the range, at most a few hundred steps.
pub fn subquery_step(range: Duration) -> ConfigDuration {
    let seconds = (range.as_secs() / 300).max(15);
    ConfigDuration(Duration::from_secs(seconds))
}

/// Tags each period's answer with its number, so one query returns them all.
fn tagged(k: u32, query: String) -> String {
    format!(r#"label_replace({query}, "{PERIOD_LABEL}", "{k}", "", "")"#)
}

fn history_peaks(rate: &str, period: Duration, periods: u32, lead: Duration) -> String {
    (1..=periods)
        .map(|k| {
            let back = period * k;
            let query = if lead.is_zero() {
                format!("({rate}) offset {}", ConfigDuration(back))
            } else {
                format!(
                    "max_over_time(({rate})[{}:{}] offset {})",
                    ConfigDuration(lead),
                    subquery_step(lead),
                    ConfigDuration(back - lead)
                )
            };
            tagged(k, query)
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn history_levels(
    rate: &str,
    period: Duration,
    periods: u32,
    window: Duration,
    long_window: Duration,
) -> String {
    let level = |k: u32, window: Duration| {
        let offset = if k == 0 {
            String::new()
        } else {
            format!(" offset {}", ConfigDuration(period * k))
        };
        let range = format!("{}:{}", ConfigDuration(window), subquery_step(window));
        tagged(k, format!("avg_over_time(({rate})[{range}]{offset})"))
    };
    (0..=periods)
        .map(|k| level(k, window))
        .chain((0..=periods).map(|k| {
            let long = level(k, long_window);
            format!(r#"label_replace({long}, "{LEVEL_LABEL}", "{LONG_LEVEL}", "", "")"#)
        }))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The level over `window` at each of the last `steps` windows, now and at the same time
/// in each past period: the branches are instant vectors tagged by period, and one
/// subquery samples them all every `window`.
fn history_recent(
    rate: &str,
    period: Duration,
    periods: u32,
    window: Duration,
    steps: u32,
) -> String {
    let range = format!("{}:{}", ConfigDuration(window), subquery_step(window));
    let branches = (0..=periods)
        .map(|k| {
            let offset = if k == 0 {
                String::new()
            } else {
                format!(" offset {}", ConfigDuration(period * k))
            };
            tagged(k, format!("avg_over_time(({rate})[{range}]{offset})"))
        })
        .collect::<Vec<_>>()
        .join(" or ");
    format!(
        "({branches})[{}:{}]",
        ConfigDuration(window * steps),
        ConfigDuration(window)
    )
}
