'use strict';

/**
 * For interop-tests/test_js_tracing_otel.py: a Node process with the
 * OpenTelemetry SDK (in-memory exporter, AsyncLocalStorage context
 * manager). It serves `node.leaf`, then requests `py.hop` (a Python
 * responder that requests `node.leaf` in turn) inside an application span,
 * and prints its finished spans as one JSON line. js-client finds
 * @opentelemetry/api through this script's own node_modules.
 *
 * argv[2]: the server's port.
 */

const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { IPCClient, currentTraceId } = require('../../js-client');

const exporter = new InMemorySpanExporter();
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));

async function main() {
  const port = Number(process.argv[2]);
  const caller = new IPCClient('app', { port, reconnect: false });
  const leaf = new IPCClient('app', { port, reconnect: false });
  await Promise.all([caller.connect(), leaf.connect()]);
  let leafTraceId = null;
  await leaf.serve('node.leaf', (msg) => {
    leafTraceId = currentTraceId();
    return msg.payload + 1;
  });
  const tracer = api.trace.getTracer('app');
  const result = await tracer.startActiveSpan('checkout', async (span) => {
    try {
      return await caller.request('py.hop', 1);
    } finally {
      span.end();
    }
  });
  await Promise.all([caller.disconnect(), leaf.disconnect()]);
  const kinds = Object.fromEntries(Object.entries(api.SpanKind).map(([k, v]) => [v, k]));
  const spans = exporter.getFinishedSpans().map((s) => ({
    name: s.name,
    kind: kinds[s.kind],
    trace_id: s.spanContext().traceId,
    span_id: s.spanContext().spanId,
    parent_id: (s.parentSpanContext && s.parentSpanContext.spanId) || s.parentSpanId || null,
    attributes: s.attributes,
    process: 'node'
  }));
  process.stdout.write(JSON.stringify({ result, leafTraceId, spans }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
