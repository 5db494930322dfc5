//! Device certificates: `CreateKeysAndCertificate`, `CreateCertificateFromCsr`,
//! `RegisterCertificate`, `RegisterCertificateWithoutCA`, `DescribeCertificate`,
//! `ListCertificates`, `ListCertificatesByCA`, `UpdateCertificate`, `DeleteCertificate`.
//!
//! Differences from AWS, on purpose:
//!
//! - `CreateKeysAndCertificate` makes an ECDSA P-256 key (AWS makes RSA 2048). Every TLS stack
//!   boto3 users pair with AWS IoT (OpenSSL, the AWS IoT Device SDKs' s2n/mbedTLS, rustls)
//!   accepts P-256 client certificates; the key PEM is PKCS #8 (`BEGIN PRIVATE KEY`) where
//!   AWS's is PKCS #1 (`BEGIN RSA PRIVATE KEY`). The subject CN is AWS's "AWS IoT Certificate".
//! - Certificates the server's CA issues are registered under that CA when it is itself
//!   registered (they then show its `caCertificateId`), else without a CA, like AWS's
//!   Amazon-issued ones.
//! - `DescribeCertificate` leaves out `customerVersion`, `generationId` and `transferData`:
//!   the registry keeps no per-certificate version counter. `certificateMode` is always
//!   `DEFAULT`. `creationDate`/`lastModifiedDate` are absent for certificates registered before
//!   the registry kept them.

use serde_json::{Map, Value, json};
use thingkit_provision::{
    CaKeyType, CaStatus, CertificateAuthority, CertificateId, CertificateStatus, RegistryStore,
};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::ops::paging::marker_list;
use crate::service::Ctx;

/// The subject common name AWS gives the certificates `CreateKeysAndCertificate` makes.
pub(crate) const AWS_COMMON_NAME: &str = "AWS IoT Certificate";

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        (
            "CreateKeysAndCertificate",
            create_keys_and_certificate::<S> as Handler<S>,
        ),
        ("CreateCertificateFromCsr", create_certificate_from_csr::<S>),
        ("RegisterCertificate", register_certificate::<S>),
        (
            "RegisterCertificateWithoutCA",
            register_certificate_without_ca::<S>,
        ),
        ("DescribeCertificate", describe_certificate::<S>),
        ("ListCertificates", list_certificates::<S>),
        ("ListCertificatesByCA", list_certificates_by_ca::<S>),
        ("UpdateCertificate", update_certificate::<S>),
        ("DeleteCertificate", delete_certificate::<S>),
    ]
}

/// A certificate ID as the API takes it (64 hex digits).
pub(crate) fn parse_id(text: &str) -> ApiResult<CertificateId> {
    text.parse::<CertificateId>().map_err(|_| {
        ApiError::invalid_request(format!(
            "{text:?} is not a certificate ID (64 hexadecimal digits)"
        ))
    })
}

/// The certificate a principal or target ARN names (`arn:...:cert/<ID>` under this server's
/// prefix).
pub(crate) fn id_of_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, arn: &str) -> ApiResult<CertificateId> {
    let prefix = ctx.arn("cert/");
    let id = arn.strip_prefix(prefix.as_str()).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "{arn:?} is not a certificate ARN of this account ({prefix}<certificateId>); \
             thingkit supports certificate principals only"
        ))
    })?;
    parse_id(id)
}

/// The certificate's `ResourceNotFoundException`.
pub(crate) fn not_found(id: &CertificateId) -> ApiError {
    ApiError::not_found(format!("The certificate {id} does not exist"))
}

/// The account of this server's ARNs (`ownedBy`).
pub(crate) fn account<S: RegistryStore>(ctx: &Ctx<'_, S>) -> String {
    // `arn:<partition>:iot:<region>:<account>:`
    ctx.plane
        .arn
        .as_str()
        .split(':')
        .nth(4)
        .unwrap_or_default()
        .to_string()
}

fn authority<'a, S: RegistryStore>(ctx: &Ctx<'a, S>) -> ApiResult<&'a CertificateAuthority> {
    ctx.plane.ca.as_deref().ok_or_else(|| {
        ApiError::unavailable(
            "this thingkit server has no certificate authority configured to issue certificates",
        )
    })
}

fn active_or_inactive(input: &Input) -> CertificateStatus {
    if input.bool("setAsActive").unwrap_or(false) {
        CertificateStatus::Active
    } else {
        CertificateStatus::Inactive
    }
}

