//! Feasibility: what a request gets alone on a warm, idle replica.
//!
//! Some SLO misses no fleet size prevents: a 40,000-token prompt needs about 3 s of
//! prefill on one 70B TP4 replica, so it misses a 2 s TTFT threshold on an idle replica
//! as on a busy one. A request is *feasible* for an SLO when its latency alone meets the
//! threshold; attainment over feasible requests measures what scaling can change.
//!
//! The latencies come from the replica model's own step costs ([`ModelProfile`]), in
//! closed form: a prompt of n tokens runs as chunks of `chunk_tokens` in steps with no
//! decoding sequence, and then each output token is one decode step of a batch of one
//! whose context grows by a token a step.

pub use super::model::Feasible;
use super::{model::ModelProfile, stats::SloThresholds};

/// A request's latencies alone on a warm, idle replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alone {
    /// Seconds from arrival to the first token.
    pub ttft: f64,
    /// Mean seconds per output token after the first; `None` for a single-token output,
    /// which has no TPOT (and meets any TPOT SLO, as [`super::stats::Stats`] counts it).
    pub tpot: Option<f64>,
    /// The replica's KV cache holds the request's whole context; a request it cannot
    /// hold is refused on every replica.
    pub fits: bool,
}

impl ModelProfile {
    /// What a request of `input` prompt and `output` generated tokens gets alone.
    pub fn alone(&self, input: u32, output: u32) -> Alone {
        let chunk = u64::from(self.chunk_tokens.max(1));
        let prompt = u64::from(input);
        let mut ttft = 0.0;
        let mut done = 0;
        // A prompt of no tokens still takes one step to produce its first token.
        loop {
            let piece = (prompt - done).min(chunk);
            ttft += self.prefill_fixed + self.prefill_piece(piece, done);
            done += piece;
            if done >= prompt {
                break;
            }
        }
        // Decode step j (from 0) holds the prompt, the first token and j more.
        let steps = f64::from(output.max(1) - 1);
        let tpot = (steps > 0.0).then(|| {
            let first = self.decode_step(1, prompt + 1);
            first + self.step_per_context_token * (steps - 1.0) / 2.0
        });
        Alone {
            ttft,
            tpot,
            fits: prompt + u64::from(output) <= self.kv_capacity_tokens,
        }
    }

    /// The longest prompt one request alone still decodes within `tpot` seconds a token
    /// from (its first decode step reads the prompt and one token): longer prompts miss
    /// a TPOT SLO at that threshold on any replica, so this is the SLO's
    /// `floor_context_tokens`. `None` when every prompt the KV cache holds decodes in
    /// time (no floor to set), `Some(0)` when even an empty one does not.
    pub fn tpot_floor_context(&self, tpot: f64) -> Option<u64> {
        let base = self.decode_step(1, 0);
        if base > tpot {
            return Some(0);
        }
        if self.step_per_context_token <= 0.0 {
            return None;
        }
        let context = ((tpot - base) / self.step_per_context_token).floor();
        (context < self.kv_capacity_tokens as f64).then(|| (context as u64).saturating_sub(1))
    }

    /// Which SLOs a request can meet at all, against `thresholds`.
    pub fn feasible(&self, input: u32, output: u32, thresholds: SloThresholds) -> Feasible {
        let alone = self.alone(input, output);
        Feasible {
            ttft: alone.fits && alone.ttft <= thresholds.ttft,
            tpot: alone.fits && alone.tpot.is_none_or(|tpot| tpot <= thresholds.tpot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{
        model::{Replica, Request, Role},
        stats::Stats,
    };

    /// Runs one request through a real replica: the times the closed form must match.
    fn simulated(model: &ModelProfile, input: u32, output: u32) -> (f64, Option<f64>) {
        let mut replica = Replica::new("r".into(), Role::Unified, 0.0, 0.0);
        let mut stats = Stats::new(SloThresholds::default());
        let request = Request::new(0.0, input, output);
        stats.arrived(&request);
        replica.accept(request, 0.0);
        replica.advance(1e6, model, &mut stats, &mut Vec::new());
        assert_eq!(stats.finished, 1);
        (stats.ttft_sum, (output > 1).then_some(stats.tpot_sum))
    }

    #[test]
    fn the_closed_form_matches_the_replica_model() {
        for model in [
            ModelProfile::llama3_70b_tp4_h100(),
            ModelProfile::llama3_8b_h100(),
        ] {
            for (input, output) in [(1, 1), (100, 2), (1000, 130), (5000, 1500), (40_000, 70)] {
                let alone = model.alone(input, output);
                let (ttft, tpot) = simulated(&model, input, output);
                assert!(
                    (alone.ttft - ttft).abs() < 1e-9,
                    "{input}/{output}: {alone:?} {ttft}"
                );
                match (alone.tpot, tpot) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{a} {b}"),
                    (None, None) => {}
                    other => panic!("{input}/{output}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_tpot_floor_context_is_where_a_request_alone_first_misses() {
        let model = ModelProfile::llama3_70b_tp4_h100();
        let floor = model.tpot_floor_context(0.025).unwrap();
        assert!((199_000..200_000).contains(&floor), "{floor}");
        let first_step = |prompt: u64| model.decode_step(1, prompt + 1);
        assert!(first_step(floor) <= 0.025 && first_step(floor + 1) > 0.025);
        // At 50 ms the floor lies past what the KV cache holds.
        assert_eq!(model.tpot_floor_context(0.05), None);
        assert_eq!(model.tpot_floor_context(0.001), Some(0));
    }

    #[test]
    fn a_prompt_too_long_for_the_threshold_alone_is_infeasible() {
        let model = ModelProfile::llama3_70b_tp4_h100();
        let slos = SloThresholds::default();
        // 1,000 tokens: 20 ms + 70 ms + 0.65 ms of prefill, 18 ms a token.
        let short = model.alone(1000, 130);
        assert!((short.ttft - (0.020 + 0.070 + 0.00065)).abs() < 1e-12);
        assert_eq!(model.feasible(1000, 130, slos), Feasible::BOTH);
        // 40,000 tokens: 20 chunks of 20 ms, 2.8 s per token, 1.04 s quadratic: 4.24 s.
        let long = model.alone(40_000, 130);
        assert!((long.ttft - (20.0 * 0.020 + 2.8 + 0.65e-9 * 40_000f64.powi(2))).abs() < 1e-9);
        assert_eq!(
            model.feasible(40_000, 130, slos),
            Feasible {
                ttft: false,
                tpot: true
            }
        );
        // Context alone slows decoding: 900,000 tokens of context would not even fit.
        let huge = model.feasible(400_000, 100_000, slos);
        assert_eq!(
            huge,
            Feasible {
                ttft: false,
                tpot: false
            }
        );
        // A TPOT threshold under the model's fixed step cost is infeasible for everyone.
        let strict = SloThresholds {
            ttft: 2.0,
            tpot: 0.010,
        };
        assert!(!model.feasible(100, 100, strict).tpot);
        assert!(model.feasible(100, 1, strict).tpot, "one token has no TPOT");
    }
}
