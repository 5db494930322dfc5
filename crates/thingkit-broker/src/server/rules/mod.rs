//! The rules engine inside the broker: AWS IoT topic rules (thingkit-rules) run on every
//! routed message, and their actions (republish, HTTP POST, file sinks) performed with
//! retries, an error action and a dead-letter file.
//!
//! ```text
//! route_message ──(filter match, try_send: never blocks a publisher)──> rules queue
//!   -> evaluator thread: Rule::evaluate, or Windows::push / advance (ticked once a second)
//!   -> per action: its own bounded queue and worker thread (retries with backoff)
//!        republish -> the broker's own routing (iot:Receive still decides per subscriber);
//!                     a topic a service claims goes to the service (a shadow's update topic
//!                     updates the shadow, as on AWS); AWS's reserved job topics are refused
//!        http      -> ureq POST, 2xx = success, 5xx / 429 / transport errors retried
//!        file      -> JSON lines, CSV (RFC 4180) or Parquet, optionally partitioned by date
//!   -> one error record per (rule, message) listing every failed action
//!        -> the rule's error action, else (or when it fails too) the dead-letter file
//! ```
//!
//! The rules are an internal subscriber: a message reaches the engine when an enabled rule's
//! FROM filter matches its topic (with MQTT's rule that a filter starting with `#` or `+` does
//! not match a `$` topic, so lifecycle-event rules name `$aws/events/...` explicitly). A full
//! rules queue or a full action queue drops and counts (the action's drop is reported to the
//! error action / dead letter); nothing here ever waits on a publisher's path.
//!
//! A rule whose evaluation fails (a limit, an external function) is reported like a failed
//! action, with `"failedAction": "Rule"` in its error record. A windowed rule's rows are not
//! tied to one message: their templates see an empty payload and the literal levels of the
//! FROM filter as the topic.
//!
//! Delivery is at-least-once within the process: an action is retried until it succeeds or its
//! attempts run out, then reported. Deliveries still queued or in flight when the process is
//! killed (`kill -9`) are lost: nothing acknowledged them to anyone, and no queue is persisted.
//! [`crate::BrokerHandle::shutdown`] flushes open windows, drains the queues and closes the
//! sinks (Parquet files get their footers) before it returns.

mod action;
mod evaluation;
mod http;
mod ingest;
mod sink;

pub use ingest::BasicIngestService;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use thingkit_mqtt::{Match, SubscriptionIndex, TopicFilter, TopicName};
use thingkit_rules::topic_rule::TopicRulePayload;
use thingkit_rules::{Limits, Pushed, Rule, SqlVersion};

use super::Shared;
use crate::Message;
use action::{ActionHandle, ActionKind, Pending};

/// The hops a chain of republishes may take: a message republished by a rule from a message
/// that was itself republished ... stops being offered to rules after this many.
pub const MAX_HOPS: u8 = 8;

/// The prefix of Basic Ingest topics: `$aws/rules/<rule name>/<topic>`.
pub const BASIC_INGEST_PREFIX: &str = "$aws/rules/";

/// Functions of AWS IoT SQL that call another service (`get_thing_shadow`, `aws_lambda`,
/// `get_dynamodb`, `get_secret`, `sourceip`, ...), provided by whoever composes the server.
/// Called on the rules' evaluator thread: an implementation may block briefly (a store read),
/// never for long (every rule waits).
pub trait ExternalFunctions: Send + Sync + 'static {
    /// `None`: this provider does not offer `name` (the call is Undefined). `Some(Err)`: the
    /// call failed; the rule is terminated for this message and reported to its error action.
    fn call(
        &self,
        name: &str,
        args: &[thingkit_rules::Value],
    ) -> Option<Result<thingkit_rules::Value, String>>;
}

