'use strict';

// LoadBalancedClient at its edges (docs/resilience.md §7, §8), as the
// Python client behaves (tests/test_load_balanced_edges.py): close() while
// start() opens the connections.

const test = require('node:test');
const assert = require('node:assert/strict');
const { LoadBalancedClient } = require('../lib/load_balanced_client');
const { ErrorCode } = require('../lib/errors');
const { Peer, until } = require('./helpers');

test('balanced - close() while start() opens the connections: start() rejects with not_connected', async (t) => {
  const silent = new Peer({ onConnect: () => true }); // the handshake is never answered
  await silent.listen();
  t.after(() => silent.close());
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${silent.port}`], { healthCheckInterval: 60_000, connectTimeout: 20_000 });
  const starting = lb.start();
  await until(() => silent.received.length > 0, 5000, 'the handshake');
  await lb.close();
  await assert.rejects(starting, { code: ErrorCode.NOT_CONNECTED, message: /closed during start/ }); // resolved before
  assert.equal(lb._health._timer, null); // no health checks after close()
});

test('balanced - healthCheckInterval null runs no health checks; NaN and Infinity are refused, as in Python', async (t) => {
  const peer = new Peer();
  await peer.listen();
  t.after(() => peer.close());
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${peer.port}`], { healthCheckInterval: null });
  t.after(() => lb.close());
  assert.equal(lb.healthCheckInterval, null);
  await lb.start();
  assert.equal(lb._health._timer, null); // none scheduled (Python's None)
  for (const [name, value] of [['healthCheckInterval', NaN], ['healthCheckInterval', Infinity], ['healthCheckTimeout', Infinity], ['healthCheckTimeout', null]]) {
    assert.throws(() => new LoadBalancedClient('app', ['127.0.0.1:1'], { [name]: value }), { name: 'TypeError', message: new RegExp(`^option ${name} must be a number > 0`) });
  }
});
