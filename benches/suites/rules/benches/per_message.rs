//! thingkit-rules per message: `Rule::evaluate` against the floor, and a 10-rule set.
//!
//! - `per_message/<stream>/serde_json_floor`: `serde_json::from_slice::<serde_json::Value>` on the
//!   payload bytes — the least any engine that reads JSON must do with them.
//! - `per_message/<stream>/serde_json_validate`: `serde_json::from_slice::<IgnoredAny>`, which
//!   checks that the bytes are JSON without building anything — the floor of an engine that, like
//!   thingkit's, validates the whole payload but builds only the members the statement reads.
//! - `per_message/<stream>/rule_evaluate`: `Rule::evaluate` of
//!   `SELECT temperature, topic(2) AS device FROM 'telemetry/+/temp' WHERE temperature > 25` on
//!   the same bytes (payload parse, WHERE, SELECT, the output value).
//!
//!   Streams: `device_report_1kb`, one realistic ~1 KB device report (nested objects, arrays,
//!   strings, ints, decimals); `reading_70b`, the quick start's three-field reading (the
//!   payload of `windowed_10m`); `mixed`, ten messages of several shapes and sizes — three where
//!   WHERE is false or Undefined, a numeric string, one non-JSON payload.
//! - `ten_rules/mixed`: ten rules (filters, projections, functions, CASE, an object literal,
//!   string operations, `*` on a binary payload) each evaluated on every message of the mixed
//!   stream: messages per second on one core.
//!
//! Besides criterion's means, the ratios are printed from the minimum over `PAIRED_ROUNDS`
//! interleaved rounds in which every contender runs once on the same stream (robust to the
//! shared machine's noisy neighbours), with a breakdown of where `rule_evaluate`'s time goes
//! (payload read, WHERE, SELECT, serializing the output) from rules that do a subset of the
//! work, and the cost of each of the ten rules alone.
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-rules --bench per_message

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use serde::de::IgnoredAny;
use thingkit_rules::{Environment, Limits, Message, Output, Rule, SqlVersion};

const PAIRED_ROUNDS: usize = 300;

/// The rule measured against the floor.
const RULE: &str =
    "SELECT temperature, topic(2) AS device FROM 'telemetry/+/temp' WHERE temperature > 25";

/// Ten rules a fleet might run on the same telemetry topic.
const TEN_RULES: [&str; 10] = [
    // 1. The reference filter.
    RULE,
    // 2. A filter on a nested field, passing the whole payload.
    "SELECT * FROM 'telemetry/+/temp' WHERE battery.level < 20 OR status = 'alarm'",
    // 3. A projection of nested fields.
    "SELECT device_id, location.lat AS lat, location.lon AS lon, firmware.version AS fw \
     FROM 'telemetry/+/temp'",
    // 4. Arithmetic and math functions.
    "SELECT round((temperature * 9 / 5 + 32) * 10) / 10 AS fahrenheit, abs(network.rssi) AS signal, \
     sqrt(humidity) AS h FROM 'telemetry/+/temp' WHERE temperature > 0",
    // 5. CASE.
    "SELECT CASE status WHEN 'ok' THEN 0 WHEN 'warn' THEN 1 WHEN 'alarm' THEN 2 ELSE 3 END \
     AS severity, topic(2) AS device FROM 'telemetry/+/temp'",
    // 6. A nested object built in SELECT.
    "SELECT topic(2) AS device, {'temperature': temperature, 'humidity': humidity, \
     'battery': battery.level} AS reading FROM 'telemetry/+/temp' WHERE humidity > 0",
    // 7. String operations.
    "SELECT upper(status) AS status, concat(topic(2), '/', firmware.channel) AS key, \
     substring(firmware.version, 0, 4) AS major, startswith(topic(2), 'dev-') AS ours \
     FROM 'telemetry/+/temp'",
    // 8. Message metadata functions.
    "SELECT timestamp() AS received, clientid() AS client, newuuid() AS id, temperature \
     FROM 'telemetry/+/temp' WHERE NOT isUndefined(temperature)",
    // 9. Array access.
    "SELECT get(readings, 0) AS first, get(sensors, 1).value AS second, \
     get(sensors, 0).name AS name FROM 'telemetry/+/temp' WHERE isUndefined(readings) = false",
    // 10. The raw payload, whatever it is.
    "SELECT encode(*, 'base64') AS raw, topic() AS topic FROM 'telemetry/+/temp'",
];

