"""Exports a known trace with the Python OpenTelemetry SDK's real OTLP exporter.

usage: export_spans.py grpc|http ENDPOINT

Prints, as JSON, the OTLP request the exporter's own encoder makes of the
spans (captured beside the exporter by an in-memory exporter), base64
protobuf, so the caller can compare it field for field with what spanlake
returns.
"""

import base64
import json
import sys

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context


def exporter(transport, endpoint):
    if transport == "grpc":
        from grpc import Compression
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True, compression=Compression.Gzip)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip)


def main():
    transport, endpoint = sys.argv[1], sys.argv[2]
    resource = Resource.create(
        {"service.name": f"python-{transport}", "service.version": "2.0.0", "resource.ratio": 1.5}
    )
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(BatchSpanProcessor(exporter(transport, endpoint)))
    tracer = provider.get_tracer(
        "spanlake-python-e2e",
        "0.9.0",
        schema_url="https://opentelemetry.io/schemas/1.21.0",
        attributes={"scope.owner": "e2e"},
    )

    with tracer.start_as_current_span(
        "GET /items/{id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "http.route": "/items/{id}",
            "http.response.status_code": 404,
            "attr.str": "ünïcode <b>",
            "attr.int": 2**40,
            "attr.float": -0.25,
            "attr.bool": True,
            "attr.strs": ["x", "y"],
            "attr.ints": [1, 2],
            "attr.floats": [1.5],
            "attr.bools": [False],
        },
    ) as root:
        root.add_event("lookup", {"cache.hit": False, "attempt": 2})
        with tracer.start_as_current_span(
            "SELECT items",
            kind=SpanKind.CLIENT,
            attributes={"db.system": "sqlite", "db.query.text": "SELECT * FROM items WHERE id = ?"},
        ) as db:
            db.set_status(Status(StatusCode.ERROR, "no such row"))
            db.record_exception(LookupError("no such row"))
            db_context = db.get_span_context()
        with tracer.start_as_current_span(
            "render", kind=SpanKind.INTERNAL, links=[Link(db_context, {"link.why": "after"})]
        ):
            pass
        producer = tracer.start_span("publish misses", kind=SpanKind.PRODUCER, attributes={"messaging.system": "rabbitmq"})
        producer.end()
        consumer = tracer.start_span(
            "process misses", kind=SpanKind.CONSUMER, context=set_span_in_context(producer)
        )
        consumer.end()
        root.set_status(Status(StatusCode.OK))

    provider.force_flush()
    request = encode_spans(memory.get_finished_spans())
    provider.shutdown()
    print(json.dumps({"request": base64.b64encode(request.SerializeToString()).decode()}))


if __name__ == "__main__":
    main()
