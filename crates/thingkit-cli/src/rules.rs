//! `thingkit rules`: AWS IoT SQL statements outside a server.
//!
//! `rules test` compiles one statement and evaluates it on one message, as the rules engine of
//! `thingkit serve` would: the SELECT output is printed as one line of JSON (a non-JSON
//! output, `SELECT *` on a binary payload, as `{"base64": "..."}`); nothing is printed when
//! WHERE does not fire. `timestamp()` is now; `newuuid()` and `rand()` draw from the system's
//! random source. Windowed statements (thingkit's `GROUP BY ... TUMBLINGWINDOW(...)`) are
//! refused: their output is an aggregate over many messages and a window's close, which one
//! message cannot show (run them in `thingkit serve`).

use std::io::Read;

use base64::Engine;
use ring::rand::SecureRandom;
use thingkit_rules::{Environment, Limits, Message, Output, Rule, SqlVersion};

use crate::Failure;

/// The SQL version argument (AWS's spellings).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Version {
    /// The original version, AWS's default.
    #[value(name = "2015-10-08")]
    V2015,
    /// Nested SELECT, object and array literals, the V2 functions.
    #[value(name = "2016-03-23")]
    V2016,
}

impl From<Version> for SqlVersion {
    fn from(v: Version) -> SqlVersion {
        match v {
            Version::V2015 => SqlVersion::V2015_10_08,
            Version::V2016 => SqlVersion::V2016_03_23,
        }
    }
}

/// Rules subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Evaluate one statement on one message: prints the output as one line of JSON
    /// (`{"base64": ...}` for a non-JSON output), nothing when WHERE does not fire. A statement
    /// that does not parse exits 1 with `LINE:COLUMN: reason`.
    Test(TestArgs),
}

/// `rules test` arguments.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The statement (`SELECT ... FROM 'topic/filter' WHERE ...`).
    #[arg(long)]
    sql: String,
    /// The SQL version the statement is compiled for.
    #[arg(long, value_enum, default_value = "2015-10-08")]
    sql_version: Version,
    /// The topic the message was published to (`topic()`).
    #[arg(long)]
    topic: String,
    /// The publisher's client ID (`clientid()`).
    #[arg(long)]
    client_id: Option<String>,
    /// The payload: a file, or `-` for standard input (any bytes; JSON is read as JSON).
    #[arg(long)]
    payload: String,
}

/// Runs a rules subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Test(args) => test(args),
    }
}

/// The system's randomness for `newuuid()` and `rand()`.
struct SystemEnvironment {
    random: ring::rand::SystemRandom,
}

impl SystemEnvironment {
    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        // The system random source failing is not something a user can act on; zeros keep
        // the command answering (the values are still well formed).
        let _ = self.random.fill(&mut b);
        b
    }
}

impl Environment for SystemEnvironment {
    fn new_uuid(&self) -> String {
        let mut b: [u8; 16] = self.bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            h.get(0..8).unwrap_or_default(),
            h.get(8..12).unwrap_or_default(),
            h.get(12..16).unwrap_or_default(),
            h.get(16..20).unwrap_or_default(),
            h.get(20..32).unwrap_or_default()
        )
    }

    fn random(&self) -> f64 {
        let bits = u64::from_be_bytes(self.bytes()) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

fn read_payload(source: &str, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if source == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(source).map_err(|e| Failure(format!("{source}: {e}")))?)
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure(format!("{source}: {e}")))?;
    if bytes.len() > limit {
        return Err(Failure(format!(
            "{source}: the payload is over {limit} bytes (AWS IoT's message limit)"
        )));
    }
    Ok(bytes)
}

fn test(args: TestArgs) -> Result<(), Failure> {
    let limits = Limits::default();
    let rule = Rule::compile(&args.sql, args.sql_version.into(), &limits)?;
    if rule.is_windowed() {
        return Err(Failure(
            "a windowed statement (GROUP BY with a window) aggregates many messages: `rules test` evaluates one; run it in `thingkit serve`".into(),
        ));
    }
    let payload = read_payload(&args.payload, limits.max_payload_bytes)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let message = Message {
        topic: &args.topic,
        payload: &payload,
        client_id: args.client_id.as_deref(),
        principal: None,
        timestamp_ms: now_ms,
    };
    let env = SystemEnvironment {
        random: ring::rand::SystemRandom::new(),
    };
    match rule.evaluate(&message, &env, &limits)? {
        None => {}
        // thingkit-rules' JSON writer: what a rule's actions receive (Decimals exact,
        // Undefined members left out).
        Some(Output::Json(value)) => println!("{}", value.to_json_string()),
        Some(Output::Binary(bytes)) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            println!("{}", serde_json::json!({ "base64": b64 }));
        }
    }
    Ok(())
}
