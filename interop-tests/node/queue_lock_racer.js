'use strict';

/**
 * One racer for a queue file's stale lock, for
 * interop-tests/test_js_queue_lock_race.py (queue_lock_racer.py is its
 * Python twin). Prints "ready", then per round reads `go <epoch ms> <queue
 * file>`, waits for that time (so every racer tries at once), tries the
 * lock and prints "got" or "refused <reason>"; reads `release`, gives the
 * lock back if it took it and prints "released". Ends with stdin.
 */

const readline = require('node:readline');
const { lockQueueFile, unlockQueueFile } = require('../../js-client/lib/queue_lock');

let held = null;
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [word, at, file] = line.split(' ');
  if (word === 'go') {
    while (Date.now() < Number(at)) {
      // a barrier: every racer tries at the same moment (at is at most a few ms away)
    }
    try {
      lockQueueFile(file, `${file}.lock`, (what, cause) => Object.assign(new Error(`${what}: ${cause}`), { reason: 'failed' }));
      held = file;
      console.log('got');
    } catch (err) {
      console.log(`refused ${err.reason ?? err.message}`);
    }
  } else if (word === 'release') {
    if (held !== null) unlockQueueFile(`${held}.lock`);
    held = null;
    console.log('released');
  }
});
console.log('ready');
