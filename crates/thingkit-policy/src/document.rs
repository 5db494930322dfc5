//! Policy documents: strict parsing with positions, and the typed statements it produces.

use std::fmt;

use crate::action::{Action, ActionSet};
use crate::arn::ArnPattern;
use crate::condition::{Condition, Operator, compile_values};
use crate::error::Error;
use crate::finding::{Code, Finding, Location, Severity};
use crate::key::ContextKey;
use crate::pattern;
use thingkit_json::{self as json, Kind, LineIndex, Member, Node};

/// The only policy language version AWS IoT accepts.
pub const POLICY_VERSION: &str = "2012-10-17";

/// Limits applied while parsing a document. The defaults follow AWS IoT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyLimits {
    /// Maximum size of the policy in characters, not counting whitespace (AWS IoT: 2048).
    pub max_policy_chars: usize,
    /// Maximum raw input size in bytes, whitespace included; larger input is refused before it is
    /// read (default 65 536).
    pub max_input_bytes: usize,
    /// Maximum JSON nesting depth (default 16; a valid policy needs 5).
    pub max_depth: usize,
    /// Maximum number of JSON values in the document (default 4096).
    pub max_json_values: usize,
}

impl PolicyLimits {
    /// This value with [`max_policy_chars`](Self::max_policy_chars) replaced.
    pub fn with_max_policy_chars(mut self, max_policy_chars: usize) -> Self {
        self.max_policy_chars = max_policy_chars;
        self
    }

    /// This value with [`max_input_bytes`](Self::max_input_bytes) replaced.
    pub fn with_max_input_bytes(mut self, max_input_bytes: usize) -> Self {
        self.max_input_bytes = max_input_bytes;
        self
    }

    /// This value with [`max_depth`](Self::max_depth) replaced.
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// This value with [`max_json_values`](Self::max_json_values) replaced.
    pub fn with_max_json_values(mut self, max_json_values: usize) -> Self {
        self.max_json_values = max_json_values;
        self
    }
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            max_policy_chars: 2048,
            max_input_bytes: 65_536,
            max_depth: 16,
            max_json_values: 4096,
        }
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Grants the matching requests (unless some Deny matches).
    Allow,
    /// Denies the matching requests, overriding every Allow.
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// A string from the document with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its JSON path and line:column.
    pub location: Location,
}

/// One `operator: { key: values }` entry of a `Condition` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionEntry {
    /// The operator as parsed.
    pub operator: Operator,
    /// The key as written.
    pub key_name: String,
    /// The key, resolved.
    pub key: ContextKey,
    /// The values as written (numbers and booleans as their JSON text).
    pub values: Vec<String>,
    /// Where the key is.
    pub location: Location,
    pub(crate) compiled: Condition,
}

/// One statement of a policy document, validated and compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub(crate) index: usize,
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    pub(crate) location: Location,
    pub(crate) not_action: bool,
    pub(crate) actions: Vec<Located<String>>,
    pub(crate) action_set: ActionSet,
    pub(crate) not_resource: bool,
    pub(crate) resources: Vec<Located<String>>,
    pub(crate) resource_patterns: Vec<ArnPattern>,
    pub(crate) conditions: Vec<ConditionEntry>,
}

impl Statement {
    /// Position of the statement in its document (0-based).
    pub fn index(&self) -> usize {
        self.index
    }
    /// The `Sid`, if any.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }
    /// The `Effect`.
    pub fn effect(&self) -> Effect {
        self.effect
    }
    /// Where the statement is.
    pub fn location(&self) -> &Location {
        &self.location
    }
    /// Whether the actions are a `NotAction` list.
    pub fn is_not_action(&self) -> bool {
        self.not_action
    }
    /// The `Action`/`NotAction` entries as written.
    pub fn actions(&self) -> &[Located<String>] {
        &self.actions
    }
    /// The IoT actions the statement applies to (after `NotAction` complement).
    pub fn action_set(&self) -> ActionSet {
        self.action_set
    }
    /// Whether the resources are a `NotResource` list.
    pub fn is_not_resource(&self) -> bool {
        self.not_resource
    }
    /// The `Resource`/`NotResource` entries as written.
    pub fn resources(&self) -> &[Located<String>] {
        &self.resources
    }
    /// The `Condition` entries.
    pub fn conditions(&self) -> &[ConditionEntry] {
        &self.conditions
    }
    /// Whether the statement applies to `action`.
    pub fn applies_to(&self, action: Action) -> bool {
        self.action_set.contains(action)
    }
}

