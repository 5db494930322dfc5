//! `thingkit report --format html|json [--out FILE]`: the fleet report, computed offline from a
//! server's data directory, and its two renderings (one serde JSON object; one self-contained
//! HTML page with inline CSS and inline SVG charts, no script and nothing fetched).
//!
//! What the report reads, and the rules it applies:
//!
//! - **registry** (`registry.redb`): things, device certificates by status, policies; the audit
//!   snapshot [`crate::audit::RegistryData`] builds from it, on which every audit check runs;
//! - **connected devices**: the registry's connectivity of each thing (offline: as last
//!   recorded); a running server adds its once-a-minute samples as [`ConnectedSample`]s;
//! - **usage** (`usage.jsonl`, the meter's closed windows; with `[cluster] postgres`, the
//!   cluster's ledger in PostgreSQL, summed over every server: [`UsageLedger`]): messages,
//!   billable units and bytes per account, and the bill: the windows priced with the built-in
//!   price table whose metering is the server's `[metering] preset` (see [`read_usage`]);
//! - **rollout progress**: every job of the jobs engine (`jobs.redb`) with its executions by
//!   status;
//! - **firmware version of a thing**: its registry attribute `firmwareVersion` (the attribute a
//!   rollout's job sets when the device reports success); a thing without it counts as
//!   `unknown`. The firmware vulnerability rate counts things whose version is listed in
//!   [`ReportInputs::vulnerable_firmware`];
//! - **findings**: the open (not suppressed) findings of that audit run, by severity and check;
//! - **active violations**: those of a running server's detect loop (none offline).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thingkit_audit::AuditFinding;
use thingkit_audit::metrics::{self, Attachments, Finding, FindingResource, Ratio};

use crate::Failure;
use crate::config::ServeConfig;

/// The registry attribute that holds a thing's firmware version.
pub const FIRMWARE_ATTRIBUTE: &str = "firmwareVersion";

/// The maintenance-cost prices: $1.00 per million messages, $0.09 per GB (nano-USD).
pub const MAINTENANCE_RATES: metrics::MaintenanceRates = metrics::MaintenanceRates {
    per_million_messages: 1_000_000_000,
    per_gigabyte: 90_000_000,
};

/// The rendering `thingkit report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One self-contained HTML page.
    Html,
    /// One JSON object.
    Json,
}

/// `thingkit report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The server's configuration file (the report reads its `data_dir`).
    #[arg(long)]
    pub config: PathBuf,
    /// The rendering.
    #[arg(long, value_enum, default_value = "html")]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One sample of the number of connected devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnectedSample {
    /// When, Unix seconds.
    pub at: i64,
    /// Devices connected then.
    pub connected: u64,
}

/// Messages, billable units and bytes of one account (the meter's closed windows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountUsage {
    /// The account ID.
    pub account: String,
    /// Messages.
    pub messages: u64,
    /// Billable units (messages rounded up per metering block).
    pub units: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// What the usage costs (every month summed), in the price table's currency, e.g.
    /// `USD 0.000012`; absent when no built-in price table uses the server's metering preset.
    pub bill: Option<String>,
}

/// One row of the findings table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingRow {
    /// AWS's check name, e.g. `LOGGING_DISABLED_CHECK`.
    pub check: String,
    /// `CRITICAL`, `HIGH`, `MEDIUM` or `LOW`.
    pub severity: String,
    /// The non-compliant resource, as text.
    pub resource: String,
    /// The reason code.
    pub reason: String,
}

/// The progress of one job (a firmware rollout): its executions by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobProgress {
    /// The job ID.
    pub job_id: String,
    /// The job's status (`IN_PROGRESS`, `COMPLETED`, ...).
    pub status: String,
    /// Executions by status (`QUEUED`, `IN_PROGRESS`, `SUCCEEDED`, ...).
    pub executions: BTreeMap<String, u64>,
}

