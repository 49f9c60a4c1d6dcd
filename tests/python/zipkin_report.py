"""Reports a small trace with py_zipkin, Zipkin's Python reporter, to
spanlake's Zipkin endpoint, and prints the spans it sent (one JSON list).

    python zipkin_report.py http://127.0.0.1:9411 [json|proto3]

With proto3, the payload py_zipkin sent is read back with Google's
protobuf library and printed in Zipkin's JSON v2 form.
"""

import base64
import ipaddress
import json
import sys
import urllib.request

from google.protobuf.json_format import MessageToDict

from py_zipkin import Kind
from py_zipkin.encoding import Encoding
from py_zipkin.transport import BaseTransportHandler
from py_zipkin.zipkin import zipkin_span

URL = sys.argv[1] + "/api/v2/spans"
PROTO3 = len(sys.argv) > 2 and sys.argv[2] == "proto3"
sent = []


def proto3_as_json(payload):
    """A ListOfSpans as Zipkin's JSON v2: ids in hex, numbers as numbers."""
    from py_zipkin.encoding.protobuf import zipkin_pb2

    def endpoint(e):
        out = {"serviceName": e.get("serviceName")}
        if "ipv4" in e:
            out["ipv4"] = str(ipaddress.IPv4Address(base64.b64decode(e["ipv4"])))
        if "port" in e:
            out["port"] = e["port"]
        return {k: v for k, v in out.items() if v is not None}

    spans = []
    for s in MessageToDict(zipkin_pb2.ListOfSpans.FromString(payload))["spans"]:
        span = {"traceId": base64.b64decode(s["traceId"]).hex(), "id": base64.b64decode(s["id"]).hex()}
        if "parentId" in s:
            span["parentId"] = base64.b64decode(s["parentId"]).hex()
        for key in ("name", "kind", "tags", "shared", "debug"):
            if key in s:
                span[key] = s[key]
        for key in ("timestamp", "duration"):
            if key in s:
                span[key] = int(s[key])
        for key in ("localEndpoint", "remoteEndpoint"):
            if key in s:
                span[key] = endpoint(s[key])
        if "annotations" in s:
            span["annotations"] = [{"timestamp": int(a["timestamp"]), "value": a["value"]} for a in s["annotations"]]
        spans.append(span)
    return spans


class Transport(BaseTransportHandler):
    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        if isinstance(payload, str):
            payload = payload.encode()
        sent.extend(proto3_as_json(payload) if PROTO3 else json.loads(payload))
        content_type = "application/x-protobuf" if PROTO3 else "application/json"
        request = urllib.request.Request(URL, data=payload, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request) as response:
            if response.status != 202:
                raise SystemExit(f"spanlake answered {response.status}")


with zipkin_span(
    service_name="py-web",
    span_name="GET /orders",
    transport_handler=Transport(),
    sample_rate=100.0,
    encoding=Encoding.V2_PROTO3 if PROTO3 else Encoding.V2_JSON,
    kind=Kind.SERVER,
) as root:
    root.update_binary_annotations({"http.path": "/orders", "http.status_code": "200"})
    with zipkin_span(service_name="py-web", span_name="select orders", kind=Kind.CLIENT) as query:
        query.add_sa_binary_annotation(port=5432, service_name="postgres", host="10.1.2.3")
        query.add_annotation("rows fetched")
    with zipkin_span(service_name="py-web", span_name="render") as render:
        render.update_binary_annotations({"error": "template missing"})

print(json.dumps(sent))
