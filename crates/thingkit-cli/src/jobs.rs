//! `thingkit jobs create|describe|list|cancel|delete|list-executions|describe-execution|
//! cancel-execution|get-document`: the AWS IoT Jobs control-plane operations (`iot` CreateJob,
//! DescribeJob, ListJobs, CancelJob, DeleteJob, ListJobExecutionsForJob /
//! ListJobExecutionsForThing, DescribeJobExecution, CancelJobExecution, GetJobDocument) over
//! HTTPS on the API `thingkit serve` hosts (or AWS IoT), signed for `iot` with the access key
//! in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
//!
//! The endpoint, CA bundle and region are found as `thingkit shadow` finds them (`--config`,
//! or `--endpoint`, `--ca-bundle`, `--region`). Targets are given by name (`--thing NAME`,
//! `--group NAME`, repeatable) and sent as ARNs of the account in `--account` or the
//! configuration's `[account]`. Each command prints the response's JSON on one line; the list
//! commands follow `nextToken` and print every page as one object.

use std::collections::HashSet;
use std::io::Read;

use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::Failure;
use crate::client::{ApiClient, encode};
use crate::config::ServeConfig;
use crate::shadow::EndpointArgs;

/// The signing name of the AWS IoT control plane.
const SERVICE: &str = "iot";

