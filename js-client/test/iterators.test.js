'use strict';

// Subscriptions and served requests as async iterators (lib/iterators.js,
// lib/served_requests.js) on real sockets against a scripted peer
// (test/helpers.js) that publishes and forwards requests by hand; against
// the real Python server in interop-tests/test_js_iterators.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ErrorCode, SlowConsumerError } = require('..');
const { buildMessage } = require('../lib/envelope');
const { now } = require('../lib/connection');
const { Peer, waitFor, nextReceived, until } = require('./helpers');

/**
 * A peer, a connected client, and the peer's side of the client's latest connection.
 */
async function setup(t, clientOptions = {}) {
  const peer = new Peer();
  const conns = [];
  peer.events.on('connection', (conn) => conns.push(conn));
  const port = await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port, initialDelay: 20, maxDelay: 50, ...clientOptions });
  await client.connect();
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  const last = () => conns[conns.length - 1];
  const publish = (channel, payload) => last().send(buildMessage('publish', 'app', channel, payload));
  let ids = 0;
  /** Forwards a request to the client; resolves with the client's response. */
  const request = (channel, payload, timeoutMs = 5000) => {
    const msg = buildMessage('request', 'app', channel, payload, { message_id: `r${++ids}`, timeout_ms: timeoutMs });
    const answered = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === msg.message_id);
    last().send(msg);
    return answered;
  };
  /** Forwards a request to the client without waiting for an answer; returns its id. */
  const forward = (channel, payload, timeoutMs) => {
    const msg = buildMessage('request', 'app', channel, payload, { message_id: `r${++ids}`, timeout_ms: timeoutMs });
    last().send(msg);
    return msg.message_id;
  };
  return { peer, client, publish, request, forward };
}

const unsubscribed = (peer, channel) => nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === channel);

// ------------------------------------------------------------------ subscriptions

test('subscription - yields the publishes in order; break unsubscribes', async (t) => {
  const { peer, client, publish } = await setup(t);
  const sub = client.subscription('orders.*');
  assert.equal(await sub.ready(), sub);
  for (let i = 0; i < 3; i++) publish(`orders.${i}`, { i });
  const gone = unsubscribed(peer, 'orders.*');
  const got = [];
  for await (const msg of sub) {
    got.push([msg.channel_id, msg.payload.i]);
    if (got.length === 3) break;
  }
  assert.deepEqual(got, [['orders.0', 0], ['orders.1', 1], ['orders.2', 2]]);
  await gone;
  assert.equal(client._subs.subscriptions.size, 0);
  assert.equal(sub.closed, true);
});

test('subscription - drop_oldest keeps the newest, counts and reports once per episode', async (t) => {
  const { client, publish } = await setup(t);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const sub = await client.subscription('feed', { maxBuffered: 3 }).ready();
  for (let i = 0; i < 10; i++) publish('feed', i);
  await until(() => sub.buffered + sub.dropped === 10);
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await sub.next()).value.payload);
  assert.deepEqual(got, [7, 8, 9]);
  assert.equal(sub.dropped, 7);
  assert.equal(client.getMetrics().iteratorDropped, 7);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof SlowConsumerError);
  assert.deepEqual(errors[0].details, { channel: 'feed', max_buffered: 3, overflow: 'drop_oldest', dropped: 1 });
  for (let i = 0; i < 5; i++) publish('feed', i); // caught up: a new episode
  await until(() => sub.dropped === 9);
  assert.equal(errors.length, 2);
  await sub.return();
});

test("subscription - overflow 'error' gives what was buffered, then rejects slow_consumer and unsubscribes", async (t) => {
  const { peer, client, publish } = await setup(t);
  const sub = await client.subscription('feed', { maxBuffered: 2, overflow: 'error' }).ready();
  const gone = unsubscribed(peer, 'feed');
  for (let i = 0; i < 5; i++) publish('feed', i);
  await gone;
  const got = [];
  await assert.rejects(
    (async () => {
      for await (const msg of sub) got.push(msg.payload);
    })(),
    (err) => err instanceof SlowConsumerError && err.code === ErrorCode.SLOW_CONSUMER && err.details.max_buffered === 2
  );
  assert.deepEqual(got, [0, 1]);
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
});

