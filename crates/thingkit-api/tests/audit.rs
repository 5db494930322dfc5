//! Device Defender in the control plane: an on-demand audit over a registry with an expiring
//! certificate and an overly permissive policy finds both; findings filtered by check and
//! task and paged; a suppression hides a finding; the account configuration; a scheduled
//! audit runs when due and not before; security profile CRUD, versions, attach/detach and
//! the detector hook; authorization of `iot:StartOnDemandAuditTask`; the store across a
//! reopen.

mod common;

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use thingkit_api::ControlPlane;
use thingkit_api::audit::{DetectHook, NoSources};
use thingkit_api::audit_store::AuditStore;
use thingkit_audit::detect::{ActiveViolation, SecurityProfile, ViolationEvent};
use thingkit_provision::MemoryStore;

use common::{ApiCalls, NOW, access_key, at, signed};

const DAY: u64 = 86_400;

/// Profile names with their target ARNs, as the detector was handed them.
type Profiles = Vec<(String, Vec<String>)>;

#[derive(Default)]
struct Detect {
    changes: Mutex<Vec<Profiles>>,
}

impl DetectHook for Detect {
    fn profiles_changed(&self, profiles: &[(SecurityProfile, Vec<String>)]) {
        self.changes.lock().unwrap().push(
            profiles
                .iter()
                .map(|(p, t)| (p.name.clone(), t.clone()))
                .collect(),
        );
    }
    fn active_violations(&self) -> Vec<ActiveViolation> {
        Vec::new()
    }
    fn violation_events(&self, _start: u64, _end: u64) -> Vec<ViolationEvent> {
        Vec::new()
    }
}

struct Fixture {
    plane: ControlPlane<MemoryStore>,
    keys: Arc<thingkit_api::keys::KeyStore>,
    detect: Arc<Detect>,
}

impl ApiCalls for Fixture {
    fn plane(&self) -> &ControlPlane<MemoryStore> {
        &self.plane
    }
}

fn fixture_with(store: AuditStore) -> Fixture {
    let (plane, keys) = common::control_plane();
    let detect = Arc::new(Detect::default());
    let plane = plane.with_audit(Arc::new(store), Arc::new(NoSources), detect.clone());
    Fixture {
        plane,
        keys,
        detect,
    }
}

fn fixture() -> Fixture {
    fixture_with(AuditStore::in_memory())
}

/// A self-signed certificate that expires `days` after [`NOW`].
fn cert_expiring_in(days: i64, name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::from_unix_timestamp(NOW as i64).unwrap();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(days);
    params.self_signed(&key).unwrap().pem()
}

/// A registry with one certificate expiring in 10 days, one valid for a year, an overly
/// permissive policy and a tight one.
fn populate(f: &Fixture) -> String {
    let expiring = f.ok(
        "RegisterCertificateWithoutCA",
        json!({"certificatePem": cert_expiring_in(10, "soon"), "status": "ACTIVE"}),
    );
    f.ok(
        "RegisterCertificateWithoutCA",
        json!({"certificatePem": cert_expiring_in(365, "later"), "status": "ACTIVE"}),
    );
    f.ok(
        "CreatePolicy",
        json!({"policyName": "any-client", "policyDocument": json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
                "Resource": "arn:aws:iot:eu-central-1:123456789012:client/*"}]
        }).to_string()}),
    );
    f.ok(
        "CreatePolicy",
        json!({"policyName": "tight", "policyDocument": json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
                "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"}]
        }).to_string()}),
    );
    expiring["certificateId"].as_str().unwrap().to_string()
}

const CHECKS: [&str; 3] = [
    "DEVICE_CERTIFICATE_EXPIRING_CHECK",
    "IOT_POLICY_OVERLY_PERMISSIVE_CHECK",
    "LOGGING_DISABLED_CHECK",
];

