//! [`handle`]: one request against the stored shadow, as a pure function.

use thingkit_json::{Kind, Member, Node as Json};

use crate::document::{
    Section, delta, merge, write_delta, write_delta_meta, write_json, write_json_meta,
    write_section, write_section_meta, write_str, write_u64,
};
use crate::error::Error;
use crate::stored::{Body, Document, StoredShadow};
use crate::topic::{Operation, ShadowKey};

/// Limits on requests. `Default` gives AWS's values (digest A.7); each has a `with_*` setter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request payload in bytes, checked before anything is parsed (413). Default
    /// 131,072: AWS IoT's MQTT payload limit (LIM20).
    pub max_payload_bytes: usize,
    /// Largest desired + reported state after the merge, measured as the compact JSON
    /// `{"desired":...,"reported":...}`, metadata excluded (413; R-21, F-S2). Default 8,192.
    pub max_state_bytes: usize,
    /// Deepest nesting inside desired and reported, counting the section name as level 1
    /// (`desired.one.two.three.four.five` is 6) and array elements as levels (400; F-S1).
    /// Default 6. Values above [`MAX_STORED_DEPTH`](crate::MAX_STORED_DEPTH) − 2 are treated as
    /// that.
    pub max_depth: usize,
    /// Longest `clientToken` in bytes (400; R-17). Default 64.
    pub max_client_token_bytes: usize,
    /// Most JSON values (scalars, arrays, objects) in one request, a bound on parsing work.
    /// Default 10,000.
    pub max_json_values: usize,
    /// How long a deleted shadow's version is remembered: a shadow re-created within this many
    /// seconds continues the version, later it starts again at 1 (R-20, F-S4). Default 172,800
    /// (48 hours).
    pub deleted_version_retention_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 128 * 1024,
            max_state_bytes: 8 * 1024,
            max_depth: 6,
            max_client_token_bytes: 64,
            max_json_values: 10_000,
            deleted_version_retention_secs: 48 * 3600,
        }
    }
}

impl Limits {
    /// These limits with `max_payload_bytes` replaced.
    pub fn with_max_payload_bytes(mut self, n: usize) -> Self {
        self.max_payload_bytes = n;
        self
    }
    /// These limits with `max_state_bytes` replaced.
    pub fn with_max_state_bytes(mut self, n: usize) -> Self {
        self.max_state_bytes = n;
        self
    }
    /// These limits with `max_depth` replaced.
    pub fn with_max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
    /// These limits with `max_client_token_bytes` replaced.
    pub fn with_max_client_token_bytes(mut self, n: usize) -> Self {
        self.max_client_token_bytes = n;
        self
    }
    /// These limits with `max_json_values` replaced.
    pub fn with_max_json_values(mut self, n: usize) -> Self {
        self.max_json_values = n;
        self
    }
    /// These limits with `deleted_version_retention_secs` replaced.
    pub fn with_deleted_version_retention_secs(mut self, secs: u64) -> Self {
        self.deleted_version_retention_secs = secs;
        self
    }

    fn depth(&self) -> usize {
        self.max_depth.min(crate::MAX_STORED_DEPTH - 2)
    }
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// The topic, e.g. `$aws/things/lamp/shadow/update/accepted`.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// What a request leads to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The new stored value to write before publishing; `None` when nothing changes (a get, a
    /// rejection).
    pub write: Option<StoredShadow>,
    /// The messages to publish, in order.
    pub publishes: Vec<OutMessage>,
}