/// The progress of every job of the jobs engine.
pub fn rollout(jobs: &thingkit_jobs::DynJobs) -> Vec<JobProgress> {
    let Ok(list) = jobs.list_jobs() else {
        return Vec::new();
    };
    list.iter()
        .map(|job| {
            let mut executions = BTreeMap::new();
            for e in jobs.executions_of_job(&job.job_id).unwrap_or_default() {
                *executions.entry(e.status.as_str().to_string()).or_insert(0) += 1;
            }
            JobProgress {
                job_id: job.job_id.to_string(),
                status: job.status.as_str().to_string(),
                executions,
            }
        })
        .collect()
}

/// The jobs of the data directory's `jobs.redb`, offline (none when there is no such file), or
/// of the cluster's PostgreSQL when `[cluster] postgres` is set.
pub fn offline_rollout(config: &ServeConfig) -> Result<Vec<JobProgress>, Failure> {
    let path = config.data_dir.join("jobs.redb");
    let store: Box<dyn thingkit_jobs::JobStore> = match &config.cluster.postgres {
        Some(url) => {
            let pg = thingkit_cluster::PostgresConfig::new(url.clone())
                .with_schema(config.cluster.schema.clone());
            Box::new(
                thingkit_cluster::PgJobStore::open(&pg)
                    .map_err(|e| Failure(format!("[cluster] postgres (jobs): {e}")))?,
            )
        }
        None if !path.exists() => return Ok(Vec::new()),
        None => Box::new(
            thingkit_jobs::RedbJobStore::open(&path)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?,
        ),
    };
    let jobs =
        thingkit_jobs::Jobs::open(store, thingkit_jobs::Limits::default(), now().max(0) as u64)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    Ok(rollout(&jobs))
}

/// One active violation of the detect loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationRow {
    /// The thing in violation.
    pub thing: String,
    /// The security profile.
    pub profile: String,
    /// The behavior violated.
    pub behavior: String,
    /// Since when, Unix seconds.
    pub since: i64,
}

/// A ratio as numerator and denominator (the value is absent for `0 / 0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Numerator.
    pub numerator: u64,
    /// Denominator.
    pub denominator: u64,
    /// `numerator / denominator`, absent when the denominator is 0.
    pub value: Option<f64>,
}

impl From<Ratio> for Rate {
    fn from(r: Ratio) -> Rate {
        Rate {
            numerator: r.numerator,
            denominator: r.denominator,
            value: r.value(),
        }
    }
}

/// The fleet's key metrics (`thingkit_audit::metrics`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyMetrics {
    /// Connected things over registered things (a snapshot of the connection rate).
    pub connection_rate: Rate,
    /// Things running a vulnerable firmware version over registered things.
    pub firmware_vulnerability_rate: Rate,
    /// Things reached by an open CRITICAL or HIGH finding over registered things.
    pub finding_vulnerability_rate: Rate,
    /// Rules processing time p50, microseconds (absent without samples).
    pub rules_latency_p50_us: Option<u64>,
    /// Rules processing time p99, microseconds.
    pub rules_latency_p99_us: Option<u64>,
    /// Maintenance cost since the server started, nano-USD (job messages at $1.00 per
    /// million, firmware stream bytes at $0.09 per GB — AWS IoT Core messaging and data
    /// transfer out list prices); absent offline.
    pub maintenance_cost_nano_usd: Option<u64>,
}

