//! What an audit looks at: a point-in-time copy of the registry, the broker's connection log,
//! the CAs' revocation lists and the account settings. Plain owned structs, so an audit needs no
//! registry, store or network to run.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::key::WeakKeyList;

/// Everything one audit run reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSnapshot {
    /// The 12-digit account ID (`resourceIdentifier.account`, and the account part of the ARNs
    /// the policy checks probe).
    pub account: String,
    /// The region part of the ARNs the policy checks probe (e.g. `us-east-1`): a policy's
    /// resources must name it to grant anything, as on AWS.
    pub region: String,
    /// Registered device certificates, every status.
    pub device_certificates: Vec<DeviceCertificate>,
    /// Registered CA certificates, every status.
    pub ca_certificates: Vec<CaCertificate>,
    /// Every policy with its default version's document.
    pub policies: Vec<Policy>,
    /// The broker's connection log (any order); records outside the check window are ignored.
    pub connections: Vec<ConnectionRecord>,
    /// Whether the platform's IoT logging is enabled (AWS: V1 or V2 logging, level not
    /// `DISABLED`).
    pub logging_enabled: bool,
    /// Certificate revocation lists, each tagged with the registered CA said to issue it. Each
    /// is verified against that CA's key before its contents are used.
    pub crls: Vec<Crl>,
    /// Known-weak RSA keys from Debian's OpenSSL RNG bug (CVE-2008-0166), see [`WeakKeyList`].
    pub weak_keys: WeakKeyList,
}

/// The status of a device or CA certificate, with AWS's names (`CertificateStatus`,
/// `CACertificateStatus` in the botocore model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// `ACTIVE`: may connect (device) or sign certificates that may connect (CA).
    Active,
    /// `INACTIVE`: disabled by the operator.
    Inactive,
    /// `REVOKED`: revoked in the registry (terminal).
    Revoked,
    /// `PENDING_TRANSFER`: being transferred to another account; still usable.
    PendingTransfer,
    /// `REGISTER_INACTIVE`: registered inactive.
    RegisterInactive,
    /// `PENDING_ACTIVATION`: auto-registered, waiting for the operator.
    PendingActivation,
}

impl CertificateStatus {
    /// AWS's name, e.g. `PENDING_TRANSFER`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::PendingTransfer => "PENDING_TRANSFER",
            CertificateStatus::RegisterInactive => "REGISTER_INACTIVE",
            CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
        }
    }

    /// Whether the certificate checks look at it: the certificate checks "apply to
    /// certificates that are ACTIVE or PENDING_TRANSFER" (Device Defender guide, each
    /// certificate check's *Details*).
    pub fn is_in_scope(self) -> bool {
        matches!(
            self,
            CertificateStatus::Active | CertificateStatus::PendingTransfer
        )
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The AWS IoT certificate ID of a DER certificate: lowercase hex SHA-256 of the DER (the same
/// ID `thingkit_provision::CertificateId` computes).
pub fn certificate_id(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    hex(digest.as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A registered device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    /// The certificate ID (hex SHA-256 of `der`, see [`certificate_id`]).
    pub id: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its registry status.
    pub status: CertificateStatus,
    /// The ID of the registered CA that issued it, if registered with one. When `None` the
    /// issuing CA is looked up by issuer name among [`AuditSnapshot::ca_certificates`].
    pub ca_certificate_id: Option<String>,
    /// When it was registered, Unix seconds (AWS's `creationDate`): the age check measures
    /// "active for" from here.
    pub registered_at: i64,
    /// The things it is attached to (targets of `ADD_THINGS_TO_THING_GROUP`).
    pub things: Vec<String>,
}

impl DeviceCertificate {
    /// An ACTIVE certificate registered at `registered_at`, with its ID computed from `der`,
    /// no CA recorded and no things attached.
    pub fn new(der: Vec<u8>, registered_at: i64) -> DeviceCertificate {
        DeviceCertificate {
            id: certificate_id(&der),
            der,
            status: CertificateStatus::Active,
            ca_certificate_id: None,
            registered_at,
            things: Vec::new(),
        }
    }
}

/// A registered CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    /// The CA certificate ID (hex SHA-256 of `der`).
    pub id: String,
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// Its registry status (`ACTIVE`, `INACTIVE`, or `PENDING_TRANSFER`).
    pub status: CertificateStatus,
    /// When it was registered, Unix seconds.
    pub registered_at: i64,
}

impl CaCertificate {
    /// An ACTIVE CA certificate with its ID computed from `der`.
    pub fn new(der: Vec<u8>, registered_at: i64) -> CaCertificate {
        CaCertificate {
            id: certificate_id(&der),
            der,
            status: CertificateStatus::Active,
            registered_at,
        }
    }
}

/// A policy and its default version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy name.
    pub name: String,
    /// The default version's ID (AWS: `"1"`, `"2"`, ...). The policy checks read only the
    /// default version, the one that is in force.
    pub default_version_id: String,
    /// The default version's JSON document.
    pub document: String,
}

/// One MQTT connection, from the broker's connection log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The MQTT client ID.
    pub client_id: String,
    /// The ID of the certificate the client authenticated with.
    pub certificate_id: String,
    /// Where the client connected from (source IP and port, as text).
    pub source: String,
    /// When the connection was accepted, Unix seconds.
    pub connected_at: i64,
    /// When it ended, Unix seconds; `None` while it is still open.
    pub disconnected_at: Option<i64>,
    /// Why it ended, with AWS's lifecycle-event names (`disconnectReason`, e.g.
    /// `DUPLICATE_CLIENTID`, `CLIENT_INITIATED_DISCONNECT`); `None` when unknown or still open.
    /// Timestamps are whole seconds, so a takeover logs the old connection's end in the same
    /// second as the new one's start; `DUPLICATE_CLIENTID` is what tells it from a reconnect.
    pub disconnect_reason: Option<String>,
}

/// AWS's lifecycle `disconnectReason` for a connection closed because another connected with
/// the same client ID.
pub const DUPLICATE_CLIENT_ID: &str = "DUPLICATE_CLIENTID";

/// A certificate revocation list (RFC 5280 §5) said to be issued by a registered CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// The ID of the registered CA whose key must have signed it.
    pub ca_certificate_id: String,
    /// The CRL, DER.
    pub der: Vec<u8>,
}
