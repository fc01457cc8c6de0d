'use strict';

// W3C trace context in the Node client (docs/tracing.md): the ids, the
// headers of what it sends, and the context its handlers run in, against a
// scripted peer on a real socket. Across languages: interop-tests/test_js_tracing.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { IPCClient, currentTraceId, currentTraceContext, withinTrace, TraceContext } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { parseTraceparent, newSpanId, newTraceId } = require('../lib/tracing');
const { ROOT, Peer, nextReceived } = require('./helpers');

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'traceparent.json'), 'utf8'));

/**
 * The ids of a traceparent the test expects to be valid.
 * @param {string} value
 * @returns {{traceId: string, parentId: string, flags: string}}
 */
function ids(value) {
  const parsed = parseTraceparent(value);
  assert.ok(parsed, `not a valid traceparent: ${value}`);
  return parsed;
}

/**
 * Writes a message from the peer to the client, as the server would.
 * @param {Peer} peer
 * @param {object} msg
 */
function sendTo(peer, msg) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

async function connected(t, peerOptions) {
  const peer = new Peer(peerOptions);
  await peer.listen();
  const client = new IPCClient('app', { port: peer.port, reconnect: false });
  await client.connect();
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  return { peer, client };
}

test('traceparent vectors shared with the Python client', () => {
  for (const { value, expected } of SPEC.vectors) {
    const got = parseTraceparent(value);
    assert.deepEqual(got === null ? null : [got.traceId, got.parentId, got.flags], expected, JSON.stringify(value));
  }
  assert.equal(parseTraceparent(undefined), null);
  assert.equal(parseTraceparent(42), null);
});

test('ids are random lower-case hex, never zero, never repeated', () => {
  const seen = new Set();
  for (let i = 0; i < 5000; i++) seen.add(newSpanId());
  assert.equal(seen.size, 5000);
  for (const id of seen) assert.match(id, /^[0-9a-f]{16}$/);
  assert.match(newTraceId(), /^[0-9a-f]{32}$/);
  assert.equal(new TraceContext('a'.repeat(32), 'b'.repeat(16)).traceparent, `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`);
});

test('every request, publish and notification carries a traceparent; a caller\'s own is kept', async (t) => {
  const { peer, client } = await connected(t, { onRequest: (msg, conn, reply) => reply('ok') });
  const mine = { k: 'v' };
  await client.sendRequest('svc', 1, { headers: mine });
  const request = peer.received.find((m) => m.channel_id === 'svc');
  assert.deepEqual(mine, { k: 'v' }); // copied, never changed
  assert.equal(request.headers.k, 'v');
  assert.equal(ids(request.headers.traceparent).flags, '01');

  const published = nextReceived(peer, (m) => m.message_type === 'publish');
  await client.publish('news', 1);
  const notified = nextReceived(peer, (m) => m.message_type === 'notification');
  await client.notify('note', 2, { headers: { traceparent: TP, tracestate: 'a=1' } });
  const [pub, note] = await Promise.all([published, notified]);
  assert.deepEqual(Object.keys(pub.headers), ['traceparent']);
  assert.notEqual(ids(pub.headers.traceparent).traceId, ids(request.headers.traceparent).traceId); // each starts a trace
  assert.deepEqual(note.headers, { traceparent: TP, tracestate: 'a=1' });
  assert.equal(currentTraceId(), null);
});

