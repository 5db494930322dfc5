//! `thingkit shadow get|update|delete|list`: the AWS IoT data plane's device shadow operations
//! (`iot-data` GetThingShadow, UpdateThingShadow, DeleteThingShadow, ListNamedShadowsForThing),
//! called over HTTPS on the API `thingkit serve` hosts (or AWS IoT), signed for `iotdata` with
//! the access key in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
//!
//! The endpoint, CA bundle and region come from `--config` (the server's own file: `[api]
//! listen`, `[ca] certificate`, `[account] region`) or from `--endpoint`, `--ca-bundle` and
//! `--region`, which override the file. Each command prints the response's JSON on one line.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::Failure;
use crate::client::{ApiClient, Credentials, encode};
use crate::config::ServeConfig;

/// The signing name of the AWS IoT data plane.
const SERVICE: &str = "iotdata";

/// `thingkit shadow ...`.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// GetThingShadow: print the shadow document (state, metadata, version, timestamp).
    Get {
        #[command(flatten)]
        shadow: ShadowArgs,
    },
    /// UpdateThingShadow: send a document such as `{"state":{"desired":{"on":true}}}` and
    /// print the accepted update.
    Update {
        #[command(flatten)]
        shadow: ShadowArgs,
        /// The update document (JSON), or `-` (the default) to read it from stdin.
        #[arg(long, default_value = "-")]
        payload: String,
    },
    /// DeleteThingShadow: delete the shadow and print `{"version", "timestamp"}`.
    Delete {
        #[command(flatten)]
        shadow: ShadowArgs,
    },
    /// ListNamedShadowsForThing: every page, printed as one `{"results": [names...]}`.
    List {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The thing.
        #[arg(long)]
        thing: String,
    },
}

/// Which shadow: a thing, and a name for a named shadow.
#[derive(Debug, clap::Args)]
pub struct ShadowArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// The thing.
    #[arg(long)]
    thing: String,
    /// A named shadow; without it, the thing's classic (unnamed) shadow.
    #[arg(long)]
    name: Option<String>,
}

/// Where the API is and how to reach it.
#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// The server's configuration file: the endpoint is `https://localhost:<port of [api]
    /// listen>`, the CA bundle `[ca] certificate`, the region `[account] region`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The API's URL, e.g. https://localhost:8443 (overrides --config).
    #[arg(long, required_unless_present = "config")]
    endpoint: Option<String>,
    /// PEM file of the CA certificates trusted for the server's certificate, and no others
    /// (overrides --config).
    #[arg(long, required_unless_present = "config")]
    ca_bundle: Option<PathBuf>,
    /// The region requests are signed for (overrides --config).
    #[arg(long, required_unless_present = "config")]
    region: Option<String>,
}

/// The URL a client reaches a listener on: the listen address's port on localhost when it
/// listens on every address or on loopback (the name `thingkit init`'s server certificate
/// carries), on its own address otherwise.
fn endpoint_of(listen: SocketAddr) -> String {
    let ip = listen.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        format!("https://localhost:{}", listen.port())
    } else {
        format!("https://{listen}")
    }
}