/// `thingkit jobs ...`.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// CreateJob: send a job document to things and thing groups; print `{jobArn, jobId}`.
    Create {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID (1 to 64 characters of `[a-zA-Z0-9_-]`).
        #[arg(long)]
        job_id: String,
        /// A file holding the job document (a JSON object), or `-` to read it from stdin.
        /// Optional with --template.
        #[arg(long)]
        document: Option<String>,
        /// A target thing (repeatable).
        #[arg(long = "thing")]
        things: Vec<String>,
        /// A target thing group: its things and its descendant groups' things (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Keep running on things that join a target group later (CONTINUOUS); without it the
        /// job is a SNAPSHOT of the targets now.
        #[arg(long)]
        continuous: bool,
        /// A description.
        #[arg(long)]
        description: Option<String>,
        /// A job template ID: the document and configurations come from it.
        #[arg(long)]
        template: Option<String>,
        /// Minutes an execution may stay IN_PROGRESS (timeoutConfig, 1 to 10080).
        #[arg(long)]
        timeout_minutes: Option<u32>,
        /// The account of the target ARNs (default: `[account] account_id` of --config).
        #[arg(long)]
        account: Option<String>,
        /// A firmware job: the signed SUIT envelope (`thingkit firmware sign`). The document
        /// carries it inline with the image's stream location; needs --image and --config (the
        /// image is installed in the server's data directory).
        #[arg(long, requires = "image", requires = "config", conflicts_with_all = ["document", "template"])]
        envelope: Option<std::path::PathBuf>,
        /// The firmware image, served to devices over MQTT file delivery as stream --stream-id,
        /// file 0.
        #[arg(long, requires = "envelope")]
        image: Option<std::path::PathBuf>,
        /// The stream id of the image (default: the job ID).
        #[arg(long, requires = "envelope")]
        stream_id: Option<String>,
    },
    /// DescribeJob: status, targets, configurations and execution counts.
    Describe {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID.
        #[arg(long)]
        job_id: String,
    },
    /// ListJobs: every page, printed as one `{"jobs": [...]}`.
    List {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Only jobs in this status (IN_PROGRESS, CANCELED, COMPLETED, ...).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs targeting this thing group.
        #[arg(long)]
        group: Option<String>,
    },
    /// CancelJob: QUEUED executions are canceled, IN_PROGRESS ones too with --force.
    Cancel {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID.
        #[arg(long)]
        job_id: String,
        /// Also cancel IN_PROGRESS executions.
        #[arg(long)]
        force: bool,
        /// A reason code (`[A-Z0-9_]+`).
        #[arg(long)]
        reason_code: Option<String>,
        /// A comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// DeleteJob: a COMPLETED or CANCELED job, or any job with --force.
    Delete {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID.
        #[arg(long)]
        job_id: String,
        /// Delete a job that is still in progress.
        #[arg(long)]
        force: bool,
    },
    /// ListJobExecutionsForJob (--job-id) or ListJobExecutionsForThing (--thing): every page,
    /// printed as one `{"executionSummaries": [...]}`.
    ListExecutions {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The executions of this job.
        #[arg(long, required_unless_present = "thing", conflicts_with = "thing")]
        job_id: Option<String>,
        /// The executions on this thing.
        #[arg(long)]
        thing: Option<String>,
        /// Only executions in this status (QUEUED, IN_PROGRESS, SUCCEEDED, ...).
        #[arg(long)]
        status: Option<String>,
    },
    /// DescribeJobExecution: the execution of a job on a thing.
    DescribeExecution {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID.
        #[arg(long)]
        job_id: String,
        /// The thing.
        #[arg(long)]
        thing: String,
    },
    /// CancelJobExecution: a QUEUED execution, or an IN_PROGRESS one with --force.
    CancelExecution {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID.
        #[arg(long)]
        job_id: String,
        /// The thing.
        #[arg(long)]
        thing: String,
        /// Cancel an IN_PROGRESS execution.
        #[arg(long)]
        force: bool,
        /// Refuse unless the execution's versionNumber is this.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// GetJobDocument: print `{"document": "..."}`.
    GetDocument {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The job ID.
        #[arg(long)]
        job_id: String,
    },
}

fn job_path(id: &str) -> String {
    format!("/jobs/{}", encode(id))
}

/// The document `--document` names: a file, or stdin for `-`.
fn read_document(source: &str) -> Result<String, Failure> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure(format!("stdin: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(source).map_err(|e| Failure(format!("{source}: {e}")))
}

/// A firmware job document: the envelope inline, the image installed as stream `stream_id`
/// file 0 in the server's data directory (from `--config`).
fn firmware_document(
    endpoint: &EndpointArgs,
    envelope: &std::path::Path,
    image: &std::path::Path,
    stream_id: &str,
) -> Result<String, Failure> {
    let config = endpoint
        .config_path()
        .map(ServeConfig::from_file)
        .transpose()?
        .ok_or_else(|| Failure("--envelope needs --config (the server's data directory)".into()))?;
    let envelope =
        std::fs::read(envelope).map_err(|e| Failure(format!("{}: {e}", envelope.display())))?;
    let size = crate::streams::install_image(&config.data_dir, stream_id, image)?;
    Ok(thingkit_jobs::ota::FirmwareJob {
        envelope,
        image: thingkit_jobs::ota::ImageLocation::MqttStream {
            stream_id: stream_id.to_owned(),
            file_id: 0,
            size,
        },
    }
    .to_document())
}

/// The ARN prefix (`arn:PARTITION:iot:REGION:ACCOUNT:`) targets are named under.
fn arn_prefix(endpoint: &EndpointArgs, account: Option<String>) -> Result<String, Failure> {
    let config = endpoint
        .config_path()
        .map(ServeConfig::from_file)
        .transpose()?;
    let region = match (endpoint.region(), &config) {
        (Some(r), _) => r.to_string(),
        (None, Some(c)) => c.account.region.clone(),
        (None, None) => return Err(Failure("--region is not known".into())),
    };
    let partition = config
        .as_ref()
        .map_or_else(|| "aws".to_string(), |c| c.account.partition.clone());
    let account = match (account, &config) {
        (Some(a), _) => a,
        (None, Some(c)) => c.account.account_id.clone(),
        (None, None) => {
            return Err(Failure(
                "the account of the target ARNs is not known: pass --account, or --config with the server's file".into(),
            ));
        }
    };
    Ok(format!("arn:{partition}:iot:{region}:{account}:"))
}

/// Target ARNs for `things` and `groups` under `prefix`.
fn target_arns(prefix: &str, things: &[String], groups: &[String]) -> Vec<String> {
    things
        .iter()
        .map(|t| format!("{prefix}thing/{t}"))
        .chain(groups.iter().map(|g| format!("{prefix}thinggroup/{g}")))
        .collect()
}

/// Every page of a `nextToken` list at `path`, the items of `member` gathered in one array.
fn list_all(
    client: &ApiClient,
    path: &str,
    filters: &[(&str, &str)],
    member: &str,
) -> Result<Value, Failure> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        if let Some(t) = token.as_deref() {
            query.push(("nextToken", t));
        }
        let page = client.call("GET", path, &query, b"", SERVICE)?;
        if let Some(list) = page.get(member).and_then(Value::as_array) {
            items.extend(list.iter().cloned());
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(next) if !seen.insert(next.to_string()) => {
                return Err(Failure(format!(
                    "the server returned nextToken {next:?} twice; stopping"
                )));
            }
            Some(next) => token = Some(next.to_string()),
            None => {
                let mut out = Map::new();
                out.insert(member.to_string(), Value::Array(items));
                return Ok(Value::Object(out));
            }
        }
    }
}

fn force_query(force: bool) -> Vec<(&'static str, &'static str)> {
    if force {
        vec![("force", "true")]
    } else {
        Vec::new()
    }
}

