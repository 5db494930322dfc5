//! `thingkit policy`: validate AWS IoT policy documents and test requests against them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use thingkit_policy::{
    Explanation, Finding, PolicyDocument, PolicySet, RequestBuf, SetOptions, Severity,
    StatementRef, validate,
};

use crate::Failure;

/// Policy subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Validate and lint policy documents; prints `FILE:LINE:COL: severity code: message` per
    /// finding, followed by an indented `help:` line, and exits 1 if any error was found.
    Validate {
        /// Policy documents (JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the findings as one JSON array instead (each with file, line, column, byte
        /// span, severity, code, message, help and JSON path).
        #[arg(long)]
        json: bool,
    },
    /// Evaluate one request against the union of the given policies and print the decision as
    /// JSON (a policy's name is its file stem).
    Test {
        /// A policy document; repeat for several.
        #[arg(long = "policy", required = true)]
        policies: Vec<PathBuf>,
        /// The request JSON file, or `-` for standard input.
        #[arg(long)]
        request: PathBuf,
        /// Add the per-statement explanation.
        #[arg(long)]
        explain: bool,
        /// Refuse client IDs and thing values containing `+ # * ?` as variable values.
        #[arg(long)]
        strict: bool,
    },
}

/// Runs a policy subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Validate { files, json } => validate_files(&files, json),
        Args::Test {
            policies,
            request,
            explain,
            strict,
        } => test(&policies, &request, explain, strict),
    }
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

fn validate_files(files: &[PathBuf], as_json: bool) -> Result<(), Failure> {
    let mut errors = 0;
    let mut all = Vec::new();
    for path in files {
        let text = read(path)?;
        for f in validate(&text) {
            if f.severity == Severity::Error {
                errors += 1;
            }
            if as_json {
                all.push(finding_json(path, &f));
            } else {
                println!("{}", finding_line(path, &f));
                println!("  help: {}", f.help);
            }
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).map_err(|e| Failure(e.to_string()))?
        );
    }
    if errors > 0 {
        return Err(Failure(format!(
            "{errors} error(s) in {} file(s)",
            files.len()
        )));
    }
    Ok(())
}

fn test(policies: &[PathBuf], request: &Path, explain: bool, strict: bool) -> Result<(), Failure> {
    let mut set = PolicySet::with_options(SetOptions::default().with_strict_identities(strict));
    for path in policies {
        let text = read(path)?;
        let doc = PolicyDocument::parse(&text).map_err(|e| match e {
            thingkit_policy::Error::InvalidDocument { findings } => Failure(
                findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| finding_line(path, f))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            other => Failure(format!("{}: {other}", path.display())),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        set.add(name, &doc)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    }
    let text = if request.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(thingkit_policy::MAX_REQUEST_BYTES as u64 + 1)
            .read_to_string(&mut s)
            .map_err(|e| Failure(format!("stdin: {e}")))?;
        s
    } else {
        read(request)?
    };
    let (req, ctx) =
        RequestBuf::from_json(&text).map_err(|e| Failure(format!("{}: {e}", request.display())))?;
    let explanation = set.explain(&req.as_request(), &ctx);
    let mut out = json!({
        "decision": explanation.evaluation.decision.as_str(),
        "determining": explanation.evaluation.determining.iter().map(statement_ref).collect::<Vec<_>>(),
        "missing_context": explanation.evaluation.missing_context,
    });
    if explain && let Some(obj) = out.as_object_mut() {
        obj.insert("explanation".into(), explanation_json(&explanation));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| Failure(e.to_string()))?
    );
    Ok(())
}

/// `FILE:LINE:COL: severity code: message`.
fn finding_line(path: &Path, f: &Finding) -> String {
    format!(
        "{}:{}:{}: {} {}: {}",
        path.display(),
        f.line,
        f.column,
        f.severity,
        f.code,
        f.message
    )
}

fn finding_json(path: &Path, f: &Finding) -> Value {
    json!({
        "file": path.display().to_string(),
        "line": f.line,
        "column": f.column,
        "span": {"start": f.span.start, "end": f.span.end},
        "severity": f.severity.to_string(),
        "code": f.code.as_str(),
        "message": f.message,
        "help": f.help,
        "path": f.path,
    })
}

fn statement_ref(s: &StatementRef) -> Value {
    json!({"policy": s.policy, "statement": s.statement, "sid": s.sid})
}

fn explanation_json(e: &Explanation) -> Value {
    Value::Array(
        e.statements
            .iter()
            .map(|s| {
                json!({
                    "policy": s.statement.policy,
                    "statement": s.statement.statement,
                    "sid": s.statement.sid,
                    "effect": s.effect.to_string(),
                    "action_matched": s.action_matched,
                    "not_resource": s.not_resource,
                    "resources": s.resources.iter().map(|r| json!({
                        "pattern": r.pattern, "matched": r.matched, "unresolved": r.unresolved,
                    })).collect::<Vec<_>>(),
                    "resource_matched": s.resource_matched,
                    "conditions": s.conditions.iter().map(|c| json!({
                        "operator": c.operator, "key": c.key, "satisfied": c.satisfied, "reason": c.reason,
                    })).collect::<Vec<_>>(),
                    "applies": s.applies,
                })
            })
            .collect(),
    )
}
