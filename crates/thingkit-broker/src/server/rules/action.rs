//! Actions: each one a bounded queue and a worker thread that performs deliveries with
//! retries; failures are gathered per (rule, message) into one error record for the rule's
//! error action, or the dead-letter file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use thingkit_mqtt::{QoS, TopicName};
use thingkit_rules::topic_rule::Action;
use thingkit_rules::{Output, SqlVersion};

use super::evaluation::{self, Template};
use super::{ActiveRule, Inbound, Inner, Origin, Provenance, RulesError, bump};

/// The kinds of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActionKind {
    Republish,
    Http,
    File,
}

impl ActionKind {
    /// AWS's name in error records (`failedAction`).
    pub(crate) fn aws_name(self) -> &'static str {
        match self {
            ActionKind::Republish => "RepublishAction",
            ActionKind::Http => "HttpAction",
            ActionKind::File => "FileAction",
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) message: String,
    /// Whether another attempt may succeed.
    pub(crate) retryable: bool,
}

impl AttemptError {
    pub(crate) fn retry(message: impl Into<String>) -> Self {
        AttemptError {
            message: message.into(),
            retryable: true,
        }
    }

    pub(crate) fn fatal(message: impl Into<String>) -> Self {
        AttemptError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What performs one action's deliveries, on its worker thread.
pub(crate) trait Performer: Send {
    /// One attempt.
    fn perform(&mut self, job: &Job, inner: &Inner) -> Result<(), AttemptError>;
    /// Called about once a second while idle and after each delivery (rolls files).
    fn tick(&mut self) {}
    /// Called once when the action is retired or the engine shuts down.
    fn close(&mut self) {}
}

/// An action checked and ready to start.
pub(crate) struct Prepared {
    kind: ActionKind,
    resource: Arc<str>,
    performer: Box<dyn Performer>,
}

/// A running action: where its deliveries are queued.
pub(crate) struct ActionHandle {
    pub(crate) kind: ActionKind,
    pub(crate) resource: Arc<str>,
    tx: SyncSender<Job>,
}

/// One delivery.
pub(crate) struct Job {
    /// The output, serialized (JSON, or the raw bytes).
    pub(crate) payload: Bytes,
    /// The output as values (for the file sinks' columns).
    pub(crate) output: Arc<Output>,
    /// The rule's SET variables (templates see them).
    pub(crate) variables: Arc<thingkit_rules::Variables>,
    /// The message the rule ran on (templates read it).
    pub(crate) inbound: Arc<Inbound>,
    pub(crate) completion: Completion,
}

/// What a delivery's outcome is reported to.
pub(crate) enum Completion {
    /// A rule's action: failures are gathered into the rule's error record.
    Rule(Arc<Pending>),
    /// The error action delivering `record`: its failure sends the record to the dead letter.
    ErrorAction(serde_json::Value),
}

/// Checks `action` and builds its performer.
pub(crate) fn prepare(
    inner: &Arc<Inner>,
    action: &Action,
    version: SqlVersion,
    path: &str,
    rule: &str,
) -> Result<Prepared, RulesError> {
    let invalid = |what: &str, reason: String| RulesError::InvalidAction {
        action: format!("{path}.{what}"),
        reason,
    };
    let limits = &inner.config.limits;
    match action {
        Action::Republish(r) => {
            let topic = Template::parse(&r.topic, version, limits)
                .map_err(|e| invalid("republish", format!("topic: {e}")))?;
            let qos = match r.qos.unwrap_or(0) {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                q => return Err(invalid("republish", format!("qos {q}: 0 or 1"))),
            };
            Ok(Prepared {
                kind: ActionKind::Republish,
                resource: Arc::from(r.topic.as_str()),
                performer: Box::new(Republish {
                    rule: Arc::from(rule),
                    topic,
                    qos,
                }),
            })
        }
        Action::Http(h) => {
            let performer = super::http::Http::new(inner, h, version)
                .map_err(|reason| invalid("http", reason))?;
            Ok(Prepared {
                kind: ActionKind::Http,
                resource: Arc::from(h.url.as_str()),
                performer: Box::new(performer),
            })
        }
        Action::File(f) => {
            let sink = super::sink::FileSink::new(inner, f).map_err(|r| invalid("file", r))?;
            Ok(Prepared {
                kind: ActionKind::File,
                resource: Arc::from(f.path.as_str()),
                performer: Box::new(sink),
            })
        }
        _ => Err(invalid("?", "this action is not supported".into())),
    }
}

/// Starts the worker of `prepared` for `rule`.
pub(crate) fn start(
    inner: &Arc<Inner>,
    rule: &Arc<str>,
    index: usize,
    prepared: Prepared,
) -> ActionHandle {
    let (tx, rx) = sync_channel(inner.config.action_queue_size.max(1));
    let Prepared {
        kind,
        resource,
        performer,
    } = prepared;
    let worker_inner = inner.clone();
    let worker_resource = resource.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("rule-{rule}-{index}"))
        .spawn(move || run(worker_inner, kind, worker_resource, performer, rx));
    match spawned {
        Ok(handle) => inner.add_worker(handle),
        Err(e) => tracing::error!(rule = %rule, error = %e, "rules: cannot start an action worker"),
    }
    ActionHandle { kind, resource, tx }
}

impl ActionHandle {
    /// Queues `job` without waiting; a full queue fails it at once ("queue full").
    pub(crate) fn submit(&self, inner: &Inner, job: Job) {
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                bump(&inner.counters.action_queue_dropped);
                job.fail(
                    inner,
                    self.kind,
                    &self.resource,
                    "the action's queue is full".into(),
                );
            }
            Err(TrySendError::Disconnected(job)) => {
                job.fail(
                    inner,
                    self.kind,
                    &self.resource,
                    "the action's worker stopped".into(),
                );
            }
        }
    }
}

