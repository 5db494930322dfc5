//! One client connection: TLS handshake, identity, CONNECT, then the packet loop. The task owns
//! the socket, the codec state, the topic-alias maps, the QoS 1 in-flight window, the policy set
//! compiled for this identity and the meter's connection handle (the single writer of its
//! counters).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use thingkit_firmware::Verifier;
use thingkit_meter::Connection as MeterConnection;
use thingkit_meter::KeyHandle;
use thingkit_meter::{LimitAction, LimitKind, LimitReason, RateDecision};
use thingkit_mqtt::bytes::BytesMut;
use thingkit_mqtt::{
    ConnAck, Connect, Decoder, DecoderConfig, Disconnect, Encoder, InboundAliases, MqttStr,
    OutboundAliases, Packet, PacketId, PacketProperties, PacketType, Properties, ProtocolVersion,
    PubResponse, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, TopicName, UnsubAck,
    Unsubscribe,
};
use thingkit_policy::{CertificateContext, Context, PolicySet, Request, ThingContext};
use thingkit_provision::CertificateId;
use thingkit_provision::{is_provisioning_topic, policy_certificate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{
    Authenticated, FIRMWARE_TOPIC_PREFIX, FIRMWARE_TOPIC_SUFFIX, REVOKE_TOPIC, Shared, unix_now,
};
use crate::{Delivery, GrantedSubscription, Message, Outlet, SessionExpiry};

type Stream = TlsStream<TcpStream>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The router's handle on one connection task: its bounded delivery queue and its kick signal.
/// Neither blocks, so the router lock is never held across a wait.
#[derive(Debug)]
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

/// Why a connection ends.
enum End {
    /// The client sent DISCONNECT; `will` says whether to publish the will (MQTT 5 0x04).
    ClientDisconnect { will: bool },
    /// The broker closes it; MQTT 5 clients get DISCONNECT with this reason first.
    Server(ReasonCode),
    /// The socket closed or failed, or the client broke the protocol.
    Closed(String),
}

/// Runs one connection to completion. Never panics on client input; every wait is bounded.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let timeout = shared.config.connect_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
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
    if let Err(e) = serve(tls, peer, shared).await {
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
        buf.clear();
    }
    Ok(())
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
        if stream.read_buf(rbuf).await? == 0 {
            return Err("closed before CONNECT".into());
        }
    }
}

fn refuse_code(version: ProtocolVersion, v5: ReasonCode) -> ReasonCode {
    match version {
        ProtocolVersion::V5 => v5,
        // MQTT 3.1.1 §3.2.2.3: 4 bad user name or password, 5 not authorized, 3 unavailable.
        ProtocolVersion::V311 => match v5 {
            ReasonCode::BAD_USER_NAME_OR_PASSWORD => ReasonCode(4),
            ReasonCode::SERVER_UNAVAILABLE
            | ReasonCode::SERVER_BUSY
            | ReasonCode::CONNECTION_RATE_EXCEEDED => ReasonCode(3),
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => ReasonCode(2),
            _ => ReasonCode(5),
        },
    }
}

async fn refuse(
    stream: &mut Stream,
    encoder: &Encoder,
    code: ReasonCode,
    reason: &str,
) -> Result<(), BoxError> {
    let mut properties = PacketProperties::default();
    if encoder.version() == ProtocolVersion::V5 {
        properties.reason_string = MqttStr::new(reason).ok();
    }
    let mut buf = BytesMut::new();
    encoder.encode(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: refuse_code(encoder.version(), code),
            properties,
        }),
        &mut buf,
    )?;
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

/// Logs a denial with the statements and context that decided it.
fn log_denial(policies: &PolicySet, request: &Request, ctx: &Context, client: &str) -> String {
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
    let why = if by.is_empty() {
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
    };
    tracing::warn!(client, "{why}");
    why
}

struct Conn {
    shared: Arc<Shared>,
    version: ProtocolVersion,
    encoder: Encoder,
    client_id: Arc<str>,
    certificate: CertificateId,
    thing: Option<String>,
    account: Arc<str>,
    policies: PolicySet,
    ctx: Context,
    meter: Option<MeterConnection>,
    /// The account's publish-limit state, resolved once so each message checks it without a
    /// hash lookup (`None` if the limiter was full: then by key, which refuses the message
    /// while the limiter is still full).
    account_limit: Option<KeyHandle>,
    inbound_aliases: InboundAliases,
    outbound_aliases: OutboundAliases,
    client_max_packet: u32,
    /// QoS 1 deliveries awaiting PUBACK.
    inflight: HashMap<u16, Delivery>,
    inflight_max: usize,
    /// Deliveries waiting for room in the in-flight window.
    pending: VecDeque<Delivery>,
    next_id: u16,
    will: Option<Box<thingkit_mqtt::Will>>,
    out: BytesMut,
}

