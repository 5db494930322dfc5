//! Windowed aggregation: thingkit's opt-in `GROUP BY` extension of AWS IoT SQL.
//!
//! AWS IoT SQL sees one message at a time: it has no `GROUP BY`, no aggregate functions and no
//! windows. thingkit adds them as an extension a rule opts into by writing a `GROUP BY` clause;
//! a statement without one is plain AWS IoT SQL and runs through [`Rule::evaluate`]. A windowed
//! rule runs in a [`Windows`] instead: messages go in with [`Windows::push`], and one output per
//! (window, key) group comes out when its window closes ([`Windows::advance`]) or when the caller
//! ends a batch ([`Windows::flush`]).
//!
//! # Syntax
//!
//! ```text
//! SELECT topic(2) AS device_id, count(*) AS hot, avg(temperature) AS mean,
//!        window_start() AS start
//! FROM 'telemetry/+/temperature'
//! WHERE temperature > 25
//! GROUP BY topic(2), TUMBLINGWINDOW(mi, 5)
//! TIMESTAMP BY timestamp * 1000
//! LATENESS(ss, 30)
//! ```
//!
//! - `GROUP BY key, ..., window`: zero or more key expressions and exactly one window.
//!   - `TUMBLINGWINDOW(unit, size)`: contiguous windows `[k·size, (k+1)·size)`.
//!   - `HOPPINGWINDOW(unit, size, hop)`: windows of `size` starting at every multiple of `hop`
//!     (`hop <= size`), so an event belongs to about `size / hop` windows.
//!   - Units: `ms`, `ss`, `mi`, `hh`, `dd`. Windows are aligned to the Unix epoch (a 5-minute
//!     window starts at a multiple of 300,000 ms since 1970-01-01T00:00:00Z).
//! - `TIMESTAMP BY expr` (optional): the event time, in milliseconds since the epoch, read from
//!   the message. Without it the window runs on arrival time (`Message::timestamp_ms`).
//! - `LATENESS(unit, n)` (optional, default zero): how long after a window's end an event for
//!   it is still counted.
//! - Aggregates, allowed only in SELECT items and never nested:
//!
//!   | aggregate | result |
//!   |---|---|
//!   | `count(*)` | the number of events in the group (Int) |
//!   | `count(expr)` | the number of events where `expr` is neither Undefined nor Null (Int) |
//!   | `sum(expr)` | the exact sum: Ints in 128-bit integers, Decimals with 34 digits; Int while every input is an Int and the sum has at most 34 digits, else Decimal |
//!   | `avg(expr)` | the sum divided by the number of numeric inputs (Decimal, 34 digits) |
//!   | `min(expr)`, `max(expr)` | the smallest / largest numeric input, as it was (Int or Decimal) |
//!   | `percentile(expr, p)` | the exact `p`-quantile (`p` a number literal in `[0, 1]`), linear interpolation between the two closest ranks (`PERCENTILE_CONT`); `percentile(x, 0.5)` is the median |
//!
//!   `sum`, `avg`, `min`, `max` and `percentile` read numbers: Int, Decimal, and strings that
//!   are numbers by AWS's conversion rule (`"30"`); every other input is ignored. With no
//!   numeric input they are Undefined, so the item is left out of the output, as AWS leaves out
//!   every Undefined item.
//! - `window_start()` and `window_end()`: the group's window bounds, Int milliseconds since the
//!   epoch (the end is exclusive).
//! - Under SQL version 2016-03-23, a whole-number Decimal result of an aggregate (an `avg` of
//!   `2` and `4`) is an Int, as every other value of that version.
//!
//! A SELECT item must be computable when the window closes, from the group alone: each item is
//! either a GROUP BY key expression (structurally equal: `topic(2)` in both places), or built
//! with operators and functions only from keys, aggregates, `window_start()`, `window_end()`
//! and literals (`round(avg(t), 1)`, `sum(x) / count(*)`, `upper(topic(2))` when `topic(2)` is
//! a key). A bare payload field that is not a key, a SET variable that is not a key, `*`, a
//! nested query, and functions that read the message (`topic()`, `clientid()`, `timestamp()`,
//! ...) outside a key are refused by [`Rule::compile`] (and [`Windows::new`]), with the
//! `line:column` of the offending expression ([`Error::Window`]). So are an aggregate outside SELECT (in SET, WHERE,
//! a key or TIMESTAMP BY), a nested aggregate, and `SELECT *`. `SELECT VALUE item` outputs the
//! item itself instead of an object.
//!
//! An output object's keys are the items' aliases; an item without `AS` is named as a
//! per-message rule names it: a field `a.b.c` is `c`, a variable `@v` is `v`, a call is the
//! function's name (`count(*)` is `count`), any other expression is `_N`, N being its 1-based
//! position in the SELECT list.
//!
//! # Example
//!
//! A sans-IO driver pushes messages, and calls `advance` with the clock at
//! [`Windows::next_deadline`]:
//!
//! ```
//! use thingkit_rules::{
//!     Environment, Limits, Message, Output, Pushed, Rule, SqlVersion, Value, WindowLimits, Windows,
//! };
//!
//! struct Env;
//! impl Environment for Env {
//!     fn new_uuid(&self) -> String {
//!         String::new()
//!     }
//!     fn random(&self) -> f64 {
//!         0.0
//!     }
//! }
//!
//! let sql = "SELECT topic(2) AS device_id, count(*) AS hot, avg(temperature) AS mean, \
//!            window_start() AS start FROM 'telemetry/+/temperature' WHERE temperature > 25 \
//!            GROUP BY topic(2), TUMBLINGWINDOW(mi, 5) TIMESTAMP BY timestamp * 1000 \
//!            LATENESS(ss, 30)";
//! let rule = Rule::compile(sql, SqlVersion::V2016_03_23, &Limits::default())?;
//! let mut windows = Windows::new(&rule, WindowLimits::default())?;
//! let message = |payload: &'static str, arrival_ms| Message {
//!     topic: "telemetry/d1/temperature",
//!     payload: payload.as_bytes(),
//!     client_id: Some("d1"),
//!     principal: None,
//!     timestamp_ms: arrival_ms,
//! };
//! for (payload, arrival_ms) in [
//!     (r#"{"temperature": 26, "timestamp": 1700000000}"#, 1_700_000_000_100),
//!     (r#"{"temperature": 20, "timestamp": 1700000001}"#, 1_700_000_001_100),
//!     (r#"{"temperature": 27.5, "timestamp": 1700000002}"#, 1_700_000_002_100),
//! ] {
//!     windows.push(&message(payload, arrival_ms), &Env)?;
//! }
//! assert_eq!(windows.stats().filtered, 1);
//! // The window [1699999800000, 1700000100000) closes 30 s after its end.
//! assert_eq!(windows.next_deadline(), Some(1_700_000_130_000));
//! assert!(windows.advance(1_700_000_129_999).is_empty());
//! let outputs = windows.advance(1_700_000_130_000);
//! let [Output::Json(Value::Object(row))] = outputs.as_slice() else {
//!     panic!("one output object");
//! };
//! assert_eq!(row.get("device_id"), Some(&Value::String("d1".into())));
//! assert_eq!(row.get("hot"), Some(&Value::Int(2)));
//! assert_eq!(row.get("mean").map(Value::to_json_string).as_deref(), Some("26.75"));
//! assert_eq!(row.get("start"), Some(&Value::Int(1_699_999_800_000)));
//! // An event for that window is now late.
//! let late = message(r#"{"temperature": 30, "timestamp": 1700000003}"#, 1_700_000_131_000);
//! assert_eq!(windows.push(&late, &Env)?, Pushed::Late);
//! # Ok::<(), thingkit_rules::Error>(())
//! ```
//!
//! # What happens to one message ([`Windows::push`])
//!
//! 1. The SET clause, then WHERE, exactly as a per-message rule: unless WHERE is exactly
//!    `true` the message is [`Pushed::Filtered`].
//! 2. The keys are evaluated. An Undefined key is a key like any other: the messages whose key
//!    is Undefined form their own group (as SQL groups NULLs), and the output leaves that key
//!    out (Undefined is never output). Undefined and Null are different keys; an Int `5` and a
//!    Decimal `5.0` are the same key (the first one seen is output). A key list whose
//!    canonical encoding is longer than [`WindowLimits::max_key_bytes`] is
//!    [`Pushed::KeyTooLarge`].
//! 3. The event time: `TIMESTAMP BY` must give an Int or a Decimal (rounded down to a whole
//!    millisecond) between 0 and [`u64::MAX`]; anything else (Undefined, a string, a negative
//!    number) is [`Pushed::NoTimestamp`]. An event time more than
//!    [`WindowLimits::max_event_ahead_ms`] after the message's arrival time is
//!    [`Pushed::Future`]: one device with a wrong clock must not close every window.
//! 4. The event goes into each of its windows (one for tumbling, about `size / hop` for
//!    hopping) whose window is still open. If every one of its windows is closed, the event is
//!    [`Pushed::Late`]. A window with no group yet for this key gets a new group, unless
//!    [`WindowLimits::max_groups`] groups are open: then the event is
//!    [`Pushed::OverCapacity`] (and still counted in those of its windows that had room).
//!    No group is ever evicted to make room.
//!
//! Every outcome is counted in [`WindowStats`].
//!
//! # When a window closes
//!
//! The engine keeps two clocks: the largest event time pushed to it (for an arrival-time
//! window, the largest `Message::timestamp_ms`) and the largest `now_ms` given to
//! [`Windows::advance`] (arrival time). The *watermark* is the larger of the two minus the
//! lateness. A window `[start, end)` is **closed** once `end <= watermark`, that is:
//!
//! - for event time, once an event at `end + lateness` or later has been seen (the stream has
//!   moved on), **or** once arrival time has passed `end + lateness` (so a quiet stream still
//!   emits);
//! - for arrival time, once arrival time has passed `end + lateness`.
//!
//! An event for a closed window is late. [`Windows::advance`] records `now_ms` and returns the
//! output of every open group whose window is closed. [`Windows::flush`] returns every open
//! group and closes the windows up to the latest end it emitted (a later event for them is
//! late), for a shutdown or the end of a batch. [`Windows::next_deadline`] tells a driver the
//! arrival time at which `advance` will next have something to emit, so it can sleep until
//! then.
//!
//! With `TIMESTAMP BY`, the lateness must cover both the delivery delay and how far device
//! clocks lag the arrival clock: an event whose event time is more than the lateness behind
//! the arrival time given to `advance` finds its window closed. Replaying history: push the
//! messages and call [`Windows::flush`]; do not call `advance` with the wall clock in between
//! (it would close the old windows).
//!
//! Outputs come in (window end, key) order: by window end, then, within one window end, by the
//! keys' canonical encoding (Undefined, Null, Booleans, numbers, strings, arrays, objects; Ints
//! in numeric order, strings in byte order). No hash-map order reaches the output.
//!
//! # Limits and memory
//!
//! Every limit is a field of [`WindowLimits`] with a safe default. Memory is bounded by
//! `max_groups × (key + aggregates)` plus the compiled statement, where a group's key costs
//! its canonical encoding (at most `max_key_bytes`) and its values (the same order of size),
//! and each aggregate a fixed-size state (about 100 bytes: a count, a 128-bit sum and a
//! 34-digit Decimal), except `percentile`, which costs up to `max_percentile_values` numbers
//! (about 64 bytes each). Past [`WindowLimits::max_percentile_values`] values a group's
//! percentile gives up: its values are freed, the item is Undefined (left out of the
//! output) and [`WindowStats::percentile_overflows`] counts it. A percentile is exact or
//! absent, never an unannounced estimate. A hopping window may not put an event in more than
//! [`WindowLimits::max_windows_per_event`] windows (`size / hop`), checked by
//! [`Windows::new`].

