//! The chaos report viewer: the runs of `raftmq-jepsen` under the directory given with
//! `raftmq console --reports DIR` (a single run's output directory, a suite's, or a folder
//! of them), each with its verdict, what was lost or unexpected, the write stalls, and its
//! latency and throughput plots.
//!
//! A run is a directory holding `results.json` (written by the harness's `report` module),
//! found at most [`DEPTH`] levels below the root; the plots are served only for runs the
//! scan found, by name, so no request names a path of its own.

use std::path::{Path as FsPath, PathBuf};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use serde_json::Value;

use crate::auth::Session;
use crate::view::{html, Nav, ViewError, ViewResult};
use crate::AppState;

/// How deep below the root runs are looked for (a folder of suites of runs).
pub const DEPTH: usize = 3;
/// Most runs listed.
pub const RUNS_MAX: usize = 500;
/// Largest `results.json` or plot read.
const FILE_MAX: u64 = 32 << 20;
/// The plots a run has.
const PLOTS: [&str; 2] = ["latency", "throughput"];

/// One run, as the list and its page show it.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Its directory relative to the root (`.` for the root itself).
    pub name: String,
    /// `valid`, or why not, as the checker put it.
    pub verdict: String,
    /// Nothing lost, unexpected or reordered.
    pub valid: bool,
    /// Nemesis.
    pub nemesis: String,
    /// Workload.
    pub workload: String,
    /// Acknowledged sends.
    pub acked: u64,
    /// Acknowledged messages never consumed.
    pub lost: usize,
    /// Consumed messages never sent.
    pub unexpected: usize,
    /// Ordering violations.
    pub reordered: usize,
    /// Fault windows.
    pub faults: usize,
    /// The longest write stall over the fault windows, ms.
    pub stall_max_ms: f64,
    /// Unavailability p50 / p99 / max over the fault windows, ms.
    pub unavailable_ms: (f64, f64, f64),
    /// Send latency p50 / p99, ms.
    pub send_ms: (f64, f64),
    /// The run's settings, `key = value`.
    pub config: Vec<(String, String)>,
    /// Which of the plots exist.
    pub plots: Vec<&'static str>,
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

impl Run {
    /// Reads a run's `results.json`; `None` when it is missing or not a harness report.
    fn read(root: &FsPath, dir: &FsPath) -> Option<Self> {
        let path = dir.join("results.json");
        if std::fs::metadata(&path).ok()?.len() > FILE_MAX {
            return None;
        }
        let r: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let a = r.get("analysis")?;
        let config = r.get("config").cloned().unwrap_or_default();
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let rel = dir.strip_prefix(root).ok()?;
        Some(Self {
            name: if rel.as_os_str().is_empty() {
                ".".to_owned()
            } else {
                rel.to_string_lossy().into_owned()
            },
            verdict: text(r.get("verdict").unwrap_or(&Value::Null)),
            valid: r.get("valid").and_then(Value::as_bool).unwrap_or(false),
            nemesis: text(config.get("nemesis").unwrap_or(&Value::Null)),
            workload: text(config.get("workload").unwrap_or(&Value::Null)),
            acked: a["ok"].as_u64().unwrap_or(0),
            lost: len(&a["lost"]),
            unexpected: len(&a["unexpected"]),
            reordered: len(&a["reordered"]),
            faults: len(&a["windows"]),
            stall_max_ms: f(&a["stall"]["max"]),
            unavailable_ms: (
                f(&a["unavailability"]["p50"]),
                f(&a["unavailability"]["p99"]),
                f(&a["unavailability"]["max"]),
            ),
            send_ms: (f(&a["send_latency"]["p50"]), f(&a["send_latency"]["p99"])),
            config: config
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            plots: PLOTS
                .into_iter()
                .filter(|p| dir.join(format!("{p}.svg")).is_file())
                .collect(),
        })
    }
}

/// Every run under `root`, by name (at most [`RUNS_MAX`], [`DEPTH`] levels down).
pub fn scan(root: &FsPath) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut level = vec![root.to_path_buf()];
    for _ in 0..=DEPTH {
        let mut next = Vec::new();
        for dir in level {
            if runs.len() >= RUNS_MAX {
                break;
            }
            if let Some(run) = Run::read(root, &dir) {
                runs.push(run);
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            // Not into symbolic links: the viewer stays under its root.
            next.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        next.sort();
        level = next;
    }
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    runs
}

/// The root, or a 404 saying how to give one.
fn root(s: &AppState) -> Result<&FsPath, ViewError> {
    s.reports.as_deref().ok_or_else(|| {
        ViewError::not_found(
            "no chaos reports here: start the console with --reports DIR (a raftmq-jepsen output directory)",
        )
    })
}

/// A run the scan finds, by name.
fn run_named(root: &FsPath, name: &str) -> Result<(Run, PathBuf), ViewError> {
    scan(root)
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| {
            let dir = if r.name == "." {
                root.to_path_buf()
            } else {
                root.join(&r.name)
            };
            (r, dir)
        })
        .ok_or_else(|| {
            ViewError::not_found(format!(
                "no chaos run named {name:?} under the reports directory"
            ))
        })
}

