//! Traces to replay: request traces (Azure's CSV, BurstGPT's CSV, Mooncake's JSONL) and rate files
//! (`window_start_s,rate`) turned into Poisson arrivals with token lengths drawn from a
//! request trace.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rand::{RngExt, SeedableRng};

use super::model::Request;

/// Azure's 2023 conversation trace (traces/README.md), bundled for `demo` and as the
/// default source of token lengths.
pub const AZURE_CONV: &str = include_str!("../../traces/azure2023_conv.csv");
/// How a run names the bundled trace.
pub const AZURE_CONV_NAME: &str = "azure2023_conv.csv (bundled)";

/// The generator every simulated draw comes from: xoshiro256**, seeded through
/// SplitMix64 (`SeedableRng::seed_from_u64`), so the same seed gives the same run on every
/// machine.
pub type SimRng = rand_xoshiro::Xoshiro256StarStar;

/// A generator for `seed`.
pub fn seeded(seed: u64) -> SimRng {
    SimRng::seed_from_u64(seed)
}

/// The draws the simulator makes from its generator.
pub trait Draws {
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64;

    /// The gap to the next event of a Poisson process at `rate` per second. By inversion
    /// of one uniform draw rather than `rand_distr::Exp`'s ziggurat, so that a seed keeps
    /// replaying the arrivals every published figure was measured on.
    fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.uniform()).ln() / rate
    }

    /// An index below `n`, from one uniform draw (as the published figures were drawn).
    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

impl Draws for SimRng {
    fn uniform(&mut self) -> f64 {
        self.random()
    }
}

pub use super::error::TraceError;

/// Requests with their arrival times, sorted.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// (seconds since the first request, input tokens, output tokens).
    pub requests: Vec<(f64, u32, u32)>,
    /// The wall-clock time of the first request, when the trace says.
    pub start: Option<DateTime<Utc>>,
}

/// Rates per window.
#[derive(Debug, Clone)]
pub struct RateTrace {
    /// (window start in seconds, requests per second).
    pub windows: Vec<(f64, f64)>,
}

/// A trace file, by format.
#[derive(Debug, Clone)]
pub enum Trace {
    /// Requests with their arrival times and lengths (Azure's and BurstGPT's CSV,
    /// Mooncake's JSONL).
    Requests(RequestTrace),
    /// Request rates per window (`window_start_s,rate`).
    Rates(RateTrace),
}

impl Trace {
    /// Reads and parses the trace at `path`.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a trace's text; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, TraceError> {
        let first = text.lines().next().unwrap_or("").trim();
        let header: Vec<&str> = first.split(',').map(str::trim).collect();
        let trace = if header == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"] {
            Trace::Requests(parse_azure(path, text)?)
        } else if let Some(columns) = BurstGptColumns::find(&header) {
            Trace::Requests(parse_burstgpt(path, text, columns)?)
        } else if header.len() == 2 && header[0] == "window_start_s" {
            Trace::Rates(parse_rates(path, text)?)
        } else if first.starts_with('{') {
            Trace::Requests(parse_mooncake(path, text)?)
        } else {
            return Err(TraceError::UnknownFormat { path: path.into() });
        };
        let empty = match &trace {
            Trace::Requests(r) => r.requests.is_empty(),
            Trace::Rates(r) => r.windows.is_empty(),
        };
        if empty {
            return Err(TraceError::Empty { path: path.into() });
        }
        Ok(trace)
    }
}

fn parse_error(path: &str, line: usize, problem: impl Into<String>) -> TraceError {
    TraceError::Parse {
        path: path.into(),
        line,
        problem: problem.into(),
    }
}

fn tokens(path: &str, line: usize, name: &str, text: &str) -> Result<u32, TraceError> {
    text.trim().parse::<u32>().map_err(|_| {
        parse_error(
            path,
            line,
            format!("{name} `{text}` is not a whole number of tokens"),
        )
    })
}

/// An Azure trace's TIMESTAMP: `2023-11-16 18:15:46.6805900` (the 2023 traces, UTC) or
/// with an offset, `2024-05-10 00:00:00.009930+00:00` (the 2024 traces); ISO 8601's `T`
/// and `Z` are read too, as exporters of other fleets write them.
fn azure_timestamp(stamp: &str) -> Result<DateTime<Utc>, String> {
    let stamp = stamp.trim();
    if let Ok(naive) = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f") {
        return Ok(Utc.from_utc_datetime(&naive));
    }
    DateTime::parse_from_rfc3339(&stamp.replacen(' ', "T", 1))
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "TIMESTAMP `{stamp}`: expected a date and time such as `2023-11-16 18:15:46.68`, with an optional UTC offset (`+00:00`, `Z`)"
            )
        })
}

