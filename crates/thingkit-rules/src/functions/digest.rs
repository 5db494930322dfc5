//! The hash functions `md2`, `md5`, `sha1`, `sha224`, `sha256`, `sha384` and `sha512`: the
//! lowercase hex digest of the argument's String form (its UTF-8 bytes), or of raw bytes.

use sha2::Digest;

use super::conversion::to_string;
use crate::value::Value;

fn hex<D: Digest>(bytes: &[u8]) -> String {
    D::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The digest named `name` of `value`'s String form.
pub(super) fn hex_digest(name: &str, value: &Value) -> Option<Value> {
    // Raw bytes (`*`: the message as published, JSON or not) are hashed as they are.
    let text = match value {
        Value::Binary(bytes) => bytes.to_vec(),
        other => to_string(other)?.into_bytes(),
    };
    let bytes = text.as_slice();
    let digest = match name {
        "md2" => hex::<md2::Md2>(bytes),
        "md5" => hex::<md5::Md5>(bytes),
        "sha1" => hex::<sha1::Sha1>(bytes),
        "sha224" => hex::<sha2::Sha224>(bytes),
        "sha256" => hex::<sha2::Sha256>(bytes),
        "sha384" => hex::<sha2::Sha384>(bytes),
        "sha512" => hex::<sha2::Sha512>(bytes),
        _ => return None,
    };
    Some(Value::String(digest))
}
