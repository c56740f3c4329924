//! One trigger's signals, read from an observation, and the demand they give under the
//! operator's term-error policy.

use std::time::SystemTime;

use super::{
    answers::{
        by_replica, fleet_value, history_window, latency_window, length_window, mean, recent_levels,
    },
    api::Sample,
    error::{DemandError, ReadError},
    observation::{ByModel, Observation, summarize},
};
use crate::{
    config::{OnTermError, metadata::Target},
    demand::{
        self, Demand, ReplicaValue, Signals, SloWindows, forecast::HistoryWindow,
        slo::LatencyWindow,
    },
    query::{LatencyKind, Signal},
};

/// One trigger's signals, read from an observation: each a value or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Readings {
    /// Waiting requests per replica.
    pub queue: Result<Vec<ReplicaValue>, ReadError>,
    /// The fleet's output tokens per second.
    pub output_tokens: Result<f64, ReadError>,
    /// The fleet's input tokens per second.
    pub input_tokens: Result<f64, ReadError>,
    /// `None` when the plan did not ask.
    pub kv_cache: Option<Result<Vec<ReplicaValue>, ReadError>>,
    /// Per SLO of the plan: its short and long window.
    pub slos: Vec<Result<SloWindows, ReadError>>,
    /// `None` when the plan has no forecast.
    pub history: Option<Result<HistoryWindow, ReadError>>,
    /// The mean prompt and output tokens per finished request (`capacity.profile`);
    /// `None` when the plan did not ask, `Ok(None)` when no request finished.
    pub mean_lengths: Option<Result<Option<(f64, f64)>, ReadError>>,
    /// The output-length histogram over the mix window (`short_output_share`); `None`
    /// when the plan did not ask.
    pub output_lengths: Option<Result<LatencyWindow, ReadError>>,
    /// When the observation started, for schedules.
    pub observed_at: SystemTime,
    /// Every signal that could not be read, with its cause.
    errors: Vec<(Signal, ReadError)>,
}

impl Observation {
    /// The answered series by the value of the model label, built once.
    fn model_index(&self, label: &str) -> &ByModel {
        self.by_model.get_or_init(|| {
            let mut index = ByModel::new();
            for (signal, answer) in &self.answers {
                for sample in answer.iter().flatten() {
                    if let Some(model) = sample.labels.get(label) {
                        index
                            .entry(model.clone())
                            .or_default()
                            .entry(*signal)
                            .or_default()
                            .push(sample.clone());
                    }
                }
            }
            index
        })
    }

    /// The signals of one model (`None`: the plan is the trigger's own).
    pub fn readings(&self, model: Option<&str>) -> Readings {
        let mut own = Own {
            observation: self,
            model,
            errors: Vec::new(),
        };
        let missing = || Err(ReadError::NotPlanned);
        let label = self.replica_label.as_str();
        let queue = own
            .get(Signal::Queue)
            .unwrap_or_else(missing)
            .and_then(|s| by_replica(Signal::Queue, label, s));
        let output_tokens = own
            .get(Signal::OutputTokens)
            .unwrap_or_else(missing)
            .and_then(|s| fleet_value(Signal::OutputTokens, s));
        let input_tokens = own
            .get(Signal::InputTokens)
            .unwrap_or_else(missing)
            .and_then(|s| fleet_value(Signal::InputTokens, s));
        let kv_cache = own
            .get(Signal::KvCache)
            .map(|a| a.and_then(|s| by_replica(Signal::KvCache, label, s)));
        let slos = (0..self.latency_kinds.len())
            .map(|i| own.slo_windows(i))
            .collect();
        let history = own.history();
        let mean_lengths = own.mean_lengths();
        let output_lengths = own
            .get(Signal::OutputLengths)
            .map(|a| a.and_then(length_window));
        // Conversions can fail too (a series without its label): those count as errors.
        let mut readings = Readings {
            mean_lengths,
            output_lengths,
            queue,
            output_tokens,
            input_tokens,
            kv_cache,
            slos,
            history,
            observed_at: self.started_at,
            errors: Vec::new(),
        };
        readings.errors = readings.collect_errors(own.errors);
        readings
    }
}

/// One model's answers of an observation, with the failed queries it met.
struct Own<'a> {
    observation: &'a Observation,
    model: Option<&'a str>,
    /// Each failed query read, with its cause.
    errors: Vec<(Signal, ReadError)>,
}

