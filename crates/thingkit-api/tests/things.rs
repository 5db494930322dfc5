//! The thing, thing type, thing group and endpoint operations, driven in process as boto3
//! would call them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use thingkit_api::keys::KeyStore;
use thingkit_api::{ApiResult, ControlPlane, Endpoints, Input};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{MemoryStore, Registry};

const ARN: &str = "arn:aws:iot:us-east-1:123456789012:";

fn plane() -> ControlPlane<MemoryStore> {
    ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "us-east-1", "123456789012").expect("a valid prefix"),
        Arc::new(KeyStore::default()),
    )
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn call(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> ApiResult<Value> {
    plane.call(op, Input::from_json(input), t0())
}

fn ok(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> Value {
    match call(plane, op, input) {
        Ok(v) => v,
        Err(e) => panic!("{op} failed: {e}"),
    }
}

fn code(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> &'static str {
    match call(plane, op, input) {
        Ok(v) => panic!("{op} succeeded with {v}"),
        Err(e) => e.code,
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[test]
fn create_thing_returns_name_arn_and_uuid() {
    let p = plane();
    let out = ok(&p, "CreateThing", json!({"thingName": "dev1"}));
    assert_eq!(out["thingName"], "dev1");
    assert_eq!(out["thingArn"], format!("{ARN}thing/dev1"));
    assert!(is_uuid(out["thingId"].as_str().unwrap_or_default()));
}

#[test]
fn create_thing_again_with_same_properties_returns_it_and_with_others_is_refused() {
    let p = plane();
    let input = json!({"thingName": "dev1", "attributePayload": {"attributes": {"a": "1"}}});
    let first = ok(&p, "CreateThing", input.clone());
    assert_eq!(ok(&p, "CreateThing", input), first);
    let other = json!({"thingName": "dev1", "attributePayload": {"attributes": {"a": "2"}}});
    assert_eq!(
        code(&p, "CreateThing", other),
        "ResourceAlreadyExistsException"
    );
}

#[test]
fn create_thing_with_missing_type_or_billing_group_is_not_found() {
    let p = plane();
    let missing_type = json!({"thingName": "d", "thingTypeName": "nope"});
    assert_eq!(
        code(&p, "CreateThing", missing_type),
        "ResourceNotFoundException"
    );
    let billing = json!({"thingName": "d", "billingGroupName": "b"});
    assert_eq!(
        code(&p, "CreateThing", billing),
        "ResourceNotFoundException"
    );
}

#[test]
fn create_thing_refuses_a_name_the_model_refuses() {
    let p = plane();
    assert_eq!(
        code(&p, "CreateThing", json!({"thingName": "has space"})),
        "InvalidRequestException"
    );
    assert_eq!(
        code(&p, "CreateThing", json!({"thingName": ""})),
        "InvalidRequestException"
    );
}

#[test]
fn create_thing_over_the_attribute_limit_without_a_type_is_invalid_request() {
    let p = plane();
    let attrs = json!({"a": "1", "b": "2", "c": "3", "d": "4"});
    let input = json!({"thingName": "d", "attributePayload": {"attributes": attrs}});
    assert_eq!(code(&p, "CreateThing", input), "InvalidRequestException");
}

#[test]
fn describe_thing_answers_every_member() {
    let p = plane();
    ok(&p, "CreateThingType", json!({"thingTypeName": "sensor"}));
    let created = ok(
        &p,
        "CreateThing",
        json!({"thingName": "dev1", "thingTypeName": "sensor",
               "attributePayload": {"attributes": {"room": "k1"}}}),
    );
    let d = ok(&p, "DescribeThing", json!({"thingName": "dev1"}));
    assert_eq!(d["defaultClientId"], "dev1");
    assert_eq!(d["thingName"], "dev1");
    assert_eq!(d["thingId"], created["thingId"]);
    assert_eq!(d["thingArn"], created["thingArn"]);
    assert_eq!(d["thingTypeName"], "sensor");
    assert_eq!(d["attributes"], json!({"room": "k1"}));
    assert_eq!(d["version"], 1);
    assert!(d.get("billingGroupName").is_none());
}

#[test]
fn describe_missing_thing_is_not_found() {
    let p = plane();
    assert_eq!(
        code(&p, "DescribeThing", json!({"thingName": "nope"})),
        "ResourceNotFoundException"
    );
}

#[test]
fn list_things_pages_through_75_things_in_3_pages_of_25() {
    let p = plane();
    for i in 0..75 {
        ok(&p, "CreateThing", json!({"thingName": format!("t{i:02}")}));
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut input = json!({"maxResults": 25});
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let out = ok(&p, "ListThings", input);
        pages += 1;
        let things = out["things"].as_array().cloned().unwrap_or_default();
        assert_eq!(things.len(), 25);
        for t in &things {
            names.push(t["thingName"].as_str().unwrap_or_default().to_string());
            assert_eq!(t["version"], 1);
            assert!(t["thingArn"].as_str().unwrap_or_default().starts_with(ARN));
        }
        match out.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..75).map(|i| format!("t{i:02}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn list_things_uses_the_default_page_size_without_max_results() {
    let p = plane();
    for i in 0..30 {
        ok(&p, "CreateThing", json!({"thingName": format!("t{i:02}")}));
    }
    let out = ok(&p, "ListThings", json!({}));
    assert_eq!(out["things"].as_array().map(Vec::len), Some(25));
    assert!(out["nextToken"].is_string());
}

#[test]
fn list_things_refuses_a_token_it_did_not_issue() {
    let p = plane();
    ok(&p, "CreateThing", json!({"thingName": "a"}));
    for bad in ["not base64!", "Zm9vYmFy", ""] {
        assert_eq!(
            code(&p, "ListThings", json!({"nextToken": bad})),
            "InvalidRequestException",
            "token {bad:?}"
        );
    }
}

#[test]
fn list_things_refuses_max_results_out_of_range() {
    let p = plane();
    assert_eq!(
        code(&p, "ListThings", json!({"maxResults": 0})),
        "InvalidRequestException"
    );
    assert_eq!(
        code(&p, "ListThings", json!({"maxResults": 251})),
        "InvalidRequestException"
    );
}

#[test]
fn list_things_filters_by_type_and_attribute() {
    let p = plane();
    ok(&p, "CreateThingType", json!({"thingTypeName": "lamp"}));
    let attrs = |v: &str| json!({"attributes": {"site": v}});
    ok(
        &p,
        "CreateThing",
        json!({"thingName": "a", "thingTypeName": "lamp", "attributePayload": attrs("berlin")}),
    );
    ok(
        &p,
        "CreateThing",
        json!({"thingName": "b", "attributePayload": attrs("bern")}),
    );
    ok(&p, "CreateThing", json!({"thingName": "c"}));
    let names = |out: Value| -> Vec<String> {
        out["things"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| t["thingName"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        names(ok(&p, "ListThings", json!({"thingTypeName": "lamp"}))),
        ["a"]
    );
    assert_eq!(
        names(ok(
            &p,
            "ListThings",
            json!({"attributeName": "site", "attributeValue": "bern"})
        )),
        ["b"]
    );
    assert_eq!(
        names(ok(
            &p,
            "ListThings",
            json!({"attributeName": "site", "attributeValue": "ber", "usePrefixAttributeValue": true})
        )),
        ["a", "b"]
    );
    assert_eq!(
        names(ok(&p, "ListThings", json!({"attributeName": "site"}))),
        ["a", "b"]
    );
    let listed = ok(&p, "ListThings", json!({"thingTypeName": "lamp"}));
    assert_eq!(listed["things"][0]["thingTypeName"], "lamp");
    assert_eq!(listed["things"][0]["attributes"], json!({"site": "berlin"}));
    assert_eq!(
        code(&p, "ListThings", json!({"attributeValue": "x"})),
        "InvalidRequestException"
    );
}

#[test]
fn update_thing_merges_and_removes_empty_values_when_merging() {
    let p = plane();
    ok(
        &p,
        "CreateThing",
        json!({"thingName": "d", "attributePayload": {"attributes": {"a": "1", "b": "2"}}}),
    );
    ok(
        &p,
        "UpdateThing",
        json!({"thingName": "d", "attributePayload": {"attributes": {"a": "", "c": "3"}, "merge": true}}),
    );
    let d = ok(&p, "DescribeThing", json!({"thingName": "d"}));
    assert_eq!(d["attributes"], json!({"b": "2", "c": "3"}));
    assert_eq!(d["version"], 2);
}

#[test]
fn update_thing_without_merge_replaces_every_attribute() {
    let p = plane();
    ok(
        &p,
        "CreateThing",
        json!({"thingName": "d", "attributePayload": {"attributes": {"a": "1", "b": "2"}}}),
    );
    ok(
        &p,
        "UpdateThing",
        json!({"thingName": "d", "attributePayload": {"attributes": {"c": "3"}}}),
    );
    let d = ok(&p, "DescribeThing", json!({"thingName": "d"}));
    assert_eq!(d["attributes"], json!({"c": "3"}));
}

#[test]
fn update_thing_sets_and_removes_the_type() {
    let p = plane();
    ok(&p, "CreateThingType", json!({"thingTypeName": "lamp"}));
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    ok(
        &p,
        "UpdateThing",
        json!({"thingName": "d", "thingTypeName": "lamp"}),
    );
    assert_eq!(
        ok(&p, "DescribeThing", json!({"thingName": "d"}))["thingTypeName"],
        "lamp"
    );
    ok(
        &p,
        "UpdateThing",
        json!({"thingName": "d", "removeThingType": true}),
    );
    assert!(
        ok(&p, "DescribeThing", json!({"thingName": "d"}))
            .get("thingTypeName")
            .is_none()
    );
    assert_eq!(
        code(
            &p,
            "UpdateThing",
            json!({"thingName": "d", "removeThingType": true, "thingTypeName": "lamp"})
        ),
        "InvalidRequestException"
    );
}

#[test]
fn update_thing_with_a_stale_expected_version_is_a_version_conflict() {
    let p = plane();
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    ok(
        &p,
        "UpdateThing",
        json!({"thingName": "d", "expectedVersion": 1}),
    );
    assert_eq!(
        code(
            &p,
            "UpdateThing",
            json!({"thingName": "d", "expectedVersion": 1})
        ),
        "VersionConflictException"
    );
    assert_eq!(
        code(&p, "UpdateThing", json!({"thingName": "nope"})),
        "ResourceNotFoundException"
    );
}

#[test]
fn update_thing_to_a_deprecated_type_is_invalid_request() {
    let p = plane();
    ok(&p, "CreateThingType", json!({"thingTypeName": "old"}));
    ok(&p, "DeprecateThingType", json!({"thingTypeName": "old"}));
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    assert_eq!(
        code(
            &p,
            "UpdateThing",
            json!({"thingName": "d", "thingTypeName": "old"})
        ),
        "InvalidRequestException"
    );
}

#[test]
fn delete_thing_checks_the_version_and_succeeds_for_a_missing_thing() {
    let p = plane();
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    assert_eq!(
        code(
            &p,
            "DeleteThing",
            json!({"thingName": "d", "expectedVersion": 7})
        ),
        "VersionConflictException"
    );
    ok(
        &p,
        "DeleteThing",
        json!({"thingName": "d", "expectedVersion": 1}),
    );
    assert_eq!(
        code(&p, "DescribeThing", json!({"thingName": "d"})),
        "ResourceNotFoundException"
    );
    ok(&p, "DeleteThing", json!({"thingName": "d"}));
}

#[test]
fn thing_type_lifecycle_follows_aws() {
    let p = plane();
    let created = ok(
        &p,
        "CreateThingType",
        json!({"thingTypeName": "sensor", "thingTypeProperties": {
            "thingTypeDescription": "temperature", "searchableAttributes": ["room", "floor"]}}),
    );
    assert_eq!(created["thingTypeArn"], format!("{ARN}thingtype/sensor"));
    assert!(is_uuid(created["thingTypeId"].as_str().unwrap_or_default()));
    assert_eq!(
        code(&p, "CreateThingType", json!({"thingTypeName": "sensor"})),
        "ResourceAlreadyExistsException"
    );
    let d = ok(&p, "DescribeThingType", json!({"thingTypeName": "sensor"}));
    assert_eq!(d["thingTypeId"], created["thingTypeId"]);
    assert_eq!(
        d["thingTypeProperties"],
        json!({"thingTypeDescription": "temperature", "searchableAttributes": ["room", "floor"]})
    );
    assert_eq!(
        d["thingTypeMetadata"],
        json!({"deprecated": false, "creationDate": 1_700_000_000})
    );
    // Not deprecated: cannot be deleted.
    assert_eq!(
        code(&p, "DeleteThingType", json!({"thingTypeName": "sensor"})),
        "InvalidRequestException"
    );
    ok(&p, "DeprecateThingType", json!({"thingTypeName": "sensor"}));
    let d = ok(&p, "DescribeThingType", json!({"thingTypeName": "sensor"}));
    assert_eq!(d["thingTypeMetadata"]["deprecated"], true);
    assert_eq!(d["thingTypeMetadata"]["deprecationDate"], 1_700_000_000);
    // Deprecated, but not for five minutes yet.
    assert_eq!(
        code(&p, "DeleteThingType", json!({"thingTypeName": "sensor"})),
        "InvalidRequestException"
    );
    ok(
        &p,
        "DeprecateThingType",
        json!({"thingTypeName": "sensor", "undoDeprecate": true}),
    );
    let d = ok(&p, "DescribeThingType", json!({"thingTypeName": "sensor"}));
    assert_eq!(
        d["thingTypeMetadata"],
        json!({"deprecated": false, "creationDate": 1_700_000_000})
    );
    ok(&p, "DeprecateThingType", json!({"thingTypeName": "sensor"}));
    let later = t0() + Duration::from_secs(5 * 60);
    p.call(
        "DeleteThingType",
        Input::from_json(json!({"thingTypeName": "sensor"})),
        later,
    )
    .expect("deleted five minutes after deprecation");
    assert_eq!(
        code(&p, "DescribeThingType", json!({"thingTypeName": "sensor"})),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(&p, "DeleteThingType", json!({"thingTypeName": "sensor"})),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(&p, "DeprecateThingType", json!({"thingTypeName": "sensor"})),
        "ResourceNotFoundException"
    );
}

#[test]
fn deleting_a_type_things_still_have_is_invalid_request() {
    let p = plane();
    ok(&p, "CreateThingType", json!({"thingTypeName": "lamp"}));
    ok(
        &p,
        "CreateThing",
        json!({"thingName": "d", "thingTypeName": "lamp"}),
    );
    ok(&p, "DeprecateThingType", json!({"thingTypeName": "lamp"}));
    let later = t0() + Duration::from_secs(600);
    let e = p
        .call(
            "DeleteThingType",
            Input::from_json(json!({"thingTypeName": "lamp"})),
            later,
        )
        .expect_err("a type in use is kept");
    assert_eq!(e.code, "InvalidRequestException");
}

#[test]
fn create_thing_type_refuses_more_than_three_searchable_attributes() {
    let p = plane();
    let input = json!({"thingTypeName": "t", "thingTypeProperties": {
        "searchableAttributes": ["a", "b", "c", "d"]}});
    assert_eq!(
        code(&p, "CreateThingType", input),
        "InvalidRequestException"
    );
}

#[test]
fn list_thing_types_pages_and_filters_by_name() {
    let p = plane();
    for i in 0..5 {
        ok(
            &p,
            "CreateThingType",
            json!({"thingTypeName": format!("ty{i}")}),
        );
    }
    let first = ok(&p, "ListThingTypes", json!({"maxResults": 3}));
    let types = first["thingTypes"].as_array().cloned().unwrap_or_default();
    assert_eq!(types.len(), 3);
    assert_eq!(types[0]["thingTypeName"], "ty0");
    assert_eq!(types[0]["thingTypeArn"], format!("{ARN}thingtype/ty0"));
    assert_eq!(types[0]["thingTypeMetadata"]["deprecated"], false);
    let token = first["nextToken"].as_str().unwrap_or_default();
    let second = ok(
        &p,
        "ListThingTypes",
        json!({"maxResults": 3, "nextToken": token}),
    );
    assert_eq!(second["thingTypes"].as_array().map(Vec::len), Some(2));
    assert!(second.get("nextToken").is_none());
    let only = ok(&p, "ListThingTypes", json!({"thingTypeName": "ty3"}));
    assert_eq!(only["thingTypes"].as_array().map(Vec::len), Some(1));
    assert_eq!(only["thingTypes"][0]["thingTypeName"], "ty3");
}

#[test]
fn thing_group_create_describe_and_hierarchy() {
    let p = plane();
    let root = ok(
        &p,
        "CreateThingGroup",
        json!({"thingGroupName": "fleet", "thingGroupProperties": {
            "thingGroupDescription": "all", "attributePayload": {"attributes": {"k": "v"}}}}),
    );
    assert_eq!(root["thingGroupArn"], format!("{ARN}thinggroup/fleet"));
    assert!(is_uuid(root["thingGroupId"].as_str().unwrap_or_default()));
    ok(
        &p,
        "CreateThingGroup",
        json!({"thingGroupName": "eu", "parentGroupName": "fleet"}),
    );
    ok(
        &p,
        "CreateThingGroup",
        json!({"thingGroupName": "berlin", "parentGroupName": "eu"}),
    );
    let d = ok(
        &p,
        "DescribeThingGroup",
        json!({"thingGroupName": "berlin"}),
    );
    assert_eq!(d["version"], 1);
    assert_eq!(d["status"], "ACTIVE");
    assert_eq!(d["thingGroupMetadata"]["parentGroupName"], "eu");
    assert_eq!(d["thingGroupMetadata"]["creationDate"], 1_700_000_000);
    assert_eq!(
        d["thingGroupMetadata"]["rootToParentThingGroups"],
        json!([
            {"groupName": "fleet", "groupArn": format!("{ARN}thinggroup/fleet")},
            {"groupName": "eu", "groupArn": format!("{ARN}thinggroup/eu")},
        ])
    );
    let d = ok(&p, "DescribeThingGroup", json!({"thingGroupName": "fleet"}));
    assert_eq!(d["thingGroupId"], root["thingGroupId"]);
    assert_eq!(
        d["thingGroupProperties"],
        json!({"thingGroupDescription": "all", "attributePayload": {"attributes": {"k": "v"}}})
    );
    assert_eq!(
        code(
            &p,
            "CreateThingGroup",
            json!({"thingGroupName": "x", "parentGroupName": "nope"})
        ),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(&p, "DescribeThingGroup", json!({"thingGroupName": "nope"})),
        "ResourceNotFoundException"
    );
}

#[test]
fn create_thing_group_again_is_idempotent_only_with_the_same_properties() {
    let p = plane();
    let input =
        json!({"thingGroupName": "g", "thingGroupProperties": {"thingGroupDescription": "d"}});
    let first = ok(&p, "CreateThingGroup", input.clone());
    assert_eq!(ok(&p, "CreateThingGroup", input), first);
    let other =
        json!({"thingGroupName": "g", "thingGroupProperties": {"thingGroupDescription": "e"}});
    assert_eq!(
        code(&p, "CreateThingGroup", other),
        "ResourceAlreadyExistsException"
    );
}

#[test]
fn list_thing_groups_by_parent_prefix_and_recursion() {
    let p = plane();
    for (name, parent) in [
        ("a", None),
        ("a1", Some("a")),
        ("a11", Some("a1")),
        ("a2", Some("a")),
        ("b", None),
    ] {
        let mut input = json!({"thingGroupName": name});
        if let Some(parent) = parent {
            input["parentGroupName"] = json!(parent);
        }
        ok(&p, "CreateThingGroup", input);
    }
    let names = |out: Value| -> Vec<String> {
        out["thingGroups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|g| g["groupName"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        names(ok(&p, "ListThingGroups", json!({}))),
        ["a", "a1", "a11", "a2", "b"]
    );
    assert_eq!(
        names(ok(&p, "ListThingGroups", json!({"recursive": false}))),
        ["a", "b"]
    );
    assert_eq!(
        names(ok(&p, "ListThingGroups", json!({"parentGroup": "a"}))),
        ["a1", "a2"]
    );
    assert_eq!(
        names(ok(
            &p,
            "ListThingGroups",
            json!({"parentGroup": "a", "recursive": true})
        )),
        ["a1", "a11", "a2"]
    );
    assert_eq!(
        names(ok(&p, "ListThingGroups", json!({"namePrefixFilter": "a1"}))),
        ["a1", "a11"]
    );
    let paged = ok(&p, "ListThingGroups", json!({"maxResults": 2}));
    assert_eq!(names(paged.clone()), ["a", "a1"]);
    let rest = ok(
        &p,
        "ListThingGroups",
        json!({"maxResults": 10, "nextToken": paged["nextToken"]}),
    );
    assert_eq!(names(rest), ["a11", "a2", "b"]);
    assert_eq!(
        code(&p, "ListThingGroups", json!({"parentGroup": "nope"})),
        "ResourceNotFoundException"
    );
}

#[test]
fn update_thing_group_bumps_the_version_and_checks_the_expected_one() {
    let p = plane();
    ok(
        &p,
        "CreateThingGroup",
        json!({"thingGroupName": "g", "thingGroupProperties": {
            "attributePayload": {"attributes": {"a": "1", "b": "2"}}}}),
    );
    let out = ok(
        &p,
        "UpdateThingGroup",
        json!({"thingGroupName": "g", "expectedVersion": 1, "thingGroupProperties": {
            "thingGroupDescription": "new",
            "attributePayload": {"attributes": {"a": "", "c": "3"}, "merge": true}}}),
    );
    assert_eq!(out, json!({"version": 2}));
    let d = ok(&p, "DescribeThingGroup", json!({"thingGroupName": "g"}));
    assert_eq!(
        d["thingGroupProperties"],
        json!({"thingGroupDescription": "new", "attributePayload": {"attributes": {"b": "2", "c": "3"}}})
    );
    assert_eq!(
        code(
            &p,
            "UpdateThingGroup",
            json!({"thingGroupName": "g", "expectedVersion": 1, "thingGroupProperties": {}})
        ),
        "VersionConflictException"
    );
    assert_eq!(
        code(
            &p,
            "UpdateThingGroup",
            json!({"thingGroupName": "nope", "thingGroupProperties": {}})
        ),
        "ResourceNotFoundException"
    );
    // thingGroupProperties is required by the model.
    assert_eq!(
        code(&p, "UpdateThingGroup", json!({"thingGroupName": "g"})),
        "InvalidRequestException"
    );
}

#[test]
fn delete_thing_group_refuses_children_and_releases_member_things() {
    let p = plane();
    ok(&p, "CreateThingGroup", json!({"thingGroupName": "parent"}));
    ok(
        &p,
        "CreateThingGroup",
        json!({"thingGroupName": "child", "parentGroupName": "parent"}),
    );
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    ok(
        &p,
        "AddThingToThingGroup",
        json!({"thingGroupName": "child", "thingName": "d"}),
    );
    assert_eq!(
        code(&p, "DeleteThingGroup", json!({"thingGroupName": "parent"})),
        "InvalidRequestException"
    );
    assert_eq!(
        code(
            &p,
            "DeleteThingGroup",
            json!({"thingGroupName": "child", "expectedVersion": 9})
        ),
        "VersionConflictException"
    );
    ok(&p, "DeleteThingGroup", json!({"thingGroupName": "child"}));
    let groups = ok(&p, "ListThingGroupsForThing", json!({"thingName": "d"}));
    assert_eq!(groups["thingGroups"], json!([]));
    ok(&p, "DeleteThingGroup", json!({"thingGroupName": "parent"}));
    // A group that does not exist: success, as in AWS.
    ok(&p, "DeleteThingGroup", json!({"thingGroupName": "parent"}));
}

#[test]
fn things_join_and_leave_groups_by_name_or_arn() {
    let p = plane();
    ok(&p, "CreateThingGroup", json!({"thingGroupName": "g"}));
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    ok(
        &p,
        "AddThingToThingGroup",
        json!({"thingGroupArn": format!("{ARN}thinggroup/g"), "thingArn": format!("{ARN}thing/d")}),
    );
    // Adding again changes nothing.
    ok(
        &p,
        "AddThingToThingGroup",
        json!({"thingGroupName": "g", "thingName": "d"}),
    );
    let groups = ok(&p, "ListThingGroupsForThing", json!({"thingName": "d"}));
    assert_eq!(
        groups["thingGroups"],
        json!([{"groupName": "g", "groupArn": format!("{ARN}thinggroup/g")}])
    );
    ok(
        &p,
        "RemoveThingFromThingGroup",
        json!({"thingGroupName": "g", "thingArn": format!("{ARN}thing/d")}),
    );
    ok(
        &p,
        "RemoveThingFromThingGroup",
        json!({"thingGroupName": "g", "thingName": "d"}),
    );
    let groups = ok(&p, "ListThingGroupsForThing", json!({"thingName": "d"}));
    assert_eq!(groups["thingGroups"], json!([]));
}

#[test]
fn group_membership_calls_refuse_missing_or_foreign_resources() {
    let p = plane();
    ok(&p, "CreateThingGroup", json!({"thingGroupName": "g"}));
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    for op in ["AddThingToThingGroup", "RemoveThingFromThingGroup"] {
        assert_eq!(
            code(&p, op, json!({"thingGroupName": "nope", "thingName": "d"})),
            "ResourceNotFoundException"
        );
        assert_eq!(
            code(&p, op, json!({"thingGroupName": "g", "thingName": "nope"})),
            "ResourceNotFoundException"
        );
        assert_eq!(
            code(&p, op, json!({"thingName": "d"})),
            "InvalidRequestException"
        );
        let foreign = "arn:aws:iot:us-east-1:999999999999:thinggroup/g";
        assert_eq!(
            code(&p, op, json!({"thingGroupArn": foreign, "thingName": "d"})),
            "InvalidRequestException"
        );
        assert_eq!(
            code(
                &p,
                op,
                json!({"thingGroupName": "g", "thingGroupArn": format!("{ARN}thinggroup/h"), "thingName": "d"})
            ),
            "InvalidRequestException"
        );
    }
    assert_eq!(
        code(&p, "ListThingGroupsForThing", json!({"thingName": "nope"})),
        "ResourceNotFoundException"
    );
}

#[test]
fn a_thing_in_too_many_groups_is_invalid_request() {
    let p = plane();
    ok(&p, "CreateThing", json!({"thingName": "d"}));
    for i in 0..11 {
        let g = format!("g{i:02}");
        ok(&p, "CreateThingGroup", json!({"thingGroupName": g}));
        let r = call(
            &p,
            "AddThingToThingGroup",
            json!({"thingGroupName": g, "thingName": "d"}),
        );
        if i < 10 {
            r.expect("ten groups per thing");
        } else {
            assert_eq!(r.map_err(|e| e.code), Err("InvalidRequestException"));
        }
    }
}

#[test]
fn list_things_in_thing_group_directly_and_recursively() {
    let p = plane();
    ok(&p, "CreateThingGroup", json!({"thingGroupName": "top"}));
    ok(
        &p,
        "CreateThingGroup",
        json!({"thingGroupName": "sub", "parentGroupName": "top"}),
    );
    for (thing, group) in [("t1", "top"), ("t2", "sub"), ("t3", "sub")] {
        ok(&p, "CreateThing", json!({"thingName": thing}));
        ok(
            &p,
            "AddThingToThingGroup",
            json!({"thingGroupName": group, "thingName": thing}),
        );
    }
    ok(&p, "CreateThing", json!({"thingName": "loner"}));
    let direct = ok(
        &p,
        "ListThingsInThingGroup",
        json!({"thingGroupName": "top"}),
    );
    assert_eq!(direct["things"], json!(["t1"]));
    let all = ok(
        &p,
        "ListThingsInThingGroup",
        json!({"thingGroupName": "top", "recursive": true, "maxResults": 2}),
    );
    assert_eq!(all["things"], json!(["t1", "t2"]));
    let rest = ok(
        &p,
        "ListThingsInThingGroup",
        json!({"thingGroupName": "top", "recursive": true, "nextToken": all["nextToken"]}),
    );
    assert_eq!(rest["things"], json!(["t3"]));
    assert!(rest.get("nextToken").is_none());
    assert_eq!(
        code(
            &p,
            "ListThingsInThingGroup",
            json!({"thingGroupName": "nope"})
        ),
        "ResourceNotFoundException"
    );
}

#[test]
fn pages_stay_stable_when_things_are_deleted_between_calls() {
    let p = plane();
    for i in 0..6 {
        ok(&p, "CreateThing", json!({"thingName": format!("t{i}")}));
    }
    let first = ok(&p, "ListThings", json!({"maxResults": 3}));
    // The last thing returned goes; the next page starts after it anyway.
    ok(&p, "DeleteThing", json!({"thingName": "t2"}));
    let second = ok(
        &p,
        "ListThings",
        json!({"maxResults": 3, "nextToken": first["nextToken"]}),
    );
    let names: Vec<&str> = second["things"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["thingName"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["t3", "t4", "t5"]);
}

#[test]
fn describe_endpoint_answers_by_type() {
    let p = plane().with_endpoints(Endpoints {
        data: "mqtt.example.com:8883".into(),
        api: "api.example.com".into(),
    });
    let addr = |input: Value| ok(&p, "DescribeEndpoint", input)["endpointAddress"].clone();
    assert_eq!(addr(json!({})), "mqtt.example.com:8883");
    assert_eq!(
        addr(json!({"endpointType": "iot:Data-ATS"})),
        "mqtt.example.com:8883"
    );
    assert_eq!(
        addr(json!({"endpointType": "iot:Data"})),
        "mqtt.example.com:8883"
    );
    assert_eq!(
        addr(json!({"endpointType": "iot:CredentialProvider"})),
        "api.example.com"
    );
    assert_eq!(addr(json!({"endpointType": "iot:Jobs"})), "api.example.com");
    assert_eq!(
        code(&p, "DescribeEndpoint", json!({"endpointType": "iot:Nope"})),
        "InvalidRequestException"
    );
}
