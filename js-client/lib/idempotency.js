'use strict';

/**
 * Requests with an idempotency key (docs/protocol.md §6.6,
 * docs/resilience.md §3): the header the key travels in, what a key may
 * be, and the resend of a keyed request whose connection dropped.
 *
 * The server runs a request once per key and keeps its answer for a
 * while, so a keyed request whose connection drops before its answer is
 * not rejected with connection_lost but sent again once the client is
 * connected again (it waits in the offline queue meanwhile), within its
 * own deadline: the server answers the resend from the run the first
 * attempt started, or from its stored answer. Without a key nothing here
 * runs. Only a server that negotiates (its connect reply carries
 * `features`, docs/protocol.md §15.1 item 3) keeps keys: a 2.0.0 server
 * ignores them and would run the resend again. A keyed request sent on a
 * connection to such a server, or that would be resent on one, rejects
 * with its connection_lost as every call in flight does at a loss
 * (notResent()), as 2.0.0 clients did. The Python mirror is `ipc_client/idempotency.py` (and
 * `ipc_protocol/idempotency.py`); `interop-tests/spec/idempotency.json`
 * holds what both agree on.
 */

const { ConnectionLostError, NotConnectedError, RequestTimeoutError, UnauthorizedError } = require('./errors');
const { State } = require('./state');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');

/** A header rather than an envelope field: headers reach responders unchanged and never a version-1 peer. */
const IDEMPOTENCY_HEADER = 'idempotency-key';
const MAX_IDEMPOTENCY_KEY_LENGTH = 256;
/** Losses a keyed request ends with rather than being resent after (notResent()). */
const NOT_RESENT = new WeakSet();

/**
 * Whether `conn`'s server keeps idempotency keys: it negotiates (a 2.0.0
 * server's connect reply has no `features`, §15.1 item 3).
 * @param {{info: {negotiates: boolean}|null}|null} conn
 * @returns {boolean}
 */
function keysKept(conn) {
  return conn !== null && conn.info !== null && conn.info.negotiates === true;
}

/**
 * Marks `loss` as one a keyed request ends with, not one it is resent
 * after: the server it ran on, or would run again on, ignores keys.
 * @param {Error} loss a ConnectionLostError.
 * @returns {Error} `loss`.
 */
function notResent(loss) {
  NOT_RESENT.add(loss);
  return loss;
}

/**
 * What a keyed resend rejects with when the connection it would go out on
 * is to a server that ignores keys (2.0.0): the loss it outlived, as every
 * call in flight then failed (docs/protocol.md §6.6 item 8).
 * @param {Error} cause the loss.
 * @returns {ConnectionLostError}
 */
function keysIgnored(cause) {
  const text = `${cause.message}; the keyed request was not sent again: the server ignores idempotency keys (no features in its connect reply)`;
  return notResent(new ConnectionLostError(text, { cause: cause.cause }));
}

/**
 * Why `key` cannot be an idempotency key, or null when it can.
 * @param {unknown} key
 * @returns {string|null}
 */
function keyProblem(key) {
  if (typeof key !== 'string') return `an idempotency key is a string, not ${key === null ? 'null' : typeof key}`;
  if (key.length === 0) return 'an idempotency key must not be empty';
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    return `an idempotency key has at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters, this one ${key.length}`;
  }
  return null;
}

/**
 * A request's headers with its idempotency key added (the caller's object is not changed).
 * @param {Record<string, string>|undefined} headers
 * @param {unknown} key
 * @returns {Record<string, string>}
 * @throws {TypeError} the key is not a non-empty string of at most 256 characters.
 */
function keyedHeaders(headers, key) {
  const problem = keyProblem(key);
  if (problem !== null) throw new TypeError(problem);
  return { ...(headers || {}), [IDEMPOTENCY_HEADER]: key };
}

