//! Security profiles: the JSON `CreateSecurityProfile` takes, validated once into typed behaviors.

use std::fmt;
use std::net::IpAddr;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize, Serializer};

use crate::Error;

/// Limits applied while parsing a security profile. Every limit has a safe default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileLimits {
    /// Largest accepted JSON document, in bytes (default 64 KiB).
    pub max_json_bytes: usize,
    /// Most behaviors per profile (default 100, botocore's `Behaviors` list maximum).
    pub max_behaviors: usize,
    /// Most entries in one `value.cidrs` list (default 1,000; botocore sets no maximum).
    pub max_set_values: usize,
}

impl Default for ProfileLimits {
    fn default() -> Self {
        Self {
            max_json_bytes: 64 * 1024,
            max_behaviors: 100,
            max_set_values: 1_000,
        }
    }
}

/// The cloud-side metrics thingkit evaluates (AWS `detect-cloud-side-metrics`).
///
/// Device-side metrics (`aws:all-bytes-out`, ...) and custom metrics are refused when a profile is
/// parsed: the broker does not receive Device Defender agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// `aws:message-byte-size`: the size of each message the device sent, in bytes.
    MessageByteSize,
    /// `aws:num-messages-sent`: messages the device sent to the broker in `durationSeconds`.
    NumMessagesSent,
    /// `aws:num-messages-received`: messages the broker sent to the device in `durationSeconds`.
    NumMessagesReceived,
    /// `aws:num-authorization-failures`: requests of the device the broker denied.
    NumAuthorizationFailures,
    /// `aws:source-ip-address`: the addresses the device connected from.
    SourceIpAddress,
    /// `aws:num-connection-attempts`: successful and unsuccessful connection attempts.
    NumConnectionAttempts,
    /// `aws:num-disconnects`: disconnects, whatever the reason.
    NumDisconnects,
}

impl Metric {
    /// Every supported metric.
    pub const ALL: [Metric; 7] = [
        Metric::MessageByteSize,
        Metric::NumMessagesSent,
        Metric::NumMessagesReceived,
        Metric::NumAuthorizationFailures,
        Metric::SourceIpAddress,
        Metric::NumConnectionAttempts,
        Metric::NumDisconnects,
    ];

    /// The AWS name, e.g. `aws:num-messages-sent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::MessageByteSize => "aws:message-byte-size",
            Metric::NumMessagesSent => "aws:num-messages-sent",
            Metric::NumMessagesReceived => "aws:num-messages-received",
            Metric::NumAuthorizationFailures => "aws:num-authorization-failures",
            Metric::SourceIpAddress => "aws:source-ip-address",
            Metric::NumConnectionAttempts => "aws:num-connection-attempts",
            Metric::NumDisconnects => "aws:num-disconnects",
        }
    }

    /// The metric of an AWS name, if thingkit supports it.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the metric is a count accumulated over `durationSeconds` (which it then requires).
    pub fn has_duration(self) -> bool {
        !matches!(self, Metric::MessageByteSize | Metric::SourceIpAddress)
    }

    /// Whether the metric is compared with CIDR sets rather than numbers.
    pub fn is_address(self) -> bool {
        matches!(self, Metric::SourceIpAddress)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the metric relates to the behavior's value. The behavior states what is *expected*: a
/// datapoint for which the comparison is false is a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComparisonOperator {
    /// `less-than`: expected `metric < value`.
    LessThan,
    /// `less-than-equals`: expected `metric <= value`.
    LessThanEquals,
    /// `greater-than`: expected `metric > value`.
    GreaterThan,
    /// `greater-than-equals`: expected `metric >= value`.
    GreaterThanEquals,
    /// `in-cidr-set`: expected every source address inside one of the CIDRs.
    InCidrSet,
    /// `not-in-cidr-set`: expected no source address inside any of the CIDRs.
    NotInCidrSet,
}

