//! A topic rule as AWS's API writes it (`TopicRulePayload`: SQL, version, actions, error
//! action), shared by the server's config file and the control-plane API, plus thingkit's
//! file sinks. Actions are data here; the broker's rules runtime performs them.
//!
//! CONTRACT (scaffolding): the shapes follow botocore's `iot` model member by member.

use serde::{Deserialize, Serialize};

/// `TopicRulePayload` (CreateTopicRule, ReplaceTopicRule) and, with a name, the rule itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRulePayload {
    /// The statement.
    pub sql: String,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The actions (0..10).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Whether the rule is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_disabled: Option<bool>,
    /// `2015-10-08` (the default), `2016-03-23` or `beta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_iot_sql_version: Option<String>,
    /// The action run when another action failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_action: Option<Action>,
}

/// One action: an object with exactly one member naming its kind (`{"republish": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Action {
    /// Republish to a topic of this broker.
    Republish(RepublishAction),
    /// HTTP POST of the output to a URL.
    Http(HttpAction),
    /// thingkit's file sink: JSON lines, CSV or Parquet (not an AWS action).
    File(FileAction),
}

/// `RepublishAction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepublishAction {
    /// Accepted and ignored (there is no IAM role to assume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The topic; a substitution template (`$$` writes a `$`).
    pub topic: String,
    /// 0 (the default) or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
}

/// `HttpAction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAction {
    /// The endpoint (`https://` or `http://`); a substitution template.
    pub url: String,
    /// AWS's confirmation URL; a substitution template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_url: Option<String>,
    /// Headers; each value is a substitution template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

/// `HttpActionHeader`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// The name.
    pub key: String,
    /// The value (a substitution template).
    pub value: String,
}

/// thingkit's file sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAction {
    /// The file (unpartitioned) or the directory (partitioned by date).
    pub path: String,
    /// The format.
    pub format: FileFormat,
    /// The columns (CSV and Parquet; JSON lines writes the whole output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// Partition into `path/date=YYYY-MM-DD/` directories by the message's arrival date.
    #[serde(default)]
    pub partition_by_date: bool,
}

/// A file sink's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One JSON document per line.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// A column of a CSV or Parquet sink: the output key it reads and its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    /// The output object's key.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// A column's type (Parquet's physical and logical type; CSV writes the value's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// UTF-8 string.
    String,
    /// 64-bit integer.
    Int64,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
}
