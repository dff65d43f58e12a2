//! Text or one JSON object per line.

/// Where command output goes.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// Writes a line to stdout. A closed pipe (`raftmq ... | head`) ends the process quietly
/// instead of panicking.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").is_err() {
        std::process::exit(0);
    }
}

impl Out {
    /// Prints `json` or `text`.
    pub fn line(&self, json: serde_json::Value, text: String) {
        if self.json {
            emit(&json.to_string());
        } else {
            emit(&text);
        }
    }

    /// Prints a text-only line (table headers, totals); nothing in JSON mode.
    pub fn text(&self, text: String) {
        if !self.json {
            emit(&text);
        }
    }
}

/// Now, ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time in ms since the Unix epoch as RFC 3339 UTC, to the millisecond.
pub fn utc(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}
