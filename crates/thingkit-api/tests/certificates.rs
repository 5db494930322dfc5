//! Certificates, CA certificates and attachments through the control plane, in process.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use thingkit_api::keys::KeyStore;
use thingkit_api::{ApiError, ControlPlane, Input};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority, MemoryStore, Registry};

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn plane() -> ControlPlane<MemoryStore> {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now()).expect("a CA");
    ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "us-east-1", "123456789012").expect("a prefix"),
        Arc::new(KeyStore::default()),
    )
    .with_ca(Some(Arc::new(ca)))
}

fn call(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> Result<Value, ApiError> {
    plane.call(op, Input::from_json(input), now())
}

fn ok(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> Value {
    call(plane, op, input).unwrap_or_else(|e| panic!("{op}: {e}"))
}

fn code(plane: &ControlPlane<MemoryStore>, op: &str, input: Value) -> &'static str {
    match call(plane, op, input) {
        Ok(v) => panic!("{op} succeeded: {v}"),
        Err(e) => e.code,
    }
}

fn new_cert(plane: &ControlPlane<MemoryStore>, active: bool) -> (String, String) {
    let out = ok(
        plane,
        "CreateKeysAndCertificate",
        json!({"setAsActive": active}),
    );
    (
        out["certificateId"].as_str().expect("an ID").to_string(),
        out["certificateArn"].as_str().expect("an ARN").to_string(),
    )
}

fn other_ca(cn: &str) -> CertificateAuthority {
    CertificateAuthority::create_root(&CaOptions::default().with_common_name(cn.into()), now())
        .expect("a CA")
}

#[test]
fn classic_provisioning_flow_lets_the_device_connect_with_its_policy() {
    let plane = plane();
    let out = ok(
        &plane,
        "CreateKeysAndCertificate",
        json!({"setAsActive": true}),
    );
    let id = out["certificateId"].as_str().expect("an ID");
    let arn = out["certificateArn"].as_str().expect("an ARN");
    assert_eq!(arn, format!("arn:aws:iot:us-east-1:123456789012:cert/{id}"));
    assert!(
        out["certificatePem"]
            .as_str()
            .unwrap_or("")
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        out["keyPair"]["PrivateKey"]
            .as_str()
            .unwrap_or("")
            .contains("PRIVATE KEY")
    );
    assert!(
        out["keyPair"]["PublicKey"]
            .as_str()
            .unwrap_or("")
            .contains("BEGIN PUBLIC KEY")
    );

    plane
        .registry
        .write()
        .unwrap()
        .create_thing("sensor-1", None, &[])
        .unwrap();
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "all", "policyDocument": ALLOW_ALL}),
    );
    ok(
        &plane,
        "AttachPolicy",
        json!({"policyName": "all", "target": arn}),
    );
    ok(
        &plane,
        "AttachThingPrincipal",
        json!({"thingName": "sensor-1", "principal": arn}),
    );

    let pem = out["certificatePem"].as_str().unwrap();
    let der = thingkit_provision::decode_pem_blocks(pem)
        .expect("PEM")
        .remove(0)
        .1;
    let identity = plane
        .registry
        .read()
        .unwrap()
        .authenticate(&[der], now())
        .expect("ACTIVE");
    assert_eq!(identity.thing.as_deref(), Some("sensor-1"));
    assert_eq!(&*identity.policies[0].name, "all");

    let principals = ok(
        &plane,
        "ListThingPrincipals",
        json!({"thingName": "sensor-1"}),
    );
    assert_eq!(principals["principals"], json!([arn]));
    let things = ok(&plane, "ListPrincipalThings", json!({"principal": arn}));
    assert_eq!(things["things"], json!(["sensor-1"]));
}

