'use strict';

// A handler or listener whose result throws when it is read (a revoked
// Proxy, a `then` or `Symbol.asyncIterator` getter that throws): reading it
// is part of the handler's work, so the throw is the handler's own. A served
// request is answered handler_error, a subscription handler's or a
// listener's throw goes to 'error'; never an uncaught exception nor an
// unhandled rejection (js-client/README.md, serve() and the events table).
// Real sockets against the scripted peer of test/helpers.js.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived, until, settle } = require('./helpers');

/** A Proxy that throws on any property read. */
function revoked() {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

/** Records unhandled rejections while the test runs. */
function watchRejections(t) {
  const seen = [];
  const listener = (reason) => seen.push(reason);
  process.on('unhandledRejection', listener);
  t.after(() => process.off('unhandledRejection', listener));
  return seen;
}

/** Sends `frame` from the peer to the client. */
function deliver(peer, frame) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(frame)));
}

const RESULTS = [
  ['revoked', () => revoked(), 'TypeError', /revoked/],
  [
    'then-getter',
    () => ({
      get then() {
        throw new RangeError('then getter threw');
      }
    }),
    'RangeError',
    /then getter threw/
  ],
  [
    'iterator-getter',
    () => ({
      get [Symbol.asyncIterator]() {
        throw new RangeError('iterator getter threw');
      }
    }),
    'RangeError',
    /iterator getter threw/
  ],
  [
    'async-iterator-getter', // read once the promise resolved
    async () => ({
      get [Symbol.asyncIterator]() {
        throw new RangeError('iterator getter threw');
      }
    }),
    'RangeError',
    /iterator getter threw/
  ]
];

test('unreadable results - a served handler whose result throws when read answers handler_error; the client carries on', async (t) => {
  const rejections = watchRejections(t);
  const peer = await streamingPeer(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  const client = await connectedClient(t, peer, { reconnect: false });
  for (const [channel, handler, remoteType, message] of RESULTS) {
    await client.serve(channel, handler);
    const request = buildMessage('request', 'app', channel, null, { timeout_ms: 5000 });
    deliver(peer, request);
    const answer = await nextReceived(peer, (m) => m.reply_to === request.message_id, 2000);
    assert.equal(answer.error.code, 'handler_error', channel);
    assert.equal(answer.error.remote_type, remoteType, channel);
    assert.match(answer.error.message, message, channel);
  }
  assert.equal(client.state, 'connected');
  assert.equal((await client.sendRequest('echo', 3, 2000)).payload, 3);
  await settle();
  assert.deepEqual(rejections, []);
});

test('unreadable results - a subscription handler or a listener whose result throws when read is reported on "error"', async (t) => {
  const rejections = watchRejections(t);
  const peer = await streamingPeer(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  const client = await connectedClient(t, peer, { reconnect: false });
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const read = RESULTS.slice(0, 2); // what a subscription handler returns is read for `then` only
  for (const [channel, handler] of read) await client.subscribe(channel, handler);
  for (const [channel] of read) deliver(peer, buildMessage('publish', 'app', channel, 1));
  await until(() => errors.length === read.length, 2000, "the handlers' errors");
  read.forEach(([channel, , type, message], i) => {
    assert.equal(errors[i].name, type, channel);
    assert.match(errors[i].message, message, channel);
  });
  client.on('heartbeat', () => revoked());
  client.on('heartbeat', RESULTS[1][1]);
  assert.equal(await client.healthCheck(), true); // its pong emits 'heartbeat'
  await until(() => errors.length === read.length + 2, 2000, "the listeners' errors");
  assert.deepEqual(errors.slice(-2).map((e) => e.name), ['TypeError', 'RangeError']);
  assert.equal(client.state, 'connected');
  await settle();
  assert.deepEqual(rejections, []);
});
