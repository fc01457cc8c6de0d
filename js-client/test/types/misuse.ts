// Must NOT compile with `tsc --strict`: each line marked `// error:` is a
// mistake the contract catches, and tsc must report an error on exactly
// those lines (interop-tests/test_typed_contracts.py checks both).
import { IPCClient, type Message } from 'ipc-bridge-client';
import type { Quote, ShopApi } from 'shop-api';

export async function mistakes(client: IPCClient): Promise<void> {
  const shop = client.typed<ShopApi>();
  const at = '2026-12-05T10:00:00Z';
  await shop.request('shop.qoute', { items: [], placed_at: at }); // error: a channel the contract does not have
  await shop.request('shop.quote', { items: [] }); // error: a required field missing
  await shop.request('shop.quote', { items: [], placed_at: new Date() }); // error: a datetime travels as a string
  await shop.request('shop.quote', { items: [], placed_at: at, currency: 'GBP' }); // error: not one of the enum's values
  await shop.request('shop.quote', { items: [{ sku: 'A-1', qty: '2' }], placed_at: at }); // error: a nested model's field of the wrong type
  await shop.request('shop.quote', { items: [], placed_at: at, colour: 'red' }); // error: a field the model does not have
  await shop.request('shop.quote', { items: [], placed_at: at, priority: 'soon' }); // error: no member of the union
  await shop.request('shop.count', ['1']); // error: a list of the wrong item type
  await shop.request('shop.checksum', 'abc'); // error: bytes are a Buffer, not a string
  const quote: Quote = await shop.request('shop.quote', { items: [], placed_at: at });
  const missing = quote.subtotal; // error: the answer has no such field
  const total: string = quote.total; // error: the answer's field has another type
  const discount: number = quote.discount.percent; // error: an optional answer may be null
  const message: Message<string> = await shop.sendRequest('shop.quote', { items: [], placed_at: at }); // error: the message's payload is a Quote
  await shop.serve('shop.count', (msg) => msg.payload.join(',')); // error: the responder must answer a number
  void [missing, total, discount, message];
}
