//! Identity policies (to be written).

use thingkit_policy::ArnPrefix;

use crate::error::{ApiError, ApiResult};
use crate::keys::KeyStore;

/// Authorizes `action` on `resource` for the key `access_key_id`.
pub fn authorize(
    _keys: &KeyStore,
    _access_key_id: &str,
    _action: &str,
    _resource: &str,
    _arn: &ArnPrefix,
) -> ApiResult<()> {
    Err(ApiError::access_denied("not yet"))
}
