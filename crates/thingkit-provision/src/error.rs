//! The one error type of this crate.

use crate::certificate::{CertificateId, CertificateStatus};

/// Everything that can go wrong while issuing, registering, storing or authenticating.
///
/// Variants carry what the caller needs to act: the limit that was exceeded, the AWS rule that was
/// broken, the state a certificate was in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than the configured limit.
    #[error("{what} is {actual} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("CSR", "certificate", ...).
        what: &'static str,
        /// Its size in bytes.
        actual: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// PEM input could not be decoded, or had an unexpected label.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// DER input is not a well-formed structure of the expected kind.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The structure ("CSR", "certificate", "private key", ...).
        what: &'static str,
        /// What the parser reported.
        detail: String,
    },
    /// The CSR's signature does not verify with the CSR's own public key (RFC 2986 §3: proof of
    /// possession).
    #[error("the CSR signature does not verify with its public key (RFC 2986 section 3)")]
    BadCsrSignature,
    /// The CSR is signed with SHA-1, which is refused.
    #[error("the CSR is signed with SHA-1, which is refused")]
    Sha1Refused,
    /// The CSR signature's hash does not match the key's curve (P-256 needs SHA-256, P-384 needs
    /// SHA-384), so the certificate would be mislabelled.
    #[error("the CSR signature algorithm {signature} does not match the {key} key")]
    CurveHashMismatch {
        /// The key type found in the CSR.
        key: &'static str,
        /// The signature algorithm the CSR used.
        signature: String,
    },
    /// The key type or signature algorithm is not accepted.
    #[error("unsupported key or algorithm: {0}")]
    UnsupportedKey(String),
    /// An RSA key is shorter than the minimum.
    #[error("RSA key has {bits} bits, fewer than the minimum of {minimum}")]
    RsaKeyTooSmall {
        /// The key's modulus size.
        bits: usize,
        /// The minimum accepted size.
        minimum: usize,
    },
    /// A subject name from the CSR or the caller was refused by the issuance profile.
    #[error("subject name refused: {0}")]
    BadSubject(String),
    /// The issuance profile is inconsistent (e.g. a validity of zero days).
    #[error("bad issuance profile: {0}")]
    BadProfile(String),
    /// The CA material is unusable (not a CA certificate, key does not match, ...).
    #[error("bad CA: {0}")]
    BadCa(String),
    /// Certificate generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generation(String),
    /// A name (thing, type, group, policy) breaks the AWS naming rules.
    #[error("invalid {kind} name {name:?}: {rule}")]
    InvalidName {
        /// The kind of name ("thing", "thing type", ...).
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// The rule it broke.
        rule: &'static str,
    },
    /// An AWS registry limit was exceeded.
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A referenced resource does not exist (AWS `ResourceNotFoundException`).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// The kind of resource.
        kind: &'static str,
        /// Its name or ID.
        id: String,
    },
    /// The resource already exists (AWS `ResourceAlreadyExistsException`).
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// The kind of resource.
        kind: &'static str,
        /// Its name or ID.
        id: String,
    },
    /// The operation conflicts with the resource's state (AWS `InvalidRequestException`,
    /// `DeleteConflictException`, `CertificateStateException`, `ResourceConflictsException`).
    #[error("conflict: {kind} {id}: {reason}")]
    Conflict {
        /// The kind of resource in the way ("thing", "certificate", "policy", "thing group",
        /// "thing type", "CA certificate", "policy version").
        kind: &'static str,
        /// Its name or ID.
        id: String,
        /// What about its state conflicts.
        reason: String,
    },
    /// A certificate status transition that the AWS state machine does not allow.
    #[error("certificate status cannot go from {from} to {to}")]
    InvalidTransition {
        /// The current status.
        from: CertificateStatus,
        /// The requested status.
        to: CertificateStatus,
    },
    /// A policy document was refused by `thingkit-policy`.
    #[error("policy {name:?}: {detail}")]
    Policy {
        /// The policy name.
        name: String,
        /// What the policy validator reported.
        detail: String,
    },
    /// A peer presented no certificate, an unknown one, or one that may not connect.
    #[error("authentication refused: {0}")]
    Unauthenticated(AuthFailure),
    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The registry store failed; the operation was not acknowledged. The store's own error is
    /// the [`source`](std::error::Error::source).
    #[error("store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A provisioning template is invalid, or could not be rendered. `path` locates the problem
    /// in the template JSON (e.g. `Resources.thing.Properties.ThingName.Fn::Join[1]`), `line` and
    /// `column` in the template text.
    #[error("template: {}{path}: {reason}", position(*.line, *.column))]
    Template {
        /// The JSON path of the offending element (`$` for the whole template, `parameters.NAME`
        /// for a request parameter).
        path: String,
        /// The 1-based line of the offending element in the template text; 0 when the problem is
        /// not in the text (a request parameter, a template-wide rule of the caller).
        line: usize,
        /// The 1-based column (in characters) of the offending element; 0 with `line` 0.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A template parameter without a default was not given.
    #[error("missing template parameter {name:?}")]
    MissingParameter {
        /// The parameter name.
        name: String,
    },
    /// A fleet provisioning request payload could not be decoded (JSON or CBOR).
    #[error("invalid payload: {0}")]
    Payload(String),
    /// A certificate ownership token was unknown, expired, already used, or issued to another
    /// claim certificate.
    #[error("certificate ownership token refused: {0}")]
    OwnershipToken(String),
    /// The pre-provisioning hook refused the request, failed, or did not answer in time (the
    /// hook fails closed).
    #[error("pre-provisioning hook refused: {0}")]
    HookRefused(String),
}

