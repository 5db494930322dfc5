//! Where a PostgreSQL store connects, and its timeouts.

use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// The longest schema name: `<schema>.registry` must fit in 63 bytes.
const MAX_SCHEMA: usize = 48;

/// Where the PostgreSQL stores keep their tables, and how long they wait.
///
/// Several clusters (or test runs) can share one database: each uses its own PostgreSQL schema,
/// created at open. Connections are plain TCP (`NoTls`): run PostgreSQL on a private network or
/// loopback, or put a TLS tunnel in front of it.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// A libpq-style URL or key=value string, e.g.
    /// `postgres://thingkit@db.internal:5432/thingkit`.
    pub url: String,
    /// The PostgreSQL schema that holds the tables: 1 to 48 characters of `a-z`, `0-9` and `_`,
    /// not starting with a digit and not starting with `pg_` (48, so that the `LISTEN` channel
    /// `<schema>.registry` fits PostgreSQL's 63-byte names). Default `thingkit`.
    pub schema: String,
    /// How long a call waits for its answer before it returns [`Error::Timeout`]. Default 10 s.
    pub call_timeout: Duration,
    /// The server cancels a statement that runs longer (`statement_timeout`). Default 5 s.
    pub statement_timeout: Duration,
    /// How long connecting may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long sent data may stay unacknowledged by the server's TCP stack before the
    /// connection is dropped (`TCP_USER_TIMEOUT`; a vanished server is noticed this fast).
    /// Default 5 s.
    pub tcp_user_timeout: Duration,
    /// Whether [`PgRegistryStore`](crate::PgRegistryStore) commits `pg_notify` the keys they
    /// change, for [`RegistryFeed`](crate::RegistryFeed)s. Default `true`. PostgreSQL
    /// serializes the commits of notifying transactions database-wide; turn this off for a
    /// bulk load that no feed needs to see.
    pub registry_notify: bool,
}

impl PostgresConfig {
    /// The defaults above, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            schema: "thingkit".into(),
            call_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            tcp_user_timeout: Duration::from_secs(5),
            registry_notify: true,
        }
    }

    /// The same, with the tables in `schema`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The schema, checked to be a plain identifier (it is spliced into SQL, quoted).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the rule it breaks.
    pub(crate) fn checked_schema(&self) -> Result<&str, Error> {
        Self::check_schema(&self.schema).map(|()| self.schema.as_str())
    }

    /// Checks that `schema` can be a [`PostgresConfig::schema`]: 1 to 48 of `a-z`, `0-9` and `_`,
    /// not starting with a digit or `pg_` (a configuration file's checker calls this before any
    /// store opens).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the rule `schema` breaks.
    pub fn check_schema(schema: &str) -> Result<(), Error> {
        let s = schema;
        let valid = !s.is_empty()
            && s.len() <= MAX_SCHEMA
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && s.as_bytes().first().is_some_and(|b| !b.is_ascii_digit())
            && !s.starts_with("pg_");
        if valid {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "PostgreSQL schema {s:?}: use 1 to {MAX_SCHEMA} of a-z, 0-9 and _, not starting with a digit or pg_"
            )))
        }
    }

    pub(crate) fn client_config(&self) -> Result<::postgres::Config, Error> {
        self.checked_schema()?;
        let mut config = ::postgres::Config::from_str(&self.url)
            .map_err(|e| Error::Config(format!("PostgreSQL URL: {e}")))?;
        config
            .connect_timeout(self.connect_timeout)
            .tcp_user_timeout(self.tcp_user_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("thingkit");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_schema_names() {
        for s in ["thingkit", "tk_test_1", "_x", "a"] {
            assert!(
                PostgresConfig::new("")
                    .with_schema(s)
                    .checked_schema()
                    .is_ok(),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_schema_names_that_are_not_plain_identifiers() {
        let long = "a".repeat(MAX_SCHEMA + 1);
        for s in [
            "",
            "Thingkit",
            "1x",
            "pg_x",
            "a-b",
            "a\"b",
            "a;drop",
            "é",
            long.as_str(),
        ] {
            let config = PostgresConfig::new("").with_schema(s);
            assert!(
                matches!(config.checked_schema(), Err(Error::Config(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn rejects_a_url_that_does_not_parse() {
        let err = PostgresConfig::new("postgres://[::1").client_config();
        assert!(matches!(err, Err(Error::Config(_))));
    }
}
