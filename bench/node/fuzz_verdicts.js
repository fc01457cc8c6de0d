'use strict';

/**
 * The Node half of bench/fuzz.py's differential target: reads frames from
 * stdin (4-byte big-endian length + body, as on the wire) and writes, for
 * each body, one byte: what the js-client's envelope decoder says of it.
 *
 *   o  a message          f  bad_frame          m  bad_message
 *   x  anything else (an untyped error: a breach whatever Python says)
 *
 * bench/fuzz.py compares them with the Python decoder's verdicts: a frame
 * one accepts and the other refuses is a frame the server relays that
 * drops a Node subscriber, or the other way round (issue 16 §4.1).
 */

const path = require('node:path');

const LIB = path.resolve(__dirname, '..', '..', 'js-client', 'lib');
const { FrameDecoder } = require(path.join(LIB, 'framing'));
const { decodeMessage } = require(path.join(LIB, 'envelope'));
const { IpcError } = require(path.join(LIB, 'errors'));

const VERDICT = { bad_frame: 'f', bad_message: 'm' };

function verdict(body) {
  try {
    decodeMessage(body);
    return 'o';
  } catch (err) {
    return err instanceof IpcError ? VERDICT[err.code] ?? 'x' : 'x';
  }
}

const decoder = new FrameDecoder({ maxFrameSize: null });
process.stdin.on('data', (chunk) => {
  const out = decoder.feed(chunk).map(verdict).join('');
  if (out) process.stdout.write(out);
});
process.stdin.on('end', () => process.exit(0));
