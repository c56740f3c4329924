//! The config of the two terms that look past the current load: latency objectives
//! (SLO burn rates) and prediction (cron schedules and a seasonal forecast).

use std::{fmt, str::FromStr, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{
    duration::ConfigDuration,
    values::{NonNegative, Positive, Problem, check_duration, unspanned},
};
use crate::engine::LatencySignal;

/// One latency objective of a profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Shown in Explain and used as a metric label.
    pub name: SloName,
    /// Which latency the objective is about.
    pub signal: LatencySignal,
    /// A request is good when its latency is at or below this.
    pub threshold: Spanned<ConfigDuration>,
    /// The fraction of requests that must be good.
    pub objective: Objective,
    /// The short and the long window; both must burn for the term to count.
    #[serde(default = "default_slo_windows")]
    pub windows: Spanned<Vec<ConfigDuration>>,
    /// Burn rates at or below this are not acted on.
    #[serde(default = "default_burn_threshold")]
    pub burn_threshold: Positive,
    /// Extra replicas per unit of short-window burn above 1, as a fraction of the
    /// load-based demand L.
    #[serde(default = "default_gain")]
    pub gain: NonNegative,
    /// The term never asks for more than L times this.
    #[serde(default = "default_max_boost")]
    pub max_boost: AtLeastOne,
    /// How long the trim (a boost the fleet served that lowered the burn without ending
    /// it) takes to fall halfway back to 1 once the SLO holds with room; 0s keeps no
    /// trim, and the term ends with the burn.
    #[serde(default = "default_trim_half_life")]
    pub trim_half_life: Spanned<ConfigDuration>,
    /// For a TPOT SLO: the prompt length, in tokens, from which one request alone on an
    /// idle replica already decodes slower than the threshold (the model's floor at that
    /// context). Requests with longer prompts miss on any fleet, so their share of the
    /// engine's prompt-length histogram counts as misses replicas cannot fix. Without
    /// it every TPOT miss counts as one replicas can fix (batch interference).
    #[serde(default)]
    pub floor_context_tokens: Option<Spanned<ContextTokens>>,
}

impl SloConfig {
    /// The window the burn must show now.
    pub fn short_window(&self) -> ConfigDuration {
        self.windows.value[0]
    }

    /// The window that confirms it is no blip.
    pub fn long_window(&self) -> ConfigDuration {
        self.windows.value[1]
    }
}

/// An SLO's name: a metric label value and part of Explain, so kept short and plain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct SloName(String);

impl SloName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SloName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "SLO name `{}` is not allowed: expected 1 to 63 letters, digits, '-', '_' or '.'",
                name.escape_debug()
            ))
        }
    }
}

impl fmt::Display for SloName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::values::checked_number!(
    /// An SLO objective.
    Objective, "a ratio greater than 0 and less than 1, such as 0.99", |v| v > 0.0 && v < 1.0
);
super::values::checked_number!(
    /// A prompt length in tokens, as long as any model's context.
    ContextTokens, "a whole number of tokens from 1 to 100000000, such as 120000",
    |v| (1.0..=1e8).contains(&v) && v.fract() == 0.0
);
super::values::checked_number!(
    /// A multiplier that never lowers a value.
    AtLeastOne, "a number at or above 1, such as 2", |v| v >= 1.0
);

fn default_slo_windows() -> Spanned<Vec<ConfigDuration>> {
    unspanned(vec![
        ConfigDuration(Duration::from_secs(300)),
        ConfigDuration(Duration::from_secs(3600)),
    ])
}
fn default_burn_threshold() -> Positive {
    Positive(1.0)
}
fn default_gain() -> NonNegative {
    NonNegative(0.25)
}
fn default_max_boost() -> AtLeastOne {
    AtLeastOne(2.0)
}
/// Long enough to hold a mix's correction through the sawtooth of burns that a shorter
/// one lets through, short enough to give it back within a few hours of the mix moving
/// (BENCHMARKS.md, "The trim: a boost that outlasts the burn").
pub const DEFAULT_TRIM_HALF_LIFE: Duration = Duration::from_secs(1800);
fn default_trim_half_life() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(DEFAULT_TRIM_HALF_LIFE))
}