fn run(
    inner: Arc<Inner>,
    kind: ActionKind,
    resource: Arc<str>,
    mut performer: Box<dyn Performer>,
    rx: Receiver<Job>,
) {
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(job) => {
                deliver(&inner, kind, &resource, performer.as_mut(), job);
                performer.tick();
            }
            Err(RecvTimeoutError::Timeout) => performer.tick(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    performer.close();
}

fn deliver(
    inner: &Inner,
    kind: ActionKind,
    resource: &str,
    performer: &mut dyn Performer,
    job: Job,
) {
    let config = &inner.config;
    let mut backoff = config.retry_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match performer.perform(&job, inner) {
            Ok(()) => {
                bump(&inner.counters.action_success[kind.index()]);
                if matches!(job.completion, Completion::Rule(_)) && !job.inbound.from_window {
                    inner.latencies.record_since(job.inbound.message.received);
                }
                return;
            }
            Err(e) if e.retryable && attempt < config.retry_attempts.max(1) => {
                bump(&inner.counters.action_retries[kind.index()]);
                tracing::debug!(action = kind.aws_name(), resource, attempt, error = %e.message, "rules: retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(config.retry_backoff_max);
            }
            Err(e) => {
                bump(&inner.counters.action_failure[kind.index()]);
                tracing::warn!(action = kind.aws_name(), resource, attempts = attempt, error = %e.message, "rules: action failed");
                job.fail(inner, kind, resource, e.message);
                return;
            }
        }
    }
}

impl Job {
    /// Reports that the delivery failed for good.
    fn fail(self, inner: &Inner, kind: ActionKind, resource: &str, message: String) {
        match self.completion {
            Completion::Rule(pending) => pending.add(kind.aws_name(), resource, &message),
            Completion::ErrorAction(mut record) => {
                if let Some(obj) = record.as_object_mut() {
                    obj.insert(
                        "errorActionFailure".into(),
                        serde_json::json!({
                            "failedAction": kind.aws_name(),
                            "failedResource": resource,
                            "errorMessage": message,
                        }),
                    );
                }
                inner.dead_letter.write(inner, &record);
            }
        }
    }
}

/// The failures of one (rule, message): when the last of its deliveries is done (the last
/// clone drops), a non-empty list becomes one error record.
pub(crate) struct Pending {
    inner: Arc<Inner>,
    rule: Arc<ActiveRule>,
    inbound: Arc<Inbound>,
    failures: Mutex<Vec<serde_json::Value>>,
}

impl Pending {
    pub(crate) fn new(inner: &Arc<Inner>, rule: &Arc<ActiveRule>, inbound: Arc<Inbound>) -> Self {
        Pending {
            inner: inner.clone(),
            rule: rule.clone(),
            inbound,
            failures: Mutex::new(Vec::new()),
        }
    }

    fn add(&self, action: &str, resource: &str, message: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(serde_json::json!({
                "failedAction": action,
                "failedResource": resource,
                "errorMessage": message,
            }));
    }

    /// Records a failure that is not an action's (the rule itself failed) and reports it.
    pub(crate) fn fail(self, action: &str, resource: &str, message: &str) {
        self.add(action, resource, message);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let failures =
            std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        if failures.is_empty() {
            return;
        }
        let message = &self.inbound.message;
        let record = serde_json::json!({
            "ruleName": self.rule.name.as_ref(),
            "topic": message.topic.as_str(),
            "cloudwatchTraceId": self.inner.env.uuid(),
            "clientId": message.from.as_deref().unwrap_or("n/a"),
            "base64OriginalPayload": base64::engine::general_purpose::STANDARD.encode(&message.payload),
            "failures": failures,
        });
        match &self.rule.error_action {
            Some(handle) => {
                let payload = Bytes::from(record.to_string().into_bytes());
                handle.submit(
                    &self.inner,
                    Job {
                        payload,
                        output: Arc::new(Output::Json(evaluation::value_of_json(&record))),
                        variables: Arc::new(Vec::new()),
                        inbound: self.inbound.clone(),
                        completion: Completion::ErrorAction(record),
                    },
                );
            }
            None => self.inner.dead_letter.write(&self.inner, &record),
        }
    }
}

/// The dead-letter file: JSON lines, appended and flushed one record at a time.
pub(crate) struct DeadLetter {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl DeadLetter {
    pub(crate) fn new(path: PathBuf) -> Self {
        DeadLetter {
            path,
            file: Mutex::new(None),
        }
    }

    pub(crate) fn write(&self, inner: &Inner, record: &serde_json::Value) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| -> std::io::Result<()> {
            if file.is_none() {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                *file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)?,
                );
            }
            let mut line = record.to_string().into_bytes();
            line.push(b'\n');
            match file.as_mut() {
                Some(f) => f.write_all(&line),
                None => Ok(()),
            }
        })();
        match result {
            Ok(()) => {
                inner.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *file = None;
                bump(&inner.counters.dead_letter_failures);
                tracing::error!(path = %self.path.display(), error = %e, record = %record, "rules: cannot write the dead-letter file: record lost");
            }
        }
    }

    pub(crate) fn close(&self) {
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = f.sync_all();
        }
    }
}