/// Registers a certificate the server's CA just issued (under the CA if it is registered).
fn register_issued<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    ca: &CertificateAuthority,
    der: &[u8],
    status: CertificateStatus,
) -> ApiResult<CertificateId> {
    let mut registry = ctx.write();
    let id = if registry.ca_certificate(&ca.id()).is_some() {
        registry.register_certificate(der, status, ctx.now)?
    } else {
        registry.register_certificate_without_ca(der, status, ctx.now)?
    };
    Ok(id)
}

fn create_keys_and_certificate<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let ca = authority(ctx)?;
    let made = ca
        .create_keys_and_certificate(AWS_COMMON_NAME, CaKeyType::P256, ctx.now)
        .map_err(|e| ApiError::internal(format!("issuing the certificate failed: {e}")))?;
    let id = register_issued(ctx, ca, &made.certificate.der, active_or_inactive(input))?;
    Ok(json!({
        "certificateArn": ctx.arn(&format!("cert/{id}")),
        "certificateId": id.to_string(),
        "certificatePem": made.certificate.pem(),
        "keyPair": {
            "PublicKey": made.public_key_pem,
            "PrivateKey": made.private_key_pem,
        },
    }))
}

fn create_certificate_from_csr<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let csr = input.required("certificateSigningRequest")?;
    let ca = authority(ctx)?;
    // AWS answers any unusable CSR with InvalidRequestException (the operation has no other
    // client error).
    let issued = ca
        .issue(csr.as_bytes(), ctx.now)
        .map_err(|e| ApiError::invalid_request(format!("the CSR is refused: {e}")))?;
    let id = register_issued(ctx, ca, &issued.der, active_or_inactive(input))?;
    Ok(json!({
        "certificateArn": ctx.arn(&format!("cert/{id}")),
        "certificateId": id.to_string(),
        "certificatePem": issued.pem(),
    }))
}

/// `status` if given, else ACTIVE with `setAsActive`, else INACTIVE.
fn registration_status(input: &Input) -> ApiResult<CertificateStatus> {
    let status = match input.str("status") {
        Some(s) => s
            .parse::<CertificateStatus>()
            .map_err(|_| ApiError::invalid_request(format!("{s:?} is not a certificate status")))?,
        None => active_or_inactive(input),
    };
    if status == CertificateStatus::PendingTransfer {
        return Err(ApiError::invalid_request(
            "a certificate cannot be registered as PENDING_TRANSFER",
        ));
    }
    Ok(status)
}

fn validation(e: thingkit_provision::Error) -> ApiError {
    match ApiError::from(e) {
        e if e.code == "InternalFailureException" => e,
        e => ApiError::certificate_validation(e.message),
    }
}

fn register_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let pem = input.required("certificatePem")?;
    let status = registration_status(input)?;
    let mut registry = ctx.write();
    let issuer = registry.issuing_ca(pem.as_bytes()).map_err(validation)?;
    if let Some(ca_pem) = input.str("caCertificatePem") {
        let given = CertificateId::of_certificate(ca_pem.as_bytes()).map_err(validation)?;
        if registry.ca_certificate(&given).is_none() {
            return Err(ApiError::certificate_validation(format!(
                "the CA certificate {given} is not registered"
            )));
        }
        if issuer != Some(given) {
            return Err(ApiError::certificate_validation(format!(
                "the certificate is not signed by the CA certificate {given}"
            )));
        }
    }
    let ca = issuer.ok_or_else(|| {
        ApiError::certificate_validation(
            "no registered CA certificate signed this certificate; register the CA first \
             (RegisterCACertificate) or use RegisterCertificateWithoutCA",
        )
    })?;
    let ca_active = registry
        .ca_certificate(&ca)
        .is_some_and(|c| c.status == CaStatus::Active);
    if !ca_active {
        return Err(ApiError::certificate_validation(format!(
            "the CA certificate {ca} that signed this certificate is not ACTIVE"
        )));
    }
    let id = registry.register_certificate(pem.as_bytes(), status, ctx.now)?;
    Ok(json!({
        "certificateArn": ctx.arn(&format!("cert/{id}")),
        "certificateId": id.to_string(),
    }))
}

