//! The parser against the statements AWS prints in its SQL reference pages, its errors and
//! limits, and the printer's round trip (`parse(print(tree)) == tree`).

use proptest::prelude::*;
use thingkit_rules::ast::{
    Assignment, BinaryOp, Duration, Expr, ExprKind, From, GroupBy, Literal, Select, SelectItem,
    Span, SqlVersion, Statement, TimeUnit, UnaryOp, Window,
};
use thingkit_rules::parser::is_reserved;
use thingkit_rules::{Error, Limits, Rule, TemplatePart, parse, parse_expression, parse_template};

const V1: SqlVersion = SqlVersion::V2015_10_08;
const V2: SqlVersion = SqlVersion::V2016_03_23;

fn parse_ok(sql: &str, version: SqlVersion) -> Statement {
    match parse(sql, version, &Limits::default()) {
        Ok(statement) => statement,
        Err(error) => panic!("{sql}\n  under {version}: {error}"),
    }
}

fn assert_round_trip(statement: &Statement, version: SqlVersion) {
    let printed = statement.to_string();
    let again = parse_ok(&printed, version);
    assert_eq!(&again, statement, "printed as: {printed}");
}

fn parse_error(sql: &str, version: SqlVersion) -> (u32, u32, String) {
    match parse(sql, version, &Limits::default()) {
        Err(Error::Parse {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("{sql}: expected a parse error, got {other:?}"),
    }
}

/// Statements from the AWS IoT SQL reference pages (select, from, where, case, literals,
/// nested queries, JSON extensions, functions, binary payloads) that need 2016-03-23.
const AWS_V2_STATEMENTS: &[&str] = &[
    "SELECT {'latitude': get(lat_long, 0),'longitude':get(lat_long, 1)} as lat_long FROM 'topic/subtopic'",
    "SELECT [lat,long] as lat_long FROM 'topic/subtopic'",
    "SELECT (SELECT VALUE n FROM e) as sensors FROM 'my/topic'",
    "SELECT (SELECT v FROM e WHERE n = 'temperature') as temperature FROM 'my/topic'",
    "SELECT get((SELECT v FROM e WHERE n = 'temperature'), 0).v as temperature FROM 'topic'",
    "SELECT\naws_lambda(\"arn:aws:lambda:us-east-1:account_id:function:lambda_function\", {\"payload\":attribute1}) as output FROM 'topic-filter'",
    "select value transform(\"enrichArray\", {\"key\": attributes.data1}, values) from 'A/B'",
    "select value transform('enrichArray', (select a, b from data2), (select value c from data2)) from 'A/B'",
    "SELECT * FROM 'a/b' WHERE device IN ['a', 'b']",
];

/// Statements from the same pages that are valid under both versions.
const AWS_STATEMENTS: &[&str] = &[
    "SELECT color AS rgb FROM 'topic/subtopic' WHERE temperature > 50",
    "SELECT * FROM 'topic/subtopic'",
    "SELECT color FROM 'topic/subtopic'",
    "SELECT color AS my_color FROM 'topic/subtopic'",
    "SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'",
    "SELECT *, 15 as speed FROM 'topic/subtopic'",
    "SELECT VALUE color FROM 'topic/subtopic'",
    "SELECT color.red as red_value FROM 'topic/subtopic'",
    "SELECT (temperature - 32) * 5 / 9 AS celsius, upper(color) as my_color FROM 'topic/subtopic'",
    "SELECT temperature AS t FROM 'topic/subtopic'",
    "SELECT temperature AS t FROM 'topic/#'",
    "SELECT temperature AS t FROM 'topic/+'",
    "SELECT color AS my_color FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'",
    "SELECT decode(encode(*, 'base64'), 'base64') AS value FROM 'topic/subtopic' WHERE decode(encode(*, 'base64'), 'base64') > 50",
    "SELECT CASE color\n        WHEN 'green' THEN 'go'\n        WHEN 'yellow' THEN 'caution'\n        WHEN 'red' THEN 'stop'\n        ELSE 'you are not at a stop light' END as instructions\n    FROM 'topic/subtopic'",
    "SELECT foo.bar AS bar.baz FROM 'topic/subtopic'",
    "SELECT * from 'iot/rules' WHERE get(get(get(mydata,\"item2\"),\"0\"),\"my-key\") = \"myValue\"",
    "SELECT VALUE arr FROM 'topic'",
    "SELECT * FROM 'topic/subtopic' WHERE timestamp() % 12 = 0",
    "SELECT *, principal() as principal, timestamp() as time FROM 'topic/subtopic'",
    "SELECT encode(*, 'base64') AS data, timestamp() AS ts FROM 'topic/subtopic'",
    "SELECT * FROM 'topic/subtopic' WHERE device_type = 'thermostat'",
    "SELECT encode(*, 'base64') AS data FROM 'my_topic'",
    "SELECT decode(encode(*, 'base64'), 'base64') AS payload FROM 'topic'",
    "SELECT decode(encoded_temp,\"base64\").temperature AS temp from 'topic/subtopic'",
    "SELECT *, get_dynamodb(\"InServiceDevices\", \"deviceId\", id, \"arn:aws:iam::12345678910:role/getdynamo\").location AS location FROM 'some/topic' ",
    "SELECT * from 'topic/subtopic'\nWHERE\n    get_thing_shadow(\"MyThing\",\"MyThingShadow\",\"arn:aws:iam::123456789012:role/AllowsThingShadowAccess\")\n    .state.reported.alarm = 'ON'",
    "SELECT * from 'topic/subtopic'\nWHERE\n    get_thing_shadow(\"MyThing\",\"arn:aws:iam::123456789012:role/AllowsThingShadowAccess\")\n    .state.reported.alarm = 'ON'",
    "SELECT parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", 100000000, 'America/Belize' ) as ts FROM 'A/B'",
    "SELECT parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", timestamp() ) as ts FROM 'A/B'",
    "SELECT\naws_lambda(\"arn:aws:lambda:us-east-1:account_id:function:lambda_function\", *) as output FROM 'topic-filter'",
    "select value transform(\"enrichArray\", attributes, values) from 'A/B'",
    "SELECT temp, md5(deviceid) AS hashed_id FROM 'topic/#'",
    "SELECT *, timestamp() AS timestamp FROM 'my/iot/topic'",
    // The spec's reference job (rules-audit.md §B).
    "SELECT topic(2) AS device_id, temperature, timestamp\nFROM 'devices/+/telemetry' WHERE temperature > 25",
    // The SET clause (current guide).
    "SET @celsius = (temperature - 32) * 5 / 9, @hot = @celsius > 30 SELECT @celsius AS c, @hot FROM 'sensors/+' WHERE @hot",
    "SET @shadow = get_thing_shadow(topic(2), 'arn:aws:iam::123456789012:role/r') SELECT @shadow.state.reported.mode AS mode FROM 'things/+/data'",
];

