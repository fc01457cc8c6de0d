'use strict';

/**
 * A ConnectionPool or LoadBalancedClient driven by the Python tests over
 * JSON lines, with the same wire format as agent.js: commands on stdin
 * ({"id": n, "op": ...}), results and events on stdout.
 *
 * argv[2] is a JSON object: {kind: 'pool' | 'balanced', appId, port (pool),
 * servers (balanced), options, fastBackoff}. `fastBackoff` sets short
 * replacement delays.
 *
 * Load is generated here rather than command by command, so that thousands
 * of calls can run while Python kills servers; every call is checked to
 * settle exactly once and never after its deadline. Streams (stream())
 * are read in the background and reported as events (readStream).
 */

const { ConnectionPool, LoadBalancedClient } = require('../../js-client');
const { out, describe, runCommands } = require('./command_loop');
const { withTlsFiles } = require('./tls_files');

const config = JSON.parse(process.argv[2] || '{}');
const FAST = { initialDelay: 20, maxDelay: 100 };
const options = withTlsFiles({ ...(config.fastBackoff ? FAST : {}), ...(config.options || {}) });
const appId = config.appId || 'app';

const target =
  config.kind === 'balanced'
    ? new LoadBalancedClient(appId, config.servers, options)
    : new ConnectionPool(appId, { host: '127.0.0.1', port: config.port, ...options });

let busy = 0; // pool members lent out by this script at once
let peakBusy = 0;

/**
 * One request through the pool or the balancer.
 * @param {string} channel
 * @param {unknown} payload
 * @param {number} timeoutMs
 * @returns {Promise<object>} the response message.
 */
function call(channel, payload, timeoutMs) {
  if (config.kind === 'balanced') return target.sendRequest(channel, payload, timeoutMs);
  return target.execute(async (client) => {
    peakBusy = Math.max(peakBusy, ++busy);
    try {
      return await client.sendRequest(channel, payload, timeoutMs);
    } finally {
      busy--;
    }
  });
}

/**
 * Outcome counters of a batch of calls.
 */
class Tally {
  constructor() {
    this.started = 0;
    this.settled = 0;
    this.settledTwice = 0;
    this.ok = 0;
    this.wrong = 0; // an answer that is not this call's echo
    this.failed = {};
    this.overDeadline = 0;
    this.maxElapsedMs = 0;
  }

  /**
   * Runs one call and records how it ended.
   * @param {string} channel
   * @param {number} i
   * @param {number} timeoutMs
   * @returns {Promise<void>}
   */
  run(channel, i, timeoutMs) {
    this.started++;
    const started = performance.now();
    let settled = false;
    const settle = (err, res) => {
      if (settled) {
        this.settledTwice++;
        return;
      }
      settled = true;
      this.settled++;
      const elapsed = performance.now() - started;
      this.maxElapsedMs = Math.max(this.maxElapsedMs, elapsed);
      if (elapsed > timeoutMs + 50) this.overDeadline++; // timers fire late by a tick, not by 50 ms
      if (err) this.failed[err.code] = (this.failed[err.code] ?? 0) + 1;
      else if (res.payload && res.payload.i === i) this.ok++;
      else this.wrong++;
    };
    return call(channel, { i }, timeoutMs).then((res) => settle(null, res), (err) => settle(err));
  }

  /** @returns {object} */
  summary() {
    return { ...this, maxElapsedMs: Math.round(this.maxElapsedMs), peakBusy };
  }
}

let load = null;
const pausedStreams = new Map(); // tag -> resume

/**
 * Reads a stream through the pool or the balancer, reporting as events:
 * `streamPaused {tag, items}` after `pauseAfter` items (it then waits for
 * resumeStream), `streamDone {tag, items, error}` at its end; `breakAfter`
 * items leave the loop (break).
 * @param {object} cmd
 */
async function readStream(cmd) {
  const options = {};
  if (cmd.timeoutMs !== undefined) options.timeout = cmd.timeoutMs;
  if (cmd.window !== undefined) options.window = cmd.window;
  const items = [];
  try {
    for await (const item of target.stream(cmd.channel, cmd.payload ?? null, options)) {
      items.push(item);
      if (items.length === cmd.breakAfter) break;
      if (items.length === cmd.pauseAfter) {
        const resumed = new Promise((resolve) => pausedStreams.set(cmd.tag, resolve));
        out({ event: 'streamPaused', tag: cmd.tag, items: [...items] });
        await resumed;
      }
    }
    out({ event: 'streamDone', tag: cmd.tag, items, error: null });
  } catch (err) {
    out({ event: 'streamDone', tag: cmd.tag, items, error: describe(err) });
  }
}

