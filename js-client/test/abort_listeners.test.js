'use strict';

// One AbortSignal shared by many calls (an application's shutdown signal):
// one listener on the signal however many calls wait on it, so Node prints
// no MaxListenersExceededWarning, and every call still ends once.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { getEventListeners } = require('node:events');
const { AbortError } = require('..');
const { whenAborted } = require('../lib/abort_listeners');
const { streamingPeer, connectedClient, captureWarnings, settle, until } = require('./helpers');

const CALLS = 50;

test('abort listeners - fifty requests on one signal: no leak warning, all aborted, in the order they came', async (t) => {
  const warnings = captureWarnings(t);
  const peer = await streamingPeer(t, { onRequest: () => {} });
  const client = await connectedClient(t, peer);
  const controller = new AbortController();
  const order = [];
  const calls = [];
  for (let i = 0; i < CALLS; i++) {
    const call = client.sendRequest('slow', { i }, { signal: controller.signal, timeout: 5000 });
    calls.push(call.catch((err) => (order.push(i), err)));
  }
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
  controller.abort(new Error('shutting down'));
  const errors = await Promise.all(calls);
  assert.ok(errors.every((err) => err instanceof AbortError && err.cause.message === 'shutting down'));
  assert.deepEqual(order, [...Array(CALLS).keys()]);
  await settle();
  assert.deepEqual(warnings.map((w) => w.name), []);
  assert.equal(client._calls.pending.size, 0);
});

test('abort listeners - the signal holds no listener once the calls on it have ended', async (t) => {
  const warnings = captureWarnings(t);
  const peer = await streamingPeer(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  const client = await connectedClient(t, peer);
  const controller = new AbortController();
  const answers = await Promise.all(Array.from({ length: CALLS }, (_, i) => client.request('echo', { i }, { signal: controller.signal, timeout: 5000 })));
  assert.deepEqual(answers.map((a) => a.i), [...Array(CALLS).keys()]);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  const again = client.request('echo', { i: 'again' }, { signal: controller.signal, timeout: 5000 });
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
  assert.deepEqual(await again, { i: 'again' });
  await until(() => getEventListeners(controller.signal, 'abort').length === 0);
  await settle();
  assert.deepEqual(warnings.map((w) => w.name), []);
});

test('abort listeners - whenAborted: runs each once and skips those taken off', async () => {
  const controller = new AbortController();
  const ran = [];
  const fn = () => ran.push('shared');
  whenAborted(controller.signal, fn);
  whenAborted(controller.signal, fn); // the same function waiting twice runs twice
  const off = whenAborted(controller.signal, () => ran.push('taken off'));
  whenAborted(controller.signal, () => ran.push('last'));
  off();
  off(); // twice: harmless
  controller.abort();
  assert.deepEqual(ran, ['shared', 'shared', 'last']);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  whenAborted(controller.signal, () => ran.push('after'));
  await settle();
  assert.deepEqual(ran, ['shared', 'shared', 'last']); // an aborted signal fires no more, as for addEventListener
});

test('abort listeners - a throwing listener is uncaught, as an EventTarget listener is, and spares the rest', () => {
  const script = `
    const { whenAborted } = require(${JSON.stringify(require.resolve('../lib/abort_listeners'))});
    const controller = new AbortController();
    const ran = [];
    process.on('uncaughtException', (err) => { console.log(JSON.stringify({ ran, uncaught: err.message })); });
    whenAborted(controller.signal, () => ran.push('first'));
    whenAborted(controller.signal, () => { throw new Error('a listener failed'); });
    whenAborted(controller.signal, () => ran.push('last'));
    controller.abort();
  `;
  const done = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 });
  assert.equal(done.status, 0, done.stderr);
  assert.deepEqual(JSON.parse(done.stdout), { ran: ['first', 'last'], uncaught: 'a listener failed' });
});
