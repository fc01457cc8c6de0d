'use strict';

// Argument errors throw at the call; what depends on the connection
// rejects (lib/publishing.js, docs/legacy.md). The 1.1.x documentation's
// Express routes call subscribe() and publish() without await: there an
// invalid channel was an unhandled rejection, which ends a Node >= 15
// process, where a synchronous throw is caught by the route (Express
// answers it). Real sockets against the scripted peer (test/helpers.js);
// the Express block itself: interop-tests/test_legacy_docs_express.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ErrorCode, ForbiddenError, MessageError } = require('..');
const { peerAndClient: setup, waitFor } = require('./helpers');

const BAD_PATTERNS = ['a..b', 'ord*', ' x', 'x.', 'a'.repeat(600), 'x.\udc00', 42];
const BAD_CHANNELS = ['a..b', 'orders.*', 'ord*', 'a.b>', ' x', 'x.', 'a'.repeat(600), 'x.\udc00', 42];
const cyclic = {};
cyclic.self = cyclic;
const UNENCODABLE = { NaN: NaN, Infinity: { v: Infinity }, map: { m: new Map([[1, 2]]) }, set: new Set([1]), loneSurrogate: 'a\ud800b', bigint: 10n, cycle: cyclic };

/** Collects the unhandled rejections of the test (none is expected). */
function unhandledRejections(t) {
  const seen = [];
  const onUnhandled = (reason) => seen.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));
  return seen;
}

/** Lets a rejection nobody handles surface. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test('argument errors - subscribe(), publish(), notify() and unsubscribe() throw them at the call, synchronously, and send nothing', async (t) => {
  const unhandled = unhandledRejections(t);
  const { peer, client } = await setup(t);
  await client.connect();
  const before = peer.received.length;
  const badMessage = (err) => err instanceof MessageError && err.code === ErrorCode.BAD_MESSAGE;
  for (const pattern of BAD_PATTERNS) assert.throws(() => client.subscribe(pattern, () => {}), badMessage, String(pattern));
  for (const channel of BAD_CHANNELS) {
    assert.throws(() => client.publish(channel, 1), badMessage, String(channel));
    assert.throws(() => client.publish(channel, 1, { ack: true }), badMessage, String(channel));
    assert.throws(() => client.notify(channel, 1), badMessage, String(channel));
  }
  for (const channel of ['system.x', '$sys.x']) {
    assert.throws(() => client.publish(channel, 1), ForbiddenError, channel);
    assert.throws(() => client.notify(channel, 1), ForbiddenError, channel);
  }
  for (const [name, payload] of Object.entries(UNENCODABLE)) {
    assert.throws(() => client.publish('feed', payload), badMessage, name);
    assert.throws(() => client.publish('feed', payload, { ack: true }), badMessage, name);
    assert.throws(() => client.notify('jobs', payload), badMessage, name);
  }
  assert.throws(() => client.publish('feed', 1, { headers: { n: 1 } }), badMessage);
  assert.throws(() => client.publish('feed', 1, { priority: 'high' }), TypeError);
  assert.throws(() => client.notify('jobs', 1, { timeout: -1 }), TypeError);
  assert.throws(() => client.subscribe('feed', 'not a function'), TypeError);
  assert.throws(() => client.subscribe('feed', () => {}, { timeout: 0 }), TypeError);
  assert.throws(() => client.unsubscribe(42), TypeError);
  assert.throws(() => client.unsubscribe('feed', 'not a function'), TypeError);
  await settle();
  assert.equal(peer.received.length, before);
  assert.deepEqual(client.getConnectionInfo().subscriptions, []);
  assert.deepEqual(unhandled, []);
});

test('argument errors - unsubscribe() of a name nothing is subscribed under, an invalid one included, resolves', async (t) => {
  const { client } = await setup(t);
  await client.connect();
  for (const channel of ['a..b', 'ord*', '', 'never.subscribed']) await client.unsubscribe(channel);
});

test('argument errors - a payload that cannot be encoded throws whatever the state: reconnecting, refused with onDisconnect "fail", disconnected', async (t) => {
  const unhandled = unhandledRejections(t);
  const { peer, client } = await setup(t);
  await client.connect();
  const checks = [];
  const inListener = new Promise((resolve) => {
    const stop = client.onDisconnected(() => {
      stop();
      // reconnecting: queued (encoded for the queue), or refused at once with 'fail'
      checks.push(client.state);
      assert.throws(() => client.publish('feed', NaN), { code: ErrorCode.BAD_MESSAGE });
      assert.throws(() => client.publish('feed', NaN, { onDisconnect: 'fail' }), { code: ErrorCode.BAD_MESSAGE });
      const refused = client.publish('feed', 1, { onDisconnect: 'fail' }); // the state's refusal: a rejection
      resolve(assert.rejects(refused, { code: ErrorCode.NOT_CONNECTED }));
    });
  });
  peer.drop();
  await inListener;
  assert.deepEqual(checks, ['reconnecting']);
  await waitFor(client, 'connected', 5000);
  await client.disconnect();
  assert.throws(() => client.publish('feed', new Map()), { code: ErrorCode.BAD_MESSAGE });
  assert.throws(() => client.notify('jobs', { n: NaN }), { code: ErrorCode.BAD_MESSAGE });
  await settle();
  assert.deepEqual(unhandled, []);
});

test('argument errors - what depends on the connection still rejects: disconnected, draining, over the frame limit', async (t) => {
  const { client } = await setup(t, { maxFrameSize: 1024 });
  await client.connect();
  await assert.rejects(client.publish('feed', 'x'.repeat(4096)), { code: ErrorCode.TOO_LARGE }); // the server's limit
  await assert.rejects(client.notify('jobs', 'x'.repeat(4096)), { code: ErrorCode.TOO_LARGE });
  const draining = client.drain({ timeout: 2000 });
  await assert.rejects(client.publish('feed', 1), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(client.subscribe('feed', () => {}), { code: ErrorCode.NOT_CONNECTED });
  await draining;
  for (const call of [() => client.publish('feed', 1), () => client.publish('feed', 1, { ack: true }), () => client.notify('jobs', 1), () => client.subscribe('feed', () => {})]) {
    await assert.rejects(call(), { code: ErrorCode.NOT_CONNECTED }); // a promise that rejects, not a throw
  }
});
