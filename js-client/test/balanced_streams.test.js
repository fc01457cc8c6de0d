'use strict';

// LoadBalancedClient.stream() and ServiceClient.stream() (docs/protocol.md
// §15, docs/resilience.md §8, §9) over several scripted peers on real
// sockets: the items in order from one server, failover to the next
// healthy server only before the first item, the error to the reader after
// it, close() during a stream, the deadline covering the failovers, the
// reader leaving early, and a service's metrics counting a stream as one
// call. The same against the real Python server: interop-tests/test_js_pool_streams.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { LoadBalancedClient } = require('../lib/load_balanced_client');
const { ServiceClient } = require('../lib/service_client');
const { ErrorCode } = require('../lib/errors');
const { producerPeer, streamingPeer, nextReceived, until } = require('./helpers');

const FAST = { initialDelay: 20, maxDelay: 50 };

/** Counts `n` items, `name:0`, `name:1`..., then ends. */
const count = (name) => (msg, out) => {
  for (let i = 0; i < msg.payload.n; i++) out.item(`${name}:${i}`);
  out.end();
};
/** Says nobody serves the channel. */
const nobody = (msg, out) => out.fail(ErrorCode.NO_RESPONDERS);
/** One item, then nothing until cancelled. */
const oneThenHold = (name) => (msg, out) => out.item(`${name}:0`);

/** A started client over `peers`, closed after the test. */
async function balanced(t, peers, options = {}) {
  const lb = new LoadBalancedClient('app', peers.map((p) => `127.0.0.1:${p.port}`), { healthCheckInterval: 60_000, ...FAST, ...options });
  t.after(() => lb.close());
  await lb.start();
  return lb;
}

/** Calls in use on every server's pool. */
const inUse = (lb) => Object.values(lb.poolStats()).reduce((sum, s) => sum + s.inUse, 0);

/** Every item of `stream`, or its error after them: `{items, error}`. */
async function drain(stream) {
  const items = [];
  try {
    for await (const item of stream) items.push(item);
    return { items, error: null };
  } catch (error) {
    return { items, error };
  }
}

test('balanced streams - the items in order from one server, counted once', async (t) => {
  const [a, b] = [await producerPeer(t, count('a')), await producerPeer(t, count('b'))];
  const lb = await balanced(t, [a, b]);
  assert.deepEqual(await drain(lb.stream('ticks', { n: 100 }, { window: 8 })), { items: Array.from({ length: 100 }, (_, i) => `a:${i}`), error: null });
  assert.deepEqual(await drain(lb.stream('ticks', { n: 2 })), { items: ['b:0', 'b:1'], error: null }); // round robin
  assert.deepEqual(lb.serverStats().map((s) => [s.requests, s.errors, s.inFlight]), [[1, 0, 0], [1, 0, 0]]);
  assert.equal(inUse(lb), 0);
});

test('balanced streams - before the first item, no_responders and a lost connection fail over', async (t) => {
  const a = await producerPeer(t, nobody);
  const b = await producerPeer(t, count('b'));
  const lb = await balanced(t, [a, b]);
  assert.deepEqual(await drain(lb.stream('ticks', { n: 3 }, { timeout: 2000 })), { items: ['b:0', 'b:1', 'b:2'], error: null });
  assert.deepEqual(lb.serverStats().map((s) => [s.requests, s.errors, s.healthy]), [[1, 1, true], [1, 0, true]]);
  const c = await producerPeer(t, () => c.drop()); // its connection goes before any item
  const d = await producerPeer(t, count('d'));
  const lb2 = await balanced(t, [c, d]);
  const down = [];
  lb2.on('server_down', ({ port }) => down.push(port));
  assert.deepEqual(await drain(lb2.stream('ticks', { n: 2 }, { timeout: 2000 })), { items: ['d:0', 'd:1'], error: null });
  assert.deepEqual(down, [c.port]); // out of rotation (until its pool opens a connection again)
  const e = await producerPeer(t, nobody);
  const lb3 = await balanced(t, [e, a]);
  const { error } = await drain(lb3.stream('ticks'));
  assert.equal(error.code, ErrorCode.NO_RESPONDERS); // nobody anywhere: said so
  assert.equal(inUse(lb) + inUse(lb2) + inUse(lb3), 0);
});

