#!/usr/bin/env python3
"""AWS IoT Jobs end to end against `thingkit serve` (issue #17): boto3 runs the control plane,
the AWS IoT Device SDK v2 for Python (PyPI awsiotsdk, its awsiot.iotjobs.IotJobsClient) is the
device, the way the SDK's jobs sample drives a job.

Usage: jobs_awsiotsdk.py --endpoint https://localhost:PORT --ca CA --access-key K --secret-key S
                         --host localhost --mqtt-port P --cert CERT --key KEY --thing T
                         [--phase all|before-crash|after-crash] [--timeout S]

Phase `before-crash` (or `all`):
1. The device connects (mutual TLS, client ID = thing name) and subscribes to every jobs
   response topic and to NextJobExecutionChanged.
2. boto3 CreateJob `fw-1` targeting the thing: the device hears `/notify-next` (through the
   broker, from the server's rollout), asks GetPendingJobExecutions (fw-1 QUEUED), then
   StartNextPendingJobExecution (fw-1 IN_PROGRESS, its document), reports progress in
   statusDetails with expectedVersion, a stale expectedVersion is refused (VersionMismatch),
   and reports SUCCEEDED. boto3 DescribeJob says COMPLETED, DescribeJobExecution SUCCEEDED
   with the statusDetails, ListJobExecutionsForJob lists it.
3. boto3 CreateJob `fw-2`: `/notify-next` names it; the device REJECTS it; a second update
   is refused (InvalidStateTransition on a terminal execution).
4. AWS MQTT-based file delivery over the SDK's own MQTT connection: DescribeStream of the
   stream `fw-img` the test installed (file 0, its size), GetStream of five 1,024-byte blocks
   reassembled byte for byte, and an unknown stream answered on `.../rejected/json`.
5. boto3 CreateJob `fw-3`; the device starts it (IN_PROGRESS, statusDetails step=1) and the
   script prints `jobs before crash ok`: the caller then kills the server with SIGKILL.
Phase `after-crash` (or `all`, without a crash in between): the device reconnects and finds
`fw-3` IN_PROGRESS with its statusDetails (DescribeJobExecution `$next`), completes it, and
boto3 sees fw-3 COMPLETED.

Every step prints one line; the first failure exits 1 with the failed step on stderr. Every
wait is bounded by --timeout.
"""

import argparse
import json
import os
import queue
import sys
import threading
import time

START = time.monotonic()
PRINT = threading.Lock()
REGION = "eu-central-1"
ACCOUNT = "123456789012"


def say(text):
    with PRINT:
        print(text, flush=True)


def fail(why):
    with PRINT:
        sys.stdout.flush()
        print(f"jobs check failed after {time.monotonic() - START:.2f} s: {why}",
              file=sys.stderr, flush=True)
    os._exit(1)


try:
    import boto3
    from botocore.config import Config
    from awscrt import mqtt
    from awsiot import iotjobs, mqtt_connection_builder
except ImportError as e:
    fail(f"missing a client ({e}): python3 -m pip install boto3 awsiotsdk")

QOS1 = mqtt.QoS.AT_LEAST_ONCE


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--mqtt-port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--thing", required=True)
    p.add_argument("--phase", choices=["all", "before-crash", "after-crash"], default="all")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--stream-size", type=int, default=5000,
                   help="size of stream fw-img file 0, whose byte i is i % 251")
    return p.parse_args()


ARGS = parse_args()
THING = ARGS.thing
TIMEOUT = ARGS.timeout
THING_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{THING}"

IOT = boto3.client(
    "iot",
    region_name=REGION,
    endpoint_url=ARGS.endpoint,
    verify=ARGS.ca,
    aws_access_key_id=ARGS.access_key,
    aws_secret_access_key=ARGS.secret_key,
    config=Config(retries={"max_attempts": 1}),
)