/// The fleet report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetReport {
    /// When it was computed, Unix seconds.
    pub generated_at: i64,
    /// The account the server serves.
    pub account: String,
    /// Registered things.
    pub things_registered: u64,
    /// Things connected now.
    pub things_connected: u64,
    /// Device certificates by status (`ACTIVE`, ...).
    pub certificates: BTreeMap<String, u64>,
    /// Policies.
    pub policies: u64,
    /// Connected devices over time, oldest first.
    pub connected_over_time: Vec<ConnectedSample>,
    /// Usage per account.
    pub usage: Vec<AccountUsage>,
    /// Things per firmware version (`unknown` for things without the attribute).
    pub firmware_versions: BTreeMap<String, u64>,
    /// Jobs (firmware rollouts) and their executions by status.
    pub rollout: Vec<JobProgress>,
    /// Open findings by severity.
    pub findings_by_severity: BTreeMap<String, u64>,
    /// Open findings.
    pub findings: Vec<FindingRow>,
    /// Active violations.
    pub violations: Vec<ViolationRow>,
    /// Key metrics.
    pub metrics: KeyMetrics,
}

/// What [`FleetReport::build`] computes from: plain data, so a test or the server can build it.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    /// When, Unix seconds.
    pub now: i64,
    /// The account ID.
    pub account: String,
    /// `(thing name, firmware version)` of every registered thing.
    pub things: Vec<(String, Option<String>)>,
    /// Names of the connected things.
    pub connected: Vec<String>,
    /// Device certificate statuses, one per certificate.
    pub certificate_statuses: Vec<String>,
    /// `(thing, certificate id)` attachments.
    pub thing_certificates: Vec<(String, String)>,
    /// `(certificate id, policy)` attachments.
    pub certificate_policies: Vec<(String, String)>,
    /// Number of policies.
    pub policies: u64,
    /// Connected-devices samples.
    pub samples: Vec<ConnectedSample>,
    /// Usage per account.
    pub usage: Vec<AccountUsage>,
    /// Jobs and their progress.
    pub rollout: Vec<JobProgress>,
    /// The audit run's findings (suppressed ones are left out of the report).
    pub findings: Vec<AuditFinding>,
    /// Active violations.
    pub violations: Vec<ViolationRow>,
    /// Firmware versions known to be vulnerable.
    pub vulnerable_firmware: Vec<String>,
    /// Rules processing times, microseconds.
    pub rules_latencies_us: Vec<u64>,
    /// Maintenance traffic since the server started (a running server only).
    pub maintenance: Option<metrics::MaintenanceUsage>,
}

fn to_json_str<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

/// The resource a finding is about, as one line of text.
pub fn resource_text(finding: &AuditFinding) -> String {
    let id = &finding.non_compliant_resource.resource_identifier;
    if let Some(c) = &id.device_certificate_id {
        format!("certificate {c}")
    } else if let Some(c) = &id.ca_certificate_id {
        format!("CA certificate {c}")
    } else if let Some(c) = &id.client_id {
        format!("client {c}")
    } else if let Some(p) = &id.policy_version_identifier {
        format!("policy {} v{}", p.policy_name, p.policy_version_id)
    } else if let Some(a) = &id.account {
        format!("account {a}")
    } else {
        String::from("-")
    }
}

impl FindingRow {
    /// The row of one finding.
    pub fn of(f: &AuditFinding) -> FindingRow {
        FindingRow {
            check: to_json_str(&f.check_name),
            severity: to_json_str(&f.severity),
            resource: resource_text(f),
            reason: f.reason_for_non_compliance_code.as_str().to_string(),
        }
    }
}

