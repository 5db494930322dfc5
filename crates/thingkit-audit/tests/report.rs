//! The logging check, suppressions, mitigation plans, the per-check summary and the JSON shape.

mod support;

use support::*;
use thingkit_audit::{
    AuditConfig, AuditSuppression, CheckName, CheckRunStatus, Error, MitigationAction, Policy,
    PolicyTemplate, RegistryOperation, ResourceIdentifier, SuppressionExpiry, mitigation,
    run_audit,
};

#[test]
fn logging_disabled_is_flagged_on_the_account_and_enabled_is_not() {
    let mut s = snapshot();
    s.logging_enabled = false;
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let f: Vec<_> = report.findings_for(CheckName::LoggingDisabled).collect();
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].non_compliant_resource.resource_identifier,
        ResourceIdentifier::account("123456789012")
    );
    s.logging_enabled = true;
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report.checks[&CheckName::LoggingDisabled].check_run_status,
        CheckRunStatus::CompletedCompliant
    );
}

#[test]
fn a_suppression_marks_matching_findings_until_it_expires() {
    let mut s = snapshot();
    s.logging_enabled = false;
    let suppression = |expiry| AuditSuppression {
        check_name: CheckName::LoggingDisabled,
        resource_identifier: ResourceIdentifier::account("123456789012"),
        expiry,
        description: Some("logs go to syslog".into()),
    };
    for (expiry, suppressed) in [
        (SuppressionExpiry::Indefinitely, true),
        (SuppressionExpiry::Until(NOW + 1), true),
        (SuppressionExpiry::Until(NOW), false),
    ] {
        let config = AuditConfig {
            suppressions: vec![suppression(expiry)],
            ..AuditConfig::default()
        };
        let report = run_audit(&s, &config, NOW);
        let f = report
            .findings_for(CheckName::LoggingDisabled)
            .next()
            .unwrap();
        assert_eq!(f.is_suppressed, suppressed, "{expiry:?}");
        let d = &report.checks[&CheckName::LoggingDisabled];
        assert_eq!(d.non_compliant_resources_count, 1);
        assert_eq!(
            d.suppressed_non_compliant_resources_count,
            u64::from(suppressed)
        );
    }
    // Another resource or check is not covered.
    let config = AuditConfig {
        suppressions: vec![AuditSuppression {
            check_name: CheckName::IotPolicyOverlyPermissive,
            ..suppression(SuppressionExpiry::Indefinitely)
        }],
        ..AuditConfig::default()
    };
    let report = run_audit(&s, &config, NOW);
    assert!(report.findings.iter().all(|f| !f.is_suppressed));
    let s2 = suppression(SuppressionExpiry::Indefinitely);
    assert!(s2.suppress_indefinitely() && s2.expiration_date().is_none());
}

fn fleet_with_problems() -> (thingkit_audit::AuditSnapshot, Ca) {
    let ca = Ca::root_until("Root", NOW + 10 * DAY);
    let mut s = snapshot();
    s.logging_enabled = false;
    s.ca_certificates.push(ca.registered());
    let mut d = device(ca.device("expiring", 1, NOW + 5 * DAY), Some(&ca));
    d.things = vec!["pump-1".into(), "pump-2".into()];
    s.device_certificates.push(d);
    s.policies.push(Policy {
        name: "any-client".into(),
        default_version_id: "2".into(),
        document: r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}"#.into(),
    });
    (s, ca)
}

#[test]
fn mitigations_plan_registry_operations_for_allowed_actions() {
    let (s, ca) = fleet_with_problems();
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let device_finding = report
        .findings_for(CheckName::DeviceCertificateExpiring)
        .next()
        .unwrap();
    let cert_id = s.device_certificates[0].id.clone();
    assert_eq!(
        mitigation::plan(
            device_finding,
            &MitigationAction::UpdateDeviceCertificate,
            &s
        )
        .unwrap(),
        vec![RegistryOperation::DeactivateCertificate { id: cert_id }]
    );
    let quarantine = MitigationAction::AddThingsToThingGroup {
        group: "quarantine".into(),
        override_dynamic_groups: false,
    };
    assert_eq!(
        mitigation::plan(device_finding, &quarantine, &s).unwrap(),
        vec![RegistryOperation::AddThingsToThingGroup {
            group: "quarantine".into(),
            things: vec!["pump-1".into(), "pump-2".into()],
            override_dynamic_groups: false,
        }]
    );
    let ca_finding = report
        .findings_for(CheckName::CaCertificateExpiring)
        .next()
        .unwrap();
    assert_eq!(
        mitigation::plan(ca_finding, &MitigationAction::UpdateCaCertificate, &s).unwrap(),
        vec![RegistryOperation::DeactivateCaCertificate {
            id: thingkit_audit::certificate_id(&ca.der)
        }]
    );
    let policy_finding = report
        .findings_for(CheckName::IotPolicyOverlyPermissive)
        .next()
        .unwrap();
    assert_eq!(
        mitigation::plan(
            policy_finding,
            &MitigationAction::ReplaceDefaultPolicyVersion,
            &s
        )
        .unwrap(),
        vec![RegistryOperation::ReplaceDefaultPolicyVersion {
            policy: "any-client".into(),
            template: PolicyTemplate::BlankPolicy,
        }]
    );
    let logging = report
        .findings_for(CheckName::LoggingDisabled)
        .next()
        .unwrap();
    assert_eq!(
        mitigation::plan(logging, &MitigationAction::EnableIotLogging, &s).unwrap(),
        vec![RegistryOperation::EnableIotLogging]
    );
    // The blank policy is a valid document that allows nothing.
    assert!(thingkit_policy::PolicyDocument::parse(PolicyTemplate::BlankPolicy.document()).is_ok());
}

