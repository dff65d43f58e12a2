//! The console's CSS and JavaScript, embedded in the binary: ours (`console/assets`) and
//! the vendored htmx, its SSE extension and uPlot (`console/assets/vendor`, written by
//! `scripts/vendor-console.sh` with a sha256 `MANIFEST` that a test checks).
//!
//! Each is served at `/assets/NAME?v=HASH`, the first 12 hex digits of its sha256: pages
//! link that URL and the answer may be cached for a year, so a new build's files are
//! fetched at once and an unchanged one never again.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $path:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: [Asset; 6] = [
    asset!("console.css", "console.css", CSS),
    asset!("console.js", "console.js", JS),
    asset!("htmx.min.js", "vendor/htmx.min.js", JS),
    asset!("htmx-sse.min.js", "vendor/htmx-sse.min.js", JS),
    asset!("uPlot.iife.min.js", "vendor/uPlot.iife.min.js", JS),
    asset!("uPlot.min.css", "vendor/uPlot.min.css", CSS),
];

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `/assets/NAME?v=HASH` of every asset, computed once.
static URLS: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let v = &sha256_hex(a.bytes)[..12];
            (a.name, format!("/assets/{}?v={v}", a.name))
        })
        .collect()
});

fn url(name: &str) -> &'static str {
    URLS.iter()
        .find(|(n, _)| *n == name)
        .map_or("/assets/missing", |(_, u)| u.as_str())
}

/// The asset URLs, for templates.
#[derive(Debug, Clone, Copy)]
pub struct Urls;

impl Urls {
    /// Our stylesheet.
    pub fn css(&self) -> &'static str {
        url("console.css")
    }
    /// Our script (htmx settings, charts).
    pub fn js(&self) -> &'static str {
        url("console.js")
    }
    /// htmx.
    pub fn htmx(&self) -> &'static str {
        url("htmx.min.js")
    }
    /// htmx's server-sent events extension.
    pub fn sse(&self) -> &'static str {
        url("htmx-sse.min.js")
    }
    /// uPlot.
    pub fn uplot_js(&self) -> &'static str {
        url("uPlot.iife.min.js")
    }
    /// uPlot's stylesheet.
    pub fn uplot_css(&self) -> &'static str {
        url("uPlot.min.css")
    }
}

/// `?v=` of an asset URL.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Version {
    v: Option<String>,
}

/// `GET /assets/{name}`: the file; cached for a year when `v` is its current hash.
pub(crate) async fn serve(Path(name): Path<String>, Query(q): Query<Version>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, format!("no asset named {name}")).into_response();
    };
    let current = url(a.name).ends_with(&format!("?v={}", q.v.as_deref().unwrap_or("")));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        a.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendored files are exactly what `scripts/vendor-console.sh` recorded.
    #[test]
    fn vendored_files_match_their_manifest() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/vendor");
        let manifest = std::fs::read_to_string(format!("{dir}/MANIFEST")).unwrap();
        let mut checked = 0;
        for line in manifest.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "bad manifest line {line:?}");
            let bytes = std::fs::read(format!("{dir}/{}", f[0])).unwrap();
            assert_eq!(
                sha256_hex(&bytes),
                f[3],
                "{} differs from its manifest",
                f[0]
            );
            checked += 1;
        }
        // Four vendored assets and three licences.
        assert_eq!(checked, 7);
        // Every embedded vendored asset is in the manifest.
        for a in ASSETS
            .iter()
            .filter(|a| a.name != "console.css" && a.name != "console.js")
        {
            assert!(manifest.contains(&format!("\n{} ", a.name)), "{}", a.name);
        }
    }

    #[test]
    fn urls_carry_the_content_hash() {
        let u = Urls.htmx();
        assert!(u.starts_with("/assets/htmx.min.js?v="), "{u}");
        assert_eq!(u.len(), "/assets/htmx.min.js?v=".len() + 12);
        assert_ne!(Urls.css(), Urls.js());
    }
}