test("a served request's handler runs in its trace, and its own calls continue it", async (t) => {
  const { peer, client } = await connected(t, {
    onRequest: (msg, conn, reply) => {
      if (msg.channel_id === 'inner') reply(msg.payload + 1);
    }
  });
  let seen = null;
  await client.serve('outer', async (msg) => {
    const before = currentTraceContext();
    const inner = await client.request('inner', msg.payload);
    seen = { before, after: currentTraceContext(), traceId: currentTraceId() };
    return inner;
  });
  const answered = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === 'r-1');
  sendTo(peer, buildMessage('request', 'app', 'outer', 1, { message_id: 'r-1', headers: { traceparent: TP, tracestate: 'v=1' }, timeout_ms: 5000 }));
  assert.equal((await answered).payload, 2);
  const inner = peer.received.find((m) => m.channel_id === 'inner');
  const { before, after, traceId } = seen;
  assert.ok(before instanceof TraceContext);
  assert.equal(before, after); // kept across the await
  assert.equal(before.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(before.parentId, '00f067aa0ba902b7');
  assert.equal(before.tracestate, 'v=1');
  assert.equal(traceId, before.traceId);
  const sent = ids(inner.headers.traceparent);
  assert.equal(sent.traceId, before.traceId);
  assert.ok(sent.parentId !== before.spanId && sent.parentId !== before.parentId); // a new span of its own
  assert.equal(inner.headers.tracestate, 'v=1');
  assert.equal(currentTraceContext(), null); // nothing leaks out of the handler
});

test("a handler's trace is worked out once, by whatever asks first", async (t) => {
  const { peer, client } = await connected(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  const seen = [];
  await client.serve('outer', async (msg) => {
    await client.request('inner', msg.payload); // the first to need it: its traceparent
    await new Promise((resolve) => setImmediate(resolve));
    seen.push(currentTraceContext(), currentTraceContext());
    return currentTraceId();
  });
  const answered = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === 'r-2');
  sendTo(peer, buildMessage('request', 'app', 'outer', 1, { message_id: 'r-2', headers: { traceparent: TP }, timeout_ms: 5000 }));
  assert.equal((await answered).payload, '4bf92f3577b34da6a3ce929d0e0e4736');
  const [first, again] = seen;
  assert.equal(first, again);
  assert.equal(first.parentId, '00f067aa0ba902b7');
  assert.match(first.spanId, /^[0-9a-f]{16}$/);
  const inner = peer.received.find((m) => m.channel_id === 'inner');
  assert.equal(ids(inner.headers.traceparent).traceId, first.traceId);
});

test('a delivery runs in the trace of its publish; a message without one starts a trace', async (t) => {
  const { peer, client } = await connected(t);
  const got = [];
  let done;
  const twoDone = new Promise((resolve) => (done = resolve));
  await client.subscribe('news', (msg) => {
    got.push(currentTraceContext());
    if (got.length === 2) done();
  });
  sendTo(peer, buildMessage('publish', 'app', 'news', 1, { headers: { traceparent: TP } }));
  sendTo(peer, buildMessage('publish', 'app', 'news', 2));
  await twoDone;
  assert.equal(got[0].traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(got[0].parentId, '00f067aa0ba902b7');
  assert.match(got[1].traceId, /^[0-9a-f]{32}$/);
  assert.equal(got[1].parentId, null);
});

test('without @opentelemetry/api nothing of it is loaded', async (t) => {
  const { client } = await connected(t, { onRequest: (msg, conn, reply) => reply('ok') });
  await client.sendRequest('svc', 1);
  let resolvable = true;
  try {
    require.resolve('@opentelemetry/api');
  } catch {
    resolvable = false;
  }
  if (resolvable) t.skip('@opentelemetry/api is resolvable here');
  else assert.deepEqual(Object.keys(require.cache).filter((k) => k.includes('@opentelemetry')), []);
});

test('withinTrace() runs code in the trace of a message handled outside a handler', async () => {
  const msg = buildMessage('request', 'app', 'svc', 1, { message_id: 'x', headers: { traceparent: TP } });
  const ctx = await withinTrace(msg, async (m) => {
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(m, msg);
    return currentTraceContext();
  });
  assert.equal(ctx.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(ctx.parentId, '00f067aa0ba902b7');
  assert.equal(currentTraceContext(), null);
});

test('an overlong tracestate is not passed on', () => {
  const msg = buildMessage('request', 'app', 'svc', 1, { message_id: 'y', headers: { traceparent: TP, tracestate: `k=${'v'.repeat(600)}` } });
  const ctx = withinTrace(msg, () => currentTraceContext());
  assert.equal(ctx.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(ctx.tracestate, null);
});
