#!/usr/bin/env python3
"""End-to-end benchmark of spanlake, run by benches/e2e.sh.

1. Ingest: a release `spanlake serve` with default settings takes `spanlake
   load` flat out over OTLP/gRPC; reports spans/s, the server's CPU-seconds
   per million spans (/proc), its peak RSS, and the decode + encode limit of
   the same spans on one core.
2. Compaction: the server restarts with eager compaction until every hour is
   compacted; reports bytes per span on disk.
3. Queries: medians of repeated runs through spanlake's HTTP API, DuckDB on
   spanlake's own Parquet files, and chdb (embedded ClickHouse) with the same
   spans in a SigNoz-like MergeTree table; printed with ratios.
4. API: medians of spanlake's own endpoints (search, dependency graph,
   latency, autocomplete) over the whole data set; `--api-only` skips 3.
"""

import argparse
import atexit
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

GRPC, OTLP_HTTP, API = "127.0.0.1:34317", "127.0.0.1:34318", "127.0.0.1:39411"
RUNS = 5

# The analytic queries users run most, per engine dialect. DuckDB reads
# spanlake's files as they are; chdb's table has SigNoz-like columns.
QUERIES = {
    "spans per service": {
        "spanlake": "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY n DESC",
        "duckdb": "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY n DESC",
        "chdb": "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY n DESC",
    },
    "error rate per operation": {
        "spanlake": "SELECT service_name, span_name, avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS r "
        "FROM spans GROUP BY service_name, span_name ORDER BY r DESC",
        "duckdb": "SELECT service_name, span_name, avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS r "
        "FROM spans GROUP BY service_name, span_name ORDER BY r DESC",
        "chdb": "SELECT service_name, span_name, avg(has_error) AS r FROM spans GROUP BY service_name, span_name "
        "ORDER BY r DESC",
    },
    "p99 per operation": {
        "spanlake": "SELECT service_name, span_name, approx_percentile_cont(duration_ns, 0.99) AS p99 "
        "FROM spans GROUP BY service_name, span_name ORDER BY p99 DESC",
        "duckdb": "SELECT service_name, span_name, approx_quantile(duration_ns, 0.99) AS p99 "
        "FROM spans GROUP BY service_name, span_name ORDER BY p99 DESC",
        "chdb": "SELECT service_name, span_name, quantile(0.99)(duration_ns) AS p99 "
        "FROM spans GROUP BY service_name, span_name ORDER BY p99 DESC",
    },
    "top-10 slowest traces": {
        "spanlake": "SELECT trace_id, service_name, span_name, duration_ns FROM spans "
        "WHERE parent_span_id IS NULL ORDER BY duration_ns DESC LIMIT 10",
        "duckdb": "SELECT trace_id, service_name, span_name, duration_ns FROM spans "
        "WHERE parent_span_id IS NULL ORDER BY duration_ns DESC LIMIT 10",
        "chdb": "SELECT trace_id, service_name, span_name, duration_ns FROM spans "
        "WHERE parent_span_id = '' ORDER BY duration_ns DESC LIMIT 10",
    },
}


def log(message):
    print(message, file=sys.stderr, flush=True)


class HttpStatus(Exception):
    """A 4xx or 5xx answer, with the server's message."""

    def __init__(self, code, message):
        super().__init__(f"HTTP {code}: {message[:200]}")


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        raise HttpStatus(error.code, error.read().decode(errors="replace")) from None


def cpu_seconds(pid):
    """User and system CPU seconds of a process so far."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid, field="VmHWM"):
    """A /proc/PID/status memory field: VmHWM is the peak RSS, VmRSS the current one."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, binary, data_dir, *flags):
        try:
            http("GET", f"http://{API}/readyz")
            sys.exit(f"something already listens on {API}: stop it first")
        except (urllib.error.URLError, ConnectionError):
            pass
        self.log_path = pathlib.Path(data_dir).with_suffix(".log")
        self.log_file = open(self.log_path, "ab")
        addrs = ["--otlp-grpc-addr", GRPC, "--otlp-http-addr", OTLP_HTTP, "--http-addr", API]
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", str(data_dir), *addrs, *flags],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        atexit.register(self.kill)
        deadline = time.time() + 600
        while True:
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"spanlake did not start, see {self.log_path}")
            try:
                if http("GET", f"http://{API}/readyz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def memory_mib(self, field="VmHWM"):
        return memory_mib(self.proc.pid, field)

    def metric(self, name):
        text = http("GET", f"http://{API}/metrics")[1].decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name)] in " {"
        )

    def sql(self, sql):
        body = json.dumps({"sql": sql}).encode()
        status, answer = http("POST", f"http://{API}/api/v1/sql", body, {"content-type": "application/json"})
        return json.loads(answer)["rows"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)
        self.log_file.close()


