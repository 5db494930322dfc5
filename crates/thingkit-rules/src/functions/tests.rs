//! Every example printed on AWS's functions page (IOT-A `iot-sql-functions.md`), called through
//! [`call`], plus the readings chosen where the page contradicts itself, and a property test that
//! no function panics or runs away on arbitrary values.

use proptest::prelude::*;

use super::*;
use crate::decimal::Decimal;
use crate::value::Object;

struct TestEnvironment;

impl Environment for TestEnvironment {
    fn new_uuid(&self) -> String {
        "123a4567-b89c-12d3-e456-789012345000".to_owned()
    }

    fn random(&self) -> f64 {
        0.8231909191640703
    }

    fn account_id(&self) -> Option<&str> {
        Some("123456789012")
    }

    fn call_external(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        match name {
            "get_thing_shadow" => Some(Ok(json(
                r#"{"state":{"reported":{"alarm":"ON"}},"args":1}"#,
            )))
            .map(|r| r.map(|v| with_arg_count(v, args.len()))),
            "aws_lambda" => Some(Err("function timed out".to_owned())),
            "sourceip" => Some(Ok(Value::String("192.0.2.7".to_owned()))),
            _ => None,
        }
    }
}

fn with_arg_count(value: Value, count: usize) -> Value {
    match value {
        Value::Object(mut object) => {
            object.insert("args".to_owned(), Value::Int(count as i128));
            Value::Object(object)
        }
        other => other,
    }
}

const TOPIC: &str = "things/myThings/thingOne";

fn message(topic: &str) -> Message<'_> {
    Message {
        topic,
        payload: b"{}",
        client_id: Some("myClient"),
        principal: Some("ba67293af50bf2506f5f93469686da660c7c844e7b3950bfb16813e0d31e9373"),
        timestamp_ms: 1_481_825_251_155,
    }
}

fn call_on(topic: &str, name: &str, args: &[Value]) -> Result<Value, Error> {
    let message = message(topic);
    let ctx = FunctionContext {
        message: &message,
        env: &TestEnvironment,
        version: SqlVersion::V2016_03_23,
    };
    call(name, args, &ctx)
}

fn eval(name: &str, args: &[Value]) -> Value {
    call_on(TOPIC, name, args).expect("only aws_lambda fails in these tests")
}

/// A value's JSON text, with its type: `Int 5`, `Decimal 1.0`, `String "a"`, ...
fn show(value: &Value) -> String {
    format!("{} {}", value.type_name(), crate::json::to_string(value))
}

fn json(text: &str) -> Value {
    fn convert(value: serde_json::Value) -> Value {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i128::from(i)),
                None => Value::Decimal(Decimal::parse(&n.to_string()).expect("a number")),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(convert).collect())
            }
            serde_json::Value::Object(members) => {
                let mut object = Object::new();
                for (key, value) in members {
                    object.insert(key, convert(value));
                }
                Value::Object(object)
            }
        }
    }
    convert(serde_json::from_str(text).expect("valid test JSON"))
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn int(i: i128) -> Value {
    Value::Int(i)
}

fn dec(text: &str) -> Value {
    Value::Decimal(Decimal::parse(text).expect("valid test decimal"))
}

/// Asserts `name(args)` is `expected` as [`show`] prints it.
#[track_caller]
fn case(name: &str, args: &[Value], expected: &str) {
    assert_eq!(show(&eval(name, args)), expected, "{name}({args:?})");
}

#[test]
fn abs_keeps_ints_and_converts_strings_to_decimal() {
    case("abs", &[int(-5)], "Int 5");
    case("abs", &[dec("-1.5")], "Decimal 1.5");
    case("abs", &[s("-2")], "Decimal 2");
    case("abs", &[Value::Bool(true)], "Undefined ");
    case("abs", &[Value::Null], "Undefined ");
}

