'use strict';

/**
 * TLS without sockets (docs/security.md §2): the core's check of a stream's
 * first bytes (docs/protocol.md §1.3), the `tls` option, and how failures
 * become not_connected. Real TLS connections, against the real server, are
 * interop-tests/test_js_tls.py.
 */

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { FrameDecoder, encodeFrame, tlsRecord } = require('../lib/framing');
const { ClientProtocol } = require('../lib/protocol/client_protocol');
const { parseOptions } = require('../lib/options');
const { parseTlsOption, handshakeFailure, refused } = require('../lib/tls_options');
const { ConnectionLostError, FrameError, NotConnectedError } = require('../lib/errors');

const ALERT = Buffer.from('15030300020246', 'hex'); // a TLS server's fatal protocol_version alert

test('framing - a TLS record as the first bytes fails the stream naming TLS, whole or byte by byte', () => {
  for (const chunks of [[ALERT], [...ALERT].map((b) => Buffer.from([b]))]) {
    const decoder = new FrameDecoder();
    let error = null;
    for (const chunk of chunks) {
      try {
        assert.deepEqual(decoder.feed(chunk), []);
      } catch (err) {
        error = err;
        break;
      }
    }
    assert.ok(error instanceof FrameError);
    assert.equal(error.code, 'bad_frame');
    assert.match(error.message, /a TLS alert on a plaintext port/);
    assert.equal(decoder.tls, true);
  }
});

test('framing - only the first bytes are checked: later, the same bytes are a length prefix', () => {
  const decoder = new FrameDecoder();
  assert.equal(decoder.feed(encodeFrame('{}')).length, 1);
  assert.throws(() => decoder.feed(Buffer.from('16030100f4', 'hex')), { code: 'too_large' });
  assert.equal(decoder.tls, false);
  assert.equal(tlsRecord(Buffer.from('160301', 'hex')), 'a TLS handshake');
  assert.equal(tlsRecord(Buffer.from('170303', 'hex')), null);
  assert.equal(tlsRecord(Buffer.from('160305', 'hex')), null);
});

test('protocol - a TLS alert answering the connect is a violation naming TLS, and no frame is queued', () => {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c1', token: null, maxFrameSize: null });
  proto.connect();
  proto.dataToSend();
  assert.deepEqual(proto.receiveData(ALERT, 0), []);
  assert.equal(proto.state, 'error');
  assert.equal(proto.violation.code, 'bad_frame');
  assert.match(proto.violation.error.message, /TLS/);
  assert.deepEqual(proto.dataToSend(), []);
});

test('options - tls: null/false is plaintext; true and objects keep rejectUnauthorized and TLS 1.2', () => {
  assert.equal(parseOptions({}).tls, null);
  assert.equal(parseOptions({ tls: false }).tls, null);
  assert.deepEqual({ ...parseOptions({ tls: true }).tls }, { rejectUnauthorized: true, minVersion: 'TLSv1.2' });
  const tls = parseOptions({ tls: { ca: 'pem', servername: 'h' } }).tls;
  assert.equal(tls.rejectUnauthorized, true);
  assert.equal(tls.servername, 'h');
  assert.equal(parseTlsOption({ rejectUnauthorized: false }).rejectUnauthorized, false);
  assert.throws(() => parseOptions({ tls: 'yes' }), TypeError);
  assert.throws(() => parseOptions({ tls: { servername: 5 } }), /servername/);
  assert.throws(() => parseOptions({ tls: { cert: 'c' } }), /cert and tls.key go together/);
});

test('failures - what connect() rejects with names TLS and keeps the cause; refusals are final', () => {
  const where = { host: 'h', port: 1, tls: true, connected: true, secured: false };
  const verify = Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  let err = handshakeFailure(verify, where);
  assert.ok(err instanceof NotConnectedError);
  assert.match(err.message, /TLS handshake with h:1 failed: the server's certificate was refused/);
  assert.equal(err.cause, verify);
  assert.equal(refused(err), true);

  const alert = Object.assign(new Error('alert 116'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' });
  err = handshakeFailure(alert, { ...where, secured: true });
  assert.match(err.message, /TLS connection to h:1 refused: .*client certificate/);
  assert.equal(refused(err), true);

  const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  err = handshakeFailure(reset, where);
  assert.match(err.message, /does it speak TLS on this port/);
  assert.equal(refused(err), false); // a reset is retried like any network failure

  assert.equal(handshakeFailure(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), { ...where, connected: false }), null);
  assert.equal(handshakeFailure(new NotConnectedError('the client disconnected'), where), null); // ours, not the TLS layer's
  err = handshakeFailure(null, { ...where, tls: false, secured: true });
  assert.match(err.message, /is it a TLS port/);
  assert.ok(err.cause instanceof ConnectionLostError);
  assert.equal(refused(err), false);
  assert.equal(handshakeFailure(null, { ...where, tls: false, connected: false }), null);
});

test("failures - each alert of the server is named for its own cause, in the Python client's words", () => {
  const where = { host: 'h', port: 1, tls: true, connected: true, secured: false };
  const said = (code) => handshakeFailure(Object.assign(new Error('alert'), { code }), where).message.replace(/^TLS handshake with h:1 failed: /, '');
  const handshake = 'the server refused the handshake (handshake_failure): no cipher suite or protocol setting in common with this client, or, over TLS 1.2, no client certificate where the server requires one (mutual TLS: set tls.cert and tls.key): alert';
  assert.equal(said('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE'), handshake);
  assert.equal(
    said('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION'),
    "the server refused this client's TLS version (protocol_version): the versions the two allow do not overlap, and the server needs TLS 1.2 or later: alert"
  );
  assert.equal(
    said('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'),
    'the server requires a client certificate and this client presented none (certificate_required; mutual TLS: set tls.cert and tls.key): alert'
  );
  for (const alert of ['bad_certificate', 'unknown_ca', 'certificate_expired']) {
    const code = `ERR_SSL_${alert === 'unknown_ca' ? 'TLSV1' : 'SSLV3'}_ALERT_${alert.toUpperCase()}`;
    assert.equal(said(code), `the server refused this client's certificate (${alert}): mutual TLS needs one that a CA the server trusts signed, not expired (tls.cert and tls.key): alert`);
  }
  assert.equal(said('ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR'), 'the server refused the connection (internal_error): alert');
  for (const code of ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA']) {
    assert.equal(refused(handshakeFailure(Object.assign(new Error('alert'), { code }), where)), true);
  }
});
