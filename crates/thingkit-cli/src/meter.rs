//! `thingkit meter`: billable units of one message, and bills from JSON-lines usage.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use thingkit_meter::{BillingRun, PriceTable, PriceTableLimits};
use thingkit_meter::{MeteringPolicy, PacketKind};
use thingkit_meter::{UsageEvent, UsageLimits};

use crate::Failure;

/// Output formats of `meter bill`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One JSON bill per line (per account and UTC month).
    Json,
    /// CSV, one row per tier charge.
    Csv,
}

/// Metering subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Print the billable units of one message as JSON (1 KB = 1,024 bytes).
    Units {
        /// Metering preset: aws, azure, azure-free or gcp.
        #[arg(long)]
        preset: String,
        /// Counted bytes of the message (minutes for `connection_minutes`).
        #[arg(long)]
        bytes: u64,
        /// Kind: publish, receive, connect, subscribe, puback, ping, retained,
        /// connection_minutes, shadow, registry.
        #[arg(long, default_value = "publish")]
        kind: String,
    },
    /// Read usage events (JSON lines) and print a bill per account and month. Repeated ids are
    /// ignored; malformed lines are reported with their line number and exit status 1.
    Bill {
        /// Built-in price table: aws-us-east-1, aws-us-east-1-free-tier, azure-free, azure-s1,
        /// azure-s2, azure-s3, gcp.
        #[arg(long, default_value = "aws-us-east-1", conflicts_with = "price_table")]
        preset: String,
        /// A price table JSON file to use instead of a preset.
        #[arg(long)]
        price_table: Option<PathBuf>,
        /// Usage file (JSON lines), or `-` for standard input.
        #[arg(long)]
        usage: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

/// Runs a meter subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Units {
            preset,
            bytes,
            kind,
        } => units(&preset, bytes, &kind),
        Args::Bill {
            preset,
            price_table,
            usage,
            format,
        } => bill(&preset, price_table.as_deref(), &usage, format),
    }
}

fn units(preset: &str, bytes: u64, kind: &str) -> Result<(), Failure> {
    let policy = MeteringPolicy::preset(preset)?;
    let kind = PacketKind::parse(kind).ok_or_else(|| Failure(format!("unknown kind `{kind}`")))?;
    let units = policy.units(kind, bytes);
    let out = serde_json::json!({
        "preset": policy.name,
        "kind": kind.as_str(),
        "bytes": bytes,
        "units": units,
    });
    println!("{out}");
    Ok(())
}

/// Reads one line of at most `limit` bytes into `buf` (without the line ending). Returns
/// `Ok(None)` at end of input and `Ok(Some(false))` for a line over the limit (which is skipped).
fn next_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = std::io::Read::take(&mut *input, limit as u64 + 2).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let complete = buf.last() == Some(&b'\n');
    if complete {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > limit {
        if !complete {
            input.skip_until(b'\n')?;
        }
        return Ok(Some(false));
    }
    Ok(Some(true))
}

fn bill(
    preset: &str,
    table_file: Option<&std::path::Path>,
    usage: &std::path::Path,
    format: Format,
) -> Result<(), Failure> {
    let table = match table_file {
        Some(path) => {
            let limits = PriceTableLimits::default();
            let bytes = read_limited(path, limits.max_bytes)?;
            PriceTable::parse(&bytes, &limits)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?
        }
        None => PriceTable::preset(preset)?,
    };
    let mut input: Box<dyn BufRead> = if usage.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(usage).map_err(|e| Failure(format!("{}: {e}", usage.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let limits = UsageLimits::default();
    let mut run = BillingRun::new(table);
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut bad = 0usize;
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    while let Some(ok) = next_line(&mut input, &mut buf, limits.max_line_bytes)
        .map_err(|e| Failure(format!("{}: {e}", usage.display())))?
    {
        line_no += 1;
        if !ok {
            bad += 1;
            let _ = writeln!(
                err,
                "{}:{line_no}: usage line over the limit of {} bytes",
                usage.display(),
                limits.max_line_bytes
            );
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match UsageEvent::parse_line(&buf, &limits).and_then(|e| run.add(&e)) {
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                let _ = writeln!(err, "{}:{line_no}: {e}", usage.display());
            }
        }
    }
    if bad > 0 {
        return Err(Failure(format!(
            "{bad} malformed usage line{} in {}; no bill printed",
            if bad == 1 { "" } else { "s" },
            usage.display()
        )));
    }
    let bills = run.bills()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Json => thingkit_meter::write_bills_jsonl(&mut out, &bills)?,
        Format::Csv => thingkit_meter::write_bills_csv(&mut out, &bills)?,
    }
    out.flush()?;
    Ok(())
}

fn read_limited(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    if bytes.len() > limit {
        return Err(Failure(format!(
            "{}: price table over the limit of {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}
