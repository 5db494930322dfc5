//! The server's configuration file, `thingkit.toml`, read by `thingkit serve --config FILE`.
//!
//! One TOML file configures the listeners, TLS, the CA, the registry's data directory, policies,
//! metering, limits (with overrides per thing type or thing group), firmware trust, fleet
//! provisioning, metrics and logging. Every key has a default, so an empty file is a valid
//! configuration; `thingkit.example.toml` beside `Cargo.toml` documents every key with its
//! default and is what `thingkit init` writes.
//!
//! Validation happens here, once: addresses are parsed, limits are at least 1 (non-zero types),
//! enumerations are closed, every table refuses unknown keys, and the checks serde cannot make
//! (one selector per limit override, ALPN names, the account ID, ...) run right after parsing.
//! Every error names the key path (`mqtt.listen`, `limits.override[1].thing_type`) and the line
//! and column in the file. Relative paths are resolved against the file's directory.

// The server that reads most of these fields is wired in a later change (`serve::serve`); until
// then the fields are read only by the tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thingkit_meter::MeteringPolicy;
use thingkit_policy::ArnPrefix;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The example configuration: every key commented out with its default. `thingkit init` writes
/// it as `thingkit.toml`.
pub const EXAMPLE: &str = include_str!("../thingkit.example.toml");

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the registry (redb) and the broker's stores live. Default `data`.
    pub data_dir: PathBuf,
    /// `[mqtt]`: the MQTT/TLS listener and protocol limits.
    pub mqtt: MqttConfig,
    /// `[tls]`: the server certificate chain, its key, ALPN.
    pub tls: TlsConfig,
    /// `[ca]`: the CA that issues device certificates.
    pub ca: CaConfig,
    /// `[account]`: partition, region and account of policy ARNs.
    pub account: AccountConfig,
    /// `[policies]`: policy documents loaded at start.
    pub policies: PoliciesConfig,
    /// `[metering]`: the metering preset.
    pub metering: MeteringConfig,
    /// `[limits]`: rate limits, with overrides per thing type or group.
    pub limits: LimitsConfig,
    /// `[firmware]`: firmware trust anchors.
    pub firmware: FirmwareConfig,
    /// `[fleet]`: fleet provisioning by claim.
    pub fleet: FleetConfig,
    /// `[shadow]`: device shadow limits.
    pub shadow: ShadowConfig,
    /// `[[device]]`: devices registered at start. Default: none.
    #[serde(rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// `[api]`: the control-plane API (AWS IoT REST-JSON over HTTPS).
    pub api: ApiConfig,
    /// `[metrics]`: the Prometheus and health HTTP endpoint.
    pub metrics: MetricsConfig,
    /// `[log]`: log level and format.
    pub log: LogConfig,
    /// `[[rules]]`: topic rules installed at start. Default: none.
    pub rules: Vec<RuleConfig>,
    /// `[rules_engine]`: the rules engine's queues, retries and sinks.
    pub rules_engine: RulesEngineConfig,
    /// `[detect]`: Device Defender Detect security profiles.
    pub detect: DetectConfig,
    /// `[cluster]`: several servers as one, on PostgreSQL and NATS (docs/cluster.md).
    pub cluster: ClusterConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("data"),
            mqtt: MqttConfig::default(),
            tls: TlsConfig::default(),
            ca: CaConfig::default(),
            account: AccountConfig::default(),
            policies: PoliciesConfig::default(),
            metering: MeteringConfig::default(),
            limits: LimitsConfig::default(),
            firmware: FirmwareConfig::default(),
            detect: DetectConfig::default(),
            cluster: ClusterConfig::default(),
            fleet: FleetConfig::default(),
            shadow: ShadowConfig::default(),
            devices: Vec::new(),
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            rules: Vec::new(),
            rules_engine: RulesEngineConfig::default(),
        }
    }
}

/// `[[rules]]`: one topic rule (AWS IoT's `TopicRulePayload`, keys in snake_case).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name: `^[a-zA-Z0-9_]{1,128}$`, unique in the file.
    pub name: String,
    /// The AWS IoT SQL statement.
    pub sql: String,
    /// `2015-10-08` (the default), `2016-03-23` or `beta`.
    #[serde(default = "default_sql_version")]
    pub sql_version: String,
    /// Installed but not run. Default false.
    #[serde(default)]
    pub disabled: bool,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// The actions (at most 10).
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
    /// The action run with the error record when another action fails.
    #[serde(default)]
    pub error_action: Option<ActionConfig>,
}

fn default_sql_version() -> String {
    "2015-10-08".into()
}

/// One action: a table with exactly one of `republish`, `http`, `file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Republish to a topic of this broker.
    pub republish: Option<RepublishConfig>,
    /// HTTP POST of the output.
    pub http: Option<HttpConfig>,
    /// A file sink.
    pub file: Option<FileConfig>,
}

/// `republish = { topic = "...", qos = 0 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepublishConfig {
    /// The topic: a substitution template (`${topic(2)}`); `$$` writes a `$`.
    pub topic: String,
    /// 0 (the default) or 1.
    #[serde(default)]
    pub qos: u8,
}

/// `http = { url = "...", headers = { name = "value template" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The endpoint (`http://` or `https://`): a substitution template.
    pub url: String,
    /// Headers: name = value (a substitution template).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `file = { path = "...", format = "jsonl", columns = [...], partition_by_date = false }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file (JSON lines, CSV) or directory (partitioned, and always for Parquet); relative
    /// to data_dir.
    pub path: PathBuf,
    /// `jsonl`, `csv` or `parquet`.
    pub format: SinkFormat,
    /// The columns of CSV and Parquet sinks.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// Partition into `path/date=YYYY-MM-DD/` by arrival date (UTC). Default false.
    #[serde(default)]
    pub partition_by_date: bool,
}

/// A file sink's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    /// JSON lines.
    Jsonl,
    /// CSV.
    Csv,
    /// Parquet.
    Parquet,
}

/// `{ name = "temperature", type = "double" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// The output key.
    pub name: String,
    /// `string`, `int64`, `double` or `boolean`.
    #[serde(rename = "type")]
    pub ty: ColumnKind,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// UTF-8 text.
    String,
    /// 64-bit integer.
    Int64,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
}

/// `[rules_engine]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesEngineConfig {
    /// Messages waiting for the evaluator (beyond: dropped and counted). Default 10000.
    pub queue_size: NonZeroUsize,
    /// Outputs waiting for one action (beyond: reported as that action's failure). Default 1000.
    pub action_queue_size: NonZeroUsize,
    /// Attempts per delivery, the first included. Default 3.
    pub retry_attempts: NonZeroU32,
    /// Wait before the first retry, doubled each time. Default 200.
    pub retry_backoff_ms: NonZeroU64,
    /// Longest wait between attempts. Default 10000.
    pub retry_backoff_max_ms: NonZeroU64,
    /// Timeout of one HTTP request. Default 10.
    pub http_timeout_seconds: NonZeroU64,
    /// CA certificates (PEM) HTTPS actions trust; unset: https:// endpoints cannot be verified.
    pub http_ca_bundle: Option<PathBuf>,
    /// The dead-letter file (JSON lines), relative to data_dir. Default
    /// `rules/dead-letter.jsonl`.
    pub dead_letter_path: PathBuf,
    /// Rows per Parquet file before a new one starts. Default 100000.
    pub parquet_roll_rows: NonZeroUsize,
    /// Age of a Parquet file before a new one starts. Default 300.
    pub parquet_roll_seconds: NonZeroU64,
    /// Rows per Parquet row group. Default 10000.
    pub parquet_row_group_rows: NonZeroUsize,
    /// Open (window, key) groups per windowed rule. Default 100000.
    pub window_max_groups: NonZeroUsize,
}

impl Default for RulesEngineConfig {
    fn default() -> Self {
        RulesEngineConfig {
            queue_size: nzu(10_000),
            action_queue_size: nzu(1_000),
            retry_attempts: nz32(3),
            retry_backoff_ms: nz64(200),
            retry_backoff_max_ms: nz64(10_000),
            http_timeout_seconds: nz64(10),
            http_ca_bundle: None,
            dead_letter_path: PathBuf::from("rules/dead-letter.jsonl"),
            parquet_roll_rows: nzu(100_000),
            parquet_roll_seconds: nz64(300),
            parquet_row_group_rows: nzu(10_000),
            window_max_groups: nzu(100_000),
        }
    }
}