impl Own<'_> {
    /// The model's series of one signal's answer; `None` when the plan did not ask.
    fn get(&mut self, signal: Signal) -> Option<Result<Vec<Sample>, ReadError>> {
        let observation = self.observation;
        let answer = observation.answer(signal)?;
        Some(match answer {
            Err(e) => {
                self.errors.push((signal, e.clone()));
                Err(e.clone())
            }
            Ok(samples) => Ok(match (&observation.model_label, self.model) {
                (Some(label), Some(model)) => observation
                    .model_index(label)
                    .get(model)
                    .and_then(|by_signal| by_signal.get(&signal))
                    .cloned()
                    .unwrap_or_default(),
                _ => samples.clone(),
            }),
        })
    }

    /// SLO `i`'s latency over both windows, with the histogram that splits its misses
    /// (prefill times or prompt lengths) where the plan has one.
    fn slo_windows(&mut self, i: usize) -> Result<SloWindows, ReadError> {
        let kind = self.observation.latency_kinds[i];
        let slo = u16::try_from(i).unwrap_or(u16::MAX);
        let missing = || Err(ReadError::NotPlanned);
        let short = self.get(Signal::SloShort { slo }).unwrap_or_else(missing);
        let long = self.get(Signal::SloLong { slo }).unwrap_or_else(missing);
        // Prefill times are in the latency's unit; prompt lengths are plain token counts.
        let tokens = LatencyKind::Histogram {
            le_scale_millis: false,
        };
        let split = [
            (
                Signal::SloPrefillShort { slo },
                Signal::SloPrefillLong { slo },
                kind,
            ),
            (
                Signal::SloContextShort { slo },
                Signal::SloContextLong { slo },
                tokens,
            ),
        ]
        .into_iter()
        .find_map(|(short, long, kind)| Some((self.get(short)?, self.get(long)?, kind)));
        let unfixable = match split {
            Some((short, long, kind)) => {
                Some((latency_window(kind, short?)?, latency_window(kind, long?)?))
            }
            None => None,
        };
        Ok(SloWindows {
            short: latency_window(kind, short?)?,
            long: latency_window(kind, long?)?,
            unfixable,
        })
    }

    /// The forecast's history, when the plan reads it: the peaks, the levels and, where
    /// planned, the recent levels. A failure of any of them fails the history.
    fn history(&mut self) -> Option<Result<HistoryWindow, ReadError>> {
        let peaks = self.get(Signal::HistoryPeak)?;
        let levels = self.get(Signal::HistoryLevel)?;
        let recent = self.get(Signal::HistoryRecent);
        let shape = self.observation.recent_shape;
        Some((|| {
            let mut history = history_window(peaks?, levels?)?;
            if let (Some(recent), Some((window, lead_steps))) = (recent, shape) {
                history.recent = Some(recent_levels(recent?, window, lead_steps)?);
            }
            Ok(history)
        })())
    }

    /// The mean prompt and output lengths, when the plan reads the mix.
    fn mean_lengths(&mut self) -> Option<Result<Option<(f64, f64)>, ReadError>> {
        let input = self.get(Signal::MeanInputTokens);
        let output = self.get(Signal::MeanOutputTokens);
        let (input, output) = (input?, output?);
        Some(input.and_then(|i| {
            let output = output?;
            match (
                mean(Signal::MeanInputTokens, i)?,
                mean(Signal::MeanOutputTokens, output)?,
            ) {
                (Some(i), Some(o)) => Ok(Some((i, o))),
                _ => Ok(None),
            }
        }))
    }
}

impl Readings {
    /// The demand from these readings under the term-error policy, with the failures
    /// that removed terms, as a first evaluation (nothing carried).
    pub fn demand(
        &self,
        target: &Target,
        policy: OnTermError,
    ) -> Result<(Demand, Vec<String>), DemandError> {
        self.demand_after(target, policy, &[])
    }

