//! The AWS IoT Jobs control-plane operations over the shared jobs engine: jobs created,
//! described, listed, canceled and deleted; targets resolved through the registry (groups
//! recursively); continuous jobs following group membership; AWS's errors; pagination; job
//! templates; notifications handed to the publisher; a signed HTTP round trip and an identity
//! policy that denies `iot:CreateJob`.

mod common;

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use thingkit_api::keys::KeyStore;
use thingkit_api::{ApiResult, ControlPlane, DataPublish, Input, Publisher};
use thingkit_jobs::{DynJobs, JobStore, Jobs, Limits, MemoryJobStore};
use thingkit_provision::MemoryStore;

use common::{ACCOUNT, ApiCalls, NOW, REGION, access_key, at, signed};

#[derive(Default)]
struct Recorder(Mutex<Vec<DataPublish>>);

impl Publisher for Recorder {
    fn publish(&self, message: DataPublish) -> ApiResult<()> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}

impl Recorder {
    fn topics(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.topic.clone())
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

struct Fixture {
    plane: ControlPlane<MemoryStore>,
    engine: Arc<Mutex<DynJobs>>,
    published: Arc<Recorder>,
    keys: Arc<KeyStore>,
}

fn engine() -> Arc<Mutex<DynJobs>> {
    let store: Box<dyn JobStore> = Box::new(MemoryJobStore::new());
    Arc::new(Mutex::new(Jobs::new(store, Limits::default())))
}

fn fixture() -> Fixture {
    let engine = engine();
    let published = Arc::new(Recorder::default());
    let (plane, keys) = common::control_plane();
    let plane = plane
        .with_publisher(Some(published.clone()))
        .with_jobs(Some(engine.clone()));
    Fixture {
        plane,
        engine,
        published,
        keys,
    }
}

impl ApiCalls for Fixture {
    fn plane(&self) -> &ControlPlane<MemoryStore> {
        &self.plane
    }
}

impl Fixture {
    fn thing(&self, name: &str) {
        self.ok("CreateThing", json!({ "thingName": name }));
    }

    fn group(&self, name: &str, parent: Option<&str>) {
        let mut m = json!({ "thingGroupName": name });
        if let Some(p) = parent {
            m["parentGroupName"] = json!(p);
        }
        self.ok("CreateThingGroup", m);
    }

    fn join(&self, thing: &str, group: &str) {
        self.ok(
            "AddThingToThingGroup",
            json!({ "thingName": thing, "thingGroupName": group }),
        );
    }

