#!/usr/bin/env python3
"""Generates crates/thingkit-api/tests/sigv4_vectors.json: requests signed by botocore.

Each request is built the way botocore builds a REST-JSON call (query string percent-encoded
into the URL with `percent_encode_sequence`, path segments percent-encoded by the serializer),
signed by botocore's own `SigV4Auth` at a fixed time, and recorded as the server receives it:
method, raw path, raw query, lower-case headers, body. The Rust test
(`tests/sigv4_vectors.rs`) verifies every one with `thingkit_api::sigv4::verify`.

Run from the repository root:  python3 crates/thingkit-api/tests/sigv4/make_vectors.py
"""

import datetime
import json
import pathlib
from unittest import mock
from urllib.parse import quote, urlsplit

import botocore
from botocore.auth import SigV4Auth, _host_from_url
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime.datetime(2015, 8, 30, 12, 36, 0)
HOST = "iot.us-east-1.amazonaws.com"
# The AWS SigV4 test suite's own cases use this host; their published signatures are checked.
SUITE_HOST = "example.amazonaws.com"
PUBLISHED = {
    "get-vanilla": "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "get-vanilla-query-order-key-case": "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    "post-vanilla": "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
}


def seg(name):
    """A path segment as botocore's REST serializer encodes a label."""
    return quote(name, safe="-_.~")


CASES = [
    # (name, method, path, query pairs, extra headers, body, region, service)
    ("get-vanilla", "GET", "/", [], {}, b"", "us-east-1", "service"),
    ("get-vanilla-query-order-key-case", "GET", "/", [("Param2", "value2"), ("Param1", "value1")], {}, b"", "us-east-1", "service"),
    ("post-vanilla", "POST", "/", [], {}, b"", "us-east-1", "service"),
    ("describe-thing", "GET", "/things/" + seg("sensor-1"), [], {}, b"", "us-east-1", "iot"),
    ("describe-thing-colon", "GET", "/things/" + seg("my:thing"), [], {}, b"", "us-east-1", "iot"),
    ("path-encoded-slash", "GET", "/things/" + seg("a/b"), [], {}, b"", "us-east-1", "iot"),
    ("path-space", "GET", "/things/" + seg("a b"), [], {}, b"", "us-east-1", "iot"),
    ("path-unicode", "GET", "/things/" + seg("température-ü-東京"), [], {}, b"", "us-east-1", "iot"),
    ("path-dot-segments", "GET", "/things/./a/../b", [], {}, b"", "us-east-1", "iot"),
    ("path-double-slash", "GET", "//things//b", [], {}, b"", "us-east-1", "iot"),
    ("query-repeated-keys", "GET", "/things", [("attributeName", "b"), ("attributeName", "a"), ("maxResults", "10")], {}, b"", "us-east-1", "iot"),
    ("query-unicode", "GET", "/things", [("attributeValue", "é東"), ("thingTypeName", "t")], {}, b"", "us-east-1", "iot"),
    ("query-space", "GET", "/things", [("attributeValue", "a b  c")], {}, b"", "us-east-1", "iot"),
    ("query-plus", "GET", "/things", [("attributeValue", "a+b=c&d")], {}, b"", "us-east-1", "iot"),
    ("query-empty-value", "GET", "/things", [("nextToken", ""), ("a", "1")], {}, b"", "us-east-1", "iot"),
    ("query-reserved", "GET", "/things", [("k~-_.", "!*'();:@&=+$,/?#[]")], {}, b"", "us-east-1", "iot"),
    ("header-multiple-spaces", "GET", "/things", [], {"My-Header1": "   value1   a    b   "}, b"", "us-east-1", "iot"),
    ("header-tab", "GET", "/things", [], {"X-Custom": "a\tb \t c"}, b"", "us-east-1", "iot"),
    ("empty-body-post", "POST", "/things/" + seg("t1"), [], {"Content-Type": "application/json"}, b"", "us-east-1", "iot"),
    ("json-body", "POST", "/things/" + seg("t1"), [], {"Content-Type": "application/json"}, json.dumps({"thingTypeName": "sensor", "attributePayload": {"attributes": {"a": "é"}}}, ensure_ascii=False).encode(), "us-east-1", "iot"),
    ("json-body-patch", "PATCH", "/things/" + seg("t1"), [], {"Content-Type": "application/x-amz-json-1.1"}, b'{"removeThingType": true}', "eu-west-1", "iot"),
    ("delete-with-query", "DELETE", "/things/" + seg("t1"), [("expectedVersion", "3")], {}, b"", "us-east-1", "iot"),
    ("data-publish", "POST", "/topics/" + seg("dt/a/b"), [("qos", "1"), ("retain", "true")], {"Content-Type": "application/octet-stream"}, bytes(range(256)), "us-east-1", "iotdata"),
    ("content-sha256", "PUT", "/policies/" + seg("p1"), [], {}, b"{\"policyDocument\": \"{}\"}", "us-east-1", "iot"),
]


def sign(name, method, path, query, headers, body, region, service):
    host = SUITE_HOST if service == "service" else HOST
    url = f"https://{host}{path}"
    if query:
        url += "?" + percent_encode_sequence(query)
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    if name == "content-sha256":
        import hashlib

        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        SigV4Auth(Credentials(ACCESS_KEY, SECRET), service, region).add_auth(request)
    parts = urlsplit(request.url)
    wire = [(k.lower(), v) for k, v in request.headers.items()]
    if "host" not in dict(wire):
        wire.insert(0, ("host", _host_from_url(request.url)))
    signature = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    if name in PUBLISHED and signature != PUBLISHED[name]:
        raise SystemExit(f"{name}: botocore gave {signature}, the AWS suite says {PUBLISHED[name]}")
    return {
        "name": name,
        "method": method,
        "path": parts.path,
        "query": parts.query,
        "headers": wire,
        "body_hex": bytes(body).hex(),
        "region": region,
        "service": service,
        "authorization": request.headers["Authorization"],
    }


def main():
    vectors = [sign(*case) for case in CASES]
    out = pathlib.Path(__file__).resolve().parent.parent / "sigv4_vectors.json"
    doc = {
        "generator": f"botocore {botocore.__version__} SigV4Auth (tests/sigv4/make_vectors.py)",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET,
        "time": "20150830T123600Z",
        "vectors": vectors,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(vectors)} vectors to {out}")


if __name__ == "__main__":
    main()
