//! From measurements of a real fleet to the points of a `capacity.profile`: each
//! measurement is filed under the nearest point of the grid (in log space, as the
//! profile interpolates), and a point's rate is the highest one the fleet served with
//! its SLOs held, not counting the `rank - 1` highest, so that one lucky measurement does
//! not set it. Pure: the load-test reader and the history reader feed it.

use std::fmt::Write as _;

/// One measurement of a fleet at one mix: a load test's step, or a moment of the fleet's
/// history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Mean prompt tokens per request.
    pub input_tokens: f64,
    /// Mean output tokens per request.
    pub output_tokens: f64,
    /// Output tokens per second per replica.
    pub output_tokens_per_second: f64,
    /// Prompt tokens per second per replica.
    pub input_tokens_per_second: f64,
    /// The share of requests with short answers the step ran at, when the load test
    /// says (`short_output_share` of `capacity.profile`).
    pub short_output_share: Option<f64>,
    /// The TTFT objectives held (what the input rate is judged on).
    pub ttft_held: bool,
    /// Every objective held (what the output rate is judged on).
    pub all_held: bool,
}

/// The mean lengths a profile is given rates at.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Mean prompt lengths, ascending, distinct, above 0.
    pub inputs: Vec<f64>,
    /// Mean output lengths, ascending, distinct, above 0.
    pub outputs: Vec<f64>,
    /// Shares of short answers, ascending, distinct; empty: the grid has no such axis.
    pub shares: Vec<f64>,
}

impl Grid {
    /// A grid of these lengths, sorted, each once.
    pub fn new(mut inputs: Vec<f64>, mut outputs: Vec<f64>) -> Self {
        for axis in [&mut inputs, &mut outputs] {
            axis.sort_by(f64::total_cmp);
            axis.dedup();
        }
        Self {
            inputs,
            outputs,
            shares: Vec::new(),
        }
    }

    /// The same grid with a point at each of these shares of short answers per mix.
    pub fn with_shares(mut self, mut shares: Vec<f64>) -> Self {
        shares.sort_by(f64::total_cmp);
        shares.dedup();
        self.shares = shares;
        self
    }

    /// Points per (input, output) mix: one per share, or one.
    fn per_mix(&self) -> usize {
        self.shares.len().max(1)
    }

    /// The mix and share of point `index`.
    fn point(&self, index: usize) -> (f64, f64, Option<f64>) {
        let (mix, share) = (index / self.per_mix(), index % self.per_mix());
        (
            self.inputs[mix / self.outputs.len()],
            self.outputs[mix % self.outputs.len()],
            self.shares.get(share).copied(),
        )
    }

    /// The index of the point nearest to a measurement's mix, row by input.
    fn cell(&self, m: &Measurement) -> usize {
        let nearest = |axis: &[f64], value: f64| {
            (0..axis.len())
                .min_by(|&a, &b| {
                    let d = |i: usize| (axis[i].ln() - value.ln()).abs();
                    d(a).total_cmp(&d(b))
                })
                .expect("a grid axis has a point")
        };
        let mix = nearest(&self.inputs, m.input_tokens) * self.outputs.len()
            + nearest(&self.outputs, m.output_tokens);
        // Shares are read as they are (no logarithm: a share may be 0).
        let share = m.short_output_share.map_or(0, |value| {
            (0..self.shares.len())
                .min_by(|&a, &b| {
                    let d = |i: usize| (self.shares[i] - value).abs();
                    d(a).total_cmp(&d(b))
                })
                .unwrap_or(0)
        });
        mix * self.per_mix() + share
    }
}

/// One rate of a fitted point, and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens per second per replica.
    pub tokens_per_second: f64,
    /// How many measurements held their SLOs at this point.
    pub held: usize,
    /// The lowest rate above this one at which the SLOs missed: `None` when they never
    /// did, so the rate is what the fleet served, a lower bound of what it sustains.
    pub missed_at: Option<f64>,
}

