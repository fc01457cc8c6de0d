'use strict';

// LoadBalancedClient (docs/resilience.md §8) over several scripted peers on
// real sockets: distribution per strategy, failover within the deadline,
// health checks taking servers out and back in, registrations everywhere.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { LoadBalancedClient } = require('../lib/load_balanced_client');
const { DEFAULTS } = require('../lib/constants');
const { ErrorCode, FrameError, HandlerError } = require('../lib/errors');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { Peer, waitFor, until, settle, freePort } = require('./helpers');

/** Fast backoff, whichever name the client options give it. */
const FAST = 'initialDelay' in DEFAULTS ? { initialDelay: 20, maxDelay: 50 } : { reconnectDelay: 20, reconnectDelayMax: 50 };

/**
 * A peer that answers every request with `{from: name, payload}`, or as
 * `answer(msg, reply)` decides.
 */
async function namedPeer(t, name, { answer, port = 0 } = {}) {
  const conns = [];
  const peer = new Peer({
    onRequest: (msg, conn, reply) => {
      if (peer.hold) return peer.held.push(() => reply({ from: name, payload: msg.payload }));
      if (answer) return answer(msg, reply);
      reply({ from: name, payload: msg.payload });
    }
  });
  peer.name = name;
  peer.hold = false;
  peer.held = [];
  peer.conns = conns;
  peer.events.on('connection', (conn) => conns.push(conn));
  await peer.listen(port);
  t.after(() => peer.close());
  return peer;
}

/** A started client over `peers`, closed after the test. */
async function balanced(t, peers, options = {}) {
  const servers = peers.map((p) => (p.weight ? { host: '127.0.0.1', port: p.port, weight: p.weight } : `127.0.0.1:${p.port}`));
  const lb = new LoadBalancedClient('app', servers, { healthCheckInterval: 60_000, ...FAST, ...options });
  t.after(() => lb.close());
  await lb.start();
  return lb;
}

/** Sends `n` requests one after the other and counts who answered. */
async function sequential(lb, n) {
  const counts = {};
  for (let i = 0; i < n; i++) {
    const { from } = (await lb.sendRequest('svc.echo', i, 2000)).payload;
    counts[from] = (counts[from] ?? 0) + 1;
  }
  return counts;
}

test('balanced - options are checked', () => {
  assert.throws(() => new LoadBalancedClient('app', []), TypeError);
  assert.throws(() => new LoadBalancedClient('app', ['nope']), TypeError);
  assert.throws(() => new LoadBalancedClient('app', ['a:1'], { strategy: 'best' }), TypeError);
  assert.throws(() => new LoadBalancedClient('app', ['a:1'], { healthCheckInterval: 0 }), TypeError);
  assert.throws(() => new LoadBalancedClient('app', ['a:1'], { host: 'b' }), TypeError);
  assert.throws(() => new LoadBalancedClient('app', ['a:1'], { requestTimeout: 'soon' }), TypeError);
  // A server entry's port is a number, as in Python; the options are lenient (numeric strings, unknown keys only warn).
  assert.throws(() => new LoadBalancedClient('app', ['a:1', { host: 'b', port: '2' }]), TypeError);
  const lenient = new LoadBalancedClient('app', ['a:1', { host: 'b', port: 2 }], { healthCheckInterval: '100', lbBogusOption: 1 });
  assert.equal(lenient.healthCheckInterval, 100);
  assert.deepEqual(lenient.serverStats().map((s) => s.port), [1, 2]);
  assert.equal(new LoadBalancedClient('app', ['a:1']).strategy, 'round_robin');
});