/// Runs one `jobs` subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let out = match args {
        Args::Create {
            endpoint,
            job_id,
            document,
            things,
            groups,
            continuous,
            description,
            template,
            timeout_minutes,
            account,
            envelope,
            image,
            stream_id,
        } => {
            let document = match (envelope, image) {
                (Some(envelope), Some(image)) => Some(firmware_document(
                    &endpoint,
                    &envelope,
                    &image,
                    stream_id.as_deref().unwrap_or(&job_id),
                )?),
                _ => document.map(|d| read_document(&d)).transpose()?,
            };
            if things.is_empty() && groups.is_empty() {
                return Err(Failure(
                    "a job needs a target: --thing NAME or --group NAME".into(),
                ));
            }
            if document.is_none() && template.is_none() {
                return Err(Failure(
                    "a job needs a document: --document FILE (or -) or --template ID".into(),
                ));
            }
            let prefix = arn_prefix(&endpoint, account)?;
            let mut body = Map::new();
            body.insert(
                "targets".into(),
                json!(target_arns(&prefix, &things, &groups)),
            );
            if let Some(text) = document {
                body.insert("document".into(), json!(text));
            }
            if continuous {
                body.insert("targetSelection".into(), json!("CONTINUOUS"));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(t) = template {
                body.insert(
                    "jobTemplateArn".into(),
                    json!(format!("{prefix}jobtemplate/{t}")),
                );
            }
            if let Some(m) = timeout_minutes {
                body.insert(
                    "timeoutConfig".into(),
                    json!({ "inProgressTimeoutInMinutes": m }),
                );
            }
            let body = Value::Object(body).to_string();
            endpoint
                .client()?
                .call("PUT", &job_path(&job_id), &[], body.as_bytes(), SERVICE)?
        }
        Args::Describe { endpoint, job_id } => {
            endpoint
                .client()?
                .call("GET", &job_path(&job_id), &[], b"", SERVICE)?
        }
        Args::List {
            endpoint,
            status,
            group,
        } => {
            let mut filters = Vec::new();
            if let Some(s) = status.as_deref() {
                filters.push(("status", s));
            }
            if let Some(g) = group.as_deref() {
                filters.push(("thingGroupName", g));
            }
            list_all(&endpoint.client()?, "/jobs", &filters, "jobs")?
        }
        Args::Cancel {
            endpoint,
            job_id,
            force,
            reason_code,
            comment,
        } => {
            let mut body = Map::new();
            if let Some(r) = reason_code {
                body.insert("reasonCode".into(), json!(r));
            }
            if let Some(c) = comment {
                body.insert("comment".into(), json!(c));
            }
            let body = Value::Object(body).to_string();
            endpoint.client()?.call(
                "PUT",
                &format!("{}/cancel", job_path(&job_id)),
                &force_query(force),
                body.as_bytes(),
                SERVICE,
            )?
        }
        Args::Delete {
            endpoint,
            job_id,
            force,
        } => endpoint.client()?.call(
            "DELETE",
            &job_path(&job_id),
            &force_query(force),
            b"",
            SERVICE,
        )?,
        Args::ListExecutions {
            endpoint,
            job_id,
            thing,
            status,
        } => {
            let filters: Vec<(&str, &str)> = status
                .as_deref()
                .map(|s| vec![("status", s)])
                .unwrap_or_default();
            let path = match (job_id, thing) {
                (Some(job), _) => format!("{}/things", job_path(&job)),
                (None, Some(thing)) => format!("/things/{}/jobs", encode(&thing)),
                (None, None) => return Err(Failure("--job-id or --thing is required".into())),
            };
            list_all(&endpoint.client()?, &path, &filters, "executionSummaries")?
        }
        Args::DescribeExecution {
            endpoint,
            job_id,
            thing,
        } => endpoint.client()?.call(
            "GET",
            &format!("/things/{}/jobs/{}", encode(&thing), encode(&job_id)),
            &[],
            b"",
            SERVICE,
        )?,
        Args::CancelExecution {
            endpoint,
            job_id,
            thing,
            force,
            expected_version,
        } => {
            let body = match expected_version {
                Some(v) => json!({ "expectedVersion": v }),
                None => json!({}),
            }
            .to_string();
            endpoint.client()?.call(
                "PUT",
                &format!("/things/{}/jobs/{}/cancel", encode(&thing), encode(&job_id)),
                &force_query(force),
                body.as_bytes(),
                SERVICE,
            )?
        }
        Args::GetDocument { endpoint, job_id } => endpoint.client()?.call(
            "GET",
            &format!("{}/job-document", job_path(&job_id)),
            &[],
            b"",
            SERVICE,
        )?,
    };
    // Operations without an output answer an empty body or `{}`: print `{}` either way.
    let out = if out.is_null() { json!({}) } else { out };
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_arns_of_the_account() {
        let prefix = "arn:aws:iot:eu-central-1:123456789012:";
        assert_eq!(
            target_arns(prefix, &["lamp-1".into()], &["site".into()]),
            vec![
                "arn:aws:iot:eu-central-1:123456789012:thing/lamp-1".to_string(),
                "arn:aws:iot:eu-central-1:123456789012:thinggroup/site".to_string(),
            ]
        );
    }

    #[test]
    fn job_paths_encode_the_id() {
        assert_eq!(job_path("update-1"), "/jobs/update-1");
    }
}
