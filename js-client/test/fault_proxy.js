'use strict';

/**
 * A TCP proxy that breaks connections on purpose, for the resilience tests:
 * cut every connection, black-hole traffic (stop reading and forwarding
 * without closing, as a half-open connection or a frozen server does: the
 * bytes pile up in the socket buffers until they are full), add
 * latency, close in the middle of a frame, close the next connection right
 * after the server's Nth answer on it, refuse new connections.
 * The same operations as the Python tests' `tests/faultproxy.py`.
 */

const net = require('node:net');
const { once } = require('node:events');

/**
 * One client connection and its upstream socket.
 * @private
 */
class Link {
  /**
   * @param {FaultProxy} proxy
   * @param {net.Socket} client
   */
  constructor(proxy, client) {
    this.proxy = proxy;
    this.client = client;
    this.closeAfterAnswers = proxy._closeAfterAnswers;
    proxy._closeAfterAnswers = 0;
    this.fromServer = Buffer.alloc(0);
    this.upstream = net.connect({ host: proxy.upstreamHost, port: proxy.upstreamPort });
    this.upstream.setNoDelay(true);
    client.setNoDelay(true);
    for (const socket of [client, this.upstream]) {
      socket.on('error', () => {});
      socket.on('close', () => this.destroy());
    }
    client.on('data', (chunk) => this._forward(chunk, client, this.upstream, false));
    this.upstream.on('data', (chunk) => this._forward(chunk, this.upstream, client, true));
    if (proxy.blackholed) this.hold(true);
  }

  /**
   * Stops (true) or resumes (false) reading both sides.
   * @param {boolean} on
   */
  hold(on) {
    for (const socket of [this.client, this.upstream]) {
      if (on) socket.pause();
      else if (!socket.destroyed) socket.resume();
    }
  }

  /**
   * Forwards one chunk unless black-holed, after the configured latency.
   * @param {Buffer} chunk
   * @param {net.Socket} from
   * @param {net.Socket} to
   * @param {boolean} fromServer
   * @private
   */
  _forward(chunk, from, to, fromServer) {
    const proxy = this.proxy;
    if (proxy.blackholed) {
      from.pause();
      from.unshift(chunk); // held, not lost: it goes on when the black hole ends
      return;
    }
    if (fromServer && this.closeAfterAnswers > 0) {
      this._lastAnswer(chunk, to);
      return;
    }
    if (fromServer && proxy._cutNextFrame) {
      proxy._cutNextFrame = false;
      to.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)), () => this.destroy());
      return;
    }
    if (proxy.latencyMs > 0) setTimeout(() => !to.destroyed && to.write(chunk), proxy.latencyMs);
    else to.write(chunk);
  }

  /**
   * Forwards whole frames; after the awaited answer, closes (the frame and the FIN in one step).
   * @param {Buffer} chunk
   * @param {net.Socket} to
   * @private
   */
  _lastAnswer(chunk, to) {
    this.fromServer = Buffer.concat([this.fromServer, chunk]);
    while (this.fromServer.length >= 4) {
      const end = 4 + this.fromServer.readUInt32BE(0);
      if (this.fromServer.length < end) return;
      const frame = this.fromServer.subarray(0, end);
      this.fromServer = this.fromServer.subarray(end);
      to.write(frame);
      if (frame[4] === 0x7b && JSON.parse(frame.subarray(4).toString()).message_type === 'response' && --this.closeAfterAnswers === 0) {
        to.end(() => this.destroy());
        return;
      }
    }
  }

  /** Closes both sides. */
  destroy() {
    this.client.destroy();
    this.upstream.destroy();
    this.proxy.links.delete(this);
  }
}

/**
 * A fault-injecting TCP proxy on 127.0.0.1, port 0.
 */
class FaultProxy {
  /**
   * @param {string} upstreamHost
   * @param {number} upstreamPort
   */
  constructor(upstreamHost, upstreamPort) {
    this.upstreamHost = upstreamHost;
    this.upstreamPort = upstreamPort;
    this.blackholed = false;
    this.refusing = false;
    this.latencyMs = 0;
    this.accepted = 0;
    this.links = new Set();
    this._cutNextFrame = false;
    this._closeAfterAnswers = 0;
    this.server = net.createServer((socket) => this._accept(socket));
    this.port = 0;
  }

  /**
   * Starts listening.
   * @returns {Promise<FaultProxy>}
   */
  async start() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    return this;
  }

  /**
   * @param {net.Socket} socket
   * @private
   */
  _accept(socket) {
    if (this.refusing) {
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    this.accepted++;
    this.links.add(new Link(this, socket));
  }

  /** Open connections through the proxy. */
  get connections() {
    return this.links.size;
  }

  /** Closes every current connection (new ones are still accepted). */
  cut() {
    for (const link of [...this.links]) link.destroy();
  }

  /**
   * Stops (true) or resumes (false) reading and forwarding, without closing
   * anything: the bytes wait in the socket buffers, which fill up.
   * @param {boolean} on
   */
  blackhole(on) {
    this.blackholed = on;
    for (const link of this.links) link.hold(on);
  }

  /**
   * Delays every chunk, both ways.
   * @param {number} ms
   */
  setLatency(ms) {
    this.latencyMs = ms;
  }

  /** The next server-to-client chunk is cut in half and the connection closed. */
  closeMidFrame() {
    this._cutNextFrame = true;
  }

  /**
   * The next connection closes right after the server's `count`-th response
   * on it (1: the handshake's reply), sent in the same step.
   * @param {number} count
   */
  closeAfterAnswers(count) {
    this._closeAfterAnswers = count;
  }

  /**
   * Closes (true) new connections at once, or accepts them again (false).
   * @param {boolean} on
   */
  refuse(on) {
    this.refusing = on;
  }

  /**
   * New connections go to another upstream.
   * @param {string} host
   * @param {number} port
   */
  retarget(host, port) {
    this.upstreamHost = host;
    this.upstreamPort = port;
  }

  /**
   * Stops listening and closes every connection.
   * @returns {Promise<void>}
   */
  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

module.exports = { FaultProxy };
