//! Shadow names and MQTT topics (digest A.1, A.2).

/// Longest thing name, in bytes (BOTO, LIM20).
pub const MAX_THING_NAME: usize = 128;
/// Longest shadow name, in bytes (BOTO, LIM20).
pub const MAX_SHADOW_NAME: usize = 64;

/// A shadow: a thing's classic shadow (`name` `None`) or a named one.
///
/// The fields are public for matching and building by hand; [`ShadowKey::classic`] and
/// [`ShadowKey::named`] check the names against AWS's rules, and [`parse_request_topic`] only
/// returns checked keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShadowKey {
    /// The thing name: 1–128 bytes of `[a-zA-Z0-9:_-]`.
    pub thing: String,
    /// The shadow name for a named shadow: 1–64 bytes of `[$a-zA-Z0-9:_-]`.
    pub name: Option<String>,
}

/// A name that AWS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} name {name:?}: must be 1–{max} bytes of {allowed}")]
pub struct InvalidName {
    /// `thing` or `shadow`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The longest allowed length.
    pub max: usize,
    /// The allowed characters.
    pub allowed: &'static str,
}

fn valid(name: &str, max: usize, dollar: bool) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-') || (dollar && b == b'$')
        })
}

impl ShadowKey {
    /// The classic (unnamed) shadow of `thing`.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] when `thing` is not 1–128 bytes of `[a-zA-Z0-9:_-]`.
    pub fn classic(thing: impl Into<String>) -> Result<Self, InvalidName> {
        let thing = thing.into();
        if !valid(&thing, MAX_THING_NAME, false) {
            return Err(InvalidName {
                what: "thing",
                name: thing,
                max: MAX_THING_NAME,
                allowed: "[a-zA-Z0-9:_-]",
            });
        }
        Ok(ShadowKey { thing, name: None })
    }

    /// The shadow `name` of `thing`.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] when `thing` is not 1–128 bytes of `[a-zA-Z0-9:_-]` or `name` is not
    /// 1–64 bytes of `[$a-zA-Z0-9:_-]`.
    pub fn named(thing: impl Into<String>, name: impl Into<String>) -> Result<Self, InvalidName> {
        let mut key = ShadowKey::classic(thing)?;
        let name = name.into();
        if !valid(&name, MAX_SHADOW_NAME, true) {
            return Err(InvalidName {
                what: "shadow",
                name,
                max: MAX_SHADOW_NAME,
                allowed: "[$a-zA-Z0-9:_-]",
            });
        }
        key.name = Some(name);
        Ok(key)
    }

    /// The name AWS uses in messages about this shadow: the shadow name, or the thing name for
    /// a classic shadow.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.thing)
    }

    /// The topic prefix: `$aws/things/{thing}/shadow` or `$aws/things/{thing}/shadow/name/{name}`.
    pub fn topic_prefix(&self) -> String {
        match &self.name {
            None => format!("$aws/things/{}/shadow", self.thing),
            Some(name) => format!("$aws/things/{}/shadow/name/{name}", self.thing),
        }
    }

    /// The topic of `operation` with `suffix` (`"accepted"`, `"rejected"`, `"delta"`,
    /// `"documents"`) or without (`""`): `{prefix}/{operation}[/{suffix}]`.
    pub fn topic(&self, operation: Operation, suffix: &str) -> String {
        let mut topic = self.topic_prefix();
        topic.push('/');
        topic.push_str(operation.as_str());
        if !suffix.is_empty() {
            topic.push('/');
            topic.push_str(suffix);
        }
        topic
    }
}

impl std::fmt::Display for ShadowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            None => f.write_str(&self.thing),
            Some(name) => write!(f, "{}/{name}", self.thing),
        }
    }
}

/// A shadow request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `/get`: read the document (with its delta).
    Get,
    /// `/update`: merge a state document in (creating the shadow).
    Update,
    /// `/delete`: delete the document (its version continues on re-creation).
    Delete,
}