/// Function calls from the functions page's examples.
const AWS_EXPRESSIONS: &[&str] = &[
    "abs(-5)",
    "acos(0)",
    "atan2(1, 0)",
    "bitand(13, 5)",
    "cast(true as Int)",
    "cast(1.5 AS Decimal)",
    "ceil(-1.2)",
    "chr(65)",
    "concat(\"con\", \"cat\")",
    "concat([1, 2, 3], \"hello\", [4, 5, 6])",
    "endswith(\"cat\",\"at\")",
    "get({\"a\":\"b\"}, \"a\")",
    "get(\"abc\", 1)",
    "indexof(\"abcd\", \"bc\")",
    "isNull(Null)",
    "isUndefined(floor([1,2,3]))",
    "length(false)",
    "lower([\"HELLO\"])",
    "lpad(\"hello\", 2)",
    "Ltrim(\" h i \")",
    "md5(\"hello\")",
    "mod(8, 3)",
    "Nanvl(8, 3)",
    "newuuid()",
    "numbytes(\"€\")",
    "power(2, 5)",
    "regexp_replace(\"abcd\", \"b(.*)d\", \"$1\")",
    "regexp_matches(\"aaaa\", \"a{2,}\")",
    "Round(-1.5)",
    "sign(-7)",
    "sql_version()",
    "substring(false, -2.411E247)",
    "substring(\"012345\", 2.745)",
    "time_to_epoch(\"2020-04-03 09:45:18 UTC+01:00\", \"yyyy-MM-dd HH:mm:ss VV\")",
    "topic(3)",
    "trunc(2.00, 5)",
    "upper([\"hello\"])",
    "5E-12",
];

