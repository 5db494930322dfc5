//! IAM-style identity policies: may this access key perform `iot:<Operation>` on this resource?
//!
//! A key without a policy may call every operation. A key with one is decided by thingkit-policy
//! (the engine that decides device policies, which knows the control-plane actions too), with
//! IAM's rules: default deny, an explicit Deny wins over every Allow. An action name the engine
//! does not know is denied, as is any call by a key whose stored policy does not compile.

use thingkit_policy::{Action, ArnPrefix, Context, Decision, Request};

use crate::error::{ApiError, ApiResult};
use crate::keys::{KeyPolicy, KeyStore};

/// Authorizes `action` (`iot:CreateThing`) on `resource` (a full ARN, or `*`) for the key
/// `access_key_id`, whose signature was already verified. Refusals are `AccessDeniedException`
/// worded as IAM words them.
pub fn authorize(
    keys: &KeyStore,
    access_key_id: &str,
    action: &str,
    resource: &str,
    arn: &ArnPrefix,
) -> ApiResult<()> {
    let denied = |explicit: bool| {
        let account = arn.as_str().split(':').nth(4).unwrap_or_default();
        let partition = arn.as_str().split(':').nth(1).unwrap_or("aws");
        ApiError::access_denied(format!(
            "User: arn:{partition}:iam::{account}:user/{access_key_id} is not authorized to perform: {action} on resource: {resource}{}",
            if explicit {
                " with an explicit deny"
            } else {
                ""
            }
        ))
    };
    let set = match keys.policy(access_key_id) {
        Some(KeyPolicy::AllowAll) => return Ok(()),
        Some(KeyPolicy::Compiled(set)) => set,
        Some(KeyPolicy::Invalid(_)) | None => return Err(denied(false)),
    };
    let Some(action_kind) = Action::from_name(action) else {
        return Err(denied(false));
    };
    match set.decide(&Request::new(action_kind, resource), &Context::default()) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny => Err(denied(true)),
        _ => Err(denied(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AccessKey;

    fn arn() -> ArnPrefix {
        ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix")
    }

    fn store(policy: Option<&str>) -> KeyStore {
        let keys = KeyStore::in_memory();
        keys.insert(AccessKey {
            access_key_id: "AKIATEST".into(),
            secret_access_key: "secret".into(),
            policy: policy.map(str::to_string),
            created_at: 0,
        })
        .expect("inserted");
        keys
    }

    fn thing(name: &str) -> String {
        format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
    }

    #[test]
    fn key_without_policy_may_call_everything() {
        let keys = store(None);
        assert!(authorize(&keys, "AKIATEST", "iot:DeleteThing", &thing("x"), &arn()).is_ok());
        assert!(authorize(&keys, "AKIATEST", "iot:ListThings", "*", &arn()).is_ok());
    }

    #[test]
    fn unknown_key_is_denied() {
        let keys = store(None);
        assert!(authorize(&keys, "AKIAOTHER", "iot:ListThings", "*", &arn()).is_err());
    }

    #[test]
    fn key_allowed_describe_on_sensors_may_do_only_that() {
        let keys = store(Some(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "iot:DescribeThing", "Resource": "arn:aws:iot:us-east-1:123456789012:thing/sensor-*"}]}"#,
        ));
        let a = arn();
        assert!(
            authorize(
                &keys,
                "AKIATEST",
                "iot:DescribeThing",
                &thing("sensor-1"),
                &a
            )
            .is_ok()
        );
        let e = authorize(&keys, "AKIATEST", "iot:CreateThing", &thing("sensor-1"), &a)
            .expect_err("create denied");
        assert_eq!(e.code, "AccessDeniedException");
        assert_eq!(e.status, 403);
        assert_eq!(
            e.message,
            "User: arn:aws:iam::123456789012:user/AKIATEST is not authorized to perform: iot:CreateThing on resource: arn:aws:iot:us-east-1:123456789012:thing/sensor-1"
        );
        assert!(authorize(&keys, "AKIATEST", "iot:DescribeThing", &thing("other"), &a).is_err());
        assert!(
            authorize(
                &keys,
                "AKIATEST",
                "iot:NoSuchOperation",
                &thing("sensor-1"),
                &a
            )
            .is_err()
        );
    }

    #[test]
    fn explicit_deny_wins_and_says_so() {
        let keys = store(Some(
            r#"{"Version": "2012-10-17", "Statement": [
              {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
              {"Effect": "Deny", "Action": "iot:Delete*", "Resource": "*"}]}"#,
        ));
        let a = arn();
        assert!(authorize(&keys, "AKIATEST", "iot:CreateThing", &thing("t"), &a).is_ok());
        assert!(authorize(&keys, "AKIATEST", "iot:ListThings", "*", &a).is_ok());
        let e = authorize(&keys, "AKIATEST", "iot:DeleteThing", &thing("t"), &a)
            .expect_err("delete denied");
        assert!(
            e.message.ends_with(" with an explicit deny"),
            "{}",
            e.message
        );
        assert!(authorize(&keys, "AKIATEST", "iot:DeletePolicy", "*", &a).is_err());
    }

    #[test]
    fn list_operations_are_decided_on_resource_star() {
        let keys = store(Some(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["iot:List*", "iot:Describe*"], "Resource": "*"}]}"#,
        ));
        let a = arn();
        assert!(authorize(&keys, "AKIATEST", "iot:ListThings", "*", &a).is_ok());
        assert!(authorize(&keys, "AKIATEST", "iot:DescribeThing", &thing("t"), &a).is_ok());
        assert!(authorize(&keys, "AKIATEST", "iot:UpdateThing", &thing("t"), &a).is_err());
    }
}