const ops = {
  start: () => target.start().then(() => null),
  stats: () => (config.kind === 'balanced' ? target.poolStats() : target.stats()),
  serverStats: () => target.serverStats(),
  // Opens under way (a refill's included), over every server's pool for the balancer.
  opening: () => (config.kind === 'balanced' ? [...target._pools.values()] : [target]).reduce((sum, pool) => sum + pool._opening, 0),
  // `count` calls at once, all awaited.
  burst: async (cmd) => {
    const tally = new Tally();
    peakBusy = 0;
    await Promise.all(Array.from({ length: cmd.count }, (_, i) => tally.run(cmd.channel, i, cmd.timeoutMs)));
    return tally.summary();
  },
  // `concurrency` workers calling in a loop until stopLoad.
  startLoad: (cmd) => {
    const tally = new Tally();
    let running = true;
    let next = 0;
    const worker = async () => {
      while (running) await tally.run(cmd.channel, next++, cmd.timeoutMs);
    };
    const workers = Array.from({ length: cmd.concurrency }, worker);
    load = { tally, stop: () => ((running = false), Promise.all(workers)) };
    return null;
  },
  loadStats: () => load.tally.summary(),
  stopLoad: async () => {
    await load.stop();
    return load.tally.summary();
  },
  // One request with per-call options, not awaited; its outcome is reported as an event.
  startRequest: (cmd) => {
    const options = cmd.idempotencyKey === undefined ? {} : { idempotencyKey: cmd.idempotencyKey };
    target.sendRequest(cmd.channel, cmd.payload ?? null, cmd.timeoutMs, options).then(
      (res) => out({ event: 'requestDone', tag: cmd.tag, ok: true, payload: res.payload }),
      (err) => out({ event: 'requestDone', tag: cmd.tag, ok: false, error: describe(err) })
    );
    return null;
  },
  // A member held by acquire() (the balancer's: its first server's pool's), given back `ms` later.
  holdFor: async (cmd) => {
    const pool = config.kind === 'balanced' ? [...target._pools.values()][0] : target;
    const client = await pool.acquire();
    setTimeout(() => pool.release(client), cmd.ms);
    return null;
  },
  // The pool's own request (a shared member), awaited.
  request: (cmd) => target.request(cmd.channel, cmd.payload ?? null, cmd.timeoutMs, cmd.options ?? {}),
  // The pool resolves whether it applied them now; the balancer nothing. `schema`: a typed responder's.
  serve: (cmd) =>
    target.serve(cmd.channel, (msg) => ({ by: 'node', payload: msg.payload }), cmd.schema ? { schema: cmd.schema } : {}).then((applied) => applied ?? null),
  subscribe: (cmd) =>
    target
      .subscribe(cmd.channel, (msg) => out({ event: 'message', channel: msg.channel_id, payload: msg.payload }))
      .then((applied) => applied ?? null),
  // stream(), read in the background: events streamPaused and streamDone (readStream).
  startStream: (cmd) => {
    readStream(cmd);
    return null;
  },
  resumeStream: (cmd) => {
    pausedStreams.get(cmd.tag)();
    pausedStreams.delete(cmd.tag);
    return null;
  },
  close: () => target.close().then(() => null)
};

for (const event of ['created', 'connection_lost', 'server_down', 'server_up', 'server_leaving']) {
  target.on(event, (arg) => out({ event, port: arg && arg.port, error: arg && arg.error ? describe(arg.error) : null, deadlineMs: arg && arg.deadlineMs }));
}
target.on('subscription_moved', ({ channel, from, to }) => out({ event: 'subscription_moved', channel, from: from.port, to: to.port }));
target.on('destroyed', ({ reason }) => out({ event: 'destroyed', reason: reason ? describe(reason) : null }));
target.on('error', (err) => out({ event: 'error', error: describe(err) })); // what no call waits for (a registration a replay dropped)

runCommands(ops, () => target.close());