/// Why [`Registry::authenticate`](crate::registry::Registry::authenticate) (or JIT
/// registration) refused a peer. Callers branch on it: e.g. an unknown certificate may go to
/// JIT registration, an expired one to a rotation flow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The peer presented no certificate.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate is not registered.
    #[error("unknown certificate {id}")]
    UnknownCertificate {
        /// The certificate's ID.
        id: CertificateId,
    },
    /// The certificate is registered but not ACTIVE.
    #[error("certificate {id} is {status}")]
    CertificateNotActive {
        /// The certificate's ID.
        id: CertificateId,
        /// Its status.
        status: CertificateStatus,
    },
    /// The certificate's validity ended before the `now` given.
    #[error("certificate {id} has expired")]
    CertificateExpired {
        /// The certificate's ID.
        id: CertificateId,
        /// Its notAfter, in Unix seconds.
        not_after: i64,
    },
    /// The certificate's registered CA is INACTIVE.
    #[error("the CA {ca} of certificate {id} is INACTIVE")]
    CaInactive {
        /// The certificate's ID.
        id: CertificateId,
        /// The CA certificate's ID.
        ca: CertificateId,
    },
    /// The certificate's CA is no longer registered.
    #[error("the CA {ca} of certificate {id} is not registered")]
    CaNotRegistered {
        /// The certificate's ID.
        id: CertificateId,
        /// The CA certificate's ID.
        ca: CertificateId,
    },
    /// JIT registration: no registered CA signed the certificate.
    #[error("no registered CA signed certificate {id}")]
    UnknownIssuer {
        /// The certificate's ID.
        id: CertificateId,
    },
    /// JIT registration: the signing CA is INACTIVE or has auto-registration disabled.
    #[error("the CA {ca} of certificate {id} is inactive or has auto-registration disabled")]
    AutoRegistrationDisabled {
        /// The certificate's ID.
        id: CertificateId,
        /// The CA certificate's ID.
        ca: CertificateId,
    },
}

impl Error {
    /// An [`Error::Conflict`].
    pub(crate) fn conflict(
        kind: &'static str,
        id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Conflict {
            kind,
            id: id.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Store`] without an underlying error value (a broken invariant of the
    /// stored data).
    pub(crate) fn store(message: impl Into<String>) -> Self {
        Error::Store(message.into().into())
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Generation(e.to_string())
    }
}

/// `line:column: ` of a template error, or nothing when it has no position.
fn position(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("{line}:{column}: ")
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
