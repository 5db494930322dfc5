//! AWS IoT lifecycle events: what a broker publishes on `$aws/events/...` when a client connects,
//! disconnects, subscribes or unsubscribes, and the per-client version numbers of presence events.
//!
//! Sans-IO: timestamps are parameters (Unix milliseconds); nothing here reads a clock or
//! publishes anything. A driver builds a [`LifecycleEvent`], checks
//! [`publishes_lifecycle_events`] for the client ID, and routes [`LifecycleEvent::to_json`] to
//! [`LifecycleEvent::topic`].
//!
//! Source: AWS IoT Core Developer Guide, "Lifecycle events" (`life-cycle-events.md`): the topics,
//! the JSON elements and the examples printed there; the table of `disconnectReason` values is
//! the one on the published page (the guide's markdown only links to it), and its twelve values
//! are the lifecycle subset of the API's `DisconnectReasonValue` enumeration.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;
use thingkit_mqtt::ReasonCode;

/// Whether AWS publishes lifecycle events for `client_id`: "Client IDs that contain # or + do not
/// receive lifecycle events." (Such an ID would also make [`LifecycleEvent::topic`] an invalid
/// topic name.)
pub fn publishes_lifecycle_events(client_id: &str) -> bool {
    !client_id.contains(['#', '+'])
}

/// Why a client disconnected: AWS's `disconnectReason`, every value of the lifecycle events
/// table. [`DisconnectReason::as_str`] is AWS's string; serde serializes it as that string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DisconnectReason {
    /// `AUTH_ERROR`: the client failed to authenticate or authorization failed (for example
    /// its certificate was revoked while it was connected).
    AuthError,
    /// `CLIENT_INITIATED_DISCONNECT`: the client sent an MQTT DISCONNECT (or a WebSocket Close
    /// frame).
    ClientInitiatedDisconnect,
    /// `CLIENT_ERROR`: the client did something wrong, such as a second CONNECT on the same
    /// connection or a payload over the size limit.
    ClientError,
    /// `CONNECTION_LOST`: the connection was cut off (network loss, the socket closed without a
    /// DISCONNECT).
    ConnectionLost,
    /// `DUPLICATE_CLIENTID`: another connection used the same client ID; the connection that
    /// was already there is the one disconnected with this reason.
    #[serde(rename = "DUPLICATE_CLIENTID")]
    DuplicateClientId,
    /// `FORBIDDEN_ACCESS`: the client is not allowed to connect (for example from a denied IP
    /// address).
    ForbiddenAccess,
    /// `MQTT_KEEP_ALIVE_TIMEOUT`: nothing was received for 1.5 times the client's keep-alive.
    MqttKeepAliveTimeout,
    /// `SERVER_ERROR`: an unexpected server issue.
    ServerError,
    /// `SERVER_INITIATED_DISCONNECT`: the server disconnected the client for operational reasons
    /// (maintenance, shutdown).
    ServerInitiatedDisconnect,
    /// `THROTTLED`: the client exceeded a throttling limit.
    Throttled,
    /// `WEBSOCKET_TTL_EXPIRATION`: a WebSocket connection outlived its time-to-live.
    #[serde(rename = "WEBSOCKET_TTL_EXPIRATION")]
    WebSocketTtlExpiration,
    /// `CUSTOMAUTH_TTL_EXPIRATION`: the connection outlived the time-to-live a custom authorizer
    /// gave it.
    #[serde(rename = "CUSTOMAUTH_TTL_EXPIRATION")]
    CustomAuthTtlExpiration,
}

impl DisconnectReason {
    /// Every value, in the order of AWS's table.
    pub const ALL: [DisconnectReason; 12] = [
        DisconnectReason::AuthError,
        DisconnectReason::ClientInitiatedDisconnect,
        DisconnectReason::ClientError,
        DisconnectReason::ConnectionLost,
        DisconnectReason::DuplicateClientId,
        DisconnectReason::ForbiddenAccess,
        DisconnectReason::MqttKeepAliveTimeout,
        DisconnectReason::ServerError,
        DisconnectReason::ServerInitiatedDisconnect,
        DisconnectReason::Throttled,
        DisconnectReason::WebSocketTtlExpiration,
        DisconnectReason::CustomAuthTtlExpiration,
    ];

