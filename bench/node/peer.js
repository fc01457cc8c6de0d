'use strict';

/**
 * The Node side of bench/bench.py: one process plays one role with one kind
 * of client. No dependencies for `ours` (the repository's js-client) and
 * `minimal` (a hand-written `net` client); `nats` needs npm `nats`, which
 * bench.py installs into bench/node/node_modules on demand.
 *
 *   node bench/node/peer.js ROLE --client ours|minimal|nats --port P [options]
 *
 * Roles:
 *   rr         64 requests in flight (--inflight), --warmup s, then --rounds
 *              windows of --window s; prints `mark` at each window boundary
 *   latency    one request in flight for --seconds after 300 warm-up requests
 *   responder  answers requests on the echo channel until stdin closes
 *   subs       --n subscriber connections; subscriber i writes its count into
 *              slot i (uint64 LE) of the file --counters
 *   pub        publishes --count messages (or until --cap s), at most --window
 *              ahead of the slowest subscriber (read from --counters); a
 *              warm-up phase, `mark`, the measured phase, `mark`
 *
 * Prints `ready` when set up, `mark` lines at measurement boundaries (the
 * parent samples server CPU on them), `result {json}` at the end, and
 * `error ...` on failure. Exits when its stdin closes.
 */

const net = require('node:net');
const fs = require('node:fs');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const ROOT = path.resolve(__dirname, '..', '..');
const APP_ID = 'bench';
const ECHO = 'echo';
const FANOUT = 'bench.fanout';
// The same ~100-byte JSON payload as bench/_common.py.
const PAYLOAD = {
  order_id: 48213,
  customer: 'ACME Corp',
  items: [
    { sku: 'A-1', qty: 2 },
    { sku: 'B-7', qty: 1 },
  ],
  total: 99.5,
};
const TIMEOUT_MS = 10000;

function parseArgs(argv) {
  const args = { role: argv[0] };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  return args;
}

