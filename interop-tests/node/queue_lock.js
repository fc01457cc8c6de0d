'use strict';

/**
 * A Node client on a queue file, for interop-tests/test_js_queue_lock.py.
 * argv[2] is {port, queuePath, hold}. Prints one JSON line: {ok: true, pid}
 * when the client took the file, or {error: {...}} when its constructor
 * threw. With `hold`, it keeps the file until stdin ends, then disconnects
 * (giving the file back) and prints {released: true}.
 */

const { IPCClient, QueueFileError, QueueFileInUseError } = require('../../js-client');

const { port, queuePath, hold } = JSON.parse(process.argv[2]);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

let client;
try {
  client = new IPCClient('app', { host: '127.0.0.1', port, queuePath, reconnect: false });
} catch (err) {
  print({
    error: {
      name: err.name,
      code: err.code ?? null,
      reason: err.reason ?? null,
      path: err.path ?? null,
      message: err.message,
      isQueueFileError: err instanceof QueueFileError,
      isInUse: err instanceof QueueFileInUseError
    }
  });
  process.exit(0);
}
print({ ok: true, pid: process.pid });
const release = () => client.disconnect().then(() => print({ released: true }));
if (hold) {
  process.stdin.resume();
  process.stdin.on('end', release);
} else {
  release();
}
