//! The report: `results.json`, two SVG plots (send latency and throughput over time, fault
//! windows shaded; drawn with `plotters`' SVG backend, no font rendering) and, for a
//! suite, a Markdown summary table.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::checker::{Analysis, Window};
use crate::history::{Event, Kind, F};

/// One line of a plot: its legend, colour and (seconds, value) points; a NaN value is a gap.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Fault windows shaded behind the lines.
const FAULT: RGBColor = RGBColor(244, 180, 180);

/// An SVG line chart over `0..x_max` seconds and `y_axis` (spanning `y_min..y_max`, linear
/// or logarithmic), fault windows shaded; values outside are clipped.
fn chart<Y>(
    title: &str,
    y_label: &str,
    x_max: f64,
    (y_min, y_max): (f64, f64),
    y_axis: Y,
    windows: &[Window],
    series: Vec<Series<'_>>,
) -> anyhow::Result<String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let x_max = x_max.max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, y_axis)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("seconds")
            .y_desc(y_label)
            .draw()?;
        chart.draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [(w.start / 1000.0, y_min), (w.stop / 1000.0, y_max)],
                FAULT.mix(0.5).filled(),
            )
        }))?;
        for (label, color, points) in series {
            let mut runs = points.split(|p| p.1.is_nan()).filter(|r| !r.is_empty());
            let clamp = |r: &[(f64, f64)]| {
                let v: Vec<_> = r.iter().map(|&(x, y)| (x, y.clamp(y_min, y_max))).collect();
                LineSeries::new(v, color)
            };
            if let Some(first) = runs.next() {
                chart
                    .draw_series(clamp(first))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
            for run in runs {
                chart.draw_series(clamp(run))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Send latency per 250 ms bucket (median and max) and ok sends / deliveries per second.
///
/// # Errors
/// Plotting failed (it should not: everything is drawn into strings).
pub fn plots(events: &[Event], a: &Analysis) -> anyhow::Result<(String, String)> {
    let end_s = events.last().map_or(1.0, |e| e.t / 1000.0);
    let mut invoke: BTreeMap<u64, f64> = BTreeMap::new();
    let mut buckets: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut sent: BTreeMap<u64, u64> = BTreeMap::new();
    let mut recv: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        match (e.f, e.kind, e.id) {
            (F::Send, Kind::Invoke, Some(id)) => {
                invoke.insert(id, e.t);
            }
            (F::Send, Kind::Ok, Some(id)) => {
                if let Some(t0) = invoke.get(&id) {
                    buckets
                        .entry((e.t / 250.0) as u64)
                        .or_default()
                        .push(e.t - t0);
                }
                *sent.entry((e.t / 1000.0) as u64).or_default() += 1;
            }
            (F::Recv, Kind::Ok, _) => *recv.entry((e.t / 1000.0) as u64).or_default() += 1,
            _ => {}
        }
    }
    // A bucket without any acknowledged send is a gap in the lines, not a slope.
    let mut p50 = Vec::new();
    let mut max = Vec::new();
    let last = buckets.keys().next_back().copied().unwrap_or(0);
    for b in 0..=last {
        let t = b as f64 * 0.25;
        let (m, x) = match buckets.get_mut(&b) {
            Some(v) => {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[v.len() - 1])
            }
            None => (f64::NAN, f64::NAN),
        };
        p50.push((t, m));
        max.push((t, x));
    }
    // Logarithmic: millisecond sends and second-long failovers on one chart.
    let y = (0.1, a.send_latency.max.max(1.0) * 1.5);
    let lat = chart(
        "send latency over time, log scale (shaded: faults)",
        "ms",
        end_s,
        y,
        (y.0..y.1).log_scale(),
        &a.windows,
        vec![
            ("max per 250 ms", RGBColor(208, 140, 0), max),
            ("median per 250 ms", RGBColor(31, 78, 153), p50),
        ],
    )?;
    // Every second of the run, zero when nothing was acknowledged or delivered.
    let per_s = |m: &BTreeMap<u64, u64>| {
        (0..=end_s as u64)
            .map(|s| (s as f64, m.get(&s).copied().unwrap_or(0) as f64))
            .collect::<Vec<_>>()
    };
    let (s, r) = (per_s(&sent), per_s(&recv));
    let y_max = s.iter().chain(r.iter()).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let thr = chart(
        "throughput (shaded: faults)",
        "msgs/s",
        end_s,
        (0.0, y_max),
        0.0..y_max,
        &a.windows,
        vec![
            ("acknowledged sends", RGBColor(31, 78, 153), s),
            ("deliveries", RGBColor(46, 139, 87), r),
        ],
    )?;
    Ok((lat, thr))
}

/// Writes `results.json`, `latency.svg` and `throughput.svg` into `dir`.
///
/// # Errors
/// A file could not be written.
pub fn write(
    dir: &Path,
    config: serde_json::Value,
    events: &[Event],
    a: &Analysis,
) -> anyhow::Result<()> {
    let results = serde_json::json!({
        "config": config,
        "valid": a.valid(),
        "verdict": a.verdict(),
        "analysis": a,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    write_plots(dir, events, a)
}

/// Writes `latency.svg` and `throughput.svg` into `dir`.
///
/// # Errors
/// Plotting or writing failed.
pub fn write_plots(dir: &Path, events: &[Event], a: &Analysis) -> anyhow::Result<()> {
    let (lat, thr) = plots(events, a)?;
    std::fs::write(dir.join("latency.svg"), lat)?;
    std::fs::write(dir.join("throughput.svg"), thr)?;
    Ok(())
}

/// One row of the suite's Markdown table.
pub fn table_row(nemesis: &str, a: &Analysis) -> String {
    format!(
        "| {nemesis} | {} | {}{} | {} | {} | {} | {} ({:.2}%) | {} | {:.2}% | {:.2}% | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.1} / {:.1} |",
        if a.valid() { "valid" } else { "**INVALID**" },
        a.ok,
        if a.rolled_back > 0 {
            format!(" ({} rolled back)", a.rolled_back)
        } else {
            String::new()
        },
        a.lost.len(),
        a.unexpected.len(),
        a.reordered.len(),
        a.duplicated,
        a.duplicate_rate * 100.0,
        a.windows.len(),
        a.fail_rate * 100.0,
        a.unknown_rate * 100.0,
        a.unavailability.p50,
        a.unavailability.p99,
        a.unavailability.max,
        a.stall.p50,
        a.stall.max,
        a.send_latency.p50,
        a.send_latency.p99,
    )
}

/// The header of the suite's Markdown table.
pub fn table_header() -> String {
    "| nemesis | verdict | acked sends | lost | unexpected | reordered | duplicated | faults | failed sends | unknown sends | unavailability p50 / p99 / max ms | longest write stall p50 / max ms | send latency p50 / p99 ms |\n\
     |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::check;

    #[test]
    fn plots_are_svg_with_the_faults_shaded() {
        let mut h = Vec::new();
        for id in 0..40u64 {
            let t = id as f64 * 100.0;
            let mut e = Event::new(t, "p0", Kind::Invoke, F::Send);
            e.id = Some(id);
            h.push(e.clone());
            e.t = t + 5.0;
            e.kind = Kind::Ok;
            h.push(e.clone());
            e.t = t + 20.0;
            e.f = F::Recv;
            h.push(e);
        }
        for (t, kind) in [(1000.0, Kind::Invoke), (2000.0, Kind::Ok)] {
            let mut e = Event::new(t, "nemesis", kind, F::Nemesis);
            e.nemesis = Some("kill-leader n1".into());
            h.push(e);
        }
        h.sort_by(|x, y| x.t.total_cmp(&y.t));
        let a = check(&h, false);
        assert_eq!(a.windows.len(), 1);
        // The console's chaos report viewer (console/src/reports.rs) reads these files and
        // these fields; design §2 keeps the crates apart, so the contract is spelled here.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = serde_json::json!({"nemesis": "kill-leader", "workload": "queue"});
        write(dir.path(), config, &h, &a).expect("report");
        for plot in ["latency.svg", "throughput.svg"] {
            assert!(dir.path().join(plot).is_file(), "{plot}");
        }
        let results: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("results.json")).expect("results.json"),
        )
        .expect("results.json is JSON");
        assert_eq!(results["valid"].as_bool(), Some(a.valid()));
        assert!(results["verdict"].is_string());
        assert_eq!(results["config"]["nemesis"], "kill-leader");
        let an = &results["analysis"];
        assert_eq!(an["ok"].as_u64(), Some(a.ok as u64));
        for list in ["lost", "unexpected", "reordered", "windows"] {
            assert!(an[list].is_array(), "analysis.{list}");
        }
        assert_eq!(an["windows"].as_array().map(Vec::len), Some(1));
        for (p, q) in [
            ("stall", "max"),
            ("unavailability", "p50"),
            ("unavailability", "p99"),
            ("unavailability", "max"),
            ("send_latency", "p50"),
            ("send_latency", "p99"),
        ] {
            assert!(an[p][q].is_number(), "analysis.{p}.{q}");
        }
        let (lat, thr) = plots(&h, &a).expect("plots");
        for (svg, legend) in [(&lat, "median per 250 ms"), (&thr, "acknowledged sends")] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains(legend));
            assert!(
                svg.to_ascii_uppercase().contains("#F4B4B4"),
                "no fault shading"
            );
        }
    }
}
