'use strict';

/**
 * Benchmarks: request round trips from the Node client to an in-process
 * handler of the Python server, and the framing decoder on its own.
 *
 *   node bench/bench.js [--host H --port P] [--channel C] [--seconds S] [--python PATH]
 *
 * Without --port it starts the server itself (the repository's ipc_server,
 * with the venv's Python when there is one) and stops it at the end. With
 * --port, the server must have a handler on --channel that echoes.
 */

const path = require('node:path');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { IPCClient } = require('..');
const { FrameDecoder, encodeFrame } = require('../lib/framing');
const { buildMessage, decodeMessage, encodeMessage } = require('../lib/envelope');

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Parses `--name value` pairs.
 * @returns {Record<string, string>}
 */
function parseArgs() {
  const args = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  return args;
}

const SERVER_PROGRAM = `
import asyncio, signal, sys
sys.path.insert(0, sys.argv[1])
from ipc_server import IPCServer

async def main():
    async with IPCServer("127.0.0.1", 0) as server:
        @server.handler("bench.echo")
        async def echo(msg):
            return msg.payload
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.close()))
        print(f"ipc_server listening on {server.host}:{server.port}", flush=True)
        await server.serve_forever()

asyncio.run(main())
`;

/**
 * Starts the Python server with an echo handler; resolves with its port.
 * @param {string} python
 * @returns {Promise<{port: number, proc: import('node:child_process').ChildProcess}>}
 */
function startServer(python) {
  return new Promise((resolve, reject) => {
    const proc = spawn(python, ['-c', SERVER_PROGRAM, ROOT], { stdio: ['ignore', 'pipe', 'inherit'] });
    const timer = setTimeout(() => reject(new Error('the server did not start within 15 s')), 15000);
    let buffered = '';
    proc.stdout.on('data', (chunk) => {
      buffered += chunk;
      const match = /listening on [^:]+:(\d+)/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve({ port: Number(match[1]), proc });
      }
    });
    proc.on('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
}

/**
 * The p-th percentile of sorted values.
 * @param {number[]} sorted
 * @param {number} p 0..100
 * @returns {number}
 */
function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Round trips per second with `inflight` requests outstanding at all times.
 * @param {IPCClient} client
 * @param {string} channel
 * @param {number} inflight
 * @param {number} seconds
 * @returns {Promise<number>}
 */
async function throughput(client, channel, inflight, seconds) {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      await client.sendRequest(channel, { n: done });
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: inflight }, worker));
  return done / ((performance.now() - start) / 1000);
}

/**
 * Latency of sequential requests (one in flight), in microseconds.
 * @param {IPCClient} client
 * @param {string} channel
 * @param {number} seconds
 * @returns {Promise<{p50: number, p99: number, n: number}>}
 */
async function latency(client, channel, seconds) {
  for (let i = 0; i < 200; i++) await client.sendRequest(channel, { warm: i });
  const samples = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    await client.sendRequest(channel, { n: samples.length });
    samples.push((performance.now() - t) * 1000);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), n: samples.length };
}

/**
 * Decoder throughput in MB/s for frames of one body size, fed in 64 KiB
 * chunks as a socket would deliver them; `parse` adds JSON + envelope.
 * @param {number} bodySize bytes per frame body.
 * @param {boolean} parse
 * @param {number} seconds
 * @returns {number}
 */
function decodeRate(bodySize, parse, seconds) {
  const filler = 'x'.repeat(Math.max(0, bodySize - 120));
  const msg = buildMessage('publish', 'bench', 'bench.data', filler);
  const frame = encodeFrame(encodeMessage(msg));
  const count = Math.max(1, Math.floor((4 * 1024 * 1024) / frame.length));
  const stream = Buffer.concat(Array.from({ length: count }, () => frame));
  const chunks = [];
  for (let i = 0; i < stream.length; i += 65536) chunks.push(stream.subarray(i, i + 65536));
  let bytes = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    const decoder = new FrameDecoder({ maxFrameSize: null });
    for (const chunk of chunks) {
      for (const body of decoder.feed(chunk)) if (parse) decodeMessage(body);
    }
    bytes += stream.length;
  }
  return bytes / 1e6 / ((performance.now() - start) / 1000);
}

/**
 * Prints rows as an aligned Markdown table.
 * @param {string[][]} rows the first row is the header.
 */
function printTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(rows[0]));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows.slice(1)) console.log(line(r));
}

/**
 * Runs every measurement and prints the table; stops the server it started.
 */
async function main() {
  const args = parseArgs();
  const seconds = Number(args.seconds || 3);
  const channel = args.channel || 'bench.echo';
  let server = null;
  let port = Number(args.port);
  if (!args.port) {
    const venv = path.join(ROOT, '.venv', 'bin', 'python');
    const python = args.python || process.env.IPC_PYTHON || (fs.existsSync(venv) ? venv : 'python3');
    server = await startServer(python);
    port = server.port;
  }
  const client = new IPCClient('bench', { host: args.host || '127.0.0.1', port });
  const rows = [['benchmark', 'result']];
  try {
    await client.connect();
    const rt = await throughput(client, channel, 64, seconds);
    rows.push(['request round trips, 64 in flight (Node -> Python handler)', `${Math.round(rt).toLocaleString('en-US')} /s`]);
    const lat = await latency(client, channel, seconds);
    rows.push(['latency, 1 in flight: p50 / p99', `${lat.p50.toFixed(0)} / ${lat.p99.toFixed(0)} µs (n=${lat.n})`]);
  } finally {
    await client.disconnect();
    if (server) server.proc.kill('SIGTERM');
  }
  for (const size of [100, 1024 * 1024]) {
    const label = size === 100 ? '100 B' : '1 MiB';
    rows.push([`decode ${label} frames: framing only`, `${decodeRate(size, false, seconds / 3).toFixed(0)} MB/s`]);
    rows.push([`decode ${label} frames: framing + JSON envelope`, `${decodeRate(size, true, seconds / 3).toFixed(0)} MB/s`]);
  }
  console.log(`node ${process.version}, ${require('node:os').cpus().length} CPUs, ${seconds} s per measurement\n`);
  printTable(rows);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
