'use strict';

/**
 * The Node twin of demo.py: a client that keeps working while its server
 * crashes and comes back, and a circuit breaker opening and closing.
 *
 * What it shows, with the Python server run as a child process
 * (`python -m ipc_server`) so the demo can crash and restart it:
 *
 * 1. Reconnection: the events connecting, connected, disconnected,
 *    reconnecting {attempt, delay}, reconnected, and the backoff delays
 *    (200, 400, 800 ms..., no jitter so they read exactly).
 * 2. The offline queue: requests made while the server is down wait in the
 *    queue (`queueStats()`), highest priority first, and are answered after
 *    the restart. The client serves `orders.create` itself; responders are
 *    re-registered before the queue is replayed, so the replay finds it.
 * 3. The circuit breaker: calls to `inventory.check`, which nobody serves,
 *    fail with `no_responders`; after 3 the circuit opens and calls fail fast
 *    with `circuit_open`. A responder appears; after `resetTimeout` a trial
 *    call succeeds and the circuit closes.
 *
 * Run it from the repository root (the server listens on IPC_HOST:IPC_PORT,
 * default 127.0.0.1:8888; IPC_PORT=0 picks a free port; the Python is
 * $PYTHON, else .venv/bin/python, else python3):
 *
 *     node examples/resilience/demo.js
 */

const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { IPCClient, ErrorCode } = require('../../js-client');

const HOST = process.env.IPC_HOST || '127.0.0.1';
const PORT = Number(process.env.IPC_PORT || 8888);
const VENV_PYTHON = path.join(__dirname, '..', '..', '.venv', 'bin', 'python');
const PYTHON = process.env.PYTHON || (fs.existsSync(VENV_PYTHON) ? VENV_PYTHON : 'python3');
const APP = 'shop';