/// How the rules engine runs: queue sizes, retries, sinks. `Default` is safe for tests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RulesConfig {
    /// Messages waiting for the evaluator; beyond it messages are dropped for rules and
    /// counted (`thingkit_rules_queue_dropped_total{queue="rules"}`). Default 10,000.
    pub queue_size: usize,
    /// Outputs waiting for one action; beyond it the output is reported as a failure of that
    /// action (error action / dead letter) and counted. Default 1,000.
    pub action_queue_size: usize,
    /// Attempts per action delivery (the first plus retries). Default 3.
    pub retry_attempts: u32,
    /// The wait before the first retry; doubled for each further one. Default 200 ms.
    pub retry_backoff: Duration,
    /// The longest wait between two attempts. Default 10 s.
    pub retry_backoff_max: Duration,
    /// The HTTP action's timeout for one request (connect to last byte). Default 10 s.
    pub http_timeout: Duration,
    /// Where records that neither their actions nor the error action could deliver go (JSON
    /// lines). Default `rules/dead-letter.jsonl` (relative to [`RulesConfig::base_dir`]).
    pub dead_letter_path: PathBuf,
    /// What relative file sink and dead-letter paths resolve against (the server's data
    /// directory). Default the current directory.
    pub base_dir: PathBuf,
    /// A Parquet file is closed (and a new one started) after this many rows. Default 100,000.
    pub parquet_roll_rows: usize,
    /// ... or when it is this old. Default 300 s.
    pub parquet_roll_interval: Duration,
    /// Rows per Parquet row group (at most `parquet_roll_rows`). Default 10,000.
    pub parquet_row_group_rows: usize,
    /// Open (window, key) groups per windowed rule. Default 100,000.
    pub window_max_groups: usize,
    /// The CA certificates (DER) HTTPS actions trust; none by default, so an `https://`
    /// endpoint needs them (plain `http://` does not).
    pub http_ca_certificates: Vec<Vec<u8>>,
    /// Limits on statements, payloads and outputs.
    pub limits: Limits,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            queue_size: 10_000,
            action_queue_size: 1_000,
            retry_attempts: 3,
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(10),
            http_timeout: Duration::from_secs(10),
            dead_letter_path: PathBuf::from("rules/dead-letter.jsonl"),
            base_dir: PathBuf::from("."),
            parquet_roll_rows: 100_000,
            parquet_roll_interval: Duration::from_secs(300),
            parquet_row_group_rows: 10_000,
            window_max_groups: 100_000,
            http_ca_certificates: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl RulesConfig {
    /// Resolves `path` against [`RulesConfig::base_dir`] when relative.
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The name is not `^[a-zA-Z0-9_]{1,128}$`.
    #[error("rule name {0:?} must match ^[a-zA-Z0-9_]{{1,128}}$")]
    InvalidName(String),
    /// `awsIotSqlVersion` is not one AWS knows.
    #[error("unknown SQL version {0:?} (2015-10-08, 2016-03-23 or beta)")]
    InvalidSqlVersion(String),
    /// The statement does not compile.
    #[error("sql: {0}")]
    Sql(thingkit_rules::Error),
    /// The statement has no FROM topic filter, or one MQTT refuses.
    #[error("the FROM topic filter {0:?} is not a valid MQTT topic filter")]
    InvalidTopicFilter(String),
    /// An action is refused (a template that does not parse, a QoS other than 0 or 1, a
    /// sink without columns, more than 10 actions, ...).
    #[error("{action}: {reason}")]
    InvalidAction {
        /// Which (`actions[0].republish`, `errorAction.http`, ...).
        action: String,
        /// What was wrong.
        reason: String,
    },
    /// The windowed (GROUP BY) rule is refused by the window engine.
    #[error("window: {0}")]
    Window(String),
    /// The engine was shut down.
    #[error("the rules engine is shut down")]
    ShutDown,
}

/// What a republished message carries so it cannot loop: the rules that produced it (directly
/// or through a chain) and how many republishes deep it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Provenance {
    /// The rules on the chain that produced it.
    pub(crate) rules: Vec<Arc<str>>,
    /// Republishes so far (0 for a client's message).
    pub(crate) hops: u8,
}