/// Rules that each do a subset of `RULE`'s work, for the breakdown.
const SUBSET_RULES: [(&str, &str); 3] = [
    (
        "payload parse + a constant (WHERE false on a constant)",
        "SELECT 1 AS one FROM 'telemetry/+/temp' WHERE 1 = 2",
    ),
    (
        "payload parse + WHERE (always false: `temperature > 1000`)",
        "SELECT temperature, topic(2) AS device FROM 'telemetry/+/temp' WHERE temperature > 1000",
    ),
    (
        "payload parse + SELECT (no WHERE)",
        "SELECT temperature, topic(2) AS device FROM 'telemetry/+/temp'",
    ),
];

/// A fixed environment: randomness is an input, and the bench wants none.
struct BenchEnv;

impl Environment for BenchEnv {
    fn new_uuid(&self) -> String {
        "6f1c9a3e-2b7d-4c1a-9f3e-0d5b8a7c6e21".to_owned()
    }
    fn random(&self) -> f64 {
        0.5
    }
}

/// One owned message of the stream.
struct Owned {
    topic: String,
    payload: Vec<u8>,
}

impl Owned {
    fn message(&self) -> Message<'_> {
        Message {
            topic: &self.topic,
            payload: &self.payload,
            client_id: Some("dev-0042"),
            principal: Some("4f0a6c1e9b2d"),
            timestamp_ms: 1_764_115_200_123,
        }
    }
}

/// A realistic device report of about 1 KB: the shape of a cellular environmental sensor's
/// periodic message.
fn device_report(device: &str, temperature: &str, status: &str, battery: u32) -> String {
    format!(
        r#"{{"device_id":"{device}","timestamp":1764115200123,"seq":48213,"temperature":{temperature},"humidity":41.25,"pressure":1013.2,"status":"{status}","battery":{{"level":{battery},"voltage":3.71,"charging":false,"health":"good","cycles":212}},"location":{{"lat":52.520008,"lon":13.404954,"alt":34.5,"fix":"3d","satellites":9,"hdop":0.9}},"firmware":{{"version":"2.14.3","build":"a1b2c3d4","channel":"stable","updated":1763510400}},"network":{{"type":"lte-m","rssi":-67,"rsrp":-97,"snr":9.5,"operator":"Example Mobile","cell":{{"mcc":262,"mnc":1,"tac":4321,"cid":98765}}}},"sensors":[{{"name":"t1","value":{temperature},"unit":"C","ok":true}},{{"name":"t2","value":27.1,"unit":"C","ok":true}},{{"name":"h1","value":41.25,"unit":"%","ok":true}},{{"name":"p1","value":1013.2,"unit":"hPa","ok":false}}],"readings":[27.1,27.2,27.4,27.3,27.5,27.4,27.6,27.4,27.3,27.2,27.1,27.0],"alarms":[],"tags":["greenhouse","north","row-7","zone-b"],"uptime_s":864213,"errors":{{"count":2,"last":"sensor t2 read timeout","at":1764111600000}},"config":{{"interval_s":60,"threshold":25.0,"report_raw":false}}}}"#
    )
}

fn single_report() -> Vec<Owned> {
    vec![Owned {
        topic: "telemetry/dev-0042/temp".into(),
        payload: device_report("dev-0042", "27.4", "ok", 76).into_bytes(),
    }]
}

/// The quick start's reading, as the windowed benchmark publishes it (70 bytes).
fn small_reading() -> Vec<Owned> {
    vec![Owned {
        topic: "telemetry/sensor-00042/temp".into(),
        payload: br#"{"device_id":"sensor-00042","temperature":26.3,"timestamp":1764115200}"#
            .to_vec(),
    }]
}