    /// AWS's string for this reason, e.g. `"MQTT_KEEP_ALIVE_TIMEOUT"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::AuthError => "AUTH_ERROR",
            DisconnectReason::ClientInitiatedDisconnect => "CLIENT_INITIATED_DISCONNECT",
            DisconnectReason::ClientError => "CLIENT_ERROR",
            DisconnectReason::ConnectionLost => "CONNECTION_LOST",
            DisconnectReason::DuplicateClientId => "DUPLICATE_CLIENTID",
            DisconnectReason::ForbiddenAccess => "FORBIDDEN_ACCESS",
            DisconnectReason::MqttKeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            DisconnectReason::ServerError => "SERVER_ERROR",
            DisconnectReason::ServerInitiatedDisconnect => "SERVER_INITIATED_DISCONNECT",
            DisconnectReason::Throttled => "THROTTLED",
            DisconnectReason::WebSocketTtlExpiration => "WEBSOCKET_TTL_EXPIRATION",
            DisconnectReason::CustomAuthTtlExpiration => "CUSTOMAUTH_TTL_EXPIRATION",
        }
    }

    /// The reason for a connection the *server* closed with the MQTT 5 reason code `code` (sent
    /// in its DISCONNECT, or, for an MQTT 3.1.1 client, the reason the driver closed the socket).
    ///
    /// A client's own DISCONNECT is [`DisconnectReason::ClientInitiatedDisconnect`] whatever its
    /// code, and a socket that closed or failed without one is
    /// [`DisconnectReason::ConnectionLost`]; neither goes through this function.
    ///
    /// | MQTT 5 code (§2.4) | reason |
    /// |---|---|
    /// | 0x8D Keep Alive timeout | `MQTT_KEEP_ALIVE_TIMEOUT` |
    /// | 0x8E Session taken over | `DUPLICATE_CLIENTID` |
    /// | 0x87 Not authorized | `AUTH_ERROR` |
    /// | 0x89 Server busy, 0x96 Message rate too high, 0x97 Quota exceeded, 0x9F Connection rate exceeded | `THROTTLED` |
    /// | 0x81 Malformed Packet, 0x82 Protocol Error, 0x8F–0x95, 0x99–0x9B, 0x9E, 0xA1, 0xA2 (what the client sent is refused) | `CLIENT_ERROR` |
    /// | 0x80 Unspecified error, 0x83 Implementation specific error | `SERVER_ERROR` |
    /// | 0x00, 0x8B Server shutting down, 0x98 Administrative action, 0x9C Use another server, 0x9D Server moved, 0xA0 Maximum connect time, and any other code | `SERVER_INITIATED_DISCONNECT` |
    ///
    /// 0xA0 Maximum connect time maps to `SERVER_INITIATED_DISCONNECT`: only the driver knows
    /// whether the limit was a WebSocket's or a custom authorizer's time-to-live, and it should
    /// use [`DisconnectReason::WebSocketTtlExpiration`] or
    /// [`DisconnectReason::CustomAuthTtlExpiration`] directly then.
    pub fn for_server_disconnect(code: ReasonCode) -> DisconnectReason {
        match code.0 {
            0x8D => DisconnectReason::MqttKeepAliveTimeout,
            0x8E => DisconnectReason::DuplicateClientId,
            0x87 => DisconnectReason::AuthError,
            0x89 | 0x96 | 0x97 | 0x9F => DisconnectReason::Throttled,
            0x81 | 0x82 | 0x8F..=0x95 | 0x99..=0x9B | 0x9E | 0xA1 | 0xA2 => {
                DisconnectReason::ClientError
            }
            0x80 | 0x83 => DisconnectReason::ServerError,
            _ => DisconnectReason::ServerInitiatedDisconnect,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of AWS's `disconnectReason` values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an AWS IoT disconnectReason")]
pub struct UnknownDisconnectReason(pub String);

impl FromStr for DisconnectReason {
    type Err = UnknownDisconnectReason;

    /// Parses AWS's string (exact, case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DisconnectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownDisconnectReason(s.to_owned()))
    }
}

/// One lifecycle event, with the JSON elements AWS documents for it.
///
/// `session_identifier` is AWS's "globally unique identifier ... for the life of the session"
/// and `principal_identifier` the credential used (for mutual TLS, the certificate ID); both
/// are the driver's to supply. `timestamp` is Unix milliseconds.
///
/// ```
/// use thingkit_broker::{DisconnectReason, LifecycleEvent, publishes_lifecycle_events};
/// use thingkit_mqtt::ReasonCode;
///
/// let event = LifecycleEvent::Disconnected {
///     client_id: "sensor-1".into(),
///     timestamp: 1_573_002_340_451,
///     session_identifier: "a4666d2a7d844ae4ac5d7b38c9cb7967".into(),
///     principal_identifier: "12345678901234567890123456789012".into(),
///     client_initiated_disconnect: false,
///     disconnect_reason: DisconnectReason::for_server_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT),
///     version_number: 0,
/// };
/// assert!(publishes_lifecycle_events(event.client_id()));
/// assert_eq!(event.topic(), "$aws/events/presence/disconnected/sensor-1");
/// let json: serde_json::Value = serde_json::from_slice(&event.to_json())?;
/// assert_eq!(json["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A client connected: published on `$aws/events/presence/connected/{clientId}`.
    Connected {
        /// The client ID.
        client_id: String,
        /// When it connected, in Unix milliseconds.
        timestamp: u64,
        /// The session's identifier.
        session_identifier: String,
        /// The credential it authenticated with.
        principal_identifier: String,
        /// The client's IP address (IPv4 or IPv6).
        ip_address: IpAddr,
        /// The connection's version number (see [`PresenceVersions`]).
        version_number: u64,
    },
    /// A client disconnected: published on `$aws/events/presence/disconnected/{clientId}`.
    Disconnected {
        /// The client ID.
        client_id: String,
        /// When it disconnected, in Unix milliseconds.
        timestamp: u64,
        /// The session's identifier.
        session_identifier: String,
        /// The credential it authenticated with.
        principal_identifier: String,
        /// Whether the client initiated the disconnect (`true` in AWS's example, whose reason
        /// is `CLIENT_INITIATED_DISCONNECT`). A separate element in AWS's payload, so it is a
        /// separate field here rather than derived from the reason.
        client_initiated_disconnect: bool,
        /// Why it disconnected.
        disconnect_reason: DisconnectReason,
        /// The version number of the connection that ended: the same as its connect event's.
        version_number: u64,
    },
    /// A client subscribed: published on `$aws/events/subscriptions/subscribed/{clientId}`.
    Subscribed {
        /// The client ID.
        client_id: String,
        /// When it subscribed, in Unix milliseconds.
        timestamp: u64,
        /// The session's identifier.
        session_identifier: String,
        /// The credential it authenticated with.
        principal_identifier: String,
        /// The topic filters it subscribed to.
        topics: Vec<String>,
    },
    /// A client unsubscribed: published on `$aws/events/subscriptions/unsubscribed/{clientId}`.
    Unsubscribed {
        /// The client ID.
        client_id: String,
        /// When it unsubscribed, in Unix milliseconds.
        timestamp: u64,
        /// The session's identifier.
        session_identifier: String,
        /// The credential it authenticated with.
        principal_identifier: String,
        /// The topic filters it unsubscribed from.
        topics: Vec<String>,
    },
}