#[test]
fn every_aws_reference_statement_parses_and_round_trips() {
    for sql in AWS_STATEMENTS {
        for version in [V1, V2] {
            let statement = parse_ok(sql, version);
            assert_round_trip(&statement, version);
        }
    }
    for sql in AWS_V2_STATEMENTS {
        let statement = parse_ok(sql, V2);
        assert_round_trip(&statement, V2);
    }
}

#[test]
fn every_aws_function_example_parses() {
    for text in AWS_EXPRESSIONS {
        if let Err(error) = parse_expression(text, V2, &Limits::default()) {
            panic!("{text}: {error}");
        }
    }
}

#[test]
fn function_names_are_lower_cased_and_fields_keep_their_case() {
    let expr = parse_expression("Nanvl(Temp, 3)", V2, &Limits::default());
    let Ok(Expr {
        kind: ExprKind::Call { name, args },
        ..
    }) = expr
    else {
        panic!("{expr:?}")
    };
    assert_eq!(name, "nanvl");
    assert!(matches!(&args[0].kind, ExprKind::Field(f) if f == "Temp"));
}

#[test]
fn reference_statement_has_the_expected_tree() {
    let statement = parse_ok(
        "SELECT color AS rgb FROM 'topic/subtopic' WHERE temperature > 50",
        V1,
    );
    let field = |name: &str| Expr {
        kind: ExprKind::Field(name.into()),
        span: Span::default(),
    };
    let want = Statement {
        set: vec![],
        select: Select {
            value: false,
            items: vec![SelectItem::Expr {
                expr: field("color"),
                alias: Some("rgb".into()),
            }],
        },
        from: Some(From::Topic {
            filter: "topic/subtopic".into(),
            span: Span::default(),
        }),
        where_: Some(Expr {
            kind: ExprKind::Binary {
                op: BinaryOp::Gt,
                left: Box::new(field("temperature")),
                right: Box::new(Expr {
                    kind: ExprKind::Literal(Literal::Number("50".into())),
                    span: Span::default(),
                }),
            },
            span: Span::default(),
        }),
        group_by: None,
        span: Span::default(),
    };
    assert_eq!(statement, want);
}

#[test]
fn not_binds_looser_than_comparison_and_tighter_than_and() {
    let expr = parse_expression("NOT a > 1 AND b", V2, &Limits::default());
    let Ok(Expr {
        kind:
            ExprKind::Binary {
                op: BinaryOp::And,
                left,
                ..
            },
        ..
    }) = expr
    else {
        panic!("{expr:?}")
    };
    assert!(matches!(
        left.kind,
        ExprKind::Unary { op: UnaryOp::Not, ref expr } if matches!(expr.kind, ExprKind::Binary { op: BinaryOp::Gt, .. })
    ));
}

