#!/usr/bin/env python3
"""The reference analytics job: readings above 25 °C per device, in Spark.

It reads the telemetry the quick start wrote through the rules engine's sinks, once as CSV and
once as Parquet, and runs the same query on each:

    df.filter(df.temperature > 25).groupBy("device_id").count()

With --expected it compares both answers with the windowed rule's answer (JSON lines of
{"device_id": ..., "hot": N}; devices with no hot reading absent) and exits 1 naming every
difference. It prints the counts and the wall time of Spark's start and of each query.

Runs with plain `python3 examples/spark/hot_readings.py ...` (Spark in local mode, started by
pyspark) and with `spark-submit examples/spark/hot_readings.py ...` on a cluster; see README.md.
"""

import argparse
import json
import os
import sys
import time

THRESHOLD = 25


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Readings above 25 °C per device, from CSV and Parquet, "
        "checked against the thingkit windowed rule's answer."
    )
    p.add_argument("--csv", help="the CSV file (header device_id,temperature,timestamp)")
    p.add_argument(
        "--parquet",
        help="the Parquet directory (for example <out>/telemetry, partitioned date=YYYY-MM-DD)",
    )
    p.add_argument(
        "--expected",
        help='JSON lines {"device_id": "...", "hot": N}: the windowed rule\'s answer',
    )
    p.add_argument(
        "--master",
        help="Spark master URL (default: the one spark-submit was given, else local[*])",
    )
    p.add_argument(
        "--show",
        type=int,
        default=50,
        help="print at most this many devices per answer (default 50; the comparison is always whole)",
    )
    args = p.parse_args(argv)
    if not args.csv and not args.parquet:
        p.error("give --csv, --parquet or both")
    return args


def read_expected(path):
    """The windowed rule's answer as {device_id: hot}; a malformed line is an error naming it.

    A device may have one line per window (a run that crosses a window's end, such as UTC
    midnight for a one-day window): its lines are added up, since the batch query counts over
    all time. A device counted twice by mistake then shows as a count above Spark's.
    """
    expected = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
                device, hot = obj["device_id"], obj["hot"]
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}:{number}: not a {{\"device_id\", \"hot\"}} object: {e}")
            if not isinstance(device, str) or not isinstance(hot, int) or isinstance(hot, bool):
                raise SystemExit(f"{path}:{number}: device_id must be a string and hot an integer")
            expected[device] = expected.get(device, 0) + hot
    return expected


def hot_per_device(df):
    """The reference query. Device IDs are compared as strings whatever type Spark inferred."""
    rows = df.filter(df.temperature > THRESHOLD).groupBy("device_id").count().collect()
    return {str(r["device_id"]): int(r["count"]) for r in rows}


def differences(name, got, expected_name, expected):
    """Every device on which `got` and `expected` disagree, one line each."""
    out = []
    for device in sorted(set(got) | set(expected)):
        g, e = got.get(device), expected.get(device)
        if g == e:
            continue
        if g is None:
            out.append(f"{name}: device {device} missing ({expected_name} has {e})")
        elif e is None:
            out.append(f"{name}: device {device} has {g}, absent from {expected_name}")
        else:
            out.append(f"{name}: device {device} has {g}, {expected_name} has {e}")
    return out


def show(name, answer, limit):
    total = sum(answer.values())
    print(f"{name}: {len(answer)} devices with readings above {THRESHOLD} °C, {total} such readings")
    for device in sorted(answer)[:limit]:
        print(f"  {device}: {answer[device]}")
    if len(answer) > limit:
        print(f"  ... and {len(answer) - limit} more devices")


def main(argv):
    args = parse_args(argv)
    expected = read_expected(args.expected) if args.expected else None

    # Started by plain python3 (not by spark-submit, which sets PYSPARK_GATEWAY_PORT) in local
    # mode, Spark binds to loopback rather than the machine's first interface.
    local = args.master is None or args.master.startswith("local")
    if local and "PYSPARK_GATEWAY_PORT" not in os.environ:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    try:
        from pyspark.sql import SparkSession
    except ImportError:
        print(
            "pyspark is not installed: python3 -m pip install pyspark (needs Java 17 or later)",
            file=sys.stderr,
        )
        return 1

    started = time.perf_counter()
    builder = SparkSession.builder.appName("thingkit-hot-readings").config(
        "spark.ui.showConsoleProgress", "false"
    )
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - started
    print(
        f"spark {spark.version}, master {spark.sparkContext.master}: "
        f"started in {startup:.2f} s"
    )

    answers = {}
    try:
        if args.csv:
            t = time.perf_counter()
            df = spark.read.csv(args.csv, header=True, inferSchema=True)
            answers["csv"] = hot_per_device(df)
            print(f"csv query: {time.perf_counter() - t:.2f} s ({args.csv})")
        if args.parquet:
            t = time.perf_counter()
            df = spark.read.parquet(args.parquet)
            answers["parquet"] = hot_per_device(df)
            print(f"parquet query: {time.perf_counter() - t:.2f} s ({args.parquet})")
    finally:
        spark.stop()

    for name, answer in answers.items():
        show(name, answer, args.show)

    problems = []
    if expected is not None:
        show("expected (the windowed rule)", expected, args.show)
        for name, answer in answers.items():
            problems += differences(name, answer, "the windowed rule", expected)
    elif len(answers) == 2:
        problems += differences("csv", answers["csv"], "parquet", answers["parquet"])

    if problems:
        print(f"MISMATCH: {len(problems)} difference(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    against = "the windowed rule" if expected is not None else "each other"
    if expected is not None or len(answers) == 2:
        print(f"OK: {' and '.join(answers)} agree with {against}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
