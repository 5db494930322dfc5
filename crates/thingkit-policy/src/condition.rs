//! IAM condition operators and their evaluation against a [`Context`].

use std::fmt;
use std::net::IpAddr;

use crate::arn::ArnPattern;
use crate::context::Context;
use crate::date::parse_timestamp;
use crate::document::Effect;
use crate::key::{ContextKey, Found};
use crate::pattern::{Pattern, PatternMatch};

/// The base condition operators (without `IfExists` or a set qualifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // the variant names are the IAM operator names
pub enum OperatorKind {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Null,
}

const KINDS: &[(OperatorKind, &str)] = &[
    (OperatorKind::StringEquals, "StringEquals"),
    (OperatorKind::StringNotEquals, "StringNotEquals"),
    (
        OperatorKind::StringEqualsIgnoreCase,
        "StringEqualsIgnoreCase",
    ),
    (
        OperatorKind::StringNotEqualsIgnoreCase,
        "StringNotEqualsIgnoreCase",
    ),
    (OperatorKind::StringLike, "StringLike"),
    (OperatorKind::StringNotLike, "StringNotLike"),
    (OperatorKind::NumericEquals, "NumericEquals"),
    (OperatorKind::NumericNotEquals, "NumericNotEquals"),
    (OperatorKind::NumericLessThan, "NumericLessThan"),
    (OperatorKind::NumericLessThanEquals, "NumericLessThanEquals"),
    (OperatorKind::NumericGreaterThan, "NumericGreaterThan"),
    (
        OperatorKind::NumericGreaterThanEquals,
        "NumericGreaterThanEquals",
    ),
    (OperatorKind::DateEquals, "DateEquals"),
    (OperatorKind::DateNotEquals, "DateNotEquals"),
    (OperatorKind::DateLessThan, "DateLessThan"),
    (OperatorKind::DateLessThanEquals, "DateLessThanEquals"),
    (OperatorKind::DateGreaterThan, "DateGreaterThan"),
    (OperatorKind::DateGreaterThanEquals, "DateGreaterThanEquals"),
    (OperatorKind::Bool, "Bool"),
    (OperatorKind::BinaryEquals, "BinaryEquals"),
    (OperatorKind::IpAddress, "IpAddress"),
    (OperatorKind::NotIpAddress, "NotIpAddress"),
    (OperatorKind::ArnEquals, "ArnEquals"),
    (OperatorKind::ArnNotEquals, "ArnNotEquals"),
    (OperatorKind::ArnLike, "ArnLike"),
    (OperatorKind::ArnNotLike, "ArnNotLike"),
    (OperatorKind::Null, "Null"),
];

impl OperatorKind {
    /// The IAM name, e.g. `StringLike`.
    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
    }

    /// Whether this is a negated operator (`...Not...`): AND across values, true when the key is
    /// missing.
    pub fn is_negated(self) -> bool {
        use OperatorKind::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
                | ArnNotEquals
                | ArnNotLike
        )
    }
}

/// `ForAnyValue:` or `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    /// At least one context value must satisfy the operator; missing or empty key is false.
    ForAnyValue,
    /// Every context value must satisfy the operator; missing or empty key is true.
    ForAllValues,
}

/// A full condition operator: optional set qualifier, base operator, optional `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operator {
    /// `ForAnyValue:` / `ForAllValues:`, if given.
    pub qualifier: Option<SetQualifier>,
    /// The base operator.
    pub kind: OperatorKind,
    /// The `IfExists` suffix: a missing key makes the condition true.
    pub if_exists: bool,
}

