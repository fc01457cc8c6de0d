'use strict';

// Rights that shrink while a client runs (docs/security.md §3.4): a
// registration the server withdraws (`forbidden` with `details.revoked`)
// ends the iterator on it and is dropped by a ConnectionPool too, never
// replayed; a replay refused `forbidden` drops that one registration only;
// a pool that cannot register stops nothing but the denied call; a token
// refused `unauthorized` stops the pool's refill. On real sockets against the
// scripted peer of test/helpers.js; every wait is bounded.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ConnectionPool, ErrorCode, ForbiddenError, NotConnectedError, UnauthorizedError } = require('..');
const { buildMessage } = require('../lib/envelope');
const { Peer, nextReceived, until, waitFor } = require('./helpers');

/** A peer answering requests with their payload, and the connections it accepted. */
async function listen(t, peerOptions = {}) {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.payload), ...peerOptions });
  const conns = [];
  peer.events.on('connection', (conn) => conns.push(conn));
  await peer.listen();
  t.after(() => peer.close());
  return { peer, conns };
}

/** A pool on `peer`, closed after the test. */
function poolOn(t, peer, options = {}) {
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port: peer.port, initialDelay: 20, maxDelay: 50, ...options });
  t.after(() => pool.close());
  return pool;
}

/** The server's frame withdrawing a registration (docs/protocol.md §3). */
function withdraw(conn, operation, channel) {
  const details = { operation, channel, user: 'alice', revoked: true };
  conn.send(buildMessage('response', 'app', channel, null, { error: { code: 'forbidden', message: `may no longer ${operation}`, details } }));
}

/** What the peer received on `channel` from `mark` on. */
function framesOn(peer, mark, channel) {
  return peer.received.slice(mark).filter((m) => m.channel_id === channel).map((m) => m.message_type);
}

const isConnect = (m) => m.message_type === 'request' && m.channel_id === 'system' && m.payload && m.payload.action === 'connect';

