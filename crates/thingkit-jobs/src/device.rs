//! The device MQTT API (digest B.3) as a pure function: [`handle`] takes one thing's executions,
//! a request topic and payload and the time, and returns the executions to write and the
//! messages to publish (`.../accepted` or `.../rejected`, then `/notify` and `/notify-next`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thingkit_json::{Kind, Member};

use crate::error::Error;
use crate::execution::{DeviceUpdate, ExecutionStatus, JobExecution};
use crate::job::JobId;

/// Longest thing name (BOTO `ThingName`).
pub const MAX_THING_NAME: usize = 128;

/// Limits on device requests. `Default` gives AWS's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload in bytes, checked before parsing (InvalidJson). Default 131,072 (the
    /// AWS IoT MQTT payload limit).
    pub max_payload_bytes: usize,
    /// Longest `clientToken` in bytes (InvalidRequest). Default 64.
    pub max_client_token_bytes: usize,
    /// Most JSON values in one request, a bound on parsing work. Default 10,000.
    pub max_json_values: usize,
    /// Most pending executions listed in a `/notify` message. Default 10 (JCN23; 15 applies
    /// only with scheduling configurations).
    pub max_notified_executions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 128 * 1024,
            max_client_token_bytes: 64,
            max_json_values: 10_000,
            max_notified_executions: 10,
        }
    }
}

impl Limits {
    /// These limits with `max_payload_bytes` replaced.
    pub fn with_max_payload_bytes(mut self, n: usize) -> Self {
        self.max_payload_bytes = n;
        self
    }
    /// These limits with `max_notified_executions` replaced.
    pub fn with_max_notified_executions(mut self, n: usize) -> Self {
        self.max_notified_executions = n;
        self
    }
}

/// Which execution a `/{jobId}/get` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    /// `$next`: the first pending execution.
    Next,
    /// A job id.
    Id(JobId),
}

/// A device request, read from its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `/get`: GetPendingJobExecutions.
    GetPending,
    /// `/start-next`: StartNextPendingJobExecution.
    StartNext,
    /// `/{jobId}/get`: DescribeJobExecution.
    Describe(JobRef),
    /// `/{jobId}/update`: UpdateJobExecution.
    Update(JobId),
    /// A topic under a request filter with an invalid thing name or job id: answered with
    /// InvalidTopic on the topic followed by `/rejected` (F-J14).
    Invalid {
        /// The request topic.
        topic: String,
        /// What is wrong.
        detail: String,
    },
}

/// The topic filters a broker service claims for the device jobs API.
pub fn request_filters() -> [&'static str; 4] {
    [
        "$aws/things/+/jobs/get",
        "$aws/things/+/jobs/start-next",
        "$aws/things/+/jobs/+/get",
        "$aws/things/+/jobs/+/update",
    ]
}

/// Whether `name` is a valid thing name: 1–128 characters of `[a-zA-Z0-9:_-]`.
pub fn is_valid_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_THING_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Reads a request topic: `None` when `topic` matches none of [`request_filters`]; otherwise
/// the thing name (as written in the topic) and the request.
pub fn parse_request_topic(topic: &str) -> Option<(&str, Request)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("jobs/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let request = match parts.as_slice() {
        ["get"] => Request::GetPending,
        ["start-next"] => Request::StartNext,
        [job, op @ ("get" | "update")] => {
            let job_ref = if *job == "$next" && *op == "get" {
                Ok(JobRef::Next)
            } else {
                JobId::new(job).map(JobRef::Id)
            };
            match (job_ref, *op) {
                (Ok(r), "get") => Request::Describe(r),
                (Ok(JobRef::Id(id)), _) => Request::Update(id),
                (Ok(JobRef::Next), _) | (Err(_), _) => Request::Invalid {
                    topic: topic.to_owned(),
                    detail: format!("invalid jobId \"{job}\""),
                },
            }
        }
        _ => return None,
    };
    if thing.contains(['+', '#']) || thing.is_empty() {
        return None;
    }
    if !is_valid_thing_name(thing) {
        return Some((
            thing,
            Request::Invalid {
                topic: topic.to_owned(),
                detail: format!("invalid thingName \"{thing}\""),
            },
        ));
    }
    Some((thing, request))
}

