'use strict';

/**
 * The parts of cluster-aware subscriptions that need no server
 * (docs/cluster.md §6, docs/protocol.md §3 item 10): what the handshake
 * says, the layout of islands and clusters, and the once-only delivery
 * after a move. The servers and nats-server are in
 * interop-tests/test_js_cluster_clients.py.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { ClientProtocol } = require('../lib/protocol/client_protocol');
const { ASKED_FEATURES, clusterOf } = require('../lib/protocol/cluster_info');
const { BalancedSubscriptions } = require('../lib/balanced_subscriptions');

/** The info a client protocol that asked for `features` keeps from `reply`. */
function handshake(features, reply) {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c', features });
  const id = proto.connect();
  proto.dataToSend();
  const frame = encodeFrame(encodeMessage(buildMessage('response', 'app', 'system', { status: 'connected', protocol: 2, ...reply }, { reply_to: id })));
  for (const body of proto.receiveData(frame, 0)) proto.receiveFrame(body);
  return proto.info;
}

test('balanced subscriptions - the handshake names the cluster only when the feature was granted', () => {
  assert.deepEqual([...ASKED_FEATURES], ['cancel', 'streams', 'binary', 'lame_duck', 'goaway', 'cluster']);
  assert.equal(handshake(ASKED_FEATURES, { features: ['cancel', 'cluster'], cluster: 'east' }).cluster, 'east');
  assert.equal(handshake(ASKED_FEATURES, { features: ['cancel'], cluster: 'east' }).cluster, null); // not granted
  assert.equal(handshake(null, { cluster: 'east' }).cluster, null); // not asked
  assert.equal(clusterOf({ cluster: '' }), null);
  assert.equal(clusterOf({ cluster: 7 }), null);
});

/** Placement over `names` (undefined: never reached), no I/O. */
function placement(names) {
  const servers = names.map((_, i) => ({ host: 'h', port: i + 1, healthy: true, leaving: false }));
  const subs = new BalancedSubscriptions({
    servers,
    control: () => ({ connected: true }),
    apply: async () => {},
    connect: async () => {},
    registrations: () => [],
    requestTimeout: 1000,
    emit: () => {}
  });
  names.forEach((name, i) => name !== undefined && subs.clusters.set(servers[i], name));
  return { subs, servers };
}

test('balanced subscriptions - standalone servers are islands; an unknown one too unless a cluster is known', () => {
  let { subs, servers } = placement([null, undefined]);
  assert.deepEqual(servers.map((s) => subs.isIsland(s)), [true, true]);
  ({ subs, servers } = placement(['east', 'east', null, undefined]));
  assert.deepEqual(servers.map((s) => subs.isIsland(s)), [false, false, true, false]);
});

test('balanced subscriptions - after a move a message both nodes deliver reaches the handler once', () => {
  const { subs } = placement(['east', 'east']);
  const got = [];
  const reg = {};
  const deliver = subs.deliverer(reg, (msg) => got.push(msg.payload));
  const msg = (id, payload) => ({ message_id: id, payload });
  deliver(msg('m1', 1));
  deliver(msg('m1', 1)); // before a move nothing is filtered: one server never delivers an id twice
  reg.moved = true;
  deliver(msg('m2', 2));
  deliver(msg('m2', 2));
  deliver(msg('m3', 3));
  assert.deepEqual(got, [1, 1, 2, 3]);
});
