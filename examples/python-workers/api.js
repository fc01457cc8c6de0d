'use strict';

/**
 * A Node API spreading requests over several Python workers (worker.py).
 * It never picks a worker itself: it sends every request to `work.square`
 * and the bridge server chooses among the workers serving that channel. It
 * watches `$sys.services` to print workers coming and going, waits until
 * MIN_WORKERS serve the channel, then keeps CONCURRENCY requests in flight
 * until REQUESTS are done, and prints how they ended and who answered.
 *
 * Run, from the repository root, each in its own terminal:
 *
 *     .venv/bin/python -m ipc_server
 *     .venv/bin/python examples/python-workers/worker.py w1     (and w2, w3...)
 *     node examples/python-workers/api.js
 *
 * Kill a worker (`kill -9`) while it runs: only the requests that worker
 * held fail, with `responder_lost`; the rest are answered by the others.
 *
 * Environment: IPC_HOST / IPC_PORT (default 127.0.0.1:8888), MIN_WORKERS
 * (default 1), REQUESTS (default 1000), CONCURRENCY (default 9).
 * The last line is `summary {"requests", "ok", "failed": {code: count}, "byWorker": {name: count}}`.
 */

const { IPCClient } = require('../../js-client');

const HOST = process.env.IPC_HOST || '127.0.0.1';
const PORT = Number(process.env.IPC_PORT || 8888);
const MIN_WORKERS = Number(process.env.MIN_WORKERS || 1);
const REQUESTS = Number(process.env.REQUESTS || 1000);
const CONCURRENCY = Number(process.env.CONCURRENCY || 9);
const PROGRESS_EVERY = 100;
const CHANNEL = 'work.square';

async function main() {
  const client = new IPCClient('workers-demo', { host: HOST, port: PORT, requestTimeout: 10000 });
  client.on('error', (err) => console.error('bridge error:', err.code, err.message));
  await client.connect();

  // Workers coming and going: the server announces every responder
  // registration and removal on $sys.services (docs/protocol.md §7.5).
  let workers = 0;
  let changed = () => {};
  await client.subscribe('$sys.services', (msg) => {
    const { event, channel, connection_id: connectionId, responders } = msg.payload;
    if (channel !== CHANNEL) return;
    workers = responders;
    console.log(`services: ${event} ${channel} ${connectionId} (${responders} now)`);
    changed();
  });
  // Those already there before we subscribed.
  const { services } = (await client.sendRequest('system', { action: 'services' })).payload;
  workers = services[CHANNEL] ?? 0;
  if (workers < MIN_WORKERS) {
    console.log(`waiting for ${MIN_WORKERS} worker(s) on ${CHANNEL}, ${workers} now`);
    await new Promise((resolve) => {
      changed = () => { if (workers >= MIN_WORKERS) resolve(); };
    });
  }
  console.log(`sending ${REQUESTS} requests, ${CONCURRENCY} at a time, to ${workers} worker(s)`);

  const summary = { requests: REQUESTS, ok: 0, failed: {}, byWorker: {} };
  let next = 0;
  let done = 0;
  async function sender() {
    while (next < REQUESTS) {
      const n = next++;
      try {
        const { payload } = await client.sendRequest(CHANNEL, { n });
        if (payload.square !== n * n) throw new Error(`wrong answer for ${n}: ${JSON.stringify(payload)}`);
        summary.ok += 1;
        summary.byWorker[payload.worker] = (summary.byWorker[payload.worker] ?? 0) + 1;
      } catch (err) {
        if (!err.code) throw err;
        // responder_lost: the worker holding it died; it may have run, so it is not resent here
        // (a caller whose requests are idempotent could retry it).
        summary.failed[err.code] = (summary.failed[err.code] ?? 0) + 1;
        console.log(`request ${n} failed: ${err.code}`);
      }
      done += 1;
      if (done % PROGRESS_EVERY === 0) console.log(`progress ${done}/${REQUESTS}`);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, sender));

  await client.disconnect();
  console.log('summary', JSON.stringify(summary));
}

main().catch((err) => {
  console.error(err.code || err.name, err.message);
  process.exitCode = 1;
});