impl Operator {
    /// Parses an operator name such as `ForAnyValue:StringLikeIfExists` (ASCII case-insensitive).
    pub fn parse(text: &str) -> Option<Operator> {
        let strip = |s: &'_ str, p: &str| -> Option<usize> {
            s.get(..p.len())
                .filter(|h| h.eq_ignore_ascii_case(p))
                .map(|_| p.len())
        };
        let (qualifier, rest) = if let Some(n) = strip(text, "ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), text.get(n..)?)
        } else if let Some(n) = strip(text, "ForAllValues:") {
            (Some(SetQualifier::ForAllValues), text.get(n..)?)
        } else {
            (None, text)
        };
        let (base, if_exists) = match rest.len().checked_sub(8).and_then(|i| {
            rest.get(i..)
                .filter(|s| s.eq_ignore_ascii_case("IfExists"))
                .and_then(|_| rest.get(..i))
        }) {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let kind = KINDS
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(base))
            .map(|(k, _)| *k)?;
        if kind == OperatorKind::Null && (if_exists || qualifier.is_some()) {
            return None;
        }
        Some(Operator {
            qualifier,
            kind,
            if_exists,
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.qualifier {
            Some(SetQualifier::ForAnyValue) => f.write_str("ForAnyValue:")?,
            Some(SetQualifier::ForAllValues) => f.write_str("ForAllValues:")?,
            None => {}
        }
        f.write_str(self.kind.name())?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

/// An IP network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|n| *n <= max)?
            }
            Some(_) => return None,
        };
        Some(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Compiled condition values, typed by operator family.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    Strings(Vec<Pattern>),
    Numbers(Vec<f64>),
    Dates(Vec<i64>),
    Bools(Vec<bool>),
    Binary(Vec<String>),
    Cidrs(Vec<Cidr>),
    Arns(Vec<ArnPattern>),
    Null(Vec<bool>),
}

/// One compiled `operator: { key: values }` test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) operator: Operator,
    pub(crate) key: ContextKey,
    pub(crate) values: Values,
}

