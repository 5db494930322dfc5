//! Device Defender audit: on-demand and scheduled audit tasks, their findings, the account's
//! audit configuration and finding suppressions, kept in the control plane's
//! [`AuditStore`](crate::audit_store::AuditStore). An audit runs synchronously: the task is
//! `COMPLETED` when `StartOnDemandAuditTask` returns.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use thingkit_audit::{
    AuditSnapshot, AuditSuppression, CheckName, CheckRunStatus, ConnectionWindow,
    ResourceIdentifier, SuppressionExpiry, run_audit,
};
use thingkit_provision::RegistryStore;

use crate::audit_store::{CheckConfiguration, StoredAuditTask, StoredScheduledAudit};
use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{Handler, page, with_token};
use crate::service::{ControlPlane, Ctx};

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("StartOnDemandAuditTask", start_on_demand_audit_task::<S>),
        ("DescribeAuditTask", describe_audit_task::<S>),
        ("ListAuditTasks", list_audit_tasks::<S>),
        ("CancelAuditTask", cancel_audit_task::<S>),
        ("ListAuditFindings", list_audit_findings::<S>),
        ("DescribeAuditFinding", describe_audit_finding::<S>),
        (
            "DescribeAccountAuditConfiguration",
            describe_account_audit_configuration::<S>,
        ),
        (
            "UpdateAccountAuditConfiguration",
            update_account_audit_configuration::<S>,
        ),
        ("CreateScheduledAudit", create_scheduled_audit::<S>),
        ("DescribeScheduledAudit", describe_scheduled_audit::<S>),
        ("ListScheduledAudits", list_scheduled_audits::<S>),
        ("UpdateScheduledAudit", update_scheduled_audit::<S>),
        ("DeleteScheduledAudit", delete_scheduled_audit::<S>),
        ("CreateAuditSuppression", create_audit_suppression::<S>),
        ("DescribeAuditSuppression", describe_audit_suppression::<S>),
        ("ListAuditSuppressions", list_audit_suppressions::<S>),
        ("UpdateAuditSuppression", update_audit_suppression::<S>),
        ("DeleteAuditSuppression", delete_audit_suppression::<S>),
    ]
}

const DAY: i64 = 86_400;

/// A REST-JSON `Timestamp` member: epoch seconds (a number, or its text, as the body and
/// the query string carry it) or RFC 3339 text.
pub(crate) fn timestamp(input: &Input, member: &str) -> ApiResult<Option<i64>> {
    let Some(v) = input.get(member) else {
        return Ok(None);
    };
    let secs = match v {
        Value::Number(n) => n.as_f64().map(|f| f.floor() as i64),
        Value::String(s) => s.parse::<f64>().ok().map(|f| f.floor() as i64).or_else(|| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|d| d.unix_timestamp())
        }),
        _ => None,
    };
    secs.map(Some)
        .ok_or_else(|| ApiError::invalid_request(format!("{member} is not a valid timestamp")))
}

fn check_names(input: &Input, member: &str) -> ApiResult<Vec<CheckName>> {
    let names = input
        .get(member)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for n in names {
        let name = n.as_str().unwrap_or_default();
        let check = CheckName::from_name(name).ok_or_else(|| {
            ApiError::invalid_request(format!("Check {name} is not supported by thingkit"))
        })?;
        if !out.contains(&check) {
            out.push(check);
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid_request(format!(
            "{member} must name at least one check"
        )));
    }
    Ok(out)
}

/// Refuses checks the account configuration does not enable (AWS: "The checks you specify
/// must be enabled for your account").
fn require_enabled<S: RegistryStore>(
    plane: &ControlPlane<S>,
    checks: &[CheckName],
) -> ApiResult<()> {
    let effective = plane.audit.store.read(|r| r.configuration.effective());
    for c in checks {
        if !effective.get(c.as_str()).is_some_and(|c| c.enabled) {
            return Err(ApiError::invalid_request(format!(
                "Check {c} is not enabled for this account"
            )));
        }
    }
    Ok(())
}

