'use strict';

/**
 * For interop-tests/test_js_tracing_otel.py: what a Node handler's call
 * passes on with the OpenTelemetry SDK, as tests/otel_spans.py's
 * `propagation` does for Python: from a sender with flags `ff` and a
 * tracestate with a bad member, a repeated key and 40 members; and what a
 * root sends. Prints the headers seen as one JSON line.
 *
 * argv[2]: the server's port.
 */

const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');

api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())] }));
const { IPCClient } = require('../../js-client');

async function main() {
  const port = Number(process.argv[2]);
  const caller = new IPCClient('app', { port, reconnect: false });
  const responder = new IPCClient('app', { port, reconnect: false });
  await Promise.all([caller.connect(), responder.connect()]);
  try {
    await caller.serve('p.obs', (msg) => msg.headers);
    await responder.serve('p.hop', () => responder.request('p.obs', null, { timeout: 10_000 }));
    const tracestate = 'Bad Key=1,ok=2,ok=3,' + Array.from({ length: 40 }, (_, i) => `k${i}=v`).join(',');
    const headers = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff', tracestate };
    const passed = await caller.request('p.hop', null, { timeout: 10_000, headers });
    const root = await caller.request('p.obs', null, { timeout: 10_000 });
    process.stdout.write(JSON.stringify({ passed, root }) + '\n');
  } finally {
    await Promise.all([caller.disconnect(), responder.disconnect()]);
  }
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