/// Who published a routed message, for `clientid()` and `principal()`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The certificate ID (`principal()`), for a client's message.
    pub(crate) principal: Option<Arc<str>>,
    /// The rules chain, for a republished message.
    pub(crate) provenance: Provenance,
}

/// One message for the evaluator.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) message: Arc<Message>,
    pub(crate) origin: Origin,
    /// Arrival time, ms since the epoch (`timestamp()`).
    pub(crate) timestamp_ms: u64,
    /// Basic Ingest: only this rule runs.
    pub(crate) only_rule: Option<String>,
    /// A window's output, not a published message: its actions' latency is not
    /// publish-to-action and is not recorded.
    pub(crate) from_window: bool,
}

impl Inbound {
    /// The thingkit-rules view of it.
    pub(crate) fn view(&self) -> thingkit_rules::Message<'_> {
        thingkit_rules::Message {
            topic: self.message.topic.as_str(),
            payload: &self.message.payload,
            client_id: self.message.from.as_deref(),
            principal: self.origin.principal.as_deref(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// The engine's counters so far; see [`RulesEngine::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RulesStats {
    /// Rules installed now (enabled or not).
    pub rules: u64,
    /// (message, rule) pairs whose FROM filter matched.
    pub matched: u64,
    /// Rule runs that produced an output (WHERE true; for windows, emitted rows).
    pub fired: u64,
    /// Rule runs that failed (a limit, an external function).
    pub evaluation_errors: u64,
    /// Messages dropped because the rules queue was full.
    pub queue_dropped: u64,
    /// Outputs dropped because an action's queue was full.
    pub action_queue_dropped: u64,
    /// Messages not offered to rules because their republish chain reached [`MAX_HOPS`].
    pub hop_limited: u64,
    /// Action deliveries that succeeded, per kind: republish, http, file.
    pub action_success: [u64; 3],
    /// Action deliveries that failed after their attempts, per kind.
    pub action_failure: [u64; 3],
    /// Retries, per kind.
    pub action_retries: [u64; 3],
    /// Records written to the dead-letter file.
    pub dead_lettered: u64,
    /// Records lost because the dead-letter file could not be written.
    pub dead_letter_failures: u64,
    /// Window events refused as late.
    pub window_late: u64,
    /// Window events refused because a rule had its maximum of open groups.
    pub window_over_capacity: u64,
    /// Basic Ingest messages for a rule that does not exist or is disabled.
    pub rule_not_found: u64,
}

/// The atomics behind [`RulesStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) matched: AtomicU64,
    pub(crate) fired: AtomicU64,
    pub(crate) evaluation_errors: AtomicU64,
    pub(crate) queue_dropped: AtomicU64,
    pub(crate) action_queue_dropped: AtomicU64,
    pub(crate) hop_limited: AtomicU64,
    pub(crate) action_success: [AtomicU64; 3],
    pub(crate) action_failure: [AtomicU64; 3],
    pub(crate) action_retries: [AtomicU64; 3],
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) dead_letter_failures: AtomicU64,
    pub(crate) window_late: AtomicU64,
    pub(crate) window_over_capacity: AtomicU64,
    pub(crate) rule_not_found: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A rule as installed: compiled, with its actions' workers.
pub(crate) struct ActiveRule {
    pub(crate) name: Arc<str>,
    pub(crate) payload: TopicRulePayload,
    pub(crate) rule: Rule,
    pub(crate) filter: TopicFilter,
    pub(crate) disabled: bool,
    pub(crate) actions: Vec<ActionHandle>,
    pub(crate) error_action: Option<ActionHandle>,
    /// Distinguishes a replaced rule's windows from its successor's.
    pub(crate) generation: u64,
}

/// The rules at one instant: what `route_message` matches against. Replaced as a whole when
/// a rule changes (rare), read without copying per message.
#[derive(Default)]
pub(crate) struct RuleSet {
    pub(crate) rules: BTreeMap<String, Arc<ActiveRule>>,
    /// The enabled rules' FROM filters (the broker's subscription trie: one lookup per topic
    /// level, whatever the number of rules).
    index: SubscriptionIndex<Arc<str>, Arc<ActiveRule>>,
}

impl RuleSet {
    fn new(rules: BTreeMap<String, Arc<ActiveRule>>) -> RuleSet {
        let mut index = SubscriptionIndex::new();
        for rule in rules.values().filter(|r| !r.disabled) {
            index.insert(&rule.filter, rule.name.clone(), rule.clone());
        }
        RuleSet { rules, index }
    }