impl FleetReport {
    /// Computes the report from its inputs.
    pub fn build(inputs: &ReportInputs) -> FleetReport {
        let open: Vec<&AuditFinding> = inputs
            .findings
            .iter()
            .filter(|f| !f.is_suppressed)
            .collect();
        let mut findings_by_severity = BTreeMap::new();
        let findings: Vec<FindingRow> = open
            .iter()
            .map(|f| {
                let row = FindingRow::of(f);
                *findings_by_severity
                    .entry(row.severity.clone())
                    .or_insert(0) += 1;
                row
            })
            .collect();
        let mut certificates = BTreeMap::new();
        for s in &inputs.certificate_statuses {
            *certificates.entry(s.clone()).or_insert(0) += 1;
        }
        let mut firmware_versions = BTreeMap::new();
        for (_, v) in &inputs.things {
            let v = v.clone().unwrap_or_else(|| "unknown".into());
            *firmware_versions.entry(v).or_insert(0) += 1;
        }
        let names: Vec<&str> = inputs.things.iter().map(|(t, _)| t.as_str()).collect();
        let registered: std::collections::HashSet<&str> = names.iter().copied().collect();
        let connected = inputs
            .connected
            .iter()
            .filter(|t| registered.contains(t.as_str()))
            .count() as u64;
        let fw: Vec<metrics::ThingFirmware<'_>> = inputs
            .things
            .iter()
            .map(|(t, v)| metrics::ThingFirmware {
                thing: t,
                version: v.as_deref(),
            })
            .collect();
        let vulnerable: Vec<&str> = inputs
            .vulnerable_firmware
            .iter()
            .map(String::as_str)
            .collect();
        let tc: Vec<(&str, &str)> = inputs
            .thing_certificates
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let cp: Vec<(&str, &str)> = inputs
            .certificate_policies
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let metric_findings: Vec<Finding<'_>> = open
            .iter()
            .filter_map(|f| {
                let severity = match f.severity {
                    thingkit_audit::Severity::Critical => metrics::Severity::Critical,
                    thingkit_audit::Severity::High => metrics::Severity::High,
                    thingkit_audit::Severity::Medium => metrics::Severity::Medium,
                    thingkit_audit::Severity::Low => metrics::Severity::Low,
                };
                let id = &f.non_compliant_resource.resource_identifier;
                let resource = if let Some(c) = &id.device_certificate_id {
                    FindingResource::Certificate(c)
                } else if let Some(c) = &id.client_id {
                    FindingResource::ClientId(c)
                } else {
                    FindingResource::Policy(&id.policy_version_identifier.as_ref()?.policy_name)
                };
                Some(Finding { severity, resource })
            })
            .collect();
        let mut latencies = inputs.rules_latencies_us.clone();
        let processing = metrics::processing_time(&mut latencies);
        FleetReport {
            generated_at: inputs.now,
            account: inputs.account.clone(),
            things_registered: registered.len() as u64,
            things_connected: connected,
            certificates,
            policies: inputs.policies,
            connected_over_time: inputs.samples.clone(),
            usage: inputs.usage.clone(),
            firmware_versions,
            rollout: inputs.rollout.clone(),
            findings_by_severity,
            findings,
            violations: inputs.violations.clone(),
            metrics: KeyMetrics {
                connection_rate: Rate::from(Ratio {
                    numerator: connected,
                    denominator: registered.len() as u64,
                }),
                firmware_vulnerability_rate: metrics::firmware_vulnerability_rate(&fw, &vulnerable)
                    .into(),
                finding_vulnerability_rate: metrics::finding_vulnerability_rate(
                    &Attachments {
                        things: &names,
                        thing_certificates: &tc,
                        certificate_policies: &cp,
                    },
                    &metric_findings,
                )
                .into(),
                rules_latency_p50_us: processing.map(|p| p.p50),
                rules_latency_p99_us: processing.map(|p| p.p99),
                maintenance_cost_nano_usd: inputs
                    .maintenance
                    .map(|usage| metrics::maintenance_cost(usage, MAINTENANCE_RATES).total),
            },
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The report as one self-contained HTML page.
    pub fn to_html(&self) -> String {
        crate::report_html::render(self)
    }
}

/// Where a server's usage ledger is: `data_dir/usage.jsonl` on one server, or the cluster's
/// PostgreSQL (`[cluster] postgres`), where every server appends its windows.
#[derive(Debug, Clone)]
pub enum UsageLedger {
    /// The JSON-lines file of one server.
    File(PathBuf),
    /// The ledger of every server of the cluster.
    Postgres(thingkit_cluster::PgUsageLedger),
}

impl UsageLedger {
    /// The ledger `config` names: PostgreSQL when `[cluster] postgres` is set (connecting to
    /// it), else `data_dir/usage.jsonl`.
    pub fn open(config: &ServeConfig) -> Result<UsageLedger, Failure> {
        match &config.cluster.postgres {
            Some(url) => {
                let pg = thingkit_cluster::PostgresConfig::new(url.clone())
                    .with_schema(config.cluster.schema.clone());
                let server = config.cluster.server_id.clone().unwrap_or_default();
                let store = thingkit_cluster::PgControlStore::open(&pg, &server)
                    .map_err(|e| Failure(format!("[cluster] postgres (usage ledger): {e}")))?;
                Ok(UsageLedger::Postgres(store.usage()))
            }
            None => Ok(UsageLedger::File(config.data_dir.join("usage.jsonl"))),
        }
    }

    /// The ledger of a server: `control`'s (the cluster's PostgreSQL) if given, else
    /// `data_dir/usage.jsonl`.
    pub fn open_with(
        config: &ServeConfig,
        control: Option<&thingkit_cluster::PgControlStore>,
    ) -> UsageLedger {
        match control {
            Some(control) => UsageLedger::Postgres(control.usage()),
            None => UsageLedger::File(config.data_dir.join("usage.jsonl")),
        }
    }

    /// Usage per account, billed as [`read_usage`] bills it (a missing file is no usage).
    pub fn read(
        &self,
        metering: &thingkit_meter::MeteringPolicy,
    ) -> Result<Vec<AccountUsage>, Failure> {
        match self {
            UsageLedger::File(path) => Ok(read_usage(path, metering)),
            UsageLedger::Postgres(ledger) => {
                let totals = ledger
                    .totals()
                    .map_err(|e| Failure(format!("[cluster] postgres (usage ledger): {e}")))?;
                let mut by_account: BTreeMap<String, AccountUsage> = BTreeMap::new();
                for (key, counts) in &totals {
                    add_to_account(&mut by_account, &key.account, counts);
                }
                Ok(billed(by_account, &totals, metering))
            }
        }
    }
}

fn add_to_account(
    by_account: &mut BTreeMap<String, AccountUsage>,
    account: &str,
    counts: &thingkit_meter::Counts,
) {
    let entry = by_account
        .entry(account.to_string())
        .or_insert_with(|| AccountUsage {
            account: account.to_string(),
            ..AccountUsage::default()
        });
    entry.messages = entry.messages.saturating_add(counts.messages);
    entry.units = entry.units.saturating_add(counts.units);
    entry.bytes = entry.bytes.saturating_add(counts.bytes);
}

/// Reads `usage.jsonl` (the meter's closed windows) into usage per account, billed with the
/// first built-in price table (`aws-us-east-1`, `azure-s1`, `gcp`) whose metering is
/// `metering` (the server's `[metering] preset`). Lines that do not parse are skipped.
pub fn read_usage(path: &Path, metering: &thingkit_meter::MeteringPolicy) -> Vec<AccountUsage> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut by_account: BTreeMap<String, AccountUsage> = BTreeMap::new();
    let mut totals: BTreeMap<thingkit_meter::UsageKey, thingkit_meter::Counts> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(account) = v.get("account").and_then(|a| a.as_str()) else {
            continue;
        };
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let counts = thingkit_meter::Counts {
            messages: n("messages"),
            units: n("units"),
            bytes: n("bytes"),
            minutes: n("minutes"),
        };
        add_to_account(&mut by_account, account, &counts);
        let kind = v
            .get("kind")
            .and_then(|k| serde_json::from_value::<thingkit_meter::PacketKind>(k.clone()).ok());
        if let Some(kind) = kind {
            let key = thingkit_meter::UsageKey {
                account: account.to_string(),
                device: v
                    .get("device")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default()
                    .to_string(),
                kind,
                window: n("window"),
            };
            totals.entry(key).or_default().add(&counts);
        }
    }
    billed(by_account, &totals, metering)
}

