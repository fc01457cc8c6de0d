'use strict';

/**
 * Calling the application's event listeners without letting them break the
 * client (docs/resilience.md §2): a listener that throws, or an async one
 * that rejects, is reported on 'error' (or, with no 'error' listener, as a
 * process warning, lib/warnings.js) and the client carries on. What is
 * reported is always an Error (reportable()).
 */

const { types } = require('node:util');
const { HandlerError } = require('./errors');
const { describeThrown, safeInstanceOf } = require('./thrown');
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
 * The promise a handler's or listener's result stands for, or null when it
 * is not a promise-like. Reading the result can throw (a revoked Proxy, a
 * `then` getter that throws): that throws here, for the caller to treat as
 * a throw of the handler's own, never as its answer nor a crash.
 * @param {unknown} value
 * @returns {Promise<unknown>|null}
 */
function promiseOf(value) {
  return isThenable(value) ? Promise.resolve(value) : null;
}

/**
 * What 'error' carries for a value a handler or listener threw: an Error as
 * it is; anything else (`throw 'text'`, a rejection with undefined) as a
 * HandlerError (code handler_error), as a requester gets it from a served
 * handler (docs/protocol.md §6.3): the value's text as message, its
 * `typeof` as remoteType, the value itself as `cause`. So an 'error'
 * listener can always read `.code` and `.message`.
 * @param {unknown} value
 * @returns {Error}
 */
function reportable(value) {
  if (safeInstanceOf(value, Error) || types.isNativeError(value)) return value; // another realm's Error too
  const { name, message } = describeThrown(value);
  return new HandlerError(message, { remoteType: name, cause: value });
}

/**
 * Reports an error no caller waits for: on 'error' when someone listens,
 * else as one process warning, so it is neither dropped nor a crash (an
 * 'error' event nobody listens for throws). Never throws: an 'error'
 * listener that throws becomes a warning too.
 * @param {import('node:events').EventEmitter} emitter
 * @param {unknown} thrown what failed: reported as reportable() makes it.
 * @param {string} [context] what happened, for the warning's message.
 */
function reportError(emitter, thrown, context) {
  const err = reportable(thrown);
  if (emitter.listenerCount('error') === 0) {
    warnUnhandled(err, context);
    return;
  }
  try {
    emitter.emit('error', err);
  } catch (listenerErr) {
    warnUnhandled(listenerErr, "an 'error' listener threw");
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
    let pending;
    try {
      pending = promiseOf(listener.apply(emitter, args)); // a once() wrapper removes itself, as in emit()
    } catch (err) {
      reportError(emitter, err, context);
      continue;
    }
    if (pending !== null) pending.catch((err) => reportError(emitter, err, context));
  }
}

module.exports = { isThenable, promiseOf, reportable, reportError, emitEach };