for (const fault of ['connection', 'responder']) {
  test(`balanced streams - after the first item the error goes to the reader (${fault} lost)`, async (t) => {
    const a = await producerPeer(t, oneThenHold('a'));
    const b = await producerPeer(t, count('b'));
    const lb = await balanced(t, [a, b]);
    const stream = lb.stream('ticks', { n: 5 }, { timeout: 2000 });
    assert.deepEqual(await stream.next(), { value: 'a:0', done: false });
    if (fault === 'connection') a.drop(); // connection_lost, which fails over a call
    else a.outs[0].fail(ErrorCode.RESPONDER_LOST); // the producer went
    const { items, error } = await drain(stream);
    assert.deepEqual(items, []);
    assert.equal(error.code, fault === 'connection' ? ErrorCode.CONNECTION_LOST : ErrorCode.RESPONDER_LOST);
    assert.equal(b.streams.length, 0); // never started again on b
    assert.equal(lb.serverStats().reduce((sum, s) => sum + s.requests, 0), 1);
    await until(() => inUse(lb) === 0);
  });
}

for (const when of ['after items', 'before the first item']) {
  test(`balanced streams - close() during a stream (${when}) ends it with connection_lost, no failover`, async (t) => {
    const a = await producerPeer(t, when === 'after items' ? oneThenHold('a') : () => {});
    const b = await producerPeer(t, count('b'));
    const lb = await balanced(t, [a, b]);
    const stream = lb.stream('ticks', { n: 5 });
    if (when === 'after items') assert.deepEqual(await stream.next(), { value: 'a:0', done: false });
    const rest = drain(stream);
    await until(() => a.streams.length === 1);
    await lb.close();
    const { items, error } = await rest;
    assert.deepEqual(items, []);
    assert.equal(error.code, ErrorCode.CONNECTION_LOST); // as the calls in flight, never not_connected from b
    assert.deepEqual(await stream.next(), { value: undefined, done: true });
    assert.equal(b.streams.length, 0);
    assert.deepEqual(lb.serverStats().map((s) => s.inFlight), [0, 0]);
    assert.equal(inUse(lb), 0);
    await assert.rejects(lb.stream('ticks').next(), { code: ErrorCode.NOT_CONNECTED });
  });
}

test('balanced streams - the deadline covers the failovers', async (t) => {
  // Each server answers no_responders a little before the request's own deadline (as a server's grace does).
  const late = (msg, out) => setTimeout(() => out.fail(ErrorCode.NO_RESPONDERS), Math.max(0, msg.timeout_ms - 20));
  const [a, b] = [await producerPeer(t, late), await producerPeer(t, late)];
  const lb = await balanced(t, [a, b]);
  const started = performance.now();
  const { error } = await drain(lb.stream('nobody', null, { timeout: 500 }));
  const elapsed = performance.now() - started;
  assert.ok([ErrorCode.NO_RESPONDERS, ErrorCode.TIMEOUT].includes(error.code), error.code);
  assert.ok(elapsed >= 450 && elapsed < 800, `${elapsed} ms`); // one deadline for both servers, not 500 ms each
  assert.deepEqual([a.streams.length, b.streams.length], [1, 1]);
  assert.ok(b.streams[0].timeout_ms <= 100, `${b.streams[0].timeout_ms}`); // what was left of it
  assert.equal(inUse(lb), 0);
});

for (const leave of ['break', 'abort']) {
  test(`balanced streams - leaving early (${leave}) cancels at the producer and gives the connection back`, async (t) => {
    const a = await producerPeer(t, oneThenHold('a'));
    const b = await producerPeer(t, count('b'));
    const lb = await balanced(t, [a, b]);
    const cancelled = nextReceived(a, (m) => m.message_type === 'cancel');
    const controller = new AbortController();
    const { items, error } = await drain(
      (async function* () {
        for await (const item of lb.stream('ticks', null, { signal: controller.signal })) {
          yield item;
          if (leave === 'break') break;
          controller.abort();
        }
      })()
    );
    assert.deepEqual(items, ['a:0']);
    assert.equal(error === null ? null : error.code, leave === 'break' ? null : ErrorCode.CANCELLED);
    assert.equal((await cancelled).reply_to, a.streams[0].message_id);
    assert.equal(inUse(lb), 0);
    assert.deepEqual(lb.serverStats().map((s) => [s.requests, s.errors, s.inFlight]), [[1, 0, 0], [0, 0, 0]]); // leaving is no failure
  });
}

