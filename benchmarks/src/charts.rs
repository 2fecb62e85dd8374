//! One SVG chart per group, drawn with `plotters`' SVG backend (text is
//! emitted as SVG `<text>` elements, so no font files are needed).
//!
//! Bar groups get one panel per unit (or per metric), a bar per runtime
//! at the median with a p10–p90 whisker; groups that span orders of
//! magnitude are drawn relative to runc's medians. Density is a line per
//! runtime over the container count, one panel for host growth and one for
//! attributable memory. The isolation matrix is a grid of checks by
//! runtime, coloured by outcome.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::groups::{Group, GROUPS};
use crate::memory::DENSITY_MEASURES;
use crate::metrics::{self, Metric};
use crate::report::RuntimeResults;

/// Size of a chart panel in pixels.
const PANEL: (u32, u32) = (640, 420);

/// One bar: the median and the p10/p90 whisker.
#[derive(Debug, Clone, Copy)]
struct Bar {
    median: f64,
    low: f64,
    high: f64,
}

/// One panel of bars: categories along x, a bar per runtime in each.
struct BarPanel {
    title: String,
    unit: String,
    categories: Vec<String>,
    /// Runtime label and one bar (if measured) per category.
    series: Vec<(String, Vec<Option<Bar>>)>,
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 4] = [
        RGBColor(0x55, 0x55, 0x55),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    COLORS[i % COLORS.len()]
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// The panels of bar group `g`.
fn bar_panels(g: &Group, runtimes: &[RuntimeResults]) -> Vec<BarPanel> {
    let metrics = metrics::of_group(runtimes.iter().map(|rt| rt.metrics.as_slice()), g.id);
    if metrics.is_empty() {
        return Vec::new();
    }
    // Panels as lists of metrics; relative charts divide by runc's medians.
    let panels: Vec<Vec<&Metric>> = if g.relative_chart {
        vec![metrics.clone()]
    } else if g.panel_per_metric {
        metrics.iter().map(|m| vec![*m]).collect()
    } else {
        let mut units: Vec<&str> = Vec::new();
        for m in &metrics {
            if !units.contains(&m.unit.as_str()) {
                units.push(&m.unit);
            }
        }
        units
            .into_iter()
            .map(|u| metrics.iter().copied().filter(|m| m.unit == u).collect())
            .collect()
    };
    panels
        .into_iter()
        .map(|here| {
            let unit = if g.relative_chart {
                "relative to runc".to_owned()
            } else {
                here[0].unit.clone()
            };
            let series = runtimes
                .iter()
                .map(|rt| {
                    let bars = here
                        .iter()
                        .map(|bm| {
                            let m = rt
                                .metrics
                                .iter()
                                .find(|x| x.group == bm.group && x.name == bm.name)?;
                            let scale = if g.relative_chart {
                                runtimes[0]
                                    .metrics
                                    .iter()
                                    .find(|x| x.group == bm.group && x.name == bm.name)?
                                    .summary
                                    .median
                            } else {
                                1.0
                            };
                            (scale > 0.0).then(|| Bar {
                                median: m.summary.median / scale,
                                low: m.summary.p10 / scale,
                                high: m.summary.p90 / scale,
                            })
                        })
                        .collect();
                    (rt.label.clone(), bars)
                })
                .collect();
            BarPanel {
                title: if g.relative_chart {
                    format!("{} (median / runc median)", g.title)
                } else if g.panel_per_metric {
                    format!("{}: {} ({unit})", g.title, here[0].name)
                } else {
                    format!("{} ({unit})", g.title)
                },
                unit,
                categories: here.iter().map(|m| m.name.clone()).collect(),
                series,
            }
        })
        .collect()
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &BarPanel,
) -> Result<()> {
    let per = p.series.len() + 1;
    let slots = (p.categories.len() * per).max(1) as i32;
    let top = p
        .series
        .iter()
        .flat_map(|(_, bars)| bars.iter().flatten())
        .map(|b| b.high.max(b.median))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mid = (p.series.len() / 2) as i32;
    let names = p.categories.clone();
    let label = move |v: &SegmentValue<i32>| {
        let s = match v {
            SegmentValue::CenterOf(s) | SegmentValue::Exact(s) => *s,
            SegmentValue::Last => return String::new(),
        };
        if s % per as i32 == mid {
            names
                .get((s / per as i32) as usize)
                .cloned()
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d((0..slots).into_segmented(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots as usize)
        .x_label_formatter(&label)
        .x_label_style(("sans-serif", 11))
        .y_desc(p.unit.as_str())
        .draw()
        .map_err(err)?;
    for (i, (name, bars)) in p.series.iter().enumerate() {
        let c = color(i);
        let rects = bars.iter().enumerate().filter_map(|(k, b)| {
            let b = (*b)?;
            let x = (k * per + i) as i32;
            Some(Rectangle::new(
                [
                    (SegmentValue::Exact(x), 0.0),
                    (SegmentValue::Exact(x + 1), b.median),
                ],
                c.filled(),
            ))
        });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        let whiskers = bars.iter().enumerate().filter_map(|(k, b)| {
            let b = (*b)?;
            let x = SegmentValue::CenterOf((k * per + i) as i32);
            Some(PathElement::new(
                vec![(x.clone(), b.low), (x, b.high)],
                BLACK.stroke_width(1),
            ))
        });
        chart.draw_series(whiskers).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Draws the density curves: one panel per measure.
fn draw_density<DB: DrawingBackend>(
    areas: &[DrawingArea<DB, plotters::coord::Shift>],
    runtimes: &[RuntimeResults],
) -> Result<()> {
    for (area, (_, title, f)) in areas.iter().zip(DENSITY_MEASURES) {
        let max_x = runtimes
            .iter()
            .flat_map(|r| r.memory.density.iter().map(|p| p.containers))
            .max()
            .unwrap_or(1) as f64;
        let ys: Vec<f64> = runtimes
            .iter()
            .flat_map(|r| r.memory.density.iter().map(|p| f(p) / 1024.0))
            .collect();
        let lo = ys.iter().copied().fold(0.0_f64, f64::min);
        let hi = ys.iter().copied().fold(1.0_f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_x, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("idle containers")
            .y_desc("MiB")
            .draw()
            .map_err(err)?;
        for (i, rt) in runtimes.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = rt
                .memory
                .density
                .iter()
                .map(|p| (p.containers as f64, f(p) / 1024.0))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(rt.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 12, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Renders group `g` as SVG text; `None` if it has nothing to draw.
fn render(g: &Group, runtimes: &[RuntimeResults]) -> Result<Option<String>> {
    let mut svg = String::new();
    if g.id == "density" {
        if runtimes.iter().all(|r| r.memory.density.is_empty()) {
            return Ok(None);
        }
        {
            let root =
                SVGBackend::with_string(&mut svg, (PANEL.0 * 2, PANEL.1)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            draw_density(&root.split_evenly((1, 2)), runtimes)?;
            root.present().map_err(err)?;
        }
        return Ok(Some(svg));
    }
    let panels = bar_panels(g, runtimes);
    if panels.is_empty() {
        return Ok(None);
    }
    {
        // Wide enough for the category labels of the widest panel.
        let widest = panels.iter().map(|p| p.categories.len()).max().unwrap_or(1) as u32;
        let panel_width = PANEL.0.max(widest * 100);
        let width = panel_width * panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width, PANEL.1)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (area, p) in root.split_evenly((1, panels.len())).iter().zip(&panels) {
            draw_bars(area, p)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// Pixel sizes of the isolation grid: label column, cell, row, header.
const GRID: (i32, i32, i32, i32) = (170, 170, 24, 40);

/// The fill of an isolation cell with outcome `result`.
fn outcome_color(result: &str) -> RGBColor {
    match result {
        "blocked" => RGBColor(0x9e, 0xd8, 0x9e),
        "allowed" => RGBColor(0xf4, 0xa3, 0x8c),
        _ => RGBColor(0xdd, 0xdd, 0xdd),
    }
}

/// Renders the isolation matrix as SVG text; `None` without checks.
fn render_isolation(runtimes: &[RuntimeResults]) -> Result<Option<String>> {
    let mut probes: Vec<&str> = Vec::new();
    for c in runtimes.iter().flat_map(|rt| &rt.isolation) {
        if !probes.contains(&c.probe.as_str()) {
            probes.push(&c.probe);
        }
    }
    if probes.is_empty() {
        return Ok(None);
    }
    let (label_w, cell_w, row_h, head_h) = GRID;
    let width = label_w + cell_w * runtimes.len() as i32 + 10;
    let height = head_h + row_h * probes.len() as i32 + 10;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let font = ("sans-serif", 13).into_font();
        let text = |s: &str, x: i32, y: i32| Text::new(s.to_owned(), (x, y), font.clone());
        for (j, rt) in runtimes.iter().enumerate() {
            let x = label_w + cell_w * j as i32;
            root.draw(&text(&rt.label, x + 6, head_h / 2))
                .map_err(err)?;
        }
        for (i, probe) in probes.iter().enumerate() {
            let y = head_h + row_h * i as i32;
            root.draw(&text(probe, 6, y + 6)).map_err(err)?;
            for (j, rt) in runtimes.iter().enumerate() {
                let x = label_w + cell_w * j as i32;
                let check = rt.isolation.iter().find(|c| c.probe == *probe);
                let result = check.map_or("", |c| c.result.as_str());
                let cell = Rectangle::new(
                    [(x, y), (x + cell_w - 2, y + row_h - 2)],
                    outcome_color(result).filled(),
                );
                root.draw(&cell).map_err(err)?;
                let shown = match check {
                    Some(c) if c.result == "info" => c.detail.clone(),
                    Some(c) => match &c.errno {
                        Some(e) => format!("{} ({e})", c.result),
                        None => c.result.clone(),
                    },
                    None => "–".to_owned(),
                };
                root.draw(&text(&shown, x + 6, y + 6)).map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// Writes `<group>.svg` into `dir` for every group with data, and
/// `isolation.svg`, and returns the file names.
pub fn write_all(runtimes: &[RuntimeResults], dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    if let Some(svg) = render_isolation(runtimes)? {
        let path = dir.join("isolation.svg");
        fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push("isolation.svg".to_owned());
    }
    for g in &GROUPS {
        if let Some(svg) = render(g, runtimes)? {
            let name = format!("{}.svg", g.id);
            let path = dir.join(&name);
            fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            written.push(name);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::Check;
    use crate::memory::{DensityPoint, MemoryResult};
    use crate::metrics::{Collector, Key};

    fn runtime(label: &str, scale: f64) -> RuntimeResults {
        let mut col = Collector::default();
        for g in &GROUPS {
            let key = Key {
                group: g.id,
                name: "a",
                unit: "ms",
                higher_is_better: false,
            };
            col.extend(key, [1.0 * scale, 2.0 * scale, 3.0 * scale]);
            col.push(
                Key {
                    name: "b",
                    unit: "MiB",
                    ..key
                },
                4.0 * scale,
            );
        }
        let density = (1..=3)
            .map(|n| DensityPoint {
                containers: n * 5,
                host_growth_kib: n as f64 * 1000.0 * scale,
                attributable_kib: n as f64 * 900.0 * scale,
            })
            .collect();
        RuntimeResults {
            label: label.to_owned(),
            runtime: format!("io.containerd.{label}.v2"),
            metrics: col.finish(),
            memory: MemoryResult {
                density,
                ..MemoryResult::default()
            },
            isolation: vec![Check {
                probe: "bpf".to_owned(),
                result: "blocked".to_owned(),
                errno: Some("EPERM".to_owned()),
                detail: "refused".to_owned(),
            }],
        }
    }

    #[test]
    fn every_group_is_drawn_as_svg() {
        let runtimes = [runtime("runc", 1.0), runtime("native", 0.5)];
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&runtimes, dir.path()).unwrap();
        assert_eq!(written.len(), GROUPS.len() + 1);
        for name in written {
            let svg = fs::read_to_string(dir.path().join(&name)).unwrap();
            let doc = roxmltree::Document::parse(&svg).unwrap();
            assert_eq!(doc.root_element().tag_name().name(), "svg", "{name}");
            let texts: String = doc
                .descendants()
                .filter(|n| n.has_tag_name("text"))
                .filter_map(|n| n.text())
                .collect();
            assert!(texts.contains("native"), "{name} names no runtime");
        }
    }
}
