//! Schema migrations, applied when a store opens (and again on every reconnect, a no-op then).
//!
//! Each store (a *component*: `registry`, `shadow`, `jobs`) has an ordered list of migrations.
//! They run in one transaction under a transaction-level advisory lock keyed by the schema name
//! (`pg_advisory_xact_lock`), so servers starting together apply each migration once, and each
//! applied version is recorded in the schema's `schema_version` table. A database whose
//! recorded version is newer than the list is refused with [`Error::SchemaTooNew`]: an old
//! build must not write to tables it does not understand.

use ::postgres::Client;

use super::connection::Failure;
use crate::error::Error;

/// One component's migrations: `migrations[i]` takes it from version `i` to `i + 1`. `{s}` in
/// the SQL stands for the quoted schema name.
pub(crate) struct Migrations {
    pub(crate) component: &'static str,
    pub(crate) steps: &'static [&'static str],
}

/// Applies what `schema` lacks of `migrations`, creating the schema if needed.
pub(crate) fn apply(
    client: &mut Client,
    schema: &str,
    migrations: &Migrations,
) -> Result<(), Failure> {
    let quoted = quote(schema);
    let known = i32::try_from(migrations.steps.len()).unwrap_or(i32::MAX);
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("thingkit schema {schema}")],
    )?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         CREATE TABLE IF NOT EXISTS {quoted}.schema_version (
             component text COLLATE \"C\" NOT NULL,
             version integer NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (component, version)
         )"
    ))?;
    let row = tx.query_one(
        &format!(
            "SELECT coalesce(max(version), 0) FROM {quoted}.schema_version WHERE component = $1"
        ),
        &[&migrations.component],
    )?;
    let found: i32 = row.try_get(0)?;
    if found > known {
        return Err(Failure::Other(Error::SchemaTooNew {
            component: migrations.component,
            found,
            known,
        }));
    }
    let first = usize::try_from(found).unwrap_or(0);
    for (version, sql) in migrations.steps.iter().enumerate().skip(first) {
        tx.batch_execute(&sql.replace("{s}", &quoted))?;
        let version = i32::try_from(version + 1).unwrap_or(i32::MAX);
        tx.execute(
            &format!("INSERT INTO {quoted}.schema_version (component, version) VALUES ($1, $2)"),
            &[&migrations.component, &version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// `schema` as a quoted identifier. The schema was checked to be `[a-z_][a-z0-9_]*`, so this
/// only guards against a future relaxation of that rule.
pub(crate) fn quote(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}
