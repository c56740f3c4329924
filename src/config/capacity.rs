//! `capacity.profile`: what one replica sustains within its SLOs for each mix of mean
//! prompt and output lengths, so that the throughput terms follow the traffic's mix
//! instead of holding for the one mix a fixed number was measured on. A mix of the same
//! means can hold very different rates by the shape of its answers: a request decoding a
//! handful of tokens has no steps to spread a prefill stall over, so a mix where many
//! answers are short holds fewer prompt tokens a second. Points may say the share of
//! short answers they were measured at, and the lookup reads between them.

use serde::Deserialize;

use super::values::{Positive, Share};

/// At most this many output tokens make a short answer, unless the config says other:
/// one of vLLM's output-length bucket bounds (1, 2, 5 per decade), and the length
/// under which a third of Mooncake's long-context answers fall and 2 % of Azure's
/// conversation answers.
pub const DEFAULT_SHORT_OUTPUT_TOKENS: f64 = 20.0;

/// `capacity.short_output_tokens` when the config leaves it out.
pub fn default_short_output_tokens() -> Positive {
    Positive(DEFAULT_SHORT_OUTPUT_TOKENS)
}

/// `capacity.short_output_min_tokens` when the config leaves it out: every answer of at
/// most `short_output_tokens` counts.
pub fn default_short_output_min_tokens() -> Positive {
    Positive(1.0)
}

/// Which answers count as short for `short_output_share`: from `min_tokens` to
/// `max_tokens` output tokens, both included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShortAnswers {
    /// The fewest output tokens a short answer has (1: every answer up to the bound). A
    /// one-token answer has no time per output token, so it cannot miss a TPOT SLO.
    pub min_tokens: f64,
    /// The most output tokens a short answer has.
    pub max_tokens: f64,
}

impl Default for ShortAnswers {
    fn default() -> Self {
        Self {
            min_tokens: 1.0,
            max_tokens: DEFAULT_SHORT_OUTPUT_TOKENS,
        }
    }
}

/// One measured mix, as `keda-llm-scaler calibrate` prints it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePoint {
    /// Mean prompt tokens per request.
    pub input_tokens: Positive,
    /// Mean output tokens per request.
    pub output_tokens: Positive,
    /// The share of requests whose answers have at most `capacity.short_output_tokens`
    /// tokens that the point was measured at. Unset: the point holds at any share.
    #[serde(default)]
    pub short_output_share: Option<Share>,
    /// Output tokens per second one replica sustains at this mix.
    pub output_tokens_per_second: Positive,
    /// Input tokens per second one replica sustains at this mix.
    pub input_tokens_per_second: Positive,
}

/// One (input, output) cell of the grid: a point that holds at every share of short
/// answers, or points at distinct shares, ascending.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    /// One point, whatever the share.
    Any((f64, f64)),
    /// (share, (output, input) tokens per second), by ascending share.
    ByShare(Vec<(f64, (f64, f64))>),
}

impl Cell {
    /// The cell's (output, input) rates at a share of short answers: linear in the
    /// share between the points around it, in log space, held at the outermost points.
    /// An unknown share reads the highest share's point: the side where a wrong guess
    /// costs replicas rather than the SLO.
    fn at(&self, share: Option<f64>) -> (f64, f64) {
        let by_share = match self {
            Cell::Any(rates) => return *rates,
            Cell::ByShare(points) => points,
        };
        let last = by_share.len() - 1;
        let Some(share) = share.filter(|s| !s.is_nan()) else {
            return by_share[last].1;
        };
        let upper = by_share.partition_point(|(s, _)| *s <= share);
        if upper == 0 {
            return by_share[0].1;
        }
        if upper > last {
            return by_share[last].1;
        }
        let ((s0, low), (s1, high)) = (by_share[upper - 1], by_share[upper]);
        let t = (share - s0) / (s1 - s0);
        let mix = |a: f64, b: f64| (a.ln() * (1.0 - t) + b.ln() * t).exp();
        (mix(low.0, high.0), mix(low.1, high.1))
    }
}

/// A complete grid of points, for lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityProfile {
    /// Distinct mean prompt lengths, ascending.
    inputs: Vec<f64>,
    /// Distinct mean output lengths, ascending.
    outputs: Vec<f64>,
    /// Per (input, output), row by input.
    cells: Vec<Cell>,
    /// Which answers count as short.
    short_answers: ShortAnswers,
}

/// The token rates one replica sustains at a mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// What the throughput term of unified and decode pools divides by.
    pub output_tokens_per_second: f64,
    /// What the input terms (prefill pools, `input_term`) divide by.
    pub input_tokens_per_second: f64,
}

