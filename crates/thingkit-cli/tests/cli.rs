//! The CLI's case files: `tests/cmd/*.toml`, one command each (arguments, stdin, expected exit
//! status) with its expected output beside it in `*.stdout` / `*.stderr`, read-only inputs under
//! `tests/cmd/fixtures/`. `TRYCMD=overwrite cargo test -p thingkit-cli --test cli` rewrites the
//! expected outputs after a deliberate change (review the diff); `[..]` and `...` in them match
//! what varies between runs.
//!
//! Flows that create keys and certificates and then use them (provisioning, firmware signing)
//! stay in Rust in `firmware.rs` and `provision.rs`: see `tests/README.md` for why.

#[test]
fn case_files() {
    trycmd::TestCases::new()
        .register_bin("thingkit", trycmd::cargo::cargo_bin!("thingkit"))
        .case("tests/cmd/*.toml");
}