#[test]
fn describe_certificate_reports_status_dates_validity_and_owner() {
    let plane = plane();
    let (id, arn) = new_cert(&plane, false);
    let d =
        &ok(&plane, "DescribeCertificate", json!({"certificateId": id}))["certificateDescription"];
    assert_eq!(d["certificateArn"], json!(arn));
    assert_eq!(d["status"], json!("INACTIVE"));
    assert_eq!(d["ownedBy"], json!("123456789012"));
    assert_eq!(d["creationDate"], json!(1_800_000_000));
    assert_eq!(d["certificateMode"], json!("DEFAULT"));
    assert!(
        d["validity"]["notBefore"].as_i64().unwrap() < d["validity"]["notAfter"].as_i64().unwrap()
    );
    assert!(d.get("caCertificateId").is_none());
    let missing = "0".repeat(64);
    assert_eq!(
        code(
            &plane,
            "DescribeCertificate",
            json!({"certificateId": missing})
        ),
        "ResourceNotFoundException"
    );
}

#[test]
fn create_certificate_from_csr_issues_for_the_csr_key() {
    let plane = plane();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "device-7");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let out = ok(
        &plane,
        "CreateCertificateFromCsr",
        json!({"certificateSigningRequest": csr, "setAsActive": true}),
    );
    let id = out["certificateId"].as_str().unwrap();
    let d = ok(&plane, "DescribeCertificate", json!({"certificateId": id}));
    assert_eq!(d["certificateDescription"]["status"], json!("ACTIVE"));
    assert_eq!(
        code(
            &plane,
            "CreateCertificateFromCsr",
            json!({"certificateSigningRequest": "not a CSR"})
        ),
        "InvalidRequestException"
    );
}

#[test]
fn register_certificate_needs_its_ca_registered_and_active() {
    let plane = plane();
    let ca = other_ca("fleet CA");
    let device = ca
        .create_keys_and_certificate("d1", CaKeyType::P256, now())
        .unwrap();
    let pem = device.certificate.pem();
    // CA unknown.
    assert_eq!(
        code(
            &plane,
            "RegisterCertificate",
            json!({"certificatePem": pem})
        ),
        "CertificateValidationException"
    );
    // CA registered INACTIVE.
    let reg = ok(
        &plane,
        "RegisterCACertificate",
        json!({"caCertificate": ca.certificate_pem()}),
    );
    let ca_id = reg["certificateId"].as_str().unwrap().to_string();
    assert_eq!(
        code(
            &plane,
            "RegisterCertificate",
            json!({"certificatePem": pem, "caCertificatePem": ca.certificate_pem()})
        ),
        "CertificateValidationException"
    );
    // Given the wrong CA.
    let wrong = other_ca("another CA");
    ok(
        &plane,
        "RegisterCACertificate",
        json!({"caCertificate": wrong.certificate_pem(), "setAsActive": true}),
    );
    ok(
        &plane,
        "UpdateCACertificate",
        json!({"certificateId": ca_id, "newStatus": "ACTIVE"}),
    );
    assert_eq!(
        code(
            &plane,
            "RegisterCertificate",
            json!({"certificatePem": pem, "caCertificatePem": wrong.certificate_pem()})
        ),
        "CertificateValidationException"
    );
    let out = ok(
        &plane,
        "RegisterCertificate",
        json!({"certificatePem": pem, "status": "ACTIVE"}),
    );
    let id = out["certificateId"].as_str().unwrap();
    let d = ok(&plane, "DescribeCertificate", json!({"certificateId": id}));
    assert_eq!(d["certificateDescription"]["caCertificateId"], json!(ca_id));
    assert_eq!(d["certificateDescription"]["status"], json!("ACTIVE"));
    assert_eq!(
        code(
            &plane,
            "RegisterCertificate",
            json!({"certificatePem": pem})
        ),
        "ResourceAlreadyExistsException"
    );
    let by_ca = ok(
        &plane,
        "ListCertificatesByCA",
        json!({"caCertificateId": ca_id}),
    );
    assert_eq!(by_ca["certificates"].as_array().unwrap().len(), 1);
    // Registered without a CA: no CA needed.
    let loose = other_ca("unregistered")
        .create_keys_and_certificate("d2", CaKeyType::P256, now())
        .unwrap();
    let out = ok(
        &plane,
        "RegisterCertificateWithoutCA",
        json!({"certificatePem": loose.certificate.pem()}),
    );
    let d = ok(
        &plane,
        "DescribeCertificate",
        json!({"certificateId": out["certificateId"]}),
    );
    assert_eq!(d["certificateDescription"]["status"], json!("INACTIVE"));
}

