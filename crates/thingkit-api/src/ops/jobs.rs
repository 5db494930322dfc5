//! AWS IoT Jobs, control plane: `CreateJob`, `DescribeJob`, `ListJobs`, `CancelJob`,
//! `DeleteJob`, `UpdateJob`, `AssociateTargetsWithJob`, `GetJobDocument`,
//! `ListJobExecutionsForJob`, `ListJobExecutionsForThing`, `DescribeJobExecution`,
//! `CancelJobExecution`, `DeleteJobExecution`; and the continuous-job side of thing-group
//! membership ([`membership_changed`]).
//!
//! Every operation goes through the jobs engine the broker shares (`thingkit_jobs::DynJobs`),
//! which owns the state machine, the rollout, aborts, timeouts and retries; the notifications
//! it returns are published to subscribers (QoS 1) through the control plane's publisher.
//! Targets are ARNs (`thing/NAME`, `thinggroup/NAME` of this account) resolved through the
//! registry: a group stands for its things and its descendant groups' things.
//!
//! Locks are taken one at a time (registry, then the job store, then the engine), never one
//! while holding another, so no order between them can deadlock with the broker's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::MutexGuard;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use thingkit_jobs::job::{AbortConfig, RetryConfig, RolloutConfig, TimeoutConfig};
use thingkit_jobs::{
    CancelJob, DynJobs, ExecutionStatus, Job, JobExecution, JobId, JobStatus, JobUpdate,
    OutMessage, ProcessDetails, TargetSelection,
};
use thingkit_provision::{Registry, RegistryStore};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{Handler, page, with_token};
use crate::service::{Ctx, DataProperties, DataPublish};

/// Most targets a job may have (AssociateTargetsWithJob: "The total number of targets
/// associated with a job must not exceed 100").
pub(crate) const MAX_TARGETS: usize = 100;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateJob", create_job::<S>),
        ("DescribeJob", describe_job::<S>),
        ("ListJobs", list_jobs::<S>),
        ("CancelJob", cancel_job::<S>),
        ("DeleteJob", delete_job::<S>),
        ("UpdateJob", update_job::<S>),
        ("AssociateTargetsWithJob", associate_targets::<S>),
        ("GetJobDocument", get_job_document::<S>),
        ("ListJobExecutionsForJob", list_executions_for_job::<S>),
        ("ListJobExecutionsForThing", list_executions_for_thing::<S>),
        ("DescribeJobExecution", describe_execution::<S>),
        ("CancelJobExecution", cancel_execution::<S>),
        ("DeleteJobExecution", delete_execution::<S>),
    ]
}

// ----------------------------------------------------------------------------------------------
// The engine, its errors and its notifications.

/// The jobs engine, locked; `ServiceUnavailableException` when the server runs without one
/// (every job operation models that error; it is what AWS answers when the service cannot
/// serve the call).
pub(crate) fn engine<'a, S: RegistryStore>(ctx: &Ctx<'a, S>) -> ApiResult<MutexGuard<'a, DynJobs>> {
    let jobs = ctx
        .plane
        .jobs
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this server runs without the jobs service"))?;
    Ok(jobs.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The AWS exception an engine refusal is. `allowed` names the 409 exceptions the operation's
/// model lists (`InvalidStateTransitionException`, `VersionConflictException`,
/// `ResourceAlreadyExistsException`); an operation that models none of them answers a state
/// conflict with `InvalidRequestException`, as its error list leaves nothing else.
pub(crate) fn refusal(e: thingkit_jobs::Error, allowed: &[&str]) -> ApiError {
    let message = e.to_string();
    let conflict = |code: &'static str| {
        if allowed.contains(&code) {
            ApiError::new(code, 409, message.clone())
        } else {
            ApiError::invalid_request(message.clone())
        }
    };
    match e.code() {
        "ResourceNotFound" => ApiError::not_found(message),
        "ResourceAlreadyExists" => conflict("ResourceAlreadyExistsException"),
        "InvalidStateTransition" | "TerminalStateReached" => {
            conflict("InvalidStateTransitionException")
        }
        "VersionConflict" | "VersionMismatch" => conflict("VersionConflictException"),
        "LimitExceeded" => ApiError::limit_exceeded(message),
        "RequestThrottled" => ApiError::throttling(message),
        "InternalError" => ApiError::internal(message),
        _ => ApiError::invalid_request(message),
    }
}

