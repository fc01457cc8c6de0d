'use strict';

/**
 * The circuit breaker (docs/resilience.md §6): after `failureThreshold`
 * consecutive failures a service is left alone for `resetTimeout`, then
 * probed with a few trial calls before normal traffic resumes.
 *
 * Pure state on an injected clock: the client asks `acquire()` before a
 * call and reports the outcome with `release()`. No timers: OPEN turns into
 * HALF_OPEN when a call is admitted after `resetTimeout` (it is the first
 * trial), which is when it matters; reading the state or a snapshot changes
 * nothing and fires nothing. `consecutiveFailures` and
 * `consecutiveSuccesses` are the current run of counted outcomes: a success
 * adds one to the second and zeroes the first, a failure the reverse, and
 * transitions leave them alone (as the Python breaker,
 * interop-tests/spec/circuit_breaker.json).
 */

const { monotonicNow, epochMs } = require('./clock');
const { buildMessage } = require('./envelope');
const { CircuitOpenError, ErrorCode } = require('./errors');

/** Breaker states, the same strings as the Python client. */
const CircuitState = Object.freeze({ CLOSED: 'closed', OPEN: 'open', HALF_OPEN: 'half_open' });

/** Codes that say the service is unavailable, not that the call was wrong. */
const FAILURE_CODES = Object.freeze(
  new Set([
    ErrorCode.TIMEOUT,
    ErrorCode.CONNECTION_LOST,
    ErrorCode.NOT_CONNECTED,
    ErrorCode.NO_RESPONDERS,
    ErrorCode.RESPONDER_LOST,
    ErrorCode.SHUTTING_DOWN,
    ErrorCode.SLOW_CONSUMER,
    ErrorCode.QUEUE_FULL
  ])
);

/** Defaults of `CircuitBreakerOptions`; durations in ms. */
const BREAKER_DEFAULTS = Object.freeze({
  failureThreshold: 5,
  resetTimeout: 30_000,
  successThreshold: 2,
  halfOpenMaxCalls: 1,
  scope: 'channel',
  fallback: null,
  isFailure: null
});

/**
 * The default failure predicate: the error's code is one of FAILURE_CODES.
 * @param {unknown} err
 * @returns {boolean}
 */
function isServiceFailure(err) {
  return err !== null && typeof err === 'object' && FAILURE_CODES.has(err.code);
}

/**
 * Validates and completes breaker options (`true` means the defaults).
 * @param {true|object} options
 * @returns {Readonly<typeof BREAKER_DEFAULTS>}
 * @throws {TypeError} an unknown key or a bad value.
 */
function parseBreakerOptions(options) {
  if (options === true) return BREAKER_DEFAULTS;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError('option circuitBreaker must be null, true or an object');
  }
  for (const key of Object.keys(options)) {
    if (!Object.prototype.hasOwnProperty.call(BREAKER_DEFAULTS, key)) throw new TypeError(`unknown circuitBreaker option ${JSON.stringify(key)}`);
  }
  const o = { ...BREAKER_DEFAULTS };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) o[key] = value;
  for (const key of ['failureThreshold', 'successThreshold', 'halfOpenMaxCalls']) {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw new TypeError(`circuitBreaker.${key} must be an integer >= 1, got ${String(o[key])}`);
  }
  if (typeof o.resetTimeout !== 'number' || !(o.resetTimeout >= 0) || !Number.isFinite(o.resetTimeout)) {
    throw new TypeError(`circuitBreaker.resetTimeout must be a number of ms >= 0, got ${String(o.resetTimeout)}`);
  }
  if (o.scope !== 'channel' && o.scope !== 'client') throw new TypeError(`circuitBreaker.scope must be 'channel' or 'client', got ${String(o.scope)}`);
  for (const key of ['fallback', 'isFailure']) {
    if (o[key] !== null && typeof o[key] !== 'function') throw new TypeError(`circuitBreaker.${key} must be a function or null`);
  }
  return Object.freeze(o);
}

/**
 * A permit for one call; `trial` calls are the HALF_OPEN probes. `epoch`
 * is the breaker's transition count when it was given: a permit from
 * before the last transition is stale.
 * @typedef {{trial: boolean, epoch: number}} Permit
 */

/**
 * One breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED (or back to OPEN).
 */
