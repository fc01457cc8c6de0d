'use strict';

/**
 * For interop-tests/test_js_tracing_streams.py: a LoadBalancedClient's
 * stream that fails over before its first item (the first server has no
 * responder, the second streams), with the OpenTelemetry SDK or, with
 * NO_OTEL=1, without any provider. The reader's loop records whether a
 * trace of the bridge (or a span) is current between items. Prints the
 * items, what the reader saw and the finished spans as one JSON line; with
 * NODE_DEBUG=ipc-bridge, stderr has the trace of every request sent.
 *
 * argv[2], argv[3]: the ports of the server without and with the responder.
 */

const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');

const exporter = new InMemorySpanExporter();
const started = new Set(); // spans started and not ended
if (process.env.NO_OTEL !== '1') {
  const open = { onStart: (s) => started.add(s), onEnd: (s) => started.delete(s), forceFlush: async () => {}, shutdown: async () => {} };
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [open, new SimpleSpanProcessor(exporter)] }));
}
const { IPCClient, LoadBalancedClient, currentTraceContext } = require('../../js-client');

async function main() {
  const [empty, full] = process.argv.slice(2).map(Number);
  const responder = new IPCClient('app', { port: full, reconnect: false });
  await responder.connect();
  await responder.serve('lb.s', async function* (msg) {
    for (let i = 0; i < 2; i++) yield msg.headers.traceparent;
  });
  const lb = new LoadBalancedClient('app', [{ host: '127.0.0.1', port: empty }, { host: '127.0.0.1', port: full }], { strategy: 'round_robin', healthCheckInterval: 60_000 });
  await lb.start();
  const items = [];
  const inReader = [];
  try {
    for await (const item of lb.stream('lb.s', null, { timeout: 10_000 })) {
      items.push(item);
      inReader.push(currentTraceContext() !== null || api.trace.getActiveSpan() !== undefined);
    }
    inReader.push(currentTraceContext() !== null || api.trace.getActiveSpan() !== undefined);
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
    error_type: s.attributes['error.type'] ?? null,
    status: s.status.code === api.SpanStatusCode.ERROR ? 'ERROR' : 'UNSET'
  }));
  process.stdout.write(JSON.stringify({ items, inReader, spans, unended: started.size }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