/// A parsed, validated AWS IoT policy document.
///
/// Obtained from [`PolicyDocument::parse`]; it exists only if the document had no error findings.
/// Evaluate it through a [`PolicySet`](crate::PolicySet).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    pub(crate) id: Option<String>,
    pub(crate) statements: Vec<Statement>,
    pub(crate) warnings: Vec<Finding>,
}

impl PolicyDocument {
    /// Parses and validates a document with the default [`PolicyLimits`].
    ///
    /// Fails with [`Error::InvalidDocument`] carrying every finding (errors and warnings, each
    /// with its code, message, help, JSON path, line:column and byte span); warnings alone do not
    /// fail parsing and are available from [`PolicyDocument::warnings`].
    pub fn parse(text: &str) -> Result<PolicyDocument, Error> {
        PolicyDocument::parse_with(text, &PolicyLimits::default())
    }

    /// Parses and validates a document with explicit limits.
    pub fn parse_with(text: &str, limits: &PolicyLimits) -> Result<PolicyDocument, Error> {
        let (doc, mut findings) = analyze(text, limits);
        let has_error = findings.iter().any(|f| f.severity == Severity::Error);
        match doc {
            Some(doc) if !has_error => Ok(doc),
            _ => {
                if !has_error {
                    // `analyze` reports an error whenever it builds no document; never return
                    // an error without one.
                    findings.insert(
                        0,
                        Location::default().finding(Code::JsonSyntax, "document could not be read"),
                    );
                }
                Err(Error::InvalidDocument { findings })
            }
        }
    }

    /// The optional `Id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The lint warnings found while parsing.
    pub fn warnings(&self) -> &[Finding] {
        &self.warnings
    }
}

/// Validates a document with the default [`PolicyLimits`] and returns **all** findings (errors and
/// warnings), ordered by position. An empty list means the document is clean.
pub fn validate(text: &str) -> Vec<Finding> {
    validate_with(text, &PolicyLimits::default())
}

/// Validates a document with explicit limits; see [`validate`].
pub fn validate_with(text: &str, limits: &PolicyLimits) -> Vec<Finding> {
    analyze(text, limits).1
}

/// Parses, validates and lints: the document (if it could be built) and every finding.
pub(crate) fn analyze(text: &str, limits: &PolicyLimits) -> (Option<PolicyDocument>, Vec<Finding>) {
    let lines = LineIndex::new(text);
    let mut a = Analyzer {
        text,
        lines: &lines,
        findings: Vec::new(),
    };
    if text.len() > limits.max_input_bytes {
        a.findings.push(a.at_span(0..text.len(), "$").finding(
            Code::LimitExceeded,
            format!(
                "input is {} bytes, more than {} (limit max_input_bytes)",
                text.len(),
                limits.max_input_bytes
            ),
        ));
        return (None, a.findings);
    }
    let size = text.chars().filter(|c| !c.is_whitespace()).count();
    if size > limits.max_policy_chars {
        a.findings.push(a.at_span(0..text.len(), "$").finding(
            Code::LimitExceeded,
            format!(
                "policy is {size} characters without whitespace, more than {} (limit max_policy_chars)",
                limits.max_policy_chars
            ),
        ));
    }
    let parsed = match json::parse(
        text,
        json::Limits::default()
            .with_max_depth(limits.max_depth)
            .with_max_values(limits.max_json_values),
    ) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.limit.is_some() {
                Code::LimitExceeded
            } else {
                Code::JsonSyntax
            };
            let span = crate::finding::char_span(text, e.offset);
            a.findings
                .push(a.at_span(span, "$").finding(code, e.message));
            return (None, a.findings);
        }
    };
    for d in &parsed.duplicates {
        let (l, c) = lines.line_col(text, d.first_offset);
        a.findings.push(a.at(d.offset, "$").finding(
            Code::DuplicateKey,
            format!("duplicate key `{}` (first at {l}:{c})", d.key),
        ));
    }
    let doc = a.document(&parsed.root);
    if let Some(doc) = &doc {
        let lints = crate::lint::lint(doc);
        a.findings.extend(lints);
    }
    a.findings.sort_by_key(|f| (f.line, f.column));
    let doc = doc.map(|mut d| {
        d.warnings = a
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .cloned()
            .collect();
        d
    });
    (doc, a.findings)
}