impl ActionConfig {
    /// The action as thingkit-rules writes it; `Err` names the problem when the table does
    /// not have exactly one kind.
    pub fn to_action(&self) -> Result<thingkit_rules::topic_rule::Action, String> {
        use thingkit_rules::topic_rule as tr;
        let kinds = [
            self.republish.is_some(),
            self.http.is_some(),
            self.file.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err("an action has exactly one of republish, http, file".into());
        }
        if let Some(r) = &self.republish {
            return Ok(tr::Action::Republish(tr::RepublishAction {
                role_arn: None,
                topic: r.topic.clone(),
                qos: Some(r.qos),
            }));
        }
        if let Some(h) = &self.http {
            return Ok(tr::Action::Http(tr::HttpAction {
                url: h.url.clone(),
                confirmation_url: None,
                headers: h
                    .headers
                    .iter()
                    .map(|(k, v)| tr::HttpHeader {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            }));
        }
        let f = self.file.as_ref().ok_or("no action")?;
        Ok(tr::Action::File(tr::FileAction {
            path: f.path.to_string_lossy().into_owned(),
            format: match f.format {
                SinkFormat::Jsonl => tr::FileFormat::Jsonl,
                SinkFormat::Csv => tr::FileFormat::Csv,
                SinkFormat::Parquet => tr::FileFormat::Parquet,
            },
            columns: f
                .columns
                .iter()
                .map(|c| tr::Column {
                    name: c.name.clone(),
                    ty: match c.ty {
                        ColumnKind::String => tr::ColumnType::String,
                        ColumnKind::Int64 => tr::ColumnType::Int64,
                        ColumnKind::Double => tr::ColumnType::Double,
                        ColumnKind::Boolean => tr::ColumnType::Boolean,
                    },
                })
                .collect(),
            partition_by_date: f.partition_by_date,
        }))
    }
}

impl RuleConfig {
    /// The rule as AWS's `TopicRulePayload`.
    pub fn payload(&self) -> Result<thingkit_rules::topic_rule::TopicRulePayload, String> {
        Ok(thingkit_rules::topic_rule::TopicRulePayload {
            sql: self.sql.clone(),
            description: self.description.clone(),
            actions: self
                .actions
                .iter()
                .map(ActionConfig::to_action)
                .collect::<Result<_, _>>()?,
            rule_disabled: Some(self.disabled),
            aws_iot_sql_version: Some(self.sql_version.clone()),
            error_action: self
                .error_action
                .as_ref()
                .map(ActionConfig::to_action)
                .transpose()?,
        })
    }
}

/// `[shadow]`: the device shadow service's limits (AWS IoT's values by default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Largest request payload in bytes, checked before parsing (413). Default 131072.
    pub max_payload_bytes: NonZeroUsize,
    /// Largest desired + reported state, metadata excluded (413). Default 8192.
    pub max_state_bytes: NonZeroUsize,
    /// Deepest nesting inside desired and reported, the section counting as 1 (400). Default 6.
    pub max_depth: NonZeroUsize,
    /// Longest clientToken in bytes (400). Default 64.
    pub max_client_token_bytes: NonZeroUsize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        let aws = thingkit_shadow::Limits::default();
        ShadowConfig {
            max_payload_bytes: nzu(aws.max_payload_bytes),
            max_state_bytes: nzu(aws.max_state_bytes),
            max_depth: nzu(aws.max_depth),
            max_client_token_bytes: nzu(aws.max_client_token_bytes),
        }
    }
}

impl ShadowConfig {
    /// The shadow engine's limits.
    pub fn limits(&self) -> thingkit_shadow::Limits {
        thingkit_shadow::Limits::default()
            .with_max_payload_bytes(self.max_payload_bytes.get())
            .with_max_state_bytes(self.max_state_bytes.get())
            .with_max_depth(self.max_depth.get())
            .with_max_client_token_bytes(self.max_client_token_bytes.get())
    }
}

/// `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// The MQTT over TLS listener. Default `127.0.0.1:8883`.
    pub listen: SocketAddr,
    /// Largest accepted packet in bytes (MQTT 5 Maximum Packet Size). Default 262144.
    pub max_packet_size: NonZeroU32,
    /// Topic Alias Maximum announced to MQTT 5 clients; 0 disables aliases. Default 32.
    pub topic_alias_maximum: u16,
    /// Receive Maximum announced to MQTT 5 clients. Default 256.
    pub receive_maximum: NonZeroU16,
    /// QoS 1 deliveries in flight to a client that announced no Receive Maximum. Default 64.
    pub max_inflight: NonZeroU16,
    /// Messages queued for one session. Default 10000.
    pub max_queued: NonZeroUsize,
    /// Milliseconds a publisher waits for room in a connected subscriber's full queue before
    /// that subscriber is disconnected (its persistent session keeps the queue). Default 5000.
    pub slow_subscriber_timeout_ms: NonZeroU64,
    /// Topics with a retained message. Default 100000.
    pub max_retained_messages: NonZeroUsize,
    /// Topic and payload bytes of all retained messages. Default 268435456 (256 MiB).
    pub max_retained_bytes: NonZeroUsize,
    /// Longest keep-alive a client may ask for, in seconds. Default 1200.
    pub max_keep_alive: NonZeroU16,
    /// Seconds for the TLS handshake and CONNECT. Default 10.
    pub connect_timeout_seconds: NonZeroU64,
    /// Connections held at once. Default 100000.
    pub max_connections: NonZeroUsize,
}

impl MqttConfig {
    /// [`connect_timeout_seconds`](Self::connect_timeout_seconds) as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds.get())
    }

    /// [`slow_subscriber_timeout_ms`](Self::slow_subscriber_timeout_ms) as a duration.
    pub fn slow_subscriber_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_subscriber_timeout_ms.get())
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            max_packet_size: nz32(256 * 1024),
            topic_alias_maximum: 32,
            receive_maximum: nz16(256),
            max_inflight: nz16(64),
            max_queued: nzu(10_000),
            slow_subscriber_timeout_ms: nz64(5_000),
            max_retained_messages: nzu(100_000),
            max_retained_bytes: nzu(256 * 1024 * 1024),
            max_keep_alive: nz16(1200),
            connect_timeout_seconds: nz64(10),
            max_connections: nzu(100_000),
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain, PEM, server certificate first. Default `server/server.pem`.
    pub certificate: PathBuf,
    /// The server's private key, PEM (PKCS #8). Default `server/server.key`.
    pub private_key: PathBuf,
    /// ALPN names accepted, in preference order; empty ignores ALPN. Each is 1 to 255 bytes.
    /// Default `["x-amzn-mqtt-ca", "mqtt"]`.
    pub alpn: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: PathBuf::from("server/server.pem"),
            private_key: PathBuf::from("server/server.key"),
            alpn: vec!["x-amzn-mqtt-ca".into(), "mqtt".into()],
        }
    }
}

/// `[ca]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// The CA certificate, PEM. Default `ca/ca.pem`.
    pub certificate: PathBuf,
    /// The CA private key, PEM. Default `ca/ca.key`.
    pub private_key: PathBuf,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            certificate: PathBuf::from("ca/ca.pem"),
            private_key: PathBuf::from("ca/ca.key"),
        }
    }
}

/// `[account]`: the ARN prefix `arn:PARTITION:iot:REGION:ACCOUNT_ID:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// Default `aws`.
    pub partition: String,
    /// Default `eu-central-1`.
    pub region: String,
    /// Twelve digits; also the default billing account. Default `123456789012`.
    pub account_id: String,
}

impl AccountConfig {
    /// The ARN prefix policies are decided against (valid: checked when the file is read).
    pub fn arn_prefix(&self) -> Option<ArnPrefix> {
        ArnPrefix::new(&self.partition, &self.region, &self.account_id)
    }
}

