//! CA certificates: `RegisterCACertificate`, `DescribeCACertificate`, `ListCACertificates`,
//! `UpdateCACertificate`, `DeleteCACertificate`, `GetRegistrationCode`.
//!
//! Differences from AWS: the `verificationCertificate` (proof of possession of the CA key,
//! AWS's `DEFAULT` mode) is optional and not checked — registration is by the operator holding
//! the API keys, as AWS's `SNI_ONLY` mode allows; `certificateMode` reads `DEFAULT`.
//! `registrationConfig` (just-in-time provisioning templates attached to a CA) is refused:
//! thingkit's JITP runs from templates of type `JITP` only through its own configuration.
//! `customerVersion` and `generationId` are left out of descriptions.

use serde_json::{Map, Value, json};
use thingkit_provision::{CaStatus, Error as RegistryError, RegistryStore};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::ops::certificates::{account, parse_id};
use crate::ops::paging::marker_list;
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        (
            "RegisterCACertificate",
            register_ca_certificate::<S> as Handler<S>,
        ),
        ("DescribeCACertificate", describe_ca_certificate::<S>),
        ("ListCACertificates", list_ca_certificates::<S>),
        ("UpdateCACertificate", update_ca_certificate::<S>),
        ("DeleteCACertificate", delete_ca_certificate::<S>),
        ("GetRegistrationCode", get_registration_code::<S>),
    ]
}

fn ca_not_found(id: &impl std::fmt::Display) -> ApiError {
    ApiError::not_found(format!("The CA certificate {id} does not exist"))
}

fn register_ca_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let pem = input.required("caCertificate")?;
    if input.get("registrationConfig").is_some() {
        return Err(ApiError::invalid_request(
            "registrationConfig (a JITP template on the CA) is not supported by thingkit",
        ));
    }
    let status = if input.bool("setAsActive").unwrap_or(false) {
        CaStatus::Active
    } else {
        CaStatus::Inactive
    };
    let auto = input.bool("allowAutoRegistration").unwrap_or(false);
    let id = ctx
        .write()
        .register_ca_certificate_at(pem.as_bytes(), status, auto, ctx.now)
        .map_err(|e| match e {
            RegistryError::BadCa(reason) => ApiError::certificate_validation(reason),
            e => ApiError::from(e),
        })?;
    Ok(json!({
        "certificateArn": ctx.arn(&format!("cacert/{id}")),
        "certificateId": id.to_string(),
    }))
}

fn describe_ca_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = parse_id(input.required("certificateId")?)?;
    let registry = ctx.read();
    let ca = registry
        .ca_certificate(&id)
        .ok_or_else(|| ca_not_found(&id))?;
    let (not_before, not_after) = registry.ca_certificate_validity(&id)?;
    let mut d = Map::new();
    d.insert(
        "certificateArn".into(),
        ctx.arn(&format!("cacert/{id}")).into(),
    );
    d.insert("certificateId".into(), id.to_string().into());
    d.insert("status".into(), ca.status.to_string().into());
    d.insert(
        "certificatePem".into(),
        thingkit_provision::encode_pem("CERTIFICATE", &ca.der).into(),
    );
    d.insert("ownedBy".into(), account(ctx).into());
    if ca.created_at > 0 {
        d.insert("creationDate".into(), ca.created_at.into());
        d.insert("lastModifiedDate".into(), ca.modified_at.into());
    }
    d.insert(
        "autoRegistrationStatus".into(),
        if ca.auto_registration {
            "ENABLE"
        } else {
            "DISABLE"
        }
        .into(),
    );
    d.insert(
        "validity".into(),
        json!({"notBefore": not_before, "notAfter": not_after}),
    );
    d.insert("certificateMode".into(), "DEFAULT".into());
    Ok(json!({ "certificateDescription": d }))
}

fn list_ca_certificates<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let registry = ctx.read();
    // No CA carries a provisioning template (registrationConfig is refused), so a filter by
    // template name matches none.
    let filtered = input.str("templateName").is_some();
    let items: Vec<(String, Value)> = registry
        .ca_certificates()
        .filter(|_| !filtered)
        .map(|(id, ca)| {
            let mut item = json!({
                "certificateArn": ctx.arn(&format!("cacert/{id}")),
                "certificateId": id.to_string(),
                "status": ca.status.to_string(),
            });
            if ca.created_at > 0
                && let Some(o) = item.as_object_mut()
            {
                o.insert("creationDate".into(), ca.created_at.into());
            }
            (format!("{:020}-{id}", ca.created_at.max(0)), item)
        })
        .collect();
    let descending = !input.bool("ascendingOrder").unwrap_or(false);
    marker_list(ctx, input, "certificates", items, descending)
}

fn update_ca_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = parse_id(input.required("certificateId")?)?;
    if input.get("registrationConfig").is_some() {
        return Err(ApiError::invalid_request(
            "registrationConfig (a JITP template on the CA) is not supported by thingkit",
        ));
    }
    let mut registry = ctx.write();
    let ca = registry
        .ca_certificate(&id)
        .ok_or_else(|| ca_not_found(&id))?;
    let status = match input.str("newStatus") {
        None => ca.status,
        Some("ACTIVE") => CaStatus::Active,
        Some("INACTIVE") => CaStatus::Inactive,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "{other:?} is not a CA certificate status (ACTIVE or INACTIVE)"
            )));
        }
    };
    let auto = match input.str("newAutoRegistrationStatus") {
        None => ca.auto_registration,
        Some("ENABLE") => true,
        Some("DISABLE") => false,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "{other:?} is not an auto-registration status (ENABLE or DISABLE)"
            )));
        }
    };
    registry.update_ca_certificate_at(&id, status, auto, ctx.now)?;
    Ok(json!({}))
}

fn delete_ca_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = parse_id(input.required("certificateId")?)?;
    let mut registry = ctx.write();
    let ca = registry
        .ca_certificate(&id)
        .ok_or_else(|| ca_not_found(&id))?;
    if ca.status != CaStatus::Inactive {
        return Err(ApiError::certificate_state(format!(
            "The CA certificate {id} must be INACTIVE before it is deleted"
        )));
    }
    if registry.certificates().any(|(_, c)| c.ca == Some(id)) {
        // AWS's DeleteCACertificate has no DeleteConflictException: a CA that still signs
        // registered certificates is refused as a state error.
        return Err(ApiError::certificate_state(format!(
            "Certificates signed by the CA certificate {id} are still registered; delete them \
             first"
        )));
    }
    registry.delete_ca_certificate(&id)?;
    Ok(json!({}))
}

/// A code stable for this server: the SHA-256 of its ARN prefix and CA certificate, in hex
/// (AWS's codes are 64 hex digits too). Verification certificates are not checked against it
/// (see the module documentation); it is given for scripts that follow AWS's steps.
fn get_registration_code<S: RegistryStore>(ctx: &Ctx<'_, S>, _: &Input) -> ApiResult<Value> {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(b"thingkit registration code\0");
    hash.update(ctx.plane.arn.as_str().as_bytes());
    if let Some(ca) = &ctx.plane.ca {
        hash.update(ca.certificate_der());
    }
    Ok(json!({ "registrationCode": hex::encode(hash.finish()) }))
}