struct Analyzer<'t> {
    text: &'t str,
    lines: &'t LineIndex,
    findings: Vec<Finding>,
}

fn key_path(base: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{base}.{key}")
    } else {
        format!("{base}[{key:?}]")
    }
}

impl Analyzer<'_> {
    /// The location of the element (value or key) starting at `offset`, spanning all of it.
    fn at(&self, offset: usize, path: &str) -> Location {
        let span = offset..crate::finding::value_end(self.text, offset);
        self.at_span(span, path)
    }

    fn at_span(&self, span: std::ops::Range<usize>, path: &str) -> Location {
        let (line, column) = self.lines.line_col(self.text, span.start);
        Location {
            path: path.to_owned(),
            line,
            column,
            span,
        }
    }

    fn report(&mut self, loc: &Location, code: Code, message: impl Into<String>) {
        self.findings.push(loc.finding(code, message));
    }

    /// First occurrence of each key (duplicates are already reported).
    fn members<'n, 'a>(members: &'n [Member<'a>]) -> Vec<&'n Member<'a>> {
        let mut out: Vec<&Member<'a>> = Vec::new();
        for m in members {
            if !out.iter().any(|o| o.key == m.key) {
                out.push(m);
            }
        }
        out
    }

    fn document(&mut self, root: &Node<'_>) -> Option<PolicyDocument> {
        let Kind::Object(members) = &root.kind else {
            let loc = self.at(root.offset, "$");
            self.report(
                &loc,
                Code::InvalidType,
                format!(
                    "a policy document must be a JSON object, not {}",
                    root.kind.type_name()
                ),
            );
            return None;
        };
        let mut version = None;
        let mut statement = None;
        let mut id = None;
        for m in Self::members(members) {
            let path = key_path("$", &m.key);
            match m.key.as_ref() {
                "Version" => version = Some((m, path)),
                "Statement" => statement = Some((m, path)),
                "Id" => id = self.string(&m.value, &path),
                other => {
                    let loc = self.at(m.key_offset, &path);
                    self.report(
                        &loc,
                        Code::UnknownElement,
                        format!(
                            "unknown top-level element `{other}` (expected Version, Statement, Id)"
                        ),
                    );
                }
            }
        }
        let root_loc = self.at(root.offset, "$");
        match version {
            None => self.report(
                &root_loc,
                Code::MissingElement,
                format!("missing `Version` (must be \"{POLICY_VERSION}\")"),
            ),
            Some((m, path)) => {
                if let Some(v) = self.string(&m.value, &path)
                    && v != POLICY_VERSION
                {
                    let loc = self.at(m.value.offset, &path);
                    self.report(
                        &loc,
                        Code::InvalidVersion,
                        format!("`Version` is \"{v}\"; AWS IoT accepts only \"{POLICY_VERSION}\""),
                    );
                }
            }
        }
        let mut statements = Vec::new();
        match statement {
            None => self.report(&root_loc, Code::MissingElement, "missing `Statement`"),
            Some((m, path)) => match &m.value.kind {
                Kind::Object(_) => {
                    if let Some(s) = self.statement(&m.value, &path, 0) {
                        statements.push(s);
                    }
                }
                Kind::Array(items) if !items.is_empty() => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(s) = self.statement(item, &format!("{path}[{i}]"), i) {
                            statements.push(s);
                        }
                    }
                }
                Kind::Array(_) => {
                    let loc = self.at(m.value.offset, &path);
                    self.report(&loc, Code::InvalidType, "`Statement` is an empty list");
                }
                other => {
                    let loc = self.at(m.value.offset, &path);
                    self.report(
                        &loc,
                        Code::InvalidType,
                        format!(
                            "`Statement` must be an object or a list of objects, not {}",
                            other.type_name()
                        ),
                    );
                }
            },
        }
        if self.findings.iter().any(|f| f.severity == Severity::Error) {
            return None;
        }
        Some(PolicyDocument {
            id,
            statements,
            warnings: Vec::new(),
        })
    }

    fn string(&mut self, node: &Node<'_>, path: &str) -> Option<String> {
        match &node.kind {
            Kind::String(s) => Some(s.to_string()),
            other => {
                let loc = self.at(node.offset, path);
                self.report(
                    &loc,
                    Code::InvalidType,
                    format!("expected a string, found {}", other.type_name()),
                );
                None
            }
        }
    }

    /// A string or a non-empty list of strings.
    fn string_list(&mut self, node: &Node<'_>, path: &str) -> Option<Vec<Located<String>>> {
        match &node.kind {
            Kind::String(s) => Some(vec![Located {
                value: s.to_string(),
                location: self.at(node.offset, path),
            }]),
            Kind::Array(items) if !items.is_empty() => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match self.string(item, &p) {
                        Some(v) => out.push(Located {
                            value: v,
                            location: self.at(item.offset, &p),
                        }),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Kind::Array(_) => {
                let loc = self.at(node.offset, path);
                self.report(&loc, Code::InvalidType, "empty list");
                None
            }
            other => {
                let loc = self.at(node.offset, path);
                self.report(
                    &loc,
                    Code::InvalidType,
                    format!(
                        "expected a string or a list of strings, found {}",
                        other.type_name()
                    ),
                );
                None
            }
        }
    }

    fn statement(&mut self, node: &Node<'_>, path: &str, index: usize) -> Option<Statement> {
        let location = self.at(node.offset, path);
        let Kind::Object(members) = &node.kind else {
            self.report(
                &location,
                Code::InvalidType,
                format!(
                    "a statement must be an object, not {}",
                    node.kind.type_name()
                ),
            );
            return None;
        };
        let errors_before = self.error_count();
        let mut sid = None;
        let mut effect = None;
        let mut action = None;
        let mut not_action = None;
        let mut resource = None;
        let mut not_resource = None;
        let mut condition = None;
        for m in Self::members(members) {
            let p = key_path(path, &m.key);
            match m.key.as_ref() {
                "Sid" => sid = self.string(&m.value, &p),
                "Effect" => match self.string(&m.value, &p).as_deref() {
                    Some("Allow") => effect = Some(Effect::Allow),
                    Some("Deny") => effect = Some(Effect::Deny),
                    Some(other) => {
                        let loc = self.at(m.value.offset, &p);
                        self.report(
                            &loc,
                            Code::InvalidEffect,
                            format!("`Effect` is \"{other}\"; it must be \"Allow\" or \"Deny\" (case-sensitive)"),
                        );
                    }
                    None => {}
                },
                "Action" => action = Some((m, p)),
                "NotAction" => not_action = Some((m, p)),
                "Resource" => resource = Some((m, p)),
                "NotResource" => not_resource = Some((m, p)),
                "Condition" => condition = Some((m, p)),
                "Principal" | "NotPrincipal" => {
                    let loc = self.at(m.key_offset, &p);
                    self.report(
                        &loc,
                        Code::UnknownElement,
                        format!("`{}` is not allowed in AWS IoT policies (the principal is the attached certificate)", m.key),
                    );
                }
                other => {
                    let loc = self.at(m.key_offset, &p);
                    self.report(
                        &loc,
                        Code::UnknownElement,
                        format!("unknown statement element `{other}` (expected Sid, Effect, Action, NotAction, Resource, NotResource, Condition)"),
                    );
                }
            }
        }
        if effect.is_none() && !members.iter().any(|m| m.key == "Effect") {
            self.report(&location, Code::MissingElement, "statement has no `Effect`");
        }
        let (is_not_action, action_member) = match (action, not_action) {
            (Some(a), None) => (false, Some(a)),
            (None, Some(a)) => (true, Some(a)),
            (Some(_), Some(_)) => {
                self.report(
                    &location,
                    Code::ConflictingElements,
                    "statement has both `Action` and `NotAction`",
                );
                (false, None)
            }
            (None, None) => {
                self.report(
                    &location,
                    Code::MissingElement,
                    "statement has neither `Action` nor `NotAction`",
                );
                (false, None)
            }
        };
        let (is_not_resource, resource_member) = match (resource, not_resource) {
            (Some(r), None) => (false, Some(r)),
            (None, Some(r)) => (true, Some(r)),
            (Some(_), Some(_)) => {
                self.report(
                    &location,
                    Code::ConflictingElements,
                    "statement has both `Resource` and `NotResource`",
                );
                (false, None)
            }
            (None, None) => {
                self.report(
                    &location,
                    Code::MissingElement,
                    "statement has neither `Resource` nor `NotResource`",
                );
                (false, None)
            }
        };
        let mut actions = Vec::new();
        let mut action_set = ActionSet::EMPTY;
        if let Some((m, p)) = action_member
            && let Some(list) = self.string_list(&m.value, &p)
        {
            for a in &list {
                action_set = action_set.union(self.action(a));
            }
            actions = list;
        }
        if is_not_action {
            action_set = action_set.complement();
        }
        let mut resources = Vec::new();
        let mut resource_patterns = Vec::new();
        if let Some((m, p)) = resource_member
            && let Some(list) = self.string_list(&m.value, &p)
        {
            for r in &list {
                match ArnPattern::new(&r.value) {
                    Ok(pat) => {
                        resource_patterns.push(pat);
                        self.check_variables(&r.value, &r.location);
                    }
                    Err(msg) => {
                        let code =
                            if r.value.contains("${") && pattern::variables(&r.value).is_err() {
                                Code::InvalidVariable
                            } else {
                                Code::InvalidResource
                            };
                        self.report(&r.location, code, msg);
                    }
                }
            }
            resources = list;
        }
        let mut conditions = Vec::new();
        if let Some((m, p)) = condition {
            conditions = self.conditions(&m.value, &p);
        }
        if self.error_count() > errors_before {
            return None;
        }
        Some(Statement {
            index,
            sid,
            effect: effect?,
            location,
            not_action: is_not_action,
            actions,
            action_set,
            not_resource: is_not_resource,
            resources,
            resource_patterns,
            conditions,
        })
    }

    fn error_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    fn action(&mut self, a: &Located<String>) -> ActionSet {
        let name = a.value.as_str();
        let set = ActionSet::matching(name);
        let (service, rest) = name.split_once(':').unwrap_or(("", name));
        if name == "*" {
            return set;
        }
        if service.eq_ignore_ascii_case("iot") {
            if set.is_empty() && !rest.contains(['*', '?']) {
                self.report(
                    &a.location,
                    Code::UnknownAction,
                    format!("`{name}` is not an AWS IoT data-plane action"),
                );
            } else if set.is_empty() {
                self.report(
                    &a.location,
                    Code::ForeignAction,
                    format!("`{name}` matches no AWS IoT data-plane action"),
                );
            }
        } else if service.is_empty() || rest.is_empty() {
            self.report(
                &a.location,
                Code::UnknownAction,
                format!("`{name}` is not an action (`service:Name`)"),
            );
        } else {
            self.report(
                &a.location,
                Code::ForeignAction,
                format!("`{name}` belongs to another service and never matches an AWS IoT request"),
            );
        }
        set
    }

    fn check_variables(&mut self, text: &str, loc: &Location) {
        match pattern::variables(text) {
            Err(msg) => self.report(loc, Code::InvalidVariable, msg),
            Ok(vars) => {
                for v in vars {
                    if let ContextKey::Unknown(name) = &v {
                        self.report(
                            loc,
                            Code::UnknownVariable,
                            format!("`${{{name}}}` is not a documented AWS IoT policy variable; it never has a value, so this pattern matches nothing"),
                        );
                    }
                }
            }
        }
    }

    fn conditions(&mut self, node: &Node<'_>, path: &str) -> Vec<ConditionEntry> {
        let mut out = Vec::new();
        let Kind::Object(ops) = &node.kind else {
            let loc = self.at(node.offset, path);
            self.report(
                &loc,
                Code::InvalidType,
                format!(
                    "`Condition` must be an object, not {}",
                    node.kind.type_name()
                ),
            );
            return out;
        };
        for op in Self::members(ops) {
            let op_path = key_path(path, &op.key);
            let op_loc = self.at(op.key_offset, &op_path);
            let Some(operator) = Operator::parse(&op.key) else {
                self.report(
                    &op_loc,
                    Code::UnknownOperator,
                    format!("`{}` is not an IAM condition operator", op.key),
                );
                continue;
            };
            let Kind::Object(keys) = &op.value.kind else {
                let loc = self.at(op.value.offset, &op_path);
                self.report(
                    &loc,
                    Code::InvalidType,
                    format!(
                        "a condition operator takes an object of keys, not {}",
                        op.value.kind.type_name()
                    ),
                );
                continue;
            };
            for k in Self::members(keys) {
                let key_p = key_path(&op_path, &k.key);
                let key_loc = self.at(k.key_offset, &key_p);
                let Some(values) = self.condition_values(&k.value, &key_p) else {
                    continue;
                };
                let key = ContextKey::parse(&k.key);
                if !key.is_known() {
                    self.report(
                        &key_loc,
                        Code::UnknownVariable,
                        format!(
                            "`{}` is not a documented AWS IoT condition key; it never has a value",
                            k.key
                        ),
                    );
                }
                for v in &values {
                    if v.contains("${") {
                        self.check_variables(v, &key_loc);
                    }
                }
                match compile_values(operator.kind, &values) {
                    Ok(compiled) => out.push(ConditionEntry {
                        operator,
                        key_name: k.key.to_string(),
                        key: key.clone(),
                        values,
                        location: key_loc,
                        compiled: Condition {
                            operator,
                            key,
                            values: compiled,
                        },
                    }),
                    Err(msg) => {
                        let loc = self.at(k.value.offset, &key_p);
                        let code = if msg.contains("policy variable") {
                            Code::InvalidVariable
                        } else {
                            Code::InvalidConditionValue
                        };
                        self.report(&loc, code, format!("{operator}: {msg}"));
                    }
                }
            }
        }
        out
    }

    /// A scalar or a (possibly empty) list of scalars, as text.
    fn condition_values(&mut self, node: &Node<'_>, path: &str) -> Option<Vec<String>> {
        let scalar = |n: &Node<'_>| -> Option<String> {
            match &n.kind {
                Kind::String(s) => Some(s.to_string()),
                Kind::Number(s) => Some((*s).to_owned()),
                Kind::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        match &node.kind {
            // An empty list is valid (AWS prints `"ForAllValues:StringEquals":
            // {"iot:ConnectAttributes": []}`); its meaning is in the crate docs' table.
            Kind::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match scalar(item) {
                        Some(v) => out.push(v),
                        None => {
                            let loc = self.at(item.offset, &format!("{path}[{i}]"));
                            self.report(
                                &loc,
                                Code::InvalidType,
                                format!(
                                    "a condition value must be a string, number or boolean, not {}",
                                    item.kind.type_name()
                                ),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => match scalar(node) {
                Some(v) => Some(vec![v]),
                None => {
                    let loc = self.at(node.offset, path);
                    self.report(
                        &loc,
                        Code::InvalidType,
                        format!(
                            "a condition value must be a string, number or boolean, not {}",
                            node.kind.type_name()
                        ),
                    );
                    None
                }
            },
        }
    }
}