    /// The same, given the SLO rises the trigger's last evaluation carried
    /// ([`Demand::rises`]).
    pub fn demand_after(
        &self,
        target: &Target,
        policy: OnTermError,
        rises: &[demand::control::Rise],
    ) -> Result<(Demand, Vec<String>), DemandError> {
        let errors = self.error_summary();
        if policy == OnTermError::Fail
            && let Some(errors) = errors
        {
            return Err(DemandError::Unread(errors));
        }
        let demand =
            demand::compute_after(&self.signals(), &target.into(), rises).map_err(|error| {
                DemandError::Model {
                    error,
                    unread: errors,
                }
            })?;
        let terms: Vec<&str> = demand.skipped.iter().map(|t| t.as_str()).collect();
        let skipped = self
            .errors()
            .into_iter()
            .filter_map(|(signal, cause)| {
                let failed = format!("{} query failed: {cause}", signal.as_str());
                if signal == Signal::OutputLengths {
                    // No term is left out: the profile is read at the costly side.
                    Some(format!(
                        "short_output_share unknown: {failed}; capacity.profile read at each point's highest share"
                    ))
                } else {
                    (!terms.is_empty()).then(|| format!("{} left out: {failed}", terms.join(", ")))
                }
            })
            .collect();
        Ok((demand, skipped))
    }

    fn collect_errors(&self, from_queries: Vec<(Signal, ReadError)>) -> Vec<(Signal, ReadError)> {
        let mut errors = from_queries.clone();
        let mut add = |signal: Signal, result: Result<(), &ReadError>| {
            if let Err(e) = result
                && !errors.iter().any(|(s, _)| *s == signal)
            {
                errors.push((signal, e.clone()));
            }
        };
        add(Signal::Queue, self.queue.as_ref().map(|_| ()));
        add(
            Signal::OutputTokens,
            self.output_tokens.as_ref().map(|_| ()),
        );
        add(Signal::InputTokens, self.input_tokens.as_ref().map(|_| ()));
        if let Some(kv) = &self.kv_cache {
            add(Signal::KvCache, kv.as_ref().map(|_| ()));
        }
        for (i, slo) in self.slos.iter().enumerate() {
            let slo_index = u16::try_from(i).unwrap_or(u16::MAX);
            if from_queries
                .iter()
                .any(|(s, _)| s.slo_index() == Some(slo_index))
            {
                continue;
            }
            add(
                Signal::SloShort { slo: slo_index },
                slo.as_ref().map(|_| ()),
            );
        }
        if let Some(lengths) = &self.mean_lengths
            && !from_queries
                .iter()
                .any(|(s, _)| matches!(s, Signal::MeanInputTokens | Signal::MeanOutputTokens))
        {
            add(Signal::MeanInputTokens, lengths.as_ref().map(|_| ()));
        }
        if let Some(lengths) = &self.output_lengths {
            add(Signal::OutputLengths, lengths.as_ref().map(|_| ()));
        }
        if let Some(history) = &self.history
            && !from_queries.iter().any(|(s, _)| {
                matches!(
                    s,
                    Signal::HistoryPeak | Signal::HistoryLevel | Signal::HistoryRecent
                )
            })
        {
            add(Signal::HistoryPeak, history.as_ref().map(|_| ()));
        }
        errors
    }

    /// Every signal that could not be read, with its cause.
    pub fn errors(&self) -> Vec<(Signal, &ReadError)> {
        self.errors.iter().map(|(s, e)| (*s, e)).collect()
    }

    /// What went wrong, on one line; `None` when every signal was read.
    pub fn error_summary(&self) -> Option<String> {
        let errors = self.errors();
        (!errors.is_empty()).then(|| summarize(&errors))
    }

