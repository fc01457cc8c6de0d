// Must NOT compile with `tsc --strict`: each line marked `// error:` is a
// mistake the declarations of interop-tests/typed_edges_service.py catch
// (interop-tests/test_typed_declarations.py).
import { IPCClient } from 'ipc-bridge-client';
import type { EdgesApi } from 'edges-api';

export async function mistakes(client: IPCClient): Promise<void> {
  const api = client.typed<EdgesApi>();
  await api.request('upload', { data: { size: 2 }, meta: { size: 2 } }); // error: a bytes field is Node's Buffer, not the model
  const meta: Buffer = await api.request('upload', { data: Buffer.from('hi'), meta: { size: 2 } }); // error: the answer is the model
  await api.request('orders.eu.north', { id: 'o-1' }); // error: the exact channel takes a string, not the patterns' Order
  const north: string = await api.request('orders.eu.north', 'x'); // error: it answers a boolean
  const either: number = await api.request('orders.eu', { id: 'o-1' }); // error: orders.> may answer a string
  const many: number = await api.request('orders.eu.south', { id: 'o-2' }); // error: three tokens are orders.>'s alone
  await api.request('orders.eu', 'x'); // error: orders.eu.north's string is not what the patterns take
  await api.request('any.thing', 5); // error: * matches one token, and no orders pattern this name
  await api.request('anything', 'x'); // error: * takes a number
  await api.serve('orders.*', (msg) => msg.payload.id); // error: orders.* answers a number
  void [meta, north, either, many];
}