def median_ms(run, runs=RUNS):
    run()  # warm-up: caches, metadata
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def load_command(binary, spans, protocol="grpc"):
    """`spanlake load` flat out at the benchmark's server, over `protocol`
    (`grpc`, `http` or `http-json`)."""
    # Every request different, up to ~1 GiB of them: repeated spans compress unrealistically well.
    templates = min(spans // 500, 4000)
    endpoint = GRPC if protocol == "grpc" else OTLP_HTTP
    return [binary, "load", "--protocol", protocol, "--endpoint", f"http://{endpoint}", "--spans", str(spans),
            "--templates", str(templates)]


def ingest(binary, data_dir, spans, serve_args):
    server = Server(binary, data_dir, *serve_args)
    cpu_before = server.cpu_seconds()
    load = subprocess.run(
        load_command(binary, spans) + ["--json", "--measure-limit"], check=True, capture_output=True, text=True
    )
    report = json.loads(load.stdout)
    cpu = server.cpu_seconds() - cpu_before
    while server.metric("spanlake_buffer_bytes") > 0:
        time.sleep(0.5)
    report["server_cpu_seconds"] = server.cpu_seconds() - cpu_before
    report["server_cpu_seconds_while_sending"] = cpu
    report["peak_rss_mib"] = server.memory_mib()
    server.stop()
    return report


def compact(binary, data_dir):
    """Restarts with eager compaction and waits until it has nothing left to do."""
    server = Server(
        binary,
        data_dir,
        "--compaction-interval",
        "1s",
        "--compaction-min-files",
        "1",
        "--delete-grace",
        "0s",
    )
    started, quiet_since, last = time.time(), time.time(), -1.0
    # Ingest leaves several flushed files per hour, so there is at least one compaction to wait for.
    while time.time() - quiet_since < 5 or last < 1:
        done = server.metric("spanlake_compactions_total")
        on_disk = len(list(pathlib.Path(data_dir).rglob("*.parquet")))
        if done != last or on_disk != server.metric("spanlake_files"):
            quiet_since, last = time.time(), done
        time.sleep(0.5)
    log(f"compacted in {time.time() - started - 5:.0f} s")
    return server


def live_files(data_dir, kind):
    return sorted(str(p) for p in (pathlib.Path(data_dir) / "default" / kind).rglob("*.parquet"))


def chdb_table(session, files):
    session.query("CREATE DATABASE IF NOT EXISTS bench")
    session.query("DROP TABLE IF EXISTS bench.spans")
    session.query(
        """
        CREATE TABLE bench.spans (
            timestamp DateTime64(9) CODEC(DoubleDelta, LZ4),
            trace_id FixedString(32) CODEC(ZSTD(1)),
            span_id String CODEC(ZSTD(1)),
            parent_span_id String CODEC(ZSTD(1)),
            service_name LowCardinality(String) CODEC(ZSTD(1)),
            span_name LowCardinality(String) CODEC(ZSTD(1)),
            span_kind Int8 CODEC(T64, ZSTD(1)),
            duration_ns UInt64 CODEC(T64, ZSTD(1)),
            has_error Bool CODEC(T64, ZSTD(1)),
            status_message String CODEC(ZSTD(1)),
            http_method LowCardinality(String) CODEC(ZSTD(1)),
            http_route LowCardinality(String) CODEC(ZSTD(1)),
            http_status_code Int16 CODEC(T64, ZSTD(1)),
            db_system LowCardinality(String) CODEC(ZSTD(1)),
            db_query_text String CODEC(ZSTD(1)),
            remote_service_name LowCardinality(String) CODEC(ZSTD(1)),
            attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
            resources Map(LowCardinality(String), String) CODEC(ZSTD(1)),
            events Array(String) CODEC(ZSTD(2)),
            INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 4,
            INDEX idx_duration duration_ns TYPE minmax GRANULARITY 1
        ) ENGINE = MergeTree
        PARTITION BY toDate(timestamp)
        ORDER BY (service_name, has_error, toStartOfHour(timestamp), span_name, timestamp)
        """
    )
    for path in files:
        session.query(
            f"""
        INSERT INTO bench.spans SELECT
            start_time, lower(hex(trace_id)), lower(hex(span_id)), lower(hex(ifNull(parent_span_id, ''))),
            service_name, span_name,
            indexOf(['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'], span_kind) - 1,
            duration_ns, status_code = 'ERROR', ifNull(status_message, ''),
            ifNull(http_method, ''), ifNull(http_route, ''), ifNull(http_status_code, 0),
            ifNull(db_system, ''), ifNull(db_query_text, ''), ifNull(remote_service_name, ''),
            span_attributes, resource_attributes, arrayMap(e -> toString(e), events)
        FROM file('{path}', Parquet)
        """
        )
    session.query("OPTIMIZE TABLE bench.spans FINAL")
    row = session.query(
        "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = 'bench' AND table = 'spans' AND active",
        "CSV",
    )
    size, rows = (int(x) for x in str(row).strip().split(","))
    return size, rows


# spanlake's API; api_timings fills in the windows ({window}, {last_hour},
# {hours}) and the cursors after the first page of a one-service search.
API_QUERIES = {
    "search, one service, last hour": "/api/v1/search?service=frontend&limit=20&{last_hour}",
    "search, tag + minDuration, last hour": "/api/v1/search?service=checkout&tags=http.route%3D/checkout&minDuration=50ms&limit=20&{last_hour}",
    "search, page 2 (cursor), last hour": "/api/v1/search?service=frontend&limit=20&cursor={cursor_last_hour}",
    "search, one service, all data": "/api/v1/search?service=frontend&limit=20&{window}",
    "search, tag + minDuration, all data": "/api/v1/search?service=checkout&tags=http.route%3D/checkout&minDuration=50ms&limit=20&{window}",
    "search, page 2 (cursor), all data": "/api/v1/search?service=frontend&limit=20&cursor={cursor_window}",
    "search, slowest 20": "/api/v1/search?sort=duration_desc&limit=20&{window}",
    "dependency graph, first to last span": "/api/v1/dependencies?{window}",
    "dependency graph, whole hours": "/api/v1/dependencies?{hours}",
    "latency series, 1m steps, by version": "/api/v1/latency?service=checkout&step=1m&groupBy=service.version&{window}",
    "latency histogram": "/api/v1/latency/histogram?service=checkout&{window}",
    "services": "/api/v1/services",
    "operations": "/api/v1/services/checkout/operations?{window}",
    "tag keys": "/api/v1/tags?service=checkout&{window}",
    "tag values": "/api/v1/tags/http.route/values?{window}",
}


def api_timings(server):
    """Median ms of each built-in endpoint. "all data" is the window from
    the first span to the last; "last hour" ends at the last span, the UI's
    default window while spans arrive."""
    first, last = server.sql("SELECT CAST(min(start_time) AS BIGINT), CAST(max(start_time) AS BIGINT) FROM spans")[0]
    first_ms, end_ms = first // 1_000_000, last // 1_000_000 + 1
    hour_ms = 3_600_000
    get = lambda path: json.loads(http("GET", f"http://{API}{path}")[1])
    spots = {
        "window": f"start={first_ms}&end={end_ms}",
        "last_hour": f"start={max(first_ms, end_ms - hour_ms)}&end={end_ms}",
        "hours": f"start={first_ms // hour_ms * hour_ms}&end={(end_ms // hour_ms + 1) * hour_ms}",
    }
    for window, label in [("window", "all data"), ("last_hour", "last hour")]:
        first_page = API_QUERIES[f"search, one service, {label}"].format(**spots)
        spots[f"cursor_{window}"] = get(first_page)["nextCursor"]
    timings = {}
    for name, path in API_QUERIES.items():
        path = path.format(**spots)
        log(f"api: {name}")
        try:
            timings[name] = median_ms(lambda: get(path))
        except HttpStatus as error:
            # A built-in page that fails on the size of the data is a result too.
            timings[name] = str(error)
            log(f"  {timings[name]}")
    return timings


def sample_traces(server, count=20):
    """`count` trace ids spread over the data: a filter, not ORDER BY
    random(), so the scan stops after `count` hits (and fragments, a few per
    trace, rather than the grouped trace_index)."""
    fragments = server.sql("SELECT count(*) FROM trace_fragments")[0][0]
    keep = 2 * count / max(fragments, 1)
    return [row[0] for row in server.sql(f"SELECT DISTINCT trace_id FROM (SELECT trace_id FROM trace_fragments WHERE random() < {keep} LIMIT {count})")]


def first_call_timings(server):
    """On a server just started over existing data: the first tag keys
    request (reads every file's footer, or summarizes files from before
    footers held tags) and the first whole-hours dependency graph (builds
    the hour tables the upkeep loop has not built yet)."""
    first, last = server.sql("SELECT CAST(min(start_time) AS BIGINT), CAST(max(start_time) AS BIGINT) FROM spans")[0]
    hour_ms = 3_600_000
    hours = f"start={first // 1_000_000 // hour_ms * hour_ms}&end={(last // 1_000_000 // hour_ms + 1) * hour_ms}"
    timings = {}
    for name, path in [("tag keys", f"/api/v1/tags?{hours}"), ("dependency graph, whole hours", f"/api/v1/dependencies?{hours}")]:
        started, cpu = time.perf_counter(), server.cpu_seconds()
        try:
            http("GET", f"http://{API}{path}")
        except HttpStatus as error:
            timings[name] = str(error)
            continue
        timings[name] = {"ms": (time.perf_counter() - started) * 1e3, "cpu_seconds": server.cpu_seconds() - cpu}
    return timings


def trace_lookups(server, duck, ch=None):
    """Median ms per lookup of 20 traces by id, no time range, by each engine."""
    sample = sample_traces(server)
    log("query: trace by id")

    def spanlake_traces():
        for trace_id in sample:
            http("GET", f"http://{API}/api/v1/traces/{trace_id}")

    def duckdb_traces():
        for trace_id in sample:
            duck.execute(f"SELECT * FROM spans WHERE trace_id = from_hex('{trace_id}')").fetchall()

    def chdb_traces():
        for trace_id in sample:
            ch.query(f"SELECT * FROM spans WHERE trace_id = '{trace_id}'", "CSV")

    lookups = {"spanlake": spanlake_traces, "duckdb": duckdb_traces}
    if ch is not None:
        lookups["chdb"] = chdb_traces
    return {engine: median_ms(run, runs=3) / len(sample) for engine, run in lookups.items()}


def duckdb_over(span_files):
    import duckdb

    duck = duckdb.connect()
    duck.execute("SET threads = 2")
    duck.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet({span_files!r})")
    return duck


def api_against(binary, data_dir):
    """Times the API over data a previous run left, upkeep held off."""
    server = Server(binary, data_dir, "--compaction-interval", "1h")
    results = {"first_calls": first_call_timings(server), "api_ms": api_timings(server)}
    results["trace_by_id_ms"] = trace_lookups(server, duckdb_over(live_files(data_dir, "spans")))
    results["peak_rss_mib"] = server.memory_mib()
    print(json.dumps(results, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--work-dir", default="/var/tmp/spanlake-bench")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--skip-sql", action="store_true",
                        help="no chdb copy and no analytic SQL (the 100M-span run): trace lookups beside DuckDB and the API")
    parser.add_argument("--api-only", action="store_true",
                        help="after ingest, time only spanlake's API endpoints")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="an extra `spanlake serve` argument for the ingest run, e.g. --serve-arg=--max-buffer-bytes=268435456")
    parser.add_argument("--api-against", metavar="DATA_DIR",
                        help="no ingest: start a server over DATA_DIR and time the API, first calls included")
    args = parser.parse_args()
    if args.api_against:
        return api_against(args.binary, pathlib.Path(args.api_against))

    work = pathlib.Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data_dir = work / "data"
    results = {"spans": args.spans, "machine": machine(), "serve_args": args.serve_arg}

    log(f"ingesting {args.spans} spans over OTLP/gRPC ...")
    report = ingest(args.binary, data_dir, args.spans, args.serve_arg)
    results["ingest"] = report
    log(json.dumps(report))
    server = compact(args.binary, data_dir)
    span_files, index_files = live_files(data_dir, "spans"), live_files(data_dir, "trace_index")
    stored = server.sql("SELECT count(*) FROM spans")[0][0]
    span_bytes = sum(os.path.getsize(f) for f in span_files)
    index_bytes = sum(os.path.getsize(f) for f in index_files)
    results["storage"] = {
        "spans": stored,
        "span_files": len(span_files),
        "bytes_per_span": span_bytes / stored,
        "bytes_per_span_with_trace_index": (span_bytes + index_bytes) / stored,
    }

    if args.api_only:
        results["api_ms"] = api_timings(server)
        server.stop()
        print_report(results)
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(results, indent=2))
        return

    duck = duckdb_over(span_files)
    engines = {"spanlake": lambda q: server.sql(q), "duckdb": lambda q: duck.execute(q).fetchall()}
    if not args.skip_sql:
        from chdb import session as chdb_session

        ch = chdb_session.Session(str(work / "chdb"))
        log("loading chdb ...")
        ch_bytes, ch_rows = chdb_table(ch, span_files)
        results["storage"]["chdb_bytes_per_span"] = ch_bytes / ch_rows
        results["storage"]["chdb_rows"] = ch_rows
        ch.query("USE bench")
        engines["chdb"] = lambda q: ch.query(q, "CSV")
    queries = {}
    for name, per_engine in QUERIES.items() if not args.skip_sql else []:
        log(f"query: {name}")
        queries[name] = {engine: median_ms(lambda: run(per_engine[engine])) for engine, run in engines.items()}

    queries["trace by id (no time range)"] = trace_lookups(server, duck, ch if "chdb" in engines else None)
    results["queries_ms"] = queries
    results["api_ms"] = api_timings(server)
    server.stop()

    print_report(results)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(results, indent=2))


