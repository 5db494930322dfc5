//! Validation findings: severity, stable code, message, help, JSON path, line:column and byte
//! span.

use std::fmt;
use std::ops::Range;

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
    /// A limit of [`PolicyLimits`](crate::PolicyLimits) was exceeded.
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

impl Code {
    /// What to do about a finding with this code, in general (a finding's own
    /// [`help`](Finding::help) may be more specific).
    pub fn help(self) -> &'static str {
        match self {
            Code::JsonSyntax => {
                "fix the JSON syntax at this position (RFC 8259: double-quoted strings, no trailing commas, no comments)"
            }
            Code::LimitExceeded => {
                "split the policy into several smaller policies, or raise the limit in `Limits` if you run your own broker"
            }
            Code::DuplicateKey => {
                "remove one of the two keys; merge their values if both are meant"
            }
            Code::UnknownElement => {
                "check the spelling and case (`Statement`, `Effect`, `Action`, `Resource`, `Condition`, `Sid`, `Version`, `Id`)"
            }
            Code::MissingElement => {
                "add the element (a statement needs `Effect`, `Action` or `NotAction`, and `Resource` or `NotResource`)"
            }
            Code::InvalidType => {
                "use the JSON type the element takes: a string, or a non-empty list of strings"
            }
            Code::InvalidVersion => "use \"Version\": \"2012-10-17\"",
            Code::InvalidEffect => "use \"Allow\" or \"Deny\" (case-sensitive)",
            Code::ConflictingElements => {
                "keep exactly one of `Action`/`NotAction` and one of `Resource`/`NotResource`"
            }
            Code::UnknownAction => {
                "use an AWS IoT data-plane action such as `iot:Connect`, `iot:Publish`, `iot:Subscribe` or `iot:Receive`, or a wildcard like `iot:*`"
            }
            Code::InvalidResource => {
                "write `*` or a full ARN: `arn:aws:iot:<region>:<account>:topic/...`"
            }
            Code::InvalidVariable => {
                "write variables as `${iot:ClientId}`; write a literal `$`, `*` or `?` as `${$}`, `${*}` or `${?}`"
            }
            Code::UnknownOperator => {
                "use an IAM condition operator such as `StringEquals`, `StringLike`, `Bool`, `IpAddress` or `DateGreaterThan`"
            }
            Code::InvalidConditionValue => {
                "give a value of the operator's type (a number, an ISO 8601 date, `true`/`false`, a CIDR block)"
            }
            Code::ForeignAction => "remove the action; an IoT policy only governs `iot:` actions",
            Code::ResourceTypeMismatch => {
                "use the resource type the actions are checked against: `client/` for iot:Connect, `topic/` for publish/receive, `topicfilter/` for iot:Subscribe, `thing/` for shadows and jobs"
            }
            Code::WrongTopicResource => {
                "use `topicfilter/` for iot:Subscribe and `topic/` for iot:Publish, iot:Receive and the retain actions"
            }
            Code::MqttWildcardInPolicy => {
                "use `*` (any characters) or `?` (one character); write `${*}` for a literal star"
            }
            Code::DenySubscribeWithoutReceive => {
                "also deny iot:Receive on the matching `topic/` resources"
            }
            Code::ConnectWithoutIsAttached => {
                "add `\"Bool\": {\"iot:Connection.Thing.IsAttached\": \"true\"}` or use `client/${iot:Connection.Thing.ThingName}`"
            }
            Code::BroadReservedTopicAccess => {
                "scope it to the connected thing: `$aws/things/${iot:Connection.Thing.ThingName}/...`"
            }
            Code::VariableInDeny => {
                "make the Deny not depend on the variable, or add a `Null` condition that denies when the key is missing"
            }
            Code::UnknownVariable => {
                "use a documented key, e.g. `iot:ClientId`, `iot:Connection.Thing.ThingName` or `iot:Certificate.Subject.CommonName`"
            }
            Code::ForAllValuesInAllow => {
                "add a `Null` condition requiring the key, or use `ForAnyValue:`"
            }
            Code::NegatedElementInAllow => {
                "list what is allowed instead, or move the negation into a Deny"
            }
            Code::ListActionResource => {
                "use `\"Resource\": \"*\"` for list actions such as iot:ListRetainedMessages"
            }
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// Error or warning (always `code.severity()`).
    pub severity: Severity,
    /// The stable code.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// What to do about it (always present: the code's [`Code::help`] unless the finding has a
    /// more specific suggestion).
    pub help: String,
    /// JSON path of the offending element, e.g. `$.Statement[1].Resource[0]`.
    pub path: String,
    /// 1-based line of the element.
    pub line: usize,
    /// 1-based column (in characters) of the element.
    pub column: usize,
    /// Byte range of the offending element in the source text (`text[span]` is the element:
    /// a value, a key, or for a syntax error the character where reading stopped).
    pub span: Range<usize>,
}

impl Finding {
    /// The finding with a more specific `help`.
    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Finding {
        self.help = help.into();
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} {}: {} (at {}; help: {})",
            self.line, self.column, self.severity, self.code, self.message, self.path, self.help
        )
    }
}

/// Where an element of a document is: JSON path, line:column and byte span.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Location {
    /// JSON path, e.g. `$.Statement[0].Action[2]`.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// Byte range of the element in the source text.
    pub span: Range<usize>,
}

impl Location {
    pub(crate) fn finding(&self, code: Code, message: impl Into<String>) -> Finding {
        Finding {
            severity: code.severity(),
            code,
            message: message.into(),
            help: code.help().to_owned(),
            path: self.path.clone(),
            line: self.line,
            column: self.column,
            span: self.span.clone(),
        }
    }
}

/// The end (exclusive byte offset) of the JSON value or key starting at `start` in `text`,
/// which has been read without syntax errors up to there. A string ends after its closing
/// quote, an object or array after its matching bracket, anything else (number, literal) before
/// the next delimiter. Never panics: a malformed tail ends the span at the end of the text.
pub(crate) fn value_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.get(start) else {
        return text.len();
    };
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if depth == 0 {
                    return i + 1;
                }
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':'
                if depth == 0 && i > start && !matches!(first, b'"' | b'{' | b'[') =>
            {
                return i;
            }
            _ => {}
        }
    }
    text.len()
}

/// The span of the character at `offset` (for a position where reading stopped), clamped to
/// the text; empty at the end.
pub(crate) fn char_span(text: &str, offset: usize) -> Range<usize> {
    let start = offset.min(text.len());
    let len = text
        .get(start..)
        .and_then(|t| t.chars().next())
        .map_or(0, char::len_utf8);
    start..start + len
}
