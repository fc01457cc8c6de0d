'use strict';

/**
 * TLS for the client (docs/security.md §2), the mirror of ipc_client/tls.py:
 * the `tls` option checked and turned into what `tls.connect()` takes, and
 * the ways a TLS connection fails turned into NotConnectedError whose
 * message names TLS and whose `.cause` is what went wrong underneath.
 *
 * Which failures are final: a certificate refused by either side (this
 * client's check of the server's, or the server's alert about ours) and any
 * other error of the TLS layer cannot be fixed by trying again, so
 * waitOnFirstConnect and the reconnect loop stop at once, as for a refused
 * token (refused()). A connection closed or reset during the TLS handshake
 * is retried like any network failure: it is what a plaintext server does
 * to a TLS client (and what a restarting server does to anyone).
 */

const net = require('node:net');
const tls = require('node:tls');
const { ConnectionLostError, FrameError, IpcError, NotConnectedError } = require('./errors');
const { PEER_SPEAKS_TLS } = require('./framing');

/**
 * A host name's addresses are tried in turn, the next one when one has not
 * connected within this (Node's default, written down to mirror the Python
 * client's ADDRESS_ATTEMPT_DELAY_S): an address that never answers (a node
 * whose host is gone, docs/cluster.md §5) does not hold the attempt until
 * connectTimeout.
 */
const ADDRESS_ATTEMPT_DELAY_MS = 250;

/**
 * OpenSSL's certificate verification results, as Node names them in `err.code`
 * (the X509_V_ERR_* list of the tls module's documentation).
 */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_CRL', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CRL_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED', 'CRL_NOT_YET_VALID', 'CRL_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD', 'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED', 'INVALID_CA',
  'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID'
]); // prettier-ignore

/**
 * The `tls` option, checked: null (plaintext), or the options for
 * tls.connect() with `rejectUnauthorized: true` and `minVersion: 'TLSv1.2'`
 * unless given. `true` trusts Node's CA store; an object is a
 * tls.ConnectionOptions (`ca`, `cert`, `key`, `servername`,
 * `rejectUnauthorized`...): its `ca` replaces the store, `cert` and `key`
 * present a client certificate (mutual TLS).
 * @param {unknown} value
 * @returns {Readonly<object>|null}
 * @throws {TypeError} any other value, or a mistyped `servername` or `rejectUnauthorized`.
 */
function parseTlsOption(value) {
  if (value === null || value === undefined || value === false) return null;
  if (value === true) value = {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`option tls must be true, false, null or a tls.ConnectionOptions object, got ${typeof value}`);
  }
  if (value.servername !== undefined && typeof value.servername !== 'string') {
    throw new TypeError('option tls.servername must be a string');
  }
  if (value.rejectUnauthorized !== undefined && typeof value.rejectUnauthorized !== 'boolean') {
    throw new TypeError('option tls.rejectUnauthorized must be a boolean');
  }
  if ((value.key !== undefined) !== (value.cert !== undefined) && value.pfx === undefined) {
    throw new TypeError('options tls.cert and tls.key go together (mutual TLS)');
  }
  return Object.freeze({ rejectUnauthorized: true, minVersion: 'TLSv1.2', ...value });
}

/**
 * What tls.connect() takes for one connection: the `tls` option, the
 * address, and the name the certificate must carry (`servername`, else the
 * host unless it is an IP address, which is checked against the
 * certificate's IP addresses instead).
 * @param {Readonly<object>} options the parsed `tls` option.
 * @param {string} host
 * @param {number} port
 * @returns {object}
 */
function connectOptions(options, host, port) {
  const servername = options.servername ?? (net.isIP(host) ? undefined : host);
  return { ...options, host, port, servername, autoSelectFamily: true, autoSelectFamilyAttemptTimeout: ADDRESS_ATTEMPT_DELAY_MS };
}

/**
 * Opens a connection's socket: TLS when the `tls` option is set, else
 * plain TCP. Every address of a name is tried in turn: 'localhost' may
 * resolve to ::1 first while the server listens on 127.0.0.1 (Node 20 does
 * this by default; Node 18 needs it asked for, and knows the option from
 * 18.13, the `engines` floor).
 * @param {Readonly<object>|null} options the parsed `tls` option.
 * @param {string} host
 * @param {number} port
 * @param {object} [onread] where a plain socket's reads land (reads.js); a TLS socket emits 'data' instead.
 * @returns {{socket: import('node:net').Socket, ready: string}} `ready`: the
 *   event after which the bridge handshake starts ('secureConnect' or 'connect').
 */
function openSocket(options, host, port, onread) {
  if (options === null) {
    return { socket: net.connect({ host, port, autoSelectFamily: true, autoSelectFamilyAttemptTimeout: ADDRESS_ATTEMPT_DELAY_MS, onread }), ready: 'connect' };
  }
  return { socket: tls.connect(connectOptions(options, host, port)), ready: 'secureConnect' };
}