/// The registry's part of an audit's snapshot, copied under the read lock.
fn snapshot<S: RegistryStore>(plane: &ControlPlane<S>) -> ApiResult<AuditSnapshot> {
    let registry = plane.registry.read().unwrap_or_else(|p| p.into_inner());
    Ok(crate::audit::registry_snapshot(&registry, &plane.arn)?)
}

/// Runs one audit task of `checks` at `now` and stores it with its findings; its ID.
pub(crate) fn run_task<S: RegistryStore>(
    plane: &ControlPlane<S>,
    checks: &[CheckName],
    scheduled: Option<&StoredScheduledAudit>,
    now: i64,
) -> ApiResult<String> {
    let (mut config, suppressions) = plane
        .audit
        .store
        .read(|r| (r.configuration.audit_config(checks), r.suppressions.clone()));
    config.suppressions = suppressions;
    if let Some(s) = scheduled {
        config.connection_window = ConnectionWindow::Scheduled {
            previous_run: s.last_run.unwrap_or(now - DAY),
        };
    }
    let (since, _) = config.connection_window.bounds(now);
    let mut snap = snapshot(plane)?;
    // The registry's lock is released: the sources and the checks run without it.
    let sources = &plane.audit.sources;
    snap.connections = sources.connections(since);
    snap.logging_enabled = sources.logging_enabled();
    snap.crls = sources.crls();
    snap.weak_keys = sources.weak_keys();
    let report = run_audit(&snap, &config, now);
    let (with_findings, max_tasks) = (
        plane.audit.store.max_tasks_with_findings,
        plane.audit.store.max_tasks,
    );
    plane.audit.store.update(|r| {
        // Two runs in one second derive the same ID: the later one gets another.
        let mut task_id = report.task_id.clone();
        let mut n = 0u32;
        while r.tasks.contains_key(&task_id) {
            n += 1;
            task_id = crate::service::uuid_of(&format!("{}:{n}", report.task_id));
        }
        let findings = report
            .findings
            .iter()
            .cloned()
            .map(|mut f| {
                if task_id != report.task_id {
                    f.finding_id = crate::service::uuid_of(&format!("{task_id}:{}", f.finding_id));
                    f.task_id = task_id.clone();
                }
                f
            })
            .collect();
        let task = StoredAuditTask {
            task_id: task_id.clone(),
            task_type: if scheduled.is_some() {
                "SCHEDULED_AUDIT_TASK"
            } else {
                "ON_DEMAND_AUDIT_TASK"
            }
            .into(),
            task_status: "COMPLETED".into(),
            task_start_time: now,
            scheduled_audit_name: scheduled.map(|s| s.name.clone()),
            audit_details: report
                .checks
                .iter()
                .map(|(c, d)| (c.as_str().to_string(), d.clone()))
                .collect(),
            findings,
        };
        r.add_task(task, with_findings, max_tasks);
        if let Some(s) = scheduled
            && let Some(stored) = r.scheduled_audits.get_mut(&s.name)
        {
            stored.last_run = Some(now);
        }
        Ok::<_, ApiError>(task_id)
    })
}

fn start_on_demand_audit_task<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let checks = check_names(input, "targetCheckNames")?;
    require_enabled(ctx.plane, &checks)?;
    let task_id = run_task(ctx.plane, &checks, None, ctx.epoch())?;
    Ok(json!({ "taskId": task_id }))
}

fn task_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Audit task {id} cannot be found."))
}

