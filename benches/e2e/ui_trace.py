"""Times the trace page of one large trace: sends a trace of N spans
(a tree eight wide at each level, three services, an event on every tenth
span) to a running spanlake over OTLP/HTTP JSON, then fetches
/traces/{id} five times after a warm-up and prints the median, the
slowest, and the page size.

    python benches/e2e/ui_trace.py http://127.0.0.1:9411 http://127.0.0.1:4318 10000
"""

import json
import os
import statistics
import sys
import time
import urllib.request

api, otlp, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
trace_id = os.urandom(16).hex()
now = time.time_ns() - 60_000_000_000
services = ["gateway", "orders", "inventory"]
spans = {s: [] for s in services}
for i in range(count):
    parent = (i - 1) // 8 if i else None
    depth = 0
    p = parent
    while p is not None:
        depth += 1
        p = (p - 1) // 8 if p else None
    start = now + i * 10_000 + depth * 1_000
    span = {
        "traceId": trace_id,
        "spanId": f"{i + 1:016x}",
        "name": f"op-{i % 50}",
        "kind": 2 if i == 0 else 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 5_000_000 + (i % 17) * 100_000),
        "attributes": [{"key": "n", "value": {"intValue": str(i)}}],
    }
    if parent is not None:
        span["parentSpanId"] = f"{parent + 1:016x}"
    if i % 10 == 0:
        span["events"] = [{"timeUnixNano": str(start + 1_000), "name": "checkpoint"}]
    spans[services[i % 3]].append(span)
body = {
    "resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": s}}]}, "scopeSpans": [{"spans": spans[s]}]}
        for s in services
    ]
}
request = urllib.request.Request(f"{otlp}/v1/traces", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
urllib.request.urlopen(request).read()

def fetch():
    started = time.perf_counter()
    with urllib.request.urlopen(f"{api}/traces/{trace_id}") as response:
        size = len(response.read())
    return (time.perf_counter() - started) * 1e3, size

fetch()
runs = [fetch() for _ in range(5)]
times = [t for t, _ in runs]
print(json.dumps({"spans": count, "median_ms": statistics.median(times), "max_ms": max(times), "html_bytes": runs[0][1]}))
