//! The provisioning templates AWS prints (developer guide, SDK v2 samples; see
//! `tests/aws/README.md` for each file's source): every one parses, validates, renders with
//! plausible parameters to what the guide describes, and applies to a registry. The two printed
//! templates that use a parameter they do not declare are refused with its line and column.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use thingkit_provision::Error;
use thingkit_provision::Registry;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit_provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit_provision::{
    CertificateSource, Override, ProvisioningTemplate, RenderedPolicy, RenderedTemplate,
    TEMPLATE_CERTIFICATE_ID, TemplateLimits,
};
use thingkit_provision::{apply_template, inline_policy_name};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aws")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(dir().join("templates").join(name)).expect("fixture")
}

fn parse(text: &str) -> Result<ProvisioningTemplate, Error> {
    ProvisioningTemplate::parse(text, &TemplateLimits::default())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const CERT_ID: &str = "6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e9f";

/// The guide's policy, printed as an escaped string in the bulk and JITP examples.
const GUIDE_POLICY_TEXT: &str = r#"{ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action":["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"] }] }"#;

/// The parameters each fixture is rendered with: (device parameters, pseudo-parameters).
fn parameters_for(name: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let id = map(&[(TEMPLATE_CERTIFICATE_ID, CERT_ID)]);
    match name {
        "guide-bulk-registration.json" | "guide-resource-example.json" => (
            map(&[
                ("ThingName", "lightbulb-0001"),
                ("SerialNumber", "123"),
                ("CSR", "-----BEGIN CERTIFICATE REQUEST-----"),
            ]),
            BTreeMap::new(),
        ),
        "guide-jitp.json" => (
            BTreeMap::new(),
            map(&[
                (TEMPLATE_CERTIFICATE_ID, CERT_ID),
                ("AWS::IoT::Certificate::CommonName", "lightbulb-0002"),
                ("AWS::IoT::Certificate::SerialNumber", "SN-0002"),
                ("AWS::IoT::Certificate::Country", "DE"),
            ]),
        ),
        "guide-fleet-provisioning.json" => (
            map(&[
                ("ThingName", "lightbulb-0003"),
                ("SerialNumber", "0003"),
                ("DeviceLocation", "Seattle"),
            ]),
            id,
        ),
        "guide-pre-provisioning-hook.json"
        | "sdk-v2-fleet-provisioning.json"
        | "sdk-v2-fleet-provisioning-single-line.json" => (
            map(&[("SerialNumber", "1"), ("DeviceLocation", "Seattle")]),
            id,
        ),
        other => panic!("no parameters for fixture {other}: add them here"),
    }
}

/// The fixtures that use parameters they do not declare, and the one each refers to first:
/// (file, parameter, line, column of the `Ref`'s argument).
const UNDECLARED: [(&str, &str, usize, usize); 2] = [
    ("guide-resource-example.json", "ThingName", 6, 40),
    ("guide-pre-provisioning-hook.json", "SerialNumber", 22, 70),
];

/// Declares the missing parameters the way the page's *Parameters section* does.
fn with_declared(name: &str, text: &str) -> String {
    match name {
        "guide-resource-example.json" => text.replacen(
            "{ \n",
            r#"{"Parameters": {"ThingName": {"Type": "String"}, "SerialNumber": {"Type": "String"},
                "Location": {"Type": "String", "Default": "WA"}, "CSR": {"Type": "String"}},
"#,
            1,
        ),
        "guide-pre-provisioning-hook.json" => text.replacen(
            "\"Parameters\" : {",
            "\"Parameters\" : {\"SerialNumber\": {\"Type\": \"String\"},",
            1,
        ),
        _ => text.to_owned(),
    }
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir().join("templates"))
        .expect("fixture directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "fixtures: {names:?}");
    names
}

