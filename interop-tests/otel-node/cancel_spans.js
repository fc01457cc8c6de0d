'use strict';

/**
 * For interop-tests/test_js_tracing_otel.py: the serve spans of Node
 * handlers (not streams) that their requester's cancel stops, with the
 * OpenTelemetry SDK: one rejects with its signal's reason once aborted,
 * one returns anyway, one whose requester's deadline passes returns too;
 * one ends before any cancel. Prints the finished spans as one JSON line.
 *
 * argv[2]: the server's port.
 */

const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');

const exporter = new InMemorySpanExporter();
const started = new Set(); // spans started and not ended
const open = { onStart: (s) => started.add(s), onEnd: (s) => started.delete(s), forceFlush: async () => {}, shutdown: async () => {} };
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [open, new SimpleSpanProcessor(exporter)] }));
const { IPCClient } = require('../../js-client');

const WAIT_MS = 10_000;

/** Resolves when `check()` holds, polled each turn of the loop; rejects after WAIT_MS. */
async function until(check) {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('waited too long');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Resolves when `signal` aborts. */
const aborted = (signal) => new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', resolve, { once: true })));

async function main() {
  const port = Number(process.argv[2]);
  const responder = new IPCClient('app', { port, reconnect: false });
  const caller = new IPCClient('app', { port, reconnect: false });
  await Promise.all([responder.connect(), caller.connect()]);
  const running = new Set(); // channels whose handler is waiting
  await responder.serve('c.reject', async (msg, ctx) => {
    running.add('c.reject');
    await aborted(ctx.signal);
    throw ctx.signal.reason;
  });
  await responder.serve('c.return', async (msg, ctx) => {
    running.add('c.return');
    await aborted(ctx.signal);
    return 'late';
  });
  await responder.serve('c.deadline', async (msg, ctx) => {
    await aborted(ctx.signal);
    return 'late';
  });
  await responder.serve('c.ok', async () => 'ok');
  const errors = {};
  for (const channel of ['c.reject', 'c.return']) {
    const controller = new AbortController();
    const call = caller.request(channel, null, { timeout: WAIT_MS, signal: controller.signal });
    await until(() => running.has(channel));
    controller.abort();
    errors[channel] = await call.then(() => null, (err) => err.code);
  }
  errors['c.deadline'] = await caller.request('c.deadline', null, { timeout: 300 }).then(() => null, (err) => err.code);
  errors['c.ok'] = await caller.request('c.ok', null, { timeout: WAIT_MS }).then(() => null, (err) => err.code);
  await until(() => started.size === 0 && exporter.getFinishedSpans().filter((s) => s.name.startsWith('serve ')).length === 4);
  await Promise.all([responder.disconnect(), caller.disconnect()]);
  const spans = exporter.getFinishedSpans().map((s) => ({
    name: s.name,
    error_type: s.attributes['error.type'] ?? null,
    status: s.status.code === api.SpanStatusCode.ERROR ? 'ERROR' : s.status.code === api.SpanStatusCode.OK ? 'OK' : 'UNSET'
  }));
  process.stdout.write(JSON.stringify({ errors, spans }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
