#!/usr/bin/env python3
"""Self-test of hot_readings.py on small hand-made files: agreement exits 0, every kind of
difference exits 1 and is named, a device's lines from several windows add up, a missing input
is an error.

    python3 examples/spark/test_hot_readings.py

Writes a CSV, a Parquet directory partitioned by date=YYYY-MM-DD (written by Spark itself, with
the quick start's column types: device_id string, temperature double, timestamp long) and JSON
lines under a temporary directory, then runs the job as a user would, in a subprocess.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "hot_readings.py")

# (device_id, temperature, timestamp): 25.0 is not above 25; sensor-03 is never hot; two days.
ROWS = [
    ("sensor-01", 26.5, 1764115200),
    ("sensor-01", 25.0, 1764115260),
    ("sensor-01", 30.1, 1764201600),
    ("sensor-02", 25.1, 1764115200),
    ("sensor-02", 24.9, 1764115260),
    ("sensor-03", 20.0, 1764115200),
    ("sensor-03", 25.0, 1764201660),
]
EXPECTED = {"sensor-01": 2, "sensor-02": 1}


def write_fixtures(root):
    csv = os.path.join(root, "iot_data.csv")
    with open(csv, "w", encoding="utf-8") as f:
        f.write("device_id,temperature,timestamp\n")
        for d, t, ts in ROWS:
            f.write(f"{d},{t},{ts}\n")
    parquet = os.path.join(root, "telemetry")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    schema = StructType(
        [
            StructField("device_id", StringType(), False),
            StructField("temperature", DoubleType(), False),
            StructField("timestamp", LongType(), False),
        ]
    )
    df = spark.createDataFrame(ROWS, schema)
    df = df.withColumn("date", df.timestamp.cast("timestamp").cast("date").cast("string"))
    df.write.partitionBy("date").parquet(parquet)
    spark.stop()
    days = sorted(os.listdir(parquet))
    assert [d for d in days if d.startswith("date=")] == ["date=2025-11-26", "date=2025-11-27"], days
    return csv, parquet


def write_jsonl(path, answer):
    with open(path, "w", encoding="utf-8") as f:
        for device, hot in answer.items():
            f.write(json.dumps({"device_id": device, "hot": hot}) + "\n")


def run(*args):
    p = subprocess.run(
        [sys.executable, JOB, *args], capture_output=True, text=True, timeout=600
    )
    return p.returncode, p.stdout, p.stderr


def main():
    failures = []

    def check(ok, what, out=""):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)
            print(out)

    with tempfile.TemporaryDirectory() as root:
        csv, parquet = write_fixtures(root)
        good = os.path.join(root, "good.jsonl")
        write_jsonl(good, EXPECTED)
        code, out, err = run("--csv", csv, "--parquet", parquet, "--expected", good)
        check(
            code == 0
            and "csv: 2 devices with readings above 25 °C, 3 such readings" in out
            and "parquet: 2 devices" in out
            and "csv query:" in out
            and "parquet query:" in out
            and "OK: csv and parquet agree with the windowed rule" in out,
            "agreeing answers exit 0 and print counts and query times",
            out + err,
        )

        bad = os.path.join(root, "bad.jsonl")
        write_jsonl(bad, {"sensor-01": 3, "sensor-03": 1})
        code, out, err = run("--csv", csv, "--parquet", parquet, "--expected", bad)
        check(
            code == 1
            and "csv: device sensor-01 has 2, the windowed rule has 3" in err
            and "csv: device sensor-02 missing" not in err
            and "csv: device sensor-02 has 1, absent from the windowed rule" in err
            and "csv: device sensor-03 missing (the windowed rule has 1)" in err
            and "parquet: device sensor-01 has 2, the windowed rule has 3" in err,
            "differences exit 1 and name each device, for CSV and Parquet",
            out + err,
        )

        code, out, err = run("--csv", csv, "--parquet", parquet)
        check(
            code == 0 and "OK: csv and parquet agree with each other" in out,
            "without --expected, CSV and Parquet are compared with each other",
            out + err,
        )

        code, out, err = run("--csv", os.path.join(root, "absent.csv"), "--expected", good)
        check(code != 0, "a missing input file fails", out + err)

        windows = os.path.join(root, "windows.jsonl")
        with open(windows, "w", encoding="utf-8") as f:
            # sensor-01 in two one-day windows (1 + 1), sensor-02 in one.
            f.write('{"device_id": "sensor-01", "hot": 1}\n')
            f.write('{"device_id": "sensor-02", "hot": 1}\n')
            f.write('{"device_id": "sensor-01", "hot": 1}\n')
        code, out, err = run("--csv", csv, "--parquet", parquet, "--expected", windows)
        check(
            code == 0 and "OK: csv and parquet agree with the windowed rule" in out,
            "a device's lines from several windows are added up",
            out + err,
        )

        malformed = os.path.join(root, "malformed.jsonl")
        with open(malformed, "w", encoding="utf-8") as f:
            f.write('{"device": "sensor-01"}\n')
        code, out, err = run("--csv", csv, "--expected", malformed)
        check(
            code != 0 and "malformed.jsonl:1" in (out + err),
            "a malformed expected line is named by file and line",
            out + err,
        )

    print(f"{6 - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
