//! AWS Signature Version 4 verification (to be written).

use std::time::{Duration, SystemTime};

use crate::error::{ApiError, ApiResult};

/// The parts of a request the signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Raw path.
    pub path: &'a str,
    /// Raw query.
    pub query: &'a str,
    /// Headers, lower-case names.
    pub headers: &'a [(String, String)],
    /// Body.
    pub body: &'a [u8],
}

/// A verified signature: who signed, for which region and service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The access key ID.
    pub access_key_id: String,
    /// The credential scope's region.
    pub region: String,
    /// The credential scope's service.
    pub service: String,
}

/// Verifies `request`'s signature.
pub fn verify(
    _request: &SignedRequest<'_>,
    _secret: impl Fn(&str) -> Option<String>,
    _now: SystemTime,
    _max_skew: Duration,
) -> ApiResult<Verified> {
    Err(ApiError::missing_authentication(
        "Missing Authentication Token",
    ))
}