/// The JSON form, field for field and in the order of AWS's printed examples.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Json<'a> {
    client_id: &'a str,
    timestamp: u64,
    event_type: &'static str,
    session_identifier: &'a str,
    principal_identifier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<&'a IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_initiated_disconnect: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<DisconnectReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topics: Option<&'a [String]>,
}

impl LifecycleEvent {
    /// AWS's `eventType`: `connected`, `disconnected`, `subscribed` or `unsubscribed`.
    pub fn event_type(&self) -> &'static str {
        match self {
            LifecycleEvent::Connected { .. } => "connected",
            LifecycleEvent::Disconnected { .. } => "disconnected",
            LifecycleEvent::Subscribed { .. } => "subscribed",
            LifecycleEvent::Unsubscribed { .. } => "unsubscribed",
        }
    }

    /// The client the event is about.
    pub fn client_id(&self) -> &str {
        match self {
            LifecycleEvent::Connected { client_id, .. }
            | LifecycleEvent::Disconnected { client_id, .. }
            | LifecycleEvent::Subscribed { client_id, .. }
            | LifecycleEvent::Unsubscribed { client_id, .. } => client_id,
        }
    }

    /// The topic AWS publishes the event on, e.g. `$aws/events/presence/connected/sensor-1`.
    ///
    /// Only a valid topic name when [`publishes_lifecycle_events`] holds for the client ID.
    pub fn topic(&self) -> String {
        let prefix = match self {
            LifecycleEvent::Connected { .. } => "$aws/events/presence/connected/",
            LifecycleEvent::Disconnected { .. } => "$aws/events/presence/disconnected/",
            LifecycleEvent::Subscribed { .. } => "$aws/events/subscriptions/subscribed/",
            LifecycleEvent::Unsubscribed { .. } => "$aws/events/subscriptions/unsubscribed/",
        };
        let client_id = self.client_id();
        let mut topic = String::with_capacity(prefix.len() + client_id.len());
        topic.push_str(prefix);
        topic.push_str(client_id);
        topic
    }

    /// The payload AWS publishes: a JSON object with AWS's element names (`clientId`,
    /// `timestamp`, `eventType`, `sessionIdentifier`, `principalIdentifier`, then `ipAddress`
    /// and `versionNumber` for a connect; `clientInitiatedDisconnect`, `disconnectReason` and
    /// `versionNumber` for a disconnect; `topics` for a subscribe or unsubscribe).
    pub fn to_json(&self) -> Vec<u8> {
        let json = match self {
            LifecycleEvent::Connected {
                client_id,
                timestamp,
                session_identifier,
                principal_identifier,
                ip_address,
                version_number,
            } => Json {
                client_id,
                timestamp: *timestamp,
                event_type: self.event_type(),
                session_identifier,
                principal_identifier,
                ip_address: Some(ip_address),
                client_initiated_disconnect: None,
                disconnect_reason: None,
                version_number: Some(*version_number),
                topics: None,
            },
            LifecycleEvent::Disconnected {
                client_id,
                timestamp,
                session_identifier,
                principal_identifier,
                client_initiated_disconnect,
                disconnect_reason,
                version_number,
            } => Json {
                client_id,
                timestamp: *timestamp,
                event_type: self.event_type(),
                session_identifier,
                principal_identifier,
                ip_address: None,
                client_initiated_disconnect: Some(*client_initiated_disconnect),
                disconnect_reason: Some(*disconnect_reason),
                version_number: Some(*version_number),
                topics: None,
            },
            LifecycleEvent::Subscribed {
                client_id,
                timestamp,
                session_identifier,
                principal_identifier,
                topics,
            }
            | LifecycleEvent::Unsubscribed {
                client_id,
                timestamp,
                session_identifier,
                principal_identifier,
                topics,
            } => Json {
                client_id,
                timestamp: *timestamp,
                event_type: self.event_type(),
                session_identifier,
                principal_identifier,
                ip_address: None,
                client_initiated_disconnect: None,
                disconnect_reason: None,
                version_number: None,
                topics: Some(topics),
            },
        };
        serde_json::to_vec(&json)
            .expect("a struct of strings, numbers and booleans always serializes to JSON")
    }
}