test('balanced - calls before start() or after close() reject with not_connected', async (t) => {
  const a = await namedPeer(t, 'a');
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${a.port}`]);
  await assert.rejects(lb.sendRequest('svc.echo', 1), { code: ErrorCode.NOT_CONNECTED });
  await lb.start();
  assert.equal((await lb.sendRequest('svc.echo', 1)).payload.from, 'a');
  await lb.close();
  await assert.rejects(lb.sendRequest('svc.echo', 1), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(lb.publish('news', 1), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(lb.start(), { code: ErrorCode.NOT_CONNECTED });
});

test('balanced - round robin spreads calls evenly; serverStats() counts them', async (t) => {
  const peers = [await namedPeer(t, 'a'), await namedPeer(t, 'b'), await namedPeer(t, 'c')];
  const lb = await balanced(t, peers);
  assert.deepEqual(await sequential(lb, 30), { a: 10, b: 10, c: 10 });
  const stats = lb.serverStats();
  assert.deepEqual(stats.map((s) => [s.port, s.healthy, s.requests, s.errors, s.inFlight]), peers.map((p) => [p.port, true, 10, 0, 0]));
  assert.ok(stats.every((s) => s.averageLatencyMs >= 0 && s.errorRate === 0 && s.weight === 1));
});

test('balanced - weighted distribution follows the weights', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const c = await namedPeer(t, 'c');
  a.weight = 3;
  b.weight = 1;
  c.weight = 2;
  const lb = await balanced(t, [a, b, c], { strategy: 'weighted' });
  assert.deepEqual(await sequential(lb, 120), { a: 60, b: 20, c: 40 });
});

test('balanced - least connections sends calls to the server with fewer in flight', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { strategy: 'least_connections', maxConnections: 4 });
  a.hold = true;
  b.hold = true;
  // Two slow calls land one on each server; then a finishes its one.
  const slow = [lb.sendRequest('svc.slow', 1, 2000), lb.sendRequest('svc.slow', 2, 2000)];
  await until(() => a.held.length === 1 && b.held.length === 1);
  a.hold = false;
  a.held.shift()();
  await Promise.race(slow);
  // a is idle, b still busy: every new call goes to a.
  assert.deepEqual(await sequential(lb, 10), { a: 10 });
  assert.deepEqual(lb.serverStats().map((s) => s.inFlight), [0, 1]);
  b.held.shift()();
  await Promise.all(slow);
});

test('balanced - calls share each server\'s connection: N calls are all in flight at once with one connection per server', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]); // maxConnections 1 per server
  a.hold = true;
  b.hold = true;
  const N = 40;
  const calls = Array.from({ length: N }, (_, i) => lb.sendRequest('svc.echo', i, 3000));
  // Every request reaches a server before any is answered: nothing waits for a connection.
  await until(() => a.held.length + b.held.length === N);
  assert.deepEqual([a.held.length, b.held.length], [N / 2, N / 2]);
  assert.deepEqual([a.conns.length, b.conns.length], [1, 1]);
  assert.deepEqual(lb.serverStats().map((s) => s.inFlight), [N / 2, N / 2]);
  for (const s of Object.values(lb.poolStats())) {
    assert.deepEqual(s, { total: 1, available: 0, inUse: 1, pending: 0, totalCreated: 1, totalDestroyed: 0 });
  }
  for (const p of [a, b]) p.held.splice(0).forEach((answer) => answer());
  const results = await Promise.all(calls);
  assert.deepEqual(results.map((r) => r.payload.payload), Array.from({ length: N }, (_, i) => i));
  const stats = lb.serverStats();
  assert.deepEqual(stats.map((s) => [s.inFlight, s.requests, s.errors]), [[0, N / 2, 0], [0, N / 2, 0]]);
  for (const s of Object.values(lb.poolStats())) assert.deepEqual([s.available, s.inUse], [1, 0]);
});

test('balanced - random uses the injected source', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { strategy: 'random', random: () => 0.75 });
  assert.deepEqual(await sequential(lb, 5), { b: 5 });
});

test('balanced - a server stopped mid-load: traffic moves to the healthy one, no call fails or outlives its deadline', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { maxConnections: 4 });
  const down = waitFor(lb, 'server_down', 3000);
  const TIMEOUT = 2000;
  const settled = new Map();
  const calls = [];
  let stopped = false;
  for (let i = 0; i < 400; i++) {
    if (i === 200) {
      a.hold = true; // calls in flight on a when it dies
      await until(() => a.held.length > 0);
      stopped = true;
      a.close();
    }
    const start = Date.now();
    const p = lb.sendRequest('svc.echo', i, TIMEOUT).then(
      (res) => ({ ok: true, from: res.payload.from, elapsed: Date.now() - start }),
      (err) => ({ ok: false, code: err.code, elapsed: Date.now() - start })
    );
    p.then((r) => settled.set(i, (settled.get(i) ?? 0) + (r ? 1 : 0)));
    calls.push(p.then((r) => ({ ...r, afterStop: stopped })));
    if (i % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const results = await Promise.all(calls);
  const [event] = await down;
  assert.equal(event.port, a.port);
  assert.deepEqual(results.filter((r) => !r.ok), []);
  assert.ok(results.every((r) => r.elapsed < TIMEOUT), 'no call past its deadline');
  assert.ok(results.filter((r) => !r.afterStop).some((r) => r.from === 'a'));
  assert.ok(results.slice(205).every((r) => r.from === 'b'), 'after the stop only b answers');
  assert.equal(settled.size, 400);
  assert.ok([...settled.values()].every((n) => n === 1));
  const [sa, sb] = lb.serverStats();
  assert.equal(sa.healthy, false);
  assert.equal(sb.healthy, true);
  assert.ok(sa.errors > 0, 'calls in flight on a when it stopped were failed over');
  assert.equal(sa.requests + sb.requests, 400 + sa.errors);
});

test('balanced - health checks take a silent server out and put it back', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { healthCheckInterval: 30, healthCheckTimeout: 100 });
  a.silent = true;
  const [down] = await waitFor(lb, 'server_down', 3000);
  assert.equal(down.port, a.port);
  // The reason, as the Python client gives it (tests/test_pool_open_failures.py).
  assert.equal(down.error.code, 'not_connected');
  assert.equal(down.error.message, 'health check failed: timeout');
  assert.deepEqual(await sequential(lb, 6), { b: 6 });
  a.silent = false;
  const [up] = await waitFor(lb, 'server_up', 3000);
  assert.equal(up.port, a.port);
  assert.deepEqual(await sequential(lb, 6), { a: 3, b: 3 });
});

test('balanced - a server that went away comes back into rotation when it restarts', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { healthCheckInterval: 30, healthCheckTimeout: 200 });
  const port = a.port;
  await a.close();
  await waitFor(lb, 'server_down', 3000);
  assert.deepEqual(await sequential(lb, 4), { b: 4 });
  await namedPeer(t, 'a2', { port });
  await waitFor(lb, 'server_up', 3000);
  assert.deepEqual(await sequential(lb, 4), { a2: 2, b: 2 });
});

test('balanced - no_responders fails over without taking the server out; other errors are returned as they are', async (t) => {
  const a = await namedPeer(t, 'a', {
    answer: (msg, reply) => {
      if (msg.channel_id === 'svc.only_b') reply(null, { error: { code: 'no_responders', message: 'none' } });
      else reply(null, { error: { code: 'handler_error', message: 'bad input', remote_type: 'ValueError' } });
    }
  });
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]);
  for (let i = 0; i < 4; i++) assert.equal((await lb.sendRequest('svc.only_b', i)).payload.from, 'b');
  assert.equal(lb.serverStats()[0].healthy, true);
  // Round robin now points at a: its handler_error is the answer, b never sees the call.
  const before = b.received.filter((m) => m.channel_id === 'svc.fail').length;
  await assert.rejects(lb.sendRequest('svc.fail', 1), { code: ErrorCode.HANDLER_ERROR, remoteType: 'ValueError' });
  assert.equal(b.received.filter((m) => m.channel_id === 'svc.fail').length, before);
});

test('balanced - with every server down: not_connected at once, not at the deadline', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]);
  await a.close();
  await b.close();
  const start = Date.now();
  await assert.rejects(lb.sendRequest('svc.echo', 1, 5000), { code: ErrorCode.NOT_CONNECTED });
  assert.ok(Date.now() - start < 2500);
  await assert.rejects(lb.sendRequest('svc.echo', 1, 5000), { code: ErrorCode.NOT_CONNECTED });
  assert.deepEqual(lb.serverStats().map((s) => s.healthy), [false, false]);
});

test('balanced - start() with no reachable server rejects not_connected; a partial start works', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const port = b.port;
  await b.close();
  const lb = await balanced(t, [a, { port }]);
  assert.deepEqual(lb.serverStats().map((s) => s.healthy), [true, false]);
  assert.deepEqual(await sequential(lb, 3), { a: 3 });
  const none = new LoadBalancedClient('app', [`127.0.0.1:${port}`]);
  t.after(() => none.close());
  await assert.rejects(none.start(), { code: ErrorCode.NOT_CONNECTED });
});

test('balanced - start() with no server names the first server\'s failure, its cause as connect() gives it', async (t) => {
  // docs/resilience.md §8, security.md §2.2: a TLS server answering in TLS, then nobody listening.
  const alerting = net.createServer((socket) => socket.once('data', () => socket.end(Buffer.from('15030300020246', 'hex'))));
  await new Promise((resolve) => alerting.listen(0, '127.0.0.1', resolve));
  t.after(() => alerting.close());
  const tlsPort = alerting.address().port;
  const closedPort = await freePort();
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${tlsPort}`, `127.0.0.1:${closedPort}`], { healthCheckInterval: 60_000, reconnect: false });
  t.after(() => lb.close());
  await assert.rejects(lb.start(), (err) => {
    assert.equal(err.code, ErrorCode.NOT_CONNECTED);
    assert.ok(err.message.startsWith(`no server could be reached: 127.0.0.1:${tlsPort} answered in TLS and this client has TLS off (set tls): `), err.message);
    assert.ok(err.cause instanceof FrameError, String(err.cause)); // not the NotConnectedError wrapping it
    return true;
  });
  const refused = new LoadBalancedClient('app', [`127.0.0.1:${closedPort}`], { healthCheckInterval: 60_000, reconnect: false });
  t.after(() => refused.close());
  await assert.rejects(refused.start(), (err) => err.message.startsWith(`no server could be reached: cannot connect to 127.0.0.1:${closedPort}`) && err.cause.code === 'ECONNREFUSED');
});

