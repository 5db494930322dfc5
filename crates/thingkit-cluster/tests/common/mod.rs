//! What the PostgreSQL tests share: the server they use and a schema of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use thingkit_cluster::PostgresConfig;

/// The environment variable naming the PostgreSQL the tests use.
pub const ENV: &str = "THINGKIT_TEST_POSTGRES";

/// Its URL; panics (fails the test) when it is not set.
pub fn url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENV} is not set: these tests need PostgreSQL. Start one with `.ci/postgres start` \
             and run `{ENV}=$(.ci/postgres url) cargo test -p thingkit-cluster -- --ignored`"
        ),
    }
}

/// A schema name no other test or run uses: `<prefix>_<pid>_<nanos>_<n>`.
pub fn fresh_schema(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The configuration of a store in `schema`.
pub fn config(schema: &str) -> PostgresConfig {
    PostgresConfig::new(url()).with_schema(schema)
}