/// Limits of a [`PresenceVersions`] tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceVersionsConfig {
    /// How long a disconnected client's version is remembered, in milliseconds; a client that
    /// reconnects later starts again at 0. AWS: "If a client is not connected for approximately
    /// one hour, the version number is reset to 0." Default: 3,600,000 (one hour).
    pub reset_after_ms: u64,
    /// The most disconnected clients remembered at once. When a disconnect would exceed it, the
    /// client disconnected longest ago is forgotten early (its next connection starts at 0).
    /// Connected clients are not counted: there is one entry per connection, bounded by the
    /// driver's own connection limit. Default: 100,000.
    pub max_disconnected: usize,
}

impl Default for PresenceVersionsConfig {
    fn default() -> Self {
        PresenceVersionsConfig {
            reset_after_ms: 3_600_000,
            max_disconnected: 100_000,
        }
    }
}

#[derive(Clone, Debug)]
struct VersionEntry {
    /// The version of the client's latest connection.
    version: u64,
    /// When that connection ended, if it has.
    disconnected_at: Option<u64>,
}

/// The `versionNumber` of presence events, per client ID, in bounded memory.
///
/// AWS: the version number is "monotonically increasing ... for each client ID connection";
/// "the connect and disconnect messages for a client connection have the same version number";
/// it "might skip values"; and after about an hour without a connection it is reset to 0. Here
/// a client's first connection (or its first after the reset window) has version 0 and each
/// further connection the previous one's plus 1, so a subscriber can tell a late disconnect of
/// an older connection (say the one a takeover replaced) from the current connection's.
///
/// Sans-IO: times are Unix milliseconds passed in; call [`PresenceVersions::sweep`]
/// periodically to forget clients past the reset window (lookups also treat them as
/// forgotten, so sweeping only frees memory).
#[derive(Clone, Debug, Default)]
pub struct PresenceVersions {
    config: PresenceVersionsConfig,
    entries: HashMap<Box<str>, VersionEntry>,
    /// Disconnected clients by disconnect time: for [`PresenceVersions::sweep`] and eviction.
    disconnected: BTreeSet<(u64, Box<str>)>,
}

impl PresenceVersions {
    /// A tracker with `config`.
    pub fn new(config: PresenceVersionsConfig) -> Self {
        PresenceVersions {
            config,
            ..PresenceVersions::default()
        }
    }

    /// A client connected at `now_ms`: returns the version number of this connection, for its
    /// connect event and later its disconnect event.
    pub fn connected(&mut self, client_id: &str, now_ms: u64) -> u64 {
        let version = match self.entries.get(client_id) {
            Some(entry) => match entry.disconnected_at {
                Some(at) if now_ms.saturating_sub(at) >= self.config.reset_after_ms => 0,
                _ => entry.version.saturating_add(1),
            },
            None => 0,
        };
        if let Some(old) = self.entries.insert(
            client_id.into(),
            VersionEntry {
                version,
                disconnected_at: None,
            },
        ) && let Some(at) = old.disconnected_at
        {
            self.disconnected.remove(&(at, Box::from(client_id)));
        }
        version
    }