fn findings(f: &Fixture, filter: Value) -> Vec<Value> {
    f.ok("ListAuditFindings", filter)["findings"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn an_on_demand_audit_finds_the_expiring_certificate_and_the_permissive_policy() {
    let f = fixture();
    let expiring = populate(&f);
    let task = f.ok(
        "StartOnDemandAuditTask",
        json!({"targetCheckNames": CHECKS}),
    );
    let task_id = task["taskId"].as_str().unwrap().to_string();

    let d = f.ok("DescribeAuditTask", json!({"taskId": task_id}));
    assert_eq!(d["taskStatus"], "COMPLETED");
    assert_eq!(d["taskType"], "ON_DEMAND_AUDIT_TASK");
    assert_eq!(d["taskStartTime"], json!(NOW));
    assert_eq!(d["taskStatistics"]["totalChecks"], 3);
    assert_eq!(d["taskStatistics"]["nonCompliantChecks"], 2);
    assert_eq!(d["taskStatistics"]["compliantChecks"], 1);
    let details = &d["auditDetails"]["DEVICE_CERTIFICATE_EXPIRING_CHECK"];
    assert_eq!(details["checkRunStatus"], "COMPLETED_NON_COMPLIANT");
    assert_eq!(details["totalResourcesCount"], 2);
    assert_eq!(details["nonCompliantResourcesCount"], 1);

    let expiring_findings = findings(
        &f,
        json!({"taskId": task_id, "checkName": "DEVICE_CERTIFICATE_EXPIRING_CHECK"}),
    );
    assert_eq!(expiring_findings.len(), 1);
    let finding = &expiring_findings[0];
    assert_eq!(
        finding["nonCompliantResource"]["resourceIdentifier"]["deviceCertificateId"],
        json!(expiring)
    );
    assert_eq!(finding["taskId"], json!(task_id));
    let permissive = findings(
        &f,
        json!({"taskId": task_id, "checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"}),
    );
    assert_eq!(permissive.len(), 1);
    assert_eq!(
        permissive[0]["nonCompliantResource"]["resourceIdentifier"]["policyVersionIdentifier"],
        json!({"policyName": "any-client", "policyVersionId": "1"})
    );
    // DescribeAuditFinding by ID.
    let one = f.ok(
        "DescribeAuditFinding",
        json!({"findingId": finding["findingId"]}),
    );
    assert_eq!(one["finding"], *finding);
    assert_eq!(
        f.err("DescribeAuditFinding", json!({"findingId": "nope"}))
            .code,
        "ResourceNotFoundException"
    );
    // ListAuditTasks in a time range; a task ended before its call returned cannot be
    // canceled.
    let tasks = f.ok(
        "ListAuditTasks",
        json!({"startTime": NOW - 10, "endTime": NOW + 10}),
    );
    assert_eq!(
        tasks["tasks"],
        json!([{"taskId": task_id, "taskStatus": "COMPLETED", "taskType": "ON_DEMAND_AUDIT_TASK"}])
    );
    let none = f.ok(
        "ListAuditTasks",
        json!({"startTime": NOW + 10, "endTime": NOW + 20}),
    );
    assert_eq!(none["tasks"], json!([]));
    assert_eq!(
        f.err("CancelAuditTask", json!({"taskId": task_id})).code,
        "InvalidRequestException"
    );
    assert_eq!(
        f.err("DescribeAuditTask", json!({"taskId": "missing"}))
            .code,
        "ResourceNotFoundException"
    );
}

#[test]
fn findings_filter_by_task_and_page() {
    let f = fixture();
    for i in 0..3 {
        f.ok(
            "CreatePolicy",
            json!({"policyName": format!("open-{i}"), "policyDocument": json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]
            }).to_string()}),
        );
    }
    let first = f.ok(
        "StartOnDemandAuditTask",
        json!({"targetCheckNames": ["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"]}),
    )["taskId"]
        .clone();
    let second = f.ok(
        "StartOnDemandAuditTask",
        json!({"targetCheckNames": ["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"]}),
    )["taskId"]
        .clone();
    assert_ne!(first, second);
    assert_eq!(findings(&f, json!({"taskId": first})).len(), 3);
    assert_eq!(findings(&f, json!({})).len(), 6);
    // Pages of two.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = json!({"taskId": second, "maxResults": 2});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let out = f.ok("ListAuditFindings", req);
        let page = out["findings"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|f| f["findingId"].clone()));
        pages += 1;
        match out.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (3, 2));
    // taskId and a time range together are refused.
    assert_eq!(
        f.err(
            "ListAuditFindings",
            json!({"taskId": first, "startTime": NOW, "endTime": NOW})
        )
        .code,
        "InvalidRequestException"
    );
}

