//! `raftmq probe URL`: one plain-HTTP GET of a health endpoint, for container health
//! checks and exec probes in images without curl; exits 0 on a 2xx answer.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Options of `raftmq probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// `http://HOST:PORT/PATH` (plain HTTP), e.g. http://127.0.0.1:8080/readyz.
    pub url: String,
    /// Give up after this many ms.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Host, port and path of a plain-HTTP URL.
fn parse(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("{url:?} is not an http:// URL (probe speaks plain HTTP; an HTTPS listener's /healthz is for orchestrators that speak TLS)")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    anyhow::ensure!(
        authority.contains(':'),
        "{url:?} names no port: write http://HOST:PORT/PATH"
    );
    Ok((authority.to_owned(), path.to_owned()))
}

/// GETs the URL; `Ok` on a 2xx answer, whose body is printed.
///
/// # Errors
/// A bad URL, no answer within the timeout, or a status outside 2xx.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let (authority, path) = parse(&args.url)?;
    let get = async {
        let mut s = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.take(64 << 10).read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_millis(args.timeout_ms), get)
        .await
        .with_context(|| format!("no answer from {} within {} ms", args.url, args.timeout_ms))??;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("{} answered no HTTP status", args.url))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    print!("{body}");
    anyhow::ensure!(
        (200..300).contains(&status),
        "{} answered {status}",
        args.url
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            parse("http://127.0.0.1:8080/readyz").unwrap(),
            ("127.0.0.1:8080".into(), "/readyz".into())
        );
        assert_eq!(parse("http://h:1").unwrap(), ("h:1".into(), "/".into()));
        assert!(parse("https://h:1/x").is_err());
        assert!(parse("http://h/x").is_err());
    }
}