fn parse_azure(path: &str, text: &str) -> Result<RequestTrace, TraceError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let [stamp, input, output] = fields[..] else {
            return Err(parse_error(
                path,
                i + 1,
                format!("expected 3 fields, found {}", fields.len()),
            ));
        };
        let at = azure_timestamp(stamp).map_err(|problem| parse_error(path, i + 1, problem))?;
        rows.push((
            at,
            tokens(path, i + 1, "ContextTokens", input)?,
            tokens(path, i + 1, "GeneratedTokens", output)?,
        ));
    }
    rows.sort_by_key(|row| row.0);
    let start = rows.first().map(|row| row.0);
    let requests = rows
        .iter()
        .map(|(at, input, output)| {
            let offset = (*at - start.expect("rows exist"))
                .num_microseconds()
                .unwrap_or(0);
            (offset as f64 / 1e6, *input, *output)
        })
        .collect();
    Ok(RequestTrace { requests, start })
}

/// Where BurstGPT's CSV keeps the columns a replay reads.
#[derive(Debug, Clone, Copy)]
struct BurstGptColumns {
    timestamp: usize,
    request: usize,
    response: usize,
}

impl BurstGptColumns {
    /// The columns, by name, when `header` has all three.
    fn find(header: &[&str]) -> Option<Self> {
        let at = |name: &str| header.iter().position(|h| *h == name);
        Some(Self {
            timestamp: at("Timestamp")?,
            request: at("Request tokens")?,
            response: at("Response tokens")?,
        })
    }
}

/// BurstGPT's CSV (`Timestamp,Model,Request tokens,Response tokens,Total tokens,Log
/// Type`, seconds from the trace's start). Its failed requests have 0 response tokens;
/// they are left out, as its own `*_without_fails_*` files do.
fn parse_burstgpt(
    path: &str,
    text: &str,
    columns: BurstGptColumns,
) -> Result<RequestTrace, TraceError> {
    let mut requests = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let field = |index: usize, name: &str| {
            fields.get(index).copied().ok_or_else(|| {
                parse_error(
                    path,
                    i + 1,
                    format!("no `{name}` field: {} fields", fields.len()),
                )
            })
        };
        let stamp = field(columns.timestamp, "Timestamp")?;
        let at = stamp
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                let problem = format!("Timestamp `{stamp}` is not a time in seconds");
                parse_error(path, i + 1, problem)
            })?;
        let input = tokens(
            path,
            i + 1,
            "Request tokens",
            field(columns.request, "Request tokens")?,
        )?;
        let output = tokens(
            path,
            i + 1,
            "Response tokens",
            field(columns.response, "Response tokens")?,
        )?;
        if output > 0 {
            requests.push((at, input, output));
        }
    }
    Ok(from_first(requests))
}

/// Requests timed from an unknown origin, sorted and timed from the first.
fn from_first(mut requests: Vec<(f64, u32, u32)>) -> RequestTrace {
    requests.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = requests.first().map_or(0.0, |r| r.0);
    for request in &mut requests {
        request.0 -= first;
    }
    RequestTrace {
        requests,
        start: None,
    }
}

#[derive(serde::Deserialize)]
struct MooncakeRow {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
}

fn parse_mooncake(path: &str, text: &str) -> Result<RequestTrace, TraceError> {
    let mut requests = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: MooncakeRow = serde_json::from_str(line)
            .map_err(|e| parse_error(path, i + 1, format!("not a Mooncake request: {e}")))?;
        if !row.timestamp.is_finite() || row.timestamp < 0.0 {
            return Err(parse_error(
                path,
                i + 1,
                format!("timestamp {} is not a time in milliseconds", row.timestamp),
            ));
        }
        requests.push((row.timestamp / 1000.0, row.input_length, row.output_length));
    }
    Ok(from_first(requests))
}

fn parse_rates(path: &str, text: &str) -> Result<RateTrace, TraceError> {
    let rows = super::rates::parse_rate_rows(text).map_err(|problem| TraceError::Rates {
        path: path.into(),
        problem,
    })?;
    for pair in rows.windows(2) {
        if pair[1].1 <= pair[0].1 {
            return Err(TraceError::Rates {
                path: path.into(),
                problem: format!(
                    "line {}: window start {} does not follow {}",
                    pair[1].0, pair[1].1, pair[0].1
                ),
            });
        }
    }
    Ok(RateTrace {
        windows: rows
            .into_iter()
            .map(|(_, start, rate)| (start, rate))
            .collect(),
    })
}