#[test]
fn a_suppression_hides_a_finding() {
    let f = fixture();
    populate(&f);
    let resource =
        json!({"policyVersionIdentifier": {"policyName": "any-client", "policyVersionId": "1"}});
    f.ok(
        "CreateAuditSuppression",
        json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource,
               "suppressIndefinitely": true, "description": "known", "clientRequestToken": "t1"}),
    );
    assert_eq!(
        f.err(
            "CreateAuditSuppression",
            json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource,
                   "suppressIndefinitely": true, "clientRequestToken": "t2"})
        )
        .code,
        "ResourceAlreadyExistsException"
    );
    let d = f.ok(
        "DescribeAuditSuppression",
        json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource}),
    );
    assert_eq!(d["suppressIndefinitely"], true);
    assert_eq!(d["description"], "known");
    let listed = f.ok("ListAuditSuppressions", json!({}));
    assert_eq!(listed["suppressions"].as_array().unwrap().len(), 1);

    let task = f.ok(
        "StartOnDemandAuditTask",
        json!({"targetCheckNames": CHECKS}),
    )["taskId"]
        .clone();
    let suppressed = findings(&f, json!({"taskId": task, "listSuppressedFindings": true}));
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["isSuppressed"], true);
    assert_eq!(
        suppressed[0]["checkName"],
        "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"
    );
    let unsuppressed = findings(&f, json!({"taskId": task, "listSuppressedFindings": false}));
    assert!(unsuppressed.iter().all(|f| f["isSuppressed"] == false));
    assert_eq!(unsuppressed.len(), 1);
    let d = f.ok("DescribeAuditTask", json!({"taskId": task}));
    assert_eq!(
        d["auditDetails"]["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"]["suppressedNonCompliantResourcesCount"],
        1
    );

    f.ok(
        "UpdateAuditSuppression",
        json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource,
               "expirationDate": NOW + DAY}),
    );
    let d = f.ok(
        "DescribeAuditSuppression",
        json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource}),
    );
    assert_eq!(d["expirationDate"], json!(NOW + DAY));
    assert_eq!(d["suppressIndefinitely"], false);
    f.ok(
        "DeleteAuditSuppression",
        json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource}),
    );
    assert_eq!(
        f.err(
            "DescribeAuditSuppression",
            json!({"checkName": "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "resourceIdentifier": resource})
        )
        .code,
        "ResourceNotFoundException"
    );
}

#[test]
fn the_account_configuration_enables_checks_and_sets_thresholds() {
    let f = fixture();
    let d = f.ok("DescribeAccountAuditConfiguration", json!({}));
    let checks = d["auditCheckConfigurations"].as_object().unwrap();
    assert_eq!(checks.len(), 13);
    assert_eq!(checks["DEVICE_CERTIFICATE_AGE_CHECK"]["enabled"], false);
    assert_eq!(checks["LOGGING_DISABLED_CHECK"]["enabled"], true);
    // A check that is not enabled cannot be audited.
    assert_eq!(
        f.err(
            "StartOnDemandAuditTask",
            json!({"targetCheckNames": ["DEVICE_CERTIFICATE_AGE_CHECK"]})
        )
        .code,
        "InvalidRequestException"
    );
    f.ok(
        "UpdateAccountAuditConfiguration",
        json!({"auditCheckConfigurations": {
            "DEVICE_CERTIFICATE_AGE_CHECK": {"enabled": true,
                "configuration": {"CERT_AGE_THRESHOLD_IN_DAYS": "30"}},
            "LOGGING_DISABLED_CHECK": {"enabled": false}
        }}),
    );
    let d = f.ok("DescribeAccountAuditConfiguration", json!({}));
    let checks = &d["auditCheckConfigurations"];
    assert_eq!(
        checks["DEVICE_CERTIFICATE_AGE_CHECK"],
        json!({"enabled": true, "configuration": {"CERT_AGE_THRESHOLD_IN_DAYS": "30"}})
    );
    assert_eq!(checks["LOGGING_DISABLED_CHECK"]["enabled"], false);
    f.ok(
        "StartOnDemandAuditTask",
        json!({"targetCheckNames": ["DEVICE_CERTIFICATE_AGE_CHECK"]}),
    );
    // Out of AWS's range, or on the wrong check.
    for bad in [
        json!({"DEVICE_CERTIFICATE_AGE_CHECK": {"enabled": true, "configuration": {"CERT_AGE_THRESHOLD_IN_DAYS": "10"}}}),
        json!({"LOGGING_DISABLED_CHECK": {"enabled": true, "configuration": {"CERT_AGE_THRESHOLD_IN_DAYS": "40"}}}),
    ] {
        assert_eq!(
            f.err(
                "UpdateAccountAuditConfiguration",
                json!({ "auditCheckConfigurations": bad })
            )
            .code,
            "InvalidRequestException"
        );
    }
}

#[test]
fn a_scheduled_audit_runs_when_due_and_not_before() {
    let f = fixture();
    populate(&f);
    // NOW is Friday 2026-12-04 12:00 UTC.
    let created = f.ok(
        "CreateScheduledAudit",
        json!({"scheduledAuditName": "weekly", "frequency": "WEEKLY", "dayOfWeek": "MON",
               "targetCheckNames": ["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"]}),
    );
    assert_eq!(
        created["scheduledAuditArn"],
        "arn:aws:iot:eu-central-1:123456789012:scheduledaudit/weekly"
    );
    assert_eq!(
        f.err(
            "CreateScheduledAudit",
            json!({"scheduledAuditName": "bad", "frequency": "DAILY", "dayOfWeek": "MON",
                   "targetCheckNames": ["LOGGING_DISABLED_CHECK"]})
        )
        .code,
        "InvalidRequestException"
    );
    let d = f.ok(
        "DescribeScheduledAudit",
        json!({"scheduledAuditName": "weekly"}),
    );
    assert_eq!(d["frequency"], "WEEKLY");
    assert_eq!(d["dayOfWeek"], "MON");
    assert_eq!(
        d["targetCheckNames"],
        json!(["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"])
    );
    let listed = f.ok("ListScheduledAudits", json!({}));
    assert_eq!(listed["scheduledAudits"][0]["scheduledAuditName"], "weekly");

    let monday = NOW - 12 * 3600 + 3 * DAY; // 2026-12-07T00:00Z
    assert!(f.plane.run_scheduled_audits(at(NOW)).unwrap().is_empty());
    assert!(
        f.plane
            .run_scheduled_audits(at(monday - 1))
            .unwrap()
            .is_empty()
    );
    let ran = f.plane.run_scheduled_audits(at(monday + 60)).unwrap();
    assert_eq!(ran.len(), 1);
    // Once per due day.
    assert!(
        f.plane
            .run_scheduled_audits(at(monday + 120))
            .unwrap()
            .is_empty()
    );
    let d = f.ok("DescribeAuditTask", json!({"taskId": ran[0]}));
    assert_eq!(d["taskType"], "SCHEDULED_AUDIT_TASK");
    assert_eq!(d["scheduledAuditName"], "weekly");
    assert_eq!(findings(&f, json!({"taskId": ran[0]})).len(), 1);
    // The next Monday.
    assert!(
        f.plane
            .run_scheduled_audits(at(monday + 6 * DAY))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        f.plane
            .run_scheduled_audits(at(monday + 7 * DAY))
            .unwrap()
            .len(),
        1
    );

    f.ok(
        "UpdateScheduledAudit",
        json!({"scheduledAuditName": "weekly", "frequency": "MONTHLY", "dayOfMonth": "LAST"}),
    );
    let d = f.ok(
        "DescribeScheduledAudit",
        json!({"scheduledAuditName": "weekly"}),
    );
    assert_eq!(
        (d["frequency"].clone(), d["dayOfMonth"].clone()),
        (json!("MONTHLY"), json!("LAST"))
    );
    assert!(d.get("dayOfWeek").is_none());
    // 2026-12-31 is the last day of the month.
    let dec31 = monday + 24 * DAY;
    assert!(
        f.plane
            .run_scheduled_audits(at(dec31 - 1))
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.plane.run_scheduled_audits(at(dec31)).unwrap().len(), 1);
    f.ok(
        "DeleteScheduledAudit",
        json!({"scheduledAuditName": "weekly"}),
    );
    assert_eq!(
        f.err(
            "DescribeScheduledAudit",
            json!({"scheduledAuditName": "weekly"})
        )
        .code,
        "ResourceNotFoundException"
    );
}

fn behavior(name: &str, count: u64) -> Value {
    json!({"name": name, "metric": "aws:num-authorization-failures",
           "criteria": {"comparisonOperator": "less-than", "value": {"count": count},
                        "durationSeconds": 300}})
}

#[test]
fn security_profiles_crud_versions_and_targets() {
    let f = fixture();
    let created = f.ok(
        "CreateSecurityProfile",
        json!({"securityProfileName": "sensors", "securityProfileDescription": "d",
               "behaviors": [behavior("few-auth-failures", 5)]}),
    );
    assert_eq!(
        created["securityProfileArn"],
        "arn:aws:iot:eu-central-1:123456789012:securityprofile/sensors"
    );
    assert_eq!(
        f.err(
            "CreateSecurityProfile",
            json!({"securityProfileName": "sensors"})
        )
        .code,
        "ResourceAlreadyExistsException"
    );
    // A behavior the detector refuses.
    assert_eq!(
        f.err(
            "CreateSecurityProfile",
            json!({"securityProfileName": "bad", "behaviors": [{"name": "x", "metric": "aws:no-such-metric",
                   "criteria": {"comparisonOperator": "less-than", "value": {"count": 1}}}]})
        )
        .code,
        "InvalidRequestException"
    );
    let d = f.ok(
        "DescribeSecurityProfile",
        json!({"securityProfileName": "sensors"}),
    );
    assert_eq!(d["version"], 1);
    assert_eq!(d["creationDate"], json!(NOW));
    assert_eq!(d["behaviors"], json!([behavior("few-auth-failures", 5)]));

    let updated = f.ok(
        "UpdateSecurityProfile",
        json!({"securityProfileName": "sensors", "behaviors": [behavior("few-auth-failures", 9)],
               "expectedVersion": 1}),
    );
    assert_eq!(updated["version"], 2);
    let stale = f.err(
        "UpdateSecurityProfile",
        json!({"securityProfileName": "sensors", "securityProfileDescription": "x", "expectedVersion": 1}),
    );
    assert_eq!(stale.code, "VersionConflictException");
    assert_eq!(
        f.ok(
            "DescribeSecurityProfile",
            json!({"securityProfileName": "sensors"})
        )["behaviors"][0]["criteria"]["value"]["count"],
        9
    );

    f.ok("CreateThingGroup", json!({"thingGroupName": "fleet"}));
    let group = "arn:aws:iot:eu-central-1:123456789012:thinggroup/fleet";
    f.ok(
        "AttachSecurityProfile",
        json!({"securityProfileName": "sensors", "securityProfileTargetArn": group}),
    );
    assert_eq!(
        f.err(
            "AttachSecurityProfile",
            json!({"securityProfileName": "sensors",
                   "securityProfileTargetArn": "arn:aws:iot:eu-central-1:123456789012:thinggroup/none"})
        )
        .code,
        "ResourceNotFoundException"
    );
    let targets = f.ok(
        "ListTargetsForSecurityProfile",
        json!({"securityProfileName": "sensors"}),
    );
    assert_eq!(targets["securityProfileTargets"], json!([{ "arn": group }]));
    let for_target = f.ok(
        "ListSecurityProfilesForTarget",
        json!({"securityProfileTargetArn": group}),
    );
    assert_eq!(
        for_target["securityProfileTargetMappings"][0]["securityProfileIdentifier"]["name"],
        "sensors"
    );
    let listed = f.ok("ListSecurityProfiles", json!({}));
    assert_eq!(
        listed["securityProfileIdentifiers"],
        json!([{"name": "sensors", "arn": "arn:aws:iot:eu-central-1:123456789012:securityprofile/sensors"}])
    );
    // The detector saw each change, with the targets.
    let last = f.detect.changes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last, vec![("sensors".to_string(), vec![group.to_string()])]);
    f.ok(
        "DetachSecurityProfile",
        json!({"securityProfileName": "sensors", "securityProfileTargetArn": group}),
    );
    assert_eq!(
        f.ok(
            "ListTargetsForSecurityProfile",
            json!({"securityProfileName": "sensors"})
        )["securityProfileTargets"],
        json!([])
    );
    assert_eq!(
        f.err(
            "DeleteSecurityProfile",
            json!({"securityProfileName": "sensors", "expectedVersion": 1})
        )
        .code,
        "VersionConflictException"
    );
    f.ok(
        "DeleteSecurityProfile",
        json!({"securityProfileName": "sensors"}),
    );
    assert_eq!(
        f.err(
            "DescribeSecurityProfile",
            json!({"securityProfileName": "sensors"})
        )
        .code,
        "ResourceNotFoundException"
    );
    assert!(f.detect.changes.lock().unwrap().last().unwrap().is_empty());
    assert_eq!(
        f.ok("ListActiveViolations", json!({}))["activeViolations"],
        json!([])
    );
}

