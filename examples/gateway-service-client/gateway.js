'use strict';

/**
 * The Node twin of gateway.py: several named services behind one
 * ServiceClient, with per-service metrics.
 *
 * What it shows: one `ServiceClient` holding two services, each its own app
 * on the bridge behind its own pooled, load-balanced client:
 * - `pricing`: `quote` answers a price; an unknown SKU throws (a
 *   `handler_error`);
 * - `inventory`: `stock` answers after a few ms; `reserve` takes 300 ms,
 *   longer than the service's 100 ms deadline (a `timeout`).
 * The services are responder clients started by this script (any process,
 * in either language, could serve them). It sends a mixed load of 200 calls,
 * 16 at a time, then prints `metrics()` as a table (requests, errors,
 * timeouts, req/s, latency avg/p50/p99) with `status()`, and the errors by
 * code.
 *
 * Run it from the repository root, with a server on IPC_HOST:IPC_PORT
 * (default 127.0.0.1:8888):
 *
 *     .venv/bin/python -m ipc_server &
 *     node examples/gateway-service-client/gateway.js
 */

const { IPCClient, ServiceClient } = require('../../js-client');

const host = process.env.IPC_HOST || '127.0.0.1';
const port = Number(process.env.IPC_PORT || 8888);
const PRICES = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`SKU-${i}`, 10 + i])); // SKU-11 is unknown
const CONCURRENCY = 16;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- the services (normally other processes) -----------------------------------

async function startServices() {
  const pricing = new IPCClient('pricing', { host, port });
  const inventory = new IPCClient('inventory', { host, port });
  await Promise.all([pricing.connect(), inventory.connect()]);
  await pricing.serve('quote', ({ payload: { sku } }) => {
    if (!(sku in PRICES)) throw new RangeError(`unknown SKU ${sku}`);
    return { sku, price: PRICES[sku] };
  });
  await inventory.serve('stock', async ({ payload: { sku } }) => {
    await sleep(5);
    return { sku, stock: 7 };
  });
  await inventory.serve('reserve', async ({ payload: { sku } }) => {
    await sleep(300); // slower than the gateway's deadline for inventory
    return { sku, reserved: true };
  });
  return () => Promise.all([pricing.disconnect(), inventory.disconnect()]);
}

// -- the gateway ---------------------------------------------------------------

/** 120 pricing calls (10 for the unknown SKU-11) and 80 inventory calls (5 slow reserves), interleaved. */
function mixedLoad() {
  const pricing = Array.from({ length: 120 }, (_, i) => ['pricing', 'quote', { sku: `SKU-${i % 12}` }]);
  const inventory = Array.from({ length: 80 }, (_, i) => ['inventory', i % 16 === 15 ? 'reserve' : 'stock', { sku: `SKU-${i % 11}` }]);
  const calls = [];
  for (let i = 0; i < Math.max(pricing.length, inventory.length); i++) {
    if (i < pricing.length) calls.push(pricing[i]);
    if (i < inventory.length) calls.push(inventory[i]);
  }
  return calls;
}

async function runLoad(gateway) {
  const errors = {}; // service -> code -> count
  const calls = mixedLoad();
  const lane = async () => {
    for (let call = calls.shift(); call; call = calls.shift()) {
      const [service, method, data] = call;
      try {
        await gateway.request(service, method, data);
      } catch (err) {
        errors[service] ??= {};
        errors[service][err.code] = (errors[service][err.code] || 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return errors;
}

function printTable(gateway, errors) {
  const metrics = gateway.metrics();
  const status = gateway.status();
  const header =
    `${'service'.padEnd(10)} ${'requests'.padStart(8)} ${'errors'.padStart(6)} ${'timeouts'.padStart(8)} ${'req/s'.padStart(8)}` +
    ` ${'avg ms'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)}  status`;
  console.log(header);
  console.log('-'.repeat(header.length));
  for (const [name, m] of Object.entries(metrics)) {
    const lat = m.latencyMs;
    const servers = status[name].servers.length;
    const health = status[name].healthy ? 'healthy' : 'DOWN';
    console.log(
      `${name.padEnd(10)} ${String(m.requests).padStart(8)} ${String(m.errors).padStart(6)} ${String(m.timeouts).padStart(8)}` +
        ` ${m.requestsPerS.toFixed(1).padStart(8)} ${lat.avg.toFixed(2).padStart(7)} ${lat.p50.toFixed(2).padStart(7)}` +
        ` ${lat.p99.toFixed(2).padStart(7)}  ${health} (${servers} server${servers === 1 ? '' : 's'})`
    );
  }
  console.log();
  for (const name of Object.keys(metrics)) {
    const byCode = Object.entries(errors[name] || {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([code, n]) => `${code}=${n}`)
      .join(', ');
    console.log(`errors ${name}: ${byCode || 'none'}`);
  }
}

async function main() {
  const stopServices = await startServices();
  const gateway = new ServiceClient({
    pricing: { host, port, maxConnections: 4, timeout: 2000 },
    inventory: { host, port, maxConnections: 4, timeout: 100 }
  });
  try {
    await gateway.start();
    const errors = await runLoad(gateway);
    printTable(gateway, errors);
  } finally {
    await gateway.shutdown();
    await stopServices();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