    /// Calls `f` with each enabled rule whose FROM filter matches `topic`.
    fn for_each_match<'a>(&'a self, topic: &TopicName, mut f: impl FnMut(&'a Arc<ActiveRule>)) {
        self.index.for_each_match(topic, |m| {
            if let Match::Direct { value, .. } = m {
                f(value);
            }
        });
    }
}

/// Work for the evaluator thread.
enum Work {
    Message(Box<Inbound>),
    /// Flush every window, then answer.
    Flush(SyncSender<()>),
}

pub(crate) struct Inner {
    pub(crate) config: RulesConfig,
    rules: RwLock<Arc<RuleSet>>,
    /// The evaluator's queue; `None` once shut down. Read-locked per message (`try_send`
    /// takes `&self`), so publishers never contend on it.
    queue: RwLock<Option<SyncSender<Work>>>,
    pub(crate) counters: Counters,
    /// The broker it is installed in (republish routes through it).
    pub(crate) broker: OnceLock<(Weak<Shared>, tokio::runtime::Handle)>,
    /// Every worker thread ever started, joined at shutdown.
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(crate) dead_letter: action::DeadLetter,
    next_generation: AtomicU64,
    pub(crate) env: evaluation::RuntimeEnvironment,
    /// Publish-to-action latencies of successful rule actions.
    pub(crate) latencies: super::activity::LatencyRing,
}

/// The rules engine: a cheap [`Clone`] handle. Create it with [`RulesEngine::new`], add rules
/// with [`RulesEngine::upsert`], install it with `BrokerBuilder::rules`; the broker's
/// shutdown flushes it. Rules can be added, replaced and removed while the broker runs: a
/// change takes effect for the next message.
#[derive(Clone)]
pub struct RulesEngine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RulesEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesEngine")
            .field("rules", &self.names())
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a valid rule name (`^[a-zA-Z0-9_]{1,128}$`).
pub fn is_valid_rule_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl RulesEngine {
    /// An engine with no rules, running its evaluator thread and dead-letter writer.
    pub fn new(config: RulesConfig) -> RulesEngine {
        let (tx, rx) = sync_channel(config.queue_size.max(1));
        let dead_letter = action::DeadLetter::new(
            config.resolve(config.dead_letter_path.to_string_lossy().as_ref()),
        );
        let inner = Arc::new(Inner {
            config,
            rules: RwLock::new(Arc::new(RuleSet::default())),
            queue: RwLock::new(Some(tx)),
            counters: Counters::default(),
            broker: OnceLock::new(),
            workers: Mutex::new(Vec::new()),
            dead_letter,
            next_generation: AtomicU64::new(1),
            env: evaluation::RuntimeEnvironment::default(),
            latencies: super::activity::LatencyRing::default(),
        });
        let weak = Arc::downgrade(&inner);
        match std::thread::Builder::new()
            .name("rules-evaluator".into())
            .spawn(move || evaluator(weak, rx))
        {
            Ok(handle) => inner.add_worker(handle),
            Err(e) => tracing::error!(error = %e, "rules: cannot start the evaluator thread"),
        }
        RulesEngine { inner }
    }

    /// The most recent publish-to-action latencies in microseconds, oldest first, at most
    /// [`crate::RULES_LATENCY_SAMPLES`]: for each action delivery that succeeded, the time
    /// from the broker's receipt of the message (its [`Message::received`]) to the end of the
    /// delivery, retries included. A republished message starts a new measurement; a
    /// window's outputs (emitted when the window closes, not when a message arrives) and the
    /// error action are not measured.
    pub fn action_latencies(&self) -> Vec<u32> {
        self.inner.latencies.samples()
    }

    /// Compiles and installs (or replaces) rule `name`; it takes effect for the next message.
    /// A replaced rule's actions finish what they have queued; its open windows are dropped.
    ///
    /// # Errors
    ///
    /// The name, the SQL version, the statement or an action is refused; nothing changes then.
    pub fn upsert(&self, name: &str, payload: &TopicRulePayload) -> Result<(), RulesError> {
        if !is_valid_rule_name(name) {
            return Err(RulesError::InvalidName(name.to_string()));
        }
        if self.inner.queue_closed() {
            return Err(RulesError::ShutDown);
        }
        let version = match payload.aws_iot_sql_version.as_deref() {
            None => SqlVersion::default(),
            Some(v) => {
                SqlVersion::parse(v).ok_or_else(|| RulesError::InvalidSqlVersion(v.to_string()))?
            }
        };
        let rule = Rule::compile(&payload.sql, version, &self.inner.config.limits)
            .map_err(RulesError::Sql)?;
        let filter_text = rule.topic_filter().unwrap_or_default().to_string();
        // A shared subscription is a way to split messages among clients, not a filter.
        let filter = TopicFilter::new(&filter_text)
            .ok()
            .filter(|_| !filter_text.starts_with("$share/"))
            .ok_or_else(|| RulesError::InvalidTopicFilter(filter_text.clone()))?;
        if rule.is_windowed() {
            evaluation::check_windowed(&rule, &self.inner.config).map_err(RulesError::Window)?;
        }
        if payload.actions.len() > 10 {
            return Err(RulesError::InvalidAction {
                action: "actions".into(),
                reason: format!("{} actions; a rule has at most 10", payload.actions.len()),
            });
        }
        // Check every action before starting any worker.
        let mut prepared = Vec::with_capacity(payload.actions.len());
        for (i, a) in payload.actions.iter().enumerate() {
            prepared.push(action::prepare(
                &self.inner,
                a,
                version,
                &format!("actions[{i}]"),
                name,
            )?);
        }
        let error_prepared = match &payload.error_action {
            Some(a) => Some(action::prepare(
                &self.inner,
                a,
                version,
                "errorAction",
                name,
            )?),
            None => None,
        };
        let name_arc: Arc<str> = Arc::from(name);
        let mut actions = Vec::with_capacity(prepared.len());
        for (i, p) in prepared.into_iter().enumerate() {
            actions.push(self.inner.start_action(&name_arc, i, p));
        }
        let error_action = error_prepared.map(|p| self.inner.start_action(&name_arc, 99, p));
        let active = ActiveRule {
            name: name_arc,
            payload: payload.clone(),
            rule,
            filter,
            disabled: payload.rule_disabled.unwrap_or(false),
            actions,
            error_action,
            generation: self.inner.next_generation.fetch_add(1, Ordering::Relaxed),
        };
        self.inner.modify(|set| {
            set.rules.insert(name.to_string(), Arc::new(active));
        });
        tracing::info!(rule = name, "rules: rule installed");
        Ok(())
    }

    /// Removes rule `name`; true if it existed. Its actions finish what they have queued.
    pub fn remove(&self, name: &str) -> bool {
        let mut removed = false;
        self.inner
            .modify(|set| removed = set.rules.remove(name).is_some());
        removed
    }

    /// Rule `name` as installed.
    pub fn get(&self, name: &str) -> Option<TopicRulePayload> {
        self.inner
            .snapshot()
            .rules
            .get(name)
            .map(|r| r.payload.clone())
    }

    /// The names of the installed rules, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.snapshot().rules.keys().cloned().collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> RulesStats {
        self.inner.stats()
    }

