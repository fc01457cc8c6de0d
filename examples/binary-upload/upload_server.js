'use strict';

/**
 * An upload server with Node's `http` module only: a file POSTed to /upload
 * is handed, as it arrives, to a Python worker that computes its SHA-256
 * and size; the HTTP answer carries them (docs/protocol.md §16.6).
 *
 *   POST /upload   the file is the body (any size; X-File-Name: optional); PUT too (curl -T)
 *                  -> 200 {"name", "sha256", "size", "chunks"}
 *   GET  /health   -> 200 when a ping through the bridge succeeds, else 503
 *
 * The upload is never held whole, here or in the worker: this server asks
 * the worker (`uploads.checksum`, with the upload's id), the worker pulls
 * the bytes back as a stream (`uploads.chunks`), and each ~256 KiB chunk it
 * takes is read from the HTTP request only then. The stream's credit is the
 * backpressure: while the worker has no credit left, the request is not
 * read, and TCP slows the uploader down. Each chunk is one raw binary
 * attachment (no base64), a Buffer here and `bytes` in the worker.
 *
 * Failures are JSON `{"error": {"code", "message"}}` with the bridge's error
 * code: 503 no worker or no bridge, 504 too slow, 502 the worker failed
 * (or the upload broke off).
 *
 * Run, from the repository root, each in its own terminal:
 *
 *     .venv/bin/python -m ipc_server
 *     .venv/bin/python examples/binary-upload/checksum_worker.py
 *     node examples/binary-upload/upload_server.js
 *
 * then:
 *
 *     head -c 100M /dev/urandom > /tmp/big.bin
 *     curl -T /tmp/big.bin -H 'X-File-Name: big.bin' http://127.0.0.1:3001/upload
 *     sha256sum /tmp/big.bin
 *
 * Environment: IPC_HOST / IPC_PORT, the bridge server (default
 * 127.0.0.1:8888); UPLOAD_HOST / UPLOAD_PORT, where to listen (default
 * 127.0.0.1:3001; 0 picks a free port); UPLOAD_TIMEOUT_MS, the longest an
 * upload may take (default 300000). The first line printed is
 * `upload server listening on http://HOST:PORT`.
 */

const http = require('node:http');
const crypto = require('node:crypto');
const { IPCClient, ErrorCode } = require('../../js-client');

const IPC_HOST = process.env.IPC_HOST || '127.0.0.1';
const IPC_PORT = Number(process.env.IPC_PORT || 8888);
const UPLOAD_HOST = process.env.UPLOAD_HOST || '127.0.0.1';
const UPLOAD_PORT = Number(process.env.UPLOAD_PORT ?? 3001);
const TIMEOUT_MS = Number(process.env.UPLOAD_TIMEOUT_MS || 300_000);
const CHUNK_BYTES = 256 * 1024;

const bridge = new IPCClient('uploads', { host: IPC_HOST, port: IPC_PORT, onDisconnect: 'fail', maxDelay: 2000 });
bridge.on('error', (err) => console.error('bridge error:', err.code, err.message));

/** Uploads waiting for the worker to pull them: id -> the HTTP request. */
const waiting = new Map();

/**
 * An HTTP request's body as Buffers of CHUNK_BYTES (the last one shorter),
 * read only as they are asked for. Each chunk is a new Buffer: it is sent
 * without a copy, so it is never written to again.
 * @param {http.IncomingMessage} req
 */
async function* chunksOf(req) {
  let chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let filled = 0;
  for await (const data of req) {
    for (let at = 0; at < data.length; ) {
      const n = data.copy(chunk, filled, at);
      filled += n;
      at += n;
      if (filled === CHUNK_BYTES) {
        yield chunk;
        chunk = Buffer.allocUnsafe(CHUNK_BYTES);
        filled = 0;
      }
    }
  }
  if (!req.complete) throw new Error('the upload broke off');
  if (filled > 0) yield chunk.subarray(0, filled);
}

const STATUS = new Map([
  [ErrorCode.NO_RESPONDERS, 503],
  [ErrorCode.NOT_CONNECTED, 503],
  [ErrorCode.CONNECTION_LOST, 503],
  [ErrorCode.TIMEOUT, 504]
]);

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  return new Promise((resolve) => res.end(data, resolve));
}

/** One upload: the worker is asked for its checksum and pulls its bytes meanwhile. */
async function upload(req, res) {
  const id = crypto.randomUUID();
  waiting.set(id, req);
  const name = req.headers['x-file-name'] ?? null;
  try {
    const answer = await bridge.request('uploads.checksum', { upload: id, name }, TIMEOUT_MS);
    await sendJson(res, 200, answer);
  } catch (err) {
    await sendJson(res, STATUS.get(err.code) ?? 502, { error: { code: err.code ?? 'internal', message: err.message } });
  } finally {
    waiting.delete(id);
    if (!req.complete) req.destroy(); // an upload nobody read to its end: drop the rest
  }
}

const server = http.createServer((req, res) => {
  if ((req.method === 'POST' || req.method === 'PUT') && req.url === '/upload') return upload(req, res);
  if (req.method === 'GET' && req.url === '/health') {
    return bridge.healthCheck().then((ok) => sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unavailable' }));
  }
  req.resume();
  return sendJson(res, 404, { error: { code: 'not_found', message: `${req.method} ${req.url}` } });
});

async function main() {
  await bridge.connect();
  // The worker pulls an upload's bytes here (§16.6): one stream item per chunk.
  await bridge.serve('uploads.chunks', (msg) => {
    const req = waiting.get(msg.payload && msg.payload.upload);
    if (req === undefined) throw new RangeError(`no upload ${JSON.stringify(msg.payload && msg.payload.upload)} is waiting`);
    waiting.delete(msg.payload.upload); // pulled once
    return chunksOf(req);
  });
  server.listen(UPLOAD_PORT, UPLOAD_HOST, () => {
    const { address, port } = server.address();
    console.log(`upload server listening on http://${address}:${port}`);
  });
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close();
    bridge.disconnect().finally(() => process.exit(0));
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
