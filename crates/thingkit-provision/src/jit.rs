//! Just-in-time registration (JITR) and provisioning (JITP); documented on [`JitOutcome`].

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certificate::{CertificateId, CertificateStatus};
use crate::error::{AuthFailure, Error, Result};
use crate::fleet::{FleetProvisioning, Reply, apply};
use crate::registry::Registry;
use crate::store::RegistryStore;
use crate::template::{CERTIFICATE_ID, CERTIFICATE_PEM, ProvisioningTemplate};

/// The topic prefix of JITR events.
pub const REGISTERED_EVENT_PREFIX: &str = "$aws/events/certificates/registered/";

/// What happened to an unknown certificate on its first connection.
///
/// Just-in-time registration (JITR) and provisioning (JITP).
///
/// A device whose certificate was signed by a registered CA with auto-registration enabled
/// connects for the first time with a certificate the registry does not know. The broker calls
/// [`FleetProvisioning::on_unknown_certificate`] with the TLS peer chain:
///
/// - **JITP**: if the CA has a registration template
///   ([`FleetProvisioning::set_registration_template`]), the certificate is registered and the
///   template applied in one atomic batch (thing, policies, status from the template, usually
///   ACTIVE). Pseudo-parameters from the certificate are available to the template:
///   `AWS::IoT::Certificate::Id`, `::CertificatePem`, `::CommonName`, `::Country`,
///   `::Organization`, `::OrganizationalUnit`, `::StateName`, `::Locality`,
///   `::DistinguishedNameQualifier` and `::SerialNumber` (the subject's serialNumber attribute).
/// - **JITR**: otherwise the certificate is registered PENDING_ACTIVATION and the outcome
///   carries the AWS registration event (`$aws/events/certificates/registered/<caCertificateId>`)
///   for the operator, who activates it. The connection must be refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JitOutcome {
    /// JITR: registered PENDING_ACTIVATION. Publish `event` to the operator and refuse the
    /// connection.
    Registered {
        /// The new certificate.
        certificate_id: CertificateId,
        /// The AWS `certificates/registered` event (JSON).
        event: Reply,
    },
    /// JITP: provisioned by the CA's registration template.
    Provisioned {
        /// The new certificate.
        certificate_id: CertificateId,
        /// Its status after provisioning (the connection may proceed if ACTIVE).
        status: CertificateStatus,
        /// The thing created, if the template has one.
        thing_name: Option<String>,
    },
}

fn subject_parameters(der: &[u8]) -> Result<BTreeMap<String, String>> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Malformed {
        what: "certificate",
        detail: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    let subject = cert.subject();
    let fields: [(&str, Option<String>); 8] = [
        ("CommonName", first(subject.iter_common_name())),
        ("Country", first(subject.iter_country())),
        ("Organization", first(subject.iter_organization())),
        (
            "OrganizationalUnit",
            first(subject.iter_organizational_unit()),
        ),
        ("StateName", first(subject.iter_state_or_province())),
        ("Locality", first(subject.iter_locality())),
        (
            "DistinguishedNameQualifier",
            first(subject.iter_by_oid(&x509_parser::oid_registry::OID_X509_DN_QUALIFIER)),
        ),
        (
            "SerialNumber",
            first(subject.iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)),
        ),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            out.insert(format!("AWS::IoT::Certificate::{name}"), v);
        }
    }
    Ok(out)
}

fn first<'a, 'b: 'a>(
    mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Option<String> {
    it.find_map(|a| a.as_str().ok().map(str::to_owned))
}

impl FleetProvisioning {
    /// Sets the JITP registration template of a registered CA: unknown certificates it signed
    /// are provisioned by this template on their first connection. The template must activate
    /// the presented certificate (`CertificateId`: `{"Ref": "AWS::IoT::Certificate::Id"}`).
    pub fn set_registration_template(
        &mut self,
        ca_certificate_id: CertificateId,
        template: ProvisioningTemplate,
    ) -> Result<()> {
        if !template.uses_certificate_id() {
            return Err(Error::Template {
                path: "Resources".into(),
                line: 0,
                column: 0,
                reason: "a JITP template needs an AWS::IoT::Certificate with CertificateId".into(),
            });
        }
        self.registration_templates
            .insert(ca_certificate_id, template);
        Ok(())
    }

    /// JITR / JITP for the first connection of an unknown certificate (`peer_certificates` is
    /// the TLS peer chain, leaf first). Fails if the certificate is already registered, or its
    /// CA is not registered, not ACTIVE or has auto-registration disabled; on a JITP template
    /// error nothing is registered.
    pub fn on_unknown_certificate<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        peer_certificates: &[impl AsRef<[u8]>],
        now: SystemTime,
    ) -> Result<JitOutcome> {
        let ca = std::sync::Arc::clone(self.certificate_authority());
        let templates = &self.registration_templates;
        registry.batch(|r| {
            let id = r.auto_register(peer_certificates, now)?;
            let ca_id = r
                .certificate(&id)
                .and_then(|c| c.ca)
                .ok_or(Error::Unauthenticated(AuthFailure::UnknownIssuer { id }))?;
            let Some(template) = templates.get(&ca_id) else {
                let secs = now
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let body = serde_json::json!({
                    "certificateId": id.to_string(),
                    "caCertificateId": ca_id.to_string(),
                    "timestamp": secs,
                    "certificateStatus": "PENDING_ACTIVATION",
                    "certificateRegistrationTimestamp": secs,
                });
                return Ok(JitOutcome::Registered {
                    certificate_id: id,
                    event: Reply {
                        topic: format!("{REGISTERED_EVENT_PREFIX}{ca_id}"),
                        payload: body.to_string().into_bytes(),
                    },
                });
            };
            let der = peer_certificates
                .first()
                .map(|c| c.as_ref())
                .unwrap_or_default();
            let mut pseudo = subject_parameters(der)?;
            pseudo.insert(CERTIFICATE_ID.to_owned(), id.to_string());
            pseudo.insert(
                CERTIFICATE_PEM.to_owned(),
                crate::pem::encode("CERTIFICATE", der),
            );
            let rendered = template.render(&BTreeMap::new(), &pseudo)?;
            let done = apply(&ca, r, &rendered, Some(id), now)?;
            let status = r
                .certificate(&id)
                .map(|c| c.status)
                .unwrap_or(CertificateStatus::PendingActivation);
            Ok(JitOutcome::Provisioned {
                certificate_id: id,
                status,
                thing_name: done.thing_name,
            })
        })
    }
}