/// Publishes the engine's notifications (QoS 1) best effort: the caller has its answer, and a
/// device that misses one learns its pending jobs from its next `get` (a broker refusal is
/// logged by the broker). Without a publisher they are dropped.
pub(crate) fn publish<S: RegistryStore>(ctx: &Ctx<'_, S>, messages: Vec<OutMessage>) {
    let Some(publisher) = &ctx.plane.publisher else {
        return;
    };
    for m in messages {
        let _ = publisher.publish(DataPublish {
            topic: m.topic,
            payload: m.payload,
            qos: 1,
            retain: false,
            properties: DataProperties::default(),
        });
    }
}

fn now_secs<S: RegistryStore>(ctx: &Ctx<'_, S>) -> u64 {
    u64::try_from(ctx.epoch()).unwrap_or(0)
}

fn job_id(input: &Input) -> ApiResult<JobId> {
    JobId::new(input.required("jobId")?).map_err(|e| ApiError::invalid_request(e.to_string()))
}

fn job_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, id: &str) -> String {
    ctx.arn(&format!("job/{id}"))
}

/// Members thingkit does not serve, refused by name rather than silently ignored.
fn refuse_unsupported(input: &Input, members: &[(&str, &str)]) -> ApiResult<()> {
    for (member, why) in members {
        if input.get(member).is_some() {
            return Err(ApiError::invalid_request(format!(
                "{member} is not supported by thingkit: {why}"
            )));
        }
    }
    Ok(())
}

const NO_NAMESPACES: &str = "job namespaces (AWS IoT Greengrass) are not implemented";

/// A configuration member as the engine's type, checked by the engine's rules.
pub(crate) fn config<T: DeserializeOwned>(
    value: Option<&Value>,
    member: &str,
) -> ApiResult<Option<T>> {
    value
        .map(|v| {
            serde_json::from_value(v.clone())
                .map_err(|e| ApiError::invalid_request(format!("{member}: {e}")))
        })
        .transpose()
}

/// The four engine configurations from JSON, each validated.
pub(crate) struct Configs {
    pub(crate) rollout: Option<RolloutConfig>,
    pub(crate) abort: Option<AbortConfig>,
    pub(crate) timeout: Option<TimeoutConfig>,
    pub(crate) retry: Option<RetryConfig>,
}

impl Configs {
    /// Reads and validates `jobExecutionsRolloutConfig`, `abortConfig`, `timeoutConfig` and
    /// `jobExecutionsRetryConfig` from `get`.
    pub(crate) fn read<'v>(get: impl Fn(&str) -> Option<&'v Value>) -> ApiResult<Configs> {
        let invalid = |e: thingkit_jobs::Error| ApiError::invalid_request(e.to_string());
        let rollout: Option<RolloutConfig> = config(
            get("jobExecutionsRolloutConfig"),
            "jobExecutionsRolloutConfig",
        )?;
        let abort: Option<AbortConfig> = config(get("abortConfig"), "abortConfig")?;
        let timeout: Option<TimeoutConfig> = config(get("timeoutConfig"), "timeoutConfig")?;
        let retry: Option<RetryConfig> =
            config(get("jobExecutionsRetryConfig"), "jobExecutionsRetryConfig")?;
        if let Some(c) = &rollout {
            c.validate().map_err(invalid)?;
        }
        if let Some(c) = &abort {
            c.validate().map_err(invalid)?;
        }
        if let Some(c) = &timeout {
            c.validate().map_err(invalid)?;
        }
        if let Some(c) = &retry {
            c.validate().map_err(invalid)?;
        }
        Ok(Configs {
            rollout,
            abort,
            timeout,
            retry,
        })
    }
}

// ----------------------------------------------------------------------------------------------
// Targets.

enum Target {
    Thing(String),
    Group(String),
}

/// A target ARN of this account: `thing/NAME` or `thinggroup/NAME`.
fn parse_target<S: RegistryStore>(ctx: &Ctx<'_, S>, arn: &str) -> ApiResult<Target> {
    let name_after = |kind: &str| {
        arn.strip_prefix(ctx.arn(&format!("{kind}/")).as_str())
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .map(str::to_string)
    };
    if let Some(name) = name_after("thing") {
        return Ok(Target::Thing(name));
    }
    if let Some(name) = name_after("thinggroup") {
        return Ok(Target::Group(name));
    }
    Err(ApiError::invalid_request(format!(
        "Target {arn} is not a thing or thing group ARN of this account ({} or {})",
        ctx.arn("thing/NAME"),
        ctx.arn("thinggroup/NAME")
    )))
}