/// Whether `topic` is one of AWS's reserved job topics (`$aws/things/{thing}/jobs/...`,
/// `$aws/events/job/...`, `$aws/events/jobExecution/...`), which a rule may not republish to.
fn is_reserved_job_topic(topic: &str) -> bool {
    let mut levels = topic.split('/');
    matches!(
        (levels.next(), levels.next(), levels.next(), levels.next()),
        (Some("$aws"), Some("things"), Some(_), Some("jobs"))
            | (
                Some("$aws"),
                Some("events"),
                Some("job" | "jobExecution"),
                _
            )
    )
}

/// The republish action: through the broker's own routing.
struct Republish {
    rule: Arc<str>,
    topic: Template,
    qos: QoS,
}

impl Performer for Republish {
    fn perform(&mut self, job: &Job, inner: &Inner) -> Result<(), AttemptError> {
        let text = self
            .topic
            .render(&job.inbound.view(), &inner.env, &job.variables)
            .map_err(|e| AttemptError::fatal(format!("topic template: {e}")))?;
        let topic = TopicName::new(&text)
            .map_err(|e| AttemptError::fatal(format!("topic {text:?}: {e}")))?;
        let Some((weak, runtime)) = inner.broker.get() else {
            return Err(AttemptError::retry(
                "the rules engine is not installed in a broker",
            ));
        };
        let Some(shared) = weak.upgrade() else {
            return Err(AttemptError::fatal("the broker has stopped"));
        };
        let mut provenance: Provenance = job.inbound.origin.provenance.clone();
        if !provenance.rules.contains(&self.rule) {
            provenance.rules.push(self.rule.clone());
        }
        provenance.hops = provenance.hops.saturating_add(1);
        let message = Arc::new(crate::Message {
            topic,
            payload: job.payload.clone(),
            qos: self.qos,
            retain: false,
            properties: Default::default(),
            from: None,
            received: std::time::Instant::now(),
        });
        shared.stats.publishes_in.fetch_add(1, Ordering::Relaxed);
        let origin = Origin {
            principal: None,
            provenance,
        };
        let route = |message: &Arc<crate::Message>| -> Result<(), AttemptError> {
            // A republish is not acknowledged to anyone: the bridge's confirmation is not
            // waited for.
            let (routed, _) =
                super::super::connection::route_message_from(&shared, message, &origin)
                    .map_err(|e| AttemptError::retry(e.to_string()))?;
            if !routed.blocked.is_empty() {
                runtime
                    .block_on(super::super::connection::place_blocked(
                        &shared,
                        routed.blocked,
                    ))
                    .map_err(|e| AttemptError::retry(e.to_string()))?;
            }
            Ok(())
        };
        // A topic a broker service claims (a shadow's `update`) goes to the service, as a
        // client's publish would: AWS's republish to `$$aws/things/T/shadow/update` updates the
        // shadow. A service that takes no republished messages (jobs, provisioning, Basic
        // Ingest) fails the action.
        if is_reserved_job_topic(message.topic.as_str()) {
            return Err(AttemptError::fatal(format!(
                "republishing to {} is not supported: AWS IoT does not republish to the reserved job topics",
                message.topic.as_str()
            )));
        }
        if let Some(service) = shared.services.find(&message.topic) {
            let Some(response) = service.handle_internal(&message) else {
                return Err(AttemptError::fatal(format!(
                    "republishing to {} is not supported: the {} service takes no republished messages",
                    message.topic.as_str(),
                    service.name()
                )));
            };
            if !response.code.is_success() {
                return Err(AttemptError::fatal(format!(
                    "{} refused the republished message: {}",
                    service.name(),
                    response.reason.as_deref().unwrap_or("no reason given")
                )));
            }
            for publish in &response.publishes {
                let topic = TopicName::new(&publish.topic)
                    .map_err(|e| AttemptError::fatal(format!("topic {:?}: {e}", publish.topic)))?;
                route(&Arc::new(crate::Message {
                    topic,
                    payload: publish.payload.clone().into(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: Default::default(),
                    from: None,
                    received: std::time::Instant::now(),
                }))?;
            }
            return match response.disposition {
                super::super::Disposition::Route { .. } => route(&message),
                _ => Ok(()),
            };
        }
        route(&message)
    }
}

#[cfg(test)]
mod republish_tests {
    use super::is_reserved_job_topic;

    #[test]
    fn reserved_job_topics_are_recognised() {
        assert!(is_reserved_job_topic("$aws/things/t/jobs/get"));
        assert!(is_reserved_job_topic("$aws/things/t/jobs/j1/update"));
        assert!(is_reserved_job_topic("$aws/events/job/j1/completed"));
        assert!(is_reserved_job_topic(
            "$aws/events/jobExecution/j1/succeeded"
        ));
        assert!(!is_reserved_job_topic("$aws/things/t/shadow/update"));
        assert!(!is_reserved_job_topic("things/t/jobs/get"));
        assert!(!is_reserved_job_topic("$aws/things/jobs"));
    }
}
