//! Provisioning templates: `CreateProvisioningTemplate`, `DescribeProvisioningTemplate`,
//! `ListProvisioningTemplates`, `UpdateProvisioningTemplate`, `DeleteProvisioningTemplate`.
//!
//! Templates live in the [`TemplateStore`](crate::templates::TemplateStore); enabled
//! `FLEET_PROVISIONING` ones are added to the live fleet-provisioning service as they are
//! created or enabled and removed as they are disabled or deleted, so devices can use them at
//! once. Differences from AWS: a `preProvisioningHook` (a Lambda ARN) is refused — thingkit
//! cannot invoke Lambda, and storing the hook without running it would provision devices the
//! hook was meant to refuse; templates have one version (`defaultVersionId` 1); a fleet
//! template must activate the ownership token's certificate (`CertificateId`), which AWS also
//! requires at provisioning time, and is refused at creation here.

use serde_json::{Value, json};
use thingkit_provision::{RegistryStore, check_template_name};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::ops::paging::page;
use crate::service::Ctx;
use crate::templates::{StoredTemplate, TemplateStore, TemplateType};

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        (
            "CreateProvisioningTemplate",
            create_provisioning_template::<S> as Handler<S>,
        ),
        (
            "DescribeProvisioningTemplate",
            describe_provisioning_template::<S>,
        ),
        (
            "ListProvisioningTemplates",
            list_provisioning_templates::<S>,
        ),
        (
            "UpdateProvisioningTemplate",
            update_provisioning_template::<S>,
        ),
        (
            "DeleteProvisioningTemplate",
            delete_provisioning_template::<S>,
        ),
    ]
}

fn store<'a, S: RegistryStore>(ctx: &Ctx<'a, S>) -> ApiResult<&'a TemplateStore> {
    ctx.plane.templates.as_deref().ok_or_else(|| {
        ApiError::unavailable("this thingkit server keeps no provisioning templates")
    })
}

fn template_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The provisioning template {name} does not exist"))
}

fn refuse_hook(input: &Input) -> ApiResult<()> {
    if input.get("preProvisioningHook").is_some() {
        return Err(ApiError::invalid_request(
            "preProvisioningHook is not supported: thingkit cannot invoke AWS Lambda functions",
        ));
    }
    Ok(())
}

/// Checks that the template can be served as it is, before anything is stored.
fn check_servable(template: &StoredTemplate) -> ApiResult<()> {
    let parsed = template
        .parse()
        .map_err(|e| ApiError::invalid_request(format!("the template body is invalid: {e}")))?;
    if template.kind == TemplateType::FleetProvisioning && !parsed.uses_certificate_id() {
        return Err(ApiError::invalid_request(
            "a fleet provisioning template needs an AWS::IoT::Certificate resource with \
             CertificateId (e.g. {\"Ref\": \"AWS::IoT::Certificate::Id\"})",
        ));
    }
    Ok(())
}

/// Brings the fleet-provisioning service in line with `template` (`None`: deleted).
fn sync_fleet<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    name: &str,
    template: Option<&StoredTemplate>,
) -> ApiResult<()> {
    let Some(fleet) = &ctx.plane.fleet else {
        return Ok(());
    };
    let mut fleet = fleet.lock().unwrap_or_else(|p| p.into_inner());
    match template.filter(|t| t.serves_fleet()) {
        Some(t) => {
            let parsed = t.parse().map_err(|e| {
                ApiError::invalid_request(format!("the template body is invalid: {e}"))
            })?;
            fleet
                .add_template(name, parsed)
                .map_err(|e| ApiError::invalid_request(e.to_string()))?;
        }
        None => {
            fleet.remove_template(name);
        }
    }
    Ok(())
}

