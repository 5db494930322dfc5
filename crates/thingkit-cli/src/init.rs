//! `thingkit init DIR`: a ready-to-serve directory — the configuration file, a CA and a server
//! certificate for `localhost` and `127.0.0.1` — written all or nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;
use thingkit_provision::{CaOptions, CertificateAuthority};

use crate::Failure;
use crate::config::{EXAMPLE, ServeConfig};

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The configuration file's name in the directory.
pub const CONFIG_FILE: &str = "thingkit.toml";

/// `thingkit init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The directory to set up (created if missing). Nothing in it is overwritten: if any file
    /// init would write exists, it exits 1 naming that file and writes nothing.
    pub dir: PathBuf,
}

/// One file to write: where, what, and whether it is a secret (mode 0600).
struct Output {
    path: PathBuf,
    contents: String,
    secret: bool,
}

/// Runs `thingkit init DIR`.
pub fn run(args: InitArgs) -> Result<(), Failure> {
    let dir = args.dir;
    // The file's own defaults name where the CA and the server certificate are, so the written
    // configuration finds them without a single uncommented key.
    let defaults = ServeConfig::default();
    let config_path = dir.join(CONFIG_FILE);
    let ca_cert = dir.join(&defaults.ca.certificate);
    let ca_key = dir.join(&defaults.ca.private_key);
    let server_cert = dir.join(&defaults.tls.certificate);
    let server_key = dir.join(&defaults.tls.private_key);
    for path in [&config_path, &ca_cert, &ca_key, &server_cert, &server_key] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(Failure(format!(
                "{} already exists; refusing to overwrite it (nothing was written)",
                path.display()
            )));
        }
    }

    // Everything is made in memory first: a failure here writes nothing.
    let now = SystemTime::now();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now)?;
    let server = ca.create_server_certificate(&SERVER_NAMES, now)?;
    let outputs = [
        Output {
            path: ca_key.clone(),
            contents: ca.private_key_pem(),
            secret: true,
        },
        Output {
            path: ca_cert.clone(),
            contents: ca.certificate_pem(),
            secret: false,
        },
        Output {
            path: server_key.clone(),
            contents: server.private_key_pem.clone(),
            secret: true,
        },
        Output {
            path: server_cert.clone(),
            // The chain a TLS client is sent: the server certificate, then its issuer.
            contents: format!("{}{}", server.certificate.pem(), ca.certificate_pem()),
            secret: false,
        },
        Output {
            path: config_path.clone(),
            contents: EXAMPLE.to_owned(),
            secret: false,
        },
    ];
    let mut written: Vec<&Path> = Vec::new();
    for output in &outputs {
        if let Err(e) = write_new(output) {
            // All or nothing: take back what this run wrote.
            for path in written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        written.push(&output.path);
    }
    println!(
        "{}",
        json!({
            "config": config_path.display().to_string(),
            "ca_certificate": ca_cert.display().to_string(),
            "ca_private_key": ca_key.display().to_string(),
            "ca_certificate_id": ca.id().to_string(),
            "server_certificate": server_cert.display().to_string(),
            "server_private_key": server_key.display().to_string(),
            "server_certificate_id": server.certificate.id.to_string(),
            "server_names": SERVER_NAMES,
        })
    );
    Ok(())
}

/// Creates the file (and its directory), refusing to replace an existing one; secrets get mode
/// 0600.
fn write_new(output: &Output) -> Result<(), Failure> {
    let path = &output.path;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if output.secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Failure(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(output.contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}