    fn execution_status(&self, job: &str, thing: &str) -> String {
        self.ok(
            "DescribeJobExecution",
            json!({ "jobId": job, "thingName": thing }),
        )["execution"]["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The device reports `status` for `job` over MQTT (through the shared engine).
    fn device_reports(&self, thing: &str, job: &str, status: &str) {
        let out = self
            .engine
            .lock()
            .unwrap()
            .request(
                &format!("$aws/things/{thing}/jobs/{job}/update"),
                format!(r#"{{"status":"{status}"}}"#).as_bytes(),
                NOW + 1,
            )
            .expect("a jobs topic");
        assert!(out[0].topic.ends_with("/accepted"), "{:?}", out[0].topic);
    }
}

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}")
}

fn group_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{name}")
}

const DOC: &str = r#"{"operation":"reboot"}"#;

#[test]
fn a_job_is_created_described_listed_canceled_and_deleted() {
    let f = fixture();
    f.thing("lamp-1");
    f.thing("lamp-2");
    let created = f.ok(
        "CreateJob",
        json!({"jobId": "reboot-1", "document": DOC, "description": "reboot the lamps",
               "targets": [thing_arn("lamp-1"), thing_arn("lamp-2")]}),
    );
    assert_eq!(
        created,
        json!({"jobArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:job/reboot-1"),
               "jobId": "reboot-1", "description": "reboot the lamps"})
    );
    // Both things were told at once (the default rollout rate admits them), QoS 1.
    let topics = f.published.topics();
    assert!(
        topics.contains(&"$aws/things/lamp-1/jobs/notify".to_string()),
        "{topics:?}"
    );
    assert!(
        topics.contains(&"$aws/things/lamp-2/jobs/notify-next".to_string()),
        "{topics:?}"
    );
    assert!(
        f.published
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|m| m.qos == 1 && !m.retain)
    );

    let job = &f.ok("DescribeJob", json!({"jobId": "reboot-1"}))["job"];
    assert_eq!(job["status"], "IN_PROGRESS");
    assert_eq!(job["targetSelection"], "SNAPSHOT");
    assert_eq!(
        job["targets"],
        json!([thing_arn("lamp-1"), thing_arn("lamp-2")])
    );
    assert_eq!(job["createdAt"], json!(NOW));
    assert_eq!(job["jobProcessDetails"]["numberOfQueuedThings"], 2);
    assert_eq!(job["jobProcessDetails"]["numberOfSucceededThings"], 0);
    assert!(job.get("completedAt").is_none());

    let listed = f.ok("ListJobs", json!({}));
    assert_eq!(listed["jobs"][0]["jobId"], "reboot-1");
    assert_eq!(listed["jobs"][0]["status"], "IN_PROGRESS");
    assert!(listed.get("nextToken").is_none());
    assert_eq!(
        f.ok("ListJobs", json!({"status": "COMPLETED"}))["jobs"],
        json!([])
    );
    assert_eq!(
        f.ok("GetJobDocument", json!({"jobId": "reboot-1"})),
        json!({"document": DOC})
    );

    let executions = f.ok("ListJobExecutionsForJob", json!({"jobId": "reboot-1"}));
    let summaries = executions["executionSummaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0]["thingArn"], thing_arn("lamp-1"));
    assert_eq!(summaries[0]["jobExecutionSummary"]["status"], "QUEUED");
    assert_eq!(summaries[0]["jobExecutionSummary"]["executionNumber"], 1);
    let for_thing = f.ok("ListJobExecutionsForThing", json!({"thingName": "lamp-2"}));
    assert_eq!(for_thing["executionSummaries"][0]["jobId"], "reboot-1");
    let e = &f.ok(
        "DescribeJobExecution",
        json!({"jobId": "reboot-1", "thingName": "lamp-1"}),
    )["execution"];
    assert_eq!(e["status"], "QUEUED");
    assert_eq!(e["versionNumber"], 1);
    assert_eq!(e["thingArn"], thing_arn("lamp-1"));
    assert_eq!(e["queuedAt"], json!(NOW));

    f.published.clear();
    let canceled = f.ok(
        "CancelJob",
        json!({"jobId": "reboot-1", "reasonCode": "OPERATOR", "comment": "not now"}),
    );
    assert_eq!(canceled["jobId"], "reboot-1");
    assert!(!f.published.topics().is_empty(), "devices are told");
    let job = &f.ok("DescribeJob", json!({"jobId": "reboot-1"}))["job"];
    assert_eq!(job["status"], "CANCELED");
    assert_eq!(job["forceCanceled"], false);
    assert_eq!(job["reasonCode"], "OPERATOR");
    assert_eq!(job["comment"], "not now");
    assert_eq!(job["jobProcessDetails"]["numberOfCanceledThings"], 2);
    assert_eq!(job["completedAt"], json!(NOW));

    assert_eq!(f.ok("DeleteJob", json!({"jobId": "reboot-1"})), json!({}));
    let gone = f.err("DescribeJob", json!({"jobId": "reboot-1"}));
    assert_eq!((gone.code, gone.status), ("ResourceNotFoundException", 404));
}

#[test]
fn a_group_target_reaches_the_things_of_its_descendant_groups() {
    let f = fixture();
    f.group("site", None);
    f.group("floor-1", Some("site"));
    f.group("room-1", Some("floor-1"));
    f.group("elsewhere", None);
    for (thing, group) in [
        ("a", "site"),
        ("b", "floor-1"),
        ("c", "room-1"),
        ("d", "elsewhere"),
    ] {
        f.thing(thing);
        f.join(thing, group);
    }
    f.ok(
        "CreateJob",
        json!({"jobId": "j", "document": DOC, "targets": [group_arn("floor-1"), thing_arn("d")]}),
    );
    let summaries = f.ok("ListJobExecutionsForJob", json!({"jobId": "j"}))["executionSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["thingArn"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        summaries,
        vec![thing_arn("b"), thing_arn("c"), thing_arn("d")]
    );
    // ListJobs by target group.
    assert_eq!(
        f.ok("ListJobs", json!({"thingGroupName": "floor-1"}))["jobs"][0]["jobId"],
        "j"
    );
    assert_eq!(
        f.ok("ListJobs", json!({"thingGroupName": "site"}))["jobs"],
        json!([])
    );
}