/// The things `targets` stand for, in target order, each once. With `strict`, a target that
/// does not exist is `ResourceNotFoundException`; without, it stands for nothing.
fn resolve_targets<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    targets: &[String],
    strict: bool,
) -> ApiResult<Vec<String>> {
    let parsed = targets
        .iter()
        .map(|t| parse_target(ctx, t))
        .collect::<ApiResult<Vec<_>>>()?;
    let registry = ctx.read();
    let mut seen = BTreeSet::new();
    let mut things = Vec::new();
    for target in parsed {
        match target {
            Target::Thing(name) => {
                if registry.thing(&name).is_none() {
                    if strict {
                        return Err(ApiError::not_found(format!(
                            "Thing {name} cannot be found."
                        )));
                    }
                    continue;
                }
                if seen.insert(name.clone()) {
                    things.push(name);
                }
            }
            Target::Group(name) => {
                if registry.thing_group(&name).is_none() {
                    if strict {
                        return Err(ApiError::not_found(format!(
                            "Thing group {name} cannot be found."
                        )));
                    }
                    continue;
                }
                let mut groups = crate::ops::thing_groups::descendants(&registry, &name);
                groups.insert(name);
                let mut members: Vec<&str> = registry
                    .things()
                    .filter(|(_, t)| t.groups.iter().any(|g| groups.contains(&**g)))
                    .map(|(n, _)| n)
                    .collect();
                members.sort_unstable();
                for m in members {
                    if seen.insert(m.to_string()) {
                        things.push(m.to_string());
                    }
                }
            }
        }
    }
    Ok(things)
}

/// The groups `thing` belongs to, directly or through a child group: its groups and all their
/// ancestors (empty for a thing that does not exist).
pub(crate) fn groups_of<S: RegistryStore>(registry: &Registry<S>, thing: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Some(t) = registry.thing(thing) else {
        return found;
    };
    for g in &t.groups {
        let mut current = Some(g.to_string());
        while let Some(name) = current {
            if !found.insert(name.clone()) {
                break;
            }
            current = registry
                .thing_group(&name)
                .and_then(|g| g.parent.as_deref().map(str::to_string));
        }
    }
    found
}

/// A job's targets: as created, then those `AssociateTargetsWithJob` added (the engine keeps
/// both in the job).
fn effective_targets(job: &Job) -> Vec<String> {
    job.targets.clone()
}

/// A thing's membership changed from the groups `before` to `after` (each with ancestors,
/// [`groups_of`]): every IN_PROGRESS continuous job that now reaches it and did not gets an
/// execution for it (`add_thing`), and every one that no longer reaches it removes its QUEUED
/// execution (`remove_execution`, J-06). A job that targets the thing itself is unaffected.
/// Best effort: the membership change is already stored, so an engine failure here does not
/// undo it (the job misses that thing, as a failed notification would).
pub(crate) fn membership_changed<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    thing: &str,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
) {
    if ctx.plane.jobs.is_none() || before == after {
        return;
    }
    let thing_arn = ctx.arn(&format!("thing/{thing}"));
    let group_arns = |groups: &BTreeSet<String>| -> BTreeSet<String> {
        groups
            .iter()
            .map(|g| ctx.arn(&format!("thinggroup/{g}")))
            .collect()
    };
    let (before, after) = (group_arns(before), group_arns(after));
    let Ok(mut jobs) = engine(ctx) else {
        return;
    };
    let Ok(all) = jobs.list_jobs() else {
        return;
    };
    let now = now_secs(ctx);
    let mut out = Vec::new();
    for job in all {
        if job.status != JobStatus::InProgress
            || job.target_selection != TargetSelection::Continuous
        {
            continue;
        }
        let targets = effective_targets(&job);
        if targets.contains(&thing_arn) {
            continue;
        }
        let reached = |groups: &BTreeSet<String>| targets.iter().any(|t| groups.contains(t));
        match (reached(&before), reached(&after)) {
            (false, true) => {
                if let Ok(msgs) = jobs.add_thing(&job.job_id, thing, now) {
                    out.extend(msgs);
                }
            }
            (true, false) => {
                let queued = jobs
                    .describe_execution(&job.job_id, thing)
                    .is_ok_and(|e| e.status == ExecutionStatus::Queued);
                if queued && let Ok(msgs) = jobs.remove_execution(&job.job_id, thing, now) {
                    out.extend(msgs);
                }
            }
            _ => {}
        }
    }
    drop(jobs);
    publish(ctx, out);
}

