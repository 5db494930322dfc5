//! `thingkit ca` and `thingkit cert`: files, modes, outputs and exit codes.
//!
//! CSRs are made with `openssl req` (CI installs openssl); the tests fail without it.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

fn ok(args: &[&str]) -> String {
    let out = thingkit(args, None);
    assert!(
        out.status.success(),
        "thingkit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs thingkit expecting exit status 1 with a one-line reason; returns the reason.
fn fails(args: &[&str]) -> String {
    let out = thingkit(args, None);
    assert_eq!(out.status.code(), Some(1), "thingkit {args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("thingkit: "), "{err}");
    err
}

fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], digest: &str) -> String {
    let csr = dir.join(format!("{name}.csr"));
    let key = dir.join(format!("{name}.key"));
    let mut args = vec!["req", "-new", "-nodes"];
    args.extend_from_slice(newkey);
    let subj = format!("/CN={name}");
    args.extend_from_slice(&[
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
        "-subj",
        &subj,
    ]);
    if !digest.is_empty() {
        args.push(digest);
    }
    let out = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("the `openssl` command must be installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    csr.to_str().unwrap().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_writes_certificate_and_private_key_with_mode_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let out = ok(&[
        "ca",
        "init",
        "--dir",
        ca_dir.to_str().unwrap(),
        "--key-type",
        "p384",
        "--common-name",
        "Fleet Root",
        "--days",
        "30",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["ca_certificate_id"].as_str().unwrap().len(), 64);
    let pem = std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let key = std::fs::read_to_string(ca_dir.join("ca.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    let id = ok(&["cert", "id", ca_dir.join("ca.pem").to_str().unwrap()]);
    assert_eq!(id.trim(), summary["ca_certificate_id"].as_str().unwrap());

    let err = fails(&["ca", "init", "--dir", ca_dir.to_str().unwrap()]);
    assert!(err.contains("refusing to overwrite"), "{err}");
}

#[test]
fn cert_issue_turns_an_openssl_csr_into_a_certificate_on_stdout_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    ok(&["ca", "init", "--dir", ca_dir.to_str().unwrap()]);
    let csr = openssl_csr(
        dir.path(),
        "dev",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "-sha256",
    );
    let pem = ok(&[
        "cert",
        "issue",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--csr",
        &csr,
        "--days",
        "7",
    ]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let out_path = dir.path().join("dev.pem");
    let out = ok(&[
        "cert",
        "issue",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--csr",
        &csr,
        "--out",
        out_path.to_str().unwrap(),
    ]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = ok(&["cert", "id", out_path.to_str().unwrap()]);
    assert_eq!(id.trim(), summary["certificate_id"].as_str().unwrap());
    assert_eq!(id.trim().len(), 64);
    assert!(
        id.trim()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn cert_create_writes_certificate_and_key_and_the_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    ok(&[
        "ca",
        "init",
        "--dir",
        ca_dir.to_str().unwrap(),
        "--key-type",
        "ed25519",
    ]);
    let cert = dir.path().join("d.pem");
    let key = dir.path().join("d.key");
    let out = ok(&[
        "cert",
        "create",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--common-name",
        "sensor-9",
        "--cert-out",
        cert.to_str().unwrap(),
        "--key-out",
        key.to_str().unwrap(),
    ]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = ok(&["cert", "id", cert.to_str().unwrap()]);
    assert_eq!(id.trim(), summary["certificate_id"].as_str().unwrap());
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    // The key is not overwritten by a second run.
    let err = fails(&[
        "cert",
        "create",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--common-name",
        "sensor-9",
        "--cert-out",
        cert.to_str().unwrap(),
        "--key-out",
        key.to_str().unwrap(),
    ]);
    assert!(err.contains("cannot create"), "{err}");
}

#[test]
fn bad_input_exits_1_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    ok(&["ca", "init", "--dir", ca_dir.to_str().unwrap()]);
    let ca = ca_dir.to_str().unwrap();

    let err = fails(&[
        "cert",
        "issue",
        "--ca-dir",
        ca,
        "--csr",
        "/nonexistent/x.csr",
    ]);
    assert!(err.contains("cannot read"), "{err}");

    let ed = openssl_csr(dir.path(), "ed", &["-newkey", "ed25519"], "");
    let err = fails(&["cert", "issue", "--ca-dir", ca, "--csr", &ed]);
    assert!(err.contains("unsupported key"), "{err}");

    let rsa = openssl_csr(dir.path(), "small", &["-newkey", "rsa:1024"], "-sha256");
    let err = fails(&["cert", "issue", "--ca-dir", ca, "--csr", &rsa]);
    assert!(err.contains("1024 bits"), "{err}");

    // Flip a byte inside the signed part of a DER CSR: the signature no longer verifies.
    let good = openssl_csr(
        dir.path(),
        "tamper",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "-sha256",
    );
    let der = Command::new("openssl")
        .args(["req", "-in", &good, "-outform", "DER"])
        .output()
        .unwrap()
        .stdout;
    let mut der = der;
    let pos = der.windows(6).position(|w| w == b"tamper").unwrap();
    der[pos] = b'T';
    let bad = dir.path().join("bad.der");
    std::fs::write(&bad, &der).unwrap();
    let err = fails(&[
        "cert",
        "issue",
        "--ca-dir",
        ca,
        "--csr",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("signature"), "{err}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    fails(&["cert", "id", junk.to_str().unwrap()]);
    fails(&[
        "cert",
        "issue",
        "--ca-dir",
        dir.path().to_str().unwrap(),
        "--csr",
        &good,
    ]);
}

#[test]
fn usage_errors_exit_2() {
    let out = thingkit(&["cert", "issue", "--csr", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = thingkit(&["ca", "init", "--dir", "x", "--key-type", "rsa"], None);
    assert_eq!(out.status.code(), Some(2));
}

const FLEET_TEMPLATE: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"},
                 "Site": {"Type": "String", "Default": "berlin"},
                 "AWS::IoT::Certificate::Id": {"Type": "String"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Fn::Sub": "sensor-${SerialNumber}"},
      "AttributePayload": {"site": {"Ref": "Site"}}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}
  },
  "DeviceConfiguration": {"Site": {"Ref": "Site"}}
}"#;

#[test]
fn provision_template_validate_accepts_a_good_template_and_lists_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    std::fs::write(&file, FLEET_TEMPLATE).unwrap();
    let out = ok(&["provision", "template", "validate", file.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["parameters"]["Site"]["default"], "berlin");
    assert_eq!(v["parameters"]["SerialNumber"]["type"], "String");
}

#[test]
fn provision_template_validate_names_the_json_path_of_an_unknown_function() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    std::fs::write(&file, FLEET_TEMPLATE.replace("Fn::Sub", "Fn::Substitute")).unwrap();
    let err = fails(&["provision", "template", "validate", file.to_str().unwrap()]);
    assert!(
        err.contains("Resources.thing.Properties.ThingName.Fn::Substitute"),
        "{err}"
    );
    assert!(err.contains("unknown function"), "{err}");
}

#[test]
fn provision_template_render_prints_the_resources_it_would_create() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    std::fs::write(&file, FLEET_TEMPLATE).unwrap();
    let id = "ab".repeat(32);
    let out = ok(&[
        "provision",
        "template",
        "render",
        file.to_str().unwrap(),
        "--param",
        "SerialNumber=17",
        "--param",
        &format!("AWS::IoT::Certificate::Id={id}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["thing"]["name"], "sensor-17");
    assert_eq!(v["thing"]["attributes"]["site"], "berlin");
    assert_eq!(v["certificate"]["source"]["certificateId"], id);
    assert_eq!(v["certificate"]["status"], "ACTIVE");
    assert_eq!(v["deviceConfiguration"]["Site"], "berlin");
}

#[test]
fn provision_template_render_fails_on_a_missing_or_malformed_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    std::fs::write(&file, FLEET_TEMPLATE).unwrap();
    let path = file.to_str().unwrap();
    let err = fails(&["provision", "template", "render", path]);
    assert!(err.contains("missing template parameter"), "{err}");
    let err = fails(&[
        "provision",
        "template",
        "render",
        path,
        "--param",
        "SerialNumber",
    ]);
    assert!(err.contains("NAME=VALUE"), "{err}");
    let err = fails(&["provision", "template", "render", path, "--param", "Nope=1"]);
    assert!(err.contains("declares no such parameter"), "{err}");
}

/// AWS's printed templates (developer guide, SDK v2 samples), kept in the provision crate.
fn aws_template(name: &str) -> String {
    format!(
        "{}/../thingkit-provision/tests/aws/templates/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn provision_template_validate_accepts_the_templates_aws_prints() {
    for name in [
        "guide-bulk-registration.json",
        "guide-jitp.json",
        "guide-fleet-provisioning.json",
        "sdk-v2-fleet-provisioning.json",
        "sdk-v2-fleet-provisioning-single-line.json",
    ] {
        let out = ok(&["provision", "template", "validate", &aws_template(name)]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["valid"], true, "{name}");
    }
}

#[test]
fn provision_template_render_renders_the_sdk_sample_with_its_policy_object() {
    let id = "cd".repeat(32);
    let out = ok(&[
        "provision",
        "template",
        "render",
        &aws_template("sdk-v2-fleet-provisioning.json"),
        "--param",
        "SerialNumber=1",
        "--param",
        "DeviceLocation=Seattle",
        "--param",
        &format!("AWS::IoT::Certificate::Id={id}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["thing"]["name"], "ThingPrefix_1");
    assert_eq!(v["certificate"]["status"], "ACTIVE");
    assert_eq!(v["certificate"]["overrideSettings"]["status"], "REPLACE");
    let doc = v["policies"][0]["policyDocument"].as_str().unwrap();
    let policy: serde_json::Value = serde_json::from_str(doc).unwrap();
    assert_eq!(policy["Statement"][0]["Resource"], "*");
    assert_eq!(
        v["deviceConfiguration"]["LocationUrl"],
        "https://example.aws"
    );

    let out = ok(&[
        "provision",
        "template",
        "render",
        &aws_template("guide-jitp.json"),
        "--param",
        "AWS::IoT::Certificate::CommonName=bulb-1",
        "--param",
        "AWS::IoT::Certificate::SerialNumber=7",
        "--param",
        "AWS::IoT::Certificate::Country=DE",
        "--param",
        &format!("AWS::IoT::Certificate::Id={id}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["thing"]["thingGroups"],
        serde_json::json!(["v1-lightbulbs", "DE"])
    );
    assert_eq!(v["certificate"]["overrideSettings"]["status"], "DO_NOTHING");
}

#[test]
fn provision_template_errors_show_line_and_column() {
    // The guide's pre-provisioning hook example uses SerialNumber without declaring it.
    let err = fails(&[
        "provision",
        "template",
        "validate",
        &aws_template("guide-pre-provisioning-hook.json"),
    ]);
    assert!(
        err.contains("template: 22:70: Resources.thing.Properties.ThingName.Fn::Join[1][1].Ref"),
        "{err}"
    );
    assert!(
        err.contains("undeclared parameter \"SerialNumber\""),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    std::fs::write(
        &file,
        "{\"Resources\": {\n  \"g\": {\"Type\": \"AWS::IoT::ThingGroup\"},\n  \"g\": {}}}",
    )
    .unwrap();
    let err = fails(&["provision", "template", "validate", file.to_str().unwrap()]);
    assert!(
        err.contains("3:3: Resources.g: duplicate key \"g\" (first at 2:3)"),
        "{err}"
    );
    std::fs::write(
        &file,
        "{\"Resources\": {\n  \"g\": {\"Type\": \"AWS::IoT::ThingGroup\"}}}",
    )
    .unwrap();
    let err = fails(&["provision", "template", "validate", file.to_str().unwrap()]);
    assert!(err.contains("2:17: Resources.g.Type"), "{err}");
    assert!(
        err.contains("\"AWS::IoT::ThingGroup\" is not supported"),
        "{err}"
    );
}