/// Compiles the values of one condition, checking each against its operator's type.
pub(crate) fn compile_values(kind: OperatorKind, values: &[String]) -> Result<Values, String> {
    use OperatorKind::*;
    let no_vars = |v: &str| -> Result<(), String> {
        if v.contains("${") {
            Err(format!(
                "policy variables are only substituted in String and Arn condition values, not in `{v}`"
            ))
        } else {
            Ok(())
        }
    };
    Ok(match kind {
        StringEquals | StringNotEquals | StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => {
            Values::Strings(
                values
                    .iter()
                    .map(|v| Pattern::new(v, false))
                    .collect::<Result<_, _>>()?,
            )
        }
        StringLike | StringNotLike => Values::Strings(
            values
                .iter()
                .map(|v| Pattern::new(v, true))
                .collect::<Result<_, _>>()?,
        ),
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Values::Numbers(
            values
                .iter()
                .map(|v| {
                    no_vars(v)?;
                    parse_number(v).ok_or_else(|| format!("`{v}` is not a number"))
                })
                .collect::<Result<_, _>>()?,
        ),
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => Values::Dates(
            values
                .iter()
                .map(|v| {
                    no_vars(v)?;
                    parse_timestamp(v).ok_or_else(|| {
                        format!("`{v}` is not an ISO 8601 date-time or epoch seconds")
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Bool | Null => {
            let b = values
                .iter()
                .map(|v| {
                    no_vars(v)?;
                    parse_bool(v).ok_or_else(|| format!("`{v}` is not `true` or `false`"))
                })
                .collect::<Result<_, _>>()?;
            if kind == Bool {
                Values::Bools(b)
            } else {
                Values::Null(b)
            }
        }
        BinaryEquals => Values::Binary(
            values
                .iter()
                .map(|v| {
                    no_vars(v)?;
                    if is_base64(v) {
                        Ok(v.clone())
                    } else {
                        Err(format!("`{v}` is not base64"))
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        IpAddress | NotIpAddress => Values::Cidrs(
            values
                .iter()
                .map(|v| {
                    no_vars(v)?;
                    Cidr::parse(v)
                        .ok_or_else(|| format!("`{v}` is not an IPv4/IPv6 address or CIDR"))
                })
                .collect::<Result<_, _>>()?,
        ),
        ArnEquals | ArnNotEquals | ArnLike | ArnNotLike => Values::Arns(
            values
                .iter()
                .map(|v| ArnPattern::new(v))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn parse_number(v: &str) -> Option<f64> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if !ok {
        return None;
    }
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn is_base64(v: &str) -> bool {
    let body = v.trim_end_matches('=');
    v.len().is_multiple_of(4)
        && v.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// One context value, borrowed.
#[derive(Clone, Copy)]
enum One<'c> {
    Str(&'c str),
    Bool(bool),
    Time(i64),
}

/// Result of evaluating one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome<'p> {
    /// Whether the condition holds. Meaningless when `unusable` is set.
    pub(crate) satisfied: bool,
    /// The condition's key has a certificate value AWS IoT does not substitute: the condition
    /// cannot be decided, and the statement resolves it towards refusal (see [`Outcome::holds`]).
    pub(crate) unusable: bool,
    /// A context key (the condition's own, or a variable in a value) that had no value.
    pub(crate) missing: Option<&'p ContextKey>,
}

impl Outcome<'_> {
    /// Whether the condition counts as holding in a statement with `effect`. An undecidable
    /// (unusable) key fails closed: it holds for a Deny and fails for an Allow, so a value the
    /// policy cannot see never grants access and never escapes a denial.
    pub(crate) fn holds(&self, effect: Effect) -> bool {
        if self.unusable {
            effect == Effect::Deny
        } else {
            self.satisfied
        }
    }
}

impl Condition {
    /// Evaluates the condition against `ctx` without allocating.
    pub(crate) fn evaluate(&self, ctx: &Context, strict: bool) -> Outcome<'_> {
        let found = self.key.find(ctx);
        let op = self.operator;
        if let Values::Null(wants) = &self.values {
            let absent = matches!(found, Found::Missing);
            return Outcome {
                satisfied: wants.contains(&absent),
                unusable: false,
                missing: None,
            };
        }
        if matches!(found, Found::Unusable) {
            // A certificate value AWS IoT leaves unreplaced: the condition cannot be decided.
            return Outcome {
                satisfied: false,
                unusable: true,
                missing: None,
            };
        }
        if matches!(found, Found::Missing) {
            let satisfied = op.if_exists
                || match op.qualifier {
                    None => op.kind.is_negated(),
                    Some(SetQualifier::ForAnyValue) => false,
                    Some(SetQualifier::ForAllValues) => true,
                };
            return Outcome {
                satisfied,
                unusable: false,
                missing: Some(&self.key),
            };
        }
        let mut missing = None;
        // Whether one context value satisfies the operator (negation applied per value).
        let mut per_value = |v: One<'_>| -> bool {
            let (positive, miss) = self.positive(v, ctx, strict);
            if missing.is_none() {
                missing = miss;
            }
            positive != op.kind.is_negated()
        };
        let satisfied = match found {
            Found::Str(s) => per_value(One::Str(s)),
            Found::Bool(b) => per_value(One::Bool(b)),
            Found::Time(t) => per_value(One::Time(t)),
            // A multivalued key without a qualifier: OR across values for positive operators,
            // AND ("matches none of them") for negated ones.
            Found::List(list) => match op.qualifier {
                None if op.kind.is_negated() => list.iter().all(|s| per_value(One::Str(s))),
                None | Some(SetQualifier::ForAnyValue) => {
                    list.iter().any(|s| per_value(One::Str(s)))
                }
                Some(SetQualifier::ForAllValues) => list.iter().all(|s| per_value(One::Str(s))),
            },
            Found::Missing | Found::Unusable => false,
        };
        Outcome {
            satisfied,
            unusable: false,
            missing,
        }
    }

    /// Whether one context value matches any policy value (the un-negated test).
    fn positive<'p>(
        &'p self,
        v: One<'_>,
        ctx: &Context,
        strict: bool,
    ) -> (bool, Option<&'p ContextKey>) {
        use OperatorKind::*;
        let text = match v {
            One::Str(s) => Some(s),
            One::Bool(true) => Some("true"),
            One::Bool(false) => Some("false"),
            One::Time(_) => None,
        };
        let mut missing = None;
        let hit = match &self.values {
            Values::Strings(patterns) => {
                let Some(text) = text else {
                    return (false, None);
                };
                let fold = matches!(
                    self.operator.kind,
                    StringEqualsIgnoreCase | StringNotEqualsIgnoreCase
                );
                patterns
                    .iter()
                    .any(|p| match p.matches(text.as_bytes(), ctx, strict, fold) {
                        PatternMatch::Matched => true,
                        PatternMatch::NotMatched => false,
                        PatternMatch::Unresolved(k) => {
                            missing.get_or_insert(k);
                            false
                        }
                    })
            }
            Values::Numbers(ns) => {
                let n = match v {
                    One::Str(s) => parse_number(s),
                    One::Time(t) => Some(t as f64),
                    One::Bool(_) => None,
                };
                let Some(n) = n else { return (false, None) };
                ns.iter()
                    .any(|p| compare(self.operator.kind, n.partial_cmp(p)))
            }
            Values::Dates(ds) => {
                let t = match v {
                    One::Time(t) => Some(t),
                    One::Str(s) => parse_timestamp(s),
                    One::Bool(_) => None,
                };
                let Some(t) = t else { return (false, None) };
                ds.iter()
                    .any(|d| compare(self.operator.kind, Some(t.cmp(d))))
            }
            Values::Bools(bs) => {
                let b = match v {
                    One::Bool(b) => Some(b),
                    One::Str(s) => parse_bool(s),
                    One::Time(_) => None,
                };
                b.is_some_and(|b| bs.contains(&b))
            }
            Values::Binary(bs) => text.is_some_and(|t| bs.iter().any(|b| b == t)),
            Values::Cidrs(cs) => {
                let ip = text.and_then(|t| t.parse::<IpAddr>().ok());
                ip.is_some_and(|ip| cs.iter().any(|c| c.contains(ip)))
            }
            Values::Arns(arns) => {
                let Some(text) = text else {
                    return (false, None);
                };
                let target = crate::arn::Target::from_arn(text);
                arns.iter()
                    .any(|a| match a.matches(target.as_ref(), ctx, strict) {
                        PatternMatch::Matched => true,
                        PatternMatch::NotMatched => false,
                        PatternMatch::Unresolved(k) => {
                            missing.get_or_insert(k);
                            false
                        }
                    })
            }
            Values::Null(_) => false,
        };
        (hit, missing)
    }
}

/// Applies a comparison operator to an ordering (of context value vs policy value).
fn compare(kind: OperatorKind, ord: Option<std::cmp::Ordering>) -> bool {
    use OperatorKind::*;
    use std::cmp::Ordering::*;
    let Some(ord) = ord else { return false };
    match kind {
        NumericEquals | NumericNotEquals | DateEquals | DateNotEquals => ord == Equal,
        NumericLessThan | DateLessThan => ord == Less,
        NumericLessThanEquals | DateLessThanEquals => ord != Greater,
        NumericGreaterThan | DateGreaterThan => ord == Greater,
        NumericGreaterThanEquals | DateGreaterThanEquals => ord != Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(op: &str, key: &str, values: &[&str]) -> Condition {
        let operator = Operator::parse(op).unwrap();
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        Condition {
            operator,
            key: ContextKey::parse(key),
            values: compile_values(operator.kind, &values).unwrap(),
        }
    }

    fn holds(c: &Condition, ctx: &Context) -> bool {
        c.evaluate(ctx, false).satisfied
    }

    #[test]
    fn parses_operators_with_qualifiers_and_if_exists() {
        let op = Operator::parse("ForAnyValue:StringLikeIfExists").unwrap();
        assert_eq!(op.qualifier, Some(SetQualifier::ForAnyValue));
        assert_eq!(op.kind, OperatorKind::StringLike);
        assert!(op.if_exists);
        assert_eq!(op.to_string(), "ForAnyValue:StringLikeIfExists");
        assert!(Operator::parse("StringMatches").is_none());
        assert!(Operator::parse("NullIfExists").is_none());
        assert!(Operator::parse("IfExists").is_none());
    }

    #[test]
    fn missing_key_is_false_for_ordinary_and_true_for_negated_operators() {
        let ctx = Context::default();
        assert!(!holds(&cond("StringEquals", "iot:ClientId", &["a"]), &ctx));
        assert!(holds(
            &cond("StringNotEquals", "iot:ClientId", &["a"]),
            &ctx
        ));
        assert!(holds(
            &cond("StringEqualsIfExists", "iot:ClientId", &["a"]),
            &ctx
        ));
        assert!(!holds(
            &cond("ForAnyValue:StringEquals", "iot:ConnectAttributes", &["a"]),
            &ctx
        ));
        assert!(holds(
            &cond("ForAllValues:StringEquals", "iot:ConnectAttributes", &["a"]),
            &ctx
        ));
    }

    #[test]
    fn values_are_ored_and_negated_values_anded() {
        let ctx = Context::with_client_id("b");
        assert!(holds(
            &cond("StringEquals", "iot:ClientId", &["a", "b"]),
            &ctx
        ));
        assert!(!holds(
            &cond("StringNotEquals", "iot:ClientId", &["a", "b"]),
            &ctx
        ));
        assert!(holds(
            &cond("StringNotEquals", "iot:ClientId", &["a", "c"]),
            &ctx
        ));
    }

    #[test]
    fn set_qualifiers_over_multivalued_keys() {
        let ctx = Context {
            connect_attributes: vec!["PersistentConnect".into(), "LastWill".into()],
            ..Context::default()
        };
        let any = cond(
            "ForAnyValue:StringEquals",
            "iot:ConnectAttributes",
            &["LastWill"],
        );
        let all = cond(
            "ForAllValues:StringEquals",
            "iot:ConnectAttributes",
            &["LastWill"],
        );
        let all2 = cond(
            "ForAllValues:StringEquals",
            "iot:ConnectAttributes",
            &["LastWill", "PersistentConnect"],
        );
        assert!(holds(&any, &ctx));
        assert!(!holds(&all, &ctx));
        assert!(holds(&all2, &ctx));
    }

    #[test]
    fn ip_numeric_date_bool_null_operators() {
        let ctx = Context {
            source_ip: Some("10.1.2.3".into()),
            current_time: Some(1_700_000_000),
            client_id: Some("17".into()),
            ..Context::default()
        };
        assert!(holds(
            &cond("IpAddress", "aws:SourceIp", &["10.0.0.0/8"]),
            &ctx
        ));
        assert!(!holds(
            &cond("IpAddress", "aws:SourceIp", &["2001:db8::/32"]),
            &ctx
        ));
        assert!(holds(
            &cond("NotIpAddress", "aws:SourceIp", &["192.168.0.0/16"]),
            &ctx
        ));
        assert!(holds(
            &cond("NumericLessThan", "iot:ClientId", &["20"]),
            &ctx
        ));
        assert!(holds(
            &cond("DateLessThan", "aws:CurrentTime", &["2030-01-01T00:00:00Z"]),
            &ctx
        ));
        assert!(!holds(
            &cond("DateGreaterThan", "aws:CurrentTime", &["2030-01-01"]),
            &ctx
        ));
        assert!(holds(&cond("Null", "iot:LastWillTopic", &["true"]), &ctx));
        assert!(!holds(&cond("Null", "iot:ClientId", &["true"]), &ctx));
        assert!(holds(
            &cond("Bool", "iot:Connection.Thing.IsAttached", &["false"]),
            &Context {
                thing: Some(crate::ThingContext::default()),
                ..Context::default()
            }
        ));
    }

    #[test]
    fn string_ignore_case_arn_and_binary_operators() {
        let ctx = Context {
            client_id: Some("Sensor-1".into()),
            last_will_topic: Some("arn:aws:iot:us-east-1:1:topic/lwt/a:b".into()),
            domain_name: Some("aGVsbG8=".into()),
            ..Context::default()
        };
        assert!(holds(
            &cond("StringEqualsIgnoreCase", "iot:ClientId", &["sensor-1"]),
            &ctx
        ));
        assert!(!holds(
            &cond("StringEquals", "iot:ClientId", &["sensor-1"]),
            &ctx
        ));
        assert!(!holds(
            &cond("StringNotEqualsIgnoreCase", "iot:ClientId", &["SENSOR-1"]),
            &ctx
        ));
        // StringEquals treats `*` literally; StringLike does not.
        assert!(!holds(
            &cond("StringEquals", "iot:ClientId", &["Sensor-*"]),
            &ctx
        ));
        assert!(holds(
            &cond("StringLike", "iot:ClientId", &["Sensor-?"]),
            &ctx
        ));
        assert!(holds(
            &cond("StringNotLike", "iot:ClientId", &["Pump-*"]),
            &ctx
        ));
        assert!(holds(
            &cond(
                "ArnLike",
                "iot:LastWillTopic",
                &["arn:aws:iot:*:*:topic/lwt/*"]
            ),
            &ctx
        ));
        assert!(!holds(
            &cond(
                "ArnEquals",
                "iot:LastWillTopic",
                &["arn:aws:iot:*:2:topic/lwt/*"]
            ),
            &ctx
        ));
        assert!(holds(
            &cond("BinaryEquals", "iot:DomainName", &["aGVsbG8="]),
            &ctx
        ));
        assert!(compile_values(OperatorKind::BinaryEquals, &["not base64!".into()]).is_err());
    }

    #[test]
    fn variables_in_string_condition_values_are_substituted() {
        let mut cert = crate::CertificateContext::default();
        cert.subject
            .insert("CommonName".into(), vec!["dev-9".into()]);
        let ctx = Context {
            client_id: Some("dev-9".into()),
            certificate: Some(cert),
            ..Context::default()
        };
        let c = cond(
            "StringEquals",
            "iot:Certificate.Subject.CommonName",
            &["${iot:ClientId}"],
        );
        assert!(holds(&c, &ctx));
        let other = Context::with_client_id("dev-8");
        let out = c.evaluate(&other, false);
        assert!(!out.satisfied);
        assert_eq!(
            out.missing.map(ToString::to_string).as_deref(),
            Some("iot:Certificate.Subject.CommonName")
        );
    }

    #[test]
    fn numeric_and_date_comparisons_at_the_boundaries() {
        let ctx = Context {
            client_id: Some("10".into()),
            current_time: Some(1_000),
            ..Context::default()
        };
        assert!(holds(
            &cond("NumericLessThanEquals", "iot:ClientId", &["10"]),
            &ctx
        ));
        assert!(!holds(
            &cond("NumericLessThan", "iot:ClientId", &["10"]),
            &ctx
        ));
        assert!(holds(
            &cond("NumericGreaterThanEquals", "iot:ClientId", &["10.0"]),
            &ctx
        ));
        assert!(holds(
            &cond("NumericNotEquals", "iot:ClientId", &["11"]),
            &ctx
        ));
        assert!(holds(&cond("DateEquals", "aws:EpochTime", &["1000"]), &ctx));
        assert!(holds(
            &cond(
                "DateGreaterThanEquals",
                "aws:CurrentTime",
                &["1970-01-01T00:16:40Z"]
            ),
            &ctx
        ));
        assert!(!holds(
            &cond(
                "DateGreaterThan",
                "aws:CurrentTime",
                &["1970-01-01T00:16:40Z"]
            ),
            &ctx
        ));
        let not_a_number = Context::with_client_id("ten");
        assert!(!holds(
            &cond("NumericEquals", "iot:ClientId", &["10"]),
            &not_a_number
        ));
        assert!(holds(
            &cond("NumericNotEquals", "iot:ClientId", &["10"]),
            &not_a_number
        ));
    }

    /// The request sides of the empty-list table: the key absent, present with no values, or
    /// with values `["a", "b"]` (`a` is the policy value in the non-empty columns).
    fn request_sides(key: &str) -> [(&'static str, Context); 3] {
        let orgs = |v: &[&str]| {
            let mut cert = crate::CertificateContext::default();
            cert.subject.insert(
                "Organization".into(),
                v.iter().map(|s| s.to_string()).collect(),
            );
            Context {
                certificate: Some(cert),
                ..Context::default()
            }
        };
        let attrs = |v: &[&str]| Context {
            connect_attributes: v.iter().map(|s| s.to_string()).collect(),
            ..Context::default()
        };
        if key == "iot:ConnectAttributes" {
            [
                ("missing", Context::default()),
                ("empty", attrs(&[])),
                ("values", attrs(&["a", "b"])),
            ]
        } else {
            [
                ("missing", Context::default()),
                ("empty", orgs(&[])),
                ("values", orgs(&["a", "b"])),
            ]
        }
    }

    #[test]
    fn empty_policy_value_lists_follow_iam_set_semantics() {
        // (operator, [missing, empty, non-empty request]) with an EMPTY policy list: "values in
        // the policy" is the empty set, so "some request value equals a policy value" is false
        // and "no request value equals a policy value" is true.
        let table: &[(&str, [bool; 3])] = &[
            ("StringEquals", [false, false, false]),
            ("StringNotEquals", [true, true, true]),
            ("ForAnyValue:StringEquals", [false, false, false]),
            ("ForAnyValue:StringNotEquals", [false, false, true]),
            ("ForAllValues:StringEquals", [true, true, false]),
            ("ForAllValues:StringNotEquals", [true, true, true]),
            ("StringEqualsIfExists", [true, true, false]),
            ("StringNotEqualsIfExists", [true, true, true]),
            ("ForAnyValue:StringEqualsIfExists", [true, true, false]),
            ("ForAllValues:StringEqualsIfExists", [true, true, false]),
            ("Null", [false, false, false]),
        ];
        for key in [
            "iot:ConnectAttributes",
            "iot:Certificate.Subject.Organization.List",
        ] {
            for (op, want) in table {
                for ((side, ctx), want) in request_sides(key).iter().zip(want) {
                    assert_eq!(
                        holds(&cond(op, key, &[]), ctx),
                        *want,
                        "{op} {key} [] with {side} request values"
                    );
                }
            }
        }
    }

    #[test]
    fn non_empty_policy_lists_against_missing_and_empty_request_values() {
        // The same table with policy list ["a"]; request values ["a", "b"] contain one match.
        let table: &[(&str, &[&str], [bool; 3])] = &[
            ("StringEquals", &["a"], [false, false, true]),
            ("StringNotEquals", &["a"], [true, true, false]),
            ("ForAnyValue:StringEquals", &["a"], [false, false, true]),
            ("ForAnyValue:StringNotEquals", &["a"], [false, false, true]),
            ("ForAllValues:StringEquals", &["a"], [true, true, false]),
            ("ForAllValues:StringEquals", &["a", "b"], [true, true, true]),
            ("ForAllValues:StringNotEquals", &["a"], [true, true, false]),
            ("StringEqualsIfExists", &["a"], [true, true, true]),
            ("StringNotEqualsIfExists", &["a"], [true, true, false]),
            ("Null", &["true"], [true, true, false]),
            ("Null", &["false"], [false, false, true]),
        ];
        for key in [
            "iot:ConnectAttributes",
            "iot:Certificate.Subject.Organization.List",
        ] {
            for (op, values, want) in table {
                for ((side, ctx), want) in request_sides(key).iter().zip(want) {
                    assert_eq!(
                        holds(&cond(op, key, values), ctx),
                        *want,
                        "{op} {key} {values:?} with {side} request values"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_policy_lists_for_single_valued_keys() {
        let present = Context::with_client_id("c");
        let absent = Context::default();
        for (op, with_value, without) in [
            ("StringEquals", false, false),
            ("StringNotEquals", true, true),
            ("StringLike", false, false),
            ("StringNotLike", true, true),
            ("StringEqualsIfExists", false, true),
            ("NumericEquals", false, false),
            ("NumericNotEquals", true, true),
            ("Bool", false, false),
            ("IpAddress", false, false),
            ("NotIpAddress", true, true),
            ("ArnLike", false, false),
            ("ArnNotLike", true, true),
            ("Null", false, false),
        ] {
            let c = cond(op, "iot:ClientId", &[]);
            assert_eq!(holds(&c, &present), with_value, "{op} [] with a client ID");
            assert_eq!(holds(&c, &absent), without, "{op} [] without a client ID");
        }
    }

    #[test]
    fn unusable_certificate_values_fail_closed() {
        let mut cert = crate::CertificateContext::default();
        cert.subject.insert(
            "Organization".into(),
            vec!["Example Corp".into(), "Evil*".into()],
        );
        cert.subject
            .insert("CommonName".into(), vec!["dev#1".into()]);
        let ctx = Context {
            certificate: Some(cert),
            ..Context::default()
        };
        let list = "iot:Certificate.Subject.Organization.List";
        let cn = "iot:Certificate.Subject.CommonName";
        // AWS leaves the variable unreplaced, so the condition cannot be decided: it never lets
        // an Allow apply and never lets a value escape a Deny, whatever the operator.
        for (op, key, values) in [
            (
                "ForAllValues:StringEquals",
                list,
                &["Example Corp", "Evil*"][..],
            ),
            ("ForAnyValue:StringEquals", list, &["Example Corp"][..]),
            ("ForAnyValue:StringLike", list, &["*"][..]),
            ("StringEquals", cn, &["dev#1"][..]),
            ("StringLike", cn, &["dev*"][..]),
            ("StringEqualsIfExists", cn, &["dev#1"][..]),
            ("StringNotEquals", cn, &["dev#1"][..]),
            ("StringNotLike", cn, &["dev*"][..]),
            ("ForAllValues:StringNotEquals", list, &["x"][..]),
        ] {
            let c = cond(op, key, values);
            let out = c.evaluate(&ctx, false);
            assert!(!out.holds(Effect::Allow), "Allow {op} {key} {values:?}");
            assert!(out.holds(Effect::Deny), "Deny {op} {key} {values:?}");
        }
        // The key is present for `Null`, which is decided as usual.
        for (key, wants_null, want) in [(cn, "false", true), (list, "true", false)] {
            let c = cond("Null", key, &[wants_null]);
            let out = c.evaluate(&ctx, false);
            assert_eq!(out.holds(Effect::Allow), want, "Null {key} {wants_null}");
            assert_eq!(out.holds(Effect::Deny), want, "Null {key} {wants_null}");
        }
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8::1".parse().unwrap()));
        assert!(!c.contains("2001:db9::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0/8").is_none());
    }

    #[test]
    fn rejects_values_of_the_wrong_type() {
        assert!(compile_values(OperatorKind::NumericEquals, &["x".into()]).is_err());
        assert!(compile_values(OperatorKind::Bool, &["yes".into()]).is_err());
        assert!(compile_values(OperatorKind::IpAddress, &["${aws:SourceIp}".into()]).is_err());
        assert!(compile_values(OperatorKind::DateEquals, &["2024-02-30".into()]).is_err());
    }
}
