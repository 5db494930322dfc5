//! Several `thingkit serve` processes on one directory sharing PostgreSQL and NATS: the
//! configuration files, the peers' URLs, a mosquitto client.

use std::path::{Path, PathBuf};

use super::fleet_dir;

/// Devices connect as their thing, and publish, receive and subscribe on `dt/*` and on their
/// own shadow topics.
pub const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/dt/*",
                  "arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/dt/*",
                  "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]}
  ]
}"#;

/// The PostgreSQL URL the tests use; panics (fails the test) when it is not set.
pub fn postgres_url() -> String {
    std::env::var("THINGKIT_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "THINGKIT_TEST_POSTGRES is not set: run `.ci/postgres start` and export \
             THINGKIT_TEST_POSTGRES=$(.ci/postgres url) (.ci/run does both)"
        )
    })
}

/// A schema no other test run uses, so runs never see each other's records.
pub fn fresh_schema(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t_{test}_{}_{nanos}", std::process::id())
}

/// The NATS URL the tests use; panics (fails the test) when it is not set.
pub fn nats_url() -> String {
    std::env::var("THINGKIT_TEST_NATS").unwrap_or_else(|_| {
        panic!(
            "THINGKIT_TEST_NATS is not set: start a server with `.ci/nats start` and set \
             THINGKIT_TEST_NATS=$(.ci/nats url) (.ci/run does both)"
        )
    })
}

/// What the servers of a test cluster share: a PostgreSQL schema, a NATS cluster name.
#[derive(Default)]
pub struct Shared {
    /// `[cluster] postgres` and `schema`.
    pub postgres: Option<(String, String)>,
    /// `[cluster] nats` and `name`.
    pub nats: Option<(String, String)>,
}

/// A server directory (`fleet_dir`: CA, devices, policy) and `n` configuration files in it,
/// `server-<i>.toml`, each with its own data directory, server ID and ephemeral ports, all
/// sharing what `shared` names.
pub fn cluster_dir(dir: &Path, things: &[&str], shared: &Shared, n: usize) -> Vec<PathBuf> {
    fleet_dir(dir, things, POLICY);
    let base = std::fs::read_to_string(dir.join("thingkit.toml")).unwrap();
    (0..n)
        .map(|i| {
            let mut config =
                base.replace("# data_dir = \"data\"", &format!("data_dir = \"data-{i}\""));
            if let Some((url, schema)) = &shared.postgres {
                config = config
                    .replace(
                        "# postgres = \"postgres://thingkit@db.internal:5432/thingkit\"",
                        &format!("postgres = {url:?}"),
                    )
                    .replace("# schema = \"thingkit\"", &format!("schema = {schema:?}"));
            }
            if let Some((url, name)) = &shared.nats {
                config = config
                    .replace(
                        "# nats = \"nats://127.0.0.1:4222\"",
                        &format!("nats = {url:?}"),
                    )
                    .replace("# name = \"thingkit\"", &format!("name = {name:?}"));
            }
            config = config.replace(
                "# server_id = \"server-1\"",
                &format!("server_id = \"server-{i}\""),
            );
            assert!(
                config.contains(&format!("data_dir = \"data-{i}\""))
                    && config.contains(&format!("server_id = \"server-{i}\""))
                    && (shared.postgres.is_none() || config.contains("\npostgres = "))
                    && (shared.nats.is_none() || config.contains("\nnats = ")),
                "the example configuration's lines moved"
            );
            let path = dir.join(format!("server-{i}.toml"));
            std::fs::write(&path, config).unwrap();
            path
        })
        .collect()
}
