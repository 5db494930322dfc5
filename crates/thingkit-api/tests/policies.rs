//! Policies, TestAuthorization and provisioning templates through the control plane.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use thingkit_api::keys::KeyStore;
use thingkit_api::templates::TemplateStore;
use thingkit_api::{ApiError, ControlPlane, Input};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{
    CaOptions, CaStatus, CertificateAuthority, FleetConfig, FleetProvisioning, MemoryStore,
    Registry,
};

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ca() -> Arc<CertificateAuthority> {
    Arc::new(CertificateAuthority::create_root(&CaOptions::default(), now()).expect("a CA"))
}

fn plane() -> ControlPlane<MemoryStore> {
    ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "us-east-1", "123456789012").expect("a prefix"),
        Arc::new(KeyStore::default()),
    )
    .with_ca(Some(ca()))
}

fn call(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> Result<Value, ApiError> {
    plane.call(op, Input::from_json(input), now())
}

fn ok(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> Value {
    call(plane, op, input).unwrap_or_else(|e| panic!("{op}: {e}"))
}

fn err(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> ApiError {
    match call(plane, op, input) {
        Ok(v) => panic!("{op} succeeded: {v}"),
        Err(e) => e,
    }
}

fn doc(topic: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
        "Resource": format!("arn:aws:iot:us-east-1:123456789012:topic/{topic}")}]})
    .to_string()
}

#[test]
fn create_get_and_list_policies() {
    let plane = plane();
    let out = ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "p1", "policyDocument": ALLOW_ALL}),
    );
    assert_eq!(
        out["policyArn"],
        json!("arn:aws:iot:us-east-1:123456789012:policy/p1")
    );
    assert_eq!(out["policyVersionId"], json!("1"));
    assert_eq!(out["policyDocument"], json!(ALLOW_ALL));
    let got = ok(&plane, "GetPolicy", json!({"policyName": "p1"}));
    assert_eq!(got["defaultVersionId"], json!("1"));
    assert_eq!(got["creationDate"], json!(1_800_000_000));
    assert_eq!(
        err(
            &plane,
            "CreatePolicy",
            json!({"policyName": "p1", "policyDocument": ALLOW_ALL})
        )
        .code,
        "ResourceAlreadyExistsException"
    );
    assert_eq!(
        err(&plane, "GetPolicy", json!({"policyName": "nope"})).code,
        "ResourceNotFoundException"
    );
    for name in ["p2", "p3", "p4"] {
        ok(
            &plane,
            "CreatePolicy",
            json!({"policyName": name, "policyDocument": ALLOW_ALL}),
        );
    }
    let first = ok(&plane, "ListPolicies", json!({"pageSize": 3}));
    let names: Vec<&str> = first["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policyName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p1", "p2", "p3"]);
    let rest = ok(
        &plane,
        "ListPolicies",
        json!({"pageSize": 3, "marker": first["nextMarker"]}),
    );
    assert_eq!(
        rest["policies"],
        json!([{"policyName": "p4", "policyArn": "arn:aws:iot:us-east-1:123456789012:policy/p4"}])
    );
    assert!(rest.get("nextMarker").is_none());
}

#[test]
fn malformed_policy_lists_the_validator_findings() {
    let plane = plane();
    let bad = r#"{"Version": "2012-10-18", "Statement": {"Effect": "Permit", "Action": "iot:Connect", "Resource": "*"}}"#;
    let e = err(
        &plane,
        "CreatePolicy",
        json!({"policyName": "bad", "policyDocument": bad}),
    );
    assert_eq!(e.code, "MalformedPolicyException");
    assert!(
        e.message.contains("Permit") || e.message.contains("Allow"),
        "{}",
        e.message
    );
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "good", "policyDocument": ALLOW_ALL}),
    );
    assert_eq!(
        err(
            &plane,
            "CreatePolicyVersion",
            json!({"policyName": "good", "policyDocument": bad})
        )
        .code,
        "MalformedPolicyException"
    );
}

