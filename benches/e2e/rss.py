#!/usr/bin/env python3
"""Memory under saturated ingest: a release server with default settings
(plus any extra `serve` arguments) takes `spanlake load` flat out; every
second prints RSS, buffered bytes, flushes and compactions, then the peak.

    python3 benches/e2e/rss.py 10000000 [serve args...]

SPANLAKE_LOAD_PROTOCOL=http-json (or http) sends over OTLP/HTTP instead of
OTLP/gRPC.

Uses the release binary under $CARGO_TARGET_DIR (build it first) and
/var/tmp/spanlake-rss for data.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time

from run import Server, load_command


def main():
    spans, serve_args = int(sys.argv[1]), sys.argv[2:]
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/spanlake-target"), "release", "spanlake")
    work = pathlib.Path("/var/tmp/spanlake-rss")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = Server(binary, work / "data", *serve_args)
    protocol = os.environ.get("SPANLAKE_LOAD_PROTOCOL", "grpc")
    load = subprocess.Popen(
        load_command(binary, spans, protocol), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while load.poll() is None:
        print(
            f"rss {server.memory_mib('VmRSS'):5.0f} MiB"
            f"  buffer {server.metric('spanlake_buffer_bytes') / 2**20:4.0f} MiB"
            f"  flushes {server.metric('spanlake_flushes_total'):4.0f}"
            f"  compactions {server.metric('spanlake_compactions_total'):3.0f}",
            flush=True,
        )
        time.sleep(1)
    print(f"peak RSS {server.memory_mib():.0f} MiB, server CPU {server.cpu_seconds() / (spans / 1e6):.2f} s per million spans")
    server.stop()


if __name__ == "__main__":
    main()
