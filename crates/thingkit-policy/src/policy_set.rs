//! Compiled policy sets: compile once, decide many requests without allocating.

use crate::action::Action;
use crate::arn::{ArnPattern, Target};
use crate::condition::SetQualifier;
use crate::context::Context;
use crate::decision::{
    ConditionExplanation, Decision, Evaluation, Explanation, ResourceExplanation,
    StatementExplanation, StatementRef,
};
use crate::document::{Effect, PolicyDocument, Statement};
use crate::error::Error;
use crate::index::LeadIndex;
use crate::key::Found;
use crate::pattern::PatternMatch;
use crate::request::Request;

/// Options of a [`PolicySet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Refuse to substitute client-controlled values (client ID, thing name, type and attributes)
    /// that contain `+`, `#`, `*` or `?`: the pattern then matches nothing. This closes the
    /// documented gap where a client connecting as `+` can subscribe to
    /// `topicfilter/my/${iot:ClientId}/topic` and so to `my/+/topic`. Default `false` (as AWS).
    pub strict_identities: bool,
    /// Maximum number of policies in the set (default 100 000).
    pub max_policies: usize,
}

impl SetOptions {
    /// This value with [`strict_identities`](Self::strict_identities) replaced.
    pub fn with_strict_identities(mut self, strict_identities: bool) -> Self {
        self.strict_identities = strict_identities;
        self
    }

    /// This value with [`max_policies`](Self::max_policies) replaced.
    pub fn with_max_policies(mut self, max_policies: usize) -> Self {
        self.max_policies = max_policies;
        self
    }
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            strict_identities: false,
            max_policies: 100_000,
        }
    }
}

#[derive(Debug, Clone)]
struct NamedPolicy {
    name: String,
    statements: Vec<Statement>,
}

/// A set of named, compiled policy documents: the union of the policies attached to a principal.
///
/// ```
/// use thingkit_policy::{ArnPrefix, Context, Decision, PolicyDocument, PolicySet};
///
/// let doc = PolicyDocument::parse(r#"{"Version": "2012-10-17", "Statement": [
///   {"Effect": "Allow", "Action": "iot:Publish",
///    "Resource": "arn:aws:iot:us-east-1:123456789012:topic/t/${iot:ClientId}"}]}"#)?;
/// let mut set = PolicySet::new();
/// set.add("pub", &doc)?;
/// let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").unwrap();
/// let ctx = Context::with_client_id("dev1");
/// assert_eq!(set.decide(&arn.publish("t/dev1", false), &ctx), Decision::Allow);
/// assert_eq!(set.decide(&arn.publish("t/dev2", false), &ctx), Decision::ImplicitDeny);
/// # Ok::<(), thingkit_policy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicySet {
    options: SetOptions,
    policies: Vec<NamedPolicy>,
    /// Per action: (policy, statement) of the Deny statements, then the Allow statements, that
    /// apply to it.
    denies: PerAction<LeadIndex>,
    allows: PerAction<LeadIndex>,
}

/// One `T` per [`Action`], indexed by the action itself, so no action's entry can be missing.
#[derive(Debug, Clone)]
struct PerAction<T>([T; Action::COUNT]);

impl<T: Default> Default for PerAction<T> {
    fn default() -> Self {
        PerAction(std::array::from_fn(|_| T::default()))
    }
}

impl<T> std::ops::Index<Action> for PerAction<T> {
    type Output = T;
    fn index(&self, action: Action) -> &T {
        // In bounds: actions are numbered 0..COUNT in declaration order (a test checks it).
        &self.0[action as usize]
    }
}

impl<T> std::ops::IndexMut<Action> for PerAction<T> {
    fn index_mut(&mut self, action: Action) -> &mut T {
        &mut self.0[action as usize]
    }
}

impl Default for PolicySet {
    /// The same as [`PolicySet::new`]: an empty set with default options. (A derived `Default`
    /// would leave the per-action indexes empty, and every statement added would be ignored.)
    fn default() -> Self {
        PolicySet::new()
    }
}

impl PolicySet {
    /// An empty set with default options.
    pub fn new() -> PolicySet {
        PolicySet::with_options(SetOptions::default())
    }

