'use strict';

/**
 * A Node service called from Python (caller.py): a small inventory.
 *
 *   inventory.lookup   {sku}       -> {sku, stock}
 *   inventory.reserve  {sku, qty}  -> {sku, reserved, left}, or throws OutOfStockError
 *
 * An error thrown by a handler travels back to the caller as a `handler_error`
 * whose remote type is the error's `name`: Python raises `HandlerError` with
 * `.remote_type == "OutOfStockError"`.
 *
 * Run, from the repository root, each in its own terminal:
 *
 *     .venv/bin/python -m ipc_server
 *     node examples/node-service/service.js
 *     .venv/bin/python examples/node-service/caller.py
 *
 * IPC_HOST / IPC_PORT select the server (default 127.0.0.1:8888). Ctrl-C stops it.
 */

const { IPCClient } = require('../../js-client');

const HOST = process.env.IPC_HOST || '127.0.0.1';
const PORT = Number(process.env.IPC_PORT || 8888);

class OutOfStockError extends Error {
  constructor(sku, wanted, stock) {
    super(`only ${stock} of ${sku} left, ${wanted} wanted`);
    this.name = 'OutOfStockError';
  }
}

class UnknownSkuError extends Error {
  constructor(sku) {
    super(`unknown sku ${JSON.stringify(sku)}`);
    this.name = 'UnknownSkuError';
  }
}

const stock = new Map([['A-1', 7], ['B-2', 0]]);

function stockOf(sku) {
  if (!stock.has(sku)) throw new UnknownSkuError(sku);
  return stock.get(sku);
}

async function main() {
  const client = new IPCClient('inventory-demo', { host: HOST, port: PORT });
  client.on('error', (err) => console.error('bridge error:', err.code, err.message));
  await client.connect();

  await client.serve('inventory.lookup', (msg) => ({ sku: msg.payload.sku, stock: stockOf(msg.payload.sku) }));

  await client.serve('inventory.reserve', async (msg) => {
    const { sku, qty } = msg.payload;
    const left = stockOf(sku);
    if (qty > left) throw new OutOfStockError(sku, qty, left);
    stock.set(sku, left - qty);
    return { sku, reserved: qty, left: left - qty };
  });

  console.log(`inventory service ready on ${HOST}:${PORT}: inventory.lookup, inventory.reserve`);

  const stop = () => client.disconnect().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err.code || err.name, err.message);
  process.exitCode = 1;
});
