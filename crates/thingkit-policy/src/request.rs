//! Requests: an action on a resource ARN, built from broker events.

use crate::action::Action;
use crate::arn::ArnPrefix;

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
