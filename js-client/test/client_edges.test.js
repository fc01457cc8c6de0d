'use strict';

// IPCClient's edge cases on real sockets against a scripted peer
// (test/helpers.js): listeners that disconnect, late and unsolicited
// answers, version-1 peers, refusals made locally, and held work under
// load (its ordinary behaviours: test/client.test.js).

const test = require('node:test');
const assert = require('node:assert/strict');
const { ErrorCode, UnauthorizedError, AlreadyServingError, IpcError, ForbiddenError, HandlerError, NoRespondersError } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { peerAndClient: setup, waitFor, nextReceived, until } = require('./helpers');

/** Writes messages to the peer's (only) client socket, in one write. */
function writeTo(peer, ...msgs) {
  [...peer.sockets][0].write(Buffer.concat(msgs.map((m) => encodeFrame(encodeMessage(m)))));
}

/** Counts a client's events by name. */
function countEvents(client, names) {
  const counts = Object.fromEntries(names.map((n) => [n, 0]));
  for (const n of names) client.on(n, () => counts[n]++);
  return counts;
}

test('client - disconnect() from a disconnected listener: no crash, disconnected once, no reconnect', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  const counts = countEvents(client, ['disconnected', 'close', 'reconnecting']);
  const states = [];
  client.on('disconnected', () => {
    states.push(client.state);
    client.disconnect();
  });
  const closed = waitFor(client, 'close');
  peer.drop();
  await closed;
  await new Promise((r) => setTimeout(r, 50)); // let the socket's close handling finish
  assert.deepEqual(counts, { disconnected: 1, close: 1, reconnecting: 0 });
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(states, ['reconnecting']); // the state had changed before the event
  await assert.rejects(client.sendRequest('a', 1), { code: ErrorCode.NOT_CONNECTED });
});

test('client - disconnect() from an error listener (heartbeat timeout): no crash, disconnected once', async (t) => {
  const { peer, client } = await setup(t, { heartbeatIntervalMs: 50 });
  await client.connect();
  const counts = countEvents(client, ['disconnected', 'close', 'reconnecting']);
  const errors = [];
  client.on('error', (err) => {
    errors.push(err.code);
    client.disconnect();
  });
  peer.silent = true;
  await waitFor(client, 'close', 3000);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(errors, [ErrorCode.TIMEOUT]);
  assert.deepEqual(counts, { disconnected: 1, close: 1, reconnecting: 0 });
  assert.equal(client.state, 'disconnected');
});

test('client - disconnect() from a disconnected listener when reconnection is off', async (t) => {
  const { peer, client } = await setup(t, {}, { reconnect: false });
  await client.connect();
  const counts = countEvents(client, ['disconnected', 'close']);
  client.on('disconnected', () => client.disconnect());
  peer.drop();
  await waitFor(client, 'close');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(counts, { disconnected: 1, close: 1 });
  assert.equal(client.state, 'disconnected');
});

test('client - a late error answer to a timed-out request is dropped; an unsolicited error frame is not', async (t) => {
  let held = null;
  const { peer, client } = await setup(t, { onRequest: (msg) => (held = msg) });
  await client.connect();
  const errors = [];
  client.on('error', (err) => errors.push(err));
  await assert.rejects(client.sendRequest('slow', null, 100), { code: ErrorCode.TIMEOUT });
  assert.ok(held);
  const late = buildMessage('response', 'app', 'slow', null, {
    reply_to: held.message_id,
    error: { code: 'timeout', message: 'the handler did not finish within 100 ms' }
  });
  const unsolicited = buildMessage('response', 'app', 'system', null, { error: { code: 'bad_message', message: 'nope' } });
  const first = waitFor(client, 'error');
  writeTo(peer, late, unsolicited); // in order, in one write
  const [err] = await first;
  assert.equal(err.code, ErrorCode.BAD_MESSAGE);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(errors.map((e) => e.code), [ErrorCode.BAD_MESSAGE]);
});

