//! The crate's one error type.

use crate::check::CheckName;

/// Everything that can go wrong in thingkit-audit: reading audit inputs, planning mitigations,
/// parsing security profiles and feeding the detector. Each variant carries what a caller needs
/// to act (the input's identifier, the JSON path of a refused member, the limit exceeded).
///
/// Errors about one input (a CRL, a certificate, a policy) do not stop an audit: [`run_audit`]
/// records them in [`AuditReport::errors`] and goes on with the rest of the snapshot, never
/// trusting the input that failed.
///
/// [`run_audit`]: crate::run_audit
/// [`AuditReport::errors`]: crate::AuditReport::errors
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is outside its allowed range.
    #[error("configuration `{field}` = {value} is invalid: {rule}")]
    InvalidConfig {
        /// The field of [`AuditConfig`](crate::AuditConfig).
        field: &'static str,
        /// The value given.
        value: i64,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A certificate in the snapshot is not a parseable X.509 certificate.
    #[error("certificate {certificate_id} does not parse: {reason}")]
    Certificate {
        /// The certificate's ID as given in the snapshot.
        certificate_id: String,
        /// What the parser reported.
        reason: String,
    },
    /// A CRL is larger than [`AuditConfig::max_crl_bytes`](crate::AuditConfig::max_crl_bytes).
    #[error("CRL for CA {ca_certificate_id} is {len} bytes, over the {limit}-byte limit")]
    CrlTooLarge {
        /// The CA the CRL is said to come from.
        ca_certificate_id: String,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A CRL names a CA that is not in the snapshot (so its signature cannot be checked).
    #[error("CRL for CA {ca_certificate_id}: no such CA certificate in the snapshot")]
    CrlUnknownIssuer {
        /// The CA the CRL is said to come from.
        ca_certificate_id: String,
    },
    /// A CRL is not a DER `CertificateList` (RFC 5280 §5.1), or has trailing bytes.
    #[error("CRL for CA {ca_certificate_id} does not parse: {reason}")]
    CrlParse {
        /// The CA the CRL is said to come from.
        ca_certificate_id: String,
        /// What the parser reported.
        reason: String,
    },
    /// A CRL's signature does not verify with the issuing CA's public key (RFC 5280 §6.3.3
    /// (f)); its contents are not used.
    #[error("CRL for CA {ca_certificate_id} is not signed by that CA's key: {reason}")]
    CrlSignature {
        /// The CA the CRL is said to come from.
        ca_certificate_id: String,
        /// Why verification failed.
        reason: String,
    },
    /// A CRL's issuer name is not the CA's subject name (RFC 5280 §6.3.3 (b)).
    #[error("CRL for CA {ca_certificate_id} names a different issuer than that CA's subject")]
    CrlIssuerMismatch {
        /// The CA the CRL is said to come from.
        ca_certificate_id: String,
    },
    /// The weak-key list is larger than its byte limit.
    #[error("weak-key list is {len} bytes, over the {limit}-byte limit")]
    WeakKeyListTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The weak-key list holds more entries than its limit.
    #[error("weak-key list has more than {limit} entries")]
    WeakKeyListTooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// A line of the weak-key list is neither a comment, blank, nor 20 hex digits.
    #[error("weak-key list line {line}: {reason}")]
    WeakKeyListLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A policy's default version is not a valid AWS IoT policy document.
    #[error("policy {policy_name} (version {policy_version_id}) does not parse: {reason}")]
    Policy {
        /// The policy name.
        policy_name: String,
        /// Its default version.
        policy_version_id: String,
        /// What the policy parser reported.
        reason: String,
    },
    /// A mitigation action is not one AWS allows for the finding's check.
    #[error("mitigation action {action} is not allowed for {check_name}")]
    MitigationNotAllowed {
        /// The finding's check.
        check_name: CheckName,
        /// The action's AWS name (e.g. `UPDATE_CA_CERTIFICATE`).
        action: &'static str,
    },
    /// A finding lacks the resource identifier the mitigation action needs.
    #[error("finding {finding_id} has no {field} for mitigation action {action}")]
    MitigationMissingResource {
        /// The finding.
        finding_id: String,
        /// The action's AWS name.
        action: &'static str,
        /// The missing `resourceIdentifier` field.
        field: &'static str,
    },
    /// A document was larger than the configured limit.
    #[error("{what} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`security profile`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The input was not valid JSON for the expected shape (wrong type, unknown member,
    /// duplicate member, syntax error).
    #[error("malformed {what} at line {line} column {column}: {message}")]
    Json {
        /// What was being parsed (`security profile`).
        what: &'static str,
        /// 1-based line inside the parsed text.
        line: usize,
        /// 1-based column inside that line.
        column: usize,
        /// serde_json's description of the problem.
        message: String,
    },
    /// A required member is absent.
    #[error("`{path}` is required")]
    Missing {
        /// JSON path of the missing member, e.g. `behaviors[0].criteria`.
        path: String,
    },
    /// A member is present but its value is not acceptable.
    #[error("invalid `{path}`: {reason}")]
    Invalid {
        /// JSON path of the member, e.g. `behaviors[1].name`.
        path: String,
        /// Why the value was rejected (the constraint from botocore's model or the AWS guide).
        reason: String,
    },
    /// A member is valid AWS input that thingkit does not implement (device-side and custom
    /// metrics, ML Detect, metric dimensions, port and string sets).
    #[error("`{path}` is not supported: {what}")]
    Unsupported {
        /// JSON path of the member, e.g. `behaviors[0].metricDimension`.
        path: String,
        /// What is not supported, and what is.
        what: String,
    },
    /// A list held more entries than the configured limit.
    #[error("`{path}` has {len} entries, over the limit of {limit}")]
    TooMany {
        /// JSON path of the list, e.g. `behaviors`.
        path: String,
        /// Its length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A detector already holds a security profile of this name.
    #[error("security profile `{name}` is already attached to this detector")]
    DuplicateProfile {
        /// The profile's name.
        name: String,
    },
    /// A batch of windows was refused: windows of one batch must share `window_end`, each
    /// thing may appear once, and a thing's windows must arrive in increasing `window_end`.
    #[error("window of thing `{thing}` ending at {window_end} refused: {reason}")]
    Window {
        /// The thing whose window was refused.
        thing: String,
        /// The window's end (unix seconds).
        window_end: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The detector already tracks its configured maximum number of devices.
    #[error("the detector tracks {limit} devices, its configured maximum")]
    TooManyDevices {
        /// `DetectorConfig::max_devices`.
        limit: usize,
    },
    /// A detector configuration value is unusable.
    #[error("invalid detector configuration `{field}`: {reason}")]
    Config {
        /// The `DetectorConfig` field.
        field: &'static str,
        /// Why it is unusable.
        reason: &'static str,
    },
}