fn describe_audit_task<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = input.required("taskId")?;
    let task = ctx
        .plane
        .audit
        .store
        .read(|r| r.tasks.get(id).cloned())
        .ok_or_else(|| task_not_found(id))?;
    let count = |s: CheckRunStatus| {
        task.audit_details
            .values()
            .filter(|d| d.check_run_status == s)
            .count()
    };
    let mut out = json!({
        "taskStatus": task.task_status,
        "taskType": task.task_type,
        "taskStartTime": task.task_start_time,
        "taskStatistics": {
            "totalChecks": task.audit_details.len(),
            "inProgressChecks": 0,
            "waitingForDataCollectionChecks": 0,
            "compliantChecks": count(CheckRunStatus::CompletedCompliant),
            "nonCompliantChecks": count(CheckRunStatus::CompletedNonCompliant),
            "failedChecks": count(CheckRunStatus::Failed),
            "canceledChecks": 0,
        },
        "auditDetails": serde_json::to_value(&task.audit_details).map_err(|e| ApiError::internal(e.to_string()))?,
    });
    if let (Some(name), Some(obj)) = (&task.scheduled_audit_name, out.as_object_mut()) {
        obj.insert("scheduledAuditName".into(), name.clone().into());
    }
    Ok(out)
}

/// `ListAuditTasks`: the tasks started in `[startTime, endTime]`, newest first.
fn list_audit_tasks<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let start = timestamp(input, "startTime")?.unwrap_or(i64::MIN);
    let end = timestamp(input, "endTime")?.unwrap_or(i64::MAX);
    let kind = input.str("taskType");
    let status = input.str("taskStatus");
    let items: Vec<(String, Value)> = ctx.plane.audit.store.read(|r| {
        r.tasks
            .values()
            .filter(|t| (start..=end).contains(&t.task_start_time))
            .filter(|t| kind.is_none_or(|k| k == t.task_type))
            .filter(|t| status.is_none_or(|s| s == t.task_status))
            .map(|t| {
                (
                    format!("{:020}:{}", i64::MAX - t.task_start_time, t.task_id),
                    json!({"taskId": t.task_id, "taskStatus": t.task_status, "taskType": t.task_type}),
                )
            })
            .collect()
    });
    let (tasks, next) =
        crate::ops::paging::page(items, input.str("nextToken"), ctx.page_size(input), false)?;
    Ok(with_token(json!({ "tasks": tasks }), next))
}

/// `CancelAuditTask`: tasks run to completion before their start call returns, so there is
/// never one in progress to cancel.
fn cancel_audit_task<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = input.required("taskId")?;
    let status = ctx
        .plane
        .audit
        .store
        .read(|r| r.tasks.get(id).map(|t| t.task_status.clone()))
        .ok_or_else(|| task_not_found(id))?;
    Err(ApiError::invalid_request(format!(
        "Audit task {id} is {status}, not IN_PROGRESS: it cannot be canceled"
    )))
}

fn resource_identifier(input: &Input) -> ApiResult<Option<ResourceIdentifier>> {
    input
        .get("resourceIdentifier")
        .map(|v| {
            serde_json::from_value(v.clone())
                .map_err(|e| ApiError::invalid_request(format!("resourceIdentifier: {e}")))
        })
        .transpose()
}

fn list_audit_findings<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let task = input.str("taskId");
    let start = timestamp(input, "startTime")?;
    let end = timestamp(input, "endTime")?;
    if task.is_some() && (start.is_some() || end.is_some()) {
        return Err(ApiError::invalid_request(
            "Specify either taskId or startTime and endTime, not both",
        ));
    }
    let check = input
        .str("checkName")
        .map(|n| {
            CheckName::from_name(n).ok_or_else(|| {
                ApiError::invalid_request(format!("Check {n} is not supported by thingkit"))
            })
        })
        .transpose()?;
    let resource = resource_identifier(input)?;
    let suppressed = input.bool("listSuppressedFindings");
    let (start, end) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
    let items: Vec<(String, Value)> = ctx.plane.audit.store.read(|r| {
        r.tasks
            .values()
            .filter(|t| task.is_none_or(|id| id == t.task_id))
            .filter(|t| (start..=end).contains(&t.task_start_time))
            .flat_map(|t| t.findings.iter())
            .filter(|f| check.is_none_or(|c| c == f.check_name))
            .filter(|f| {
                resource
                    .as_ref()
                    .is_none_or(|r| *r == f.non_compliant_resource.resource_identifier)
            })
            .filter(|f| suppressed.is_none_or(|s| s == f.is_suppressed))
            .map(|f| {
                (
                    format!(
                        "{:020}:{}:{}",
                        i64::MAX - f.task_start_time,
                        f.check_name.as_str(),
                        f.finding_id
                    ),
                    serde_json::to_value(f).unwrap_or(Value::Null),
                )
            })
            .collect()
    });
    let (findings, next) =
        crate::ops::paging::page(items, input.str("nextToken"), ctx.page_size(input), false)?;
    Ok(with_token(json!({ "findings": findings }), next))
}

