//! A load test's results as measurements: one CSV row a step (one mix at one request
//! rate), with the fleet's token rates and latency percentiles during the step.
//!
//! Columns, by name, in any order (others are ignored, so a table of flattened
//! `vllm bench serve --save-result` results can be given as it is):
//! - `input_tokens`, `output_tokens`: the step's mean prompt and output tokens per
//!   request, the profile point it measures;
//! - `replicas` (optional, default 1): replicas behind the load balancer;
//! - `short_output_share` (optional): the share of requests whose answers had
//!   `capacity.short_output_min_tokens` to `capacity.short_output_tokens` tokens; with
//!   it, each mix gets a point per share;
//! - `output_tokens_per_second`, `input_tokens_per_second`: what they served together;
//! - `p<P>_ttft_ms`, `p<P>_tpot_ms`: the latency percentiles, P the target share in
//!   percent (`p99_ttft_ms` for `--target 0.99`, `p99.9_ttft_ms` for 0.999), as vLLM's
//!   benchmark names them.

use std::path::Path;

use super::fit::{Grid, Measurement};

/// The largest load-test file read: far more rows than any load test has.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The SLO thresholds and the share of requests that must meet them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// TTFT threshold, seconds.
    pub ttft: f64,
    /// TPOT threshold, seconds.
    pub tpot: f64,
    /// The share, such as 0.99: picks the percentile columns.
    pub target: f64,
}

