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

    /// Tells what a long command is doing, on stderr (stdout keeps only results).
    pub fn progress(&self, text: String) {
        eprintln!("{text}");
    }

    /// Prints a text-only line (table headers, totals); nothing in JSON mode.
    pub fn text(&self, text: String) {
        if !self.json {
            emit(&text);
        }
    }
}

/// Writes `bytes` to stdout as they are (a script, a man page). A closed pipe ends the
/// process quietly, as in [`emit`].
pub fn emit_all(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}
