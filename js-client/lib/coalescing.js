'use strict';

/**
 * Shared calls (docs/resilience.md §11): request coalescing and the TTL
 * response cache, the legacy package's `deduplicatedRequest` and
 * `cachedRequest` (seed 001, "Performance Optimization") inside the client.
 *
 * Both are opt-in per call and keyed by `requestKey()` (channel and
 * canonical payload). With `coalesce: true` identical calls in flight share
 * one round trip: each caller gets the answer (or the error), under its own
 * `timeout` and `signal`; a caller that times out or aborts leaves the
 * shared call running for the others (it runs under the first caller's
 * deadline, without a signal). With `cacheTtl` (ms) a successful answer is
 * reused for that long. Mirrors ipc_client/coalescing.py.
 *
 * Host interface (the IPCClient that owns it): `options` (`requestTimeout`,
 * `cacheMaxEntries`), `_calls` (`sendRequest()`), `_breakers` (`for()`, `fromFallback()`), `_metrics`.
 */

const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { whenAborted } = require('./abort_listeners');
const { CircuitState } = require('./circuit_breaker');
const { NAMED_TIMEOUT, checkTimeout, timeoutText } = require('./call_options');
const { ResponseCache, checkCacheTtl } = require('./response_cache');
const { AbortError, RequestTimeoutError } = require('./errors');
const { isBinary, bytesDigest } = require('./protocol/attachments');

/**
 * JSON.stringify's replacer for canonical JSON: object keys sorted; a
 * number JSON cannot carry throws (as the encoder refuses it) instead of
 * becoming null.
 * @param {string} key
 * @param {unknown} value
 * @returns {unknown}
 */
function canonical(key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('not a finite number');
  if (isBinary(this[key])) return { '\u0000bytes': bytesDigest(this[key]) }; // before a Buffer's toJSON: its bytes (§16)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const sorted = {};
  for (const k of Object.keys(value).sort()) sorted[k] = value[k];
  return sorted;
}

/**
 * The channel and the payload as canonical JSON (keys sorted), so equal
 * payloads share a key whatever their key order; null for a payload JSON
 * cannot carry (such a call is sent as is and fails there, with its usual error).
 * @param {string} channelId
 * @param {unknown} payload
 * @returns {string|null}
 */
function requestKey(channelId, payload) {
  try {
    return `${channelId}\0${JSON.stringify(payload === undefined ? null : payload, canonical)}`;
  } catch {
    return null;
  }
}

/**
 * The per-call options object of sendRequest(channelId, payload, timeout, options):
 * `timeout` itself when it is the options object.
 * @param {unknown} timeout
 * @param {unknown} options
 * @returns {object|null}
 */
function optionsOf(timeout, options) {
  const o = timeout !== null && typeof timeout === 'object' ? timeout : options;
  return o !== null && typeof o === 'object' ? o : null;
}

/**
 * The calls in flight that others may join, and the response cache.
 */