def machine():
    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown cpu"
    )
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return f"{os.cpu_count()} x {cpu}, {mem / 1024 / 1024:.0f} GiB, Linux {os.uname().release}"


def print_report(r):
    i, s = r["ingest"], r["storage"]
    per_million = i["server_cpu_seconds"] / (i["spans_acknowledged"] / 1e6)
    print(f"machine: {r['machine']}")
    print(f"\n## ingest ({i['spans_acknowledged']} spans over OTLP/gRPC, {i['bytes_per_span']:.0f} B protobuf/span)")
    if r["serve_args"]:
        print(f"server started with: {' '.join(r['serve_args'])}")
    print(f"spans/s (end to end, load generator on the same 2 cores): {i['spans_per_second']:,.0f}")
    print(f"server CPU-seconds per million spans (incl. flushes): {per_million:.2f}"
          f" = {1e6 / per_million:,.0f} spans/s per core")
    print(f"decode + sort + encode limit on one core: {i['limit_spans_per_second']:,.0f} spans/s;"
          f" server per core reaches {1e6 / per_million / i['limit_spans_per_second']:.2f} of it")
    print(f"export latency p50 {i['export_latency_ms']['p50']:.1f} ms, p99 {i['export_latency_ms']['p99']:.1f} ms;"
          f" refused and retried {i['spans_refused']} spans")
    print(f"peak RSS: {i['peak_rss_mib']:.0f} MiB")
    print(f"\n## storage ({s['spans']} spans after compaction, {s['span_files']} span files)")
    print(f"spanlake: {s['bytes_per_span']:.1f} B/span ({s['bytes_per_span_with_trace_index']:.1f} with trace_index)")
    if "chdb_rows" in s:
        print(f"chdb (SigNoz-like MergeTree, {s['chdb_rows']} rows): {s['chdb_bytes_per_span']:.1f} B/span;"
              f" spanlake/chdb = {s['bytes_per_span'] / s['chdb_bytes_per_span']:.2f}")
    if "api_ms" in r:
        print("\n## spanlake API (median ms)")
        for name, ms in r["api_ms"].items():
            print(f"{name:40} {ms:10.1f}" if isinstance(ms, float) else f"{name:40} {ms}")
    if "queries_ms" not in r:
        return
    print("\n## queries (median ms)")
    print(f"{'query':32} {'spanlake':>10} {'duckdb':>10} {'chdb':>10} {'vs duckdb':>10} {'vs chdb':>10}")
    for name, t in r["queries_ms"].items():
        chdb = t.get("chdb")
        print(
            f"{name:32} {t['spanlake']:10.1f} {t['duckdb']:10.1f} {chdb or float('nan'):10.1f}"
            f" {t['spanlake'] / t['duckdb']:9.2f}x {t['spanlake'] / chdb if chdb else float('nan'):9.2f}x"
        )

if __name__ == "__main__":
    main()