/// One point of the fitted profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fitted {
    /// Mean prompt tokens per request.
    pub input_tokens: f64,
    /// Mean output tokens per request.
    pub output_tokens: f64,
    /// The share of short answers the point holds at, when the grid has shares.
    pub short_output_share: Option<f64>,
    /// `output_tokens_per_second`: judged on every SLO.
    pub output: Rate,
    /// `input_tokens_per_second`: judged on the TTFT SLOs.
    pub input: Rate,
}

/// Every point of `grid` fitted from `measurements`; `rank`: the held measurements a
/// point needs, its rate the rank-th highest of them. The error lists every point
/// short of them, then `advice`.
pub fn fit(
    grid: &Grid,
    measurements: &[Measurement],
    rank: usize,
    advice: &str,
) -> Result<Vec<Fitted>, String> {
    let mut cells: Vec<Vec<&Measurement>> =
        vec![Vec::new(); grid.inputs.len() * grid.outputs.len() * grid.per_mix()];
    for m in measurements {
        cells[grid.cell(m)].push(m);
    }
    let mut fitted = Vec::with_capacity(cells.len());
    let mut short = String::new();
    for (index, cell) in cells.iter().enumerate() {
        let (input_tokens, output_tokens, short_output_share) = grid.point(index);
        let output = rate(cell, rank, |m| (m.output_tokens_per_second, m.all_held));
        let input = rate(cell, rank, |m| (m.input_tokens_per_second, m.ttft_held));
        match (output, input) {
            (Some(output), Some(input)) => fitted.push(Fitted {
                input_tokens,
                output_tokens,
                short_output_share,
                output,
                input,
            }),
            _ => {
                let held = |pick: fn(&Measurement) -> bool| cell.iter().filter(|m| pick(m)).count();
                let share = short_output_share
                    .map_or_else(String::new, |s| format!(", short_output_share {s}"));
                let _ = write!(
                    short,
                    "\n  input_tokens {input_tokens}, output_tokens {output_tokens}{share}: {} measured, {} held every SLO, {} held TTFT; {rank} needed",
                    cell.len(),
                    held(|m| m.all_held),
                    held(|m| m.ttft_held),
                );
            }
        }
    }
    if short.is_empty() {
        Ok(fitted)
    } else {
        Err(format!(
            "too few measurements held their SLOs at:{short}\n{advice}"
        ))
    }
}

