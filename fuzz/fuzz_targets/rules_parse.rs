//! Arbitrary UTF-8 as an AWS IoT SQL statement, an expression and a substitution template,
//! under both SQL versions: nothing may panic or overflow the stack, errors are 1-based, and
//! whatever parses prints back to SQL that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_rules::ast::SqlVersion;
use thingkit_rules::{Error, Limits, parse, parse_expression, parse_template};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    // Printing parenthesizes every operation, so a tree near the depth limit prints deeper.
    let mut generous = Limits::default();
    generous.max_sql_depth = limits.max_sql_depth * 4 + 16;
    generous.max_sql_bytes = usize::MAX;
    for version in [SqlVersion::V2015_10_08, SqlVersion::V2016_03_23] {
        match parse(text, version, &limits) {
            Ok(statement) => {
                let printed = statement.to_string();
                let again = parse(&printed, version, &generous);
                assert_eq!(again.as_ref(), Ok(&statement), "printed as: {printed}");
            }
            Err(Error::Parse { line, column, .. }) => assert!(line >= 1 && column >= 1),
            Err(_) => {}
        }
        if let Ok(expr) = parse_expression(text, version, &limits) {
            let printed = expr.to_string();
            let again = parse_expression(&printed, version, &generous);
            assert_eq!(again.as_ref(), Ok(&expr), "printed as: {printed}");
        }
        if let Ok(template) = parse_template(text, version, &limits) {
            let printed = template.to_string();
            let again = parse_template(&printed, version, &generous);
            assert_eq!(again.as_ref(), Ok(&template), "printed as: {printed}");
        }
    }
});
