'use strict';

/**
 * The Node side of the typed-contract tests (interop-tests/test_typed_contracts.py),
 * on the real js-client.
 *
 *   node typed_peer.js serve PORT APP   a responder declaring JSON Schemas:
 *       `node.total` (an order in, a number out), `node.broken` (its result
 *       breaks its response schema); prints {"event":"ready"} once served.
 *   node typed_peer.js serve-balanced PORT APP   the same through a
 *       LoadBalancedClient (one server).
 *   node typed_peer.js call PORT APP CALLS   runs each of CALLS (a JSON list
 *       of {channel, payload}) as a request and prints one line per outcome,
 *       {ok, payload} or {ok: false, error: {code, name, message, remoteType, details}}.
 */

const { IPCClient, LoadBalancedClient } = require('../../js-client');

const [mode, port, app, calls] = process.argv.slice(2);
const client =
  mode === 'serve-balanced'
    ? new LoadBalancedClient(app, [{ host: '127.0.0.1', port: Number(port) }], { minConnections: 1, maxConnections: 1 })
    : new IPCClient(app, { host: '127.0.0.1', port: Number(port), reconnect: false });
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const ITEM = {
  type: 'object',
  properties: { sku: { type: 'string', minLength: 1 }, qty: { type: 'integer', exclusiveMinimum: 0 } },
  required: ['sku', 'qty'],
  additionalProperties: false
};
const ORDER = {
  type: 'object',
  title: 'Order',
  properties: {
    items: { type: 'array', items: { $ref: '#/$defs/Item' } },
    currency: { enum: ['EUR', 'USD'] },
    placed_at: { type: 'string', format: 'date-time' },
    note: { anyOf: [{ type: 'string' }, { type: 'null' }] }
  },
  required: ['items', 'placed_at'],
  $defs: { Item: ITEM }
};

async function serve() {
  await (mode === 'serve-balanced' ? client.start() : client.connect());
  await client.serve('node.total', (msg) => msg.payload.items.reduce((sum, item) => sum + item.qty, 0), {
    schema: { request: ORDER, response: { type: 'integer', minimum: 0 } }
  });
  await client.serve('node.broken', () => ({ total: 'lots' }), { schema: { response: { type: 'integer' } } });
  out({ event: 'ready' });
}

async function call() {
  await client.connect();
  for (const { channel, payload } of JSON.parse(calls)) {
    try {
      out({ ok: true, payload: await client.request(channel, payload, 5000) });
    } catch (err) {
      out({ ok: false, error: { code: err.code, name: err.name, message: err.message, remoteType: err.remoteType ?? null, details: err.details ?? null } });
    }
  }
  await client.disconnect();
}

(mode === 'call' ? call() : serve()).catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
