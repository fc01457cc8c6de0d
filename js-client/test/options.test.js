'use strict';

// Client options as the legacy @ifesol/ipc-framework-nodejs documents them
// (docs/legacy.md): its names, numeric strings, and unknown keys that only
// warn. Warnings are captured with process.on('warning').

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ConnectionPool, LoadBalancedClient, DEFAULTS } = require('..');
const { parseOptions } = require('../lib/options');
const { toNumber, pickKnownOptions, LEGACY_ALIASES } = require('../lib/legacy_options');
const { Peer, captureWarnings, settle, until } = require('./helpers');

/**
 * The warnings of one code among those captured.
 * @param {Error[]} warnings
 * @param {string} code
 * @returns {Error[]}
 */
function withCode(warnings, code) {
  return warnings.filter((w) => w.code === code);
}

test('options - the legacy names set today\'s options, with their meaning', () => {
  const o = parseOptions({ host: 'localhost', port: 8888, connectionTimeout: 10000, reconnectAttempts: 5, reconnectDelay: 2000, heartbeatInterval: 30000 });
  assert.deepEqual([o.connectTimeout, o.maxRetries, o.initialDelay, o.heartbeatInterval], [10000, 5, 2000, 30000]);
  assert.ok(!('connectionTimeout' in o) && !('reconnectAttempts' in o) && !('reconnectDelay' in o));
  assert.deepEqual(LEGACY_ALIASES, { connectionTimeout: 'connectTimeout', reconnectAttempts: 'maxRetries', reconnectDelay: 'initialDelay' });
  // A legacy name's value is checked like today's name.
  assert.throws(() => parseOptions({ reconnectAttempts: 1.5 }), /maxRetries/);
  assert.throws(() => parseOptions({ reconnectDelay: 100, maxDelay: 10 }), RangeError);
});

test('options - legacy and today\'s name both given: today\'s wins, and one warning says so', async (t) => {
  const warnings = captureWarnings(t);
  const o = parseOptions({ connectionTimeout: 1000, connectTimeout: 2000, reconnectAttempts: 9, maxRetries: 3 });
  assert.equal(o.connectTimeout, 2000);
  assert.equal(o.maxRetries, 3);
  await until(() => withCode(warnings, 'IPC_OPTION_CONFLICT').length === 2, 1000, 'two conflict warnings');
  const [first] = withCode(warnings, 'IPC_OPTION_CONFLICT');
  assert.equal(first.name, 'IpcBridgeWarning');
  assert.match(first.message, /"connectionTimeout".*"connectTimeout"/);
  parseOptions({ connectionTimeout: 1000, connectTimeout: 2000 });
  await settle();
  assert.equal(withCode(warnings, 'IPC_OPTION_CONFLICT').length, 2, 'once per pair per process');
});

test('options - highWaterMark is the deprecated name of maxConcurrentHandlers: honoured, one IPC_DEPRECATED_OPTION warning per process', async (t) => {
  const warnings = captureWarnings(t);
  const client = new IPCClient('app', { highWaterMark: 3 });
  assert.equal(client.options.maxConcurrentHandlers, 3);
  assert.ok(!('highWaterMark' in client.options));
  await until(() => withCode(warnings, 'IPC_DEPRECATED_OPTION').length === 1, 1000, 'the deprecation warning');
  assert.match(withCode(warnings, 'IPC_DEPRECATED_OPTION')[0].message, /"highWaterMark".*"maxConcurrentHandlers"/);
  assert.equal(parseOptions({ highWaterMark: 5 }).maxConcurrentHandlers, 5);
  // Both names: today's wins, and a conflict warning says so.
  assert.equal(parseOptions({ highWaterMark: 5, maxConcurrentHandlers: 7 }).maxConcurrentHandlers, 7);
  await until(() => withCode(warnings, 'IPC_OPTION_CONFLICT').length === 1, 1000, 'the conflict warning');
  await settle();
  assert.equal(withCode(warnings, 'IPC_DEPRECATED_OPTION').length, 1, 'once per process');
  assert.throws(() => parseOptions({ highWaterMark: 0 }), /maxConcurrentHandlers/); // checked like today's name
});

test('options - maxHeldMessages: an integer >= 1 or Infinity, default 65536, checked when the client is made', () => {
  assert.equal(new IPCClient('app').options.maxHeldMessages, 65536);
  assert.equal(new IPCClient('app', { maxHeldMessages: Infinity }).options.maxHeldMessages, Infinity);
  assert.equal(new IPCClient('app', { maxHeldMessages: 1 }).options.maxHeldMessages, 1);
  for (const value of [0, 1.5, NaN, -1, 'x', true, null]) {
    assert.throws(() => new IPCClient('app', { maxHeldMessages: value }), {
      name: 'TypeError',
      message: /^option maxHeldMessages must be an integer >= 1 or Infinity, got /
    });
  }
});

test('options - lowWaterMark is gone: an unknown option, ignored with one warning', async (t) => {
  const warnings = captureWarnings(t);
  const o = parseOptions({ lowWaterMark: 1 });
  assert.ok(!('lowWaterMark' in o));
  assert.equal(o.maxConcurrentHandlers, 1024);
  await until(() => withCode(warnings, 'IPC_UNKNOWN_OPTION').length === 1, 1000, 'the warning');
  assert.match(withCode(warnings, 'IPC_UNKNOWN_OPTION')[0].message, /"lowWaterMark"/);
});

