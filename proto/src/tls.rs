//! TLS for every raftmq port (rustls with the ring provider): a server side that reloads
//! its certificate when the files change, a client side that trusts a CA (and may present
//! a certificate, as Raft peers do for mutual TLS), and development certificates.
//!
//! A server keeps one [`TlsServer`]; each accepted connection asks it for the current
//! configuration, and it re-reads the files (at most every [`RELOAD_CHECK`]) when their
//! size or modification time changed. A file that no longer parses keeps the previous
//! configuration and says so in one WARN line.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

/// How often a server or client looks at its certificate files for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// The first byte of every TLS connection (a handshake record).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// What can go wrong loading certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("TLS {what} {path}: {reason}")]
    File {
        /// "certificate", "private key" or "CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, ...).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// Writing development certificates failed.
    #[error("writing development certificates to {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where a node's TLS files are (`[tls]` of the broker config, `--tls-*` of the NameServer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM) that signs the cluster's certificates: servers trust it for client
    /// certificates, clients and peers for servers.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Clients of the client port must present a certificate the CA signed (Raft peers
    /// always must).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// What a client trusts and, for mutual TLS, presents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsTrust {
    /// The CA (PEM) servers' certificates must chain to.
    pub ca: PathBuf,
    /// A client certificate and key (PEM) to present, for servers that require one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("holds no PEM CERTIFICATE".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca, "CA")? {
        roots.add(c).map_err(|e| TlsError::File {
            what: "CA",
            path: ca.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// What a server asks of its clients' certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// None asked for.
    Ignored,
    /// Asked for and checked against the CA when presented; a client without one is
    /// served too ([`crate::stream::Stream::peer_certified`] tells them apart).
    Optional,
    /// Every client must present one the CA signed.
    Required,
}

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Builds a server configuration: checking client certificates needs `files.ca`.
fn server_config(files: &TlsFiles, clients: ClientCerts) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?;
    let builder = match (&files.ca, clients) {
        (_, ClientCerts::Ignored) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(TlsError::Config(
                "checking client certificates needs a CA to check them against; set `ca`".into(),
            ))
        }
        (Some(ca), _) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
            let verifier = if clients == ClientCerts::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(config_err)?)
        }
    };
    builder
        .with_single_cert(
            read_certs(&files.cert, "certificate")?,
            read_key(&files.key)?,
        )
        .map_err(config_err)
}

fn client_config(trust: &TlsTrust) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_root_certificates(roots(&trust.ca)?);
    match &trust.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert, "certificate")?, read_key(key)?)
            .map_err(config_err),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Size and modification time of each file, to notice a replacement.
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// Files a configuration is built from.
trait Source: std::fmt::Debug {
    /// What it builds.
    type Config;
    /// The files to watch.
    fn paths(&self) -> Vec<PathBuf>;
    /// Reads them.
    fn build(&self) -> Result<Self::Config, TlsError>;
}

/// A server's files and what it asks of client certificates.
#[derive(Debug)]
struct ServerSource(TlsFiles, ClientCerts);

impl Source for ServerSource {
    type Config = ServerConfig;
    fn paths(&self) -> Vec<PathBuf> {
        let f = &self.0;
        [Some(&f.cert), Some(&f.key), f.ca.as_ref()]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
    fn build(&self) -> Result<ServerConfig, TlsError> {
        server_config(&self.0, self.1)
    }
}

impl Source for TlsTrust {
    type Config = ClientConfig;
    fn paths(&self) -> Vec<PathBuf> {
        let mut p = vec![self.ca.clone()];
        if let Some((c, k)) = &self.identity {
            p.extend([c.clone(), k.clone()]);
        }
        p
    }
    fn build(&self) -> Result<ClientConfig, TlsError> {
        client_config(self)
    }
}

/// A configuration built from files, rebuilt when they change.
#[derive(Debug)]
struct Reloading<S: Source> {
    source: S,
    state: Mutex<Loaded<S::Config>>,
    check_every: Duration,
}

#[derive(Debug)]
struct Loaded<C> {
    stamp: Stamp,
    checked: Instant,
    config: Arc<C>,
}

impl<S: Source> Reloading<S> {
    fn new(source: S) -> Result<Self, TlsError> {
        let stamp = stamp(&source.paths());
        let config = Arc::new(source.build()?);
        Ok(Self {
            source,
            state: Mutex::new(Loaded {
                stamp,
                checked: Instant::now(),
                config,
            }),
            check_every: RELOAD_CHECK,
        })
    }