/// How a trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replay {
    /// Multiplies time: 0.5 plays the trace twice as fast (and twice as dense).
    pub time_scale: f64,
    /// Multiplies the request rate, keeping the trace's length and shape.
    pub rate_scale: f64,
    /// Multiplies each request's prompt tokens (at least 1): the same traffic with
    /// longer or shorter prompts, keeping their spread and their correlation with the
    /// answers.
    pub prompt_scale: f64,
    /// Multiplies each request's output tokens (at least 1).
    pub answer_scale: f64,
    /// Seeds the draws of arrivals and lengths.
    pub seed: u64,
}

impl Replay {
    /// A request's `(input, output)` tokens, reshaped by the length scales.
    fn reshape(&self, input: u32, output: u32) -> (u32, u32) {
        // f64 to u32 saturates, and the scales are bounded where they are read.
        let scaled = |tokens: u32, by: f64| ((f64::from(tokens) * by).round() as u32).max(1);
        (
            scaled(input, self.prompt_scale),
            scaled(output, self.answer_scale),
        )
    }
}

impl Default for Replay {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            rate_scale: 1.0,
            prompt_scale: 1.0,
            answer_scale: 1.0,
            seed: 1,
        }
    }
}

/// Arrivals, generated lazily in time order.
pub struct Arrivals {
    kind: ArrivalKind,
    rng: SimRng,
    replay: Replay,
}

enum ArrivalKind {
    /// Each request of the trace, repeated `rate_scale` times on average (copies spread
    /// over the gap to the next request).
    Requests {
        trace: RequestTrace,
        next: usize,
        pending: Vec<Request>,
    },
    /// Poisson arrivals at each window's rate.
    Rates {
        windows: Vec<(f64, f64)>,
        lengths: Vec<(u32, u32)>,
        window: usize,
        clock: f64,
    },
}

impl Arrivals {
    /// Arrivals of a trace; a rate file draws token lengths from `lengths`.
    pub fn new(
        trace: Trace,
        lengths: Option<&RequestTrace>,
        replay: Replay,
    ) -> Result<Self, String> {
        let kind = match trace {
            Trace::Requests(trace) => ArrivalKind::Requests {
                trace,
                next: 0,
                pending: Vec::new(),
            },
            Trace::Rates(rates) => {
                let lengths = lengths
                    .ok_or("a rate file needs a request trace for token lengths")?
                    .requests
                    .iter()
                    .map(|&(_, input, output)| (input, output))
                    .collect();
                ArrivalKind::Rates {
                    windows: rates.windows,
                    lengths,
                    window: 0,
                    clock: 0.0,
                }
            }
        };
        Ok(Self {
            kind,
            rng: seeded(replay.seed),
            replay,
        })
    }

    /// The trace's length in replayed seconds.
    pub fn duration(&self) -> f64 {
        let raw = match &self.kind {
            ArrivalKind::Requests { trace, .. } => trace.requests.last().map_or(0.0, |r| r.0),
            ArrivalKind::Rates { windows, .. } => match windows.as_slice() {
                [.., (last, _)] if windows.len() > 1 => last + (windows[1].0 - windows[0].0),
                [(only, _)] => only + 600.0,
                _ => 0.0,
            },
        };
        raw * self.replay.time_scale
    }
}