test('client - the set of expired request ids is bounded', async (t) => {
  const { client } = await setup(t);
  for (let i = 0; i < 3000; i++) client._calls.rememberSettled(`id-${i}`);
  assert.equal(client._calls.settled.size, 1024);
  assert.ok(!client._calls.settled.has('id-0'));
  assert.ok(client._calls.settled.has('id-2999'));
});

test('client - version 1: an {"error": {...}} payload rejects with the matching error (§10)', async (t) => {
  const answers = {
    fail: { error: { code: 'handler_error', message: 'boom', remote_type: 'ValueError' } },
    none: { error: { code: 'no_responders', message: 'nobody' } },
    slow: { error: { code: 'timeout', message: 'late' } },
    more: { error: { code: 'x', message: 'y' }, other: 1 },
    text: { error: 'not an object' }
  };
  const { client } = await setup(t, { legacy: true, onRequest: (msg, conn, reply) => reply(answers[msg.channel_id] ?? msg.payload) });
  await client.connect();
  assert.equal(client.getConnectionInfo().protocol, 1);
  await assert.rejects(client.sendRequest('fail', null), (err) => err instanceof HandlerError && err.remoteType === 'ValueError' && err.message === 'boom');
  await assert.rejects(client.sendRequest('none', null), (err) => err instanceof NoRespondersError);
  await assert.rejects(client.sendRequest('slow', null), { code: ErrorCode.TIMEOUT, remote: true });
  // Only a payload that is exactly {"error": {...}} is an error answer.
  assert.deepEqual((await client.sendRequest('more', null)).payload, answers.more);
  assert.deepEqual((await client.sendRequest('text', null)).payload, answers.text);
  assert.deepEqual((await client.sendRequest('echo', { a: 1 })).payload, { a: 1 });
});

test('client - version 2: an {"error": {...}} payload is an ordinary result', async (t) => {
  const payload = { error: { code: 'handler_error', message: 'data, not an error' } };
  const { client } = await setup(t, { onRequest: (msg, conn, reply) => reply(payload) });
  await client.connect();
  assert.deepEqual((await client.sendRequest('x', null)).payload, payload);
});

test('client - connectionId is the current connection\'s id, the one a 1.1.x handler answers (docs/legacy.md)', async (t) => {
  const { peer, client } = await setup(t, { legacy: true, onRequest: (msg, conn, reply) => reply(msg.payload.connection_id) });
  assert.equal(client.connectionId, null);
  await client.connect();
  const hello = peer.received.find((m) => m.payload && m.payload.action === 'connect');
  assert.equal(client.connectionId, hello.payload.connection_id);
  assert.equal(client.connectionId, client.getConnectionInfo().connectionId);
  await client.subscribe('news', () => {});
  await until(() => peer.received.some((m) => m.message_type === 'subscribe'), 2000, 'the subscribe frame');
  assert.equal(peer.received.find((m) => m.message_type === 'subscribe').payload.connection_id, client.connectionId);
  // The 1.1.x README's Express example: the request names the connection to answer.
  assert.equal((await client.sendRequest('chat', { connection_id: client.connectionId })).payload, client.connectionId);
  assert.throws(() => { 'use strict'; client.connectionId = 'other'; }, TypeError); // read-only
  await client.disconnect();
  assert.equal(client.connectionId, null);
});

test('client - version 1: health()/healthCheck() report the connection state without pinging', async (t) => {
  const { peer, client } = await setup(t, { legacy: true });
  await client.connect();
  const health = await client.health({ timeout: 300 });
  assert.equal(health.healthy, true);
  assert.equal(health.latencyMs, null);
  assert.equal(health.state, 'connected');
  assert.equal(await client.healthCheck({ timeout: 300 }), true);
  assert.ok(!peer.received.some((m) => m.payload && m.payload.action === 'ping'));
});

test('client - publish on a reserved channel throws forbidden at the call (§4.4)', async (t) => {
  const { peer, client } = await setup(t);
  assert.throws(() => client.publish('system.x', 1), (err) => err instanceof ForbiddenError && err.code === ErrorCode.FORBIDDEN);
  await client.connect();
  const before = peer.received.length;
  for (const channel of ['system', 'system.x', '$sys', '$sys.services']) {
    assert.throws(() => client.publish(channel, 1), { code: ErrorCode.FORBIDDEN }, channel);
    assert.throws(() => client.publish(channel, 1, { ack: true }), { code: ErrorCode.FORBIDDEN }, channel);
  }
  assert.equal(peer.received.length, before);
  await client.publish('systems.x', 1); // only the first token counts
  await client.publish('sys.x', 1);
  await nextReceived(peer, (m) => m.channel_id === 'sys.x');
});

