//! `raftmq certs dev DIR`: a CA and a node certificate, to try TLS in one command.

use std::path::PathBuf;

use anyhow::Context as _;
use raftmq_proto::tls::{write_dev_certs, DEV_FILES};

use crate::output::Out;

/// Certificates for trying TLS.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCmd {
    /// Write a development CA (ca.pem, ca-key.pem) and a node certificate it signed
    /// (node.pem, node-key.pem) valid for localhost, 127.0.0.1 and ::1, as a server and as
    /// a client. Every node of a cluster on one host can use the same pair; clients trust
    /// ca.pem (--tls-ca). Not for production: issue certificates naming each host instead.
    Dev {
        /// Directory to write to (created if missing).
        dir: PathBuf,
        /// Replace files already there.
        #[arg(long)]
        force: bool,
        /// Another host name or IP address the node certificate is valid for (repeat for
        /// several): the addresses nodes and clients dial.
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
    },
}

/// Runs a `certs` subcommand.
pub fn run(out: Out, cmd: &CertsCmd) -> anyhow::Result<()> {
    let CertsCmd::Dev { dir, force, names } = cmd;
    if !force {
        if let Some(f) = DEV_FILES.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
            anyhow::bail!(
                "{} already exists; pass --force to replace the certificates in {}",
                f.display(),
                dir.display()
            );
        }
    }
    let files = write_dev_certs(dir, names)
        .with_context(|| format!("raftmq certs dev {}", dir.display()))?;
    let ca = files.ca.clone().unwrap_or_default();
    out.line(
        serde_json::json!({
            "ca": ca, "cert": files.cert, "key": files.key,
            "ca_key": dir.join("ca-key.pem"),
        }),
        format!(
            "wrote {dir}/ca.pem, ca-key.pem, node.pem, node-key.pem (valid for localhost, 127.0.0.1, ::1{extra})\n\
             broker config:\n  [tls]\n  cert = \"{cert}\"\n  key = \"{key}\"\n  ca = \"{ca}\"\n\
             NameServer:  raftmq namesrv --cert {cert} --key {key} --client-ca {ca}\n\
             clients:     raftmq --tls-ca {ca} cluster list",
            dir = dir.display(),
            extra = names.iter().map(|n| format!(", {n}")).collect::<String>(),
            cert = files.cert.display(),
            key = files.key.display(),
            ca = ca.display(),
        ),
    );
    Ok(())
}