#[test]
fn environment_and_message_functions() {
    case("accountid", &[], "String \"123456789012\"");
    case("clientid", &[], "String \"myClient\"");
    case(
        "newuuid",
        &[],
        "String \"123a4567-b89c-12d3-e456-789012345000\"",
    );
    case("rand", &[], "Decimal 0.8231909191640703");
    case("timestamp", &[], "Int 1481825251155");
    case("sql_version", &[], "String \"2016-03-23\"");
    case(
        "principal",
        &[],
        "String \"ba67293af50bf2506f5f93469686da660c7c844e7b3950bfb16813e0d31e9373\"",
    );
    case("traceid", &[], "Undefined ");
    case("sourceip", &[], "String \"192.0.2.7\"");
    case("timestamp", &[int(1)], "Undefined ");
}

#[test]
fn clientid_is_n_a_without_mqtt() {
    let mut message = message(TOPIC);
    message.client_id = None;
    let ctx = FunctionContext {
        message: &message,
        env: &TestEnvironment,
        version: SqlVersion::V2015_10_08,
    };
    assert_eq!(call("clientid", &[], &ctx), Ok(s("n/a")));
    assert_eq!(call("sql_version", &[], &ctx), Ok(s("2015-10-08")));
}

#[test]
fn double_precision_functions_match_the_page() {
    case("acos", &[int(0)], "Decimal 1.5707963267948966");
    case("asin", &[int(0)], "Decimal 0.0");
    case("atan", &[int(0)], "Decimal 0.0");
    case("atan2", &[int(1), int(0)], "Decimal 1.5707963267948966");
    case("cos", &[int(0)], "Decimal 1.0");
    case("cosh", &[dec("2.3")], "Decimal 5.037220649268761");
    case("exp", &[int(1)], "Decimal 2.718281828459045");
    case("ln", &[dec("2.718281828459045")], "Decimal 1.0");
    case("log", &[int(100)], "Decimal 2.0");
    case("power", &[int(2), int(5)], "Decimal 32.0");
    case("sin", &[int(0)], "Decimal 0.0");
    case("sinh", &[dec("2.3")], "Decimal 4.936961805545957");
    case("sqrt", &[int(9)], "Decimal 3.0");
    case("tan", &[int(3)], "Decimal -0.1425465430742778");
    case("tanh", &[dec("2.3")], "Decimal 0.9800963962661914");
    case("sqrt", &[s("9")], "Decimal 3.0");
}

#[test]
fn imaginary_and_overflowing_results_are_undefined() {
    case("acos", &[int(2)], "Undefined ");
    case("sqrt", &[int(-1)], "Undefined ");
    case("ln", &[int(0)], "Undefined ");
    case("power", &[int(10), int(400)], "Undefined ");
    case("exp", &[dec("1E999")], "Undefined ");
    case("sin", &[s("abc")], "Undefined ");
}

#[test]
fn bitwise_functions_floor_their_arguments() {
    case("bitand", &[int(13), int(5)], "Int 5");
    case("bitor", &[int(8), int(5)], "Int 13");
    // The page prints this example as `bitor(13, 5)` = 8; it is bitxor's.
    case("bitxor", &[int(13), int(5)], "Int 8");
    case("bitand", &[dec("13.9"), s("5.5")], "Int 5");
    case("bitor", &[s("x"), int(1)], "Undefined ");
}

#[test]
fn bitnot_is_twos_complement_not_the_pages_2() {
    // The page says bitnot(13) = 2; a NOT of 13 is -14 in any width over 4 bits.
    case("bitnot", &[int(13)], "Int -14");
    case("bitnot", &[dec("-1.5")], "Int 1");
}

#[test]
fn ceil_floor_round_sign() {
    case("ceil", &[dec("1.2")], "Int 2");
    case("ceil", &[dec("-1.2")], "Int -1");
    case("floor", &[dec("1.2")], "Int 1");
    case("floor", &[dec("-1.2")], "Int -2");
    case(
        "floor",
        &[Value::Array(vec![int(1), int(2), int(3)])],
        "Undefined ",
    );
    case("sign", &[int(-7)], "Int -1");
    case("sign", &[int(0)], "Int 0");
    case("sign", &[int(13)], "Int 1");
    case("sign", &[s("-0.5")], "Int -1");
}

