'use strict';

// A call that finds its connection closing before the client has handled
// the loss (the socket is destroyed at once; its 'close', which changes the
// state, is a later macrotask) fails once that is handled, so a caller
// retrying at once sees the client `disconnected` / `reconnecting`. It used
// to fail in a microtask: a retry loop that only awaits promises never let
// the close run and spun for ever (999 failures in a row) on a client still
// `connected`. The scripted peer makes the window deterministic: a frame
// that is not JSON follows the first answer in the same write, so the caller
// is woken before the client aborts the connection. Python:
// tests/test_retry_loop_on_loss.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionLostError, NotConnectedError } = require('..');
const { streamingPeer, connectedClient } = require('./helpers');

const TIMEOUT = { timeout: 5000 };
let channels = 0;
// Every send path a user loop may retry (each with its own helper call site).
const OPS = {
  request: (c) => c.request('echo', 'x', TIMEOUT),
  'system()': (c) => c.system('stats', TIMEOUT),
  'publish()': (c) => c.publish('news', 'x'),
  'publish() with ack': (c) => c.publish('news', 'x', { ack: true, ...TIMEOUT }),
  'notify()': (c) => c.notify('news', 'x'),
  'subscribe()': (c) => c.subscribe(`topic${channels++}`, () => {}),
  'serve()': (c) => c.serve(`svc${channels++}`, () => null),
  'stream()': async (c) => {
    for await (const item of c.stream('echo', 'x', TIMEOUT)) void item;
  }
};

/** A peer granting streams whose first answer is followed by garbage in the same write; the rest echo. */
async function garblingPeer(t) {
  let answered = 0;
  return streamingPeer(t, {
    onRequest: (msg, conn, reply) => {
      if (msg.window !== undefined && msg.window !== null) {
        conn.send({ message_type: 'stream_end', app_id: msg.app_id, channel_id: msg.channel_id, reply_to: msg.message_id, payload: null, message_id: `e${msg.message_id}`, timestamp: Date.now() / 1000 });
        return;
      }
      if (answered++ > 0) return reply(msg.payload);
      conn.socket.cork(); // one write: the answer, then a frame that is not JSON
      reply(msg.payload);
      conn.socket.write(Buffer.from([0, 0, 0, 1, 0x78]));
      conn.socket.uncork();
    }
  });
}

/** Runs `op` in a tight retry loop after the answer that comes with garbage. */
async function retryLoop(client, op) {
  assert.equal(await client.request('echo', 0, TIMEOUT), 0);
  const failures = [];
  for (let n = 0; n < 1000; n++) {
    try {
      await op(client);
      return { failures, answered: true };
    } catch (err) {
      assert.ok(err instanceof ConnectionLostError, `${err.code}: ${err.message}`);
      failures.push([err.code, client.state]);
      if (client.state !== 'connected') break;
    }
  }
  return { failures, answered: false };
}

for (const [name, op] of Object.entries(OPS)) {
  test(`retry loop on loss - ${name} that finds the socket closing fails once the loss is handled (reconnect off)`, async (t) => {
    const peer = await garblingPeer(t);
    const client = await connectedClient(t, peer, { reconnect: false, heartbeatInterval: null });
    client.on('error', () => {});
    const { failures, answered } = await retryLoop(client, op);
    assert.equal(answered, false);
    assert.deepEqual(failures, [['connection_lost', 'disconnected']]); // was 999 in a row, all 'connected'
    await assert.rejects(op(client), (err) => err instanceof NotConnectedError);
  });
}

test('retry loop on loss - with reconnect on, the retry waits in the offline queue and is answered', async (t) => {
  const peer = await garblingPeer(t);
  const client = await connectedClient(t, peer, { heartbeatInterval: null, initialDelay: 10, maxDelay: 20 });
  client.on('error', () => {});
  const failures = [];
  let answer;
  for (let n = 0; n < 1000 && answer === undefined; n++) {
    try {
      answer = await client.request('echo', n, TIMEOUT);
      if (n === 0) answer = undefined; // the answer that came with the garbage
    } catch (err) {
      failures.push([err.code, client.state]);
    }
  }
  assert.deepEqual(failures, [['connection_lost', 'reconnecting']]);
  assert.equal(answer, 2);
  assert.equal(client.state, 'connected');
});