#[test]
fn update_certificate_follows_the_status_rules() {
    let plane = plane();
    let (id, _) = new_cert(&plane, true);
    ok(
        &plane,
        "UpdateCertificate",
        json!({"certificateId": id, "newStatus": "REVOKED"}),
    );
    assert_eq!(
        code(
            &plane,
            "UpdateCertificate",
            json!({"certificateId": id, "newStatus": "ACTIVE"})
        ),
        "CertificateStateException"
    );
}

#[test]
fn delete_certificate_refuses_active_attached_and_policy_bearing_certificates() {
    let plane = plane();
    let (id, arn) = new_cert(&plane, true);
    assert_eq!(
        code(&plane, "DeleteCertificate", json!({"certificateId": id})),
        "CertificateStateException"
    );
    ok(
        &plane,
        "UpdateCertificate",
        json!({"certificateId": id, "newStatus": "INACTIVE"}),
    );
    plane
        .registry
        .write()
        .unwrap()
        .create_thing("t", None, &[])
        .unwrap();
    ok(
        &plane,
        "AttachThingPrincipal",
        json!({"thingName": "t", "principal": arn}),
    );
    assert_eq!(
        code(
            &plane,
            "DeleteCertificate",
            json!({"certificateId": id, "forceDelete": true})
        ),
        "DeleteConflictException"
    );
    ok(
        &plane,
        "DetachThingPrincipal",
        json!({"thingName": "t", "principal": arn}),
    );
    ok(
        &plane,
        "CreatePolicy",
        json!({"policyName": "p", "policyDocument": ALLOW_ALL}),
    );
    ok(
        &plane,
        "AttachPrincipalPolicy",
        json!({"policyName": "p", "principal": arn}),
    );
    assert_eq!(
        code(&plane, "DeleteCertificate", json!({"certificateId": id})),
        "DeleteConflictException"
    );
    ok(
        &plane,
        "DeleteCertificate",
        json!({"certificateId": id, "forceDelete": true}),
    );
    assert_eq!(
        code(&plane, "DescribeCertificate", json!({"certificateId": id})),
        "ResourceNotFoundException"
    );
    // The forced delete detached the policy: it can be deleted now.
    ok(&plane, "DeletePolicy", json!({"policyName": "p"}));
}

#[test]
fn list_certificates_pages_with_markers_in_both_orders() {
    let plane = plane();
    let mut ids: Vec<String> = (0..5).map(|_| new_cert(&plane, false).0).collect();
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut input = json!({"pageSize": 2, "ascendingOrder": true});
        if let Some(m) = &marker {
            input["marker"] = json!(m);
        }
        let out = ok(&plane, "ListCertificates", input);
        let page = out["certificates"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.iter()
                .map(|c| c["certificateId"].as_str().unwrap().to_string()),
        );
        match out.get("nextMarker") {
            Some(m) => marker = Some(m.as_str().unwrap().to_string()),
            None => break,
        }
    }
    ids.sort();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    let descending = ok(&plane, "ListCertificates", json!({"pageSize": 250}));
    let desc: Vec<String> = descending["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["certificateId"].as_str().unwrap().to_string())
        .collect();
    let mut reversed = seen;
    reversed.reverse();
    assert_eq!(desc, reversed);
}

