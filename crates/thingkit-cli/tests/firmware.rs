//! `thingkit firmware ...` end to end: keygen, sign, verify (success and each refusal), inspect.

use std::path::{Path, PathBuf};

mod common;
use common::*;

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";

struct Setup {
    _dir: tempfile::TempDir,
    key: PathBuf,
    key2: PathBuf,
    image: PathBuf,
    envelope: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.key");
    let key2 = dir.path().join("second.key");
    let image = dir.path().join("fw.bin");
    let envelope = dir.path().join("fw.suit");
    std::fs::write(
        &image,
        (0..300_000u32)
            .map(|i| (i % 241) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let o = thingkit(
        &["firmware", "keygen", "--alg", "es256", "--out", arg(&key)],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = thingkit(
        &[
            "firmware",
            "keygen",
            "--alg",
            "ed25519",
            "--out",
            arg(&key2),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = thingkit(
        &[
            "firmware",
            "sign",
            "--key",
            arg(&key),
            "--key",
            arg(&key2),
            "--image",
            arg(&image),
            "--sequence",
            "7",
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--uri",
            "https://fw.example/7.bin",
            "--out",
            arg(&envelope),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    Setup {
        _dir: dir,
        key,
        key2,
        image,
        envelope,
    }
}

fn pubkey(p: &Path) -> String {
    format!("{}.pub", arg(p))
}

#[test]
fn keygen_writes_private_key_with_mode_0600_and_public_key_beside_it() {
    let st = setup();
    let private = std::fs::read_to_string(&st.key).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    let public = std::fs::read_to_string(pubkey(&st.key)).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&st.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn verify_accepts_a_good_envelope_and_image() {
    let st = setup();
    let o = thingkit(
        &[
            "firmware",
            "verify",
            "--envelope",
            arg(&st.envelope),
            "--trust",
            &pubkey(&st.key),
            "--trust",
            &pubkey(&st.key2),
            "--threshold",
            "2",
            "--image",
            arg(&st.image),
            "--installed-sequence",
            "6",
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sequence_number"], 7);
    assert_eq!(v["signers"].as_array().unwrap().len(), 2);
    assert_eq!(v["image"]["size"], 300_000);
}

fn refused(args: &[&str], needle: &str) {
    let o = thingkit(args, None);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "one-line reason, got {err:?}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}

#[test]
fn verify_refuses_rollback_wrong_identity_untrusted_key_threshold_and_bad_image() {
    let st = setup();
    let env = arg(&st.envelope);
    let k1 = pubkey(&st.key);
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            env,
            "--trust",
            &k1,
            "--installed-sequence",
            "7",
        ],
        "rollback",
    );
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            env,
            "--trust",
            &k1,
            "--vendor-id",
            CLASS,
            "--class-id",
            CLASS,
        ],
        "vendor",
    );
    let other = st._dir.path().join("other.key");
    assert!(
        thingkit(
            &["firmware", "keygen", "--alg", "es256", "--out", arg(&other)],
            None
        )
        .status
        .success()
    );
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            env,
            "--trust",
            &pubkey(&other),
        ],
        "threshold",
    );
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            env,
            "--trust",
            &k1,
            "--trust",
            &pubkey(&other),
            "--threshold",
            "2",
        ],
        "1 valid signature",
    );
    let bad_image = st._dir.path().join("bad.bin");
    let mut img = std::fs::read(&st.image).unwrap();
    img[1000] ^= 1;
    std::fs::write(&bad_image, &img).unwrap();
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            env,
            "--trust",
            &k1,
            "--image",
            arg(&bad_image),
        ],
        "digest",
    );
    img.push(0);
    std::fs::write(&bad_image, &img).unwrap();
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            env,
            "--trust",
            &k1,
            "--image",
            arg(&bad_image),
        ],
        "beyond",
    );
}

#[test]
fn verify_refuses_a_tampered_envelope() {
    let st = setup();
    let mut bytes = std::fs::read(&st.envelope).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&st.envelope, &bytes).unwrap();
    refused(
        &[
            "firmware",
            "verify",
            "--envelope",
            arg(&st.envelope),
            "--trust",
            &pubkey(&st.key),
        ],
        "digest",
    );
}

#[test]
fn verify_without_class_id_is_a_usage_error() {
    let st = setup();
    let o = thingkit(
        &[
            "firmware",
            "verify",
            "--envelope",
            arg(&st.envelope),
            "--trust",
            &pubkey(&st.key),
            "--vendor-id",
            VENDOR,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_prints_manifest_and_signature_details_as_json() {
    let st = setup();
    let o = thingkit(
        &["firmware", "inspect", "--envelope", arg(&st.envelope)],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sequence_number"], 7);
    assert_eq!(v["image_size"], 300_000);
    assert_eq!(v["uri"], "https://fw.example/7.bin");
    assert_eq!(v["vendor_id"], VENDOR);
    assert_eq!(v["components"][0], "[00]");
    assert_eq!(v["manifest_digest"].as_str().unwrap().len(), 64);
    let sigs = v["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["algorithm"], "ES256");
    assert_eq!(sigs[1]["algorithm"], "EdDSA");
    assert_eq!(sigs[0]["key_id"].as_str().unwrap().len(), 32);
}

#[test]
fn inspect_and_verify_the_drafts_example_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../thingkit-firmware/tests/vectors");
    let env = dir.join("example2.suit");
    let o = thingkit(&["firmware", "inspect", "--envelope", arg(&env)], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["signatures"][0]["algorithm"], "ESP256");
    assert_eq!(v["signatures"][0]["key_id"], serde_json::Value::Null);
    let o = thingkit(
        &[
            "firmware",
            "verify",
            "--envelope",
            arg(&env),
            "--trust",
            arg(&dir.join("example-key.pub.pem")),
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--installed-sequence",
            "1",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn inspect_refuses_garbage_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk");
    std::fs::write(&p, b"\xd8\x6b\xbf").unwrap();
    refused(
        &["firmware", "inspect", "--envelope", arg(&p)],
        "indefinite",
    );
}
