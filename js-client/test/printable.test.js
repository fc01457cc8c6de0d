'use strict';

// A peer's text in the client's log lines (NODE_DEBUG=ipc-bridge) and
// process warnings: escaped as the Python side escapes it
// (docs/operations.md §4), so it cannot forge a line or reach the terminal.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { printable } = require('../lib/printable');
const { warnUnhandled } = require('../lib/warnings');
const { ROOT, captureWarnings, settle } = require('./helpers');

const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'printable.json'), 'utf8'));
const FORGED = 'feed.a\n2026-12-07 12:00:00,000 INFO forged\x1b[2J';

test('printable vectors shared with the Python side', () => {
  for (const { value, expected } of SPEC.vectors) assert.equal(printable(value), expected, JSON.stringify(value));
  assert.equal(printable(42), '42');
  assert.equal(printable({ toString: () => 'a\rb' }), 'a\\rb');
});

test('NODE_DEBUG lines name a delivered channel escaped: one line each', () => {
  // A client subscribed to feed.> gets a publish on a channel with a newline and an escape sequence.
  const script = `
    const { Peer } = require('./test/helpers');
    const { IPCClient } = require('.');
    const { buildMessage, encodeMessage } = require('./lib/envelope');
    const { encodeFrame } = require('./lib/framing');
    (async () => {
      const peer = new Peer();
      await peer.listen();
      const client = new IPCClient('app', { port: peer.port, reconnect: false });
      await client.connect();
      let delivered;
      const got = new Promise((resolve) => (delivered = resolve));
      await client.subscribe('feed.>', delivered);
      [...peer.sockets][0].write(encodeFrame(encodeMessage(buildMessage('publish', 'app', ${JSON.stringify(FORGED)}, 1))));
      await got;
      await client.disconnect();
      await peer.close();
    })();`;
  const run = spawnSync(process.execPath, ['-e', script], {
    cwd: path.join(ROOT, 'js-client'), env: { ...process.env, NODE_DEBUG: 'ipc-bridge' }, encoding: 'utf8', timeout: 20000
  });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stderr.split('\n').filter((line) => line !== '');
  assert.ok(lines.every((line) => line.startsWith('IPC-BRIDGE ')), run.stderr);
  assert.ok(lines.some((line) => line.includes(`: deliver ${printable(FORGED)} trace=`)), run.stderr);
  assert.ok(!run.stderr.includes('\x1b'), run.stderr);
});

test('a process warning is one line; the error it reports stays raw in .cause', async (t) => {
  const warnings = captureWarnings(t);
  const err = new Error('refused\n(node:1) IpcBridgeWarning: forged\x1b[2J');
  warnUnhandled(err, 'a peer said');
  await settle();
  const [warning] = warnings.filter((w) => w.code === 'IPC_UNHANDLED_ERROR');
  assert.equal(warning.message, "a peer said: Error: refused\\n(node:1) IpcBridgeWarning: forged\\x1b[2J (no 'error' listener on the client)");
  assert.equal(warning.cause, err);
});
