//! `thingkit access-key create|list|delete --config DIR/thingkit.toml` after `thingkit init DIR`.

mod common;
use common::*;

use std::path::Path;

fn init(dir: &Path) -> String {
    let o = thingkit(&["init", arg(dir)], None);
    assert!(o.status.success(), "init: {}", stderr(&o));
    arg(&dir.join("thingkit.toml")).to_string()
}

/// The key file: `data_dir` in the example config is relative to the config's directory.
fn key_file(dir: &Path) -> std::path::PathBuf {
    let found: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "access-keys.json"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().expect("one key file")
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn create_prints_one_key_once_and_stores_it_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = init(dir.path());
    let o = thingkit(&["access-key", "create", "--config", &config], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let id = v["AccessKeyId"].as_str().expect("id");
    let secret = v["SecretAccessKey"].as_str().expect("secret");
    assert!(id.starts_with("AKIA") && id.len() == 20);
    assert_eq!(secret.len(), 40);
    assert_eq!(v.as_object().map(|o| o.len()), Some(2));
    assert!(out.starts_with("{\"AccessKeyId\": \""));

    let file = key_file(dir.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let o = thingkit(&["access-key", "list", "--config", &config], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = stdout(&o);
    assert!(
        listed.contains(id) && listed.contains("\"HasPolicy\":false"),
        "{listed}"
    );
    assert!(!listed.contains(secret));

    let o = thingkit(&["access-key", "delete", "--config", &config, id], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = thingkit(&["access-key", "list", "--config", &config], None);
    assert_eq!(stdout(&o), "");
    let o = thingkit(&["access-key", "delete", "--config", &config, id], None);
    assert!(!o.status.success());
}

#[test]
fn create_with_a_policy_file_records_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = init(dir.path());
    let policy = dir.path().join("readonly.json");
    std::fs::write(
        &policy,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:Describe*", "iot:List*"], "Resource": "*"}]}"#,
    )
    .expect("written");
    let o = thingkit(
        &[
            "access-key",
            "create",
            "--config",
            &config,
            "--policy",
            arg(&policy),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = thingkit(&["access-key", "list", "--config", &config], None);
    assert!(stdout(&o).contains("\"HasPolicy\":true"), "{}", stdout(&o));
}

#[test]
fn create_refuses_an_invalid_policy_with_its_finding_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = init(dir.path());
    let policy = dir.path().join("bad.json");
    std::fs::write(
        &policy,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Describe*"}]}"#,
    )
    .expect("written");
    let o = thingkit(
        &[
            "access-key",
            "create",
            "--config",
            &config,
            "--policy",
            arg(&policy),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("Resource"), "{}", stderr(&o));
    assert!(
        walk(dir.path())
            .iter()
            .all(|p| !p.ends_with("access-keys.json"))
    );
}
