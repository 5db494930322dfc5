//! One client connection: TLS handshake, identity, CONNECT, then the packet loop. The task owns
//! the socket, the codec state, the topic-alias maps, the QoS 1 in-flight window, the policy set
//! compiled for this identity and the meter's connection handle (the single writer of its
//! counters).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use thingkit_meter::Connection as MeterConnection;
use thingkit_meter::KeyHandle;
use thingkit_meter::{LimitAction, LimitKind, LimitReason, RateDecision};
use thingkit_mqtt::{
    Connect, Decoder, Packet, PacketProperties, PacketType, ProtocolVersion, QoS, ReasonCode,
    TopicName,
};
use thingkit_policy::{ArnPrefix, CertificateContext, Context, PolicySet, Request, ThingContext};
use thingkit_provision::CertificateId;
use thingkit_provision::policy_certificate;
use tokio::io::{AsyncBufRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::activity::{Accepted, Counts, FOLD_INTERVAL, is_job_topic};
use super::service::{Disposition, ServiceReply, ServiceRequest, ServiceResponse};
use super::{Authenticated, Shared, unix_now, unix_now_ms};
use crate::{
    Action, Authorizer, CloseReason, Delivery, Event, InboundPublish, Message, Outlet, Session,
    SubscribeRequest, encode_refusal,
};
use crate::{DisconnectReason, LifecycleEvent, publishes_lifecycle_events};

type Stream = TlsStream<TcpStream>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The router's handle on one connection task: its bounded delivery queue and its kick signal.
/// Neither blocks, so the router lock is never held across a wait; a publisher that has to
/// wait for room clones it and waits without the lock ([`place_blocked`]).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionOutlet {
    tx: mpsc::Sender<Delivery>,
    kick: watch::Sender<Option<ReasonCode>>,
}

impl Outlet for ConnectionOutlet {
    fn try_deliver(&self, delivery: Delivery) -> Result<(), Delivery> {
        self.tx.try_send(delivery).map_err(|e| e.into_inner())
    }

    fn kick(&self, reason: ReasonCode) {
        let _ = self.kick.send(Some(reason));
    }
}

/// Runs one connection to completion. Never panics on client input; every wait is bounded.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let timeout = shared.config.connect_timeout;
    // The handshake's state is boxed: inline, it would size the task for the connection's
    // whole life (about 6 KiB of a future that is over after the handshake).
    let tls = match tokio::time::timeout(timeout, Box::pin(acceptor.accept(tcp))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // Boxed: an async fn keeps its by-value argument in a slot of its own besides the local
    // it moves it to, so an inline 1.2 KiB TLS stream would be in the task twice.
    if let Err(e) = serve(Box::new(tls), peer, shared).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// How often a connection moves its usage counters into the node meter.
const METER_FLUSH: Duration = Duration::from_secs(60);

/// How long a client may leave written bytes unread before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

async fn write(stream: &mut Stream, buf: &mut BytesMut) -> Result<(), BoxError> {
    if !buf.is_empty() {
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(buf).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| "the client stopped reading (write timed out)")??;
        // Release the buffer rather than clear it: an idle connection keeps no output buffer
        // (the next packet allocates one), which is most of the connections of a fleet.
        *buf = BytesMut::new();
    }
    Ok(())
}

/// Reads what TLS has decrypted into `rbuf`: each plaintext chunk rustls already holds, at
/// most 64 KiB, without waiting for more once one was read. 0 is the end of the stream.
///
/// Reading from rustls' own buffer (`poll_fill_buf`) rather than into a buffer of ours is what
/// lets an idle connection wait with no read buffer at all: `rbuf` is allocated when bytes
/// arrive and released when it is empty again (in the packet loop). Cancel safe: nothing is
/// consumed from rustls before it is in `rbuf`. A TLS error is returned at once, dropping what
/// was read in the same call (the connection ends either way).
async fn read_some(stream: &mut Stream, rbuf: &mut BytesMut) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut n = 0;
        loop {
            match std::pin::Pin::new(&mut *stream).poll_fill_buf(cx) {
                std::task::Poll::Ready(Ok(data)) if !data.is_empty() => {
                    let len = data.len();
                    rbuf.extend_from_slice(data);
                    std::pin::Pin::new(&mut *stream).consume(len);
                    n += len;
                    if rbuf.len() >= 64 * 1024 {
                        return std::task::Poll::Ready(Ok(n));
                    }
                }
                // The end of the stream (reported after the bytes read before it).
                std::task::Poll::Ready(Ok(_)) => return std::task::Poll::Ready(Ok(n)),
                // An error (a TLS stream closed without close_notify, as rumqttc does after
                // its DISCONNECT) is reported after the bytes read before it, too: they are
                // the client's packets, and the next read meets the error again.
                std::task::Poll::Ready(Err(_)) if n > 0 => return std::task::Poll::Ready(Ok(n)),
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending if n > 0 => return std::task::Poll::Ready(Ok(n)),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    })
    .await
}

/// Reads until CONNECT; anything else first is a protocol error.
async fn read_connect(
    stream: &mut Stream,
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
) -> Result<Connect, BoxError> {
    loop {
        if let Some(packet) = decoder.decode(rbuf)? {
            return match packet {
                Packet::Connect(c) => Ok(c),
                other => Err(format!("expected CONNECT, got {}", other.packet_type()).into()),
            };
        }
        if read_some(stream, rbuf).await? == 0 {
            return Err("closed before CONNECT".into());
        }
    }
}

async fn refuse(
    stream: &mut Stream,
    version: ProtocolVersion,
    code: ReasonCode,
    reason: &str,
) -> Result<(), BoxError> {
    let mut buf = encode_refusal(version, code, reason)?;
    write(stream, &mut buf).await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// The policy context of this connection.
///
/// `iot:Connection.Thing.*` follow the AWS IoT Core Developer Guide, *Thing policy variables*:
/// the thing is the one named by the client ID ("the value of `clientId` in the MQTT connect
/// message ... must exactly match the thing name"), and `IsAttached` says whether the
/// certificate is attached to it. A client ID that names no thing attached to the certificate
/// gets `IsAttached` false and no thing name, type or attributes, so it cannot borrow the
/// permissions of the thing its certificate belongs to.
///
/// `iot:Certificate.*` are read from the peer's end-entity certificate
/// (`thingkit_provision::policy_certificate`); the certificate ID stays the registry's.
fn context(
    auth: &Authenticated,
    leaf: Option<&[u8]>,
    client_id: &str,
    peer: SocketAddr,
) -> Context {
    let id = &auth.identity;
    let attached = id.things.iter().any(|t| &**t == client_id);
    let mut certificate = match leaf.map(policy_certificate) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            // rustls verified this certificate, so this is not expected; the certificate
            // variables stay missing (policies that use them deny), the ID still resolves.
            tracing::warn!(client = client_id, error = %e, "cannot read the client certificate's policy attributes");
            CertificateContext::default()
        }
        None => CertificateContext::default(),
    };
    certificate.id = Some(id.certificate_id.to_string());
    Context {
        client_id: Some(client_id.to_string()),
        source_ip: Some(peer.ip().to_string()),
        thing: Some(if attached {
            ThingContext {
                name: client_id.to_string(),
                thing_type: auth.thing_type.clone(),
                attributes: auth.attributes.clone(),
                attached: true,
            }
        } else {
            ThingContext {
                name: client_id.to_string(),
                attached: false,
                ..ThingContext::default()
            }
        }),
        certificate: Some(certificate),
        current_time: i64::try_from(unix_now()).ok(),
        ..Context::default()
    }
}

/// Explains a denial: the statements that decided it, or the context that was missing.
fn explain_denial(policies: &PolicySet, request: &Request, ctx: &Context) -> String {
    let explanation = policies.explain(request, ctx);
    let ev = &explanation.evaluation;
    let by: Vec<String> = ev
        .determining
        .iter()
        .map(|s| match &s.sid {
            Some(sid) => format!("{}#{} ({sid})", s.policy, s.statement),
            None => format!("{}#{}", s.policy, s.statement),
        })
        .collect();
    if by.is_empty() {
        format!(
            "{} {} {}: no Allow statement matched{}",
            ev.decision,
            request.action(),
            request.resource(),
            if ev.missing_context.is_empty() {
                String::new()
            } else {
                format!(" (missing context: {})", ev.missing_context.join(", "))
            }
        )
    } else {
        format!(
            "{} {} {}: denied by {}",
            ev.decision,
            request.action(),
            request.resource(),
            by.join(", ")
        )
    }
}

