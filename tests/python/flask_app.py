"""A Flask app as a new user runs it: auto-instrumented by the Python
OpenTelemetry distribution with its default settings (run under
`opentelemetry-instrument`, configured by OTEL_* variables only), which
sends the older HTTP semantic conventions (`http.method`,
`http.status_code`, `http.url`, `net.host.port`, ...).

GET /orders/7 calls GET /stock on the same app through `requests`, so one
trace holds a server span, the client span of the call and the server span
it reached. Prints the trace id; exits once the spans are exported.
"""
import threading

import requests
from flask import Flask
from opentelemetry import trace
from werkzeug.serving import make_server

app = Flask(__name__)
server = make_server("127.0.0.1", 0, app, threaded=True)
port = server.server_port


@app.route("/orders/<int:order>")
def order(order):
    stock = requests.get(f"http://localhost:{port}/stock?order={order}", timeout=10)
    return {"order": order, "stock": stock.json()["stock"]}


@app.route("/stock")
def stock():
    return {"stock": 3}


threading.Thread(target=server.serve_forever, daemon=True).start()
answer = requests.get(f"http://127.0.0.1:{port}/orders/7", timeout=10)
answer.raise_for_status()
server.shutdown()
provider = trace.get_tracer_provider()
provider.force_flush()
provider.shutdown()
print("ok")
