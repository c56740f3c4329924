//! Any text given as a trace (Azure CSV, Mooncake JSONL, a rate file) is read or refused
//! with a message, and whatever is read replays: arrivals are drawn and the forecast is
//! replayed over a rate file without a panic, whatever the numbers in it.
#![no_main]

use std::time::Duration;

use keda_llm_scaler::sim::{
    forecast_eval::{EvalSettings, ZeroRate, evaluate},
    rates::parse_rate_trace,
    trace::{Arrivals, Replay, Trace},
};
use libfuzzer_sys::fuzz_target;

/// Arrivals drawn from a trace that read: enough to reach its odd numbers, bounded.
const DRAWS: usize = 2_000;

fuzz_target!(|text: &str| {
    match Trace::parse("fuzz", text) {
        Ok(trace) => {
            let lengths = match Trace::parse(
                "lengths",
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n",
            ) {
                Ok(Trace::Requests(lengths)) => lengths,
                _ => unreachable!("the lengths trace is valid"),
            };
            if let Ok(arrivals) = Arrivals::new(trace, Some(&lengths), Replay::default()) {
                assert!(arrivals.duration() >= 0.0);
                for _ in arrivals.take(DRAWS) {}
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(rates) = parse_rate_trace(text) {
        let settings = EvalSettings {
            lead: Duration::from_secs(600),
            period: Duration::from_secs(86_400),
            periods: Some(1),
            level_window: Some(Duration::from_secs(600)),
            zeros: ZeroRate::Gap,
            resample: None,
        };
        let _ = evaluate(&rates, &settings);
    }
});