use std::collections::BTreeMap;

use crate::ast::{
    Assignment, Expr, ExprKind, Literal, SelectItem, Span, SqlVersion, Statement, Window,
};
use crate::decimal::Decimal;
use crate::error::Error;
use crate::eval::{self, Scope};
use crate::json;
use crate::rule::{Environment, Limits, Message, Output, Rule};
use crate::value::{MAX_INT, Object, Value, is_numeric_string};

/// The limits of one [`Windows`]. Every field has a safe default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WindowLimits {
    /// The most (window, key) groups open at once; a new group beyond it is refused
    /// ([`Pushed::OverCapacity`]), never made room for by evicting another. Default 100,000.
    pub max_groups: usize,
    /// The longest canonical encoding of one message's key values, in bytes
    /// ([`Pushed::KeyTooLarge`] beyond). Default 1,024.
    pub max_key_bytes: usize,
    /// The most values one group keeps for one `percentile` aggregate; beyond it that
    /// percentile is Undefined for the group. Default 10,000.
    pub max_percentile_values: usize,
    /// The most windows one event may belong to: `ceil(size / hop)` of a hopping window must
    /// not exceed it ([`Windows::new`] refuses the rule otherwise). Default 100.
    pub max_windows_per_event: u64,
    /// How far (ms) an event time may be ahead of the message's arrival time
    /// (`Message::timestamp_ms`) before the event is refused as [`Pushed::Future`]. Default one
    /// hour. Only for `TIMESTAMP BY` windows.
    pub max_event_ahead_ms: u64,
    /// The per-message limits (payload size, JSON depth, the size of a value or output) used
    /// when a message is read and when a group's SELECT items are computed.
    pub evaluation: Limits,
}

impl Default for WindowLimits {
    fn default() -> WindowLimits {
        WindowLimits {
            max_groups: 100_000,
            max_key_bytes: 1_024,
            max_percentile_values: 10_000,
            max_windows_per_event: 100,
            max_event_ahead_ms: 3_600_000,
            evaluation: Limits::default(),
        }
    }
}

/// What [`Windows::push`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// Counted in at least one open window.
    Accepted,
    /// WHERE was not exactly `true`.
    Filtered,
    /// Every window the event belongs to is already closed.
    Late,
    /// `TIMESTAMP BY` did not give a whole number of milliseconds in range.
    NoTimestamp,
    /// A window needed a new group while `max_groups` groups were open: the event was not
    /// counted there (it was in those of its windows that already had its group).
    OverCapacity,
    /// The key values' canonical encoding exceeds `max_key_bytes`.
    KeyTooLarge,
    /// The event time is more than `max_event_ahead_ms` ahead of the arrival time.
    Future,
}

/// Counters of a [`Windows`], since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowStats {
    /// Groups open now.
    pub open_groups: usize,
    /// Messages [`Pushed::Accepted`].
    pub accepted: u64,
    /// Messages [`Pushed::Filtered`].
    pub filtered: u64,
    /// Messages [`Pushed::Late`].
    pub late: u64,
    /// Messages [`Pushed::NoTimestamp`].
    pub no_timestamp: u64,
    /// Messages [`Pushed::OverCapacity`].
    pub over_capacity: u64,
    /// Messages [`Pushed::KeyTooLarge`].
    pub key_too_large: u64,
    /// Messages [`Pushed::Future`].
    pub future: u64,
    /// Groups emitted by [`Windows::advance`] and [`Windows::flush`].
    pub emitted: u64,
    /// Groups whose SELECT items could not be computed (a value or the output over the size
    /// limit of [`WindowLimits::evaluation`]): closed but not emitted.
    pub failed: u64,
    /// Groups whose `percentile` exceeded `max_percentile_values` (one per group and
    /// aggregate).
    pub percentile_overflows: u64,
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A numeric aggregate input: an Int or a Decimal.
#[derive(Debug, Clone, PartialEq)]
enum Number {
    Int(i128),
    Decimal(Decimal),
}

impl Number {
    /// The number an input stands for, by AWS's conversion of numeric strings; `None` for
    /// anything else.
    fn of(value: &Value) -> Option<Number> {
        match value {
            Value::Int(i) => Some(Number::Int(*i)),
            Value::Decimal(d) => Some(Number::Decimal(d.clone())),
            Value::String(s) if is_numeric_string(s) => match s.parse::<i128>() {
                Ok(i) if (-MAX_INT..=MAX_INT).contains(&i) => Some(Number::Int(i)),
                _ => Decimal::parse(s).map(Number::Decimal),
            },
            _ => None,
        }
    }

    fn to_decimal(&self) -> Decimal {
        match self {
            Number::Int(i) => Decimal::from_i128(*i),
            Number::Decimal(d) => d.clone(),
        }
    }

    fn compare(&self, other: &Number) -> std::cmp::Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(b),
            _ => self.to_decimal().compare(&other.to_decimal()),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Number::Int(i) => Value::Int(i),
            Number::Decimal(d) => Value::Decimal(d),
        }
    }
}

/// An Int of at most 34 digits, else the Decimal nearest to it.
fn int_value(i: i128) -> Value {
    if (-MAX_INT..=MAX_INT).contains(&i) {
        Value::Int(i)
    } else {
        Value::Decimal(Decimal::from_i128(i))
    }
}

/// `d` without trailing zeros (`3.000` is `3`).
fn normalized(d: Decimal) -> Decimal {
    Decimal::from_big(d.as_big().normalized())
}

/// An exact running sum: Ints in an `i128`, Decimals (and Int overflow) in a Decimal.
#[derive(Debug, Clone, Default)]
struct Sum {
    int: i128,
    decimal: Option<Decimal>,
    n: u64,
}

impl Sum {
    fn add(&mut self, number: Number) {
        self.n = self.n.saturating_add(1);
        match number {
            Number::Int(i) => match self.int.checked_add(i) {
                Some(total) => self.int = total,
                None => {
                    self.fold(Decimal::from_i128(self.int));
                    self.int = i;
                }
            },
            Number::Decimal(d) => self.fold(d),
        }
    }

    fn fold(&mut self, d: Decimal) {
        self.decimal = Some(match self.decimal.take() {
            Some(total) => total.add(&d),
            None => d,
        });
    }

    fn total(&self) -> Option<Number> {
        if self.n == 0 {
            return None;
        }
        Some(match &self.decimal {
            None => Number::Int(self.int),
            Some(d) => Number::Decimal(d.add(&Decimal::from_i128(self.int))),
        })
    }

    fn sum(&self) -> Value {
        match self.total() {
            None => Value::Undefined,
            Some(Number::Int(i)) => int_value(i),
            Some(Number::Decimal(d)) => Value::Decimal(d),
        }
    }

    fn avg(&self) -> Value {
        let Some(total) = self.total() else {
            return Value::Undefined;
        };
        let n = Decimal::from_i128(i128::from(self.n));
        match total.to_decimal().div(&n) {
            Some(avg) => Value::Decimal(normalized(avg)),
            None => Value::Undefined,
        }
    }
}

/// The values of one group for one `percentile`, or `None` once the cap was exceeded.
#[derive(Debug, Clone, Default)]
struct Sample {
    values: Option<Vec<Number>>,
}

impl Sample {
    fn new() -> Sample {
        Sample {
            values: Some(Vec::new()),
        }
    }

    /// Adds `number`; `true` when this addition exceeded the cap (the sample is dropped).
    fn add(&mut self, number: Number, cap: usize) -> bool {
        let Some(values) = &mut self.values else {
            return false;
        };
        if values.len() >= cap {
            self.values = None;
            return true;
        }
        values.push(number);
        false
    }

