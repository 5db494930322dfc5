//! Usage events; documented on [`UsageEvent`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metering::{MeteringPolicy, PacketKind};

/// Limits applied when parsing usage events. The defaults are safe for untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageLimits {
    /// Longest accepted line in bytes (default 4,096).
    pub max_line_bytes: usize,
    /// Longest idempotency key in bytes (default 128).
    pub max_id_bytes: usize,
    /// Longest account or device name in bytes (default 256).
    pub max_name_bytes: usize,
}

impl UsageLimits {
    /// This value with [`max_line_bytes`](Self::max_line_bytes) replaced.
    pub fn with_max_line_bytes(mut self, max_line_bytes: usize) -> Self {
        self.max_line_bytes = max_line_bytes;
        self
    }

    /// This value with [`max_id_bytes`](Self::max_id_bytes) replaced.
    pub fn with_max_id_bytes(mut self, max_id_bytes: usize) -> Self {
        self.max_id_bytes = max_id_bytes;
        self
    }

    /// This value with [`max_name_bytes`](Self::max_name_bytes) replaced.
    pub fn with_max_name_bytes(mut self, max_name_bytes: usize) -> Self {
        self.max_name_bytes = max_name_bytes;
        self
    }
}

impl Default for UsageLimits {
    fn default() -> Self {
        UsageLimits {
            max_line_bytes: 4096,
            max_id_bytes: 128,
            max_name_bytes: 256,
        }
    }
}

/// One validated usage event. Construct with [`UsageEvent::new`] or [`UsageEvent::parse_line`];
/// both check the limits, so an existing event is always valid.
///
/// Usage events: one metered operation, as read from and written to JSON lines.
///
/// The wire shape is one JSON object per line:
///
/// ```json
/// {"id":"e-1","account":"acme","device":"sensor-7","kind":"publish","bytes":812,"time":1764115200}
/// ```
///
/// `id` is the idempotency key (a repeated id is the same event), `kind` is a
/// [`PacketKind`] name, `bytes` the counted bytes (default 0), `minutes` the connection minutes
/// for `connection_minutes` events (default 0), and `time` Unix seconds (UTC). Unknown fields are
/// rejected. Every string is length-limited and may not contain control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UsageEvent {
    id: String,
    account: String,
    device: String,
    kind: PacketKind,
    bytes: u64,
    minutes: u64,
    time: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: String,
    account: String,
    device: String,
    kind: PacketKind,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    minutes: u64,
    time: u64,
}

fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<()> {
    if !allow_empty && value.is_empty() {
        return Err(Error::field(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::field(
            field,
            format!("{} bytes, over the limit of {max}", value.len()),
        ));
    }
    if let Some(pos) = value.find(char::is_control) {
        return Err(Error::field(
            field,
            format!("control character at byte {pos}"),
        ));
    }
    Ok(())
}

impl UsageEvent {
    /// A new event of `kind` at Unix second `time`, with zero bytes and minutes.
    pub fn new(
        id: impl Into<String>,
        account: impl Into<String>,
        device: impl Into<String>,
        kind: PacketKind,
        time: u64,
        limits: &UsageLimits,
    ) -> Result<UsageEvent> {
        let event = UsageEvent {
            id: id.into(),
            account: account.into(),
            device: device.into(),
            kind,
            bytes: 0,
            minutes: 0,
            time,
        };
        event.validate(limits)?;
        Ok(event)
    }

    /// The same event with `bytes` counted bytes.
    pub fn with_bytes(mut self, bytes: u64) -> UsageEvent {
        self.bytes = bytes;
        self
    }

    /// The same event with `minutes` connection minutes.
    pub fn with_minutes(mut self, minutes: u64) -> UsageEvent {
        self.minutes = minutes;
        self
    }

    fn validate(&self, limits: &UsageLimits) -> Result<()> {
        check_text("id", &self.id, limits.max_id_bytes, false)?;
        check_text("account", &self.account, limits.max_name_bytes, false)?;
        check_text("device", &self.device, limits.max_name_bytes, true)?;
        Ok(())
    }

    /// Parses one JSON line (a trailing `\n` or `\r\n` is allowed).
    pub fn parse_line(line: &[u8], limits: &UsageLimits) -> Result<UsageEvent> {
        if line.len() > limits.max_line_bytes {
            return Err(Error::TooLarge {
                what: "usage line",
                len: line.len(),
                limit: limits.max_line_bytes,
            });
        }
        let raw: RawEvent =
            serde_json::from_slice(line).map_err(|e| Error::json("usage event", &e))?;
        let event = UsageEvent {
            id: raw.id,
            account: raw.account,
            device: raw.device,
            kind: raw.kind,
            bytes: raw.bytes,
            minutes: raw.minutes,
            time: raw.time,
        };
        event.validate(limits)?;
        Ok(event)
    }

    /// The event as one JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The idempotency key.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The account.
    pub fn account(&self) -> &str {
        &self.account
    }
    /// The device (may be empty for account-level operations).
    pub fn device(&self) -> &str {
        &self.device
    }
    /// What was metered.
    pub fn kind(&self) -> PacketKind {
        self.kind
    }
    /// Counted bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Connection minutes.
    pub fn minutes(&self) -> u64 {
        self.minutes
    }
    /// Unix seconds (UTC).
    pub fn time(&self) -> u64 {
        self.time
    }

    /// Billable units of this event under `policy`.
    pub fn units(&self, policy: &MeteringPolicy) -> u64 {
        match self.kind {
            PacketKind::ConnectionMinutes => policy.units(self.kind, self.minutes),
            kind => policy.units(kind, self.bytes),
        }
    }

    /// Metered quantity: connection minutes for `connection_minutes`, otherwise 1 (one
    /// operation).
    pub fn quantity(&self) -> u64 {
        match self.kind {
            PacketKind::ConnectionMinutes => self.minutes,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"id":"e-1","account":"acme","device":"d7","kind":"publish","bytes":8192,"time":1764115200}"#;

    #[test]
    fn parses_a_usage_line_and_writes_it_back() {
        let e = UsageEvent::parse_line(LINE.as_bytes(), &UsageLimits::default()).unwrap();
        assert_eq!(
            (e.id(), e.account(), e.kind(), e.bytes()),
            ("e-1", "acme", PacketKind::Publish, 8192)
        );
        assert_eq!(e.units(&MeteringPolicy::aws()), 2);
        let again =
            UsageEvent::parse_line(e.to_json_line().as_bytes(), &UsageLimits::default()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn rejects_unknown_kind_unknown_field_and_missing_time() {
        let limits = UsageLimits::default();
        for bad in [
            r#"{"id":"1","account":"a","device":"d","kind":"teleport","time":1}"#,
            r#"{"id":"1","account":"a","device":"d","kind":"ping","time":1,"x":1}"#,
            r#"{"id":"1","account":"a","device":"d","kind":"ping"}"#,
            r#"{"id":"1","account":"a","device":"d","kind":"ping","time":-1}"#,
            r#"{"id":"1","account":"a","device":"d","kind":"ping","time":1.5}"#,
            "not json",
        ] {
            let err = UsageEvent::parse_line(bad.as_bytes(), &limits).unwrap_err();
            assert!(matches!(err, Error::Json { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_empty_id_control_characters_and_oversized_lines() {
        let limits = UsageLimits::default();
        let empty = r#"{"id":"","account":"a","device":"d","kind":"ping","time":1}"#;
        assert!(matches!(
            UsageEvent::parse_line(empty.as_bytes(), &limits),
            Err(Error::InvalidField { ref field, .. }) if field == "id"
        ));
        let ctl = r#"{"id":"x","account":"a\n,b","device":"d","kind":"ping","time":1}"#;
        assert!(UsageEvent::parse_line(ctl.as_bytes(), &limits).is_err());
        let long = format!(
            r#"{{"id":"{}","account":"a","device":"d","kind":"ping","time":1}}"#,
            "x".repeat(5000)
        );
        assert!(matches!(
            UsageEvent::parse_line(long.as_bytes(), &limits),
            Err(Error::TooLarge { limit: 4096, .. })
        ));
    }

    #[test]
    fn connection_minutes_events_bill_their_minutes() {
        let e = UsageEvent::new(
            "m",
            "a",
            "d",
            PacketKind::ConnectionMinutes,
            0,
            &UsageLimits::default(),
        )
        .unwrap()
        .with_minutes(42);
        assert_eq!(e.units(&MeteringPolicy::aws()), 42);
        assert_eq!(e.quantity(), 42);
    }
}
