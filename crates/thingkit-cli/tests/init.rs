//! `thingkit init DIR` and `thingkit serve --config FILE`'s refusal of a bad file.
//!
//! init's output holds fresh keys, serial numbers and dates, so these are Rust tests: they parse
//! the certificates and check the chain, the names and the file modes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

mod common;
use common::*;

/// The files init writes, relative to its directory.
const FILES: [&str; 5] = [
    "thingkit.toml",
    "ca/ca.pem",
    "ca/ca.key",
    "server/server.pem",
    "server/server.key",
];

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn pems(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read(path).unwrap();
    Pem::iter_from_buffer(&text)
        .map(|p| {
            let p = p.unwrap();
            assert_eq!(p.label, "CERTIFICATE");
            p.contents
        })
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_the_example_config_a_ca_and_a_server_certificate_for_localhost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server-dir");
    let out = thingkit(&["init", arg(&dir)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        summary["server_names"],
        serde_json::json!(["localhost", "127.0.0.1"])
    );
    for file in FILES {
        assert!(dir.join(file).is_file(), "{file} is written");
    }
    assert_eq!(snapshot(&dir).len(), FILES.len(), "nothing else is written");

    // The configuration is the documented example, byte for byte.
    let example = include_str!("../thingkit.example.toml");
    assert_eq!(
        std::fs::read_to_string(dir.join("thingkit.toml")).unwrap(),
        example
    );

    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join("ca/ca.key")), 0o600);
        assert_eq!(mode(&dir.join("server/server.key")), 0o600);
    }
    for key in ["ca/ca.key", "server/server.key"] {
        let text = std::fs::read_to_string(dir.join(key)).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    }

    // server.pem is the chain: the server certificate, then the CA that issued it.
    let ca_ders = pems(&dir.join("ca/ca.pem"));
    assert_eq!(ca_ders.len(), 1);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_ders[0]).unwrap();
    assert!(ca.is_ca());
    let chain = pems(&dir.join("server/server.pem"));
    assert_eq!(chain.len(), 2);
    assert_eq!(
        chain[1], ca_ders[0],
        "the chain ends with the CA certificate"
    );
    let (_, server) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert!(!server.is_ca());
    assert_eq!(server.issuer(), ca.subject());
    server
        .verify_signature(Some(ca.public_key()))
        .expect("the server certificate is signed by the CA's key");
    let eku = server.extended_key_usage().unwrap().expect("has EKU").value;
    assert!(eku.server_auth);
    let san = server
        .subject_alternative_name()
        .unwrap()
        .expect("has subjectAltName")
        .value;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.general_names {
        match name {
            GeneralName::DNSName(n) => dns.push(n.to_string()),
            GeneralName::IPAddress(b) => {
                let octets: [u8; 4] = (*b).try_into().expect("an IPv4 address");
                ips.push(IpAddr::from(octets));
            }
            other => panic!("unexpected name {other:?}"),
        }
    }
    assert_eq!(dns, ["localhost"]);
    assert_eq!(ips, [IpAddr::from([127, 0, 0, 1])]);
    assert!(server.validity().is_valid());
    assert!(ca.validity().is_valid());

    // Its own configuration is valid (tests/serve.rs runs the server from an init directory).
    let text = std::fs::read_to_string(dir.join("thingkit.toml")).unwrap();
    let table: toml::Table = text.parse().expect("the written config is TOML");
    assert!(
        table
            .values()
            .all(|v| v.as_table().is_some_and(|t| t.is_empty())),
        "every key is commented out (only empty table headers): the defaults apply"
    );
}

#[test]
fn init_refuses_to_overwrite_names_the_file_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let first = thingkit(&["init", arg(&dir)], None);
    assert!(first.status.success(), "{}", stderr(&first));
    let before = snapshot(&dir);

    let again = thingkit(&["init", arg(&dir)], None);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(arg(&dir.join("thingkit.toml"))) && err.contains("refusing to overwrite"),
        "{err}"
    );
    assert!(stdout(&again).is_empty());
    assert_eq!(snapshot(&dir), before, "nothing changed");
}

#[test]
fn init_writes_nothing_when_any_one_of_its_files_exists() {
    for existing in FILES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join(existing);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "mine").unwrap();
        let before = snapshot(dir);

        let out = thingkit(&["init", arg(dir)], None);
        assert_eq!(out.status.code(), Some(1), "{existing}");
        let err = stderr(&out);
        assert!(err.contains(arg(&path)), "names {existing}: {err}");
        assert_eq!(
            snapshot(dir),
            before,
            "nothing written when {existing} exists"
        );
    }
}

#[test]
fn serve_refuses_an_invalid_config_with_the_file_line_column_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("thingkit.toml");
    std::fs::write(
        &file,
        "[mqtt]\nmax_queued = 5\nlisten = \"localhost:8883\"\n",
    )
    .unwrap();
    let out = thingkit(&["serve", "--config", arg(&file)], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}:3:10: mqtt.listen: invalid socket address syntax\n",
            file.display()
        )
    );
    assert!(stdout(&out).is_empty());
}
