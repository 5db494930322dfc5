"""The AWS IoT Device SDK v2 for Python (PyPI awsiotsdk) against thingkit serve: Device Shadow.

Usage: shadow_awsiotsdk.py --host H --port P --ca CA --cert CERT --key KEY --thing T
                           [--shadow-name config] [--protocol 3.1.1|5|both] [--timeout S]

Connects with the SDK's mqtt_connection_builder.mtls_from_path (client ID = thing name, clean
session) and drives awsiot.iotshadow.IotShadowClient through the classic shadow of T and its
named shadow: subscribe to every response topic, get (404), update reported, update desired (with
its delta), get, a stale update (409), the same on the named shadow, delete and get (404).
With --protocol 5 or both, the scenario runs (again) over the SDK's MQTT 5 client
(mqtt5_client_builder); a second run finds the shadows the first deleted, whose versions AWS IoT
does not reset to 0.

Prints every JSON document sent (->) and received (<-). Exits 0 when every check passed, 1 with
the failed step on stderr. Every wait is bounded by --timeout.
"""

import argparse
import json
import os
import queue
import sys
import threading
import time
import uuid

START = time.monotonic()
PRINT = threading.Lock()  # the SDK calls back on its own threads


def elapsed():
    return f"{time.monotonic() - START:.2f} s"


def say(text):
    with PRINT:
        print(text, flush=True)


def fail(why):
    with PRINT:
        sys.stdout.flush()
        print(f"shadow check failed after {elapsed()}: {why}", file=sys.stderr, flush=True)
    # The SDK's native threads may still hold the connection: do not wait for them.
    os._exit(1)


try:
    from awscrt import mqtt, mqtt5
    from awsiot import iotshadow, mqtt5_client_builder, mqtt_connection_builder
except ImportError as e:
    fail(f"the AWS IoT Device SDK is not installed ({e}): python3 -m pip install awsiotsdk")

QOS1 = mqtt.QoS.AT_LEAST_ONCE


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True, help="the server's host name (checked against its certificate)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True, help="CA certificate (PEM) that issued the server certificate")
    p.add_argument("--cert", required=True, help="the device certificate (PEM)")
    p.add_argument("--key", required=True, help="the device private key (PEM)")
    p.add_argument("--thing", required=True, help="thing name, also the MQTT client ID")
    p.add_argument("--shadow-name", default="config", help="the named shadow to exercise")
    p.add_argument("--protocol", choices=["3.1.1", "5", "both"], default="3.1.1")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds each step may take")
    return p.parse_args()


ARGS = parse_args()
TIMEOUT = ARGS.timeout
THING = ARGS.thing
NAMED = ARGS.shadow_name


def prefix(shadow):
    base = f"$aws/things/{THING}/shadow"
    return base if shadow is None else f"{base}/name/{shadow}"


def show(direction, topic, payload):
    """One line per document: the topic, then the JSON as it was on the wire."""
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", errors="replace")
    say(f"{direction} {topic} {payload}")


