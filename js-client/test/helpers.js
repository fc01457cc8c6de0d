'use strict';

/**
 * Test helpers: the shared vectors and spec, and a scripted protocol peer on
 * a real socket (port 0) for the client behaviours that need a server to
 * misbehave on purpose (go silent, drop the connection). Cross-language
 * behaviour against the real Python server lives in interop-tests/.
 */

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { once } = require('node:events');
const { IPCClient } = require('..');
const { FrameDecoder } = require('../lib/framing');
const { buildMessage, decodeMessage } = require('../lib/envelope');
const { decodeBinaryFrame, encodeOutgoing } = require('../lib/protocol/attachments');

/** How the peer encodes what it sends: a payload with bytes as a binary frame (§16). */
const PEER_SENDS = { legacy: false, features: new Set(['binary']), sendLimit: 2 ** 32 - 1 };

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Loads interop-tests/vectors/frames.json.
 * @returns {{max_frame_size: number, vectors: Array<{name: string, hex: string, message?: object, error?: string, canonical?: boolean}>}}
 */
function loadVectors() {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'vectors', 'frames.json'), 'utf8'));
}

/**
 * Loads interop-tests/spec/error_codes.json.
 * @returns {{codes: Array<{code: string, side: string}>}}
 */
function loadErrorCodes() {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'error_codes.json'), 'utf8'));
}

/**
 * Waits for an event with a bounded timeout (tests never sleep blindly).
 * Unlike events.once(), an 'error' emitted meanwhile does not reject.
 * @param {import('node:events').EventEmitter} emitter
 * @param {string} event
 * @param {number} [ms]
 * @returns {Promise<unknown[]>}
 */
function waitFor(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, listener);
  });
}

/**
 * A scripted server speaking the bridge protocol on 127.0.0.1, port 0.
 *
 * By default it completes handshakes, acks subscribe/unsubscribe, answers
 * pings and records every message. `silent = true` makes it stop answering
 * anything (a hung peer); `drop()` closes every connection.
 */
class Peer {
  /**
   * @param {{heartbeatIntervalMs?: number, maxFrameSize?: number, onRequest?: Function, refuse?: (msg: object) => boolean, legacy?: boolean, onConnect?: (msg: object, conn: object) => boolean}} [options]
   *   `refuse(msg)` true answers that subscribe/unsubscribe with a `forbidden` error.
   *   `legacy` behaves like a version-1 (1.1.x) server: a connect reply
   *   without `protocol`, no subscribe acks, pings never answered (§10).
   *   `onConnect(msg, conn)` returning true means it answered the connect itself.
   *   `negotiates` false answers like a 2.0.0 server: no `features` in the reply
   *   (today's server always answers a connect that asks with a list; this one grants none).
   */
  constructor({ heartbeatIntervalMs = 15000, maxFrameSize = 16 * 1024 * 1024, onRequest, refuse, legacy = false, onConnect, negotiates = true } = {}) {
    this.refuse = refuse ?? (() => false);
    this.legacy = legacy;
    this.negotiates = negotiates;
    this.onConnect = onConnect ?? null;
    this.heartbeatIntervalMs = heartbeatIntervalMs;
    this.maxFrameSize = maxFrameSize;
    this.onRequest = onRequest ?? null;
    this.silent = false;
    this.received = [];
    this.sockets = new Set();
    this.events = new (require('node:events').EventEmitter)();
    this.server = net.createServer((socket) => this._accept(socket));
  }

  /**
   * Starts listening on port 0.
   * @param {number} [port]
   * @returns {Promise<number>} the port.
   */
  async listen(port = 0) {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    return this.port;
  }

  /**
   * Handles one client connection.
   * @param {net.Socket} socket
   * @private
   */
  _accept(socket) {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new FrameDecoder({ maxFrameSize: this.maxFrameSize });
    const conn = { socket, send: (msg) => !socket.destroyed && socket.write(Buffer.concat([encodeOutgoing(msg, PEER_SENDS)].flat())) };
    socket.on('data', (chunk) => {
      for (const body of decoder.feed(chunk)) {
        const msg = body[0] === 0 ? decodeBinaryFrame(body) : decodeMessage(body);
        this.received.push(msg);
        this.events.emit('message', msg);
        if (!this.silent) this._answer(conn, msg);
      }
    });
    this.events.emit('connection', conn);
  }

  /**
   * Default behaviour of a well-behaved server.
   * @param {{send: Function}} conn
   * @param {object} msg
   * @private
   */
  _answer(conn, msg) {
    const reply = (payload, extra = {}) =>
      conn.send(buildMessage('response', msg.app_id, msg.channel_id, payload, { reply_to: msg.message_id, ...extra }));
    const action = msg.payload && msg.payload.action;
    if (msg.message_type === 'request' && msg.channel_id === 'system' && action === 'connect') {
      if (this.onConnect && this.onConnect(msg, conn)) return;
      if (this.legacy) {
        reply({ status: 'connected', connection_id: msg.payload.connection_id });
        return;
      }
      reply({
        status: 'connected',
        connection_id: msg.payload.connection_id,
        protocol: 2,
        server: 'test-peer/0',
        heartbeat_interval_ms: this.heartbeatIntervalMs,
        max_frame_size: this.maxFrameSize,
        ...(this.negotiates && Array.isArray(msg.payload.features) ? { features: [] } : {})
      });
    } else if (msg.message_type === 'request' && msg.channel_id === 'system' && action === 'ping') {
      if (!this.legacy) reply({ status: 'pong' });
    } else if ((msg.message_type === 'subscribe' || msg.message_type === 'unsubscribe') && this.legacy) {
      // a 1.1.x server sends no acks
    } else if ((msg.message_type === 'subscribe' || msg.message_type === 'unsubscribe') && this.refuse(msg)) {
      reply(null, { error: { code: 'forbidden', message: 'refused' } });
    } else if (msg.message_type === 'subscribe' || msg.message_type === 'unsubscribe') {
      const serve = msg.payload && msg.payload.serve === true;
      const status = msg.message_type === 'subscribe' ? (serve ? 'serving' : 'subscribed') : serve ? 'unserved' : 'unsubscribed';
      reply({ status });
    } else if (msg.message_type === 'request' && this.onRequest) {
      this.onRequest(msg, conn, reply);
    }
  }