/// Provisioning ahead of load: a model takes minutes to load, so replicas must be
/// asked for before the traffic that needs them arrives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictiveConfig {
    /// How far ahead to provision: the model's cold start plus scheduling.
    #[serde(default = "default_lead")]
    pub lead: Spanned<ConfigDuration>,
    /// Known events.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// A seasonal forecast of the token rate from Prometheus' history.
    #[serde(default)]
    pub history: Option<HistoryConfig>,
}

fn default_lead() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(300)))
}

/// A recurring window that needs at least `min_replicas`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// When each window starts: standard 5-field cron (minute hour day-of-month month day-of-week).
    pub cron: CronSpec,
    /// How long each window lasts.
    pub duration: Spanned<ConfigDuration>,
    /// The IANA time zone the cron expression is read in (daylight-saving aware).
    #[serde(default)]
    pub timezone: TimeZone,
    /// The replicas wanted during the window.
    pub min_replicas: NonNegative,
}

/// A parsed 5-field cron expression, shown back as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSpec {
    /// The expression as written.
    pub text: String,
    /// The parsed expression.
    pub cron: croner::Cron,
}

impl TryFrom<String> for CronSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build();
        let cron = parser.parse(&text).map_err(|e| {
            format!(
                "`{}` is not a cron expression: {e}; expected 5 fields (minute hour day-of-month month day-of-week) such as \"0 8 * * 1-5\"",
                text.escape_debug()
            )
        })?;
        Ok(Self { text, cron })
    }
}

/// An IANA time zone such as `Europe/Berlin`; UTC when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TimeZone(pub chrono_tz::Tz);

impl Default for TimeZone {
    fn default() -> Self {
        Self(chrono_tz::Tz::UTC)
    }
}

impl TryFrom<String> for TimeZone {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        chrono_tz::Tz::from_str(&name).map(Self).map_err(|_| {
            format!(
                "`{}` is not an IANA time zone: expected a name such as Europe/Berlin, America/New_York or UTC",
                name.escape_debug()
            )
        })
    }
}

/// The seasonal forecast's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// The season: `1d` or `1w`.
    #[serde(default = "default_period")]
    pub period: Spanned<ConfigDuration>,
    /// How many past periods are combined.
    #[serde(default = "default_periods")]
    pub periods: Spanned<u32>,
    /// The forecast is multiplied by this before it becomes replicas.
    #[serde(default = "default_headroom")]
    pub headroom: Positive,
    /// The stretch over which the current level is compared with the same stretch of
    /// past periods; the forecast also compares over three times this stretch.
    #[serde(default = "default_level_window")]
    pub level_window: Spanned<ConfigDuration>,
}

fn default_period() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(Duration::from_secs(86_400)))
}
fn default_periods() -> Spanned<u32> {
    unspanned(DEFAULT_PERIODS)
}
fn default_headroom() -> Positive {
    Positive(1.1)
}
fn default_level_window() -> Spanned<ConfigDuration> {
    unspanned(ConfigDuration(DEFAULT_LEVEL_WINDOW))
}

/// `predictive.history.periods` when not set.
pub const DEFAULT_PERIODS: u32 = 3;

/// `predictive.history.level_window` when not set.
pub const DEFAULT_LEVEL_WINDOW: Duration = Duration::from_secs(600);

/// The most past periods combined: eight weeks of history is already more than most
/// Prometheus servers keep.
pub const MAX_PERIODS: u32 = 8;

/// A duration PromQL can take as a range or offset: whole seconds.
fn check_whole_seconds(problems: &mut Vec<Problem>, key: &str, value: &Spanned<ConfigDuration>) {
    if value.value.0.subsec_millis() != 0 {
        problems.push(Problem {
            line: value.referenced.line(),
            key: key.to_owned(),
            message: format!("{} is not allowed: expected whole seconds", value.value),
        });
    }
}

