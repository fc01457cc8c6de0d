'use strict';

// The server's limits as the client protocol meets them (docs/protocol.md
// §3, §12), on bytes alone: the connect carries the client's own frame
// limit only when one is set, and a refusal sent before the connect is even
// read (too_many_connections, reply_to null) is the handshake's typed error.

const test = require('node:test');
const assert = require('node:assert/strict');
const { encodeFrame } = require('../lib/framing');
const { ProtocolState } = require('../lib/protocol/protocol');
const { ClientProtocol, HandshakeRefused } = require('../lib/protocol/client_protocol');
const { ErrorCode, TooManyConnectionsError } = require('../lib/errors');

/** The payload of the connect a client protocol queues. */
function connectPayload(options) {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c1', ...options });
  proto.connect();
  const [frame] = proto.dataToSend();
  return JSON.parse(frame.subarray(4).toString('utf8')).payload;
}

test('limits - the connect declares maxFrameSize only when it is set', () => {
  assert.equal('max_frame_size' in connectPayload({}), false);
  assert.equal(connectPayload({ maxFrameSize: 2048 }).max_frame_size, 2048);
});

test('limits - a refusal at the connection limit is TooManyConnectionsError', () => {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c1' });
  proto.connect();
  proto.dataToSend();
  const refusal = {
    message_id: 'x', app_id: '', channel_id: 'system', message_type: 'response', payload: null, timestamp: 0, reply_to: null,
    error: { code: 'too_many_connections', message: 'the server holds its maximum of 2 connections' }
  };
  const [event] = proto.receiveData(encodeFrame(Buffer.from(JSON.stringify(refusal)))).map((body) => proto.receiveFrame(body));
  assert.ok(event instanceof HandshakeRefused);
  assert.ok(event.error instanceof TooManyConnectionsError);
  assert.equal(event.error.code, ErrorCode.TOO_MANY_CONNECTIONS);
  assert.equal(proto.state, ProtocolState.ERROR);
});
