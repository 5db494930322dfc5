//! Decisions, with the statements that determined them and an optional explanation.

use std::fmt;

use crate::document::Effect;

/// The outcome of an authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Some Allow statement matched and no Deny statement did.
    Allow,
    /// Some Deny statement matched (this overrides every Allow).
    ExplicitDeny,
    /// No statement matched: denied by default.
    ImplicitDeny,
}

impl Decision {
    /// `ALLOW`, `EXPLICIT_DENY` or `IMPLICIT_DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::ExplicitDeny => "EXPLICIT_DENY",
            Decision::ImplicitDeny => "IMPLICIT_DENY",
        }
    }

    /// Whether the request is allowed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statement of a named policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatementRef {
    /// The policy's name in the [`PolicySet`](crate::PolicySet).
    pub policy: String,
    /// The statement's index in its document (0-based).
    pub statement: usize,
    /// The statement's `Sid`, if any.
    pub sid: Option<String>,
}

/// A decision with the statements that determined it and the context that was missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// For `Allow`, every matching Allow statement; for `ExplicitDeny`, every matching Deny
    /// statement; empty for `ImplicitDeny`.
    pub determining: Vec<StatementRef>,
    /// Context keys (by name) that a statement for this action needed and the context lacked,
    /// sorted and without duplicates.
    pub missing_context: Vec<String>,
}

/// How one resource pattern fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceExplanation {
    /// The pattern as written.
    pub pattern: String,
    /// Whether it matched the request's resource.
    pub matched: bool,
    /// The variable that had no value (so the pattern matched nothing), if any.
    pub unresolved: Option<String>,
}

/// How one condition fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionExplanation {
    /// The operator, e.g. `ForAnyValue:StringLike`.
    pub operator: String,
    /// The key as written.
    pub key: String,
    /// Whether the condition held.
    pub satisfied: bool,
    /// Why, in words.
    pub reason: String,
}

/// How one statement fared against a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementExplanation {
    /// Which statement.
    pub statement: StatementRef,
    /// Its effect.
    pub effect: Effect,
    /// Whether the request's action is among the statement's actions.
    pub action_matched: bool,
    /// Whether the statement uses `NotResource`.
    pub not_resource: bool,
    /// Each resource pattern (empty if the action did not match).
    pub resources: Vec<ResourceExplanation>,
    /// Whether the resource test passed (after `NotResource` negation).
    pub resource_matched: bool,
    /// Each condition (empty if action or resource did not match).
    pub conditions: Vec<ConditionExplanation>,
    /// Whether the statement applies to the request (action, resource and all conditions).
    pub applies: bool,
}

/// An evaluation plus, for every statement in the set, why it did or did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The evaluation.
    pub evaluation: Evaluation,
    /// One entry per statement, in policy-name then statement order.
    pub statements: Vec<StatementExplanation>,
}