#[test]
fn policy_versions_are_limited_to_five_and_the_default_is_protected() {
    let plane = plane();
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "p", "policyDocument": doc("v1")}),
    );
    for v in 2..=5 {
        let out = ok(
            &plane,
            "CreatePolicyVersion",
            json!({"policyName": "p", "policyDocument": doc(&format!("v{v}")), "setAsDefault": v == 3}),
        );
        assert_eq!(out["policyVersionId"], json!(v.to_string()));
        assert_eq!(out["isDefaultVersion"], json!(v == 3));
    }
    assert_eq!(
        err(
            &plane,
            "CreatePolicyVersion",
            json!({"policyName": "p", "policyDocument": doc("v6")})
        )
        .code,
        "VersionsLimitExceededException"
    );
    let versions = ok(&plane, "ListPolicyVersions", json!({"policyName": "p"}));
    let list = versions["policyVersions"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert_eq!(
        list.iter()
            .filter(|v| v["isDefaultVersion"] == json!(true))
            .count(),
        1
    );
    let v3 = ok(
        &plane,
        "GetPolicyVersion",
        json!({"policyName": "p", "policyVersionId": "3"}),
    );
    assert_eq!(
        (v3["isDefaultVersion"].clone(), v3["policyDocument"].clone()),
        (json!(true), json!(doc("v3")))
    );
    assert_eq!(
        ok(&plane, "GetPolicy", json!({"policyName": "p"}))["defaultVersionId"],
        json!("3")
    );

    assert_eq!(
        err(
            &plane,
            "DeletePolicyVersion",
            json!({"policyName": "p", "policyVersionId": "3"})
        )
        .code,
        "DeleteConflictException"
    );
    assert_eq!(
        err(
            &plane,
            "GetPolicyVersion",
            json!({"policyName": "p", "policyVersionId": "9"})
        )
        .code,
        "ResourceNotFoundException"
    );
    // A policy with non-default versions cannot be deleted.
    assert_eq!(
        err(&plane, "DeletePolicy", json!({"policyName": "p"})).code,
        "DeleteConflictException"
    );
    ok(
        &plane,
        "SetDefaultPolicyVersion",
        json!({"policyName": "p", "policyVersionId": "5"}),
    );
    for v in ["1", "2", "3", "4"] {
        ok(
            &plane,
            "DeletePolicyVersion",
            json!({"policyName": "p", "policyVersionId": v}),
        );
    }
    ok(&plane, "DeletePolicy", json!({"policyName": "p"}));
    assert_eq!(
        err(&plane, "DeletePolicy", json!({"policyName": "p"})).code,
        "ResourceNotFoundException"
    );
}

/// The AWS IoT Developer Guide's *Publish/Subscribe policy examples* ("registered devices",
/// specific topic) and *Connect policy examples* (client ID = attached thing name), plus a Deny.
#[test]
fn test_authorization_decides_the_documented_examples_and_explains_them() {
    let plane = plane();
    let out = ok(
        &plane,
        "CreateKeysAndCertificate",
        json!({"setAsActive": true}),
    );
    let cert = out["certificateArn"].as_str().unwrap().to_string();
    plane
        .registry
        .write()
        .unwrap()
        .create_thing("sensor-1", None, &[])
        .unwrap();
    ok(
        &plane,
        "AttachThingPrincipal",
        json!({"thingName": "sensor-1", "principal": cert}),
    );
    let pubsub = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["iot:Connect"],
     "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"]},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/some_specific_topic"]},
    {"Effect": "Allow", "Action": ["iot:Subscribe"],
     "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/some_specific_topic"]}
  ]
}"#;
    let deny = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "NoAdmin", "Effect": "Deny",
      "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/admin"}]}"#;
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "pubsub", "policyDocument": pubsub}),
    );
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "deny", "policyDocument": deny}),
    );
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "all", "policyDocument": ALLOW_ALL}),
    );
    ok(
        &plane,
        "AttachPolicy",
        json!({"policyName": "pubsub", "target": cert}),
    );
    ok(
        &plane,
        "AttachPolicy",
        json!({"policyName": "deny", "target": cert}),
    );
    let arn = |r: &str| format!("arn:aws:iot:us-east-1:123456789012:{r}");
    let out = ok(
        &plane,
        "TestAuthorization",
        json!({
            "principal": cert,
            "clientId": "sensor-1",
            "authInfos": [
                {"actionType": "CONNECT", "resources": [arn("client/sensor-1")]},
                {"actionType": "CONNECT", "resources": [arn("client/other")]},
                {"actionType": "PUBLISH", "resources": [arn("topic/some_specific_topic")]},
                {"actionType": "SUBSCRIBE", "resources": [arn("topicfilter/some_specific_topic")]},
                {"actionType": "PUBLISH", "resources": [arn("topic/other")]},
                {"actionType": "PUBLISH", "resources": [arn("topic/admin")]},
            ],
            "policyNamesToAdd": ["all"],
            "policyNamesToSkip": ["all"],
        }),
    );
    let results = out["authResults"].as_array().unwrap();
    let decisions: Vec<&str> = results
        .iter()
        .map(|r| r["authDecision"].as_str().unwrap())
        .collect();
    // "all" is added after the skip list is applied, so PUBLISH to other is allowed by it.
    assert_eq!(
        decisions,
        [
            "ALLOWED",
            "ALLOWED",
            "ALLOWED",
            "ALLOWED",
            "ALLOWED",
            "EXPLICIT_DENY"
        ]
    );
    let deny_result = &results[5];
    assert_eq!(
        deny_result["denied"]["explicitDeny"]["policies"][0]["policyName"],
        json!("deny")
    );
    assert_eq!(
        deny_result["x-thingkit-explanation"][0]["sid"],
        json!("NoAdmin")
    );
    assert_eq!(deny_result["authInfo"]["actionType"], json!("PUBLISH"));

    let out = ok(
        &plane,
        "TestAuthorization",
        json!({
            "principal": cert,
            "authInfos": [
                {"actionType": "CONNECT", "resources": [arn("client/other")]},
                {"actionType": "PUBLISH", "resources": [arn("topic/some_specific_topic")]},
            ],
        }),
    );
    let results = out["authResults"].as_array().unwrap();
    assert_eq!(results[0]["authDecision"], json!("IMPLICIT_DENY"));
    let implicit: Vec<&str> = results[0]["denied"]["implicitDeny"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policyName"].as_str().unwrap())
        .collect();
    assert_eq!(implicit, ["deny", "pubsub"]);
    assert_eq!(results[1]["authDecision"], json!("ALLOWED"));
    assert_eq!(
        results[1]["allowed"]["policies"][0]["policyName"],
        json!("pubsub")
    );
    assert_eq!(
        results[1]["x-thingkit-explanation"][0]["statement"],
        json!(1)
    );

    assert_eq!(
        err(&plane, "TestAuthorization", json!({"principal": cert, "authInfos": [{"actionType": "CONNECT", "resources": [arn("client/x")]}], "policyNamesToAdd": ["nope"]})).code,
        "ResourceNotFoundException"
    );
}

