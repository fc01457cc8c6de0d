'use strict';

/**
 * A caller that gives up (docs/protocol.md §15.4): the `signal` option of
 * sendRequest, request, publish, connect (and stream, lib/streams.js). An
 * aborted signal rejects the call with an AbortError (`code` 'cancelled',
 * `name` 'AbortError', `cause` the signal's reason) at once, whatever the
 * call was doing; a call still in the offline queue, or waiting for a full
 * send buffer, leaves it unsent; a call waiting for its answer is forgotten
 * (a late answer is dropped), and a request sends `cancel` so that whoever
 * runs it stops. A one-way message written already has resolved: a later
 * abort changes nothing. Python has no such
 * module: asyncio's own cancellation reaches ipc_client/calls.py.
 *
 * Host interface (the IPCClient): `appId`, `_calls` (`pending`, `conn`,
 * `line`, `rememberSettled()`), `_outbox` (`queue`), `disconnect()`.
 */

const { whenAborted } = require('./abort_listeners');
const { AbortError, RequestTimeoutError } = require('./errors');
const { describeThrown } = require('./thrown');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { CANCEL, cancel } = require('./protocol/streams');

/**
 * Checks a `signal` option.
 * @param {unknown} signal
 * @returns {AbortSignal|undefined}
 * @throws {TypeError} not an AbortSignal.
 */
function checkSignal(signal) {
  if (signal === undefined || signal === null) return undefined;
  if (typeof signal !== 'object' || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw new TypeError('signal must be an AbortSignal');
  }
  return signal;
}

/**
 * The error of a call whose signal aborted.
 * @param {AbortSignal} signal
 * @returns {AbortError}
 */
function abortError(signal) {
  const reason = signal.reason;
  const { isError, message } = describeThrown(reason); // the caller's reason, whatever it is
  const text = isError && message ? `the call was aborted: ${message}` : 'the call was aborted';
  return new AbortError(text, reason === undefined ? undefined : { cause: reason });
}

/**
 * `promise` (the call of `msg`, already started), rejected with an
 * AbortError as soon as `signal` aborts; the call is then withdrawn.
 * @param {object} host the IPCClient.
 * @param {object} msg the call's message.
 * @param {AbortSignal|undefined} signal checked with checkSignal().
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 * @template T
 */
function abortable(host, msg, signal, promise) {
  if (signal === undefined) return promise;
  return new Promise((resolve, reject) => {
    const stopListening = whenAborted(signal, () => {
      const err = abortError(signal);
      withdraw(host, msg, err);
      reject(err);
    });
    promise.then(
      (value) => {
        stopListening();
        resolve(value);
      },
      (err) => {
        stopListening();
        reject(err);
      }
    );
  });
}

/**
 * Withdraws a call its caller gave up: out of the line of writes waiting
 * for a full send buffer (lib/write_line.js) or the offline queue, unsent;
 * or out of the pending table with its answer dropped when it comes, a
 * request sending `cancel` (§15.4). Rejects the inner call with `err` so its own path
 * (metrics, circuit breaker) ends as for any failure.
 * @param {object} host
 * @param {object} msg
 * @param {Error} err
 */
function withdraw(host, msg, err) {
  const id = msg.message_id;
  const calls = host._calls;
  const unwritten = calls.line === null ? undefined : calls.line.leave(id);
  if (unwritten !== undefined) {
    unwritten.fail(err); // it waited for a full send buffer: never written, no cancel to send
    return;
  }
  const pending = calls.pending.get(id);
  if (pending !== undefined) {
    calls.pending.delete(id);
    clearLongTimeout(pending.timer);
    calls.rememberSettled(id);
    const conn = calls.conn;
    if (msg.message_type === 'request' && conn !== null && !conn.closed && conn.features.has(CANCEL)) {
      try {
        conn.send(cancel(host.appId, msg.channel_id, id));
      } catch {
        // closed meanwhile: the server cancels for a lost requester
      }
    }
    pending.reject(err);
    return;
  }
  const queued = host._outbox.queue.remove(id);
  if (queued !== undefined && queued.reject !== null) queued.reject(err);
}

/**
 * connect() with a `signal`: an abort before the connection is made stops
 * the attempt (disconnect()) and rejects with an AbortError.
 * @param {object} host the IPCClient.
 * @param {{signal?: AbortSignal}|undefined} options
 * @param {() => Promise<true>} connect
 * @returns {Promise<true>}
 */
function abortableConnect(host, options, connect) {
  const signal = checkSignal(options === undefined || options === null ? undefined : options.signal);
  if (signal === undefined) return connect();
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    let settled = false;
    const stopListening = whenAborted(signal, () => {
      if (settled) return;
      settled = true;
      reject(abortError(signal));
      host.disconnect().catch(() => {});
    });
    connect().then(
      (value) => {
        stopListening();
        if (!settled) resolve(value);
        settled = true;
      },
      (err) => {
        stopListening();
        if (!settled) reject(err);
        settled = true;
      }
    );
  });
}

/**
 * `promise`, or a RequestTimeoutError at `deadline`, or an AbortError when
 * `signal` aborts, whichever comes first; `promise` itself goes on (a
 * ServiceClient's start, shared with the calls after this one).
 * @param {Promise<T>} promise
 * @param {number} deadline monotonic ms.
 * @param {AbortSignal|undefined} signal
 * @param {string} what for the timeout's message.
 * @returns {Promise<T>}
 * @template T
 */
function bounded(promise, deadline, signal, what) {
  return new Promise((resolve, reject) => {
    const left = deadline - performance.now();
    const timer = Number.isFinite(left) ? setLongTimeout(() => finish(reject, new RequestTimeoutError(what)), Math.max(0, left)) : null;
    const stopListening = signal === undefined ? null : whenAborted(signal, () => finish(reject, abortError(signal)));
    function finish(settle, value) {
      clearLongTimeout(timer);
      if (stopListening !== null) stopListening();
      settle(value);
    }
    promise.then(
      (value) => finish(resolve, value),
      (err) => finish(reject, err)
    );
  });
}

module.exports = { checkSignal, abortError, abortable, abortableConnect, bounded };
