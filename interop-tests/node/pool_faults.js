'use strict';

/**
 * Runs the pool, load-balancer and offline-queue scenarios of
 * test_js_pool_faults.py with the js-client and prints one JSON line per scenario: {"scenario": name,
 * ...what it saw}. argv[2] is {"scenarios": [...], "real": port of the
 * Python server with py.* handlers, "refused": a port that refuses every
 * connect, "silent": a port that takes connections and never answers}.
 * Every wait is bounded by the calls' own timeouts.
 */

const { ConnectionPool, IPCClient, LoadBalancedClient } = require('../../js-client');

const config = JSON.parse(process.argv[2]);
const HOST = '127.0.0.1';

/** The counts the scenarios compare, in Python's order (test_js_pool_faults.py). */
const counts = (m) => [m.connectionAttempts, m.connectionSuccesses, m.connectionSuccessRate, m.messagesFailed, m.messageDeliveryRate];

/** `promise`'s error, as {name, code, message}; null when it resolved. */
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    return { name: err.name, code: err.code ?? null, message: err.message };
  }
}

const SCENARIOS = {
  /** A pool at a closed port: a failed start() and three failed requests. */
  async closed() {
    const pool = new ConnectionPool('app', { host: HOST, port: config.refused, initialDelay: 5000 }); // no background retry meanwhile
    pool.on('error', () => {});
    const errors = [await failure(pool.start())];
    for (let i = 0; i < 3; i++) errors.push(await failure(pool.request('x', 1, { timeout: 500 })));
    const open = counts(pool.getMetrics());
    await pool.close();
    errors.push(await failure(pool.request('x', 1, { timeout: 500 })));
    return { errors: errors.map((e) => e && e.code), counts: open, closed: pool.getMetrics().messagesFailed };
  },

  /** A server that takes the connection and never answers the handshake. */
  async silent() {
    const pool = new ConnectionPool('app', { host: HOST, port: config.silent, connectTimeout: 200, initialDelay: 5000 });
    pool.on('error', () => {});
    const errors = [await failure(pool.start()), await failure(pool.request('x', 1, { timeout: 2000 }))];
    const out = { errors: errors.map((e) => e && e.code), counts: counts(pool.getMetrics()) };
    await pool.close();
    return out;
  },

  /** A pool call that got no member in time: failed, as a lone client's call. */
  async waited() {
    const pool = new ConnectionPool('app', { host: HOST, port: config.real, minConnections: 1, maxConnections: 1 });
    await pool.start();
    const held = await pool.acquire();
    const timedOut = await failure(pool.request('py.echo', 1, { timeout: 100 }));
    pool.release(held);
    const answer = await pool.request('py.echo', 2);
    const m = pool.getMetrics();
    await pool.close();
    return { timedOut: timedOut && timedOut.code, answer, failedDelivered: [m.messagesFailed, m.messagesDelivered, m.messageDeliveryRate] };
  },

  /** Load-balanced calls: an attempt without a connection counts in its pool, a call that reached no server in the client. */
  async balanced() {
    const stalled = new LoadBalancedClient('app', [`${HOST}:${config.silent}`], { minConnections: 0, healthCheckInterval: null, acquireTimeout: 200, connectTimeout: 5000 });
    await stalled.start();
    const timedOut = await failure(stalled.request('x', 1, { timeout: 2000 }));
    const stalledCounts = counts(stalled.getMetrics());
    await stalled.close();
    const down = new LoadBalancedClient('app', [`${HOST}:${config.refused}`], { healthCheckInterval: null, initialDelay: 5000 });
    const errors = [await failure(down.start()), await failure(down.request('x', 1, { timeout: 1000 }))];
    await down.close();
    errors.push(await failure(down.request('x', 1, { timeout: 1000 })));
    return { timedOut: timedOut && timedOut.code, stalled: stalledCounts, errors: errors.map((e) => e && e.code), down: counts(down.getMetrics()) };
  },

  /** stream() that reached no connection, through a pool and a load-balanced client: failed, as a request. */
  async streams() {
    const first = (stream) => failure(stream.next());
    const pool = new ConnectionPool('app', { host: HOST, port: config.refused, minConnections: 0, initialDelay: 5000 });
    pool.on('error', () => {});
    const errors = [await first(pool.stream('x', null, { timeout: 500 }))];
    const open = pool.getMetrics().messagesFailed;
    await pool.close();
    errors.push(await first(pool.stream('x')));
    const lb = new LoadBalancedClient('app', [`${HOST}:${config.refused}`], { healthCheckInterval: null, minConnections: 0, initialDelay: 5000 });
    errors.push(await first(lb.stream('x')));
    await lb.start();
    errors.push(await first(lb.stream('x', null, { timeout: 1000 })), await first(lb.stream('x', null, { timeout: 1000 })));
    const balanced = lb.getMetrics().messagesFailed;
    await lb.close();
    return { errors: errors.map((e) => e && e.code), failed: [open, pool.getMetrics().messagesFailed, balanced] };
  },

  /** What a call is told while the client reconnects: expired in the offline queue, or not queued at all. */
  async queued() {
    const texts = [];
    for (const options of [{}, { queueMaxSize: 0 }]) {
      const client = new IPCClient('app', { host: HOST, port: config.refused, waitOnFirstConnect: true, initialDelay: 5000, ...options });
      client.on('error', () => {});
      const connecting = client.connect().catch(() => {});
      while (client.state !== 'reconnecting') await new Promise((resolve) => client.once('reconnecting', resolve));
      texts.push((await failure(client.request('r', 1, { timeout: 300 }))).message);
      if (options.queueMaxSize === undefined) {
        texts.push((await failure(client.publish('q', 1, { ack: true, timeout: 300 }))).message);
        texts.push((await failure(client.request('r', 1, { timeout: 300, onDisconnect: 'fail' }))).message);
      }
      await client.disconnect();
      await connecting;
    }
    return { texts };
  }
};

(async () => {
  for (const scenario of config.scenarios) {
    console.log(JSON.stringify({ scenario, ...(await SCENARIOS[scenario]()) }));
  }
})().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