const TEMPLATE: &str = r#"{
  "Parameters": {"Serial": {"Type": "String"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "Serial"}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}}}"#;

const ROLE: &str = "arn:aws:iam::123456789012:role/Provisioning";

fn template_plane(
    store: Arc<TemplateStore>,
) -> (ControlPlane<MemoryStore>, Arc<Mutex<FleetProvisioning>>) {
    let ca = ca();
    let fleet = Arc::new(Mutex::new(FleetProvisioning::new(
        ca.clone(),
        FleetConfig::default(),
    )));
    let plane = ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "us-east-1", "123456789012").expect("a prefix"),
        Arc::new(KeyStore::default()),
    )
    .with_ca(Some(ca))
    .with_templates(Some(store), Some(fleet.clone()));
    (plane, fleet)
}

#[test]
fn templates_are_persisted_across_reopen_and_served_while_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("templates.json");
    let (plane, fleet) = template_plane(Arc::new(TemplateStore::open(&path).unwrap()));
    let out = ok(
        &plane,
        "CreateProvisioningTemplate",
        json!({
            "templateName": "Sensors", "description": "sensors", "templateBody": TEMPLATE,
            "enabled": true, "provisioningRoleArn": ROLE,
        }),
    );
    assert_eq!(
        out["templateArn"],
        json!("arn:aws:iot:us-east-1:123456789012:provisioningtemplate/Sensors")
    );
    assert_eq!(out["defaultVersionId"], json!(1));
    assert!(fleet.lock().unwrap().has_template("Sensors"));
    assert_eq!(
        err(&plane, "CreateProvisioningTemplate", json!({"templateName": "Sensors", "templateBody": TEMPLATE, "provisioningRoleArn": ROLE})).code,
        "ResourceAlreadyExistsException"
    );
    assert_eq!(
        err(&plane, "CreateProvisioningTemplate", json!({"templateName": "Bad", "templateBody": "{\"Resources\": 1}", "provisioningRoleArn": ROLE})).code,
        "InvalidRequestException"
    );
    ok(
        &plane,
        "CreateProvisioningTemplate",
        json!({"templateName": "Off", "templateBody": TEMPLATE, "provisioningRoleArn": ROLE}),
    );
    assert!(!fleet.lock().unwrap().has_template("Off"));
    let list = ok(
        &plane,
        "ListProvisioningTemplates",
        json!({"maxResults": 1}),
    );
    assert_eq!(list["templates"][0]["templateName"], json!("Off"));
    let rest = ok(
        &plane,
        "ListProvisioningTemplates",
        json!({"maxResults": 1, "nextToken": list["nextToken"]}),
    );
    assert_eq!(rest["templates"][0]["templateName"], json!("Sensors"));
    assert_eq!(rest["templates"][0]["type"], json!("FLEET_PROVISIONING"));

    // A device provisions with the API-created template, without a restart.
    {
        let registry = plane.registry.clone();
        let mut registry = registry.write().unwrap();
        let ca = plane.ca.clone().unwrap();
        registry
            .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
            .unwrap();
        let claim = ca
            .create_keys_and_certificate("claim", thingkit_provision::CaKeyType::P256, now())
            .unwrap();
        let claim_id = registry
            .register_certificate(
                &claim.certificate.der,
                thingkit_provision::CertificateStatus::Active,
                now(),
            )
            .unwrap();
        let mut fleet = fleet.lock().unwrap();
        let replies = fleet
            .handle(
                &mut registry,
                &claim_id,
                "$aws/certificates/create/json",
                b"{}",
                now(),
            )
            .unwrap();
        let created: Value = serde_json::from_slice(&replies[0].payload).unwrap();
        let request = json!({"certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": {"Serial": "sensor-9"}});
        let replies = fleet
            .handle(
                &mut registry,
                &claim_id,
                "$aws/provisioning-templates/Sensors/provision/json",
                request.to_string().as_bytes(),
                now(),
            )
            .unwrap();
        assert!(
            replies[0].is_accepted(),
            "{:?}",
            String::from_utf8_lossy(&replies[0].payload)
        );
        assert!(registry.thing("sensor-9").is_some());
    }

    ok(
        &plane,
        "UpdateProvisioningTemplate",
        json!({"templateName": "Sensors", "enabled": false, "description": "paused"}),
    );
    assert!(!fleet.lock().unwrap().has_template("Sensors"));
    ok(
        &plane,
        "UpdateProvisioningTemplate",
        json!({"templateName": "Off", "enabled": true}),
    );
    assert!(fleet.lock().unwrap().has_template("Off"));
    drop(plane);

    // Reopened: the same templates, and the enabled one is served again.
    let (plane, fleet) = template_plane(Arc::new(TemplateStore::open(&path).unwrap()));
    let d = ok(
        &plane,
        "DescribeProvisioningTemplate",
        json!({"templateName": "Sensors"}),
    );
    assert_eq!(d["description"], json!("paused"));
    assert_eq!(d["enabled"], json!(false));
    assert_eq!(d["templateBody"], json!(TEMPLATE));
    assert_eq!(d["provisioningRoleArn"], json!(ROLE));
    assert_eq!(d["creationDate"], json!(1_800_000_000));
    assert!(fleet.lock().unwrap().has_template("Off"));
    assert!(!fleet.lock().unwrap().has_template("Sensors"));

    ok(
        &plane,
        "DeleteProvisioningTemplate",
        json!({"templateName": "Off"}),
    );
    assert!(!fleet.lock().unwrap().has_template("Off"));
    assert_eq!(
        err(
            &plane,
            "DescribeProvisioningTemplate",
            json!({"templateName": "Off"})
        )
        .code,
        "ResourceNotFoundException"
    );
    let reopened = TemplateStore::open(&path).unwrap();
    assert!(reopened.get("Off").is_none());
    assert!(reopened.get("Sensors").is_some());
}

#[test]
fn templates_with_a_lambda_hook_or_no_certificate_id_are_refused() {
    let (plane, _) = template_plane(Arc::new(TemplateStore::in_memory()));
    assert_eq!(
        err(&plane, "CreateProvisioningTemplate", json!({
            "templateName": "Hooked", "templateBody": TEMPLATE, "provisioningRoleArn": ROLE,
            "preProvisioningHook": {"targetArn": "arn:aws:lambda:us-east-1:123456789012:function:check"},
        })).code,
        "InvalidRequestException"
    );
    let no_cert = r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "x"}}}}"#;
    assert_eq!(
        err(&plane, "CreateProvisioningTemplate", json!({"templateName": "NoCert", "templateBody": no_cert, "provisioningRoleArn": ROLE, "enabled": true})).code,
        "InvalidRequestException"
    );
}