    /// Installs the functions that call a service (`get_thing_shadow`, ...): until then they
    /// are Undefined, as AWS IoT SQL makes every function it cannot call. The broker's
    /// [`crate::ShadowService`] is one (`get_thing_shadow` on its store); `thingkit serve`
    /// installs it.
    pub fn set_external_functions(&self, functions: Arc<dyn ExternalFunctions>) {
        self.inner.env.set_external(functions);
    }

    /// Flushes open windows, lets every action finish what it has queued, closes the sinks
    /// (Parquet files get their footers and lose `.inprogress`) and stops the threads. The
    /// broker's shutdown calls it; after it, messages are no longer offered and
    /// [`RulesEngine::upsert`] answers [`RulesError::ShutDown`]. Blocking: call it from a
    /// blocking context (the broker runs it on the blocking pool).
    pub fn shutdown_blocking(&self) {
        let inner = &self.inner;
        let queue = inner
            .queue
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(queue) = queue {
            let (tx, rx) = sync_channel(1);
            if queue.send(Work::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
            drop(queue);
        }
        // Dropping the rules drops the action queues' senders: each worker drains and closes.
        inner.modify(|set| set.rules.clear());
        loop {
            let handles: Vec<_> =
                std::mem::take(&mut *inner.workers.lock().unwrap_or_else(|p| p.into_inner()));
            if handles.is_empty() {
                break;
            }
            for h in handles {
                let _ = h.join();
            }
        }
        inner.dead_letter.close();
    }
}

impl Inner {
    pub(crate) fn snapshot(&self) -> Arc<RuleSet> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn modify(&self, f: impl FnOnce(&mut RuleSet)) {
        let mut guard = self.rules.write().unwrap_or_else(|p| p.into_inner());
        let mut next = RuleSet {
            rules: guard.rules.clone(),
            index: SubscriptionIndex::new(),
        };
        f(&mut next);
        *guard = Arc::new(RuleSet::new(next.rules));
    }