// ----------------------------------------------------------------------------------------------
// Rendering.

/// `value` without its `null` members, recursively (the engine's optional fields serialize
/// as `null`; AWS leaves absent members out).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn insert_config<T: serde::Serialize>(
    out: &mut Map<String, Value>,
    member: &str,
    config: &Option<T>,
) {
    let value = config
        .as_ref()
        .and_then(|c| serde_json::to_value(c).ok())
        .map(without_nulls);
    if let Some(v) = value {
        out.insert(member.into(), v);
    }
}

/// DescribeJob's `job`.
fn job_json<S: RegistryStore>(ctx: &Ctx<'_, S>, job: &Job, details: ProcessDetails) -> Value {
    let id = job.job_id.as_str();
    let targets = effective_targets(job);
    let mut out = Map::new();
    out.insert("jobArn".into(), json!(job_arn(ctx, id)));
    out.insert("jobId".into(), json!(id));
    out.insert(
        "targetSelection".into(),
        json!(selection_name(job.target_selection)),
    );
    out.insert("status".into(), json!(job.status.as_str()));
    if job.status == JobStatus::Canceled {
        out.insert("forceCanceled".into(), json!(job.force_canceled));
    }
    if let Some(r) = &job.reason_code {
        out.insert("reasonCode".into(), json!(r));
    }
    if let Some(c) = &job.comment {
        out.insert("comment".into(), json!(c));
    }
    out.insert("targets".into(), json!(targets));
    if let Some(d) = &job.description {
        out.insert("description".into(), json!(d));
    }
    if let Some(v) = &job.presigned_url_config {
        out.insert("presignedUrlConfig".into(), v.clone());
    }
    insert_config(&mut out, "jobExecutionsRolloutConfig", &job.rollout);
    insert_config(&mut out, "abortConfig", &job.abort);
    insert_config(&mut out, "timeoutConfig", &job.timeout);
    insert_config(&mut out, "jobExecutionsRetryConfig", &job.retry);
    insert_config(&mut out, "schedulingConfig", &job.scheduling);
    out.insert("createdAt".into(), json!(job.created_at));
    out.insert("lastUpdatedAt".into(), json!(job.last_updated_at));
    if let Some(t) = job.completed_at {
        out.insert("completedAt".into(), json!(t));
    }
    let mut process = Map::new();
    // AWS: the targets being rolled out to, absent once the rollout reached them all.
    if details.waiting > 0 {
        process.insert("processingTargets".into(), json!(targets));
    }
    for (member, n) in [
        ("numberOfCanceledThings", details.canceled),
        ("numberOfSucceededThings", details.succeeded),
        ("numberOfFailedThings", details.failed),
        ("numberOfRejectedThings", details.rejected),
        ("numberOfQueuedThings", details.queued),
        ("numberOfInProgressThings", details.in_progress),
        ("numberOfRemovedThings", details.removed),
        ("numberOfTimedOutThings", details.timed_out),
    ] {
        process.insert(member.into(), json!(n));
    }
    out.insert("jobProcessDetails".into(), Value::Object(process));
    if let Some(t) = &job.job_template_arn {
        out.insert("jobTemplateArn".into(), json!(t));
    }
    out.insert("isConcurrent".into(), json!(false));
    Value::Object(out)
}

fn selection_name(s: TargetSelection) -> &'static str {
    match s {
        TargetSelection::Continuous => "CONTINUOUS",
        _ => "SNAPSHOT",
    }
}

/// `JobExecutionSummary`.
fn execution_summary(e: &JobExecution) -> Value {
    let mut out = Map::new();
    out.insert("status".into(), json!(e.status.as_str()));
    out.insert("queuedAt".into(), json!(e.queued_at));
    if let Some(t) = e.started_at {
        out.insert("startedAt".into(), json!(t));
    }
    out.insert("lastUpdatedAt".into(), json!(e.last_updated_at));
    out.insert("executionNumber".into(), json!(e.execution_number));
    out.insert(
        "retryAttempt".into(),
        json!(
            e.retries_after_failed
                .saturating_add(e.retries_after_timed_out)
        ),
    );
    Value::Object(out)
}

