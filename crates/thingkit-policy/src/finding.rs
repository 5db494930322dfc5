//! Validation findings: severity, stable code, message, JSON path and line:column.

use std::fmt;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The document is accepted but probably does not mean what its author intended.
    Warning,
    /// The document is rejected.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $sev:ident; )*) => {
        /// A stable identifier for each kind of finding (printed in kebab case).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// The stable kebab-case name, e.g. `duplicate-key`.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            /// The severity findings with this code always have.
            pub fn severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$sev, )* }
            }

            /// Every code, for documentation and tests.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];
        }
    };
}

codes! {
    /// The text is not valid JSON.
    JsonSyntax = "json-syntax", Error;
    /// A limit of [`Limits`](crate::Limits) was exceeded.
    LimitExceeded = "limit-exceeded", Error;
    /// An object has the same key twice.
    DuplicateKey = "duplicate-key", Error;
    /// An element the policy grammar does not define (names are case-sensitive).
    UnknownElement = "unknown-element", Error;
    /// A required element is absent.
    MissingElement = "missing-element", Error;
    /// An element has the wrong JSON type or an empty list.
    InvalidType = "invalid-type", Error;
    /// `Version` is not `2012-10-17`.
    InvalidVersion = "invalid-version", Error;
    /// `Effect` is not `Allow` or `Deny`.
    InvalidEffect = "invalid-effect", Error;
    /// Both or neither of `Action`/`NotAction` (or `Resource`/`NotResource`).
    ConflictingElements = "conflicting-elements", Error;
    /// An `iot:` action that does not exist.
    UnknownAction = "unknown-action", Error;
    /// A resource that is neither `*` nor an ARN with six parts.
    InvalidResource = "invalid-resource", Error;
    /// A malformed `${...}` policy variable.
    InvalidVariable = "invalid-variable", Error;
    /// A condition operator IAM does not define.
    UnknownOperator = "unknown-operator", Error;
    /// A condition value that does not fit its operator (number, date, CIDR, ...).
    InvalidConditionValue = "invalid-condition-value", Error;
    /// An action of another AWS service; it never matches an IoT request.
    ForeignAction = "foreign-action", Warning;
    /// A resource type the statement's actions are never checked against.
    ResourceTypeMismatch = "resource-type-mismatch", Warning;
    /// `iot:Subscribe` with a `topic/` resource, or a topic action with `topicfilter/`.
    WrongTopicResource = "wrong-topic-resource", Warning;
    /// A literal MQTT `+` or `#` in a `topicfilter/` resource.
    MqttWildcardInPolicy = "mqtt-wildcard-in-policy", Warning;
    /// A Deny on a topic filter with no Deny of `iot:Receive` on the matching topics.
    DenySubscribeWithoutReceive = "deny-subscribe-without-receive", Warning;
    /// `iot:Connect` on `client/*` or `client/${iot:ClientId}` without an `IsAttached` condition.
    ConnectWithoutIsAttached = "connect-without-is-attached", Warning;
    /// Wildcard access to every thing's reserved topics (`$aws/things/*`).
    BroadReservedTopicAccess = "broad-reserved-topic-access", Warning;
    /// A policy variable in a Deny statement: when it has no value, the Deny matches nothing.
    VariableInDeny = "variable-in-deny", Warning;
    /// A policy variable or condition key AWS IoT does not document; it never has a value.
    UnknownVariable = "unknown-variable", Warning;
    /// `ForAllValues:` in an Allow: it is true when the key is missing or empty.
    ForAllValuesInAllow = "for-all-values-in-allow", Warning;
    /// `NotResource` or `NotAction` in an Allow: grants everything not listed.
    NegatedElementInAllow = "negated-element-in-allow", Warning;
    /// A list action (`iot:ListRetainedMessages`) with a resource other than `*`.
    ListActionResource = "list-action-resource", Warning;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning (always `code.severity()`).
    pub severity: Severity,
    /// The stable code.
    pub code: Code,
    /// What is wrong and, where useful, what to do instead.
    pub message: String,
    /// JSON path of the offending element, e.g. `$.Statement[1].Resource[0]`.
    pub path: String,
    /// 1-based line of the element.
    pub line: usize,
    /// 1-based column (in characters) of the element.
    pub column: usize,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} {}: {} (at {})",
            self.line, self.column, self.severity, self.code, self.message, self.path
        )
    }
}

/// Where an element of a document is: JSON path and line:column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// JSON path, e.g. `$.Statement[0].Action[2]`.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
}

impl Location {
    pub(crate) fn finding(&self, code: Code, message: impl Into<String>) -> Finding {
        Finding {
            severity: code.severity(),
            code,
            message: message.into(),
            path: self.path.clone(),
            line: self.line,
            column: self.column,
        }
    }
}