/// The steps of the load test at `path`, and the grid of the mixes they measure.
pub fn read(path: &Path, judged: Judged) -> Result<(Grid, Vec<Measurement>), String> {
    let name = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read load test {name}: {e}"))?
        .len();
    if size > MAX_BYTES {
        return Err(format!(
            "load test {name} is {size} bytes: at most {MAX_BYTES} are read"
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("cannot read load test {name}: {e}"))?;
    let measurements = parse(&text, judged).map_err(|e| format!("load test {name}: {e}"))?;
    let grid = Grid::new(
        measurements.iter().map(|m| m.input_tokens).collect(),
        measurements.iter().map(|m| m.output_tokens).collect(),
    )
    .with_shares(
        measurements
            .iter()
            .filter_map(|m| m.short_output_share)
            .collect(),
    );
    Ok((grid, measurements))
}

/// The percentile in a column's name: 99 for 0.99, 99.9 for 0.999.
fn percentile(target: f64) -> String {
    format!("p{}", (target * 100.0 * 1e6).round() / 1e6)
}

/// The measurements of a CSV text.
fn parse(text: &[u8], judged: Judged) -> Result<Vec<Measurement>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| format!("cannot read the header: {e}"))?
        .clone();
    let p = percentile(judged.target);
    let (ttft_column, tpot_column) = (format!("{p}_ttft_ms"), format!("{p}_tpot_ms"));
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "has no column `{name}`: expected input_tokens, output_tokens, output_tokens_per_second, input_tokens_per_second, {ttft_column}, {tpot_column} (the percentile follows --target; vllm bench serve reports it with --metric-percentiles) and optionally replicas and short_output_share"
            )
        })
    };
    let columns = [
        column("input_tokens")?,
        column("output_tokens")?,
        column("output_tokens_per_second")?,
        column("input_tokens_per_second")?,
        column(&ttft_column)?,
        column(&tpot_column)?,
    ];
    let replicas = headers.iter().position(|h| h == "replicas");
    let share = headers.iter().position(|h| h == "short_output_share");
    let mut measurements = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("cannot read a row: {e}"))?;
        let line = record.position().map_or(0, csv::Position::line);
        let value = |index: usize, positive: bool| {
            let field = record.get(index).unwrap_or("");
            let name = &headers[index];
            match field.parse::<f64>() {
                Ok(v) if v.is_finite() && (v > 0.0 || (!positive && v == 0.0)) => Ok(v),
                _ => Err(format!(
                    "line {line}: {name} `{}` is not a number {}",
                    crate::source::truncated(field),
                    if positive { "above 0" } else { "of 0 or more" }
                )),
            }
        };
        let [input, output, out_rate, in_rate, ttft, tpot] = columns;
        let per_replica = match replicas {
            None => 1.0,
            Some(index) => {
                let n = value(index, true)?;
                if n.fract() != 0.0 || n > 10_000.0 {
                    return Err(format!(
                        "line {line}: replicas `{n}` is not a whole number from 1 to 10000"
                    ));
                }
                n
            }
        };
        let short_output_share = match share {
            None => None,
            Some(index) => match value(index, false)? {
                s if s <= 1.0 => Some(s),
                s => {
                    return Err(format!(
                        "line {line}: short_output_share `{s}` is not a share from 0 to 1"
                    ));
                }
            },
        };
        let ttft_held = value(ttft, false)? <= judged.ttft * 1000.0;
        measurements.push(Measurement {
            input_tokens: value(input, true)?,
            output_tokens: value(output, true)?,
            output_tokens_per_second: value(out_rate, false)? / per_replica,
            input_tokens_per_second: value(in_rate, false)? / per_replica,
            short_output_share,
            ttft_held,
            all_held: ttft_held && value(tpot, false)? <= judged.tpot * 1000.0,
        });
    }
    if measurements.is_empty() {
        return Err("has no rows: expected one a load-test step".to_owned());
    }
    Ok(measurements)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUDGED: Judged = Judged {
        ttft: 2.0,
        tpot: 0.05,
        target: 0.99,
    };

    #[test]
    fn a_step_holds_when_its_percentiles_are_within_the_thresholds() {
        let text = "output_tokens_per_second,input_tokens,output_tokens,replicas,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms,mean_ttft_ms\n\
                    2000,1000,200,2,10000,1500,40,900\n\
                    3000,1000,200,2,15000,1900,55,900\n\
                    4000,1000,200,2,20000,2500,80,900\n";
        let ms = parse(text.as_bytes(), JUDGED).unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].output_tokens_per_second, 1000.0);
        assert_eq!(ms[0].input_tokens_per_second, 5000.0);
        assert!(ms[0].all_held && ms[0].ttft_held);
        assert!(ms[1].ttft_held && !ms[1].all_held);
        assert!(!ms[2].ttft_held && !ms[2].all_held);
    }

    #[test]
    fn the_percentile_columns_follow_the_target() {
        assert_eq!(percentile(0.99), "p99");
        assert_eq!(percentile(0.999), "p99.9");
        assert_eq!(percentile(0.95), "p95");
        let text = "input_tokens,output_tokens,output_tokens_per_second,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms\n1,1,1,1,1,1\n";
        let judged = Judged {
            target: 0.999,
            ..JUDGED
        };
        let error = parse(text.as_bytes(), judged).unwrap_err();
        assert!(error.contains("no column `p99.9_ttft_ms`"), "{error}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_line_and_column() {
        let text = "input_tokens,output_tokens,output_tokens_per_second,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms\n\
                    1000,200,900,4500,100,20\n\
                    1000,-5,900,4500,100,20\n";
        let error = parse(text.as_bytes(), JUDGED).unwrap_err();
        assert_eq!(error, "line 3: output_tokens `-5` is not a number above 0");
        let text = "input_tokens,output_tokens,output_tokens_per_second,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms,replicas\n\
                    1000,200,900,4500,100,20,1.5\n";
        let error = parse(text.as_bytes(), JUDGED).unwrap_err();
        assert!(
            error.contains("line 2: replicas `1.5` is not a whole number"),
            "{error}"
        );
        let error = parse(b"input_tokens\n", JUDGED).unwrap_err();
        assert!(error.contains("no column `output_tokens`"), "{error}");
    }

    #[test]
    fn a_share_column_gives_each_step_its_share_and_refuses_one_above_1() {
        let header = "input_tokens,output_tokens,output_tokens_per_second,input_tokens_per_second,p99_ttft_ms,p99_tpot_ms,short_output_share\n";
        let ms = parse(
            format!("{header}1000,200,900,4500,900,40,0.3\n1000,200,900,4500,900,40,0\n")
                .as_bytes(),
            JUDGED,
        )
        .unwrap();
        let shares: Vec<Option<f64>> = ms.iter().map(|m| m.short_output_share).collect();
        assert_eq!(shares, vec![Some(0.3), Some(0.0)]);
        let error = parse(
            format!("{header}1000,200,900,4500,900,40,1.5\n").as_bytes(),
            JUDGED,
        )
        .unwrap_err();
        assert!(
            error.contains("line 2: short_output_share `1.5` is not a share from 0 to 1"),
            "{error}"
        );
    }
}
