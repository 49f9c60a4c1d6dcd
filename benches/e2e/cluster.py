#!/usr/bin/env python3
"""A spanlake cluster on one machine, over one S3-compatible server.

  cluster.py --binary target/release/spanlake --s3 PATH_TO_S3_SERVER [--spans N]

1. ingest: `spanlake load` flat out through 1 and through 2 collectors
   (`--roles collector`): spans/s acknowledged and flushed, server CPU
   seconds per million spans (collectors only).
2. commits: 4 collectors flushing every second and a compactor, under a
   steady load: catalog commit latency p50/p99 and conflicts per commit
   (from each process's /metrics), then the spans a query node counts
   against those acknowledged.
3. distributed SQL: an aggregate over the spans of step 1 on a query node
   alone, and on one that spreads scans over two query workers.

The S3 server is `moto_server` (a path ending in moto_server) or
`s3s-fs` (any other path). Every process shares the machine: the numbers
show overheads and correctness, not scale-out speed-up on 2 cores.
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from run import cpu_seconds, median_ms, memory_mib

BUCKET = "bench"


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=600):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def wait_for(what, check, timeout=300):
    deadline = time.time() + timeout
    while True:
        try:
            if check():
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.time() > deadline:
            sys.exit(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)


class S3:
    def __init__(self, path, work):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        if path.endswith("moto_server"):
            command = [path, "-H", "127.0.0.1", "-p", str(self.port)]
        else:
            root = pathlib.Path(work) / "s3"
            (root / BUCKET).mkdir(parents=True, exist_ok=True)
            command = [path, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", "bench",
                       "--secret-key", "bench", "--domain", "localhost", str(root)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("the S3 server", lambda: socket.create_connection(("127.0.0.1", self.port), 1) is not None)
        if path.endswith("moto_server"):
            http("PUT", f"{self.endpoint}/{BUCKET}")

    def env(self):
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Node:
    """One `spanlake serve --roles ...` process with its own ports and data directory."""

    def __init__(self, binary, s3, work, prefix, roles, *flags, worker_port=None):
        self.ports = {name: free_port() for name in ["grpc", "otlp", "http", "pg", "jaeger", "flight_sql", "flight", "worker"]}
        if worker_port:
            self.ports["worker"] = worker_port
        self.dir = pathlib.Path(tempfile.mkdtemp(dir=work))
        args = [binary, "serve", "--roles", roles, "--data-dir", str(self.dir), "--storage", f"s3://{BUCKET}/{prefix}",
                "--otlp-grpc-addr", f"127.0.0.1:{self.ports['grpc']}", "--otlp-http-addr", f"127.0.0.1:{self.ports['otlp']}",
                "--http-addr", f"127.0.0.1:{self.ports['http']}", "--pg-addr", f"127.0.0.1:{self.ports['pg']}",
                "--jaeger-grpc-addr", f"127.0.0.1:{self.ports['jaeger']}",
                "--flight-sql-addr", f"127.0.0.1:{self.ports['flight_sql']}",
                "--flight-addr", f"127.0.0.1:{self.ports['flight']}", "--worker-addr", f"127.0.0.1:{self.ports['worker']}",
                *flags]
        self.log = open(self.dir.with_suffix(".log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **s3.env()})
        def ready():
            if self.proc.poll() is not None:
                sys.exit(f"the {roles} node exited; see {self.log.name}")
            return http("GET", self.url("/readyz"))[0] == 200

        wait_for(f"{roles} node", ready)

    def url(self, path):
        return f"http://127.0.0.1:{self.ports['http']}{path}"

    @property
    def flight(self):
        return f"http://127.0.0.1:{self.ports['flight']}"

    @property
    def worker(self):
        return f"http://127.0.0.1:{self.ports['worker']}"

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def rss_mib(self):
        return memory_mib(self.proc.pid)

    def metrics(self):
        return http("GET", self.url("/metrics"))[1].decode()

    def metric(self, name):
        return sum(float(l.rsplit(" ", 1)[1]) for l in self.metrics().splitlines()
                   if l.startswith(name) and l[len(name)] in " {")

    def sql(self, sql):
        body = json.dumps({"sql": sql}).encode()
        return json.loads(http("POST", self.url("/api/v1/sql"), body, {"content-type": "application/json"})[1])["rows"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def load(binary, collectors, spans, *flags):
    """`spanlake load` at every collector at once; their JSON reports."""
    per = spans // len(collectors)
    procs = [subprocess.Popen([binary, "load", "--endpoint", f"http://127.0.0.1:{c.ports['grpc']}", "--spans", str(per),
                               "--templates", str(min(per // 500, 2000)), "--json", *flags],
                              stdout=subprocess.PIPE, text=True) for c in collectors]
    return [json.loads(p.communicate()[0]) for p in procs]


def ingest(binary, s3, work, count, spans):
    prefix = f"ingest{count}"
    collectors = [Node(binary, s3, work, prefix, "collector") for _ in range(count)]
    cpu = [c.cpu_seconds() for c in collectors]
    started = time.perf_counter()
    reports = load(binary, collectors, spans)
    acked = sum(r["spans_acknowledged"] for r in reports)
    wait_for("the flushes", lambda: all(c.metric("spanlake_buffer_bytes") == 0 for c in collectors))
    seconds = time.perf_counter() - started
    cpu = sum(c.cpu_seconds() - before for c, before in zip(collectors, cpu))
    result = {
        "collectors": count,
        "spans": acked,
        "spans_per_second_acknowledged": acked / max(r["seconds"] for r in reports),
        "spans_per_second_flushed": acked / seconds,
        "server_cpu_seconds_per_million": cpu / acked * 1e6,
        "peak_rss_mib_per_collector": max(c.rss_mib() for c in collectors),
    }
    for c in collectors:
        c.stop()
    return prefix, result


def histogram(text, name):
    """Cumulative buckets of a Prometheus histogram, summed over processes' texts."""
    buckets = {}
    for line in text.splitlines():
        match = re.match(rf'{name}_bucket\{{le="([^"]+)"\}} (\S+)', line)
        if match:
            le = float("inf") if match[1] == "+Inf" else float(match[1])
            buckets[le] = buckets.get(le, 0) + float(match[2])
    return sorted(buckets.items())


