//! AWS IoT naming rules for things, thing types, thing groups, policies and attributes.

use crate::error::{Error, Result};

/// Longest thing, thing type, thing group or policy name (AWS: 128).
pub const MAX_NAME_LEN: usize = 128;
/// Longest attribute name (AWS: 128).
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 128;
/// Longest attribute value (AWS: 800).
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 800;

/// Thing, thing type and thing group names: 1-128 characters of `[a-zA-Z0-9:_-]`.
pub fn check_thing_name(kind: &'static str, name: &str) -> Result<()> {
    check(
        kind,
        name,
        1,
        MAX_NAME_LEN,
        "1-128 characters of [a-zA-Z0-9:_-]",
        |c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'_' | b'-'),
    )
}

/// Policy names: 1-128 characters of `[\w+=,.@-]`.
pub fn check_policy_name(name: &str) -> Result<()> {
    check(
        "policy",
        name,
        1,
        MAX_NAME_LEN,
        "1-128 characters of [A-Za-z0-9_+=,.@-]",
        |c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-')
        },
    )
}

/// Attribute names: 1-128 characters of `[a-zA-Z0-9_.,@/:#-]`.
pub fn check_attribute_name(name: &str) -> Result<()> {
    check(
        "attribute",
        name,
        1,
        MAX_ATTRIBUTE_NAME_LEN,
        "1-128 characters of [a-zA-Z0-9_.,@/:#-]",
        attribute_char,
    )
}

/// Attribute values: 0-800 characters of `[a-zA-Z0-9_.,@/:#-]`.
pub fn check_attribute_value(name: &str) -> Result<()> {
    check(
        "attribute value",
        name,
        0,
        MAX_ATTRIBUTE_VALUE_LEN,
        "0-800 characters of [a-zA-Z0-9_.,@/:#-]",
        attribute_char,
    )
}

fn attribute_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b',' | b'@' | b'/' | b':' | b'#' | b'-')
}

fn check(
    kind: &'static str,
    name: &str,
    min: usize,
    max: usize,
    rule: &'static str,
    allowed: impl Fn(u8) -> bool,
) -> Result<()> {
    if name.len() < min || name.len() > max || !name.bytes().all(allowed) {
        return Err(Error::InvalidName {
            kind,
            name: name.chars().take(MAX_NAME_LEN + 8).collect(),
            rule,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_names_follow_the_aws_pattern() {
        assert!(check_thing_name("thing", "sensor-1:a_b").is_ok());
        assert!(check_thing_name("thing", "").is_err());
        assert!(check_thing_name("thing", "with space").is_err());
        assert!(check_thing_name("thing", "slash/no").is_err());
        assert!(check_thing_name("thing", &"a".repeat(128)).is_ok());
        assert!(check_thing_name("thing", &"a".repeat(129)).is_err());
        assert!(check_thing_name("thing", "ü").is_err());
    }

    #[test]
    fn policy_and_attribute_names_follow_the_aws_patterns() {
        assert!(check_policy_name("Dev+Policy=1,x.y@z-w").is_ok());
        assert!(check_policy_name("no:colon").is_err());
        assert!(check_attribute_name("a/b#c").is_ok());
        assert!(check_attribute_value("").is_ok());
        assert!(check_attribute_value(&"v".repeat(801)).is_err());
        assert!(check_attribute_value("no space").is_err());
    }
}
