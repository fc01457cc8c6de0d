'use strict';

/**
 * For interop-tests/test_js_tracing_streams.py: a LoadBalancedClient's
 * request that fails over (the first server has no responder, the second
 * answers), with the OpenTelemetry SDK. Prints the served traceparent and
 * the finished spans as one JSON line.
 *
 * argv[2], argv[3]: the ports of the server without and with the responder.
 */

const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');

const exporter = new InMemorySpanExporter();
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
const { IPCClient, LoadBalancedClient } = require('../../js-client');

async function main() {
  const [empty, full] = process.argv.slice(2).map(Number);
  const responder = new IPCClient('app', { port: full, reconnect: false });
  await responder.connect();
  await responder.serve('lb.x', (msg) => msg.headers.traceparent);
  const lb = new LoadBalancedClient('app', [{ host: '127.0.0.1', port: empty }, { host: '127.0.0.1', port: full }], { strategy: 'round_robin', healthCheckInterval: 60_000 });
  await lb.start();
  let served;
  try {
    served = await lb.request('lb.x', null, 10_000);
  } finally {
    await lb.close();
    await responder.disconnect();
  }
  const kinds = Object.fromEntries(Object.entries(api.SpanKind).map(([k, v]) => [v, k]));
  const spans = exporter.getFinishedSpans().map((s) => ({
    name: s.name,
    kind: kinds[s.kind],
    trace_id: s.spanContext().traceId,
    span_id: s.spanContext().spanId,
    parent_id: (s.parentSpanContext && s.parentSpanContext.spanId) || s.parentSpanId || null,
    error_type: s.attributes['error.type'] ?? null
  }));
  process.stdout.write(JSON.stringify({ served, spans }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
