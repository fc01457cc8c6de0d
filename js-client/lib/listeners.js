'use strict';

/**
 * Calling the application's event listeners without letting them break the
 * client (docs/resilience.md §2): a listener that throws, or an async one
 * that rejects, is reported on 'error' (or, with no 'error' listener, as a
 * process warning, lib/warnings.js) and the client carries on.
 */

const { warnUnhandled } = require('./warnings');

/**
 * Whether a value is a promise-like.
 * @param {unknown} value
 * @returns {boolean}
 */
function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

/**
 * Reports an error no caller waits for: on 'error' when someone listens,
 * else as one process warning, so it is neither dropped nor a crash (an
 * 'error' event nobody listens for throws). Never throws: an 'error'
 * listener that throws becomes a warning too.
 * @param {import('node:events').EventEmitter} emitter
 * @param {unknown} err
 * @param {string} [context] what happened, for the warning's message.
 */
function reportError(emitter, err, context) {
  if (emitter.listenerCount('error') === 0) {
    warnUnhandled(err, context);
    return;
  }
  try {
    emitter.emit('error', err);
  } catch (thrown) {
    warnUnhandled(thrown, "an 'error' listener threw");
  }
}

/**
 * Calls each listener of `event` on its own, so one that throws does not
 * keep the next from running (as emit() would), and an async listener's
 * rejection is reported instead of becoming an unhandled rejection. The
 * caller has checked that someone listens.
 * @param {import('node:events').EventEmitter} emitter
 * @param {string} event
 * @param {unknown[]} args
 */
function emitEach(emitter, event, args) {
  const context = `a '${event}' listener threw`;
  for (const listener of emitter.rawListeners(event)) {
    let result;
    try {
      result = listener.apply(emitter, args); // a once() wrapper removes itself, as in emit()
    } catch (err) {
      reportError(emitter, err, context);
      continue;
    }
    if (isThenable(result)) Promise.resolve(result).catch((err) => reportError(emitter, err, context));
  }
}

module.exports = { isThenable, reportError, emitEach };