fn render(name: &str) -> RenderedTemplate {
    let text = with_declared(name, &fixture(name));
    let template = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (device, pseudo) = parameters_for(name);
    template
        .render(&device, &pseudo)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_aws_template_parses_validates_and_renders() {
    for name in fixture_names() {
        let text = fixture(&name);
        match UNDECLARED.iter().find(|(n, ..)| *n == name) {
            None => {
                parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Some((_, param, line, column)) => match parse(&text) {
                Err(Error::Template {
                    line: l,
                    column: c,
                    reason,
                    ..
                }) => {
                    assert_eq!((l, c), (*line, *column), "{name}: {reason}");
                    assert!(
                        reason.contains(&format!("undeclared parameter \"{param}\"")),
                        "{name}: {reason}"
                    );
                }
                other => panic!("{name}: expected the undeclared {param} refused, got {other:?}"),
            },
        }
        let rendered = render(&name);
        let thing = rendered
            .thing
            .as_ref()
            .expect("every printed template has a thing");
        assert!(!thing.name.is_empty(), "{name}");
        assert!(rendered.certificate.is_some(), "{name}");
        for p in &rendered.policies {
            if let RenderedPolicy::PolicyDocument(doc) = p {
                let v: serde_json::Value =
                    serde_json::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}: {doc}"));
                assert_eq!(v["Version"], "2012-10-17", "{name}");
                thingkit_policy::PolicyDocument::parse(doc).unwrap_or_else(|e| {
                    panic!("{name}: the policy validator refuses {doc}: {e:?}")
                });
            }
        }
    }
}

#[test]
fn guide_bulk_registration_example_renders_as_the_guide_says() {
    let r = render("guide-bulk-registration.json");
    let t = r.thing.expect("thing");
    assert_eq!(t.name, "lightbulb-0001");
    assert_eq!(t.thing_type.as_deref(), Some("lightBulb-versionA"));
    assert_eq!(
        t.attributes,
        map(&[("version", "v1"), ("serialNumber", "123")])
    );
    // Location's default is "WA".
    assert_eq!(t.thing_groups, ["v1-lightbulbs", "WA"]);
    let c = r.certificate.expect("certificate");
    assert!(matches!(
        c.source,
        CertificateSource::CertificateSigningRequest(_)
    ));
    assert_eq!(c.status, CertificateStatus::Active);
    assert_eq!(
        r.policies,
        [RenderedPolicy::PolicyDocument(GUIDE_POLICY_TEXT.into())]
    );
    // The resource example snippet, with the Parameters snippet, is the same template plus
    // the thing's override settings.
    let snippet = render("guide-resource-example.json");
    let s = snippet.thing.expect("thing");
    assert_eq!(
        (s.name.as_str(), &s.attributes),
        ("lightbulb-0001", &t.attributes)
    );
    assert_eq!(
        (
            s.override_settings.attributes,
            s.override_settings.thing_type,
            s.override_settings.thing_groups
        ),
        (Override::Merge, Override::Replace, Override::DoNothing)
    );
}

#[test]
fn guide_jitp_example_renders_and_activates_the_certificate() {
    let r = render("guide-jitp.json");
    let t = r.thing.as_ref().expect("thing");
    assert_eq!(t.name, "lightbulb-0002");
    assert_eq!(
        t.attributes,
        map(&[("version", "v1"), ("serialNumber", "SN-0002")])
    );
    assert_eq!(t.thing_groups, ["v1-lightbulbs", "DE"]);
    let c = r.certificate.as_ref().expect("certificate");
    assert_eq!(c.source, CertificateSource::CertificateId(CERT_ID.into()));
    assert_eq!(c.override_settings.status, Override::DoNothing);
    assert_eq!(
        r.policies,
        [RenderedPolicy::PolicyDocument(GUIDE_POLICY_TEXT.into())]
    );

    // The registration config on the JITP page carries the same template as an escaped string.
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("jitp-registration-config.json")).expect("file"),
    )
    .expect("JSON");
    let body = config["templateBody"].as_str().expect("templateBody");
    let (device, pseudo) = parameters_for("guide-jitp.json");
    let from_config = parse(body)
        .expect("templateBody parses")
        .render(&device, &pseudo)
        .expect("renders");
    assert_eq!(from_config, r);

    // Applied the way JITP applies it: the certificate JITP just registered PENDING_ACTIVATION
    // becomes ACTIVE although OverrideSettings says DO_NOTHING (the page's own flow).
    let mut w = World::new();
    let device = w.device("lightbulb-0002");
    w.registry
        .register_certificate(
            &device,
            CertificateStatus::PendingActivation,
            std::time::SystemTime::now(),
        )
        .expect("JITP registers");
    let r = w.render_for("guide-jitp.json", CertificateId::of_der(&device));
    let done = apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        Some(CertificateId::of_der(&device)),
        std::time::SystemTime::now(),
    )
    .expect("apply");
    let id = done.certificate_id.expect("certificate");
    assert_eq!(w.status(&id), CertificateStatus::Active);
    let thing = w.registry.thing("lightbulb-0002").expect("thing");
    assert_eq!(thing.thing_type.as_deref(), Some("lightBulb-versionA"));
    let groups: Vec<&str> = thing.groups.iter().map(|g| &**g).collect();
    assert_eq!(groups, ["v1-lightbulbs", "DE"]);
    let policy = inline_policy_name(GUIDE_POLICY_TEXT);
    assert_eq!(done.policies, std::slice::from_ref(&policy));
    assert!(w.registry.policy(&policy).is_some());
}

