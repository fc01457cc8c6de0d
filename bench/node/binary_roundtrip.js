'use strict';

/**
 * The Node rows of bench/binary.py (docs/protocol.md §16): round trips of
 * a SIZE-byte payload through the real server, one at a time, with the
 * repository's js-client on both ends:
 *
 *   node bench/node/binary_roundtrip.js --port N --size BYTES --mode raw|base64 --seconds S [--channel C]
 *
 * - `raw`: the payload is a Buffer, sent as a binary attachment; the echo
 *   answers the Buffer it got.
 * - `base64`: today's only way without §16: the bytes base64-encoded in a
 *   JSON string; the echo decodes them and answers them encoded again, and
 *   the caller decodes the answer, as applications using the bytes do.
 *
 * The echo is a second Node process (this script with `--serve`) on its
 * own connection, started and stopped here; `--channel C` uses a responder
 * already serving C instead (it must answer the payload it gets). After a
 * short warm-up, round trips run for S seconds. Prints one JSON line:
 * `{"round_trips": n, "seconds": s, "bytes": b}`, b the payload bytes
 * carried both ways (2 x SIZE per round trip).
 */

const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { performance } = require('node:perf_hooks');
const { IPCClient } = require('../../js-client');

const WARMUP_ROUND_TRIPS = 3;
const TIMEOUT_MS = 60_000;

/**
 * `--name value` pairs (and bare `--serve`).
 * @param {string[]} argv
 * @returns {Record<string, string|true>}
 */
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new TypeError(`unexpected argument ${argv[i]}`);
    const name = argv[i].slice(2);
    if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[name] = argv[++i];
    else out[name] = true;
  }
  return out;
}

/** A client of the bench's app on `port`. */
function client(port) {
  return new IPCClient('bench', { host: '127.0.0.1', port, reconnect: false, requestTimeout: TIMEOUT_MS });
}

/**
 * The echo: serves `channel` until stdin closes.
 * @param {number} port
 * @param {string} channel
 * @param {string} mode
 */
async function serve(port, channel, mode) {
  const echo = client(port);
  await echo.connect();
  await echo.serve(channel, mode === 'raw' ? (msg) => msg.payload : (msg) => Buffer.from(msg.payload, 'base64').toString('base64'));
  process.stdout.write('ready\n');
  readline.createInterface({ input: process.stdin }).on('close', () => echo.disconnect().finally(() => process.exit(0)));
}

/**
 * Starts the echo process and resolves once it serves.
 * @returns {Promise<import('node:child_process').ChildProcess>}
 */
function startEcho(port, channel, mode) {
  const child = spawn(process.execPath, [__filename, '--serve', '--port', String(port), '--channel', channel, '--mode', mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the echo did not start within 30 s')), 30_000);
    child.once('exit', (code) => reject(new Error(`the echo exited ${code}`)));
    readline.createInterface({ input: child.stdout }).once('line', () => {
      clearTimeout(timer);
      resolve(child);
    });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const port = Number(args.port);
  const mode = args.mode ?? 'raw';
  if (!['raw', 'base64'].includes(mode)) throw new TypeError(`--mode is raw or base64, not ${mode}`);
  if (args.serve) return serve(port, args.channel, mode);
  const size = Number(args.size);
  const seconds = Number(args.seconds ?? 5);
  const channel = typeof args.channel === 'string' ? args.channel : `bench.binary.echo.${process.pid}`;
  const echo = typeof args.channel === 'string' ? null : await startEcho(port, channel, mode);
  const caller = client(port);
  try {
    await caller.connect();
    const bytes = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) bytes[i] = i & 0xff; // pages touched, content not all zeros
    const roundTrip =
      mode === 'raw'
        ? async () => {
            const answer = await caller.request(channel, bytes);
            if (answer.length !== size) throw new Error(`the echo answered ${answer.length} bytes, not ${size}`);
          }
        : async () => {
            const answer = Buffer.from(await caller.request(channel, bytes.toString('base64')), 'base64');
            if (answer.length !== size) throw new Error(`the echo answered ${answer.length} bytes, not ${size}`);
          };
    for (let i = 0; i < WARMUP_ROUND_TRIPS; i++) await roundTrip();
    let n = 0;
    const started = performance.now();
    const until = started + seconds * 1000;
    do {
      await roundTrip();
      n++;
    } while (performance.now() < until);
    const elapsed = (performance.now() - started) / 1000;
    process.stdout.write(`${JSON.stringify({ round_trips: n, seconds: elapsed, bytes: 2 * size * n })}\n`);
  } finally {
    await caller.disconnect();
    if (echo !== null) {
      echo.stdin.end();
      echo.kill();
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