class CircuitBreaker {
  /**
   * @param {object} [options] CircuitBreakerOptions (validated by parseBreakerOptions()).
   * @param {{now?: () => number, wall?: () => number, onChange?: (state: string, snapshot: object) => void, key?: string}} [hooks]
   *   `now` the monotonic clock in ms (any origin) the breaker runs on; `wall` the epoch-ms clock
   *   `openedAt` is reported on, read at each snapshot; `onChange` is told every transition;
   *   `key` names the breaker in snapshots (the channel, or '*' for a client-wide breaker).
   */
  constructor(options = BREAKER_DEFAULTS, { now = monotonicNow, wall = Date.now, onChange = () => {}, key = '*' } = {}) {
    this.key = key;
    this.options = options === BREAKER_DEFAULTS ? options : parseBreakerOptions(options);
    this._now = now;
    this._wall = wall;
    this._onChange = onChange;
    this._isFailure = this.options.isFailure ?? isServiceFailure;
    this._state = CircuitState.CLOSED;
    this.consecutiveFailures = 0;
    this.consecutiveSuccesses = 0;
    this.failures = 0;
    this.successes = 0;
    this.rejected = 0;
    this._openedAt = null; // on `now`: snapshots convert it to epoch ms
    this._trials = 0; // trial calls in flight
    this._epoch = 0; // bumped by every transition: permits given before one are stale
  }

  /**
   * The current state: OPEN past `resetTimeout` stays OPEN until the next
   * call is admitted (acquire()); a read never moves it.
   * @returns {string}
   */
  get state() {
    return this._state;
  }

  /**
   * Asks to make a call; past `resetTimeout`, OPEN becomes HALF_OPEN and
   * this call is its first trial.
   * @returns {Permit|null} null: rejected (see retryAfter()).
   */
  acquire() {
    if (this._state === CircuitState.OPEN && this._now() - this._openedAt >= this.options.resetTimeout) {
      this._trials = 0;
      this._move(CircuitState.HALF_OPEN);
    }
    const state = this._state;
    if (state === CircuitState.CLOSED) return { trial: false, epoch: this._epoch };
    if (state === CircuitState.HALF_OPEN && this._trials < this.options.halfOpenMaxCalls) {
      this._trials++;
      return { trial: true, epoch: this._epoch };
    }
    this.rejected++;
    return null;
  }

  /**
   * Milliseconds until a call may be let through again (0 when it may now).
   * @returns {number}
   */
  retryAfter() {
    if (this._state === CircuitState.OPEN) return Math.max(0, this._openedAt + this.options.resetTimeout - this._now());
    return 0;
  }

  /**
   * Reports the outcome of a permitted call.
   *
   * Errors the predicate does not count (the call was wrong, not the
   * service) are successes: the service answered. A result that arrives
   * after the breaker changed state (a call let through while CLOSED that
   * ends once OPEN, a trial of an earlier HALF_OPEN) is counted in the
   * totals but neither moves the breaker, nor its consecutive counts, nor
   * frees a trial slot.
   * @param {Permit} permit what acquire() returned.
   * @param {unknown} [error] the call's error; null or undefined for success.
   */
  release(permit, error = null) {
    const failed = error !== null && error !== undefined && this._isFailure(error);
    if (failed) this.failures++;
    else this.successes++;
    // Started under another state: it says nothing about this one. With the same epoch
    // the state is the one it was admitted in (CLOSED, or HALF_OPEN for a trial).
    if (permit.epoch !== this._epoch) return;
    if (permit.trial) this._trials = Math.max(0, this._trials - 1);
    if (failed) {
      this.consecutiveSuccesses = 0;
      this.consecutiveFailures++;
      if (this._state === CircuitState.HALF_OPEN || this.consecutiveFailures >= this.options.failureThreshold) this._open();
    } else {
      this.consecutiveFailures = 0;
      this.consecutiveSuccesses++;
      if (this._state === CircuitState.HALF_OPEN && this.consecutiveSuccesses >= this.options.successThreshold) {
        this._openedAt = null; // closed: no longer open since any time (as in Python)
        this._move(CircuitState.CLOSED);
      }
    }
  }

  /**
   * Gives a permit back without an outcome (the call was refused locally
   * and never reached the service): frees its trial slot, counts nothing.
   * @param {Permit} permit what acquire() returned.
   */
  cancel(permit) {
    if (permit.trial && permit.epoch === this._epoch && this._state === CircuitState.HALF_OPEN) {
      this._trials = Math.max(0, this._trials - 1);
    }
  }