#[test]
fn ca_certificates_register_describe_list_update_and_delete() {
    let plane = plane();
    let ca = other_ca("fleet CA");
    let reg = ok(
        &plane,
        "RegisterCACertificate",
        json!({"caCertificate": ca.certificate_pem(), "setAsActive": true, "allowAutoRegistration": true}),
    );
    let id = reg["certificateId"].as_str().unwrap().to_string();
    assert_eq!(
        code(
            &plane,
            "RegisterCACertificate",
            json!({"caCertificate": ca.certificate_pem()})
        ),
        "ResourceAlreadyExistsException"
    );
    let leaf = ca
        .create_keys_and_certificate("x", CaKeyType::P256, now())
        .unwrap();
    assert_eq!(
        code(
            &plane,
            "RegisterCACertificate",
            json!({"caCertificate": leaf.certificate.pem()})
        ),
        "CertificateValidationException"
    );
    let d = &ok(
        &plane,
        "DescribeCACertificate",
        json!({"certificateId": id}),
    )["certificateDescription"];
    assert_eq!(d["status"], json!("ACTIVE"));
    assert_eq!(d["autoRegistrationStatus"], json!("ENABLE"));
    assert_eq!(d["creationDate"], json!(1_800_000_000));
    let list = ok(&plane, "ListCACertificates", json!({}));
    assert_eq!(list["certificates"][0]["certificateId"], json!(id));

    // A registered certificate keeps its CA from being deleted.
    let cert = ok(
        &plane,
        "RegisterCertificate",
        json!({"certificatePem": leaf.certificate.pem()}),
    );
    assert_eq!(
        code(&plane, "DeleteCACertificate", json!({"certificateId": id})),
        "CertificateStateException"
    );
    ok(
        &plane,
        "UpdateCACertificate",
        json!({"certificateId": id, "newStatus": "INACTIVE", "newAutoRegistrationStatus": "DISABLE"}),
    );
    let d = &ok(
        &plane,
        "DescribeCACertificate",
        json!({"certificateId": id}),
    )["certificateDescription"];
    assert_eq!(
        (d["status"].clone(), d["autoRegistrationStatus"].clone()),
        (json!("INACTIVE"), json!("DISABLE"))
    );
    assert_eq!(
        code(&plane, "DeleteCACertificate", json!({"certificateId": id})),
        "CertificateStateException"
    );
    ok(
        &plane,
        "DeleteCertificate",
        json!({"certificateId": cert["certificateId"]}),
    );
    ok(&plane, "DeleteCACertificate", json!({"certificateId": id}));
    assert_eq!(
        code(
            &plane,
            "DescribeCACertificate",
            json!({"certificateId": id})
        ),
        "ResourceNotFoundException"
    );
}

#[test]
fn registration_code_is_stable() {
    let plane = plane();
    let a = ok(&plane, "GetRegistrationCode", json!({}));
    let b = ok(&plane, "GetRegistrationCode", json!({}));
    assert_eq!(a, b);
    assert_eq!(a["registrationCode"].as_str().unwrap().len(), 64);
}

