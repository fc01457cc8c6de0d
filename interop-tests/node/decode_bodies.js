'use strict';

/**
 * Decodes each frame body given (hex, one per argument) with js-client's
 * decoder and prints {"hex": ..., "code": null | error code} per line, so
 * the Python test can compare both languages' verdicts.
 */

const { decodeMessage } = require('../../js-client/lib/envelope');

for (const hex of process.argv.slice(2)) {
  let code = null;
  try {
    decodeMessage(Buffer.from(hex, 'hex'));
  } catch (err) {
    code = err.code ?? String(err);
  }
  process.stdout.write(JSON.stringify({ hex, code }) + '\n');
}