    fn queue_closed(&self) -> bool {
        self.queue
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    pub(crate) fn add_worker(&self, handle: std::thread::JoinHandle<()>) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.retain(|h| !h.is_finished());
        workers.push(handle);
    }

    fn start_action(
        self: &Arc<Self>,
        rule: &Arc<str>,
        index: usize,
        prepared: action::Prepared,
    ) -> ActionHandle {
        action::start(self, rule, index, prepared)
    }

    fn stats(&self) -> RulesStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let arr = |a: &[AtomicU64; 3]| [l(&a[0]), l(&a[1]), l(&a[2])];
        RulesStats {
            rules: self.snapshot().rules.len() as u64,
            matched: l(&c.matched),
            fired: l(&c.fired),
            evaluation_errors: l(&c.evaluation_errors),
            queue_dropped: l(&c.queue_dropped),
            action_queue_dropped: l(&c.action_queue_dropped),
            hop_limited: l(&c.hop_limited),
            action_success: arr(&c.action_success),
            action_failure: arr(&c.action_failure),
            action_retries: arr(&c.action_retries),
            dead_lettered: l(&c.dead_lettered),
            dead_letter_failures: l(&c.dead_letter_failures),
            window_late: l(&c.window_late),
            window_over_capacity: l(&c.window_over_capacity),
            rule_not_found: l(&c.rule_not_found),
        }
    }