    /// The current configuration, re-read first if the files changed.
    fn current(&self) -> Arc<S::Config> {
        // A poisoned lock only means another thread panicked while swapping an Arc.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() < self.check_every {
            return state.config.clone();
        }
        state.checked = Instant::now();
        let paths = self.source.paths();
        let now = stamp(&paths);
        if now != state.stamp {
            match self.source.build() {
                Ok(c) => {
                    tracing::info!(files = ?paths, "TLS certificate reloaded");
                    state.config = Arc::new(c);
                    state.stamp = now;
                }
                Err(e) => {
                    // Half-written files are common while a tool replaces them: keep the
                    // old configuration and try again at the next check.
                    tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous certificate");
                }
            }
        }
        state.config.clone()
    }
}

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// The server side of TLS on one port.
#[derive(Debug)]
pub struct TlsServer {
    config: Reloading<ServerSource>,
    plaintext_reply: Option<&'static [u8]>,
}

impl TlsServer {
    /// Loads `files`, asking clients for certificates as `clients` says (the Raft port
    /// requires them).
    ///
    /// # Errors
    /// A file is missing or malformed, the key does not match the certificate, or
    /// client certificates are asked for without a CA.
    pub fn load(files: &TlsFiles, clients: ClientCerts) -> Result<Arc<Self>, TlsError> {
        let config = Reloading::new(ServerSource(files.clone(), clients))?;
        Ok(Arc::new(Self {
            config,
            plaintext_reply: None,
        }))
    }

    /// As [`load`](Self::load), and a plaintext client is sent `reply` before the
    /// connection is closed (an HTTP port tells a browser or `curl` to use `https://`).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_answering_plaintext(
        files: &TlsFiles,
        clients: ClientCerts,
        reply: &'static [u8],
    ) -> Result<Arc<Self>, TlsError> {
        let config = Reloading::new(ServerSource(files.clone(), clients))?;
        Ok(Arc::new(Self {
            config,
            plaintext_reply: Some(reply),
        }))
    }

    /// What a plaintext client is told before its connection is closed, if anything.
    pub fn plaintext_reply(&self) -> Option<&'static [u8]> {
        self.plaintext_reply
    }

    /// What it asks of client certificates.
    pub fn client_certs(&self) -> ClientCerts {
        self.config.source.1
    }

    /// Checks the files for a change on every call.
    #[cfg(test)]
    fn reload_always(mut self: Arc<Self>) -> Arc<Self> {
        if let Some(s) = Arc::get_mut(&mut self) {
            s.config.check_every = Duration::ZERO;
        }
        self
    }

    /// The handshake on an accepted connection.
    ///
    /// # Errors
    /// The peer is not speaking TLS, does not trust our certificate, or lacks a required
    /// client certificate.
    pub async fn accept(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        tokio_rustls::TlsAcceptor::from(self.config.current())
            .accept(stream)
            .await
    }
}

/// The client side of TLS: a CA to trust and maybe a certificate to present.
#[derive(Debug)]
pub struct TlsClient {
    config: Reloading<TlsTrust>,
}

impl TlsClient {
    /// Loads `trust`.
    ///
    /// # Errors
    /// A file is missing or malformed.
    pub fn load(trust: &TlsTrust) -> Result<Arc<Self>, TlsError> {
        let config = Reloading::new(trust.clone())?;
        Ok(Arc::new(Self { config }))
    }

    /// The handshake on a connection to `addr` (`host:port`); the server's certificate
    /// must name `host` (a DNS name or an IP address).
    ///
    /// # Errors
    /// The host is not a valid name, or the handshake failed (the server is not speaking
    /// TLS, or its certificate is not signed by our CA or does not name the host).
    pub async fn connect(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = server_name(addr)?;
        tokio_rustls::TlsConnector::from(self.config.current())
            .connect(name, stream)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {addr} failed: {e} (does the server speak TLS with a certificate our CA signed for that name?)"),
                )
            })
    }
}

/// The name a server at `addr` (`host:port`, `[v6]:port`) must prove.
fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host} is not a valid TLS server name: {e}"),
        )
    })
}

/// The files [`write_dev_certs`] writes.
pub const DEV_FILES: [&str; 4] = ["ca.pem", "ca-key.pem", "node.pem", "node-key.pem"];

