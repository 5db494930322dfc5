#!/usr/bin/env python3
"""boto3, the AWS CLI v1 and paho-mqtt against a running `thingkit serve` (issue #15).

Run by crates/thingkit-cli/tests/serve.rs (`api_*` test) with the server's API endpoint, its
CA bundle, an access key made by `thingkit access-key create`, and the MQTT port. Every step
prints one line; the first failure raises (non-zero exit) with what was expected.

1. The classic provisioning script: create a thing, create keys and a certificate, create a
   policy, attach it to the certificate, attach the certificate to the thing.
2. The device connects over mutual TLS (paho-mqtt) with that certificate and publishes under
   that policy; a topic the policy does not allow is refused.
3. Live effects: DetachPolicy -> the next publish is refused on the same connection;
   UpdateCertificate INACTIVE -> the device is disconnected.
4. iot-data Publish over HTTPS reaches an MQTT subscriber.
5. Pagination (a paginator over 30 things), each error class as boto3's exception class,
   a wrongly signed request and an unknown key refused.
6. The same provisioning with `aws iot ...` commands.
7. AWS IoT Jobs: a job for the provisioned thing, described, its execution listed and
   described, canceled and force-deleted with boto3; `aws iot create-job` / `list-jobs`.
   (Needs `thingkit serve` to hand the API its jobs engine.)
8. Topic rules: create, get, list (pages, topic and ruleDisabled filters), replace, disable,
   enable and delete with boto3; SqlParseException, an unsupported action, a missing rule
   (UnauthorizedException, as AWS answers) and a read-only key refused; `aws iot
   create-topic-rule` / `get-topic-rule` / `delete-topic-rule`.
9. Device Defender: an on-demand audit of the server's fleet (with an overly permissive policy
   added) described and its findings listed with boto3; a security profile created,
   described, updated (versions, VersionConflictException), listed and deleted.
"""
import argparse
import importlib.metadata
import json
import os
import queue
import ssl
import subprocess
import sys
import tempfile
import time

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError
import paho.mqtt.client as mqtt

REGION = "eu-central-1"
ACCOUNT = "123456789012"

DEVICE_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:client/${{iot:Connection.Thing.ThingName}}"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/dt/${{iot:Connection.Thing.ThingName}}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topicfilter/dt/${{iot:Connection.Thing.ThingName}}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topicfilter/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/*"},
        {"Effect": "Allow", "Action": "iot:Receive",
         "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/*"},
    ],
})


# When each client ID last sent a CONNECT (Device waits out the broker's 1 CONNECT/s per client ID).
LAST_CONNECT = {}


