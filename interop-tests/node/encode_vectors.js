'use strict';

/**
 * Prints, for every shared vector that has a message, the frame js-client's
 * encoder produces for it: {"name": ..., "hex": ...} per line. The Python
 * test compares these bytes with the Python encoder's.
 */

const path = require('node:path');
const { encodeFrame } = require('../../js-client/lib/framing');
const { encodeMessage } = require('../../js-client/lib/envelope');

const { vectors } = require(path.join(__dirname, '..', 'vectors', 'frames.json'));
for (const v of vectors) {
  if (v.message === undefined) continue;
  process.stdout.write(JSON.stringify({ name: v.name, hex: encodeFrame(encodeMessage(v.message)).toString('hex') }) + '\n');
}
