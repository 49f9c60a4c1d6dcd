"""Flight SQL against spanlake with the real ADBC driver (adbc_driver_flightsql)
and pyarrow's Flight client for cancellation. Prints one JSON object of what
each step saw; the Rust test checks it.

    python flight_sql_client.py grpc://127.0.0.1:PORT TENANT TOKEN
"""

import json
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions


def connect(uri, tenant, token):
    options = {f"{DatabaseOptions.RPC_CALL_HEADER_PREFIX.value}x-scope-orgid": tenant}
    if token:
        options[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return flight_sql.connect(uri, db_kwargs=options)


def error_of(run):
    try:
        run()
    except Exception as error:  # the driver's own error classes
        return f"{type(error).__name__}: {error}"
    return None


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def any_message(type_name, fields):
    """A protobuf Any of a Flight SQL command whose fields are all strings."""

    def field(number, data):
        return bytes([number << 3 | 2]) + varint(len(data)) + data

    value = b"".join(field(n, v.encode()) for n, v in fields)
    url = f"type.googleapis.com/arrow.flight.protocol.sql.{type_name}"
    return field(1, url.encode()) + field(2, value)


def main():
    uri, tenant, token = sys.argv[1], sys.argv[2], sys.argv[3]
    seen = {}
    with connect(uri, tenant, token) as conn, conn.cursor() as cur:
        cur.execute("SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1")
        frame = cur.fetch_df()
        seen["rows"] = frame.values.tolist()
        seen["columns"] = list(frame.columns)
        cur.execute("SELECT count(*) AS n FROM spans WHERE service_name = $1 AND duration_ns >= $2", parameters=("backend", 0))
        seen["prepared"] = cur.fetchall()
        cur.execute("SELECT count(*) AS n FROM spans WHERE service_name = $1 AND duration_ns >= $2", parameters=("frontend", 0))
        seen["prepared_again"] = cur.fetchall()
        cur.execute("SELECT count(*) AS n FROM spans WHERE trace_id = $1", parameters=("00" * 15 + "01",))
        seen["by_trace_id"] = cur.fetchall()
        seen["attacks"] = [
            error_of(lambda sql=sql: cur.execute(sql))
            for sql in ["DROP TABLE spans", "SELECT * FROM '/etc/passwd'", "COPY spans TO '/tmp/x.csv'"]
        ]
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        seen["tables"] = sorted(
            f"{c['catalog_name']}.{s['db_schema_name']}.{t['table_name']}"
            for c in objects
            for s in c["catalog_db_schemas"]
            for t in s["db_schema_tables"]
        )
        seen["schemas"] = sorted(s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"])
        seen["spans_columns"] = conn.adbc_get_table_schema("spans").names[:4]
        seen["info"] = {k: str(v) for k, v in conn.adbc_get_info().items() if "vendor" in str(k)}
    with connect(uri, "another-tenant", token) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM spans")
        seen["other_tenant"] = cur.fetchall()
    seen["no_token"] = error_of(lambda: connect(uri, tenant, "").cursor().execute("SELECT 1"))
    # Logging in as JDBC drivers do: the tenant as user, the token as password.
    with flight_sql.connect(uri, db_kwargs={"username": tenant, "password": token}) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM spans")
        seen["logged_in"] = cur.fetchall()
    wrong = {"username": tenant, "password": "guess"}
    seen["wrong_password"] = error_of(lambda: flight_sql.connect(uri, db_kwargs=wrong).cursor().execute("SELECT 1"))

    # Cancellation: a long query's FlightInfo, its DoGet started, then
    # CancelFlightInfo, as a Flight SQL client sends it.
    client = flight.connect(uri)
    headers = [(b"x-scope-orgid", tenant.encode()), (b"authorization", f"Bearer {token}".encode())]
    options = flight.FlightCallOptions(headers=headers)
    slow = "SELECT count(*) FROM generate_series(1, 20000000000) AS a(x) WHERE x % 7 = 3"
    descriptor = flight.FlightDescriptor.for_command(any_message("CommandStatementQuery", [(1, slow)]))
    info = client.get_flight_info(descriptor, options)
    outcome = {}

    def read():
        started = time.monotonic()
        outcome["error"] = error_of(lambda: client.do_get(info.endpoints[0].ticket, options).read_all())
        outcome["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(1)
    # CancelFlightInfoRequest { FlightInfo info = 1 }, answered by
    # CancelFlightInfoResult { CancelStatus status = 1 } (1: cancelled).
    body = b"\x0a" + varint(len(info.serialize())) + info.serialize()
    answer = list(client.do_action(flight.Action("CancelFlightInfo", body), options))[0].body.to_pybytes()
    reader.join(timeout=60)
    seen["cancel"] = {"status": answer.hex(), "read_error": outcome.get("error"), "done": not reader.is_alive()}
    print(json.dumps(seen, default=str))


if __name__ == "__main__":
    main()
