'use strict';

// What a handler's calls pass on of the trace context they continue
// (docs/tracing.md §1): the sampled flag only, and the valid members of the
// received tracestate, at most 32 and 512 characters. The vectors are shared
// with tests/test_trace_state.py; with OpenTelemetry the same rule holds
// (interop-tests/test_js_tracing_otel.py).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { IPCClient, currentTraceContext, withinTrace } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { ROOT, Peer, nextReceived } = require('./helpers');

const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'tracestate.json'), 'utf8'));
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SENDER = '00f067aa0ba902b7';

/** The context a handler of a message with `headers` runs in. */
function handled(headers) {
  const msg = buildMessage('request', 'app', 'svc', 1, { message_id: 'm', headers });
  return withinTrace(msg, () => currentTraceContext());
}

test('a received tracestate is passed on by the rule shared with the Python client', () => {
  for (const { value, expected, note } of SPEC.vectors) {
    const ctx = handled({ traceparent: `00-${TRACE}-${SENDER}-01`, tracestate: value });
    assert.equal(ctx.traceId, TRACE);
    assert.equal(ctx.tracestate, expected, note || value);
  }
});

test('only the sampled flag is passed on', () => {
  for (const [received, passed] of SPEC.flags) {
    assert.equal(handled({ traceparent: `00-${TRACE}-${SENDER}-${received}` }).flags, passed, received);
  }
});

test("a handler's call carries what the rule keeps", async (t) => {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.headers) });
  await peer.listen();
  const client = new IPCClient('app', { port: peer.port, reconnect: false });
  await client.connect();
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  await client.serve('hop', () => client.request('obs', null));
  const answered = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === 'r-1');
  const tracestate = 'Bad Key=1,ok=2,ok=3,' + Array.from({ length: 40 }, (_, i) => `k${i}=v`).join(',');
  const request = buildMessage('request', 'app', 'hop', null, { message_id: 'r-1', headers: { traceparent: `00-${TRACE}-${SENDER}-ff`, tracestate }, timeout_ms: 5000 });
  [...peer.sockets][0].write(encodeFrame(encodeMessage(request)));
  const sent = (await answered).payload;
  assert.match(sent.traceparent, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
  assert.equal(sent.tracestate, 'ok=2,' + Array.from({ length: 31 }, (_, i) => `k${i}=v`).join(','));
});
