#!/usr/bin/env python3
"""Control-plane API latency and throughput, end to end with boto3 (issue #15).

Starts a fresh `thingkit serve` (from `thingkit init` in a temporary directory, API on an
ephemeral port), creates an access key with `thingkit access-key create`, then measures with
boto3 over HTTPS (one TLS connection kept alive, as boto3 does):

- DescribeThing latency (p50, p99) over N calls,
- AttachPolicy latency (p50, p99): attach then detach, N times (both mutate the registry,
  each a durable redb commit),
- CreateKeysAndCertificate throughput (key generation + signing + a durable commit) with 1
  and with 4 client threads,
- the same DescribeThing through a bare `requests`-free HTTPS client with botocore's signer
  (no boto3 parsing) to show how much of the latency is the client.

Usage: python3 benches/api/latency.py --bin target/release/thingkit [--calls 2000]
Prints a Markdown table for the README.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import botocore
from botocore.config import Config


def percentile(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def start_server(binary, workdir):
    subprocess.run([binary, "init", workdir], check=True, capture_output=True)
    path = os.path.join(workdir, "thingkit.toml")
    text = open(path).read()
    text = text.replace('# listen = "127.0.0.1:8883"', 'listen = "127.0.0.1:0"')
    text = text.replace('# listen = "127.0.0.1:9090"', 'listen = "127.0.0.1:0"')
    text = text.replace('# listen = "127.0.0.1:8443"', 'listen = "127.0.0.1:0"')
    text = text.replace('# level = "info"', 'level = "warn"')
    open(path, "w").write(text)
    out = subprocess.run([binary, "access-key", "create", "--config", path], check=True, capture_output=True)
    key = json.loads(out.stdout)
    proc = subprocess.Popen([binary, "serve", "--config", path], stdout=subprocess.PIPE, text=True)
    api = None
    deadline = time.time() + 30
    while api is None and time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("api listening on https://"):
            api = line.split()[3]
    if api is None:
        proc.kill()
        sys.exit("thingkit serve printed no api line")
    return proc, api, key, os.path.join(workdir, "ca", "ca.pem")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--keys", type=int, default=200)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp()
    proc, api, key, ca = start_server(os.path.abspath(args.bin), workdir)
    try:
        endpoint = "https://localhost:" + api.rsplit(":", 1)[1]
        session = boto3.session.Session(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
            region_name="eu-central-1")
        config = Config(retries={"max_attempts": 1}, max_pool_connections=8)
        iot = session.client("iot", endpoint_url=endpoint, verify=ca, config=config)
        iot.create_thing(thingName="bench-thing", attributePayload={"attributes": {"a": "1", "b": "2"}})
        keys = iot.create_keys_and_certificate(setAsActive=True)
        iot.create_policy(policyName="bench", policyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
                           "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/t/*"}]}))
        for _ in range(50):  # warm up
            iot.describe_thing(thingName="bench-thing")

        lat = []
        for _ in range(args.calls):
            t = time.perf_counter()
            iot.describe_thing(thingName="bench-thing")
            lat.append(time.perf_counter() - t)
        describe = (percentile(lat, 50), percentile(lat, 99))

        lat = []
        for _ in range(args.calls // 2):
            t = time.perf_counter()
            iot.attach_policy(policyName="bench", target=keys["certificateArn"])
            lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            iot.detach_policy(policyName="bench", target=keys["certificateArn"])
            lat.append(time.perf_counter() - t)
        attach = (percentile(lat, 50), percentile(lat, 99))

        def create(n, out):
            c = session.client("iot", endpoint_url=endpoint, verify=ca, config=config)
            for _ in range(n):
                c.create_keys_and_certificate(setAsActive=True)
            out.append(n)

        rates = {}
        for threads in (1, 4):
            done = []
            per = args.keys // threads
            ts = [threading.Thread(target=create, args=(per, done)) for _ in range(threads)]
            t = time.perf_counter()
            for th in ts:
                th.start()
            for th in ts:
                th.join()
            rates[threads] = sum(done) / (time.perf_counter() - t)

        # The client's share: sign with botocore and send with urllib3 directly, no boto3 parsing.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        import urllib3
        pool = urllib3.HTTPSConnectionPool("localhost", int(api.rsplit(":", 1)[1]), ca_certs=ca,
                                           cert_reqs="CERT_REQUIRED", maxsize=1)
        creds = session.get_credentials()
        lat = []
        for i in range(args.calls):
            req = AWSRequest(method="GET", url=endpoint + "/things/bench-thing")
            t = time.perf_counter()
            SigV4Auth(creds, "iot", "eu-central-1").add_auth(req)
            r = pool.request("GET", "/things/bench-thing", headers=dict(req.headers.items()))
            assert r.status == 200, r.data
            lat.append(time.perf_counter() - t)
        raw = (percentile(lat, 50), percentile(lat, 99))

        ms = lambda s: f"{s * 1000:.2f} ms"
        print(f"\nthingkit control-plane API, boto3 {boto3.__version__} / botocore {botocore.__version__}, "
              f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
        print("| measurement | p50 | p99 |")
        print("|---|---|---|")
        print(f"| DescribeThing (boto3) | {ms(describe[0])} | {ms(describe[1])} |")
        print(f"| DescribeThing (botocore signer + urllib3) | {ms(raw[0])} | {ms(raw[1])} |")
        print(f"| AttachPolicy / DetachPolicy (boto3; durable commit) | {ms(attach[0])} | {ms(attach[1])} |")
        print(f"\n| CreateKeysAndCertificate | certificates/s |\n|---|---|")
        for threads, rate in rates.items():
            print(f"| {threads} client thread{'s' if threads > 1 else ''} | {rate:.0f} |")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
