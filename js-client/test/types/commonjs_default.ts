// A default import under `module: commonjs` without esModuleInterop (tsc's
// default there): index.js sets neither `default` nor `__esModule`, so tsc
// would compile it to `ipc_bridge_client_1.default.IPCClient`, undefined at
// run time. index.d.ts declares no default export, so tsc refuses the
// import (TS1192) instead. interop-tests/test_types_node.py (node10).
// @ts-expect-error the CommonJS module has no default export without esModuleInterop
import bridge from 'ipc-bridge-client';
import { IPCClient } from 'ipc-bridge-client';
import bridgeModule = require('ipc-bridge-client');

export const made: IPCClient[] = [new IPCClient('app'), new bridgeModule.IPCClient('app')];
export const viaDefault: unknown = bridge;