class Inbox:
    """Every SDK callback lands here as (kind, response); `expect` waits for one kind."""

    def __init__(self):
        self.q = queue.Queue()

    def put(self, kind):
        def callback(response, *rest):
            self.q.put((kind, response))
        return callback

    def expect(self, kind, what, check=lambda r: True):
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"no {kind} for {what} within {TIMEOUT} s")
            try:
                got_kind, response = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if got_kind == kind and check(response):
                say(f"<- {kind}: {what}")
                return response
            if got_kind.endswith("rejected") and not kind.endswith("rejected"):
                fail(f"{what}: {got_kind} {response}")
            # Other messages (an earlier notification, say) are skipped.


def connect():
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint=ARGS.host,
        port=ARGS.mqtt_port,
        cert_filepath=ARGS.cert,
        pri_key_filepath=ARGS.key,
        ca_filepath=ARGS.ca,
        client_id=THING,
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(TIMEOUT)
    say(f"device {THING} connected")
    return connection


def subscribe(jobs, inbox, job_ids):
    futures = []
    f, _ = jobs.subscribe_to_next_job_execution_changed_events(
        iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=THING), QOS1,
        inbox.put("notify-next"))
    futures.append(f)
    for name, sub in [
        ("get-pending/accepted", jobs.subscribe_to_get_pending_job_executions_accepted),
        ("get-pending/rejected", jobs.subscribe_to_get_pending_job_executions_rejected),
    ]:
        f, _ = sub(iotjobs.GetPendingJobExecutionsSubscriptionRequest(thing_name=THING), QOS1,
                   inbox.put(name))
        futures.append(f)
    for name, sub in [
        ("start-next/accepted", jobs.subscribe_to_start_next_pending_job_execution_accepted),
        ("start-next/rejected", jobs.subscribe_to_start_next_pending_job_execution_rejected),
    ]:
        f, _ = sub(iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=THING),
                   QOS1, inbox.put(name))
        futures.append(f)
    for job_id in job_ids:
        for name, sub in [
            ("update/accepted", jobs.subscribe_to_update_job_execution_accepted),
            ("update/rejected", jobs.subscribe_to_update_job_execution_rejected),
        ]:
            f, _ = sub(iotjobs.UpdateJobExecutionSubscriptionRequest(
                thing_name=THING, job_id=job_id), QOS1, inbox.put(f"{job_id} {name}"))
            futures.append(f)
        for name, sub in [
            ("describe/accepted", jobs.subscribe_to_describe_job_execution_accepted),
            ("describe/rejected", jobs.subscribe_to_describe_job_execution_rejected),
        ]:
            f, _ = sub(iotjobs.DescribeJobExecutionSubscriptionRequest(
                thing_name=THING, job_id=job_id), QOS1, inbox.put(f"{job_id} {name}"))
            futures.append(f)
    for f in futures:
        f.result(TIMEOUT)
    say(f"subscribed to {len(futures)} jobs topics")


def update(jobs, job_id, status, details=None, expected=None):
    say(f"-> {job_id} update {status} {details or ''} expectedVersion={expected}")
    jobs.publish_update_job_execution(iotjobs.UpdateJobExecutionRequest(
        thing_name=THING, job_id=job_id, status=status, status_details=details,
        expected_version=expected, client_token=f"{job_id}-{status}"), QOS1).result(TIMEOUT)


def create_job(job_id, document):
    r = IOT.create_job(jobId=job_id, targets=[THING_ARN], document=json.dumps(document),
                       description=f"interop {job_id}")
    if r["jobId"] != job_id or not r["jobArn"].endswith(f":job/{job_id}"):
        fail(f"CreateJob answered {r}")
    say(f"boto3 CreateJob {job_id}")


def job_status(job_id, want):
    deadline = time.monotonic() + TIMEOUT
    while True:
        job = IOT.describe_job(jobId=job_id)["job"]
        if job["status"] == want:
            say(f"boto3 DescribeJob {job_id}: {want}")
            return job
        if time.monotonic() > deadline:
            fail(f"DescribeJob {job_id}: {job['status']}, wanted {want}")
        time.sleep(0.2)