    /// The `p`-quantile by linear interpolation between the closest ranks.
    fn percentile(&mut self, p: &Decimal) -> Value {
        let Some(values) = &mut self.values else {
            return Value::Undefined;
        };
        if values.is_empty() {
            return Value::Undefined;
        }
        values.sort_by(Number::compare);
        let last = i128::try_from(values.len() - 1).unwrap_or(i128::MAX);
        let rank = p.mul(&Decimal::from_i128(last));
        let low = rank.trunc_to_i128().unwrap_or(0).clamp(0, last);
        let fraction = rank.sub(&Decimal::from_i128(low));
        let at = |i: i128| usize::try_from(i).ok().and_then(|i| values.get(i));
        let (Some(below), above) = (at(low), at(low + 1)) else {
            return Value::Undefined;
        };
        match above {
            Some(above) if fraction.compare(&Decimal::from_i128(0)).is_gt() => {
                let (b, a) = (below.to_decimal(), above.to_decimal());
                Value::Decimal(normalized(b.add(&fraction.mul(&a.sub(&b)))))
            }
            _ => below.clone().into_value(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregates and group state

/// One aggregate of the SELECT list.
#[derive(Debug, Clone, PartialEq)]
enum Aggregate {
    /// `count(*)`.
    CountAll,
    /// `count(expr)`.
    Count,
    /// `sum(expr)`.
    Sum,
    /// `avg(expr)`.
    Avg,
    /// `min(expr)`.
    Min,
    /// `max(expr)`.
    Max,
    /// `percentile(expr, p)`.
    Percentile(Decimal),
}

/// The running state of one aggregate in one group.
#[derive(Debug, Clone)]
enum State {
    Count(u64),
    Sum(Sum),
    Min(Option<Number>),
    Max(Option<Number>),
    Percentile(Sample),
}

impl State {
    fn new(aggregate: &Aggregate) -> State {
        match aggregate {
            Aggregate::CountAll | Aggregate::Count => State::Count(0),
            Aggregate::Sum | Aggregate::Avg => State::Sum(Sum::default()),
            Aggregate::Min => State::Min(None),
            Aggregate::Max => State::Max(None),
            Aggregate::Percentile(_) => State::Percentile(Sample::new()),
        }
    }

    /// Adds one input; `true` when a percentile sample overflowed.
    fn add(&mut self, aggregate: &Aggregate, input: &Value, cap: usize) -> bool {
        match self {
            State::Count(n) => {
                let counts = match aggregate {
                    Aggregate::CountAll => true,
                    _ => !matches!(input, Value::Undefined | Value::Null),
                };
                if counts {
                    *n = n.saturating_add(1);
                }
            }
            State::Sum(sum) => {
                if let Some(number) = Number::of(input) {
                    sum.add(number);
                }
            }
            State::Min(best) | State::Max(best) => {
                if let Some(number) = Number::of(input) {
                    let wanted = if matches!(aggregate, Aggregate::Min) {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    };
                    let better = best
                        .as_ref()
                        .is_none_or(|current| number.compare(current) == wanted);
                    if better {
                        *best = Some(number);
                    }
                }
            }
            State::Percentile(sample) => {
                if let Some(number) = Number::of(input) {
                    return sample.add(number, cap);
                }
            }
        }
        false
    }

    fn result(&mut self, aggregate: &Aggregate) -> Value {
        match (self, aggregate) {
            (State::Count(n), _) => Value::Int(i128::from(*n)),
            (State::Sum(sum), Aggregate::Avg) => sum.avg(),
            (State::Sum(sum), _) => sum.sum(),
            (State::Min(best) | State::Max(best), _) => {
                best.take().map_or(Value::Undefined, Number::into_value)
            }
            (State::Percentile(sample), Aggregate::Percentile(p)) => sample.percentile(p),
            (State::Percentile(_), _) => Value::Undefined,
        }
    }
}

/// One open (window, key) group.
#[derive(Debug, Clone)]
struct Group {
    start: u64,
    keys: Vec<Value>,
    states: Vec<State>,
}

/// A group whose window closed: what the SELECT list is computed from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Closed {
    /// The window's first millisecond.
    pub(crate) start: u64,
    /// One past the window's last millisecond.
    pub(crate) end: u64,
    /// The key values, in GROUP BY order (the first values seen for the group).
    pub(crate) keys: Vec<Value>,
    /// The aggregates' results, in the order of the plan's aggregate list.
    pub(crate) aggregates: Vec<Value>,
}

// ---------------------------------------------------------------------------------------------
// Canonical key encoding

/// Appends the canonical encoding of `value` to `out`: equal keys encode equally, different
/// keys differently, and each value's encoding delimits itself (so a list of them is
/// unambiguous). `Err` once `out` exceeds `max` bytes.
fn encode_key(value: &Value, out: &mut Vec<u8>, max: usize) -> Result<(), ()> {
    fn bytes(data: &[u8], out: &mut Vec<u8>) {
        for &b in data {
            out.push(b);
            if b == 0 {
                out.push(0xFF);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
    fn int(i: i128, out: &mut Vec<u8>) {
        out.push(3);
        // Sign bit flipped: big-endian bytes then sort in numeric order.
        out.extend_from_slice(&((i as u128) ^ (1 << 127)).to_be_bytes());
    }
    if out.len() > max {
        return Err(());
    }
    match value {
        Value::Undefined => out.push(0),
        Value::Null => out.push(1),
        Value::Bool(b) => out.extend_from_slice(&[2, u8::from(*b)]),
        Value::Int(i) => int(*i, out),
        Value::Decimal(d) => match d.is_integer().then(|| d.trunc_to_i128()).flatten() {
            Some(i) => int(i, out),
            None => {
                out.push(4);
                bytes(normalized(d.clone()).to_string().as_bytes(), out);
            }
        },
        Value::String(s) => {
            out.push(5);
            bytes(s.as_bytes(), out);
        }
        Value::Array(items) => {
            out.push(6);
            for item in items {
                out.push(1);
                encode_key(item, out, max)?;
            }
            out.push(0);
        }
        Value::Object(object) => {
            out.push(7);
            let mut entries: Vec<(&str, &Value)> = object.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                out.push(1);
                bytes(key.as_bytes(), out);
                encode_key(item, out, max)?;
            }
            out.push(0);
        }
        Value::Binary(data) => {
            out.push(8);
            bytes(data, out);
        }
    }
    if out.len() > max { Err(()) } else { Ok(()) }
}

// ---------------------------------------------------------------------------------------------
// The state machine over values

/// The window's geometry and clocks' rules, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timing {
    size: u64,
    hop: u64,
    lateness: u64,
    /// `TIMESTAMP BY`: event time; else arrival time.
    event_time: bool,
}

/// The windowing state machine, over values already computed from each message.
#[derive(Debug, Clone)]
struct Engine {
    timing: Timing,
    aggregates: Vec<Aggregate>,
    limits: WindowLimits,
    /// Open groups by (window end, canonical key encoding): iteration order is output order.
    groups: BTreeMap<(u64, Vec<u8>), Group>,
    /// The largest event time pushed.
    max_event: Option<u64>,
    /// The largest `now_ms` given to `advance`.
    max_now: Option<u64>,
    /// Windows ending at or before this were flushed.
    flushed_through: Option<u64>,
    stats: WindowStats,
}

impl Engine {
    fn new(timing: Timing, aggregates: Vec<Aggregate>, limits: WindowLimits) -> Engine {
        Engine {
            timing,
            aggregates,
            limits,
            groups: BTreeMap::new(),
            max_event: None,
            max_now: None,
            flushed_through: None,
            stats: WindowStats::default(),
        }
    }

    /// The watermark: windows ending at or before it are closed.
    fn watermark(&self) -> Option<u64> {
        let clock = match (self.max_event, self.max_now) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }?;
        Some(clock.saturating_sub(self.timing.lateness))
    }

    fn is_closed(&self, end: u64) -> bool {
        self.watermark().is_some_and(|w| end <= w) || self.flushed_through.is_some_and(|f| end <= f)
    }

    /// The windows `(start, end)` that contain `t`, latest start first.
    fn windows_of(&self, t: u64) -> impl Iterator<Item = (u64, u64)> + use<> {
        let Timing { size, hop, .. } = self.timing;
        let latest = t - t % hop;
        (0u64..)
            .map_while(move |k| latest.checked_sub(k.checked_mul(hop)?))
            .take_while(move |start| t - start < size)
            .map(move |start| (start, start.saturating_add(size)))
    }

    /// Records a message that passed WHERE: the event time is valid, `keys` are the GROUP BY
    /// values and `inputs` holds one value per aggregate (ignored for `count(*)`).
    fn add(&mut self, keys: Vec<Value>, event_ms: u64, inputs: &[Value]) -> Pushed {
        if event_ms
            .checked_add(self.timing.size)
            .and_then(|t| t.checked_add(self.timing.lateness))
            .is_none()
        {
            self.stats.no_timestamp += 1;
            return Pushed::NoTimestamp;
        }
        let mut key = Vec::new();
        for value in &keys {
            if encode_key(value, &mut key, self.limits.max_key_bytes).is_err() {
                self.stats.key_too_large += 1;
                return Pushed::KeyTooLarge;
            }
        }
        let (mut accepted, mut over) = (false, false);
        for (start, end) in self.windows_of(event_ms) {
            if self.is_closed(end) {
                continue;
            }
            let id = (end, key.clone());
            let at_capacity = self.groups.len() >= self.limits.max_groups;
            let group = match self.groups.entry(id) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(_) if at_capacity => {
                    over = true;
                    continue;
                }
                std::collections::btree_map::Entry::Vacant(entry) => entry.insert(Group {
                    start,
                    keys: keys.clone(),
                    states: self.aggregates.iter().map(State::new).collect(),
                }),
            };
            for ((state, aggregate), input) in
                group.states.iter_mut().zip(&self.aggregates).zip(inputs)
            {
                if state.add(aggregate, input, self.limits.max_percentile_values) {
                    self.stats.percentile_overflows += 1;
                }
            }
            accepted = true;
        }
        self.max_event = Some(self.max_event.map_or(event_ms, |m| m.max(event_ms)));
        let outcome = if over {
            self.stats.over_capacity += 1;
            Pushed::OverCapacity
        } else if accepted {
            self.stats.accepted += 1;
            Pushed::Accepted
        } else {
            self.stats.late += 1;
            Pushed::Late
        };
        self.stats.open_groups = self.groups.len();
        outcome
    }

    fn close_group(&mut self, end: u64, mut group: Group) -> Closed {
        self.stats.emitted += 1;
        let aggregates = group
            .states
            .iter_mut()
            .zip(&self.aggregates)
            .map(|(state, aggregate)| state.result(aggregate))
            .collect();
        Closed {
            start: group.start,
            end,
            keys: group.keys,
            aggregates,
        }
    }

    /// Records arrival time `now_ms` and closes every group whose window is closed.
    fn advance(&mut self, now_ms: u64) -> Vec<Closed> {
        self.max_now = Some(self.max_now.map_or(now_ms, |m| m.max(now_ms)));
        let mut closed = Vec::new();
        while let Some((&(end, _), _)) = self.groups.first_key_value() {
            if !self.is_closed(end) {
                break;
            }
            let Some((_, group)) = self.groups.pop_first() else {
                break;
            };
            closed.push(self.close_group(end, group));
        }
        self.stats.open_groups = self.groups.len();
        closed
    }

    /// Closes every open group.
    fn flush(&mut self) -> Vec<Closed> {
        let groups = std::mem::take(&mut self.groups);
        let mut closed = Vec::with_capacity(groups.len());
        for ((end, _), group) in groups {
            self.flushed_through = Some(self.flushed_through.map_or(end, |f| f.max(end)));
            closed.push(self.close_group(end, group));
        }
        self.stats.open_groups = 0;
        closed
    }

    /// The arrival time at which `advance` will close a group.
    fn next_deadline(&self) -> Option<u64> {
        let (&(end, _), _) = self.groups.first_key_value()?;
        let deadline = end.saturating_add(self.timing.lateness);
        if self.is_closed(end) {
            return Some(deadline.min(self.max_now.unwrap_or(0)));
        }
        Some(deadline)
    }
}

// ---------------------------------------------------------------------------------------------
// Compiling a windowed statement

/// The name of the call a GROUP BY key is replaced with in the SELECT items (a name the parser
/// cannot produce).
const KEY_CALL: &str = "window key";
/// The name of the call an aggregate is replaced with in the SELECT items.
const AGGREGATE_CALL: &str = "window aggregate";

/// Functions that read the message or call the environment: refused in SELECT items outside
/// keys and aggregates (a window's close has neither a message nor an environment).
const MESSAGE_FUNCTIONS: &[&str] = &[
    "topic",
    "clientid",
    "principal",
    "timestamp",
    "traceid",
    "sourceip",
    "get_mqtt_property",
    "get_user_properties",
    "newuuid",
    "rand",
    "accountid",
    "get_thing_shadow",
    "get_dynamodb",
    "get_registry_data",
    "get_secret",
    "aws_lambda",
    "machinelearning_predict",
];

/// The aggregate functions.
const AGGREGATES: &[&str] = &["count", "sum", "avg", "min", "max", "percentile"];

/// A windowed statement, checked and taken apart.
#[derive(Debug, Clone)]
struct Plan {
    timing: Timing,
    /// The SET clause, run on every message before WHERE.
    set: Vec<Assignment>,
    /// The WHERE condition.
    where_: Option<Expr>,
    keys: Vec<Expr>,
    timestamp_by: Option<Expr>,
    aggregates: Vec<Aggregate>,
    /// Each aggregate's input expression (`None` for `count(*)`).
    inputs: Vec<Option<Expr>>,
    /// The SELECT items, keys and aggregates replaced by [`KEY_CALL`] / [`AGGREGATE_CALL`].
    items: Vec<(String, Expr)>,
    /// `SELECT VALUE`.
    value: bool,
}

/// `line:column` (1-based, column in characters) of byte `offset` of `sql`.
fn line_column(sql: &str, offset: u32) -> (u32, u32) {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX).min(sql.len());
    let mut at = offset;
    while !sql.is_char_boundary(at) {
        at -= 1;
    }
    let before = sql.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// The error for `span` of `sql`.
fn refuse(sql: &str, span: Span, message: impl Into<String>) -> Error {
    let (line, column) = line_column(sql, span.start);
    Error::Window {
        line,
        column,
        message: message.into(),
    }
}

/// A synthetic call `name(index)` standing for a key or an aggregate.
fn marker(name: &str, index: usize, span: Span) -> Expr {
    Expr {
        kind: ExprKind::Call {
            name: name.to_string(),
            args: vec![Expr {
                kind: ExprKind::Literal(Literal::Number(index.to_string())),
                span,
            }],
        },
        span,
    }
}

/// The index in a marker call made by [`marker`] named `name`.
fn marker_index(expr: &Expr, name: &str) -> Option<usize> {
    match &expr.kind {
        ExprKind::Call { name: n, args } if n == name => match args.as_slice() {
            [
                Expr {
                    kind: ExprKind::Literal(Literal::Number(text)),
                    ..
                },
            ] => text.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

impl Plan {
    fn compile(statement: &Statement, sql: &str, limits: &WindowLimits) -> Result<Plan, Error> {
        let Some(group_by) = &statement.group_by else {
            return Err(refuse(
                sql,
                statement.span,
                "a windowed rule needs a GROUP BY clause with a window",
            ));
        };
        let (size, hop, span) = match &group_by.window {
            Window::Tumbling { size, span } => (size.as_millis(), size.as_millis(), *span),
            Window::Hopping { size, hop, span } => (size.as_millis(), hop.as_millis(), *span),
        };
        if size == 0 || hop == 0 || hop > size {
            return Err(refuse(
                sql,
                span,
                "a window needs a size of at least 1 ms and a hop between 1 ms and its size",
            ));
        }
        if size.div_ceil(hop) > limits.max_windows_per_event {
            return Err(refuse(
                sql,
                span,
                format!(
                    "this window puts each event in {} windows (size / hop); the limit is {}",
                    size.div_ceil(hop),
                    limits.max_windows_per_event
                ),
            ));
        }
        let timing = Timing {
            size,
            hop,
            lateness: group_by.lateness.map_or(0, |d| d.as_millis()),
            event_time: group_by.timestamp_by.is_some(),
        };
        for assignment in &statement.set {
            no_aggregate(sql, &assignment.value, "in SET")?;
        }
        if let Some(condition) = &statement.where_ {
            no_aggregate(sql, condition, "in WHERE")?;
        }
        for key in &group_by.keys {
            no_aggregate(sql, key, "in a GROUP BY key")?;
        }
        if let Some(timestamp) = &group_by.timestamp_by {
            no_aggregate(sql, timestamp, "in TIMESTAMP BY")?;
        }
        let mut plan = Plan {
            timing,
            set: statement.set.clone(),
            where_: statement.where_.clone(),
            keys: group_by.keys.clone(),
            timestamp_by: group_by.timestamp_by.clone(),
            aggregates: Vec::new(),
            inputs: Vec::new(),
            items: Vec::new(),
            value: statement.select.value,
        };
        let mut found: Vec<Expr> = Vec::new();
        for (position, item) in statement.select.items.iter().enumerate() {
            match item {
                SelectItem::Wildcard { span } => {
                    return Err(refuse(
                        sql,
                        *span,
                        "`SELECT *` is not allowed in a windowed rule: select GROUP BY keys and aggregates",
                    ));
                }
                SelectItem::Expr { expr, alias } => {
                    let name = match alias {
                        Some(alias) => alias.clone(),
                        None => eval::item_name(expr, position + 1),
                    };
                    let rewritten = plan.rewrite(sql, expr, &mut found)?;
                    plan.items.push((name, rewritten));
                }
            }
        }
        Ok(plan)
    }

    /// `expr` with its keys and aggregates replaced by markers; `Err` if something in it
    /// cannot be computed when the window closes.
    fn rewrite(&mut self, sql: &str, expr: &Expr, found: &mut Vec<Expr>) -> Result<Expr, Error> {
        if let Some(index) = self.keys.iter().position(|key| key == expr) {
            return Ok(marker(KEY_CALL, index, expr.span));
        }
        let mut out = expr.clone();
        match &mut out.kind {
            ExprKind::Literal(_) => {}
            ExprKind::Call { name, args } if AGGREGATES.contains(&name.as_str()) => {
                let (aggregate, input) = aggregate_of(sql, name, args, expr.span)?;
                let index = match found.iter().position(|f| f == expr) {
                    Some(index) => index,
                    None => {
                        found.push(expr.clone());
                        self.aggregates.push(aggregate);
                        self.inputs.push(input);
                        found.len() - 1
                    }
                };
                return Ok(marker(AGGREGATE_CALL, index, expr.span));
            }
            ExprKind::Call { name, args } if name == "window_start" || name == "window_end" => {
                if !args.is_empty() {
                    return Err(refuse(
                        sql,
                        expr.span,
                        format!("`{name}()` takes no arguments"),
                    ));
                }
            }
            ExprKind::Call { name, .. } if MESSAGE_FUNCTIONS.contains(&name.as_str()) => {
                return Err(refuse(
                    sql,
                    expr.span,
                    format!(
                        "`{name}()` reads the message or calls a service, but this item is computed when the window closes: make the call a GROUP BY key or aggregate it"
                    ),
                ));
            }
            ExprKind::Call { args, .. } | ExprKind::Array(args) => {
                for arg in args.iter_mut() {
                    *arg = self.rewrite(sql, arg, found)?;
                }
            }
            ExprKind::Field(name) => {
                return Err(refuse(
                    sql,
                    expr.span,
                    format!(
                        "`{name}` is neither a GROUP BY key nor inside an aggregate (a windowed rule outputs one row per group)"
                    ),
                ));
            }
            ExprKind::Variable(name) => {
                return Err(refuse(
                    sql,
                    expr.span,
                    format!("`@{name}` is neither a GROUP BY key nor inside an aggregate"),
                ));
            }
            ExprKind::Wildcard => {
                return Err(refuse(
                    sql,
                    expr.span,
                    "`*` is only allowed in `count(*)` in a windowed rule",
                ));
            }
            ExprKind::Subquery(_) => {
                return Err(refuse(
                    sql,
                    expr.span,
                    "a nested query reads one message: make it a GROUP BY key or aggregate it",
                ));
            }
            ExprKind::Member { base, .. } | ExprKind::Cast { expr: base, .. } => {
                **base = self.rewrite(sql, base, found)?;
            }
            ExprKind::Unary { expr: operand, .. } => {
                **operand = self.rewrite(sql, operand, found)?;
            }
            ExprKind::Index { base, index } => {
                **base = self.rewrite(sql, base, found)?;
                **index = self.rewrite(sql, index, found)?;
            }
            ExprKind::Binary { left, right, .. } => {
                **left = self.rewrite(sql, left, found)?;
                **right = self.rewrite(sql, right, found)?;
            }
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                **operand = self.rewrite(sql, operand, found)?;
                for (when, then) in whens.iter_mut() {
                    *when = self.rewrite(sql, when, found)?;
                    *then = self.rewrite(sql, then, found)?;
                }
                if let Some(else_) = else_ {
                    **else_ = self.rewrite(sql, else_, found)?;
                }
            }
            ExprKind::Object(entries) => {
                for (_, value) in entries.iter_mut() {
                    *value = self.rewrite(sql, value, found)?;
                }
            }
        }
        Ok(out)
    }
}

/// The aggregate a call `name(args)` stands for, and its input expression.
fn aggregate_of(
    sql: &str,
    name: &str,
    args: &[Expr],
    span: Span,
) -> Result<(Aggregate, Option<Expr>), Error> {
    for arg in args {
        no_aggregate(sql, arg, "inside an aggregate")?;
    }
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(refuse(
                sql,
                span,
                format!(
                    "`{name}` takes {n} argument{}, not {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
            ))
        }
    };
    let wildcard = |arg: &Expr| {
        if matches!(arg.kind, ExprKind::Wildcard) {
            Err(refuse(
                sql,
                arg.span,
                format!("`{name}(*)` is not an aggregate: only `count(*)` is"),
            ))
        } else {
            Ok(())
        }
    };
    match (name, args) {
        ("count", [arg]) if matches!(arg.kind, ExprKind::Wildcard) => {
            Ok((Aggregate::CountAll, None))
        }
        ("count" | "sum" | "avg" | "min" | "max", _) => {
            arity(1)?;
            let [arg] = args else {
                return Err(refuse(sql, span, format!("`{name}` takes 1 argument")));
            };
            wildcard(arg)?;
            let aggregate = match name {
                "count" => Aggregate::Count,
                "sum" => Aggregate::Sum,
                "avg" => Aggregate::Avg,
                "min" => Aggregate::Min,
                _ => Aggregate::Max,
            };
            Ok((aggregate, Some(arg.clone())))
        }
        _ => {
            arity(2)?;
            let [arg, p] = args else {
                return Err(refuse(sql, span, "`percentile` takes 2 arguments"));
            };
            wildcard(arg)?;
            let fraction = match &p.kind {
                ExprKind::Literal(Literal::Number(text)) => Decimal::parse(text),
                _ => None,
            }
            .filter(|d| {
                d.compare(&Decimal::from_i128(0)).is_ge()
                    && d.compare(&Decimal::from_i128(1)).is_le()
            });
            match fraction {
                Some(fraction) => Ok((Aggregate::Percentile(fraction), Some(arg.clone()))),
                None => Err(refuse(
                    sql,
                    p.span,
                    "the percentile must be a number literal between 0 and 1 (`percentile(x, 0.95)`)",
                )),
            }
        }
    }
}

/// `Err` if `expr` contains an aggregate or a window function (which only SELECT items may
/// use); `place` says where `expr` is, for the message.
fn no_aggregate(sql: &str, expr: &Expr, place: &str) -> Result<(), Error> {
    let mut found = None;
    visit(expr, &mut |e| {
        if found.is_none()
            && let ExprKind::Call { name, .. } = &e.kind
            && (AGGREGATES.contains(&name.as_str())
                || name == "window_start"
                || name == "window_end")
        {
            found = Some((name.clone(), e.span));
        }
    });
    match found {
        Some((name, span)) if AGGREGATES.contains(&name.as_str()) => Err(refuse(
            sql,
            span,
            format!(
                "the aggregate `{name}` is not allowed {place}: aggregates belong in SELECT items"
            ),
        )),
        Some((name, span)) => Err(refuse(
            sql,
            span,
            format!("`{name}()` is not allowed {place}: it belongs in SELECT items"),
        )),
        None => Ok(()),
    }
}

/// Calls `f` on `expr` and every expression inside it (nested queries included).
fn visit(expr: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(expr);
    match &expr.kind {
        ExprKind::Literal(_) | ExprKind::Field(_) | ExprKind::Wildcard | ExprKind::Variable(_) => {}
        ExprKind::Member { base, .. } | ExprKind::Cast { expr: base, .. } => visit(base, f),
        ExprKind::Unary { expr, .. } => visit(expr, f),
        ExprKind::Index { base, index } => {
            visit(base, f);
            visit(index, f);
        }
        ExprKind::Call { args, .. } | ExprKind::Array(args) => {
            for arg in args {
                visit(arg, f);
            }
        }
        ExprKind::Binary { left, right, .. } => {
            visit(left, f);
            visit(right, f);
        }
        ExprKind::Case {
            operand,
            whens,
            else_,
        } => {
            visit(operand, f);
            for (when, then) in whens {
                visit(when, f);
                visit(then, f);
            }
            if let Some(else_) = else_ {
                visit(else_, f);
            }
        }
        ExprKind::Object(entries) => {
            for (_, value) in entries {
                visit(value, f);
            }
        }
        ExprKind::Subquery(statement) => {
            for assignment in &statement.set {
                visit(&assignment.value, f);
            }
            for item in &statement.select.items {
                if let SelectItem::Expr { expr, .. } = item {
                    visit(expr, f);
                }
            }
            if let Some(crate::ast::From::Expr(from)) = &statement.from {
                visit(from, f);
            }
            if let Some(condition) = &statement.where_ {
                visit(condition, f);
            }
        }
    }
}

/// The structural checks of [`Windows::new`] on a statement with GROUP BY, without the
/// limits (which belong to each [`Windows`]): for [`Rule::compile`].
pub(crate) fn check(statement: &Statement, sql: &str) -> Result<(), Error> {
    let limits = WindowLimits {
        max_windows_per_event: u64::MAX,
        ..WindowLimits::default()
    };
    Plan::compile(statement, sql, &limits).map(|_| ())
}

/// How much of the payload a windowed rule reads per message: its SET, WHERE, keys, TIMESTAMP
/// BY and aggregate inputs (the same walk a per-message rule's statement gets, done once).
fn payload_use(plan: &Plan) -> eval::PayloadUse {
    eval::payload_use_of(
        plan.set
            .iter()
            .map(|assignment| &assignment.value)
            .chain(&plan.where_)
            .chain(&plan.keys)
            .chain(&plan.timestamp_by)
            .chain(plan.inputs.iter().flatten()),
    )
}

// ---------------------------------------------------------------------------------------------
// The public API

/// The environment of a window's close: SELECT items that would call it are refused by
/// [`Plan::compile`], so it is never asked for anything.
struct Closing;

impl Environment for Closing {
    fn new_uuid(&self) -> String {
        String::new()
    }

    fn random(&self) -> f64 {
        0.0
    }
}

/// The event time an evaluated `TIMESTAMP BY` stands for: an Int, or a Decimal rounded down,
/// from 0 to `u64::MAX` milliseconds.
fn event_time(value: &Value) -> Option<u64> {
    match value {
        Value::Int(ms) => u64::try_from(*ms).ok(),
        Value::Decimal(ms) if ms.compare(&Decimal::from_i128(0)).is_ge() => {
            u64::try_from(ms.trunc_to_i128()?).ok()
        }
        _ => None,
    }
}

/// The windowed aggregation of one rule: its open groups, clocks and counters. Sans-IO: time
/// comes in as `Message::timestamp_ms` and [`Windows::advance`]'s `now_ms`.
#[derive(Debug, Clone)]
pub struct Windows {
    plan: Plan,
    engine: Engine,
    version: SqlVersion,
    /// How much of the payload is read per message (found once, in [`Windows::new`]).
    payload_use: eval::PayloadUse,
}

impl Windows {
    /// Checks `rule`'s statement for windowed aggregation (see the module docs) and makes an
    /// empty state for it.
    ///
    /// # Errors
    ///
    /// [`Error::Window`] with the `line:column` of what is wrong: no GROUP BY, `SELECT *`, an
    /// aggregate outside SELECT or nested, a SELECT item that is neither a key nor computable
    /// from keys, aggregates and window bounds, a bad percentile, a window over
    /// [`WindowLimits::max_windows_per_event`].
    pub fn new(rule: &Rule, limits: WindowLimits) -> Result<Windows, Error> {
        let plan = Plan::compile(rule.statement(), rule.sql(), &limits)?;
        let engine = Engine::new(plan.timing, plan.aggregates.clone(), limits);
        Ok(Windows {
            payload_use: payload_use(&plan),
            plan,
            engine,
            version: rule.version(),
        })
    }

    /// Runs one message through SET, WHERE, the keys, the event time and the aggregates'
    /// inputs, and counts it in its open windows (see the module docs for each outcome).
    ///
    /// # Errors
    ///
    /// A limit of [`WindowLimits::evaluation`] was exceeded (payload size, JSON depth, value
    /// size), or an external function failed. The message is not counted.
    pub fn push(&mut self, message: &Message<'_>, env: &dyn Environment) -> Result<Pushed, Error> {
        let limits = &self.engine.limits.evaluation;
        let payload = self.payload_use.read(message, self.version, limits)?;
        let mut variables: Vec<(String, Value)> = Vec::with_capacity(self.plan.set.len());
        for assignment in &self.plan.set {
            let scope = Scope {
                message,
                env,
                version: self.version,
                payload: &payload,
                variables: &variables,
                aggregates: None,
                max_value_bytes: limits.max_output_bytes,
                element: false,
            };
            let value = eval::eval_expr(&assignment.value, &scope)?;
            variables.push((assignment.name.clone(), value));
        }
        let scope = Scope {
            message,
            env,
            version: self.version,
            payload: &payload,
            variables: &variables,
            aggregates: None,
            max_value_bytes: limits.max_output_bytes,
            element: false,
        };
        if let Some(condition) = &self.plan.where_
            && eval::eval_expr(condition, &scope)? != Value::Bool(true)
        {
            self.engine.stats.filtered += 1;
            return Ok(Pushed::Filtered);
        }
        let event_ms = match &self.plan.timestamp_by {
            None => message.timestamp_ms,
            Some(expr) => {
                let Some(event_ms) = event_time(&eval::eval_expr(expr, &scope)?) else {
                    self.engine.stats.no_timestamp += 1;
                    return Ok(Pushed::NoTimestamp);
                };
                let ahead = self.engine.limits.max_event_ahead_ms;
                if event_ms > message.timestamp_ms.saturating_add(ahead) {
                    self.engine.stats.future += 1;
                    return Ok(Pushed::Future);
                }
                event_ms
            }
        };
        let keys = self
            .plan
            .keys
            .iter()
            .map(|key| eval::eval_expr(key, &scope))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = self
            .plan
            .inputs
            .iter()
            .map(|input| match input {
                Some(expr) => eval::eval_expr(expr, &scope),
                None => Ok(Value::Null),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.engine.add(keys, event_ms, &inputs))
    }

    /// Records that arrival time is `now_ms` (ms since the epoch) and returns the output of
    /// every group whose window is now closed, in (window end, key) order.
    pub fn advance(&mut self, now_ms: u64) -> Vec<Output> {
        let closed = self.engine.advance(now_ms);
        self.render_all(closed)
    }

    /// Returns the output of every open group, in (window end, key) order, and closes their
    /// windows: for a shutdown or the end of a batch.
    pub fn flush(&mut self) -> Vec<Output> {
        let closed = self.engine.flush();
        self.render_all(closed)
    }

    fn render_all(&mut self, closed: Vec<Closed>) -> Vec<Output> {
        let mut outputs = Vec::with_capacity(closed.len());
        for group in closed {
            match self.render(&group) {
                Ok(Some(output)) => outputs.push(output),
                Ok(None) => {}
                Err(_) => self.engine.stats.failed += 1,
            }
        }
        outputs
    }

    /// The SELECT items of one closed group; `None` for an Undefined `SELECT VALUE`.
    fn render(&self, group: &Closed) -> Result<Option<Output>, Error> {
        let v2 = self.version.is_v2();
        let number = |value: &Value| match value {
            Value::Decimal(d) if v2 => json::whole_decimal_as_int(d.clone()),
            other => other.clone(),
        };
        let bound = |ms: u64| Value::Int(i128::from(ms));
        let hook = |expr: &Expr| -> Option<Value> {
            if let Some(index) = marker_index(expr, KEY_CALL) {
                return Some(group.keys.get(index).cloned().unwrap_or(Value::Undefined));
            }
            if let Some(index) = marker_index(expr, AGGREGATE_CALL) {
                return Some(group.aggregates.get(index).map_or(Value::Undefined, number));
            }
            match &expr.kind {
                ExprKind::Call { name, args } if args.is_empty() && name == "window_start" => {
                    Some(bound(group.start))
                }
                ExprKind::Call { name, args } if args.is_empty() && name == "window_end" => {
                    Some(bound(group.end))
                }
                _ => None,
            }
        };
        // The items read no message and call no service (Plan::compile refused those).
        let message = Message {
            topic: "",
            payload: &[],
            client_id: None,
            principal: None,
            timestamp_ms: group.end,
        };
        let limits = &self.engine.limits.evaluation;
        let scope = Scope {
            message: &message,
            env: &Closing,
            version: self.version,
            payload: &Value::Undefined,
            variables: &[],
            aggregates: Some(&hook),
            max_value_bytes: limits.max_output_bytes,
            element: false,
        };
        let value = if self.plan.value {
            match self.plan.items.first() {
                Some((_, expr)) => eval::eval_expr(expr, &scope)?,
                None => Value::Undefined,
            }
        } else {
            let mut object = Object::new();
            for (name, expr) in &self.plan.items {
                let value = eval::eval_expr(expr, &scope)?;
                if !value.is_undefined() {
                    object.insert(name.clone(), value);
                }
            }
            Value::Object(object)
        };
        if value.is_undefined() {
            return Ok(None);
        }
        if json::to_string(&value).len() > limits.max_output_bytes {
            return Err(Error::Limit {
                what: "output",
                limit: limits.max_output_bytes,
            });
        }
        Ok(Some(Output::Json(value)))
    }

    /// The arrival time (ms since the epoch) at which [`Windows::advance`] will next emit
    /// something; `None` while no group is open. A time at or before the latest `now_ms` means
    /// "now" (a group's window was closed by event time).
    pub fn next_deadline(&self) -> Option<u64> {
        self.engine.next_deadline()
    }

    /// The counters.
    pub fn stats(&self) -> WindowStats {
        self.engine.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{Duration, GroupBy, Select, TimeUnit};

    fn timing(size: u64, hop: u64, lateness: u64) -> Timing {
        Timing {
            size,
            hop,
            lateness,
            event_time: true,
        }
    }

    fn engine(timing: Timing, aggregates: Vec<Aggregate>) -> Engine {
        Engine::new(timing, aggregates, WindowLimits::default())
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_string())
    }

    fn d(text: &str) -> Value {
        Value::Decimal(Decimal::parse(text).expect("a test decimal"))
    }

    #[test]
    fn tumbling_window_counts_per_key_and_emits_in_end_then_key_order() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::CountAll]);
        for (key, t) in [("b", 1), ("a", 2), ("b", 9), ("a", 12), ("b", 15)] {
            assert_eq!(e.add(vec![s(key)], t, &[Value::Null]), Pushed::Accepted);
        }
        let out = e.advance(20);
        let rows: Vec<_> = out
            .iter()
            .map(|c| (c.start, c.end, c.keys.clone(), c.aggregates.clone()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, 10, vec![s("a")], vec![Value::Int(1)]),
                (0, 10, vec![s("b")], vec![Value::Int(2)]),
                (10, 20, vec![s("a")], vec![Value::Int(1)]),
                (10, 20, vec![s("b")], vec![Value::Int(1)]),
            ]
        );
        assert_eq!(e.stats.emitted, 4);
        assert_eq!(e.stats.open_groups, 0);
    }

