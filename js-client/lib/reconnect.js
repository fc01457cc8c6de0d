'use strict';

/**
 * The reconnection policy and loop (docs/resilience.md §3): backoff with
 * jitter (lib/backoff.js) up to `maxRetries` attempts, `waitOnFirstConnect`,
 * giving up, and the calls (subscribe(), serve(), connect() while
 * reconnecting) that wait for the next connection.
 *
 * Single flight by construction: the loop starts only on the CONNECTED ->
 * RECONNECTING (or, with waitOnFirstConnect, CONNECTING -> RECONNECTING)
 * transition and runs only while RECONNECTING.
 *
 * Host interface (the IPCClient that owns it): `options`, `_state`,
 * `_generation`, `_connecting`, `_setState()`, `_establish()`, `_metrics`,
 * `_outbox` (`abandon()`), `_emitSafely()`, `_emitError()`.
 */

const { backoffDelay } = require('./backoff');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { now } = require('./connection');
const { State } = require('./state');
const { ConnectionLostError, NotConnectedError, QueueFullError, RequestTimeoutError, UnauthorizedError } = require('./errors');
const tlsOptions = require('./tls_options');
const { abortError } = require('./cancellation');
const { whenAborted } = require('./abort_listeners');

/**
 * An `unauthorized` no reconnection can fix: a refused handshake, or a users
 * reload that removed the user or its app. Not a reload cut whose
 * `details.reason` is `credential`: the token may only have been hashed
 * again, and the next handshake tells (docs/security.md §3.4).
 * @param {unknown} err
 * @returns {boolean}
 */
const revokedForGood = (err) => err instanceof UnauthorizedError && !(err.details && err.details.reason === 'credential');

/** A refusal retrying cannot fix: a token, or a certificate (lib/tls_options.js). */
const final = (err) => revokedForGood(err) || tlsOptions.refused(err);

/** subscribe()/serve() calls that may wait for a (re)connection at once. */
const MAX_WAITING_REGISTRATIONS = 1024;

/**
 * When to try again, and who waits for it.
 */
