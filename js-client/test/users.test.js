'use strict';

// The client's side of users (docs/security.md §3, docs/protocol.md §3.1):
// the `user` option, the connect that carries it, and the error frame that
// withdraws a registration. The server's side, with the real Node client,
// is interop-tests/test_js_users.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { parseOptions } = require('../lib/options');
const { FrameDecoder } = require('../lib/framing');
const { ClientProtocol } = require('../lib/protocol/client_protocol');
const { Subscriptions } = require('../lib/subscriptions');
const { errorFromWire, ForbiddenError } = require('../lib/errors');

test('users - the user option is a non-empty string or null', () => {
  assert.equal(parseOptions({}).user, null);
  assert.equal(parseOptions({ user: 'alice' }).user, 'alice');
  for (const user of ['', 7, ['alice']]) {
    assert.throws(() => parseOptions({ user }), /option user must be a non-empty string or null/);
  }
});

test('users - the connect carries the user beside the token', () => {
  const sent = (options) => {
    const proto = new ClientProtocol({ appId: 'shop', connectionId: 'c1', ...options });
    proto.connect();
    const [body] = new FrameDecoder().feed(Buffer.concat(proto.dataToSend()));
    return JSON.parse(body.toString('utf8')).payload;
  };
  const payload = sent({ user: 'alice', token: 's3cret' });
  assert.equal(payload.user, 'alice');
  assert.equal(payload.token, 's3cret');
  assert.equal('user' in sent({}), false);
});

test('users - a withdrawn registration is dropped locally, nothing else is', () => {
  const subs = new Subscriptions({ options: {} });
  const handler = () => {};
  subs.subscriptions.set('orders.*.eu', new Set([handler]));
  subs.subscriptions.set('orders.new', new Set([handler]));
  subs.responders.set('inventory.*', handler);
  const withdraw = (operation, channel, revoked = true) =>
    subs.withdrawn(errorFromWire({ code: 'forbidden', message: 'no', details: { operation, channel, user: 'alice', revoked } }));
  withdraw('subscribe', 'orders.new', false); // a plain forbidden answer: not a withdrawal
  subs.withdrawn(errorFromWire({ code: 'handler_error', message: 'x', details: { operation: 'subscribe', channel: 'orders.new', revoked: true } }));
  assert.deepEqual([...subs.subscriptions.keys()], ['orders.*.eu', 'orders.new']);
  withdraw('subscribe', 'orders.*.eu');
  withdraw('serve', 'inventory.*');
  assert.deepEqual([...subs.subscriptions.keys()], ['orders.new']);
  assert.deepEqual([...subs.responders.keys()], []);
  assert.ok(errorFromWire({ code: 'forbidden', message: 'no' }) instanceof ForbiddenError);
});
