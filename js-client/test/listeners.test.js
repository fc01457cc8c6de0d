'use strict';

// Listener errors and errors nobody listens for: a throwing listener never
// breaks the client, rejects connect() or leaves an unhandled rejection;
// with no 'error' listener, every reported error is one process warning.
// What is reported is always an Error: a thrown value that is not one
// arrives as a HandlerError whose `cause` it is.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ErrorCode, HandlerError, IpcError } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { peerAndClient, waitFor, until, captureWarnings, settle } = require('./helpers');

const FAST = { initialDelay: 10, maxDelay: 40, jitter: 0 };

/**
 * Fails the test on any unhandled rejection while it runs.
 * @param {import('node:test').TestContext} t
 * @returns {unknown[]} the reasons seen.
 */
function watchRejections(t) {
  const seen = [];
  const listener = (reason) => seen.push(reason);
  process.on('unhandledRejection', listener);
  t.after(() => process.off('unhandledRejection', listener));
  return seen;
}

/** The client-error warnings among the captured ones. */
function unhandled(warnings) {
  return warnings.filter((w) => w.code === 'IPC_UNHANDLED_ERROR');
}

/**
 * A peer and a client (not connected yet).
 * @param {import('node:test').TestContext} t
 * @param {object} [clientOptions]
 */
function setup(t, clientOptions = {}) {
  return peerAndClient(t, { onRequest: (msg, conn, reply) => reply(msg.payload) }, { ...FAST, ...clientOptions });
}

test('listeners - a throwing onConnected listener with no error listener: connect() resolves, one warning, the connection is up', async (t) => {
  const rejections = watchRejections(t);
  const warnings = captureWarnings(t);
  const { client } = await setup(t);
  const bug = new Error('connected listener bug');
  client.onConnected(() => {
    throw bug;
  });
  assert.equal(await client.connect(), true);
  assert.equal(client.state, 'connected');
  assert.equal((await client.sendRequest('echo', 1, 1000)).payload, 1);
  await until(() => unhandled(warnings).length === 1, 1000, 'the warning');
  await settle();
  const [warning] = unhandled(warnings);
  assert.equal(warning.name, 'IpcBridgeWarning');
  assert.equal(warning.cause, bug);
  assert.match(warning.message, /'connected' listener threw/);
  assert.equal(unhandled(warnings).length, 1);
  assert.deepEqual(rejections, []);
});

test('listeners - every lifecycle listener that throws is reported on "error"; the client connects, reconnects and closes as usual', async (t) => {
  const rejections = watchRejections(t);
  const { peer, client } = await setup(t);
  const events = ['connecting', 'connected', 'disconnected', 'reconnecting', 'reconnected', 'heartbeat', 'close'];
  for (const event of events) {
    client.on(event, () => {
      throw new Error(`${event} bug`);
    });
  }
  const errors = [];
  client.on('error', (err) => errors.push(err.message));
  assert.equal(await client.connect(), true);
  assert.equal(await client.healthCheck(), true); // a pong emits 'heartbeat'
  const reconnected = waitFor(client, 'reconnected', 3000);
  peer.drop();
  await reconnected;
  assert.equal((await client.sendRequest('echo', 2, 1000)).payload, 2);
  await client.disconnect();
  assert.equal(client.state, 'disconnected');
  for (const event of events) assert.ok(errors.includes(`${event} bug`), `${event}: ${errors}`);
  assert.deepEqual(rejections, []);
});

test('listeners - a throwing listener does not keep the next listeners from running; an async one\'s rejection is reported', async (t) => {
  const rejections = watchRejections(t);
  const { client } = await setup(t);
  const calls = [];
  const errors = [];
  client.on('error', (err) => errors.push(err.message));
  client.on('connected', () => {
    calls.push('first');
    throw new Error('sync bug');
  });
  client.on('connected', async () => {
    calls.push('second');
    throw new Error('async bug');
  });
  client.once('connected', () => calls.push('third'));
  assert.equal(await client.connect(), true);
  assert.deepEqual(calls, ['first', 'second', 'third']);
  await until(() => errors.length === 2, 1000, 'both errors');
  assert.deepEqual(errors.sort(), ['async bug', 'sync bug']);
  assert.equal(client.listenerCount('connected'), 2, 'the once() listener is gone');
  await settle();
  assert.deepEqual(rejections, []);
});