/// The connection's AWS IoT policies as the session's [`Authorizer`]: each request is decided
/// against the policies compiled for the device's identity, with the connection's context.
struct PolicyAuthorizer {
    /// Shared with the connections of the same effective policies (`super::PolicySets`).
    policies: Arc<PolicySet>,
    ctx: Context,
    arn: ArnPrefix,
    /// The broker (its directory, policy sets and the registry's generation counter).
    shared: Arc<Shared>,
    /// The device's certificate, whose effective policies these are.
    certificate: CertificateId,
    /// The registry generation `policies` were read at.
    seen: u64,
}

impl PolicyAuthorizer {
    /// Re-reads the effective policies when the registry changed since they were read: a
    /// policy detached, a default version set, a thing moved between groups decide the next
    /// request. One atomic load when nothing changed. Fails closed: a certificate that is gone
    /// or policies that cannot be compiled deny everything.
    fn refresh(&mut self) {
        let Some(generation) = &self.shared.policy_generation else {
            return;
        };
        let now = generation.load(Ordering::Acquire);
        if now == self.seen {
            return;
        }
        self.seen = now;
        let options = self.shared.config.policy_options;
        self.policies = match self.shared.directory.effective_policies(&self.certificate) {
            Some(policies) => match self.shared.policy_sets.get(&policies, options) {
                Ok(set) => set,
                Err(e) => {
                    tracing::error!(certificate = %self.certificate, error = %e, "cannot compile the device's changed policies: denying everything");
                    Arc::new(PolicySet::new())
                }
            },
            None => Arc::new(PolicySet::new()),
        };
    }
}

impl Authorizer for PolicyAuthorizer {
    fn authorize(&mut self, action: Action<'_>) -> Result<(), String> {
        self.refresh();
        // `aws:CurrentTime` / `aws:EpochTime` are the time of this request, not of CONNECT: a
        // policy that allows until a date stops allowing then, on a connection already open.
        self.ctx.current_time = i64::try_from(unix_now()).ok();
        let request = match action {
            Action::Publish { topic, retain } => self.arn.publish(topic, retain),
            Action::Subscribe { filter } => self.arn.subscribe(filter),
            Action::Receive { topic } => self.arn.receive(topic),
        };
        if self.policies.decide(&request, &self.ctx).is_allowed() {
            Ok(())
        } else {
            Err(explain_denial(&self.policies, &request, &self.ctx))
        }
    }
}

/// One connection after CONNECT: the sans-IO [`Session`], the meter handle, the delivery
/// queue, and what ties it to the broker (the router attachment, the certificate index).
///
/// Its `Drop` is the cleanup that cannot be skipped: however the task ends (a normal close, an
/// early error return, a panic, cancellation at shutdown), the session is detached from the
/// router (a persistent one keeps its unacknowledged messages), the will is published, the
/// certificate index entry is removed and the meter slot is freed.
struct Conn {
    shared: Arc<Shared>,
    session: Session,
    client_id: Arc<str>,
    connection: u64,
    certificate: CertificateId,
    account: Arc<str>,
    meter: Option<MeterConnection>,
    /// The account's publish-limit state, resolved once so each message checks it without a
    /// hash lookup (`None` if the limiter was full: then by key, which refuses the message
    /// while the limiter is still full).
    account_limit: Option<KeyHandle>,
    rx: mpsc::Receiver<Delivery>,
    /// The limit class (index into `Shared::classes`) of the device.
    class: usize,
    /// The close reason, once the session is closed (then `Drop` only releases resources).
    closed: Option<CloseReason>,
    dropped_seen: u64,
    /// The lifecycle events' identity of this connection.
    presence: Presence,
    /// Detect counters since the last fold into `Shared::activity` (this task is their only
    /// writer: plain integers, no lock per message).
    activity: Counts,
    /// When `activity` was last folded.
    folded: Instant,
    /// The client ID is an attached thing's name.
    is_thing: bool,
    /// Acknowledgements waiting, in the order of their PUBLISHes [MQTT-4.6.0-2], for the
    /// cluster bridge to confirm a message durable: the front one always waits for a
    /// confirmation, those behind it may need none but must not overtake it. The client's
    /// in-flight window bounds it. Meanwhile the connection reads on, so the confirmations of
    /// one client's messages overlap.
    acks: VecDeque<PendingAck>,
}

/// A PUBACK held back until the bridge confirmed its message, or until its turn
/// ([`Conn::acks`]).
struct PendingAck {
    packet_id: thingkit_mqtt::PacketId,
    /// `None`: nothing to wait for but the acknowledgements before it.
    confirmation: Option<super::Confirmation>,
    code: ReasonCode,
    reason: Option<String>,
}

/// What lifecycle events and connectivity status say about one connection.
struct Presence {
    /// `sessionIdentifier`: unique per connection.
    session: String,
    /// `principalIdentifier`: the certificate ID.
    principal: String,
    /// The thing the client ID names, when the certificate is attached to it (its
    /// connectivity status is kept in the registry).
    thing: Option<String>,
    /// `versionNumber` of this connection.
    version: u64,
}

/// What the publish limits say about one inbound message.
enum Admission {
    /// Within the connection's and the account's limits: consumed and counted.
    Allowed,
    /// Over a limit; nothing consumed or counted.
    Limited {
        limit: LimitKind,
        action: LimitAction,
        retry_after: Option<Duration>,
    },
    /// The meter or the account limiter failed (e.g. the account limiter's key cap is reached,
    /// so the account cannot be tracked): the message cannot be metered and is refused.
    Failed(String),
}