test('client - serve() twice on the same channel rejects with AlreadyServingError; the first handler stays', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  const first = () => 1;
  await client.serve('svc', first);
  await assert.rejects(
    client.serve('svc', () => 2),
    (err) => err instanceof AlreadyServingError && err instanceof IpcError && err.code === ErrorCode.ALREADY_SERVING && err.channel === 'svc'
  );
  assert.equal(client._subs.responders.get('svc'), first);
  // Also while the first registration still waits for its ack.
  const a = client.serve('svc2', () => 'a');
  await assert.rejects(client.serve('svc2', () => 'b'), AlreadyServingError);
  await a;
  assert.equal(peer.received.filter((m) => m.message_type === 'subscribe' && m.channel_id === 'svc2').length, 1);
  await client.unserve('svc');
  await client.serve('svc', () => 3); // served again after unserve()
});

test('client - the server advertises heartbeat_interval_ms 0: no heartbeat unless the options set one', async (t) => {
  const { client } = await setup(t, { heartbeatIntervalMs: 0 });
  await client.connect();
  const info = client.getConnectionInfo();
  assert.equal(info.heartbeatIntervalMs, null);
  assert.equal(info.heartbeatTimeoutMs, null);
  assert.equal(client._conn.heartbeat, null);
  assert.equal(client._conn._heartbeatTimer, null);
});

test('client - an explicit heartbeatInterval pings even when the server has heartbeats off', async (t) => {
  const { peer, client } = await setup(t, { heartbeatIntervalMs: 0 }, { heartbeatInterval: 50 });
  await client.connect();
  assert.equal(client.getConnectionInfo().heartbeatIntervalMs, 50);
  peer.silent = true;
  await nextReceived(peer, (m) => m.payload && m.payload.action === 'ping', 2000);
});

test('client - an unauthorized handshake on reconnection gives up at once', async (t) => {
  let connects = 0;
  const refuse = (msg, conn) => {
    if (++connects === 1) return false;
    conn.send(buildMessage('response', msg.app_id, 'system', null, { reply_to: msg.message_id, error: { code: 'unauthorized', message: 'bad token' } }));
    conn.socket.end();
    return true;
  };
  const { peer, client } = await setup(t, { onConnect: refuse }, { maxRetries: 10 });
  await client.connect();
  const counts = countEvents(client, ['reconnecting', 'reconnected', 'close']);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  peer.drop();
  await waitFor(client, 'close', 3000);
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(counts, { reconnecting: 1, reconnected: 0, close: 1 });
  assert.equal(connects, 2);
  assert.ok(errors.at(-1).cause instanceof UnauthorizedError, String(errors.at(-1)));
  await assert.rejects(client.sendRequest('a', 1), { code: ErrorCode.NOT_CONNECTED });
});

test('client - a responder awaiting its own request completes under load with a small high water mark', async (t) => {
  const { peer, client } = await setup(
    t,
    { onRequest: (msg, conn, reply) => setTimeout(() => reply(msg.payload * 10), 2) },
    { maxConcurrentHandlers: 2, requestTimeout: 3000 }
  );
  await client.connect();
  let active = 0;
  let most = 0;
  await client.serve('outer', async (msg) => {
    most = Math.max(most, ++active);
    try {
      return (await client.sendRequest('inner', msg.payload)).payload + 1;
    } finally {
      active--;
    }
  });
  const requests = Array.from({ length: 30 }, (_, i) => buildMessage('request', 'app', 'outer', i));
  const answers = new Map();
  const done = new Promise((resolve) => {
    peer.events.on('message', (m) => {
      if (m.message_type === 'response' && m.channel_id === 'outer') answers.set(m.reply_to, m);
      if (answers.size === requests.length) resolve();
    });
  });
  writeTo(peer, ...requests);
  await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`${answers.size} answers`)), 2500))]);
  for (const [i, req] of requests.entries()) {
    const res = answers.get(req.message_id);
    assert.equal(res.error, undefined, JSON.stringify(res.error));
    assert.equal(res.payload, i * 10 + 1);
  }
  assert.equal(most, 2); // never more than maxConcurrentHandlers handlers at once
  assert.equal(client._conn._socket.isPaused(), false);
  assert.equal(client.getConnectionInfo().heldMessages, 0);
});

