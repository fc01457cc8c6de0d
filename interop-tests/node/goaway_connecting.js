'use strict';
// The goaway notice while connecting (test_js_goaway.py): argv[2] the port, argv[3] the mode.
// 'reconnect': connects, subscribes 'news', says 'ready'; at the loss the Python side makes,
// sends a call (it must wait in the queue), and reports its answer and the events seen,
// with a 'mark' where the Python side says the old server has closed.
// 'off': reconnect off, 'news' subscribed while connecting, so connect() restores it; reports how connect() ended.
// 'held': reconnect off, a call 'slow' the server never answers; at the notice, disconnect(): reports
// how the call ended, how long after disconnect() (ms), and the 'close' events.
const readline = require('node:readline');
const { IPCClient } = require('../../js-client');

const [port, mode] = [Number(process.argv[2]), process.argv[3]];
const say = (line) => console.log(JSON.stringify(line));
const failure = (err) => ({ name: err.name, code: err.code, cause: err.cause && err.cause.name });

async function reconnecting() {
  const client = new IPCClient('app', { host: '127.0.0.1', port, reconnect: true, reconnectDelay: 20, maxReconnectDelay: 100, heartbeatInterval: null });
  client.on('error', () => {});
  await client.connect();
  await client.subscribe('news', () => {});
  const events = [];
  client.on('connected', () => events.push('connected'));
  client.on('reconnected', () => events.push('reconnected'));
  readline.createInterface({ input: process.stdin }).on('line', () => events.push('mark'));
  client.once('disconnected', () => {
    client.request('who', null, { timeout: 20000 }).then(
      (value) => say({ event: 'answer', value, events, state: client.state }),
      (err) => say({ event: 'answer', error: failure(err), events, state: client.state })
    ).finally(() => client.disconnect().then(() => process.exit(0)));
  });
  say({ event: 'ready' });
}

async function off() {
  const client = new IPCClient('app', { host: '127.0.0.1', port, reconnect: false, heartbeatInterval: null });
  client.on('error', () => {});
  const connected = [];
  client.on('connected', () => connected.push('connected'));
  const connecting = client.connect();
  const subscribed = client.subscribe('news', () => {}).catch((err) => failure(err)); // in the table: restored by connect()
  try {
    await connecting;
    say({ event: 'connect', ok: true, connected, state: client.state });
  } catch (err) {
    say({ event: 'connect', error: failure(err), connected, state: client.state, subscribe: await subscribed });
  }
  await client.disconnect();
  process.exit(0);
}

async function held() {
  const client = new IPCClient('app', { host: '127.0.0.1', port, reconnect: false, heartbeatInterval: null });
  client.on('error', () => {});
  let closes = 0;
  client.on('close', () => closes++);
  await client.connect();
  const call = client.request('slow', null, { timeout: 20000 }).then(() => ({ ok: true }), failure);
  client.once('disconnected', async (cause) => {
    const started = performance.now();
    await client.disconnect();
    const ended = await Promise.race([call, new Promise((resolve) => setTimeout(resolve, 5000, 'still waiting'))]);
    say({ event: 'disconnected', cause: cause && cause.name, call: ended, ms: Math.round(performance.now() - started), closes });
    process.exit(0);
  });
  say({ event: 'ready' });
}

({ off, held }[mode] ?? reconnecting)().catch((err) => {
  say({ event: 'crashed', error: String(err && err.stack) });
  process.exit(1);
});