/// The `arn:aws:iot:...:job/ID`, `jobId`, `description` answer of CreateJob, CancelJob and
/// AssociateTargetsWithJob.
fn job_answer<S: RegistryStore>(ctx: &Ctx<'_, S>, id: &str, description: Option<&str>) -> Value {
    let mut out = json!({ "jobArn": job_arn(ctx, id), "jobId": id });
    if let (Some(d), Some(obj)) = (description, out.as_object_mut()) {
        obj.insert("description".into(), json!(d));
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Jobs.

/// `CreateJob`. The document is `document`, or the template's (`jobTemplateArn`); members the
/// request gives win over the template's. `schedulingConfig` start and end times are run by
/// the engine; maintenance windows, `documentSource` (an S3 URL), namespaces,
/// document parameters and package versions are refused with `InvalidRequestException`
/// naming the member. Tags are accepted and not kept.
fn create_job<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    if input.get("documentSource").is_some() {
        return Err(ApiError::invalid_request(
            "documentSource is not supported: thingkit has no S3 to fetch a job document from; give the document itself in `document`",
        ));
    }
    refuse_unsupported(
        input,
        &[
            ("namespaceId", NO_NAMESPACES),
            (
                "documentParameters",
                "they fill AWS-managed templates, which thingkit does not have",
            ),
            (
                "destinationPackageVersions",
                "software package catalogs are not implemented",
            ),
        ],
    )?;
    let template = match input.str("jobTemplateArn") {
        Some(arn) => {
            let template_id = arn
                .strip_prefix(ctx.arn("jobtemplate/").as_str())
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "jobTemplateArn {arn} is not a job template ARN of this account"
                    ))
                })?;
            Some(ctx.plane.job_store.template(template_id)?.ok_or_else(|| {
                ApiError::not_found(format!("Job template {template_id} cannot be found."))
            })?)
        }
        None => None,
    };
    let document = match (input.str("document"), &template) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.document.clone(),
        (None, None) => {
            return Err(ApiError::invalid_request(
                "A job needs a document: give `document` or `jobTemplateArn`",
            ));
        }
    };
    let from_template = |member: &str| -> Option<&Value> {
        let t = template.as_ref()?;
        match member {
            "jobExecutionsRolloutConfig" => t.rollout.as_ref(),
            "abortConfig" => t.abort.as_ref(),
            "timeoutConfig" => t.timeout.as_ref(),
            "jobExecutionsRetryConfig" => t.retry.as_ref(),
            _ => None,
        }
    };
    let configs = Configs::read(|m| input.get(m).or_else(|| from_template(m)))?;
    let targets: Vec<String> = input
        .get("targets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if targets.len() > MAX_TARGETS {
        return Err(ApiError::limit_exceeded(format!(
            "A job may have at most {MAX_TARGETS} targets"
        )));
    }
    let things = resolve_targets(ctx, &targets, true)?;
    let now = now_secs(ctx);
    let mut job = Job::new(id.clone(), document, targets, now);
    job.description = input.str("description").map(str::to_string);
    job.target_selection = match input.str("targetSelection") {
        Some("CONTINUOUS") => TargetSelection::Continuous,
        _ => TargetSelection::Snapshot,
    };
    job.rollout = configs.rollout;
    job.abort = configs.abort;
    job.timeout = configs.timeout;
    job.retry = configs.retry;
    job.job_template_arn = input.str("jobTemplateArn").map(str::to_string);
    job.scheduling = config(input.get("schedulingConfig"), "schedulingConfig")?;
    job.presigned_url_config = input.get("presignedUrlConfig").cloned().or_else(|| {
        template
            .as_ref()
            .and_then(|t| t.presigned_url_config.clone())
    });
    let description = job.description.clone();
    let messages = engine(ctx)?
        .create_job(job, &things, now)
        .map_err(|e| refusal(e, &["ResourceAlreadyExistsException"]))?;
    publish(ctx, messages);
    Ok(job_answer(ctx, id.as_str(), description.as_deref()))
}

/// `DescribeJob`: the job as the engine stores it, with what `UpdateJob` and
/// `AssociateTargetsWithJob` changed since, and its executions counted by status.
fn describe_job<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    let jobs = engine(ctx)?;
    let job = jobs.describe_job(&id).map_err(|e| refusal(e, &[]))?;
    let details = jobs.process_details(&id).map_err(|e| refusal(e, &[]))?;
    drop(jobs);
    Ok(json!({ "job": job_json(ctx, &job, details) }))
}

