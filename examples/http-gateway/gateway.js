'use strict';

/**
 * An HTTP gateway in front of Python services, with Node's `http` module only.
 *
 *   GET  /api/users/:id          -> request users.get      200 the user
 *   POST /api/users              -> request users.create   201 the new user (JSON body {name, email})
 *   GET  /api/users/:id/report   -> request users.report   (slow on purpose: 504)
 *   GET  /events/:channel        -> Server-Sent Events: every publication on the channel
 *                                   (or pattern, e.g. /events/users.created or /events/users.>)
 *   GET  /health                 -> 200 when a ping through the bridge succeeds, else 503
 *
 * Failures are JSON `{"error": {"code", "message"}}` with the bridge's error code:
 *   503 the bridge is down or reconnecting, or no service answers the channel
 *       (not_connected, connection_lost, no_responders, shutting_down, ...)
 *   504 the service did not answer in time (timeout)
 *   502 the service answered with an error (handler_error with its remote_type, responder_lost, ...)
 *
 * Run, from the repository root, each in its own terminal:
 *
 *     .venv/bin/python -m ipc_server
 *     .venv/bin/python examples/http-gateway/users_service.py
 *     node examples/http-gateway/gateway.js
 *
 * then:
 *
 *     curl -N http://127.0.0.1:3000/events/users.created       # in a fourth terminal
 *     curl http://127.0.0.1:3000/api/users/1
 *     curl -d '{"name": "Alan Turing"}' http://127.0.0.1:3000/api/users
 *     curl http://127.0.0.1:3000/api/users/99                  # 502 handler_error UserNotFound
 *     curl http://127.0.0.1:3000/api/users/1/report            # 504 after GATEWAY_TIMEOUT_MS
 *     curl http://127.0.0.1:3000/health
 *
 * Environment: IPC_HOST / IPC_PORT, the bridge server (default 127.0.0.1:8888);
 * GATEWAY_HOST / GATEWAY_PORT, where to listen (default 127.0.0.1:3000; 0 picks a
 * free port); GATEWAY_TIMEOUT_MS, the deadline of each call (default 2000).
 * The first line printed is `gateway listening on http://HOST:PORT`.
 */

const http = require('http');
const { IPCClient, ErrorCode, validatePattern } = require('../../js-client');

const IPC_HOST = process.env.IPC_HOST || '127.0.0.1';
const IPC_PORT = Number(process.env.IPC_PORT || 8888);
const GATEWAY_HOST = process.env.GATEWAY_HOST || '127.0.0.1';
const GATEWAY_PORT = Number(process.env.GATEWAY_PORT ?? 3000);
const TIMEOUT_MS = Number(process.env.GATEWAY_TIMEOUT_MS || 2000);
const MAX_BODY_BYTES = 64 * 1024;
const SSE_KEEPALIVE_MS = 15000;

const bridge = new IPCClient('gateway-demo', {
  host: IPC_HOST,
  port: IPC_PORT,
  requestTimeout: TIMEOUT_MS,
  // An HTTP caller should hear "unavailable" at once rather than wait in the
  // offline queue while the bridge reconnects.
  onDisconnect: 'fail',
  maxDelay: 2000
});
bridge.on('error', (err) => console.error('bridge error:', err.code, err.message));
bridge.on('disconnected', (err) => console.log(`bridge disconnected${err ? ` (${err.code})` : ''}, now ${bridge.state}`));
bridge.on('reconnected', ({ attempts }) => console.log(`bridge reconnected after ${attempts} attempt(s)`));

// The bridge's error code decides the HTTP status.
const UNAVAILABLE = new Set([
  ErrorCode.NOT_CONNECTED,
  ErrorCode.CONNECTION_LOST,
  ErrorCode.NO_RESPONDERS,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.QUEUE_FULL,
  ErrorCode.CIRCUIT_OPEN
]);

function statusFor(err) {
  if (err.code === ErrorCode.TIMEOUT) return 504;
  if (UNAVAILABLE.has(err.code)) return 503;
  return err.code ? 502 : 500;
}

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

