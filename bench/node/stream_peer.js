'use strict';

/**
 * The Node side of bench/streams.py (docs/protocol.md §15), one role per
 * process, the repository's js-client against the real server:
 *
 *   node bench/node/stream_peer.js consume PORT CHANNEL N     items/s of one stream of N items
 *   node bench/node/stream_peer.js produce PORT CHANNEL SIZE  serves an async generator of SIZE-byte items
 *   node bench/node/stream_peer.js stall PORT CHANNEL AFTER   takes AFTER items, then holds the loop
 *   node bench/node/stream_peer.js abort PORT CHANNEL ROUNDS  per round: a request, `go` on stdin, abort()
 *
 * A consumer's window is $WINDOW (default 64). Prints `ready`, then
 * `result {json}` lines; exits when stdin closes.
 */

const readline = require('node:readline');
const { performance } = require('node:perf_hooks');
const { IPCClient } = require('../../js-client');

const [role, portText, channel, arg] = process.argv.slice(2);
const port = Number(portText);
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on('line', (line) => {
  const next = waiting.shift();
  if (next) next(line);
});
lines.on('close', () => process.exit(0));
const nextLine = () => new Promise((resolve) => waiting.push(resolve));
const print = (obj) => process.stdout.write(`result ${JSON.stringify(obj)}\n`);

async function main() {
  const client = new IPCClient('bench', { host: '127.0.0.1', port, reconnect: false, requestTimeout: 60_000 });
  await client.connect();
  if (role === 'produce') {
    const item = 'x'.repeat(Number(arg));
    await client.serve(channel, async function* (msg) {
      for (let i = 0; i < msg.payload; i++) yield item;
    });
    process.stdout.write('ready\n');
    return;
  }
  process.stdout.write('ready\n');
  if (role === 'consume') {
    await nextLine();
    const started = performance.now();
    let count = 0;
    for await (const item of client.stream(channel, Number(arg), { window: Number(process.env.WINDOW || 64) })) count += item === undefined ? 0 : 1;
    const seconds = (performance.now() - started) / 1000;
    print({ items: count, seconds, itemsPerS: count / seconds });
  } else if (role === 'stall') {
    let count = 0;
    for await (const item of client.stream(channel, null)) {
      void item;
      if (++count === Number(arg)) {
        print({ taken: count });
        await nextLine(); // holds the loop: nothing more is taken until told
        break;
      }
    }
  } else if (role === 'abort') {
    for (let round = 0; round < Number(arg); round++) {
      const controller = new AbortController();
      const call = client.request(channel, round, { signal: controller.signal }).catch((err) => err);
      await nextLine(); // the handler started
      const abortedAt = performance.timeOrigin + performance.now();
      controller.abort();
      const err = await call;
      print({ round, abortedAt, code: err && err.code });
    }
  }
}

main().catch((err) => {
  process.stdout.write(`error ${err && err.stack}\n`);
  process.exit(1);
});