async fn serve(mut stream: Stream, peer: SocketAddr, shared: Arc<Shared>) -> Result<(), BoxError> {
    let config = &shared.config;
    let chain: Vec<Vec<u8>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let mut decoder = Decoder::detect()
        .with_config(DecoderConfig::default().with_max_packet_size(config.max_packet_size));
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
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
    let encoder = Encoder::new(version);

    // 1. Identity: the verified certificate must be ACTIVE in the registry.
    let auth = match shared
        .directory
        .authenticate(&chain, connect.client_id.as_str())
    {
        Ok(a) => a,
        Err(e) => {
            shared
                .stats
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, reason = %e, "CONNECT refused: authentication failed");
            return refuse(&mut stream, &encoder, ReasonCode::NOT_AUTHORIZED, &e).await;
        }
    };

    // 2. Client ID: an empty one gets the thing name (AWS requires one; MQTT lets the server
    //    assign it with Clean Start).
    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if !connect.clean_start {
            shared
                .stats
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            return refuse(
                &mut stream,
                &encoder,
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

    // 3. Policies: compile the identity's effective policies once for this connection.
    let documents: Vec<(String, Arc<thingkit_policy::PolicyDocument>)> = auth
        .identity
        .policies
        .iter()
        .map(|p| (p.name.to_string(), p.version.document.parsed().clone()))
        .collect();
    let policies = match PolicySet::from_documents(
        documents.iter().map(|(n, d)| (n.clone(), &**d)),
        config.policy_options,
    ) {
        Ok(p) => p,
        Err(e) => {
            shared
                .stats
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(%peer, error = %e, "cannot compile the device's policies");
            return refuse(
                &mut stream,
                &encoder,
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

    let request = config.arn.connect(&client_id);
    if !policies.decide(&request, &ctx).is_allowed() {
        shared
            .stats
            .connects_refused
            .fetch_add(1, Ordering::Relaxed);
        shared.stats.denied.fetch_add(1, Ordering::Relaxed);
        let why = log_denial(&policies, &request, &ctx, &client_id);
        return refuse(&mut stream, &encoder, ReasonCode::NOT_AUTHORIZED, &why).await;
    }
    if let Some(will) = &connect.will {
        let request = config.arn.publish(will.topic.as_str(), will.retain);
        if !policies.decide(&request, &ctx).is_allowed() {
            shared
                .stats
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            let why = log_denial(&policies, &request, &ctx, &client_id);
            return refuse(&mut stream, &encoder, ReasonCode::NOT_AUTHORIZED, &why).await;
        }
    }
    if let Some(limiter) = &shared.connect_limiter {
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
            shared
                .stats
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = %client_id, reason = %why, "CONNECT refused");
            return refuse(&mut stream, &encoder, code, &why).await;
        }
    }

    // 4. Metering handle and session.
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
    let meter = match shared.table.connect(&account, &client_id, unix_now()) {
        Ok(m) => m,
        Err(e) => {
            shared
                .stats
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = %client_id, error = %e, "CONNECT refused: server busy");
            return refuse(
                &mut stream,
                &encoder,
                ReasonCode::SERVER_BUSY,
                "too many connections",
            )
            .await;
        }
    };
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Delivery>(config.max_queued.max(1));
    let (kick_tx, mut kick_rx) = watch::channel::<Option<ReasonCode>>(None);
    let session_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
    let persistent = match version {
        ProtocolVersion::V311 => !connect.clean_start,
        ProtocolVersion::V5 => session_expiry > 0,
    };
    // MQTT 5 §3.1.2.11.2: 0xFFFFFFFF means the session does not expire.
    let expiry = (version == ProtocolVersion::V5 && session_expiry != u32::MAX)
        .then(|| Duration::from_secs(u64::from(session_expiry)));
    let session = match (persistent, expiry) {
        (false, _) => SessionExpiry::OnDisconnect,
        (true, None) => SessionExpiry::Never,
        (true, Some(after)) => SessionExpiry::After(after),
    };
    let attached = shared
        .router
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .attach(
            &client_id,
            connect.clean_start,
            session,
            connection,
            ConnectionOutlet {
                tx,
                kick: kick_tx.clone(),
            },
            Instant::now(),
        );
    let (session_present, backlog) = (attached.session_present, attached.backlog);
    let certificate = auth.identity.certificate_id;
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

    // 5. CONNACK.
    let keep_alive = connect.keep_alive.min(config.max_keep_alive);
    let mut ack = ConnAck {
        session_present,
        reason_code: ReasonCode::SUCCESS,
        properties: PacketProperties::default(),
    };
    if version == ProtocolVersion::V5 {
        let p = Properties {
            maximum_packet_size: NonZeroU32::new(config.max_packet_size),
            topic_alias_maximum: Some(config.topic_alias_maximum),
            receive_maximum: NonZeroU16::new(config.receive_maximum),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            shared_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            assigned_client_identifier: assigned.as_deref().and_then(|a| MqttStr::new(a).ok()),
            server_keep_alive: (keep_alive != connect.keep_alive).then_some(keep_alive),
            ..Properties::default()
        };
        ack.properties = p.into();
    }
    let client_max_packet = connect
        .properties
        .maximum_packet_size
        .map_or(u32::MAX, NonZeroU32::get);
    let mut conn = Conn {
        encoder,
        version,
        client_id: client_id.clone(),
        certificate,
        thing: auth.identity.thing.as_deref().map(str::to_string),
        account,
        policies,
        ctx,
        meter: Some(meter),
        account_limit,
        inbound_aliases: InboundAliases::new(match version {
            ProtocolVersion::V5 => config.topic_alias_maximum,
            ProtocolVersion::V311 => 0,
        }),
        outbound_aliases: OutboundAliases::new(connect.properties.topic_alias_maximum.unwrap_or(0)),
        client_max_packet,
        inflight: HashMap::new(),
        inflight_max: usize::from(
            connect
                .properties
                .receive_maximum
                .map_or(config.max_inflight, NonZeroU16::get)
                .min(config.max_inflight.max(1)),
        ),
        pending: VecDeque::new(),
        next_id: 0,
        will: connect.will,
        out: BytesMut::with_capacity(16 * 1024),
        shared: shared.clone(),
    };
    conn.encoder.encode(&Packet::ConnAck(ack), &mut conn.out)?;
    tracing::info!(client = %client_id, thing = conn.thing.as_deref().unwrap_or("-"),
        protocol = %version, %peer, session_present, "connected");
    for d in backlog {
        conn.deliver(d)?;
    }
    write(&mut stream, &mut conn.out).await?;

    // 6. The packet loop.
    let keep_alive_limit =
        (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut shutdown = shared.shutdown.clone();
    // Keep-alive counts what the client sends, not what it is sent [MQTT-3.1.2-24].
    let mut last_inbound = tokio::time::Instant::now();
    // Usage reaches the node meter at least once a minute, not only at disconnect.
    let mut flush = tokio::time::interval(METER_FLUSH);
    flush.tick().await;
    let end = loop {
        let deadline = async {
            match keep_alive_limit {
                Some(d) => tokio::time::sleep_until(last_inbound + d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stream.read_buf(&mut rbuf) => {
                match read {
                    Ok(0) => break End::Closed("closed by the client".into()),
                    Ok(_) => last_inbound = tokio::time::Instant::now(),
                    Err(e) => break End::Closed(e.to_string()),
                }
                let mut ended = None;
                loop {
                    match decoder.decode(&mut rbuf) {
                        Ok(Some(packet)) => {
                            if let Some(end) = conn.handle(packet).await {
                                ended = Some(end);
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::info!(client = %client_id, error = %e, "malformed packet");
                            let code = if matches!(e, thingkit_mqtt::Error::PacketTooLarge { .. }) { ReasonCode::PACKET_TOO_LARGE } else { ReasonCode::MALFORMED_PACKET };
                            ended = Some(End::Server(code));
                            break;
                        }
                    }
                }
                if let Err(e) = write(&mut stream, &mut conn.out).await {
                    break End::Closed(e.to_string());
                }
                if let Some(end) = ended { break end; }
            }
            Some(d) = rx.recv() => {
                let mut result = conn.deliver(d);
                // Drain whatever else is queued into the same write.
                while result.is_ok() && conn.out.len() < 64 * 1024 {
                    match rx.try_recv() {
                        Ok(d) => result = conn.deliver(d),
                        Err(_) => break,
                    }
                }
                if let Err(e) = result {
                    break End::Closed(e.to_string());
                }
                if let Err(e) = write(&mut stream, &mut conn.out).await {
                    break End::Closed(e.to_string());
                }
            }
            _ = kick_rx.changed() => {
                let code = (*kick_rx.borrow()).unwrap_or(ReasonCode::ADMINISTRATIVE_ACTION);
                break End::Server(code);
            }
            _ = shutdown.changed() => break End::Server(ReasonCode::SERVER_SHUTTING_DOWN),
            () = deadline => break End::Server(ReasonCode::KEEP_ALIVE_TIMEOUT),
            _ = flush.tick() => {
                if let Some(m) = conn.meter.as_mut()
                    && let Err(e) = shared.table.flush(m, &shared.meter, unix_now()) {
                        tracing::error!(error = %e, "meter flush failed");
                    }
            }
        }
    };

    // 7. Close: DISCONNECT for MQTT 5 on a server-side end, will, session, meter.
    // The will goes out on every end except a normal DISCONNECT [MQTT-3.1.2-8, MQTT-3.14.4-3].
    let publish_will = !matches!(end, End::ClientDisconnect { will: false });
    if let End::Server(code) = &end {
        if version == ProtocolVersion::V5 {
            let _ = conn.encoder.encode(
                &Packet::Disconnect(Disconnect {
                    reason_code: *code,
                    properties: PacketProperties::default(),
                }),
                &mut conn.out,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = write(&mut stream, &mut conn.out).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
    let reason = match &end {
        End::ClientDisconnect { .. } => "client disconnected".to_string(),
        End::Server(code) => format!("server closed: {}", code.name(PacketType::Disconnect)),
        End::Closed(why) => why.clone(),
    };
    tracing::info!(client = %client_id, %reason, "disconnected");
    if publish_will && let Some(will) = conn.will.take() {
        let message = Arc::new(Message {
            topic: will.topic.clone(),
            payload: will.payload.clone(),
            qos: will.qos.min_qos1(),
            retain: will.retain,
            properties: {
                // The Will Delay Interval belongs to the will, not to the PUBLISH.
                let mut p = will.properties.clone();
                if !p.is_empty() {
                    p.will_delay_interval = None;
                }
                p
            },
            from: Some(client_id.clone()),
            received: Instant::now(),
        });
        // MQTT 5 Will Delay Interval: a persistent session's will waits (at most until the
        // session would expire) and is dropped if the client reconnects meanwhile
        // [MQTT-3.1.3-9].
        let delay = will
            .properties
            .will_delay_interval
            .filter(|_| persistent && version == ProtocolVersion::V5)
            .map(|secs| Duration::from_secs(u64::from(secs)))
            .map(|d| expiry.map_or(d, |e| d.min(e)))
            .filter(|d| !d.is_zero());
        match delay {
            None => match conn.route(&message) {
                Ok(_) => {
                    tracing::info!(client = %client_id, topic = will.topic.as_str(), "will published");
                }
                Err(e) => {
                    tracing::warn!(client = %client_id, topic = will.topic.as_str(), error = %e, "will refused");
                }
            },
            Some(delay) => {
                let shared = shared.clone();
                let client_id = client_id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let resumed = shared
                        .router
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_attached(&client_id);
                    if resumed {
                        tracing::info!(client = %client_id, "will dropped: the client reconnected within its delay");
                    } else if let Err(e) = route_message(&shared, &message) {
                        tracing::warn!(client = %client_id, topic = message.topic.as_str(), error = %e, "will refused");
                    } else {
                        tracing::info!(client = %client_id, topic = message.topic.as_str(), "will published after its delay");
                    }
                });
            }
        }
    }
    // Unacknowledged and undelivered QoS 1 messages stay with a persistent session.
    let mut unacked: Vec<Delivery> = conn.inflight.drain().map(|(_, d)| d).collect();
    unacked.extend(conn.pending.drain(..));
    rx.close();
    while let Ok(d) = rx.try_recv() {
        if d.qos != QoS::AtMostOnce {
            unacked.push(d);
        }
    }
    for d in &mut unacked {
        d.retain = d.retain && d.message.retain;
    }
    shared
        .router
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .detach(&client_id, connection, unacked, Instant::now());
    {
        let mut map = shared
            .by_certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&certificate) {
            list.retain(|(c, _)| *c != connection);
            if list.is_empty() {
                map.remove(&certificate);
            }
        }
    }
    if let Some(m) = conn.meter.take()
        && let Err(e) = shared.table.disconnect(m, &shared.meter, unix_now())
    {
        tracing::error!(error = %e, "meter flush failed");
    }
    Ok(())
}

/// Stores (if retained) and routes a message; returns the number of subscribers it was queued
/// for. A retained message the retained store has no room for is refused as a whole (neither
/// stored nor routed): the publisher is answered 0x97 Quota exceeded.
fn route_message(shared: &Shared, message: &Arc<Message>) -> Result<usize, crate::Error> {
    let mut router = shared.router.lock().unwrap_or_else(|p| p.into_inner());
    let routed = router.publish(message)?;
    drop(router);
    if routed.dropped > 0 {
        shared
            .stats
            .queue_drops
            .fetch_add(routed.dropped as u64, Ordering::Relaxed);
    }
    Ok(routed.queued)
}

trait QosExt {
    fn min_qos1(self) -> QoS;
}
impl QosExt for QoS {
    /// This broker supports QoS 0 and 1 (announced as Maximum QoS 1).
    fn min_qos1(self) -> QoS {
        if self == QoS::AtMostOnce {
            self
        } else {
            QoS::AtLeastOnce
        }
    }
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

impl Conn {
    fn is_v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    fn send(&mut self, packet: &Packet) -> Result<(), BoxError> {
        self.encoder.encode(packet, &mut self.out)?;
        Ok(())
    }

    fn puback(&mut self, id: Option<PacketId>, code: ReasonCode, reason: Option<&str>) {
        if let Some(id) = id {
            let mut r = PubResponse::new(id);
            if self.is_v5() {
                r.reason_code = code;
                if let Some(reason) = reason {
                    r.properties.reason_string = MqttStr::new(reason).ok();
                }
            }
            if let Err(e) = self.send(&Packet::PubAck(r)) {
                tracing::error!(client = %self.client_id, error = %e, "cannot encode PUBACK");
            }
        }
    }

    /// Checks the connection's limits without consuming, then takes from the account's, then
    /// consumes and counts on the connection (its task is the single writer, so the peeked
    /// answer still holds). A refused or failed message is never counted; any error refuses.
    fn admit(&mut self, bytes: u64, retained: bool) -> Admission {
        let shared = &*self.shared; // a field borrow, not an Arc clone per message
        let now = shared.now_nanos();
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
        match shared.table.peek_publish(m, bytes, now) {
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
        match shared.table.record_publish(m, bytes, retained, now) {
            Ok(decision) => limited(decision).unwrap_or(Admission::Allowed),
            Err(e) => Admission::Failed(format!("connection meter: {e}")),
        }
    }

    fn route(&self, message: &Arc<Message>) -> Result<usize, crate::Error> {
        route_message(&self.shared, message)
    }

    /// Handles one packet; `Some` ends the connection.
    async fn handle(&mut self, packet: Packet) -> Option<End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await,
            Packet::PubAck(r) => {
                self.inflight.remove(&r.packet_id.get());
                while self.inflight.len() < self.inflight_max {
                    let Some(d) = self.pending.pop_front() else {
                        break;
                    };
                    if let Err(e) = self.deliver(d) {
                        return Some(End::Closed(e.to_string()));
                    }
                }
                None
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => {
                let _ = self.send(&Packet::PingResp);
                None
            }
            Packet::Disconnect(d) => Some(End::ClientDisconnect {
                will: d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            }),
            Packet::Connect(_) => Some(End::Server(ReasonCode::PROTOCOL_ERROR)), // [MQTT-3.1.0-2]
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                Some(End::Server(ReasonCode::PROTOCOL_ERROR)) // QoS 2 is never granted
            }
            Packet::Auth(_) => Some(End::Server(ReasonCode::BAD_AUTHENTICATION_METHOD)),
            other => {
                tracing::info!(client = %self.client_id, packet = %other.packet_type(), "unexpected packet from a client");
                Some(End::Server(ReasonCode::PROTOCOL_ERROR))
            }
        }
    }

    async fn on_publish(&mut self, mut p: Publish) -> Option<End> {
        let shared = self.shared.clone();
        if p.qos == QoS::ExactlyOnce {
            // Announced Maximum QoS 1 [MQTT-3.2.2-11]; 3.1.1 has no way to refuse but closing.
            return Some(End::Server(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if let Err(e) = self.inbound_aliases.resolve(&mut p) {
            tracing::info!(client = %self.client_id, error = %e, "bad topic alias");
            return Some(End::Server(ReasonCode::TOPIC_ALIAS_INVALID));
        }
        let Some(topic) = p.topic.clone() else {
            return Some(End::Server(ReasonCode::PROTOCOL_ERROR));
        };
        // Authorization: iot:Publish (and iot:RetainPublish for a retained message).
        let request = shared.config.arn.publish(topic.as_str(), p.retain);
        if !self.policies.decide(&request, &self.ctx).is_allowed() {
            shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            let why = log_denial(&self.policies, &request, &self.ctx, &self.client_id);
            // AWS: MQTT 5 answers PUBACK 0x87 (QoS 1) or drops (QoS 0); MQTT 3.1.1 disconnects.
            return match self.version {
                ProtocolVersion::V5 => {
                    self.puback(p.packet_id, ReasonCode::NOT_AUTHORIZED, Some(&why));
                    None
                }
                ProtocolVersion::V311 => Some(End::Server(ReasonCode::NOT_AUTHORIZED)),
            };
        }
        // Metering: the connection's and the account's limits, then the counters. A message
        // the meter cannot decide on is refused, never admitted unmetered.
        let bytes = (topic.len() + p.payload.len()) as u64;
        let mut admission = self.admit(bytes, p.retain);
        let mut delayed = false;
        if let Admission::Limited {
            limit,
            action: LimitAction::Delay,
            retry_after,
        } = admission
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
            admission = match self.admit(bytes, p.retain) {
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
                // for a fault of ours. MQTT 3.1.1 has no negative PUBACK: dropped, like a
                // rate-limit rejection.
                shared.stats.meter_refusals.fetch_add(1, Ordering::Relaxed);
                tracing::error!(client = %self.client_id, topic = topic.as_str(), error = %e, "publish refused: the meter failed");
                self.puback(
                    p.packet_id,
                    ReasonCode::UNSPECIFIED_ERROR,
                    Some("metering failed; not delivered"),
                );
                return None;
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
                        self.puback(p.packet_id, ReasonCode::SUCCESS, None);
                        return None;
                    }
                    LimitAction::Delay | LimitAction::Reject(_) => {
                        // Delay does not reach here (it was turned into Reject above).
                        let code = match action {
                            LimitAction::Reject(code) => code,
                            _ => LimitReason::QuotaExceeded,
                        };
                        if self.is_v5() {
                            // thingkit-meter refuses reject codes no PUBACK can carry (0x96),
                            // but a CONNACK-only code (0x9F) can still be configured for a
                            // publish limit: answer 0x97 Quota exceeded then, and name the
                            // limit in the reason string.
                            let mut rc = ReasonCode(code.code());
                            if !rc.allowed_in(PacketType::PubAck, ProtocolVersion::V5) {
                                rc = ReasonCode::QUOTA_EXCEEDED;
                            }
                            let reason = format!("{limit:?} rate limit exceeded ({code:?})");
                            self.puback(p.packet_id, rc, Some(&reason));
                        }
                        return None;
                    }
                    LimitAction::Disconnect(code) => {
                        return Some(End::Server(ReasonCode(code.code())));
                    }
                }
            }
        }
        shared.stats.publishes_in.fetch_add(1, Ordering::Relaxed);

        // Broker-served topics. Fleet provisioning replies go to the requesting client only.
        // Provisioning signs certificates, writes the registry and may wait up to the
        // pre-provisioning hook's timeout, so it runs on the blocking pool, not on this task's
        // runtime thread; every other topic skips it without taking a lock.
        let provisioned = if is_provisioning_topic(topic.as_str()) {
            let directory = shared.directory.clone();
            let (certificate, request_topic, payload) = (
                self.certificate,
                topic.as_str().to_owned(),
                p.payload.clone(),
            );
            match tokio::task::spawn_blocking(move || {
                directory.provision(&certificate, &request_topic, &payload)
            })
            .await
            {
                Ok(replies) => replies,
                Err(e) => {
                    // The provisioning task panicked or was cancelled: the request got no
                    // answer, and it must not be routed as telemetry either. MQTT 5: PUBACK
                    // 0x80 Unspecified error; MQTT 3.1.1: dropped (no negative PUBACK).
                    shared
                        .stats
                        .provisioning_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(client = %self.client_id, topic = topic.as_str(), error = %e, "fleet provisioning failed");
                    self.puback(
                        p.packet_id,
                        ReasonCode::UNSPECIFIED_ERROR,
                        Some("fleet provisioning failed"),
                    );
                    return None;
                }
            }
        } else {
            None
        };
        if let Some(replies) = provisioned {
            self.puback(p.packet_id, ReasonCode::SUCCESS, None);
            for reply in replies {
                tracing::info!(client = %self.client_id, topic = %reply.topic, "fleet provisioning reply");
                let Ok(reply_topic) = TopicName::new(&reply.topic) else {
                    continue;
                };
                let message = Arc::new(Message {
                    topic: reply_topic,
                    payload: reply.payload.into(),
                    qos: p.qos,
                    retain: false,
                    properties: PacketProperties::default(),
                    from: None,
                    received: Instant::now(),
                });
                let delivery = Delivery {
                    message,
                    qos: p.qos,
                    retain: false,
                    subscription_id: None,
                };
                if let Err(e) = self.deliver(delivery) {
                    return Some(End::Closed(e.to_string()));
                }
            }
            return None;
        }
        if topic.as_str() == REVOKE_TOPIC {
            let result = std::str::from_utf8(&p.payload)
                .map_err(|e| e.to_string())
                .and_then(|s| s.trim().parse::<CertificateId>().map_err(|e| e.to_string()))
                .and_then(|id| shared.directory.revoke(&id).map(|()| id));
            match result {
                Ok(id) => {
                    tracing::warn!(operator = %self.client_id, certificate = %id, "certificate revoked by the operator");
                    self.puback(p.packet_id, ReasonCode::SUCCESS, None);
                }
                Err(e) => {
                    tracing::warn!(operator = %self.client_id, error = %e, "revocation refused");
                    self.puback(p.packet_id, ReasonCode::PAYLOAD_FORMAT_INVALID, Some(&e));
                }
            }
            return None;
        }
        if let Some(thing) = topic
            .as_str()
            .strip_prefix(FIRMWARE_TOPIC_PREFIX)
            .and_then(|t| t.strip_suffix(FIRMWARE_TOPIC_SUFFIX))
        {
            let checked = match &shared.config.firmware_trust {
                Some(anchors) => Verifier::new(anchors.clone())
                    .verify(&p.payload)
                    .map(|v| v.sequence_number)
                    .map_err(|e| e.to_string()),
                None => thingkit_firmware::inspect(&p.payload, &Default::default())
                    .map_err(|e| e.to_string())
                    .and_then(|i| {
                        if i.manifest_digest_matches {
                            Ok(i.sequence_number)
                        } else {
                            Err("the manifest digest does not match".to_string())
                        }
                    }),
            };
            match checked {
                Ok(sequence) => {
                    tracing::info!(operator = %self.client_id, thing, sequence, bytes = p.payload.len(), "firmware job published");
                    p.retain = true; // a device that connects later still gets its job
                }
                Err(e) => {
                    tracing::warn!(operator = %self.client_id, thing, error = %e, "firmware envelope refused");
                    self.puback(p.packet_id, ReasonCode::PAYLOAD_FORMAT_INVALID, Some(&e));
                    return None;
                }
            }
        }

        let mut properties = std::mem::take(&mut p.properties);
        if !properties.is_empty() {
            properties.topic_alias = None;
            properties.subscription_identifiers.clear();
        }
        let message = Arc::new(Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            from: Some(self.client_id.clone()),
            received: Instant::now(),
        });
        match self.route(&message) {
            Ok(queued) => {
                let code = if queued == 0 && self.is_v5() {
                    ReasonCode::NO_MATCHING_SUBSCRIBERS
                } else {
                    ReasonCode::SUCCESS
                };
                self.puback(p.packet_id, code, None);
            }
            Err(e) => {
                // MQTT 5: PUBACK 0x97 Quota exceeded; 3.1.1 has no negative PUBACK (dropped,
                // like a rate-limit rejection).
                tracing::warn!(client = %self.client_id, topic = message.topic.as_str(), error = %e, "retained message refused");
                self.puback(
                    p.packet_id,
                    ReasonCode::QUOTA_EXCEEDED,
                    Some(&e.to_string()),
                );
            }
        }
        None
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Option<End> {
        let shared = self.shared.clone();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut retained = Vec::new();
        let sub_id = s.properties.subscription_identifiers.first().copied();
        for sub in &s.subscriptions {
            let request = shared.config.arn.subscribe(sub.filter.as_str());
            if !self.policies.decide(&request, &self.ctx).is_allowed() {
                shared.stats.denied.fetch_add(1, Ordering::Relaxed);
                log_denial(&self.policies, &request, &self.ctx, &self.client_id);
                codes.push(match self.version {
                    ProtocolVersion::V5 => ReasonCode::NOT_AUTHORIZED,
                    ProtocolVersion::V311 => ReasonCode(0x80),
                });
                continue;
            }
            let granted = sub.options.qos.min_qos1();
            let mut router = shared.router.lock().unwrap_or_else(|p| p.into_inner());
            let existed = router.subscribe(
                &self.client_id,
                &sub.filter,
                GrantedSubscription {
                    qos: granted,
                    no_local: sub.options.no_local,
                    retain_as_published: sub.options.retain_as_published,
                    id: sub_id,
                },
            );
            let send_retained = match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            if send_retained {
                for m in router.retained_matching(&sub.filter, Instant::now()) {
                    let qos = if granted.as_u8() < m.qos.as_u8() {
                        granted
                    } else {
                        m.qos
                    };
                    retained.push(Delivery {
                        message: m,
                        qos,
                        retain: true,
                        subscription_id: sub_id,
                    });
                }
            }
            drop(router);
            tracing::info!(client = %self.client_id, filter = sub.filter.as_str(), qos = granted.as_u8(), "subscribed");
            codes.push(ReasonCode(granted.as_u8()));
        }
        let _ = self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: PacketProperties::default(),
            reason_codes: codes,
        }));
        for d in retained {
            if let Err(e) = self.deliver(d) {
                return Some(End::Closed(e.to_string()));
            }
        }
        None
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) -> Option<End> {
        let mut router = self.shared.router.lock().unwrap_or_else(|p| p.into_inner());
        let codes = u
            .filters
            .iter()
            .map(|f| {
                if router.unsubscribe(&self.client_id, f) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect::<Vec<_>>();
        drop(router);
        let reason_codes = if self.is_v5() { codes } else { Vec::new() };
        let _ = self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: PacketProperties::default(),
            reason_codes,
        }));
        None
    }

    /// Writes one delivery into the output buffer, after `iot:Receive`, respecting the
    /// in-flight window, the client's Maximum Packet Size and its topic aliases.
    fn deliver(&mut self, d: Delivery) -> Result<(), BoxError> {
        let shared = self.shared.clone();
        let request = shared.config.arn.receive(d.message.topic.as_str());
        if !self.policies.decide(&request, &self.ctx).is_allowed() {
            shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %self.client_id, topic = d.message.topic.as_str(), "iot:Receive denied: not delivered");
            return Ok(());
        }
        if d.qos == QoS::AtLeastOnce && self.inflight.len() >= self.inflight_max {
            if self.pending.len() < shared.config.max_queued {
                self.pending.push_back(d);
            } else {
                shared.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        let packet_id = if d.qos == QoS::AtLeastOnce {
            let mut id = None;
            for _ in 0..=u16::MAX {
                self.next_id = self.next_id.wrapping_add(1);
                if self.next_id != 0 && !self.inflight.contains_key(&self.next_id) {
                    id = PacketId::new(self.next_id);
                    break;
                }
            }
            id
        } else {
            None
        };
        let m = &d.message;
        // MQTT 5 §3.3.2.3.3: an expired message is not delivered; a forwarded one carries the
        // interval that is left.
        let expiry_left = match m.properties.message_expiry_interval {
            Some(_) => m.expiry_left(Instant::now()),
            None => None,
        };
        if expiry_left == Some(0) {
            tracing::debug!(client = %self.client_id, topic = m.topic.as_str(), "message expired before delivery");
            return Ok(());
        }
        let mut publish = Publish {
            dup: false,
            qos: d.qos,
            retain: d.retain,
            topic: Some(m.topic.clone()),
            packet_id,
            properties: if self.is_v5() {
                m.properties.clone()
            } else {
                PacketProperties::default()
            },
            payload: m.payload.clone(),
        };
        if self.is_v5() {
            if let Some(id) = d.subscription_id {
                publish.properties.subscription_identifiers.push(id);
            }
            if expiry_left.is_some() {
                publish.properties.message_expiry_interval = expiry_left;
            }
        }
        let mut packet = Packet::Publish(publish);
        if self.client_max_packet != u32::MAX {
            let len = self.encoder.encoded_len(&packet)?;
            if len > self.client_max_packet as usize {
                // [MQTT-3.1.2-25]: discard a message larger than the client's maximum.
                tracing::debug!(client = %self.client_id, len, "delivery larger than the client's Maximum Packet Size: discarded");
                return Ok(());
            }
        }
        if let Packet::Publish(publish) = &mut packet {
            self.outbound_aliases.apply(publish);
        }
        if let Err(e) = self.send(&packet) {
            // One unencodable message must not cost the subscriber its connection.
            tracing::error!(client = %self.client_id, topic = m.topic.as_str(), error = %e, "delivery dropped");
            return Ok(());
        }
        if let Some(id) = packet_id {
            self.inflight.insert(id.get(), d.clone());
        }
        shared.stats.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(meter) = &self.meter {
            let _ = shared
                .table
                .record_delivery(meter, (m.topic.len() + m.payload.len()) as u64);
        }
        Ok(())
    }
}