const out = (line) => process.stdout.write(`${line}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise((resolve) => setImmediate(resolve));

// -- the minimal `net` client --------------------------------------------------

/** A hand-written client: one frame per write, TCP_NODELAY, futures by reply_to. */
class MinimalClient {
  constructor(port) {
    this.port = port;
    this.waiting = new Map();
    this.nextId = 1;
    this.chunks = [];
    this.buffered = 0;
  }

  async connect() {
    await new Promise((resolve, reject) => {
      this.sock = net.connect({ host: '127.0.0.1', port: this.port, noDelay: true }, resolve);
      this.sock.once('error', reject);
    });
    this.sock.on('data', (chunk) => this._onData(chunk));
    this.sock.on('close', () => {
      for (const { reject } of this.waiting.values()) reject(new Error('connection lost'));
      this.waiting.clear();
    });
    const reply = await this.request('system', { action: 'connect', connection_id: 'minimal-node', protocol: 2, client: 'minimal/1' });
    if (!reply || reply.status !== 'connected') throw new Error(`handshake refused: ${JSON.stringify(reply)}`);
  }

  _onData(chunk) {
    let buf = this.buffered ? Buffer.concat([this.rest, chunk]) : chunk;
    let pos = 0;
    while (buf.length - pos >= 4) {
      const size = buf.readUInt32BE(pos);
      if (buf.length - pos - 4 < size) break;
      const msg = JSON.parse(buf.toString('utf8', pos + 4, pos + 4 + size));
      pos += 4 + size;
      const waiter = this.waiting.get(msg.reply_to);
      if (waiter !== undefined) {
        this.waiting.delete(msg.reply_to);
        if (msg.error) waiter.reject(new Error(JSON.stringify(msg.error)));
        else waiter.resolve(msg.payload);
      } else if (msg.message_type === 'publish' && this.onPublish) {
        this.onPublish(msg.payload);
      } else if (msg.message_type === 'request' && msg.channel_id === 'system') {
        this._send('system', 'response', { status: 'pong' }, msg.message_id);
      }
    }
    this.rest = pos < buf.length ? buf.subarray(pos) : null;
    this.buffered = this.rest ? this.rest.length : 0;
  }

  _send(channel, type, payload, replyTo, ack) {
    const id = `m${this.nextId++}`;
    const msg = { message_id: id, app_id: APP_ID, channel_id: channel, message_type: type, payload, timestamp: Date.now() / 1000 };
    if (replyTo !== undefined) msg.reply_to = replyTo;
    if (ack) msg.ack = true;
    const body = Buffer.from(JSON.stringify(msg));
    const frame = Buffer.allocUnsafe(4 + body.length);
    frame.writeUInt32BE(body.length, 0);
    body.copy(frame, 4);
    this.sock.write(frame);
    return id;
  }

  request(channel, payload) {
    return new Promise((resolve, reject) => {
      this.waiting.set(this._send(channel, 'request', payload), { resolve, reject });
    });
  }

  /** Subscribe; resolves on the server's ack. Publishes go to `onPublish`. */
  subscribe(channel, onPublish) {
    this.onPublish = onPublish;
    return new Promise((resolve, reject) => {
      this.waiting.set(this._send(channel, 'subscribe', null), { resolve, reject });
    });
  }

  publish(channel, payload) {
    this._send(channel, 'publish', payload);
  }

  /** A publish the server acknowledges once every delivery is queued. */
  publishAcked(channel, payload) {
    return new Promise((resolve, reject) => {
      this.waiting.set(this._send(channel, 'publish', payload, undefined, true), { resolve, reject });
    });
  }

  async close() {
    this.sock.end();
    await new Promise((resolve) => this.sock.once('close', resolve));
  }
}

// -- one interface over the three kinds of client --------------------------------

let natsModule = null;
function nats() {
  if (natsModule === null) natsModule = require(path.join(__dirname, 'node_modules', 'nats'));
  return natsModule;
}

/**
 * @returns {Promise<{request: Function, serve: Function, subscribe: Function, publish: Function, publishLast: Function, close: Function}>}
 */
async function open(kind, port) {
  if (kind === 'ours') {
    const { IPCClient } = require(path.join(ROOT, 'js-client'));
    const c = new IPCClient(APP_ID, { host: '127.0.0.1', port, reconnect: false, requestTimeout: TIMEOUT_MS });
    await c.connect();
    return {
      request: () => c.sendRequest(ECHO, PAYLOAD),
      serve: () => c.serve(ECHO, (msg) => msg.payload),
      subscribe: (onMessage) => c.subscribe(FANOUT, onMessage),
      publish: () => c.publish(FANOUT, PAYLOAD),
      publishLast: () => c.publish(FANOUT, PAYLOAD, { ack: true }),
      close: () => c.disconnect(),
    };
  }
  if (kind === 'minimal') {
    const c = new MinimalClient(port);
    await c.connect();
    return {
      request: () => c.request(ECHO, PAYLOAD),
      subscribe: (onMessage) => c.subscribe(FANOUT, onMessage),
      publish: () => c.publish(FANOUT, PAYLOAD),
      publishLast: () => c.publishAcked(FANOUT, PAYLOAD),
      close: () => c.close(),
    };
  }
  if (kind === 'nats') {
    // Payloads are JSON-encoded and decoded in every role, as an application
    // exchanging objects over NATS would.
    const { connect } = nats();
    const nc = await connect({ servers: `127.0.0.1:${port}`, noEcho: true });
    const enc = (value) => Buffer.from(JSON.stringify(value));
    const dec = (data) => JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    return {
      request: async () => dec((await nc.request(ECHO, enc(PAYLOAD), { timeout: TIMEOUT_MS })).data),
      serve: async () => {
        nc.subscribe(ECHO, { callback: (err, m) => { if (!err) m.respond(enc(dec(m.data))); } });
        await nc.flush();
      },
      subscribe: async (onMessage) => {
        nc.subscribe(FANOUT, { callback: (err, m) => { if (!err) onMessage(dec(m.data)); } });
        await nc.flush();
      },
      publish: () => nc.publish(FANOUT, enc(PAYLOAD)),
      publishLast: async () => { nc.publish(FANOUT, enc(PAYLOAD)); await nc.flush(); },
      close: () => nc.close(),
    };
  }
  throw new Error(`unknown client kind ${kind}`);
}

// -- roles -------------------------------------------------------------------------

async function rr(a) {
  const c = await open(a.client, Number(a.port));
  const inflight = Number(a.inflight || 64);
  const rounds = Number(a.rounds || 1);
  const windowMs = Number(a.window || 1) * 1000;
  let done = 0;
  let stop = false;
  let failure = null;
  const worker = async () => {
    while (!stop) {
      await c.request();
      done++;
    }
  };
  const workers = Array.from({ length: inflight }, () => worker().catch((err) => { failure = err; stop = true; }));
  await sleep(Number(a.warmup || 0.5) * 1000);
  const windows = [];
  out('mark');
  for (let i = 0; i < rounds && !failure; i++) {
    const t0 = performance.now();
    const n0 = done;
    await sleep(windowMs);
    const t1 = performance.now();
    out('mark');
    windows.push({ count: done - n0, seconds: (t1 - t0) / 1000 });
  }
  stop = true;
  await Promise.all(workers);
  if (failure) throw failure;
  await c.close();
  out(`result ${JSON.stringify({ windows })}`);
}

async function latency(a) {
  const c = await open(a.client, Number(a.port));
  for (let i = 0; i < 300; i++) await c.request();
  const samples = [];
  const end = performance.now() + Number(a.seconds || 1) * 1000;
  for (;;) {
    const t0 = performance.now();
    await c.request();
    const t1 = performance.now();
    samples.push(Math.round((t1 - t0) * 10000) / 10);
    if (t1 >= end) break;
  }
  await c.close();
  out(`result ${JSON.stringify({ samples_us: samples })}`);
}

function untilStdinCloses() {
  return new Promise((resolve) => {
    process.stdin.on('data', () => {});
    process.stdin.on('end', resolve);
    process.stdin.on('close', resolve);
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
}

async function responder(a) {
  const c = await open(a.client, Number(a.port));
  await c.serve();
  out('ready');
  await untilStdinCloses();
  await c.close();
}

async function subs(a) {
  const n = Number(a.n || 4);
  const counts = Buffer.alloc(8 * n);
  const tally = new Array(n).fill(0);
  const fd = fs.openSync(a.counters, 'r+');
  let scheduled = false;
  // Counts reach the file once per event-loop turn, not once per message.
  const flush = () => {
    scheduled = false;
    for (let i = 0; i < n; i++) counts.writeBigUInt64LE(BigInt(tally[i]), 8 * i);
    fs.writeSync(fd, counts, 0, counts.length, 0);
  };
  const clients = [];
  for (let i = 0; i < n; i++) {
    const c = await open(a.client, Number(a.port));
    await c.subscribe(() => {
      tally[i]++;
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
    clients.push(c);
  }
  out('ready');
  await untilStdinCloses();
  for (const c of clients) await c.close();
  fs.closeSync(fd);
}

async function pub(a) {
  const n = Number(a.n || 4);
  const windowAhead = Number(a.window || 4096);
  const batch = 128;
  const fd = fs.openSync(a.counters, 'r');
  const buf = Buffer.alloc(8 * n);
  const received = () => {
    fs.readSync(fd, buf, 0, buf.length, 0);
    return Array.from({ length: n }, (_, i) => Number(buf.readBigUInt64LE(8 * i)));
  };
  const c = await open(a.client, Number(a.port));

  const phase = async (count, capS) => {
    const base = received();
    let published = 0;
    const t0 = performance.now();
    const stopAt = t0 + capS * 1000;
    while (published < count - 1 && performance.now() < stopAt) {
      const got = received();
      const slowest = Math.min(...got.map((r, i) => r - base[i]));
      const room = windowAhead - (published - slowest);
      if (room <= 0) {
        await sleep(1);
        continue;
      }
      const k = Math.min(batch, room, count - 1 - published);
      for (let i = 0; i < k; i++) await c.publish();
      published += k;
      await turn();
    }
    await c.publishLast();
    published += 1;
    const drainUntil = performance.now() + 3000;
    let got;
    for (;;) {
      got = received().map((r, i) => r - base[i]);
      if (Math.min(...got) >= published || performance.now() > drainUntil) break;
      await sleep(1);
    }
    const seconds = (performance.now() - t0) / 1000;
    const total = got.reduce((x, y) => x + y, 0);
    return { published, received: total, per_subscriber: got, lost: n * published - total, seconds, capped: published < count };
  };

  await phase(2000, 5);
  out('mark');
  const m = await phase(Number(a.count), Number(a.cap));
  out('mark');
  await c.close();
  fs.closeSync(fd);
  out(`result ${JSON.stringify(m)}`);
}

const ROLES = { rr, latency, responder, subs, pub };

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const role = ROLES[a.role];
  if (!role) throw new Error(`unknown role ${a.role}; choose from ${Object.keys(ROLES).join(', ')}`);
  // A parent that dies closes our stdin: stop then, whatever the role.
  if (a.role !== 'responder' && a.role !== 'subs') {
    process.stdin.on('data', () => {});
    process.stdin.on('end', () => process.exit(0));
  }
  await role(a);
  await flushed();
  process.exit(0);
}

/** Resolves once everything written to stdout has reached the pipe (a bare
 * process.exit can cut a long `result` line short). */
function flushed() {
  return new Promise((resolve) => process.stdout.write('', resolve));
}

main().catch(async (err) => {
  out(`error ${err && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : err}`);
  await flushed();
  process.exit(1);
});
