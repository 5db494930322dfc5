//! A thing's connectivity status, as AWS IoT fleet indexing keeps it (`connectivity.connected`,
//! `connectivity.timestamp`, `connectivity.disconnectReason`, `connectivity.version`) and
//! `GetThingConnectivityData` returns it. The registry holds one per thing:
//! [`Registry::set_connected`](crate::Registry::set_connected),
//! [`Registry::set_disconnected`](crate::Registry::set_disconnected),
//! [`Registry::connectivity`](crate::Registry::connectivity).

/// Whether a thing is connected, since when, and why it last disconnected.
///
/// The [`Default`] is what the registry reports for a thing with no recorded change since it
/// opened: disconnected, no timestamp, no reason ("unknown"). AWS's fleet index likewise may
/// lack the timestamp and reason of a thing disconnected for about an hour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connectivity {
    /// Whether the thing is connected now.
    pub connected: bool,
    /// When it last connected or disconnected, in Unix milliseconds; `None` if no change was
    /// recorded.
    pub timestamp: Option<u64>,
    /// Why it last disconnected: AWS's `disconnectReason` string (`"CONNECTION_LOST"`, ...).
    /// `None` while connected and when unknown.
    pub disconnect_reason: Option<String>,
    /// The lifecycle `versionNumber` of the connection the record is about (AWS
    /// `connectivity.version`); `None` if no change was recorded.
    pub version: Option<u64>,
}

impl Connectivity {
    /// Applies a connect of connection `version` at `at_ms`; returns whether it changed
    /// anything. Ignored (`false`) when the record already shows this connection: connected
    /// with `version` (a duplicate), or disconnected with `version` at or after `at_ms` (a
    /// connect that arrived after its own disconnect). A same-version connect *later* than the
    /// recorded disconnect applies: AWS resets a client's version to 0 after about an hour
    /// disconnected, so an equal version can be a new connection.
    pub(crate) fn connect(&mut self, at_ms: u64, version: u64) -> bool {
        if self.version == Some(version)
            && (self.connected || self.timestamp.is_some_and(|t| at_ms <= t))
        {
            return false;
        }
        *self = Connectivity {
            connected: true,
            timestamp: Some(at_ms),
            disconnect_reason: None,
            version: Some(version),
        };
        true
    }

    /// Applies a disconnect of connection `version` at `at_ms` for `reason`; returns whether it
    /// changed anything. Only the connection the record shows as connected can disconnect: the
    /// late disconnect of a connection another one replaced (AWS `DUPLICATE_CLIENTID`, which
    /// reaches the registry after the new connection's connect) and duplicates are ignored.
    pub(crate) fn disconnect(&mut self, at_ms: u64, version: u64, reason: &str) -> bool {
        if !self.connected || self.version != Some(version) {
            return false;
        }
        *self = Connectivity {
            connected: false,
            timestamp: Some(at_ms),
            disconnect_reason: Some(reason.to_owned()),
            version: Some(version),
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_then_disconnect_records_both() {
        let mut c = Connectivity::default();
        assert!(c.connect(1_000, 0));
        assert_eq!(
            c,
            Connectivity {
                connected: true,
                timestamp: Some(1_000),
                disconnect_reason: None,
                version: Some(0),
            }
        );
        assert!(c.disconnect(2_000, 0, "MQTT_KEEP_ALIVE_TIMEOUT"));
        assert_eq!(
            c,
            Connectivity {
                connected: false,
                timestamp: Some(2_000),
                disconnect_reason: Some("MQTT_KEEP_ALIVE_TIMEOUT".into()),
                version: Some(0),
            }
        );
    }

    #[test]
    fn late_disconnect_of_a_replaced_connection_is_ignored() {
        let mut c = Connectivity::default();
        c.connect(1_000, 0);
        // Takeover: the new connection's connect comes first.
        assert!(c.connect(2_000, 1));
        assert!(!c.disconnect(2_001, 0, "DUPLICATE_CLIENTID"));
        assert!(c.connected);
        assert_eq!(c.version, Some(1));
    }

    #[test]
    fn duplicates_and_a_connect_after_its_own_disconnect_are_ignored() {
        let mut c = Connectivity::default();
        c.connect(1_000, 3);
        assert!(!c.connect(1_000, 3));
        c.disconnect(2_000, 3, "CONNECTION_LOST");
        assert!(!c.disconnect(2_000, 3, "CONNECTION_LOST"));
        assert!(!c.connect(1_000, 3));
        assert!(!c.connected);
    }

    #[test]
    fn a_reset_version_connects_again() {
        let mut c = Connectivity::default();
        c.connect(0, 0);
        c.disconnect(1_000, 0, "CLIENT_INITIATED_DISCONNECT");
        // More than an hour later the client's version is 0 again.
        assert!(c.connect(4_000_000, 0));
        assert!(c.connected);
        assert_eq!(c.disconnect_reason, None);
    }

    #[test]
    fn a_disconnect_without_a_connect_is_ignored() {
        let mut c = Connectivity::default();
        assert!(!c.disconnect(1_000, 0, "CONNECTION_LOST"));
        assert_eq!(c, Connectivity::default());
    }

    proptest::proptest! {
        /// A broker's connections of one client, in the order it sees them: each connect
        /// opens a connection with the next version (a takeover when one is still open), each
        /// disconnect closes some open connection. The record must always describe the latest
        /// connection: connected while it is open, and once it has closed, with its close.
        #[test]
        fn the_record_follows_the_latest_connection(
            ops in proptest::collection::vec((proptest::bool::ANY, 0usize..4), 0..100)
        ) {
            let mut record = Connectivity::default();
            let mut open: Vec<u64> = Vec::new();
            let mut next_version = 0u64;
            let mut latest: Option<(u64, Option<(u64, String)>)> = None;
            for (now, (connect, pick)) in (1u64..).zip(ops) {
                if connect || open.is_empty() {
                    let version = next_version;
                    next_version += 1;
                    open.push(version);
                    record.connect(now, version);
                    latest = Some((version, None));
                } else {
                    let version = open.remove(pick % open.len());
                    let reason = format!("REASON_{version}");
                    record.disconnect(now, version, &reason);
                    if let Some((v, closed)) = &mut latest
                        && *v == version
                    {
                        *closed = Some((now, reason));
                    }
                }
                let (version, closed) = latest.clone().expect("a connection was opened");
                proptest::prop_assert_eq!(record.version, Some(version));
                proptest::prop_assert_eq!(record.connected, closed.is_none());
                if let Some((at, reason)) = closed {
                    proptest::prop_assert_eq!(record.timestamp, Some(at));
                    proptest::prop_assert_eq!(record.disconnect_reason.as_deref(), Some(reason.as_str()));
                } else {
                    proptest::prop_assert_eq!(record.disconnect_reason.as_deref(), None);
                }
            }
        }
    }
}