impl ComparisonOperator {
    /// The AWS name, e.g. `less-than-equals`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonOperator::LessThan => "less-than",
            ComparisonOperator::LessThanEquals => "less-than-equals",
            ComparisonOperator::GreaterThan => "greater-than",
            ComparisonOperator::GreaterThanEquals => "greater-than-equals",
            ComparisonOperator::InCidrSet => "in-cidr-set",
            ComparisonOperator::NotInCidrSet => "not-in-cidr-set",
        }
    }

    /// Whether `value` conforms to `value <op> threshold`. Always `true` for the CIDR operators,
    /// which do not compare numbers.
    pub fn conforms(self, value: u64, threshold: u64) -> bool {
        match self {
            ComparisonOperator::LessThan => value < threshold,
            ComparisonOperator::LessThanEquals => value <= threshold,
            ComparisonOperator::GreaterThan => value > threshold,
            ComparisonOperator::GreaterThanEquals => value >= threshold,
            ComparisonOperator::InCidrSet | ComparisonOperator::NotInCidrSet => true,
        }
    }
}

/// A percentile over all reporting devices of a profile (`statisticalThreshold.statistic`).
///
/// The values are those of botocore's `EvaluationStatistic` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Statistic {
    per_ten_thousand: u16,
}

impl Statistic {
    const NAMES: [(&'static str, u16); 11] = [
        ("p0", 0),
        ("p0.01", 1),
        ("p0.1", 10),
        ("p1", 100),
        ("p10", 1_000),
        ("p50", 5_000),
        ("p90", 9_000),
        ("p99", 9_900),
        ("p99.9", 9_990),
        ("p99.99", 9_999),
        ("p100", 10_000),
    ];

    /// The statistic of an AWS name (`p0`, `p0.01`, `p0.1`, `p1`, `p10`, `p50`, `p90`, `p99`,
    /// `p99.9`, `p99.99`, `p100`).
    pub fn from_name(name: &str) -> Option<Statistic> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, per_ten_thousand)| Statistic { per_ten_thousand })
    }

    /// The percentile in hundredths of a percent: `p99.9` is 9,990, `p100` is 10,000.
    pub fn per_ten_thousand(self) -> u16 {
        self.per_ten_thousand
    }

    /// The AWS name, e.g. `p99.9`.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self.per_ten_thousand)
            .map_or("p100", |(n, _)| n)
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`).
///
/// A bare address is a network of one host (`/32` or `/128`). Host bits below the prefix are kept
/// as written (so the profile serialises back unchanged) and ignored by [`Cidr::contains`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
    explicit_prefix: bool,
}

impl Cidr {
    /// Parses `address/prefix` or a bare address. IPv4-mapped IPv6 addresses are not unmapped:
    /// `::ffff:0:0/96` is an IPv6 network (source addresses, however, are unmapped before
    /// comparison, see [`Cidr::contains`]).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let (prefix, explicit_prefix) = match prefix {
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (p.parse::<u8>().ok()?, true)
            }
            None => (max, false),
        };
        if prefix > max {
            return None;
        }
        Some(Cidr {
            addr,
            prefix,
            explicit_prefix,
        })
    }

    /// The network's address as written.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is
    /// compared as the IPv4 address it maps; an IPv4 network never contains an IPv6 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                // The network may itself be written in IPv6 form covering mapped addresses.
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip.to_ipv6_mapped()) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.explicit_prefix {
            write!(f, "{}/{}", self.addr, self.prefix)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

/// What a behavior's metric is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Threshold {
    /// A static number (`value.count`).
    Count(u64),
    /// A percentile over all reporting devices of the profile (`statisticalThreshold`).
    Statistic(Statistic),
    /// A set of networks (`value.cidrs`), for `aws:source-ip-address`.
    Cidrs(Vec<Cidr>),
}

/// A behavior's `criteria`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    /// The comparison; valid for the behavior's metric.
    pub operator: ComparisonOperator,
    /// The value or statistic compared with.
    pub threshold: Threshold,
    /// `durationSeconds`: present exactly when the metric has a duration; one of 300, 600,
    /// 900, 1800, 3600.
    pub duration_seconds: Option<u32>,
    /// `consecutiveDatapointsToAlarm`, 1 to 10 (default 1).
    pub consecutive_datapoints_to_alarm: u8,
    /// `consecutiveDatapointsToClear`, 1 to 10 (default 1).
    pub consecutive_datapoints_to_clear: u8,
}

/// One behavior of a security profile: what is expected of a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    /// The behavior's name, unique in its profile (1–128 characters of `[a-zA-Z0-9:_-]`).
    pub name: String,
    /// The metric.
    pub metric: Metric,
    /// The criteria.
    pub criteria: Criteria,
    /// `suppressAlerts`: violations are still evaluated and kept, but not reported as alerts.
    pub suppress_alerts: bool,
}

/// A security profile as `CreateSecurityProfile` takes it, validated.
///
/// Members of the request that do not affect evaluation (`alertTargets`, `tags`,
/// `additionalMetricsToRetain`, `additionalMetricsToRetainV2`, `metricsExportConfig`, a behavior's
/// `exportMetric`) are accepted and dropped. Unknown members are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityProfile {
    /// `securityProfileName` (1–128 characters of `[a-zA-Z0-9:_-]`).
    pub name: String,
    /// `securityProfileDescription` (at most 1,000 characters).
    pub description: Option<String>,
    /// The behaviors, in document order.
    pub behaviors: Vec<Behavior>,
}

const DURATIONS: [u32; 5] = [300, 600, 900, 1800, 3600];
const WHAT: &str = "security profile";

impl SecurityProfile {
    /// Parses and validates the JSON body of a `CreateSecurityProfile` request.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] over `limits.max_json_bytes`; [`Error::Json`] for malformed JSON,
    /// wrong member types and unknown or duplicate members; [`Error::Missing`],
    /// [`Error::Invalid`], [`Error::TooMany`] and [`Error::Unsupported`] naming the member path.
    pub fn parse(json: &[u8], limits: &ProfileLimits) -> Result<SecurityProfile, Error> {
        if json.len() > limits.max_json_bytes {
            return Err(Error::TooLarge {
                what: WHAT,
                len: json.len(),
                limit: limits.max_json_bytes,
            });
        }
        let raw: RawProfile = serde_json::from_slice(json).map_err(|e| Error::Json {
            what: WHAT,
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        raw.validate(limits)
    }

    /// The profile as `CreateSecurityProfile` JSON (the members thingkit keeps). Parsing the
    /// result gives back an equal profile.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The behavior of this name.
    pub fn behavior(&self, name: &str) -> Option<&Behavior> {
        self.behaviors.iter().find(|b| b.name == name)
    }
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.into(),
        reason: reason.into(),
    }
}

fn unsupported(path: impl Into<String>, what: impl Into<String>) -> Error {
    Error::Unsupported {
        path: path.into(),
        what: what.into(),
    }
}

fn missing(path: impl Into<String>) -> Error {
    Error::Missing { path: path.into() }
}

/// botocore's `SecurityProfileName` / `BehaviorName`: 1–128 characters of `[a-zA-Z0-9:_-]`.
fn check_name(path: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 128 {
        return Err(invalid(path, "must be 1 to 128 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
    {
        return Err(invalid(path, "must match [a-zA-Z0-9:_-]+"));
    }
    Ok(())
}

impl RawProfile {
    fn validate(self, limits: &ProfileLimits) -> Result<SecurityProfile, Error> {
        let name = self
            .security_profile_name
            .ok_or_else(|| missing("securityProfileName"))?;
        check_name("securityProfileName", &name)?;
        if let Some(d) = &self.security_profile_description {
            if d.chars().count() > 1000 {
                return Err(invalid(
                    "securityProfileDescription",
                    "must be at most 1000 characters",
                ));
            }
            if d.chars().any(|c| c.is_control()) {
                return Err(invalid(
                    "securityProfileDescription",
                    "must not contain control characters",
                ));
            }
        }
        let raw_behaviors = self.behaviors.unwrap_or_default();
        if raw_behaviors.len() > limits.max_behaviors {
            return Err(Error::TooMany {
                path: "behaviors".into(),
                len: raw_behaviors.len(),
                limit: limits.max_behaviors,
            });
        }
        let mut behaviors: Vec<Behavior> = Vec::with_capacity(raw_behaviors.len());
        for (i, raw) in raw_behaviors.into_iter().enumerate() {
            let behavior = raw.validate(&format!("behaviors[{i}]"), limits)?;
            if behaviors.iter().any(|b| b.name == behavior.name) {
                return Err(invalid(
                    format!("behaviors[{i}].name"),
                    format!("duplicate behavior name `{}`", behavior.name),
                ));
            }
            behaviors.push(behavior);
        }
        Ok(SecurityProfile {
            name,
            description: self.security_profile_description,
            behaviors,
        })
    }
}

impl RawBehavior {
    fn validate(self, path: &str, limits: &ProfileLimits) -> Result<Behavior, Error> {
        let name = self.name.ok_or_else(|| missing(format!("{path}.name")))?;
        check_name(&format!("{path}.name"), &name)?;
        if self.metric_dimension.is_some() {
            return Err(unsupported(
                format!("{path}.metricDimension"),
                "metric dimensions (topic filters) are not supported; behaviors apply to all topics",
            ));
        }
        let metric_name = self
            .metric
            .ok_or_else(|| missing(format!("{path}.metric")))?;
        let metric = Metric::from_name(&metric_name).ok_or_else(|| {
            unsupported(
                format!("{path}.metric"),
                format!(
                    "metric `{metric_name}` is not supported; thingkit evaluates the cloud-side metrics {}",
                    Metric::ALL.map(Metric::as_str).join(", ")
                ),
            )
        })?;
        let criteria = self
            .criteria
            .ok_or_else(|| missing(format!("{path}.criteria")))?;
        let criteria = criteria.validate(&format!("{path}.criteria"), metric, limits)?;
        Ok(Behavior {
            name,
            metric,
            criteria,
            suppress_alerts: self.suppress_alerts.unwrap_or(false),
        })
    }
}

fn datapoints(path: String, value: Option<i64>) -> Result<u8, Error> {
    match value {
        None => Ok(1),
        Some(n) => u8::try_from(n)
            .ok()
            .filter(|n| (1..=10).contains(n))
            .ok_or_else(|| invalid(path, "must be 1 to 10")),
    }
}

impl RawCriteria {
    fn validate(
        self,
        path: &str,
        metric: Metric,
        limits: &ProfileLimits,
    ) -> Result<Criteria, Error> {
        if self.ml_detection_config.is_some() {
            return Err(unsupported(
                format!("{path}.mlDetectionConfig"),
                "ML Detect is not supported; use a static value or a statisticalThreshold",
            ));
        }
        let op_path = format!("{path}.comparisonOperator");
        let op_name = self
            .comparison_operator
            .ok_or_else(|| missing(op_path.clone()))?;
        let operator = match op_name.as_str() {
            "less-than" => ComparisonOperator::LessThan,
            "less-than-equals" => ComparisonOperator::LessThanEquals,
            "greater-than" => ComparisonOperator::GreaterThan,
            "greater-than-equals" => ComparisonOperator::GreaterThanEquals,
            "in-cidr-set" => ComparisonOperator::InCidrSet,
            "not-in-cidr-set" => ComparisonOperator::NotInCidrSet,
            "in-port-set" | "not-in-port-set" | "in-set" | "not-in-set" => {
                return Err(unsupported(
                    op_path,
                    format!(
                        "`{op_name}` applies to device-side and custom metrics, which are not supported"
                    ),
                ));
            }
            _ => return Err(invalid(op_path, format!("unknown operator `{op_name}`"))),
        };
        let address_op = matches!(
            operator,
            ComparisonOperator::InCidrSet | ComparisonOperator::NotInCidrSet
        );
        if address_op != metric.is_address() {
            return Err(invalid(
                op_path,
                format!("`{op_name}` does not apply to {metric}"),
            ));
        }

        let duration_path = format!("{path}.durationSeconds");
        let duration_seconds = match (self.duration_seconds, metric.has_duration()) {
            (None, true) => return Err(missing(duration_path)),
            (None, false) => None,
            (Some(_), false) => {
                return Err(invalid(duration_path, format!("{metric} has no duration")));
            }
            (Some(d), true) => Some(
                u32::try_from(d)
                    .ok()
                    .filter(|d| DURATIONS.contains(d))
                    .ok_or_else(|| {
                        invalid(duration_path, "must be one of 300, 600, 900, 1800, 3600")
                    })?,
            ),
        };
        let consecutive_datapoints_to_alarm = datapoints(
            format!("{path}.consecutiveDatapointsToAlarm"),
            self.consecutive_datapoints_to_alarm,
        )?;
        let consecutive_datapoints_to_clear = datapoints(
            format!("{path}.consecutiveDatapointsToClear"),
            self.consecutive_datapoints_to_clear,
        )?;

        let value_path = format!("{path}.value");
        let threshold = match (self.value, self.statistical_threshold) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    path,
                    "give either value or statisticalThreshold, not both",
                ));
            }
            (None, None) => {
                return Err(missing(value_path));
            }
            (None, Some(stat)) => {
                let stat_path = format!("{path}.statisticalThreshold.statistic");
                if metric.is_address() {
                    return Err(invalid(
                        format!("{path}.statisticalThreshold"),
                        format!("{metric} takes value.cidrs, not a statistic"),
                    ));
                }
                let name = stat.statistic.ok_or_else(|| missing(stat_path.clone()))?;
                Threshold::Statistic(Statistic::from_name(&name).ok_or_else(|| {
                    invalid(
                        stat_path,
                        "must be one of p0, p0.01, p0.1, p1, p10, p50, p90, p99, p99.9, p99.99, p100",
                    )
                })?)
            }
            (Some(value), None) => value.validate(&value_path, metric, limits)?,
        };
        Ok(Criteria {
            operator,
            threshold,
            duration_seconds,
            consecutive_datapoints_to_alarm,
            consecutive_datapoints_to_clear,
        })
    }
}

impl RawMetricValue {
    fn validate(
        self,
        path: &str,
        metric: Metric,
        limits: &ProfileLimits,
    ) -> Result<Threshold, Error> {
        let others: [(&str, bool); 4] = [
            ("ports", self.ports.is_some()),
            ("number", self.number.is_some()),
            ("numbers", self.numbers.is_some()),
            ("strings", self.strings.is_some()),
        ];
        if let Some((member, _)) = others.iter().find(|(_, present)| *present) {
            return Err(unsupported(
                format!("{path}.{member}"),
                format!(
                    "{metric} takes value.{}",
                    if metric.is_address() {
                        "cidrs"
                    } else {
                        "count"
                    }
                ),
            ));
        }
        match (self.count, self.cidrs, metric.is_address()) {
            (Some(count), None, false) => Ok(Threshold::Count(count)),
            (None, Some(cidrs), true) => {
                if cidrs.len() > limits.max_set_values {
                    return Err(Error::TooMany {
                        path: format!("{path}.cidrs"),
                        len: cidrs.len(),
                        limit: limits.max_set_values,
                    });
                }
                let mut parsed = Vec::with_capacity(cidrs.len());
                for (i, text) in cidrs.iter().enumerate() {
                    // botocore's `Cidr`: 2 to 43 characters.
                    let cidr = Some(text)
                        .filter(|t| (2..=43).contains(&t.len()))
                        .and_then(|t| Cidr::parse(t))
                        .ok_or_else(|| {
                            invalid(
                                format!("{path}.cidrs[{i}]"),
                                "must be an IPv4 or IPv6 address or CIDR block",
                            )
                        })?;
                    parsed.push(cidr);
                }
                Ok(Threshold::Cidrs(parsed))
            }
            (_, _, true) => Err(invalid(
                format!("{path}.cidrs"),
                format!("{metric} takes value.cidrs (and nothing else)"),
            )),
            (_, _, false) => Err(invalid(
                format!("{path}.count"),
                format!("{metric} takes value.count (and nothing else)"),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The wire shapes (botocore `iot` 2015-05-28: CreateSecurityProfileRequest, Behavior,
// BehaviorCriteria, MetricValue, StatisticalThreshold).

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "members accepted for AWS compatibility and dropped"
)]
struct RawProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    security_profile_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    security_profile_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    behaviors: Option<Vec<RawBehavior>>,
    #[serde(default, skip_serializing)]
    alert_targets: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    additional_metrics_to_retain: Option<IgnoredAny>,
    #[serde(default, skip_serializing, rename = "additionalMetricsToRetainV2")]
    additional_metrics_to_retain_v2: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    tags: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    metrics_export_config: Option<IgnoredAny>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "exportMetric is accepted for AWS compatibility and dropped"
)]
struct RawBehavior {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(default, skip_serializing)]
    metric_dimension: Option<IgnoredAny>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    criteria: Option<RawCriteria>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suppress_alerts: Option<bool>,
    #[serde(default, skip_serializing)]
    export_metric: Option<IgnoredAny>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comparison_operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<RawMetricValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consecutive_datapoints_to_alarm: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consecutive_datapoints_to_clear: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statistical_threshold: Option<RawStatisticalThreshold>,
    #[serde(default, skip_serializing)]
    ml_detection_config: Option<IgnoredAny>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMetricValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cidrs: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    ports: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    number: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    numbers: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    strings: Option<IgnoredAny>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStatisticalThreshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statistic: Option<String>,
}

impl Behavior {
    fn to_raw(&self) -> RawBehavior {
        let c = &self.criteria;
        let (value, statistical_threshold) = match &c.threshold {
            Threshold::Count(n) => (
                Some(RawMetricValue {
                    count: Some(*n),
                    cidrs: None,
                    ports: None,
                    number: None,
                    numbers: None,
                    strings: None,
                }),
                None,
            ),
            Threshold::Cidrs(cidrs) => (
                Some(RawMetricValue {
                    count: None,
                    cidrs: Some(cidrs.iter().map(Cidr::to_string).collect()),
                    ports: None,
                    number: None,
                    numbers: None,
                    strings: None,
                }),
                None,
            ),
            Threshold::Statistic(s) => (
                None,
                Some(RawStatisticalThreshold {
                    statistic: Some(s.as_str().to_owned()),
                }),
            ),
        };
        RawBehavior {
            name: Some(self.name.clone()),
            metric: Some(self.metric.as_str().to_owned()),
            metric_dimension: None,
            criteria: Some(RawCriteria {
                comparison_operator: Some(c.operator.as_str().to_owned()),
                value,
                duration_seconds: c.duration_seconds.map(i64::from),
                consecutive_datapoints_to_alarm: Some(i64::from(c.consecutive_datapoints_to_alarm)),
                consecutive_datapoints_to_clear: Some(i64::from(c.consecutive_datapoints_to_clear)),
                statistical_threshold,
                ml_detection_config: None,
            }),
            suppress_alerts: Some(self.suppress_alerts),
            export_metric: None,
        }
    }
}

/// Serialises as AWS's `Behavior` shape (`name`, `metric`, `criteria{...}`, `suppressAlerts`).
impl Serialize for Behavior {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_raw().serialize(serializer)
    }
}

/// Serialises as the `CreateSecurityProfile` request body (the members thingkit keeps).
impl Serialize for SecurityProfile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawProfile {
            security_profile_name: Some(self.name.clone()),
            security_profile_description: self.description.clone(),
            behaviors: Some(self.behaviors.iter().map(Behavior::to_raw).collect()),
            alert_targets: None,
            additional_metrics_to_retain: None,
            additional_metrics_to_retain_v2: None,
            tags: None,
            metrics_export_config: None,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistic_names_round_trip() {
        for (name, q) in Statistic::NAMES {
            let s = Statistic::from_name(name).expect("listed name parses");
            assert_eq!((s.as_str(), s.per_ten_thousand()), (name, q));
        }
        assert!(Statistic::from_name("p95").is_none());
        assert!(Statistic::from_name("P50").is_none());
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.as_str()), Some(m));
        }
        assert!(Metric::from_name("aws:all-bytes-out").is_none());
    }

    #[test]
    fn cidr_keeps_its_written_form() {
        for text in [
            "10.0.0.0/8",
            "10.0.0.1/8",
            "192.0.2.7",
            "2001:db8::/32",
            "::/0",
        ] {
            assert_eq!(Cidr::parse(text).expect("valid").to_string(), text);
        }
        assert!(Cidr::parse("10.0.0.0/8/8").is_none());
        assert!(Cidr::parse("10.0.0/8").is_none());
        assert!(Cidr::parse("").is_none());
    }

    #[test]
    fn names_follow_botocore_pattern() {
        assert!(check_name("n", "a:b_c-D9").is_ok());
        assert!(check_name("n", "").is_err());
        assert!(check_name("n", "é").is_err());
        assert!(check_name("n", &"x".repeat(129)).is_err());
    }
}
