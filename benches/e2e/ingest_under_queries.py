"""Ingest while heavy SQL runs: what a query storm costs the receivers.

Starts a fresh `spanlake serve` (the binary given), fills it with a base of
spans, then runs `spanlake load` at a fixed rate three times for the same
duration: alone; while QUERIERS threads send heavy SQL over HTTP in a loop
(cross joins and whole-table aggregations, each cut off by the server's
limits); and alone again. Prints each load report and how the queries ended.

    python benches/e2e/ingest_under_queries.py target/release/spanlake [rate] [seconds]
"""

import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BINARY = sys.argv[1]
RATE = sys.argv[2] if len(sys.argv) > 2 else "20000"
SECONDS = sys.argv[3] if len(sys.argv) > 3 else "30"
QUERIERS = 4
GRPC, OTLP_HTTP, API = "127.0.0.1:34317", "127.0.0.1:34318", "127.0.0.1:39411"
HEAVY = [
    "SELECT max(a.duration_ns + b.duration_ns) FROM spans a, spans b",
    "SELECT service_name, span_name, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) FROM spans GROUP BY 1, 2",
    "SELECT trace_id, count(*) FROM spans GROUP BY trace_id ORDER BY 2 DESC LIMIT 10",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
]


def load(spans, rate, seconds):
    command = [BINARY, "load", "--endpoint", f"http://{GRPC}", "--spans", str(spans), "--rate", rate, "--json"]
    if seconds:
        command += ["--duration", f"{seconds}s"]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def query_storm(stop, outcomes):
    while not stop.is_set():
        for sql in HEAVY:
            request = urllib.request.Request(
                f"http://{API}/api/v1/sql", data=json.dumps({"sql": sql}).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                urllib.request.urlopen(request, timeout=120).read()
                outcomes.append("answered")
            except urllib.error.HTTPError as e:
                outcomes.append(f"HTTP {e.code}")


with tempfile.TemporaryDirectory() as data:
    server = subprocess.Popen(
        [BINARY, "serve", "--data-dir", data, "--otlp-grpc-addr", GRPC, "--otlp-http-addr", OTLP_HTTP,
         "--http-addr", API, "--query-timeout", "10s"],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if urllib.request.urlopen(f"http://{API}/readyz").status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        load(500_000, "0", None)
        print(f"rate {RATE} spans/s for {SECONDS} s each, {QUERIERS} query threads in the second run")
        for name, storm in [("alone", False), ("with queries", True), ("alone again", False)]:
            stop, outcomes = threading.Event(), []
            threads = [threading.Thread(target=query_storm, args=(stop, outcomes)) for _ in range(QUERIERS if storm else 0)]
            for t in threads:
                t.start()
            report = load(10**9, RATE, SECONDS)
            stop.set()
            for t in threads:
                t.join()
            latency = report["export_latency_ms"]
            print(
                f"{name:>13}: {report['spans_per_second']:9.0f} spans/s acknowledged, "
                f"export p50 {latency['p50']:.1f} ms p99 {latency['p99']:.1f} ms max {latency['max']:.1f} ms, "
                f"refused {report['spans_refused']}, failed {report['spans_failed']}"
                + (f"; queries: {dict((o, outcomes.count(o)) for o in set(outcomes))}" if storm else "")
            )
    finally:
        server.terminate()
        server.wait()