fn create_provisioning_template<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let store = store(ctx)?;
    let name = input.required("templateName")?;
    check_template_name(name).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    refuse_hook(input)?;
    let kind = match input.str("type") {
        None | Some("FLEET_PROVISIONING") => TemplateType::FleetProvisioning,
        Some("JITP") => TemplateType::Jitp,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "{other:?} is not a template type (FLEET_PROVISIONING or JITP)"
            )));
        }
    };
    let template = StoredTemplate {
        name: name.to_string(),
        description: input.str("description").map(str::to_string),
        body: input.required("templateBody")?.to_string(),
        enabled: input.bool("enabled").unwrap_or(false),
        provisioning_role_arn: input.required("provisioningRoleArn")?.to_string(),
        kind,
        created_at: ctx.epoch(),
        modified_at: ctx.epoch(),
    };
    check_servable(&template)?;
    store.update(|all| {
        if all.contains_key(name) {
            return Err(ApiError::already_exists(format!(
                "The provisioning template {name} already exists"
            )));
        }
        all.insert(name.to_string(), template.clone());
        Ok(())
    })?;
    sync_fleet(ctx, name, Some(&template))?;
    Ok(json!({
        "templateArn": ctx.arn(&format!("provisioningtemplate/{name}")),
        "templateName": name,
        "defaultVersionId": 1,
    }))
}

fn describe_provisioning_template<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("templateName")?;
    let t = store(ctx)?
        .get(name)
        .ok_or_else(|| template_not_found(name))?;
    let mut out = json!({
        "templateArn": ctx.arn(&format!("provisioningtemplate/{name}")),
        "templateName": t.name,
        "creationDate": t.created_at,
        "lastModifiedDate": t.modified_at,
        "defaultVersionId": 1,
        "templateBody": t.body,
        "enabled": t.enabled,
        "provisioningRoleArn": t.provisioning_role_arn,
        "type": t.kind.as_str(),
    });
    if let (Some(d), Some(o)) = (t.description, out.as_object_mut()) {
        o.insert("description".into(), d.into());
    }
    Ok(out)
}

fn list_provisioning_templates<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let items: Vec<(String, Value)> = store(ctx)?
        .list()
        .into_iter()
        .map(|t| {
            let mut item = json!({
                "templateArn": ctx.arn(&format!("provisioningtemplate/{}", t.name)),
                "templateName": t.name,
                "creationDate": t.created_at,
                "lastModifiedDate": t.modified_at,
                "enabled": t.enabled,
                "type": t.kind.as_str(),
            });
            if let (Some(d), Some(o)) = (&t.description, item.as_object_mut()) {
                o.insert("description".into(), d.clone().into());
            }
            (t.name, item)
        })
        .collect();
    let (templates, next) = page(items, input.str("nextToken"), ctx.page_size(input), false)?;
    let mut out = json!({ "templates": templates });
    if let (Some(next), Some(o)) = (next, out.as_object_mut()) {
        o.insert("nextToken".into(), next.into());
    }
    Ok(out)
}

fn update_provisioning_template<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let store = store(ctx)?;
    let name = input.required("templateName")?;
    refuse_hook(input)?;
    if let Some(v) = input.int("defaultVersionId")
        && v != 1
    {
        return Err(ApiError::not_found(format!(
            "The provisioning template {name} has no version {v} (thingkit templates have one)"
        )));
    }
    let updated = store.update(|all| {
        let t = all.get_mut(name).ok_or_else(|| template_not_found(name))?;
        if let Some(d) = input.str("description") {
            t.description = Some(d.to_string());
        }
        if let Some(e) = input.bool("enabled") {
            t.enabled = e;
        }
        if let Some(r) = input.str("provisioningRoleArn") {
            t.provisioning_role_arn = r.to_string();
        }
        t.modified_at = ctx.epoch();
        let t = t.clone();
        check_servable(&t)?;
        Ok::<_, ApiError>(t)
    })?;
    sync_fleet(ctx, name, Some(&updated))?;
    Ok(json!({}))
}

fn delete_provisioning_template<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("templateName")?;
    store(ctx)?.update(|all| {
        all.remove(name).ok_or_else(|| template_not_found(name))?;
        Ok::<_, ApiError>(())
    })?;
    sync_fleet(ctx, name, None)?;
    Ok(json!({}))
}