#[test]
fn windowed_statement_parses_every_part() {
    let statement = parse_ok(
        "SELECT device_id, count(*) AS n FROM 'devices/+/telemetry' WHERE temperature > 25 \
         GROUP BY device_id, HoppingWindow(MI, 10, 5) TIMESTAMP BY ts LATENESS(ss, 30)",
        V1,
    );
    let Some(group_by) = &statement.group_by else {
        panic!("no GROUP BY")
    };
    assert_eq!(group_by.keys.len(), 1);
    assert_eq!(
        group_by.window,
        Window::Hopping {
            size: Duration {
                unit: TimeUnit::Minute,
                count: 10
            },
            hop: Duration {
                unit: TimeUnit::Minute,
                count: 5
            },
            span: Span::default()
        }
    );
    assert!(group_by.timestamp_by.is_some());
    assert_eq!(
        group_by.lateness,
        Some(Duration {
            unit: TimeUnit::Second,
            count: 30
        })
    );
    assert_round_trip(&statement, V1);
}

#[test]
fn group_by_errors_name_the_rule_broken() {
    for (sql, needle) in [
        ("SELECT a FROM 't' GROUP BY a", "GROUP BY needs a window"),
        (
            "SELECT a FROM 't' GROUP BY TUMBLINGWINDOW(ss, 1), TUMBLINGWINDOW(ss, 2)",
            "exactly one window",
        ),
        (
            "SELECT a FROM 't' GROUP BY TUMBLINGWINDOW(ss, 0)",
            "at least 1",
        ),
        (
            "SELECT a FROM 't' GROUP BY TUMBLINGWINDOW(weeks, 1)",
            "time unit",
        ),
        (
            "SELECT (SELECT a FROM e GROUP BY TUMBLINGWINDOW(ss, 1)) FROM 't'",
            "top-level",
        ),
        (
            "SELECT a FROM 't' GROUP BY TUMBLINGWINDOW(ss, 1) WHERE a",
            "end of statement",
        ),
    ] {
        let (_, _, message) = parse_error(sql, V2);
        assert!(message.contains(needle), "{sql}: {message}");
    }
}

#[test]
fn errors_point_at_the_offending_token() {
    assert_eq!(
        parse_error("SELECT a FROM 't' WHER b", V2),
        (
            1,
            19,
            "expected `WHERE`, `GROUP BY`, or end of statement, found `WHER`".to_owned()
        )
    );
    assert_eq!(
        parse_error("SELECT a\n  FROM 't'\n  WHERE b >", V2),
        (
            3,
            12,
            "expected an expression, found end of text".to_owned()
        )
    );
    // Columns count characters, not bytes.
    let (line, column, _) = parse_error("SELECT 'é€' + , FROM 't'", V2);
    assert_eq!((line, column), (1, 15));
    let (line, column, message) = parse_error("SELECT a FROM topic/#", V2);
    assert_eq!((line, column), (1, 15));
    assert!(message.contains("single-quoted topic filter"), "{message}");
    let (_, column, message) = parse_error("SELECT CASE a WHEN 1 THEN 2 FROM 't'", V2);
    assert_eq!(column, 29);
    assert!(message.contains("`END`"), "{message}");
}