const say = (what, text) => console.log(`${what}: ${text}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `python -m ipc_server` as a child process that can be killed and restarted on its port. */
class Server {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.proc = null;
  }

  async start() {
    const args = ['-m', 'ipc_server', '--host', this.host, '--port', String(this.port), '--log-level', 'WARNING'];
    this.proc = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: this.proc.stdout });
    const [line] = await Promise.race([
      once(lines, 'line'),
      once(this.proc, 'exit').then(() => Promise.reject(new Error('the server did not start')))
    ]);
    if (!line.startsWith('ipc_server listening on ')) throw new Error(`the server did not start: ${line}`);
    this.port = Number(line.split(':').pop()); // the port it picked, when asked for 0
    this.proc.stdout.resume();
  }

  /** SIGKILL: a crash, no goodbye to the clients. */
  async kill() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = once(this.proc, 'exit');
      this.proc.kill('SIGKILL');
      await exited;
    }
  }
}

/** Prints every lifecycle event of a client. */
function watch(client) {
  const on = (name, describe) =>
    client.on(name, (arg) => say('event', name + (describe ? ` ${describe(arg)}` : '')));
  on('connecting');
  on('connected');
  on('disconnected', (err) => `(${err ? err.code : 'no error'}), now ${client.state}`);
  on('reconnecting', (e) => `attempt=${e.attempt} delay=${e.delay}ms`);
  on('reconnected', (e) => `after ${e.attempts} attempt(s)`);
  for (const state of ['open', 'half_open', 'closed']) {
    on(`circuit_${state}`, (snap) => `${snap.key} failures=${snap.consecutiveFailures}`);
  }
}

/** Resolves with the first `event` argument for which `pred` holds. */
function next(client, event, pred = () => true) {
  return new Promise((resolve) => {
    const listener = (arg) => {
      if (!pred(arg)) return;
      client.off(event, listener);
      resolve(arg);
    };
    client.on(event, listener);
  });
}

async function reconnectionAndQueue(server, client) {
  await client.serve('orders.create', (msg) => {
    console.log(`  handling order ${msg.payload.order} (priority ${msg.payload.priority})`);
    return { order: msg.payload.order, status: 'created' };
  });
  const first = await client.sendRequest('orders.create', { order: 1, priority: 0 }, 5000);
  say('request', `order 1 -> ${first.payload.status}`);

  const disconnected = next(client, 'disconnected');
  say('server', 'crash (SIGKILL)');
  await server.kill();
  await disconnected; // the client is reconnecting now

  // The server stays down through three reconnection attempts.
  const thirdAttempt = next(client, 'reconnecting', (e) => e.attempt >= 3);
  // Made while the server is down: they wait in the offline queue, each with
  // its own deadline (time in the queue included).
  const orders = [[2, 0], [3, 5], [4, 1]];
  const calls = orders.map(([order, priority]) =>
    client.sendRequest('orders.create', { order, priority }, { timeout: 15000, priority })
  );
  const stats = client.queueStats();
  const byPriority = Object.entries(stats.byPriority).map(([p, n]) => `${p}: ${n}`).join(', ');
  say('queue', `size=${stats.size} by_priority={${byPriority}}`);

  await thirdAttempt;
  const reconnected = next(client, 'reconnected');
  await server.start();
  say('server', `restarted on ${server.host}:${server.port}`);
  await reconnected;
  const replies = await Promise.all(calls);
  replies.forEach((reply, i) => say('delivered', `order ${orders[i][0]} -> ${reply.payload.status}`));
  const after = client.queueStats();
  say('queue', `size=${after.size} dropped=${after.dropped}`);
}

async function circuitBreaker(client) {
  for (let i = 1; i <= 4; i++) {
    try {
      await client.sendRequest('inventory.check', { sku: 'A-1' }, 2000);
    } catch (err) {
      if (err.code === ErrorCode.CIRCUIT_OPEN) {
        say('call', `${i} inventory.check -> ${err.code} (retry after ${(err.retryAfter / 1000).toFixed(1)}s)`);
      } else if (err.code === ErrorCode.NO_RESPONDERS) {
        say('call', `${i} inventory.check -> ${err.code}`);
      } else {
        throw err;
      }
    }
  }
  say('breaker', client.circuitBreakers()['inventory.check'].state);

  // A responder appears (another client in the same app).
  const inventory = new IPCClient(APP, { host: client.options.host, port: client.options.port });
  await inventory.connect();
  try {
    await inventory.serve('inventory.check', (msg) => ({ sku: msg.payload.sku, stock: 7 }));
    say('responder', 'inventory.check is served');
    let reply;
    while (!reply) {
      // calls fail fast until resetTimeout has passed; then one trial goes through
      try {
        reply = await client.sendRequest('inventory.check', { sku: 'A-1' }, 2000);
      } catch (err) {
        if (err.code !== ErrorCode.CIRCUIT_OPEN) throw err;
        await sleep(err.retryAfter);
      }
    }
    say('call', `trial inventory.check -> stock ${reply.payload.stock}`);
    say('breaker', client.circuitBreakers()['inventory.check'].state);
  } finally {
    await inventory.disconnect();
  }
}

async function main() {
  const server = new Server(HOST, PORT);
  await server.start();
  say('server', `started on ${server.host}:${server.port}`);
  const client = new IPCClient(APP, {
    host: server.host,
    port: server.port,
    initialDelay: 200,
    maxDelay: 2000,
    jitter: 0, // no jitter: the delays print exactly
    circuitBreaker: { failureThreshold: 3, resetTimeout: 1000, successThreshold: 1 }
  });
  watch(client);
  try {
    await client.connect();
    await reconnectionAndQueue(server, client);
    await circuitBreaker(client);
    const m = client.getMetrics();
    say('metrics', `reconnections=${m.reconnections} delivered=${m.messagesDelivered} failed=${m.messagesFailed}`);
    await client.disconnect();
  } finally {
    await server.kill();
  }
  say('done', 'ok');
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