def quantile(buckets, q):
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


def commits(binary, s3, work, seconds, rate):
    prefix = "commits"
    collectors = [Node(binary, s3, work, prefix, "collector", "--flush-interval", "1s") for _ in range(4)]
    compactor = Node(binary, s3, work, prefix, "compactor", "--compaction-interval", "5s")
    reports = load(binary, collectors, int(rate * seconds * 4), "--rate", str(rate), "--duration", f"{seconds}s")
    acked = sum(r["spans_acknowledged"] for r in reports)
    wait_for("the flushes", lambda: all(c.metric("spanlake_buffer_bytes") == 0 for c in collectors))
    texts = [n.metrics() for n in collectors + [compactor]]
    buckets = histogram("\n".join(texts), "spanlake_catalog_commit_seconds")
    total = lambda name: sum(float(l.rsplit(" ", 1)[1]) for t in texts for l in t.splitlines()
                             if l.startswith(name) and l[len(name)] in " {")
    made, conflicts = total("spanlake_catalog_commits_total"), total("spanlake_catalog_commit_conflicts_total")
    query = Node(binary, s3, work, prefix, "query", "--collectors", ",".join(c.flight for c in collectors))
    counted = int(query.sql("SELECT count(*) FROM spans")[0][0])
    distinct = int(query.sql("SELECT count(*) FROM (SELECT DISTINCT trace_id, span_id FROM spans)")[0][0])
    result = {
        "collectors": 4, "seconds": seconds, "spans_acknowledged": acked, "spans_counted": counted,
        "spans_distinct": distinct, "commits": made, "conflicts_per_commit": conflicts / made,
        "commit_p50_ms": quantile(buckets, 0.5) * 1e3, "commit_p99_ms": quantile(buckets, 0.99) * 1e3,
        "compactions": compactor.metric("spanlake_compactions_total"),
        "compactor_peak_rss_mib": compactor.rss_mib(),
        "collector_peak_rss_mib_at_rate": max(c.rss_mib() for c in collectors),
    }
    for n in collectors + [compactor, query]:
        n.stop()
    return result


AGGREGATE = ("SELECT service_name, span_name, count(*) AS spans, avg(duration_ns) AS mean_ns, "
             "max(duration_ns) AS max_ns FROM spans GROUP BY 1, 2 ORDER BY 1, 2")


SEARCH = "/api/v1/search?lookback=6h&limit=20&service=checkout"


def distributed_sql(binary, s3, work, prefix, runs=5):
    a = Node(binary, s3, work, prefix, "query")
    alone = timed(a, runs)
    answer = a.sql(AGGREGATE)
    search_ms = median_ms(lambda: http("GET", a.url(SEARCH)), runs * 4)
    query_rss = a.rss_mib()
    a.stop()
    workers = [free_port(), free_port()]
    urls = ",".join(f"http://127.0.0.1:{p}" for p in workers)
    nodes = [Node(binary, s3, work, prefix, "query", "--query-workers", urls, worker_port=p) for p in workers]
    spread = timed(nodes[0], runs)
    same = nodes[0].sql(AGGREGATE) == answer
    plan = nodes[0].sql("EXPLAIN " + AGGREGATE)[-1][1]
    tasks = re.findall(r"Stage \d+ ── tasks=(\d+)", plan)
    for n in nodes:
        n.stop()
    return {"one_node_ms": alone, "two_workers_ms": spread, "same_answer": same, "stage_tasks": tasks,
            "search_ms": search_ms, "query_node_peak_rss_mib": query_rss}


def timed(node, runs):
    return median_ms(lambda: node.sql(AGGREGATE), runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--s3", required=True, help="moto_server or s3s-fs")
    parser.add_argument("--spans", type=int, default=2_000_000, help="spans per ingest run")
    parser.add_argument("--commit-seconds", type=int, default=60)
    parser.add_argument("--commit-rate", type=float, default=5000, help="spans/s per collector in the commit run")
    parser.add_argument("--work-dir", default="/var/tmp/spanlake-cluster-bench")
    parser.add_argument("--out")
    args = parser.parse_args()
    shutil.rmtree(args.work_dir, ignore_errors=True)
    os.makedirs(args.work_dir)
    s3 = S3(args.s3, args.work_dir)
    results = {"machine": f"{os.cpu_count()} cores", "s3": os.path.basename(args.s3)}
    try:
        results["ingest"] = []
        for count in (1, 2):
            log(f"ingest through {count} collector(s)")
            prefix, result = ingest(args.binary, s3, args.work_dir, count, args.spans)
            results["ingest"].append(result)
            log(json.dumps(result))
        log("distributed SQL over the 2-collector run's spans")
        results["sql"] = distributed_sql(args.binary, s3, args.work_dir, prefix)
        log(json.dumps(results["sql"]))
        log("commit latency: 4 collectors flushing every second and a compactor")
        results["commits"] = commits(args.binary, s3, args.work_dir, args.commit_seconds, args.commit_rate)
        log(json.dumps(results["commits"]))
    finally:
        s3.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