#[test]
fn version_2015_refuses_2016_syntax_naming_the_version() {
    for (sql, column) in [
        ("SELECT {'a': 1} AS o FROM 't'", 8),
        ("SELECT [a, b] AS o FROM 't'", 8),
        ("SELECT (SELECT VALUE n FROM e) AS s FROM 't'", 9),
        ("SELECT VALUE a, b FROM 't'", 8),
    ] {
        let (line, at, message) = parse_error(sql, V1);
        assert_eq!((line, at), (1, column), "{sql}");
        assert!(
            message.contains("2016-03-23") && message.contains("2015-10-08"),
            "{message}"
        );
        parse_ok(sql, V2);
        parse_ok(sql, SqlVersion::Beta);
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let n = 100_000;
    let inputs = [
        format!("SELECT {}a{} FROM 't'", "(".repeat(n), ")".repeat(n)),
        format!("SELECT {} FROM 't'", "(".repeat(n)),
        format!("SELECT {}a FROM 't'", "-".repeat(n)),
        format!("SELECT {}a FROM 't'", "NOT ".repeat(n)),
        format!("SELECT {} FROM 't'", "[".repeat(n)),
        format!("SELECT {} FROM 't'", "{'a':".repeat(n)),
        format!("SELECT {} FROM 't'", "(SELECT ".repeat(n)),
        format!("SELECT {} FROM 't'", "f(".repeat(n)),
        format!("SELECT {} FROM 't'", "CASE ".repeat(n)),
        format!("SELECT {}", "a[".repeat(n)),
    ];
    let mut limits = Limits::default();
    limits.max_sql_bytes = 1 << 20;
    for sql in inputs {
        let result = parse(&sql, V2, &limits);
        assert!(
            matches!(
                result,
                Err(Error::Limit {
                    what: "SQL nesting depth",
                    limit: 64
                })
            ),
            "{}...: {result:?}",
            &sql[..20]
        );
    }
    let template = format!("${{{}}}", "(".repeat(n));
    assert!(matches!(
        parse_template(&template, V2, &Limits::default()),
        Err(Error::Limit { .. })
    ));
}

#[test]
fn nesting_within_the_limit_parses() {
    let sql = format!("SELECT {}a{} FROM 't'", "(".repeat(50), ")".repeat(50));
    parse_ok(&sql, V2);
}

#[test]
fn statements_over_the_byte_limit_are_refused() {
    let mut limits = Limits::default();
    limits.max_sql_bytes = 20;
    assert_eq!(
        parse("SELECT abcdefgh FROM 'abc'", V2, &limits),
        Err(Error::Limit {
            what: "SQL statement (bytes)",
            limit: 20
        })
    );
}

#[test]
fn aws_template_examples_parse() {
    for text in [
        "${topic()}/republish",
        "${topic(2)}",
        "${timestamp()}",
        "${topic()}/${timestamp()}",
        "${replace(topic(), '/', '-') + '-' + timestamp() + '-' + newuuid()}",
        "${parse_time('yyyy', timestamp(), 'UTC')}",
        "device/${device_id}",
        "analytics/hot/${topic(2)}",
        "$$aws/things/${topic(2)}/shadow/update",
    ] {
        let template = parse_template(text, V2, &Limits::default());
        let Ok(template) = template else {
            panic!("{text}: {template:?}")
        };
        assert!(
            template
                .parts()
                .iter()
                .any(|part| matches!(part, TemplatePart::Expr(_))),
            "{text}"
        );
        let again = parse_template(&template.to_string(), V2, &Limits::default());
        assert_eq!(again.as_ref(), Ok(&template), "{text}");
    }
}

#[test]
fn rule_compile_uses_the_parser() {
    let rule = Rule::compile(
        "SELECT * FROM 'devices/+/telemetry' WHERE temperature > 25",
        V2,
        &Limits::default(),
    );
    assert_eq!(
        rule.as_ref().ok().and_then(Rule::topic_filter),
        Some("devices/+/telemetry")
    );
    assert!(matches!(
        Rule::compile("SELECT * FROM 'a/#/b'", V2, &Limits::default()),
        Err(Error::Parse {
            line: 1,
            column: 15,
            ..
        })
    ));
}

// ----- round trip over generated trees -----------------------------------------------------

fn span() -> Span {
    Span::default()
}

fn expr(kind: ExprKind) -> Expr {
    Expr { kind, span: span() }
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("not reserved", |n| !is_reserved(n))
}

fn function_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}".prop_filter("not reserved, not cast", |n| !is_reserved(n) && n != "cast")
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?([eE]-?[0-9]{1,2})?".prop_map(Literal::Number),
        any::<String>().prop_map(Literal::String),
        "[\\x00-\\x7f'\"\\\\]{0,6}".prop_map(Literal::String),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Null),
    ]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop_oneof![
        Just(BinaryOp::And),
        Just(BinaryOp::Or),
        Just(BinaryOp::Eq),
        Just(BinaryOp::NotEq),
        Just(BinaryOp::Lt),
        Just(BinaryOp::LtEq),
        Just(BinaryOp::Gt),
        Just(BinaryOp::GtEq),
        Just(BinaryOp::Add),
        Just(BinaryOp::Sub),
        Just(BinaryOp::Mul),
        Just(BinaryOp::Div),
        Just(BinaryOp::Rem),
        Just(BinaryOp::In),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        literal().prop_map(|l| expr(ExprKind::Literal(l))),
        name().prop_map(|n| expr(ExprKind::Field(n))),
        "[A-Za-z0-9_]{1,10}".prop_map(|n| expr(ExprKind::Variable(n))),
    ]
}

