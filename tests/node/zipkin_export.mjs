// Exports a small trace with the OpenTelemetry JS SDK's Zipkin exporter
// (@opentelemetry/exporter-zipkin) to spanlake's Zipkin endpoint, through a
// pass-through that keeps what the exporter posted, and prints those spans
// (one JSON list).
//
//   node zipkin_export.mjs http://127.0.0.1:9411

import http from "node:http";
import { SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import { ZipkinExporter } from "@opentelemetry/exporter-zipkin";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

const target = `${process.argv[2]}/api/v2/spans`;
const sent = [];
const failures = [];

const proxy = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", async () => {
    const body = Buffer.concat(chunks);
    sent.push(...JSON.parse(body));
    const answer = await fetch(target, { method: "POST", headers: { "content-type": "application/json" }, body });
    const text = await answer.text();
    if (answer.status !== 202) failures.push(`spanlake answered ${answer.status}: ${text}`);
    response.writeHead(answer.status);
    response.end(text);
  });
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));

const exporter = new ZipkinExporter({ url: `http://127.0.0.1:${proxy.address().port}/api/v2/spans` });
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-shop" }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = provider.getTracer("zipkin-test");

const root = tracer.startSpan("GET /cart", { kind: SpanKind.SERVER, attributes: { "http.route": "/cart" } });
const call = tracer.startSpan(
  "charge",
  { kind: SpanKind.CLIENT, attributes: { "peer.service": "payments", attempt: 2 } },
  trace.setSpan(context.active(), root),
);
call.addEvent("retry");
call.setStatus({ code: SpanStatusCode.ERROR, message: "card declined" });
call.end();
root.end();

await provider.forceFlush();
await provider.shutdown();
proxy.close();
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(JSON.stringify(sent));
