'use strict';

/**
 * A Node client driven by the Python tests over JSON lines.
 *
 * argv[2] is a JSON object: {host, port, appId, options}. The agent creates
 * an IPCClient (the real js-client), reports its events on stdout as
 * {"event": name, ...}, and runs commands read from stdin, one JSON object
 * per line: {"id": n, "op": "...", ...} -> {"id": n, "ok": true, "result": ...}
 * or {"id": n, "ok": false, "error": {code, name, message, remoteType}}.
 *
 * Responders and subscriptions are described by data (`kind`), since the
 * Python side cannot send functions; their calls are reported as events.
 */

const crypto = require('node:crypto');
const { IPCClient } = require('../../js-client');
const { currentTraceContext } = require('../../js-client');
const { out, describe, runCommands } = require('./command_loop');
const { withTlsFiles } = require('./tls_files');

const config = JSON.parse(process.argv[2] || '{}');
const client = new IPCClient(config.appId || 'app', { host: '127.0.0.1', port: config.port, ...withTlsFiles(config.options || {}) });

/**
 * The SHA-256 of a value's JSON text, to compare large payloads cheaply.
 * @param {unknown} value
 * @returns {string}
 */
function digest(value) {
  return crypto.createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

/**
 * Builds a payload from a generator description (large payloads are made
 * here rather than piped through stdin).
 * @param {object} cmd
 * @returns {unknown}
 */
function payloadOf(cmd) {
  if (cmd.big !== undefined) return 'x'.repeat(cmd.big);
  return cmd.payload === undefined ? null : cmd.payload;
}

/**
 * The per-call options of a command: headers, priority, onDisconnect, idempotencyKey.
 * @param {object} cmd
 * @returns {object}
 */
function callOptions(cmd) {
  const options = {};
  if (cmd.headers !== undefined) options.headers = cmd.headers;
  if (cmd.priority !== undefined) options.priority = cmd.priority;
  if (cmd.onDisconnect !== undefined) options.onDisconnect = cmd.onDisconnect;
  if (cmd.idempotencyKey !== undefined) options.idempotencyKey = cmd.idempotencyKey;
  return options;
}

/** @type {Map<string, {promise: Promise<void>, open: () => void}>} the gates of 'gated' responders, by channel */
const gates = new Map();

/**
 * The gate of a channel's 'gated' responder, made on first use.
 * @param {string} channel
 * @returns {{promise: Promise<void>, open: () => void}}
 */
function gate(channel) {
  let g = gates.get(channel);
  if (g === undefined) {
    let open;
    g = { promise: new Promise((resolve) => (open = resolve)), open: () => open() };
    gates.set(channel, g);
  }
  return g;
}

/**
 * A responder handler described by data.
 * @param {{kind: string, channel: string, message?: string, errorType?: string, delayMs?: number, target?: string, timeoutMs?: number}} cmd
 * @returns {(msg: object) => unknown}
 */
function responder(cmd) {
  const report = (msg) => out({ event: 'served', channel: cmd.channel, request: { channel_id: msg.channel_id, timeout_ms: msg.timeout_ms ?? null, headers: msg.headers ?? null } });
  switch (cmd.kind) {
    case 'echo':
      return (msg) => {
        report(msg);
        return msg.payload;
      };
    case 'add':
      return (msg) => msg.payload.a + msg.payload.b;
    case 'digest':
      return (msg) => ({ sha256: digest(msg.payload), length: typeof msg.payload === 'string' ? msg.payload.length : null });
    case 'meta':
      return (msg) => ({ channel: msg.channel_id, timeout_ms: msg.timeout_ms ?? null, headers: msg.headers ?? null, by: 'node' });
    case 'bigint':
      return () => ({ n: 10n }); // a result that cannot be sent: the handler's failure
    case 'throw':
      return () => {
        const Cls = globalThis[cmd.errorType || 'Error'];
        throw new Cls(cmd.message || 'failed');
      };
    case 'reject':
      return async () => {
        await new Promise((r) => setTimeout(r, 1));
        const Cls = globalThis[cmd.errorType || 'Error'];
        throw new Cls(cmd.message || 'failed');
      };
    case 'slow':
      return async (msg) => {
        report(msg);
        await new Promise((r) => setTimeout(r, cmd.delayMs || 100));
        return msg.payload;
      };
    case 'relay':
      // A handler that itself awaits a request (to another responder).
      return async (msg) => (await client.sendRequest(cmd.target, msg.payload, cmd.timeoutMs)).payload;
    case 'trace':
      // The trace context it runs in (docs/tracing.md), and the answer of `target` when set.
      return async (msg) => {
        const context = { ...currentTraceContext() };
        const next = cmd.target ? await client.request(cmd.target, msg.payload, cmd.timeoutMs) : null;
        return { by: 'node', headers: msg.headers ?? null, context, next };
      };
    case 'gated': {
      // Answers once the test opens its gate (op openGate): a run held for as long as a test needs.
      // `numbered`: answers {run, payload}, the run's number (1, 2, ...), to tell runs apart.
      let runs = 0;
      return async (msg) => {
        const run = ++runs;
        report(msg);
        await gate(cmd.channel).promise;
        out({ event: 'ended', channel: cmd.channel, payload: msg.payload });
        return cmd.numbered ? { run, payload: msg.payload } : msg.payload;
      };
    }
    case 'hang':
      return (msg) => {
        report(msg);
        return new Promise(() => {});
      };
    case 'clock':
      // A `system` responder: the actions the server routes to it (§8).
      return (msg) => {
        report(msg);
        if (msg.payload && msg.payload.action === 'get_time') return { time: Date.now() / 1000, by: 'node' };
        throw new RangeError(`unknown system action ${JSON.stringify(msg.payload && msg.payload.action)}`);
      };
    default:
      throw new TypeError(`unknown responder kind ${cmd.kind}`);
  }
}

/**
 * Reports how a registration started without waiting settled.
 * @param {{op: string, channel: string}} cmd
 * @param {Promise<void>} registering
 * @returns {null}
 */
function registrationDone(cmd, registering) {
  registering.then(
    () => out({ event: 'registrationDone', op: cmd.op, channel: cmd.channel, ok: true }),
    (err) => out({ event: 'registrationDone', op: cmd.op, channel: cmd.channel, ok: false, error: describe(err) })
  );
  return null;
}

const ops = {
  connect: () => client.connect(),
  // Start connect() without waiting (waitOnFirstConnect); its outcome is reported as an event.
  startConnect: () => {
    const started = performance.now();
    client.connect().then(
      (result) => out({ event: 'connectDone', ok: true, result, elapsedMs: performance.now() - started }),
      (err) => out({ event: 'connectDone', ok: false, error: describe(err), elapsedMs: performance.now() - started })
    );
    return null;
  },
  system: (cmd) => client.system(cmd.action, cmd.timeoutMs === undefined ? {} : { timeout: cmd.timeoutMs }),
  disconnect: () => client.disconnect().then(() => null),
  drain: (cmd) => client.drain(cmd.timeoutMs === undefined ? {} : { timeout: cmd.timeoutMs }),
  info: () => client.getConnectionInfo(),
  health: (cmd) => client.health(cmd.timeoutMs === undefined ? undefined : { timeout: cmd.timeoutMs }),
  healthCheck: (cmd) => client.healthCheck(cmd.timeoutMs === undefined ? undefined : { timeout: cmd.timeoutMs }),
  request: async (cmd) => {
    const started = performance.now();
    const res = await client.sendRequest(cmd.channel, payloadOf(cmd), cmd.timeoutMs, callOptions(cmd));
    const elapsedMs = performance.now() - started;
    if (cmd.digest) return { sha256: digest(res.payload), length: typeof res.payload === 'string' ? res.payload.length : null, elapsedMs };
    return { payload: res.payload, reply_to: res.reply_to, elapsedMs };
  },
  // Fire a request without waiting; its outcome is reported as an event.
  startRequest: (cmd) => {
    const started = performance.now();
    client.sendRequest(cmd.channel, payloadOf(cmd), cmd.timeoutMs, callOptions(cmd)).then(
      (res) => out({ event: 'requestDone', tag: cmd.tag, ok: true, payload: res.payload, elapsedMs: performance.now() - started }),
      (err) => out({ event: 'requestDone', tag: cmd.tag, ok: false, error: describe(err), elapsedMs: performance.now() - started })
    );
    return null;
  },
  publish: async (cmd) => (await client.publish(cmd.channel, payloadOf(cmd), { ack: !!cmd.ack, timeout: cmd.timeoutMs, ...callOptions(cmd) })) ?? null,
  publishMany: async (cmd) => {
    for (let i = 0; i < cmd.count; i++) await client.publish(cmd.channel, { i });
    return cmd.count;
  },
  // Awaited publishes (notifies: `notify`) of {i, body: `size` chars}, each with `timeoutMs`, until `rejections`
  // reject (a server that stopped reading): which resolved, which rejected and why, and the socket's buffer.
  fill: async (cmd) => {
    const ok = [];
    const failed = [];
    const body = 'x'.repeat(cmd.size);
    for (let i = 0; i < cmd.max && failed.length < cmd.rejections; i++) {
      const call = cmd.notify ? client.notify(cmd.channel, { i, body }, { timeout: cmd.timeoutMs }) : client.publish(cmd.channel, { i, body }, { timeout: cmd.timeoutMs });
      await call.then(() => ok.push(i), (err) => failed.push({ i, error: describe(err) }));
    }
    return { ok, failed, buffered: client._conn._socket.writableLength };
  },
  notify: (cmd) => client.notify(cmd.channel, payloadOf(cmd), { timeout: cmd.timeoutMs, ...callOptions(cmd) }).then(() => null),
  metrics: () => client.getMetrics(),
  connectionHealth: () => client.getConnectionHealth(),
  queueStats: () => client.queueStats(),
  breakers: () => client.circuitBreakers(),
  subscribe: (cmd) =>
    client.subscribe(cmd.channel, (msg) => {
      out({
        event: 'message',
        sub: cmd.channel,
        channel: msg.channel_id,
        message_id: msg.message_id,
        headers: msg.headers ?? null,
        ...(cmd.digest ? { sha256: digest(msg.payload), length: typeof msg.payload === 'string' ? msg.payload.length : null } : { payload: msg.payload })
      });
    }).then(() => null),
  // An async subscription handler that reports each call, then holds its slot until the test opens the channel's gate.
  subscribeGated: (cmd) =>
    client
      .subscribe(cmd.channel, async (msg) => {
        out({ event: 'message', sub: cmd.channel, channel: msg.channel_id, payload: msg.payload });
        await gate(cmd.channel).promise;
      })
      .then(() => null),
  unsubscribe: (cmd) => client.unsubscribe(cmd.channel).then(() => null),
  serve: (cmd) => client.serve(cmd.channel, responder(cmd)).then(() => null),
  unserve: (cmd) => client.unserve(cmd.channel).then(() => null),
  openGate: (cmd) => {
    gate(cmd.channel).open();
    return null;
  },
  // The responder's keyed runs (js-client/lib/keyed_runs.js): a resend joined or answered from a kept answer.
  keyedRuns: () => {
    const runs = client._keyedRuns;
    return { running: runs.running, kept: runs.kept, joined: runs.joined, replayed: runs.replayed };
  },
  // serve()/subscribe() without waiting (while reconnecting, say); the outcome is a registrationDone event.
  startServe: (cmd) => registrationDone(cmd, client.serve(cmd.channel, responder(cmd))),
  startSubscribe: (cmd) => registrationDone(cmd, client.subscribe(cmd.channel, (msg) => out({ event: 'message', sub: cmd.channel, channel: msg.channel_id, payload: msg.payload }))),
  exit: () => {
    setImmediate(() => process.exit(0));
    return null;
  }
};

const EVENTS = [
  'connecting',
  'connected',
  'reconnected',
  'reconnecting',
  'reconnect_failed',
  'close',
  'ping',
  'heartbeat',
  'heartbeat_timeout',
  'queue_dropped',
  'circuit_open',
  'circuit_half_open',
  'circuit_closed'
];
for (const event of EVENTS) client.on(event, (arg) => out({ event, detail: arg ?? null }));
client.on('disconnected', (err) => out({ event: 'disconnected', detail: { error: err ? describe(err) : null } }));
client.on('error', (err) => out({ event: 'error', error: describe(err) }));
Object.assign(ops, require('./stream_ops').streamOps(client, out, describe)); // streams and cancellation (§15)
Object.assign(ops, require('./binary_ops').binaryOps(client, out, describe)); // binary payloads (§16)

runCommands(ops, () => client.disconnect());