test('subscription - survives a reconnection (restored by the client)', async (t) => {
  const { peer, client, publish } = await setup(t);
  const sub = await client.subscription('orders.>').ready();
  publish('orders.a', 1);
  assert.equal((await sub.next()).value.payload, 1);
  const restored = nextReceived(peer, (m) => m.message_type === 'subscribe' && m.channel_id === 'orders.>');
  peer.drop();
  await waitFor(client, 'reconnected');
  await restored;
  publish('orders.a.b', 2);
  assert.equal((await sub.next()).value.payload, 2);
  await sub.return();
});

test('subscription - the loop ends, after what was buffered, when the client is closed', async (t) => {
  const { client, publish } = await setup(t);
  const sub = await client.subscription('feed').ready();
  publish('feed', 'a');
  publish('feed', 'b');
  await until(() => sub.buffered === 2);
  const waiting = client.subscription('other');
  await waiting.ready();
  const pending = waiting.next();
  await client.disconnect();
  const got = [];
  for await (const msg of sub) got.push(msg.payload);
  assert.deepEqual(got, ['a', 'b']);
  assert.deepEqual(await pending, { value: undefined, done: true });
  assert.equal(client._subs.subscriptions.size, 0); // a later connect() restores neither
});

test('subscription - bad arguments throw TypeError; a refused subscribe rejects next()', async (t) => {
  const { client } = await setup(t);
  assert.throws(() => client.subscription('a', { overflow: 'reject' }), TypeError);
  assert.throws(() => client.subscription('a', { maxBuffered: 0 }), TypeError);
  // a numeric string is refused (unlike timeout's): shown as the string it is, not as the number it looks like
  assert.throws(() => client.subscription('a', { maxBuffered: '5' }), { name: 'TypeError', message: 'maxBuffered must be an integer >= 1, got "5"' });
  assert.throws(() => client.requests('a', { maxBuffered: 2.5 }), { name: 'TypeError', message: 'maxBuffered must be an integer >= 1, got 2.5' });
  assert.throws(() => client.subscription('a', { overflow: 5 }), { message: 'overflow must be one of drop_oldest, error, got 5' });
  assert.throws(() => client.subscription('a', { overflow: '5' }), { message: 'overflow must be one of drop_oldest, error, got "5"' });
  assert.throws(() => client.subscription('a..b'), { code: ErrorCode.BAD_MESSAGE });
  const offline = new IPCClient('app', { port: 1 });
  await assert.rejects(offline.subscription('a').next(), { code: ErrorCode.NOT_CONNECTED });
});

// ------------------------------------------------------------------ served requests

test('requests - respond() and fail() answer, each once', async (t) => {
  const { client, request } = await setup(t);
  const reqs = await client.requests('jobs.*').ready();
  const answer = request('jobs.a', { n: 1 });
  const { value: req } = await reqs.next();
  assert.equal(req.channel, 'jobs.a');
  assert.deepEqual(req.payload, { n: 1 });
  assert.equal(req.respond({ ok: true }), true);
  assert.equal(req.answered, true);
  assert.throws(() => req.respond(2), /already answered/);
  assert.deepEqual((await answer).payload, { ok: true });

  const failed = request('jobs.b', 2);
  (await reqs.next()).value.fail(new RangeError('no'));
  const { error } = await failed;
  assert.equal(error.code, ErrorCode.HANDLER_ERROR);
  assert.equal(error.remote_type, 'RangeError');
  await reqs.return();
});

test('requests - leaving the loop answers what it held responder_lost and unserves', async (t) => {
  const { peer, client, request } = await setup(t);
  const reqs = await client.requests('jobs').ready();
  const answers = [0, 1, 2].map((i) => request('jobs', i));
  await until(() => reqs.buffered === 3);
  const gone = unsubscribed(peer, 'jobs');
  let held = null;
  for await (const req of reqs) {
    held = req;
    break; // holding request 0, unanswered; 1 and 2 still buffered
  }
  for (const answer of answers) assert.equal((await answer).error.code, ErrorCode.RESPONDER_LOST);
  assert.equal((await gone).payload.serve, true);
  assert.equal(held.respond('late'), false);
  assert.equal(client._subs.responders.size, 0);
});