/// Writes a development CA and one node certificate it signed, valid for `localhost`,
/// `127.0.0.1`, `::1` and each of `names` (host names or IP addresses), as a server and
/// as a client, to `dir`: `ca.pem`, `ca-key.pem`, `node.pem`, `node-key.pem`. Every node
/// of a dev cluster can use the same pair.
///
/// # Errors
/// A name is not a valid DNS name or IP address, generating failed, or `dir` cannot be
/// written.
pub fn write_dev_certs(dir: &Path, names: &[String]) -> Result<TlsFiles, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let gen = |e: rcgen::Error| TlsError::Config(format!("generating certificates: {e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own, so a certificate of another dev CA reads as "unknown issuer",
    // not as a bad signature of this one.
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("raftmq development CA {:08x}", rand::random::<u32>()),
    );
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(gen)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(gen)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    if let Some(bad) = names
        .iter()
        .find(|n| ServerName::try_from(n.as_str()).is_err())
    {
        return Err(TlsError::Config(format!(
            "{bad:?} is neither a DNS name nor an IP address"
        )));
    }
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    sans.extend(
        names
            .iter()
            .filter(|n| !sans.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut node = CertificateParams::new(sans).map_err(|e| {
        TlsError::Config(format!(
            "a certificate name is neither a DNS name nor an IP address: {e}"
        ))
    })?;
    node.distinguished_name
        .push(DnType::CommonName, "raftmq development node");
    node.use_authority_key_identifier_extension = true;
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let node_key = KeyPair::generate().map_err(gen)?;
    let node_cert = node.signed_by(&node_key, &issuer).map_err(gen)?;

    fs::create_dir_all(dir).map_err(|e| TlsError::Write {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let contents = [
        ca_pem,
        ca_key_pem,
        node_cert.pem(),
        node_key.serialize_pem(),
    ];
    for (name, text) in DEV_FILES.iter().zip(contents) {
        let path = dir.join(name);
        write_private(&path, &text, name.ends_with("-key.pem")).map_err(|e| TlsError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(TlsFiles {
        cert: dir.join("node.pem"),
        key: dir.join("node-key.pem"),
        ca: Some(dir.join("ca.pem")),
        require_client_cert: false,
    })
}

/// Writes `text` to `path` through a temporary file and a rename (a reloading server
/// never sees half a file); keys are readable by the owner only.
fn write_private(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("pem.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{Dialer, Stream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Accepts one connection on a TLS port and echoes one line back.
    async fn echo_server(
        tls: Arc<TlsServer>,
    ) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (tcp, _) = l.accept().await?;
            let mut s = Stream::from(tls.accept(tcp).await?);
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
            s.flush().await
        });
        (addr, task)
    }

    fn trust(files: &TlsFiles, identity: bool) -> TlsTrust {
        TlsTrust {
            ca: files.ca.clone().unwrap(),
            identity: identity.then(|| (files.cert.clone(), files.key.clone())),
        }
    }

    async fn hello(dialer: &Dialer, addr: &str) -> std::io::Result<Vec<u8>> {
        let mut s = dialer.connect(addr, Duration::from_secs(5)).await?;
        assert!(s.is_tls());
        s.write_all(b"hello").await?;
        let mut buf = vec![0u8; 5];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_talks_and_one_trusting_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(dir.path(), &[]).unwrap();
        let other = write_dev_certs(&dir.path().join("other"), &[]).unwrap();
        let server = TlsServer::load(&files, ClientCerts::Ignored).unwrap();

        let (addr, task) = echo_server(server.clone()).await;
        let good = Dialer::tls(TlsClient::load(&trust(&files, false)).unwrap());
        assert_eq!(hello(&good, &addr).await.unwrap(), b"hello");
        task.await.unwrap().unwrap();

        let (addr, task) = echo_server(server).await;
        let stranger = Dialer::tls(TlsClient::load(&trust(&other, false)).unwrap());
        let e = hello(&stranger, &addr).await.unwrap_err().to_string();
        assert!(
            e.contains("TLS handshake with") && e.contains("UnknownIssuer"),
            "{e}"
        );
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_required_client_certificate_must_be_presented_and_signed_by_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(dir.path(), &[]).unwrap();
        let other = write_dev_certs(&dir.path().join("other"), &[]).unwrap();
        let server = TlsServer::load(&files, ClientCerts::Required).unwrap();

        let (addr, task) = echo_server(server.clone()).await;
        let peer = Dialer::tls(TlsClient::load(&trust(&files, true)).unwrap());
        assert_eq!(hello(&peer, &addr).await.unwrap(), b"hello");
        task.await.unwrap().unwrap();

        // No certificate: TLS 1.3 finishes the client's half, the server refuses it and
        // the first read fails.
        let (addr, task) = echo_server(server.clone()).await;
        let anonymous = Dialer::tls(TlsClient::load(&trust(&files, false)).unwrap());
        assert!(hello(&anonymous, &addr).await.is_err());
        let e = task.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("certificate"), "{e}");

        // A certificate of another CA, though it trusts ours.
        let (addr, task) = echo_server(server).await;
        let forged = TlsTrust {
            ca: files.ca.clone().unwrap(),
            identity: Some((other.cert.clone(), other.key.clone())),
        };
        let forged = Dialer::tls(TlsClient::load(&forged).unwrap());
        assert!(hello(&forged, &addr).await.is_err());
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_plaintext_client_is_closed_at_once_and_a_tls_client_of_a_plain_port_gets_a_clear_error(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(dir.path(), &[]).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let tls = TlsServer::load(&files, ClientCerts::Ignored).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::transport::serve_with(
            l,
            Some(tls),
            stop.clone(),
            |_stream, _peer, _requests| async {},
        ));
        let mut plain = TcpStream::connect(&addr).await.unwrap();
        plain
            .write_all(b"\0\0\0\x10hello, plaintext")
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), plain.read(&mut buf))
            .await
            .expect("closed, not left hanging")
            .unwrap_or(0);
        assert_eq!(n, 0);
        stop.cancel();
        server.await.unwrap();

        // A TLS client of a port that answers garbage (here: closes without a word).
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"not TLS at all, sorry").await;
        });
        let dialer = Dialer::tls(TlsClient::load(&trust(&files, false)).unwrap());
        let e = dialer
            .connect(&addr, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TLS handshake with") && e.contains("speak TLS"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_replaced_certificate_is_served_to_new_connections_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let old = write_dev_certs(dir.path(), &[]).unwrap();
        let old_ca = dir.path().join("old-ca.pem");
        fs::copy(old.ca.as_ref().unwrap(), &old_ca).unwrap();
        let server = TlsServer::load(&old, ClientCerts::Ignored)
            .unwrap()
            .reload_always();
        // Replace every file in place: a new CA and a new node certificate.
        let new = write_dev_certs(dir.path(), &[]).unwrap();
        assert_eq!(new, old);
        let new_trust = Dialer::tls(TlsClient::load(&trust(&new, false)).unwrap());
        let old_trust = Dialer::tls(
            TlsClient::load(&TlsTrust {
                ca: old_ca,
                identity: None,
            })
            .unwrap(),
        );
        let (addr, task) = echo_server(server.clone()).await;
        assert_eq!(hello(&new_trust, &addr).await.unwrap(), b"hello");
        task.await.unwrap().unwrap();
        let (addr, _task) = echo_server(server).await;
        assert!(hello(&old_trust, &addr).await.is_err());
    }

    #[test]
    fn bad_files_say_which_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(dir.path(), &[]).unwrap();
        let swapped = TlsFiles {
            cert: files.key.clone(),
            ..files.clone()
        };
        let e = TlsServer::load(&swapped, ClientCerts::Ignored)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("certificate") && e.contains("node-key.pem"),
            "{e}"
        );
        let missing = TlsFiles {
            key: dir.path().join("nope.pem"),
            ..files.clone()
        };
        let e = TlsServer::load(&missing, ClientCerts::Ignored)
            .unwrap_err()
            .to_string();
        assert!(e.contains("private key") && e.contains("nope.pem"), "{e}");
        let no_ca = TlsFiles {
            ca: None,
            ..files.clone()
        };
        let e = TlsServer::load(&no_ca, ClientCerts::Optional)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a CA"), "{e}");
        let other = write_dev_certs(&dir.path().join("other"), &[]).unwrap();
        let mismatched = TlsFiles {
            key: other.key,
            ..files
        };
        assert!(TlsServer::load(&mismatched, ClientCerts::Ignored).is_err());
    }

    #[test]
    fn dev_certificates_take_only_valid_names() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_dev_certs(dir.path(), &["bad name".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither a DNS name nor an IP address"), "{e}");
        assert!(!dir.path().join("ca.pem").exists());
        write_dev_certs(dir.path(), &["10.0.0.5".into(), "broker-a.example".into()]).unwrap();
    }

    #[test]
    fn server_names_come_from_the_host_part() {
        assert!(matches!(
            server_name("127.0.0.1:10911").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:10911").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("broker-a-0.raftmq:10911").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad name:1").is_err());
    }
}
