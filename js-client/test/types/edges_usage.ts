// Must compile with `tsc --strict`, the declarations checked too (no
// skipLibCheck): the declarations ipc-bridge-types writes for
// interop-tests/typed_edges_service.py (the module 'edges-api'), whose
// patterns overlap each other and its exact channels, and whose model named
// Buffer must not hide Node's (interop-tests/test_typed_declarations.py).
import { IPCClient, type ContractEntry } from 'ipc-bridge-client';
import type { Buffer2, EdgesApi } from 'edges-api';

export async function edges(client: IPCClient): Promise<unknown[]> {
  const api = client.typed<EdgesApi>();
  // bytes are Node's Buffer; the model named Buffer is Buffer2.
  const meta: Buffer2 = await api.request('upload', { data: Buffer.from('hi'), meta: { size: 2 } });
  // An exact channel gets its own types, though templates match its name.
  const north: boolean = await api.request('orders.eu.north', 'x');
  const none: null = await api.request('a.b', [1, 2]);
  // Two tokens: orders.* and orders.> both match, the server takes the first registered.
  const either: number | string = await api.request('orders.eu', { id: 'o-1' });
  // Three tokens: orders.> alone.
  const many: string = await api.request('orders.eu.south', { id: 'o-2' });
  // One token: * alone.
  const one: number = await api.request('anything', 5);
  // A pattern served gets its own entry.
  await api.serve('orders.*', (msg) => msg.payload.id.length);
  await api.serve('orders.>', (msg) => msg.payload.id);
  await api.serve('*', (msg) => msg.payload + 1);
  const sent = await api.sendRequest('orders.a.b', { id: 'o-3' });
  const payload: string = sent.payload;
  const stream = api.stream<number>('orders.eu', { id: 'o-4' });
  const entry: ContractEntry<EdgesApi, 'orders.x.y'>['response'] = 'the orders.> answer';
  return [meta.size, north, none, either, many, one, payload, stream, entry];
}