test('balanced - publish goes to one server; subscribe and serve apply on every server', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]);
  await lb.publish('news.x', 1);
  await lb.publish('news.x', 2);
  const published = (p) => p.received.filter((m) => m.message_type === 'publish').length;
  await until(() => published(a) + published(b) === 2);
  assert.deepEqual([published(a), published(b)], [1, 1]); // one server each, round robin

  const got = [];
  await lb.subscribe('news.>', (msg) => got.push(msg.payload));
  await lb.serve('svc.node', (msg) => ({ served: msg.payload }));
  for (const p of [a, b]) {
    assert.ok(p.received.some((m) => m.message_type === 'subscribe' && m.channel_id === 'news.>'));
    assert.ok(p.received.some((m) => m.message_type === 'subscribe' && m.channel_id === 'svc.node' && m.payload.serve));
  }
  // Each server publishes to all its connections: the handler runs once per server.
  for (const p of [a, b]) {
    for (const conn of p.conns) conn.socket.write(encodeFrame(encodeMessage(buildMessage('publish', 'app', 'news.y', p.name))));
  }
  await until(() => got.length === 2);
  assert.deepEqual(got.sort(), ['a', 'b']);
  // And requests from either server reach the responder.
  for (const p of [a, b]) {
    const req = buildMessage('request', 'app', 'svc.node', p.name);
    const answered = new Promise((resolve) =>
      p.events.on('message', (m) => m.reply_to === req.message_id && !m.error && resolve(m.payload))
    );
    for (const conn of p.conns) conn.socket.write(encodeFrame(encodeMessage(req)));
    assert.deepEqual(await answered, { served: p.name });
  }
  await assert.rejects(lb.serve('svc.node', () => 1), { code: 'already_serving', name: 'AlreadyServingError' });
});

