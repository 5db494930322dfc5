//! The reference analytics job at scale: thingkit's windowed rule against Spark, same data.
//!
//! 10,000,000 readings (`device_id,temperature,timestamp`, 10,000 devices, one day) are
//! generated deterministically into `<target>/tmp/rules-windowed-<N>/iot_data.csv`, and converted
//! once by Spark into a Parquet directory partitioned by `date=` beside it (both kept for the
//! next run). Then, in the same run:
//!
//! - **floor**: a plain Rust loop reading the CSV and counting `temperature > 25` per device in a
//!   `HashMap` — the least work the question needs.
//! - **payloads only**: the same CSV read turning each row into the JSON message the device
//!   publishes (`{"device_id":..,"temperature":..,"timestamp":..}` on
//!   `telemetry/<device>/temperature`), with no rule: the share of the next row that is not the
//!   rules engine.
//! - **thingkit**: the same messages pushed through `window::Windows` running
//!   `SELECT device_id, count(*) AS hot FROM 'telemetry/+/temperature' WHERE temperature > 25
//!   GROUP BY device_id, TUMBLINGWINDOW(dd, 1) TIMESTAMP BY timestamp * 1000` (each payload
//!   parsed as JSON, WHERE, the group's count), then `flush`. One thread.
//! - **Spark**: `python3 examples/spark/hot_readings.py --csv .. --parquet .. --expected ..` in
//!   local mode (`local[*]`, both cores), a fresh process: its start, the CSV query (with
//!   `inferSchema`, as the reference job is written) and the Parquet query, each timed by the
//!   job itself, and the process's whole wall time.
//!
//! The answers must agree: thingkit's with the floor's (checked here), and Spark's CSV and
//! Parquet answers with thingkit's (checked by the job, which exits 1 on any difference).
//!
//! Run (long: about a minute to generate the first time, then a few minutes):
//!   cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-rules --bench windowed_10m
//! Environment: RULES_BENCH_READINGS (default 10000000), RULES_BENCH_DEVICES (default 10000),
//! RULES_BENCH_SPARK=0 to skip Spark (then nothing is compared with it),
//! RULES_BENCH_BREAKDOWN (default 1000000; 0 skips): how many readings the breakdown of the
//! rules engine's time uses (variants of the rule doing a subset of its work, on pre-built
//! messages, printed after the checks).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use thingkit_rules::{
    Environment, Limits, Message, Output, Rule, SqlVersion, Value, WindowLimits, Windows,
};

/// 2025-11-26T00:00:00Z, the quick start's first reading.
const T0: u64 = 1_764_115_200;
const DAY_S: u64 = 86_400;

const SQL: &str = "SELECT device_id, count(*) AS hot FROM 'telemetry/+/temperature' \
                   WHERE temperature > 25 \
                   GROUP BY device_id, TUMBLINGWINDOW(dd, 1) TIMESTAMP BY timestamp * 1000";

type Answer = HashMap<String, u64>;

struct BenchEnv;