fn describe_audit_finding<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = input.required("findingId")?;
    let finding = ctx
        .plane
        .audit
        .store
        .read(|r| {
            r.tasks
                .values()
                .flat_map(|t| t.findings.iter())
                .find(|f| f.finding_id == id)
                .cloned()
        })
        .ok_or_else(|| ApiError::not_found(format!("Audit finding {id} cannot be found.")))?;
    Ok(json!({ "finding": finding }))
}

fn describe_account_audit_configuration<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    _input: &Input,
) -> ApiResult<Value> {
    let conf = ctx.plane.audit.store.read(|r| r.configuration.clone());
    let mut out = Map::new();
    if let Some(role) = &conf.role_arn {
        out.insert("roleArn".into(), role.clone().into());
    }
    if let Some(targets) = &conf.notification_targets {
        out.insert(
            "auditNotificationTargetConfigurations".into(),
            targets.clone(),
        );
    }
    out.insert(
        "auditCheckConfigurations".into(),
        serde_json::to_value(conf.effective()).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    Ok(Value::Object(out))
}

fn update_account_audit_configuration<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let mut checks: BTreeMap<String, CheckConfiguration> = BTreeMap::new();
    if let Some(map) = input
        .get("auditCheckConfigurations")
        .and_then(Value::as_object)
    {
        for (name, v) in map {
            let check = CheckName::from_name(name).ok_or_else(|| {
                ApiError::invalid_request(format!("Check {name} is not supported by thingkit"))
            })?;
            let mut conf = CheckConfiguration {
                enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(false),
                configuration: BTreeMap::new(),
            };
            if let Some(c) = v.get("configuration").and_then(Value::as_object) {
                for (key, value) in c {
                    let value = value.as_str().unwrap_or_default();
                    let (owner, range) = match key.as_str() {
                        "CERT_AGE_THRESHOLD_IN_DAYS" => {
                            (CheckName::DeviceCertificateAge, 30..=3652)
                        }
                        _ => (CheckName::DeviceCertificateExpiring, 1..=3652),
                    };
                    let days = value.parse::<u32>().ok().filter(|d| range.contains(d));
                    if owner != check || days.is_none() {
                        return Err(ApiError::invalid_request(format!(
                            "{key} = {value:?} is not valid for {name} (it applies to {owner}, {}..={} days)",
                            range.start(),
                            range.end()
                        )));
                    }
                    conf.configuration.insert(key.clone(), value.to_string());
                }
            }
            checks.insert(check.as_str().to_string(), conf);
        }
    }
    let role = input.str("roleArn").map(str::to_string);
    let targets = input.get("auditNotificationTargetConfigurations").cloned();
    ctx.plane.audit.store.update(|r| {
        let c = &mut r.configuration;
        c.checks.extend(checks);
        if role.is_some() {
            c.role_arn = role;
        }
        if targets.is_some() {
            c.notification_targets = targets;
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(json!({}))
}

// ---------------------------------------------------------------------------------------
// Scheduled audits.

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Whether the UTC day `day` (days since the epoch) is one `audit` runs on.
fn runs_on(audit: &StoredScheduledAudit, day: i64) -> bool {
    let weekday = WEEKDAYS[usize::try_from((day + 4).rem_euclid(7)).unwrap_or(0)];
    match audit.frequency.as_str() {
        "DAILY" => true,
        "WEEKLY" | "BIWEEKLY" => audit.day_of_week.as_deref() == Some(weekday),
        _ => {
            let date = |d: i64| {
                time::OffsetDateTime::from_unix_timestamp(d * DAY)
                    .map(|t| (t.day(), t.month()))
                    .ok()
            };
            match (audit.day_of_month.as_deref(), date(day), date(day + 1)) {
                (Some("LAST"), Some((_, m)), Some((_, next))) => m != next,
                (Some(n), Some((d, _)), _) => n.parse::<u8>().ok() == Some(d),
                _ => false,
            }
        }
    }
}

/// When `audit` is next due, Unix seconds (the start of a UTC day it runs on): the first such
/// day after its last run (BIWEEKLY: at least 14 days after), or after its creation.
pub(crate) fn next_due(audit: &StoredScheduledAudit) -> Option<i64> {
    let after = audit.last_run.unwrap_or(audit.created_at);
    let mut first = after.div_euclid(DAY) + 1;
    if audit.frequency == "BIWEEKLY"
        && let Some(last) = audit.last_run
    {
        first = first.max(last.div_euclid(DAY) + 14);
    }
    (first..first + 800)
        .find(|d| runs_on(audit, *d))
        .map(|d| d * DAY)
}

fn scheduled_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, name: &str) -> String {
    ctx.arn(&format!("scheduledaudit/{name}"))
}

fn scheduled_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Scheduled audit {name} cannot be found."))
}

/// Checks the frequency's day members: `dayOfWeek` for WEEKLY and BIWEEKLY, `dayOfMonth` for
/// MONTHLY, neither for DAILY.
fn check_schedule(audit: &StoredScheduledAudit) -> ApiResult<()> {
    let (week, month) = (audit.day_of_week.is_some(), audit.day_of_month.is_some());
    let ok = match audit.frequency.as_str() {
        "DAILY" => !week && !month,
        "WEEKLY" | "BIWEEKLY" => week && !month,
        "MONTHLY" => month && !week,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!(
            "frequency {} takes {}",
            audit.frequency,
            match audit.frequency.as_str() {
                "DAILY" => "neither dayOfWeek nor dayOfMonth",
                "MONTHLY" => "dayOfMonth and no dayOfWeek",
                _ => "dayOfWeek and no dayOfMonth",
            }
        )))
    }
}

