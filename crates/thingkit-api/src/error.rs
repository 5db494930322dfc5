//! Errors as AWS sends them: an error code (the `x-amzn-ErrorType` header, which botocore maps
//! to the exception class), an HTTP status and a JSON body `{"message": ...}`.

use serde_json::{Map, Value};
use thingkit_provision::Error as RegistryError;

/// An error answer of the API, rendered as AWS renders it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct ApiError {
    /// The error code, e.g. `ResourceNotFoundException` (boto3's exception class name).
    pub code: &'static str,
    /// The HTTP status (from the error shape of botocore's model).
    pub status: u16,
    /// The human-readable message (`message` in the body).
    pub message: String,
    /// Further members of the error shape (`resourceId`, `resourceArn`, ...).
    pub extra: Map<String, Value>,
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $fn:ident => $code:literal, $status:literal; )*) => {
        impl ApiError {
            $(
                $(#[$doc])*
                pub fn $fn(message: impl Into<String>) -> ApiError {
                    ApiError::new($code, $status, message)
                }
            )*
        }
    };
}

codes! {
    /// `InvalidRequestException` (400): the request is malformed or breaks a rule.
    invalid_request => "InvalidRequestException", 400;
    /// `ResourceNotFoundException` (404).
    not_found => "ResourceNotFoundException", 404;
    /// `ResourceAlreadyExistsException` (409).
    already_exists => "ResourceAlreadyExistsException", 409;
    /// `DeleteConflictException` (409): the resource is still referenced.
    delete_conflict => "DeleteConflictException", 409;
    /// `InvalidStateTransitionException` (409): a job or job execution cannot change from its
    /// status to the one asked for.
    invalid_state_transition => "InvalidStateTransitionException", 409;
    /// `ConflictException` (409): a resource with this ID exists (`CreateJobTemplate`).
    conflict => "ConflictException", 409;
    /// `VersionConflictException` (409): `expectedVersion` does not match.
    version_conflict => "VersionConflictException", 409;
    /// `VersionsLimitExceededException` (409): a policy already has five versions.
    versions_limit_exceeded => "VersionsLimitExceededException", 409;
    /// `LimitExceededException` (410, as AWS IoT's model says).
    limit_exceeded => "LimitExceededException", 410;
    /// `MalformedPolicyException` (400).
    malformed_policy => "MalformedPolicyException", 400;
    /// `CertificateValidationException` (400).
    certificate_validation => "CertificateValidationException", 400;
    /// `CertificateStateException` (406).
    certificate_state => "CertificateStateException", 406;
    /// `CertificateConflictException` (409).
    certificate_conflict => "CertificateConflictException", 409;
    /// `UnauthorizedException` (401).
    unauthorized => "UnauthorizedException", 401;
    /// `InternalFailureException` (500).
    internal => "InternalFailureException", 500;
    /// `ServiceUnavailableException` (503).
    unavailable => "ServiceUnavailableException", 503;
    /// `AccessDeniedException` (403): the caller's identity policy does not allow the call
    /// (what IAM answers on AWS).
    access_denied => "AccessDeniedException", 403;
    /// `MissingAuthenticationTokenException` (403): no `Authorization` header.
    missing_authentication => "MissingAuthenticationTokenException", 403;
    /// `IncompleteSignatureException` (403): the `Authorization` header is malformed.
    incomplete_signature => "IncompleteSignatureException", 403;
    /// `InvalidSignatureException` (403): the signature does not match, or the date is outside
    /// the allowed skew.
    invalid_signature => "InvalidSignatureException", 403;
    /// `UnrecognizedClientException` (403): the access key is unknown.
    unrecognized_client => "UnrecognizedClientException", 403;
    /// `UnknownOperationException` (404): no operation has this method and path.
    unknown_operation => "UnknownOperationException", 404;
    /// `SerializationException` (400): the body is not the JSON the operation takes.
    serialization => "SerializationException", 400;
    /// `ThrottlingException` (400, as AWS IoT's model says).
    throttling => "ThrottlingException", 400;
    /// `RequestEntityTooLargeException` (413): the body is over the limit.
    too_large => "RequestEntityTooLargeException", 413;
}

impl ApiError {
    /// An error with a code and status.
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds a member to the error body (`resourceId`, `resourceArn`, ...).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body: `{"message": ..., ...extra}`.
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("message".into(), Value::String(self.message.clone()));
        Value::Object(body)
    }
}

impl From<RegistryError> for ApiError {
    /// The AWS error a registry refusal is: not found, already exists, conflicts, limits, bad
    /// input. A store failure is an internal failure (and nothing changed: the registry rolls
    /// back).
    fn from(e: RegistryError) -> ApiError {
        let message = e.to_string();
        match e {
            RegistryError::NotFound { .. } => ApiError::not_found(message),
            RegistryError::AlreadyExists { .. } => ApiError::already_exists(message),
            RegistryError::Conflict { .. } => ApiError::delete_conflict(message),
            RegistryError::LimitExceeded { .. } => ApiError::limit_exceeded(message),
            RegistryError::Policy { .. } => ApiError::malformed_policy(message),
            RegistryError::InvalidTransition { .. } => ApiError::certificate_state(message),
            RegistryError::Pem(_)
            | RegistryError::Malformed { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::UnsupportedKey(_)
            | RegistryError::RsaKeyTooSmall { .. }
            | RegistryError::BadCsrSignature
            | RegistryError::Sha1Refused
            | RegistryError::CurveHashMismatch { .. } => ApiError::certificate_validation(message),
            RegistryError::Store(_) => ApiError::internal(message),
            _ => ApiError::invalid_request(message),
        }
    }
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = std::result::Result<T, ApiError>;