#[test]
fn certificate_override_settings_decide_for_an_existing_certificate() {
    for (setting, want) in [
        ("DO_NOTHING", Some(CertificateStatus::Inactive)),
        ("REPLACE", Some(CertificateStatus::Active)),
        ("FAIL", None),
    ] {
        let mut w = World::new();
        let device = w.device("lightbulb-0002");
        let id = w
            .registry
            .register_certificate(
                &device,
                CertificateStatus::Inactive,
                std::time::SystemTime::now(),
            )
            .expect("registered before, INACTIVE");
        let text = fixture("guide-jitp.json").replace(
            r#""Status":"DO_NOTHING""#,
            &format!(r#""Status":"{setting}""#),
        );
        let template = parse(&text).expect("parse");
        let (_, mut pseudo) = parameters_for("guide-jitp.json");
        pseudo.insert(TEMPLATE_CERTIFICATE_ID.into(), id.to_string());
        let r = template.render(&BTreeMap::new(), &pseudo).expect("render");
        let result = apply_template(
            &w.ca,
            &mut w.registry,
            &r,
            Some(id),
            std::time::SystemTime::now(),
        );
        match want {
            Some(status) => {
                result.unwrap_or_else(|e| panic!("{setting}: {e}"));
                assert_eq!(w.status(&id), status, "{setting}");
            }
            None => {
                let e = result.expect_err("FAIL refuses");
                assert!(matches!(e, Error::Conflict { .. }), "{e}");
                assert!(e.to_string().contains("OverrideSettings says FAIL"), "{e}");
                // Nothing was applied.
                assert!(w.registry.thing("lightbulb-0002").is_none());
                assert_eq!(w.status(&id), CertificateStatus::Inactive);
            }
        }
    }
}

#[test]
fn a_certificate_pem_that_is_already_registered_follows_its_override_settings() {
    let template = |setting: &str| {
        parse(&format!(
            r#"{{"Parameters": {{"Pem": {{"Type": "String"}}, "Ca": {{"Type": "String"}}}},
               "Resources": {{"certificate": {{"Type": "AWS::IoT::Certificate",
                 "Properties": {{"CertificatePem": {{"Ref": "Pem"}}, "CACertificatePem": {{"Ref": "Ca"}},
                   "Status": "ACTIVE"}},
                 "OverrideSettings": {{"Status": "{setting}"}}}}}}}}"#
        ))
        .expect("template")
    };
    let mut w = World::new();
    let device = w.device("d1");
    let pem = thingkit_provision::encode_pem("CERTIFICATE", &device);
    let ca_pem = w.ca.certificate_pem();
    let params = map(&[("Pem", &pem), ("Ca", &ca_pem)]);
    // New: registered with the template's status.
    let r = template("FAIL")
        .render(&params, &BTreeMap::new())
        .expect("render");
    let id = apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        None,
        std::time::SystemTime::now(),
    )
    .expect("registers")
    .certificate_id
    .expect("id");
    assert_eq!(w.status(&id), CertificateStatus::Active);
    w.registry
        .update_certificate(
            &id,
            CertificateStatus::Inactive,
            std::time::SystemTime::now(),
        )
        .expect("deactivate");
    // Existing: FAIL refuses, DO_NOTHING keeps, REPLACE changes.
    let e = apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        None,
        std::time::SystemTime::now(),
    )
    .expect_err("FAIL");
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    let r = template("DO_NOTHING")
        .render(&params, &BTreeMap::new())
        .expect("render");
    apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        None,
        std::time::SystemTime::now(),
    )
    .expect("DO_NOTHING");
    assert_eq!(w.status(&id), CertificateStatus::Inactive);
    let r = template("REPLACE")
        .render(&params, &BTreeMap::new())
        .expect("render");
    apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        None,
        std::time::SystemTime::now(),
    )
    .expect("REPLACE");
    assert_eq!(w.status(&id), CertificateStatus::Active);

    // CACertificatePem must name the CA that signed the certificate.
    let other =
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .expect("CA");
    w.registry
        .register_ca_certificate(other.certificate_der(), CaStatus::Active, false)
        .expect("second CA");
    let wrong = map(&[("Pem", &pem), ("Ca", &other.certificate_pem())]);
    let r = template("DO_NOTHING")
        .render(&wrong, &BTreeMap::new())
        .expect("render");
    let e = apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        None,
        std::time::SystemTime::now(),
    )
    .expect_err("another CA");
    assert!(e.to_string().contains("CACertificatePem"), "{e}");
}