/// One of the thing's executions with its job's document (JSON text of an object, as checked
/// by [`crate::job::check_document`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingJob {
    /// The execution.
    pub execution: JobExecution,
    /// The job document.
    pub document: String,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// The topic.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// What a request leads to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Executions to store (durably) before publishing.
    pub writes: Vec<JobExecution>,
    /// Messages to publish, in order.
    pub publishes: Vec<OutMessage>,
}

/// The pending executions (IN_PROGRESS first, then QUEUED; each by queue time, then job id), as
/// JCN23 orders them.
pub fn pending(executions: &[ThingJob]) -> Vec<&ThingJob> {
    let mut p: Vec<&ThingJob> = executions
        .iter()
        .filter(|t| !t.execution.status.is_terminal())
        .collect();
    p.sort_by(|a, b| {
        let key = |t: &ThingJob| {
            (
                t.execution.status != ExecutionStatus::InProgress,
                t.execution.queued_at,
                t.execution.job_id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    p
}

/// Handles one request for `thing`, whose executions (any order, terminal ones included) are
/// `current`, at `now` (Unix seconds; F-J1). Never panics, whatever the payload.
pub fn handle(
    thing: &str,
    current: &[ThingJob],
    request: &Request,
    payload: &[u8],
    now: u64,
    limits: &Limits,
) -> Outcome {
    let base = match request {
        Request::GetPending => format!("$aws/things/{thing}/jobs/get"),
        Request::StartNext => format!("$aws/things/{thing}/jobs/start-next"),
        Request::Describe(JobRef::Next) => format!("$aws/things/{thing}/jobs/$next/get"),
        Request::Describe(JobRef::Id(id)) => format!("$aws/things/{thing}/jobs/{id}/get"),
        Request::Update(id) => format!("$aws/things/{thing}/jobs/{id}/update"),
        Request::Invalid { topic, .. } => topic.clone(),
    };
    // The topic is judged before the payload.
    if let Request::Invalid { detail, .. } = request {
        let e = Error::InvalidTopic {
            detail: detail.clone(),
        };
        return reject(&base, &e, None, None, now);
    }
    let fields = match read_payload(payload, limits) {
        Ok(f) => f,
        Err((e, token)) => return reject(&base, &e, token.as_deref(), None, now),
    };
    let token = fields.client_token.as_deref();
    match answer(current, request, &fields, now) {
        Ok((body, write)) => {
            let mut out = Outcome::default();
            let mut payload = body;
            finish(&mut payload, now, token);
            out.publishes.push(OutMessage {
                topic: format!("{base}/accepted"),
                payload: payload.into_bytes(),
            });
            if let Some(w) = write {
                let after: Vec<ThingJob> = current
                    .iter()
                    .map(|t| {
                        if t.execution.job_id == w.job_id {
                            ThingJob {
                                execution: w.clone(),
                                document: t.document.clone(),
                            }
                        } else {
                            t.clone()
                        }
                    })
                    .collect();
                out.publishes
                    .extend(notifications(thing, current, &after, now, limits));
                out.writes.push(w);
            }
            out
        }
        Err(err) => {
            let (e, state) = *err;
            reject(&base, &e, token, state.as_ref(), now)
        }
    }
}

/// The `/notify` and `/notify-next` messages for `thing` when its executions change from
/// `before` to `after`: `/notify` when an execution is added to or removed from the pending
/// list (F-J3), `/notify-next` when the first pending execution changes (JMQ23).
pub fn notifications(
    thing: &str,
    before: &[ThingJob],
    after: &[ThingJob],
    now: u64,
    limits: &Limits,
) -> Vec<OutMessage> {
    let (pb, pa) = (pending(before), pending(after));
    let ids = |p: &[&ThingJob]| -> Vec<JobId> {
        let mut v: Vec<JobId> = p.iter().map(|t| t.execution.job_id.clone()).collect();
        v.sort();
        v
    };
    let mut out = Vec::new();
    if ids(&pb) != ids(&pa) {
        let mut s = String::from("{\"timestamp\":");
        let _ = write!(s, "{now},\"jobs\":{{");
        let shown: Vec<&&ThingJob> = pa.iter().take(limits.max_notified_executions).collect();
        let mut first_group = true;
        for status in [ExecutionStatus::InProgress, ExecutionStatus::Queued] {
            let group: Vec<&&&ThingJob> = shown
                .iter()
                .filter(|t| t.execution.status == status)
                .collect();
            if group.is_empty() {
                continue;
            }
            if !first_group {
                s.push(',');
            }
            first_group = false;
            push_str(&mut s, status.as_str());
            s.push_str(":[");
            for (i, t) in group.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_summary(&mut s, &t.execution);
            }
            s.push(']');
        }
        s.push_str("}}");
        out.push(OutMessage {
            topic: format!("$aws/things/{thing}/jobs/notify"),
            payload: s.into_bytes(),
        });
    }
    let first = |p: &[&ThingJob]| p.first().map(|t| t.execution.job_id.clone());
    if first(&pb) != first(&pa) {
        let mut s = format!("{{\"timestamp\":{now}");
        if let Some(t) = pa.first() {
            s.push_str(",\"execution\":");
            write_execution(&mut s, &t.execution, Some(&t.document), now);
        }
        s.push('}');
        out.push(OutMessage {
            topic: format!("$aws/things/{thing}/jobs/notify-next"),
            payload: s.into_bytes(),
        });
    }
    out
}

/// The fields a request may carry, read and type-checked.
#[derive(Debug, Default)]
struct Fields {
    client_token: Option<String>,
    update: DeviceUpdate,
    include_job_document: Option<bool>,
    include_job_execution_state: Option<bool>,
}

/// The accepted body (without timestamp and token) and the execution to write; or the error
/// and the execution state to attach to it (boxed: it is large and the rare path).
type Answer = Result<(String, Option<JobExecution>), Box<(Error, Option<JobExecution>)>>;

fn answer(current: &[ThingJob], request: &Request, f: &Fields, now: u64) -> Answer {
    let not_found = |id: &JobId| Error::ResourceNotFound {
        detail: format!("Job execution of job {id} not found"),
    };
    match request {
        Request::GetPending => {
            let p = pending(current);
            let mut s = String::from("{\"inProgressJobs\":[");
            write_summaries(&mut s, &p, ExecutionStatus::InProgress);
            s.push_str("],\"queuedJobs\":[");
            write_summaries(&mut s, &p, ExecutionStatus::Queued);
            s.push(']');
            Ok((s, None))
        }
        Request::StartNext => {
            let p = pending(current);
            let Some(next) = p.first() else {
                // Nothing pending: no `execution` member (B.3).
                return Ok((String::from("{"), None));
            };
            let e = &next.execution;
            if let Some(d) = &f.update.status_details {
                crate::execution::check_status_details(d).map_err(|x| Box::new((x, None)))?;
            }
            let written = if e.status == ExecutionStatus::Queued {
                let update = DeviceUpdate {
                    status: Some(ExecutionStatus::InProgress),
                    status_details: f.update.status_details.clone(),
                    step_timeout_minutes: f.update.step_timeout_minutes,
                    ..DeviceUpdate::default()
                };
                Some(
                    e.apply_device_update(&update, now)
                        .map_err(|x| Box::new((x, None)))?,
                )
            } else if f.update.step_timeout_minutes.is_some() {
                // F-J9: an IN_PROGRESS execution keeps its statusDetails; only a new step timer
                // changes it (and so its version).
                let update = DeviceUpdate {
                    status: Some(ExecutionStatus::InProgress),
                    step_timeout_minutes: f.update.step_timeout_minutes,
                    ..DeviceUpdate::default()
                };
                Some(
                    e.apply_device_update(&update, now)
                        .map_err(|x| Box::new((x, None)))?,
                )
            } else {
                None
            };
            let shown = written.as_ref().unwrap_or(e);
            let mut s = String::from("{\"execution\":");
            write_execution(&mut s, shown, Some(&next.document), now);
            Ok((s, written))
        }
        Request::Describe(r) => {
            let found = match r {
                JobRef::Next => pending(current).first().copied(),
                JobRef::Id(id) => current.iter().find(|t| &t.execution.job_id == id),
            };
            let Some(t) = found else {
                return Err(Box::new((
                    match r {
                        JobRef::Id(id) => not_found(id),
                        JobRef::Next => Error::ResourceNotFound {
                            detail: "No pending job execution".to_owned(),
                        },
                    },
                    None,
                )));
            };
            if let Some(n) = f.update.execution_number
                && n != t.execution.execution_number
            {
                return Err(Box::new((not_found(&t.execution.job_id), None)));
            }
            let doc = f
                .include_job_document
                .unwrap_or(true)
                .then_some(t.document.as_str());
            let mut s = String::from("{\"execution\":");
            write_execution(&mut s, &t.execution, doc, now);
            Ok((s, None))
        }
        Request::Update(id) => {
            let Some(t) = current.iter().find(|t| &t.execution.job_id == id) else {
                return Err(Box::new((not_found(id), None)));
            };
            let next = t
                .execution
                .apply_device_update(&f.update, now)
                .map_err(|e| {
                    let state = e.carries_execution_state().then(|| t.execution.clone());
                    Box::new((e, state))
                })?;
            let mut s = String::from("{");
            let mut comma = false;
            if f.include_job_execution_state.unwrap_or(false) {
                s.push_str("\"executionState\":");
                write_state(&mut s, &next);
                comma = true;
            }
            if f.include_job_document.unwrap_or(false) {
                if comma {
                    s.push(',');
                }
                s.push_str("\"jobDocument\":");
                s.push_str(&t.document);
            }
            Ok((s, Some(next)))
        }
        Request::Invalid { detail, .. } => Err(Box::new((
            Error::InvalidTopic {
                detail: detail.clone(),
            },
            None,
        ))),
    }
}

/// Appends `"timestamp"` and `"clientToken"` and closes an object opened by the caller.
fn finish(s: &mut String, now: u64, token: Option<&str>) {
    if !s.ends_with('{') {
        s.push(',');
    }
    let _ = write!(s, "\"timestamp\":{now}");
    if let Some(t) = token {
        s.push_str(",\"clientToken\":");
        push_str(s, t);
    }
    s.push('}');
}

fn reject(
    base: &str,
    e: &Error,
    token: Option<&str>,
    state: Option<&JobExecution>,
    now: u64,
) -> Outcome {
    Outcome {
        writes: Vec::new(),
        publishes: vec![rejection(&format!("{base}/rejected"), e, token, state, now)],
    }
}

/// The error document `{code, message, clientToken?, timestamp, executionState?}` (JAPI23).
fn rejection(
    topic: &str,
    e: &Error,
    token: Option<&str>,
    state: Option<&JobExecution>,
    now: u64,
) -> OutMessage {
    let mut s = String::from("{\"code\":");
    push_str(&mut s, e.code());
    s.push_str(",\"message\":");
    push_str(&mut s, &e.to_string());
    if let Some(t) = token {
        s.push_str(",\"clientToken\":");
        push_str(&mut s, t);
    }
    let _ = write!(s, ",\"timestamp\":{now}");
    if let Some(x) = state {
        s.push_str(",\"executionState\":");
        write_state(&mut s, x);
    }
    s.push('}');
    OutMessage {
        topic: topic.to_owned(),
        payload: s.into_bytes(),
    }
}

/// The rejection a driver sends when its store fails: InternalError on `topic`'s `/rejected`.
pub fn internal_error(topic: &str, detail: &str, now: u64) -> OutMessage {
    rejection(
        &format!("{topic}/rejected"),
        &Error::InternalError {
            detail: detail.to_owned(),
        },
        None,
        None,
        now,
    )
}

fn push_str(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

fn write_details(s: &mut String, d: &BTreeMap<String, String>) {
    s.push('{');
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_str(s, k);
        s.push(':');
        push_str(s, v);
    }
    s.push('}');
}

fn write_summaries(s: &mut String, pending: &[&ThingJob], status: ExecutionStatus) {
    let group = pending.iter().filter(|t| t.execution.status == status);
    for (i, t) in group.enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_summary(s, &t.execution);
    }
}

/// JobExecutionSummary: `{jobId, queuedAt, startedAt?, lastUpdatedAt, versionNumber,
/// executionNumber}`.
fn write_summary(s: &mut String, e: &JobExecution) {
    s.push_str("{\"jobId\":");
    push_str(s, e.job_id.as_str());
    let _ = write!(s, ",\"queuedAt\":{}", e.queued_at);
    if let Some(t) = e.started_at {
        let _ = write!(s, ",\"startedAt\":{t}");
    }
    let _ = write!(
        s,
        ",\"lastUpdatedAt\":{},\"versionNumber\":{},\"executionNumber\":{}}}",
        e.last_updated_at, e.version_number, e.execution_number
    );
}

/// JobExecutionState: `{status, statusDetails?, versionNumber}`.
fn write_state(s: &mut String, e: &JobExecution) {
    s.push_str("{\"status\":");
    push_str(s, e.status.as_str());
    if !e.status_details.is_empty() {
        s.push_str(",\"statusDetails\":");
        write_details(s, &e.status_details);
    }
    let _ = write!(s, ",\"versionNumber\":{}}}", e.version_number);
}

/// JobExecution: `{jobId, thingName, jobDocument?, status, statusDetails?, queuedAt,
/// startedAt?, lastUpdatedAt, approximateSecondsBeforeTimedOut?, versionNumber,
/// executionNumber}`; `jobDocument` is the document object itself (JCN23).
fn write_execution(s: &mut String, e: &JobExecution, document: Option<&str>, now: u64) {
    s.push_str("{\"jobId\":");
    push_str(s, e.job_id.as_str());
    s.push_str(",\"thingName\":");
    push_str(s, &e.thing_name);
    if let Some(d) = document {
        s.push_str(",\"jobDocument\":");
        s.push_str(d);
    }
    s.push_str(",\"status\":");
    push_str(s, e.status.as_str());
    if !e.status_details.is_empty() {
        s.push_str(",\"statusDetails\":");
        write_details(s, &e.status_details);
    }
    let _ = write!(s, ",\"queuedAt\":{}", e.queued_at);
    if let Some(t) = e.started_at {
        let _ = write!(s, ",\"startedAt\":{t}");
    }
    let _ = write!(s, ",\"lastUpdatedAt\":{}", e.last_updated_at);
    if let Some(secs) = e.seconds_before_timed_out(now) {
        let _ = write!(s, ",\"approximateSecondsBeforeTimedOut\":{secs}");
    }
    let _ = write!(
        s,
        ",\"versionNumber\":{},\"executionNumber\":{}}}",
        e.version_number, e.execution_number
    );
}

/// The request's fields, or the error with the clientToken to echo (when it could be read).
fn read_payload(payload: &[u8], limits: &Limits) -> Result<Fields, (Error, Option<String>)> {
    let json = |detail: String| (Error::InvalidJson { detail }, None);
    if payload.len() > limits.max_payload_bytes {
        return Err(json(format!(
            "payload is {} bytes, more than {}",
            payload.len(),
            limits.max_payload_bytes
        )));
    }
    let mut f = Fields::default();
    // An empty payload is an empty request (the SDKs send `{}`, some clients nothing).
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(f);
    }
    let text = std::str::from_utf8(payload).map_err(|e| json(format!("not UTF-8: {e}")))?;
    let parsed = thingkit_json::parse(
        text,
        thingkit_json::Limits::default().with_max_values(limits.max_json_values),
    )
    .map_err(|e| json(e.to_string()))?;
    if let Some(d) = parsed.duplicates.first() {
        return Err(json(format!(
            "duplicate key \"{}\" at byte {}",
            d.key, d.offset
        )));
    }
    let Kind::Object(members) = parsed.root.kind else {
        return Err(json("the request must be a JSON object".to_owned()));
    };
    // clientToken first, so that later errors can echo it.
    if let Some(m) = members.iter().find(|m| m.key == "clientToken") {
        match &m.value.kind {
            Kind::String(t) if !t.is_empty() && t.len() <= limits.max_client_token_bytes => {
                f.client_token = Some(t.to_string());
            }
            _ => {
                return Err((
                    Error::request(format!(
                        "clientToken must be a string of 1 to {} bytes",
                        limits.max_client_token_bytes
                    )),
                    None,
                ));
            }
        }
    }
    for m in &members {
        if let Err(e) = read_field(&mut f, m) {
            return Err((e, f.client_token));
        }
    }
    Ok(f)
}

fn read_field(f: &mut Fields, m: &Member<'_>) -> Result<(), Error> {
    let bad = |what: &str| Error::request(format!("{} must be {what}", m.key));
    let uint = |k: &Kind<'_>| -> Option<u64> {
        match k {
            Kind::Number(n) => n.parse().ok(),
            _ => None,
        }
    };
    match m.key.as_ref() {
        "status" => match &m.value.kind {
            Kind::String(s) => {
                f.update.status = Some(
                    ExecutionStatus::parse(s)
                        .ok_or_else(|| Error::request(format!("unknown status \"{s}\"")))?,
                );
            }
            _ => return Err(bad("a string")),
        },
        "statusDetails" => match &m.value.kind {
            Kind::Object(pairs) => {
                let mut d = BTreeMap::new();
                for p in pairs {
                    match &p.value.kind {
                        Kind::String(v) => {
                            d.insert(p.key.to_string(), v.to_string());
                        }
                        _ => return Err(bad("an object of strings")),
                    }
                }
                f.update.status_details = Some(d);
            }
            _ => return Err(bad("an object of strings")),
        },
        // The embedded SDK sends the version as a string (ESDK-J): both are accepted.
        "expectedVersion" => {
            let v = match &m.value.kind {
                Kind::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse().ok()
                }
                k => uint(k),
            };
            f.update.expected_version = Some(v.ok_or_else(|| bad("a non-negative integer"))?);
        }
        "executionNumber" => {
            f.update.execution_number =
                Some(uint(&m.value.kind).ok_or_else(|| bad("a non-negative integer"))?);
        }
        "stepTimeoutInMinutes" => match &m.value.kind {
            Kind::Number(n) => {
                f.update.step_timeout_minutes = Some(n.parse().map_err(|_| bad("an integer"))?);
            }
            _ => return Err(bad("an integer")),
        },
        "includeJobDocument" => match m.value.kind {
            Kind::Bool(b) => f.include_job_document = Some(b),
            _ => return Err(bad("a boolean")),
        },
        "includeJobExecutionState" => match m.value.kind {
            Kind::Bool(b) => f.include_job_execution_state = Some(b),
            _ => return Err(bad("a boolean")),
        },
        // clientToken was read first; other keys are ignored, as AWS does.
        _ => {}
    }
    Ok(())
}
