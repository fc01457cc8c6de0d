'use strict';

/**
 * Prints js-client's verdict on each channel name given (argv[2], a JSON
 * array): {"i": its index, "channel": bool, "pattern": bool} per line (the
 * index, not the name: a reader splitting lines at U+2028 would cut it), so the
 * Python test can compare them with ipc_protocol.channels, the rules the
 * server enforces.
 */

const { validateChannel, validatePattern } = require('../../js-client');

/** Whether `check(name)` accepts it. */
function accepts(check, name) {
  try {
    check(name);
    return true;
  } catch {
    return false;
  }
}

JSON.parse(process.argv[2]).forEach((name, i) => {
  process.stdout.write(JSON.stringify({ i, channel: accepts(validateChannel, name), pattern: accepts(validatePattern, name) }) + '\n');
});