/// Handles one request: the current stored value (`None` if the shadow never existed), the
/// request, the time (Unix seconds) and the limits in; out the value to store (if any) and the
/// messages to publish, in order. Never panics, whatever the payload.
///
/// - Update: `/update/accepted`, then `/update/documents`, then `/update/delta` if desired and
///   reported differ afterwards; or one `/update/rejected`.
/// - Get: `/get/accepted` (state with delta, metadata, version, timestamp) or `/get/rejected`.
/// - Delete: `/delete/accepted` (`version`, `timestamp`) and a tombstone to store, or
///   `/delete/rejected`.
pub fn handle(
    current: Option<&StoredShadow>,
    key: &ShadowKey,
    op: Operation,
    payload: &[u8],
    now_unix_secs: u64,
    limits: &Limits,
) -> Outcome {
    let now = now_unix_secs;
    // A tombstone older than the retention is a shadow that never existed.
    let current = current.filter(|s| match s.body {
        Body::Deleted { deleted_at, .. } => {
            now.saturating_sub(deleted_at) < limits.deleted_version_retention_secs
        }
        Body::Document(_) => true,
    });
    let live = current.and_then(|s| match &s.body {
        Body::Document(d) => Some(d),
        Body::Deleted { .. } => None,
    });
    let last_version = current.map_or(0, StoredShadow::version);
    match op {
        Operation::Update => match update(key, live, last_version, payload, now, limits) {
            Ok((doc, publishes)) => Outcome {
                write: Some(StoredShadow {
                    body: Body::Document(doc),
                }),
                publishes,
            },
            Err((error, token)) => rejected(key, op, &error, token.as_deref(), now),
        },
        Operation::Get | Operation::Delete => {
            let token = match read_token(payload, limits) {
                Ok(token) => token,
                Err(error) => return rejected(key, op, &error, None, now),
            };
            let token = token.as_deref();
            let Some(doc) = live else {
                let error = Error::NotFound {
                    name: key.display_name().to_owned(),
                };
                return rejected(key, op, &error, token, now);
            };
            if op == Operation::Get {
                let mut body = Vec::with_capacity(256);
                write_get_document(&mut body, doc, now, token);
                Outcome {
                    write: None,
                    publishes: vec![OutMessage {
                        topic: key.topic(op, "accepted"),
                        payload: body,
                    }],
                }
            } else {
                let mut body = Vec::with_capacity(64);
                body.extend_from_slice(b"{\"version\":");
                write_u64(&mut body, doc.version);
                write_tail(&mut body, now, token);
                Outcome {
                    write: Some(StoredShadow {
                        body: Body::Deleted {
                            version: doc.version,
                            deleted_at: now,
                        },
                    }),
                    publishes: vec![OutMessage {
                        topic: key.topic(op, "accepted"),
                        payload: body,
                    }],
                }
            }
        }
    }
}

/// The `/get/accepted` document (also GetThingShadow's body, without a token).
pub(crate) fn write_get_document(out: &mut Vec<u8>, doc: &Document, now: u64, token: Option<&str>) {
    out.extend_from_slice(b"{\"state\":{");
    let mut sep = SectionSep::default();
    if !doc.desired.is_empty() {
        sep.next(out, "desired");
        write_section(out, &doc.desired);
    }
    if !doc.reported.is_empty() {
        sep.next(out, "reported");
        write_section(out, &doc.reported);
    }
    let d = delta(&doc.desired, &doc.reported);
    if !d.is_empty() {
        sep.next(out, "delta");
        write_delta(out, &d);
    }
    out.extend_from_slice(b"},\"metadata\":");
    write_metadata(out, doc);
    out.extend_from_slice(b",\"version\":");
    write_u64(out, doc.version);
    write_tail(out, now, token);
}

/// Writes `,"timestamp":t[,"clientToken":"..."]}`.
fn write_tail(out: &mut Vec<u8>, now: u64, token: Option<&str>) {
    out.extend_from_slice(b",\"timestamp\":");
    write_u64(out, now);
    if let Some(token) = token {
        out.extend_from_slice(b",\"clientToken\":");
        write_str(out, token);
    }
    out.push(b'}');
}

#[derive(Default)]
struct SectionSep(bool);

impl SectionSep {
    fn next(&mut self, out: &mut Vec<u8>, name: &str) {
        if self.0 {
            out.push(b',');
        }
        self.0 = true;
        write_str(out, name);
        out.push(b':');
    }
}

fn write_state(out: &mut Vec<u8>, doc: &Document) {
    write_sections(out, doc, write_section);
}

fn write_metadata(out: &mut Vec<u8>, doc: &Document) {
    write_sections(out, doc, write_section_meta);
}

/// `{"desired":..,"reported":..}` with the non-empty sections, each written by `write`.
fn write_sections(out: &mut Vec<u8>, doc: &Document, write: fn(&mut Vec<u8>, &Section)) {
    out.push(b'{');
    let mut sep = SectionSep::default();
    if !doc.desired.is_empty() {
        sep.next(out, "desired");
        write(out, &doc.desired);
    }
    if !doc.reported.is_empty() {
        sep.next(out, "reported");
        write(out, &doc.reported);
    }
    out.push(b'}');
}

