'use strict';

// The pool and the load-balanced client throw argument errors at the call,
// as IPCClient does (lib/publishing.js), before they pick a member: code
// that leaves the call un-awaited (the seed's Express routes) gets a throw
// its caller or Express catches, never an unhandled rejection. Nothing is
// opened for such a call: the pool below points at a port nobody listens on.
// IPCClient runs the same list first, as the reference.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ConnectionPool, LoadBalancedClient, ForbiddenError, MessageError } = require('..');

const CALLS = [
  ['publish on an invalid channel', (c) => c.publish('a..b', 1), MessageError],
  ['publish on a wildcard', (c) => c.publish('orders.*', 1), MessageError],
  ['publish on a reserved channel', (c) => c.publish('system.x', 1), ForbiddenError],
  ['notify on an invalid channel', (c) => c.notify('x.', 1), MessageError],
  ['notify on a reserved channel', (c) => c.notify('$sys.x', 1), ForbiddenError],
  ['subscribe to an invalid pattern', (c) => c.subscribe('a..b', () => {}), MessageError],
  ['subscribe without a handler', (c) => c.subscribe('orders', 'nope'), TypeError],
  ['subscribe with a timeout that is no number', (c) => c.subscribe('orders', () => {}, { timeout: 'x' }), TypeError],
  ['unsubscribe from a channel that is no string', (c) => c.unsubscribe(42), TypeError],
  ['unsubscribe a handler that is no function', (c) => c.unsubscribe('orders', 'nope'), TypeError]
];

for (const [name, make] of [
  ['client', () => new IPCClient('app', { host: '127.0.0.1', port: 1, reconnect: false })],
  ['pool', () => new ConnectionPool('app', { host: '127.0.0.1', port: 1, maxConnections: 1 })],
  ['load-balanced client', () => new LoadBalancedClient('app', ['127.0.0.1:1'], { healthCheckInterval: 60_000 })]
]) {
  test(`${name} - argument errors throw at the call, before a member is picked`, async () => {
    const client = make();
    try {
      for (const [what, call, type] of CALLS) {
        assert.throws(() => call(client), type, what);
      }
      // a name nothing is subscribed under, an invalid one included, is not refused (cleanup code)
      assert.equal(await client.unsubscribe('a..b'), undefined);
      assert.equal(await client.unsubscribe('orders', () => {}), undefined);
    } finally {
      await (client.close ?? client.disconnect).call(client);
    }
  });
}
