//! `thingkit`: the command-line tool over the thingkit crates.
//!
//! Each domain crate contributes one subcommand group, implemented in a module of the same name
//! (`mqtt`, `policy`, ...). Conventions shared by every subcommand:
//!
//! - exit status 0 on success, 1 when the input was bad or a check failed (with a one-line reason on
//!   stderr), 2 on a usage error (clap's own exit code);
//! - machine-readable output is JSON (one object, or JSON lines for streams) on stdout.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod access_key;
mod api;
mod audit;
mod client;
mod config;
mod dashboard;
mod detect;
mod firmware;
mod init;
mod jobs;
mod meter;
mod mqtt;
mod policy;
mod provision;
mod report;
mod report_html;
mod rules;
mod serve;
mod shadow;
mod streams;

/// The core of a cloud IoT platform, from the command line.
#[derive(Debug, Parser)]
#[command(name = "thingkit", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommand groups, one per domain crate.
#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate authorities: create a CA (`ca init`).
    #[command(subcommand)]
    Ca(provision::CaArgs),
    /// Device certificates: issue from a CSR, create key + certificate, print the certificate ID.
    #[command(subcommand)]
    Cert(provision::CertArgs),
    /// Fleet provisioning: validate and render provisioning templates.
    #[command(subcommand)]
    Provision(provision::ProvisionArgs),
    /// MQTT codec tools: decode hex to JSON lines, encode JSON to hex.
    #[command(subcommand)]
    Mqtt(mqtt::Args),
    /// Signed firmware (SUIT): keygen, sign, verify, inspect.
    #[command(subcommand)]
    Firmware(firmware::Args),
    /// AWS IoT policy documents: validate and lint, test requests.
    #[command(subcommand)]
    Policy(policy::Args),
    /// Metering: billable units of a message, bills from JSON-lines usage.
    #[command(subcommand)]
    Meter(meter::Args),
    /// AWS IoT SQL rules: evaluate a statement on one message (`rules test`).
    #[command(subcommand)]
    Rules(rules::Args),
    /// Set up a server directory: DIR/thingkit.toml, a CA in DIR/ca, a server certificate for
    /// localhost and 127.0.0.1 in DIR/server. Refuses to overwrite any file.
    Init(init::InitArgs),
    /// Access keys for the control-plane API (SigV4): create (printed once), list, delete.
    #[command(subcommand)]
    AccessKey(access_key::Args),
    /// Run the server from a configuration file (`thingkit init` writes one). An invalid file
    /// exits 1 with `error: FILE:LINE:COLUMN: KEY: what is wrong`.
    Serve(serve::ServeArgs),
    /// Device shadows over the HTTPS API (iot-data): get, update, delete, list named shadows.
    /// Signed with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; refusals exit 1 with the AWS
    /// error code and message.
    #[command(subcommand)]
    Shadow(shadow::Args),
    /// AWS IoT Jobs over the HTTPS API (iot): create, describe, list, cancel, delete jobs;
    /// list, describe and cancel their executions; get a job's document. Signed as `shadow`.
    #[command(subcommand)]
    Jobs(jobs::Args),
    /// The fleet report (things, connections, usage, firmware, findings, key metrics), offline
    /// from a server's data directory, as one self-contained HTML page or one JSON object.
    Report(report::ReportArgs),
    /// Device Defender audit, offline on a server's data directory: run the checks (`run`),
    /// print the last run's findings (`findings`).
    #[command(subcommand)]
    Audit(audit::Args),
}

/// A failure the user must act on: printed as one line on stderr, exit status 1.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Failure> = match cli.command {
        Command::Mqtt(args) => mqtt::run(args),
        Command::Ca(args) => provision::run_ca(args),
        Command::Cert(args) => provision::run_cert(args),
        Command::Provision(args) => provision::run_provision(args),
        Command::Firmware(args) => firmware::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Meter(args) => meter::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Init(args) => init::run(args),
        Command::AccessKey(args) => access_key::run(args),
        Command::Shadow(args) => shadow::run(args),
        Command::Jobs(args) => jobs::run(args),
        Command::Report(args) => report::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Serve(args) => match config::ServeConfig::from_file(&args.config) {
            Ok(config) => serve::serve(config),
            Err(e) => {
                // The exact format scripts match: `error: FILE:LINE:COLUMN: KEY: what`.
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("thingkit: {msg}");
            ExitCode::FAILURE
        }
    }
}
