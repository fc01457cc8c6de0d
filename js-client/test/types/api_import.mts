// ESM ways in to the package (module node16/nodenext, a .mts file): named
// imports, the namespace, the default export (the CommonJS exports object,
// as index.mjs re-exports it) and a dynamic import, typed by index.d.ts
// through package.json's `exports`. interop-tests/test_types_node.py.
// The default import is the exports object itself: it has no `default` key
// (index.js sets none), so `bridge.default` must not type-check.
import bridge from 'ipc-bridge-client';
import * as namespace from 'ipc-bridge-client';
import { IPCClient, LoadBalancedClient, type Message } from 'ipc-bridge-client';

const { ServiceClient, ConnectionPool } = await import('ipc-bridge-client');
export const made = [
  new bridge.IPCClient('app'),
  new namespace.IPCClient('app', { tls: true }),
  new IPCClient('app'),
  new LoadBalancedClient('app', ['localhost:8888']),
  new ServiceClient({ users: { port: 8888 } }),
  new ConnectionPool('app', { minConnections: 0 })
];
// @ts-expect-error index.js's exports object has no `default` (undefined at run time)
export const noDefault = bridge.default;
export async function call(client: IPCClient): Promise<Message<number>> {
  return client.sendRequest<number>('sum', [1, 2]);
}