impl Environment for BenchEnv {
    fn new_uuid(&self) -> String {
        "6f1c9a3e-2b7d-4c1a-9f3e-0d5b8a7c6e21".to_owned()
    }
    fn random(&self) -> f64 {
        0.5
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: a deterministic, well-mixed stream from the reading's index.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes the CSV: reading `i` comes from device `mix(i) % devices`, its temperature is
/// 15.0–34.9 °C in tenths (so 25.0, not above 25, occurs), its timestamp spreads the readings
/// over one day in order.
fn generate_csv(path: &Path, readings: usize, devices: usize) -> std::io::Result<()> {
    let tmp = path.with_extension("csv.partial");
    let mut f = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    writeln!(f, "device_id,temperature,timestamp")?;
    for i in 0..readings as u64 {
        let h = mix(i);
        let device = h % devices as u64;
        let tenths = 150 + (h >> 32) % 200;
        let ts = T0 + i * DAY_S / readings as u64;
        writeln!(f, "sensor-{device:05},{}.{},{ts}", tenths / 10, tenths % 10)?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(tmp, path)
}

/// Converts the CSV to Parquet with Spark (once), partitioned by `date=YYYY-MM-DD` like the
/// quick start's sink, with its column types.
fn convert_to_parquet(csv: &Path, parquet: &Path) -> Result<(), String> {
    let script = r#"
import os, sys
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType, StructField, StringType, DoubleType, LongType
spark = (SparkSession.builder.master("local[*]")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.session.timeZone", "UTC").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = StructType([StructField("device_id", StringType()), StructField("temperature", DoubleType()),
                     StructField("timestamp", LongType())])
df = spark.read.csv(sys.argv[1], header=True, schema=schema)
df = df.withColumn("date", df.timestamp.cast("timestamp").cast("date").cast("string"))
df.write.mode("overwrite").partitionBy("date").parquet(sys.argv[2])
spark.stop()
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(csv)
        .arg(parquet)
        .status()
        .map_err(|e| format!("python3 could not be started: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the Parquet conversion failed: {status}"))
    }
}

/// Calls `each(device, temperature_text, timestamp)` for every data row of the CSV.
fn read_csv(path: &Path, mut each: impl FnMut(&str, &str, &str)) -> std::io::Result<usize> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut line = String::new();
    let mut rows = 0;
    reader.read_line(&mut line)?; // header
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(rows);
        }
        let mut fields = line.trim_end().split(',');
        if let (Some(d), Some(t), Some(ts)) = (fields.next(), fields.next(), fields.next()) {
            each(d, t, ts);
            rows += 1;
        }
    }
}

fn floor(csv: &Path) -> std::io::Result<Answer> {
    let mut hot: Answer = HashMap::new();
    read_csv(csv, |d, t, _| {
        if t.parse::<f64>().is_ok_and(|t| t > 25.0) {
            match hot.get_mut(d) {
                Some(n) => *n += 1,
                None => {
                    hot.insert(d.to_owned(), 1);
                }
            }
        }
    })?;
    Ok(hot)
}

/// Builds the device's message for one row into reused buffers.
fn message_for<'a>(
    topic: &'a mut String,
    payload: &'a mut String,
    d: &'a str,
    t: &str,
    ts: &str,
) -> Message<'a> {
    topic.clear();
    payload.clear();
    let _ = write!(topic, "telemetry/{d}/temperature");
    let _ = write!(
        payload,
        r#"{{"device_id":"{d}","temperature":{t},"timestamp":{ts}}}"#
    );
    Message {
        topic,
        payload: payload.as_bytes(),
        client_id: Some(d),
        principal: None,
        timestamp_ms: ts.parse::<u64>().unwrap_or(0).saturating_mul(1000),
    }
}

fn payloads_only(csv: &Path) -> std::io::Result<usize> {
    let (mut topic, mut payload) = (String::new(), String::new());
    let mut bytes = 0;
    read_csv(csv, |d, t, ts| {
        let m = message_for(&mut topic, &mut payload, d, t, ts);
        bytes += std::hint::black_box(m).payload.len();
    })?;
    Ok(bytes)
}

fn add_output(answer: &mut Answer, output: &Output) -> Result<(), String> {
    let Output::Json(Value::Object(o)) = output else {
        return Err(format!("the windowed rule output a non-object: {output:?}"));
    };
    let (Some(Value::String(device)), Some(Value::Int(hot))) = (o.get("device_id"), o.get("hot"))
    else {
        return Err(format!(
            "the windowed rule output lacks device_id or hot: {o:?}"
        ));
    };
    *answer.entry(device.clone()).or_default() += u64::try_from(*hot).map_err(|e| e.to_string())?;
    Ok(())
}