test('listeners - with no error listener, an error frame, a failing subscription handler and giving up each become one warning', async (t) => {
  const rejections = watchRejections(t);
  const warnings = captureWarnings(t);
  const { peer, client } = await setup(t, { maxRetries: 1 });
  await client.connect();
  // An error frame that answers no call (§6.4).
  const frame = buildMessage('response', 'app', 'system', null, { error: { code: 'bad_message', message: 'nope' } });
  [...peer.sockets][0].write(encodeFrame(encodeMessage(frame)));
  await until(() => unhandled(warnings).length === 1, 2000, 'the error frame warning');
  assert.equal(unhandled(warnings)[0].cause.code, ErrorCode.BAD_MESSAGE);
  // A subscription handler that throws.
  await client.subscribe('feed', () => {
    throw new TypeError('handler bug');
  });
  const publish = buildMessage('publish', 'app', 'feed', 1);
  [...peer.sockets][0].write(encodeFrame(encodeMessage(publish)));
  await until(() => unhandled(warnings).length === 2, 2000, 'the handler warning');
  assert.equal(unhandled(warnings)[1].cause.message, 'handler bug');
  // Giving up reconnecting.
  const failed = waitFor(client, 'reconnect_failed', 3000);
  await peer.close();
  await failed;
  await until(() => unhandled(warnings).length === 3, 2000, 'the give-up warning');
  assert.equal(unhandled(warnings)[2].cause.code, ErrorCode.CONNECTION_LOST);
  await settle();
  assert.equal(unhandled(warnings).length, 3, 'one warning per error');
  assert.deepEqual(rejections, []);
});

test('listeners - an error listener that throws becomes a warning, never a crash', async (t) => {
  const warnings = captureWarnings(t);
  const { peer, client } = await setup(t);
  const bug = new Error('error listener bug');
  client.on('error', () => {
    throw bug;
  });
  await client.connect();
  const frame = buildMessage('response', 'app', 'system', null, { error: { code: 'bad_message', message: 'nope' } });
  [...peer.sockets][0].write(encodeFrame(encodeMessage(frame)));
  await until(() => unhandled(warnings).some((w) => w.cause === bug), 2000, 'the warning');
  assert.equal(client.state, 'connected');
  assert.equal((await client.sendRequest('echo', 3, 1000)).payload, 3);
});

test('listeners - with an error listener, nothing is warned', async (t) => {
  const warnings = captureWarnings(t);
  const { peer, client } = await setup(t);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  client.on('connected', () => {
    throw new Error('bug');
  });
  await client.connect();
  const frame = buildMessage('response', 'app', 'system', null, { error: { code: 'bad_message', message: 'nope' } });
  [...peer.sockets][0].write(encodeFrame(encodeMessage(frame)));
  await until(() => errors.length === 2, 2000, 'two errors');
  await settle();
  assert.deepEqual(unhandled(warnings), []);
});

test('listeners - a thrown value that is not an Error reaches "error" as a HandlerError (its cause), an Error as it was thrown', async (t) => {
  const rejections = watchRejections(t);
  const { peer, client } = await setup(t);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  await client.connect();
  const bug = new TypeError('handler bug');
  await client.subscribe('text', () => {
    throw 'a string, not an Error';
  });
  await client.subscribe('nothing', async () => {
    throw undefined;
  });
  await client.subscribe('typed', () => {
    throw bug;
  });
  for (const channel of ['text', 'nothing', 'typed']) {
    [...peer.sockets][0].write(encodeFrame(encodeMessage(buildMessage('publish', 'app', channel, 1))));
  }
  await until(() => errors.length === 3, 2000, 'the handlers\' errors');
  client.on('heartbeat', () => {
    throw 42;
  });
  assert.equal(await client.healthCheck(), true); // its pong emits 'heartbeat'
  await until(() => errors.length === 4, 2000, 'the listener\'s error');
  assert.ok(errors.includes(bug), 'an Error is reported as it was thrown');
  const wrapped = (value) => errors.find((e) => e instanceof HandlerError && Object.hasOwn(e, 'cause') && Object.is(e.cause, value));
  for (const [value, message, type] of [
    ['a string, not an Error', 'a string, not an Error', 'string'],
    [undefined, 'undefined', 'undefined'],
    [42, '42', 'number']
  ]) {
    const err = wrapped(value);
    assert.ok(err instanceof IpcError, `${type}: ${errors}`);
    assert.deepEqual([err.name, err.code, err.message, err.remoteType], ['HandlerError', ErrorCode.HANDLER_ERROR, message, type]);
  }
  await settle();
  assert.deepEqual(rejections, []);
});

test('listeners - with no error listener, a thrown value that is not an Error is warned as a HandlerError, the value its cause', async (t) => {
  const warnings = captureWarnings(t);
  const { peer, client } = await setup(t);
  await client.connect();
  await client.subscribe('feed', () => {
    throw 'a string, not an Error';
  });
  [...peer.sockets][0].write(encodeFrame(encodeMessage(buildMessage('publish', 'app', 'feed', 1))));
  await until(() => unhandled(warnings).length === 1, 2000, 'the warning');
  const [warning] = unhandled(warnings);
  assert.ok(warning.cause instanceof HandlerError);
  assert.equal(warning.cause.cause, 'a string, not an Error');
  assert.match(warning.message, /HandlerError \(handler_error\): a string, not an Error \(no 'error' listener/);
});