#[test]
fn mitigations_aws_does_not_allow_for_a_check_are_errors() {
    let (s, _) = fleet_with_problems();
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let logging = report
        .findings_for(CheckName::LoggingDisabled)
        .next()
        .unwrap();
    let policy_finding = report
        .findings_for(CheckName::IotPolicyOverlyPermissive)
        .next()
        .unwrap();
    let ca_finding = report
        .findings_for(CheckName::CaCertificateExpiring)
        .next()
        .unwrap();
    for (finding, action) in [
        (logging, MitigationAction::UpdateDeviceCertificate),
        (policy_finding, MitigationAction::EnableIotLogging),
        (ca_finding, MitigationAction::UpdateDeviceCertificate),
        (ca_finding, MitigationAction::ReplaceDefaultPolicyVersion),
    ] {
        assert!(matches!(
            mitigation::plan(finding, &action, &s),
            Err(Error::MitigationNotAllowed { .. })
        ));
    }
    // CONFLICTING_CLIENT_IDS_CHECK allows only SNS, which has no self-hosted form: nothing.
    for action in [
        MitigationAction::UpdateDeviceCertificate,
        MitigationAction::UpdateCaCertificate,
        MitigationAction::ReplaceDefaultPolicyVersion,
        MitigationAction::EnableIotLogging,
    ] {
        assert!(!action.is_allowed_for(CheckName::ConflictingClientIds));
    }
}

#[test]
fn suppressed_findings_are_not_mitigated() {
    let (s, _) = fleet_with_problems();
    let config = AuditConfig {
        suppressions: vec![AuditSuppression {
            check_name: CheckName::LoggingDisabled,
            resource_identifier: ResourceIdentifier::account("123456789012"),
            expiry: SuppressionExpiry::Indefinitely,
            description: None,
        }],
        ..AuditConfig::default()
    };
    let report = run_audit(&s, &config, NOW);
    let plan = mitigation::plan_all(&report.findings, &MitigationAction::EnableIotLogging, &s);
    // plan_all refuses the whole batch because other checks do not allow ENABLE_IOT_LOGGING…
    assert!(plan.is_err());
    // …and for the logging findings alone it plans nothing, since the one finding is suppressed.
    let logging: Vec<_> = report
        .findings_for(CheckName::LoggingDisabled)
        .cloned()
        .collect();
    assert_eq!(
        mitigation::plan_all(&logging, &MitigationAction::EnableIotLogging, &s).unwrap(),
        vec![]
    );
}

/// Member names of botocore's `iot` 2015-05-28 model (`AuditFinding`, `NonCompliantResource`,
/// `ResourceIdentifier`, `AuditCheckDetails`).
#[test]
fn findings_and_summaries_serialise_with_botocore_member_names() {
    let (s, _) = fleet_with_problems();
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let finding = report
        .findings_for(CheckName::DeviceCertificateExpiring)
        .next()
        .unwrap();
    let json = serde_json::to_value(finding).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let audit_finding = [
        "findingId",
        "taskId",
        "checkName",
        "taskStartTime",
        "findingTime",
        "severity",
        "nonCompliantResource",
        "relatedResources",
        "reasonForNonCompliance",
        "reasonForNonComplianceCode",
        "isSuppressed",
    ];
    assert!(keys.iter().all(|k| audit_finding.contains(k)), "{keys:?}");
    assert_eq!(json["checkName"], "DEVICE_CERTIFICATE_EXPIRING_CHECK");
    assert_eq!(json["severity"], "MEDIUM");
    assert_eq!(
        json["reasonForNonComplianceCode"],
        "CERTIFICATE_APPROACHING_EXPIRATION"
    );
    assert_eq!(json["taskStartTime"], NOW);
    assert_eq!(json["isSuppressed"], false);
    let resource = &json["nonCompliantResource"];
    assert_eq!(resource["resourceType"], "DEVICE_CERTIFICATE");
    assert_eq!(
        resource["resourceIdentifier"],
        serde_json::json!({"deviceCertificateId": s.device_certificates[0].id})
    );
    let round_trip: thingkit_audit::AuditFinding = serde_json::from_value(json).unwrap();
    assert_eq!(&round_trip, finding);

    let details =
        serde_json::to_value(&report.checks[&CheckName::DeviceCertificateExpiring]).unwrap();
    assert_eq!(
        details,
        serde_json::json!({
            "checkRunStatus": "COMPLETED_NON_COMPLIANT",
            "checkCompliant": false,
            "totalResourcesCount": 1,
            "nonCompliantResourcesCount": 1,
            "suppressedNonCompliantResourcesCount": 0
        })
    );
}

#[test]
fn the_same_inputs_give_the_same_report() {
    let (s, _) = fleet_with_problems();
    let a = run_audit(&s, &AuditConfig::default(), NOW);
    let b = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(a, b);
    let ids: std::collections::BTreeSet<_> = a.findings.iter().map(|f| &f.finding_id).collect();
    assert_eq!(ids.len(), a.findings.len(), "finding IDs are distinct");
}

#[test]
fn an_empty_snapshot_is_compliant_everywhere_but_logging() {
    let mut s = snapshot();
    s.logging_enabled = false;
    let report = run_audit(&s, &AuditConfig::all_checks(), NOW);
    assert_eq!(report.checks.len(), 13);
    for (check, d) in &report.checks {
        let expected = if *check == CheckName::LoggingDisabled {
            CheckRunStatus::CompletedNonCompliant
        } else {
            CheckRunStatus::CompletedCompliant
        };
        assert_eq!(d.check_run_status, expected, "{check}");
    }
}