fn register_certificate_without_ca<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let pem = input.required("certificatePem")?;
    let status = registration_status(input)?;
    let id = ctx
        .write()
        .register_certificate_without_ca(pem.as_bytes(), status, ctx.now)?;
    Ok(json!({
        "certificateArn": ctx.arn(&format!("cert/{id}")),
        "certificateId": id.to_string(),
    }))
}

fn describe_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = parse_id(input.required("certificateId")?)?;
    let registry = ctx.read();
    let cert = registry.certificate(&id).ok_or_else(|| not_found(&id))?;
    let pem = registry.certificate_pem(&id)?;
    let (not_before, not_after) = registry.certificate_validity(&id)?;
    let mut d = Map::new();
    d.insert(
        "certificateArn".into(),
        ctx.arn(&format!("cert/{id}")).into(),
    );
    d.insert("certificateId".into(), id.to_string().into());
    if let Some(ca) = cert.ca {
        d.insert("caCertificateId".into(), ca.to_string().into());
    }
    d.insert("status".into(), cert.status.as_str().into());
    d.insert("certificatePem".into(), pem.into());
    d.insert("ownedBy".into(), account(ctx).into());
    if cert.created_at > 0 {
        d.insert("creationDate".into(), cert.created_at.into());
        d.insert("lastModifiedDate".into(), cert.modified_at.into());
    }
    d.insert(
        "validity".into(),
        json!({"notBefore": not_before, "notAfter": not_after}),
    );
    d.insert("certificateMode".into(), "DEFAULT".into());
    Ok(json!({ "certificateDescription": d }))
}

/// One page of certificates (`ca`: only those it signed), newest first unless
/// `ascendingOrder`.
fn list<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
    ca: Option<CertificateId>,
) -> ApiResult<Value> {
    let registry = ctx.read();
    let items: Vec<(String, Value)> = registry
        .certificates()
        .filter(|(_, c)| ca.is_none() || c.ca == ca)
        .map(|(id, c)| {
            let mut item = json!({
                "certificateArn": ctx.arn(&format!("cert/{id}")),
                "certificateId": id.to_string(),
                "status": c.status.as_str(),
                "certificateMode": "DEFAULT",
            });
            if c.created_at > 0
                && let Some(o) = item.as_object_mut()
            {
                o.insert("creationDate".into(), c.created_at.into());
            }
            (format!("{:020}-{id}", c.created_at.max(0)), item)
        })
        .collect();
    let descending = !input.bool("ascendingOrder").unwrap_or(false);
    marker_list(ctx, input, "certificates", items, descending)
}

fn list_certificates<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    list(ctx, input, None)
}

fn list_certificates_by_ca<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let ca = parse_id(input.required("caCertificateId")?)?;
    if ctx.read().ca_certificate(&ca).is_none() {
        return Err(ApiError::not_found(format!(
            "The CA certificate {ca} does not exist"
        )));
    }
    list(ctx, input, Some(ca))
}

fn update_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = parse_id(input.required("certificateId")?)?;
    let text = input.required("newStatus")?;
    let status = text
        .parse::<CertificateStatus>()
        .map_err(|_| ApiError::invalid_request(format!("{text:?} is not a certificate status")))?;
    let mut registry = ctx.write();
    if registry.certificate(&id).is_none() {
        return Err(not_found(&id));
    }
    registry.update_certificate(&id, status, ctx.now)?;
    Ok(json!({}))
}

fn delete_certificate<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = parse_id(input.required("certificateId")?)?;
    let force = input.bool("forceDelete").unwrap_or(false);
    let mut registry = ctx.write();
    let cert = registry.certificate(&id).ok_or_else(|| not_found(&id))?;
    if !cert.status.deletable() {
        return Err(ApiError::certificate_state(format!(
            "Certificate must be deactivated (not {}) before deletion.",
            cert.status
        )));
    }
    if !cert.things.is_empty() {
        return Err(ApiError::delete_conflict(format!(
            "Things must be detached before deletion (arn: {})",
            ctx.arn(&format!("cert/{id}"))
        )));
    }
    if !force && !cert.policies.is_empty() {
        return Err(ApiError::delete_conflict(format!(
            "Certificate policies must be detached before deletion (arn: {}); or delete with \
             forceDelete",
            ctx.arn(&format!("cert/{id}"))
        )));
    }
    if force {
        registry.force_delete_certificate(&id)?;
    } else {
        registry.delete_certificate(&id)?;
    }
    Ok(json!({}))
}