    /// The connection of `client_id` with `version` ended at `now_ms`. A disconnect of an older
    /// connection (one a later connection already replaced) changes nothing.
    pub fn disconnected(&mut self, client_id: &str, version: u64, now_ms: u64) {
        let Some(entry) = self.entries.get_mut(client_id) else {
            return;
        };
        if entry.version != version || entry.disconnected_at.is_some() {
            return;
        }
        entry.disconnected_at = Some(now_ms);
        self.disconnected.insert((now_ms, client_id.into()));
        while self.disconnected.len() > self.config.max_disconnected {
            let Some((_, oldest)) = self.disconnected.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    /// Forgets every client disconnected for at least the reset window at `now_ms`.
    pub fn sweep(&mut self, now_ms: u64) {
        while let Some((at, _)) = self.disconnected.first() {
            if now_ms.saturating_sub(*at) < self.config.reset_after_ms {
                break;
            }
            if let Some((_, client)) = self.disconnected.pop_first() {
                self.entries.remove(&client);
            }
        }
    }

    /// The number of clients remembered (connected or recently disconnected).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    // The examples printed in AWS IoT Core Developer Guide, "Lifecycle events".
    const AWS_CONNECT: &str = r#" {
    "clientId": "186b5",
    "timestamp": 1573002230757,
    "eventType": "connected",
    "sessionIdentifier": "a4666d2a7d844ae4ac5d7b38c9cb7967",
    "principalIdentifier": "12345678901234567890123456789012",
    "ipAddress": "192.0.2.0",
    "versionNumber": 0
}"#;

    const AWS_DISCONNECT: &str = r#"{
    "clientId": "186b5",
    "timestamp": 1573002340451,
    "eventType": "disconnected",
    "sessionIdentifier": "a4666d2a7d844ae4ac5d7b38c9cb7967",
    "principalIdentifier": "12345678901234567890123456789012",
    "clientInitiatedDisconnect": true,
    "disconnectReason": "CLIENT_INITIATED_DISCONNECT",
    "versionNumber": 0
}"#;

