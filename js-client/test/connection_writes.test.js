'use strict';

/**
 * How a connection's writes leave its socket (lib/connection.js): those of
 * one tick together, in one writev; those a read of many frames woke (the
 * requesters its answers resolved), in a few writevs, so the server starts
 * on the first while the rest are encoded. The mirror of
 * tests/test_client_connection.py.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { Connection } = require('../lib/connection');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { Peer, settle } = require('./helpers');

/**
 * An open connection to a scripted peer, and the frames per write its
 * socket made (writev: several, write: one).
 * @param {import('node:test').TestContext} t
 * @param {(msg: object) => void} onMessage
 */
async function openConnection(t, onMessage) {
  const peer = new Peer();
  const port = await peer.listen();
  const owner = { onMessage, onError() {}, onClose() {}, onPing() {}, onPong() {}, onHeartbeatTimeout() {} };
  const conn = new Connection({ host: '127.0.0.1', port, appId: 'app', connectionId: 'c', token: null, maxFrameSize: null }, owner);
  t.after(async () => {
    await conn.close();
    await peer.close();
  });
  await conn.open(5000);
  const socket = conn._socket;
  const writes = [];
  const writev = socket._writev.bind(socket);
  socket._writev = (chunks, cb) => {
    writes.push(chunks.length);
    return writev(chunks, cb);
  };
  const write = socket._write.bind(socket);
  socket._write = (chunk, encoding, cb) => {
    writes.push(1);
    return write(chunk, encoding, cb);
  };
  return { conn, writes };
}

const frame = (i) => encodeFrame(Buffer.from(encodeMessage(buildMessage('request', 'app', 'next', i))));
const answers = (n) =>
  Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame(Buffer.from(encodeMessage(buildMessage('response', 'app', 'x', i, { reply_to: `r${i}` }))))));

test('connection - the writes of one tick leave in one writev', async (t) => {
  const { conn, writes } = await openConnection(t, () => {});
  for (let i = 0; i < 20; i++) conn.write(frame(i));
  await settle();
  assert.deepEqual(writes, [20]);
});

test('connection - what a read of 16 answers wakes leaves in four writevs, of 3 one write each', async (t) => {
  // Each answer resolves a requester, which writes its next request (a microtask later).
  let conn;
  const opened = await openConnection(t, (msg) => Promise.resolve().then(() => conn.write(frame(msg.payload))));
  conn = opened.conn;
  conn._onData(answers(16));
  await settle();
  assert.deepEqual(opened.writes, [4, 4, 4, 4]);
  opened.writes.length = 0;
  conn._onData(answers(3));
  await settle();
  assert.deepEqual(opened.writes, [1, 1, 1]);
  // The tick after: one writev again.
  opened.writes.length = 0;
  for (let i = 0; i < 20; i++) conn.write(frame(i));
  await settle();
  assert.deepEqual(opened.writes, [20]);
});