test('requests - drop_oldest answers limit_exceeded; the loop gets the newest', async (t) => {
  const { client, request } = await setup(t);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const reqs = await client.requests('jobs', { maxBuffered: 2 }).ready();
  const answers = [0, 1, 2, 3, 4].map((i) => request('jobs', i));
  await until(() => reqs.buffered + reqs.dropped === 5);
  for (const answer of answers.slice(0, 3)) {
    const { error } = await answer;
    assert.equal(error.code, ErrorCode.LIMIT_EXCEEDED);
    assert.deepEqual(error.details, { channel: 'jobs', max_buffered: 2, overflow: 'drop_oldest' });
  }
  for (let i = 0; i < 2; i++) {
    const { value: req } = await reqs.next();
    req.respond(req.payload * 10);
  }
  assert.deepEqual(await Promise.all(answers.slice(3).map(async (a) => (await a).payload)), [30, 40]);
  assert.equal(client.getMetrics().iteratorDropped, 3);
  assert.deepEqual(errors.map((e) => e.code), [ErrorCode.SLOW_CONSUMER]);
  await reqs.return();
});

test("requests - overflow 'error' refuses the one past the bound, then the loop rejects slow_consumer", async (t) => {
  const { client, request } = await setup(t);
  const reqs = await client.requests('jobs', { maxBuffered: 2, overflow: 'error' }).ready();
  const answers = [0, 1].map((i) => request('jobs', i));
  await until(() => reqs.buffered === 2);
  assert.equal((await request('jobs', 2)).error.code, ErrorCode.LIMIT_EXCEEDED);
  await assert.rejects(
    (async () => {
      for await (const req of reqs) req.respond(req.payload);
    })(),
    SlowConsumerError
  );
  assert.deepEqual(await Promise.all(answers.map(async (a) => (await a).payload)), [0, 1]);
  await until(() => client._subs.responders.size === 0);
});

test('requests - one whose requester gave up, or whose connection is gone, is skipped', async (t) => {
  const { peer, client, request, forward } = await setup(t);
  const reqs = await client.requests('jobs').ready();
  const stale = forward('jobs', 'stale', 1);
  await until(() => reqs.buffered === 1);
  const expires = now() + 2;
  await until(() => now() > expires);
  const fresh = request('jobs', 'fresh');
  await until(() => reqs.buffered === 2);
  const { value: req } = await reqs.next();
  assert.equal(req.payload, 'fresh');
  req.respond('ok');
  assert.equal((await fresh).payload, 'ok');
  // The server answered the stale one `timeout` at its deadline: no late answer (before: a `timeout` written ahead of fresh's).
  assert.deepEqual(peer.received.filter((m) => m.message_type === 'response' && m.reply_to === stale), []);
  assert.equal(client.getMetrics().lateAnswers, 0);

  request('jobs', 'lost').catch(() => {});
  await until(() => reqs.buffered === 1);
  const restored = nextReceived(peer, (m) => m.message_type === 'subscribe' && m.channel_id === 'jobs');
  peer.drop();
  await waitFor(client, 'reconnected');
  await restored;
  const after = request('jobs', 'after');
  const next = (await reqs.next()).value;
  assert.equal(next.payload, 'after');
  next.respond('ok');
  assert.equal((await after).payload, 'ok');
  await reqs.return();
});

test('subscription - a closed iterable never registers', async (t) => {
  const { peer, client } = await setup(t);
  const sub = client.subscription('feed');
  await sub.return();
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
  await sub.ready();
  assert.equal(client._subs.subscriptions.size, 0);
  assert.equal(peer.received.filter((m) => m.message_type === 'subscribe').length, 0);
});

test('subscription - break while the subscription waits for the connection: return() ends at once, nothing is registered', async (t) => {
  let hold = false;
  const held = [];
  const peer = new Peer({ onConnect: (msg, conn) => hold && held.push([msg, conn]) > 0 });
  const port = await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port, initialDelay: 20, maxDelay: 50, connectTimeout: 20000 });
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  await client.connect();
  hold = true; // the next handshake waits for the test
  peer.drop();
  await waitFor(client, 'reconnecting');
  const sub = client.subscription('feed.x');
  const first = sub.next(); // registers: waits for the connection
  let timer;
  const bound = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('return() waited for the connection')), 2000)));
  await Promise.race([sub.return(), bound]).finally(() => clearTimeout(timer));
  assert.deepEqual(await first, { value: undefined, done: true });
  await until(() => held.length > 0, 5000, 'the held handshake');
  hold = false;
  const mark = peer.received.length;
  for (const [msg, conn] of held) peer._answer(conn, msg);
  await waitFor(client, 'reconnected');
  await client.subscribe('marker', () => {}); // everything sent before it has arrived
  assert.deepEqual(peer.received.slice(mark).filter((m) => m.message_type === 'subscribe').map((m) => m.channel_id), ['marker']);
});