#[test]
fn round_follows_the_examples_half_away_from_zero() {
    // The table says "rounded down"; the examples round half away from zero.
    case("round", &[dec("1.2")], "Int 1");
    case("round", &[dec("1.5")], "Int 2");
    case("round", &[dec("1.7")], "Int 2");
    case("round", &[dec("-1.1")], "Int -1");
    case("round", &[dec("-1.5")], "Int -2");
    case("round", &[int(4)], "Int 4");
}

#[test]
fn chr_gives_ascii_characters() {
    case("chr", &[int(65)], "String \"A\"");
    case("chr", &[int(49)], "String \"1\"");
    case("chr", &[dec("65.9")], "String \"A\"");
    case("chr", &[int(128)], "Undefined ");
    case("chr", &[int(-1)], "Undefined ");
}

#[test]
fn concat_examples() {
    case("concat", &[], "Undefined ");
    // "The argument is returned unmodified" vs the example concat(1) = "1": the example.
    case("concat", &[int(1)], "String \"1\"");
    case("concat", &[json("[1, 2, 3]"), int(4)], "Array [1,2,3,4]");
    case(
        "concat",
        &[json("[1, 2, 3]"), s("hello")],
        "Array [1,2,3,\"hello\"]",
    );
    case("concat", &[s("con"), s("cat")], "String \"concat\"");
    case("concat", &[int(1), s("hello")], "String \"1hello\"");
    case(
        "concat",
        &[s("he"), s("is"), s("man")],
        "String \"heisman\"",
    );
    case(
        "concat",
        &[json("[1, 2, 3]"), s("hello"), json("[4, 5, 6]")],
        "Array [1,2,3,\"hello\",4,5,6]",
    );
    case("concat", &[s("a"), Value::Null], "Undefined ");
}

#[test]
fn decode_reads_base64_json_and_text() {
    case(
        "decode",
        &[s("eyAidGVtcGVyYXR1cmUiOiAzMyB9Cg=="), s("base64")],
        "Object {\"temperature\":33}",
    );
    case("decode", &[s("aGVsbG8="), s("base64")], "String \"hello\"");
    case("decode", &[s("aGVsbG8"), s("base64")], "String \"hello\"");
    case("decode", &[s("ODA="), s("base64")], "Int 80");
    case("decode", &[s("not base64!"), s("base64")], "Null null");
    case("decode", &[s("aGVsbG8="), s("proto")], "Undefined ");
    case("decode", &[Value::Undefined, s("base64")], "Undefined ");
}

#[test]
fn string_form_of_an_array_is_the_rule_output_json() {
    // One writer for both: raw bytes inside an array are base64 and control characters are
    // \u escapes, as in a rule's output (json.rs), not a second dialect for functions.
    case(
        "concat",
        &[
            Value::Array(vec![Value::Binary(bytes::Bytes::from_static(b"hi"))]),
            s("\u{8}"),
        ],
        "Array [\"aGk=\",\"\\u0008\"]",
    );
    case(
        "lower",
        &[Value::Array(vec![Value::Binary(
            bytes::Bytes::from_static(b"hi"),
        )])],
        "String \"[\\\"agk=\\\"]\"",
    );
}