async fn serve(
    mut stream: Box<Stream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<(), BoxError> {
    let config = &shared.config;
    let chain: Vec<Vec<u8>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let mut decoder = shared.session_config.connect_decoder();
    // Allocated by `read_some` when bytes arrive, released when empty (idle connections).
    let mut rbuf = BytesMut::new();
    let connect = match tokio::time::timeout(
        config.connect_timeout,
        read_connect(&mut stream, &mut decoder, &mut rbuf),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "bad first packet");
            return Ok(());
        }
        Err(_) => {
            tracing::info!(%peer, "no CONNECT in time");
            return Ok(());
        }
    };
    let version = connect.protocol;
    // A refused CONNECT is counted as an attempt of its client ID (detect's
    // `aws:num-connection-attempts`), and as an authorization failure when policies denied it.
    let refused = |shared: &Shared, client_id: &str, thing: bool, denied: bool| {
        shared
            .stats
            .connects_refused
            .fetch_add(1, Ordering::Relaxed);
        shared.activity.refused(client_id, thing, peer.ip(), denied);
    };

    // 1. Identity: the verified certificate must be ACTIVE in the registry. The registry's
    //    generation is read first: a change made while the policies are read is seen by the
    //    first decision (which then reads them again).
    let policies_seen = shared
        .policy_generation
        .as_ref()
        .map_or(0, |g| g.load(Ordering::Acquire));
    let auth = match shared
        .directory
        .authenticate(&chain, connect.client_id.as_str())
    {
        Ok(a) => a,
        Err(e) => {
            refused(&shared, connect.client_id.as_str(), false, false);
            tracing::warn!(%peer, reason = %e, "CONNECT refused: authentication failed");
            return refuse(&mut stream, version, ReasonCode::NOT_AUTHORIZED, &e).await;
        }
    };

    // 2. Client ID: an empty one gets the thing name (AWS requires one; MQTT lets the server
    //    assign it with Clean Start).
    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if !connect.clean_start {
            refused(&shared, "", false, false);
            return refuse(
                &mut stream,
                version,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "an empty client ID needs a clean session",
            )
            .await;
        }
        let id = match &auth.identity.thing {
            Some(t) => t.to_string(),
            None => format!(
                "thingkit-{}",
                shared.next_connection.load(Ordering::Relaxed)
            ),
        };
        assigned = Some(id.clone());
        id.into()
    } else {
        connect.client_id.as_str().into()
    };
    // The client ID names a thing the certificate is attached to: the connection is that
    // thing's (its connectivity status, its activity).
    let is_thing = auth.identity.things.iter().any(|t| **t == *client_id);

    // 3. Policies: the identity's effective policies, compiled once and shared by the
    //    connections with the same ones.
    let policies = match shared
        .policy_sets
        .get(&auth.identity.policies, config.policy_options)
    {
        Ok(p) => p,
        Err(e) => {
            refused(&shared, &client_id, is_thing, false);
            tracing::error!(%peer, error = %e, "cannot compile the device's policies");
            return refuse(
                &mut stream,
                version,
                ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
                "policy error",
            )
            .await;
        }
    };
    let mut ctx = context(&auth, chain.first().map(Vec::as_slice), &client_id, peer);
    if connect.will.is_some() {
        ctx.connect_attributes.push("LastWill".into());
    }
    if !connect.clean_start {
        ctx.connect_attributes.push("PersistentConnect".into());
    }
    ctx.last_will_topic = connect.will.as_ref().map(|w| w.topic.as_str().to_string());

    let mut requests = vec![config.arn.connect(&client_id)];
    if let Some(will) = &connect.will {
        requests.push(config.arn.publish(will.topic.as_str(), will.retain));
    }
    for request in &requests {
        if !policies.decide(request, &ctx).is_allowed() {
            refused(&shared, &client_id, is_thing, true);
            shared.stats.deny("connect");
            let why = explain_denial(&policies, request, &ctx);
            tracing::warn!(client = %client_id, "CONNECT refused: {why}");
            return refuse(&mut stream, version, ReasonCode::NOT_AUTHORIZED, &why).await;
        }
    }
    let class = shared.limit_class(&auth);
    if let Some(limiter) = &shared.classes[class].connect_limiter {
        let refusal = match limiter.check_key(&client_id.to_string(), 0, shared.now_nanos()) {
            Ok(RateDecision::Allow) => None,
            Ok(_) => Some((
                ReasonCode::CONNECTION_RATE_EXCEEDED,
                "connection rate exceeded".to_string(),
            )),
            // Fail closed: a client ID the limiter cannot track (its key cap is reached) is
            // not rate-limited, so it is not admitted.
            Err(e) => Some((
                ReasonCode::SERVER_BUSY,
                format!("connection rate limiter: {e}"),
            )),
        };
        if let Some((code, why)) = refusal {
            refused(&shared, &client_id, is_thing, false);
            tracing::warn!(client = %client_id, reason = %why, "CONNECT refused");
            return refuse(&mut stream, version, code, &why).await;
        }
    }

    // 3b. The cluster: the client ID's connections on the other servers end, and its
    //     persistent session comes here if another server held it.
    if let Some(handover) = &shared.handover {
        let held = shared
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .has_session(&client_id);
        let request = crate::server::Acquire {
            client_id: client_id.clone(),
            clean_start: connect.clean_start,
            held,
        };
        let adopted = match handover.acquire(request).await {
            Ok(Some(stored)) => shared
                .router
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .adopt(stored, Instant::now())
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        let adopted = match adopted {
            Ok(()) => handover
                .adopted(client_id.clone())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = adopted {
            refused(&shared, &client_id, is_thing, false);
            tracing::error!(client = %client_id, error = %e, "CONNECT refused: the session could not move here");
            return refuse(
                &mut stream,
                version,
                ReasonCode::UNSPECIFIED_ERROR,
                "session store failed",
            )
            .await;
        }
    }

    // 4. Metering handle, then the session, attached to the router. From here on `Conn`
    //    owns every resource and its `Drop` releases them on every exit path.
    let account: Arc<str> = auth
        .attributes
        .get("account")
        .cloned()
        .unwrap_or_else(|| config.default_account.clone())
        .into();
    let account_limit = shared
        .account_limiter
        .handle(&account, shared.now_nanos())
        .ok();
    let meter = match shared.classes[class].table.connect(&account, unix_now()) {
        Ok(m) => m,
        Err(e) => {
            refused(&shared, &client_id, is_thing, false);
            tracing::warn!(client = %client_id, error = %e, "CONNECT refused: server busy");
            return refuse(
                &mut stream,
                version,
                ReasonCode::SERVER_BUSY,
                "too many connections",
            )
            .await;
        }
    };
    let authorizer = PolicyAuthorizer {
        policies,
        ctx,
        arn: config.arn.clone(),
        shared: shared.clone(),
        certificate: auth.identity.certificate_id,
        seen: policies_seen,
    };
    let clean_start = connect.clean_start;
    let mut session = Session::new(
        connect,
        client_id.clone(),
        &shared.session_config,
        Box::new(authorizer),
        Instant::now(),
    );
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Delivery>(config.max_queued.max(1));
    let (kick_tx, mut kick_rx) = watch::channel::<Option<ReasonCode>>(None);
    let certificate = auth.identity.certificate_id;
    // A will waiting for its delay is dropped when the client connects again [MQTT-3.1.3-9].
    shared
        .delayed_wills
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&client_id);
    let attached = shared
        .router
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .try_attach(
            &client_id,
            clean_start,
            session.expiry(),
            connection,
            ConnectionOutlet {
                tx,
                kick: kick_tx.clone(),
            },
            Instant::now(),
        );
    let attached = match attached {
        Ok(a) => a,
        Err(e) => {
            // The session could not be made durable: refuse rather than accept a session
            // whose state would not survive (MQTT 5 0x80; 3.1.1: 3 Server unavailable).
            refused(&shared, &client_id, is_thing, false);
            tracing::error!(client = %client_id, error = %e, "CONNECT refused: the session store failed");
            if let Err(e) =
                shared.classes[class]
                    .table
                    .disconnect(meter, &client_id, &shared.meter, unix_now())
            {
                tracing::error!(error = %e, "meter flush failed");
            }
            return refuse(
                &mut stream,
                version,
                ReasonCode::UNSPECIFIED_ERROR,
                "session store failed",
            )
            .await;
        }
    };
    shared
        .by_certificate
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(certificate)
        .or_default()
        .push((connection, kick_tx));
    shared
        .stats
        .connects_accepted
        .fetch_add(1, Ordering::Relaxed);
    shared.activity.connected(Accepted {
        connection,
        client_id: &client_id,
        principal: certificate,
        thing: is_thing,
        ip: peer.ip(),
        at: unix_now(),
    });

    // 5. CONNACK, then what the session kept while offline.
    let session_present = attached.session_present;
    session.connack(session_present, assigned.as_deref(), &shared.session_config)?;
    let mut conn = Conn {
        shared: shared.clone(),
        session,
        client_id: client_id.clone(),
        connection,
        certificate,
        account,
        meter: Some(meter),
        account_limit,
        rx,
        class,
        closed: None,
        dropped_seen: 0,
        presence: Presence {
            session: shared.activity.session_identifier(connection),
            principal: certificate.to_string(),
            thing: is_thing.then(|| client_id.to_string()),
            version: 0,
        },
        activity: Counts::default(),
        folded: Instant::now(),
        is_thing,
        acks: VecDeque::new(),
    };
    conn.announce_connected(peer);
    tracing::info!(client = %client_id, thing = auth.identity.thing.as_deref().unwrap_or("-"),
        protocol = %version, %peer, session_present, "connected");
    // Not needed past CONNECT; the task would otherwise hold them for the connection's life.
    drop((chain, auth));
    let now = Instant::now();
    // Every one of them: they were accepted for the session (and acknowledged to their
    // publishers). Until the session's queue is back under its limit, new deliveries wait in
    // the connection queue, and then their publishers.
    for d in attached.backlog {
        conn.session.deliver_beyond_limit(d, now);
    }
    let mut end = conn.process(&mut rbuf, now).await;
    if end.is_none()
        && let Err(e) = write(&mut stream, conn.session.transmit()).await
    {
        end = Some(CloseReason::Lost(e.to_string()));
    }

    // 6. The packet loop.
    let mut shutdown = shared.shutdown.clone();
    // Usage reaches the node meter at least once a minute, not only at disconnect.
    let mut flush = tokio::time::interval(METER_FLUSH);
    flush.tick().await;
    let end = match end {
        Some(end) => end,
        None => loop {
            // Everything read was handled: release the read buffer while the client is quiet
            // (the decoded packets' payloads keep their own part of it alive while in use).
            if rbuf.is_empty() && rbuf.capacity() > 0 {
                rbuf = BytesMut::new();
            }
            // One timer for the keep-alive and for folding the activity counters.
            let deadline = match (conn.session.poll_timeout(), conn.fold_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let keep_alive = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                read = read_some(&mut stream, &mut rbuf) => {
                    match read {
                        Ok(0) => Some(CloseReason::Lost("closed by the client".into())),
                        Ok(_) => {
                            // One clock read per socket read: the keep-alive and every packet
                            // of the batch see the same instant.
                            let now = Instant::now();
                            conn.session.note_input(now);
                            conn.process(&mut rbuf, now).await
                        }
                        Err(e) => Some(CloseReason::Lost(e.to_string())),
                    }
                }
                // Read deliveries only while the session has room for them: otherwise the queue
                // fills up and publishers wait for it (back-pressure), rather than the session
                // dropping messages their publishers were told were delivered.
                Some(d) = conn.rx.recv(), if conn.session.has_room() => {
                    let now = Instant::now();
                    conn.session.deliver(d, now);
                    // Drain whatever else is queued into the same write.
                    while conn.session.transmit().len() < 64 * 1024 && conn.session.has_room() {
                        match conn.rx.try_recv() {
                            Ok(d) => conn.session.deliver(d, now),
                            Err(_) => break,
                        }
                    }
                    conn.process(&mut rbuf, now).await
                }
                // The bridge confirmed (or failed) the oldest held-back acknowledgement.
                confirmed = async {
                    match conn.acks.front_mut().and_then(|a| a.confirmation.as_mut()) {
                        Some(c) => c.await,
                        // Not held for a confirmation: its turn has come.
                        None => Ok(()),
                    }
                }, if !conn.acks.is_empty() => {
                    conn.on_confirmed(confirmed)
                }
                _ = kick_rx.changed() => {
                    Some(CloseReason::Server((*kick_rx.borrow()).unwrap_or(ReasonCode::ADMINISTRATIVE_ACTION)))
                }
                _ = shutdown.changed() => Some(CloseReason::Server(ReasonCode::SERVER_SHUTTING_DOWN)),
                () = keep_alive => {
                    let now = Instant::now();
                    conn.session.handle_timeout(now);
                    conn.process(&mut rbuf, now).await
                }
                _ = flush.tick() => {
                    if let Some(m) = conn.meter.as_mut()
                        && let Err(e) = shared.classes[conn.class].table.flush(m, &conn.client_id, &shared.meter, unix_now()) {
                            tracing::error!(error = %e, "meter flush failed");
                        }
                    None
                }
            };
            if let Some(end) = ended {
                break end;
            }
            if let Err(e) = write(&mut stream, conn.session.transmit()).await {
                break CloseReason::Lost(e.to_string());
            }
        },
    };

    // 7. Close: DISCONNECT for MQTT 5 on a server-side end, then the will, session, meter
    //    (in `Conn::finish`, which `Drop` would also run).
    conn.finish(&end);
    if let CloseReason::Server(_) = &end {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = write(&mut stream, conn.session.transmit()).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
    let reason = match &end {
        CloseReason::ClientDisconnect { .. } => "client disconnected".to_string(),
        CloseReason::Server(code) => {
            format!("server closed: {}", code.name(PacketType::Disconnect))
        }
        CloseReason::Lost(why) => why.clone(),
    };
    tracing::info!(client = %client_id, %reason, "disconnected");
    Ok(())
}

/// Stores (if retained) and routes a message. A retained message the retained store has no
/// room for is refused as a whole (neither stored nor routed): the publisher is answered 0x97
/// Quota exceeded. The QoS 1 deliveries whose subscribers had no room come back in
/// [`crate::Routed::blocked`]: the caller places them ([`place_blocked`]) before it
/// acknowledges the message.
pub(super) fn route_message(
    shared: &Shared,
    message: &Arc<Message>,
) -> Result<crate::Routed, crate::Error> {
    route_message_from(shared, message, &super::rules::Origin::default()).map(|(routed, _)| routed)
}

/// [`route_message`] for a message whose publisher (`origin`: the certificate, or the rules
/// chain that republished it) the rules engine is told about. The rules engine, when
/// installed, is offered every routed message after the subscribers (match and `try_send`:
/// it never waits), and so is the cluster's [`super::Bridge`] (which queues it, and may return
/// a [`super::Confirmation`] that the caller awaits before it acknowledges the message). This
/// is the one place where messages accepted on this server are routed.
pub(super) fn route_message_from(
    shared: &Shared,
    message: &Arc<Message>,
    origin: &super::rules::Origin,
) -> Result<(crate::Routed, Option<super::Confirmation>), crate::Error> {
    let routed = route_remote(shared, message)?;
    if let Some(rules) = &shared.rules {
        rules.inner.offer(message, origin);
    }
    let confirmation = shared
        .bridge
        .as_ref()
        .and_then(|bridge| bridge.offer(message));
    Ok((routed, confirmation))
}

/// Stores (if retained) and routes a message to this server's subscribers only: neither the
/// rules engine nor the bridge sees it. For a message another server accepted
/// ([`super::BrokerPublisher::publish_remote`]), and the first half of [`route_message_from`].
pub(super) fn route_remote(
    shared: &Shared,
    message: &Arc<Message>,
) -> Result<crate::Routed, crate::Error> {
    let mut router = shared.router.lock().unwrap_or_else(|p| p.into_inner());
    let routed = router.publish(message)?;
    drop(router);
    shared.activity.outbound(
        message.topic.as_str(),
        message.payload.len(),
        routed.queued + routed.blocked.len(),
    );
    if routed.dropped > 0 {
        shared
            .stats
            .queue_drops
            .fetch_add(routed.dropped as u64, Ordering::Relaxed);
        log_drops(shared, message);
    }
    Ok(routed)
}

/// Logs that deliveries were dropped under pressure, at most once per [`DROP_LOG_INTERVAL`]
/// (the counters in the metrics have every one).
fn log_drops(shared: &Shared, message: &Message) {
    let now = shared.epoch.elapsed().as_millis() as u64;
    let last = shared.stats.drop_logged_ms.load(Ordering::Relaxed);
    if (last != 0 && now.saturating_sub(last) < DROP_LOG_INTERVAL.as_millis() as u64)
        || shared
            .stats
            .drop_logged_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let counters = shared
        .router
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .counters();
    tracing::warn!(
        topic = message.topic.as_str(),
        dropped_total = shared.stats.queue_drops.load(Ordering::Relaxed),
        qos0_queue_full = counters.outlet_refused,
        qos0_offline = counters.offline_qos0_dropped,
        offline_queue_full = counters.offline_dropped,
        expired = counters.expired_dropped,
        "deliveries dropped under pressure (logged at most every 10 s; see the metrics)"
    );
}

/// How often dropped deliveries are logged at most.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Places QoS 1 deliveries whose subscribers' queues were full ([`crate::Routed::blocked`]).
/// For each, it waits for room in that connection's queue (the caller is a publisher's
/// connection task, which reads nothing meanwhile: that is the back-pressure) up to
/// [`super::BrokerConfig::slow_subscriber_timeout`]; then it ends the slow connection (MQTT 5
/// DISCONNECT 0x97 Quota exceeded), which hands what it had not delivered back to its session,
/// and queues the delivery after those in the session it leaves behind (if persistent; a
/// clean session ends with its connection, and what it had queued with it).
///
/// Returns once every delivery is placed or dropped and counted.
///
/// # Errors
///
/// The store failed to keep a delivery for a disconnected persistent session: the message
/// must not be acknowledged.
pub(super) async fn place_blocked(
    shared: &Shared,
    blocked: Vec<crate::Blocked>,
) -> Result<(), crate::Error> {
    for mut b in blocked {
        let start = Instant::now();
        let mut deadline = start + shared.config.slow_subscriber_timeout;
        let mut kicked = false;
        loop {
            let outlet = shared
                .router
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .outlet(&b.client_id)
                .map(|(c, o)| (c, o.clone()));
            let closed = match outlet {
                None => true,
                Some((connection, outlet)) => {
                    if connection != b.connection {
                        // A new connection took the session over: it gets a fresh wait.
                        b.connection = connection;
                        deadline = Instant::now() + shared.config.slow_subscriber_timeout;
                        kicked = false;
                    }
                    match tokio::time::timeout_at(deadline.into(), outlet.tx.reserve()).await {
                        Ok(Ok(permit)) => {
                            permit.send(b.delivery);
                            break;
                        }
                        // The connection is ending: it closes its queue and detaches under the
                        // router lock, so the session is detached once we hold the lock.
                        Ok(Err(_)) => true,
                        Err(_) if !kicked => {
                            kicked = true;
                            shared
                                .stats
                                .slow_subscriber_disconnects
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(client = %b.client_id, waited = ?start.elapsed(), "slow subscriber disconnected: its queue stayed full while a publisher waited");
                            outlet.kick(ReasonCode::QUOTA_EXCEEDED);
                            // It ends within its write timeout (a client that reads nothing).
                            deadline = Instant::now() + WRITE_TIMEOUT + Duration::from_secs(1);
                            false
                        }
                        Err(_) => {
                            shared.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(client = %b.client_id, "delivery dropped: a slow subscriber's connection did not end after it was told to");
                            break;
                        }
                    }
                }
            };
            if !closed {
                continue;
            }
            let requeued = shared
                .router
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_requeue(b)?;
            match requeued {
                crate::Requeued::Blocked(again) => {
                    b = again;
                    // Taken over by a connection whose queue is full: wait for that one.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                crate::Requeued::Dropped => {
                    shared.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                _ => break,
            }
        }
    }
    Ok(())
}

/// Routes a message nobody acknowledges (a will, a lifecycle event): deliveries that find a
/// full queue are placed by a task of their own, so the caller never waits.
fn route_unacknowledged(
    shared: &Arc<Shared>,
    message: &Arc<Message>,
) -> Result<crate::Routed, crate::Error> {
    let mut routed = route_message(shared, message)?;
    let blocked = std::mem::take(&mut routed.blocked);
    if !blocked.is_empty() {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = shared.clone();
            runtime.spawn(async move {
                if let Err(e) = place_blocked(&shared, blocked).await {
                    tracing::error!(error = %e, "session store failed: deliveries dropped");
                }
            });
        } else {
            shared
                .stats
                .queue_drops
                .fetch_add(blocked.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(routed)
}

/// Publishes a will now, or after its delay unless the client connects again meanwhile.
fn publish_will(
    shared: &Arc<Shared>,
    client_id: &Arc<str>,
    connection: u64,
    message: Arc<Message>,
    delay: Option<Duration>,
) {
    let Some(delay) = delay else {
        match route_unacknowledged(shared, &message) {
            Ok(_) => {
                tracing::info!(client = %client_id, topic = message.topic.as_str(), "will published")
            }
            Err(e) => {
                tracing::warn!(client = %client_id, topic = message.topic.as_str(), error = %e, "will refused")
            }
        }
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(client = %client_id, "will dropped: the runtime is shutting down");
        return;
    };
    shared
        .delayed_wills
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(client_id.clone(), connection);
    let (shared, client_id) = (shared.clone(), client_id.clone());
    runtime.spawn(async move {
        tokio::time::sleep(delay).await;
        // Still this connection's will: the client did not connect again within the delay.
        let due = {
            let mut wills = shared.delayed_wills.lock().unwrap_or_else(|p| p.into_inner());
            if wills.get(&client_id) == Some(&connection) {
                wills.remove(&client_id);
                true
            } else {
                false
            }
        };
        if !due {
            tracing::info!(client = %client_id, "will dropped: the client reconnected within its delay");
        } else if let Err(e) = route_unacknowledged(&shared, &message) {
            tracing::warn!(client = %client_id, topic = message.topic.as_str(), error = %e, "will refused");
        } else {
            tracing::info!(client = %client_id, topic = message.topic.as_str(), "will published after its delay");
        }
    });
}

impl Drop for Conn {
    fn drop(&mut self) {
        // An exit path that did not close the session (an early error return, a panic, the
        // task cancelled): the connection is lost.
        if self.closed.is_none() {
            self.finish(&CloseReason::Lost("connection task ended".into()));
        }
    }
}

impl Conn {
    fn is_v5(&self) -> bool {
        self.session.version() == ProtocolVersion::V5
    }

    /// Closes the session once: will, router detach (unacknowledged QoS 1 messages stay with a
    /// persistent session), certificate index, meter slot.
    fn finish(&mut self, reason: &CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason.clone());
        let shared = self.shared.clone();
        self.announce_disconnected(reason);
        let closed = self.session.close(reason, Instant::now());
        if let Some((message, delay)) = closed.will {
            publish_will(&shared, &self.client_id, self.connection, message, delay);
        }
        let mut unacked = closed.unacked;
        // Under the router lock, so that a publisher waiting for room in this queue, which
        // fails as soon as it is closed, finds the session detached (with what the queue held
        // first) when it hands its delivery back (`place_blocked`).
        let mut router = shared.router.lock().unwrap_or_else(|p| p.into_inner());
        self.rx.close();
        while let Ok(mut d) = self.rx.try_recv() {
            if d.qos != QoS::AtMostOnce {
                d.retain = d.retain && d.message.retain;
                unacked.push(d);
            }
        }
        let detached = router.try_detach(&self.client_id, self.connection, unacked, Instant::now());
        drop(router);
        if let Err(e) = detached {
            // Memory is detached all the same; what the store missed is lost on a restart.
            tracing::error!(client = %self.client_id, error = %e, "session store failed at disconnect");
        }
        {
            let mut map = shared
                .by_certificate
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(list) = map.get_mut(&self.certificate) {
                list.retain(|(c, _)| *c != self.connection);
                if list.is_empty() {
                    map.remove(&self.certificate);
                }
            }
        }
        self.account_deliveries();
        // Before the meter slot is freed: once `BrokerHandle::connections` no longer counts
        // this connection, its activity is in the table.
        let (why, _) = disconnect_reason(reason);
        shared.activity.disconnected(
            &self.client_id,
            self.is_thing,
            self.connection,
            &mut self.activity,
            why,
            unix_now(),
        );
        if let Some(m) = self.meter.take()
            && let Err(e) = shared.classes[self.class].table.disconnect(
                m,
                &self.client_id,
                &shared.meter,
                unix_now(),
            )
        {
            tracing::error!(error = %e, "meter flush failed");
        }
    }

    /// Moves what the session wrote since the last call into the stats and the meter.
    fn account_deliveries(&mut self) {
        let shared = &*self.shared;
        let mut delivered = 0;
        for bytes in self.session.drain_delivered() {
            delivered += 1;
            self.activity.received(bytes);
            if let Some(meter) = &self.meter {
                let _ = shared.classes[self.class]
                    .table
                    .record_delivery(meter, bytes);
            }
        }
        if delivered > 0 {
            shared
                .stats
                .deliveries
                .fetch_add(delivered, Ordering::Relaxed);
        }
        let dropped = self.session.counters().dropped;
        if dropped > self.dropped_seen {
            shared
                .stats
                .queue_drops
                .fetch_add(dropped - self.dropped_seen, Ordering::Relaxed);
            self.dropped_seen = dropped;
        }
    }

    /// Runs the session's events to completion: the packets in `rbuf`, and what deliveries
    /// raised. `Some` ends the connection.
    ///
    /// `now` is the clock read once for the whole batch (every packet of one socket read): the
    /// session and the meter see the same instant for each of them, which costs one clock read
    /// per read instead of one per message. A publish whose handling had to wait (a delay, a
    /// topic service, a full subscriber) is followed by a fresh read, so waiting never leaves
    /// the rest of the batch on a stale clock.
    async fn process(&mut self, rbuf: &mut BytesMut, mut now: Instant) -> Option<CloseReason> {
        let mut end = None;
        while let Some(event) = self.session.poll(rbuf, now) {
            match event {
                Event::Publish(p) => {
                    let (close, waited) =
                        Waited::new(std::pin::pin!(self.on_publish(p, now))).await;
                    if let Some(close) = close {
                        end = Some(close);
                        break;
                    }
                    if waited {
                        now = Instant::now();
                    }
                }
                Event::Subscribe(s) => self.on_subscribe(s),
                Event::Unsubscribe(u) => {
                    let existed: Vec<Result<bool, ReasonCode>> = {
                        let mut router =
                            self.shared.router.lock().unwrap_or_else(|p| p.into_inner());
                        u.filters
                            .iter()
                            .map(|f| {
                                router.try_unsubscribe(&self.client_id, f).map_err(|e| {
                                    tracing::error!(client = %self.client_id, filter = f.as_str(), error = %e, "unsubscribe not stored");
                                    e.reason_code()
                                })
                            })
                            .collect()
                    };
                    self.session.complete_unsubscribe(u.packet_id, &existed);
                    let topics = u.filters.iter().map(|f| f.as_str().to_string()).collect();
                    self.announce(|p, timestamp| LifecycleEvent::Unsubscribed {
                        client_id: p.0.to_string(),
                        timestamp,
                        session_identifier: p.1.session.clone(),
                        principal_identifier: p.1.principal.clone(),
                        topics,
                    });
                }
                Event::Denied(d) => {
                    self.shared.stats.deny(d.action);
                    self.activity.auth_failures += 1;
                    if d.action == "receive" {
                        tracing::debug!(client = %self.client_id, topic = %d.resource, "iot:Receive denied: not delivered");
                    } else {
                        tracing::warn!(client = %self.client_id, action = d.action, resource = %d.resource, "{}", d.reason);
                    }
                }
                Event::Close(reason) => {
                    if let CloseReason::Server(code) = &reason {
                        tracing::info!(client = %self.client_id, reason = code.name(PacketType::Disconnect), "closing");
                    }
                    end = Some(reason);
                }
            }
        }
        self.account_deliveries();
        self.fold_if_due(now);
        end
    }

    /// When the activity counters are next due to be folded: `None` while they are empty.
    fn fold_deadline(&self) -> Option<Instant> {
        (!self.activity.is_zero()).then(|| self.folded + FOLD_INTERVAL)
    }

    /// Folds the activity counters into the broker's table when they hold something and the
    /// last fold is [`FOLD_INTERVAL`] old: one lock per connection per interval at most.
    fn fold_if_due(&mut self, now: Instant) {
        if self.fold_deadline().is_some_and(|at| now >= at) {
            self.shared
                .activity
                .fold(&self.client_id, self.is_thing, &mut self.activity);
            self.folded = now;
        }
    }

    /// Checks the connection's limits without consuming, then takes from the account's, then
    /// consumes and counts on the connection (its task is the single writer, so the peeked
    /// answer still holds). A refused or failed message is never counted; any error refuses.
    fn admit(&mut self, bytes: u64, retained: bool, now: thingkit_meter::Nanos) -> Admission {
        let shared = &*self.shared; // a field borrow, not an Arc clone per message
        let limited = |decision: RateDecision| match decision {
            RateDecision::Allow => None,
            RateDecision::Limited {
                limit,
                action,
                retry_after,
            } => Some(Admission::Limited {
                limit,
                action,
                retry_after,
            }),
        };
        let Some(m) = self.meter.as_mut() else {
            return Admission::Failed("the connection has no meter handle".into());
        };
        match shared.classes[self.class].table.peek_publish(m, bytes, now) {
            Ok(decision) => {
                if let Some(refused) = limited(decision) {
                    return refused;
                }
            }
            Err(e) => return Admission::Failed(format!("connection meter: {e}")),
        }
        let account = match &self.account_limit {
            Some(h) => shared.account_limiter.check_handle(h, bytes, now),
            None => shared.account_limiter.check_key(&self.account, bytes, now),
        };
        match account {
            Ok(decision) => {
                if let Some(refused) = limited(decision) {
                    return refused;
                }
            }
            Err(e) => return Admission::Failed(format!("account limiter: {e}")),
        }
        match shared.classes[self.class]
            .table
            .record_publish(m, bytes, retained, now)
        {
            Ok(decision) => limited(decision).unwrap_or(Admission::Allowed),
            Err(e) => Admission::Failed(format!("connection meter: {e}")),
        }
    }

    /// Meters, serves or routes one authorized PUBLISH and acknowledges it. `Some` ends the
    /// connection (a limit whose action is to disconnect).
    /// `now` is the batch's clock reading (see [`Conn::process`]).
    async fn on_publish(&mut self, p: InboundPublish, now: Instant) -> Option<CloseReason> {
        let shared = self.shared.clone();
        let (mut message, packet_id) = (p.message, p.packet_id);
        let topic = message.topic.clone();
        // Metering: the connection's and the account's limits, then the counters. A message
        // the meter cannot decide on is refused, never admitted unmetered.
        let bytes = message.size() as u64;
        let mut admission = self.admit(bytes, message.retain, shared.nanos_at(now));
        let mut delayed = false;
        // MQTT 3.1.1 cannot refuse a QoS 1 publish except by closing the connection: a
        // rejection is first turned into a delay, so a client bursting over its rate is
        // slowed down rather than disconnected.
        let v311_qos1 = !self.is_v5() && packet_id.is_some();
        if let Admission::Limited {
            limit,
            action,
            retry_after,
        } = admission
            && (action == LimitAction::Delay
                || (v311_qos1 && matches!(action, LimitAction::Reject(_))))
        {
            // Back-pressure: hold this client's next packets, then decide again. A message
            // still over the limit after the wait is refused with Quota exceeded, as if its
            // action were Reject: waiting must not become a way around the limit.
            shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
            delayed = true;
            let wait = retry_after
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_secs(1));
            tracing::info!(client = %self.client_id, topic = topic.as_str(), ?limit, ?wait, "publish over the rate limit: delayed");
            tokio::time::sleep(wait).await;
            admission = match self.admit(bytes, message.retain, shared.now_nanos()) {
                Admission::Limited {
                    limit, retry_after, ..
                } => Admission::Limited {
                    limit,
                    action: LimitAction::Reject(LimitReason::QuotaExceeded),
                    retry_after,
                },
                other => other,
            };
        }
        match admission {
            Admission::Allowed => {}
            Admission::Failed(e) => {
                // Fail closed. MQTT 5: PUBACK 0x80 Unspecified error, not 0x97: the client is
                // within its quotas, the broker failed, and 0x97 would tell it to slow down
                // for a fault of ours. MQTT 3.1.1 has no negative PUBACK: a QoS 1 publish
                // closes the connection (`refuse_publish`).
                shared.stats.meter_refusals.fetch_add(1, Ordering::Relaxed);
                tracing::error!(client = %self.client_id, topic = topic.as_str(), error = %e, "publish refused: the meter failed");
                return self.refuse_publish(
                    packet_id,
                    ReasonCode::UNSPECIFIED_ERROR,
                    "metering failed; not delivered",
                );
            }
            Admission::Limited {
                limit,
                action,
                retry_after,
            } => {
                if !delayed {
                    // A delayed message was counted when it was held back.
                    shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(client = %self.client_id, topic = topic.as_str(), ?limit, ?action, ?retry_after, "publish over the rate limit");
                match action {
                    LimitAction::Drop => {
                        self.acknowledge(packet_id, ReasonCode::SUCCESS, None);
                        return None;
                    }
                    LimitAction::Delay | LimitAction::Reject(_) => {
                        // Delay does not reach here (it was turned into Reject above).
                        let code = match action {
                            LimitAction::Reject(code) => code,
                            _ => LimitReason::QuotaExceeded,
                        };
                        // thingkit-meter refuses reject codes no PUBACK can carry (0x96), but
                        // a CONNACK-only code (0x9F) can still be configured for a publish
                        // limit: answer 0x97 Quota exceeded then, and name the limit in the
                        // reason string.
                        let mut rc = ReasonCode(code.code());
                        if !rc.allowed_in(PacketType::PubAck, ProtocolVersion::V5) {
                            rc = ReasonCode::QUOTA_EXCEEDED;
                        }
                        let reason = format!("{limit:?} rate limit exceeded ({code:?})");
                        return self.refuse_publish(packet_id, rc, &reason);
                    }
                    LimitAction::Disconnect(code) => {
                        return Some(CloseReason::Server(ReasonCode(code.code())));
                    }
                }
            }
        }
        shared.stats.publishes_in.fetch_add(1, Ordering::Relaxed);
        self.activity.sent(bytes);
        if is_job_topic(topic.as_str()) {
            shared.activity.job_message_in();
        }

        // Broker-served topics: the service claiming the topic answers; its replies go to
        // the requesting client only, and the request is routed only if the service says so.
        if let Some(service) = shared.services.find(&topic).cloned() {
            let answered = if service.blocking() {
                // Off the connection's runtime thread: it may sign, write or wait.
                let (svc, request, client_id, certificate) = (
                    service.clone(),
                    message.clone(),
                    self.client_id.clone(),
                    self.certificate,
                );
                tokio::task::spawn_blocking(move || {
                    svc.handle(&ServiceRequest {
                        message: &request,
                        client_id: &client_id,
                        certificate: &certificate,
                    })
                })
                .await
                .map_err(|e| e.to_string())
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    service.handle(&ServiceRequest {
                        message: &message,
                        client_id: &self.client_id,
                        certificate: &self.certificate,
                    })
                }))
                .map_err(|_| "the service panicked".to_string())
            };
            let request = ServiceRequest {
                message: &message,
                client_id: &self.client_id,
                certificate: &self.certificate,
            };
            let (mut response, replies) = match answered {
                Ok(mut response) => {
                    let replies = std::mem::take(&mut response.replies);
                    (Some(response), replies)
                }
                Err(e) => {
                    // The service failed: the request got no answer, and it must not be
                    // routed either. MQTT 5: PUBACK 0x80 Unspecified error (3.1.1: a plain
                    // PUBACK), plus the service's failure replies (fleet provisioning:
                    // `.../rejected`).
                    shared
                        .stats
                        .provisioning_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(client = %self.client_id, topic = topic.as_str(), service = service.name(), error = %e, "topic service failed");
                    (None, service.failure_replies(&request))
                }
            };
            let now = Instant::now();
            let mut acked = false;
            match &response {
                None => {
                    self.acknowledge(
                        packet_id,
                        ReasonCode::UNSPECIFIED_ERROR,
                        Some(&format!("{} failed", service.name())),
                    );
                    acked = true;
                }
                Some(r) if r.disposition == Disposition::Consume => {
                    self.acknowledge(packet_id, r.code, r.reason.as_deref());
                    acked = true;
                }
                Some(_) => {}
            }
            for reply in replies {
                tracing::info!(client = %self.client_id, topic = %reply.topic, service = service.name(), "service reply");
                let Ok(reply_topic) = TopicName::new(&reply.topic) else {
                    continue;
                };
                shared
                    .activity
                    .outbound(&reply.topic, reply.payload.len(), 1);
                self.session.deliver(
                    Delivery {
                        message: Arc::new(Message {
                            topic: reply_topic,
                            payload: reply.payload.into(),
                            qos: message.qos,
                            retain: false,
                            properties: PacketProperties::default(),
                            from: None,
                            received: now,
                        }),
                        qos: message.qos,
                        retain: false,
                        subscription_id: None,
                    },
                    now,
                );
            }
            let publishes = response
                .as_mut()
                .map(|r| std::mem::take(&mut r.publishes))
                .unwrap_or_default();
            self.publish_for_service(service.name(), publishes).await;
            if acked {
                return self.end_if_own_queue_over();
            }
            if let Some(ServiceResponse {
                disposition: Disposition::Route { retain },
                ..
            }) = response
            {
                message.retain = retain;
            }
        }

        let message = Arc::new(message);
        let origin = super::rules::Origin {
            principal: Some(Arc::from(self.certificate.to_string())),
            provenance: Default::default(),
        };
        let (routed, confirmation) = match route_message_from(&shared, &message, &origin) {
            Ok(routed) => routed,
            Err(e) => {
                tracing::warn!(client = %self.client_id, topic = message.topic.as_str(), error = %e, "publish refused");
                return self.refuse_publish(packet_id, e.reason_code(), &e.to_string());
            }
        };
        let matched = routed.queued + routed.blocked.len();
        // This client is acknowledged only once the copies for full subscribers are placed.
        if let Err(e) = self.place_routed(routed.blocked).await {
            tracing::error!(client = %self.client_id, topic = message.topic.as_str(), error = %e, "publish refused: the session store failed");
            return self.refuse_publish(packet_id, ReasonCode::UNSPECIFIED_ERROR, &e.to_string());
        }
        // With a bridge, subscribers on the other servers of the cluster may match: this server
        // cannot tell, so it never answers 0x10 No matching subscribers.
        let code = if matched == 0 && self.is_v5() && shared.bridge.is_none() {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        match (packet_id, confirmation) {
            // The cluster's bridge makes a QoS 1 message durable on its way to the other
            // servers: the PUBACK says so only once it has. The connection reads on meanwhile.
            (Some(packet_id), Some(confirmation)) => self.acks.push_back(PendingAck {
                packet_id,
                confirmation: Some(confirmation),
                code,
                reason: None,
            }),
            (packet_id, _) => self.acknowledge(packet_id, code, None),
        }
        self.end_if_own_queue_over()
    }

    /// Places the copies of a routed message that found full queues ([`crate::Routed::blocked`]):
    /// copies for other connections wait for room ([`place_blocked`]; this connection reads
    /// nothing meanwhile, which is the back-pressure); a copy for this very connection cannot
    /// wait for itself and goes straight into the session, beyond its limit (see
    /// [`Conn::end_if_own_queue_over`]).
    async fn place_routed(&mut self, blocked: Vec<crate::Blocked>) -> Result<(), crate::Error> {
        let (own, others): (Vec<_>, Vec<_>) = blocked
            .into_iter()
            .partition(|b| b.connection == self.connection && b.client_id == self.client_id);
        let now = Instant::now();
        for b in own {
            self.session.deliver_beyond_limit(b.delivery, now);
        }
        if others.is_empty() {
            return Ok(());
        }
        self.shared
            .stats
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        place_blocked(&self.shared, others).await
    }

    /// Ends a connection whose session's queue went over its limit with copies of what the
    /// client published (or requested) itself: it publishes to itself faster than it takes
    /// deliveries, so it is its own slow subscriber. What it holds stays with its session.
    fn end_if_own_queue_over(&mut self) -> Option<CloseReason> {
        if self.session.has_room() {
            return None;
        }
        self.shared
            .stats
            .slow_subscriber_disconnects
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(client = %self.client_id, "slow subscriber disconnected: it publishes to itself faster than it takes deliveries");
        Some(CloseReason::Server(ReasonCode::QUOTA_EXCEEDED))
    }

    /// Publishes a service's [`ServiceResponse::publishes`] to their subscribers, at QoS 1,
    /// placing copies for full queues like any publish ([`Conn::place_routed`]).
    async fn publish_for_service(&mut self, service: &str, publishes: Vec<ServiceReply>) {
        for p in publishes {
            let Ok(topic) = TopicName::new(&p.topic) else {
                tracing::error!(service, topic = %p.topic, "service publish on an invalid topic dropped");
                continue;
            };
            let message = Arc::new(Message {
                topic,
                payload: p.payload.into(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PacketProperties::default(),
                from: None,
                received: Instant::now(),
            });
            let routed = match route_message(&self.shared, &message) {
                Ok(routed) => routed,
                Err(e) => {
                    tracing::error!(service, topic = message.topic.as_str(), error = %e, "service publish not routed");
                    continue;
                }
            };
            if let Err(e) = self.place_routed(routed.blocked).await {
                tracing::error!(service, error = %e, "session store failed: service publish dropped");
            }
        }
    }

    /// Acknowledges a QoS 1 PUBLISH now, or behind the acknowledgements still waiting for the
    /// bridge ([`Conn::acks`]). QoS 0 (`None`) has no answer.
    fn acknowledge(
        &mut self,
        packet_id: Option<thingkit_mqtt::PacketId>,
        code: ReasonCode,
        reason: Option<&str>,
    ) {
        match packet_id {
            Some(packet_id) if !self.acks.is_empty() => self.acks.push_back(PendingAck {
                packet_id,
                confirmation: None,
                code,
                reason: reason.map(str::to_owned),
            }),
            _ => self.session.acknowledge(packet_id, code, reason),
        }
    }

    /// The bridge answered the oldest held-back acknowledgement: PUBACK (MQTT 5: 0x80 when the
    /// message could not be made durable; 3.1.1 closes the connection then, see
    /// [`Conn::refuse_publish`]), then every acknowledgement behind it that waits for nothing
    /// more.
    fn on_confirmed(&mut self, confirmed: Result<(), String>) -> Option<CloseReason> {
        let front = self.acks.pop_front()?;
        match confirmed {
            Ok(()) => {
                self.session
                    .acknowledge(Some(front.packet_id), front.code, front.reason.as_deref())
            }
            Err(e) => {
                self.shared
                    .stats
                    .bridge_refusals
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(client = %self.client_id, error = %e, "publish refused: not durable in the cluster");
                if self.is_v5() {
                    self.session.acknowledge(
                        Some(front.packet_id),
                        ReasonCode::UNSPECIFIED_ERROR,
                        Some(&e),
                    );
                } else {
                    self.shared
                        .stats
                        .refusal_disconnects
                        .fetch_add(1, Ordering::Relaxed);
                    return Some(CloseReason::Server(ReasonCode::UNSPECIFIED_ERROR));
                }
            }
        }
        while self.acks.front().is_some_and(|a| a.confirmation.is_none()) {
            if let Some(a) = self.acks.pop_front() {
                self.session
                    .acknowledge(Some(a.packet_id), a.code, a.reason.as_deref());
            }
        }
        None
    }

    /// Answers a refused publish. MQTT 5: PUBACK with `code` and `reason`. MQTT 3.1.1 has no
    /// negative PUBACK, and a positive one for a message that was not delivered would be a
    /// lie, while no answer would leave the client's packet ID in flight for ever: a refused
    /// QoS 1 publish closes the connection (the client sends it again when it reconnects).
    /// QoS 0 has no answer.
    fn refuse_publish(
        &mut self,
        packet_id: Option<thingkit_mqtt::PacketId>,
        code: ReasonCode,
        reason: &str,
    ) -> Option<CloseReason> {
        if self.is_v5() {
            self.acknowledge(packet_id, code, Some(reason));
            return None;
        }
        packet_id?;
        self.shared
            .stats
            .refusal_disconnects
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(client = %self.client_id, %reason, "MQTT 3.1.1 QoS 1 publish refused: connection closed");
        Some(CloseReason::Server(code))
    }

    /// Applies a SUBSCRIBE's granted filters to the router and answers it, with the retained
    /// messages the subscriptions ask for.
    fn on_subscribe(&mut self, mut request: SubscribeRequest) {
        let now = Instant::now();
        let mut retained = Vec::new();
        {
            let mut router = self.shared.router.lock().unwrap_or_else(|p| p.into_inner());
            for f in &mut request.filters {
                let Ok(granted) = f.granted else { continue };
                let existed = match router.try_subscribe(&self.client_id, &f.filter, granted) {
                    Ok(existed) => existed,
                    Err(e) => {
                        // Not stored, not subscribed: the SUBACK says so (0x80).
                        tracing::error!(client = %self.client_id, filter = f.filter.as_str(), error = %e, "subscription not stored");
                        f.granted = Err(e.reason_code());
                        continue;
                    }
                };
                if f.sends_retained(existed) {
                    retained.extend(
                        router
                            .retained_matching(&f.filter, now)
                            .into_iter()
                            .filter_map(|m| f.retained_delivery(m)),
                    );
                }
                tracing::info!(client = %self.client_id, filter = f.filter.as_str(), qos = granted.qos.as_u8(), "subscribed");
            }
        }
        self.session.complete_subscribe(&request, retained, now);
        let topics: Vec<String> = request
            .filters
            .iter()
            .filter(|f| f.granted.is_ok())
            .map(|f| f.filter.as_str().to_string())
            .collect();
        if !topics.is_empty() {
            self.announce(|p, timestamp| LifecycleEvent::Subscribed {
                client_id: p.0.to_string(),
                timestamp,
                session_identifier: p.1.session.clone(),
                principal_identifier: p.1.principal.clone(),
                topics,
            });
        }
    }

    /// Publishes a lifecycle event the way AWS IoT does (unless they are off or the client
    /// ID has wildcards): QoS 1, not retained, from the broker.
    fn announce(&self, event: impl FnOnce((&str, &Presence), u64) -> LifecycleEvent) {
        if !self.shared.config.lifecycle_events || !publishes_lifecycle_events(&self.client_id) {
            return;
        }
        let event = event((&self.client_id, &self.presence), unix_now_ms());
        let Ok(topic) = TopicName::new(&event.topic()) else {
            return;
        };
        let message = Arc::new(Message {
            topic,
            payload: event.to_json().into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PacketProperties::default(),
            from: None,
            received: Instant::now(),
        });
        if let Err(e) = route_unacknowledged(&self.shared, &message) {
            tracing::warn!(client = %self.client_id, error = %e, "lifecycle event not routed");
        }
    }

    /// The presence version, the registry's connectivity status and the connected event.
    fn announce_connected(&mut self, peer: SocketAddr) {
        let now_ms = unix_now_ms();
        self.presence.version = self
            .shared
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connected(&self.client_id, now_ms);
        if let Some(thing) = &self.presence.thing {
            self.shared
                .directory
                .thing_connected(thing, now_ms, self.presence.version);
        }
        self.announce(|p, timestamp| LifecycleEvent::Connected {
            client_id: p.0.to_string(),
            timestamp,
            session_identifier: p.1.session.clone(),
            principal_identifier: p.1.principal.clone(),
            ip_address: peer.ip(),
            version_number: p.1.version,
        });
    }

    /// The disconnected event and connectivity status for `reason`.
    fn announce_disconnected(&mut self, reason: &CloseReason) {
        let now_ms = unix_now_ms();
        let (why, by_client) = disconnect_reason(reason);
        self.shared
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .disconnected(&self.client_id, self.presence.version, now_ms);
        if let Some(thing) = &self.presence.thing {
            self.shared.directory.thing_disconnected(
                thing,
                now_ms,
                self.presence.version,
                why.as_str(),
            );
        }
        self.announce(|p, timestamp| LifecycleEvent::Disconnected {
            client_id: p.0.to_string(),
            timestamp,
            session_identifier: p.1.session.clone(),
            principal_identifier: p.1.principal.clone(),
            client_initiated_disconnect: by_client,
            disconnect_reason: why,
            version_number: p.1.version,
        });
    }
}

/// AWS's `disconnectReason` for how a connection closed, and whether the client initiated it.
fn disconnect_reason(reason: &CloseReason) -> (DisconnectReason, bool) {
    match reason {
        CloseReason::ClientDisconnect { .. } => (DisconnectReason::ClientInitiatedDisconnect, true),
        CloseReason::Server(code) => (DisconnectReason::for_server_disconnect(*code), false),
        CloseReason::Lost(_) => (DisconnectReason::ConnectionLost, false),
    }
}

/// A future's output and whether it had to wait: polled more than once means it returned
/// `Pending` at least once (it waited on a timer, a channel or a blocking task), so the caller
/// reads the clock again instead of reusing the reading it took before.
struct Waited<'a, F> {
    future: std::pin::Pin<&'a mut F>,
    polls: u32,
}

impl<'a, F: std::future::Future> Waited<'a, F> {
    fn new(future: std::pin::Pin<&'a mut F>) -> Self {
        Waited { future, polls: 0 }
    }
}

impl<F: std::future::Future> std::future::Future for Waited<'_, F> {
    type Output = (F::Output, bool);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.polls = self.polls.saturating_add(1);
        let waited = self.polls > 1;
        self.future.as_mut().poll(cx).map(|out| (out, waited))
    }
}