    /// Queues `inbound` for the evaluator without waiting; a full queue drops and counts.
    fn enqueue(&self, inbound: Inbound) -> bool {
        let queue = self.queue.read().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = queue.as_ref() else {
            return false;
        };
        match tx.try_send(Work::Message(Box::new(inbound))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                bump(&self.counters.queue_dropped);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Offers a routed message to the rules whose filter matches its topic.
    pub(crate) fn offer(&self, message: &Arc<Message>, origin: &Origin) {
        let set = self.snapshot();
        let topic: &TopicName = &message.topic;
        let mut any = false;
        set.for_each_match(topic, |r| {
            any |= !origin.provenance.rules.contains(&r.name);
        });
        if !any {
            return;
        }
        if origin.provenance.hops >= MAX_HOPS {
            bump(&self.counters.hop_limited);
            return;
        }
        self.enqueue(Inbound {
            message: message.clone(),
            origin: origin.clone(),
            timestamp_ms: super::unix_now_ms(),
            only_rule: None,
            from_window: false,
        });
    }

    /// Basic Ingest: queues `message` for rule `name` only. `Err` when the rule does not
    /// exist or is disabled (counted as RuleNotFound) or the queue is full.
    pub(crate) fn ingest(
        &self,
        name: &str,
        message: Arc<Message>,
        principal: Option<Arc<str>>,
    ) -> Result<(), IngestRefusal> {
        let set = self.snapshot();
        match set.rules.get(name) {
            Some(r) if !r.disabled => {}
            _ => {
                bump(&self.counters.rule_not_found);
                return Err(IngestRefusal::RuleNotFound);
            }
        }
        let queued = self.enqueue(Inbound {
            message,
            origin: Origin {
                principal,
                provenance: Provenance::default(),
            },
            timestamp_ms: super::unix_now_ms(),
            only_rule: Some(name.to_string()),
            from_window: false,
        });
        if queued {
            Ok(())
        } else {
            Err(IngestRefusal::QueueFull)
        }
    }
}

/// Why Basic Ingest refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IngestRefusal {
    RuleNotFound,
    QueueFull,
}

/// The evaluator thread: evaluates messages, feeds and ticks windows, until the queue closes.
fn evaluator(inner: Weak<Inner>, rx: Receiver<Work>) {
    let mut windows = evaluation::WindowSet::default();
    let tick = Duration::from_secs(1);
    let mut next_tick = std::time::Instant::now() + tick;
    loop {
        let now_ms = super::unix_now_ms();
        let mut wait = next_tick.saturating_duration_since(std::time::Instant::now());
        if let Some(deadline) = windows.next_deadline() {
            wait = wait.min(Duration::from_millis(deadline.saturating_sub(now_ms)));
        }
        let work = rx.recv_timeout(wait);
        let Some(inner) = inner.upgrade() else { return };
        match work {
            Ok(Work::Message(inbound)) => evaluate(&inner, &mut windows, &inbound),
            Ok(Work::Flush(done)) => {
                for (rule, outputs) in windows.flush_all() {
                    emit_window_outputs(&inner, &rule, outputs);
                }
                let _ = done.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = std::time::Instant::now();
        let now_ms = super::unix_now_ms();
        let due = windows.next_deadline().is_some_and(|d| d <= now_ms);
        if now >= next_tick || due {
            next_tick = now + tick;
            let set = inner.snapshot();
            windows.retain_live(&set);
            for (rule, outputs) in windows.advance_all(now_ms) {
                emit_window_outputs(&inner, &rule, outputs);
            }
        }
    }
}

fn emit_window_outputs(
    inner: &Arc<Inner>,
    rule: &Arc<ActiveRule>,
    outputs: Vec<thingkit_rules::Output>,
) {
    for output in outputs {
        bump(&inner.counters.fired);
        let inbound = Inbound {
            message: Arc::new(Message {
                topic: rule_topic_placeholder(rule),
                payload: bytes::Bytes::new(),
                qos: thingkit_mqtt::QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
                from: None,
                received: std::time::Instant::now(),
            }),
            origin: Origin::default(),
            timestamp_ms: super::unix_now_ms(),
            only_rule: None,
            from_window: true,
        };
        dispatch(inner, rule, output, Vec::new(), Arc::new(inbound));
    }
}

/// The topic a window's output is reported with (error records, templates): the rule's FROM
/// filter without wildcards is not a topic, so its literal prefix levels are used.
fn rule_topic_placeholder(rule: &ActiveRule) -> TopicName {
    let text: Vec<&str> = rule
        .filter
        .as_str()
        .split('/')
        .take_while(|l| *l != "+" && *l != "#")
        .collect();
    let joined = text.join("/");
    TopicName::new(if joined.is_empty() { "window" } else { &joined })
        .or_else(|_| TopicName::new("window"))
        .expect("\"window\" is a valid topic name literal")
}

fn evaluate(inner: &Arc<Inner>, windows: &mut evaluation::WindowSet, inbound: &Inbound) {
    let set = inner.snapshot();
    let inbound_arc: Arc<Inbound> = Arc::new(Inbound {
        message: inbound.message.clone(),
        origin: inbound.origin.clone(),
        timestamp_ms: inbound.timestamp_ms,
        only_rule: inbound.only_rule.clone(),
        from_window: inbound.from_window,
    });
    let candidates: Vec<&Arc<ActiveRule>> = match &inbound.only_rule {
        Some(name) => set.rules.get(name).into_iter().collect(),
        None => {
            let mut matched = Vec::new();
            set.for_each_match(&inbound.message.topic, |r| matched.push(r));
            matched
        }
    };
    for rule in candidates {
        if rule.disabled || inbound.origin.provenance.rules.contains(&rule.name) {
            continue;
        }
        bump(&inner.counters.matched);
        let view = inbound.view();
        if rule.rule.is_windowed() {
            match windows.push(rule, &inner.config, &view, &inner.env) {
                Ok(Pushed::Late) => bump(&inner.counters.window_late),
                Ok(Pushed::OverCapacity) => bump(&inner.counters.window_over_capacity),
                Ok(_) => {}
                Err(e) => {
                    bump(&inner.counters.evaluation_errors);
                    tracing::warn!(rule = %rule.name, error = %e, "rules: window push failed");
                }
            }
            continue;
        }
        match rule
            .rule
            .evaluate_with_variables(&view, &inner.env, &inner.config.limits)
        {
            Ok((Some(output), variables)) => {
                bump(&inner.counters.fired);
                dispatch(inner, rule, output, variables, inbound_arc.clone());
            }
            Ok((None, _)) => {}
            Err(e) => {
                bump(&inner.counters.evaluation_errors);
                tracing::warn!(rule = %rule.name, topic = %inbound.message.topic, error = %e, "rules: evaluation failed");
                // AWS runs the error action when a rule fails on a message.
                let pending = Pending::new(inner, rule, inbound_arc.clone());
                pending.fail("Rule", rule.name.as_ref(), &e.to_string());
            }
        }
    }
}

/// Hands one output to each of the rule's actions.
fn dispatch(
    inner: &Arc<Inner>,
    rule: &Arc<ActiveRule>,
    output: thingkit_rules::Output,
    variables: thingkit_rules::Variables,
    inbound: Arc<Inbound>,
) {
    if rule.actions.is_empty() {
        return;
    }
    let payload = evaluation::serialize(&output);
    let output = Arc::new(output);
    let pending = Arc::new(Pending::new(inner, rule, inbound.clone()));
    let variables = Arc::new(variables);
    for handle in &rule.actions {
        handle.submit(
            inner,
            action::Job {
                payload: payload.clone(),
                output: output.clone(),
                variables: variables.clone(),
                inbound: inbound.clone(),
                completion: action::Completion::Rule(pending.clone()),
            },
        );
    }
}

/// How a [`RulesEngine`] is reached from the broker: installed once at serve.
pub(crate) fn install(engine: &RulesEngine, shared: &Arc<Shared>) {
    let handle = tokio::runtime::Handle::current();
    if engine
        .inner
        .broker
        .set((Arc::downgrade(shared), handle))
        .is_err()
    {
        tracing::warn!(
            "rules: the engine is already installed in another broker; republish goes there"
        );
    }
}

/// Counts per action kind, for the metrics.
pub(crate) const ACTION_KINDS: [&str; 3] = ["republish", "http", "file"];

impl ActionKind {
    pub(crate) fn index(self) -> usize {
        match self {
            ActionKind::Republish => 0,
            ActionKind::Http => 1,
            ActionKind::File => 2,
        }
    }
}