impl Default for AccountConfig {
    fn default() -> Self {
        AccountConfig {
            partition: "aws".into(),
            region: "eu-central-1".into(),
            account_id: "123456789012".into(),
        }
    }
}

/// `[policies]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoliciesConfig {
    /// A directory of policy documents (`NAME.json` becomes policy `NAME`). Default: none.
    pub dir: Option<PathBuf>,
}

/// `[metering]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeteringConfig {
    /// The metering preset. Default `aws`.
    pub preset: MeteringPreset,
}

/// What a publish over a rate limit gets (`[limits] over_limit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverLimit {
    /// Refused, as AWS IoT Core does: MQTT 5 PUBACK 0x97 Quota exceeded. MQTT 3.1.1 has no
    /// negative PUBACK: a QoS 1 publish is held back first (up to 1 s) and, still over the
    /// limit, closes the connection; a QoS 0 publish is dropped.
    #[default]
    Reject,
    /// Held back (the connection is not read) until the limit allows it, up to 1 s, then
    /// refused as with `reject`: the publisher is slowed down rather than refused.
    Delay,
}

/// The metering presets of thingkit-meter ([`MeteringPolicy::preset`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeteringPreset {
    /// AWS IoT Core: 5 KB message blocks, 1 KB shadow and registry blocks.
    #[default]
    Aws,
    /// Azure IoT Hub standard tiers: 4 KB chunks.
    Azure,
    /// Azure IoT Hub free tier: 0.5 KB chunks.
    AzureFree,
    /// Google Cloud IoT: bytes, at least 1 KB per operation.
    Gcp,
}

impl MeteringPreset {
    /// The metering policy of this preset.
    pub fn policy(self) -> MeteringPolicy {
        match self {
            MeteringPreset::Aws => MeteringPolicy::aws(),
            MeteringPreset::Azure => MeteringPolicy::azure(),
            MeteringPreset::AzureFree => MeteringPolicy::azure_free(),
            MeteringPreset::Gcp => MeteringPolicy::gcp(),
        }
    }
}

/// `[limits]`: the defaults for every device, and `[[limits.override]]` entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Whether the publish and connect rate limits apply. `false` turns every one of them off
    /// (per connection, per account, per client ID and the overrides), as on a broker such as
    /// mosquitto that has none; the queue and retained caps stay. Default true.
    pub enabled: bool,
    /// What a publish over a rate limit gets. Default `reject`.
    pub over_limit: OverLimit,
    /// Publishes per second per connection. Default 100 (AWS).
    pub publishes_per_second: NonZeroU64,
    /// Publish bytes per second per connection. Default 524288 (AWS: 512 KiB/s).
    pub bytes_per_second: NonZeroU64,
    /// CONNECTs per second per client ID. Default 1 (AWS).
    pub connects_per_second: NonZeroU64,
    /// Inbound publishes per second per account. Default 20000 (AWS us-east-1).
    pub account_publishes_per_second: NonZeroU64,
    /// Accounts the account limiter tracks at once. Default 1048576.
    pub max_accounts: NonZeroUsize,
    /// Client IDs the CONNECT limiter tracks at once. Default 1048576.
    pub max_connect_clients: NonZeroUsize,
    /// Per thing type or thing group limits, in file order. Default: none.
    #[serde(rename = "override")]
    pub overrides: Vec<LimitOverride>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            over_limit: OverLimit::Reject,
            publishes_per_second: nz64(100),
            bytes_per_second: nz64(512 * 1024),
            connects_per_second: nz64(1),
            account_publishes_per_second: nz64(20_000),
            max_accounts: nzu(1 << 20),
            max_connect_clients: nzu(1 << 20),
            overrides: Vec::new(),
        }
    }
}

/// One `[[limits.override]]`: exactly one of `thing_type` and `thing_group` (checked when the file
/// is read), and the limits it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverride {
    /// Applies to things of this type.
    pub thing_type: Option<String>,
    /// Applies to things in this group.
    pub thing_group: Option<String>,
    /// Replaces `limits.publishes_per_second`.
    pub publishes_per_second: Option<NonZeroU64>,
    /// Replaces `limits.bytes_per_second`.
    pub bytes_per_second: Option<NonZeroU64>,
    /// Replaces `limits.connects_per_second`.
    pub connects_per_second: Option<NonZeroU64>,
}

impl LimitOverride {
    fn matches(&self, thing_type: Option<&str>, groups: &[&str]) -> bool {
        match (&self.thing_type, &self.thing_group) {
            (Some(t), _) => thing_type == Some(t.as_str()),
            (None, Some(g)) => groups.contains(&g.as_str()),
            (None, None) => false,
        }
    }
}

/// The per-connection limits that apply to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Publishes per second.
    pub publishes_per_second: NonZeroU64,
    /// Publish bytes per second.
    pub bytes_per_second: NonZeroU64,
    /// CONNECTs per second for its client ID.
    pub connects_per_second: NonZeroU64,
}

impl LimitsConfig {
    /// The limits of a device whose thing has `thing_type` and belongs to `groups`: the first
    /// override (file order) that matches sets the limits it names, `[limits]` the rest.
    pub fn for_thing(&self, thing_type: Option<&str>, groups: &[&str]) -> ConnectionLimits {
        let base = ConnectionLimits {
            publishes_per_second: self.publishes_per_second,
            bytes_per_second: self.bytes_per_second,
            connects_per_second: self.connects_per_second,
        };
        match self
            .overrides
            .iter()
            .find(|o| o.matches(thing_type, groups))
        {
            None => base,
            Some(o) => ConnectionLimits {
                publishes_per_second: o.publishes_per_second.unwrap_or(base.publishes_per_second),
                bytes_per_second: o.bytes_per_second.unwrap_or(base.bytes_per_second),
                connects_per_second: o.connects_per_second.unwrap_or(base.connects_per_second),
            },
        }
    }
}

/// `[firmware]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirmwareConfig {
    /// Release public keys (SPKI PEM files). Default: none (envelopes only checked for form).
    pub trusted_keys: Vec<PathBuf>,
}

/// `[detect]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Security profiles (the JSON `CreateSecurityProfile` takes), one file each, evaluated
    /// once a minute on the broker's per-device activity. Default: none (profiles made through
    /// the API are evaluated as well).
    pub profiles: Vec<PathBuf>,
    /// Firmware versions marked vulnerable: the fleet's firmware vulnerability rate (dashboard,
    /// `thingkit report`) is the share of registered things whose `firmwareVersion` attribute is
    /// one of them. Default: none.
    pub vulnerable_firmware: Vec<String>,
}

/// `[cluster]`: what several servers share (docs/cluster.md). Unset, the server keeps
/// everything in `data_dir` and routes messages only among its own connections.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// PostgreSQL that holds the registry, the shadows and the jobs of every server of the
    /// cluster (a libpq URL such as `postgres://thingkit@db.internal/thingkit`). Unset: they
    /// live in `data_dir`.
    pub postgres: Option<String>,
    /// The PostgreSQL schema of this cluster's tables (several clusters can share a database):
    /// 1 to 48 of `a-z`, `0-9` and `_`, not starting with a digit or `pg_`. Default `thingkit`.
    pub schema: String,
    /// How many servers share the per-account limits: each server enforces
    /// `[limits] account_publishes_per_second` divided by this (rounded up), so the cluster
    /// never admits more than the limit plus one per server and second. Default 1.
    pub servers: NonZeroU64,
    /// The NATS server(s) that route messages between the servers (`nats://host:port`, several
    /// separated by commas); a CONNECT on one server also ends the connection with the same
    /// client ID on the others. With `postgres` set too, persistent sessions and retained
    /// messages live in PostgreSQL and a session moves to the server its client reconnects to.
    /// Default: unset, this server alone.
    pub nats: Option<String>,
    /// The cluster's name, the same on every server: its subjects are `thingkit.<name>.…`
    /// (ASCII letters, digits, `-`, `_`). Default `thingkit`.
    pub name: String,
    /// This server's name in the cluster, unique among its servers (printable ASCII), and the
    /// owner of its sessions in PostgreSQL: required with `postgres` and `nats` both set, so a
    /// restarted server finds the sessions it owns. Default: unset, `<mqtt.listen>-<process
    /// id>` (a server without sessions in PostgreSQL).
    pub server_id: Option<String>,
    /// With `nats`: the cluster's messages are also kept in a JetStream stream
    /// (`thingkit-<name>`; the NATS server must run JetStream, `nats-server -js`), a QoS 1
    /// publish is acknowledged only once the stream has it, and a persistent session that
    /// moves to another server (its own died, or its client reconnected elsewhere) is replayed
    /// what it missed while it moved. `false`: NATS core only, at most once between servers.
    /// Default `true`.
    pub durable: bool,
    /// How long the stream keeps messages: the longest a moving session can be replayed
    /// from. Default 3600.
    pub stream_max_age_seconds: NonZeroU64,
    /// How far before a move, a break of the NATS connection or a restart in place a replay
    /// starts: covers messages in flight towards a server when it died, and clocks (of the
    /// servers and of NATS) that disagree by less. Default 5000.
    pub replay_margin_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            postgres: None,
            schema: "thingkit".into(),
            servers: nz64(1),
            nats: None,
            name: "thingkit".into(),
            server_id: None,
            durable: true,
            stream_max_age_seconds: nz64(3_600),
            replay_margin_ms: 5_000,
        }
    }
}