/// A `/update/documents` snapshot: state, metadata and version, no delta (A.3).
/// `state_json`: the state already written (compact), if at hand.
fn write_snapshot(out: &mut Vec<u8>, doc: &Document, state_json: Option<&[u8]>) {
    out.extend_from_slice(b"{\"state\":");
    match state_json {
        Some(json) => out.extend_from_slice(json),
        None => write_state(out, doc),
    }
    out.extend_from_slice(b",\"metadata\":");
    write_metadata(out, doc);
    out.extend_from_slice(b",\"version\":");
    write_u64(out, doc.version);
    out.push(b'}');
}

fn rejected(
    key: &ShadowKey,
    op: Operation,
    error: &Error,
    token: Option<&str>,
    now: u64,
) -> Outcome {
    Outcome {
        write: None,
        publishes: vec![rejection(key, op, error, token, now)],
    }
}

/// The `.../rejected` message for `error` (A.3 error document).
pub(crate) fn rejection(
    key: &ShadowKey,
    op: Operation,
    error: &Error,
    token: Option<&str>,
    now: u64,
) -> OutMessage {
    let mut body = Vec::with_capacity(96);
    body.extend_from_slice(b"{\"code\":");
    write_u64(&mut body, u64::from(error.code()));
    body.extend_from_slice(b",\"message\":");
    write_str(&mut body, &error.message());
    write_tail(&mut body, now, token);
    OutMessage {
        topic: key.topic(op, "rejected"),
        payload: body,
    }
}

/// Reads the payload as a JSON object, mapping parser stops to AWS's errors.
fn parse_object<'a>(payload: &'a [u8], limits: &Limits) -> Result<Vec<Member<'a>>, Error> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Error::TooLarge {
            size: payload.len(),
            limit: "max_payload_bytes",
            max: limits.max_payload_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| Error::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let json_limits = thingkit_json::Limits::default()
        // root, state, then the section's object counts as level 1: 2 above the shadow's levels.
        .with_max_depth(limits.depth() + 2)
        .with_max_values(limits.max_json_values);
    let where_ = |offset: usize| {
        let (line, col) = thingkit_json::LineIndex::new(text).line_col(text, offset);
        format!("{line}:{col}")
    };
    let parsed = thingkit_json::parse(text, json_limits).map_err(|e| match e.limit {
        Some(("max_depth", _)) => Error::TooDeep {
            max: limits.max_depth,
            path: where_(e.offset),
        },
        _ => Error::InvalidJson {
            detail: format!("{} at {}", e.message, where_(e.offset)),
        },
    })?;
    if let Some(dup) = parsed.duplicates.first() {
        return Err(Error::InvalidJson {
            detail: format!("duplicate key {:?} at {}", dup.key, where_(dup.offset)),
        });
    }
    match parsed.root.kind {
        Kind::Object(members) => Ok(members),
        other => Err(Error::InvalidJson {
            detail: format!(
                "the request must be a JSON object, not {}",
                other.type_name()
            ),
        }),
    }
}

fn member<'m, 'a>(members: &'m [Member<'a>], name: &str) -> Option<&'m Json<'a>> {
    members.iter().find(|m| m.key == name).map(|m| &m.value)
}

fn client_token(members: &[Member<'_>], limits: &Limits) -> Result<Option<String>, Error> {
    let invalid = |detail: String| Error::InvalidClientToken {
        detail,
        max: limits.max_client_token_bytes,
    };
    match member(members, "clientToken").map(|v| &v.kind) {
        None => Ok(None),
        Some(Kind::String(s)) if s.len() <= limits.max_client_token_bytes => {
            Ok(Some(s.to_string()))
        }
        Some(Kind::String(s)) => Err(invalid(format!("{} bytes", s.len()))),
        Some(other) => Err(invalid(format!("it is {}", other.type_name()))),
    }
}

/// The clientToken of a get or delete request. An empty payload is fine (the documented get
/// and delete body); anything else must be a JSON object whose clientToken, if any, is valid.
fn read_token(payload: &[u8], limits: &Limits) -> Result<Option<String>, Error> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        if payload.len() > limits.max_payload_bytes {
            return Err(Error::TooLarge {
                size: payload.len(),
                limit: "max_payload_bytes",
                max: limits.max_payload_bytes,
            });
        }
        return Ok(None);
    }
    let members = parse_object(payload, limits)?;
    client_token(&members, limits)
}

