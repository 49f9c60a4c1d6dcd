#!/usr/bin/env python3
"""SQL answers by transport: the same query's rows as JSON and as an Arrow IPC
stream over `POST /api/v1/sql`, and as Arrow record batches over Flight SQL
through the ADBC driver, against a release server holding `spanlake load`'s
spans. Prints the median of 5 runs of each, with rows and bytes.

    python3 benches/e2e/sql_formats.py [SPANS]    (default 1000000)

Needs the test venv's Python (pyarrow, adbc_driver_flightsql: scripts/test.sh
makes it) and the release binary under $CARGO_TARGET_DIR.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa

from run import API, RUNS, Server, load_command, median_ms

FLIGHT_SQL = "127.0.0.1:35051"
QUERIES = {
    "200k spans, 6 columns": "SELECT trace_id, span_id, service_name, span_name, start_time, duration_ns "
    "FROM spans LIMIT 200000",
    "200k spans, every column": "SELECT * FROM spans LIMIT 200000",
    "an aggregate per service and span name": "SELECT service_name, span_name, count(*) AS n, avg(duration_ns) AS mean "
    "FROM spans GROUP BY 1, 2",
}


def post(sql, accept):
    request = urllib.request.Request(
        f"http://{API}/api/v1/sql",
        data=json.dumps({"sql": sql}).encode(),
        headers={"content-type": "application/json", "accept": accept},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.read()


def json_rows(sql):
    body = post(sql, "application/json")
    return len(json.loads(body)["rows"]), len(body)


def arrow_rows(sql):
    body = post(sql, "application/vnd.apache.arrow.stream")
    return pa.ipc.open_stream(body).read_all().num_rows, len(body)


def flight_rows(sql, conn):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().num_rows, None


def main():
    spans = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/spanlake-target"), "release", "spanlake")
    work = pathlib.Path("/var/tmp/spanlake-sql-formats")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = Server(binary, work / "data", "--flight-sql-addr", FLIGHT_SQL)
    subprocess.run(load_command(binary, spans), check=True, capture_output=True)
    conn = flight_sql.connect(f"grpc://{FLIGHT_SQL}")
    print(f"{spans} spans; median of {RUNS} runs, client in Python (json / pyarrow / ADBC)")
    print("| query | JSON | Arrow IPC over HTTP | Flight SQL (ADBC) |")
    print("|---|---|---|---|")
    for name, sql in QUERIES.items():
        cells = []
        for run in (lambda: json_rows(sql), lambda: arrow_rows(sql), lambda: flight_rows(sql, conn)):
            rows, size = run()
            ms = median_ms(run)
            cells.append(f"{ms:.0f} ms" + (f", {size / 2**20:.1f} MiB" if size else "") + f" ({rows} rows)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    conn.close()
    server.stop()


if __name__ == "__main__":
    main()