    /// An empty set with `options`.
    pub fn with_options(options: SetOptions) -> PolicySet {
        PolicySet {
            options,
            policies: Vec::new(),
            denies: PerAction::default(),
            allows: PerAction::default(),
        }
    }

    /// Compiles named documents into a set (e.g. the policies attached to one certificate).
    ///
    /// ```
    /// use thingkit_policy::{PolicyDocument, PolicySet, SetOptions};
    ///
    /// let a = PolicyDocument::parse(r#"{"Version": "2012-10-17", "Statement":
    ///   {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}}"#)?;
    /// let set = PolicySet::from_documents([("a", &a)], SetOptions::default())?;
    /// assert_eq!(set.len(), 1);
    /// # Ok::<(), thingkit_policy::Error>(())
    /// ```
    pub fn from_documents<'d, N: Into<String>>(
        documents: impl IntoIterator<Item = (N, &'d PolicyDocument)>,
        options: SetOptions,
    ) -> Result<PolicySet, Error> {
        let mut set = PolicySet::with_options(options);
        for (name, doc) in documents {
            set.add(name, doc)?;
        }
        Ok(set)
    }

    /// The options.
    pub fn options(&self) -> SetOptions {
        self.options
    }

    /// Adds a document under `name` (names are unique; the CLI uses the file stem).
    pub fn add(&mut self, name: impl Into<String>, doc: &PolicyDocument) -> Result<(), Error> {
        let name = name.into();
        if self.policies.iter().any(|p| p.name == name) {
            return Err(Error::DuplicatePolicy(name));
        }
        if self.policies.len() >= self.options.max_policies {
            return Err(Error::TooManyPolicies {
                limit: self.options.max_policies,
            });
        }
        let p = u32::try_from(self.policies.len()).map_err(|_| Error::TooManyPolicies {
            limit: self.options.max_policies,
        })?;
        for (i, s) in doc.statements.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| Error::TooManyPolicies {
                limit: self.options.max_policies,
            })?;
            for a in s.action_set.iter() {
                let lists = match s.effect {
                    Effect::Deny => &mut self.denies,
                    Effect::Allow => &mut self.allows,
                };
                lists[a].insert((p, i), s);
            }
        }
        self.policies.push(NamedPolicy {
            name,
            statements: doc.statements.clone(),
        });
        Ok(())
    }

    /// The number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set has no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policy names, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    fn statement(&self, (p, s): (u32, u32)) -> Option<(&NamedPolicy, &Statement)> {
        let policy = self.policies.get(p as usize)?;
        Some((policy, policy.statements.get(s as usize)?))
    }

    /// Decides a request. Allocation-free, and no ARN is parsed: the request's parts are
    /// matched as they are.
    pub fn decide(&self, request: &Request<'_>, ctx: &Context) -> Decision {
        let target = request.resource().target();
        let first = self.decide_action(request.action(), target.as_ref(), ctx);
        match request.also_requires() {
            None => first,
            Some(a) => combine(first, self.decide_action(a, target.as_ref(), ctx)),
        }
    }

    fn decide_action(
        &self,
        action: Action,
        resource: Option<&Target<'_>>,
        ctx: &Context,
    ) -> Decision {
        let strict = self.options.strict_identities;
        let part = resource.map(Target::resource);
        let check = |id| {
            self.statement(id)
                .is_some_and(|(_, s)| applies(s, resource, ctx, strict))
        };
        if self.denies[action].any(part, check) {
            return Decision::ExplicitDeny;
        }
        if self.allows[action].any(part, check) {
            return Decision::Allow;
        }
        Decision::ImplicitDeny
    }

    /// Decides a request and reports the determining statements and missing context.
    pub fn evaluate(&self, request: &Request<'_>, ctx: &Context) -> Evaluation {
        self.explain(request, ctx).evaluation
    }

    /// Evaluates a request and explains, for every statement, whether its action, each resource
    /// and each condition matched, and why.
    pub fn explain(&self, request: &Request<'_>, ctx: &Context) -> Explanation {
        let target = request.resource().target();
        let mut actions = vec![request.action()];
        actions.extend(request.also_requires());
        let mut statements = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        let mut decision = None;
        for action in actions {
            let mut any_deny = false;
            let mut any_allow = false;
            for policy in &self.policies {
                for s in &policy.statements {
                    let e = self.explain_statement(
                        policy,
                        s,
                        action,
                        target.as_ref(),
                        ctx,
                        &mut missing,
                    );
                    if e.applies {
                        match s.effect {
                            Effect::Deny => any_deny = true,
                            Effect::Allow => any_allow = true,
                        }
                    }
                    statements.push(e);
                }
            }
            let d = if any_deny {
                Decision::ExplicitDeny
            } else if any_allow {
                Decision::Allow
            } else {
                Decision::ImplicitDeny
            };
            decision = Some(decision.map_or(d, |prev| combine(prev, d)));
        }
        let decision = decision.unwrap_or(Decision::ImplicitDeny);
        let want = match decision {
            Decision::Allow => Some(Effect::Allow),
            Decision::ExplicitDeny => Some(Effect::Deny),
            Decision::ImplicitDeny => None,
        };
        let mut determining: Vec<StatementRef> = Vec::new();
        for e in &statements {
            if e.applies && Some(e.effect) == want && !determining.contains(&e.statement) {
                determining.push(e.statement.clone());
            }
        }
        missing.sort();
        missing.dedup();
        Explanation {
            evaluation: Evaluation {
                decision,
                determining,
                missing_context: missing,
            },
            statements,
        }
    }

    fn explain_statement(
        &self,
        policy: &NamedPolicy,
        s: &Statement,
        action: Action,
        resource: Option<&Target<'_>>,
        ctx: &Context,
        missing: &mut Vec<String>,
    ) -> StatementExplanation {
        let strict = self.options.strict_identities;
        let statement = StatementRef {
            policy: policy.name.clone(),
            statement: s.index,
            sid: s.sid.clone(),
        };
        let action_matched = s.action_set.contains(action);
        let mut out = StatementExplanation {
            statement,
            effect: s.effect,
            action_matched,
            not_resource: s.not_resource,
            resources: Vec::new(),
            resource_matched: false,
            conditions: Vec::new(),
            applies: false,
        };
        if !action_matched {
            return out;
        }
        let mut any = false;
        for (pat, text) in s.resource_patterns.iter().zip(&s.resources) {
            let m = pat.matches(resource, ctx, strict);
            let unresolved = match m {
                PatternMatch::Unresolved(k) => {
                    missing.push(k.to_string());
                    Some(k.to_string())
                }
                _ => None,
            };
            any |= m == PatternMatch::Matched;
            out.resources.push(ResourceExplanation {
                pattern: text.value.clone(),
                matched: m == PatternMatch::Matched,
                unresolved,
            });
        }
        out.resource_matched = any != s.not_resource;
        let mut all = true;
        for c in &s.conditions {
            let outcome = c.compiled.evaluate(ctx, strict);
            if let Some(k) = outcome.missing {
                missing.push(k.to_string());
            }
            let found = c.key.find(ctx);
            let holds = outcome.holds(s.effect);
            let reason = condition_reason(c, found, holds, outcome.missing.map(|k| k.to_string()));
            all &= holds;
            out.conditions.push(ConditionExplanation {
                operator: c.operator.to_string(),
                key: c.key_name.clone(),
                satisfied: holds,
                reason,
            });
        }
        out.applies = out.resource_matched && all;
        out
    }
}