#[test]
fn a_continuous_job_reaches_things_that_join_its_group_later() {
    let f = fixture();
    f.group("fleet", None);
    f.group("new-lamps", Some("fleet"));
    f.thing("early");
    f.join("early", "fleet");
    f.ok(
        "CreateJob",
        json!({"jobId": "cont", "document": DOC, "targetSelection": "CONTINUOUS",
               "targets": [group_arn("fleet")]}),
    );
    f.ok(
        "CreateJob",
        json!({"jobId": "snap", "document": DOC, "targets": [group_arn("fleet")]}),
    );
    f.thing("late");
    f.published.clear();
    // Joining a child group of the target group is joining the target.
    f.join("late", "new-lamps");
    assert_eq!(f.execution_status("cont", "late"), "QUEUED");
    assert!(
        f.published
            .topics()
            .contains(&"$aws/things/late/jobs/notify".to_string()),
        "{:?}",
        f.published.topics()
    );
    // The snapshot job does not follow membership.
    let e = f.err(
        "DescribeJobExecution",
        json!({"jobId": "snap", "thingName": "late"}),
    );
    assert_eq!(e.code, "ResourceNotFoundException");
    // Leaving the group removes the QUEUED execution.
    f.ok(
        "RemoveThingFromThingGroup",
        json!({"thingName": "late", "thingGroupName": "new-lamps"}),
    );
    assert_eq!(f.execution_status("cont", "late"), "REMOVED");
    let job = &f.ok("DescribeJob", json!({"jobId": "cont"}))["job"];
    assert_eq!(job["jobProcessDetails"]["numberOfRemovedThings"], 1);
    assert_eq!(
        job["status"], "IN_PROGRESS",
        "a continuous job stays in progress"
    );
}

#[test]
fn associate_targets_adds_things_to_continuous_jobs_only() {
    let f = fixture();
    f.group("g1", None);
    f.group("g2", None);
    for (t, g) in [("x", "g1"), ("y", "g2")] {
        f.thing(t);
        f.join(t, g);
    }
    f.ok(
        "CreateJob",
        json!({"jobId": "cont", "document": DOC, "targetSelection": "CONTINUOUS",
               "targets": [group_arn("g1")]}),
    );
    let out = f.ok(
        "AssociateTargetsWithJob",
        json!({"jobId": "cont", "targets": [group_arn("g2")], "comment": "more"}),
    );
    assert_eq!(out["jobId"], "cont");
    assert_eq!(f.execution_status("cont", "y"), "QUEUED");
    let job = &f.ok("DescribeJob", json!({"jobId": "cont"}))["job"];
    assert_eq!(job["targets"], json!([group_arn("g1"), group_arn("g2")]));
    // A later member of the associated group is reached too.
    f.thing("z");
    f.join("z", "g2");
    assert_eq!(f.execution_status("cont", "z"), "QUEUED");

    f.ok(
        "CreateJob",
        json!({"jobId": "snap", "document": DOC, "targets": [group_arn("g1")]}),
    );
    let e = f.err(
        "AssociateTargetsWithJob",
        json!({"jobId": "snap", "targets": [group_arn("g2")]}),
    );
    assert_eq!((e.code, e.status), ("InvalidRequestException", 400));
}