#[test]
fn encode_takes_raw_bytes_or_the_string_form() {
    case(
        "encode",
        &[
            Value::Binary(bytes::Bytes::from_static(&[0xff, 0x00, 0x80])),
            s("base64"),
        ],
        "String \"/wCA\"",
    );
    case("encode", &[int(80), s("base64")], "String \"ODA=\"");
    case(
        "encode",
        &[json(r#"{"a":1}"#), s("base64")],
        "String \"eyJhIjoxfQ==\"",
    );
    case("encode", &[s("x"), s("hex")], "Undefined ");
    // decode(encode(*, 'base64'), 'base64') turns a text payload into JSON (binary-payloads.md).
    let encoded = eval(
        "encode",
        &[Value::Binary(bytes::Bytes::from_static(b"80")), s("base64")],
    );
    case("decode", &[encoded, s("base64")], "Int 80");
}

#[test]
fn startswith_endswith() {
    case("endswith", &[s("cat"), s("at")], "Boolean true");
    case("startswith", &[s("ranger"), s("ran")], "Boolean true");
    case("startswith", &[int(123), int(12)], "Boolean true");
    case("endswith", &[s("cat"), Value::Null], "Undefined ");
}

#[test]
fn get_examples_with_a_zero_based_string_index() {
    case("get", &[json(r#"["a", "b", "c"]"#), int(1)], "String \"b\"");
    case("get", &[json(r#"{"a":"b"}"#), s("a")], "String \"b\"");
    // The page says get("abc", 1) = "a", against its own 0-based rule: we keep the rule.
    case("get", &[s("abc"), int(1)], "String \"b\"");
    case("get", &[json("[1]"), int(-1)], "Undefined ");
    case("get", &[json("[1]"), int(1)], "Undefined ");
    case("get", &[json("[1, 2]"), s("1")], "Int 2");
    case("get", &[json(r#"{"1":2}"#), int(1)], "Undefined ");
    case("get", &[int(5), int(0)], "Undefined ");
}

#[test]
fn get_or_default_replaces_undefined_and_null() {
    case("get_or_default", &[Value::Undefined, int(3)], "Int 3");
    case("get_or_default", &[Value::Null, int(3)], "Int 3");
    case("get_or_default", &[int(1), int(3)], "Int 1");
}

#[test]
fn hash_functions() {
    case(
        "md2",
        &[s("hello")],
        "String \"a9046c73e00331af68917d3804f70655\"",
    );
    case(
        "md5",
        &[s("hello")],
        "String \"5d41402abc4b2a76b9719d911017c592\"",
    );
    case(
        "sha1",
        &[s("hello")],
        "String \"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d\"",
    );
    case(
        "sha256",
        &[s("hello")],
        "String \"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"",
    );
    assert_eq!(show(&eval("sha224", &[s("")])).len(), 7 + 2 + 56);
    assert_eq!(show(&eval("sha384", &[s("")])).len(), 7 + 2 + 96);
    assert_eq!(show(&eval("sha512", &[s("")])).len(), 7 + 2 + 128);
    case("md5", &[Value::Null], "Undefined ");
    case(
        "md5",
        &[Value::Binary(bytes::Bytes::from_static(b"hello"))],
        "String \"5d41402abc4b2a76b9719d911017c592\"",
    );
}

#[test]
fn indexof_length_numbytes() {
    case("indexof", &[s("abcd"), s("bc")], "Int 1");
    case("indexof", &[s("abcd"), s("x")], "Int -1");
    case("length", &[s("hi")], "Int 2");
    case("length", &[Value::Bool(false)], "Int 5");
    case("numbytes", &[s("hi")], "Int 2");
    case("numbytes", &[s("€")], "Int 3");
}

#[test]
fn isnull_and_isundefined() {
    case("isnull", &[int(5)], "Boolean false");
    case("isnull", &[Value::Null], "Boolean true");
    case("isnull", &[Value::Undefined], "Boolean false");
    case("isundefined", &[int(5)], "Boolean false");
    let floored = eval("floor", &[json("[1,2,3]")]);
    case("isundefined", &[floored], "Boolean true");
}

#[test]
fn lower_upper_convert_arrays_to_json_text() {
    case("lower", &[s("HELLO")], "String \"hello\"");
    case(
        "lower",
        &[json(r#"["HELLO"]"#)],
        "String \"[\\\"hello\\\"]\"",
    );
    case("upper", &[s("hello")], "String \"HELLO\"");
    case(
        "upper",
        &[json(r#"["hello"]"#)],
        "String \"[\\\"HELLO\\\"]\"",
    );
}

#[test]
fn pads_clamp_their_count() {
    case("lpad", &[s("hello"), int(2)], "String \"  hello\"");
    case("lpad", &[int(1), int(3)], "String \"   1\"");
    case("rpad", &[s("hello"), int(2)], "String \"hello  \"");
    case("rpad", &[int(1), int(3)], "String \"1   \"");
    case("lpad", &[s("a"), int(-5)], "String \"a\"");
    case("lpad", &[s("a"), dec("2.9")], "String \"  a\"");
    assert_eq!(eval("rpad", &[s(""), dec("1E300")]), s(&" ".repeat(1000)));
    case("lpad", &[s("a"), Value::Bool(true)], "Undefined ");
}

#[test]
fn trims_strip_spaces_and_tabs() {
    // The page prints Ltrim(" h i ") = "hi "; a left trim keeps the inner space: "h i ".
    case("ltrim", &[s(" h i ")], "String \"h i \"");
    case("rtrim", &[s(" h i ")], "String \" h i\"");
    case("trim", &[s(" hi ")], "String \"hi\"");
    case("trim", &[s("\t x \t")], "String \"x\"");
    case("trim", &[Value::Null], "Undefined ");
}

#[test]
fn mod_and_remainder() {
    case("mod", &[int(8), int(3)], "Int 2");
    case("remainder", &[int(8), int(3)], "Int 2");
    case("mod", &[int(-8), int(3)], "Int -2");
    case("mod", &[dec("8.5"), int(3)], "Decimal 2.5");
    case("mod", &[s("8"), s("3")], "Decimal 2");
    case("mod", &[int(8), int(0)], "Undefined ");
}

#[test]
fn nanvl_examples() {
    case("nanvl", &[int(8), int(3)], "Int 8");
    case("nanvl", &[Value::Undefined, int(3)], "Int 3");
    case("nanvl", &[Value::Null, int(3)], "Int 3");
}

#[test]
fn parse_time_examples() {
    case(
        "parse_time",
        &[
            s("yyyy.MM.dd G 'at' HH:mm:ss z"),
            int(100_000_000),
            s("America/Belize"),
        ],
        "String \"1970.01.01 AD at 21:46:40 CST\"",
    );
    case(
        "parse_time",
        &[s("yyyy.MM.dd G 'at' HH:mm:ss z"), int(1_497_028_786_000)],
        "String \"2017.06.09 AD at 17:19:46 UTC\"",
    );
    case(
        "parse_time",
        &[s("yyyy"), int(1_481_825_251_155), s("UTC")],
        "String \"2016\"",
    );
}

#[test]
fn parse_time_fields_and_zones() {
    let millis = int(1_196_705_730_592); // 2007-12-03T18:15:30.592Z
    case(
        "parse_time",
        &[
            s("EEEE, d MMMM yy hh:mm:ss.SSS a Z ZZ"),
            millis.clone(),
            s("America/Los_Angeles"),
        ],
        "String \"Monday, 3 December 07 10:15:30.592 AM -0800 -08:00\"",
    );
    case(
        "parse_time",
        &[s("EEE MMM dd HH:mm z"), millis.clone(), s("+05:30")],
        "String \"Mon Dec 03 23:45 +05:30\"",
    );
    case(
        "parse_time",
        &[
            s("yyyy-MM-dd'T'HH:mm:ss ZZZ"),
            millis.clone(),
            s("Europe/Berlin"),
        ],
        "String \"2007-12-03T19:15:30 Europe/Berlin\"",
    );
    case(
        "parse_time",
        &[s("HH 'o''clock'"), millis.clone()],
        "String \"18 o'clock\"",
    );
    case(
        "parse_time",
        &[s("yyyy"), millis.clone(), s("Mars/Olympus")],
        "Undefined ",
    );
    case("parse_time", &[s("yyyy q"), millis.clone()], "Undefined ");
    case("parse_time", &[s("yyyy"), s("not a time")], "Undefined ");
}

#[test]
fn time_to_epoch_examples() {
    case(
        "time_to_epoch",
        &[
            s("2020-04-03 09:45:18 UTC+01:00"),
            s("yyyy-MM-dd HH:mm:ss VV"),
        ],
        "Int 1585903518000",
    );
    case(
        "time_to_epoch",
        &[s("18 December 2015"), s("dd MMMM yyyy")],
        "Int 1450396800000",
    );
    case(
        "time_to_epoch",
        &[
            s("2007-12-03 10:15:30.592 America/Los_Angeles"),
            s("yyyy-MM-dd HH:mm:ss.SSS z"),
        ],
        "Int 1196705730592",
    );
}

#[test]
fn time_to_epoch_offsets_abbreviations_and_mismatches() {
    case(
        "time_to_epoch",
        &[s("20071203101530-0800"), s("yyyyMMddHHmmssZ")],
        "Int 1196705730000",
    );
    case(
        "time_to_epoch",
        &[s("Dec 3, 2007 10:15 AM PST"), s("MMM d, yyyy hh:mm a z")],
        "Int 1196705700000",
    );
    case(
        "time_to_epoch",
        &[s("2015-12-18"), s("dd MMMM yyyy")],
        "Undefined ",
    );
    case(
        "time_to_epoch",
        &[s("2015-12-18 extra"), s("yyyy-MM-dd")],
        "Undefined ",
    );
    case(
        "time_to_epoch",
        &[s("2015-02-30"), s("yyyy-MM-dd")],
        "Undefined ",
    );
}

#[test]
fn regexp_examples() {
    case("regexp_matches", &[s("aaaa"), s("a{2,}")], "Boolean true");
    case("regexp_matches", &[s("aaaa"), s("b")], "Boolean false");
    case(
        "regexp_replace",
        &[s("abcd"), s("bc"), s("x")],
        "String \"axd\"",
    );
    case(
        "regexp_replace",
        &[s("abcd"), s("b(.*)d"), s("$1")],
        "String \"ac\"",
    );
    case("regexp_substr", &[s("hihihello"), s("hi")], "String \"hi\"");
    case(
        "regexp_substr",
        &[s("hihihello"), s("(hi)*")],
        "String \"hihi\"",
    );
}

#[test]
fn regexp_invalid_patterns_and_replacements_are_undefined() {
    case("regexp_matches", &[s("a"), s("(")], "Undefined ");
    // Look-around is Java syntax the linear-time engine does not have.
    case("regexp_matches", &[s("a"), s("a(?=b)")], "Undefined ");
    case(
        "regexp_replace",
        &[s("abcd"), s("b"), s("$2")],
        "Undefined ",
    );
    case(
        "regexp_replace",
        &[s("abcd"), s("(b)"), s("$1d")],
        "String \"abdcd\"",
    );
    case(
        "regexp_replace",
        &[s("a.b"), s("\\."), s("\\$")],
        "String \"a$b\"",
    );
    case("regexp_substr", &[s("abc"), s("x")], "Undefined ");
    case(
        "regexp_matches",
        &[s("abc"), s(&"a".repeat(5000))],
        "Undefined ",
    );
    case(
        "regexp_matches",
        &[s("abc"), s("\\w{1000}{1000}")],
        "Undefined ",
    );
    case("regexp_matches", &[Value::Null, s("a")], "Undefined ");
}

#[test]
fn replace_examples() {
    case("replace", &[s("abcd"), s("bc"), s("x")], "String \"axd\"");
    case(
        "replace",
        &[s("abcdabcd"), s("b"), s("x")],
        "String \"axcdaxcd\"",
    );
    case("replace", &[s("ab"), s(""), s("-")], "String \"-a-b-\"");
    case("replace", &[int(1001), int(0), int(9)], "String \"1991\"");
    let big = s(&"a".repeat(2000));
    case(
        "replace",
        &[big, s("a"), s(&"b".repeat(1000))],
        "Undefined ",
    );
}

#[test]
fn substring_examples() {
    case("substring", &[s("012345"), int(0)], "String \"012345\"");
    case("substring", &[s("012345"), int(2)], "String \"2345\"");
    case("substring", &[s("012345"), dec("2.745")], "String \"2345\"");
    case("substring", &[int(123), int(2)], "String \"3\"");
    case("substring", &[s("012345"), int(-1)], "String \"012345\"");
    case(
        "substring",
        &[Value::Bool(true), dec("1.2")],
        "String \"rue\"",
    );
    case(
        "substring",
        &[Value::Bool(false), dec("-2.411E247")],
        "String \"false\"",
    );
    case("substring", &[s("012345"), int(1), int(3)], "String \"12\"");
    case(
        "substring",
        &[s("012345"), int(-50), int(50)],
        "String \"012345\"",
    );
    case("substring", &[s("012345"), int(3), int(1)], "String \"\"");
}

#[test]
fn topic_examples_and_basic_ingest() {
    case("topic", &[], "String \"things/myThings/thingOne\"");
    case("topic", &[int(1)], "String \"things\"");
    case("topic", &[int(3)], "String \"thingOne\"");
    case("topic", &[int(4)], "Undefined ");
    case("topic", &[int(0)], "Undefined ");
    let ingest = "$aws/rules/BuildingManager/Buildings/Building5/Floor2/Room201/Lights";
    assert_eq!(
        call_on(ingest, "topic", &[]),
        Ok(s("Buildings/Building5/Floor2/Room201/Lights"))
    );
    assert_eq!(call_on(ingest, "topic", &[int(3)]), Ok(s("Floor2")));
    // Empty levels count, as `split('/')` counts them.
    assert_eq!(call_on("a//c/", "topic", &[int(2)]), Ok(s("")));
    assert_eq!(call_on("a//c/", "topic", &[int(3)]), Ok(s("c")));
    assert_eq!(call_on("a//c/", "topic", &[int(4)]), Ok(s("")));
    assert_eq!(call_on("a//c/", "topic", &[int(5)]), Ok(Value::Undefined));
}

#[test]
fn transform_examples() {
    let payload = json(
        r#"{"attributes": {"data1": 1, "data2": 2},
            "values": [{"a": 3}, {"b": 4}, {"c": 5}]}"#,
    );
    let Value::Object(payload) = payload else {
        unreachable!("an object literal")
    };
    let attributes = payload.get("attributes").cloned().expect("present");
    let values = payload.get("values").cloned().expect("present");
    case(
        "transform",
        &[s("enrichArray"), attributes, values.clone()],
        r#"Array [{"a":3,"data1":1,"data2":2},{"b":4,"data1":1,"data2":2},{"c":5,"data1":1,"data2":2}]"#,
    );
    case(
        "transform",
        &[s("enrichArray"), json(r#"{"key": 1}"#), values.clone()],
        r#"Array [{"a":3,"key":1},{"b":4,"key":1},{"c":5,"key":1}]"#,
    );
    let objects = json(
        r#"[{"x": {"someInt": 5, "someString": "hello"}, "y": true},
            {"x": {"someInt": 10, "someString": "world"}, "y": false}]"#,
    );
    case(
        "transform",
        &[
            s("enrichArray"),
            json(r#"{"a": "first attribute", "b": "second attribute"}"#),
            objects,
        ],
        concat!(
            r#"Array [{"x":{"someInt":5,"someString":"hello"},"y":true,"a":"first attribute","b":"second attribute"},"#,
            r#"{"x":{"someInt":10,"someString":"world"},"y":false,"a":"first attribute","b":"second attribute"}]"#
        ),
    );
    case("transform", &[s("other"), json("{}"), values], "Undefined ");
    let big = Value::Array(vec![json("{}"); 20]);
    let wide = Value::Object({
        let mut object = Object::new();
        object.insert("k".to_owned(), s(&"x".repeat(10_000)));
        object
    });
    case("transform", &[s("enrichArray"), wide, big], "Undefined ");
}

#[test]
fn trunc_examples() {
    case("trunc", &[dec("2.3"), int(0)], "Decimal 2");
    case("trunc", &[dec("2.3123"), int(2)], "Decimal 2.31");
    case("trunc", &[dec("2.888"), int(2)], "Decimal 2.88");
    case("trunc", &[dec("2.00"), int(5)], "Decimal 2");
    case("trunc", &[int(7), int(2)], "Int 7");
    case("trunc", &[s("-2.888"), dec("1.9")], "Decimal -2.8");
    case("trunc", &[dec("2.5"), s("1")], "Undefined ");
    case("trunc", &[dec("100.5"), int(0)], "Decimal 100");
    assert_eq!(eval("trunc", &[dec("1E+40"), int(3)]), dec("1E+40"));
}

#[test]
fn external_functions_go_to_the_environment() {
    let shadow = eval(
        "get_thing_shadow",
        &[
            s("MyThing"),
            s("arn:aws:iam::123456789012:role/AllowsThingShadowAccess"),
        ],
    );
    assert_eq!(
        show(&shadow),
        r#"Object {"args":2,"state":{"reported":{"alarm":"ON"}}}"#
    );
    case("get_dynamodb", &[s("t")], "Undefined ");
    assert_eq!(
        call_on(TOPIC, "aws_lambda", &[s("arn"), json("{}")]),
        Err(Error::External {
            function: "aws_lambda".to_owned(),
            message: "function timed out".to_owned(),
        })
    );
}

#[test]
fn wrong_argument_counts_and_unknown_names_are_undefined() {
    case("abs", &[], "Undefined ");
    case("abs", &[int(1), int(2)], "Undefined ");
    case("substring", &[s("a")], "Undefined ");
    case("no_such_function", &[int(1)], "Undefined ");
    assert!(!is_function("no_such_function"));
    assert!(is_function("get_thing_shadow") && is_function("abs"));
}

#[test]
fn v2_only_functions_are_the_2016_additions() {
    for name in [
        "encode",
        "decode",
        "indexof",
        "length",
        "numbytes",
        "isundefined",
    ] {
        assert!(is_v2_only(name), "{name}");
    }
    for name in [
        "transform",
        "parse_time",
        "time_to_epoch",
        "get_thing_shadow",
        "get_dynamodb",
    ] {
        assert!(is_v2_only(name), "{name}");
    }
    for name in [
        "abs",
        "concat",
        "topic",
        "isnull",
        "aws_lambda",
        "regexp_matches",
    ] {
        assert!(!is_v2_only(name), "{name}");
    }
    for name in V2_ONLY {
        assert!(is_function(name), "{name}");
    }
}

fn arbitrary_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Undefined),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-crate::value::MAX_INT..=crate::value::MAX_INT).prop_map(Value::Int),
        any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
        (any::<i64>(), -1200i32..1200).prop_map(|(m, e)| dec(&format!("{m}E{e}"))),
        "[a-z0-9 \\t$\\\\(){}*+?.|-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("1E999"),
            Just("-1E-999"),
            Just("9999999999999999999999999999999999"),
            Just("base64"),
            Just("enrichArray"),
            Just("yyyy-MM-dd HH:mm:ss.SSS z"),
            Just("America/Los_Angeles"),
            Just("(a*)*b"),
        ]
        .prop_map(s),
        proptest::collection::vec(any::<u8>(), 0..8)
            .prop_map(|b| Value::Binary(bytes::Bytes::from(b))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-c]", inner), 0..4).prop_map(|members| {
                let mut object = Object::new();
                for (key, value) in members {
                    object.insert(key, value);
                }
                Value::Object(object)
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_function_panics_or_grows_without_bound(
        args in proptest::collection::vec(arbitrary_value(), 0..4),
    ) {
        for name in BUILT_IN {
            let result = eval(name, &args);
            if let Value::String(text) = &result {
                prop_assert!(text.len() <= 2 * MAX_STRING_BYTES, "{name}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn huge_strings_are_bounded(n in 0usize..3, repeat in 1usize..50_000) {
        let long = s(&"ab ".repeat(repeat));
        let args = [long.clone(), long.clone(), long];
        for name in BUILT_IN {
            let _ = eval(name, args.get(..n + 1).unwrap_or(&[]));
        }
    }
}
