'use strict';

/**
 * A LoadBalancedClient under continuous load while the Python tests kill a
 * cluster node (docs/cluster.md §5), with the JSON-lines commands of
 * command_loop.js.
 *
 * argv[2] is a JSON object: {servers, options}. Every call made here is
 * recorded with its start, its end (performance.now(), the clock `now`
 * answers) and how it ended, so the test can check that each ended once
 * and when those in flight at the kill settled.
 */

const { LoadBalancedClient } = require('../../js-client');
const { out, describe, runCommands } = require('./command_loop');

const config = JSON.parse(process.argv[2] || '{}');
const target = new LoadBalancedClient('app', config.servers, config.options || {});

/** The calls of one named load (or of the tagged single requests). */
class Calls {
  constructor() {
    this.records = [];
    this.settledTwice = 0;
  }

  /**
   * Runs one request and records how it ended: {start, end, ok, code}.
   * `ok` is true only for this call's own echo.
   * @param {string} channel
   * @param {unknown} payload
   * @param {number} timeoutMs
   * @returns {Promise<object>} the record.
   */
  run(channel, payload, timeoutMs) {
    const record = { start: performance.now(), end: null, ok: false, code: null, timeoutMs };
    this.records.push(record);
    const settle = (err, res) => {
      if (record.end !== null) {
        this.settledTwice++;
        return;
      }
      record.end = performance.now();
      if (err) record.code = (err && err.code) || String(err);
      else record.ok = JSON.stringify(res.payload) === JSON.stringify(payload);
    };
    return target.sendRequest(channel, payload, timeoutMs).then(
      (res) => (settle(null, res), record),
      (err) => (settle(err), record)
    );
  }

  /** @returns {object} */
  summary() {
    const ended = this.records.filter((r) => r.end !== null);
    return {
      started: this.records.length,
      settled: ended.length,
      settledTwice: this.settledTwice,
      ok: ended.filter((r) => r.ok).length,
      records: this.records
    };
  }
}

const loads = new Map();
const single = new Calls();

const ops = {
  start: () => target.start().then(() => null),
  now: () => performance.now(),
  // `concurrency` workers calling `channel` in a loop until stopLoad(name).
  startLoad: (cmd) => {
    const calls = new Calls();
    let running = true;
    let next = 0;
    const worker = async () => {
      while (running) await calls.run(cmd.channel, { i: next++ }, cmd.timeoutMs);
    };
    const workers = Array.from({ length: cmd.concurrency }, worker);
    loads.set(cmd.name, { calls, stop: () => ((running = false), Promise.all(workers)) });
    return null;
  },
  // How many calls of the load ended in their echo so far.
  loadOk: (cmd) => loads.get(cmd.name).calls.records.filter((r) => r.ok).length,
  stopLoad: async (cmd) => {
    const load = loads.get(cmd.name);
    await load.stop();
    return load.calls.summary();
  },
  // One request, not awaited; its record is reported as a requestDone event.
  startRequest: (cmd) => {
    single.run(cmd.channel, cmd.payload ?? null, cmd.timeoutMs).then((record) => out({ event: 'requestDone', tag: cmd.tag, ...record }));
    return null;
  },
  singles: () => single.summary(),
  request: async (cmd) => (await target.sendRequest(cmd.channel, cmd.payload ?? null, cmd.timeoutMs)).payload,
  serve: (cmd) => target.serve(cmd.channel, (msg) => msg.payload).then(() => null),
  subscribe: (cmd) =>
    target.subscribe(cmd.channel, (msg) => out({ event: 'message', channel: msg.channel_id, payload: msg.payload })).then(() => null),
  close: () => target.close().then(() => null)
};

for (const event of ['server_down', 'server_up', 'server_leaving']) {
  target.on(event, (arg) => out({ event, port: arg.port, error: arg.error ? describe(arg.error) : null }));
}
target.on('subscription_moved', ({ channel, from, to }) => out({ event: 'subscription_moved', channel, from: from.port, to: to.port }));
target.on('error', (err) => out({ event: 'error', error: describe(err) }));

runCommands(ops, () => target.close());