/// `by_account` with each account's bill: `totals` priced with the first built-in price table
/// whose metering is `metering` (no bill when none is).
fn billed(
    mut by_account: BTreeMap<String, AccountUsage>,
    totals: &BTreeMap<thingkit_meter::UsageKey, thingkit_meter::Counts>,
    metering: &thingkit_meter::MeteringPolicy,
) -> Vec<AccountUsage> {
    let table = ["aws-us-east-1", "azure-s1", "gcp"]
        .into_iter()
        .filter_map(|name| thingkit_meter::PriceTable::preset(name).ok())
        .find(|t| t.metering == *metering);
    if let Some(table) = table {
        let currency = table.currency.clone();
        let mut run = thingkit_meter::BillingRun::new(table);
        let bills = run
            .add_totals(totals, metering, thingkit_meter::Granularity::Day)
            .and_then(|()| run.bills());
        if let Ok(bills) = bills {
            let mut sums: BTreeMap<&str, thingkit_meter::Money> = BTreeMap::new();
            for bill in &bills {
                let sum = sums
                    .entry(&bill.account)
                    .or_insert(thingkit_meter::Money::ZERO);
                *sum = sum.checked_add(bill.total).unwrap_or(*sum);
            }
            for (account, usage) in &mut by_account {
                let total = sums
                    .get(account.as_str())
                    .copied()
                    .unwrap_or(thingkit_meter::Money::ZERO);
                usage.bill = Some(format!("{currency} {total}"));
            }
        }
    }
    by_account.into_values().collect()
}

