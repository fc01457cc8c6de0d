'use strict';

/**
 * Quickstart, the Node side: calls the two Python handlers of service.py,
 * then subscribes to `ticks.*` and prints TICKS ticks (default 5) before
 * disconnecting.
 *
 * Run, from the repository root, each in its own terminal:
 *
 *     .venv/bin/python -m ipc_server
 *     .venv/bin/python examples/quickstart/service.py
 *     node examples/quickstart/client.js
 *
 * IPC_HOST / IPC_PORT select the server (default 127.0.0.1:8888).
 */

const { IPCClient, ErrorCode } = require('../../js-client');

const HOST = process.env.IPC_HOST || '127.0.0.1';
const PORT = Number(process.env.IPC_PORT || 8888);
const TICKS = Number(process.env.TICKS || 5);

async function main() {
  const client = new IPCClient('quickstart', { host: HOST, port: PORT, requestTimeout: 5000 });
  client.on('error', (err) => console.error('bridge error:', err.code, err.message));
  await client.connect();

  try {
    const greeting = await client.sendRequest('greet.hello', { name: 'Ada' });
    console.log('greet.hello ->', JSON.stringify(greeting.payload));
    const sum = await client.sendRequest('math.add', { a: 1, b: 2 });
    console.log('math.add ->', JSON.stringify(sum.payload));
  } catch (err) {
    await client.disconnect();
    if (err.code === ErrorCode.NO_RESPONDERS) err.message += ' (is examples/quickstart/service.py running?)';
    throw err;
  }

  // `*` matches exactly one token: ticks.1, ticks.2, ...
  let seen = 0;
  let allSeen;
  const finished = new Promise((resolve) => { allSeen = resolve; });
  await client.subscribe('ticks.*', (msg) => {
    if (seen >= TICKS) return;
    seen += 1;
    console.log('tick', msg.channel_id, JSON.stringify(msg.payload));
    if (seen === TICKS) allSeen();
  });
  await finished;

  await client.disconnect();
  console.log(`done after ${TICKS} ticks`);
}

main().catch((err) => {
  console.error(err.code || err.name, err.message);
  process.exitCode = 1;
});