#[test]
fn a_key_without_start_on_demand_audit_task_is_refused() {
    let f = fixture();
    // A key whose identity policy grants other operations only.
    let auditor = access_key(
        &f.keys,
        Some(
            r#"{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["iot:CreateThing", "iot:ListThings"], "Resource": "*"}]}"#,
        ),
    );
    let admin = access_key(&f.keys, None);
    let body = json!({"targetCheckNames": ["LOGGING_DISABLED_CHECK"]}).to_string();
    let refused = f
        .plane
        .handle(
            &signed("POST", "/audit/tasks", "", &body, &auditor),
            at(NOW),
        )
        .0;
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let allowed = f
        .plane
        .handle(&signed("POST", "/audit/tasks", "", &body, &admin), at(NOW))
        .0;
    assert_eq!(
        allowed.status,
        200,
        "{}",
        String::from_utf8_lossy(&allowed.body)
    );
    // Over HTTP, the query string's timestamps.
    let listed = f
        .plane
        .handle(
            &signed(
                "GET",
                "/audit/tasks",
                &format!("endTime={}&startTime={}", NOW + 1, NOW - 1),
                "",
                &admin,
            ),
            at(NOW),
        )
        .0;
    assert_eq!(
        listed.status,
        200,
        "{}",
        String::from_utf8_lossy(&listed.body)
    );
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);

    // An identity policy names the Device Defender actions like any other: a read-only auditor
    // lists tasks and is refused starting one; a Deny on one security profile wins over iot:*.
    let reader = access_key(
        &f.keys,
        Some(
            r#"{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["iot:ListAuditTasks", "iot:Describe*"], "Resource": "*"}]}"#,
        ),
    );
    let query = format!("endTime={}&startTime={}", NOW + 1, NOW - 1);
    let call = |method: &str, path: &str, query: &str, body: &str, key| {
        f.plane
            .handle(&signed(method, path, query, body, key), at(NOW))
            .0
            .status
    };
    assert_eq!(call("GET", "/audit/tasks", &query, "", &reader), 200);
    assert_eq!(call("POST", "/audit/tasks", "", &body, &reader), 403);
    let operator = access_key(
        &f.keys,
        Some(
            r#"{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "iot:DeleteSecurityProfile",
                 "Resource": "arn:aws:iot:*:*:securityprofile/protected"}]}"#,
        ),
    );
    let profile = json!({"behaviors": [{"name": "few-auth-failures",
        "metric": "aws:num-authorization-failures",
        "criteria": {"comparisonOperator": "less-than", "value": {"count": 5}, "durationSeconds": 300}}]})
    .to_string();
    for name in ["protected", "scratch"] {
        assert_eq!(
            call(
                "POST",
                &format!("/security-profiles/{name}"),
                "",
                &profile,
                &operator
            ),
            200
        );
    }
    assert_eq!(
        call("DELETE", "/security-profiles/protected", "", "", &operator),
        403
    );
    assert_eq!(
        call("DELETE", "/security-profiles/scratch", "", "", &operator),
        200
    );
}

#[test]
fn tasks_findings_and_profiles_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.json");
    let task = {
        let f = fixture_with(AuditStore::open(&path).unwrap());
        populate(&f);
        f.ok(
            "CreateSecurityProfile",
            json!({"securityProfileName": "sensors", "behaviors": [behavior("b", 5)]}),
        );
        f.ok(
            "StartOnDemandAuditTask",
            json!({"targetCheckNames": CHECKS}),
        )["taskId"]
            .clone()
    };
    let f = fixture_with(AuditStore::open(&path).unwrap());
    assert_eq!(
        f.ok("DescribeAuditTask", json!({"taskId": task}))["taskStatus"],
        "COMPLETED"
    );
    assert_eq!(findings(&f, json!({"taskId": task})).len(), 2);
    assert_eq!(
        f.ok(
            "DescribeSecurityProfile",
            json!({"securityProfileName": "sensors"})
        )["version"],
        1
    );
}