/// An accepted update: the new document and the messages to render.
struct Accepted<'a, 'j> {
    request_state: Option<&'j Json<'a>>,
    token: Option<String>,
    previous: Option<&'j Document>,
    doc: Document,
    /// `doc`'s state as compact JSON, written once for the size check and reused.
    state_json: Vec<u8>,
    /// The request payload's size, to size the output buffers once.
    request_len: usize,
    now: u64,
}

impl Accepted<'_, '_> {
    fn messages(&self, key: &ShadowKey) -> Vec<OutMessage> {
        let doc = &self.doc;
        let token = self.token.as_deref();
        let mut out = Vec::with_capacity(3);

        // /update/accepted: the request's state echoed, with metadata stamps.
        let mut body = Vec::with_capacity(256 + self.request_len * 3);
        body.extend_from_slice(b"{\"state\":");
        match self.request_state {
            Some(state) => {
                write_json(&mut body, state);
                body.extend_from_slice(b",\"metadata\":");
                write_json_meta(&mut body, state, self.now);
            }
            None => {
                body.extend_from_slice(b"null,\"metadata\":{\"timestamp\":");
                write_u64(&mut body, self.now);
                body.push(b'}');
            }
        }
        body.extend_from_slice(b",\"version\":");
        write_u64(&mut body, doc.version);
        write_tail(&mut body, self.now, token);
        out.push(OutMessage {
            topic: key.topic(Operation::Update, "accepted"),
            payload: body,
        });

        // /update/documents: previous (null on creation) and current.
        let mut body = Vec::with_capacity(512 + self.state_json.len() * 8);
        body.extend_from_slice(b"{\"previous\":");
        match self.previous {
            Some(previous) => write_snapshot(&mut body, previous, None),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b",\"current\":");
        write_snapshot(&mut body, doc, Some(&self.state_json));
        write_tail(&mut body, self.now, token);
        out.push(OutMessage {
            topic: key.topic(Operation::Update, "documents"),
            payload: body,
        });

        // /update/delta: the whole current delta, when there is one.
        let d = delta(&doc.desired, &doc.reported);
        if !d.is_empty() {
            let mut body = Vec::with_capacity(256);
            body.extend_from_slice(b"{\"version\":");
            write_u64(&mut body, doc.version);
            body.extend_from_slice(b",\"timestamp\":");
            write_u64(&mut body, self.now);
            body.extend_from_slice(b",\"state\":");
            write_delta(&mut body, &d);
            body.extend_from_slice(b",\"metadata\":");
            write_delta_meta(&mut body, &d);
            if let Some(token) = token {
                body.extend_from_slice(b",\"clientToken\":");
                write_str(&mut body, token);
            }
            body.push(b'}');
            out.push(OutMessage {
                topic: key.topic(Operation::Update, "delta"),
                payload: body,
            });
        }
        out
    }
}

