//! The Prometheus text format (version 0.0.4): samples gathered into families, each family
//! rendered once with its `# HELP` and `# TYPE` lines however many sources added to it
//! (`raftmq dev` serves three nodes and a NameServer from one endpoint).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::histogram::Snapshot;

/// The `Content-Type` of [`Exposition::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Any value at scrape time.
    Gauge,
    /// Cumulative buckets, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of a sample, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Vec<(&'static str, String)>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// These labels plus `name="value"`.
    #[must_use]
    pub fn with(&self, name: &'static str, value: impl Into<String>) -> Self {
        let mut l = self.clone();
        l.0.push((name, value.into()));
        l
    }

    /// `{a="1",b="2"}` (empty without labels), with `extra` appended.
    fn render(&self, extra: Option<(&str, &str)>) -> String {
        let pairs = self
            .0
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra)
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", pairs.join(","))
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float the way Prometheus writes them (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    lines: Vec<String>,
}

/// Samples being gathered for one scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
}

impl Exposition {
    /// Nothing gathered yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        let f = self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            lines: Vec::new(),
        });
        debug_assert_eq!(f.kind, kind, "{name} added as two kinds");
        f
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, v: f64) {
        let line = format!("{name}{} {}", labels.render(None), float(v));
        self.family(name, help, Kind::Gauge).lines.push(line);
    }

    /// A counter sample; `name` ends in `_total`.
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, v: u64) {
        debug_assert!(name.ends_with("_total"), "counter {name} lacks _total");
        let line = format!("{name}{} {v}", labels.render(None));
        self.family(name, help, Kind::Counter).lines.push(line);
    }

    /// A histogram's buckets, sum and count.
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &Labels,
        h: &Snapshot,
    ) {
        let f = self.family(name, help, Kind::Histogram);
        let mut cumulative = 0;
        for (le, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            let le = float(*le);
            f.lines.push(format!(
                "{name}_bucket{} {cumulative}",
                labels.render(Some(("le", &le)))
            ));
        }
        f.lines.push(format!(
            "{name}_bucket{} {}",
            labels.render(Some(("le", "+Inf"))),
            h.count
        ));
        f.lines.push(format!(
            "{name}_sum{} {}",
            labels.render(None),
            float(h.sum)
        ));
        f.lines
            .push(format!("{name}_count{} {}", labels.render(None), h.count));
    }

    /// Adds every sample of `other` (another source's) to this one.
    pub fn merge(&mut self, other: Exposition) {
        for (name, f) in other.families {
            self.family(name, f.help, f.kind).lines.extend(f.lines);
        }
    }

    /// The names of the families gathered.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.families.keys().copied()
    }

    /// The text format, families sorted by name.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            for l in &f.lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use std::time::Duration;

    #[test]
    fn families_from_several_sources_render_once_with_escaped_labels() {
        let node = |n: &str| Labels::new().with("node", n);
        let mut a = Exposition::new();
        a.gauge("raftmq_raft_term", "Current term.", &node("1"), 3.0);
        let mut b = Exposition::new();
        b.gauge("raftmq_raft_term", "Current term.", &node("2"), 3.0);
        b.counter(
            "raftmq_messages_produced_total",
            "Messages stored.",
            &node("2").with("topic", "a\"b\\c\nd"),
            7,
        );
        a.merge(b);
        assert_eq!(
            a.render(),
            "# HELP raftmq_messages_produced_total Messages stored.\n\
             # TYPE raftmq_messages_produced_total counter\n\
             raftmq_messages_produced_total{node=\"2\",topic=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP raftmq_raft_term Current term.\n\
             # TYPE raftmq_raft_term gauge\n\
             raftmq_raft_term{node=\"1\"} 3\n\
             raftmq_raft_term{node=\"2\"} 3\n"
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.record(Duration::from_micros(500));
        h.record(Duration::from_millis(5));
        h.record(Duration::from_millis(5));
        h.record(Duration::from_secs(2));
        let mut e = Exposition::new();
        e.histogram("x_seconds", "X.", &Labels::new(), &h.snapshot());
        assert_eq!(
            e.render(),
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{le=\"0.001\"} 1\nx_seconds_bucket{le=\"0.01\"} 3\n\
             x_seconds_bucket{le=\"+Inf\"} 4\nx_seconds_sum 2.0105\nx_seconds_count 4\n"
        );
    }

    #[test]
    fn special_floats_use_prometheus_spellings() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(1_000_000.0), "1000000");
        assert_eq!(float(0.25), "0.25");
    }
}