test('client - held requests: responses and pings still flow, however many are held; the socket is never paused', async (t) => {
  const { peer, client } = await setup(t, { onRequest: (msg, conn, reply) => reply('inner') }, { maxConcurrentHandlers: 1 });
  await client.connect();
  const release = [];
  await client.serve('hang', (msg) => new Promise((resolve) => release.push(() => resolve(msg.payload))));
  const answered = [];
  peer.events.on('message', (m) => {
    if (m.message_type === 'response' && m.channel_id === 'hang') answered.push(m.payload);
  });
  writeTo(peer, ...[0, 1, 2].map((i) => buildMessage('request', 'app', 'hang', i)));
  await until(() => client.getConnectionInfo().heldMessages === 2, 2000, 'two held requests');
  assert.equal(release.length, 1);
  // Reading goes on: a server ping is answered and our own request gets its reply.
  const ping = buildMessage('request', 'app', 'system', { action: 'ping' });
  const pong = nextReceived(peer, (m) => m.reply_to === ping.message_id);
  writeTo(peer, ping);
  assert.deepEqual((await pong).payload, { status: 'pong' });
  assert.equal((await client.sendRequest('other', null, 2000)).payload, 'inner');
  // Far past 4 x maxConcurrentHandlers held requests, reading still goes on.
  writeTo(peer, ...[3, 4, 5, 6, 7].map((i) => buildMessage('request', 'app', 'hang', i)));
  await until(() => client.getConnectionInfo().heldMessages === 7, 2000, 'seven held requests');
  assert.equal(client._conn._socket.isPaused(), false);
  const ping2 = buildMessage('request', 'app', 'system', { action: 'ping' });
  const pong2 = nextReceived(peer, (m) => m.reply_to === ping2.message_id);
  writeTo(peer, ping2);
  assert.deepEqual((await pong2).payload, { status: 'pong' });
  assert.equal((await client.sendRequest('other', null, 2000)).payload, 'inner');
  // Each finished handler lets the next held request in, in arrival order.
  while (answered.length < 8) {
    if (release.length > 0) release.shift()();
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.deepEqual(answered, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(client.getConnectionInfo().heldMessages, 0);
});

test('client - while a call of ours waits for its answer, a large backlog is held without pausing, then drained in order', async (t) => {
  let heldCall = null;
  const { peer, client } = await setup(t, { onRequest: (msg, conn, reply) => (heldCall = reply) }, { maxConcurrentHandlers: 1 });
  await client.connect();
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  await client.serve('q', async (msg) => {
    if (msg.payload === 0) await gate;
    return msg.payload;
  });
  const outstanding = client.sendRequest('hold', null, 10000);
  await until(() => heldCall !== null, 2000, 'the held call');
  const n = 3000;
  const answered = [];
  const done = new Promise((resolve) => {
    peer.events.on('message', (m) => {
      if (m.message_type === 'response' && m.channel_id === 'q' && answered.push(m.payload) === n) resolve();
    });
  });
  writeTo(peer, ...Array.from({ length: n }, (_, i) => buildMessage('request', 'app', 'q', i)));
  await until(() => client.getConnectionInfo().heldMessages === n - 1, 5000, 'the backlog');
  assert.equal(client._conn._socket.isPaused(), false); // the answer to 'hold' must stay readable
  open();
  await done;
  assert.deepEqual(answered, Array.from({ length: n }, (_, i) => i));
  assert.equal(client.getConnectionInfo().heldMessages, 0);
  heldCall('released');
  assert.equal((await outstanding).payload, 'released');
});

test('client - disconnect() from a reconnecting listener stops at once, without another attempt', async (t) => {
  const { peer, client } = await setup(t, {}, { initialDelay: 5000, maxDelay: 5000 });
  await client.connect();
  const counts = countEvents(client, ['reconnecting', 'close', 'disconnected']);
  client.on('reconnecting', () => client.disconnect());
  const connects = () => peer.received.filter((m) => m.payload && m.payload.action === 'connect').length;
  const before = connects();
  const started = Date.now();
  peer.drop();
  await waitFor(client, 'close', 2000);
  await until(() => client._connecting === null, 1000, 'the reconnect loop to end'); // not after its 5 s sleep
  assert.ok(Date.now() - started < 2500);
  assert.deepEqual(counts, { reconnecting: 1, close: 1, disconnected: 1 });
  assert.equal(connects(), before);
  assert.equal(client.state, 'disconnected');
});

test('client - frames arriving after disconnect() run no handler; the next connect() delivers again, and old requests are never answered on it', async (t) => {
  const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 2 });
  const conns = [];
  peer.events.on('connection', (c) => conns.push(c));
  await client.connect();
  const ran = [];
  await client.serve('work', async (msg) => {
    ran.push(msg.payload);
    await new Promise((r) => setImmediate(r));
    return msg.payload;
  });
  const old = conns[0];
  const late = [0, 1, 2].map((i) => buildMessage('request', 'app', 'work', `old-${i}`));
  const lateNotes = [0, 1, 2].map((i) => buildMessage('notification', 'app', 'work', `old-note-${i}`));
  const closing = client.disconnect();
  for (const m of [...late, ...lateNotes]) old.send(m); // the server has not noticed the close yet
  await closing;
  assert.deepEqual(ran, []);
  assert.equal(client.getConnectionInfo().runningHandlers, 0);
  assert.equal(client.getConnectionInfo().heldMessages, 0);
  await client.connect();
  assert.equal(client.getConnectionInfo().runningHandlers, 0);
  const fresh = buildMessage('request', 'app', 'work', 'new');
  const answer = nextReceived(peer, (m) => m.reply_to === fresh.message_id, 2000);
  conns.at(-1).send(fresh);
  assert.equal((await answer).payload, 'new');
  const oldIds = new Set(late.map((m) => m.message_id));
  assert.equal(peer.received.filter((m) => oldIds.has(m.reply_to)).length, 0);
  assert.deepEqual(ran, ['new']);
});

