//! Charts: produce and consume throughput, follower lag and consumer-group lag, drawn by
//! uPlot in the browser from the sampler's bounded ring ([`crate::sampler::History`]).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::auth::Session;
use crate::sampler::Point;
use crate::view::{cluster, html, Nav, ViewResult};
use crate::AppState;

#[derive(Debug, Template)]
#[template(path = "charts.html")]
struct Charts {
    nav: Nav,
}

/// `GET /c/{c}/charts`.
pub(crate) async fn page(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path(c): Path<usize>,
) -> ViewResult {
    cluster(&s, c)?;
    html(&Charts {
        nav: Nav::new(&s, c, &me, "charts"),
    })
}

/// The ring as uPlot's columns: x in seconds since the epoch, one array per series
/// (`null` where a sample had no value).
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct Columns {
    /// Sample times, s since the epoch.
    pub t: Vec<f64>,
    /// Messages stored per second.
    pub produced: Vec<f64>,
    /// Messages pulled per second.
    pub consumed: Vec<f64>,
    /// Largest follower lag, entries.
    pub follower_lag: Vec<u64>,
    /// Summed consumer-group lag, on the samples it was taken.
    pub group_lag: Vec<Option<u64>>,
}

impl Columns {
    /// Columns of `points`, oldest first.
    pub fn of(points: &[Point]) -> Self {
        let mut c = Self::default();
        for p in points {
            c.t.push(p.at_ms as f64 / 1000.0);
            c.produced.push(p.produced_per_s);
            c.consumed.push(p.consumed_per_s);
            c.follower_lag.push(p.max_follower_lag);
            c.group_lag.push(p.group_lag);
        }
        c
    }
}

/// `GET /c/{c}/charts.json`.
pub(crate) async fn data(State(s): State<AppState>, Path(c): Path<usize>) -> Response {
    match cluster(&s, c) {
        Ok(cl) => Json(Columns::of(&cl.history.points())).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_become_columns() {
        let p = |at_ms, group_lag| Point {
            at_ms,
            produced_per_s: 2.5,
            consumed_per_s: 1.0,
            max_follower_lag: 3,
            group_lag,
        };
        let c = Columns::of(&[p(1500, None), p(2500, Some(7))]);
        assert_eq!(c.t, vec![1.5, 2.5]);
        assert_eq!(c.group_lag, vec![None, Some(7)]);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"group_lag\":[null,7]"), "{json}");
    }
}
