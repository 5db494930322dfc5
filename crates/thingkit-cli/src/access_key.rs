//! `thingkit access-key create|list|delete --config FILE`: the access keys the control-plane API
//! authenticates (SigV4) and authorizes (IAM identity policies) with, kept in
//! `<data_dir>/access-keys.json` (a secret file: owner-only; see `thingkit_api::keys`), or, with
//! `[cluster] postgres`, in the cluster's PostgreSQL, where every server finds them.
//!
//! A running server picks up a created key at its first use; no restart is needed. In a
//! cluster, every server stops accepting a deleted key within a second (PostgreSQL `NOTIFY`).

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Subcommand;
use thingkit_api::keys::{FILE_NAME, KeyStore};

use crate::Failure;
use crate::config::ServeConfig;

/// `thingkit access-key ...`.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// Create a key and print it once: `{"AccessKeyId": "...", "SecretAccessKey": "..."}`.
    /// Without `--policy` the key may call every operation.
    Create {
        /// The server's configuration file (the keys live in its `data_dir`, or in the
        /// cluster's PostgreSQL with `[cluster] postgres`).
        #[arg(long)]
        config: PathBuf,
        /// An IAM identity policy (JSON) limiting what the key may do, checked before the key
        /// is created.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// List the keys as JSON lines: `{"AccessKeyId": ..., "HasPolicy": ..., "CreatedAt": ...}`
    /// (never the secret).
    List {
        /// The server's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Delete a key; calls signed with it are refused from then on.
    Delete {
        /// The server's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The access key ID.
        id: String,
    },
}

fn store(config: &std::path::Path) -> Result<KeyStore, Failure> {
    let config = ServeConfig::from_file(config)?;
    if let Some(url) = &config.cluster.postgres {
        let pg = thingkit_cluster::PostgresConfig::new(url.clone())
            .with_schema(config.cluster.schema.clone());
        let control = thingkit_cluster::PgControlStore::open(&pg, "thingkit access-key")
            .map_err(|e| Failure(format!("[cluster] postgres (access keys): {e}")))?;
        return KeyStore::with_backend(std::sync::Arc::new(control.access_keys()))
            .map_err(|e| Failure(format!("[cluster] postgres (access keys): {}", e.message)));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Failure(format!("{}: {e}", config.data_dir.display())))?;
    Ok(KeyStore::open(config.data_dir.join(FILE_NAME))?)
}

/// Runs one `access-key` subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Create { config, policy } => {
            let policy = policy
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .map_err(|e| Failure(format!("{}: {e}", p.display())))
                })
                .transpose()?;
            let keys = store(&config)?;
            let key = keys
                .create(policy, SystemTime::now())
                .map_err(|e| Failure(e.message))?;
            println!(
                "{{\"AccessKeyId\": {}, \"SecretAccessKey\": {}}}",
                serde_json::Value::from(key.access_key_id),
                serde_json::Value::from(key.secret_access_key)
            );
        }
        Args::List { config } => {
            for key in store(&config)?.list() {
                println!(
                    "{}",
                    serde_json::json!({
                        "AccessKeyId": key.access_key_id,
                        "HasPolicy": key.policy.is_some(),
                        "CreatedAt": key.created_at,
                    })
                );
            }
        }
        Args::Delete { config, id } => {
            if !store(&config)?
                .delete(&id)
                .map_err(|e| Failure(e.message))?
            {
                return Err(Failure(format!("no access key {id}")));
            }
        }
    }
    Ok(())
}
