"""paho-mqtt (Python) against the thingkit example broker: QoS 1, retained messages, a will.

Usage: paho_client.py HOST PORT CA DIR PROTOCOL
DIR holds sensor-a.pem/.key and sensor-b.pem/.key; PROTOCOL is 3.1.1 or 5.
Exits 0 when every check passed, 1 with the failed check on stderr. Every wait is bounded.
"""

import queue
import sys
import time

import paho.mqtt.client as mqtt

HOST, PORT, CA, DIR, PROTOCOL = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
VERSION = mqtt.MQTTv5 if PROTOCOL == "5" else mqtt.MQTTv311
TIMEOUT = 10.0


def fail(why):
    print(f"paho check failed: {why}", file=sys.stderr)
    sys.exit(1)


def client(thing, will=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing, protocol=VERSION)
    c.tls_set(ca_certs=CA, certfile=f"{DIR}/{thing}.pem", keyfile=f"{DIR}/{thing}.key")
    if will:
        c.will_set(will[0], will[1], qos=1, retain=True)
    connected = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc, props=None: connected.put(rc)
    inbox = queue.Queue()
    c.on_message = lambda cl, ud, msg: inbox.put((msg.topic, msg.payload.decode(), msg.qos, msg.retain))
    subscribed = queue.Queue()
    c.on_subscribe = lambda cl, ud, mid, rcs, props=None: subscribed.put(rcs)
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    try:
        rc = connected.get(timeout=TIMEOUT)
    except queue.Empty:
        fail(f"{thing}: no CONNACK")
    if rc != 0:
        fail(f"{thing}: CONNACK {rc}")
    return c, inbox, subscribed


def expect(inbox, topic, payload, retain=None, qos=None):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            t, p, q, r = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if t == topic and p == payload:
            if retain is not None and r != retain:
                fail(f"{topic}: retain flag {r}, expected {retain}")
            if qos is not None and q != qos:
                fail(f"{topic}: QoS {q}, expected {qos}")
            return
    fail(f"did not receive {payload!r} on {topic}")


def subscribe(c, subscribed, topic):
    c.subscribe(topic, qos=1)
    try:
        codes = subscribed.get(timeout=TIMEOUT)
    except queue.Empty:
        fail(f"no SUBACK for {topic}")
    if any(int(getattr(rc, "value", rc)) >= 0x80 for rc in codes):
        fail(f"subscription to {topic} refused: {codes}")


# B watches the fleet.
b, b_inbox, b_sub = client("sensor-b")
subscribe(b, b_sub, "status/#")
subscribe(b, b_sub, "telemetry/#")

# A connects with a will, publishes a retained status and a QoS 1 reading.
a, _, _ = client("sensor-a", will=("status/sensor-a", "offline"))
info = a.publish("status/sensor-a", "online", qos=1, retain=True)
info.wait_for_publish(timeout=TIMEOUT)
if not info.is_published():
    fail("retained status not acknowledged")
info = a.publish("telemetry/sensor-a/temperature", "23.5", qos=1)
info.wait_for_publish(timeout=TIMEOUT)
if not info.is_published():
    fail("QoS 1 reading not acknowledged (PUBACK)")
expect(b_inbox, "status/sensor-a", "online")
expect(b_inbox, "telemetry/sensor-a/temperature", "23.5", qos=1)

# A vanishes without DISCONNECT: the broker publishes its will.
a.loop_stop()
a.socket().close()
expect(b_inbox, "status/sensor-a", "offline")
b.loop_stop()
b.disconnect()

# A new subscriber gets the will as the retained status, with RETAIN set.
c, c_inbox, c_sub = client("sensor-b")
subscribe(c, c_sub, "status/sensor-a")
expect(c_inbox, "status/sensor-a", "offline", retain=True, qos=1)
c.loop_stop()
c.disconnect()
print("paho ok")