    /// The signals that were read; the others are `None`.
    pub fn signals(&self) -> Signals {
        Signals {
            queue_by_replica: self.queue.as_ref().ok().cloned(),
            output_tokens_per_second: self.output_tokens.as_ref().ok().copied(),
            input_tokens_per_second: self.input_tokens.as_ref().ok().copied(),
            kv_by_replica: self
                .kv_cache
                .as_ref()
                .and_then(|kv| kv.as_ref().ok().cloned()),
            slos: self.slos.iter().map(|s| s.as_ref().ok().cloned()).collect(),
            history: self.history.as_ref().and_then(|h| h.as_ref().ok().cloned()),
            mean_lengths: self
                .mean_lengths
                .as_ref()
                .and_then(|m| m.as_ref().ok().copied().flatten()),
            output_lengths: self
                .output_lengths
                .as_ref()
                .and_then(|w| w.as_ref().ok().cloned()),
            now: Some(chrono::DateTime::<chrono::Utc>::from(self.observed_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use tokio::time::Instant;

    use super::*;
    use crate::config::{Config, metadata};

    /// A vLLM fleet of two replicas read at a profile with two shares of short answers,
    /// whose output-length answer is `buckets` (bound, rate).
    fn readings_with_lengths(buckets: &[(&str, f64)]) -> (Readings, Target) {
        let config = Config::parse(
            "prometheus:\n  url: http://127.0.0.1:9090\nprofiles:\n  vllm:\n    engine: vllm\n    selector: {model_name: m}\n    capacity:\n      queue_per_replica: 15\n      output_tokens_per_second: 5000\n      input_tokens_per_second: 40000\n      input_term: true\n      profile:\n        - {input_tokens: 1000, output_tokens: 100, short_output_share: 0, output_tokens_per_second: 1000, input_tokens_per_second: 4000}\n        - {input_tokens: 1000, output_tokens: 100, short_output_share: 0.5, output_tokens_per_second: 1000, input_tokens_per_second: 1000}\n",
        )
        .unwrap();
        let meta = [("profile".to_owned(), "vllm".to_owned())].into();
        let target = metadata::resolve(&config, &meta).unwrap();
        let plan = crate::query::plan(config.profile("vllm").unwrap(), &target).plan;
        let one = |labels: &[(&str, &str)], value: f64| Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            value,
        };
        let answer = |signal: Signal| match signal {
            Signal::Queue => vec![one(&[("pod", "a")], 0.0), one(&[("pod", "b")], 0.0)],
            Signal::OutputTokens => vec![one(&[], 100.0)],
            Signal::InputTokens => vec![one(&[], 4000.0)],
            Signal::MeanInputTokens => vec![one(&[], 1000.0)],
            Signal::MeanOutputTokens => vec![one(&[], 100.0)],
            Signal::OutputLengths => buckets
                .iter()
                .map(|(le, r)| one(&[("le", le)], *r))
                .collect(),
            _ => Vec::new(),
        };
        let answers = plan
            .queries
            .iter()
            .map(|(signal, _)| (*signal, Ok(answer(*signal))))
            .collect();
        let now = SystemTime::now();
        let observation = Observation::of_plan(
            &plan,
            answers,
            Vec::new(),
            now,
            Instant::now(),
            Duration::ZERO,
        );
        (observation.readings(None), target)
    }

    fn input_term(demand: &Demand) -> f64 {
        demand
            .term(demand::TermKind::InputThroughput)
            .unwrap()
            .replicas
    }

    #[test]
    fn a_malformed_output_length_histogram_is_a_read_error_with_its_cause() {
        // A quarter of the answers short: the input capacity reads 2,000 (the geometric
        // mean of 4,000 and 1,000), so 4,000 prompt tokens/s ask for 2 replicas.
        let (good, target) =
            readings_with_lengths(&[("5", 0.5), ("20", 1.0), ("1000", 3.0), ("+Inf", 4.0)]);
        assert!(good.errors().is_empty(), "{:?}", good.errors());
        let (demand, skipped) = good.demand(&target, OnTermError::Fail).unwrap();
        assert!((input_term(&demand) - 2.0).abs() < 1e-9, "{demand:?}");
        assert!(skipped.is_empty());

        for (buckets, cause) in [
            (&[("20", 1.0), ("1000", 3.0)][..], "no `+Inf` bucket"),
            (&[("20", -1.0), ("+Inf", 4.0)][..], "bucket rate is -1"),
        ] {
            let (bad, target) = readings_with_lengths(buckets);
            let errors = bad.errors();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].0, Signal::OutputLengths);
            assert_eq!(errors[0].1.label(), "bad_histogram");
            // Under fail, the answer is refused and says why.
            let refused = bad.demand(&target, OnTermError::Fail).unwrap_err();
            assert!(refused.to_string().contains(cause), "{refused}");
            // Under skip, no term is left out: the profile is read at the highest share
            // (1,000 prompt tokens/s a replica: 4 replicas), and the cause is listed.
            let (demand, skipped) = bad.demand(&target, OnTermError::Skip).unwrap();
            assert!(demand.skipped.is_empty());
            assert!((input_term(&demand) - 4.0).abs() < 1e-9, "{demand:?}");
            assert_eq!(skipped.len(), 1, "{skipped:?}");
            assert!(
                skipped[0].starts_with("short_output_share unknown: output_lengths")
                    && skipped[0].contains(cause),
                "{skipped:?}"
            );
        }
    }
}