test('revoked - a pool drops a withdrawn registration: its replacement registrar never replays it', async (t) => {
  const { peer, conns } = await listen(t);
  const pool = poolOn(t, peer, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const got = [];
  assert.equal(await pool.subscribe('orders.new', () => {}), true);
  assert.equal(await pool.subscribe('keep.>', (msg) => got.push(msg.payload)), true);
  assert.equal(await pool.serve('inv.get', () => 'inv'), true);
  const registrar = conns[conns.length - 1];
  withdraw(registrar, 'subscribe', 'orders.new');
  withdraw(registrar, 'serve', 'inv.get');
  await until(() => !pool._registrations.subscriptions.has('orders.new') && !pool._registrations.services.has('inv.get'), 2000, 'the drops');

  const mark = peer.received.length;
  const replayed = nextReceived(peer, (m) => m.message_type === 'subscribe' && m.channel_id === 'keep.>', 3000);
  peer.drop();
  await replayed;
  assert.equal(await pool.request('echo', 1, 3000), 1);
  assert.deepEqual(framesOn(peer, mark, 'orders.new'), []);
  assert.deepEqual(framesOn(peer, mark, 'inv.get'), []);
  conns[conns.length - 1].send(buildMessage('publish', 'app', 'keep.a', 'k'));
  await until(() => got.length === 1, 2000, 'the publish');
  assert.equal(await pool.serve('inv.get', () => 'again'), true); // withdrawn, so not "already serving"
});

test('revoked - a replay refused forbidden drops that registration, the others are restored', async (t) => {
  let denied = false;
  const { peer } = await listen(t, { refuse: (msg) => denied && msg.message_type === 'subscribe' && msg.channel_id.startsWith('secret.') });
  const pool = poolOn(t, peer, { minConnections: 1, maxConnections: 2 });
  await pool.start();
  assert.equal(await pool.subscribe('secret.x', () => {}), true);
  assert.equal(await pool.serve('secret.svc', () => 1), true);
  assert.equal(await pool.subscribe('keep.>', () => {}), true);
  denied = true;
  const errors = [];
  pool.on('error', (err) => errors.push(err));
  const mark = peer.received.length;
  const replayed = nextReceived(peer, (m) => m.message_type === 'subscribe' && m.channel_id === 'keep.>', 3000);
  peer.drop();
  await replayed;
  assert.equal(await pool.request('echo', 2, 3000), 2);
  await until(() => errors.length === 2, 2000, 'the two refusals reported');
  assert.ok(errors.every((err) => err instanceof ForbiddenError));
  const reg = pool._registrations;
  assert.deepEqual([[...reg.subscriptions.keys()], [...reg.services.keys()]], [['keep.>'], []]);
  assert.equal(framesOn(peer, mark, 'secret.x').length, 1); // tried once, not on every new member
  assert.equal(pool.stats().totalCreated, 2);
});

test('revoked - a denied subscribe/serve with no live member throws forbidden and keeps nothing', async (t) => {
  const { peer } = await listen(t, { refuse: (msg) => msg.message_type === 'subscribe' && msg.channel_id.startsWith('secret.') });
  const pool = poolOn(t, peer, { minConnections: 0 });
  await pool.start();
  await assert.rejects(pool.subscribe('secret.x', () => {}), (err) => err instanceof ForbiddenError);
  await assert.rejects(pool.serve('secret.svc', () => 1), (err) => err instanceof ForbiddenError);
  const reg = pool._registrations;
  assert.deepEqual([reg.subscriptions.size, reg.services.size], [0, 0]);
  assert.equal(await pool.subscribe('ok.a', () => {}), true);
  assert.equal(await pool.request('echo', 3, 3000), 3);
});

test('revoked - a subscription() iterator withdrawn by the server ends, after what was buffered, with forbidden', async (t) => {
  const { peer, conns } = await listen(t);
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port });
  client.on('error', () => {});
  await client.connect();
  t.after(() => client.disconnect());
  const it = client.subscription('orders.n');
  await it.ready();
  const conn = conns[conns.length - 1];
  conn.send(buildMessage('publish', 'app', 'orders.n', 'first'));
  await until(() => it.buffered === 1, 2000, 'the publish');
  const pending = it.next();
  withdraw(conn, 'subscribe', 'orders.n');
  await waitFor(client, 'error', 2000);
  assert.equal((await pending).value.payload, 'first');
  await assert.rejects(it.next(), (err) => err instanceof ForbiddenError && err.code === ErrorCode.FORBIDDEN);
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  const mark = peer.received.length;
  await it.return(); // already dropped: nothing to withdraw
  assert.equal(await client.request('echo', 4), 4);
  assert.deepEqual(framesOn(peer, mark, 'orders.n'), []);
});

test('revoked - a requests() iterator whose registration is withdrawn ends with forbidden', async (t) => {
  const { peer, conns } = await listen(t);
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port });
  client.on('error', () => {});
  await client.connect();
  t.after(() => client.disconnect());
  const it = client.requests('inv.get');
  await it.ready();
  const pending = it.next();
  withdraw(conns[conns.length - 1], 'serve', 'inv.get');
  await assert.rejects(pending, (err) => err instanceof ForbiddenError);
});

test('revoked - a pool whose token is refused unauthorized stops refilling; calls fail fast', async (t) => {
  let removed = false;
  const onConnect = (msg, conn) => {
    if (!removed) return false;
    conn.send(buildMessage('response', 'app', 'system', null, { reply_to: msg.message_id, error: { code: 'unauthorized', message: 'invalid user or token' } }));
    return true;
  };
  const { peer } = await listen(t, { onConnect });
  const pool = poolOn(t, peer, { minConnections: 1 });
  pool.on('error', () => {});
  await pool.start();
  assert.equal(await pool.subscribe('keep.>', () => {}), true);
  removed = true;
  const refused = nextReceived(peer, isConnect, 3000);
  peer.drop();
  await refused;
  await until(() => pool._opening === 0, 2000, 'the refused open');
  assert.equal(pool._refillTimer, null); // no retry scheduled
  await assert.rejects(
    pool.request('echo', 5, 2000),
    (err) => err instanceof NotConnectedError && err.cause instanceof UnauthorizedError
  );
  assert.equal(pool._refillTimer, null);
  removed = false; // let back in: a caller's open succeeds and the pool carries on
  assert.equal(await pool.request('echo', 6, 3000), 6);
});