    // AWS prints `"eventType": "subscribed" | "unsubscribed"`; each variant is one of the two.
    const AWS_SUBSCRIPTION: &str = r#"{
    "clientId": "186b5",
    "timestamp": 1460065214626,
    "eventType": "EVENT_TYPE",
    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
    "principalIdentifier": "000000000000/ABCDEFGHIJKLMNOPQRSTU:some-user/ABCDEFGHIJKLMNOPQRSTU:some-user",
    "topics" : ["foo/bar","device/data","dog/cat"]
}"#;

    fn aws_connect_event() -> LifecycleEvent {
        LifecycleEvent::Connected {
            client_id: "186b5".into(),
            timestamp: 1573002230757,
            session_identifier: "a4666d2a7d844ae4ac5d7b38c9cb7967".into(),
            principal_identifier: "12345678901234567890123456789012".into(),
            ip_address: "192.0.2.0".parse().unwrap(),
            version_number: 0,
        }
    }

    fn aws_disconnect_event() -> LifecycleEvent {
        LifecycleEvent::Disconnected {
            client_id: "186b5".into(),
            timestamp: 1573002340451,
            session_identifier: "a4666d2a7d844ae4ac5d7b38c9cb7967".into(),
            principal_identifier: "12345678901234567890123456789012".into(),
            client_initiated_disconnect: true,
            disconnect_reason: DisconnectReason::ClientInitiatedDisconnect,
            version_number: 0,
        }
    }

    fn aws_subscription_fields() -> (String, u64, String, String, Vec<String>) {
        (
            "186b5".into(),
            1460065214626,
            "00000000-0000-0000-0000-000000000000".into(),
            "000000000000/ABCDEFGHIJKLMNOPQRSTU:some-user/ABCDEFGHIJKLMNOPQRSTU:some-user".into(),
            vec!["foo/bar".into(), "device/data".into(), "dog/cat".into()],
        )
    }

    /// Compares every field of the two objects, naming the first that differs.
    fn assert_same_fields(ours: &[u8], aws: &str) {
        let ours: Value = serde_json::from_slice(ours).unwrap();
        let aws: Value = serde_json::from_str(aws).unwrap();
        let (ours, aws) = (ours.as_object().unwrap(), aws.as_object().unwrap());
        for (key, value) in aws {
            assert_eq!(ours.get(key), Some(value), "field {key}");
        }
        for key in ours.keys() {
            assert!(aws.contains_key(key), "field {key} is not in AWS's example");
        }
    }

    /// The keys of a flat JSON object in the order they appear in the text.
    fn key_order(json: &str, keys: &[&str]) -> Vec<usize> {
        keys.iter()
            .map(|k| json.find(&format!("\"{k}\"")).unwrap())
            .collect()
    }

    #[test]
    fn connect_event_matches_aws_example_field_by_field() {
        assert_same_fields(&aws_connect_event().to_json(), AWS_CONNECT);
    }

    #[test]
    fn disconnect_event_matches_aws_example_field_by_field() {
        assert_same_fields(&aws_disconnect_event().to_json(), AWS_DISCONNECT);
    }

    #[test]
    fn subscribe_and_unsubscribe_events_match_aws_example_field_by_field() {
        let (client_id, timestamp, session_identifier, principal_identifier, topics) =
            aws_subscription_fields();
        let subscribed = LifecycleEvent::Subscribed {
            client_id: client_id.clone(),
            timestamp,
            session_identifier: session_identifier.clone(),
            principal_identifier: principal_identifier.clone(),
            topics: topics.clone(),
        };
        let unsubscribed = LifecycleEvent::Unsubscribed {
            client_id,
            timestamp,
            session_identifier,
            principal_identifier,
            topics,
        };
        assert_same_fields(
            &subscribed.to_json(),
            &AWS_SUBSCRIPTION.replace("EVENT_TYPE", "subscribed"),
        );
        assert_same_fields(
            &unsubscribed.to_json(),
            &AWS_SUBSCRIPTION.replace("EVENT_TYPE", "unsubscribed"),
        );
    }

    #[test]
    fn fields_come_in_the_order_aws_prints_them() {
        for (event, aws) in [
            (aws_connect_event(), AWS_CONNECT),
            (aws_disconnect_event(), AWS_DISCONNECT),
        ] {
            let ours = String::from_utf8(event.to_json()).unwrap();
            let keys: Vec<String> = serde_json::from_str::<Value>(aws)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let (ours_at, aws_at) = (key_order(&ours, &keys), key_order(aws, &keys));
            let rank = |at: &[usize]| {
                let mut idx: Vec<usize> = (0..at.len()).collect();
                idx.sort_by_key(|&i| at[i]);
                idx
            };
            assert_eq!(rank(&ours_at), rank(&aws_at), "{ours}");
        }
    }

    #[test]
    fn ipv6_address_is_a_json_string() {
        let LifecycleEvent::Connected {
            client_id,
            timestamp,
            session_identifier,
            principal_identifier,
            version_number,
            ..
        } = aws_connect_event()
        else {
            unreachable!()
        };
        let event = LifecycleEvent::Connected {
            client_id,
            timestamp,
            session_identifier,
            principal_identifier,
            ip_address: "2001:db8::1".parse().unwrap(),
            version_number,
        };
        let json: Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["ipAddress"], "2001:db8::1");
    }

    #[test]
    fn topics_are_aws_topics_with_the_client_id() {
        let (client_id, timestamp, session_identifier, principal_identifier, topics) =
            aws_subscription_fields();
        let subscribed = LifecycleEvent::Subscribed {
            client_id: client_id.clone(),
            timestamp,
            session_identifier: session_identifier.clone(),
            principal_identifier: principal_identifier.clone(),
            topics: topics.clone(),
        };
        let unsubscribed = LifecycleEvent::Unsubscribed {
            client_id,
            timestamp,
            session_identifier,
            principal_identifier,
            topics,
        };
        assert_eq!(
            aws_connect_event().topic(),
            "$aws/events/presence/connected/186b5"
        );
        assert_eq!(
            aws_disconnect_event().topic(),
            "$aws/events/presence/disconnected/186b5"
        );
        assert_eq!(
            subscribed.topic(),
            "$aws/events/subscriptions/subscribed/186b5"
        );
        assert_eq!(
            unsubscribed.topic(),
            "$aws/events/subscriptions/unsubscribed/186b5"
        );
        for event in [aws_connect_event(), subscribed] {
            thingkit_mqtt::TopicName::new(&event.topic()).unwrap();
        }
    }

    #[test]
    fn client_ids_with_wildcards_get_no_lifecycle_events() {
        assert!(publishes_lifecycle_events("sensor-1"));
        assert!(publishes_lifecycle_events("a/b"));
        assert!(!publishes_lifecycle_events("sensor#1"));
        assert!(!publishes_lifecycle_events("sensor+1"));
    }

    #[test]
    fn every_disconnect_reason_has_its_aws_string() {
        let expected = [
            "AUTH_ERROR",
            "CLIENT_INITIATED_DISCONNECT",
            "CLIENT_ERROR",
            "CONNECTION_LOST",
            "DUPLICATE_CLIENTID",
            "FORBIDDEN_ACCESS",
            "MQTT_KEEP_ALIVE_TIMEOUT",
            "SERVER_ERROR",
            "SERVER_INITIATED_DISCONNECT",
            "THROTTLED",
            "WEBSOCKET_TTL_EXPIRATION",
            "CUSTOMAUTH_TTL_EXPIRATION",
        ];
        for (reason, aws) in DisconnectReason::ALL.into_iter().zip(expected) {
            assert_eq!(reason.as_str(), aws);
            assert_eq!(reason.to_string(), aws);
            // serde's name agrees with as_str.
            assert_eq!(serde_json::to_value(reason).unwrap(), aws);
            assert_eq!(aws.parse::<DisconnectReason>(), Ok(reason));
        }
        assert_eq!(
            "client_error".parse::<DisconnectReason>(),
            Err(UnknownDisconnectReason("client_error".into()))
        );
        // No reason is listed twice.
        let distinct: BTreeSet<_> = DisconnectReason::ALL.into_iter().collect();
        assert_eq!(distinct.len(), DisconnectReason::ALL.len());
    }

    #[test]
    fn server_disconnect_codes_map_to_aws_reasons() {
        use DisconnectReason::*;
        let cases = [
            (ReasonCode::KEEP_ALIVE_TIMEOUT, MqttKeepAliveTimeout),
            (ReasonCode::SESSION_TAKEN_OVER, DuplicateClientId),
            (ReasonCode::SERVER_SHUTTING_DOWN, ServerInitiatedDisconnect),
            (ReasonCode::ADMINISTRATIVE_ACTION, ServerInitiatedDisconnect),
            (ReasonCode::NORMAL_DISCONNECTION, ServerInitiatedDisconnect),
            (ReasonCode::MAXIMUM_CONNECT_TIME, ServerInitiatedDisconnect),
            (ReasonCode::NOT_AUTHORIZED, AuthError),
            (ReasonCode::SERVER_BUSY, Throttled),
            (ReasonCode::MESSAGE_RATE_TOO_HIGH, Throttled),
            (ReasonCode::QUOTA_EXCEEDED, Throttled),
            (ReasonCode::CONNECTION_RATE_EXCEEDED, Throttled),
            (ReasonCode::MALFORMED_PACKET, ClientError),
            (ReasonCode::PROTOCOL_ERROR, ClientError),
            (ReasonCode::PACKET_TOO_LARGE, ClientError),
            (ReasonCode::TOPIC_ALIAS_INVALID, ClientError),
            (ReasonCode::UNSPECIFIED_ERROR, ServerError),
            (ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR, ServerError),
        ];
        for (code, reason) in cases {
            assert_eq!(
                DisconnectReason::for_server_disconnect(code),
                reason,
                "{code:?}"
            );
        }
    }

    #[test]
    fn every_disconnect_code_maps_to_a_reason_other_than_the_clients_own() {
        use thingkit_mqtt::{PacketType, ProtocolVersion};
        for byte in 0..=u8::MAX {
            let code = ReasonCode(byte);
            if !code.allowed_in(PacketType::Disconnect, ProtocolVersion::V5) {
                continue;
            }
            let reason = DisconnectReason::for_server_disconnect(code);
            assert_ne!(reason, DisconnectReason::ClientInitiatedDisconnect);
            assert_ne!(reason, DisconnectReason::ConnectionLost);
        }
    }

    #[test]
    fn versions_count_up_per_client_and_pair_connect_with_disconnect() {
        let mut versions = PresenceVersions::default();
        assert_eq!(versions.connected("a", 1_000), 0);
        assert_eq!(versions.connected("b", 1_000), 0);
        versions.disconnected("a", 0, 2_000);
        assert_eq!(versions.connected("a", 3_000), 1);
        // Takeover: a second connection while the first is up gets the next version, and the
        // late disconnect of the replaced connection does not end the new one.
        assert_eq!(versions.connected("a", 4_000), 2);
        versions.disconnected("a", 1, 4_001);
        assert_eq!(versions.connected("a", 5_000), 3);
    }

    #[test]
    fn versions_reset_to_zero_after_the_reset_window() {
        let mut versions = PresenceVersions::new(PresenceVersionsConfig {
            reset_after_ms: 60_000,
            ..PresenceVersionsConfig::default()
        });
        assert_eq!(versions.connected("a", 0), 0);
        versions.disconnected("a", 0, 10_000);
        assert_eq!(versions.connected("a", 69_999), 1);
        versions.disconnected("a", 1, 70_000);
        // Not swept: still treated as forgotten once the window has passed.
        assert_eq!(versions.connected("a", 130_000), 0);
        versions.disconnected("a", 0, 130_000);
        versions.sweep(189_999);
        assert_eq!(versions.len(), 1);
        versions.sweep(190_000);
        assert!(versions.is_empty());
    }

    #[test]
    fn disconnected_clients_are_bounded_and_connected_ones_are_kept() {
        let mut versions = PresenceVersions::new(PresenceVersionsConfig {
            max_disconnected: 2,
            ..PresenceVersionsConfig::default()
        });
        versions.connected("up", 0);
        for (i, client) in ["a", "b", "c"].into_iter().enumerate() {
            let t = i as u64;
            let v = versions.connected(client, t);
            versions.disconnected(client, v, t + 10);
        }
        // "a" (disconnected longest ago) was forgotten; "up" is connected and stays.
        assert_eq!(versions.len(), 3);
        assert_eq!(versions.connected("a", 100), 0);
        assert_eq!(versions.connected("b", 100), 1);
        assert_eq!(versions.connected("up", 100), 1);
    }

    /// What [`PresenceVersions`] must agree with when nothing is evicted: every client's
    /// latest version and disconnect time, forever.
    #[derive(Default)]
    struct Model(HashMap<u8, (u64, Option<u64>)>);

    impl Model {
        fn connected(&mut self, client: u8, now: u64, reset_after: u64) -> u64 {
            let version = match self.0.get(&client) {
                Some((_, Some(at))) if now - at >= reset_after => 0,
                Some((v, _)) => v + 1,
                None => 0,
            };
            self.0.insert(client, (version, None));
            version
        }

        fn disconnected(&mut self, client: u8, version: u64, now: u64) {
            if let Some(entry) = self.0.get_mut(&client)
                && entry.0 == version
                && entry.1.is_none()
            {
                entry.1 = Some(now);
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Connect(u8),
        /// Disconnect the client's connection that is this many connections old (0: latest).
        Disconnect(u8, u8),
        Sweep,
    }

    fn ops() -> impl proptest::strategy::Strategy<Value = Vec<(Op, u16)>> {
        use proptest::prelude::*;
        let op = prop_oneof![
            4 => (0u8..6).prop_map(Op::Connect),
            4 => (0u8..6, 0u8..3).prop_map(|(c, age)| Op::Disconnect(c, age)),
            1 => Just(Op::Sweep),
        ];
        proptest::collection::vec((op, 0u16..400), 0..200)
    }

    proptest::proptest! {
        #[test]
        fn versions_agree_with_an_unbounded_model(ops in ops()) {
            const RESET: u64 = 1_000;
            let mut versions = PresenceVersions::new(PresenceVersionsConfig {
                reset_after_ms: RESET,
                max_disconnected: usize::MAX,
            });
            let mut model = Model::default();
            let mut now = 0u64;
            for (op, step) in ops {
                now += u64::from(step);
                match op {
                    Op::Connect(c) => {
                        let ours = versions.connected(&c.to_string(), now);
                        proptest::prop_assert_eq!(ours, model.connected(c, now, RESET));
                    }
                    Op::Disconnect(c, age) => {
                        let latest = model.0.get(&c).map_or(0, |e| e.0);
                        let version = latest.saturating_sub(u64::from(age));
                        versions.disconnected(&c.to_string(), version, now);
                        model.disconnected(c, version, now);
                    }
                    Op::Sweep => versions.sweep(now),
                }
            }
        }

        #[test]
        fn remembered_disconnected_clients_never_exceed_the_cap(ops in ops()) {
            let mut versions = PresenceVersions::new(PresenceVersionsConfig {
                reset_after_ms: 1_000,
                max_disconnected: 2,
            });
            let mut model = Model::default();
            let mut now = 0u64;
            for (op, step) in ops {
                now += u64::from(step);
                match op {
                    Op::Connect(c) => {
                        let ours = versions.connected(&c.to_string(), now);
                        let full = model.connected(c, now, 1_000);
                        // Eviction only ever resets a client early.
                        proptest::prop_assert!(ours == full || ours == 0);
                        model.0.insert(c, (ours, None));
                    }
                    Op::Disconnect(c, age) => {
                        let latest = model.0.get(&c).map_or(0, |e| e.0);
                        let version = latest.saturating_sub(u64::from(age));
                        versions.disconnected(&c.to_string(), version, now);
                        model.disconnected(c, version, now);
                    }
                    Op::Sweep => versions.sweep(now),
                }
                proptest::prop_assert!(versions.disconnected.len() <= 2);
                let connected = versions
                    .entries
                    .values()
                    .filter(|e| e.disconnected_at.is_none())
                    .count();
                proptest::prop_assert_eq!(versions.len(), connected + versions.disconnected.len());
            }
        }
    }
}