/// The rank-th highest rate among the measurements that held, and the lowest miss above it.
fn rate(
    cell: &[&Measurement],
    rank: usize,
    pick: impl Fn(&Measurement) -> (f64, bool),
) -> Option<Rate> {
    let mut held: Vec<f64> = cell
        .iter()
        .map(|m| pick(m))
        .filter(|&(_, ok)| ok)
        .map(|(rate, _)| rate)
        .collect();
    held.sort_by(|a, b| b.total_cmp(a));
    let tokens_per_second = *held.get(rank.max(1) - 1)?;
    if tokens_per_second <= 0.0 {
        return None;
    }
    let missed_at = cell
        .iter()
        .map(|m| pick(m))
        .filter(|&(rate, ok)| !ok && rate > tokens_per_second)
        .map(|(rate, _)| rate)
        .min_by(f64::total_cmp);
    Some(Rate {
        tokens_per_second,
        held: held.len(),
        missed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(input: f64, output: f64, out_rate: f64, held: bool) -> Measurement {
        Measurement {
            input_tokens: input,
            output_tokens: output,
            output_tokens_per_second: out_rate,
            input_tokens_per_second: out_rate * input / output,
            short_output_share: None,
            ttft_held: held,
            all_held: held,
        }
    }

    #[test]
    fn a_point_takes_the_rank_th_highest_rate_that_held_and_the_first_miss_above_it() {
        let grid = Grid::new(vec![1000.0], vec![200.0]);
        let mut ms: Vec<Measurement> = (1..=10)
            .map(|i| at(1000.0, 200.0, f64::from(i) * 100.0, true))
            .collect();
        // A lucky moment far above, and misses above and below.
        ms.push(at(1000.0, 200.0, 2000.0, true));
        ms.push(at(1000.0, 200.0, 1200.0, false));
        ms.push(at(1000.0, 200.0, 1100.0, false));
        ms.push(at(1000.0, 200.0, 300.0, false));
        let fitted = fit(&grid, &ms, 2, "").unwrap();
        let output = fitted[0].output;
        assert_eq!(output.tokens_per_second, 1000.0);
        assert_eq!(output.held, 11);
        assert_eq!(output.missed_at, Some(1100.0));
        assert_eq!(fitted[0].input.tokens_per_second, 5000.0);
    }

    #[test]
    fn measurements_go_to_the_nearest_point_in_log_space() {
        let grid = Grid::new(vec![16000.0, 1000.0], vec![200.0]);
        assert_eq!(grid.inputs, vec![1000.0, 16000.0]);
        // 3,999 is under the geometric midpoint (4,000): the 1,000 point.
        let ms = [
            at(3999.0, 180.0, 900.0, true),
            at(4001.0, 250.0, 300.0, true),
        ];
        let fitted = fit(&grid, &ms, 1, "").unwrap();
        assert_eq!(fitted[0].output.tokens_per_second, 900.0);
        assert_eq!(fitted[1].output.tokens_per_second, 300.0);
        assert_eq!(fitted[1].output.missed_at, None);
    }

    #[test]
    fn a_point_short_of_held_measurements_is_named_with_its_counts() {
        let grid = Grid::new(vec![1000.0, 8000.0], vec![200.0]);
        let ms = [
            at(1000.0, 200.0, 900.0, true),
            at(8000.0, 200.0, 400.0, false),
        ];
        let error = fit(&grid, &ms, 1, "measure lower rates").unwrap_err();
        assert!(
            error.contains("input_tokens 8000, output_tokens 200: 1 measured, 0 held every SLO, 0 held TTFT; 1 needed"),
            "{error}"
        );
        assert!(!error.contains("input_tokens 1000,"), "{error}");
        assert!(error.ends_with("measure lower rates"), "{error}");
    }

    #[test]
    fn the_input_rate_is_judged_on_ttft_alone() {
        let grid = Grid::new(vec![1000.0], vec![200.0]);
        let mut m = at(1000.0, 200.0, 500.0, false);
        m.ttft_held = true;
        let ms = [m, at(1000.0, 200.0, 300.0, true)];
        let fitted = fit(&grid, &ms, 1, "").unwrap();
        assert_eq!(fitted[0].output.tokens_per_second, 300.0);
        assert_eq!(fitted[0].output.missed_at, Some(500.0));
        assert_eq!(fitted[0].input.tokens_per_second, 2500.0);
    }

    #[test]
    fn a_grid_with_shares_fits_a_point_per_share_of_each_mix() {
        let grid = Grid::new(vec![1000.0], vec![200.0]).with_shares(vec![0.3, 0.02]);
        let with_share = |rate: f64, share: f64| Measurement {
            short_output_share: Some(share),
            ..at(1000.0, 200.0, rate, true)
        };
        // Steps near each share (0.28 files under 0.3) at rates that differ by share.
        let ms = [
            with_share(1000.0, 0.02),
            with_share(600.0, 0.28),
            with_share(500.0, 0.3),
        ];
        let fitted = fit(&grid, &ms, 1, "").unwrap();
        let by_share: Vec<(Option<f64>, f64)> = fitted
            .iter()
            .map(|p| (p.short_output_share, p.output.tokens_per_second))
            .collect();
        assert_eq!(by_share, vec![(Some(0.02), 1000.0), (Some(0.3), 600.0)]);
        // A share with no step that held is named.
        let error = fit(&grid, &ms[..1], 1, "").unwrap_err();
        assert!(
            error.contains("short_output_share 0.3: 0 measured"),
            "{error}"
        );
    }
}