fn create_scheduled_audit<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("scheduledAuditName")?.to_string();
    let checks = check_names(input, "targetCheckNames")?;
    require_enabled(ctx.plane, &checks)?;
    let audit = StoredScheduledAudit {
        name: name.clone(),
        frequency: input.required("frequency")?.to_string(),
        day_of_month: input.str("dayOfMonth").map(str::to_string),
        day_of_week: input.str("dayOfWeek").map(str::to_string),
        target_check_names: checks.iter().map(|c| c.as_str().to_string()).collect(),
        created_at: ctx.epoch(),
        last_run: None,
    };
    check_schedule(&audit)?;
    ctx.plane.audit.store.update(|r| {
        if r.scheduled_audits.contains_key(&name) {
            return Err(ApiError::already_exists(format!(
                "Scheduled audit {name} already exists."
            )));
        }
        r.scheduled_audits.insert(name.clone(), audit);
        Ok(())
    })?;
    Ok(json!({ "scheduledAuditArn": scheduled_arn(ctx, &name) }))
}

fn scheduled_json<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    a: &StoredScheduledAudit,
    full: bool,
) -> Value {
    let mut out = Map::new();
    out.insert("scheduledAuditName".into(), a.name.clone().into());
    out.insert(
        "scheduledAuditArn".into(),
        scheduled_arn(ctx, &a.name).into(),
    );
    out.insert("frequency".into(), a.frequency.clone().into());
    if let Some(d) = &a.day_of_month {
        out.insert("dayOfMonth".into(), d.clone().into());
    }
    if let Some(d) = &a.day_of_week {
        out.insert("dayOfWeek".into(), d.clone().into());
    }
    if full {
        out.insert("targetCheckNames".into(), json!(a.target_check_names));
    }
    Value::Object(out)
}