/// `ListJobs`, by job ID, filtered by `status`, `targetSelection` and the target group
/// (`thingGroupName` or `thingGroupId`: jobs that name the group among their targets).
fn list_jobs<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input, &[("namespaceId", NO_NAMESPACES)])?;
    let group_by_id = match input.str("thingGroupId") {
        Some(wanted) => {
            let registry = ctx.read();
            let name = registry
                .thing_groups()
                .find(|(n, g)| crate::ops::resource_id("thinggroup", n, g.created) == wanted)
                .map(|(n, _)| n.to_string());
            // No group has that ID: no job targets it.
            Some(name.unwrap_or_default())
        }
        None => None,
    };
    let group_arns: Vec<String> = [input.str("thingGroupName").map(str::to_string), group_by_id]
        .into_iter()
        .flatten()
        .map(|g| ctx.arn(&format!("thinggroup/{g}")))
        .collect();
    let all = engine(ctx)?.list_jobs().map_err(|e| refusal(e, &[]))?;
    let status = input.str("status");
    let selection = input.str("targetSelection");
    let registry = ctx.read();
    let mut items = Vec::new();
    for job in all {
        if status.is_some_and(|s| s != job.status.as_str())
            || selection.is_some_and(|s| s != selection_name(job.target_selection))
        {
            continue;
        }
        let targets = effective_targets(&job);
        if !group_arns.iter().all(|g| targets.contains(g)) {
            continue;
        }
        let id = job.job_id.to_string();
        let mut summary = Map::new();
        summary.insert("jobArn".into(), json!(job_arn(ctx, &id)));
        summary.insert("jobId".into(), json!(id));
        // The ID of the first target group, as AWS's summary names one.
        let prefix = ctx.arn("thinggroup/");
        if let Some(g) = targets
            .iter()
            .find_map(|t| t.strip_prefix(prefix.as_str()))
            .and_then(|g| registry.thing_group(g).map(|group| (g, group)))
        {
            summary.insert(
                "thingGroupId".into(),
                json!(crate::ops::resource_id("thinggroup", g.0, g.1.created)),
            );
        }
        summary.insert(
            "targetSelection".into(),
            json!(selection_name(job.target_selection)),
        );
        summary.insert("status".into(), json!(job.status.as_str()));
        summary.insert("createdAt".into(), json!(job.created_at));
        summary.insert("lastUpdatedAt".into(), json!(job.last_updated_at));
        if let Some(t) = job.completed_at {
            summary.insert("completedAt".into(), json!(t));
        }
        summary.insert("isConcurrent".into(), json!(false));
        items.push((id, Value::Object(summary)));
    }
    drop(registry);
    let (jobs, next) = page(
        items.into_iter(),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "jobs": jobs }), next))
}

/// `CancelJob`: QUEUED executions are canceled, IN_PROGRESS ones too with `force`. The model
/// gives CancelJob no `InvalidStateTransitionException`: canceling a COMPLETED job (or a
/// CANCELED one without a new `force`) is `InvalidRequestException`.
fn cancel_job<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    let cancel = CancelJob {
        force: input.bool("force").unwrap_or(false),
        reason_code: input.str("reasonCode").map(str::to_string),
        comment: input.str("comment").map(str::to_string),
    };
    let mut jobs = engine(ctx)?;
    let messages = jobs
        .cancel_job(&id, &cancel, now_secs(ctx))
        .map_err(|e| refusal(e, &[]))?;
    let description = jobs.describe_job(&id).ok().and_then(|j| j.description);
    drop(jobs);
    publish(ctx, messages);
    Ok(job_answer(ctx, id.as_str(), description.as_deref()))
}

/// `DeleteJob`: a COMPLETED or CANCELED job, or any with `force`; its executions go with it.
fn delete_job<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input, &[("namespaceId", NO_NAMESPACES)])?;
    let id = job_id(input)?;
    let messages = engine(ctx)?
        .delete_job(&id, input.bool("force").unwrap_or(false), now_secs(ctx))
        .map_err(|e| refusal(e, &["InvalidStateTransitionException"]))?;
    publish(ctx, messages);
    Ok(json!({}))
}

/// `UpdateJob`: the description and the presigned-URL, rollout, abort, timeout and retry
/// configurations, checked by the engine's rules and applied to the running job: a new rate
/// from the next minute, new abort criteria from the next outcome, a new timeout for
/// executions queued from now on, retries only lowered to 0 (J-18).
fn update_job<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input, &[("namespaceId", NO_NAMESPACES)])?;
    let id = job_id(input)?;
    let configs = Configs::read(|m| input.get(m))?;
    let update = JobUpdate {
        description: input.str("description").map(str::to_string),
        rollout: configs.rollout,
        abort: configs.abort,
        timeout: configs.timeout,
        retry: configs.retry,
        presigned_url_config: input.get("presignedUrlConfig").cloned(),
        add_targets: Vec::new(),
    };
    engine(ctx)?
        .update_job(&id, update, now_secs(ctx))
        .map_err(|e| refusal(e, &[]))?;
    Ok(json!({}))
}