impl EndpointArgs {
    /// The server's configuration file, when `--config` was given.
    pub(crate) fn config_path(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    /// The region requests are signed for, when `--region` was given.
    pub(crate) fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The signed client these arguments describe (credentials from the environment).
    pub(crate) fn client(self) -> Result<ApiClient, Failure> {
        let config = self
            .config
            .as_deref()
            .map(ServeConfig::from_file)
            .transpose()?;
        let from_config = |what: &str| {
            Failure(format!(
                "{what} is not known: pass it, or --config with the server's file"
            ))
        };
        let endpoint = match (self.endpoint, &config) {
            (Some(e), _) => e,
            (None, Some(c)) => {
                if !c.api.enabled {
                    return Err(Failure(
                        "the configuration's [api] is disabled (api.enabled = false)".into(),
                    ));
                }
                if c.api.listen.port() == 0 {
                    return Err(Failure(
                        "api.listen has port 0 (chosen at start): pass --endpoint with the port \
                         `thingkit serve` printed"
                            .into(),
                    ));
                }
                endpoint_of(c.api.listen)
            }
            (None, None) => return Err(from_config("--endpoint")),
        };
        let ca_bundle = match (self.ca_bundle, &config) {
            (Some(p), _) => p,
            (None, Some(c)) => c.ca.certificate.clone(),
            (None, None) => return Err(from_config("--ca-bundle")),
        };
        let region = match (self.region, &config) {
            (Some(r), _) => r,
            (None, Some(c)) => c.account.region.clone(),
            (None, None) => return Err(from_config("--region")),
        };
        let credentials = Credentials::from_env()?;
        ApiClient::new(&endpoint, &ca_bundle, &region, credentials)
    }
}

fn shadow_path(thing: &str) -> String {
    format!("/things/{}/shadow", encode(thing))
}

fn name_query(name: Option<&str>) -> Vec<(&str, &str)> {
    name.map(|n| vec![("name", n)]).unwrap_or_default()
}

fn read_payload(payload: &str) -> Result<Vec<u8>, Failure> {
    if payload != "-" {
        return Ok(payload.as_bytes().to_vec());
    }
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| Failure(format!("stdin: {e}")))?;
    Ok(body)
}

fn print(value: &Value) {
    println!("{value}");
}

/// Every page of ListNamedShadowsForThing, following `nextToken`.
fn list_all(client: &ApiClient, thing: &str) -> Result<Vec<Value>, Failure> {
    let path = format!(
        "/api/things/shadow/ListNamedShadowsForThing/{}",
        encode(thing)
    );
    let mut results = Vec::new();
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let query: Vec<(&str, &str)> = token
            .as_deref()
            .map(|t| vec![("nextToken", t)])
            .unwrap_or_default();
        let page = client.call("GET", &path, &query, b"", SERVICE)?;
        if let Some(names) = page.get("results").and_then(Value::as_array) {
            results.extend(names.iter().cloned());
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(next) if !seen.insert(next.to_string()) => {
                return Err(Failure(format!(
                    "the server returned nextToken {next:?} twice; stopping"
                )));
            }
            Some(next) => token = Some(next.to_string()),
            None => return Ok(results),
        }
    }
}

/// Runs one `shadow` subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Get { shadow } => {
            let query = name_query(shadow.name.as_deref());
            let client = shadow.endpoint.client()?;
            print(&client.call("GET", &shadow_path(&shadow.thing), &query, b"", SERVICE)?);
        }
        Args::Update { shadow, payload } => {
            let body = read_payload(&payload)?;
            let query = name_query(shadow.name.as_deref());
            let client = shadow.endpoint.client()?;
            print(&client.call("POST", &shadow_path(&shadow.thing), &query, &body, SERVICE)?);
        }
        Args::Delete { shadow } => {
            let query = name_query(shadow.name.as_deref());
            let client = shadow.endpoint.client()?;
            print(&client.call("DELETE", &shadow_path(&shadow.thing), &query, b"", SERVICE)?);
        }
        Args::List { endpoint, thing } => {
            let client = endpoint.client()?;
            print(&json!({ "results": list_all(&client, &thing)? }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_endpoint_is_localhost_for_wildcard_and_loopback_listeners() {
        let at = |s: &str| endpoint_of(s.parse().expect("a socket address"));
        assert_eq!(at("0.0.0.0:8443"), "https://localhost:8443");
        assert_eq!(at("[::]:8443"), "https://localhost:8443");
        assert_eq!(at("127.0.0.1:8443"), "https://localhost:8443");
        assert_eq!(at("10.0.0.5:9443"), "https://10.0.0.5:9443");
        assert_eq!(at("[fd00::1]:9443"), "https://[fd00::1]:9443");
    }

    #[test]
    fn shadow_paths_encode_the_thing_label() {
        assert_eq!(shadow_path("lamp-1"), "/things/lamp-1/shadow");
        assert_eq!(shadow_path("a/b:c"), "/things/a%2Fb%3Ac/shadow");
    }
}
