// Must compile with `tsc --strict`: the ways a typed client is meant to be
// used, against the declarations ipc-bridge-types writes for
// interop-tests/typed_service.py (interop-tests/test_typed_contracts.py
// generates them as the module 'shop-api').
import { IPCClient, BadRequestError, type Message, type TypedClient } from 'ipc-bridge-client';
import type { Currency, Quote, QuoteRequest, ShopApi } from 'shop-api';

export async function typedCalls(client: IPCClient): Promise<number> {
  const shop: TypedClient<ShopApi> = client.typed<ShopApi>();
  const request: QuoteRequest = { items: [{ sku: 'A-1', qty: 2 }], placed_at: new Date().toISOString() };
  const quote: Quote = await shop.request('shop.quote', request);
  const currency: Currency = quote.currency;
  const when: string = quote.valid_until;
  const percent: number | undefined = quote.discount?.percent;
  const amounts: number[] = quote.lines.map((line) => line.amount * line.qty);

  // Every optional field, a union member, the enum's literals; per-call options as usual.
  const full: Message<Quote> = await shop.sendRequest(
    'shop.quote',
    { items: [], currency: 'USD', placed_at: '2026-12-05T10:00:00Z', coupon: null, priority: 'rush' },
    { timeout: 1000, headers: { trace: 't-1' } }
  );
  const fromMessage: number = full.payload.total;
  const counted: number = await shop.request('shop.count', [1, 2, 3], 500);
  const anything: unknown = await shop.request('shop.echo', { whatever: [1, 'two'] });
  const digest: Buffer = await shop.request('shop.checksum', Buffer.from('abc')); // pydantic's bytes

  // The rest of the client is the client itself.
  shop.on('connected', (info) => info.connectionId);
  await shop.publish('news', { any: 'thing' });
  const untyped: unknown = await client.request('not.in.the.contract', 1);

  // A Node responder for a channel of the contract is checked too.
  await shop.serve('shop.count', (msg) => msg.payload.length);
  await shop.serve('shop.quote', async (msg) => ({
    total: 0,
    currency: msg.payload.currency ?? 'EUR',
    valid_until: msg.payload.placed_at,
    lines: msg.payload.items.map((item) => ({ sku: item.sku, qty: item.qty, amount: 0 })),
    discount: null
  }), { schema: { request: { type: 'object' }, response: true } });

  try {
    await shop.request('shop.quote', request);
  } catch (err) {
    if (err instanceof BadRequestError) return err.errors.filter((e) => e.loc[0] === 'items' && e.type === 'missing').length;
  }
  return [currency, when, percent, amounts, fromMessage, counted, anything, digest, untyped].length;
}