fn describe_scheduled_audit<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("scheduledAuditName")?;
    let audit = ctx
        .plane
        .audit
        .store
        .read(|r| r.scheduled_audits.get(name).cloned())
        .ok_or_else(|| scheduled_not_found(name))?;
    Ok(scheduled_json(ctx, &audit, true))
}

fn list_scheduled_audits<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let items: Vec<(String, Value)> = ctx.plane.audit.store.read(|r| {
        r.scheduled_audits
            .values()
            .map(|a| (a.name.clone(), scheduled_json(ctx, a, false)))
            .collect()
    });
    let (audits, next) = page(
        items.into_iter(),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "scheduledAudits": audits }), next))
}

fn update_scheduled_audit<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("scheduledAuditName")?.to_string();
    let checks = match input.get("targetCheckNames") {
        Some(_) => {
            let checks = check_names(input, "targetCheckNames")?;
            require_enabled(ctx.plane, &checks)?;
            Some(checks)
        }
        None => None,
    };
    ctx.plane.audit.store.update(|r| {
        let audit = r
            .scheduled_audits
            .get_mut(&name)
            .ok_or_else(|| scheduled_not_found(&name))?;
        if let Some(f) = input.str("frequency") {
            audit.frequency = f.to_string();
            // A new frequency takes the day members that go with it.
            audit.day_of_month = None;
            audit.day_of_week = None;
        }
        if let Some(d) = input.str("dayOfMonth") {
            audit.day_of_month = Some(d.to_string());
        }
        if let Some(d) = input.str("dayOfWeek") {
            audit.day_of_week = Some(d.to_string());
        }
        if let Some(checks) = &checks {
            audit.target_check_names = checks.iter().map(|c| c.as_str().to_string()).collect();
        }
        check_schedule(audit)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(json!({ "scheduledAuditArn": scheduled_arn(ctx, &name) }))
}

fn delete_scheduled_audit<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("scheduledAuditName")?.to_string();
    ctx.plane.audit.store.update(|r| {
        r.scheduled_audits
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| scheduled_not_found(&name))
    })?;
    Ok(json!({}))
}

// ---------------------------------------------------------------------------------------
// Suppressions.

fn suppression_key(input: &Input) -> ApiResult<(CheckName, ResourceIdentifier)> {
    let name = input.required("checkName")?;
    let check = CheckName::from_name(name).ok_or_else(|| {
        ApiError::invalid_request(format!("Check {name} is not supported by thingkit"))
    })?;
    let resource = resource_identifier(input)?
        .ok_or_else(|| ApiError::invalid_request("resourceIdentifier is required"))?;
    Ok((check, resource))
}

fn expiry(input: &Input) -> ApiResult<Option<SuppressionExpiry>> {
    let until = timestamp(input, "expirationDate")?;
    match (input.bool("suppressIndefinitely"), until) {
        (Some(true), Some(_)) => Err(ApiError::invalid_request(
            "Specify either expirationDate or suppressIndefinitely, not both",
        )),
        (Some(true), None) => Ok(Some(SuppressionExpiry::Indefinitely)),
        (_, Some(t)) => Ok(Some(SuppressionExpiry::Until(t))),
        (_, None) => Ok(None),
    }
}

