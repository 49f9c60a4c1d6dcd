"""Talks to spanlake's PostgreSQL wire protocol with psycopg, a real driver,
and prints what it saw as one JSON object.

    python pg_client.py <port> <trace id> [password]

- a prepared statement with parameters (extended protocol, `prepare=True`),
  run twice with different values, in text and in binary results;
- the column types the driver was told (type OIDs);
- a cancel from another thread while a long query runs.
"""

import json
import sys
import threading
import time

import psycopg

PORT, TRACE = sys.argv[1], sys.argv[2]
PASSWORD = sys.argv[3] if len(sys.argv) > 3 else None
DSN = f"host=127.0.0.1 port={PORT} user=default dbname=spanlake connect_timeout=10"
if PASSWORD:
    DSN += f" password={PASSWORD}"

QUERY = """
SELECT span_name, duration_ns, trace_id, start_time, span_attributes
FROM spans
WHERE trace_id = %s AND duration_ns >= %s
ORDER BY span_name
"""

out = {}
# Not autocommit: psycopg wraps statements in BEGIN ... COMMIT, as by default.
with psycopg.connect(DSN) as conn:
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            runs = []
            for min_ns in (0, 30_000_000):
                cur.execute(QUERY, (TRACE, min_ns), prepare=True)
                runs.append([[r[0], r[1], r[2], r[3].isoformat(), r[4]] for r in cur.fetchall()])
            out["binary" if binary else "text"] = runs
            out["types"] = {d.name: d.type_code for d in cur.description}

    # A cancel from another thread stops a long query.
    # (count(*) alone would be answered from row counts, at once)
    long_query = "SELECT max(a.duration_ns + e.duration_ns) FROM spans a, spans b, spans c, spans d, spans e"
    timer = threading.Timer(1.0, conn.cancel)
    started = time.monotonic()
    timer.start()
    try:
        conn.execute(long_query)
        out["cancel"] = "the query finished"
    except psycopg.errors.QueryCanceled as e:
        out["cancel"] = {"sqlstate": e.sqlstate, "message": str(e), "seconds": time.monotonic() - started}
        conn.rollback()
    # The connection still works after the cancel.
    out["after_cancel"] = conn.execute("SELECT count(*) FROM spans WHERE trace_id = %s", (TRACE,)).fetchone()[0]

print(json.dumps(out))