/// `[fleet]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Provisioning templates, name to file. Default: none (fleet provisioning off).
    pub templates: BTreeMap<String, PathBuf>,
    /// Claim certificates (PEM files). Default: none.
    pub claim_certificates: Vec<PathBuf>,
}

/// One `[[device]]`: a thing and its certificate, registered (idempotently) at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The thing name (created if missing); devices connect with it as their client ID.
    pub thing: String,
    /// The device certificate (PEM, issued by the CA), registered ACTIVE and attached to the
    /// thing.
    pub certificate: PathBuf,
    /// Policies attached to the certificate. Default (unset): every policy of `[policies] dir`.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Whether the API runs. Default `true`.
    pub enabled: bool,
    /// Its address. Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// What `DescribeEndpoint` answers for `iot:Data-ATS`; unset: `[mqtt] listen`.
    pub data_endpoint: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_endpoint: None,
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether the endpoint runs. Default `true`.
    pub enabled: bool,
    /// Its address. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Default `info`.
    pub level: LogLevel,
    /// Default `text`.
    pub format: LogFormat,
}

/// Log levels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn nz16(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).expect("defaults are non-zero literals")
}
fn nz32(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("defaults are non-zero literals")
}
fn nz64(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).expect("defaults are non-zero literals")
}
fn nzu(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("defaults are non-zero literals")
}

