"""Reports a small trace with py_zipkin, Zipkin's Python reporter, to
spanlake's Zipkin endpoint, and prints the spans it sent (one JSON list).

    python zipkin_report.py http://127.0.0.1:9411
"""

import json
import sys
import urllib.request

from py_zipkin import Kind
from py_zipkin.encoding import Encoding
from py_zipkin.transport import BaseTransportHandler
from py_zipkin.zipkin import zipkin_span

URL = sys.argv[1] + "/api/v2/spans"
sent = []


class Transport(BaseTransportHandler):
    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        if isinstance(payload, str):
            payload = payload.encode()
        sent.extend(json.loads(payload))
        request = urllib.request.Request(URL, data=payload, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            if response.status != 202:
                raise SystemExit(f"spanlake answered {response.status}")


with zipkin_span(
    service_name="py-web",
    span_name="GET /orders",
    transport_handler=Transport(),
    sample_rate=100.0,
    encoding=Encoding.V2_JSON,
    kind=Kind.SERVER,
) as root:
    root.update_binary_annotations({"http.path": "/orders", "http.status_code": "200"})
    with zipkin_span(service_name="py-web", span_name="select orders", kind=Kind.CLIENT) as query:
        query.add_sa_binary_annotation(port=5432, service_name="postgres", host="10.1.2.3")
        query.add_annotation("rows fetched")
    with zipkin_span(service_name="py-web", span_name="render") as render:
        render.update_binary_annotations({"error": "template missing"})

print(json.dumps(sent))
