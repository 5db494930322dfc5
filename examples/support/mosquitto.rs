//! The Debian `mosquitto` broker configured like ours: mutual TLS with the same CA and server
//! certificate, the certificate's common name as user name, an ACL file equivalent to the fleet
//! policy, and the load generator's queue limits (100,000 queued and 64 in-flight messages per
//! client, as it configures the thingkit broker). Used by the interop tests and the load
//! generator; needs the `mosquitto` binary.
#![allow(dead_code)] // shared by several example and test crates; each uses a subset

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `FLEET_POLICY` and `OPERATOR_POLICY` allow, as a mosquitto ACL (`%u` is the
/// certificate's common name, which is the thing name).
pub const FLEET_ACL: &str = "\
pattern write telemetry/%u/#
pattern read telemetry/#
pattern write status/%u
pattern read status/#
pattern read $thingkit/things/%u/firmware
user operator
topic readwrite #
";

/// A running mosquitto, killed on drop.
pub struct Mosquitto {
    child: Child,
    /// Its loopback address.
    pub addr: SocketAddr,
    /// Where its configuration and log live.
    pub dir: PathBuf,
}

/// A free loopback port (bound, then released: another process could take it in between, which
/// the caller sees as a start failure, never as a silent skip).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Mosquitto {
    /// Writes the configuration into `dir` and starts `mosquitto`; waits (at most 10 s) until it
    /// accepts TCP connections.
    pub fn start(
        dir: &Path,
        ca_pem: &str,
        server_chain_pem: &str,
        server_key_pem: &str,
        acl: &str,
    ) -> Result<Mosquitto, Box<dyn std::error::Error + Send + Sync>> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let file = |name: &str, text: &str| -> std::io::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let ca = file("mosquitto-ca.pem", ca_pem)?;
        let cert = file("mosquitto-server.pem", server_chain_pem)?;
        let key = file("mosquitto-server.key", server_key_pem)?;
        let acl = file("mosquitto.acl", acl)?;
        let log = dir.join("mosquitto.log");
        let conf = file(
            "mosquitto.conf",
            &format!(
                "# Equivalent to the thingkit broker: mTLS, identity = certificate CN, ACLs.\n\
                 user root\n\
                 persistence false\n\
                 log_dest file {log}\n\
                 log_type error\n\
                 log_type warning\n\
                 per_listener_settings false\n\
                 allow_anonymous false\n\
                 acl_file {acl}\n\
                 max_queued_messages 100000\n\
                 max_inflight_messages 64\n\
                 listener {port} 127.0.0.1\n\
                 cafile {ca}\n\
                 certfile {cert}\n\
                 keyfile {key}\n\
                 require_certificate true\n\
                 use_identity_as_username true\n",
                log = log.display(),
                acl = acl.display(),
                ca = ca.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mosquitto (apt-get install mosquitto): {e}"))?;
        let mut m = Mosquitto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&m.addr, Duration::from_millis(200)).is_ok() {
                return Ok(m);
            }
            if let Some(status) = m.child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("mosquitto exited with {status}: {log}").into());
            }
            if Instant::now() > deadline {
                return Err("mosquitto did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Mosquitto {
    /// Its process ID (to read its memory use from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