/// `AssociateTargetsWithJob`: only an IN_PROGRESS continuous job; at most 100 targets in all.
/// The things the new targets reach that the job did not reach yet get executions at once
/// (outside rollout control, as later joiners do).
fn associate_targets<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input, &[("namespaceId", NO_NAMESPACES)])?;
    let id = job_id(input)?;
    let job = engine(ctx)?
        .describe_job(&id)
        .map_err(|e| refusal(e, &[]))?;
    if job.target_selection != TargetSelection::Continuous {
        return Err(ApiError::invalid_request(format!(
            "Job {id} is a SNAPSHOT job: targets can be associated with CONTINUOUS jobs only"
        )));
    }
    if job.status != JobStatus::InProgress {
        return Err(ApiError::invalid_request(format!(
            "Job {id} is {}: targets can be associated with IN_PROGRESS jobs only",
            job.status.as_str()
        )));
    }
    let current = effective_targets(&job);
    let mut added: Vec<String> = Vec::new();
    for t in input
        .get("targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !current.iter().any(|c| c == t) && !added.iter().any(|a| a == t) {
            added.push(t.to_string());
        }
    }
    if current.len() + added.len() > MAX_TARGETS {
        return Err(ApiError::limit_exceeded(format!(
            "The total number of targets associated with a job must not exceed {MAX_TARGETS}"
        )));
    }
    let reached: BTreeSet<String> = resolve_targets(ctx, &current, false)?.into_iter().collect();
    let new_things: Vec<String> = resolve_targets(ctx, &added, true)?
        .into_iter()
        .filter(|t| !reached.contains(t))
        .collect();
    let now = now_secs(ctx);
    let mut messages = Vec::new();
    let description = {
        let mut jobs = engine(ctx)?;
        let update = JobUpdate {
            add_targets: added,
            ..JobUpdate::default()
        };
        let description = jobs
            .update_job(&id, update, now)
            .map_err(|e| refusal(e, &[]))?
            .description;
        for thing in &new_things {
            messages.extend(
                jobs.add_thing(&id, thing, now)
                    .map_err(|e| refusal(e, &[]))?,
            );
        }
        description
    };
    publish(ctx, messages);
    Ok(job_answer(ctx, id.as_str(), description.as_deref()))
}

/// `GetJobDocument`: the document as stored (thingkit substitutes no presigned URLs, so
/// `beforeSubstitution` changes nothing).
fn get_job_document<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    let job = engine(ctx)?
        .describe_job(&id)
        .map_err(|e| refusal(e, &[]))?;
    Ok(json!({ "document": job.document }))
}

// ----------------------------------------------------------------------------------------------
// Executions.

fn status_filter(input: &Input) -> Option<&str> {
    input.str("status")
}

/// `ListJobExecutionsForJob`, by thing name; `status` filters.
fn list_executions_for_job<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    let executions = {
        let jobs = engine(ctx)?;
        jobs.describe_job(&id).map_err(|e| refusal(e, &[]))?;
        jobs.executions_of_job(&id).map_err(|e| refusal(e, &[]))?
    };
    let status = status_filter(input);
    let items = executions
        .iter()
        .filter(|e| status.is_none_or(|s| s == e.status.as_str()))
        .map(|e| {
            (
                e.thing_name.clone(),
                json!({
                    "thingArn": ctx.arn(&format!("thing/{}", e.thing_name)),
                    "jobExecutionSummary": execution_summary(e),
                }),
            )
        });
    let (summaries, next) = page(items, input.str("nextToken"), ctx.page_size(input))?;
    Ok(with_token(json!({ "executionSummaries": summaries }), next))
}