/// Why a configuration could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    Invalid {
        /// The file, if the text came from one.
        file: Option<PathBuf>,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The key path, e.g. `mqtt.listen` or `limits.override[1].thing_type`; `None` for a
        /// TOML syntax error outside any key.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => write!(f, "{}: {source}", file.display()),
            ConfigError::Invalid {
                file,
                line,
                column,
                key,
                message,
            } => {
                if let Some(file) = file {
                    write!(f, "{}:", file.display())?;
                }
                write!(f, "{line}:{column}: ")?;
                if let Some(key) = key {
                    write!(f, "{key}: ")?;
                }
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl ServeConfig {
    /// Reads and validates the file at `path`; relative paths in it are resolved against its
    /// directory.
    pub fn from_file(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        ServeConfig::from_str(&text, base).map_err(|e| match e {
            ConfigError::Invalid {
                line,
                column,
                key,
                message,
                ..
            } => ConfigError::Invalid {
                file: Some(path.to_path_buf()),
                line,
                column,
                key,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates `text`; relative paths in it are resolved against `base_dir`.
    #[allow(clippy::should_implement_trait)] // FromStr cannot take the base directory.
    pub fn from_str(text: &str, base_dir: &Path) -> Result<ServeConfig, ConfigError> {
        let doc = match DeTable::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                // A syntax error: name the key if the recovered part of the document has one there.
                let (partial, _) = DeTable::parse_recoverable(text);
                let key = e
                    .span()
                    .and_then(|s| key_path_at(partial.get_ref(), s.start));
                let mut message = e.message().to_owned();
                // A repeated key is not in the recovered document, so it has no path there:
                // at least quote it.
                let snippet = e.span().and_then(|s| text.get(s));
                if key.is_none()
                    && message == "duplicate key"
                    && let Some(k) = snippet.filter(|k| !k.is_empty() && !k.contains('\n'))
                {
                    message = format!("duplicate key `{k}`");
                }
                return Err(invalid(text, e.span(), key, &message));
            }
        };
        let mut config: ServeConfig = toml::from_str(text).map_err(|e| {
            let key = e.span().and_then(|s| key_path_at(doc.get_ref(), s.start));
            invalid(text, e.span(), key, e.message())
        })?;
        config.validate().map_err(|(path, message)| {
            let span = span_of(doc.get_ref(), &path);
            invalid(text, span, Some(render_path(&path)), &message)
        })?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    /// The checks serde's types cannot make. On failure: the key path and what is wrong.
    fn validate(&self) -> Result<(), (Vec<Seg>, String)> {
        fn at(path: &[Seg], message: impl Into<String>) -> Result<(), (Vec<Seg>, String)> {
            Err((path.to_vec(), message.into()))
        }
        let mut things = std::collections::BTreeSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !things.insert(d.thing.as_str()) {
                return at(
                    &[key("device"), Seg::Index(i), key("thing")],
                    format!("thing {:?} is listed twice", d.thing),
                );
            }
            if let Err(e) = thingkit_provision::check_thing_name("thing", &d.thing) {
                return at(&[key("device"), Seg::Index(i), key("thing")], e.to_string());
            }
        }
        for (i, name) in self.tls.alpn.iter().enumerate() {
            if name.is_empty() || name.len() > 255 {
                return at(
                    &[key("tls"), key("alpn"), Seg::Index(i)],
                    "an ALPN protocol name is 1 to 255 bytes (RFC 7301 §3.1)",
                );
            }
        }
        let account = &self.account;
        let part_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !part_ok(&account.partition) {
            return at(
                &[key("account"), key("partition")],
                "expected a partition such as \"aws\" (lowercase letters, digits, '-')",
            );
        }
        if !part_ok(&account.region) {
            return at(
                &[key("account"), key("region")],
                "expected a region such as \"eu-central-1\" (lowercase letters, digits, '-')",
            );
        }
        if account.account_id.len() != 12 || !account.account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return at(
                &[key("account"), key("account_id")],
                "an AWS account ID is 12 digits",
            );
        }
        if account.arn_prefix().is_none() {
            return at(&[key("account")], "not a valid ARN prefix");
        }
        if let Err(e) = thingkit_cluster::PostgresConfig::check_schema(&self.cluster.schema) {
            return at(&[key("cluster"), key("schema")], e.to_string());
        }
        if self.cluster.postgres.is_some()
            && self.cluster.nats.is_some()
            && self.cluster.server_id.is_none()
        {
            return at(
                &[key("cluster")],
                "set server_id: with postgres and nats both set, this server owns sessions in \
                 PostgreSQL under its server_id, which must stay the same across restarts",
            );
        }
        for (i, o) in self.limits.overrides.iter().enumerate() {
            let entry = |field: Option<&str>| {
                let mut path = vec![key("limits"), key("override"), Seg::Index(i)];
                path.extend(field.map(key));
                path
            };
            let (selector, name) = match (&o.thing_type, &o.thing_group) {
                (Some(_), Some(_)) => {
                    return at(
                        &entry(Some("thing_group")),
                        "an override names exactly one of thing_type and thing_group, not both",
                    );
                }
                (None, None) => {
                    return at(
                        &entry(None),
                        "an override names exactly one of thing_type and thing_group",
                    );
                }
                (Some(t), None) => ("thing_type", t),
                (None, Some(g)) => ("thing_group", g),
            };
            if name.is_empty() {
                return at(&entry(Some(selector)), "must not be empty");
            }
            if o.publishes_per_second.is_none()
                && o.bytes_per_second.is_none()
                && o.connects_per_second.is_none()
            {
                return at(
                    &entry(None),
                    "an override sets at least one of publishes_per_second, bytes_per_second, \
                     connects_per_second",
                );
            }
            let earlier = self.limits.overrides[..i]
                .iter()
                .position(|p| p.thing_type == o.thing_type && p.thing_group == o.thing_group);
            if let Some(j) = earlier {
                return at(
                    &entry(Some(selector)),
                    format!(
                        "the same {selector} as limits.override[{j}]; only the first would apply"
                    ),
                );
            }
        }
        for name in self.fleet.templates.keys() {
            let ok = !name.is_empty()
                && name.len() <= 36
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return at(
                    &[key("fleet"), key("templates"), key(name)],
                    "a template name is 1 to 36 of A-Z, a-z, 0-9, '_' and '-'",
                );
            }
        }
        if !self.fleet.claim_certificates.is_empty() && self.fleet.templates.is_empty() {
            return at(
                &[key("fleet"), key("claim_certificates")],
                "claim certificates need at least one provisioning template in fleet.templates",
            );
        }
        let mut rule_names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let rule = |field: &str| vec![key("rules"), Seg::Index(i), key(field)];
            if !thingkit_broker::rules::is_valid_rule_name(&r.name) {
                return at(&rule("name"), "a rule name matches ^[a-zA-Z0-9_]{1,128}$");
            }
            if !rule_names.insert(r.name.as_str()) {
                return at(&rule("name"), format!("rule {:?} is listed twice", r.name));
            }
            if !matches!(r.sql_version.as_str(), "2015-10-08" | "2016-03-23" | "beta") {
                return at(
                    &rule("sql_version"),
                    "expected \"2015-10-08\", \"2016-03-23\" or \"beta\"",
                );
            }
            if r.actions.len() > 10 {
                return at(&rule("actions"), "a rule has at most 10 actions");
            }
            for (j, a) in r.actions.iter().enumerate() {
                let mut path = rule("actions");
                path.push(Seg::Index(j));
                if let Err(e) = a.to_action() {
                    return at(&path, e);
                }
                if let Some(q) = a.republish.as_ref().map(|r| r.qos).filter(|q| *q > 1) {
                    path.extend([key("republish"), key("qos")]);
                    return at(&path, format!("qos {q}: 0 or 1"));
                }
            }
            if let Some(Err(e)) = r.error_action.as_ref().map(ActionConfig::to_action) {
                return at(&rule("error_action"), e);
            }
        }
        for (path, value) in self.paths() {
            if value.as_os_str().is_empty() {
                return at(&path, "a path must not be empty");
            }
        }
        // Port 0 asks the system for a free port each time, so two of them never collide.
        if self.metrics.enabled
            && self.metrics.listen == self.mqtt.listen
            && self.mqtt.listen.port() != 0
        {
            return at(
                &[key("metrics"), key("listen")],
                format!(
                    "the same address as mqtt.listen ({}); give the metrics endpoint its own",
                    self.mqtt.listen
                ),
            );
        }
        if self.api.enabled && self.api.listen.port() != 0 {
            for (other, name) in [
                (self.mqtt.listen, "mqtt.listen"),
                (self.metrics.listen, "metrics.listen"),
            ] {
                if other == self.api.listen && (name == "mqtt.listen" || self.metrics.enabled) {
                    return at(
                        &[key("api"), key("listen")],
                        format!("the same address as {name} ({other}); give the API its own"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Every path in the configuration with its key path.
    fn paths(&self) -> Vec<(Vec<Seg>, &Path)> {
        let mut out: Vec<(Vec<Seg>, &Path)> = vec![
            (vec![key("data_dir")], &self.data_dir),
            (vec![key("tls"), key("certificate")], &self.tls.certificate),
            (vec![key("tls"), key("private_key")], &self.tls.private_key),
            (vec![key("ca"), key("certificate")], &self.ca.certificate),
            (vec![key("ca"), key("private_key")], &self.ca.private_key),
        ];
        if let Some(dir) = &self.policies.dir {
            out.push((vec![key("policies"), key("dir")], dir));
        }
        if let Some(bundle) = &self.rules_engine.http_ca_bundle {
            out.push((vec![key("rules_engine"), key("http_ca_bundle")], bundle));
        }
        out.push((
            vec![key("rules_engine"), key("dead_letter_path")],
            &self.rules_engine.dead_letter_path,
        ));
        for (i, p) in self.firmware.trusted_keys.iter().enumerate() {
            out.push((vec![key("firmware"), key("trusted_keys"), Seg::Index(i)], p));
        }
        for (i, p) in self.detect.profiles.iter().enumerate() {
            out.push((vec![key("detect"), key("profiles"), Seg::Index(i)], p));
        }
        for (name, p) in &self.fleet.templates {
            out.push((vec![key("fleet"), key("templates"), key(name)], p));
        }
        for (i, p) in self.fleet.claim_certificates.iter().enumerate() {
            out.push((
                vec![key("fleet"), key("claim_certificates"), Seg::Index(i)],
                p,
            ));
        }
        for (i, d) in self.devices.iter().enumerate() {
            out.push((
                vec![key("device"), Seg::Index(i), key("certificate")],
                &d.certificate,
            ));
        }
        out
    }

    /// Makes every relative path in the configuration relative to `base` instead.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.data_dir);
        resolve(&mut self.tls.certificate);
        resolve(&mut self.tls.private_key);
        resolve(&mut self.ca.certificate);
        resolve(&mut self.ca.private_key);
        if let Some(dir) = &mut self.policies.dir {
            resolve(dir);
        }
        if let Some(bundle) = &mut self.rules_engine.http_ca_bundle {
            resolve(bundle);
        }
        self.firmware.trusted_keys.iter_mut().for_each(resolve);
        self.detect.profiles.iter_mut().for_each(resolve);
        self.fleet.templates.values_mut().for_each(resolve);
        self.fleet.claim_certificates.iter_mut().for_each(resolve);
        for d in &mut self.devices {
            resolve(&mut d.certificate);
        }
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// `mqtt.listen`, `limits.override[1].thing_type`; keys that are not bare TOML keys are quoted.
fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The key path of the key or value at byte `offset` of the document: the innermost key whose
/// name or value contains it.
fn key_path_at(doc: &DeTable<'_>, offset: usize) -> Option<String> {
    let mut path = Vec::new();
    find_in_table(doc, offset, &mut path).then(|| render_path(&path))
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (k, v) in table.iter() {
        path.push(Seg::Key(k.get_ref().to_string()));
        if contains(&k.span(), offset) || find_in_value(v, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Whether `offset` is in `value` (pushing the path inside it, if any, onto `path`).
fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<Seg>) -> bool {
    match value.get_ref() {
        // A table's span may not cover all of its keys (`[a]` then, later, `[a.b]`): search its
        // keys whatever its span.
        DeValue::Table(t) => find_in_table(t, offset, path) || contains(&value.span(), offset),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                if find_in_value(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            contains(&value.span(), offset)
        }
        _ => contains(&value.span(), offset),
    }
}

/// The span of the value at `path`, or of its nearest ancestor present in the file (a key left
/// at its default has no place in the file).
fn span_of(doc: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut best = None;
    let mut table = Some(doc);
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    for seg in path {
        let next = match (seg, current.map(|v| v.get_ref())) {
            (Seg::Key(k), None) => table.and_then(|t| t.get(k.as_str())),
            (Seg::Key(k), Some(DeValue::Table(t))) => t.get(k.as_str()),
            (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        best = Some(next.span());
        current = Some(next);
        table = None;
    }
    best
}

fn invalid(
    text: &str,
    span: Option<Range<usize>>,
    key: Option<String>,
    message: &str,
) -> ConfigError {
    let (line, column) = line_column(text, span.map_or(0, |s| s.start));
    ConfigError::Invalid {
        file: None,
        line,
        column,
        key,
        // One line on stderr, whatever the parser said.
        message: message.trim().replace('\n', "; "),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_str(text, Path::new("/srv/thingkit"))
    }

    fn defaults_in(base: &str) -> ServeConfig {
        let mut config = ServeConfig::default();
        config.resolve_paths(Path::new(base));
        config
    }

    /// The error's (line, column, key, message), for a text that must be refused.
    fn error(text: &str) -> (usize, usize, Option<String>, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line,
                column,
                key,
                message,
                ..
            }) => (line, column, key, message),
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    /// The example with every commented-out setting (`# key = ...`, `# [table]`) enabled;
    /// documentation lines (`##`) stay comments.
    fn example_uncommented() -> String {
        EXAMPLE
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn an_empty_file_is_the_defaults_with_paths_under_the_base_directory() {
        let config = parse("").unwrap();
        assert_eq!(config, defaults_in("/srv/thingkit"));
        assert_eq!(config.mqtt.listen, "127.0.0.1:8883".parse().unwrap());
        assert_eq!(config.metrics.listen, "127.0.0.1:9090".parse().unwrap());
        assert!(config.metrics.enabled);
        assert_eq!(config.data_dir, Path::new("/srv/thingkit/data"));
        assert_eq!(config.ca.certificate, Path::new("/srv/thingkit/ca/ca.pem"));
        assert_eq!(
            config.tls.certificate,
            Path::new("/srv/thingkit/server/server.pem")
        );
        assert_eq!(config.tls.alpn, ["x-amzn-mqtt-ca", "mqtt"]);
        assert_eq!(config.metering.preset.policy(), MeteringPolicy::aws());
        assert_eq!(config.log.level, LogLevel::Info);
        assert_eq!(config.log.format, LogFormat::Text);
        assert!(config.limits.overrides.is_empty());
        assert!(config.account.arn_prefix().is_some());
    }

    #[test]
    fn the_example_file_parses_to_exactly_the_defaults() {
        assert_eq!(parse(EXAMPLE).unwrap(), defaults_in("/srv/thingkit"));
    }

    #[test]
    fn every_setting_documented_in_the_example_parses_to_its_stated_default() {
        // Uncommenting the example must change nothing but the keys that have no default value
        // to show (the policy directory) and the illustrative overrides.
        let config = parse(&example_uncommented()).unwrap();
        let mut expected = defaults_in("/srv/thingkit");
        expected.policies.dir = Some(PathBuf::from("/srv/thingkit/policies"));
        expected.api.data_endpoint = Some("iot.example.com:8883".into());
        expected.devices = vec![DeviceConfig {
            thing: "sensor-1".into(),
            certificate: PathBuf::from("/srv/thingkit/devices/sensor-1.pem"),
            policies: Some(vec!["fleet".into()]),
        }];
        expected.limits.overrides = vec![
            LimitOverride {
                thing_type: Some("camera".into()),
                bytes_per_second: NonZeroU64::new(4_194_304),
                ..LimitOverride::default()
            },
            LimitOverride {
                thing_group: Some("chatty-sensors".into()),
                publishes_per_second: NonZeroU64::new(500),
                ..LimitOverride::default()
            },
        ];
        expected.rules_engine.http_ca_bundle = Some(PathBuf::from("/srv/thingkit/rules-ca.pem"));
        expected.detect.profiles = vec![PathBuf::from("/srv/thingkit/profiles/sensors.json")];
        expected.detect.vulnerable_firmware = vec!["1.0.3".into()];
        expected.cluster.nats = Some("nats://127.0.0.1:4222".into());
        expected.cluster.server_id = Some("server-1".into());
        expected.rules = vec![RuleConfig {
            name: "hot_sensors".into(),
            sql: "SELECT temperature, topic(2) AS device FROM 'telemetry/+/temperature' \
                  WHERE temperature > 25"
                .into(),
            sql_version: "2015-10-08".into(),
            disabled: false,
            description: None,
            actions: vec![
                ActionConfig {
                    republish: Some(RepublishConfig {
                        topic: "alerts/${topic(2)}".into(),
                        qos: 1,
                    }),
                    http: None,
                    file: None,
                },
                ActionConfig {
                    republish: None,
                    http: None,
                    file: Some(FileConfig {
                        path: PathBuf::from("rules/hot.parquet.d"),
                        format: SinkFormat::Parquet,
                        columns: vec![
                            ColumnConfig {
                                name: "device".into(),
                                ty: ColumnKind::String,
                            },
                            ColumnConfig {
                                name: "temperature".into(),
                                ty: ColumnKind::Double,
                            },
                        ],
                        partition_by_date: true,
                    }),
                },
            ],
            error_action: Some(ActionConfig {
                republish: None,
                http: None,
                file: Some(FileConfig {
                    path: PathBuf::from("rules/errors.jsonl"),
                    format: SinkFormat::Jsonl,
                    columns: Vec::new(),
                    partition_by_date: false,
                }),
            }),
        }];
        expected.cluster.postgres = Some("postgres://thingkit@db.internal:5432/thingkit".into());
        assert_eq!(config, expected);
    }

    #[test]
    fn rules_tables_become_topic_rule_payloads() {
        let config = parse(
            r#"
[rules_engine]
queue_size = 5
retry_attempts = 7
[[rules]]
name = "to_http"
sql = "SELECT * FROM 'a/#'"
sql_version = "2016-03-23"
disabled = true
description = "posts"
actions = [{ http = { url = "http://localhost:1/${topic()}", headers = { x-id = "${clientid()}" } } }]
error_action = { republish = { topic = "$$aws/errors" } }
"#,
        )
        .unwrap();
        assert_eq!(config.rules_engine.queue_size.get(), 5);
        assert_eq!(config.rules_engine.retry_attempts.get(), 7);
        let payload = config.rules[0].payload().unwrap();
        assert_eq!(payload.aws_iot_sql_version.as_deref(), Some("2016-03-23"));
        assert_eq!(payload.rule_disabled, Some(true));
        assert_eq!(payload.description.as_deref(), Some("posts"));
        match &payload.actions[..] {
            [thingkit_rules::topic_rule::Action::Http(h)] => {
                assert_eq!(h.url, "http://localhost:1/${topic()}");
                assert_eq!(h.headers[0].key, "x-id");
                assert_eq!(h.headers[0].value, "${clientid()}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            payload.error_action,
            Some(thingkit_rules::topic_rule::Action::Republish(ref r)) if r.topic == "$$aws/errors"
        ));
    }

    #[test]
    fn a_rule_action_with_an_unknown_key_is_refused_with_its_path_and_line() {
        let (line, _, key, message) = error(
            "[[rules]]\nname = \"r\"\nsql = \"SELECT * FROM 'a'\"\nactions = [\n  { republish = { topic = \"b\", qso = 1 } },\n]\n",
        );
        assert_eq!(line, 5);
        assert_eq!(key.as_deref(), Some("rules[0].actions[0].republish.qso"));
        assert!(message.contains("unknown field `qso`"), "{message}");
    }

    #[test]
    fn a_rule_action_names_exactly_one_kind() {
        let (line, _, key, message) = error(
            "[[rules]]\nname = \"r\"\nsql = \"SELECT * FROM 'a'\"\nactions = [\n  { republish = { topic = \"b\" }, http = { url = \"http://x\" } },\n]\n",
        );
        assert_eq!(line, 5);
        assert_eq!(key.as_deref(), Some("rules[0].actions[0]"));
        assert!(message.contains("exactly one"), "{message}");
    }

    #[test]
    fn rule_names_versions_and_qos_are_checked() {
        let (_, _, key, _) = error("[[rules]]\nname = \"bad-name\"\nsql = \"SELECT * FROM 'a'\"\n");
        assert_eq!(key.as_deref(), Some("rules[0].name"));
        let (_, _, key, _) = error(
            "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'a'\"\n[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'b'\"\n",
        );
        assert_eq!(key.as_deref(), Some("rules[1].name"));
        let (_, _, key, _) = error(
            "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'a'\"\nsql_version = \"2020-01-01\"\n",
        );
        assert_eq!(key.as_deref(), Some("rules[0].sql_version"));
        let (_, _, key, _) = error(
            "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'a'\"\nactions = [{ republish = { topic = \"b\", qos = 2 } }]\n",
        );
        assert_eq!(key.as_deref(), Some("rules[0].actions[0].republish.qos"));
        let (_, _, key, _) = error("[rules_engine]\nqueue_size = 0\n");
        assert_eq!(key.as_deref(), Some("rules_engine.queue_size"));
    }

    #[test]
    fn every_key_parses() {
        let text = r#"
data_dir = "/var/lib/thingkit"
[mqtt]
listen = "0.0.0.0:8884"
max_packet_size = 1024
topic_alias_maximum = 0
receive_maximum = 10
max_inflight = 11
max_queued = 12
slow_subscriber_timeout_ms = 250
max_retained_messages = 13
max_retained_bytes = 14
max_keep_alive = 15
connect_timeout_seconds = 16
max_connections = 17
[tls]
certificate = "tls/chain.pem"
private_key = "tls/key.pem"
alpn = []
[ca]
certificate = "pki/ca.pem"
private_key = "pki/ca.key"
[account]
partition = "aws-cn"
region = "cn-north-1"
account_id = "000000000042"
[policies]
dir = "policies"
[metering]
preset = "azure-free"
[limits]
enabled = false
over_limit = "delay"
publishes_per_second = 1
bytes_per_second = 2
connects_per_second = 3
account_publishes_per_second = 4
max_accounts = 5
max_connect_clients = 6
[[limits.override]]
thing_group = "g"
connects_per_second = 7
[shadow]
max_state_bytes = 100
max_depth = 3
[firmware]
trusted_keys = ["release.pub"]
[fleet]
claim_certificates = ["claim.pem"]
[fleet.templates]
factory = "templates/factory.json"
[metrics]
enabled = false
listen = "[::1]:9100"
[log]
level = "debug"
format = "json"
"#;
        let c = parse(text).unwrap();
        let base = Path::new("/srv/thingkit");
        assert_eq!(c.data_dir, Path::new("/var/lib/thingkit"));
        assert_eq!(c.mqtt.listen, "0.0.0.0:8884".parse().unwrap());
        assert_eq!(c.mqtt.max_packet_size.get(), 1024);
        assert_eq!(c.mqtt.topic_alias_maximum, 0);
        assert_eq!(c.mqtt.receive_maximum.get(), 10);
        assert_eq!(c.mqtt.max_inflight.get(), 11);
        assert_eq!(c.mqtt.max_queued.get(), 12);
        assert_eq!(c.mqtt.slow_subscriber_timeout(), Duration::from_millis(250));
        assert_eq!(c.mqtt.max_retained_messages.get(), 13);
        assert_eq!(c.mqtt.max_retained_bytes.get(), 14);
        assert_eq!(c.mqtt.max_keep_alive.get(), 15);
        assert_eq!(c.mqtt.connect_timeout(), Duration::from_secs(16));
        assert_eq!(c.mqtt.max_connections.get(), 17);
        assert_eq!(c.tls.certificate, base.join("tls/chain.pem"));
        assert_eq!(c.tls.private_key, base.join("tls/key.pem"));
        assert!(c.tls.alpn.is_empty());
        assert_eq!(c.ca.certificate, base.join("pki/ca.pem"));
        assert_eq!(c.ca.private_key, base.join("pki/ca.key"));
        assert_eq!(
            c.account.arn_prefix().unwrap().as_str(),
            "arn:aws-cn:iot:cn-north-1:000000000042:"
        );
        assert_eq!(c.policies.dir, Some(base.join("policies")));
        assert_eq!(c.metering.preset, MeteringPreset::AzureFree);
        assert_eq!(c.metering.preset.policy(), MeteringPolicy::azure_free());
        assert!(!c.limits.enabled);
        assert_eq!(c.shadow.limits().max_state_bytes, 100);
        assert_eq!(c.shadow.limits().max_depth, 3);
        assert_eq!(c.shadow.limits().max_client_token_bytes, 64);
        assert_eq!(c.limits.over_limit, OverLimit::Delay);
        assert_eq!(c.limits.publishes_per_second.get(), 1);
        assert_eq!(c.limits.bytes_per_second.get(), 2);
        assert_eq!(c.limits.connects_per_second.get(), 3);
        assert_eq!(c.limits.account_publishes_per_second.get(), 4);
        assert_eq!(c.limits.max_accounts.get(), 5);
        assert_eq!(c.limits.max_connect_clients.get(), 6);
        assert_eq!(c.limits.overrides.len(), 1);
        assert_eq!(c.limits.overrides[0].thing_group.as_deref(), Some("g"));
        assert_eq!(c.firmware.trusted_keys, [base.join("release.pub")]);
        assert_eq!(c.fleet.claim_certificates, [base.join("claim.pem")]);
        assert_eq!(
            c.fleet.templates.get("factory"),
            Some(&base.join("templates/factory.json"))
        );
        assert!(!c.metrics.enabled);
        assert_eq!(c.metrics.listen, "[::1]:9100".parse().unwrap());
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn rejects_an_unknown_key_naming_it_with_its_line() {
        let (line, column, key, message) = error("[mqtt]\nlisten = \"127.0.0.1:1\"\nlsiten = 1\n");
        assert_eq!((line, column), (3, 1));
        assert_eq!(key.as_deref(), Some("mqtt.lsiten"));
        assert!(message.contains("unknown field `lsiten`"), "{message}");
        let (line, _, key, _) = error("\n\nbogus = true\n");
        assert_eq!(line, 3);
        assert_eq!(key.as_deref(), Some("bogus"));
        let (line, _, key, _) = error("[tls]\n[nope]\n");
        assert_eq!(line, 2);
        assert_eq!(key.as_deref(), Some("nope"));
    }

    #[test]
    fn rejects_a_value_of_the_wrong_type_naming_the_key_and_line() {
        let (line, column, key, message) = error("[metrics]\nenabled = \"yes\"\n");
        assert_eq!((line, column), (2, 11));
        assert_eq!(key.as_deref(), Some("metrics.enabled"));
        assert!(message.contains("invalid type"), "{message}");
        let (line, _, key, _) = error("[mqtt]\n\nmax_queued = 1.5\n");
        assert_eq!(line, 3);
        assert_eq!(key.as_deref(), Some("mqtt.max_queued"));
    }

    #[test]
    fn rejects_an_invalid_address_naming_the_key_and_line() {
        let (line, column, key, message) = error("[mqtt]\nlisten = \"localhost:8883\"\n");
        assert_eq!((line, column), (2, 10));
        assert_eq!(key.as_deref(), Some("mqtt.listen"));
        assert!(message.contains("socket address"), "{message}");
        let (line, _, key, _) = error("[metrics]\nenabled = true\nlisten = \"127.0.0.1\"\n");
        assert_eq!(line, 3);
        assert_eq!(key.as_deref(), Some("metrics.listen"));
    }

    #[test]
    fn rejects_a_zero_limit() {
        let (line, _, key, message) = error("[limits]\nbytes_per_second = 0\n");
        assert_eq!(line, 2);
        assert_eq!(key.as_deref(), Some("limits.bytes_per_second"));
        assert!(message.contains("nonzero"), "{message}");
        let (_, _, key, _) =
            error("[[limits.override]]\nthing_type = \"t\"\npublishes_per_second = 0\n");
        assert_eq!(
            key.as_deref(),
            Some("limits.override[0].publishes_per_second")
        );
    }

    #[test]
    fn rejects_an_override_with_two_selectors_or_none() {
        let text = "[[limits.override]]\nthing_type = \"a\"\npublishes_per_second = 5\n\n\
                    [[limits.override]]\nthing_type = \"b\"\nthing_group = \"g\"\nbytes_per_second = 9\n";
        let (line, _, key, message) = error(text);
        assert_eq!(line, 7);
        assert_eq!(key.as_deref(), Some("limits.override[1].thing_group"));
        assert!(message.contains("exactly one"), "{message}");

        let (_, _, key, message) = error("[[limits.override]]\npublishes_per_second = 5\n");
        assert_eq!(key.as_deref(), Some("limits.override[0]"));
        assert!(message.contains("exactly one"), "{message}");
    }

    #[test]
    fn rejects_an_override_that_changes_nothing_or_repeats_a_selector() {
        let (_, _, key, message) = error("[[limits.override]]\nthing_type = \"a\"\n");
        assert_eq!(key.as_deref(), Some("limits.override[0]"));
        assert!(message.contains("at least one"), "{message}");
        let text = "[[limits.override]]\nthing_group = \"g\"\nconnects_per_second = 2\n\
                    [[limits.override]]\nthing_group = \"g\"\nconnects_per_second = 3\n";
        let (line, _, key, message) = error(text);
        assert_eq!(line, 5);
        assert_eq!(key.as_deref(), Some("limits.override[1].thing_group"));
        assert!(message.contains("limits.override[0]"), "{message}");
    }

    #[test]
    fn the_first_matching_override_sets_the_limits_it_names() {
        let text = "[limits]\npublishes_per_second = 10\nbytes_per_second = 1000\n\
                    [[limits.override]]\nthing_type = \"camera\"\nbytes_per_second = 9000\n\
                    [[limits.override]]\nthing_group = \"chatty\"\npublishes_per_second = 50\n\
                    bytes_per_second = 5\n";
        let limits = parse(text).unwrap().limits;
        let plain = limits.for_thing(None, &[]);
        assert_eq!(
            (
                plain.publishes_per_second.get(),
                plain.bytes_per_second.get()
            ),
            (10, 1000)
        );
        let camera = limits.for_thing(Some("camera"), &["chatty"]);
        assert_eq!(
            (
                camera.publishes_per_second.get(),
                camera.bytes_per_second.get()
            ),
            (10, 9000)
        );
        let chatty = limits.for_thing(Some("sensor"), &["other", "chatty"]);
        assert_eq!(
            (
                chatty.publishes_per_second.get(),
                chatty.bytes_per_second.get()
            ),
            (50, 5)
        );
        assert_eq!(chatty.connects_per_second.get(), 1);
    }

    #[test]
    fn rejects_values_serde_cannot_check_with_the_key_and_line() {
        let (line, _, key, _) = error("[tls]\nalpn = [\"mqtt\", \"\"]\n");
        assert_eq!(line, 2);
        assert_eq!(key.as_deref(), Some("tls.alpn[1]"));
        let (_, _, key, _) = error("[account]\naccount_id = \"12345\"\n");
        assert_eq!(key.as_deref(), Some("account.account_id"));
        let (_, _, key, _) = error("[account]\nregion = \"eu:central\"\n");
        assert_eq!(key.as_deref(), Some("account.region"));
        let (_, _, key, _) = error("[metering]\npreset = \"aws-ish\"\n");
        assert_eq!(key.as_deref(), Some("metering.preset"));
        let (_, _, key, _) = error("[log]\nformat = \"xml\"\n");
        assert_eq!(key.as_deref(), Some("log.format"));
        let (_, _, key, _) = error("[fleet]\nclaim_certificates = [\"c.pem\"]\n");
        assert_eq!(key.as_deref(), Some("fleet.claim_certificates"));
        let (line, _, key, _) = error("[metrics]\n\nlisten = \"127.0.0.1:8883\"\n");
        assert_eq!(line, 3);
        assert_eq!(key.as_deref(), Some("metrics.listen"));
        // Both on one address is fine when the metrics endpoint is off.
        assert!(parse("[metrics]\nenabled = false\nlisten = \"127.0.0.1:8883\"\n").is_ok());
    }

    #[test]
    fn cluster_section_names_postgres_schema_and_servers_and_checks_the_schema() {
        let c = parse(
            "[cluster]\npostgres = \"postgres://thingkit@db/thingkit\"\nschema = \"fleet_eu\"\nservers = 3\n",
        )
        .unwrap();
        assert_eq!(
            c.cluster.postgres.as_deref(),
            Some("postgres://thingkit@db/thingkit")
        );
        assert_eq!(
            (c.cluster.schema.as_str(), c.cluster.servers.get()),
            ("fleet_eu", 3)
        );
        assert_eq!(parse("").unwrap().cluster, ClusterConfig::default());
        for bad in [
            "",
            "Fleet",
            "1eu",
            "pg_x",
            "eu; DROP TABLE x",
            &"x".repeat(49),
        ] {
            let (line, _, key, _) = error(&format!("[cluster]\nschema = {bad:?}\n"));
            assert_eq!(
                (line, key.as_deref()),
                (2, Some("cluster.schema")),
                "{bad:?}"
            );
        }
        let (_, _, key, message) =
            error("[cluster]\npostgres = \"postgres://db/t\"\nnats = \"nats://n:4222\"\n");
        assert_eq!(key.as_deref(), Some("cluster"));
        assert!(message.contains("set server_id"), "{message}");
        assert!(
            parse("[cluster]\npostgres = \"postgres://db/t\"\nnats = \"nats://n:4222\"\nserver_id = \"a\"\n")
                .is_ok()
        );
        let (_, _, key, _) = error("[cluster]\nservers = 0\n");
        assert_eq!(key.as_deref(), Some("cluster.servers"));
        let (_, _, key, _) = error("[cluster]\npostgress = \"x\"\n");
        assert_eq!(key.as_deref(), Some("cluster.postgress"));
    }

    #[test]
    fn rejects_an_empty_path_naming_its_key() {
        let (line, _, key, _) = error("[tls]\ncertificate = \"\"\n");
        assert_eq!(line, 2);
        assert_eq!(key.as_deref(), Some("tls.certificate"));
        let (_, _, key, _) = error("[detect]\nprofiles = [\"a.json\", \"\"]\n");
        assert_eq!(key.as_deref(), Some("detect.profiles[1]"));
        let (_, _, key, _) = error("[firmware]\ntrusted_keys = [\"a.pub\", \"\"]\n");
        assert_eq!(key.as_deref(), Some("firmware.trusted_keys[1]"));
    }

    #[test]
    fn a_repeated_key_is_quoted_or_named() {
        let (line, _, _, message) =
            error("[mqtt]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n");
        assert_eq!(line, 3);
        assert_eq!(message, "duplicate key `listen`");
        let (line, _, key, _) = error("[mqtt]\n[mqtt]\n");
        assert_eq!(line, 2);
        assert_eq!(key.as_deref(), Some("mqtt"));
    }

    #[test]
    fn reports_a_syntax_error_with_its_line_and_column() {
        let (line, column, _, message) = error("[mqtt]\nlisten = \"127.0.0.1:1\n");
        assert_eq!(line, 2);
        assert!(column >= 10, "{column}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn relative_paths_resolve_against_the_file_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("thingkit.toml");
        std::fs::write(
            &file,
            "data_dir = \"state\"\n[tls]\ncertificate = \"../elsewhere/chain.pem\"\n\
             private_key = \"/abs/key.pem\"\n[firmware]\ntrusted_keys = [\"keys/a.pub\"]\n\
             [detect]\nprofiles = [\"profiles/sensors.json\"]\nvulnerable_firmware = [\"1.0.3\"]\n",
        )
        .unwrap();
        let c = ServeConfig::from_file(&file).unwrap();
        assert_eq!(
            c.detect.profiles,
            [dir.path().join("profiles/sensors.json")]
        );
        assert_eq!(c.detect.vulnerable_firmware, ["1.0.3"]);
        assert_eq!(c.data_dir, dir.path().join("state"));
        assert_eq!(c.tls.certificate, dir.path().join("../elsewhere/chain.pem"));
        assert_eq!(c.tls.private_key, Path::new("/abs/key.pem"));
        assert_eq!(c.firmware.trusted_keys, [dir.path().join("keys/a.pub")]);
        assert_eq!(c.ca.private_key, dir.path().join("ca/ca.key"));
    }

    #[test]
    fn a_file_error_starts_with_the_file_line_column_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("thingkit.toml");
        std::fs::write(&file, "[mqtt]\nlisten = \"nope\"\n").unwrap();
        let e = ServeConfig::from_file(&file).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2:10: mqtt.listen: invalid socket address syntax",
                file.display()
            )
        );
    }

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("", 0), (1, 1));
        assert_eq!(line_column("x", 99), (1, 2));
    }
}