test('client - a publish with ack to a version-1 server is counted as sent and delivered once', async (t) => {
  const { peer, client } = await setup(t, { legacy: true });
  await client.connect();
  const received = nextReceived(peer, (m) => m.message_type === 'publish' && m.channel_id === 'feed');
  assert.deepEqual(await client.publish('feed', 1, { ack: true }), { delivered: null });
  await received;
  const m = client.getMetrics();
  assert.equal(m.messagesSent, 1);
  assert.equal(m.messagesDelivered, 1);
  assert.equal(m.messagesFailed, 0);
});

test('client - a timeout answer counts as failed, like a local timeout; other error answers as delivered', async (t) => {
  // The server answers `timeout` at the deadline this client's timer has too (docs/protocol.md §6.5):
  // here it answers first, long before the local timer, as it does when the client's loop wakes late.
  const onRequest = (msg, conn, reply) =>
    msg.channel_id === 'expire'
      ? reply(null, { error: { code: 'timeout', message: 'no answer from the responder within 5000 ms' } })
      : reply(null, { error: { code: 'handler_error', message: 'boom' } });
  const { client } = await setup(t, { onRequest });
  await client.connect();
  for (let i = 0; i < 3; i++) {
    await assert.rejects(client.sendRequest('expire', i, 5000), (err) => err.code === ErrorCode.TIMEOUT && err.remote === true);
  }
  await assert.rejects(client.sendRequest('boom', 0, 5000), { code: ErrorCode.HANDLER_ERROR });
  const m = client.getMetrics();
  assert.deepEqual([m.messagesSent, m.messagesDelivered, m.messagesFailed], [4, 1, 3]); // as tests/test_client_shared_rules.py
});