/// Ten messages: the mixed stream.
fn mixed() -> Vec<Owned> {
    let m = |device: &str, payload: Vec<u8>| Owned {
        topic: format!("telemetry/{device}/temp"),
        payload,
    };
    vec![
        // 1 KB reports: hot, cold (WHERE false), low battery in alarm.
        m("dev-0042", device_report("dev-0042", "27.4", "ok", 76).into_bytes()),
        m("dev-0107", device_report("dev-0107", "19.5", "ok", 88).into_bytes()),
        m("dev-0311", device_report("dev-0311", "31.25", "alarm", 12).into_bytes()),
        // A small sensor: two fields.
        m("dev-1001", br#"{"temperature":31.5,"humidity":40}"#.to_vec()),
        // A medium report (~300 B), WHERE false.
        m(
            "dev-2002",
            br#"{"device_id":"dev-2002","timestamp":1764115260000,"temperature":22.0,"humidity":55.5,"status":"warn","battery":{"level":54,"voltage":3.62},"firmware":{"version":"1.9.0","channel":"beta"},"readings":[22.1,22.0,21.9],"sensors":[{"name":"t1","value":22.0}],"network":{"rssi":-81}}"#
                .to_vec(),
        ),
        // A numeric string: `>` converts it, so WHERE is true.
        m("dev-3003", br#"{"temperature":"29.0","status":"ok","unit":"C"}"#.to_vec()),
        // No temperature: WHERE is Undefined.
        m(
            "dev-4004",
            br#"{"humidity":61.0,"status":"warn","battery":{"level":33}}"#.to_vec(),
        ),
        // An integer temperature, with an array of samples.
        m(
            "dev-5005",
            br#"{"device_id":"dev-5005","temperature":26,"samples":[{"t":26,"ts":1764115200},{"t":26,"ts":1764115230}],"status":"ok"}"#
                .to_vec(),
        ),
        // Not JSON: a compact binary frame (CBOR-like bytes with a NUL and high bytes).
        m(
            "dev-6006",
            vec![
                0xa2, 0x64, b't', b'e', b'm', b'p', 0xfb, 0x40, 0x3d, 0x80, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x63, b'b', b'a', b't', 0x18, 0x4c, 0x00, 0xff,
            ],
        ),
        // Another 1 KB report, hot.
        m("dev-7007", device_report("dev-7007", "25.5", "ok", 91).into_bytes()),
    ]
}

fn compile(sql: &str) -> Rule {
    Rule::compile(sql, SqlVersion::V2016_03_23, &Limits::default())
        .unwrap_or_else(|e| panic!("bench rule compiles: {sql}: {e}"))
}

#[inline(never)]
fn floor_pass(stream: &[Owned]) -> usize {
    let mut ok = 0;
    for m in stream {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(black_box(&m.payload)) {
            black_box(&v);
            ok += 1;
        }
    }
    ok
}

#[inline(never)]
fn validate_pass(stream: &[Owned]) -> usize {
    stream
        .iter()
        .filter(|m| serde_json::from_slice::<IgnoredAny>(black_box(&m.payload)).is_ok())
        .count()
}

/// `rule_pass` plus the output serialized as the actions would send it.
#[inline(never)]
fn rule_serialize_pass(rule: &Rule, stream: &[Owned], limits: &Limits) -> usize {
    let env = BenchEnv;
    let mut bytes = 0;
    for m in stream {
        match rule.evaluate(black_box(&m.message()), &env, limits) {
            Ok(Some(Output::Json(v))) => bytes += black_box(v.to_json_string()).len(),
            Ok(Some(Output::Binary(b))) => bytes += b.len(),
            _ => {}
        }
    }
    bytes
}

#[inline(never)]
fn rule_pass(rule: &Rule, stream: &[Owned], limits: &Limits) -> usize {
    let env = BenchEnv;
    let mut out = 0;
    for m in stream {
        if let Ok(Some(o)) = rule.evaluate(black_box(&m.message()), &env, limits) {
            black_box(&o);
            out += 1;
        }
    }
    out
}

#[inline(never)]
fn rules_pass(rules: &[Rule], stream: &[Owned], limits: &Limits) -> usize {
    let env = BenchEnv;
    let mut out = 0;
    for m in stream {
        let message = m.message();
        for rule in rules {
            if let Ok(Some(o)) = rule.evaluate(black_box(&message), &env, limits) {
                black_box(&o);
                out += 1;
            }
        }
    }
    out
}

/// The minimum over interleaved rounds of each closure, in that order.
fn paired_min(rounds: usize, mut contenders: Vec<&mut dyn FnMut()>) -> Vec<Duration> {
    let mut best = vec![Duration::MAX; contenders.len()];
    for _ in 0..rounds {
        for (i, f) in contenders.iter_mut().enumerate() {
            let t = Instant::now();
            f();
            let d = t.elapsed();
            if let Some(b) = best.get_mut(i) {
                *b = (*b).min(d);
            }
        }
    }
    best
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e9 / n as f64
}

fn per_message(c: &mut Criterion) {
    let limits = Limits::default();
    let rule = compile(RULE);
    let subsets: Vec<(&str, Rule)> = SUBSET_RULES
        .iter()
        .map(|(what, sql)| (*what, compile(sql)))
        .collect();
    for (name, stream) in [
        ("device_report_1kb", single_report()),
        ("reading_70b", small_reading()),
        ("mixed", mixed()),
    ] {
        let bytes: usize = stream.iter().map(|m| m.payload.len()).sum();
        let outputs = rule_pass(&rule, &stream, &limits);
        eprintln!(
            "{name}: {} message(s), {bytes} payload bytes, {} parse as JSON, the rule outputs {outputs}",
            stream.len(),
            floor_pass(&stream),
        );
        let mut g = c.benchmark_group(format!("per_message/{name}"));
        g.throughput(Throughput::Elements(stream.len() as u64));
        g.bench_function("serde_json_floor", |b| b.iter(|| floor_pass(&stream)));
        g.bench_function("serde_json_validate", |b| b.iter(|| validate_pass(&stream)));
        g.bench_function("rule_evaluate", |b| {
            b.iter(|| rule_pass(&rule, &stream, &limits))
        });
        g.finish();

        let n = stream.len();
        let mut floor = || {
            black_box(floor_pass(&stream));
        };
        let mut ours = || {
            black_box(rule_pass(&rule, &stream, &limits));
        };
        let mut validate = || {
            black_box(validate_pass(&stream));
        };
        let mut serialize = || {
            black_box(rule_serialize_pass(&rule, &stream, &limits));
        };
        let mut subset_fns: Vec<Box<dyn FnMut()>> = subsets
            .iter()
            .map(|(_, r)| {
                let stream = &stream;
                let limits = &limits;
                Box::new(move || {
                    black_box(rule_pass(r, stream, limits));
                }) as Box<dyn FnMut()>
            })
            .collect();
        let mut contenders: Vec<&mut dyn FnMut()> =
            vec![&mut floor, &mut ours, &mut validate, &mut serialize];
        for f in subset_fns.iter_mut() {
            contenders.push(f.as_mut());
        }
        let best = paired_min(PAIRED_ROUNDS, contenders);
        let (Some(f), Some(o), Some(v), Some(ser)) =
            (best.first(), best.get(1), best.get(2), best.get(3))
        else {
            continue;
        };
        eprintln!(
            "{name}, min of {PAIRED_ROUNDS} interleaved rounds: serde_json {:.0} ns/msg, \
             Rule::evaluate {:.0} ns/msg: {:.2}x the floor",
            ns_per(*f, n),
            ns_per(*o, n),
            o.as_secs_f64() / f.as_secs_f64()
        );
        eprintln!(
            "  serde_json validating only (IgnoredAny) {:.0} ns/msg: Rule::evaluate is {:.2}x that",
            ns_per(*v, n),
            o.as_secs_f64() / v.as_secs_f64()
        );
        eprintln!(
            "  breakdown: Rule::evaluate + serializing the output (Value::to_json_string): {:.0} ns/msg",
            ns_per(*ser, n)
        );
        for ((what, _), d) in subsets.iter().zip(best.iter().skip(4)) {
            eprintln!(
                "  breakdown: {what}: {:.0} ns/msg ({:.2}x the floor)",
                ns_per(*d, n),
                d.as_secs_f64() / f.as_secs_f64()
            );
        }
    }
}

fn ten_rules(c: &mut Criterion) {
    let limits = Limits::default();
    let rules: Vec<Rule> = TEN_RULES.iter().map(|sql| compile(sql)).collect();
    let stream = mixed();
    let env = BenchEnv;
    for (i, rule) in rules.iter().enumerate() {
        let outputs = stream
            .iter()
            .filter(|m| matches!(rule.evaluate(&m.message(), &env, &limits), Ok(Some(_))))
            .count();
        eprintln!(
            "ten_rules: rule {} outputs for {outputs} of {} messages",
            i + 1,
            stream.len()
        );
    }
    let mut g = c.benchmark_group("ten_rules");
    g.throughput(Throughput::Elements(stream.len() as u64));
    g.bench_function("mixed", |b| b.iter(|| rules_pass(&rules, &stream, &limits)));
    g.finish();
    let mut run = || {
        black_box(rules_pass(&rules, &stream, &limits));
    };
    let mut each: Vec<Box<dyn FnMut()>> = rules
        .iter()
        .map(|r| {
            let (stream, limits) = (&stream, &limits);
            Box::new(move || {
                black_box(rule_pass(r, stream, limits));
            }) as Box<dyn FnMut()>
        })
        .collect();
    let mut contenders: Vec<&mut dyn FnMut()> = vec![&mut run];
    for f in each.iter_mut() {
        contenders.push(f.as_mut());
    }
    let best = paired_min(PAIRED_ROUNDS, contenders);
    for (i, d) in best.iter().skip(1).enumerate() {
        eprintln!(
            "  rule {} alone: {:.0} ns per message",
            i + 1,
            ns_per(*d, stream.len())
        );
    }
    if let Some(d) = best.first() {
        eprintln!(
            "ten_rules/mixed, min of {PAIRED_ROUNDS} rounds: {:.0} ns per message (10 rules), \
             {:.0} messages/s on one core",
            ns_per(*d, stream.len()),
            stream.len() as f64 / d.as_secs_f64()
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    per_message(&mut c);
    ten_rules(&mut c);
    c.final_summary();
}