#[test]
fn guide_fleet_provisioning_example_renders_its_policy_object_and_device_configuration() {
    let r = render("guide-fleet-provisioning.json");
    let t = r.thing.as_ref().expect("thing");
    assert_eq!(t.name, "lightbulb-0003");
    assert_eq!(t.thing_type.as_deref(), Some("ThingPrefix_0003"));
    assert_eq!(t.billing_group.as_deref(), Some("LightBulbBillingGroup"));
    assert_eq!(t.thing_groups, ["v1-lightbulbs", "WA"]);
    let c = r.certificate.as_ref().expect("certificate");
    // "Active" as printed.
    assert_eq!(c.status, CertificateStatus::Active);
    assert_eq!(
        r.policies,
        [RenderedPolicy::PolicyDocument(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Publish"],"Resource":["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"]}]}"#
                .into()
        )]
    );
    assert_eq!(
        r.device_configuration,
        map(&[
            ("FallbackUrl", "https://www.example.com/test-site"),
            ("LocationUrl", "https://example.aws"),
        ])
    );
}

#[test]
fn sdk_v2_sample_template_provisions_a_device() {
    let pretty = render("sdk-v2-fleet-provisioning.json");
    assert_eq!(pretty, render("sdk-v2-fleet-provisioning-single-line.json"));
    let t = pretty.thing.as_ref().expect("thing");
    assert_eq!(t.name, "ThingPrefix_1");
    assert_eq!(
        t.attributes,
        map(&[("version", "v1"), ("serialNumber", "serialNumber")])
    );
    let c = pretty.certificate.as_ref().expect("certificate");
    assert_eq!(c.override_settings.status, Override::Replace);
    assert_eq!(
        pretty
            .device_configuration
            .get("LocationUrl")
            .map(String::as_str),
        Some("https://example.aws")
    );

    // Applied as RegisterThing applies it, to the ownership token's PENDING_ACTIVATION
    // certificate.
    let mut w = World::new();
    let device = w.device("ignored-cn");
    let id = w
        .registry
        .register_certificate(
            &device,
            CertificateStatus::PendingActivation,
            std::time::SystemTime::now(),
        )
        .expect("CreateKeysAndCertificate registers");
    let r = w.render_for("sdk-v2-fleet-provisioning.json", id);
    let done = apply_template(
        &w.ca,
        &mut w.registry,
        &r,
        Some(id),
        std::time::SystemTime::now(),
    )
    .expect("apply");
    assert_eq!(done.thing_name.as_deref(), Some("ThingPrefix_1"));
    assert_eq!(w.status(&id), CertificateStatus::Active);
    let identity = w
        .registry
        .authenticate(&[&device], std::time::SystemTime::now())
        .expect("authenticates");
    assert_eq!(identity.thing.as_deref(), Some("ThingPrefix_1"));
}

