//! `thingkit audit run|findings --config FILE`: Device Defender's audit checks
//! (`thingkit_audit::run_audit`) run offline on a server's data directory.
//!
//! `run` builds an audit snapshot from the registry (`registry.redb`), runs every check enabled
//! by default, prints the findings (a table, or one JSON object with `--json`) and writes them to
//! `<data_dir>/audit-findings.json`; `findings` prints that file again. The snapshot's rules:
//!
//! - certificates, CAs and policies (default versions) come from the registry;
//! - the connection log is empty offline, so the two connection checks find nothing;
//! - logging counts as enabled: `thingkit serve` always writes its log;
//! - no CRLs and no Debian weak-key list are given.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use thingkit_audit::{AuditConfig, AuditFinding, AuditSnapshot};
use thingkit_provision::{RedbStore, Registry, RegistryLimits};

use crate::Failure;
use crate::config::ServeConfig;
use crate::report::{self, ReportInputs};

/// The file `audit run` writes in the data directory.
pub const FINDINGS_FILE: &str = "audit-findings.json";

/// `thingkit audit ...`.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// Run the audit checks on the data directory's registry, print the findings and keep them
    /// in `<data_dir>/audit-findings.json`.
    Run {
        /// The server's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object (`taskId`, `taskStartTime`, `findings`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the last run's findings (from `<data_dir>/audit-findings.json`).
    Findings {
        /// The server's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// One audit run as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRun {
    /// The task ID.
    pub task_id: String,
    /// When it ran, Unix seconds.
    pub task_start_time: i64,
    /// Every finding (suppressed ones included, flagged).
    pub findings: Vec<AuditFinding>,
}

/// The registry of a data directory as an audit snapshot and as report inputs.
pub struct RegistryData {
    /// What the audit checks read.
    pub snapshot: AuditSnapshot,
    /// What the fleet report reads (findings and usage left empty).
    pub inputs: ReportInputs,
}

impl RegistryData {
    /// Reads the registry in `config.data_dir`, or the cluster's in PostgreSQL when
    /// `[cluster] postgres` is set.
    pub fn open(config: &ServeConfig) -> Result<RegistryData, Failure> {
        if let Some(url) = &config.cluster.postgres {
            let pg = thingkit_cluster::PostgresConfig::new(url.clone())
                .with_schema(config.cluster.schema.clone());
            let store: Box<dyn thingkit_provision::RegistryStore> = Box::new(
                thingkit_cluster::PgRegistryStore::open(&pg)
                    .map_err(|e| Failure(format!("[cluster] postgres (registry): {e}")))?,
            );
            let registry = Registry::open(store, RegistryLimits::default()).map_err(|e| {
                Failure(format!("PostgreSQL schema {}: {e}", config.cluster.schema))
            })?;
            return Self::from_registry(
                &registry,
                &config.account.account_id,
                &config.account.region,
            );
        }
        let path = config.data_dir.join("registry.redb");
        if !path.exists() {
            return Err(Failure(format!(
                "{}: no registry (run `thingkit serve` once first)",
                path.display()
            )));
        }
        let store =
            RedbStore::open(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        let registry = Registry::open(store, RegistryLimits::default())
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        Self::from_registry(
            &registry,
            &config.account.account_id,
            &config.account.region,
        )
    }

    /// Builds the snapshot (with the control plane's [`thingkit_api::audit::registry_snapshot`],
    /// the one the server's audits use) and the report inputs from an open registry.
    pub fn from_registry<S: thingkit_provision::RegistryStore>(
        registry: &Registry<S>,
        account: &str,
        region: &str,
    ) -> Result<RegistryData, Failure> {
        let arn = thingkit_policy::ArnPrefix::new("aws", region, account).ok_or_else(|| {
            Failure(format!(
                "account {account}, region {region}: not an ARN prefix"
            ))
        })?;
        let mut snapshot = thingkit_api::audit::registry_snapshot(registry, &arn)
            .map_err(|e| Failure(format!("registry: {e}")))?;
        snapshot.logging_enabled = true;
        let mut inputs = ReportInputs {
            account: account.to_string(),
            ..ReportInputs::default()
        };
        for (id, cert) in registry.certificates() {
            let id_text = id.to_string();
            inputs
                .certificate_statuses
                .push(cert.status.as_str().to_string());
            for t in &cert.things {
                inputs
                    .thing_certificates
                    .push((t.thing.to_string(), id_text.clone()));
            }
            for p in &cert.policies {
                inputs
                    .certificate_policies
                    .push((id_text.clone(), p.to_string()));
            }
        }
        inputs.policies = registry.policies().count() as u64;
        for (name, thing) in registry.things() {
            inputs.things.push((
                name.to_string(),
                thing
                    .attributes
                    .get(report::FIRMWARE_ATTRIBUTE)
                    .map(|v| v.to_string()),
            ));
            if registry.connectivity(name).is_some_and(|c| c.connected) {
                inputs.connected.push(name.to_string());
            }
        }
        Ok(RegistryData { snapshot, inputs })
    }
}

/// Runs the audit on the data directory's registry.
pub fn run_offline(config: &ServeConfig, now: i64) -> Result<AuditRun, Failure> {
    let data = RegistryData::open(config)?;
    let report = thingkit_audit::run_audit(&data.snapshot, &AuditConfig::default(), now);
    Ok(AuditRun {
        task_id: report.task_id,
        task_start_time: report.task_start_time,
        findings: report.findings,
    })
}

/// The findings as a table: severity, check, resource, reason.
pub fn table(run: &AuditRun) -> String {
    let mut rows = vec![[
        "SEVERITY".to_string(),
        "CHECK".to_string(),
        "RESOURCE".to_string(),
        "REASON".to_string(),
    ]];
    for f in run.findings.iter().filter(|f| !f.is_suppressed) {
        let r = report::FindingRow::of(f);
        rows.push([r.severity, r.check, r.resource, r.reason]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let open = rows.len() - 1;
    out.push_str(&format!(
        "{open} open finding{}\n",
        if open == 1 { "" } else { "s" }
    ));
    out
}

fn print(run: &AuditRun, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(run)?);
    } else {
        print!("{}", table(run));
    }
    Ok(())
}

fn findings_path(config: &Path) -> Result<PathBuf, Failure> {
    Ok(ServeConfig::from_file(config)?.data_dir.join(FINDINGS_FILE))
}

/// Runs one `audit` subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Run { config, json } => {
            let path = findings_path(&config)?;
            let run = run_offline(&ServeConfig::from_file(&config)?, report::now())?;
            std::fs::write(&path, serde_json::to_vec_pretty(&run)?)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            print(&run, json)
        }
        Args::Findings { config, json } => {
            let path = findings_path(&config)?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Failure(format!(
                    "{}: {e} (run `thingkit audit run` first)",
                    path.display()
                ))
            })?;
            let run: AuditRun = serde_json::from_str(&text)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            print(&run, json)
        }
    }
}