#[derive(Debug, Template)]
#[template(path = "reports.html")]
struct List {
    nav: Nav,
    root: String,
    runs: Vec<Run>,
    invalid: usize,
}

/// `GET /reports`.
pub(crate) async fn list(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
) -> ViewResult {
    let dir = root(&s)?.to_path_buf();
    let runs = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || scan(&dir)
    })
    .await
    .map_err(|e| ViewError::internal(format!("the report scan failed: {e}")))?;
    html(&List {
        nav: Nav::new(&s, 0, &me, "reports"),
        root: dir.display().to_string(),
        invalid: runs.iter().filter(|r| !r.valid).count(),
        runs,
    })
}

/// Which run (and plot).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RunQuery {
    run: String,
    #[serde(default)]
    plot: String,
}

#[derive(Debug, Template)]
#[template(path = "report.html")]
struct Detail {
    nav: Nav,
    run: Run,
    /// The suite's summary table (`summary.md`), when the run directory is a suite.
    summary: Option<String>,
}

/// `GET /reports/run?run=NAME`.
pub(crate) async fn detail(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Query(q): Query<RunQuery>,
) -> ViewResult {
    let (run, dir) = run_named(root(&s)?, &q.run)?;
    let summary = std::fs::read_to_string(dir.join("summary.md")).ok();
    html(&Detail {
        nav: Nav::new(&s, 0, &me, "reports"),
        run,
        summary,
    })
}

/// `GET /reports/plot?run=NAME&plot=latency|throughput`: the SVG the harness drew.
pub(crate) async fn plot(State(s): State<AppState>, Query(q): Query<RunQuery>) -> ViewResult {
    let (run, dir) = run_named(root(&s)?, &q.run)?;
    let Some(which) = run.plots.iter().find(|p| **p == q.plot) else {
        return Err(ViewError::not_found(format!(
            "run {} has no {:?} plot (it has: {})",
            run.name,
            q.plot,
            run.plots.join(", ")
        )));
    };
    let path = dir.join(format!("{which}.svg"));
    if std::fs::metadata(&path).map_or(true, |m| m.len() > FILE_MAX) {
        return Err(ViewError::not_found(format!(
            "{} is unreadable or too large",
            path.display()
        )));
    }
    let svg = std::fs::read(&path)
        .map_err(|e| ViewError::not_found(format!("{}: {e}", path.display())))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // An SVG opened by itself could run script: never as a document here.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(dir: &FsPath, valid: bool, lost: &[u64]) {
        std::fs::create_dir_all(dir).unwrap();
        let results = serde_json::json!({
            "config": {"nemesis": "kill-leader", "workload": "queue", "nodes": 3},
            "valid": valid,
            "verdict": if valid { "valid".to_owned() } else { format!("{} lost", lost.len()) },
            "analysis": {
                "ok": 1200, "lost": lost, "unexpected": [], "reordered": [],
                "windows": [{}, {}],
                "stall": {"p50": 300.0, "max": 812.5},
                "unavailability": {"p50": 1.0, "p99": 2.0, "max": 3.0},
                "send_latency": {"p50": 4.0, "p99": 9.5},
            },
        });
        std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
        std::fs::write(dir.join("latency.svg"), "<svg/>").unwrap();
    }

    #[test]
    fn a_suite_directory_lists_its_runs_with_their_figures() {
        let root = tempfile::tempdir().unwrap();
        write_run(&root.path().join("suite/kill-leader"), true, &[]);
        write_run(&root.path().join("suite/partition"), false, &[7, 9]);
        std::fs::create_dir_all(root.path().join("suite/empty")).unwrap();
        std::fs::write(root.path().join("suite/not-a-run.json"), "{").unwrap();
        let runs = scan(root.path());
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["suite/kill-leader", "suite/partition"]);
        let bad = &runs[1];
        assert!(!bad.valid);
        assert_eq!((bad.lost, bad.acked, bad.faults), (2, 1200, 2));
        assert_eq!(bad.stall_max_ms, 812.5);
        assert_eq!(bad.plots, ["latency"]);
        assert!(bad.config.contains(&("nodes".to_owned(), "3".to_owned())));
    }

    #[test]
    fn a_single_run_directory_is_its_own_run_and_junk_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        write_run(root.path(), true, &[]);
        std::fs::create_dir_all(root.path().join("cluster")).unwrap();
        std::fs::write(root.path().join("cluster/results.json"), "not json").unwrap();
        let runs = scan(root.path());
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].name, ".");
        assert!(run_named(root.path(), "../etc").is_err());
        assert!(run_named(root.path(), ".").is_ok());
    }
}