impl CapacityProfile {
    /// The grid of `points`: every distinct input length with every distinct output
    /// length, each cell once or at distinct shares of short answers. The error says
    /// what is missing or repeated.
    pub fn from_points(points: &[ProfilePoint]) -> Result<Self, String> {
        if points.is_empty() {
            return Err(
                "is empty: expected points of a grid of input_tokens x output_tokens".into(),
            );
        }
        let distinct = |pick: fn(&ProfilePoint) -> f64| {
            let mut values: Vec<f64> = points.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            values
        };
        let inputs = distinct(|p| p.input_tokens.0);
        let outputs = distinct(|p| p.output_tokens.0);
        let mut cells = Vec::with_capacity(inputs.len() * outputs.len());
        for &input in &inputs {
            for &output in &outputs {
                let at: Vec<&ProfilePoint> = points
                    .iter()
                    .filter(|p| p.input_tokens.0 == input && p.output_tokens.0 == output)
                    .collect();
                cells.push(cell(&at).map_err(|why| {
                    format!("has {why} for input_tokens {input} and output_tokens {output}")
                })?);
            }
        }
        Ok(Self {
            inputs,
            outputs,
            cells,
            short_answers: ShortAnswers::default(),
        })
    }

    /// The same profile with other bounds for a short answer.
    pub fn with_short_answers(mut self, short_answers: ShortAnswers) -> Self {
        self.short_answers = short_answers;
        self
    }

    /// Which answers count as short.
    pub fn short_answers(&self) -> ShortAnswers {
        self.short_answers
    }

    /// Whether any point says its share of short answers: only then is the share read.
    pub fn reads_short_share(&self) -> bool {
        self.cells.iter().any(|c| matches!(c, Cell::ByShare(_)))
    }

    /// The rates at mean lengths `(input, output)` and a share of short answers
    /// (`None`: unknown): bilinear in the logarithms of the lengths and of the rates
    /// (capacity falls roughly as a power of the prompt length), held at the grid's
    /// edge outside it; each cell read at the share first.
    pub fn at(&self, input: f64, output: f64, short_share: Option<f64>) -> Rates {
        let (i0, i1, ti) = bracket(&self.inputs, input);
        let (o0, o1, to) = bracket(&self.outputs, output);
        let at = |i: usize, o: usize| self.cells[i * self.outputs.len() + o].at(short_share);
        let blend = |pick: fn((f64, f64)) -> f64| {
            if ti == 0.0 && to == 0.0 {
                // On a point (or held at a corner): its own number, exactly.
                return pick(at(i0, o0));
            }
            let ln = |i, o| pick(at(i, o)).ln();
            let low = ln(i0, o0) * (1.0 - to) + ln(i0, o1) * to;
            let high = ln(i1, o0) * (1.0 - to) + ln(i1, o1) * to;
            (low * (1.0 - ti) + high * ti).exp()
        };
        Rates {
            output_tokens_per_second: blend(|r| r.0),
            input_tokens_per_second: blend(|r| r.1),
        }
    }
}

/// One cell from its points, or what is wrong with them.
fn cell(points: &[&ProfilePoint]) -> Result<Cell, String> {
    let rates = |p: &ProfilePoint| (p.output_tokens_per_second.0, p.input_tokens_per_second.0);
    match points {
        [] => {
            return Err("no point: every input length needs every output length (a full grid, as `keda-llm-scaler calibrate` prints)".into());
        }
        [one] if one.short_output_share.is_none() => return Ok(Cell::Any(rates(one))),
        _ => {}
    }
    let mut by_share = Vec::with_capacity(points.len());
    for p in points {
        let Some(share) = p.short_output_share else {
            return Err(format!(
                "{} points, one without short_output_share: expected one point, or one point per short_output_share",
                points.len()
            ));
        };
        by_share.push((share.0, rates(p)));
    }
    by_share.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(w) = by_share.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "2 points at short_output_share {}: expected one",
            w[0].0
        ));
    }
    Ok(Cell::ByShare(by_share))
}

