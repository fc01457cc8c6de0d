// Numeric options straight from process.env (string | undefined), as the
// READMEs write them (`port: process.env.IPC_PORT`), compiled under
// exactOptionalPropertyTypes too, where an optional property takes
// undefined only when its type says so. The client reads " 8888 " as 8888
// and undefined as the default; other text throws TypeError when the
// client is made. interop-tests/test_types_node.py (program "exact").
import { IPCClient, ConnectionPool, LoadBalancedClient, ServiceClient } from 'ipc-bridge-client';

const env: Record<string, string | undefined> = process.env;
export const made = [
  new IPCClient('shop', { port: env.IPC_PORT, connectTimeout: env.TIMEOUT, heartbeatInterval: env.HEARTBEAT_MS, reconnectDelay: env.DELAY }),
  new ConnectionPool('shop', { port: env.IPC_PORT, minConnections: env.POOL_MIN, acquireTimeout: env.ACQUIRE_MS }),
  new LoadBalancedClient('shop', ['127.0.0.1:8888'], { healthCheckInterval: env.CHECK_MS, maxConnections: env.POOL_MAX, requestTimeout: env.TIMEOUT }),
  new ServiceClient({ users: { port: env.USERS_PORT, timeout: env.USERS_TIMEOUT, minConnections: env.POOL_MIN } })
];
export async function acquired(pool: ConnectionPool): Promise<IPCClient> {
  return pool.acquire({ timeout: env.ACQUIRE_MS });
}
