//! The report: `results.json`, two SVG plots (send latency and throughput over time, fault
//! windows shaded) and, for a suite, a Markdown summary table.
//!
//! The SVG is written by hand: a few rectangles and polylines do not justify plotting
//! crates that pull in font rendering (C builds) on our 2-core machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::checker::{Analysis, Window};
use crate::history::{Event, Kind, F};

const W: f64 = 960.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

struct Plot {
    svg: String,
    x_max: f64,
    y_max: f64,
}

impl Plot {
    fn new(title: &str, x_max: f64, y_max: f64, y_label: &str, windows: &[Window]) -> Self {
        let x_max = x_max.max(1.0);
        let y_max = if y_max > 0.0 { y_max } else { 1.0 };
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"11\">\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
             <text x=\"{}\" y=\"18\" font-size=\"14\">{title}</text>",
            LEFT
        );
        let mut p = Self { svg, x_max, y_max };
        for w in windows {
            let (x0, x1) = (p.x(w.start / 1000.0), p.x(w.stop / 1000.0));
            let _ = write!(
                p.svg,
                "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f4b4b4\" opacity=\"0.5\"><title>{}</title></rect>",
                (x1 - x0).max(1.0),
                H - TOP - BOTTOM,
                escape(&w.nemesis)
            );
        }
        let (x0, y0, x1, y1) = (LEFT, H - BOTTOM, W - RIGHT, TOP);
        let _ = write!(
            p.svg,
            "<path d=\"M{x0} {y1} L{x0} {y0} L{x1} {y0}\" stroke=\"black\" fill=\"none\"/>"
        );
        for i in 0..=5 {
            let v = p.y_max * i as f64 / 5.0;
            let y = p.y(v);
            let _ = write!(
                p.svg,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                y + 4.0,
                fmt_num(v)
            );
            let t = p.x_max * i as f64 / 5.0;
            let _ = write!(
                p.svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0}s</text>",
                p.x(t),
                H - BOTTOM + 16.0,
                t
            );
        }
        let _ = write!(p.svg, "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{y_label}</text>", H / 2.0, H / 2.0);
        p
    }

    fn x(&self, secs: f64) -> f64 {
        LEFT + (secs / self.x_max).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - (v / self.y_max).clamp(0.0, 1.0) * (H - TOP - BOTTOM)
    }

    fn line(&mut self, points: &[(f64, f64)], color: &str, label: &str, slot: usize) {
        if points.is_empty() {
            return;
        }
        let mut d = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if i == 0 { "M" } else { " L" },
                self.x(*x),
                self.y(*y)
            );
        }
        let _ = write!(
            self.svg,
            "<path d=\"{d}\" stroke=\"{color}\" fill=\"none\" stroke-width=\"1.2\"/>"
        );
        let lx = W - RIGHT - 170.0;
        let ly = TOP + 14.0 * slot as f64;
        let _ = write!(
            self.svg,
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"10\" height=\"3\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
            ly - 4.0,
            lx + 14.0,
            ly
        );
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Send latency per 250 ms bucket (median and max) and ok sends / deliveries per second.
pub fn plots(events: &[Event], a: &Analysis) -> (String, String) {
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
    let mut p50 = Vec::new();
    let mut max = Vec::new();
    for (b, mut v) in buckets {
        v.sort_by(f64::total_cmp);
        let t = b as f64 * 0.25;
        p50.push((t, v[v.len() / 2]));
        max.push((t, v[v.len() - 1]));
    }
    let y_max = (a.send_latency.p999 * 1.2)
        .max(a.send_latency.p99 * 2.0)
        .max(1.0);
    let mut lat = Plot::new(
        "send latency (ms) over time; shaded: faults",
        end_s,
        y_max,
        "ms",
        &a.windows,
    );
    lat.line(&max, "#d08c00", "max per 250 ms (clipped)", 0);
    lat.line(&p50, "#1f4e99", "median per 250 ms", 1);
    let per_s = |m: &BTreeMap<u64, u64>| {
        m.iter()
            .map(|(s, n)| (*s as f64, *n as f64))
            .collect::<Vec<_>>()
    };
    let (s, r) = (per_s(&sent), per_s(&recv));
    let y_max = s.iter().chain(r.iter()).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut thr = Plot::new(
        "throughput (msgs/s); shaded: faults",
        end_s,
        y_max,
        "msgs/s",
        &a.windows,
    );
    thr.line(&s, "#1f4e99", "acknowledged sends", 0);
    thr.line(&r, "#2e8b57", "deliveries", 1);
    (lat.finish(), thr.finish())
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
    let (lat, thr) = plots(events, a);
    std::fs::write(dir.join("latency.svg"), lat)?;
    std::fs::write(dir.join("throughput.svg"), thr)?;
    Ok(())
}

/// One row of the suite's Markdown table.
pub fn table_row(nemesis: &str, a: &Analysis) -> String {
    format!(
        "| {nemesis} | {} | {} | {} | {} | {} | {} ({:.2}%) | {} | {:.2}% | {:.2}% | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.1} / {:.1} |",
        if a.valid() { "valid" } else { "**INVALID**" },
        a.ok,
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
