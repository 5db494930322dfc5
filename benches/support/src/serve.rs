//! A `thingkit serve` directory for the suites that drive the real binary (feature `serve`):
//! `thingkit init`, a device certificate per thing, policy files, and rustls client
//! configurations on ring for those devices.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The suites' error type.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `THINGKIT_BIN`, else the main workspace's release build of `thingkit`.
pub fn thingkit_bin() -> PathBuf {
    match std::env::var_os("THINGKIT_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/thingkit"),
    }
}

/// Runs `cmd`; an error names the command and what it wrote on stderr.
pub fn run(cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// A temporary server directory: `dir/thingkit.toml` and `dir/ca` from `thingkit init`,
/// `dir/devices/<thing>.pem|key` and `dir/policies/<name>.json`. Removed when dropped.
pub struct ServeFleet {
    _tmp: tempfile::TempDir,
    /// The directory `thingkit init` made.
    pub dir: PathBuf,
    /// The `thingkit` binary that made it.
    pub bin: PathBuf,
}

impl ServeFleet {
    /// `thingkit init`, then `thingkit cert create` for each of `things`, then each
    /// `(name, document)` of `policies` as `policies/<name>.json`.
    pub fn create(bin: &Path, things: &[String], policies: &[(&str, &str)]) -> Result<Self, Error> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("fleet");
        run(Command::new(bin).arg("init").arg(&dir))?;
        std::fs::create_dir_all(dir.join("devices"))?;
        std::fs::create_dir_all(dir.join("policies"))?;
        for thing in things {
            run(Command::new(bin)
                .args(["cert", "create", "--ca-dir"])
                .arg(dir.join("ca"))
                .args(["--common-name", thing, "--cert-out"])
                .arg(dir.join(format!("devices/{thing}.pem")))
                .arg("--key-out")
                .arg(dir.join(format!("devices/{thing}.key"))))?;
        }
        for (name, document) in policies {
            std::fs::write(dir.join(format!("policies/{name}.json")), document)?;
        }
        Ok(ServeFleet {
            _tmp: tmp,
            dir,
            bin: bin.to_path_buf(),
        })
    }

    /// Starts `thingkit serve --config CONFIG` with its stderr in `log`; returns the process
    /// and its stdout, line by line (the listening lines), read on a thread of its own.
    pub fn serve(&self, config: &Path, log: &Path) -> Result<(Child, Receiver<String>), Error> {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the server's stdout is not piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok((child, rx))
    }

    /// A rustls client configuration on ring for `thing`: the fleet CA as the only root, the
    /// thing's certificate and key for client authentication.
    pub fn tls(&self, thing: &str) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.dir.join("ca/ca.pem"))? {
            roots.add(cert?)?;
        }
        let chain = CertificateDer::pem_file_iter(self.dir.join(format!("devices/{thing}.pem")))?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(self.dir.join(format!("devices/{thing}.key")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}