  /**
   * The counters, for circuitBreakers().
   * @returns {{key: string, state: string, consecutiveFailures: number, consecutiveSuccesses: number, failures: number, successes: number, rejected: number, openedAt: number|null}}
   */
  snapshot() {
    return this._snapshot(this._state);
  }

  /**
   * @param {string} state
   * @returns {object}
   * @private
   */
  _snapshot(state) {
    return {
      key: this.key,
      state,
      consecutiveFailures: this.consecutiveFailures,
      consecutiveSuccesses: this.consecutiveSuccesses,
      failures: this.failures,
      successes: this.successes,
      rejected: this.rejected,
      // when it last opened (kept through half-open, null once closed), on the
      // wall clock of this read: a wall-clock step since does not shift it
      openedAt: this._openedAt === null ? null : epochMs(this._openedAt, this._now(), this._wall())
    };
  }

  /** @private */
  _open() {
    this._openedAt = this._now();
    this._trials = 0;
    this._move(CircuitState.OPEN);
  }

  /**
   * @param {string} next
   * @private
   */
  _move(next) {
    this._state = next;
    this._epoch++;
    this._onChange(next, this._snapshot(next));
  }
}

/** Breaker key when `circuitBreaker.scope` is 'client'. */
const CLIENT_SCOPE_KEY = '*';

/**
 * Whether a fallback's result already is a message (returned as it is).
 * @param {unknown} value
 * @returns {boolean}
 * @private
 */
function isMessage(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.message_type === 'string' &&
    typeof value.message_id === 'string' &&
    typeof value.channel_id === 'string'
  );
}

/**
 * A client's breakers, one per channel (or one for the client with scope
 * 'client'), created on first use.
 */
class Breakers {
  /**
   * @param {object|null} options the parsed `circuitBreaker` option; null: no breakers.
   * @param {(state: string, snapshot: object) => void} onChange
   */
  constructor(options, onChange) {
    this.options = options;
    this._onChange = onChange;
    /** @type {Map<string, CircuitBreaker>} */
    this._breakers = new Map();
    /** @type {WeakSet<object>} the answers fallbacks gave */
    this._fallbackAnswers = new WeakSet();
  }

  /**
   * The breaker guarding a channel; null when breakers are off.
   * @param {string} channelId
   * @returns {CircuitBreaker|null}
   */
  for(channelId) {
    const options = this.options;
    if (options === null) return null;
    const key = options.scope === 'client' ? CLIENT_SCOPE_KEY : channelId;
    let breaker = this._breakers.get(key);
    if (breaker === undefined) {
      breaker = new CircuitBreaker(options, { key, onChange: this._onChange });
      this._breakers.set(key, breaker);
    }
    return breaker;
  }

  /**
   * What a request gets when its circuit is open: the `fallback`'s answer
   * (as a response message unless it is one), else circuit_open.
   * @param {CircuitBreaker} breaker the open one.
   * @param {object} msg the request that is not sent.
   * @param {unknown} payload what it would have carried, for the fallback.
   * @param {{failed: () => void}} metrics counts the refusal when nothing answers it.
   * @returns {Promise<object>}
   */
  async refuse(breaker, msg, payload, metrics) {
    const channelId = msg.channel_id;
    const retryAfter = breaker.retryAfter();
    const err = new CircuitOpenError(`circuit '${breaker.key}' is open; retry in ${Math.ceil(retryAfter)} ms`, { retryAfter });
    const { fallback } = this.options;
    if (fallback === null) {
      metrics.failed();
      throw err;
    }
    const result = await fallback(channelId, payload, err);
    const answer = isMessage(result) ? result : buildMessage('response', msg.app_id, channelId, result, { reply_to: msg.message_id });
    this._fallbackAnswers.add(answer);
    return answer;
  }

  /**
   * Whether `reply` is an answer the fallback gave (the response cache
   * stores none, docs/resilience.md §11).
   * @param {object} reply
   * @returns {boolean}
   */
  fromFallback(reply) {
    return this._fallbackAnswers.has(reply);
  }

  /**
   * Every breaker's snapshot, by key.
   * @returns {Record<string, object>}
   */
  snapshot() {
    const out = {};
    for (const [key, breaker] of this._breakers) out[key] = breaker.snapshot();
    return out;
  }
}

module.exports = { CircuitBreaker, Breakers, CircuitState, FAILURE_CODES, BREAKER_DEFAULTS, parseBreakerOptions, isServiceFailure };
