'use strict';

/**
 * Makes one IPCClient per option set and reports whether it was refused.
 *
 * argv[2] is a JSON array of option objects; the strings "NaN", "Infinity"
 * and "-Infinity" stand for those numbers, which JSON cannot carry. One line
 * per set, in order: {"index": i, "error": null} or {"index": i, "error":
 * name, "message": text}. Nothing connects: the constructor checks them.
 */

const { IPCClient } = require('../../js-client');

const NUMBERS = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
process.removeAllListeners('warning'); // an unknown option's warning is not what these ask

const sets = JSON.parse(process.argv[2]);
sets.forEach((set, index) => {
  const options = Object.fromEntries(Object.entries(set).map(([k, v]) => [k, Object.hasOwn(NUMBERS, v) ? NUMBERS[v] : v]));
  try {
    new IPCClient('app', options); // eslint-disable-line no-new
    console.log(JSON.stringify({ index, error: null }));
  } catch (err) {
    console.log(JSON.stringify({ index, error: err.name, message: err.message }));
  }
});