impl Operation {
    /// The topic level: `get`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    fn from_level(level: &str) -> Option<Self> {
        match level {
            "get" => Some(Operation::Get),
            "update" => Some(Operation::Update),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// Parses a request topic: `$aws/things/{thing}/shadow/{get|update|delete}` and
/// `$aws/things/{thing}/shadow/name/{name}/{get|update|delete}`. `None` for any other topic
/// (including `.../accepted`, `.../rejected`, `.../update/delta`, `.../update/documents`) and for
/// names AWS would refuse.
pub fn parse_request_topic(topic: &str) -> Option<(ShadowKey, Operation)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let mut levels = rest.split('/');
    let thing = levels.next()?;
    if levels.next()? != "shadow" {
        return None;
    }
    let (key, op) = match (levels.next()?, levels.next(), levels.next()) {
        (op, None, None) => (ShadowKey::classic(thing).ok()?, op),
        ("name", Some(name), Some(op)) => (ShadowKey::named(thing, name).ok()?, op),
        _ => return None,
    };
    if levels.next().is_some() {
        return None;
    }
    Some((key, Operation::from_level(op)?))
}

/// The topic filters a broker service claims: the six request topic shapes with `+`.
pub fn request_filters() -> Vec<&'static str> {
    vec![
        "$aws/things/+/shadow/get",
        "$aws/things/+/shadow/update",
        "$aws/things/+/shadow/delete",
        "$aws/things/+/shadow/name/+/get",
        "$aws/things/+/shadow/name/+/update",
        "$aws/things/+/shadow/name/+/delete",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_classic_and_named_request_topics() {
        assert_eq!(
            parse_request_topic("$aws/things/t-1/shadow/update"),
            Some((ShadowKey::classic("t-1").unwrap(), Operation::Update))
        );
        assert_eq!(
            parse_request_topic("$aws/things/t:1/shadow/name/$cfg/get"),
            Some((ShadowKey::named("t:1", "$cfg").unwrap(), Operation::Get))
        );
        // A named shadow may be called like an operation.
        assert_eq!(
            parse_request_topic("$aws/things/t/shadow/name/get/delete"),
            Some((ShadowKey::named("t", "get").unwrap(), Operation::Delete))
        );
    }

    #[test]
    fn refuses_response_topics_and_bad_names() {
        for topic in [
            "$aws/things/t/shadow/update/accepted",
            "$aws/things/t/shadow/update/delta",
            "$aws/things/t/shadow/update/documents",
            "$aws/things/t/shadow/get/rejected",
            "$aws/things/t/shadow/name/n/update/accepted",
            "$aws/things/t/shadow/name/n",
            "$aws/things/t/shadow/name/update",
            "$aws/things/t/shadow",
            "$aws/things//shadow/get",
            "$aws/things/t$/shadow/get",
            "$aws/things/t/shadow/name//get",
            "$aws/things/t/shadow/name/a+b/get",
            "$aws/things/t/shadow/list",
            "aws/things/t/shadow/get",
        ] {
            assert_eq!(parse_request_topic(topic), None, "{topic}");
        }
        let long = "x".repeat(129);
        assert_eq!(
            parse_request_topic(&format!("$aws/things/{long}/shadow/get")),
            None
        );
        assert!(ShadowKey::named("t", "y".repeat(65)).is_err());
        assert!(ShadowKey::named("t", "y".repeat(64)).is_ok());
    }

    #[test]
    fn builds_response_topics() {
        let key = ShadowKey::named("t", "n").unwrap();
        assert_eq!(
            key.topic(Operation::Update, "documents"),
            "$aws/things/t/shadow/name/n/update/documents"
        );
        assert_eq!(
            ShadowKey::classic("t").unwrap().topic(Operation::Get, ""),
            "$aws/things/t/shadow/get"
        );
    }
}
