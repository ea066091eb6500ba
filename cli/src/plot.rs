//! `simulate --sweep ... --plot FILE.svg`: the trade-off as a chart, four
//! panels against the swept value (hit rate, served age, upstream calls,
//! upstream 429s), so the knee shows at a glance. SVG only (plotters'
//! SVG backend: no font or image libraries).

use std::path::Path;

use plotters::prelude::*;
use syncoord_sim::Report;

use crate::summary::Summary;

/// One line of a panel: its name, colour and a value per run.
type Series = (&'static str, RGBColor, Vec<f64>);

pub(crate) fn sweep(path: &Path, key: &str, runs: &[(String, Report)]) -> anyhow::Result<()> {
    let summaries: Vec<Summary> = runs.iter().map(|(_, r)| Summary::of(r)).collect();
    // Numbers are placed to scale; anything else (true/false, names)
    // evenly, in the order given.
    let numeric: Option<Vec<f64>> = runs.iter().map(|(v, _)| v.parse::<f64>().ok()).collect();
    let xs: Vec<f64> = match &numeric {
        Some(v) => v.clone(),
        None => (0..runs.len()).map(|i| i as f64).collect(),
    };
    let labels: Vec<String> = runs.iter().map(|(v, _)| v.clone()).collect();
    let col = |f: fn(&Summary) -> f64| summaries.iter().map(f).collect::<Vec<f64>>();
    let panels: [(&str, Vec<Series>); 4] = [
        (
            "cache hit rate (%)",
            vec![
                ("fresh + stale", BLUE, col(|s| s.hit_rate * 100.0)),
                (
                    "stale (of reads)",
                    RGBColor(230, 140, 0),
                    col(|s| s.stale_share * 100.0),
                ),
            ],
        ),
        (
            "served age (s)",
            vec![
                ("p50", BLUE, col(|s| s.age_p50)),
                ("p99", RED, col(|s| s.age_p99)),
            ],
        ),
        (
            "upstream calls per minute",
            vec![
                (
                    "busiest bucket's budget",
                    RGBColor(120, 120, 120),
                    col(|s| s.budget_per_min),
                ),
                ("calls/min", BLUE, col(|s| s.calls_per_min)),
            ],
        ),
        (
            "upstream 429s",
            vec![("429s", RED, col(|s| s.upstream_429s as f64))],
        ),
    ];
    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let hours = runs
        .first()
        .map_or(0.0, |(_, r)| r.simulated.as_secs_f64() / 3600.0);
    let bots = runs.first().map_or(0, |(_, r)| r.bots);
    let root = root.titled(
        &format!("syncoord simulate --sweep {key}  ({hours:.0} virtual h, {bots} bots)"),
        ("sans-serif", 18),
    )?;
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let pad = ((hi - lo) * 0.05).max(0.5);
    let x_range = (lo - pad)..(hi + pad);
    let short = key.rsplit('.').next().unwrap_or(key).to_owned();
    for (area, (title, series)) in root.split_evenly((2, 2)).iter().zip(panels) {
        let top = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .fold(0.0f64, f64::max);
        let y_top = if top > 0.0 { top * 1.12 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range.clone(), 0f64..y_top)?;
        let formatter = |x: &f64| -> String {
            if numeric.is_some() {
                format!("{x}")
            } else {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(short.as_str()).x_label_formatter(&formatter);
        if numeric.is_none() {
            mesh.x_labels(labels.len() * 2 + 1);
        }
        mesh.draw()?;
        for (name, color, values) in series {
            let points: Vec<(f64, f64)> = xs.iter().copied().zip(values).collect();
            let legend =
                move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 18, y)], color);
            if name.contains("budget") {
                // A limit, not a measurement: dashed, no points.
                chart
                    .draw_series(DashedLineSeries::new(points, 8, 5, color.stroke_width(2)))?
                    .label(name)
                    .legend(legend);
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(legend);
            chart.draw_series(PointSeries::of_element(
                points,
                4,
                color.filled(),
                &|c, s, st| Circle::new(c, s, st),
            ))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// `simulate --plot FILE.svg` without a sweep: the learning curve, upstream
/// 429s past its limits per minute of the run (how fast the limiter found
/// upstream's real limits, and how often it probes past them after).
pub(crate) fn learning(path: &Path, workload: &str, report: &Report) -> anyhow::Result<()> {
    let minutes = (report.span.as_secs_f64() / 60.0).ceil().max(1.0);
    let points: Vec<(f64, f64)> = report
        .learning_curve
        .iter()
        .enumerate()
        .map(|(m, n)| (m as f64, f64::from(*n)))
        .collect();
    let top = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "syncoord simulate {workload}: upstream 429s per minute ({} in all, {:.0} virtual h, {} bots)",
        report.upstream_429s,
        report.simulated.as_secs_f64() / 3600.0,
        report.bots
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..minutes, 0f64..(top * 1.15).max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("minute of the run")
        .y_desc("429s")
        .draw()?;
    chart.draw_series(
        points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(x, y)| Rectangle::new([(x, 0.0), (x + 1.0, y)], RED.filled())),
    )?;
    root.present()?;
    Ok(())
}
