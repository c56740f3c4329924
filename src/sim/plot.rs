//! The simulator's plots, drawn with `plotters` as SVG: a backtest's timeline (load, pods
//! per policy, this scaler's demand) and the scorecard's GPU-hours against attainment.
//! SVG leaves the text to the viewer, so the binary needs no font.

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use strum::IntoEnumIterator;

use super::{
    error::SimError,
    run::{Outcome, Policy},
};

/// A drawing area on an SVG document held in memory.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Why a plot could not be drawn (only a broken drawing backend; kept as text).
type DrawResult = Result<(), String>;

/// Room for the longest legend entry, "just-in-time (12,345.6 GPU-h)".
const LEGEND_WIDTH: u32 = 260;

/// One color per policy, in the order [`Policy`] declares.
const COLORS: [RGBColor; 10] = [
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xe3, 0x77, 0xc2),
];

/// The color a policy is drawn in, on every plot.
fn color(policy: Policy) -> RGBColor {
    let index = Policy::iter().position(|p| p == policy).unwrap_or(0);
    COLORS[index]
}

/// A round axis maximum at or above `value`: 1, 2, 2.5 or 5 times a power of ten.
pub(crate) fn nice(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&m| m >= value)
        .unwrap_or(10.0 * magnitude)
}

/// Runs `draw` on a fresh white SVG document of `size` and returns the document.
fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<String, SimError> {
    let mut document = String::new();
    {
        let root = SVGBackend::with_string(&mut document, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| SimError::Plot(e.to_string()))?;
        draw(&root).map_err(SimError::Plot)?;
        root.present().map_err(|e| SimError::Plot(e.to_string()))?;
    }
    Ok(document)
}

/// One legend entry at row `row` of `area`: a swatch in the policy's color and its text.
fn legend_entry(area: &Area, row: u32, swatch: &ShapeStyle, text: &str) -> DrawResult {
    let y = 14 + 18 * row as i32;
    area.draw(&Rectangle::new([(10, y - 2), (30, y + 2)], *swatch))
        .and_then(|()| area.draw(&Text::new(text.to_owned(), (36, y - 6), ("sans-serif", 12))))
        .map_err(|e| e.to_string())
}

/// A backtest's timeline: arrivals per second above, every policy's pods below with this
/// scaler's demand, and a legend with each policy's GPU-hours at the right.
pub fn timeline(title: &str, outcomes: &[Outcome]) -> Result<String, SimError> {
    svg((1160, 540), |root| {
        let root = root
            .titled(title, ("sans-serif", 15).into_font().style(FontStyle::Bold))
            .map_err(|e| e.to_string())?;
        let (plots, legend) = root.split_horizontally(1160 - LEGEND_WIDTH);
        let (load_area, pods_area) = plots.split_vertically(190);
        let end = outcomes
            .iter()
            .flat_map(|o| o.timeline.last().map(|p| p.at))
            .fold(1.0, f64::max);
        let axis = TimeAxis::for_end(end);
        if let Some(first) = outcomes.first() {
            // Every run replays the same arrivals, so the first run's load stands for all.
            let load: Vec<(f64, f64)> = first.timeline.iter().map(|p| (p.at, p.arrivals)).collect();
            let max = nice(load.iter().map(|p| p.1).fold(0.0, f64::max));
            let mut chart = axis.chart(&load_area, "arrivals / s", max)?;
            chart
                .draw_series(LineSeries::new(
                    axis.points(load, max),
                    RGBColor(0x44, 0x44, 0x44),
                ))
                .map_err(|e| e.to_string())?;
        }
        pods_panel(&pods_area, &legend, &axis, outcomes)
    })
}

/// The pods panel of [`timeline`], with its legend.
fn pods_panel(area: &Area, legend: &Area, axis: &TimeAxis, outcomes: &[Outcome]) -> DrawResult {
    let max = nice(
        outcomes
            .iter()
            .flat_map(|o| o.timeline.iter())
            .map(|p| f64::from(p.pods.iter().sum::<u32>()))
            .fold(1.0, f64::max),
    );
    let mut chart = axis.chart(area, "pods (all pools)", max)?;
    let mut row = 0;
    for outcome in outcomes {
        let style = color(outcome.policy).stroke_width(2);
        let pods = outcome
            .timeline
            .iter()
            .map(|p| (p.at, f64::from(p.pods.iter().sum::<u32>())));
        chart
            .draw_series(LineSeries::new(axis.points(pods, max), style))
            .map_err(|e| e.to_string())?;
        let text = format!(
            "{} ({:.1} GPU-h)",
            outcome.policy.as_str(),
            outcome.gpu_hours
        );
        legend_entry(legend, row, &style.filled(), &text)?;
        row += 1;
        if outcome.policy == Policy::Scaler {
            let style = color(outcome.policy).mix(0.5).stroke_width(1);
            let demand = outcome
                .timeline
                .iter()
                .map(|p| (p.at, p.demand.iter().sum::<f64>()));
            chart
                .draw_series(LineSeries::new(axis.points(demand, max), style))
                .map_err(|e| e.to_string())?;
            legend_entry(legend, row, &style.filled(), "scaler demand")?;
            row += 1;
        }
    }
    Ok(())
}

/// The time axis of a timeline: in hours past four hours, in minutes below.
struct TimeAxis {
    /// The last point's time, in `unit`s.
    end: f64,
    /// `h` or `min`.
    unit: &'static str,
    /// Seconds in one `unit`.
    unit_seconds: f64,
}