test('balanced - a server unreachable at subscribe time gets the subscription when it comes back', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const port = b.port;
  const lb = await balanced(t, [a, b], { healthCheckInterval: 30, healthCheckTimeout: 200 });
  await b.close();
  await waitFor(lb, 'server_down', 3000);
  await lb.subscribe('news.>', () => {}, { timeout: 500 });
  const b2 = await namedPeer(t, 'b2', { port });
  const sub = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no subscribe reached the restarted server')), 3000);
    b2.events.on('message', (m) => {
      if (m.message_type === 'subscribe' && m.channel_id === 'news.>') {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
  assert.equal(sub.channel_id, 'news.>');
  await lb.unsubscribe('news.>');
});

test('balanced - a registration no server takes is not kept', async (t) => {
  const a = await namedPeer(t, 'a');
  a.refuse = () => true;
  const lb = await balanced(t, [a]);
  await assert.rejects(lb.subscribe('secret.>', () => {}), { code: ErrorCode.FORBIDDEN });
  await assert.rejects(lb.serve('secret.x', () => {}), { code: ErrorCode.FORBIDDEN });
  a.refuse = () => false;
  await lb.serve('secret.x', () => 1); // not "already served"
});

test('balanced - unserve()/unsubscribe() while serve()/subscribe() are still connecting: nothing stays registered', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]);
  // The first registration opens each server's registration connection: still connecting when withdrawn.
  const serving = lb.serve('jobs.lb', () => 'from lb');
  const subscribing = lb.subscribe('lb.ghost', () => {});
  await lb.unserve('jobs.lb');
  await lb.unsubscribe('lb.ghost');
  await Promise.all([serving, subscribing]); // resolved: nothing left to register
  await lb.subscribe('marker', () => {}); // what was sent before it has arrived
  const net = (p, channel) =>
    p.received.filter((m) => m.channel_id === channel && m.message_type === 'subscribe').length -
    p.received.filter((m) => m.channel_id === channel && m.message_type === 'unsubscribe').length;
  for (const p of [a, b]) {
    assert.ok(p.received.some((m) => m.message_type === 'subscribe' && m.channel_id === 'marker'), p.name);
    assert.deepEqual([net(p, 'jobs.lb'), net(p, 'lb.ghost')], [0, 0], p.name);
  }
  await lb.serve('jobs.lb', () => 1); // not "already served"
});