/**
 * The server's alerts in words, the same as Python's (ipc_client/tls.py) but
 * for the options' names: each names the cause its alert stands for.
 * handshake_failure is OpenSSL's catch-all: over TLS 1.2 it is also what a
 * server requiring a client certificate sends when none came.
 */
const ALERTS = new Map([
  ['handshake_failure', 'the server refused the handshake (handshake_failure): no cipher suite or protocol setting in common with this client, or, over TLS 1.2, no client certificate where the server requires one (mutual TLS: set tls.cert and tls.key)'],
  ['protocol_version', "the server refused this client's TLS version (protocol_version): the versions the two allow do not overlap, and the server needs TLS 1.2 or later"],
  ['certificate_required', 'the server requires a client certificate and this client presented none (certificate_required; mutual TLS: set tls.cert and tls.key)']
]); // prettier-ignore

/** Alerts about the certificate this client presented. */
const CERTIFICATE_ALERTS = new Set(['bad_certificate', 'unknown_ca', 'certificate_expired', 'certificate_revoked', 'certificate_unknown', 'unsupported_certificate']);

/**
 * @param {string} alert the alert's name, `protocol_version`.
 * @returns {string}
 * @private
 */
function alertWords(alert) {
  if (ALERTS.has(alert)) return ALERTS.get(alert);
  if (CERTIFICATE_ALERTS.has(alert)) {
    return `the server refused this client's certificate (${alert}): mutual TLS needs one that a CA the server trusts signed, not expired (tls.cert and tls.key)`;
  }
  return `the server refused the connection (${alert})`;
}

/**
 * Why a TLS error happened, in words.
 * @param {Error} err
 * @returns {string}
 * @private
 */
function reason(err) {
  const code = err.code || '';
  if (CERTIFICATE_CODES.has(code)) return `the server's certificate was refused: ${err.message}`;
  const at = code.indexOf('ALERT_'); // ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: the server's alert
  if (code.startsWith('ERR_SSL_') && at >= 0) return `${alertWords(code.slice(at + 'ALERT_'.length).toLowerCase())}: ${err.message}`;
  if (code.startsWith('ERR_SSL_')) return err.message;
  return 'the server closed the connection during the TLS handshake: does it speak TLS on this port?';
}

/**
 * What connect() rejects with when a connection closed before the bridge
 * handshake completed, when TLS explains it; null otherwise.
 *
 * With TLS: the TLS handshake failed (`secured` false), or, over TLS 1.3,
 * the server checked this client's certificate after the client's own
 * handshake was done and refused it: its alert arrives as the error of the
 * first read, while the connect waits for its reply. Without TLS: a server
 * that answers in TLS, or closes without answering the connect, is most
 * likely a TLS port.
 * @param {Error|null} err the socket's first error, or the protocol's violation.
 * @param {{host: string, port: number, tls: boolean, connected: boolean, secured: boolean}} where
 *   `connected`: TCP connected; `secured`: the TLS handshake completed.
 * @returns {NotConnectedError|null}
 */
function handshakeFailure(err, { host, port, tls, connected, secured }) {
  const peer = `${host}:${port}`;
  if (tls && err instanceof IpcError) return null; // the client's own: the connect timeout, disconnect()
  if (tls && connected && (!secured || (err && String(err.code || '').startsWith('ERR_SSL_')))) {
    const cause = err ?? new ConnectionLostError('the server closed the connection during the TLS handshake');
    const what = secured ? `TLS connection to ${peer} refused` : `TLS handshake with ${peer} failed`;
    return new NotConnectedError(`${what}: ${reason(cause)}`, { cause });
  }
  if (!tls && err instanceof FrameError && err.message.endsWith(PEER_SPEAKS_TLS)) {
    return new NotConnectedError(`${peer} answered in TLS and this client has TLS off (set tls): ${err.message}`, { cause: err });
  }
  if (!tls && connected && err === null) {
    const cause = new ConnectionLostError(`${peer} closed the connection without answering the connect`);
    return new NotConnectedError(`${peer} closed the connection without answering the connect: is it a TLS port? (this client has TLS off)`, { cause });
  }
  return null;
}

/**
 * Whether a failed connection attempt is final: a certificate refused by
 * either side, or another error of the TLS layer (see the module's doc).
 * @param {Error} err
 * @returns {boolean}
 */
function refused(err) {
  const cause = err instanceof NotConnectedError ? err.cause : undefined;
  if (cause instanceof FrameError) return cause.message.endsWith(PEER_SPEAKS_TLS);
  const code = (cause && cause.code) || '';
  return CERTIFICATE_CODES.has(code) || code.startsWith('ERR_SSL_');
}

module.exports = { parseTlsOption, openSocket, handshakeFailure, refused };
