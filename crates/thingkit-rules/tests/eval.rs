//! The AWS IoT SQL reference's printed examples (IOT-A `developerguide/iot-sql-*.md`), run
//! through `Rule::evaluate`, plus thingkit's documented decisions where AWS is silent.

mod common;

use common::{run, run_on};
use thingkit_rules::SqlVersion;

const V1: SqlVersion = SqlVersion::V2015_10_08;
const V2: SqlVersion = SqlVersion::V2016_03_23;

fn value_of(expr: &str) -> Option<String> {
    run(&format!("SELECT VALUE {expr} FROM 'topic/subtopic'"), "{}")
}

fn value_v1(expr: &str) -> Option<String> {
    run_on(
        &format!("SELECT VALUE {expr} FROM 'topic/subtopic'"),
        V1,
        "topic/subtopic",
        b"{}",
    )
}

fn fires(condition: &str, payload: &str) -> bool {
    run(
        &format!("SELECT * FROM 'topic/subtopic' WHERE {condition}"),
        payload,
    )
    .is_some()
}

const COLOR: &str = r#"{"color":"red", "temperature":50}"#;

// iot-sql-select.md

#[test]
fn select_star_outputs_the_payload() {
    assert_eq!(
        run("SELECT * FROM 'topic/subtopic'", COLOR).as_deref(),
        Some(r#"{"color":"red","temperature":50}"#)
    );
}

#[test]
fn select_field_keeps_its_name_and_as_renames_it() {
    assert_eq!(
        run("SELECT color FROM 'topic/subtopic'", COLOR).as_deref(),
        Some(r#"{"color":"red"}"#)
    );
    assert_eq!(
        run("SELECT color AS my_color FROM 'topic/subtopic'", COLOR).as_deref(),
        Some(r#"{"my_color":"red"}"#)
    );
    assert_eq!(
        run(
            "SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'",
            COLOR
        )
        .as_deref(),
        Some(r#"{"my_color":"red","fahrenheit":50}"#)
    );
}

#[test]
fn select_star_merges_with_other_items() {
    assert_eq!(
        run("SELECT *, 15 as speed FROM 'topic/subtopic'", COLOR).as_deref(),
        Some(r#"{"color":"red","temperature":50,"speed":15}"#)
    );
}

#[test]
fn select_value_outputs_the_bare_value() {
    assert_eq!(
        run("SELECT VALUE color FROM 'topic/subtopic'", COLOR).as_deref(),
        Some(r#""red""#)
    );
}

#[test]
fn dot_drills_into_nested_objects() {
    let payload = r#"{"color":{"red":255,"green":0,"blue":0}, "temperature":50}"#;
    assert_eq!(
        run(
            "SELECT color.red as red_value FROM 'topic/subtopic'",
            payload
        )
        .as_deref(),
        Some(r#"{"red_value":255}"#)
    );
}

#[test]
fn arithmetic_with_parentheses_as_in_the_select_page() {
    // The page's example also calls upper(); the arithmetic part is the evaluator's.
    assert_eq!(
        run(
            "SELECT (temperature - 32) * 5 / 9 AS celsius FROM 'topic/subtopic'",
            COLOR
        )
        .as_deref(),
        Some(r#"{"celsius":10}"#)
    );
}

#[test]
fn unaliased_expressions_are_named_by_position() {
    assert_eq!(
        run("SELECT 1 + 1, color FROM 'topic/subtopic'", COLOR).as_deref(),
        Some(r#"{"_1":2,"color":"red"}"#)
    );
}

// iot-sql-where.md

#[test]
fn where_fires_only_on_exactly_true() {
    assert!(fires("color = 'red'", COLOR));
    assert!(!fires("color = 'blue'", COLOR));
    assert!(!fires("missing > 1", COLOR));
    assert!(!fires("NOT (missing > 1)", COLOR));
    assert!(!fires("'true'", COLOR));
    assert!(!fires("NULL", COLOR));
}

#[test]
fn where_cannot_see_select_aliases() {
    assert_eq!(
        run(
            "SELECT color AS c FROM 'topic/subtopic' WHERE c = 'red'",
            COLOR
        ),
        None
    );
}

// iot-sql-data-types.md

#[test]
fn undefined_members_are_dropped_and_null_is_kept() {
    assert_eq!(
        run("SELECT foo, bar FROM 'topic/subtopic'", r#"{"foo":null}"#).as_deref(),
        Some(r#"{"foo":null}"#)
    );
    assert_eq!(
        run("SELECT bar FROM 'topic/subtopic'", r#"{"foo":null}"#).as_deref(),
        Some("{}")
    );
}

#[test]
fn select_value_of_undefined_outputs_nothing() {
    assert_eq!(run("SELECT VALUE bar FROM 'topic/subtopic'", "{}"), None);
}

#[test]
fn null_keyword_creates_null() {
    assert_eq!(
        run("SELECT NULL AS n FROM 'topic/subtopic'", "{}").as_deref(),
        Some(r#"{"n":null}"#)
    );
}

#[test]
fn whole_number_decimals_become_int_only_under_2016_03_23() {
    let payload = br#"{"t":10.0,"u":10.5}"#;
    assert_eq!(
        run_on("SELECT t, u FROM 'a'", V2, "a", payload).as_deref(),
        Some(r#"{"t":10,"u":10.5}"#)
    );
    assert_eq!(
        run_on("SELECT t, u FROM 'a'", V1, "a", payload).as_deref(),
        Some(r#"{"t":10.0,"u":10.5}"#)
    );
    assert_eq!(value_of("10.0").as_deref(), Some("10"));
    assert_eq!(value_v1("10.0").as_deref(), Some("10.0"));
    assert_eq!(value_of("2.5 * 2").as_deref(), Some("5"));
}

#[test]
fn numbers_keep_34_digits() {
    let payload =
        br#"{"n":1234567890123456789012345678901234,"d":0.1234567890123456789012345678901234}"#;
    assert_eq!(
        run_on("SELECT * FROM 'a'", V2, "a", payload).as_deref(),
        Some(
            r#"{"n":1234567890123456789012345678901234,"d":0.1234567890123456789012345678901234}"#
        )
    );
}

// iot-sql-operators.md

#[test]
fn and_or_not_accept_boolean_strings_in_any_case() {
    assert_eq!(value_of("true AND 'TRUE'").as_deref(), Some("true"));
    assert_eq!(value_of("'false' OR false").as_deref(), Some("false"));
    assert_eq!(value_of("NOT 'False'").as_deref(), Some("true"));
    assert_eq!(value_of("true AND 1"), None);
    assert_eq!(value_of("NOT 'yes'"), None);
    assert_eq!(value_of("NOT NULL"), None);
}

#[test]
fn comparisons_are_numeric_and_convert_numeric_strings() {
    assert_eq!(value_of("'10' > '9'").as_deref(), Some("true"));
    assert_eq!(value_of("10 >= 10.0").as_deref(), Some("true"));
    assert_eq!(value_of("1.5 < 2").as_deref(), Some("true"));
    assert_eq!(value_of("'5E-12' <= 0").as_deref(), Some("false"));
    assert_eq!(value_of("'abc' < 'abd'"), None);
    assert_eq!(value_of("true > false"), None);
    assert_eq!(value_of("NULL < 1"), None);
}

#[test]
fn equality_never_converts() {
    assert_eq!(value_of("'3' = 3").as_deref(), Some("false"));
    assert_eq!(value_of("'3' <> 3").as_deref(), Some("true"));
    assert_eq!(value_of("3 = 3.0").as_deref(), Some("true"));
    assert_eq!(value_of("'a' = 'a'").as_deref(), Some("true"));
    assert_eq!(value_of("NULL = NULL").as_deref(), Some("true"));
    assert_eq!(value_of("NULL <> NULL").as_deref(), Some("false"));
    assert_eq!(value_of("[1, 2] = [1, 2]").as_deref(), Some("true"));
    assert_eq!(value_of("[1, 2] = [2, 1]").as_deref(), Some("false"));
    assert_eq!(
        value_of("{'a': 1, 'b': 2} = {'b': 2, 'a': 1}").as_deref(),
        Some("true")
    );
    assert_eq!(value_of("missing = 1"), None);
    assert_eq!(value_of("1 <> missing"), None);
}

#[test]
fn plus_concatenates_when_either_side_is_a_string() {
    assert_eq!(value_of("'5' + 3").as_deref(), Some(r#""53""#));
    assert_eq!(value_of("3 + '5'").as_deref(), Some(r#""35""#));
    assert_eq!(value_of("'a' + true").as_deref(), Some(r#""atrue""#));
    assert_eq!(value_of("'a' + [1]").as_deref(), Some(r#""a[1]""#));
    assert_eq!(value_of("1 + 2").as_deref(), Some("3"));
    assert_eq!(value_of("1 + 2.5").as_deref(), Some("3.5"));
    assert_eq!(value_of("1 + true"), None);
    assert_eq!(value_of("'a' + NULL"), None);
}

#[test]
fn minus_times_divide_remainder_follow_the_tables() {
    assert_eq!(value_of("7 - 10").as_deref(), Some("-3"));
    assert_eq!(value_of("'7' - 2.5").as_deref(), Some("4.5"));
    assert_eq!(value_of("'7' * '2'").as_deref(), Some("14"));
    assert_eq!(value_of("7 / 2").as_deref(), Some("3"));
    assert_eq!(value_of("-7 / 2").as_deref(), Some("-3"));
    assert_eq!(value_of("7.5 / 2").as_deref(), Some("3.75"));
    // Under 2016-03-23, 7.0 is the Int 7, so this is Int division.
    assert_eq!(value_of("7.0 / 2").as_deref(), Some("3"));
    assert_eq!(value_v1("7.0 / 2").as_deref(), Some("3.5"));
    assert_eq!(value_of("-7 % 3").as_deref(), Some("-1"));
    assert_eq!(value_of("7.5 % 2").as_deref(), Some("1.5"));
    assert_eq!(value_of("'x' - 1"), None);
    assert_eq!(value_of("true * 2"), None);
}

#[test]
fn division_by_zero_is_undefined() {
    assert_eq!(value_of("1 / 0"), None);
    assert_eq!(value_of("1.5 / 0"), None);
    assert_eq!(value_of("1 % 0"), None);
}

#[test]
fn int_overflow_becomes_a_decimal() {
    assert_eq!(
        value_of("9999999999999999999999999999999999 + 1").and_then(|t| t.parse::<f64>().ok()),
        Some(1e34)
    );
}

#[test]
fn unary_minus_negates_numbers() {
    assert_eq!(value_of("-(2.5)").as_deref(), Some("-2.5"));
    assert_eq!(value_of("-('3')").as_deref(), Some("-3"));
    assert_eq!(value_of("-(true)"), None);
}

#[test]
fn in_tests_array_membership() {
    assert_eq!(value_of("2 IN [1, 2, 3]").as_deref(), Some("true"));
    assert_eq!(value_of("'2' IN [1, 2, 3]").as_deref(), Some("false"));
    assert_eq!(value_of("2 IN 2"), None);
    assert!(fires("color IN ['red', 'green']", COLOR));
}

// iot-sql-case.md

#[test]
fn case_picks_the_first_matching_when() {
    let sql = "SELECT CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' \
               WHEN 'red' THEN 'stop' ELSE 'you are not at a stop light' END as instructions \
               FROM 'topic/subtopic'";
    assert_eq!(
        run(sql, r#"{"color":"yellow"}"#).as_deref(),
        Some(r#"{"instructions":"caution"}"#)
    );
    assert_eq!(
        run(sql, r#"{"color":"blue"}"#).as_deref(),
        Some(r#"{"instructions":"you are not at a stop light"}"#)
    );
}

#[test]
fn case_on_undefined_is_undefined_even_with_else() {
    let sql = "SELECT CASE color WHEN 'red' THEN 'stop' ELSE 'other' END as i FROM 'a'";
    assert_eq!(run(sql, "{}").as_deref(), Some("{}"));
    let no_else = "SELECT CASE color WHEN 'red' THEN 'stop' END as i FROM 'a'";
    assert_eq!(run(no_else, r#"{"color":"blue"}"#).as_deref(), Some("{}"));
}

// iot-sql-nested-queries.md

const SENSORS: &str = r#"{"e":[
    {"n":"temperature","u":"Cel","t":1234,"v":22.5},
    {"n":"light","u":"lm","t":1235,"v":135},
    {"n":"acidity","u":"pH","t":1235,"v":7}]}"#;

#[test]
fn nested_select_value_builds_an_array() {
    assert_eq!(
        run(
            "SELECT (SELECT VALUE n FROM e) as sensors FROM 'my/topic'",
            SENSORS
        )
        .as_deref(),
        Some(r#"{"sensors":["temperature","light","acidity"]}"#)
    );
}

#[test]
fn nested_select_filters_elements() {
    assert_eq!(
        run(
            "SELECT (SELECT v FROM e WHERE n = 'temperature') as temperature FROM 'my/topic'",
            SENSORS
        )
        .as_deref(),
        Some(r#"{"temperature":[{"v":22.5}]}"#)
    );
}

#[test]
fn nested_select_result_can_be_indexed() {
    assert_eq!(
        run(
            "SELECT (SELECT v FROM e WHERE n = 'light')[0].v as light FROM 'my/topic'",
            SENSORS
        )
        .as_deref(),
        Some(r#"{"light":135}"#)
    );
}

// iot-sql-literals.md

#[test]
fn object_and_array_literals() {
    assert_eq!(
        run(
            "SELECT [lat,long] as lat_long FROM 'topic/subtopic'",
            r#"{"lat": 47.606, "long": -122.332}"#
        )
        .as_deref(),
        Some(r#"{"lat_long":[47.606,-122.332]}"#)
    );
    assert_eq!(
        run(
            "SELECT {'latitude': lat_long[0], 'longitude': lat_long[1]} as lat_long FROM 'a'",
            r#"{"lat_long": [47.606,-122.332]}"#
        )
        .as_deref(),
        Some(r#"{"lat_long":{"latitude":47.606,"longitude":-122.332}}"#)
    );
}

// SET (IOT-NOW iot-sql-set)

#[test]
fn set_variables_are_visible_in_order_and_in_where() {
    let sql =
        "SET @f = temperature, @c = (@f - 32) * 5 / 9 SELECT @c AS celsius FROM 'a' WHERE @f > 40";
    assert_eq!(run(sql, COLOR).as_deref(), Some(r#"{"celsius":10}"#));
    assert_eq!(run(sql, r#"{"temperature":32}"#), None);
}

// Binary payloads (iot-sql-json.md, binary-payloads.md)

#[test]
fn select_star_on_a_non_json_payload_is_the_raw_bytes() {
    assert_eq!(
        run_on("SELECT * FROM 'a'", V2, "a", b"\x01raw").as_deref(),
        Some("BINARY:\u{1}raw")
    );
    assert_eq!(
        run_on("SELECT * FROM 'a'", V2, "a", b"{\"a\":1,}").as_deref(),
        Some("BINARY:{\"a\":1,}")
    );
}

#[test]
fn fields_of_a_non_json_payload_are_undefined() {
    assert_eq!(
        run_on(
            "SELECT * FROM 'a' WHERE device_type = 'thermostat'",
            V2,
            "a",
            b"raw"
        ),
        None
    );
    assert_eq!(
        run_on("SELECT x, 1 AS one FROM 'a'", V2, "a", b"raw").as_deref(),
        Some(r#"{"one":1}"#)
    );
}

#[test]
fn select_star_plus_items_on_binary_keeps_the_bytes() {
    assert_eq!(
        run_on("SELECT *, 1 AS one FROM 'a'", V2, "a", b"raw").as_deref(),
        Some("BINARY:raw")
    );
    assert_eq!(
        run_on("SELECT *, 1 AS one FROM 'a'", V2, "a", b"").as_deref(),
        Some(r#"{"one":1}"#)
    );
}

// Function-library examples that depend on the evaluator's plumbing (`*` argument, topic()).

#[test]
fn decode_of_encoded_star_compares_as_json() {
    assert_eq!(
        run_on(
            "SELECT decode(encode(*, 'base64'), 'base64') AS value FROM 'a' \
             WHERE decode(encode(*, 'base64'), 'base64') > 50",
            V2,
            "a",
            b"80"
        )
        .as_deref(),
        Some(r#"{"value":80}"#)
    );
}

/// The JSON string `output` holds, without its quotes.
fn json_string(output: Option<String>) -> String {
    output
        .as_deref()
        .and_then(|text| text.strip_prefix('"'))
        .and_then(|text| text.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn encode_of_star_is_the_original_payload_bytes_not_a_reserialization() {
    use base64::Engine;
    let payload = br#"{"t": 26.30}"#;
    let encoded = json_string(run_on(
        "SELECT VALUE encode(*, 'base64') FROM 'a'",
        V2,
        "a",
        payload,
    ));
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes());
    assert_eq!(decoded.ok().as_deref(), Some(&payload[..]));
}

#[test]
fn hash_of_star_is_the_digest_of_the_payload_bytes() {
    use sha2::Digest;
    let payload = br#"{"t": 26.30, "id": "s-1"}"#;
    let hex = |digest: &[u8]| -> String { digest.iter().map(|b| format!("{b:02x}")).collect() };
    assert_eq!(
        json_string(run_on("SELECT VALUE md5(*) FROM 'a'", V2, "a", payload)),
        hex(&md5::Md5::digest(payload))
    );
    assert_eq!(
        json_string(run_on("SELECT VALUE sha256(*) FROM 'a'", V1, "a", payload)),
        hex(&sha2::Sha256::digest(payload))
    );
}

#[test]
fn encode_of_star_in_a_nested_query_is_the_current_element() {
    // There are no original bytes for an element: it is encoded through its String form.
    assert_eq!(
        run_on(
            "SELECT (SELECT VALUE encode(*, 'base64') FROM a) AS e FROM 'x'",
            V2,
            "x",
            br#"{"a": [{"n":  1}]}"#
        )
        .as_deref(),
        Some(r#"{"e":["eyJuIjoxfQ=="]}"#)
    );
}

#[test]
fn star_given_to_other_functions_is_still_the_parsed_payload() {
    assert_eq!(
        run_on(
            "SELECT VALUE get(*, 't') FROM 'a'",
            V2,
            "a",
            br#"{"t": 26.30}"#
        )
        .as_deref(),
        Some("26.30")
    );
}

#[test]
fn decimal_against_int_compares_exactly_at_every_size() {
    let t = |text: &str| format!(r#"{{"t": {text}}}"#);
    assert!(fires("t > 25", &t("25.000000000000000000000000000001")));
    assert!(!fires("t > 25", &t("24.999999999999999999999999999999")));
    assert!(fires("25 < t", &t("25.1")));
    assert!(fires("t < 0", &t("-1e-40")));
    assert!(fires("t > 0", &t("1e-40")));
    assert!(fires("t > 99999999999999999999999999999999", &t("1e40")));
    assert!(fires("t < -25", &t("-25.5")));
    assert!(fires("t >= -25", &t("-24.5")));
    assert!(!fires("t > 25", &t("25")));
}

#[test]
fn a_field_selected_once_or_read_by_several_items_has_the_same_value() {
    let payload = r#"{"t": 26.30, "xs": [{"x": 1}, {"x": 2}], "s": "a"}"#;
    let cases = [
        ("SELECT t FROM 'a' WHERE t > 25", r#"{"t":26.30}"#),
        ("SELECT t, t AS u FROM 'a'", r#"{"t":26.30,"u":26.30}"#),
        ("SELECT t, t + 1 AS u FROM 'a'", r#"{"t":26.30,"u":27.30}"#),
        (
            "SELECT xs, (SELECT VALUE x FROM xs) AS x FROM 'a'",
            r#"{"xs":[{"x":1},{"x":2}],"x":[1,2]}"#,
        ),
        (
            "SELECT s AS first, t, missing FROM 'a'",
            r#"{"first":"a","t":26.30}"#,
        ),
        ("SELECT t AS b, t AS b FROM 'a'", r#"{"b":26.30}"#),
    ];
    for (sql, expected) in cases {
        assert_eq!(run(sql, payload).as_deref(), Some(expected), "{sql}");
    }
}

#[test]
fn benchmark_statement_selects_and_filters() {
    let sql =
        "SELECT temperature, topic(2) AS device FROM 'telemetry/+/temp' WHERE temperature > 25";
    assert_eq!(
        run_on(
            sql,
            V2,
            "telemetry/dev-7/temp",
            br#"{"temperature":30,"h":1}"#
        )
        .as_deref(),
        Some(r#"{"temperature":30,"device":"dev-7"}"#)
    );
    assert_eq!(
        run_on(sql, V2, "telemetry/dev-7/temp", br#"{"temperature":20}"#),
        None
    );
}

#[test]
fn payload_deeper_than_the_limit_is_refused() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(
        run_on("SELECT * FROM 'a'", V2, "a", deep.as_bytes())
            .is_some_and(|o| o.starts_with("ERROR:"))
    );
}

#[test]
fn cast_follows_the_cast_table() {
    assert_eq!(value_of("cast(true as Int)").as_deref(), Some("1"));
    assert_eq!(value_of("cast('-1.7' as Int)").as_deref(), Some("-1"));
    assert_eq!(value_of("cast(1 as Boolean)").as_deref(), Some("true"));
    assert_eq!(value_v1("cast(1 as Boolean)"), None);
    assert_eq!(value_of("cast(NULL as String)"), None);
    assert_eq!(value_of("cast(12 as Blob)"), None);
}

// iot-substitution-templates.md

fn render(template: &str, sql: &str, payload: &str) -> String {
    use thingkit_rules::{Limits, Message, parse_template};
    let limits = Limits::default();
    let rule = common::compile(sql, V2);
    let message = Message {
        topic: "my/iot/topic",
        payload: payload.as_bytes(),
        client_id: Some("client-1"),
        principal: None,
        timestamp_ms: 1_579_637_878_451,
    };
    let (_, variables) = rule
        .evaluate_with_variables(&message, &common::FixedEnv, &limits)
        .unwrap_or_else(|e| panic!("{e}"));
    parse_template(template, V2, &limits)
        .and_then(|t| t.render(&message, &common::FixedEnv, V2, &variables, &limits))
        .unwrap_or_else(|e| panic!("{template}: {e}"))
}

const DEVICE: &str = r#"{"deviceid":"iot123","temp":54.98,"coords":{"latitude":47.615694}}"#;

#[test]
fn template_functions_and_text_render_in_place() {
    let sql = "SELECT *, timestamp() AS timestamp FROM 'my/iot/topic'";
    assert_eq!(
        render("${topic()}/republish", sql, DEVICE),
        "my/iot/topic/republish"
    );
    assert_eq!(render("device/${deviceid}", sql, DEVICE), "device/iot123");
    assert_eq!(
        render(
            "${replace(topic(), '/', '-') + '-' + timestamp()}",
            sql,
            DEVICE
        ),
        "my-iot-topic-1579637878451"
    );
}

#[test]
fn template_sees_the_original_payload_not_select_aliases() {
    let sql = "SELECT temp AS t FROM 'my/iot/topic'";
    assert_eq!(render("[${t}]", sql, DEVICE), "[]");
    assert_eq!(render("[${temp}]", sql, DEVICE), "[54.98]");
}

#[test]
fn template_renders_strings_unquoted_and_other_values_as_json() {
    let sql = "SELECT * FROM 'my/iot/topic'";
    assert_eq!(render("${deviceid}", sql, DEVICE), "iot123");
    assert_eq!(
        render("${coords}", sql, DEVICE),
        r#"{"latitude":47.615694}"#
    );
    assert_eq!(render("${missing}|${null}", sql, DEVICE), "|null");
}

#[test]
fn template_sees_set_variables() {
    let sql = "SET @id = upper(deviceid) SELECT * FROM 'my/iot/topic'";
    assert_eq!(render("things/${@id}", sql, DEVICE), "things/IOT123");
}

#[test]
fn outputs_larger_than_the_limit_are_refused() {
    use thingkit_rules::{Error, Limits, Message};
    let mut limits = Limits::default();
    limits.max_output_bytes = 64;
    let payload = format!(r#"{{"s":"{}"}}"#, "x".repeat(100));
    let message = Message {
        topic: "a",
        payload: payload.as_bytes(),
        client_id: None,
        principal: None,
        timestamp_ms: 0,
    };
    for sql in [
        "SELECT * FROM 'a'",
        "SELECT s FROM 'a'",
        "SELECT VALUE s + s FROM 'a'",
    ] {
        let rule = common::compile(sql, V2);
        assert!(
            matches!(
                rule.evaluate(&message, &common::FixedEnv, &limits),
                Err(Error::Limit { .. })
            ),
            "{sql}"
        );
    }
}

#[test]
fn v2_only_functions_are_undefined_under_2015_10_08() {
    assert_eq!(
        run_on("SELECT length('abc') AS n FROM 'a'", V1, "a", b"{}").as_deref(),
        Some("{}")
    );
    assert_eq!(
        run_on("SELECT length('abc') AS n FROM 'a'", V2, "a", b"{}").as_deref(),
        Some(r#"{"n":3}"#)
    );
}

#[test]
fn unaliased_function_items_are_named_after_the_function() {
    assert_eq!(
        run_on("SELECT topic(2) FROM 'a/+'", V2, "a/b", b"{}").as_deref(),
        Some(r#"{"topic":"b"}"#)
    );
}
