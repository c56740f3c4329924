//! `capacity.profile`: what one replica sustains within its SLOs for each mix of mean
//! prompt and output lengths, so that the throughput terms follow the traffic's mix
//! instead of holding for the one mix a fixed number was measured on.

use serde::Deserialize;

use super::values::Positive;

/// One measured mix, as `keda-llm-scaler calibrate` prints it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePoint {
    /// Mean prompt tokens per request.
    pub input_tokens: Positive,
    /// Mean output tokens per request.
    pub output_tokens: Positive,
    /// Output tokens per second one replica sustains at this mix.
    pub output_tokens_per_second: Positive,
    /// Input tokens per second one replica sustains at this mix.
    pub input_tokens_per_second: Positive,
}

/// A complete grid of points, for lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityProfile {
    /// Distinct mean prompt lengths, ascending.
    inputs: Vec<f64>,
    /// Distinct mean output lengths, ascending.
    outputs: Vec<f64>,
    /// Per (input, output), row by input: (output, input) tokens per second.
    rates: Vec<(f64, f64)>,
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
    /// length, once each. The error says what is missing or repeated.
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
        let mut rates = Vec::with_capacity(inputs.len() * outputs.len());
        for &input in &inputs {
            for &output in &outputs {
                let at: Vec<&ProfilePoint> = points
                    .iter()
                    .filter(|p| p.input_tokens.0 == input && p.output_tokens.0 == output)
                    .collect();
                match at.as_slice() {
                    [one] => rates.push((
                        one.output_tokens_per_second.0,
                        one.input_tokens_per_second.0,
                    )),
                    [] => {
                        return Err(format!(
                            "has no point for input_tokens {input} and output_tokens {output}: every input length needs every output length (a full grid, as `keda-llm-scaler calibrate` prints)"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "has {} points for input_tokens {input} and output_tokens {output}: expected one",
                            at.len()
                        ));
                    }
                }
            }
        }
        Ok(Self {
            inputs,
            outputs,
            rates,
        })
    }

    /// The rates at mean lengths `(input, output)`: bilinear in the logarithms of the
    /// lengths and of the rates (capacity falls roughly as a power of the prompt length),
    /// held at the grid's edge outside it.
    pub fn at(&self, input: f64, output: f64) -> Rates {
        let (i0, i1, ti) = bracket(&self.inputs, input);
        let (o0, o1, to) = bracket(&self.outputs, output);
        let at = |i: usize, o: usize| self.rates[i * self.outputs.len() + o];
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
        let rates = grid().at(1000.0, 100.0);
        assert!(close(rates.output_tokens_per_second, 250.0), "{rates:?}");
        assert!(close(rates.input_tokens_per_second, 2500.0), "{rates:?}");
    }

    #[test]
    fn between_points_rates_interpolate_geometrically() {
        // Halfway in log space on both axes: the geometric mean of the four corners.
        let mid = (100.0f64 * 1000.0).sqrt();
        let rates = grid().at(mid, mid);
        let expected = (1000.0f64 * 4000.0 * 250.0 * 1000.0).powf(0.25);
        assert!(close(rates.output_tokens_per_second, expected), "{rates:?}");
        // Along one edge: between 1000 and 4000 at the output's midpoint, 2000.
        let rates = grid().at(100.0, mid);
        assert!(close(rates.output_tokens_per_second, 2000.0), "{rates:?}");
    }

    #[test]
    fn outside_the_grid_the_edge_holds() {
        let profile = grid();
        assert_eq!(profile.at(10.0, 10.0), profile.at(100.0, 100.0));
        assert_eq!(profile.at(1e6, 1e6), profile.at(1000.0, 1000.0));
        assert_eq!(profile.at(f64::NAN, 100.0), profile.at(100.0, 100.0));
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
}