class Reconnector {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** The attempt number of the current loop, 1-based; 0 when connected. */
    this.attempt = 0;
    /** connect() waits through the loop (waitOnFirstConnect). */
    this.firstWait = false;
    /** @type {Set<{resolve: Function, reject: Function, timer: any}>} calls waiting for a connection */
    this.waiters = new Set();
    this._wake = null; // ends the backoff sleep early
  }

  /**
   * The reconnect loop.
   * @param {Error|null} [firstError] why the connection attempt before the loop failed.
   * @returns {Promise<Error|null>} once the loop ends: null when connected,
   *   else the last attempt's error (or null if disconnect() stopped it).
   */
  start(firstError = null) {
    const host = this.host;
    const loop = this._run(host._generation, firstError)
      .catch((err) => {
        host._emitError(err); // never an unhandled rejection: nobody but keepConnecting() awaits the loop
        return err;
      })
      .finally(() => {
        if (host._connecting === loop) host._connecting = null;
      });
    host._connecting = loop;
    return loop;
  }

  /**
   * waitOnFirstConnect: the attempt of connect() failed, so the client
   * moves CONNECTING -> RECONNECTING (the state diagram's "connection failed") and
   * runs the reconnect loop, with its 'reconnecting' events; calls queued
   * meanwhile stay queued. Settles connect()'s promise: true on the first
   * success, NotConnectedError once the loop gives up ('reconnect_failed')
   * or disconnect() stops it.
   * @param {number} generation the connect() attempt's.
   * @param {Error} err why its attempt failed.
   * @returns {Promise<true>}
   */
  async keepConnecting(generation, err) {
    const host = this.host;
    host._setState(State.RECONNECTING);
    this.firstWait = true;
    let lastError;
    try {
      lastError = await this.start(err);
    } finally {
      this.firstWait = false;
    }
    if (host._state === State.CONNECTED && host._generation === generation) return true;
    const cause = lastError ?? err;
    if (host._generation !== generation) throw new NotConnectedError('the client disconnected while waiting for the first connection', { cause });
    if (final(cause)) throw cause; // as when the first attempt is refused
    const { host: address, port, maxRetries } = host.options;
    // The last attempt's words too (a TLS failure names TLS), as the Python client says them.
    throw new NotConnectedError(`cannot connect to ${address}:${port}: gave up after ${maxRetries + 1} attempts: ${cause.message}`, { cause });
  }

  /** disconnect(): ends the backoff sleep at once. */
  wake() {
    if (this._wake !== null) this._wake();
  }

  /**
   * Waits until the client is connected, up to `deadline`, for subscribe(),
   * serve() and stream(): at once when connected, not_connected when no
   * connection is coming.
   * @param {number} deadline monotonic ms.
   * @param {AbortSignal} [signal] gives the wait up: rejects with an AbortError at once.
   * @returns {Promise<void>|undefined}
   */
  ready(deadline, signal) {
    const state = this.host._state;
    if (state === State.CONNECTED) return undefined;
    if (state !== State.CONNECTING && state !== State.RECONNECTING) {
      return Promise.reject(new NotConnectedError(`not connected (${state})`));
    }
    if (this.waiters.size >= MAX_WAITING_REGISTRATIONS) {
      return Promise.reject(new QueueFullError(`${this.waiters.size} registrations are already waiting for a connection`));
    }
    return this.waitConnected(deadline, signal);
  }

  /**
   * Parks a call until the connection is (re)established.
   * @param {number} deadline monotonic ms, or Infinity.
   * @param {AbortSignal} [signal] gives the wait up (its timer and its place go with it).
   * @returns {Promise<void>}
   */
  waitConnected(deadline, signal) {
    if (signal !== undefined && signal.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      const onAbort = () => {
        this.waiters.delete(waiter);
        waiter.reject(abortError(signal));
      };
      if (Number.isFinite(deadline)) {
        waiter.timer = setLongTimeout(() => {
          this.waiters.delete(waiter);
          waiter.reject(new RequestTimeoutError('timed out waiting for the connection'));
        }, Math.max(0, deadline - now()));
      }
      let stopListening = null;
      const done = () => {
        clearLongTimeout(waiter.timer);
        if (stopListening !== null) stopListening();
      };
      waiter.resolve = () => {
        done();
        resolve();
      };
      waiter.reject = (err) => {
        done();
        reject(err);
      };
      if (signal !== undefined) stopListening = whenAborted(signal, onAbort);
      this.waiters.add(waiter);
    });
  }

  /** Connected: every waiting call goes on. */
  resolveWaiters() {
    for (const waiter of this.waiters) waiter.resolve();
    this.waiters.clear();
  }

  /**
   * Rejects every call waiting for a connection.
   * @param {Error} err
   */
  failWaiters(err) {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter.reject(err);
  }

  /**
   * The loop's body: sleep, try, until connected, given up or stopped.
   * @param {number} generation the client's when the loop started.
   * @param {Error|null} firstError
   * @returns {Promise<Error|null>}
   * @private
   */
  async _run(generation, firstError) {
    const host = this.host;
    const { options } = host;
    let lastError = firstError;
    this.attempt = 0; // every loop counts its own attempts
    while (host._state === State.RECONNECTING && host._generation === generation) {
      const attempt = ++this.attempt;
      if (attempt > options.maxRetries) return this._giveUp(lastError);
      const delay = backoffDelay(attempt - 1, {
        initial: options.initialDelay,
        max: options.maxDelay,
        multiplier: options.multiplier,
        jitter: options.jitter
      });
      host._emitSafely('reconnecting', { attempt, delay });
      if (host._state !== State.RECONNECTING) return null; // a listener called disconnect()
      await new Promise((resolve) => {
        const timer = setLongTimeout(resolve, delay); // a maxDelay past 2^31-1 ms: in steps, not every ms
        this._wake = () => {
          clearLongTimeout(timer);
          resolve();
        };
      });
      this._wake = null;
      if (host._state !== State.RECONNECTING || host._generation !== generation) return null;
      try {
        await host._establish(generation);
        return null;
      } catch (err) {
        lastError = err;
        if (final(err)) return this._giveUp(err);
      }
    }
    return lastError;
  }

  /**
   * Stops reconnecting after too many failures (or a refused token):
   * waiting and queued calls fail with not_connected. The failure is
   * reported unless a waiting connect() (waitOnFirstConnect) rejects with it.
   * @param {Error|null} cause
   * @returns {Error} cause.
   * @private
   */
  _giveUp(cause) {
    const host = this.host;
    const attempts = this.attempt - (final(cause) ? 0 : 1);
    this.attempt = 0;
    host._setState(State.DISCONNECTED);
    host._metrics.closed(false);
    const err = new ConnectionLostError(`gave up reconnecting after ${attempts} attempts`, { cause: cause ?? undefined });
    const gone = new NotConnectedError('gave up reconnecting', { cause: err });
    this.failWaiters(gone);
    host._outbox.abandon(gone);
    host._emitSafely('reconnect_failed', attempts);
    if (!this.firstWait) host._emitError(err);
    host._emitSafely('close');
    return cause;
  }
}

module.exports = { Reconnector, revokedForGood };