/**
 * Runs `attempt()` again each time it rejects with connection_lost, until
 * it ends otherwise or the deadline passes. `policy` is the call's
 * `onDisconnect`: 'fail' asked not to wait for a connection, so the loss is
 * thrown. While the client reconnects `attempt()` queues the request; once
 * it has given up, `attempt()` rejects with not_connected. The host's
 * outbox counts the call in its `keyed` from start to end: between a loss
 * and the resend it is in neither the pending table nor the queue, and
 * drain() must still wait for it. The outbox is also told the loss a
 * resend outlived (`resendCause`, while the attempt starts): a resend whose
 * deadline passes in the offline queue rejects with timeout, its `.cause`
 * that loss (docs/resilience.md §3).
 * @template T
 * @param {object} host the IPCClient (`_state`, `_outbox`, `once()`).
 * @param {() => Promise<T>} attempt
 * @param {number} deadline monotonic ms.
 * @param {string} policy
 * @returns {Promise<T>}
 */
async function resendOnLoss(host, attempt, deadline, policy) {
  const outbox = host._outbox;
  outbox.keyed++;
  try {
    return await resend(host, attempt, deadline, policy);
  } finally {
    outbox.keyed--;
  }
}

/**
 * resendOnLoss() without the count.
 * @template T
 * @param {object} host
 * @param {() => Promise<T>} attempt
 * @param {number} deadline
 * @param {string} policy
 * @returns {Promise<T>}
 */
async function resend(host, attempt, deadline, policy) {
  const outbox = host._outbox;
  let last = null;
  for (;;) {
    try {
      let pending;
      outbox.resendCause = last; // the entry attempt() queues, if it does, takes it
      try {
        pending = attempt();
      } finally {
        outbox.resendCause = null;
      }
      return await pending;
    } catch (err) {
      if (err instanceof NotConnectedError) throw goneAfter(err, last);
      if (!(err instanceof ConnectionLostError) || policy === 'fail' || NOT_RESENT.has(err)) throw err; // NOT_RESENT: it could run twice
      last = err;
      // A keyed request outlives losses until its deadline; past it, the deadline is what ended it.
      if (performance.now() >= deadline) throw timedOut(err);
      // The socket is gone but the client has not seen it yet: wait until it does.
      if (host._state === State.CONNECTED) await lossNoticed(host, deadline, err);
    }
  }
}

/**
 * Resolves when the client leaves the connected state; rejects with `err` at the deadline.
 * @param {object} host
 * @param {number} deadline
 * @param {Error} err
 * @returns {Promise<void>}
 */
function lossNoticed(host, deadline, err) {
  return new Promise((resolve, reject) => {
    const timer = setLongTimeout(() => reject(timedOut(err)), Math.max(0, deadline - performance.now()));
    nextDisconnect(host).then(() => {
      clearLongTimeout(timer);
      resolve();
    });
  });
}

/** @type {WeakMap<object, Promise<void>>} */
const disconnects = new WeakMap();

/**
 * The client's next 'disconnected', one listener however many keyed calls
 * wait for it (eleven made Node warn of a leak).
 * @param {object} host
 * @returns {Promise<void>}
 */
function nextDisconnect(host) {
  let next = disconnects.get(host);
  if (next === undefined) {
    next = new Promise((resolve) =>
      host.once('disconnected', () => {
        disconnects.delete(host);
        resolve();
      })
    );
    disconnects.set(host, next);
  }
  return next;
}

/**
 * A resend that finds the client disconnected for good fails as a queued
 * call does then: a users-file reload's cut (docs/security.md §3.4) says so,
 * with the UnauthorizedError as its cause; another loss is the cause as it is.
 * @param {NotConnectedError} gone
 * @param {Error|null} loss the loss the call outlived.
 * @returns {NotConnectedError}
 */
function goneAfter(gone, loss) {
  if (loss === null || gone.cause !== undefined) return gone;
  if (loss.cause instanceof UnauthorizedError) {
    return new NotConnectedError(`the server closed the connection unauthorized: ${loss.cause.message}`, { cause: loss.cause });
  }
  gone.cause = loss;
  return gone;
}

/**
 * The timeout a keyed request ends with when its deadline passes while its connection is lost.
 * @param {Error} loss
 * @returns {RequestTimeoutError}
 */
function timedOut(loss) {
  const err = new RequestTimeoutError('the deadline passed while the connection was lost');
  err.cause = loss;
  return err;
}

module.exports = { IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH, keyProblem, keyedHeaders, resendOnLoss, keysKept, notResent, keysIgnored };