class SharedCalls {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    this.cache = new ResponseCache(host.options.cacheMaxEntries, host._metrics);
    /** @type {Map<string, Promise<object>>} request key -> the shared call */
    this.inflight = new Map();
  }

  /**
   * Whether a coalesced call of `key` is in flight (a pool sends an identical one here).
   * @param {string} key a requestKey().
   * @returns {boolean}
   */
  carries(key) {
    return this.inflight.has(key);
  }

  /**
   * Whether a sendRequest() call asks for coalescing or the cache (the
   * client's hot path asks this of every call: two property reads).
   * @param {unknown} timeout
   * @param {unknown} options
   * @returns {boolean}
   */
  static wanted(timeout, options) {
    const o = optionsOf(timeout, options);
    return o !== null && (o.coalesce !== undefined || o.cacheTtl !== undefined);
  }

  /**
   * IPCClient.sendRequest() with `coalesce` or `cacheTtl`.
   * @returns {Promise<object>} the response message.
   */
  async sendRequest(channelId, payload, timeout, options) {
    const { coalesce = false, cacheTtl, ...rest } = optionsOf(timeout, options) ?? {};
    if (typeof coalesce !== 'boolean') throw new TypeError(`coalesce must be a boolean, got ${String(coalesce)}`);
    const ttl = cacheTtl === undefined ? undefined : checkCacheTtl(cacheTtl);
    const ms = typeof timeout === 'object' || timeout == null ? rest.timeout : timeout;
    const send = (opts) => this.host._calls.sendRequest(channelId, payload, ms, opts);
    const key = requestKey(channelId, payload);
    if (key === null) return send(rest);
    if (ttl !== undefined) {
      const hit = this.cache.get(key);
      if (hit !== undefined) return hit;
    }
    const reply = await (coalesce ? this._join(key, send, rest, ms, channelId) : send(rest));
    if (ttl !== undefined && this._storable(channelId, reply)) this.cache.put(key, reply, ttl); // only answers: an error was thrown above
    return reply;
  }

  /**
   * Whether an answer is the service's, given while its circuit is closed.
   * Never the breaker's fallback: the state now does not tell (a fallback
   * still running when a trial call closed the circuit answers after), so
   * the breaker says which answers its fallback gave.
   * @param {string} channelId
   * @param {object} reply
   * @returns {boolean}
   * @private
   */
  _storable(channelId, reply) {
    const breakers = this.host._breakers;
    const breaker = breakers.for(channelId);
    return breaker === null || (!breakers.fromFallback(reply) && breaker.state === CircuitState.CLOSED);
  }

  /**
   * Joins the call in flight for `key`, or starts it.
   * @private
   */
  _join(key, send, rest, ms, channelId) {
    const { signal, ...unsignalled } = rest;
    let shared = this.inflight.get(key);
    if (shared === undefined) {
      // The first caller's call, with its deadline but not its signal: a
      // caller that goes away does not take it from the others.
      shared = send(unsignalled).finally(() => {
        if (this.inflight.get(key) === shared) this.inflight.delete(key); // a later caller starts a new call
      });
      shared.catch(() => {}); // every caller may have gone
      this.inflight.set(key, shared);
      if (signal == null) return shared;
      return wait(shared, Infinity, signal, channelId);
    }
    this.host._metrics.requestsCoalesced++;
    return wait(shared, checkTimeout(ms ?? this.host.options.requestTimeout), signal, channelId, rest[NAMED_TIMEOUT]);
  }
}

/**
 * One caller's wait for a shared call: its answer, or this caller's own
 * timeout or abort, whichever comes first.
 * @param {Promise<object>} shared
 * @param {number} ms
 * @param {AbortSignal|undefined} signal
 * @param {string} channelId
 * @param {number} [named] the timeout its error names (a pool's call: its own, `ms` being what is left).
 * @returns {Promise<object>}
 */
function wait(shared, ms, signal, channelId, named = ms) {
  return new Promise((resolve, reject) => {
    let timer = null;
    let stopListening = null;
    const onAbort = () => {
      done();
      reject(new AbortError('the call was aborted', { cause: signal.reason }));
    };
    const done = () => {
      clearLongTimeout(timer);
      if (stopListening !== null) stopListening();
    };
    if (signal != null) {
      if (signal.aborted) return onAbort();
      stopListening = whenAborted(signal, onAbort);
    }
    if (Number.isFinite(ms)) {
      timer = setLongTimeout(() => {
        done();
        reject(new RequestTimeoutError(`no response on '${channelId}' within ${timeoutText(named)} ms (a coalesced call)`));
      }, ms);
    }
    shared.then(
      (reply) => {
        done();
        resolve(reply);
      },
      (err) => {
        done();
        reject(err);
      }
    );
    return undefined;
  });
}

module.exports = { SharedCalls, requestKey };