fn tree() -> BoxedStrategy<Expr> {
    leaf()
        .prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                (inner.clone(), "[a-zA-Z_][a-zA-Z0-9_]{0,6}").prop_map(|(base, name)| expr(
                    ExprKind::Member {
                        base: Box::new(base),
                        name
                    }
                )),
                (inner.clone(), inner.clone()).prop_map(|(base, index)| expr(ExprKind::Index {
                    base: Box::new(base),
                    index: Box::new(index)
                })),
                (
                    function_name(),
                    prop::collection::vec(
                        prop_oneof![4 => inner.clone(), 1 => Just(expr(ExprKind::Wildcard))],
                        0..3
                    )
                )
                    .prop_map(|(name, args)| expr(ExprKind::Call { name, args })),
                (
                    inner.clone(),
                    prop::sample::select(vec!["Int", "Decimal", "String", "Bool", "boolean"])
                )
                    .prop_map(|(e, ty)| expr(ExprKind::Cast {
                        expr: Box::new(e),
                        ty: ty.into()
                    })),
                (
                    prop_oneof![Just(UnaryOp::Not), Just(UnaryOp::Neg)],
                    inner.clone()
                )
                    .prop_map(|(op, e)| expr(ExprKind::Unary {
                        op,
                        expr: Box::new(e)
                    })),
                (binary_op(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| expr(
                    ExprKind::Binary {
                        op,
                        left: Box::new(l),
                        right: Box::new(r)
                    }
                )),
                (
                    inner.clone(),
                    prop::collection::vec((inner.clone(), inner.clone()), 1..3),
                    prop::option::of(inner.clone())
                )
                    .prop_map(|(operand, whens, else_)| expr(ExprKind::Case {
                        operand: Box::new(operand),
                        whens,
                        else_: else_.map(Box::new)
                    })),
                prop::collection::vec((any::<String>(), inner.clone()), 0..3)
                    .prop_map(|members| expr(ExprKind::Object(members))),
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| expr(ExprKind::Array(items))),
                (
                    select(inner.clone()),
                    prop::option::of(inner.clone()),
                    prop::option::of(inner.clone())
                )
                    .prop_map(|(select, from, where_)| expr(ExprKind::Subquery(
                        Box::new(Statement {
                            set: vec![],
                            select,
                            from: from.map(From::Expr),
                            where_,
                            group_by: None,
                            span: span()
                        })
                    ))),
            ]
        })
        .boxed()
}

fn select(inner: impl Strategy<Value = Expr> + Clone) -> impl Strategy<Value = Select> {
    let item = prop_oneof![
        1 => Just(SelectItem::Wildcard { span: span() }),
        4 => (
            inner,
            prop::option::of(prop_oneof![
                "[a-zA-Z_][a-zA-Z0-9_]{0,6}(\\.[a-z_][a-z0-9_]{0,3})?",
                Just("value".to_owned()),
                Just("timestamp".to_owned())
            ])
        )
            .prop_map(|(expr, alias)| SelectItem::Expr { expr, alias }),
    ];
    (any::<bool>(), prop::collection::vec(item, 1..4))
        .prop_map(|(value, items)| Select { value, items })
}

fn duration() -> impl Strategy<Value = (TimeUnit, u64, u64)> {
    (
        prop::sample::select(vec![
            TimeUnit::Millisecond,
            TimeUnit::Second,
            TimeUnit::Minute,
            TimeUnit::Hour,
            TimeUnit::Day,
        ]),
        1u64..1000,
        1u64..1000,
    )
}