test('balanced - sendRequest()/request() take the options object third, as IPCClient does; signal, priority and coalesce work', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]);
  const requests = () => [...a.received, ...b.received].filter((m) => m.message_type === 'request' && m.channel_id === 'svc.echo');
  assert.equal((await lb.request('svc.echo', 1, { timeout: 2000, headers: { k: 'v' } })).payload, 1);
  assert.equal((await lb.sendRequest('svc.echo', 2, { priority: 1 })).payload.payload, 2);
  const [first] = requests();
  assert.equal(first.headers.k, 'v');
  assert.ok(first.timeout_ms <= 2000, `timeout_ms ${first.timeout_ms}`);
  await assert.rejects(lb.request('svc.echo', 3, { timeout: -1 }), TypeError);

  a.hold = b.hold = true;
  const controller = new AbortController();
  const call = lb.request('svc.echo', 'stop', { timeout: 5000, signal: controller.signal });
  await until(() => a.held.length + b.held.length === 1);
  controller.abort();
  await assert.rejects(call, { name: 'AbortError', code: ErrorCode.CANCELLED });
  assert.equal(requests().filter((m) => m.payload === 'stop').length, 1); // given up, not tried elsewhere
  for (const release of [...a.held.splice(0), ...b.held.splice(0)]) release();

  // coalesce: calls the balancer sends to the same server share its round trip
  const one = await balanced(t, [a]);
  a.hold = true;
  const shared = [one.request('svc.echo', 'same', { coalesce: true })];
  await until(() => a.held.length === 1);
  shared.push(one.request('svc.echo', 'same', 5000, { coalesce: true })); // while the first is in flight
  await settle();
  for (const release of a.held.splice(0)) release();
  assert.deepEqual((await Promise.all(shared)).map((r) => r.payload), ['same', 'same']);
  assert.equal(requests().filter((m) => m.payload === 'same').length, 1); // one round trip for both
});

test('balanced - a throwing server_down listener in a health check goes to "error", never to an unhandled rejection; checks go on', async (t) => {
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { healthCheckInterval: 30, healthCheckTimeout: 200 });
  const bug = new Error('listener bug');
  lb.on('server_down', () => {
    throw bug;
  });
  const failed = waitFor(lb, 'error', 3000);
  await a.close();
  const [err] = await failed;
  assert.equal(err, bug);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(unhandled, []);
  assert.equal(lb.serverStats().find((s) => s.port === a.port).healthy, false);
});

test('balanced - a server_down listener throwing a value that is not an Error: "error" gets a HandlerError, the value its cause', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b], { healthCheckInterval: 30, healthCheckTimeout: 200 });
  lb.on('server_down', () => {
    throw 'listener bug';
  });
  const failed = waitFor(lb, 'error', 3000);
  await a.close();
  const [err] = await failed;
  assert.ok(err instanceof HandlerError, String(err));
  assert.deepEqual([err.code, err.message, err.remoteType, err.cause], [ErrorCode.HANDLER_ERROR, 'listener bug', 'string', 'listener bug']);
});

test('balanced - notify() takes a signal as publish() does: aborted, it is given up and no server gets it', async (t) => {
  const a = await namedPeer(t, 'a');
  const b = await namedPeer(t, 'b');
  const lb = await balanced(t, [a, b]);
  await assert.rejects(lb.notify('jobs.run', 1, { signal: AbortSignal.abort() }), { name: 'AbortError', code: ErrorCode.CANCELLED });
  await assert.rejects(lb.publish('jobs.run', 1, { signal: AbortSignal.abort() }), { name: 'AbortError', code: ErrorCode.CANCELLED });
  await lb.notify('jobs.run', 2, { signal: new AbortController().signal });
  await until(() => [...a.received, ...b.received].some((m) => m.message_type === 'notification'));
  assert.deepEqual([...a.received, ...b.received].filter((m) => m.channel_id === 'jobs.run').map((m) => m.payload), [2]);
});
