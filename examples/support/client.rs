//! A small MQTT client on `thingkit-mqtt` + tokio-rustls, with a client certificate. Used by the
//! quickstart's devices, the load generator and the tests (it talks to our broker and to
//! mosquitto alike). Every wait takes a timeout.
#![allow(dead_code)] // shared by several example and test crates; each uses a subset

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thingkit::mqtt::bytes::{Bytes, BytesMut};
use thingkit::mqtt::{
    ConnAck, Connect, Decoder, Encoder, MqttStr, Packet, PacketId, PacketProperties, Properties,
    ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Errors of this client, as text (examples and tests print them).
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// PEM blocks of one label, as DER.
fn pem_blocks(pem: &str, label: &str) -> Result<Vec<Vec<u8>>, ClientError> {
    Ok(thingkit::provision::decode_pem_blocks(pem)?
        .into_iter()
        .filter(|(l, _)| l == label)
        .map(|(_, der)| der)
        .collect())
}

/// A rustls client configuration trusting `ca_pem` and presenting `cert_pem` + `key_pem`
/// (PKCS #8).
pub fn tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_blocks(ca_pem, "CERTIFICATE")? {
        roots.add(CertificateDer::from(der))?;
    }
    let chain: Vec<CertificateDer<'static>> = pem_blocks(cert_pem, "CERTIFICATE")?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key_der = pem_blocks(key_pem, "PRIVATE KEY")?
        .into_iter()
        .next()
        .ok_or("no PRIVATE KEY block")?;
    let key = PrivateKeyDer::Pkcs8(key_der.into());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// How to connect.
#[derive(Clone)]
pub struct Options {
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Client ID.
    pub client_id: String,
    /// Clean start / clean session.
    pub clean_start: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// MQTT 5 session expiry.
    pub session_expiry: Option<u32>,
    /// A will message: topic, payload, QoS, retain.
    pub will: Option<(String, Vec<u8>, QoS, bool)>,
    /// MQTT 5 Will Delay Interval in seconds.
    pub will_delay: Option<u32>,
    /// MQTT 5 Topic Alias Maximum to announce.
    pub topic_alias_maximum: Option<u16>,
    /// Timeout for each wait.
    pub timeout: Duration,
}

impl Options {
    /// MQTT 5, clean start, 30 s keep-alive, 5 s timeouts.
    pub fn new(client_id: &str) -> Options {
        Options {
            version: ProtocolVersion::V5,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 30,
            session_expiry: None,
            will: None,
            will_delay: None,
            topic_alias_maximum: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A connected client.
pub struct Client {
    stream: TlsStream<TcpStream>,
    decoder: Decoder,
    encoder: Encoder,
    rbuf: BytesMut,
    next_id: u16,
    /// Packets received while waiting for something else (e.g. PUBLISH while awaiting PUBACK).
    pending: VecDeque<Packet>,
    /// The CONNACK.
    pub connack: ConnAck,
    timeout: Duration,
}

/// Whether a CONNACK accepted the connection.
pub fn accepted(ack: &ConnAck) -> bool {
    ack.reason_code == ReasonCode::SUCCESS
}

impl Client {
    /// The ALPN protocol the server chose, if the client offered any and one was agreed.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }

    /// Opens TLS to `addr` (server name `server_name`), sends CONNECT and reads CONNACK. A
    /// refused CONNACK is returned as `Ok` with the code in [`Client::connack`]; check it with
    /// [`accepted`].
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        options: &Options,
    ) -> Result<Client, ClientError> {
        let t = options.timeout;
        let tcp = tokio::time::timeout(t, TcpStream::connect(addr)).await??;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())?;
        let stream = tokio::time::timeout(t, TlsConnector::from(tls).connect(name, tcp)).await??;
        let mut properties = Properties::default();
        if options.version == ProtocolVersion::V5 {
            properties.session_expiry_interval = options.session_expiry;
            properties.topic_alias_maximum = options.topic_alias_maximum;
        }
        let will = match &options.will {
            Some((topic, payload, qos, retain)) => Some(Box::new(Will {
                topic: TopicName::new(topic)?,
                payload: Bytes::from(payload.clone()),
                qos: *qos,
                retain: *retain,
                properties: Properties {
                    will_delay_interval: options.will_delay,
                    ..Properties::default()
                }
                .into(),
            })),
            None => None,
        };
        let connect = Connect {
            protocol: options.version,
            clean_start: options.clean_start,
            keep_alive: options.keep_alive,
            properties: properties.into(),
            client_id: MqttStr::new(&options.client_id)?,
            will,
            username: None,
            password: None,
        };
        let mut client = Client {
            stream,
            decoder: Decoder::new(options.version),
            encoder: Encoder::new(options.version),
            rbuf: BytesMut::with_capacity(16 * 1024),
            next_id: 0,
            pending: VecDeque::new(),
            connack: ConnAck {
                session_present: false,
                reason_code: ReasonCode::UNSPECIFIED_ERROR,
                properties: PacketProperties::default(),
            },
            timeout: t,
        };
        client.send(&Packet::Connect(connect)).await?;
        match client.read_packet().await? {
            Some(Packet::ConnAck(ack)) => client.connack = ack,
            Some(other) => {
                return Err(format!("expected CONNACK, got {}", other.packet_type()).into());
            }
            None => return Err("closed before CONNACK".into()),
        }
        Ok(client)
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        let mut buf = BytesMut::new();
        self.encoder.encode(packet, &mut buf)?;
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(&buf).await?;
            self.stream.flush().await
        })
        .await??;
        Ok(())
    }

    /// Reads the next packet from the socket (`None`: closed), within the timeout.
    async fn read_packet(&mut self) -> Result<Option<Packet>, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(p) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(Some(p));
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf))
                .await
                .map_err(|_| "timed out waiting for a packet")??;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// The next packet (buffered ones first); `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Packet>, ClientError> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(Some(p));
        }
        self.read_packet().await
    }

    /// The next PUBLISH, acknowledging it if QoS 1; `None` if the connection closed.
    pub async fn next_publish(&mut self) -> Result<Option<Publish>, ClientError> {
        loop {
            match self.recv().await? {
                Some(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        self.send(&Packet::PubAck(PubResponse::new(id))).await?;
                    }
                    return Ok(Some(p));
                }
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    fn packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        PacketId::new(self.next_id).expect("next_id is at least 1")
    }

    /// Publishes; for QoS 1 waits for the PUBACK and returns its reason code (`None` for QoS 0).
    /// An `Err` whose text contains "closed" means the server closed the connection (MQTT 3.1.1
    /// denial).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Option<ReasonCode>, ClientError> {
        let mut p = Publish::new(TopicName::new(topic)?, payload);
        p.qos = qos;
        p.retain = retain;
        let id = (qos != QoS::AtMostOnce).then(|| self.packet_id());
        p.packet_id = id;
        self.send(&Packet::Publish(p)).await?;
        let Some(id) = id else { return Ok(None) };
        loop {
            match self.read_packet().await? {
                Some(Packet::PubAck(r)) if r.packet_id == id => return Ok(Some(r.reason_code)),
                Some(Packet::Disconnect(d)) => {
                    return Err(format!(
                        "closed by the server: DISCONNECT 0x{:02x}",
                        d.reason_code.0
                    )
                    .into());
                }
                Some(other) => self.pending.push_back(other),
                None => return Err("closed by the server".into()),
            }
        }
    }

    /// A PUBACK's reason string (MQTT 5), for printing a denial's explanation.
    pub fn reason_string(packet: &Packet) -> Option<String> {
        match packet {
            Packet::PubAck(r) => r
                .properties
                .reason_string
                .as_ref()
                .map(|s| s.as_str().to_string()),
            _ => None,
        }
    }

    /// Publishes at QoS 1 and returns the whole PUBACK (with its reason string).
    pub async fn publish_qos1(
        &mut self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<PubResponse, ClientError> {
        let mut p = Publish::new(TopicName::new(topic)?, payload);
        p.qos = QoS::AtLeastOnce;
        let id = self.packet_id();
        p.packet_id = Some(id);
        self.send(&Packet::Publish(p)).await?;
        loop {
            match self.read_packet().await? {
                Some(Packet::PubAck(r)) if r.packet_id == id => return Ok(r),
                Some(Packet::Disconnect(d)) => {
                    return Err(format!(
                        "closed by the server: DISCONNECT 0x{:02x}",
                        d.reason_code.0
                    )
                    .into());
                }
                Some(other) => self.pending.push_back(other),
                None => return Err("closed by the server".into()),
            }
        }
    }

    /// Subscribes and returns the SUBACK's codes.
    pub async fn subscribe(
        &mut self,
        filters: &[(&str, QoS)],
    ) -> Result<Vec<ReasonCode>, ClientError> {
        let id = self.packet_id();
        let subscriptions = filters
            .iter()
            .map(|(f, qos)| {
                Ok(Subscription {
                    filter: TopicFilter::new(f)?,
                    options: SubscriptionOptions {
                        qos: *qos,
                        ..SubscriptionOptions::default()
                    },
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            properties: PacketProperties::default(),
            subscriptions,
        }))
        .await?;
        loop {
            match self.read_packet().await? {
                Some(Packet::SubAck(s)) if s.packet_id == id => return Ok(s.reason_codes),
                Some(other) => self.pending.push_back(other),
                None => return Err("closed by the server".into()),
            }
        }
    }

    /// Sends DISCONNECT (normal) and closes.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        self.send(&Packet::Disconnect(thingkit::mqtt::Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: PacketProperties::default(),
        }))
        .await?;
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
        Ok(())
    }

    /// Closes the socket without DISCONNECT (the server publishes the will).
    pub async fn drop_connection(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
    }

    /// Sends DISCONNECT (if `disconnect`) and closes TCP without TLS close_notify, as some
    /// clients (rumqttc) do: the server must still act on everything sent before.
    pub async fn close_without_close_notify(mut self, disconnect: bool) -> Result<(), ClientError> {
        if disconnect {
            self.send(&Packet::Disconnect(thingkit::mqtt::Disconnect {
                reason_code: ReasonCode::NORMAL_DISCONNECTION,
                properties: PacketProperties::default(),
            }))
            .await?;
        }
        let _ = tokio::time::timeout(self.timeout, self.stream.get_mut().0.shutdown()).await;
        Ok(())
    }

    /// Splits into a reader and a writer for pipelined use (the load generator).
    pub fn split(self) -> (Reader, Writer) {
        let version = self.encoder.version();
        let (r, w) = tokio::io::split(self.stream);
        (
            Reader {
                half: r,
                decoder: self.decoder,
                rbuf: self.rbuf,
            },
            Writer {
                half: w,
                encoder: Encoder::new(version),
                buf: BytesMut::with_capacity(64 * 1024),
            },
        )
    }
}

/// The reading half of a split client.
pub struct Reader {
    half: ReadHalf<TlsStream<TcpStream>>,
    decoder: Decoder,
    rbuf: BytesMut,
}

impl Reader {
    /// The next packet already buffered, without reading the socket.
    pub fn try_next(&mut self) -> Result<Option<Packet>, ClientError> {
        Ok(self.decoder.decode(&mut self.rbuf)?)
    }

    /// The next packet; `None` when closed.
    pub async fn next(&mut self) -> Result<Option<Packet>, ClientError> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(Some(p));
            }
            if self.half.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// The writing half of a split client: packets are buffered until [`Writer::flush`].
pub struct Writer {
    half: WriteHalf<TlsStream<TcpStream>>,
    encoder: Encoder,
    buf: BytesMut,
}

impl Writer {
    /// Buffers a packet.
    pub fn push(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.encoder.encode(packet, &mut self.buf)?;
        Ok(())
    }

    /// Bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes the buffered packets.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.half.write_all(&self.buf).await?;
        self.half.flush().await?;
        self.buf.clear();
        Ok(())
    }
}