impl TimeAxis {
    fn for_end(end_seconds: f64) -> Self {
        let (unit, unit_seconds) = if end_seconds > 4.0 * 3600.0 {
            ("h", 3600.0)
        } else {
            ("min", 60.0)
        };
        Self {
            end: end_seconds / unit_seconds,
            unit,
            unit_seconds,
        }
    }

    /// Points at seconds, in the axis' unit, each value held at or below `max`, the top
    /// of its panel: a line above it would cross into the panel above.
    fn points(&self, points: impl IntoIterator<Item = (f64, f64)>, max: f64) -> Vec<(f64, f64)> {
        points
            .into_iter()
            .map(|(t, v)| (t / self.unit_seconds, v.min(max)))
            .collect()
    }

    /// A panel from 0 to the end, and from 0 to `max` on the value axis.
    fn chart<'a, 'b>(
        &self,
        area: &'a Area<'b>,
        label: &str,
        max: f64,
    ) -> Result<
        ChartContext<
            'a,
            SVGBackend<'b>,
            Cartesian2d<
                plotters::coord::types::RangedCoordf64,
                plotters::coord::types::RangedCoordf64,
            >,
        >,
        String,
    > {
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(24)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..self.end, 0.0..max)
            .map_err(|e| e.to_string())?;
        let unit = self.unit;
        chart
            .configure_mesh()
            .y_desc(label)
            .x_labels(9)
            .y_labels(5)
            .light_line_style(WHITE)
            .x_label_formatter(&|t| format!("{t:.1} {unit}"))
            .y_label_formatter(&|v| format!("{}", (v * 100.0).round() / 100.0))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(chart)
    }
}

/// One scorecard panel's points: per policy its GPU-hours and the lower of its two
/// feasible attainments.
pub struct ScorePanel<'a> {
    /// The trace's name.
    pub name: &'a str,
    /// `(policy, GPU-hours, attainment)` per policy.
    pub points: Vec<(Policy, f64, f64)>,
}

/// Per trace a panel: each policy a point of GPU-hours (x) against the lower of its two
/// feasible attainments (y), with the target as a dashed line; a legend at the right.
pub fn scorecard(
    panels: &[ScorePanel],
    policies: &[Policy],
    target: f64,
) -> Result<String, SimError> {
    const PANEL: (u32, u32) = (440, 340);
    let columns = panels.len().clamp(1, 3) as u32;
    let rows = (panels.len() as u32).div_ceil(columns).max(1);
    let size = (columns * PANEL.0 + LEGEND_WIDTH, rows * PANEL.1 + 40);
    svg(size, |root| {
        let title = format!(
            "GPU-hours against feasible attainment (the lower of TTFT and TPOT); target {target}"
        );
        let root = root
            .titled(
                &title,
                ("sans-serif", 15).into_font().style(FontStyle::Bold),
            )
            .map_err(|e| e.to_string())?;
        let (grid, legend) = root.split_horizontally(columns * PANEL.0);
        let cells = grid.split_evenly((rows as usize, columns as usize));
        for (panel, cell) in panels.iter().zip(&cells) {
            score_panel(cell, panel, target)?;
        }
        for (row, policy) in policies.iter().enumerate() {
            let y = 14 + 18 * row as i32;
            legend
                .draw(&Circle::new((20, y), 5, color(*policy).filled()))
                .and_then(|()| {
                    let style = ("sans-serif", 12)
                        .into_text_style(&legend)
                        .pos(Pos::new(HPos::Left, VPos::Center));
                    legend.draw(&Text::new(policy.as_str().to_owned(), (32, y), style))
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// One trace's panel of [`scorecard`].
fn score_panel(area: &Area, panel: &ScorePanel, target: f64) -> DrawResult {
    let x_max = nice(panel.points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.05);
    let y_min = panel.points.iter().map(|p| p.2).fold(target, f64::min);
    let y_min = ((y_min - 0.005) * 100.0).floor() / 100.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            panel.name,
            ("sans-serif", 13).into_font().style(FontStyle::Bold),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_min * 100.0..100.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("GPU-hours")
        .x_labels(5)
        .y_labels(5)
        .light_line_style(WHITE)
        .y_label_formatter(&|v| format!("{v:.1} %"))
        .draw()
        .map_err(|e| e.to_string())?;
    let dashes = (0..40).map(|i| {
        let from = x_max * f64::from(i) / 40.0;
        PathElement::new(
            vec![
                (from, target * 100.0),
                (from + x_max / 80.0, target * 100.0),
            ],
            RGBColor(0x99, 0x99, 0x99),
        )
    });
    chart.draw_series(dashes).map_err(|e| e.to_string())?;
    let points = panel.points.iter().map(|&(policy, gpu_hours, attainment)| {
        Circle::new(
            (gpu_hours, attainment * 100.0),
            5,
            color(policy).mix(0.85).filled(),
        )
    });
    chart.draw_series(points).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_in_hours_past_four_hours_and_values_stay_in_their_panel() {
        let short = TimeAxis::for_end(3600.0);
        assert_eq!((short.unit, short.end), ("min", 60.0));
        let long = TimeAxis::for_end(86_400.0);
        assert_eq!((long.unit, long.end), ("h", 24.0));
        assert_eq!(
            long.points([(7200.0, 3.0), (10_800.0, 12.0)], 10.0),
            [(2.0, 3.0), (3.0, 10.0)]
        );
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(1.2), 2.0);
        assert_eq!(nice(180.0), 200.0);
        assert_eq!(nice(0.0), 1.0);
    }
}