fn group_by() -> impl Strategy<Value = GroupBy> {
    (
        prop::collection::vec(tree(), 0..3),
        any::<bool>(),
        duration(),
        prop::option::of(tree()),
        prop::option::of(duration()),
    )
        .prop_map(|(keys, hopping, (unit, a, b), timestamp_by, lateness)| {
            let size = Duration {
                unit,
                count: a.max(b),
            };
            let window = if hopping {
                Window::Hopping {
                    size,
                    hop: Duration {
                        unit,
                        count: a.min(b),
                    },
                    span: span(),
                }
            } else {
                Window::Tumbling { size, span: span() }
            };
            GroupBy {
                keys,
                window,
                timestamp_by,
                lateness: lateness.map(|(unit, count, _)| Duration { unit, count }),
                span: span(),
            }
        })
}

fn statement() -> impl Strategy<Value = Statement> {
    (
        prop::collection::btree_map("[A-Za-z0-9_]{1,8}", tree(), 0..3),
        select(tree()),
        prop::option::of(any::<String>()),
        prop::option::of(tree()),
        prop::option::of(group_by()),
    )
        .prop_map(|(set, select, from, where_, group_by)| Statement {
            set: set
                .into_iter()
                .map(|(name, value)| Assignment {
                    name,
                    value,
                    span: span(),
                })
                .collect(),
            select,
            from: from.map(|filter| From::Topic {
                filter,
                span: span(),
            }),
            where_,
            group_by,
            span: span(),
        })
}

/// Printing parenthesizes every operation, so a tree near the depth limit may print deeper.
fn generous() -> Limits {
    let mut limits = Limits::default();
    limits.max_sql_depth = limits.max_sql_depth * 4 + 16;
    limits.max_sql_bytes = usize::MAX;
    limits
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_statements_parse_back_to_the_same_tree(statement in statement()) {
        let printed = statement.to_string();
        let again = parse(&printed, V2, &Limits::default());
        prop_assert_eq!(again.as_ref(), Ok(&statement), "printed as: {}", printed);
    }

    #[test]
    fn printed_expressions_parse_back_to_the_same_tree(tree in tree()) {
        let printed = tree.to_string();
        let again = parse_expression(&printed, V2, &Limits::default());
        prop_assert_eq!(again.as_ref(), Ok(&tree), "printed as: {}", printed);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        for version in [V1, V2] {
            if let Ok(statement) = parse(&text, version, &Limits::default()) {
                let printed = statement.to_string();
                prop_assert_eq!(parse(&printed, version, &generous()), Ok(statement));
            }
            let _ = parse_expression(&text, version, &Limits::default());
            let _ = parse_template(&text, version, &Limits::default());
        }
    }

    #[test]
    fn sql_like_text_never_panics(
        words in prop::collection::vec(
            prop::sample::select(vec![
                "SELECT", "VALUE", "FROM", "WHERE", "SET", "@a", "=", "(", ")", "[", "]", "{", "}",
                ",", ".", ":", "*", "-", "+", "NOT", "AND", "IN", "CASE", "WHEN", "THEN", "ELSE",
                "END", "'t'", "\"s\"", "1", "2.5E-3", "a", "f", "cast", "AS", "GROUP", "BY",
                "TUMBLINGWINDOW", "HOPPINGWINDOW", "ss", "TIMESTAMP", "LATENESS", "${", "$$",
            ]),
            0..40,
        )
    ) {
        let text = words.join(" ");
        for version in [V1, V2] {
            if let Ok(statement) = parse(&text, version, &Limits::default()) {
                let printed = statement.to_string();
                prop_assert_eq!(parse(&printed, version, &generous()), Ok(statement));
            }
            let _ = parse_template(&text, version, &Limits::default());
        }
    }
}
