//! Requests: an action on a resource, built from broker events without allocating.

use std::collections::BTreeMap;
use std::fmt;

use crate::action::{Action, ResourceType};
use crate::arn::{ArnPrefix, Target};
use crate::context::{CertificateContext, Context, ThingContext};
use crate::date::parse_timestamp;
use crate::error::Error;

/// One authorization question: may the client perform `action` on `resource`?
///
/// A request borrows its parts: the [`ArnPrefix`] (partition, region, account), the resource
/// type and the topic, client ID, filter or thing name. Building one with the [`ArnPrefix`]
/// methods and deciding it allocates nothing and parses no ARN; the resource type and name are
/// matched against policy patterns as if joined (`topic/` + topic) without being copied.
///
/// ```
/// use thingkit_policy::{Action, ArnPrefix, Request};
///
/// let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix");
/// let publish = arn.publish("devices/d1/temp", true);
/// assert_eq!(publish.action(), Action::Publish);
/// assert_eq!(publish.also_requires(), Some(Action::RetainPublish));
/// assert_eq!(
///     publish.resource().to_string(),
///     "arn:aws:iot:us-east-1:123456789012:topic/devices/d1/temp"
/// );
/// // From a full ARN string (split once, here):
/// let same = Request::new(Action::Receive, "arn:aws:iot:us-east-1:123456789012:topic/a");
/// assert_eq!(same.resource().to_string(), "arn:aws:iot:us-east-1:123456789012:topic/a");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    action: Action,
    also_requires: Option<Action>,
    resource: Resource<'a>,
}

/// The resource of a [`Request`], kept in the parts it was built from. Its `Display` is the full
/// ARN (this allocates only if you format it).
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a>(Repr<'a>);

#[derive(Debug, Clone, Copy)]
enum Repr<'a> {
    /// `<prefix><kind><name>`, built by an [`ArnPrefix`] method.
    Built {
        prefix: &'a ArnPrefix,
        kind: &'static str,
        name: &'a str,
    },
    /// A full ARN string, split once when the request was built.
    Split { arn: &'a str, target: Target<'a> },
    /// Not an ARN (`*`, or malformed): only a `*` policy resource matches it.
    Other(&'a str),
}

impl<'a> Resource<'a> {
    /// The parts patterns are matched against (`None` when the resource is not an ARN).
    pub(crate) fn target(&self) -> Option<Target<'a>> {
        match self.0 {
            Repr::Built { prefix, kind, name } => Some(prefix.target(kind, name)),
            Repr::Split { target, .. } => Some(target),
            Repr::Other(_) => None,
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Built { prefix, kind, name } => {
                f.write_str(prefix.as_str())?;
                f.write_str(kind)?;
                f.write_str(name)
            }
            Repr::Split { arn, .. } | Repr::Other(arn) => f.write_str(arn),
        }
    }
}

impl<'a> Request<'a> {
    /// A request for `action` on the resource ARN `resource` (`*` for actions checked against
    /// resource `*`, such as `iot:ListRetainedMessages`). The ARN is split once, here; text that
    /// is not an ARN is kept as is and matches only a `*` policy resource.
    pub fn new(action: Action, resource: &'a str) -> Request<'a> {
        let repr = match Target::from_arn(resource) {
            Some(target) => Repr::Split {
                arn: resource,
                target,
            },
            None => Repr::Other(resource),
        };
        Request {
            action,
            also_requires: None,
            resource: Resource(repr),
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

    /// The resource; format it for the full ARN.
    pub fn resource(&self) -> Resource<'a> {
        self.resource
    }
}

impl ArnPrefix {
    /// A request for `action` on `<kind><name>` (e.g. [`ResourceType::Topic`] and `a/b` for
    /// `topic/a/b`). The methods below are this with the action's own resource type.
    pub fn request<'a>(&'a self, action: Action, kind: ResourceType, name: &'a str) -> Request<'a> {
        Request {
            action,
            also_requires: None,
            resource: Resource(Repr::Built {
                prefix: self,
                kind: kind.prefix(),
                name,
            }),
        }
    }

    /// `iot:Connect` on `client/<client_id>`.
    pub fn connect<'a>(&'a self, client_id: &'a str) -> Request<'a> {
        self.request(Action::Connect, ResourceType::Client, client_id)
    }

    /// `iot:Publish` on `topic/<topic>`; with `retain`, `iot:RetainPublish` is required too.
    pub fn publish<'a>(&'a self, topic: &'a str, retain: bool) -> Request<'a> {
        Request {
            also_requires: retain.then_some(Action::RetainPublish),
            ..self.request(Action::Publish, ResourceType::Topic, topic)
        }
    }

    /// `iot:Subscribe` on `topicfilter/<filter>` (one request per filter of a SUBSCRIBE).
    pub fn subscribe<'a>(&'a self, filter: &'a str) -> Request<'a> {
        self.request(Action::Subscribe, ResourceType::TopicFilter, filter)
    }

    /// `iot:Receive` on `topic/<topic>` (checked for each message delivered).
    pub fn receive<'a>(&'a self, topic: &'a str) -> Request<'a> {
        self.request(Action::Receive, ResourceType::Topic, topic)
    }

    /// `iot:GetRetainedMessage` on `topic/<topic>`.
    pub fn get_retained_message<'a>(&'a self, topic: &'a str) -> Request<'a> {
        self.request(Action::GetRetainedMessage, ResourceType::Topic, topic)
    }

    /// `iot:ListRetainedMessages` on `*`.
    pub fn list_retained_messages(&self) -> Request<'_> {
        Request::new(Action::ListRetainedMessages, "*")
    }

    /// A shadow or jobs action on `thing/<thing_name>` (e.g. [`Action::UpdateThingShadow`]).
    pub fn thing<'a>(&'a self, action: Action, thing_name: &'a str) -> Request<'a> {
        self.request(action, ResourceType::Thing, thing_name)
    }

    /// `iot:AssumeRoleWithCertificate` on `rolealias/<alias>`.
    pub fn assume_role<'a>(&'a self, role_alias: &'a str) -> Request<'a> {
        self.request(
            Action::AssumeRoleWithCertificate,
            ResourceType::RoleAlias,
            role_alias,
        )
    }
}

/// An owned request: an action and a full resource ARN, as read from JSON by
/// [`RequestBuf::from_json`] (`thingkit policy test --request`). Borrow it as a [`Request`]
/// with [`RequestBuf::as_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBuf {
    action: Action,
    resource: String,
}

impl RequestBuf {
    /// An owned request for `action` on the resource ARN `resource`.
    pub fn new(action: Action, resource: impl Into<String>) -> RequestBuf {
        RequestBuf {
            action,
            resource: resource.into(),
        }
    }

    /// The request, borrowing this one's resource (the ARN is split once, here).
    pub fn as_request(&self) -> Request<'_> {
        Request::new(self.action, &self.resource)
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The resource ARN.
    pub fn resource(&self) -> &str {
        &self.resource
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

impl RequestBuf {
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
    pub fn from_json(text: &str) -> Result<(RequestBuf, Context), Error> {
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
            thing: c.thing.map(|t| ThingContext {
                name: t.name,
                thing_type: t.thing_type,
                attributes: t.attributes,
                attached: t.attached,
            }),
            certificate: c.certificate.map(|x| CertificateContext {
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
        Ok((RequestBuf::new(action, r.resource), ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_request_document() {
        let (req, ctx) = RequestBuf::from_json(
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
            assert!(RequestBuf::from_json(bad).is_err(), "{bad}");
        }
    }
}