/// Checks an SLO list across fields.
pub(super) fn check_slos(problems: &mut Vec<Problem>, profile: &str, slos: &[SloConfig]) {
    for (i, slo) in slos.iter().enumerate() {
        let key = |field: &str| format!("profiles.{profile}.slos[{i}].{field}");
        if slos[..i].iter().any(|other| other.name == slo.name) {
            problems.push(Problem {
                line: 0,
                key: key("name"),
                message: format!("`{}` is used twice: expected unique SLO names", slo.name),
            });
        }
        check_duration(
            problems,
            key("threshold"),
            &slo.threshold,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        );
        check_duration(
            problems,
            key("trim_half_life"),
            &slo.trim_half_life,
            Duration::ZERO,
            Duration::from_secs(86_400),
        );
        check_whole_seconds(problems, &key("trim_half_life"), &slo.trim_half_life);
        if let (LatencySignal::Ttft, Some(floor)) = (slo.signal, &slo.floor_context_tokens) {
            problems.push(Problem {
                line: floor.referenced.line(),
                key: key("floor_context_tokens"),
                message: format!(
                    "{} is set on a ttft SLO: expected it only on tpot SLOs (a TTFT SLO splits its misses by the engine's prefill times)",
                    floor.value.0
                ),
            });
        }
        let windows = &slo.windows;
        match windows.value.as_slice() {
            [short, long] => {
                for (name, window) in [("short", short), ("long", long)] {
                    if window.0 < Duration::from_secs(60)
                        || window.0 > Duration::from_secs(30 * 86_400)
                        || window.0.subsec_millis() != 0
                    {
                        problems.push(Problem {
                            line: windows.referenced.line(),
                            key: key("windows"),
                            message: format!(
                                "the {name} window {window} is not allowed: expected whole seconds from 1m to 30d"
                            ),
                        });
                    }
                }
                if short >= long {
                    problems.push(Problem {
                        line: windows.referenced.line(),
                        key: key("windows"),
                        message: format!(
                            "[{short}, {long}] is not allowed: expected the short window first, shorter than the long one, such as [5m, 1h]"
                        ),
                    });
                }
            }
            other => problems.push(Problem {
                line: windows.referenced.line(),
                key: key("windows"),
                message: format!(
                    "has {} entries: expected exactly two, the short and the long window, such as [5m, 1h]",
                    other.len()
                ),
            }),
        }
    }
}

/// Checks the predictive section across fields.
pub(super) fn check_predictive(
    problems: &mut Vec<Problem>,
    profile: &str,
    predictive: &PredictiveConfig,
) {
    let key = |field: &str| format!("profiles.{profile}.predictive.{field}");
    check_duration(
        problems,
        key("lead"),
        &predictive.lead,
        Duration::ZERO,
        Duration::from_secs(6 * 3600),
    );
    check_whole_seconds(problems, &key("lead"), &predictive.lead);
    for (i, schedule) in predictive.schedules.iter().enumerate() {
        check_duration(
            problems,
            key(&format!("schedules[{i}].duration")),
            &schedule.duration,
            Duration::from_secs(60),
            Duration::from_secs(7 * 86_400),
        );
    }
    if let Some(history) = &predictive.history {
        let period = history.period.value.0;
        if period != Duration::from_secs(86_400) && period != Duration::from_secs(7 * 86_400) {
            problems.push(Problem {
                line: history.period.referenced.line(),
                key: key("history.period"),
                message: format!("{} is not allowed: expected 1d or 1w", history.period.value),
            });
        }
        if !(1..=MAX_PERIODS).contains(&history.periods.value) {
            problems.push(Problem {
                line: history.periods.referenced.line(),
                key: key("history.periods"),
                message: format!(
                    "{} is out of range: expected from 1 to {MAX_PERIODS}",
                    history.periods.value
                ),
            });
        }
        check_duration(
            problems,
            key("history.level_window"),
            &history.level_window,
            Duration::from_secs(60),
            Duration::from_secs(6 * 3600),
        );
        check_whole_seconds(
            problems,
            &key("history.level_window"),
            &history.level_window,
        );
        if predictive.lead.value.0 >= period {
            problems.push(Problem {
                line: predictive.lead.referenced.line(),
                key: key("lead"),
                message: format!(
                    "{} is not allowed with history.period {}: expected a lead shorter than the period",
                    predictive.lead.value, history.period.value
                ),
            });
        }
    }
}