fn thingkit(csv: &Path) -> Result<(Answer, usize), String> {
    let rule = Rule::compile(SQL, SqlVersion::V2016_03_23, &Limits::default())
        .map_err(|e| format!("the windowed rule does not compile: {e}"))?;
    let mut windows = Windows::new(&rule, WindowLimits::default())
        .map_err(|e| format!("the windows cannot be built: {e}"))?;
    let env = BenchEnv;
    let (mut topic, mut payload) = (String::new(), String::new());
    let mut answer = Answer::new();
    let mut outputs = 0;
    let mut failure = None;
    read_csv(csv, |d, t, ts| {
        if failure.is_some() {
            return;
        }
        let m = message_for(&mut topic, &mut payload, d, t, ts);
        if let Err(e) = windows.push(&m, &env) {
            failure = Some(format!("push failed on {d},{t},{ts}: {e}"));
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(f) = failure {
        return Err(f);
    }
    let stats = windows.stats();
    if stats.late + stats.no_timestamp + stats.over_capacity + stats.key_too_large + stats.future
        > 0
    {
        return Err(format!("readings were not counted: {stats:?}"));
    }
    for output in windows.flush() {
        add_output(&mut answer, &output)?;
        outputs += 1;
    }
    Ok((answer, outputs))
}

fn write_jsonl(path: &Path, answer: &Answer) -> std::io::Result<()> {
    let mut devices: Vec<_> = answer.iter().collect();
    devices.sort();
    let mut f = BufWriter::new(File::create(path)?);
    for (device, hot) in devices {
        writeln!(f, r#"{{"device_id":"{device}","hot":{hot}}}"#)?;
    }
    f.flush()
}

struct SparkRun {
    startup: Option<f64>,
    csv_query: Option<f64>,
    parquet_query: Option<f64>,
    wall: Duration,
    agreed: bool,
    output: String,
}

/// The seconds printed after `prefix` on a line of the job's output.
fn seconds_after(output: &str, prefix: &str) -> Option<f64> {
    output.lines().find_map(|l| {
        let rest = l.split_once(prefix)?.1.trim_start();
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn spark(csv: &Path, parquet: &Path, expected: &Path) -> Result<SparkRun, String> {
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/spark/hot_readings.py");
    let started = Instant::now();
    let out = Command::new("python3")
        .arg(&job)
        .arg("--csv")
        .arg(csv)
        .arg("--parquet")
        .arg(parquet)
        .arg("--expected")
        .arg(expected)
        .args(["--master", "local[*]", "--show", "0"])
        .output()
        .map_err(|e| format!("python3 could not be started: {e}"))?;
    let wall = started.elapsed();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(SparkRun {
        startup: seconds_after(&output, "started in"),
        csv_query: seconds_after(&output, "csv query:"),
        parquet_query: seconds_after(&output, "parquet query:"),
        wall,
        agreed: out.status.success(),
        output,
    })
}

/// Variants of the windowed rule, each doing a subset of its work, for the breakdown.
const BREAKDOWN: [(&str, &str); 5] = [
    (
        "WHERE false for every reading (payload read + WHERE only)",
        "SELECT device_id, count(*) AS hot FROM 'telemetry/+/temperature' WHERE temperature > 1000 \
         GROUP BY device_id, TUMBLINGWINDOW(dd, 1) TIMESTAMP BY timestamp * 1000",
    ),
    (
        "no key (one group per window)",
        "SELECT count(*) AS hot FROM 'telemetry/+/temperature' WHERE temperature > 25 \
         GROUP BY TUMBLINGWINDOW(dd, 1) TIMESTAMP BY timestamp * 1000",
    ),
    (
        "arrival time (no TIMESTAMP BY)",
        "SELECT device_id, count(*) AS hot FROM 'telemetry/+/temperature' WHERE temperature > 25 \
         GROUP BY device_id, TUMBLINGWINDOW(dd, 1)",
    ),
    ("the windowed rule", SQL),
    (
        "per-message Rule::evaluate of the same filter, no window \
         (SELECT device_id, timestamp * 1000 AS t ... WHERE temperature > 25)",
        "SELECT device_id, timestamp * 1000 AS t FROM 'telemetry/+/temperature' \
         WHERE temperature > 25",
    ),
];

/// Where the rules engine's time goes: the first `n` readings as pre-built messages (no CSV,
/// no formatting), through each variant; the minimum of `rounds` runs.
fn breakdown(csv: &Path, n: usize, rounds: usize) -> Result<(), String> {
    let mut messages: Vec<(String, String, u64)> = Vec::with_capacity(n);
    let (mut topic, mut payload) = (String::new(), String::new());
    let mut reader = BufReader::new(File::open(csv).map_err(|e| e.to_string())?);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    while messages.len() < n {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let mut f = line.trim_end().split(',');
        if let (Some(d), Some(t), Some(ts)) = (f.next(), f.next(), f.next()) {
            let m = message_for(&mut topic, &mut payload, d, t, ts);
            let built = (
                m.topic.to_owned(),
                String::from_utf8_lossy(m.payload).into_owned(),
            );
            messages.push((built.0, built.1, m.timestamp_ms));
        }
    }
    let env = BenchEnv;
    let limits = Limits::default();
    eprintln!();
    eprintln!(
        "breakdown: {} pre-built messages, min of {rounds} runs, ns per message",
        messages.len()
    );
    for (what, sql) in BREAKDOWN {
        let rule = Rule::compile(sql, SqlVersion::V2016_03_23, &limits)
            .map_err(|e| format!("{sql}: {e}"))?;
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            if rule.is_windowed() {
                let mut w = Windows::new(&rule, WindowLimits::default())
                    .map_err(|e| format!("{sql}: {e}"))?;
                for (topic, payload, ts) in &messages {
                    let m = Message {
                        topic,
                        payload: payload.as_bytes(),
                        client_id: None,
                        principal: None,
                        timestamp_ms: *ts,
                    };
                    std::hint::black_box(w.push(&m, &env).map_err(|e| e.to_string())?);
                }
                std::hint::black_box(w.flush());
            } else {
                for (topic, payload, ts) in &messages {
                    let m = Message {
                        topic,
                        payload: payload.as_bytes(),
                        client_id: None,
                        principal: None,
                        timestamp_ms: *ts,
                    };
                    let _ = std::hint::black_box(rule.evaluate(&m, &env, &limits));
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "  {:>6.0} ns  {what}",
            best * 1e9 / messages.len().max(1) as f64
        );
    }
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for (_, payload, _) in &messages {
            let _ = std::hint::black_box(serde_json::from_slice::<serde_json::Value>(
                payload.as_bytes(),
            ));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "  {:>6.0} ns  serde_json::from_slice::<Value> of the same payloads (floor)",
        best * 1e9 / messages.len().max(1) as f64
    );
    Ok(())
}

fn fmt_rate(n: usize, secs: f64) -> String {
    format!("{:.2} M readings/s", n as f64 / secs / 1e6)
}

fn main() -> Result<(), String> {
    // `cargo bench` passes `--bench`; this binary takes no arguments of its own.
    let readings = env_usize("RULES_BENCH_READINGS", 10_000_000);
    let devices = env_usize("RULES_BENCH_DEVICES", 10_000).max(1);
    let with_spark = std::env::var("RULES_BENCH_SPARK").map_or(true, |v| v != "0");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rules-windowed-{readings}-{devices}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let csv = dir.join("iot_data.csv");
    let parquet = dir.join("telemetry");
    let expected = dir.join("hot_per_device.jsonl");

    if !csv.exists() {
        let t = Instant::now();
        generate_csv(&csv, readings, devices).map_err(|e| e.to_string())?;
        eprintln!(
            "generated {} in {:.1} s",
            csv.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if with_spark && !parquet.join("_SUCCESS").exists() {
        let t = Instant::now();
        convert_to_parquet(&csv, &parquet)?;
        eprintln!(
            "wrote {} in {:.1} s (Spark)",
            parquet.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let csv_mib = std::fs::metadata(&csv).map_err(|e| e.to_string())?.len() as f64 / 1048576.0;
    eprintln!("{readings} readings, {devices} devices, CSV {csv_mib:.0} MiB");

    let t = Instant::now();
    let floor_answer = floor(&csv).map_err(|e| e.to_string())?;
    let floor_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let payload_bytes = payloads_only(&csv).map_err(|e| e.to_string())?;
    let payloads_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (ours, outputs) = thingkit(&csv)?;
    let ours_s = t.elapsed().as_secs_f64();
    let hot: u64 = ours.values().sum();
    eprintln!(
        "thingkit: {outputs} window outputs, {} devices with hot readings, {hot} hot readings \
         ({:.0} B per payload)",
        ours.len(),
        payload_bytes as f64 / readings as f64
    );
    eprintln!(
        "floor {floor_s:.2} s, payloads only {payloads_s:.2} s, thingkit {ours_s:.2} s; now Spark"
    );
    if ours != floor_answer {
        let differing = floor_answer
            .iter()
            .filter(|(d, n)| ours.get(*d) != Some(n))
            .count()
            + ours
                .keys()
                .filter(|d| !floor_answer.contains_key(*d))
                .count();
        return Err(format!(
            "thingkit's windowed answer differs from the plain count on {differing} devices"
        ));
    }
    write_jsonl(&expected, &ours).map_err(|e| e.to_string())?;

    let spark_run = if with_spark {
        let run = spark(&csv, &parquet, &expected)?;
        if !run.agreed {
            eprintln!("{}", run.output);
            return Err(if run.output.contains("MISMATCH") {
                "Spark's answer differs from thingkit's (above)".into()
            } else {
                "the Spark job failed (above)".into()
            });
        }
        Some(run)
    } else {
        None
    };

    let breakdown_n = env_usize("RULES_BENCH_BREAKDOWN", 1_000_000);
    if breakdown_n > 0 {
        breakdown(&csv, breakdown_n, 3)?;
    }

    let rules_only = ours_s - payloads_s;
    println!();
    println!(
        "readings above 25 °C per device: {readings} readings, {devices} devices, one day \
         ({} devices hot, {hot} hot readings); answers agree{}",
        ours.len(),
        if spark_run.is_some() {
            " (thingkit, plain count, Spark CSV, Spark Parquet)"
        } else {
            " (thingkit, plain count)"
        }
    );
    println!();
    println!("| what | wall time | throughput |");
    println!("|---|---|---|");
    println!(
        "| plain Rust count over the CSV (floor, 1 thread) | {floor_s:.2} s | {} |",
        fmt_rate(readings, floor_s)
    );
    println!(
        "| CSV read + building each device's JSON message, no rule (1 thread) | {payloads_s:.2} s | {} |",
        fmt_rate(readings, payloads_s)
    );
    println!(
        "| **thingkit** windowed rule: the above + JSON parse + WHERE + per-device count (1 thread) | {ours_s:.2} s | {} |",
        fmt_rate(readings, ours_s)
    );
    println!(
        "| of which the rules engine (difference of the two rows above) | {rules_only:.2} s | {:.0} ns per message |",
        rules_only * 1e9 / readings as f64
    );
    if let Some(run) = &spark_run {
        let show = |v: Option<f64>| v.map_or("?".to_owned(), |s| format!("{s:.2} s"));
        let rate = |v: Option<f64>| v.map_or(String::new(), |s| fmt_rate(readings, s));
        println!(
            "| Spark local[*] start (JVM + session) | {} | |",
            show(run.startup)
        );
        println!(
            "| **Spark** CSV query (inferSchema + filter + groupBy + count; 2 cores) | {} | {} |",
            show(run.csv_query),
            rate(run.csv_query)
        );
        println!(
            "| **Spark** Parquet query (2 cores) | {} | {} |",
            show(run.parquet_query),
            rate(run.parquet_query)
        );
        println!(
            "| Spark process, start to exit (python3 hot_readings.py) | {:.2} s | |",
            run.wall.as_secs_f64()
        );
        if let Some(q) = run.csv_query {
            println!();
            println!(
                "thingkit (1 core, whole pipeline incl. JSON) vs Spark CSV query (2 cores, no start): \
                 {:.2}x; vs the Spark process: {:.2}x",
                q / ours_s,
                run.wall.as_secs_f64() / ours_s
            );
        }
    }
    Ok(())
}
