'use strict';

/**
 * The Node side of the typed-contract tests (interop-tests/test_typed_contracts.py),
 * on the real js-client.
 *
 *   node typed_peer.js serve PORT APP   a responder declaring JSON Schemas:
 *       `node.total` (an order in, a number out), `node.broken` (its result
 *       breaks its response schema), `node.code` (a Python-style pattern),
 *       `node.date` (a Date answer), `node.void` (no answer) and `node.bytes`
 *       (a Buffer answer); prints {"event":"ready"} once served.
 *   node typed_peer.js serve PORT APP SCHEMAS   the same, and each channel of
 *       SCHEMAS ({channel: request schema}, a Python twin's) answering true.
 *   node typed_peer.js serve-balanced PORT APP   the same through a
 *       LoadBalancedClient (one server).
 *   node typed_peer.js call PORT APP CALLS   runs each of CALLS (a JSON list
 *       of {channel, payload}) as a request and prints one line per outcome,
 *       {ok, payload} or {ok: false, error: {code, name, message, remoteType, details}}.
 *       A {"$hex": "..."} in CALLS is sent as a Buffer, and a Buffer received printed so.
 *   node typed_peer.js whoami PORT APP   prints {connectionId, info} connected, then
 *       {after} once disconnected.
 */

const { IPCClient, LoadBalancedClient } = require('../../js-client');

const [mode, port, app, calls] = process.argv.slice(2);
const client =
  mode === 'serve-balanced'
    ? new LoadBalancedClient(app, [{ host: '127.0.0.1', port: Number(port) }], { minConnections: 1, maxConnections: 1 })
    : new IPCClient(app, { host: '127.0.0.1', port: Number(port), reconnect: false });
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// As pydantic writes them: a model and an Enum are titled definitions (their words: model_type, enum).
const ITEM = {
  type: 'object',
  title: 'Item',
  properties: { sku: { type: 'string', minLength: 1 }, qty: { type: 'integer', exclusiveMinimum: 0 } },
  required: ['sku', 'qty'],
  additionalProperties: false
};
const ORDER = {
  type: 'object',
  title: 'Order',
  properties: {
    items: { type: 'array', items: { $ref: '#/$defs/Item' } },
    currency: { $ref: '#/$defs/Currency' },
    placed_at: { type: 'string', format: 'date-time' },
    note: { anyOf: [{ type: 'string' }, { type: 'null' }] }
  },
  required: ['items', 'placed_at'],
  $defs: { Item: ITEM, Currency: { enum: ['EUR', 'USD'], title: 'Currency', type: 'string' } }
};

async function serve() {
  await (mode === 'serve-balanced' ? client.start() : client.connect());
  await client.serve('node.total', (msg) => msg.payload.items.reduce((sum, item) => sum + item.qty, 0), {
    schema: { request: ORDER, response: { type: 'integer', minimum: 0 } }
  });
  await client.serve('node.broken', () => ({ total: 'lots' }), { schema: { response: { type: 'integer' } } });
  const code = { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]+\\-\\d+$' } }, required: ['code'] };
  await client.serve('node.code', (msg) => msg.payload.code.length, { schema: { request: code, response: { type: 'integer' } } });
  const until = { type: 'object', properties: { valid_until: { type: 'string', format: 'date-time' }, note: { type: 'string' } } };
  await client.serve('node.date', () => ({ valid_until: new Date(0), note: undefined }), { schema: { response: until } });
  await client.serve('node.void', () => {}, { schema: { response: { type: 'null' } } });
  const bytes = { type: 'object', properties: { data: { type: 'string', format: 'binary' } }, required: ['data'] };
  await client.serve('node.bytes', (msg) => ({ data: Buffer.concat([msg.payload.data, Buffer.from([0xff])]) }), { schema: { request: bytes, response: bytes } });
  for (const [channel, request] of Object.entries(calls ? JSON.parse(calls) : {})) {
    await client.serve(channel, () => true, { schema: { request } });
  }
  out({ event: 'ready' });
}

const hex = (key, value) => (value !== null && typeof value === 'object' && typeof value.$hex === 'string' ? Buffer.from(value.$hex, 'hex') : value);
const shown = (value) => JSON.parse(JSON.stringify(value ?? null, (key, v) => (v && v.type === 'Buffer' && Array.isArray(v.data) ? { $hex: Buffer.from(v.data).toString('hex') } : v)));

async function call() {
  await client.connect();
  for (const { channel, payload } of JSON.parse(calls, hex)) {
    try {
      out({ ok: true, payload: shown(await client.request(channel, payload, 5000)) });
    } catch (err) {
      out({ ok: false, error: { code: err.code, name: err.name, message: err.message, remoteType: err.remoteType ?? null, details: err.details ?? null } });
    }
  }
  await client.disconnect();
}

async function whoami() {
  await client.connect();
  out({ connectionId: client.connectionId, info: client.getConnectionInfo().connectionId });
  await client.disconnect();
  out({ after: client.connectionId });
}

(mode === 'call' ? call() : mode === 'whoami' ? whoami() : serve()).catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