test('options - an unknown option is ignored with one warning per name per process; a bad known one still throws', async (t) => {
  const warnings = captureWarnings(t);
  const client = new IPCClient('app', { port: 8888, unknownOptionA: 1, batchTimeout: 5, maxBatchSize: 50 });
  assert.ok(!('unknownOptionA' in client.options));
  new IPCClient('app', { unknownOptionA: 2 });
  new IPCClient('app', { unknownOptionA: undefined, unknownOptionB: null });
  await until(() => withCode(warnings, 'IPC_UNKNOWN_OPTION').length >= 4, 1000, 'the warnings');
  await settle();
  const names = withCode(warnings, 'IPC_UNKNOWN_OPTION').map((w) => w.message.match(/"(\w+)"/)[1]);
  assert.deepEqual(names.sort(), ['batchTimeout', 'maxBatchSize', 'unknownOptionA', 'unknownOptionB']);
  assert.throws(() => new IPCClient('app', { port: 'eighty', unknownOptionA: 1 }), TypeError);
  assert.throws(() => new IPCClient('app', { reconnect: 'yes' }), TypeError);
});

test('options - numeric strings become numbers wherever a number is expected; anything else throws', () => {
  const o = parseOptions({ port: '8888', connectTimeout: ' 5000 ', heartbeatInterval: '1500.5', maxFrameSize: '1e6', reconnectAttempts: '7' });
  assert.deepEqual([o.port, o.connectTimeout, o.heartbeatInterval, o.maxFrameSize, o.maxRetries], [8888, 5000, 1500.5, 1e6, 7]);
  for (const bad of ['', ' ', '0x1F', '12px', 'Infinity', 'NaN', '1e400', '1_000', '--1']) {
    assert.throws(() => parseOptions({ connectTimeout: bad }), TypeError, JSON.stringify(bad));
  }
  assert.throws(() => parseOptions({ port: '0' }), TypeError); // converted, then out of range
  assert.throws(() => parseOptions({ port: '8888.5' }), TypeError);
  assert.equal(toNumber(' -2.5 '), -2.5);
  assert.equal(toNumber(true), true);
  assert.equal(toNumber(null), null);
});

test('options - a per-call timeout may be a numeric string too', async (t) => {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.timeout_ms) });
  const port = await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port });
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  await client.connect();
  const sent = await client.request('x', null, '10000');
  assert.ok(sent > 9000 && sent <= 10000, String(sent));
  await assert.rejects(client.sendRequest('x', null, 'ten seconds'), TypeError);
  // every per-call number, as the client's own options: numeric text is its number
  assert.ok((await client.request('x', null, { timeout: ' 5000 ', priority: '2', cacheTtl: '60000' })) <= 5000);
  assert.ok((await client.request('x', null, { timeout: ' 5000 ', priority: '2', cacheTtl: '60000' })) <= 5000);
  assert.equal(peer.received.filter((m) => m.channel_id === 'x').length, 2); // the second from the cache
  await client.publish('x', null, { priority: '-1', timeout: '1000' });
  const { checkStream } = require('../lib/streams');
  assert.deepEqual(checkStream('x', { window: '4', idleTimeout: '1000', timeout: '2000' }), { timeout: 2000, idleTimeout: 1000, window: 4, signal: undefined, headers: undefined });
  // other text throws a TypeError naming the option
  for (const [name, call] of [
    ['timeout', () => client.notify('x', null, { timeout: 'soon' })],
    ['priority', () => client.publish('x', null, { priority: 'high' })],
    ['cacheTtl', () => client.request('x', null, { cacheTtl: 'a while' })],
    ['idleTimeout', () => client.stream('x', null, { idleTimeout: 'a while' })],
    ['window', () => client.stream('x', null, { window: 'wide' })]
  ]) {
    await assert.rejects(async () => call(), (err) => err instanceof TypeError && err.message.startsWith(`${name} must be`), name);
  }
});

test('options - pickKnownOptions keeps known keys, renames aliases, skips undefined', () => {
  const known = new Set(['a', 'b']);
  assert.deepEqual(pickKnownOptions({ a: 1, b: undefined, old: 2 }, known, { aliases: { old: 'b' } }), { a: 1, b: 2 });
});

test('options - what a pool or a load balancer passes to its clients warns once per name, not per connection', async (t) => {
  const warnings = captureWarnings(t);
  const peer = new Peer();
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port: String(port), minConnections: 3, maxConnections: 3, poolPassThrough: true, reconnectDelay: 20 });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  await pool.start();
  assert.equal(pool.stats().total, 3);
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${port}`], { strategy: 'random', lbPassThrough: 1, connectionOptions: {} });
  t.after(() => lb.close());
  await lb.start();
  assert.equal((await lb.checkHealth())[0].healthy, true);
  await until(() => withCode(warnings, 'IPC_UNKNOWN_OPTION').length >= 3, 1000, 'the warnings');
  await settle();
  const names = withCode(warnings, 'IPC_UNKNOWN_OPTION').map((w) => w.message.match(/"(\w+)"/)[1]);
  assert.deepEqual(names.sort(), ['connectionOptions', 'lbPassThrough', 'poolPassThrough']);
});

test('options - DEFAULTS has waitOnFirstConnect off and no legacy names', () => {
  assert.equal(DEFAULTS.waitOnFirstConnect, false);
  for (const legacy of Object.keys(LEGACY_ALIASES)) assert.ok(!(legacy in DEFAULTS), legacy);
});
