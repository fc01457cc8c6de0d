'use strict';

// Restarts (docs/protocol.md §13): the replay mark on what the offline queue
// sends, and the lame-duck notice, against interop-tests/spec/restarts.json.
// The server's side, with real processes: interop-tests/test_js_restarts.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { IPCClient } = require('..');
const { Peer, waitFor, nextReceived } = require('./helpers');
const { FaultProxy } = require('./fault_proxy');
const { buildMessage } = require('../lib/envelope');
const restarts = require('../lib/protocol/restarts');

const ROOT = path.resolve(__dirname, '..', '..');
const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'restarts.json'), 'utf8'));
const FAST = { initialDelay: 10, maxDelay: 40, jitter: 0 };

test('restarts - the header, the feature and the notice are those of interop-tests/spec/restarts.json', () => {
  assert.equal(restarts.REPLAY_HEADER, SPEC.replay_header);
  assert.equal(restarts.REPLAY_VALUE, SPEC.replay_value);
  assert.equal(restarts.LAME_DUCK, SPEC.feature);
  const notice = { message_id: 'n', app_id: 'app', timestamp: 0, reply_to: null, ...SPEC.notice };
  assert.equal(restarts.lameDuckDeadlineMs(notice), SPEC.notice.payload.deadline_ms);
});

test('restarts - the goaway feature and notice are those of interop-tests/spec/restarts.json', () => {
  const { ASKED_FEATURES } = require('../lib/protocol/cluster_info');
  assert.equal(restarts.GOAWAY, SPEC.goaway.feature);
  assert.ok(ASKED_FEATURES.includes(restarts.GOAWAY));
  const notice = { message_id: 'n', app_id: 'app', timestamp: 0, reply_to: null, ...SPEC.goaway.notice };
  assert.equal(restarts.isGoaway(notice), true);
  assert.equal(restarts.isGoaway({ ...notice, channel_id: 'news' }), false);
  assert.equal(restarts.isGoaway({ ...notice, payload: { event: 'lame_duck' } }), false);
});

test('restarts - markReplay marks requests and notifications only, keeping their headers', () => {
  const req = buildMessage('request', 'app', 'a', 1, { headers: { traceparent: 't' } });
  const marked = restarts.markReplay(req);
  assert.deepEqual(marked.headers, { traceparent: 't', [SPEC.replay_header]: SPEC.replay_value });
  assert.equal(marked.message_id, req.message_id);
  assert.equal(req.headers[SPEC.replay_header], undefined); // the original is untouched
  assert.ok(restarts.isReplay(restarts.markReplay(buildMessage('notification', 'app', 'a', 1)).headers));
  const pub = buildMessage('publish', 'app', 'a', 1);
  assert.equal(restarts.markReplay(pub), pub);
  assert.equal(restarts.isReplay(undefined), false);
});

test('restarts - lameDuckDeadlineMs reads notices only; a bad deadline is a notice all the same', () => {
  const notice = (payload, type = 'publish', channel = 'system') => ({ message_type: type, channel_id: channel, payload });
  assert.equal(restarts.lameDuckDeadlineMs(notice({ event: 'lame_duck', deadline_ms: 1500 })), 1500);
  assert.equal(restarts.lameDuckDeadlineMs(notice({ event: 'lame_duck', deadline_ms: 'soon' })), 0);
  assert.equal(restarts.lameDuckDeadlineMs(notice({ event: 'other' })), null);
  assert.equal(restarts.lameDuckDeadlineMs(notice({ event: 'lame_duck' }, 'publish', 'news')), null);
  assert.equal(restarts.lameDuckDeadlineMs(notice({ event: 'lame_duck' }, 'notification')), null);
  assert.equal(restarts.lameDuckDeadlineMs(notice(null)), null);
});

test('restarts - what the offline queue replays carries the mark; what is sent at once does not', async (t) => {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply('ok') });
  await peer.listen();
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, connectTimeout: 500, ...FAST });
  t.after(async () => {
    await client.disconnect();
    await proxy.close();
    await peer.close();
  });
  await client.connect();
  const direct = nextReceived(peer, (m) => m.channel_id === 'direct');
  await client.request('direct', 1);
  assert.equal(((await direct).headers ?? {})[SPEC.replay_header], undefined);

  proxy.refuse(true);
  const reconnecting = waitFor(client, 'reconnecting', 2000);
  proxy.cut();
  await reconnecting;
  const request = client.request('queued', 2, 3000);
  await client.notify('queued.note', 3);
  const replayedRequest = nextReceived(peer, (m) => m.channel_id === 'queued');
  const replayedNote = nextReceived(peer, (m) => m.channel_id === 'queued.note');
  proxy.refuse(false);
  assert.equal(await request, 'ok');
  assert.equal((await replayedRequest).headers[SPEC.replay_header], SPEC.replay_value);
  assert.equal((await replayedNote).headers[SPEC.replay_header], SPEC.replay_value);
});

test('restarts - the balancer sends nothing to a leaving server while another is healthy', () => {
  const { Balancer, ServerState } = require('../lib/balancer');
  for (const strategy of ['round_robin', 'least_connections', 'weighted', 'random']) {
    const [a, b] = [new ServerState({ host: 'h', port: 1, weight: 1 }), new ServerState({ host: 'h', port: 2, weight: 1 })];
    const balancer = new Balancer([a, b], { strategy });
    a.leaving = true;
    assert.deepEqual([1, 2, 3, 4].map(() => balancer.pick().port), [2, 2, 2, 2], strategy);
    assert.equal(balancer.pick(new Set([b])), a, strategy); // nothing else left: it still serves
    b.healthy = false;
    assert.equal(balancer.pick(), a, strategy);
  }
});