/// The grid indices around `value` and its position between them (0..1) in log space.
fn bracket(grid: &[f64], value: f64) -> (usize, usize, f64) {
    let last = grid.len() - 1;
    // NaN lands here too: the edge, not a NaN capacity.
    if value.is_nan() || value <= grid[0] {
        return (0, 0, 0.0);
    }
    if value >= grid[last] {
        return (last, last, 0.0);
    }
    let upper = grid.partition_point(|&g| g <= value);
    let (low, high) = (grid[upper - 1], grid[upper]);
    (
        upper - 1,
        upper,
        (value.ln() - low.ln()) / (high.ln() - low.ln()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(input: f64, output: f64, out_rate: f64, in_rate: f64) -> ProfilePoint {
        ProfilePoint {
            input_tokens: Positive(input),
            output_tokens: Positive(output),
            short_output_share: None,
            output_tokens_per_second: Positive(out_rate),
            input_tokens_per_second: Positive(in_rate),
        }
    }

    fn grid() -> CapacityProfile {
        CapacityProfile::from_points(&[
            point(100.0, 100.0, 1000.0, 1000.0),
            point(100.0, 1000.0, 4000.0, 400.0),
            point(1000.0, 100.0, 250.0, 2500.0),
            point(1000.0, 1000.0, 1000.0, 1000.0),
        ])
        .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn a_point_of_the_grid_reads_its_own_rates() {
        let rates = grid().at(1000.0, 100.0, None);
        assert!(close(rates.output_tokens_per_second, 250.0), "{rates:?}");
        assert!(close(rates.input_tokens_per_second, 2500.0), "{rates:?}");
    }

    #[test]
    fn between_points_rates_interpolate_geometrically() {
        // Halfway in log space on both axes: the geometric mean of the four corners.
        let mid = (100.0f64 * 1000.0).sqrt();
        let rates = grid().at(mid, mid, None);
        let expected = (1000.0f64 * 4000.0 * 250.0 * 1000.0).powf(0.25);
        assert!(close(rates.output_tokens_per_second, expected), "{rates:?}");
        // Along one edge: between 1000 and 4000 at the output's midpoint, 2000.
        let rates = grid().at(100.0, mid, None);
        assert!(close(rates.output_tokens_per_second, 2000.0), "{rates:?}");
    }

    #[test]
    fn outside_the_grid_the_edge_holds() {
        let profile = grid();
        let at = |i, o| profile.at(i, o, None);
        assert_eq!(at(10.0, 10.0), at(100.0, 100.0));
        assert_eq!(at(1e6, 1e6), at(1000.0, 1000.0));
        assert_eq!(at(f64::NAN, 100.0), at(100.0, 100.0));
        // A grid without shares reads the same at any share.
        assert_eq!(profile.at(300.0, 300.0, Some(0.5)), at(300.0, 300.0));
    }

    #[test]
    fn an_incomplete_or_repeated_grid_is_refused_naming_the_point() {
        let missing = CapacityProfile::from_points(&[
            point(100.0, 100.0, 1.0, 1.0),
            point(100.0, 1000.0, 1.0, 1.0),
            point(1000.0, 100.0, 1.0, 1.0),
        ])
        .unwrap_err();
        assert!(
            missing.contains("input_tokens 1000 and output_tokens 1000"),
            "{missing}"
        );
        let repeated = CapacityProfile::from_points(&[
            point(100.0, 100.0, 1.0, 1.0),
            point(100.0, 100.0, 2.0, 1.0),
        ])
        .unwrap_err();
        assert!(repeated.contains("2 points"), "{repeated}");
        assert!(CapacityProfile::from_points(&[]).is_err());
    }

    fn at_share(mut p: ProfilePoint, share: f64) -> ProfilePoint {
        p.short_output_share = Some(Share(share));
        p
    }

    /// The 1000-token row at two shares of short answers in its 100-token cell.
    fn with_shares() -> CapacityProfile {
        CapacityProfile::from_points(&[
            point(100.0, 100.0, 1000.0, 1000.0),
            point(100.0, 1000.0, 4000.0, 400.0),
            at_share(point(1000.0, 100.0, 400.0, 4000.0), 0.0),
            at_share(point(1000.0, 100.0, 100.0, 1000.0), 0.2),
            point(1000.0, 1000.0, 1000.0, 1000.0),
        ])
        .unwrap()
    }

    #[test]
    fn a_cell_with_shares_reads_between_them_and_holds_outside() {
        let profile = with_shares();
        assert!(profile.reads_short_share());
        assert!(!grid().reads_short_share());
        let input = |share| profile.at(1000.0, 100.0, share).input_tokens_per_second;
        assert!(close(input(Some(0.0)), 4000.0));
        assert!(close(input(Some(0.2)), 1000.0));
        // Halfway in share: the geometric mean, 2000.
        assert!(close(input(Some(0.1)), 2000.0), "{}", input(Some(0.1)));
        assert!(close(input(Some(0.9)), 1000.0));
        // Unknown: the highest share's point, the side that costs replicas, not the SLO.
        assert!(close(input(None), 1000.0));
        assert!(close(input(Some(f64::NAN)), 1000.0));
        // Between rows, each cell is read at the share first: halfway in log space
        // between the 100-token row's 1000 and the cell's 2000 at share 0.1.
        let mid = (100.0f64 * 1000.0).sqrt();
        let between = profile.at(mid, 100.0, Some(0.1)).input_tokens_per_second;
        assert!(close(between, (1000.0f64 * 2000.0).sqrt()), "{between}");
    }

    #[test]
    fn shares_in_a_cell_must_be_distinct_and_all_given() {
        let repeated = CapacityProfile::from_points(&[
            at_share(point(100.0, 100.0, 1.0, 1.0), 0.1),
            at_share(point(100.0, 100.0, 2.0, 1.0), 0.1),
        ])
        .unwrap_err();
        assert!(
            repeated.contains("2 points at short_output_share 0.1")
                && repeated.contains("input_tokens 100 and output_tokens 100"),
            "{repeated}"
        );
        let mixed = CapacityProfile::from_points(&[
            point(100.0, 100.0, 1.0, 1.0),
            at_share(point(100.0, 100.0, 2.0, 1.0), 0.1),
        ])
        .unwrap_err();
        assert!(mixed.contains("one without short_output_share"), "{mixed}");
    }
}
