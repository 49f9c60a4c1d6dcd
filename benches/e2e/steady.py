#!/usr/bin/env python3
"""Steady ingest: a release server with default settings (plus any extra
`serve` arguments) takes `spanlake load` at a fixed rate for a while; then
one more upkeep round. Reports write amplification (compaction bytes over
flush bytes, from /metrics), server CPU per million spans, peak RSS and the
live files at the end, and prints RSS and the byte counters every minute.

    python3 benches/e2e/steady.py RATE DURATION [serve args...]
    python3 benches/e2e/steady.py 20000 60m

Uses the release binary under $CARGO_TARGET_DIR (build it first) and
/var/tmp/spanlake-steady for data.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from run import GRPC, Server


def main():
    rate, duration, serve_args = sys.argv[1], sys.argv[2], sys.argv[3:]
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/spanlake-target"), "release", "spanlake")
    work = pathlib.Path("/var/tmp/spanlake-steady")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = Server(binary, work / "data", *serve_args)
    cpu_before = server.cpu_seconds()
    started = time.time()
    load = subprocess.Popen(
        # --duration stops it; 4,000 different requests, as the flat-out runs send.
        [binary, "load", "--endpoint", f"http://{GRPC}", "--rate", rate, "--duration", duration,
         "--spans", str(10**12), "--templates", "4000", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    while load.poll() is None:
        time.sleep(60)
        print(
            f"{(time.time() - started) / 60:4.0f} min  rss {server.memory_mib('VmRSS'):5.0f} MiB"
            f"  flushed {server.metric('spanlake_flush_bytes_written_total') / 1e6:8.0f} MB"
            f"  compacted {server.metric('spanlake_compaction_bytes_written_total') / 1e6:8.0f} MB"
            f"  files {server.metric('spanlake_files'):4.0f}",
            flush=True,
        )
    report = json.loads(load.stdout.read())
    # One more round so that what the last flushes wrote is merged as upkeep would.
    compactions = server.metric("spanlake_compactions_total")
    deadline = time.time() + 120
    while server.metric("spanlake_compactions_total") == compactions and time.time() < deadline:
        time.sleep(1)
    spans = report["spans_acknowledged"]
    flushed = server.metric("spanlake_flush_bytes_written_total")
    compacted = server.metric("spanlake_compaction_bytes_written_total")
    result = {
        "spans": spans,
        "spans_per_second": report["spans_per_second"],
        "server_cpu_seconds_per_million": (server.cpu_seconds() - cpu_before) / (spans / 1e6),
        "flush_bytes": flushed,
        "compaction_bytes": compacted,
        "write_amplification": compacted / flushed if flushed else None,
        "peak_rss_mib": server.memory_mib(),
        "live_files": server.metric("spanlake_files"),
    }
    print(json.dumps(result, indent=1))
    server.stop()


if __name__ == "__main__":
    main()
