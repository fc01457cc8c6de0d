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