#[test]
fn the_pre_provisioning_hook_example_applies_once_serial_number_is_declared() {
    let r = render("guide-pre-provisioning-hook.json");
    let t = r.thing.as_ref().expect("thing");
    assert_eq!(t.name, "ThingPrefix_1");
    assert_eq!(t.thing_type.as_deref(), Some("ThingTypePrefix_1"));
    assert_eq!(t.billing_group.as_deref(), Some("BillingGroup"));
}

/// A registry with the CA, thing types and groups the printed templates name.
struct World {
    ca: Arc<CertificateAuthority>,
    registry: Registry,
}

impl World {
    fn new() -> World {
        let ca = Arc::new(
            CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
                .expect("CA"),
        );
        let mut registry = Registry::in_memory();
        registry
            .register_ca_certificate(ca.certificate_der(), CaStatus::Active, true)
            .expect("CA");
        registry
            .create_thing_type("lightBulb-versionA", None)
            .expect("type");
        for g in ["v1-lightbulbs", "DE", "WA"] {
            registry.create_thing_group(g, None).expect("group");
        }
        World { ca, registry }
    }

    fn device(&self, cn: &str) -> Vec<u8> {
        self.ca
            .create_keys_and_certificate(cn, CaKeyType::P256, std::time::SystemTime::now())
            .expect("device")
            .certificate
            .der
    }

    fn render_for(&self, name: &str, id: CertificateId) -> RenderedTemplate {
        let (device, mut pseudo) = parameters_for(name);
        pseudo.insert(TEMPLATE_CERTIFICATE_ID.into(), id.to_string());
        parse(&with_declared(name, &fixture(name)))
            .expect("parse")
            .render(&device, &pseudo)
            .expect("render")
    }

    fn status(&self, id: &CertificateId) -> CertificateStatus {
        self.registry.certificate(id).expect("certificate").status
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any edit of a printed template either parses or is refused with a typed error, and a
    /// parsed one renders or is refused with a typed error: nothing panics.
    #[test]
    fn edited_aws_templates_never_panic(
        file in 0usize..7,
        at in 0usize..2500,
        cut in 0usize..40,
        insert in prop::sample::select(vec![
            "", "{", "}", "[", "]", ",", ":", "\"", "{\"Ref\":\"SerialNumber\"}",
            "{\"Fn::Select\":[\"9\",[\"a\"]]}", "{\"Fn::Split\":[\",\",\"a,b\"]}", "[\"x\"]",
            "\"AWS::IoT::ThingGroup\"", "\"MERGE\"", "null", "-1", "{\"Fn::Join\":[\"\",\"a\"]}",
        ]),
        serial in "[ -~]{0,12}",
    ) {
        let names = fixture_names();
        let name = &names[file % names.len()];
        let text = with_declared(name, &fixture(name));
        let at = (0..=at.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + cut).min(text.len());
        let end = (end..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        let edited = format!("{}{}{}", &text[..at], insert, &text[end..]);
        match parse(&edited) {
            Err(Error::Template { .. } | Error::TooLarge { .. } | Error::LimitExceeded { .. }) => {}
            Err(other) => prop_assert!(false, "untyped parse error {other:?}"),
            Ok(t) => {
                let (mut device, pseudo) = parameters_for(name);
                if device.contains_key("SerialNumber") {
                    device.insert("SerialNumber".into(), serial);
                }
                match t.render(&device, &pseudo) {
                    Ok(_) | Err(Error::Template { .. } | Error::MissingParameter { .. }
                        | Error::LimitExceeded { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected render error {other:?}"),
                }
            }
        }
    }
}