/// The report's inputs from a data directory, offline.
pub fn offline_inputs(config: &ServeConfig, now: i64) -> Result<ReportInputs, Failure> {
    let data = crate::audit::RegistryData::open(config)?;
    let findings =
        thingkit_audit::run_audit(&data.snapshot, &thingkit_audit::AuditConfig::default(), now)
            .findings;
    let mut inputs = data.inputs;
    inputs.now = now;
    inputs.findings = findings;
    inputs.vulnerable_firmware = config.detect.vulnerable_firmware.clone();
    inputs.usage = UsageLedger::open(config)?.read(&config.metering.preset.policy())?;
    inputs.rollout = offline_rollout(config)?;
    Ok(inputs)
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs `thingkit report`.
pub fn run(args: ReportArgs) -> Result<(), Failure> {
    let config = ServeConfig::from_file(&args.config)?;
    let report = FleetReport::build(&offline_inputs(&config, now())?);
    let mut text = match args.format {
        Format::Html => report.to_html(),
        Format::Json => report.to_json(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match args.out {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| Failure(format!("{}: {e}", path.display())))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_windows_add_up_per_account_and_are_billed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"account":"acme","device":"d1","kind":"publish","window":1764115200,"messages":2,"units":2,"bytes":10,"minutes":0}"#,
                "\n",
                r#"{"account":"acme","device":"d2","kind":"publish","window":1764115200,"messages":1,"units":1,"bytes":5,"minutes":0}"#,
                "\nnot json\n",
                r#"{"account":"zeta","device":"d3","kind":"publish","window":1764115200,"messages":1,"units":1,"bytes":1,"minutes":0}"#,
                "\n"
            ),
        )
        .unwrap();
        let usage = read_usage(&path, &thingkit_meter::MeteringPolicy::aws());
        assert_eq!(usage.len(), 2);
        assert_eq!(
            (usage[0].messages, usage[0].units, usage[0].bytes),
            (3, 3, 15)
        );
        // aws-us-east-1: $1.00 per million messages.
        assert_eq!(usage[0].bill.as_deref(), Some("USD 0.000003"));
        assert_eq!(usage[1].bill.as_deref(), Some("USD 0.000001"));
        assert!(
            read_usage(
                &dir.path().join("missing"),
                &thingkit_meter::MeteringPolicy::aws()
            )
            .is_empty()
        );
    }
}