    #[test]
    fn hopping_window_puts_each_event_in_size_over_hop_windows() {
        let mut e = engine(timing(10, 5, 0), vec![Aggregate::CountAll]);
        let windows: Vec<_> = e.windows_of(12).collect();
        assert_eq!(windows, vec![(10, 20), (5, 15)]);
        let windows: Vec<_> = e.windows_of(3).collect();
        assert_eq!(windows, vec![(0, 10)]);
        e.add(vec![], 12, &[Value::Null]);
        assert_eq!(e.groups.len(), 2);
        let ends: Vec<_> = e.flush().iter().map(|c| c.end).collect();
        assert_eq!(ends, vec![15, 20]);
    }

    #[test]
    fn hopping_window_with_size_not_a_multiple_of_hop() {
        let e = engine(timing(10, 4, 0), vec![]);
        let windows: Vec<_> = e.windows_of(9).collect();
        assert_eq!(windows, vec![(8, 18), (4, 14), (0, 10)]);
        let windows: Vec<_> = e.windows_of(10).collect();
        assert_eq!(windows, vec![(8, 18), (4, 14)]);
    }

    #[test]
    fn event_within_lateness_is_counted_and_beyond_is_late() {
        let mut e = engine(timing(10, 10, 5), vec![Aggregate::CountAll]);
        e.add(vec![], 3, &[Value::Null]);
        e.add(vec![], 14, &[Value::Null]); // watermark 9: window [0,10) still open
        assert_eq!(e.add(vec![], 8, &[Value::Null]), Pushed::Accepted);
        e.add(vec![], 15, &[Value::Null]); // watermark 10: [0,10) closed
        assert_eq!(e.add(vec![], 9, &[Value::Null]), Pushed::Late);
        assert_eq!(e.stats.late, 1);
        let out = e.advance(0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].aggregates, vec![Value::Int(2)]);
    }

    #[test]
    fn quiet_stream_closes_on_arrival_time_past_end_plus_lateness() {
        let mut e = engine(timing(10, 10, 5), vec![Aggregate::CountAll]);
        e.add(vec![], 3, &[Value::Null]);
        assert_eq!(e.next_deadline(), Some(15));
        assert!(e.advance(14).is_empty());
        assert_eq!(e.advance(15).len(), 1);
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_now_when_event_time_already_closed_a_window() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::CountAll]);
        e.advance(1);
        e.add(vec![], 3, &[Value::Null]);
        e.add(vec![], 25, &[Value::Null]);
        assert_eq!(e.next_deadline(), Some(1));
        assert_eq!(e.advance(1).len(), 1);
        assert_eq!(e.next_deadline(), Some(30));
    }

    #[test]
    fn flush_emits_everything_and_closes_the_flushed_windows() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::CountAll]);
        e.add(vec![s("x")], 3, &[Value::Null]);
        e.add(vec![s("x")], 13, &[Value::Null]);
        assert_eq!(e.flush().len(), 2);
        assert_eq!(e.stats.open_groups, 0);
        assert_eq!(e.add(vec![s("y")], 19, &[Value::Null]), Pushed::Late);
        assert_eq!(e.add(vec![s("y")], 20, &[Value::Null]), Pushed::Accepted);
    }

    #[test]
    fn over_capacity_refuses_new_groups_and_keeps_counting_open_ones() {
        let mut e = Engine::new(
            timing(10, 10, 0),
            vec![Aggregate::CountAll],
            WindowLimits {
                max_groups: 2,
                ..WindowLimits::default()
            },
        );
        assert_eq!(e.add(vec![s("a")], 1, &[Value::Null]), Pushed::Accepted);
        assert_eq!(e.add(vec![s("b")], 1, &[Value::Null]), Pushed::Accepted);
        assert_eq!(e.add(vec![s("c")], 1, &[Value::Null]), Pushed::OverCapacity);
        assert_eq!(e.add(vec![s("a")], 2, &[Value::Null]), Pushed::Accepted);
        assert_eq!(e.stats.over_capacity, 1);
        let counts: Vec<_> = e.flush().into_iter().map(|c| c.aggregates).collect();
        assert_eq!(counts, vec![vec![Value::Int(2)], vec![Value::Int(1)]]);
    }

    #[test]
    fn undefined_key_is_its_own_group_apart_from_null() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::CountAll]);
        e.add(vec![Value::Undefined], 1, &[Value::Null]);
        e.add(vec![Value::Undefined], 2, &[Value::Null]);
        e.add(vec![Value::Null], 3, &[Value::Null]);
        let out = e.flush();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].keys, vec![Value::Undefined]);
        assert_eq!(out[0].aggregates, vec![Value::Int(2)]);
    }

    #[test]
    fn int_and_whole_decimal_keys_are_one_group() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::CountAll]);
        e.add(vec![Value::Int(5)], 1, &[Value::Null]);
        e.add(vec![d("5.00")], 2, &[Value::Null]);
        e.add(vec![d("5.5")], 3, &[Value::Null]);
        let out = e.flush();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].keys, vec![Value::Int(5)]);
        assert_eq!(out[0].aggregates, vec![Value::Int(2)]);
    }

    #[test]
    fn key_encoding_is_injective_across_lists_and_escapes() {
        let enc = |values: &[Value]| {
            let mut out = Vec::new();
            for v in values {
                encode_key(v, &mut out, usize::MAX).expect("no limit");
            }
            out
        };
        assert_ne!(enc(&[s("a\0"), s("b")]), enc(&[s("a"), s("\0b")]));
        assert_ne!(enc(&[s("ab")]), enc(&[s("a"), s("b")]));
        assert_ne!(
            enc(&[Value::Array(vec![s("a")]), s("b")]),
            enc(&[Value::Array(vec![s("a"), s("b")])])
        );
        assert!(enc(&[Value::Int(-3)]) < enc(&[Value::Int(2)]));
        assert!(enc(&[s("ab")]) < enc(&[s("b")]));
    }

    #[test]
    fn key_longer_than_the_limit_is_refused() {
        let mut e = Engine::new(
            timing(10, 10, 0),
            vec![Aggregate::CountAll],
            WindowLimits {
                max_key_bytes: 16,
                ..WindowLimits::default()
            },
        );
        assert_eq!(
            e.add(vec![s(&"x".repeat(100))], 1, &[Value::Null]),
            Pushed::KeyTooLarge
        );
        assert_eq!(e.stats.key_too_large, 1);
        assert_eq!(e.add(vec![s("short")], 1, &[Value::Null]), Pushed::Accepted);
    }

    #[test]
    fn aggregates_are_exact_and_ignore_non_numbers() {
        let aggregates = vec![
            Aggregate::Count,
            Aggregate::Sum,
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
        ];
        let mut e = engine(timing(10, 10, 0), aggregates);
        for v in [
            Value::Int(3),
            d("0.1"),
            s("0.2"),
            s("warm"),
            Value::Null,
            Value::Undefined,
            Value::Bool(true),
            Value::Int(-4),
        ] {
            e.add(vec![], 1, &[v.clone(), v.clone(), v.clone(), v.clone(), v]);
        }
        let out = e.flush();
        assert_eq!(
            out[0].aggregates,
            vec![
                Value::Int(6),
                d("-0.7"),
                d("-0.175"),
                Value::Int(-4),
                Value::Int(3)
            ]
        );
    }

    #[test]
    fn sum_of_ints_stays_int_and_exact_beyond_64_bits() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::Sum]);
        let big = 9_000_000_000_000_000_000_000_000_000_000_000i128;
        e.add(vec![], 1, &[Value::Int(big)]);
        e.add(vec![], 1, &[Value::Int(1)]);
        assert_eq!(e.flush()[0].aggregates, vec![Value::Int(big + 1)]);
        // Beyond 34 digits the sum is a Decimal.
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::Sum]);
        e.add(vec![], 1, &[Value::Int(big)]);
        e.add(vec![], 1, &[Value::Int(big)]);
        assert_eq!(
            e.flush()[0].aggregates,
            vec![Value::Decimal(Decimal::from_i128(2 * big))]
        );
    }

    #[test]
    fn sum_survives_i128_overflow_through_decimal() {
        let mut sum = Sum::default();
        sum.add(Number::Int(i128::MAX));
        sum.add(Number::Int(i128::MAX));
        let expected = Decimal::from_i128(i128::MAX).add(&Decimal::from_i128(i128::MAX));
        assert_eq!(sum.sum(), Value::Decimal(expected));
    }

    #[test]
    fn empty_numeric_aggregates_are_undefined_and_counts_zero() {
        let mut e = engine(
            timing(10, 10, 0),
            vec![
                Aggregate::Count,
                Aggregate::Sum,
                Aggregate::Avg,
                Aggregate::Min,
                Aggregate::Percentile(Decimal::from_i128(1)),
            ],
        );
        e.add(vec![], 1, &[s("x"), s("x"), s("x"), s("x"), s("x")]);
        assert_eq!(
            e.flush()[0].aggregates,
            vec![
                Value::Int(1),
                Value::Undefined,
                Value::Undefined,
                Value::Undefined,
                Value::Undefined
            ]
        );
    }

    #[test]
    fn percentile_interpolates_between_closest_ranks() {
        let p = |p: &str, values: &[i128]| {
            let mut sample = Sample::new();
            for v in values {
                sample.add(Number::Int(*v), 100);
            }
            sample.percentile(&Decimal::parse(p).expect("a test fraction"))
        };
        assert_eq!(p("0.5", &[5, 1, 3]), Value::Int(3));
        assert_eq!(p("0.5", &[4, 1, 3, 2]), d("2.5"));
        assert_eq!(p("0", &[4, 1, 3, 2]), Value::Int(1));
        assert_eq!(p("1", &[4, 1, 3, 2]), Value::Int(4));
        assert_eq!(p("0.9", &[10, 20]), Value::Decimal(Decimal::from_i128(19)));
        assert_eq!(p("0.5", &[]), Value::Undefined);
    }

    #[test]
    fn percentile_beyond_the_cap_is_undefined_and_counted() {
        let mut e = Engine::new(
            timing(10, 10, 0),
            vec![
                Aggregate::Percentile(Decimal::from_i128(1)),
                Aggregate::CountAll,
            ],
            WindowLimits {
                max_percentile_values: 3,
                ..WindowLimits::default()
            },
        );
        for i in 0..5 {
            e.add(vec![], 1, &[Value::Int(i), Value::Null]);
        }
        assert_eq!(e.stats.percentile_overflows, 1);
        assert_eq!(
            e.flush()[0].aggregates,
            vec![Value::Undefined, Value::Int(5)]
        );
    }

    #[test]
    fn event_time_near_u64_max_has_no_window() {
        let mut e = engine(timing(10, 10, 0), vec![Aggregate::CountAll]);
        assert_eq!(
            e.add(vec![], u64::MAX - 3, &[Value::Null]),
            Pushed::NoTimestamp
        );
    }

    #[test]
    fn line_column_counts_lines_and_characters() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nxé y", 7), (2, 4));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    // Statements built by hand until the parser lands.

    fn e(kind: ExprKind, at: usize) -> Expr {
        Expr {
            kind,
            span: Span::new(at, at + 1),
        }
    }

    fn field(name: &str, at: usize) -> Expr {
        e(ExprKind::Field(name.to_string()), at)
    }

    fn call(name: &str, args: Vec<Expr>, at: usize) -> Expr {
        e(
            ExprKind::Call {
                name: name.to_string(),
                args,
            },
            at,
        )
    }

    fn statement(items: Vec<SelectItem>, keys: Vec<Expr>, where_: Option<Expr>) -> Statement {
        Statement {
            set: vec![],
            select: Select {
                value: false,
                items,
            },
            from: None,
            where_,
            group_by: Some(GroupBy {
                keys,
                window: Window::Tumbling {
                    size: Duration {
                        unit: TimeUnit::Second,
                        count: 10,
                    },
                    span: Span::default(),
                },
                timestamp_by: None,
                lateness: None,
                span: Span::default(),
            }),
            span: Span::default(),
        }
    }

    fn item(expr: Expr, alias: Option<&str>) -> SelectItem {
        SelectItem::Expr {
            expr,
            alias: alias.map(str::to_string),
        }
    }

    const SQL: &str = "0123456789\n0123456789";

    fn compile(statement: &Statement) -> Result<Plan, Error> {
        Plan::compile(statement, SQL, &WindowLimits::default())
    }

    fn window_error(line: u32, column: u32) -> impl Fn(Error) -> bool {
        move |error| matches!(error, Error::Window { line: l, column: c, .. } if l == line && c == column)
    }

    #[test]
    fn plan_replaces_keys_and_aggregates_by_markers() {
        let key = call(
            "topic",
            vec![e(ExprKind::Literal(Literal::Number("2".into())), 0)],
            0,
        );
        let count = call("count", vec![e(ExprKind::Wildcard, 0)], 0);
        let avg = call("avg", vec![field("t", 0)], 0);
        let st = statement(
            vec![
                item(key.clone(), Some("device")),
                item(count.clone(), None),
                item(
                    e(
                        ExprKind::Binary {
                            op: crate::ast::BinaryOp::Div,
                            left: Box::new(call("sum", vec![field("t", 0)], 0)),
                            right: Box::new(count.clone()),
                        },
                        0,
                    ),
                    Some("mean"),
                ),
                item(avg, Some("avg")),
                item(call("window_end", vec![], 0), Some("end")),
            ],
            vec![key],
            None,
        );
        let plan = compile(&st).expect("a valid windowed statement");
        assert_eq!(
            plan.aggregates,
            vec![Aggregate::CountAll, Aggregate::Sum, Aggregate::Avg]
        );
        assert_eq!(plan.inputs.len(), 3);
        let names: Vec<_> = plan.items.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["device", "count", "mean", "avg", "end"]);
        assert_eq!(marker_index(&plan.items[0].1, KEY_CALL), Some(0));
        assert_eq!(marker_index(&plan.items[1].1, AGGREGATE_CALL), Some(0));
        assert_eq!(marker_index(&plan.items[3].1, AGGREGATE_CALL), Some(2));
        assert_eq!(plan.timing.size, 10_000);
    }

    #[test]
    fn plan_refuses_a_field_that_is_not_a_key_with_its_position() {
        let st = statement(
            vec![item(field("device_id", 12), None)],
            vec![field("other", 0)],
            None,
        );
        assert!(compile(&st).is_err_and(window_error(2, 2)));
        let st = statement(
            vec![item(field("device_id", 12), None)],
            vec![field("device_id", 0)],
            None,
        );
        assert!(compile(&st).is_ok());
    }

    #[test]
    fn plan_refuses_aggregates_outside_select_and_nested() {
        let count = || call("count", vec![e(ExprKind::Wildcard, 0)], 3);
        let st = statement(vec![item(count(), Some("n"))], vec![], Some(count()));
        assert!(compile(&st).is_err_and(window_error(1, 4)));
        let st = statement(
            vec![item(
                call("sum", vec![call("max", vec![field("x", 0)], 5)], 0),
                None,
            )],
            vec![],
            None,
        );
        assert!(compile(&st).is_err_and(window_error(1, 6)));
    }

    #[test]
    fn plan_refuses_select_star_message_functions_and_bad_percentiles() {
        let st = statement(
            vec![SelectItem::Wildcard {
                span: Span::new(7, 8),
            }],
            vec![],
            None,
        );
        assert!(compile(&st).is_err_and(window_error(1, 8)));
        let st = statement(vec![item(call("clientid", vec![], 1), None)], vec![], None);
        assert!(compile(&st).is_err_and(window_error(1, 2)));
        let number = |text: &str| e(ExprKind::Literal(Literal::Number(text.into())), 4);
        let st = statement(
            vec![item(
                call("percentile", vec![field("x", 0), number("1.5")], 0),
                None,
            )],
            vec![],
            None,
        );
        assert!(compile(&st).is_err_and(window_error(1, 5)));
        let st = statement(
            vec![item(
                call("percentile", vec![field("x", 0), number("0.95")], 0),
                None,
            )],
            vec![],
            None,
        );
        assert!(compile(&st).is_ok());
        let st = statement(
            vec![item(call("sum", vec![e(ExprKind::Wildcard, 0)], 0), None)],
            vec![],
            None,
        );
        assert!(compile(&st).is_err());
    }

    #[test]
    fn plan_refuses_a_statement_without_group_by_and_too_fine_hops() {
        let mut st = statement(vec![], vec![], None);
        st.group_by = None;
        assert!(compile(&st).is_err_and(window_error(1, 1)));
        let mut st = statement(vec![], vec![], None);
        if let Some(group_by) = &mut st.group_by {
            group_by.window = Window::Hopping {
                size: Duration {
                    unit: TimeUnit::Second,
                    count: 10,
                },
                hop: Duration {
                    unit: TimeUnit::Millisecond,
                    count: 10,
                },
                span: Span::default(),
            };
        }
        assert!(compile(&st).is_err());
    }

    /// A naive model of a tumbling window with lateness: per event, late when its window's end
    /// is at or before the largest earlier event time minus the lateness; otherwise counted.
    fn model(
        events: &[(u8, u64, i64)],
        size: u64,
        hop: u64,
        lateness: u64,
    ) -> BTreeMap<(u64, u8), Vec<i64>> {
        let mut groups: BTreeMap<(u64, u8), Vec<i64>> = BTreeMap::new();
        let mut max: Option<u64> = None;
        for &(key, t, v) in events {
            // Every window start that is a multiple of `hop`, from 0 to t.
            let starts = (0..=t / hop)
                .map(|k| k * hop)
                .filter(|start| t < start + size);
            for start in starts {
                let end = start + size;
                let late = max.is_some_and(|m| end + lateness <= m);
                if !late {
                    groups.entry((end, key)).or_default().push(v);
                }
            }
            max = Some(max.map_or(t, |m| m.max(t)));
        }
        groups
    }

    fn model_row(values: &[i64]) -> Vec<Value> {
        let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
        let n = i128::try_from(values.len()).expect("a small test");
        let avg = Decimal::from_i128(sum)
            .div(&Decimal::from_i128(n))
            .expect("a non-empty group");
        vec![
            Value::Int(n),
            Value::Int(sum),
            Value::Int(values.iter().copied().min().map_or(0, i128::from)),
            Value::Int(values.iter().copied().max().map_or(0, i128::from)),
            Value::Decimal(normalized(avg)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn tumbling_and_hopping_aggregates_agree_with_a_naive_model(
            size in 1u64..50,
            hops in 1u64..5,
            lateness in 0u64..30,
            steps in proptest::collection::vec((0u8..4, 0u64..60, -1_000i64..1_000, proptest::bool::ANY), 0..200),
            in_order in proptest::bool::ANY,
        ) {
            let hop = (size / hops).max(1);
            // Event times: in order, or each up to 60 ms before the latest so far (sometimes
            // within the lateness, sometimes beyond).
            let mut latest = 0u64;
            let mut events = Vec::new();
            let mut advances = Vec::new();
            for (key, delta, v, advance) in steps {
                let t = if in_order {
                    latest += delta;
                    latest
                } else {
                    latest += delta / 2;
                    latest.saturating_sub(delta)
                };
                events.push((key, t, v));
                advances.push(advance);
            }
            let mut e = engine(
                timing(size, hop, lateness),
                vec![Aggregate::CountAll, Aggregate::Sum, Aggregate::Min, Aggregate::Max, Aggregate::Avg],
            );
            let mut out = Vec::new();
            let mut max_event = 0;
            for (&(key, t, v), advance) in events.iter().zip(advances) {
                let input = Value::Int(i128::from(v));
                let inputs = [Value::Null, input.clone(), input.clone(), input.clone(), input];
                e.add(vec![Value::Int(i128::from(key))], t, &inputs);
                max_event = max_event.max(t);
                if advance {
                    // Arrival time no later than event time: only event time closes windows.
                    out.extend(e.advance(max_event));
                }
            }
            out.extend(e.flush());
            let ends: Vec<u64> = out.iter().map(|c| c.end).collect();
            let mut sorted = ends.clone();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(ends, sorted);
            let expected = model(&events, size, hop, lateness);
            let got: BTreeMap<(u64, u8), Vec<Value>> = out
                .into_iter()
                .map(|c| {
                    let key = match c.keys.first() {
                        Some(Value::Int(k)) => u8::try_from(*k).unwrap_or(u8::MAX),
                        _ => u8::MAX,
                    };
                    ((c.end, key), c.aggregates)
                })
                .collect();
            let expected: BTreeMap<(u64, u8), Vec<Value>> =
                expected.iter().map(|(k, v)| (*k, model_row(v))).collect();
            proptest::prop_assert_eq!(got, expected);
            let late = e.stats.late;
            let counted: u64 = e.stats.accepted;
            proptest::prop_assert_eq!(late + counted, events.len() as u64);
        }
    }

    #[test]
    fn reference_job_counts_hot_readings_per_device_like_plain_rust() {
        // 10,000 pseudo-random readings (a fixed linear congruential sequence), one 1-day
        // window: the count per device of readings above 25 equals a plain Rust count.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        let mut e = engine(timing(86_400_000, 86_400_000, 0), vec![Aggregate::CountAll]);
        let mut plain: BTreeMap<String, i128> = BTreeMap::new();
        for i in 0..10_000u64 {
            let device = format!("device-{}", next() % 50);
            let temperature = i128::from(next() % 400) - 50; // tenths of a degree
            if temperature > 250 {
                *plain.entry(device.clone()).or_default() += 1;
                e.add(vec![s(&device)], 1_700_000_000_000 + i, &[Value::Null]);
            }
        }
        let counted: BTreeMap<String, i128> = e
            .flush()
            .into_iter()
            .filter_map(|c| match (c.keys.first(), c.aggregates.first()) {
                (Some(Value::String(k)), Some(Value::Int(n))) => Some((k.clone(), *n)),
                _ => None,
            })
            .collect();
        assert_eq!(counted, plain);
    }
}