fn suppression_json(s: &AuditSuppression) -> Value {
    let mut out = json!({
        "checkName": s.check_name.as_str(),
        "resourceIdentifier": s.resource_identifier,
        "suppressIndefinitely": s.suppress_indefinitely(),
    });
    if let Some(obj) = out.as_object_mut() {
        if let Some(t) = s.expiration_date() {
            obj.insert("expirationDate".into(), t.into());
        }
        if let Some(d) = &s.description {
            obj.insert("description".into(), d.clone().into());
        }
    }
    out
}

fn suppression_not_found(check: CheckName) -> ApiError {
    ApiError::not_found(format!(
        "No suppression of {check} exists for this resource."
    ))
}

fn create_audit_suppression<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let (check, resource) = suppression_key(input)?;
    let expiry = expiry(input)?.ok_or_else(|| {
        ApiError::invalid_request("Specify expirationDate or suppressIndefinitely")
    })?;
    let suppression = AuditSuppression {
        check_name: check,
        resource_identifier: resource,
        expiry,
        description: input.str("description").map(str::to_string),
    };
    ctx.plane.audit.store.update(|r| {
        if r.suppressions.iter().any(|s| {
            s.check_name == check && s.resource_identifier == suppression.resource_identifier
        }) {
            return Err(ApiError::already_exists(format!(
                "A suppression of {check} already exists for this resource."
            )));
        }
        r.suppressions.push(suppression);
        Ok(())
    })?;
    Ok(json!({}))
}

fn describe_audit_suppression<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let (check, resource) = suppression_key(input)?;
    ctx.plane
        .audit
        .store
        .read(|r| {
            r.suppressions
                .iter()
                .find(|s| s.check_name == check && s.resource_identifier == resource)
                .map(suppression_json)
        })
        .ok_or_else(|| suppression_not_found(check))
}

fn list_audit_suppressions<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let check = input
        .str("checkName")
        .map(|n| {
            CheckName::from_name(n).ok_or_else(|| {
                ApiError::invalid_request(format!("Check {n} is not supported by thingkit"))
            })
        })
        .transpose()?;
    let resource = resource_identifier(input)?;
    let descending = input.bool("ascendingOrder") == Some(false);
    let items: Vec<(String, Value)> = ctx.plane.audit.store.read(|r| {
        r.suppressions
            .iter()
            .filter(|s| check.is_none_or(|c| c == s.check_name))
            .filter(|s| {
                resource
                    .as_ref()
                    .is_none_or(|r| *r == s.resource_identifier)
            })
            .map(|s| {
                (
                    format!(
                        "{}:{}",
                        s.check_name.as_str(),
                        serde_json::to_string(&s.resource_identifier).unwrap_or_default()
                    ),
                    suppression_json(s),
                )
            })
            .collect()
    });
    let (suppressions, next) = crate::ops::paging::page(
        items,
        input.str("nextToken"),
        ctx.page_size(input),
        descending,
    )?;
    Ok(with_token(json!({ "suppressions": suppressions }), next))
}

fn update_audit_suppression<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let (check, resource) = suppression_key(input)?;
    let expiry = expiry(input)?;
    let description = input.str("description").map(str::to_string);
    ctx.plane.audit.store.update(|r| {
        let s = r
            .suppressions
            .iter_mut()
            .find(|s| s.check_name == check && s.resource_identifier == resource)
            .ok_or_else(|| suppression_not_found(check))?;
        if let Some(e) = expiry {
            s.expiry = e;
        }
        if description.is_some() {
            s.description = description;
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(json!({}))
}

fn delete_audit_suppression<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let (check, resource) = suppression_key(input)?;
    ctx.plane.audit.store.update(|r| {
        let before = r.suppressions.len();
        r.suppressions
            .retain(|s| !(s.check_name == check && s.resource_identifier == resource));
        if r.suppressions.len() == before {
            return Err(suppression_not_found(check));
        }
        Ok(())
    })?;
    Ok(json!({}))
}