def step(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def expect_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


class Device:
    """A paho-mqtt v5 client over mutual TLS that records PUBACKs and disconnects."""

    def __init__(self, args, thing, cert_pem, key_pem, workdir):
        cert = os.path.join(workdir, f"{thing}.pem")
        key = os.path.join(workdir, f"{thing}.key")
        with open(cert, "w") as f:
            f.write(cert_pem)
        with open(key, "w") as f:
            f.write(key_pem)
        os.chmod(key, 0o600)
        self.acks = queue.Queue()
        self.messages = queue.Queue()
        self.disconnected = queue.Queue()
        self.connected = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=args.ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = lambda cl, ud, flags, rc, props: self.connected.put(rc)
        c.on_publish = lambda cl, ud, mid, rc, props: self.acks.put((mid, rc))
        c.on_message = lambda cl, ud, msg: self.messages.put(msg)
        c.on_disconnect = lambda cl, ud, flags, rc, props: self.disconnected.put(rc)
        self.client = c
        # AWS IoT allows one CONNECT per second per client ID, and so does thingkit serve: a
        # second connection of a client ID waits out the second since its last one.
        since = time.monotonic() - LAST_CONNECT.get(thing, -10.0)
        if since < 1.2:
            time.sleep(1.2 - since)
        LAST_CONNECT[thing] = time.monotonic()
        c.connect("localhost", args.mqtt_port, keepalive=30)
        c.loop_start()
        rc = self.connected.get(timeout=10)
        assert not rc.is_failure, f"CONNECT refused: {rc}"

    def publish(self, topic, payload):
        """Publishes at QoS 1 and returns the PUBACK reason code's value."""
        info = self.client.publish(topic, payload, qos=1)
        mid, rc = self.acks.get(timeout=10)
        assert mid == info.mid
        return rc.value

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--mqtt-port", type=int, required=True)
    p.add_argument("--reader-key", required=True, help="a key allowed only iot:Describe* and iot:List*")
    p.add_argument("--reader-secret", required=True)
    args = p.parse_args()
    workdir = tempfile.mkdtemp()
    session = boto3.session.Session(
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        region_name=REGION,
    )
    config = Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=30)
    iot = session.client("iot", endpoint_url=args.endpoint, verify=args.ca, config=config)
    step(f"boto3 {boto3.__version__}, botocore {botocore.__version__}, paho-mqtt {importlib.metadata.version('paho-mqtt')}")

    # 1. The classic provisioning script.
    thing = "api-sensor-1"
    created = iot.create_thing(thingName=thing, attributePayload={"attributes": {"site": "lab"}})
    assert created["thingName"] == thing and created["thingArn"].endswith(f":thing/{thing}"), created
    keys = iot.create_keys_and_certificate(setAsActive=True)
    cert_arn, cert_id = keys["certificateArn"], keys["certificateId"]
    assert keys["certificatePem"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in keys["keyPair"]["PrivateKey"]
    iot.create_policy(policyName="api-device", policyDocument=DEVICE_POLICY)
    iot.attach_policy(policyName="api-device", target=cert_arn)
    iot.attach_thing_principal(thingName=thing, principal=cert_arn)
    step(f"provisioned {thing} with certificate {cert_id[:12]}...")
    desc = iot.describe_thing(thingName=thing)
    assert desc["attributes"] == {"site": "lab"}, desc
    assert iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "ACTIVE"
    assert [p["policyName"] for p in iot.list_attached_policies(target=cert_arn)["policies"]] == ["api-device"]
    assert iot.list_thing_principals(thingName=thing)["principals"] == [cert_arn]
    eff = iot.get_effective_policies(principal=cert_arn, thingName=thing)["effectivePolicies"]
    assert [e["policyName"] for e in eff] == ["api-device"], eff

    # 2. The device connects with that certificate and publishes under that policy.
    device = Device(args, thing, keys["certificatePem"], keys["keyPair"]["PrivateKey"], workdir)
    rc = device.publish(f"dt/{thing}/temp", "21.5")
    assert rc in (0, 16), f"allowed publish answered {rc}"  # 16: no matching subscribers
    rc = device.publish("dt/another-thing/temp", "1")
    assert rc == 135, f"a topic outside the policy answered {rc}, expected 0x87"
    step("the device connected over mTLS and published under the attached policy")

    # 4. iot-data Publish over HTTPS reaches an MQTT subscriber (the device itself).
    device.client.subscribe(f"dt/{thing}/cmd", qos=1)
    time.sleep(0.5)
    data = session.client("iot-data", endpoint_url=args.endpoint, verify=args.ca, config=config)
    data.publish(topic=f"dt/{thing}/cmd", qos=1, payload=b'{"reboot": true}')
    msg = device.messages.get(timeout=10)
    assert msg.topic == f"dt/{thing}/cmd" and msg.payload == b'{"reboot": true}', msg
    step("iot-data Publish over HTTPS reached the MQTT subscriber")

    # Device shadows over HTTPS (issue #16): the same engine the MQTT topics use.
    device.client.subscribe(f"$aws/things/{thing}/shadow/update/delta", qos=1)
    time.sleep(0.5)
    updated = json.loads(data.update_thing_shadow(
        thingName=thing, payload=json.dumps({"state": {"desired": {"color": "red"}}}))["payload"].read())
    assert updated["state"]["desired"]["color"] == "red" and updated["version"] == 1, updated
    delta = device.messages.get(timeout=10)
    assert delta.topic == f"$aws/things/{thing}/shadow/update/delta", delta.topic
    assert json.loads(delta.payload)["state"] == {"color": "red"}, delta.payload
    got = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
    assert got["state"]["delta"] == {"color": "red"} and got["version"] == 1, got
    data.update_thing_shadow(thingName=thing, shadowName="config",
                             payload=json.dumps({"state": {"reported": {"fw": "1.0"}}}))
    listed = data.list_named_shadows_for_thing(thingName=thing)
    assert listed["results"] == ["config"], listed
    try:
        data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"desired": {"x": 1}}, "version": 9}))
        raise AssertionError("a stale shadow version was accepted")
    except data.exceptions.ConflictException:
        pass
    deleted = json.loads(data.delete_thing_shadow(thingName=thing)["payload"].read())
    assert deleted["version"] == 1, deleted
    try:
        data.get_thing_shadow(thingName=thing)
        raise AssertionError("a deleted shadow was returned")
    except data.exceptions.ResourceNotFoundException:
        pass
    step("iot-data Get/Update/DeleteThingShadow and ListNamedShadowsForThing; the delta reached MQTT")

    # 3. Live effects.
    iot.detach_policy(policyName="api-device", target=cert_arn)
    rc = device.publish(f"dt/{thing}/temp", "22")
    assert rc == 135, f"after DetachPolicy the publish answered {rc}, expected 0x87"
    iot.attach_policy(policyName="api-device", target=cert_arn)
    rc = device.publish(f"dt/{thing}/temp", "23")
    assert rc in (0, 16), f"after AttachPolicy the publish answered {rc}"
    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    reason = device.disconnected.get(timeout=10)
    step(f"DetachPolicy refused the next publish; INACTIVE disconnected the device ({reason})")
    device.client.loop_stop()

    # 5. Pagination.
    for i in range(30):
        iot.create_thing(thingName=f"page-{i:02}")
    names = []
    pages = 0
    for page in iot.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 7}):
        pages += 1
        names += [t["thingName"] for t in page["things"]]
    assert sorted(n for n in names if n.startswith("page-")) == [f"page-{i:02}" for i in range(30)], names
    assert len(names) == len(set(names)) and pages >= 5, (pages, names)
    step(f"list_things paginated over {pages} pages")

    # Each error class as boto3's exception class.
    try:
        iot.describe_thing(thingName="no-such-thing")
        raise AssertionError("DescribeThing of a missing thing succeeded")
    except iot.exceptions.ResourceNotFoundException:
        pass
    try:
        iot.create_policy(policyName="api-device", policyDocument=DEVICE_POLICY)
        raise AssertionError("CreatePolicy of an existing name succeeded")
    except iot.exceptions.ResourceAlreadyExistsException:
        pass
    try:
        iot.create_thing(thingName="bad name")
        raise AssertionError("a thing name with a space was accepted")
    except iot.exceptions.InvalidRequestException:
        pass
    try:
        iot.delete_policy(policyName="api-device")
        raise AssertionError("an attached policy was deleted")
    except iot.exceptions.DeleteConflictException:
        pass
    try:
        iot.update_thing(thingName=thing, attributePayload={"attributes": {"a": "b"}}, expectedVersion=99)
        raise AssertionError("a stale expectedVersion was accepted")
    except iot.exceptions.VersionConflictException:
        pass
    for i in range(4):
        iot.create_policy_version(policyName="api-device", policyDocument=DEVICE_POLICY)
    try:
        iot.create_policy_version(policyName="api-device", policyDocument=DEVICE_POLICY)
        raise AssertionError("a sixth policy version was accepted")
    except iot.exceptions.VersionsLimitExceededException:
        pass
    try:
        iot.create_policy(policyName="broken", policyDocument='{"Version": "2012-10-17", "Statement": {"Effect": "Permit"}}')
        raise AssertionError("a malformed policy was accepted")
    except iot.exceptions.MalformedPolicyException:
        pass
    other = iot.create_keys_and_certificate(setAsActive=True)
    try:
        iot.delete_certificate(certificateId=other["certificateId"])
        raise AssertionError("an ACTIVE certificate was deleted")
    except iot.exceptions.CertificateStateException:
        pass
    step("ResourceNotFound, ResourceAlreadyExists, InvalidRequest, DeleteConflict, VersionConflict, "
         "VersionsLimitExceeded, MalformedPolicy, CertificateState raised as boto3's classes")

    # A wrongly signed request and an unknown key are refused, and change nothing.
    bad = boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key="x" * 40,
                                region_name=REGION).client("iot", endpoint_url=args.endpoint, verify=args.ca, config=config)
    expect_error("InvalidSignatureException", bad.create_thing, thingName="forged")
    unknown = boto3.session.Session(aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x" * 40,
                                    region_name=REGION).client("iot", endpoint_url=args.endpoint, verify=args.ca, config=config)
    expect_error("UnrecognizedClientException", unknown.create_thing, thingName="forged")
    try:
        iot.describe_thing(thingName="forged")
        raise AssertionError("a wrongly signed CreateThing created the thing")
    except iot.exceptions.ResourceNotFoundException:
        pass
    step("a wrongly signed request and an unknown key were refused; nothing changed")

    # An access key whose identity policy allows reading only: its writes are AccessDenied.
    reader = boto3.session.Session(aws_access_key_id=args.reader_key, aws_secret_access_key=args.reader_secret,
                                   region_name=REGION).client("iot", endpoint_url=args.endpoint, verify=args.ca, config=config)
    assert reader.describe_thing(thingName=thing)["thingName"] == thing
    e = expect_error("AccessDeniedException", reader.create_thing, thingName="by-reader")
    assert "is not authorized to perform: iot:CreateThing" in e.response["Error"]["Message"], e
    expect_error("AccessDeniedException", reader.delete_thing, thingName=thing)
    step("a read-only key described a thing and was denied CreateThing and DeleteThing")

    # 6. The AWS CLI v1: the same provisioning script.
    env = dict(os.environ, AWS_ACCESS_KEY_ID=args.access_key, AWS_SECRET_ACCESS_KEY=args.secret_key,
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    def aws(*cmd):
        out = subprocess.run(["aws", "iot", *cmd, "--endpoint-url", args.endpoint, "--ca-bundle", args.ca,
                              "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"aws iot {' '.join(cmd)}: {out.stderr}"
        return json.loads(out.stdout) if out.stdout.strip() else {}

    aws("create-thing", "--thing-name", "cli-sensor")
    cli_keys = aws("create-keys-and-certificate", "--set-as-active")
    aws("create-policy", "--policy-name", "cli-device", "--policy-document", DEVICE_POLICY)
    aws("attach-policy", "--policy-name", "cli-device", "--target", cli_keys["certificateArn"])
    aws("attach-thing-principal", "--thing-name", "cli-sensor", "--principal", cli_keys["certificateArn"])
    assert aws("describe-thing", "--thing-name", "cli-sensor")["thingName"] == "cli-sensor"
    listed = aws("list-things", "--max-items", "100")
    assert "cli-sensor" in [t["thingName"] for t in listed["things"]], listed
    cli_device = Device(args, "cli-sensor", cli_keys["certificatePem"], cli_keys["keyPair"]["PrivateKey"], workdir)
    rc = cli_device.publish("dt/cli-sensor/temp", "20")
    assert rc in (0, 16), f"the CLI-provisioned device's publish answered {rc}"
    cli_device.close()
    step("aws iot create-thing / create-keys-and-certificate / create-policy / attach-policy / "
         "attach-thing-principal provisioned a device that published")

    # 7. AWS IoT Jobs.
    thing_arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{thing}"
    document = json.dumps({"operation": "reboot"})
    job = iot.create_job(jobId="reboot-1", targets=[thing_arn], document=document,
                         description="reboot the sensor")
    assert job["jobArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:job/reboot-1", job
    described = iot.describe_job(jobId="reboot-1")["job"]
    assert described["status"] == "IN_PROGRESS" and described["targets"] == [thing_arn], described
    assert described["jobProcessDetails"]["numberOfQueuedThings"] == 1, described
    assert hasattr(described["createdAt"], "year"), "createdAt parses as a timestamp"
    assert iot.get_job_document(jobId="reboot-1")["document"] == document
    executions = iot.list_job_executions_for_job(jobId="reboot-1")["executionSummaries"]
    assert [e["thingArn"] for e in executions] == [thing_arn], executions
    execution = iot.describe_job_execution(jobId="reboot-1", thingName=thing)["execution"]
    assert execution["status"] == "QUEUED" and execution["versionNumber"] == 1, execution
    expect_error("ResourceAlreadyExistsException", iot.create_job, jobId="reboot-1", targets=[thing_arn],
                 document=document)
    expect_error("ResourceNotFoundException", iot.create_job, jobId="reboot-2",
                 targets=[f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/no-such-thing"], document=document)
    expect_error("InvalidRequestException", iot.create_job, jobId="reboot-3", targets=[thing_arn],
                 document="[not an object]")
    expect_error("InvalidStateTransitionException", iot.delete_job, jobId="reboot-1")
    canceled = iot.cancel_job(jobId="reboot-1", reasonCode="OPERATOR", comment="not today")
    assert canceled["jobId"] == "reboot-1", canceled
    assert iot.describe_job(jobId="reboot-1")["job"]["status"] == "CANCELED"
    assert iot.describe_job_execution(jobId="reboot-1", thingName=thing)["execution"]["status"] == "CANCELED"
    iot.delete_job(jobId="reboot-1", force=True)
    expect_error("ResourceNotFoundException", iot.describe_job, jobId="reboot-1")
    step("boto3 created, described, listed, canceled and deleted a job for the provisioned thing")

    created = aws("create-job", "--job-id", "cli-job", "--targets", f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/cli-sensor",
                  "--document", document, "--target-selection", "SNAPSHOT")
    assert created["jobId"] == "cli-job", created
    listed = aws("list-jobs", "--status", "IN_PROGRESS")
    assert "cli-job" in [j["jobId"] for j in listed["jobs"]], listed
    step("aws iot create-job / list-jobs")

    # 8. Topic rules (AWS IoT SQL): created, read, listed, replaced, disabled, enabled and
    # deleted with boto3; refused as AWS refuses them; `aws iot create-topic-rule` /
    # `get-topic-rule`.
    role = f"arn:aws:iam::{ACCOUNT}:role/iot-republish"
    hot = {
        "sql": f"SELECT temperature, topic(2) AS device FROM 'dt/+/temp' WHERE temperature > 25",
        "description": "hot readings",
        "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": "dt/${topic(2)}/alerts", "roleArn": role, "qos": 1}}],
        "errorAction": {"republish": {"topic": "rules/errors", "roleArn": role}},
        "ruleDisabled": False,
    }
    assert iot.create_topic_rule(ruleName="hot_readings", topicRulePayload=hot, tags="team=ops")[
        "ResponseMetadata"]["HTTPStatusCode"] == 200
    got = iot.get_topic_rule(ruleName="hot_readings")
    assert got["ruleArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:rule/hot_readings", got
    rule = got["rule"]
    assert rule["ruleName"] == "hot_readings" and rule["sql"] == hot["sql"], rule
    assert rule["awsIotSqlVersion"] == "2016-03-23" and rule["ruleDisabled"] is False, rule
    assert rule["actions"] == hot["actions"] and rule["errorAction"] == hot["errorAction"], rule
    assert hasattr(rule["createdAt"], "year"), "createdAt parses as a timestamp"
    expect_error("ResourceAlreadyExistsException", iot.create_topic_rule, ruleName="hot_readings",
                 topicRulePayload=hot)
    e = expect_error("SqlParseException", iot.create_topic_rule, ruleName="bad_sql",
                     topicRulePayload={"sql": "SELECT temperature FROM 'dt/+/temp' WHERE", "actions": []})
    assert e.response["Error"]["Message"][0].isdigit(), e  # line:column: reason
    e = expect_error("InvalidRequestException", iot.create_topic_rule, ruleName="to_dynamo",
                     topicRulePayload={"sql": "SELECT * FROM 'dt/#'", "actions": [{"dynamoDB": {
                         "tableName": "t", "roleArn": role, "hashKeyField": "k", "hashKeyValue": "v"}}]})
    assert "the dynamoDB action is not supported by thingkit" in e.response["Error"]["Message"], e
    expect_error("InvalidRequestException", iot.create_topic_rule, ruleName="old_sql",
                 topicRulePayload={"sql": "SELECT * FROM 'dt/#'", "actions": [], "awsIotSqlVersion": "2014-01-01"})
    expect_error("UnauthorizedException", iot.get_topic_rule, ruleName="no_such_rule")
    step("boto3 create_topic_rule / get_topic_rule; SqlParseException, an unsupported action, "
         "a missing rule refused as AWS refuses them")

    # The rule runs in the broker: a reading over 25 from the CLI-provisioned device comes back
    # republished on its alerts topic; a disabled rule republishes nothing.
    watcher = Device(args, "cli-sensor", cli_keys["certificatePem"], cli_keys["keyPair"]["PrivateKey"], workdir)
    watcher.client.subscribe("dt/cli-sensor/alerts", qos=1)
    time.sleep(0.5)
    assert watcher.publish("dt/cli-sensor/temp", json.dumps({"temperature": 30})) in (0, 16)
    alert = watcher.messages.get(timeout=10)
    assert alert.topic == "dt/cli-sensor/alerts", alert.topic
    assert json.loads(alert.payload) == {"temperature": 30, "device": "cli-sensor"}, alert.payload
    assert watcher.publish("dt/cli-sensor/temp", json.dumps({"temperature": 20})) in (0, 16)
    iot.disable_topic_rule(ruleName="hot_readings")
    assert watcher.publish("dt/cli-sensor/temp", json.dumps({"temperature": 31})) in (0, 16)
    try:
        late = watcher.messages.get(timeout=1.5)
        raise AssertionError(f"a cold or disabled rule republished {late.topic} {late.payload!r}")
    except queue.Empty:
        pass
    iot.enable_topic_rule(ruleName="hot_readings")
    watcher.close()
    step("the API's rule republished a hot reading through the broker; disabled, it did not")

    for i in range(3):
        iot.create_topic_rule(ruleName=f"page_{i}", topicRulePayload={
            "sql": f"SELECT * FROM 'fleet/{i}/#'", "actions": [], "ruleDisabled": i == 2})
    pages = list(iot.get_paginator("list_topic_rules").paginate(PaginationConfig={"PageSize": 2}))
    names = [r["ruleName"] for p in pages for r in p["rules"]]
    assert names == ["hot_readings", "page_0", "page_1", "page_2"] and len(pages) == 2, (names, len(pages))
    listed = iot.list_topic_rules(topic=f"dt/{thing}/temp")["rules"]
    assert [r["ruleName"] for r in listed] == ["hot_readings"], listed
    assert listed[0]["topicPattern"] == "dt/+/temp" and listed[0]["ruleDisabled"] is False, listed
    disabled = iot.list_topic_rules(ruleDisabled=True)["rules"]
    assert [r["ruleName"] for r in disabled] == ["page_2"], disabled
    # The read-only key may list rules, not read one (iot:GetTopicRule) or create one.
    assert "hot_readings" in [r["ruleName"] for r in reader.list_topic_rules()["rules"]]
    expect_error("AccessDeniedException", reader.get_topic_rule, ruleName="hot_readings")
    expect_error("AccessDeniedException", reader.create_topic_rule, ruleName="by_reader", topicRulePayload=hot)
    step("boto3 list_topic_rules: pages, topic and ruleDisabled filters; a read-only key")

    replaced = dict(hot, sql="SELECT * FROM 'dt/+/temp' WHERE temperature > 30")
    del replaced["awsIotSqlVersion"]
    iot.replace_topic_rule(ruleName="hot_readings", topicRulePayload=replaced)
    rule = iot.get_topic_rule(ruleName="hot_readings")["rule"]
    assert rule["sql"] == replaced["sql"] and rule["awsIotSqlVersion"] == "2015-10-08", rule
    expect_error("SqlParseException", iot.replace_topic_rule, ruleName="hot_readings",
                 topicRulePayload=dict(replaced, sql="SELECT FROM WHERE"))
    assert iot.get_topic_rule(ruleName="hot_readings")["rule"]["sql"] == replaced["sql"]
    iot.disable_topic_rule(ruleName="hot_readings")
    assert iot.get_topic_rule(ruleName="hot_readings")["rule"]["ruleDisabled"] is True
    iot.enable_topic_rule(ruleName="hot_readings")
    assert iot.get_topic_rule(ruleName="hot_readings")["rule"]["ruleDisabled"] is False
    for name in ["hot_readings", "page_0", "page_1", "page_2"]:
        iot.delete_topic_rule(ruleName=name)
    expect_error("UnauthorizedException", iot.delete_topic_rule, ruleName="hot_readings")
    assert iot.list_topic_rules()["rules"] == []
    step("boto3 replace_topic_rule / disable_topic_rule / enable_topic_rule / delete_topic_rule")

    aws("create-topic-rule", "--rule-name", "cli_rule", "--topic-rule-payload", json.dumps({
        "sql": "SELECT * FROM 'dt/cli-sensor/#'", "actions": [
            {"http": {"url": "https://example.com/ingest", "headers": [{"key": "x-source", "value": "thingkit"}]}}]}))
    rule = aws("get-topic-rule", "--rule-name", "cli_rule")["rule"]
    assert rule["sql"] == "SELECT * FROM 'dt/cli-sensor/#'" and rule["awsIotSqlVersion"] == "2015-10-08", rule
    assert rule["actions"][0]["http"]["url"] == "https://example.com/ingest", rule
    aws("delete-topic-rule", "--rule-name", "cli_rule")
    step("aws iot create-topic-rule / get-topic-rule / delete-topic-rule")
    # Left for serve.rs to find after kill -9.
    iot.create_topic_rule(ruleName="kept_rule", topicRulePayload={
        "sql": "SELECT * FROM 'dt/+/kept'", "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"topic": "dt/kept/out", "roleArn": role}}]})
    device_defender(iot)
    print("OK")


def device_defender(iot):
    """9. Audits and security profiles."""
    from datetime import datetime, timedelta, timezone
    iot.create_policy(policyName="audit_wide_open", policyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}))
    checks = ["IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "DEVICE_CERTIFICATE_EXPIRING_CHECK",
              "DEVICE_CERTIFICATE_SHARED_CHECK"]
    task_id = iot.start_on_demand_audit_task(targetCheckNames=checks)["taskId"]
    task = iot.describe_audit_task(taskId=task_id)
    assert task["taskStatus"] == "COMPLETED" and task["taskType"] == "ON_DEMAND_AUDIT_TASK", task
    assert isinstance(task["taskStartTime"], datetime), task
    assert task["taskStatistics"]["totalChecks"] == 3, task
    details = task["auditDetails"]["IOT_POLICY_OVERLY_PERMISSIVE_CHECK"]
    assert details["checkRunStatus"] == "COMPLETED_NON_COMPLIANT", details
    findings = iot.list_audit_findings(
        taskId=task_id, checkName="IOT_POLICY_OVERLY_PERMISSIVE_CHECK")["findings"]
    names = [f["nonCompliantResource"]["resourceIdentifier"]["policyVersionIdentifier"]["policyName"]
             for f in findings]
    assert "audit_wide_open" in names, names
    assert all(f["taskId"] == task_id and f["severity"] == "CRITICAL" for f in findings), findings
    now = datetime.now(timezone.utc)
    tasks = iot.list_audit_tasks(startTime=now - timedelta(hours=1), endTime=now + timedelta(hours=1))["tasks"]
    assert task_id in [t["taskId"] for t in tasks], tasks
    expect_error("ResourceNotFoundException", iot.describe_audit_task, taskId="no-such-task")
    step("boto3 start_on_demand_audit_task / describe_audit_task / list_audit_findings / list_audit_tasks")

    behaviors = [{"name": "few-auth-failures", "metric": "aws:num-authorization-failures",
                  "criteria": {"comparisonOperator": "less-than", "value": {"count": 5},
                               "durationSeconds": 300}}]
    created = iot.create_security_profile(securityProfileName="sensors", behaviors=behaviors)
    assert created["securityProfileArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:securityprofile/sensors", created
    expect_error("ResourceAlreadyExistsException", iot.create_security_profile,
                 securityProfileName="sensors", behaviors=behaviors)
    profile = iot.describe_security_profile(securityProfileName="sensors")
    assert profile["version"] == 1 and profile["behaviors"] == behaviors, profile
    assert isinstance(profile["creationDate"], datetime), profile
    updated = iot.update_security_profile(securityProfileName="sensors",
                                          securityProfileDescription="fleet sensors", expectedVersion=1)
    assert updated["version"] == 2 and updated["securityProfileDescription"] == "fleet sensors", updated
    expect_error("VersionConflictException", iot.update_security_profile,
                 securityProfileName="sensors", securityProfileDescription="stale", expectedVersion=1)
    listed = iot.list_security_profiles()["securityProfileIdentifiers"]
    assert [p["name"] for p in listed] == ["sensors"], listed
    iot.delete_security_profile(securityProfileName="sensors")
    expect_error("ResourceNotFoundException", iot.describe_security_profile, securityProfileName="sensors")
    assert iot.list_security_profiles()["securityProfileIdentifiers"] == []
    step("boto3 create / describe / update / list / delete_security_profile")

    # Left for serve.rs to find after kill -9: an attached profile (the server's detector
    # evaluates it) and the audit task above with its findings.
    iot.create_security_profile(securityProfileName="kept_profile", behaviors=behaviors)
    target = f"arn:aws:iot:{REGION}:{ACCOUNT}:all/registered-things"
    iot.attach_security_profile(securityProfileName="kept_profile", securityProfileTargetArn=target)
    targets = iot.list_targets_for_security_profile(securityProfileName="kept_profile")["securityProfileTargets"]
    assert [t["arn"] for t in targets] == [target], targets
    assert iot.list_active_violations()["activeViolations"] == []
    step("boto3 attach_security_profile / list_targets_for_security_profile / list_active_violations")


if __name__ == "__main__":
    main()