/// Validates and applies an update. On error, also the clientToken to echo (when it was read).
fn update(
    key: &ShadowKey,
    live: Option<&Document>,
    last_version: u64,
    payload: &[u8],
    now: u64,
    limits: &Limits,
) -> Result<(Document, Vec<OutMessage>), (Error, Option<String>)> {
    let members = parse_object(payload, limits).map_err(|e| (e, None))?;
    // The token is read first so that every later rejection can echo it.
    let token = client_token(&members, limits).map_err(|e| (e, None))?;
    let fail = |e: Error| (e, token.clone());

    let requested = match member(&members, "version").map(|v| &v.kind) {
        None => None,
        Some(Kind::Number(n)) => Some(n.parse::<u64>().map_err(|_| {
            fail(Error::InvalidVersion {
                detail: format!("{n} is not a non-negative integer"),
            })
        })?),
        Some(other) => {
            return Err(fail(Error::InvalidVersion {
                detail: format!("it is {}", other.type_name()),
            }));
        }
    };

    let state = member(&members, "state").ok_or_else(|| fail(Error::MissingState))?;
    let mut desired = None;
    let mut reported = None;
    match &state.kind {
        Kind::Null => {}
        Kind::Object(sections) => {
            for m in sections {
                let slot = match m.key.as_ref() {
                    "desired" => &mut desired,
                    "reported" => &mut reported,
                    other => {
                        return Err(fail(Error::InvalidStateNode {
                            node: other.to_owned(),
                        }));
                    }
                };
                match &m.value.kind {
                    Kind::Null | Kind::Object(_) => *slot = Some(&m.value),
                    other if m.key == "desired" => {
                        return Err(fail(Error::DesiredNotObject {
                            found: other.type_name(),
                        }));
                    }
                    other => {
                        return Err(fail(Error::ReportedNotObject {
                            found: other.type_name(),
                        }));
                    }
                }
            }
        }
        other => {
            return Err(fail(Error::StateNotObject {
                found: other.type_name(),
            }));
        }
    }
    for (name, section) in [("desired", desired), ("reported", reported)] {
        if let Some(section) = section {
            let mut path = vec![PathPart::Key(name)];
            check_section(section, 1, false, limits.depth(), &mut path).map_err(fail)?;
        }
    }

    if let Some(requested) = requested
        && requested != last_version
    {
        return Err(fail(Error::VersionConflict {
            requested,
            current: last_version,
        }));
    }

    let mut doc = live.cloned().unwrap_or_default();
    let new_version = last_version.saturating_add(1);
    doc.version = new_version;
    doc.timestamp = now;
    match &state.kind {
        Kind::Object(_) => {
            apply_section(&mut doc.desired, desired, now);
            apply_section(&mut doc.reported, reported, now);
        }
        _ => {
            // `state: null` empties the shadow, which stays.
            doc.desired.clear();
            doc.reported.clear();
        }
    }

    let mut measured = Vec::with_capacity(1024.max(payload.len() * 2));
    write_state(&mut measured, &doc);
    if measured.len() > limits.max_state_bytes {
        return Err(fail(Error::TooLarge {
            size: measured.len(),
            limit: "max_state_bytes",
            max: limits.max_state_bytes,
        }));
    }

    let accepted = Accepted {
        request_state: match state.kind {
            Kind::Null => None,
            _ => Some(state),
        },
        token,
        previous: live,
        doc,
        state_json: measured,
        request_len: payload.len(),
        now,
    };
    let publishes = accepted.messages(key);
    Ok((accepted.doc, publishes))
}

fn apply_section(section: &mut Section, request: Option<&Json<'_>>, now: u64) {
    match request.map(|r| &r.kind) {
        None => {}
        Some(Kind::Object(members)) => merge(section, members, now),
        // `"desired": null` removes the section.
        Some(_) => section.clear(),
    }
}

/// One step of a JSON path, kept borrowed until an error needs the path as text.
#[derive(Clone, Copy)]
enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_text(path: &[PathPart<'_>]) -> String {
    let mut text = String::new();
    for part in path {
        match part {
            PathPart::Key(k) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(k);
            }
            PathPart::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// Checks depth (F-S1: `level` is the level of `node`, the section's object is level 1) and
/// nulls inside arrays. `path` is the JSON path to `node`, for the error.
fn check_section<'a>(
    node: &'a Json<'a>,
    level: usize,
    in_array: bool,
    max: usize,
    path: &mut Vec<PathPart<'a>>,
) -> Result<(), Error> {
    let too_deep = |path: &mut Vec<PathPart<'a>>, last: PathPart<'a>| {
        path.push(last);
        Error::TooDeep {
            max,
            path: path_text(path),
        }
    };
    match &node.kind {
        Kind::Null if in_array => Err(Error::NullInArray {
            path: path_text(path),
        }),
        Kind::Object(members) => {
            for m in members {
                let part = PathPart::Key(m.key.as_ref());
                if level + 1 > max {
                    return Err(too_deep(path, part));
                }
                path.push(part);
                check_section(&m.value, level + 1, in_array, max, path)?;
                path.pop();
            }
            Ok(())
        }
        Kind::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if level + 1 > max {
                    return Err(too_deep(path, PathPart::Index(i)));
                }
                path.push(PathPart::Index(i));
                check_section(item, level + 1, true, max, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
