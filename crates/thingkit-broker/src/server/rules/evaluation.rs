//! What the runtime needs from thingkit-rules besides `Rule::evaluate`: substitution
//! templates, the output's serialization, the environment (UUIDs, randomness) and the
//! windows of GROUP BY rules.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use thingkit_rules::rule::Environment;
use thingkit_rules::{Limits, Output, Pushed, Rule, SqlVersion, Value, WindowLimits, Windows};

use super::{ActiveRule, RuleSet, RulesConfig};

/// The environment rules run in: random UUIDs and numbers from the system's CSPRNG, and the
/// external functions installed with [`super::RulesEngine::set_external_functions`] (without
/// them, `get_thing_shadow` and the other functions that call a service are Undefined).
pub(crate) struct RuntimeEnvironment {
    random: SystemRandom,
    external: RwLock<Option<Arc<dyn super::ExternalFunctions>>>,
}

impl Default for RuntimeEnvironment {
    fn default() -> Self {
        RuntimeEnvironment {
            random: SystemRandom::new(),
            external: RwLock::new(None),
        }
    }
}

impl RuntimeEnvironment {
    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        // SystemRandom fails only when the OS has no randomness; zeros are then still unique
        // enough for trace IDs to be valid text, and the failure is logged.
        if self.random.fill(&mut out).is_err() {
            tracing::error!("rules: the system random number generator failed");
        }
        out
    }

    /// A random version-4 UUID.
    pub(crate) fn uuid(&self) -> String {
        let mut b: [u8; 16] = self.bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl Environment for RuntimeEnvironment {
    fn new_uuid(&self) -> String {
        self.uuid()
    }

    fn random(&self) -> f64 {
        let b: [u8; 8] = self.bytes();
        // 53 random bits over 2^53: uniform in [0, 1).
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn call_external(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let external = self
            .external
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        external.call(name, args)
    }
}

impl RuntimeEnvironment {
    /// Installs the external functions (replacing any before).
    pub(crate) fn set_external(&self, functions: Arc<dyn super::ExternalFunctions>) {
        *self.external.write().unwrap_or_else(|p| p.into_inner()) = Some(functions);
    }
}

/// A substitution template (`${expr}`; `$$` writes a `$`), rendered on the original message
/// with the rule's SET variables (thingkit-rules' [`thingkit_rules::Template`]).
pub(crate) struct Template {
    version: SqlVersion,
    limits: Limits,
    template: thingkit_rules::Template,
}

impl Template {
    /// Parses `text` for `version`.
    pub(crate) fn parse(
        text: &str,
        version: SqlVersion,
        limits: &Limits,
    ) -> Result<Template, String> {
        let template =
            thingkit_rules::parse_template(text, version, limits).map_err(|e| e.to_string())?;
        Ok(Template {
            version,
            limits: limits.clone(),
            template,
        })
    }

    /// Renders it for `message` with the SET `variables`.
    pub(crate) fn render(
        &self,
        message: &thingkit_rules::Message<'_>,
        env: &dyn Environment,
        variables: &[(String, Value)],
    ) -> Result<String, String> {
        if let Some(text) = self.template.as_literal() {
            return Ok(text.to_string());
        }
        self.template
            .render(message, env, self.version, variables, &self.limits)
            .map_err(|e| e.to_string())
    }
}

/// The bytes an action sends: JSON text (Undefined members left out, Decimals exact), or the
/// raw bytes.
pub(crate) fn serialize(output: &Output) -> Bytes {
    match output {
        Output::Binary(b) => b.clone(),
        Output::Json(v) => Bytes::from(v.to_json_string().into_bytes()),
    }
}

/// A serde_json value as a rules value (the error record, for the error action's sinks).
pub(crate) fn value_of_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i128::from(i)),
            None => thingkit_rules::Decimal::parse(&n.to_string())
                .map(Value::Decimal)
                .unwrap_or(Value::Undefined),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(value_of_json).collect()),
        serde_json::Value::Object(o) => {
            let mut object = thingkit_rules::Object::new();
            for (k, v) in o {
                object.insert(k.clone(), value_of_json(v));
            }
            Value::Object(object)
        }
    }
}

/// A value as CSV text: strings as they are, numbers and Booleans as JSON writes them, arrays
/// and objects as JSON; Undefined and Null as the empty field.
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Undefined | Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.to_json_string()),
    }
}

/// The window limits of the engine's configuration.
fn window_limits(config: &RulesConfig) -> WindowLimits {
    let mut limits = WindowLimits::default();
    limits.max_groups = config.window_max_groups;
    limits.evaluation = config.limits.clone();
    limits
}

/// Refuses a windowed rule the window engine cannot run (a SELECT item that is neither a key
/// nor an aggregate, ...).
pub(crate) fn check_windowed(rule: &Rule, config: &RulesConfig) -> Result<(), String> {
    Windows::new(rule, window_limits(config))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The windows of every windowed rule, owned by the evaluator thread, by rule generation.
#[derive(Default)]
pub(crate) struct WindowSet {
    rules: HashMap<u64, (Arc<ActiveRule>, Windows)>,
}

impl WindowSet {
    /// Feeds `message` to `rule`'s windows (made on first use).
    pub(crate) fn push(
        &mut self,
        rule: &Arc<ActiveRule>,
        config: &RulesConfig,
        message: &thingkit_rules::Message<'_>,
        env: &dyn Environment,
    ) -> Result<Pushed, String> {
        let entry = match self.rules.entry(rule.generation) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let windows =
                    Windows::new(&rule.rule, window_limits(config)).map_err(|e| e.to_string())?;
                v.insert((rule.clone(), windows))
            }
        };
        entry.1.push(message, env).map_err(|e| e.to_string())
    }

    /// The earliest arrival time (ms) at which a window closes.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.rules
            .values()
            .filter_map(|(_, w)| w.next_deadline())
            .min()
    }

    /// Drops the windows of rules that were removed or replaced.
    pub(crate) fn retain_live(&mut self, set: &RuleSet) {
        self.rules.retain(|_, (r, _)| {
            set.rules
                .get(r.name.as_ref())
                .is_some_and(|live| live.generation == r.generation)
        });
    }

    /// What closed by `now_ms`, per rule.
    pub(crate) fn advance_all(&mut self, now_ms: u64) -> Vec<(Arc<ActiveRule>, Vec<Output>)> {
        self.rules
            .values_mut()
            .map(|(r, w)| (r.clone(), w.advance(now_ms)))
            .filter(|(_, o)| !o.is_empty())
            .collect()
    }

    /// Every open window, closed now (shutdown).
    pub(crate) fn flush_all(&mut self) -> Vec<(Arc<ActiveRule>, Vec<Output>)> {
        self.rules
            .values_mut()
            .map(|(r, w)| (r.clone(), w.flush()))
            .filter(|(_, o)| !o.is_empty())
            .collect()
    }
}
