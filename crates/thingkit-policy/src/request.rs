//! Requests: an action on a resource ARN, built from broker events.

use std::collections::BTreeMap;

use crate::action::Action;
use crate::arn::ArnPrefix;
use crate::context::{Certificate, Context, Thing};
use crate::date::parse_timestamp;
use crate::error::Error;

/// One authorization question: may the client perform `action` on `resource`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    action: Action,
    also_requires: Option<Action>,
    resource: String,
}

impl Request {
    /// A request for `action` on the resource ARN `resource` (`*` for actions checked against
    /// resource `*`, such as `iot:ListRetainedMessages`).
    pub fn new(action: Action, resource: impl Into<String>) -> Request {
        Request {
            action,
            also_requires: None,
            resource: resource.into(),
        }
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// A second action that must also be allowed on the same resource (`iot:RetainPublish` for a
    /// retained publish).
    pub fn also_requires(&self) -> Option<Action> {
        self.also_requires
    }

    /// The resource ARN.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

impl ArnPrefix {
    /// `iot:Connect` on `client/<client_id>`.
    pub fn connect(&self, client_id: &str) -> Request {
        Request::new(Action::Connect, self.arn(&format!("client/{client_id}")))
    }

    /// `iot:Publish` on `topic/<topic>`; with `retain`, `iot:RetainPublish` is required too.
    pub fn publish(&self, topic: &str, retain: bool) -> Request {
        Request {
            action: Action::Publish,
            also_requires: retain.then_some(Action::RetainPublish),
            resource: self.arn(&format!("topic/{topic}")),
        }
    }

    /// `iot:Subscribe` on `topicfilter/<filter>` (one request per filter of a SUBSCRIBE).
    pub fn subscribe(&self, filter: &str) -> Request {
        Request::new(
            Action::Subscribe,
            self.arn(&format!("topicfilter/{filter}")),
        )
    }

    /// `iot:Receive` on `topic/<topic>` (checked for each message delivered).
    pub fn receive(&self, topic: &str) -> Request {
        Request::new(Action::Receive, self.arn(&format!("topic/{topic}")))
    }

    /// `iot:GetRetainedMessage` on `topic/<topic>`.
    pub fn get_retained_message(&self, topic: &str) -> Request {
        Request::new(
            Action::GetRetainedMessage,
            self.arn(&format!("topic/{topic}")),
        )
    }

    /// `iot:ListRetainedMessages` on `*`.
    pub fn list_retained_messages(&self) -> Request {
        Request::new(Action::ListRetainedMessages, "*")
    }

    /// A shadow or jobs action on `thing/<thing_name>` (e.g. [`Action::UpdateThingShadow`]).
    pub fn thing(&self, action: Action, thing_name: &str) -> Request {
        Request::new(action, self.arn(&format!("thing/{thing_name}")))
    }

    /// `iot:AssumeRoleWithCertificate` on `rolealias/<alias>`.
    pub fn assume_role(&self, role_alias: &str) -> Request {
        Request::new(
            Action::AssumeRoleWithCertificate,
            self.arn(&format!("rolealias/{role_alias}")),
        )
    }
}

/// The JSON form of a request, as `thingkit policy test --request` reads it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    action: String,
    resource: String,
    #[serde(default)]
    context: ContextJson,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContextJson {
    client_id: Option<String>,
    source_ip: Option<String>,
    domain_name: Option<String>,
    thing: Option<ThingJson>,
    certificate: Option<CertificateJson>,
    #[serde(default)]
    connect_attributes: Vec<String>,
    last_will_topic: Option<String>,
    current_time: Option<TimeJson>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ThingJson {
    name: String,
    #[serde(rename = "type")]
    thing_type: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    attached: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertificateJson {
    id: Option<String>,
    serial_number: Option<String>,
    #[serde(default)]
    subject: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    issuer: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    subject_alternative_name: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    issuer_alternative_name: BTreeMap<String, Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TimeJson {
    Epoch(i64),
    Text(String),
}

/// Maximum size of a request document in bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

impl Request {
    /// Reads a request and its context from JSON:
    ///
    /// ```json
    /// {"action": "iot:Publish", "resource": "arn:aws:iot:us-east-1:123456789012:topic/a/b",
    ///  "context": {"clientId": "c1", "sourceIp": "10.0.0.1", "domainName": "d.example",
    ///   "thing": {"name": "t1", "type": "sensor", "attributes": {"floor": "3"}, "attached": true},
    ///   "certificate": {"id": "abc", "serialNumber": "01", "subject": {"CommonName": ["c1"]},
    ///    "issuer": {}, "subjectAlternativeName": {"DNSName": ["c1.example"]},
    ///    "issuerAlternativeName": {}},
    ///   "connectAttributes": ["PersistentConnect"], "lastWillTopic": "lwt/c1",
    ///   "currentTime": "2026-01-01T00:00:00Z"}}
    /// ```
    ///
    /// Every context field is optional; unknown fields and duplicate keys are errors; the action
    /// name is case-insensitive; `currentTime` is ISO 8601 or epoch seconds.
    pub fn from_json(text: &str) -> Result<(Request, Context), Error> {
        let invalid = |path: &str, message: String| Error::InvalidRequest {
            path: path.to_owned(),
            message,
        };
        if text.len() > MAX_REQUEST_BYTES {
            return Err(invalid(
                "$",
                format!("request is larger than {MAX_REQUEST_BYTES} bytes"),
            ));
        }
        let r: RequestJson = serde_json::from_str(text).map_err(|e| {
            invalid(
                "$",
                format!("{e} (line {}, column {})", e.line(), e.column()),
            )
        })?;
        let action = Action::from_name(&r.action).ok_or_else(|| {
            invalid(
                "$.action",
                format!("`{}` is not an AWS IoT data-plane action", r.action),
            )
        })?;
        let c = r.context;
        let current_time = match c.current_time {
            None => None,
            Some(TimeJson::Epoch(t)) => Some(t),
            Some(TimeJson::Text(t)) => Some(parse_timestamp(&t).ok_or_else(|| {
                invalid(
                    "$.context.currentTime",
                    format!("`{t}` is not an ISO 8601 date-time or epoch seconds"),
                )
            })?),
        };
        let ctx = Context {
            client_id: c.client_id,
            source_ip: c.source_ip,
            domain_name: c.domain_name,
            thing: c.thing.map(|t| Thing {
                name: t.name,
                thing_type: t.thing_type,
                attributes: t.attributes,
                attached: t.attached,
            }),
            certificate: c.certificate.map(|x| Certificate {
                id: x.id,
                serial_number: x.serial_number,
                subject: x.subject,
                issuer: x.issuer,
                subject_alternative_name: x.subject_alternative_name,
                issuer_alternative_name: x.issuer_alternative_name,
            }),
            connect_attributes: c.connect_attributes,
            last_will_topic: c.last_will_topic,
            current_time,
        };
        Ok((Request::new(action, r.resource), ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_request_document() {
        let (req, ctx) = Request::from_json(
            r#"{"action": "IOT:publish", "resource": "arn:aws:iot:r:1:topic/a",
                "context": {"clientId": "c", "thing": {"name": "t", "attached": true},
                "certificate": {"subject": {"CommonName": ["c"]}},
                "connectAttributes": ["LastWill"], "currentTime": "1970-01-02"}}"#,
        )
        .unwrap();
        assert_eq!(req.action(), Action::Publish);
        assert_eq!(ctx.client_id.as_deref(), Some("c"));
        assert!(ctx.thing.as_ref().unwrap().attached);
        assert_eq!(ctx.current_time, Some(86_400));
    }

    #[test]
    fn rejects_unknown_fields_duplicates_and_actions() {
        for bad in [
            r#"{"action": "iot:Publish", "resource": "x", "extra": 1}"#,
            r#"{"action": "iot:Publish", "action": "iot:Publish", "resource": "x"}"#,
            r#"{"action": "iot:Fly", "resource": "x"}"#,
            r#"{"action": "iot:Publish", "resource": "x", "context": {"clientid": "c"}}"#,
            r#"{"action": "iot:Publish", "resource": "x", "context": {"currentTime": "soon"}}"#,
        ] {
            assert!(Request::from_json(bad).is_err(), "{bad}");
        }
    }
}
