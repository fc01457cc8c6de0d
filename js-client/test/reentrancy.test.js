'use strict';

// connect() and disconnect() called from a 'disconnected' listener while
// disconnect() runs: 1.1.x-era code that reconnects by hand from
// onDisconnected, or a helper that restarts the client. The event used to
// fire before disconnect() had recorded its close, so connect() threw a
// TypeError (reading 'then' of null) and disconnect() returned null. Real
// sockets against the scripted peer (test/helpers.js); the Python client's
// counterpart: tests/test_client_reentrancy.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { peerAndClient: setup, waitFor } = require('./helpers');

test('reentrancy - connect() from a disconnected listener during disconnect() reconnects once the close is done', async (t) => {
  const { client } = await setup(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  await client.connect();
  const seen = [];
  let reconnecting = null;
  const stop = client.onDisconnected(() => {
    stop(); // once: the test's own last disconnect() must not reconnect
    seen.push(client.state);
    reconnecting = client.connect(); // returns at once: a promise, never a throw
  });
  const connected = waitFor(client, 'connected', 5000);
  await client.disconnect();
  assert.deepEqual(seen, ['disconnecting']);
  assert.equal(typeof reconnecting.then, 'function');
  assert.equal(await reconnecting, true);
  await connected;
  assert.equal(client.state, 'connected');
  assert.equal((await client.sendRequest('echo', 7, 2000)).payload, 7);
});

test('reentrancy - disconnect() from a disconnected listener during disconnect() returns the same close, a promise', async (t) => {
  const { client } = await setup(t);
  await client.connect();
  const closes = [];
  client.on('close', () => closes.push(client.state));
  let again = null;
  client.onDisconnected(() => {
    again = client.disconnect();
  });
  const first = client.disconnect();
  assert.equal(again, first);
  await assert.doesNotReject(again.catch((err) => assert.fail(err))); // the 1.1.x-era idiom: disconnect().catch(...)
  await first;
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(closes, ['disconnected']);
});