impl Iterator for Arrivals {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        let replay = self.replay;
        match &mut self.kind {
            ArrivalKind::Requests {
                trace,
                next,
                pending,
            } => loop {
                if let Some(request) = pending.pop() {
                    return Some(request);
                }
                let &(at, input, output) = trace.requests.get(*next)?;
                let (input, output) = replay.reshape(input, output);
                let gap = trace
                    .requests
                    .get(*next + 1)
                    .map_or(1.0, |r| (r.0 - at).min(1.0));
                *next += 1;
                let whole = replay.rate_scale.floor();
                let copies =
                    whole as usize + usize::from(self.rng.uniform() < replay.rate_scale - whole);
                let mut times: Vec<f64> = (0..copies)
                    .map(|c| {
                        if c == 0 {
                            at
                        } else {
                            at + self.rng.uniform() * gap
                        }
                    })
                    .collect();
                // Popped from the back: latest first in the vector.
                times.sort_by(|a, b| b.total_cmp(a));
                pending.extend(
                    times
                        .into_iter()
                        .map(|t| Request::new(t * replay.time_scale, input, output)),
                );
            },
            ArrivalKind::Rates {
                windows,
                lengths,
                window,
                clock,
            } => loop {
                let &(start, rate) = windows.get(*window)?;
                let end = windows.get(*window + 1).map_or(start + 600.0, |w| w.0);
                *clock = clock.max(start);
                let rate = rate * replay.rate_scale;
                if rate > 0.0 {
                    let candidate = *clock + self.rng.exponential(rate);
                    if candidate < end {
                        *clock = candidate;
                        let (input, output) = lengths[self.rng.below(lengths.len())];
                        let (input, output) = replay.reshape(input, output);
                        return Some(Request::new(candidate * replay.time_scale, input, output));
                    }
                }
                // Memorylessness: the next window starts afresh.
                *clock = end;
                *window += 1;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
        2023-11-16 18:15:46.6805900,374,44\n\
        2023-11-16 18:15:50.9951690,396,109\n\
        2023-11-16 18:15:47.0000000,10,1";

    #[test]
    fn azure_rows_sort_and_start_at_zero() {
        let Trace::Requests(trace) = Trace::parse("t.csv", AZURE).unwrap() else {
            panic!("a request trace")
        };
        assert_eq!(trace.requests.len(), 3);
        assert_eq!(trace.requests[0], (0.0, 374, 44));
        assert_eq!(trace.requests[1].1, 10);
        assert!((trace.requests[2].0 - 4.314579).abs() < 1e-6);
        assert_eq!(
            trace.start.unwrap().to_rfc3339(),
            "2023-11-16T18:15:46.680590+00:00"
        );
    }

    #[test]
    fn mooncake_timestamps_are_milliseconds() {
        let text = "{\"timestamp\": 2000, \"input_length\": 5, \"output_length\": 7, \"hash_ids\": [1]}\n\
                    {\"timestamp\": 500, \"input_length\": 3, \"output_length\": 2}\n";
        let Trace::Requests(trace) = Trace::parse("m.jsonl", text).unwrap() else {
            panic!("a request trace")
        };
        assert_eq!(trace.requests, vec![(0.0, 3, 2), (1.5, 5, 7)]);
    }

    #[test]
    fn bad_rows_name_the_line_and_value() {
        let error = Trace::parse(
            "t.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,x,3",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "t.csv line 2: ContextTokens `x` is not a whole number of tokens"
        );
        let error = Trace::parse("r.csv", "window_start_s,rate\n0,1\n0,2")
            .unwrap_err()
            .to_string();
        assert_eq!(error, "r.csv: line 3: window start 0 does not follow 0");
        assert!(matches!(
            Trace::parse("x", "a,b,c\n"),
            Err(TraceError::UnknownFormat { .. })
        ));
        assert!(matches!(
            Trace::parse("x", "window_start_s,rate\n"),
            Err(TraceError::Empty { .. })
        ));
    }

    #[test]
    fn rate_files_give_poisson_arrivals_at_the_window_rate() {
        let rates = Trace::parse("r.csv", "window_start_s,rate\n0,2\n600,10\n").unwrap();
        let Trace::Requests(lengths) = Trace::parse("t.csv", AZURE).unwrap() else {
            panic!()
        };
        let arrivals: Vec<Request> = Arrivals::new(rates, Some(&lengths), Replay::default())
            .unwrap()
            .collect();
        let first = arrivals.iter().filter(|r| r.arrival < 600.0).count() as f64;
        let second = arrivals.iter().filter(|r| r.arrival >= 600.0).count() as f64;
        // 1200 and 6000 expected; 5 standard deviations.
        assert!((first - 1200.0).abs() < 5.0 * 1200f64.sqrt(), "{first}");
        assert!((second - 6000.0).abs() < 5.0 * 6000f64.sqrt(), "{second}");
        assert!(arrivals.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        assert!(arrivals.iter().all(|r| r.arrival < 1200.0));
    }

    #[test]
    fn azure_timestamps_with_an_offset_are_read_in_utc() {
        // Azure's 2024 traces write `+00:00`; another offset moves the instant.
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
            2024-05-10 00:00:00.009930+00:00,2162,5\n\
            2024-05-10T00:00:02Z,100,7\n\
            2024-05-10 02:00:01.5+02:00,300,9\n";
        let Trace::Requests(trace) = Trace::parse("t.csv", text).unwrap() else {
            panic!("a request trace")
        };
        let start = Utc.with_ymd_and_hms(2024, 5, 10, 0, 0, 0).unwrap()
            + chrono::TimeDelta::microseconds(9930);
        assert_eq!(trace.start, Some(start));
        let at: Vec<(f64, u32)> = trace.requests.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(at, vec![(0.0, 2162), (1.490070, 300), (1.990070, 100)]);
        for bad in [
            "2024-05-10 00:00:00+25:00",
            "10/05/2024 00:00",
            "2024-05-10",
        ] {
            let text = format!("TIMESTAMP,ContextTokens,GeneratedTokens\n{bad},1,1\n");
            let err = Trace::parse("t.csv", &text).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "line 2: TIMESTAMP `{bad}`: expected a date and time"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn burstgpt_rows_are_read_by_column_name_and_failures_left_out() {
        let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
            5.0,ChatGPT,472,18,490,Conversation log\n\
            6.5,GPT-4,1087,0,1087,API log\n\
            7.25,ChatGPT,88,301,389,Conversation log\n";
        let Trace::Requests(trace) = Trace::parse("b.csv", text).unwrap() else {
            panic!("a request trace")
        };
        assert_eq!(trace.requests, vec![(0.0, 472, 18), (2.25, 88, 301)]);
        assert_eq!(trace.start, None);
        let cases = [
            (
                "-1.0,ChatGPT,10,10,20,x",
                "line 2: Timestamp `-1.0` is not a time in seconds",
            ),
            (
                "1.0,ChatGPT,ten,10,20,x",
                "line 2: Request tokens `ten` is not a whole number",
            ),
            (
                "1.0,ChatGPT,10",
                "line 2: no `Response tokens` field: 3 fields",
            ),
        ];
        for (row, expected) in cases {
            let text = format!("Timestamp,Model,Request tokens,Response tokens\n{row}\n");
            let err = Trace::parse("b.csv", &text).unwrap_err().to_string();
            assert!(err.contains(expected), "{row}: {err}");
        }
        // Every request failed: nothing to replay, said as for any empty trace.
        let failed = "Timestamp,Request tokens,Response tokens\n1.0,10,0\n";
        assert!(Trace::parse("b.csv", failed).is_err());
    }

    #[test]
    fn replay_is_deterministic_and_scales() {
        let Trace::Requests(trace) = Trace::parse("t.csv", AZURE).unwrap() else {
            panic!()
        };
        let run = |replay: Replay| -> Vec<(f64, u32, u32)> {
            Arrivals::new(Trace::Requests(trace.clone()), None, replay)
                .unwrap()
                .map(|r| (r.arrival, r.input, r.output))
                .collect()
        };
        let scaled = Replay {
            rate_scale: 3.0,
            time_scale: 0.5,
            seed: 7,
            ..Replay::default()
        };
        assert_eq!(run(scaled), run(scaled));
        let arrivals = run(scaled);
        assert_eq!(arrivals.len(), 9);
        assert!(arrivals.windows(2).all(|w| w[0].0 <= w[1].0));
        // Copies of the last request spread over the second after it.
        assert!(arrivals.iter().all(|r| r.0 <= (4.32 + 1.0) * 0.5));
        let thinned = run(Replay {
            rate_scale: 0.0,
            ..Replay::default()
        });
        assert!(thinned.is_empty());
    }

    #[test]
    fn length_scales_reshape_every_request_and_keep_at_least_a_token() {
        let Trace::Requests(trace) = Trace::parse("t.csv", AZURE).unwrap() else {
            panic!()
        };
        let reshaped = Replay {
            prompt_scale: 2.0,
            answer_scale: 1.0 / 6.0,
            ..Replay::default()
        };
        let lengths = |trace: Trace, lengths: Option<&RequestTrace>| -> Vec<(u32, u32)> {
            Arrivals::new(trace, lengths, reshaped)
                .unwrap()
                .map(|r| (r.input, r.output))
                .collect()
        };
        // In time order: (374, 44), (10, 1), (396, 109).
        assert_eq!(
            lengths(Trace::Requests(trace.clone()), None),
            vec![(748, 7), (20, 1), (792, 18)]
        );
        // A rate file's draws are reshaped too.
        let rates = Trace::parse("r.csv", "window_start_s,rate\n0,5\n").unwrap();
        let drawn = lengths(rates, Some(&trace));
        assert!(!drawn.is_empty());
        assert!(
            drawn
                .iter()
                .all(|l| [(20, 1), (748, 7), (792, 18)].contains(l)),
            "{drawn:?}"
        );
        // Saturates instead of wrapping.
        let huge = Replay {
            prompt_scale: 1e12,
            ..Replay::default()
        };
        assert_eq!(huge.reshape(10, 5), (u32::MAX, 5));
    }
}
