#!/usr/bin/env python3
"""The version and retry analyses (issue 19) over the benchmark's spans.

Ingests `--spans` spans of the demo shop's topology with `spanlake load`
(or reuses `--data-dir` from an earlier run), compacts, then times the
analysis endpoints over the whole data window, medians of 5 runs after a
warm-up, and DuckDB on spanlake's own Parquet files answering the same
questions where plain SQL can: who calls a version (the parent join), the
client-minus-server time per edge, and the rank sums behind the
Mann-Whitney test.

    python3 benches/e2e/analysis.py --binary target/release/spanlake --spans 10000000
"""

import argparse
import json
import pathlib
import shutil

from run import API, Server, compact, duckdb_over, http, ingest, live_files, log, machine, median_ms

ENDPOINTS = {
    "versions of checkout": "/api/v1/versions?service=checkout&{window}",
    "canary verdict (checkout 1.5.0-rc.1 against 1.4.2)":
        "/api/v1/versions/compare?service=checkout&baseline=1.4.2&candidate=1.5.0-rc.1&{window}",
    "callers of product-catalog 1.7.3": "/api/v1/versions/callers?service=product-catalog&version=1.7.3&{window}",
    "callees of frontend 2.2.0": "/api/v1/versions/callees?service=frontend&version=2.2.0&{window}",
    "retries, all edges": "/api/v1/retries?{window}",
    "retries of checkout": "/api/v1/retries?service=checkout&{window}",
    "dependency graph with hop costs": "/api/v1/dependencies?{window}",
    "dependency graph by version": "/api/v1/dependencies?groupBy=service.version&{window}",
}

# The same questions in DuckDB over the same files (spanlake's SQL in the
# comments of each is its table function or endpoint).
DUCKDB = {
    "callers of product-catalog 1.7.3": """
        SELECT c.service_name, c.service_version, count(*) AS calls
        FROM spans s JOIN spans c ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
        WHERE s.service_name = 'product-catalog' AND s.service_version = '1.7.3'
          AND s.span_kind IN ('SERVER', 'CONSUMER') AND c.service_name <> s.service_name
        GROUP BY 1, 2""",
    "hop cost (client − server p50 per edge)": """
        SELECT c.service_name, s.service_name, count(*), quantile_cont(c.duration_ns - s.duration_ns, 0.5)
        FROM spans s JOIN spans c ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
        WHERE s.span_kind = 'SERVER' AND c.span_kind = 'CLIENT' AND c.service_name <> s.service_name
        GROUP BY 1, 2""",
    "rank sums per operation (checkout canary)": """
        WITH s AS (SELECT span_name AS op, duration_ns AS d, service_version = '1.5.0-rc.1' AS cand
                   FROM spans WHERE service_name = 'checkout' AND span_kind IN ('SERVER', 'CONSUMER')
                     AND service_version IN ('1.4.2', '1.5.0-rc.1')),
             r AS (SELECT op, cand, rank() OVER (PARTITION BY op ORDER BY d) AS rk,
                          count(*) OVER (PARTITION BY op, d) AS t FROM s)
        SELECT op, sum(CASE WHEN cand THEN rk + (t - 1) / 2.0 END), sum(t * t * t - t) FROM r GROUP BY op""",
}

SPANLAKE_SQL = {
    "callers of product-catalog 1.7.3 (table function)":
        "SELECT * FROM version_callers('product-catalog', '1.7.3', {start}, {end})",
    "canary verdict (table function)":
        "SELECT * FROM version_compare('checkout', '1.4.2', '1.5.0-rc.1', {start}, {end})",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--work-dir", default="/var/tmp/spanlake-bench-analysis")
    parser.add_argument("--data-dir", help="reuse the data an earlier run left here; no ingest")
    args = parser.parse_args()

    if args.data_dir:
        data_dir = pathlib.Path(args.data_dir)
    else:
        work = pathlib.Path(args.work_dir)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        data_dir = work / "data"
        log(f"ingesting {args.spans} spans ...")
        log(json.dumps(ingest(args.binary, data_dir, args.spans, [])))
        compact(args.binary, data_dir).stop()
    # Timed with upkeep held off: eager compaction deletes files at once,
    # under a query that planned on them.
    server = Server(args.binary, data_dir, "--compaction-interval", "1h")

    spans, first, last = server.sql(
        "SELECT count(*), CAST(min(start_time) AS BIGINT), CAST(max(start_time) AS BIGINT) FROM spans")[0]
    start_ms, end_ms = first // 1_000_000, last // 1_000_000 + 1
    window = f"start={start_ms}&end={end_ms}"
    results = {"machine": machine(), "spans": spans, "api_ms": {}, "spanlake_sql_ms": {}, "duckdb_ms": {}}
    for name, path in ENDPOINTS.items():
        url = f"http://{API}{path.format(window=window)}"
        log(f"api: {name}")
        results["api_ms"][name] = median_ms(lambda: http("GET", url))
    for name, sql in SPANLAKE_SQL.items():
        sql = sql.format(start=f"'{start_ms}'", end=f"'{end_ms}'")
        log(f"spanlake sql: {name}")
        results["spanlake_sql_ms"][name] = median_ms(lambda: server.sql(sql))
    duck = duckdb_over(live_files(data_dir, "spans"))
    for name, sql in DUCKDB.items():
        log(f"duckdb: {name}")
        results["duckdb_ms"][name] = median_ms(lambda: duck.execute(sql).fetchall())
    results["peak_rss_mib"] = server.memory_mib()
    server.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
