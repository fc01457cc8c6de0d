'use strict';
// The server's EOF while the client's send buffer is full (test_js_server_eof.py):
// connects to argv[2], fills what the stalled proxy will not read, says so,
// then waits (bounded) for its state to leave 'connected' once told the EOF is sent.
const readline = require('node:readline');
const { IPCClient } = require('../../js-client');

(async () => {
  const client = new IPCClient('app', { host: '127.0.0.1', port: Number(process.argv[2]), heartbeatInterval: null, reconnect: false });
  client.on('error', () => {});
  await client.connect();
  const lines = readline.createInterface({ input: process.stdin });
  const next = () => new Promise((resolve) => lines.once('line', resolve));
  console.log(JSON.stringify({ event: 'connected' }));
  await next(); // the proxy stalls
  const big = 'x'.repeat(1_000_000);
  const socket = client._conn._socket;
  for (let i = 0; i < 200 && socket.writableLength < 1_000_000; i++) {
    client.publish('fill', big).catch(() => {});
    await new Promise((resolve) => setImmediate(resolve));
  }
  console.log(JSON.stringify({ event: 'filled', buffered: socket.writableLength }));
  await next(); // the EOF is sent
  const started = Date.now();
  while (client.state === 'connected' && Date.now() - started < 5000) await new Promise((resolve) => setTimeout(resolve, 10));
  console.log(JSON.stringify({ event: 'state', state: client.state }));
  process.exit(0);
})();
