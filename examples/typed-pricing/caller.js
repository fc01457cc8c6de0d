// @ts-check
'use strict';

/**
 * A typed Node caller of the Python pricing service (service.py). The types
 * of shop-api.d.ts come from the service's pydantic models, written by
 *
 *     .venv/bin/python -m ipc_client schemas examples/typed-pricing/service.py:client --out shop.schema.json
 *     node js-client/bin/ipc-bridge-types.js --from shop.schema.json --out examples/typed-pricing/shop-api.d.ts
 *
 * from the repository's root (or straight from the running server:
 * `node js-client/bin/ipc-bridge-types.js --app shop --out ...`; in a
 * project with the package installed, `npx ipc-bridge-types`). `// @ts-check` makes the compiler (an editor, or
 * `tsc --checkJs --strict`) hold this file to them: a misspelt channel, a
 * missing field or a currency that is not 'EUR' or 'USD' does not compile.
 * The last request goes through the untyped client on purpose, to show
 * what the service answers a bad request: a bad_request error carrying each
 * field's error.
 *
 * Run, from the repository root, each in its own terminal:
 *
 *     .venv/bin/python -m ipc_server
 *     .venv/bin/python examples/typed-pricing/service.py
 *     node examples/typed-pricing/caller.js
 *
 * IPC_HOST / IPC_PORT select the server (default 127.0.0.1:8888).
 */

const { IPCClient, BadRequestError, ErrorCode } = require('../../js-client');

const HOST = process.env.IPC_HOST || '127.0.0.1';
const PORT = Number(process.env.IPC_PORT || 8888);

/** @typedef {import('./shop-api').ShopApi} ShopApi */
/** @typedef {import('./shop-api').QuoteRequest} QuoteRequest */

async function main() {
  const client = new IPCClient('shop', { host: HOST, port: PORT, requestTimeout: 5000 });
  client.on('error', (err) => console.error('bridge error:', err.message));
  await client.connect();
  /** @type {import('../../js-client').TypedClient<ShopApi>} */
  const shop = client.typed();

  try {
    /** @type {QuoteRequest} */
    const order = {
      items: [{ sku: 'KB-101', qty: 1 }, { sku: 'CB-USB', qty: 4 }],
      currency: 'USD',
      tier: 'gold',
      at: '2026-12-05T09:30:00Z'
    };
    const quote = await shop.request('pricing.quote', order);
    for (const line of quote.lines) console.log(`${line.qty} x ${line.sku} at ${line.unit_price} = ${line.amount}`);
    console.log(`total ${quote.total} ${quote.currency} (-${quote.discount_percent}%), valid until ${quote.valid_until}`);

    // The compiler would refuse this payload for `shop`; the untyped client sends it anyway.
    await client.request('pricing.quote', { items: [{ sku: '', qty: 0 }], currency: 'GBP' });
  } catch (err) {
    if (!(err instanceof BadRequestError)) {
      if (err instanceof Error && 'code' in err && err.code === ErrorCode.NO_RESPONDERS) err.message += ' (is examples/typed-pricing/service.py running?)';
      throw err;
    }
    console.log(`bad_request: ${err.errors.length} field errors`);
    for (const e of err.errors) console.log(`  ${e.loc.join('.')}: ${e.msg} (${e.type})`);
  } finally {
    await client.disconnect();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