#[test]
fn policy_targets_are_certificates_or_thing_groups() {
    let plane = plane();
    let (_, cert) = new_cert(&plane, true);
    {
        let mut r = plane.registry.write().unwrap();
        r.create_thing_group("parent", None).unwrap();
        r.create_thing_group("child", Some("parent")).unwrap();
        r.create_thing("t", None, &[]).unwrap();
        r.add_thing_to_group("t", "child").unwrap();
    }
    for p in ["own", "up", "down"] {
        ok(
            &plane,
            "CreatePolicy",
            json!({"policyName": p, "policyDocument": ALLOW_ALL}),
        );
    }
    let group = |n: &str| format!("arn:aws:iot:us-east-1:123456789012:thinggroup/{n}");
    ok(
        &plane,
        "AttachPolicy",
        json!({"policyName": "own", "target": cert}),
    );
    ok(
        &plane,
        "AttachPolicy",
        json!({"policyName": "up", "target": group("parent")}),
    );
    ok(
        &plane,
        "AttachPolicy",
        json!({"policyName": "down", "target": group("child")}),
    );
    ok(
        &plane,
        "AttachThingPrincipal",
        json!({"thingName": "t", "principal": cert, "thingPrincipalType": "EXCLUSIVE_THING"}),
    );
    assert_eq!(
        code(
            &plane,
            "AttachPolicy",
            json!({"policyName": "own", "target": "arn:aws:iot:us-east-1:123456789012:thing/t"})
        ),
        "InvalidRequestException"
    );
    assert_eq!(
        code(
            &plane,
            "AttachPolicy",
            json!({"policyName": "nope", "target": cert})
        ),
        "ResourceNotFoundException"
    );

    let names = |v: Value| -> Vec<String> {
        v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["policyName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(ok(&plane, "ListAttachedPolicies", json!({"target": cert}))),
        ["own"]
    );
    assert_eq!(
        names(ok(
            &plane,
            "ListAttachedPolicies",
            json!({"target": cert, "recursive": true})
        )),
        ["down", "own", "up"]
    );
    assert_eq!(
        names(ok(
            &plane,
            "ListAttachedPolicies",
            json!({"target": group("child"), "recursive": true})
        )),
        ["down", "up"]
    );
    let page1 = ok(
        &plane,
        "ListAttachedPolicies",
        json!({"target": cert, "recursive": true, "pageSize": 2}),
    );
    assert_eq!(names(page1.clone()), ["down", "own"]);
    let page2 = ok(
        &plane,
        "ListAttachedPolicies",
        json!({"target": cert, "recursive": true, "pageSize": 2, "marker": page1["nextMarker"]}),
    );
    assert_eq!(names(page2.clone()), ["up"]);
    assert!(page2.get("nextMarker").is_none());
    assert_eq!(
        names(ok(
            &plane,
            "ListPrincipalPolicies",
            json!({"principal": cert})
        )),
        ["own"]
    );

    let targets = ok(&plane, "ListTargetsForPolicy", json!({"policyName": "own"}));
    assert_eq!(targets["targets"], json!([cert]));
    let targets = ok(
        &plane,
        "ListTargetsForPolicy",
        json!({"policyName": "down"}),
    );
    assert_eq!(targets["targets"], json!([group("child")]));

    let effective = ok(&plane, "GetEffectivePolicies", json!({"principal": cert}));
    let eff: Vec<&str> = effective["effectivePolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policyName"].as_str().unwrap())
        .collect();
    assert_eq!(eff, ["own", "down", "up"]);
    assert_eq!(
        effective["effectivePolicies"][0]["policyDocument"],
        json!(ALLOW_ALL)
    );

    // Attached policies cannot be deleted; detached ones can.
    assert_eq!(
        code(&plane, "DeletePolicy", json!({"policyName": "own"})),
        "DeleteConflictException"
    );
    ok(
        &plane,
        "DetachPolicy",
        json!({"policyName": "own", "target": cert}),
    );
    ok(
        &plane,
        "DetachPolicy",
        json!({"policyName": "own", "target": cert}),
    );
    ok(
        &plane,
        "DetachPrincipalPolicy",
        json!({"policyName": "own", "principal": cert}),
    );
    ok(&plane, "DeletePolicy", json!({"policyName": "own"}));
}

#[test]
fn exclusive_thing_attachment_refuses_a_second_thing() {
    let plane = plane();
    let (_, cert) = new_cert(&plane, true);
    {
        let mut r = plane.registry.write().unwrap();
        r.create_thing("a", None, &[]).unwrap();
        r.create_thing("b", None, &[]).unwrap();
    }
    ok(
        &plane,
        "AttachThingPrincipal",
        json!({"thingName": "a", "principal": cert, "thingPrincipalType": "EXCLUSIVE_THING"}),
    );
    assert_eq!(
        code(
            &plane,
            "AttachThingPrincipal",
            json!({"thingName": "b", "principal": cert})
        ),
        "InvalidRequestException"
    );
    assert_eq!(
        code(
            &plane,
            "AttachThingPrincipal",
            json!({"thingName": "zzz", "principal": cert})
        ),
        "ResourceNotFoundException"
    );
}
