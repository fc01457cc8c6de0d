'use strict';

// ConnectionPool listeners that throw (docs/resilience.md §7): a 'created',
// 'destroyed' or 'connection_lost' listener that throws is reported on the
// pool's 'error' (a process warning with no 'error' listener) and the pool
// goes on: its idle timer closes members, close() closes them all and
// resolves, start() resolves. On real sockets against the scripted peer of
// test/helpers.js; every wait is bounded.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool } = require('..');
const { buildMessage } = require('../lib/envelope');
const { Peer, until, captureWarnings, settle } = require('./helpers');

/** A peer answering requests with their payload, and a pool on it closed after the test. */
async function setup(t, poolOptions) {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.payload) });
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, initialDelay: 20, maxDelay: 50, ...poolOptions });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  return { peer, pool };
}

/** A listener that throws an Error naming `event`. */
const thrower = (event) => () => {
  throw new Error(`${event} listener threw`);
};

test('pool listeners - a throwing "destroyed" listener: the idle timer still closes members, close() closes every one and resolves', async (t) => {
  const { peer, pool } = await setup(t, { minConnections: 1, maxConnections: 3, idleTimeout: 40 });
  const errors = [];
  const destroyed = [];
  pool.on('error', (err) => errors.push(err.message));
  pool.on('destroyed', ({ client }) => destroyed.push(client));
  pool.on('destroyed', thrower('destroyed'));
  await pool.start();
  const held = [await pool.acquire(), await pool.acquire(), await pool.acquire()];
  held.forEach((c) => pool.release(c));
  await until(() => pool.stats().total === 1 && destroyed.length === 2, 3000, 'the idle close');
  await until(() => destroyed.every((c) => !c.connected), 3000, 'the idle members closed');
  const [kept] = held.filter((c) => !destroyed.includes(c));
  await pool.close(); // resolves although a listener threw
  assert.equal(kept.connected, false);
  assert.deepEqual(pool.stats(), { total: 0, available: 0, inUse: 0, pending: 0, totalCreated: 3, totalDestroyed: 3 });
  assert.deepEqual(errors, Array(3).fill('destroyed listener threw'));
  await until(() => peer.sockets.size === 0, 3000, 'the peer to see every socket closed');
});

test('pool listeners - a throwing "created" listener: start() resolves with its connections open, each throw reported', async (t) => {
  const { peer, pool } = await setup(t, { minConnections: 2, maxConnections: 3 });
  const errors = [];
  pool.on('error', (err) => errors.push(err.message));
  pool.on('created', thrower('created'));
  await pool.start();
  assert.equal(pool.stats().total, 2);
  assert.deepEqual(errors, Array(2).fill('created listener threw'));
  assert.equal(await pool.request('echo', 5, 2000), 5);
  assert.equal(peer.sockets.size, 2);
});

test('pool listeners - a throwing "connection_lost" listener: the dead member is still replaced', async (t) => {
  const { peer, pool } = await setup(t, { minConnections: 1, maxConnections: 1 });
  const errors = [];
  pool.on('error', (err) => errors.push(err.message));
  pool.on('connection_lost', thrower('connection_lost'));
  await pool.start();
  const first = await pool.acquire();
  pool.release(first);
  peer.drop();
  await until(() => errors.includes('connection_lost listener threw'), 3000, 'the report');
  await until(() => pool.stats().totalCreated === 2 && pool.stats().total === 1, 3000, 'the replacement');
  const second = await pool.acquire(2000);
  assert.notEqual(second, first);
  assert.equal(second.connected, true);
  pool.release(second);
});

test('pool listeners - with no "error" listener, each throw is one process warning; an "error" listener that throws is one too', async (t) => {
  const warnings = captureWarnings(t);
  const { pool } = await setup(t, { minConnections: 1, maxConnections: 1 });
  pool.on('created', thrower('created'));
  await pool.start();
  await until(() => warnings.some((w) => w.code === 'IPC_UNHANDLED_ERROR'), 2000, 'the warning');
  const bug = new Error('error listener threw');
  pool.on('error', () => {
    throw bug;
  });
  pool.on('destroyed', thrower('destroyed'));
  await pool.close();
  await until(() => warnings.some((w) => w.cause === bug), 2000, "the 'error' listener's warning");
  await settle();
  const ours = warnings.filter((w) => w.code === 'IPC_UNHANDLED_ERROR');
  assert.deepEqual(
    ours.map((w) => w.cause.message),
    ['created listener threw', 'error listener threw']
  );
});

test('pool listeners - a member lost to a heartbeat timeout is reported once, on "connection_lost": no process warning', async (t) => {
  const warnings = captureWarnings(t);
  const { peer, pool } = await setup(t, { minConnections: 1, maxConnections: 1, heartbeatInterval: 50, heartbeatTimeout: 150 });
  const errors = [];
  const lost = [];
  pool.on('error', (err) => errors.push(err));
  pool.on('connection_lost', ({ error }) => lost.push(error));
  await pool.start();
  peer.silent = true; // a hung server: no pong
  await until(() => lost.length === 1, 3000, 'the loss');
  assert.equal(lost[0].code, 'connection_lost'); // the member's 'disconnected': the loss, its cause the timeout
  assert.equal(lost[0].cause.code, 'timeout');
  await settle();
  assert.deepEqual(errors, []);
  assert.deepEqual(warnings.map((w) => w.message), []);
});

test('pool listeners - a throwing handler of a pooled subscription goes to the pool\'s "error"', async (t) => {
  const { peer, pool } = await setup(t, { minConnections: 1, maxConnections: 1 });
  const conns = [];
  peer.events.on('connection', (conn) => conns.push(conn));
  const errors = [];
  pool.on('error', (err) => errors.push(err));
  await pool.start();
  await pool.subscribe('news', () => {
    throw new Error('the handler failed');
  });
  const after = [];
  await pool.subscribe('after', (m) => after.push(m.payload));
  conns[0].send(buildMessage('publish', 'app', 'news', { n: 1 }));
  await until(() => errors.length === 1, 3000, 'the report');
  conns[0].send(buildMessage('publish', 'app', 'after', 2)); // the same member, after the first
  await until(() => after.length === 1, 3000, 'the later publish');
  assert.deepEqual(errors.map((e) => e.message), ['the handler failed']); // once (as Python's pool)
});