/// `ListJobExecutionsForThing`, by job ID; `status` and `jobId` filter. A thing that is not
/// in the registry is `ResourceNotFoundException`.
fn list_executions_for_thing<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    refuse_unsupported(input, &[("namespaceId", NO_NAMESPACES)])?;
    let thing = input.required("thingName")?;
    if ctx.read().thing(thing).is_none() {
        return Err(ApiError::not_found(format!(
            "Thing {thing} cannot be found."
        )));
    }
    let executions = engine(ctx)?
        .executions_of_thing(thing)
        .map_err(|e| refusal(e, &[]))?;
    let status = status_filter(input);
    let job = input.str("jobId");
    let items = executions
        .iter()
        .filter(|e| status.is_none_or(|s| s == e.status.as_str()))
        .filter(|e| job.is_none_or(|j| j == e.job_id.as_str()))
        .map(|e| {
            (
                e.job_id.to_string(),
                json!({
                    "jobId": e.job_id.as_str(),
                    "jobExecutionSummary": execution_summary(e),
                }),
            )
        });
    let (summaries, next) = page(items, input.str("nextToken"), ctx.page_size(input))?;
    Ok(with_token(json!({ "executionSummaries": summaries }), next))
}

fn execution_number(input: &Input) -> ApiResult<Option<u64>> {
    input
        .int("executionNumber")
        .map(|n| {
            u64::try_from(n).map_err(|_| {
                ApiError::invalid_request(format!("executionNumber {n} is not a valid number"))
            })
        })
        .transpose()
}

/// `DescribeJobExecution`; with `executionNumber`, only that execution (the engine keeps the
/// latest execution of a job on a thing: an earlier number is `ResourceNotFoundException`).
fn describe_execution<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    let thing = input.required("thingName")?;
    let (e, force_canceled) = {
        let jobs = engine(ctx)?;
        let e = jobs
            .describe_execution(&id, thing)
            .map_err(|e| refusal(e, &[]))?;
        let forced = jobs.describe_job(&id).is_ok_and(|j| j.force_canceled);
        (e, forced)
    };
    if let Some(n) = execution_number(input)?
        && n != e.execution_number
    {
        return Err(ApiError::not_found(format!(
            "Job execution {n} of job {id} on thing {thing} not found"
        )));
    }
    let mut out = Map::new();
    out.insert("jobId".into(), json!(id.as_str()));
    out.insert("status".into(), json!(e.status.as_str()));
    if e.status == ExecutionStatus::Canceled {
        out.insert("forceCanceled".into(), json!(force_canceled));
    }
    out.insert(
        "statusDetails".into(),
        json!({ "detailsMap": e.status_details }),
    );
    out.insert("thingArn".into(), json!(ctx.arn(&format!("thing/{thing}"))));
    out.insert("queuedAt".into(), json!(e.queued_at));
    if let Some(t) = e.started_at {
        out.insert("startedAt".into(), json!(t));
    }
    out.insert("lastUpdatedAt".into(), json!(e.last_updated_at));
    out.insert("executionNumber".into(), json!(e.execution_number));
    out.insert("versionNumber".into(), json!(e.version_number));
    if let Some(s) = e.seconds_before_timed_out(now_secs(ctx)) {
        out.insert("approximateSecondsBeforeTimedOut".into(), json!(s));
    }
    Ok(json!({ "execution": out }))
}

/// `CancelJobExecution`: a QUEUED execution, or an IN_PROGRESS one with `force`;
/// `expectedVersion` must match; `statusDetails` replaces the execution's.
fn cancel_execution<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = job_id(input)?;
    let thing = input.required("thingName")?;
    let expected = input
        .int("expectedVersion")
        .map(|v| {
            u64::try_from(v).map_err(|_| {
                ApiError::invalid_request(format!("expectedVersion {v} is not a valid version"))
            })
        })
        .transpose()?;
    let details: Option<BTreeMap<String, String>> = input
        .get("statusDetails")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        });
    let messages = engine(ctx)?
        .cancel_execution(
            &id,
            thing,
            input.bool("force").unwrap_or(false),
            expected,
            details,
            now_secs(ctx),
        )
        .map_err(|e| {
            refusal(
                e,
                &[
                    "InvalidStateTransitionException",
                    "VersionConflictException",
                ],
            )
        })?;
    publish(ctx, messages);
    Ok(json!({}))
}

/// `DeleteJobExecution`: the execution `executionNumber`; a non-terminal one only with
/// `force`.
fn delete_execution<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input, &[("namespaceId", NO_NAMESPACES)])?;
    let id = job_id(input)?;
    let thing = input.required("thingName")?;
    let number = execution_number(input)?
        .ok_or_else(|| ApiError::invalid_request("executionNumber is required"))?;
    let messages = engine(ctx)?
        .delete_execution(
            &id,
            thing,
            number,
            input.bool("force").unwrap_or(false),
            now_secs(ctx),
        )
        .map_err(|e| refusal(e, &["InvalidStateTransitionException"]))?;
    publish(ctx, messages);
    Ok(json!({}))
}