class Session:
    """One SDK connection (MQTT 3.1.1, or MQTT 5 through the SDK's mqtt5 client) with the shadow
    client and a queue per response topic."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.inbox = {}  # (shadow, "get/accepted" ...) -> queue of SDK model objects (None: unparsable)
        self.client5 = None
        if protocol == "5":
            self.connect5()
        else:
            self.connect311()

    def connect311(self):
        self.connection = mqtt_connection_builder.mtls_from_path(
            endpoint=ARGS.host,
            port=ARGS.port,
            cert_filepath=ARGS.cert,
            pri_key_filepath=ARGS.key,
            ca_filepath=ARGS.ca,
            client_id=THING,
            clean_session=True,
            keep_alive_secs=30,
        )
        # Every incoming PUBLISH, in addition to the shadow client's per-topic callbacks.
        self.connection.on_message(lambda topic, payload, **kwargs: show("<-", topic, payload))
        self.shadow = iotshadow.IotShadowClient(self.connection)
        try:
            result = self.connection.connect().result(TIMEOUT)
        except Exception as e:  # noqa: BLE001 - any failure to connect ends the run
            fail(f"MQTT 3.1.1 connect to {ARGS.host}:{ARGS.port} as {THING}: {e!r}")
        say(f"connected (MQTT 3.1.1, session present {result['session_present']})")

    def connect5(self):
        connected = threading.Event()
        failure = []
        stopped = threading.Event()
        self.stopped5 = stopped

        def on_failure(data):
            failure.append(data.exception)
            connected.set()

        self.client5 = mqtt5_client_builder.mtls_from_path(
            endpoint=ARGS.host,
            port=ARGS.port,
            cert_filepath=ARGS.cert,
            pri_key_filepath=ARGS.key,
            ca_filepath=ARGS.ca,
            client_id=THING,
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            on_publish_received=lambda data: show("<-", data.publish_packet.topic, data.publish_packet.payload),
            on_lifecycle_connection_success=lambda data: connected.set(),
            on_lifecycle_connection_failure=on_failure,
            on_lifecycle_stopped=lambda data: stopped.set(),
        )
        # The shadow client takes the MQTT 5 client and works through its 3.1.1-style adapter.
        self.shadow = iotshadow.IotShadowClient(self.client5)
        self.client5.start()
        if not connected.wait(TIMEOUT):
            self.client5.stop()
            fail(f"MQTT 5 connect to {ARGS.host}:{ARGS.port} as {THING}: no CONNACK within {TIMEOUT:g} s")
        if failure:
            self.client5.stop()
            fail(f"MQTT 5 connect to {ARGS.host}:{ARGS.port} as {THING}: {failure[0]!r}")
        say("connected (MQTT 5)")

    def close(self):
        if self.client5 is not None:
            self.client5.stop()
            if not self.stopped5.wait(TIMEOUT):
                fail("MQTT 5 client did not stop")
        else:
            try:
                self.connection.disconnect().result(TIMEOUT)
            except Exception as e:  # noqa: BLE001
                fail(f"MQTT 3.1.1 disconnect: {e!r}")

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, shadow, suffix, method, request):
        """Subscribes with one of IotShadowClient's subscribe_to_* methods; what the SDK parses
        from each message on the topic lands in inbox[(shadow, suffix)]."""
        q = self.inbox.setdefault((shadow, suffix), queue.Queue())
        topic = f"{prefix(shadow)}/{suffix}"
        try:
            future, sub_topic = method(request, QOS1, q.put)
        except Exception as e:  # noqa: BLE001
            fail(f"subscribe to {topic}: {e!r}")
        if sub_topic != topic:
            fail(f"the SDK subscribed to {sub_topic}, expected {topic}")
        try:
            granted = future.result(TIMEOUT)
        except Exception as e:  # noqa: BLE001 - a refused SUBACK is an exception
            fail(f"subscribe to {topic}: {e!r}")
        say(f"subscribed {topic} (granted {granted})")

    def subscribe_all(self):
        s = self.shadow
        classic = [
            ("get/accepted", s.subscribe_to_get_shadow_accepted, iotshadow.GetShadowSubscriptionRequest),
            ("get/rejected", s.subscribe_to_get_shadow_rejected, iotshadow.GetShadowSubscriptionRequest),
            ("update/accepted", s.subscribe_to_update_shadow_accepted, iotshadow.UpdateShadowSubscriptionRequest),
            ("update/rejected", s.subscribe_to_update_shadow_rejected, iotshadow.UpdateShadowSubscriptionRequest),
            (
                "update/delta",
                s.subscribe_to_shadow_delta_updated_events,
                iotshadow.ShadowDeltaUpdatedSubscriptionRequest,
            ),
            ("delete/accepted", s.subscribe_to_delete_shadow_accepted, iotshadow.DeleteShadowSubscriptionRequest),
            ("delete/rejected", s.subscribe_to_delete_shadow_rejected, iotshadow.DeleteShadowSubscriptionRequest),
        ]
        for suffix, method, request in classic:
            self.subscribe(None, suffix, method, request(thing_name=THING))
        named = [
            ("get/accepted", s.subscribe_to_get_named_shadow_accepted, iotshadow.GetNamedShadowSubscriptionRequest),
            ("get/rejected", s.subscribe_to_get_named_shadow_rejected, iotshadow.GetNamedShadowSubscriptionRequest),
            (
                "update/accepted",
                s.subscribe_to_update_named_shadow_accepted,
                iotshadow.UpdateNamedShadowSubscriptionRequest,
            ),
            (
                "update/rejected",
                s.subscribe_to_update_named_shadow_rejected,
                iotshadow.UpdateNamedShadowSubscriptionRequest,
            ),
            (
                "update/delta",
                s.subscribe_to_named_shadow_delta_updated_events,
                iotshadow.NamedShadowDeltaUpdatedSubscriptionRequest,
            ),
            (
                "delete/accepted",
                s.subscribe_to_delete_named_shadow_accepted,
                iotshadow.DeleteNamedShadowSubscriptionRequest,
            ),
            (
                "delete/rejected",
                s.subscribe_to_delete_named_shadow_rejected,
                iotshadow.DeleteNamedShadowSubscriptionRequest,
            ),
        ]
        for suffix, method, request in named:
            self.subscribe(NAMED, suffix, method, request(thing_name=THING, shadow_name=NAMED))

    # -- requests ------------------------------------------------------------------------------

    def request(self, step, shadow, operation, request):
        """Publishes a get, update or delete request (QoS 1, waits for the PUBACK) and returns
        ("accepted" | "rejected", the SDK's model of the response)."""
        s = self.shadow
        methods = {
            (False, "get"): s.publish_get_shadow,
            (False, "update"): s.publish_update_shadow,
            (False, "delete"): s.publish_delete_shadow,
            (True, "get"): s.publish_get_named_shadow,
            (True, "update"): s.publish_update_named_shadow,
            (True, "delete"): s.publish_delete_named_shadow,
        }
        topic = f"{prefix(shadow)}/{operation}"
        show("->", topic, json.dumps(request.to_payload()))
        try:
            methods[(shadow is not None, operation)](request, QOS1).result(TIMEOUT)
        except Exception as e:  # noqa: BLE001 - includes the future's TimeoutError
            fail(f"{step}: publish to {topic} not acknowledged: {e!r}")
        accepted = self.inbox[(shadow, f"{operation}/accepted")]
        rejected = self.inbox[(shadow, f"{operation}/rejected")]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for outcome, q in (("accepted", accepted), ("rejected", rejected)):
                try:
                    response = q.get_nowait()
                except queue.Empty:
                    continue
                if response is None:
                    fail(f"{step}: the SDK could not parse the document on {topic}/{outcome} (printed above)")
                if getattr(response, "client_token", None) != request.client_token:
                    fail(
                        f"{step}: {topic}/{outcome} has clientToken {response.client_token!r}, "
                        f"expected {request.client_token!r} echoed"
                    )
                return outcome, response
            time.sleep(0.01)
        fail(
            f"{step}: no response on {topic}/accepted or {topic}/rejected within {TIMEOUT:g} s "
            "(does the server run the Device Shadow service?)"
        )

    def delta(self, step, shadow):
        """The next event on update/delta."""
        topic = f"{prefix(shadow)}/update/delta"
        try:
            event = self.inbox[(shadow, "update/delta")].get(timeout=TIMEOUT)
        except queue.Empty:
            fail(f"{step}: no event on {topic} within {TIMEOUT:g} s")
        if event is None:
            fail(f"{step}: the SDK could not parse the document on {topic} (printed above)")
        return event

    def no_delta(self, step, shadow, wait=0.3):
        """Nothing (more) arrives on update/delta of `shadow`."""
        time.sleep(wait)
        try:
            event = self.inbox[(shadow, "update/delta")].get_nowait()
        except queue.Empty:
            return
        fail(f"{step}: unexpected event on {prefix(shadow)}/update/delta: {event!r}")


def token():
    return str(uuid.uuid4())


def expect(step, what, got, want):
    if got != want:
        fail(f"{step}: {what} is {got!r}, expected {want!r}")


def expect_outcome(step, outcome, response, want):
    if outcome != want:
        fail(f"{step}: {outcome} ({response!r}), expected {want}")


def expect_timestamp(step, where, metadata, key):
    """metadata.<where>.<key>.timestamp is a number (the SDK keeps metadata sections as dicts)."""
    section = getattr(metadata, where, None) if metadata is not None else None
    stamp = (section or {}).get(key, {})
    if not isinstance(stamp, dict) or not isinstance(stamp.get("timestamp"), int):
        fail(f"{step}: no metadata.{where}.{key}.timestamp in the response (metadata: {metadata!r})")


def get(session, step, shadow):
    if shadow is None:
        request = iotshadow.GetShadowRequest(thing_name=THING, client_token=token())
    else:
        request = iotshadow.GetNamedShadowRequest(thing_name=THING, shadow_name=shadow, client_token=token())
    return session.request(step, shadow, "get", request)


def update(session, step, shadow, state, version=None):
    if shadow is None:
        request = iotshadow.UpdateShadowRequest(thing_name=THING, state=state, client_token=token(), version=version)
    else:
        request = iotshadow.UpdateNamedShadowRequest(
            thing_name=THING, shadow_name=shadow, state=state, client_token=token(), version=version
        )
    return session.request(step, shadow, "update", request)


def delete(session, step, shadow):
    if shadow is None:
        request = iotshadow.DeleteShadowRequest(thing_name=THING, client_token=token())
    else:
        request = iotshadow.DeleteNamedShadowRequest(thing_name=THING, shadow_name=shadow, client_token=token())
    return session.request(step, shadow, "delete", request)


def expect_not_found(step, outcome, response):
    expect_outcome(step, outcome, response, "rejected")
    expect(step, "the error code", response.code, 404)


def first_version(step, version, deleted):
    """The version of a shadow's first document: 1 for a new shadow; after a delete, AWS IoT
    continues from the deleted document's version (it is not reset to 0)."""
    if not isinstance(version, int):
        fail(f"{step}: version {version!r} is not an integer")
    if deleted is None and version != 1:
        fail(
            f"{step}: version {version}, expected 1 for a new shadow (a shadow deleted in the "
            "last 48 hours continues its version: run against a fresh server)"
        )
    if deleted is not None and version <= deleted:
        fail(f"{step}: version {version}, but the shadow was deleted at version {deleted} (not reset to 0)")


def scenario(session, deleted):
    """Steps b to h; `deleted` holds the versions at which a previous run deleted the classic and
    the named shadow (None: never deleted). Returns the versions at which this run deleted them."""
    reported = {"temp": 20, "mode": "eco"}
    desired = {"mode": "boost", "temp": 20}

    step = "b (get a shadow that does not exist)"
    expect_not_found(step, *get(session, step, None))

    step = "c (update reported)"
    outcome, r = update(session, step, None, iotshadow.ShadowState(reported=reported))
    expect_outcome(step, outcome, r, "accepted")
    first_version(step, r.version, deleted[0])
    v1 = r.version
    expect(step, "state.reported", r.state.reported if r.state else None, reported)
    expect_timestamp(step, "reported", r.metadata, "temp")

    step = "d (update desired)"
    outcome, r = update(session, step, None, iotshadow.ShadowState(desired=desired))
    expect_outcome(step, outcome, r, "accepted")
    expect(step, "version", r.version, v1 + 1)
    expect(step, "state.desired", r.state.desired if r.state else None, desired)
    expect_timestamp(step, "desired", r.metadata, "mode")
    event = session.delta(step, None)
    expect(step, "the delta's state", event.state, {"mode": "boost"})
    expect(step, "the delta's version", event.version, v1 + 1)
    if not isinstance((event.metadata or {}).get("mode"), dict):
        fail(f"{step}: no metadata.mode in the delta (metadata: {event.metadata!r})")

    step = "e (get)"
    outcome, r = get(session, step, None)
    expect_outcome(step, outcome, r, "accepted")
    expect(step, "version", r.version, v1 + 1)
    expect(step, "state.desired", r.state.desired, desired)
    expect(step, "state.reported", r.state.reported, reported)
    expect(step, "state.delta", r.state.delta, {"mode": "boost"})
    expect_timestamp(step, "reported", r.metadata, "temp")
    expect_timestamp(step, "desired", r.metadata, "mode")

    step = "f (update with a stale version)"
    outcome, r = update(session, step, None, iotshadow.ShadowState(desired={"mode": "eco"}), version=v1)
    expect_outcome(step, outcome, r, "rejected")
    expect(step, "the error code", r.code, 409)
    expect(step, "the error message", r.message, "Version conflict")
    session.no_delta(step, None)

    step = f"g (named shadow {NAMED!r})"
    expect_not_found(step + " get before update", *get(session, step, NAMED))
    outcome, r = update(
        session, step, NAMED, iotshadow.ShadowState(reported={"interval": 30}, desired={"interval": 60})
    )
    expect_outcome(step, outcome, r, "accepted")
    first_version(step, r.version, deleted[1])
    n1 = r.version
    expect_timestamp(step, "reported", r.metadata, "interval")
    event = session.delta(step, NAMED)
    expect(step, "the delta's state", event.state, {"interval": 60})
    expect(step, "the delta's version", event.version, n1)
    outcome, r = get(session, step, NAMED)
    expect_outcome(step, outcome, r, "accepted")
    expect(step, "version", r.version, n1)
    expect(step, "state.reported", r.state.reported, {"interval": 30})
    expect(step, "state.desired", r.state.desired, {"interval": 60})
    expect(step, "state.delta", r.state.delta, {"interval": 60})
    # The named shadow's delta went to its own topic only.
    session.no_delta(step, None, wait=0)

    step = "h (delete)"
    outcome, r = delete(session, step, None)
    expect_outcome(step, outcome, r, "accepted")
    if not isinstance(r.version, int) or r.version < v1 + 1:
        fail(f"{step}: delete/accepted version {r.version!r}, expected the deleted document's (>= {v1 + 1})")
    deleted_classic = r.version
    expect_not_found(step + " then get", *get(session, step, None))
    outcome, r = delete(session, step + " named", NAMED)
    expect_outcome(step + " named", outcome, r, "accepted")
    if not isinstance(r.version, int) or r.version < n1:
        fail(f"{step} named: delete/accepted version {r.version!r}, expected >= {n1}")
    deleted_named = r.version
    expect_not_found(step + " named then get", *get(session, step, NAMED))
    session.no_delta(step, None, wait=0)
    session.no_delta(step, NAMED, wait=0)
    return deleted_classic, deleted_named


def main():
    protocols = ["3.1.1", "5"] if ARGS.protocol == "both" else [ARGS.protocol]
    deleted = (None, None)
    for i, protocol in enumerate(protocols):
        if i:
            # AWS IoT's default: one CONNECT per second per client ID.
            time.sleep(1.1)
        run_start = time.monotonic()
        say(f"== MQTT {protocol}: thing {THING}, named shadow {NAMED!r}")
        session = Session(protocol)
        session.subscribe_all()
        deleted = scenario(session, deleted)
        session.close()
        say(f"== MQTT {protocol}: every step passed in {time.monotonic() - run_start:.2f} s")
    say(f"shadow ok ({', '.join(protocols)}) in {elapsed()}")


main()