  /** Destroys every client connection (the server keeps listening). */
  drop() {
    for (const socket of this.sockets) socket.destroy();
  }

  /**
   * Stops listening and drops every connection.
   * @returns {Promise<void>}
   */
  async close() {
    this.drop();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Resolves with the next message the peer receives that satisfies `pred`,
 * or rejects after `ms`.
 * @param {Peer} peer
 * @param {(msg: object) => boolean} pred
 * @param {number} [ms]
 * @returns {Promise<object>}
 */
function nextReceived(peer, pred, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a message')), ms);
    const onMessage = (msg) => {
      if (!pred(msg)) return;
      clearTimeout(timer);
      peer.events.off('message', onMessage);
      resolve(msg);
    };
    peer.events.on('message', onMessage);
  });
}

/**
 * Waits, bounded, for a condition no event announces.
 * @param {() => boolean} pred
 * @param {number} [ms]
 * @param {string} [what] named in the timeout error.
 */
async function until(pred, ms = 5000, what = 'a condition') {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Records the process warnings emitted from now until the test ends (they
 * are emitted on the next tick: wait for them with until()).
 * @param {import('node:test').TestContext} t
 * @returns {Error[]}
 */
function captureWarnings(t) {
  const seen = [];
  const listener = (warning) => seen.push(warning);
  process.on('warning', listener);
  t.after(() => process.off('warning', listener));
  return seen;
}

/**
 * Lets pending ticks and immediates run (process warnings are emitted on
 * the next tick), so a test can check that nothing more was emitted.
 * @returns {Promise<void>}
 */
function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A port nothing listens on (taken from the OS, then released).
 * @returns {Promise<number>}
 */
async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A scripted peer and a client connected to it, both closed after the test
 * (the client's reconnection backoff short, unless `clientOptions` say otherwise).
 * @param {import('node:test').TestContext} t
 * @param {object} [peerOptions]
 * @param {object} [clientOptions]
 * @returns {Promise<{peer: Peer, port: number, client: import('..').IPCClient}>}
 */
async function peerAndClient(t, peerOptions = {}, clientOptions = {}) {
  const peer = new Peer(peerOptions);
  const port = await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port, initialDelay: 20, maxDelay: 50, ...clientOptions });
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  return { peer, port, client };
}

/** A peer that grants the features of §15 (or not, `features: null`). */
async function streamingPeer(t, { features = ['cancel', 'streams'], onRequest, hold = null } = {}) {
  const peer = new Peer({
    onRequest,
    onConnect: (msg, conn) => {
      const payload = { status: 'connected', connection_id: msg.payload.connection_id, protocol: 2, server: 'test-peer/0', heartbeat_interval_ms: 15000, max_frame_size: 1 << 24 };
      if (features !== null) payload.features = features;
      const accept = () => conn.send(buildMessage('response', msg.app_id, 'system', payload, { reply_to: msg.message_id }));
      if (hold === null) accept();
      else hold.then(accept); // the handshake waits for the test
      return true;
    }
  });
  await peer.listen();
  t.after(() => peer.close());
  return peer;
}

/**
 * A streaming peer whose stream requests (those with a `window`) are
 * answered as `script(request, out)` decides, `out` being `{item(payload),
 * end(), fail(code)}`; other requests are answered with their payload.
 * `peer.streams` lists the stream requests it received, `peer.outs` their `out`.
 * @param {import('node:test').TestContext} t
 * @param {(request: object, out: {item: Function, end: Function, fail: Function}) => void} script
 * @returns {Promise<Peer>}
 */
async function producerPeer(t, script) {
  const peer = await streamingPeer(t, {
    onRequest: (msg, conn, reply) => {
      if (msg.window === undefined || msg.window === null) return reply(msg.payload);
      const frame = (type, payload) => conn.send(buildMessage(type, msg.app_id, msg.channel_id, payload, { reply_to: msg.message_id }));
      const out = {
        item: (payload) => frame('stream_item', payload),
        end: () => frame('stream_end', null),
        fail: (code) => reply(null, { error: { code, message: `${code} (from the test's peer)` } })
      };
      peer.streams.push(msg);
      peer.outs.push(out);
      script(msg, out);
    }
  });
  peer.streams = [];
  peer.outs = [];
  return peer;
}

/**
 * A client connected to `peer`, disconnected after the test.
 * @param {import('node:test').TestContext} t
 * @param {Peer} peer
 * @param {object} [options]
 * @returns {Promise<import('..').IPCClient>}
 */
async function connectedClient(t, peer, options = {}) {
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, ...options });
  await client.connect();
  t.after(() => client.disconnect());
  return client;
}

module.exports = { ROOT, loadVectors, loadErrorCodes, waitFor, Peer, peerAndClient, streamingPeer, producerPeer, connectedClient, nextReceived, until, captureWarnings, settle, freePort };