def streams(connection):
    import base64
    inbox = queue.Queue()

    def on_message(topic, payload, **kwargs):
        inbox.put((topic, json.loads(payload)))

    base = f"$aws/things/{THING}/streams"
    for suffix in ["fw-img/data/json", "fw-img/description/json", "fw-img/rejected/json",
                   "nope/rejected/json"]:
        f, _ = connection.subscribe(topic=f"{base}/{suffix}", qos=QOS1, callback=on_message)
        f.result(TIMEOUT)

    def expect(topic_end, n=1):
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"{len(got)}/{n} messages on .../{topic_end} within {TIMEOUT} s")
            try:
                topic, body = inbox.get(timeout=left)
            except queue.Empty:
                continue
            if not topic.endswith(topic_end):
                fail(f"unexpected {topic}: {body}")
            got.append(body)
        return got

    connection.publish(topic=f"{base}/fw-img/describe/json",
                       payload=json.dumps({"c": "d1"}), qos=QOS1)[0].result(TIMEOUT)
    (description,) = expect("fw-img/description/json")
    if description.get("c") != "d1" or description.get("r") != [{"f": 0, "z": ARGS.stream_size}]:
        fail(f"DescribeStream: {description}")
    say(f"<- DescribeStream fw-img: version {description['s']}, file 0 of {ARGS.stream_size} bytes")
    connection.publish(
        topic=f"{base}/fw-img/get/json",
        payload=json.dumps({"c": "g1", "s": description["s"], "f": 0, "l": 1024, "o": 0, "n": 5}),
        qos=QOS1)[0].result(TIMEOUT)
    blocks = expect("fw-img/data/json", 5)
    data = b"".join(base64.b64decode(b["p"]) for b in sorted(blocks, key=lambda b: b["i"]))
    want = bytes(i % 251 for i in range(ARGS.stream_size))
    if data != want or any(b.get("c") != "g1" for b in blocks):
        fail(f"GetStream: {len(data)} bytes reassembled, not the installed file")
    say("<- GetStream fw-img: 5 blocks, the file byte for byte")
    connection.publish(topic=f"{base}/nope/get/json",
                       payload=json.dumps({"c": "g2", "f": 0, "l": 1024}), qos=QOS1)[0].result(TIMEOUT)
    (rejected,) = expect("nope/rejected/json")
    if rejected.get("o") != "ResourceNotFound" or rejected.get("c") != "g2":
        fail(f"GetStream of an unknown stream: {rejected}")
    say("<- GetStream nope: rejected ResourceNotFound")


