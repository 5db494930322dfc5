//! Interoperability with OpenSSL: CSRs made by `openssl req` are issued, the certificates pass
//! `openssl verify`, `openssl x509 -text` shows the profile, and `openssl s_client` completes a
//! handshake against a rustls server built from our configuration (revoked and inactive
//! certificates refused).
//!
//! These tests need the `openssl` command (CI installs it). They fail, not skip, without it.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use thingkit_provision::Error;
use thingkit_provision::Registry;
use thingkit_provision::ServerConfigBuilder;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit_provision::{CaStatus, CertificateStatus};

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the `openssl` command must be installed (.ci/run installs it)")
}

fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl req` with a new key: returns (csr path, key path).
fn openssl_csr(
    dir: &Path,
    name: &str,
    newkey: &[&str],
    digest: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf) {
    let csr = dir.join(format!("{name}.csr"));
    let key = dir.join(format!("{name}.key"));
    let mut args = vec!["req", "-new", "-nodes"];
    args.extend_from_slice(newkey);
    let subj = format!("/CN={name}/O=Ignored Org");
    args.extend_from_slice(&[
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
        "-subj",
        &subj,
        digest,
    ]);
    args.extend_from_slice(extra);
    openssl_ok(&args);
    (csr, key)
}

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
const RSA2048: &[&str] = &["-newkey", "rsa:2048"];

fn write_ca(dir: &Path, ca: &CertificateAuthority) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.certificate_pem()).unwrap();
    path
}

#[test]
fn openssl_csrs_for_p256_p384_and_rsa2048_are_issued_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let ca_pem = write_ca(dir.path(), &ca);
    for (name, newkey, digest) in [
        ("p256", P256, "-sha256"),
        ("p384", P384, "-sha384"),
        ("rsa2048", RSA2048, "-sha256"),
    ] {
        let (csr, _) = openssl_csr(dir.path(), name, newkey, digest, &[]);
        let issued = ca
            .issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now())
            .unwrap();
        let cert = dir.path().join(format!("{name}.pem"));
        std::fs::write(&cert, issued.pem()).unwrap();
        let out = openssl_ok(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            ca_pem.to_str().unwrap(),
            cert.to_str().unwrap(),
        ]);
        assert!(out.contains(": OK"), "{name}: {out}");

        let text = openssl_ok(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains("CA:FALSE"), "{name}: {text}");
        assert!(text.contains("Digital Signature"), "{name}");
        assert!(!text.contains("Certificate Sign"), "{name}");
        assert!(text.contains("TLS Web Client Authentication"), "{name}");
        assert!(!text.contains("TLS Web Server Authentication"), "{name}");
        assert!(text.contains("X509v3 Subject Key Identifier"), "{name}");
        assert!(text.contains("X509v3 Authority Key Identifier"), "{name}");
        assert!(
            text.contains(&format!("Subject: CN = {name}\n")),
            "{name}: {text}"
        );
        assert!(
            !text.contains("Ignored Org"),
            "{name}: only the common name is taken"
        );
        // The subject key's algorithm matches the key OpenSSL made.
        let key_line = match name {
            "p256" => "NIST CURVE: P-256",
            "p384" => "NIST CURVE: P-384",
            _ => "Public-Key: (2048 bit)",
        };
        assert!(text.contains(key_line), "{name}: {text}");
        // The certificate ID is the SHA-256 of the DER, as `openssl x509 -fingerprint` shows it.
        let fp = openssl_ok(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ]);
        let hex: String = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(hex, issued.id.to_string());
    }
}

#[test]
fn openssl_ca_true_request_yields_a_ca_false_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let (csr, _) = openssl_csr(
        dir.path(),
        "wants-ca",
        P256,
        "-sha256",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=keyCertSign",
        ],
    );
    let csr_text = openssl_ok(&["req", "-in", csr.to_str().unwrap(), "-noout", "-text"]);
    assert!(csr_text.contains("CA:TRUE"));
    let issued = ca
        .issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now())
        .unwrap();
    let cert = dir.path().join("wants-ca.pem");
    std::fs::write(&cert, issued.pem()).unwrap();
    let text = openssl_ok(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(!text.contains("CA:TRUE"));
    assert!(!text.contains("Certificate Sign"));
}

#[test]
fn openssl_csrs_with_weak_or_mismatched_algorithms_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let (csr, _) = openssl_csr(dir.path(), "p256-sha384", P256, "-sha384", &[]);
    let err = ca
        .issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, Error::CurveHashMismatch { key: "P-256", .. }),
        "{err}"
    );
    let (csr, _) = openssl_csr(dir.path(), "p384-sha256", P384, "-sha256", &[]);
    let err = ca
        .issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, Error::CurveHashMismatch { key: "P-384", .. }),
        "{err}"
    );
    let (csr, _) = openssl_csr(dir.path(), "rsa-sha1", RSA2048, "-sha1", &[]);
    assert!(matches!(
        ca.issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now()),
        Err(Error::Sha1Refused)
    ));
    let (csr, _) = openssl_csr(
        dir.path(),
        "rsa1024",
        &["-newkey", "rsa:1024"],
        "-sha256",
        &[],
    );
    assert!(matches!(
        ca.issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now()),
        Err(Error::RsaKeyTooSmall {
            bits: 1024,
            minimum: 2048
        })
    ));
}

#[test]
fn openssl_verifies_chain_through_an_intermediate_and_reads_our_crl() {
    let dir = tempfile::tempdir().unwrap();
    let root = CertificateAuthority::create_root(
        &CaOptions::default().with_key_type(CaKeyType::P384),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let inter = root
        .create_intermediate(
            &CaOptions::default()
                .with_key_type(CaKeyType::Ed25519)
                .with_common_name("Issuing CA".into())
                .with_path_len(Some(0)),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let root_pem = write_ca(dir.path(), &root);
    let inter_pem = dir.path().join("inter.pem");
    std::fs::write(&inter_pem, inter.certificate_pem()).unwrap();
    let (csr, _) = openssl_csr(dir.path(), "leaf", P256, "-sha256", &[]);
    let issued = inter
        .issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now())
        .unwrap();
    let cert = dir.path().join("leaf.pem");
    std::fs::write(&cert, issued.pem()).unwrap();
    let out = openssl_ok(&[
        "verify",
        "-CAfile",
        root_pem.to_str().unwrap(),
        "-untrusted",
        inter_pem.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert!(out.contains(": OK"), "{out}");

    let crl = inter
        .crl(
            &[thingkit_provision::RevokedSerial {
                serial: issued.serial.clone(),
                revoked_at: time::OffsetDateTime::now_utc(),
            }],
            1,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let crl_pem = dir.path().join("crl.pem");
    std::fs::write(&crl_pem, thingkit_provision::encode_pem("X509 CRL", &crl)).unwrap();
    let chain = dir.path().join("chain.pem");
    std::fs::write(
        &chain,
        format!("{}{}", root.certificate_pem(), inter.certificate_pem()),
    )
    .unwrap();
    let out = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        chain.to_str().unwrap(),
        "-CRLfile",
        crl_pem.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("revoked"), "{all}");
}

/// Serves one TLS connection with our configuration: after the handshake it authenticates the
/// peer and writes `hello <certificate id>`. Returns what happened on the server side.
fn serve_one(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    registry: Arc<Registry>,
) -> std::thread::JoinHandle<Result<String, String>> {
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        let identity = registry
            .authenticate(
                tls.conn.peer_certificates().unwrap_or_default(),
                std::time::SystemTime::now(),
            )
            .map_err(|e| e.to_string())?;
        let line = format!("hello {}\n", identity.certificate_id);
        tls.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        tls.flush().map_err(|e| e.to_string())?;
        let _ = tls.conn.complete_io(&mut tls.sock);
        Ok(line)
    })
}

fn s_client(port: u16, ca: &Path, cert: &Path, key: &Path) -> String {
    let connect = format!("127.0.0.1:{port}");
    let out = openssl(&[
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-CAfile",
        ca.to_str().unwrap(),
        "-verify_return_error",
        "-cert",
        cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-ign_eof",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_s_client_handshakes_with_an_active_certificate_and_is_refused_when_revoked_or_inactive()
{
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let ca_pem = write_ca(dir.path(), &ca);
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    let mut devices = Vec::new();
    for (name, newkey, status) in [
        ("active", P256, CertificateStatus::Active),
        ("active-rsa", RSA2048, CertificateStatus::Active),
        ("revoked", P256, CertificateStatus::Active),
        ("inactive", P384, CertificateStatus::Inactive),
    ] {
        let digest = if newkey == P384 { "-sha384" } else { "-sha256" };
        let (csr, key) = openssl_csr(dir.path(), name, newkey, digest, &[]);
        let issued = ca
            .issue(&std::fs::read(&csr).unwrap(), std::time::SystemTime::now())
            .unwrap();
        let cert = dir.path().join(format!("{name}.pem"));
        std::fs::write(&cert, issued.pem()).unwrap();
        let id = registry
            .register_certificate(&issued.der, status, std::time::SystemTime::now())
            .unwrap();
        devices.push((name, id, cert, key));
    }
    let revoked_id = devices[2].1;
    registry
        .update_certificate(
            &revoked_id,
            CertificateStatus::Revoked,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let crl = ca
        .crl(
            &registry.revoked_serials(&ca.id()),
            1,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let server = ca
        .create_server_certificate(&["localhost"], std::time::SystemTime::now())
        .unwrap();
    let config = ServerConfigBuilder::from_pem(&server.certificate.pem(), &server.private_key_pem)
        .unwrap()
        .crl(crl)
        .build(&registry)
        .unwrap();
    let registry = Arc::new(registry);

    for (name, id, cert, key) in &devices {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = serve_one(listener, config.clone(), registry.clone());
        let client_out = s_client(port, &ca_pem, cert, key);
        let server_result = handle.join().unwrap();
        match *name {
            "active" | "active-rsa" => {
                assert_eq!(server_result, Ok(format!("hello {id}\n")), "{name}");
                assert!(
                    client_out.contains(&format!("hello {id}")),
                    "{name}: {client_out}"
                );
            }
            "revoked" => {
                let err = server_result.unwrap_err();
                assert!(err.starts_with("handshake:"), "{name}: {err}");
                assert!(err.to_lowercase().contains("revoked"), "{name}: {err}");
                assert!(!client_out.contains("hello"), "{name}");
            }
            _ => {
                let err = server_result.unwrap_err();
                assert!(err.contains("INACTIVE"), "{name}: {err}");
                assert!(!client_out.contains("hello"), "{name}");
            }
        }
    }
}
