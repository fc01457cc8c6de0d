// CommonJS ways in to the package (module node16/nodenext, a .cts file):
// `import x = require()`, a default import (esModuleInterop, which these
// modes imply) and named imports, all typed by index.d.ts through
// package.json's `exports` "types" condition. interop-tests/test_types_node.py.
import bridge = require('ipc-bridge-client');
import defaults from 'ipc-bridge-client';
import { IPCClient, type IPCClientOptions } from 'ipc-bridge-client';

const options: IPCClientOptions = { port: 8888, reconnect: false };
export const clients: IPCClient[] = [new bridge.IPCClient('app', options), new defaults.IPCClient('app'), new IPCClient('app')];
export const same: boolean = bridge.IPCClient === IPCClient && defaults.VERSION === bridge.VERSION;
export function isBridgeError(err: unknown): err is InstanceType<typeof bridge.IpcError> {
  return err instanceof bridge.IpcError && err.code !== bridge.ErrorCode.TIMEOUT;
}
