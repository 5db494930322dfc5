//! Job templates: `CreateJobTemplate`, `DescribeJobTemplate`, `ListJobTemplates`,
//! `DeleteJobTemplate`, kept in the control plane's [`JobStore`](crate::job_store::JobStore)
//! (they need no jobs engine). `CreateJob` with `jobTemplateArn` takes a template's document
//! and configurations.

use serde_json::{Map, Value, json};
use thingkit_jobs::JobId;
use thingkit_provision::RegistryStore;

use crate::error::{ApiError, ApiResult};
use crate::job_store::StoredJobTemplate;
use crate::model::Input;
use crate::ops::jobs::{Configs, engine, refusal};
use crate::ops::{Handler, page, with_token};
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateJobTemplate", create_job_template::<S>),
        ("DescribeJobTemplate", describe_job_template::<S>),
        ("ListJobTemplates", list_job_templates::<S>),
        ("DeleteJobTemplate", delete_job_template::<S>),
    ]
}

fn template_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, id: &str) -> String {
    ctx.arn(&format!("jobtemplate/{id}"))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Job template {id} cannot be found."))
}

/// `CreateJobTemplate`: from a `document` and configurations, or from an existing job
/// (`jobArn`: its document and configurations; members the request gives win). The document
/// and every configuration are checked by the jobs engine's rules. An ID in use is
/// `ConflictException` (the model's error for it). `documentSource`, maintenance windows and
/// package versions are refused with `InvalidRequestException`; tags are not kept.
fn create_job_template<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = input.required("jobTemplateId")?.to_string();
    let description = input.required("description")?.to_string();
    if input.get("documentSource").is_some() {
        return Err(ApiError::invalid_request(
            "documentSource is not supported: thingkit has no S3 to fetch a job document from; give the document itself in `document`",
        ));
    }
    for (member, why) in [
        (
            "maintenanceWindows",
            "scheduled jobs and maintenance windows are not implemented",
        ),
        (
            "destinationPackageVersions",
            "software package catalogs are not implemented",
        ),
    ] {
        if input.get(member).is_some() {
            return Err(ApiError::invalid_request(format!(
                "{member} is not supported by thingkit: {why}"
            )));
        }
    }
    // From a job: its document and configurations, as JSON.
    let from_job: Option<Map<String, Value>> = match input.str("jobArn") {
        Some(arn) => {
            let job_id = arn
                .strip_prefix(ctx.arn("job/").as_str())
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .and_then(|n| JobId::new(n).ok())
                .ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "jobArn {arn} is not a job ARN of this account"
                    ))
                })?;
            let job = engine(ctx)?
                .describe_job(&job_id)
                .map_err(|e| refusal(e, &[]))?;
            let mut m = Map::new();
            m.insert("document".into(), json!(job.document));
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    m.insert(k.into(), v);
                }
            };
            put(
                "jobExecutionsRolloutConfig",
                serde_json::to_value(&job.rollout).ok(),
            );
            put("abortConfig", serde_json::to_value(&job.abort).ok());
            put("timeoutConfig", serde_json::to_value(job.timeout).ok());
            put(
                "jobExecutionsRetryConfig",
                serde_json::to_value(&job.retry).ok(),
            );
            put("presignedUrlConfig", job.presigned_url_config.clone());
            Some(m)
        }
        None => None,
    };
    let member = |name: &str| -> Option<&Value> {
        input
            .get(name)
            .or_else(|| from_job.as_ref().and_then(|m| m.get(name)))
    };
    let document = member("document")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid_request(
                "A job template needs a document: give `document` or `jobArn`",
            )
        })?
        .to_string();
    thingkit_jobs::job::check_document(&document)
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Configs::read(member)?;
    let template = StoredJobTemplate {
        id: id.clone(),
        description,
        document,
        presigned_url_config: member("presignedUrlConfig").cloned(),
        rollout: member("jobExecutionsRolloutConfig").cloned(),
        abort: member("abortConfig").cloned(),
        timeout: member("timeoutConfig").cloned(),
        retry: member("jobExecutionsRetryConfig").cloned(),
        created_at: ctx.epoch(),
    };
    ctx.plane.job_store.update(|r| {
        if r.templates.contains_key(&id) {
            return Err(
                ApiError::conflict(format!("Job template {id} already exists."))
                    .with("resourceId", id.clone()),
            );
        }
        r.templates.insert(id.clone(), template);
        Ok(())
    })?;
    Ok(json!({ "jobTemplateArn": template_arn(ctx, &id), "jobTemplateId": id }))
}

fn describe_job_template<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = input.required("jobTemplateId")?;
    let t = ctx
        .plane
        .job_store
        .template(id)?
        .ok_or_else(|| not_found(id))?;
    let mut out = Map::new();
    out.insert("jobTemplateArn".into(), json!(template_arn(ctx, id)));
    out.insert("jobTemplateId".into(), json!(id));
    out.insert("description".into(), json!(t.description));
    out.insert("document".into(), json!(t.document));
    out.insert("createdAt".into(), json!(t.created_at));
    for (member, value) in [
        ("presignedUrlConfig", t.presigned_url_config),
        ("jobExecutionsRolloutConfig", t.rollout),
        ("abortConfig", t.abort),
        ("timeoutConfig", t.timeout),
        ("jobExecutionsRetryConfig", t.retry),
    ] {
        if let Some(v) = value {
            out.insert(member.into(), v);
        }
    }
    Ok(Value::Object(out))
}

/// `ListJobTemplates`, by ID.
fn list_job_templates<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let templates = ctx.plane.job_store.snapshot()?.templates;
    let items = templates.into_values().map(|t| {
        let summary = json!({
            "jobTemplateArn": template_arn(ctx, &t.id),
            "jobTemplateId": t.id,
            "description": t.description,
            "createdAt": t.created_at,
        });
        (t.id, summary)
    });
    let (list, next) = page(items, input.str("nextToken"), ctx.page_size(input))?;
    Ok(with_token(json!({ "jobTemplates": list }), next))
}

/// `DeleteJobTemplate`; jobs created from it keep their document and configurations.
fn delete_job_template<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = input.required("jobTemplateId")?;
    ctx.plane.job_store.update(|r| {
        r.templates
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| not_found(id))
    })?;
    Ok(json!({}))
}