fn condition_reason(
    c: &crate::document::ConditionEntry,
    found: Found<'_>,
    satisfied: bool,
    missing: Option<String>,
) -> String {
    let values = c.values.join("\", \"");
    let verdict = if satisfied { "holds" } else { "fails" };
    match found {
        Found::Missing if c.operator.kind == crate::condition::OperatorKind::Null => {
            format!("`{}` is absent; Null [\"{values}\"] {verdict}", c.key_name)
        }
        Found::Missing => {
            let rule = if c.operator.if_exists {
                "IfExists makes a missing key true"
            } else {
                match c.operator.qualifier {
                    Some(SetQualifier::ForAllValues) => "ForAllValues on a missing key is true",
                    Some(SetQualifier::ForAnyValue) => "ForAnyValue on a missing key is false",
                    None if c.operator.kind.is_negated() => {
                        "a negated operator on a missing key is true"
                    }
                    None => "an ordinary operator on a missing key is false",
                }
            };
            format!("`{}` is not in the context: {rule}", c.key_name)
        }
        Found::Unusable if c.operator.kind != crate::condition::OperatorKind::Null => format!(
            "`{}` has a certificate value AWS IoT does not substitute (it contains `* $ + ? #` or is longer than 1024 characters): the condition cannot be decided, so it {verdict} (it fails closed: it never lets an Allow apply and always lets a Deny apply)",
            c.key_name
        ),
        other => {
            let shown = match other {
                Found::Str(s) => format!("\"{s}\""),
                Found::List(l) => format!("{l:?}"),
                Found::Bool(b) => b.to_string(),
                Found::Time(t) => format!("{t} (epoch seconds)"),
                Found::Missing | Found::Unusable => String::new(),
            };
            let mut r = format!(
                "`{}` is {shown}; {} [\"{values}\"] {verdict}",
                c.key_name, c.operator
            );
            if let Some(k) = missing {
                r.push_str(&format!(
                    " (variable `{k}` in a value has no value, so that value matches nothing)"
                ));
            }
            r
        }
    }
}