def before_crash():
    connection = connect()
    jobs = iotjobs.IotJobsClient(connection)
    inbox = Inbox()
    subscribe(jobs, inbox, ["fw-1", "fw-2", "fw-3"])

    # 2. A job, notified through the broker, run to SUCCEEDED.
    create_job("fw-1", {"operation": "install", "version": "1.0.1"})
    inbox.expect("notify-next", "fw-1 is next",
                 lambda r: r.execution is not None and r.execution.job_id == "fw-1")
    jobs.publish_get_pending_job_executions(iotjobs.GetPendingJobExecutionsRequest(
        thing_name=THING, client_token="pending-1"), QOS1).result(TIMEOUT)
    pending = inbox.expect("get-pending/accepted", "fw-1 queued")
    if [j.job_id for j in pending.queued_jobs or []] != ["fw-1"] or pending.in_progress_jobs:
        fail(f"GetPendingJobExecutions: {pending.to_payload()}")
    if pending.client_token != "pending-1":
        fail(f"clientToken not echoed: {pending.to_payload()}")
    jobs.publish_start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(
            thing_name=THING, status_details={"step": "download"}, client_token="start-1"),
        QOS1).result(TIMEOUT)
    started = inbox.expect("start-next/accepted", "fw-1 started")
    e = started.execution
    if e.job_id != "fw-1" or e.status != "IN_PROGRESS" or e.job_document.get("version") != "1.0.1":
        fail(f"StartNextPendingJobExecution: {started.to_payload()}")
    version = e.version_number
    update(jobs, "fw-1", "IN_PROGRESS", {"step": "verify", "receive": "12/12"}, version)
    inbox.expect("fw-1 update/accepted", "progress reported")
    update(jobs, "fw-1", "IN_PROGRESS", {"step": "stale"}, version)
    rejected = inbox.expect("fw-1 update/rejected", "stale expectedVersion refused")
    if rejected.code != "VersionMismatch":
        fail(f"wanted VersionMismatch: {rejected.to_payload()}")
    update(jobs, "fw-1", "SUCCEEDED", {"step": "done"}, version + 1)
    inbox.expect("fw-1 update/accepted", "SUCCEEDED")
    job_status("fw-1", "COMPLETED")
    execution = IOT.describe_job_execution(jobId="fw-1", thingName=THING)["execution"]
    if execution["status"] != "SUCCEEDED" or execution["statusDetails"]["detailsMap"] != {"step": "done"}:
        fail(f"DescribeJobExecution: {execution}")
    say("boto3 DescribeJobExecution fw-1: SUCCEEDED, statusDetails kept")
    listed = IOT.list_job_executions_for_job(jobId="fw-1")["executionSummaries"]
    if [s["thingArn"] for s in listed] != [THING_ARN]:
        fail(f"ListJobExecutionsForJob: {listed}")
    say("boto3 ListJobExecutionsForJob fw-1: the thing")

    # 3. A job the device rejects; terminal states are final.
    create_job("fw-2", {"operation": "install", "version": "0.9.0"})
    inbox.expect("notify-next", "fw-2 is next",
                 lambda r: r.execution is not None and r.execution.job_id == "fw-2")
    update(jobs, "fw-2", "REJECTED", {"reason": "downgrade refused"})
    inbox.expect("fw-2 update/accepted", "REJECTED")
    update(jobs, "fw-2", "IN_PROGRESS")
    rejected = inbox.expect("fw-2 update/rejected", "no change after a terminal state")
    if rejected.code != "InvalidStateTransition":
        fail(f"wanted InvalidStateTransition: {rejected.to_payload()}")
    job_status("fw-2", "COMPLETED")

    # 4. MQTT-based file delivery, with the SDK's MQTT connection as the client.
    streams(connection)

    # 5. A job left IN_PROGRESS for the crash.
    create_job("fw-3", {"operation": "install", "version": "1.0.2"})
    inbox.expect("notify-next", "fw-3 is next",
                 lambda r: r.execution is not None and r.execution.job_id == "fw-3")
    update(jobs, "fw-3", "IN_PROGRESS", {"step": "1"})
    inbox.expect("fw-3 update/accepted", "fw-3 IN_PROGRESS")
    say("jobs before crash ok")
    connection.disconnect().result(TIMEOUT)


def after_crash():
    connection = None
    deadline = time.monotonic() + TIMEOUT
    while connection is None:
        try:
            connection = connect()
        except Exception as e:  # the server may still be starting
            if time.monotonic() > deadline:
                fail(f"reconnect: {e}")
            time.sleep(0.5)
    jobs = iotjobs.IotJobsClient(connection)
    inbox = Inbox()
    subscribe(jobs, inbox, ["$next", "fw-3"])
    jobs.publish_describe_job_execution(iotjobs.DescribeJobExecutionRequest(
        thing_name=THING, job_id="$next", include_job_document=True, client_token="next"),
        QOS1).result(TIMEOUT)
    described = inbox.expect("$next describe/accepted", "fw-3 after the crash")
    e = described.execution
    if e.job_id != "fw-3" or e.status != "IN_PROGRESS" or e.status_details != {"step": "1"}:
        fail(f"after the crash: {described.to_payload()}")
    update(jobs, "fw-3", "SUCCEEDED", {"step": "2"}, e.version_number)
    inbox.expect("fw-3 update/accepted", "fw-3 SUCCEEDED")
    job_status("fw-3", "COMPLETED")
    say("jobs after crash ok")
    connection.disconnect().result(TIMEOUT)


if ARGS.phase in ("all", "before-crash"):
    before_crash()
if ARGS.phase in ("all", "after-crash"):
    after_crash()
say(f"jobs ok in {time.monotonic() - START:.1f} s")
os._exit(0)