function sendError(res, status, code, message, remoteType) {
  const error = { code, message };
  if (remoteType) error.remote_type = remoteType;
  sendJson(res, status, { error });
}

/** One HTTP call = one bridge request; its answer or error becomes the response. */
async function forward(res, channel, payload, okStatus = 200) {
  try {
    const reply = await bridge.sendRequest(channel, payload);
    sendJson(res, okStatus, reply.payload);
  } catch (err) {
    sendError(res, statusFor(err), err.code || 'internal', err.message, err.remoteType);
  }
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error('body too large'), { status: 413, code: 'too_large' }));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch {
        reject(Object.assign(new Error('body is not JSON'), { status: 400, code: 'bad_request' }));
      }
    });
    req.on('error', reject);
  });
}

/** Server-Sent Events: one bridge subscription handler per browser connection. */
async function streamEvents(req, res, channel) {
  try {
    validatePattern(channel);
  } catch (err) {
    return sendError(res, 400, err.code || 'bad_message', err.message);
  }
  if (!bridge.connected) return sendError(res, 503, ErrorCode.NOT_CONNECTED, 'the bridge is reconnecting');

  const onMessage = (msg) => {
    res.write(`id: ${msg.message_id}\ndata: ${JSON.stringify({ channel: msg.channel_id, data: msg.payload })}\n\n`);
  };
  try {
    await bridge.subscribe(channel, onMessage);
  } catch (err) {
    return sendError(res, statusFor(err), err.code || 'internal', err.message);
  }
  if (req.destroyed) return bridge.unsubscribe(channel, onMessage).catch(() => {});

  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  // Tells the browser (and the tests) that publications from now on will arrive.
  res.write(`event: subscribed\ndata: ${JSON.stringify({ channel })}\n\n`);
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), SSE_KEEPALIVE_MS);
  res.on('close', () => {
    clearInterval(keepAlive);
    bridge.unsubscribe(channel, onMessage).catch(() => {}); // nothing to do if the bridge is down
  });
}

async function health(res) {
  const check = await bridge.health({ timeout: 1000 }); // never throws
  sendJson(res, check.healthy ? 200 : 503, {
    status: check.healthy ? 'ok' : 'unavailable',
    bridge: { state: check.state, latencyMs: check.latencyMs, server: check.server, error: check.error },
    connection: bridge.getConnectionHealth()
  });
}

async function route(req, res) {
  const { pathname } = new URL(req.url, 'http://gateway');
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const method = req.method;

  if (method === 'GET' && pathname === '/health') return health(res);
  if (parts[0] === 'events' && parts.length === 2 && method === 'GET') return streamEvents(req, res, parts[1]);
  if (parts[0] === 'api' && parts[1] === 'users') {
    if (parts.length === 2 && method === 'POST') return forward(res, 'users.create', await readJson(req), 201);
    if (parts.length === 3 && method === 'GET') return forward(res, 'users.get', { id: parts[2] });
    if (parts.length === 4 && parts[3] === 'report' && method === 'GET') return forward(res, 'users.report', { id: parts[2] });
  }
  return sendError(res, 404, 'not_found', `no route for ${method} ${pathname}`);
}

const server = http.createServer((req, res) => {
  res.on('finish', () => console.log(`${req.method} ${req.url} ${res.statusCode}`));
  route(req, res).catch((err) => {
    if (!res.headersSent) sendError(res, err.status || 500, err.status ? err.code : 'internal', err.message);
    else res.end();
  });
});

async function main() {
  await bridge.connect();
  server.listen(GATEWAY_PORT, GATEWAY_HOST, () => {
    const { address, port } = server.address();
    console.log(`gateway listening on http://${address}:${port}`);
  });
}

function shutdown() {
  server.close();
  server.closeAllConnections(); // SSE streams never end by themselves
  bridge.disconnect().finally(() => process.exit(0));
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

main().catch((err) => {
  console.error('gateway: cannot reach the bridge at', `${IPC_HOST}:${IPC_PORT}:`, err.code, err.message);
  process.exit(1);
});