/// Whether a statement applies to `resource` in `ctx` (action already checked). No allocation.
fn applies(s: &Statement, resource: Option<&Target<'_>>, ctx: &Context, strict: bool) -> bool {
    let any = s.resource_patterns.iter().any(|p| match (p, resource) {
        (ArnPattern::Any, _) => true,
        (_, Some(target)) => p.is_match(target, ctx, strict),
        (_, None) => false,
    });
    if any == s.not_resource {
        return false;
    }
    s.conditions
        .iter()
        .all(|c| c.compiled.evaluate(ctx, strict).holds(s.effect))
}

fn combine(a: Decision, b: Decision) -> Decision {
    match (a, b) {
        (Decision::ExplicitDeny, _) | (_, Decision::ExplicitDeny) => Decision::ExplicitDeny,
        (Decision::ImplicitDeny, _) | (_, Decision::ImplicitDeny) => Decision::ImplicitDeny,
        _ => Decision::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync + 'static>() {}

    #[test]
    fn compiled_sets_can_be_shared_across_broker_threads() {
        shareable::<PolicySet>();
        shareable::<PolicyDocument>();
        shareable::<Context>();
        shareable::<Request<'static>>();
    }

    #[test]
    fn rejects_sets_beyond_max_policies() {
        let doc = PolicyDocument::parse(
            r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}}"#,
        )
        .expect("valid");
        let mut set = PolicySet::with_options(SetOptions {
            max_policies: 2,
            ..SetOptions::default()
        });
        set.add("a", &doc).expect("first fits");
        set.add("b", &doc).expect("second fits");
        assert_eq!(set.add("c", &doc), Err(Error::TooManyPolicies { limit: 2 }));
        assert_eq!(set.names().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(set.len(), 2);
    }

    /// Regression: `PolicySet::default()` was derived and left the per-action indexes empty, so
    /// `decide` ignored every statement (Allow and Deny alike) while `explain` still saw them.
    #[test]
    fn default_set_decides_like_new_and_like_explain() {
        let doc = PolicyDocument::parse(
            r#"{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:1:topic/dt/*"},
                {"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:1:topic/dt/secret"}]}"#,
        )
        .expect("valid");
        let arn = crate::ArnPrefix::new("aws", "r", "1").expect("valid prefix");
        let ctx = Context::default();
        let mut by_default = PolicySet::default();
        by_default.add("p", &doc).expect("fits");
        let mut by_new = PolicySet::new();
        by_new.add("p", &doc).expect("fits");
        for (topic, expected) in [
            ("dt/a", Decision::Allow),
            ("dt/secret", Decision::ExplicitDeny),
            ("other", Decision::ImplicitDeny),
        ] {
            let request = arn.publish(topic, false);
            for set in [&by_default, &by_new] {
                assert_eq!(set.decide(&request, &ctx), expected, "{topic}");
                assert_eq!(
                    set.explain(&request, &ctx).evaluation.decision,
                    expected,
                    "{topic}"
                );
            }
        }
    }
}