#[test]
fn refusals_are_the_errors_aws_models() {
    let f = fixture();
    f.thing("t");
    let create = |id: &str, extra: Value| {
        let mut m = json!({"jobId": id, "document": DOC, "targets": [thing_arn("t")]});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        f.call("CreateJob", m)
    };
    create("j1", json!({})).unwrap();
    let e = create("j1", json!({})).unwrap_err();
    assert_eq!((e.code, e.status), ("ResourceAlreadyExistsException", 409));

    for bad in [r#"["not an object"]"#, r#"{"a":1,"a":2}"#, "{"] {
        let e = create("j2", json!({ "document": bad })).unwrap_err();
        assert_eq!(
            (e.code, e.status),
            ("InvalidRequestException", 400),
            "{bad}"
        );
    }
    let e = create(
        "j2",
        json!({ "document": format!(r#"{{"a":"{}"}}"#, "x".repeat(32_768)) }),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidRequestException", "over 32768 characters");
    let e = create(
        "j2",
        json!({"documentSource": "https://s3.amazonaws.com/bucket/doc.json"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidRequestException");
    assert!(e.message.contains("documentSource"), "{}", e.message);
    let e = create(
        "j2",
        json!({"timeoutConfig": {"inProgressTimeoutInMinutes": 10_081}}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidRequestException");

    let e = create("j2", json!({"targets": [thing_arn("ghost")]})).unwrap_err();
    assert_eq!((e.code, e.status), ("ResourceNotFoundException", 404));
    let e = create("j2", json!({"targets": [group_arn("ghosts")]})).unwrap_err();
    assert_eq!((e.code, e.status), ("ResourceNotFoundException", 404));
    let e = create(
        "j2",
        json!({"targets": ["arn:aws:iot:us-west-2:999999999999:thing/t"]}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.status), ("InvalidRequestException", 400));
    assert!(
        f.err("DescribeJob", json!({"jobId": "j2"})).status == 404,
        "no refused create left a job"
    );

    // An in-progress job is deleted only with force.
    let e = f.err("DeleteJob", json!({"jobId": "j1"}));
    assert_eq!((e.code, e.status), ("InvalidStateTransitionException", 409));
    // A QUEUED execution is deleted only with force; a wrong version is a conflict.
    let e = f.err(
        "DeleteJobExecution",
        json!({"jobId": "j1", "thingName": "t", "executionNumber": 1}),
    );
    assert_eq!((e.code, e.status), ("InvalidStateTransitionException", 409));
    let e = f.err(
        "CancelJobExecution",
        json!({"jobId": "j1", "thingName": "t", "expectedVersion": 7}),
    );
    assert_eq!((e.code, e.status), ("VersionConflictException", 409));

    // The device finishes: the snapshot job completes, and cannot be canceled. CancelJob's
    // model has no InvalidStateTransitionException: InvalidRequestException.
    f.device_reports("t", "j1", "SUCCEEDED");
    let job = &f.ok("DescribeJob", json!({"jobId": "j1"}))["job"];
    assert_eq!(job["status"], "COMPLETED");
    let e = f.err("CancelJob", json!({"jobId": "j1"}));
    assert_eq!((e.code, e.status), ("InvalidRequestException", 400));
    let e = f.err(
        "CancelJobExecution",
        json!({"jobId": "j1", "thingName": "t"}),
    );
    assert_eq!((e.code, e.status), ("InvalidStateTransitionException", 409));
    assert_eq!(f.ok("DeleteJob", json!({"jobId": "j1"})), json!({}));
}

#[test]
fn force_cancels_in_progress_executions_and_force_deletes_running_jobs() {
    let f = fixture();
    f.thing("t");
    f.ok(
        "CreateJob",
        json!({"jobId": "j", "document": DOC, "targets": [thing_arn("t")]}),
    );
    f.device_reports("t", "j", "IN_PROGRESS");
    let e = f.err(
        "CancelJobExecution",
        json!({"jobId": "j", "thingName": "t"}),
    );
    assert_eq!(e.code, "InvalidStateTransitionException");
    f.ok(
        "CancelJobExecution",
        json!({"jobId": "j", "thingName": "t", "force": true, "expectedVersion": 2,
               "statusDetails": {"why": "operator"}}),
    );
    let e = &f.ok(
        "DescribeJobExecution",
        json!({"jobId": "j", "thingName": "t"}),
    )["execution"];
    assert_eq!(e["status"], "CANCELED");
    assert_eq!(e["statusDetails"]["detailsMap"]["why"], "operator");
    assert_eq!(
        f.ok(
            "DeleteJobExecution",
            json!({"jobId": "j", "thingName": "t", "executionNumber": 1})
        ),
        json!({})
    );
    f.ok("DeleteJob", json!({"jobId": "j", "force": true}));
    assert_eq!(f.err("DescribeJob", json!({"jobId": "j"})).status, 404);
}

#[test]
fn list_jobs_pages_with_next_token() {
    let f = fixture();
    f.thing("t");
    for i in 0..5 {
        f.ok(
            "CreateJob",
            json!({"jobId": format!("job-{i}"), "document": DOC, "targets": [thing_arn("t")]}),
        );
    }
    let (seen, _pages) = f.list_all("ListJobs", 2, "jobs", "jobId");
    assert_eq!(seen, (0..5).map(|i| format!("job-{i}")).collect::<Vec<_>>());
    let e = f.err("ListJobs", json!({"nextToken": "bm90IG91cnM="}));
    assert_eq!(e.code, "InvalidRequestException");
    // The thing's executions page the same way.
    let first = f.ok(
        "ListJobExecutionsForThing",
        json!({"thingName": "t", "maxResults": 3}),
    );
    assert_eq!(first["executionSummaries"].as_array().unwrap().len(), 3);
    assert!(first["nextToken"].is_string());
}

#[test]
fn job_templates_give_jobs_their_document_and_configurations() {
    let f = fixture();
    f.thing("t");
    let created = f.ok(
        "CreateJobTemplate",
        json!({"jobTemplateId": "reboot", "description": "reboot a device", "document": DOC,
               "timeoutConfig": {"inProgressTimeoutInMinutes": 30}}),
    );
    let arn = format!("arn:aws:iot:{REGION}:{ACCOUNT}:jobtemplate/reboot");
    assert_eq!(
        created,
        json!({"jobTemplateArn": arn, "jobTemplateId": "reboot"})
    );
    let e = f.err(
        "CreateJobTemplate",
        json!({"jobTemplateId": "reboot", "description": "again", "document": DOC}),
    );
    assert_eq!((e.code, e.status), ("ConflictException", 409));
    let e = f.err(
        "CreateJobTemplate",
        json!({"jobTemplateId": "bad", "description": "d", "document": "[]"}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    let described = f.ok("DescribeJobTemplate", json!({"jobTemplateId": "reboot"}));
    assert_eq!(described["document"], DOC);
    assert_eq!(described["timeoutConfig"]["inProgressTimeoutInMinutes"], 30);
    assert_eq!(described["createdAt"], json!(NOW));
    let listed = f.ok("ListJobTemplates", json!({}));
    assert_eq!(listed["jobTemplates"][0]["jobTemplateId"], "reboot");

    // The request's members win over the template's.
    f.ok(
        "CreateJob",
        json!({"jobId": "from-template", "jobTemplateArn": arn, "targets": [thing_arn("t")],
               "timeoutConfig": {"inProgressTimeoutInMinutes": 5}}),
    );
    let job = &f.ok("DescribeJob", json!({"jobId": "from-template"}))["job"];
    assert_eq!(job["jobTemplateArn"], arn);
    assert_eq!(job["timeoutConfig"]["inProgressTimeoutInMinutes"], 5);
    assert_eq!(
        f.ok("GetJobDocument", json!({"jobId": "from-template"}))["document"],
        DOC
    );
    // A template made from a job.
    f.ok(
        "CreateJobTemplate",
        json!({"jobTemplateId": "copy", "description": "from a job",
               "jobArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:job/from-template")}),
    );
    let copy = f.ok("DescribeJobTemplate", json!({"jobTemplateId": "copy"}));
    assert_eq!(copy["document"], DOC);
    assert_eq!(copy["timeoutConfig"]["inProgressTimeoutInMinutes"], 5);

    f.ok("DeleteJobTemplate", json!({"jobTemplateId": "reboot"}));
    let e = f.err("DescribeJobTemplate", json!({"jobTemplateId": "reboot"}));
    assert_eq!((e.code, e.status), ("ResourceNotFoundException", 404));
    let e = f.err(
        "CreateJob",
        json!({"jobId": "j2", "jobTemplateArn": arn, "targets": [thing_arn("t")]}),
    );
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[test]
fn update_job_changes_what_describe_job_shows() {
    let f = fixture();
    f.thing("t");
    f.ok(
        "CreateJob",
        json!({"jobId": "j", "document": DOC, "description": "old", "targets": [thing_arn("t")]}),
    );
    f.ok(
        "UpdateJob",
        json!({"jobId": "j", "description": "new",
               "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
                   "thresholdPercentage": 20, "minNumberOfExecutedThings": 10}]}}),
    );
    let job = &f.ok("DescribeJob", json!({"jobId": "j"}))["job"];
    assert_eq!(job["description"], "new");
    assert_eq!(
        job["abortConfig"]["criteriaList"][0]["failureType"],
        "FAILED"
    );
    let e = f.err(
        "UpdateJob",
        json!({"jobId": "j", "timeoutConfig": {"inProgressTimeoutInMinutes": 0}}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    let e = f.err("UpdateJob", json!({"jobId": "nope", "description": "x"}));
    assert_eq!(e.code, "ResourceNotFoundException");
    // Retries may only be lowered to 0 after creation (J-18).
    let e = f.err(
        "UpdateJob",
        json!({"jobId": "j", "jobExecutionsRetryConfig": {"criteriaList": [
            {"failureType": "FAILED", "numberOfRetries": 3}]}}),
    );
    assert_eq!(e.code, "InvalidRequestException");
}

#[test]
fn without_a_jobs_engine_job_operations_are_unavailable_and_templates_still_work() {
    let (plane, _keys) = common::control_plane();
    let e = plane
        .call("ListJobs", Input::from_json(json!({})), at(NOW))
        .unwrap_err();
    assert_eq!((e.code, e.status), ("ServiceUnavailableException", 503));
    plane
        .call(
            "CreateJobTemplate",
            Input::from_json(json!({"jobTemplateId": "t", "description": "d", "document": DOC})),
            at(NOW),
        )
        .unwrap();
}

#[test]
fn signed_job_requests_round_trip_and_a_policy_can_deny_create_job() {
    let f = fixture();
    f.thing("t");
    let admin = access_key(&f.keys, None);
    let operator = access_key(
        &f.keys,
        Some(
            r#"{"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "iot:CreateJob", "Resource": "*"}]}"#,
        ),
    );
    let body = json!({"document": DOC, "targets": [thing_arn("t")]}).to_string();

    let (denied, audit) = f
        .plane
        .handle(&signed("PUT", "/jobs/j1", "", &body, &operator), at(NOW));
    assert_eq!(denied.status, 403);
    let message: Value = serde_json::from_slice(&denied.body).unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("iot:CreateJob on resource: arn:aws:iot:eu-central-1:123456789012:job/j1 with an explicit deny"),
        "{message}"
    );
    assert_eq!(audit.operation.as_deref(), Some("CreateJob"));
    assert!(f.published.topics().is_empty(), "nothing was created");

    let (created, _) = f
        .plane
        .handle(&signed("PUT", "/jobs/j1", "", &body, &admin), at(NOW));
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let created: Value = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(
        created["jobArn"],
        "arn:aws:iot:eu-central-1:123456789012:job/j1"
    );

    // The operator may read and cancel it: the query string binds `force`.
    let (described, _) = f
        .plane
        .handle(&signed("GET", "/jobs/j1", "", "", &operator), at(NOW));
    assert_eq!(described.status, 200);
    let described: Value = serde_json::from_slice(&described.body).unwrap();
    assert_eq!(described["job"]["targets"][0], thing_arn("t"));
    let (execution, _) = f.plane.handle(
        &signed("GET", "/things/t/jobs/j1", "", "", &operator),
        at(NOW),
    );
    assert_eq!(execution.status, 200);
    let (deleted, _) = f.plane.handle(
        &signed("DELETE", "/jobs/j1", "force=true", "", &operator),
        at(NOW),
    );
    assert_eq!(
        deleted.status,
        200,
        "{}",
        String::from_utf8_lossy(&deleted.body)
    );
}

#[test]
fn a_scheduled_job_is_scheduled_and_maintenance_windows_are_refused() {
    let f = fixture();
    f.thing("t");
    // NOW is 2026-12-04T12:00 UTC, the fixture's clock; the start an hour later.
    assert_eq!(NOW, 1_796_385_600);
    let text = "2026-12-04T13:00";
    f.ok(
        "CreateJob",
        json!({"jobId": "later", "document": DOC, "targets": [thing_arn("t")],
               "schedulingConfig": {"startTime": text, "endBehavior": "CANCEL"}}),
    );
    let job = &f.ok("DescribeJob", json!({"jobId": "later"}))["job"];
    assert_eq!(job["status"], "SCHEDULED");
    assert_eq!(job["schedulingConfig"]["startTime"], text);
    let e = f.err(
        "CreateJob",
        json!({"jobId": "windows", "document": DOC, "targets": [thing_arn("t")],
               "schedulingConfig": {"startTime": text, "maintenanceWindows": [
                   {"startTime": "cron(0 0 * * ? *)", "durationInMinutes": 60}]}}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    assert!(e.message.contains("maintenanceWindows"), "{}", e.message);
}