test('balanced streams - other errors before the first item are not failed over', async (t) => {
  const a = await producerPeer(t, (msg, out) => out.fail(ErrorCode.HANDLER_ERROR));
  const b = await producerPeer(t, count('b'));
  const lb = await balanced(t, [a, b]);
  const { error } = await drain(lb.stream('ticks', { n: 1 }));
  assert.equal(error.code, ErrorCode.HANDLER_ERROR);
  assert.equal(b.streams.length, 0);
  assert.throws(() => lb.stream('ticks', null, { window: 0 }), RangeError); // arguments at the call
  assert.equal(inUse(lb), 0);
});

test('service streams - started on first use, failed over, counted as one call whose latency ends at the first item', async (t) => {
  const a = await producerPeer(t, nobody);
  const b = await producerPeer(t, (msg, out) => {
    setTimeout(() => {
      out.item(0); // 50 ms: the latency counted
      setTimeout(() => {
        out.item(1);
        out.end();
      }, 150);
    }, 50);
  });
  const fails = await producerPeer(t, (msg, out) => {
    out.item(0);
    out.fail(msg.channel_id === 'slow' ? ErrorCode.TIMEOUT : ErrorCode.HANDLER_ERROR);
  });
  const gateway = new ServiceClient({ feed: { servers: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`], timeout: 2000 }, other: { port: fails.port, host: '127.0.0.1' } }, FAST);
  t.after(() => gateway.shutdown());
  assert.throws(() => gateway.stream('billing', 'ticks'), TypeError); // an unknown service, at the call
  assert.deepEqual(await drain(gateway.stream('feed', 'ticks')), { items: [0, 1], error: null });
  const feed = gateway.getMetrics('feed');
  assert.deepEqual([feed.requests, feed.errors, feed.timeouts], [1, 0, 0]); // one stream, however many items
  assert.ok(feed.latencyMs.p50 >= 45 && feed.latencyMs.p50 < 180, `${feed.latencyMs.p50} ms`); // to its first item, not its end
  assert.deepEqual(gateway.status().feed.servers.map((s) => s.errors), [1, 0]); // a had nobody
  assert.equal((await drain(gateway.stream('other', 'boom'))).error.code, ErrorCode.HANDLER_ERROR);
  assert.equal((await drain(gateway.stream('other', 'slow'))).error.code, ErrorCode.TIMEOUT);
  for await (const item of gateway.stream('other', 'ticks')) if (item === 0) break; // leaving: served, no error
  const controller = new AbortController();
  const aborted = gateway.stream('feed', 'ticks', null, { signal: controller.signal }).next();
  controller.abort();
  await assert.rejects(aborted, { name: 'AbortError' }); // before its first item: not counted
  const other = gateway.getMetrics('other');
  assert.deepEqual([other.requests, other.errors, other.timeouts], [3, 2, 1]);
  assert.equal(gateway.getMetrics('feed').requests, 1);
  await gateway.shutdown();
  await assert.rejects(gateway.stream('feed', 'ticks').next(), { code: ErrorCode.NOT_CONNECTED });
});

test('service streams - a reader that leaves while its service starts: no stream is sent, nothing counted or left in flight', async (t) => {
  let accept;
  const hold = new Promise((resolve) => (accept = resolve));
  const peer = await streamingPeer(t, { hold, onRequest: (msg, conn, reply) => reply(null) });
  const gateway = new ServiceClient({ feed: { port: peer.port, host: '127.0.0.1' } }, FAST);
  t.after(() => gateway.shutdown());
  const stream = gateway.stream('feed', 'ticks');
  const first = stream.next(); // waits for the service's start (its handshake is held)
  await until(() => peer.sockets.size === 1);
  assert.deepEqual(await stream.return(), { value: undefined, done: true });
  accept();
  assert.deepEqual(await first, { value: undefined, done: true });
  await until(() => gateway.status().feed.healthy);
  assert.deepEqual(gateway.status().feed.servers.map((s) => [s.requests, s.inFlight]), [[0, 0]]);
  assert.equal(gateway.getMetrics('feed').requests, 0);
  assert.equal(peer.received.filter((m) => m.channel_id === 'ticks').length, 0);
});
