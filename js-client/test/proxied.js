'use strict';

/**
 * What the resilience and drain tests share (test/resilience.test.js,
 * test/resilience_queue.test.js, test/drain.test.js): a scripted peer (test/helpers.js) behind
 * a fault-injecting proxy (test/fault_proxy.js), and a client connected
 * through it.
 */

const { IPCClient } = require('..');
const { Peer, waitFor } = require('./helpers');
const { FaultProxy } = require('./fault_proxy');

const FAST = { initialDelay: 10, maxDelay: 40, jitter: 0 };

/**
 * A peer, a proxy in front of it and a client connected through the proxy.
 * @param {import('node:test').TestContext} t
 * @param {object} [peerOptions]
 * @param {object} [clientOptions]
 */
async function proxiedClient(t, peerOptions = {}, clientOptions = {}) {
  const peer = new Peer(peerOptions);
  await peer.listen();
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, connectTimeout: 500, ...FAST, ...clientOptions });
  t.after(async () => {
    await client.disconnect();
    await proxy.close();
    await peer.close();
  });
  return { peer, proxy, client };
}

/**
 * Takes the client offline and keeps it there: new connections are refused.
 * @returns {Promise<void>} once the client is reconnecting.
 */
async function goOffline(client, proxy) {
  proxy.refuse(true);
  const reconnecting = waitFor(client, 'reconnecting', 2000);
  proxy.cut();
  await reconnecting;
}

/**
 * A client through a proxy to `peer` (already listening) that connected
 * once and is now reconnecting, new connections refused: its calls queue.
 * @param {import('node:test').TestContext} t
 * @param {{port: number}} peer
 * @param {object} [clientOptions]
 */
async function offlineClient(t, peer, clientOptions = {}) {
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  t.after(() => proxy.close());
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, connectTimeout: 500, initialDelay: 10, maxDelay: 50, requestTimeout: 10_000, ...clientOptions });
  t.after(() => client.disconnect());
  await client.connect();
  await goOffline(client, proxy);
  return { proxy, client };
}

/** Collects the events a client emits, by name. */
function record(client, names) {
  const log = [];
  for (const name of names) client.on(name, (arg) => log.push([name, arg]));
  return log;
}

/** Application messages the peer received since `from`: [type, channel, payload]. */
function appMessages(peer, from = 0) {
  return peer.received
    .slice(from)
    .filter((m) => m.channel_id !== 'system' && m.message_type !== 'subscribe' && m.message_type !== 'response')
    .map((m) => [m.message_type, m.channel_id, m.payload]);
}

module.exports = { FAST, proxiedClient, goOffline, offlineClient, record, appMessages };
