'use strict';

/**
 * For interop-tests/test_js_tracing_streams.py: streams served and consumed
 * by Node, with the OpenTelemetry SDK (in-memory exporter,
 * AsyncLocalStorage context manager) or, with NO_OTEL=1, without any
 * provider. A streaming handler calls out between its items and then
 * fails; a consumer reads one stream to its end and leaves another early.
 * Prints what the handlers saw and the finished spans as one JSON line.
 *
 * argv[2]: the server's port.
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
const { IPCClient, currentTraceId } = require('../../js-client');

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const WAIT_MS = 10_000;

/** Resolves when `check()` holds, polled each turn of the loop; rejects after WAIT_MS. */
async function until(check) {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('waited too long');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function main() {
  const port = Number(process.argv[2]);
  const producer = new IPCClient('app', { port, reconnect: false });
  const caller = new IPCClient('app', { port, reconnect: false });
  await Promise.all([producer.connect(), caller.connect()]);
  const seen = { out: [], stream: [], before: [], after: [] };
  let closed = false;
  await caller.serve('obs.out', (msg) => {
    seen.out.push(msg.headers);
    return 1;
  });
  await producer.serve('n.gen', async function* (msg) {
    seen.stream.push(msg.headers);
    seen.before.push(currentTraceId());
    await new Promise((resolve) => setImmediate(resolve));
    yield 1;
    await producer.request('obs.out', null); // the stream's own call: in its trace, a child of its serve span
    seen.after.push(currentTraceId());
    yield 2;
    throw new RangeError('mid-stream failure');
  });
  await producer.serve('n.endless', async function* (msg) {
    seen.stream.push(msg.headers);
    try {
      for (let i = 0; ; i++) {
        yield i;
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      closed = true;
    }
  });
  const items = [];
  try {
    for await (const item of caller.stream('n.gen', null, { timeout: WAIT_MS, headers: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` } })) items.push(item);
  } catch (err) {
    seen.failed = err.code;
  }
  for await (const item of caller.stream('n.gen', null, { timeout: WAIT_MS })) if (item === 1) break; // not the caller's traceparent: one of its own
  for await (const item of caller.stream('n.endless', null, { timeout: WAIT_MS })) if (item === 2) break;
  await until(() => closed && started.size === 0);
  await Promise.all([producer.disconnect(), caller.disconnect()]);
  const kinds = Object.fromEntries(Object.entries(api.SpanKind).map(([k, v]) => [v, k]));
  const spans = exporter.getFinishedSpans().map((s) => ({
    name: s.name,
    kind: kinds[s.kind],
    trace_id: s.spanContext().traceId,
    span_id: s.spanContext().spanId,
    parent_id: (s.parentSpanContext && s.parentSpanContext.spanId) || s.parentSpanId || null,
    error_type: s.attributes['error.type'] ?? null,
    status: s.status.code
  }));
  process.stdout.write(JSON.stringify({ items, seen, spans, unended: started.size }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
