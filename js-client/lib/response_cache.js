'use strict';

/**
 * The TTL response cache (docs/resilience.md §11): the legacy package's
 * `cachedRequest` (seed 001, "Performance Optimization") inside the client.
 *
 * Opt-in per call (`cacheTtl`, ms); keyed by channel and canonical payload
 * (lib/coalescing.js `requestKey()`); only successful answers are stored.
 * Bounded by the client option `cacheMaxEntries`: the least recently used
 * entry leaves first, and an expired one is dropped when it is looked up.
 * Pure bookkeeping on an injected clock; hits, misses and the size are kept
 * in the client's metrics. Mirrors ipc_client/response_cache.py.
 */

const { now: monotonic } = require('./connection');
const { toNumber } = require('./legacy_options');

/**
 * Checks a per-call `cacheTtl`: a positive, finite number of milliseconds.
 * @param {unknown} ttl
 * @returns {number}
 */
function checkCacheTtl(ttl) {
  ttl = toNumber(ttl); // numeric text too, as timeout
  if (typeof ttl !== 'number' || !(ttl > 0) || !Number.isFinite(ttl)) {
    throw new TypeError(`cacheTtl must be a positive number of milliseconds, got ${String(ttl)}`);
  }
  return ttl;
}

/**
 * Successful answers by request key, each until its own expiry.
 */
class ResponseCache {
  /**
   * @param {number} maxEntries 0 stores nothing.
   * @param {import('./metrics').Metrics} metrics counts hits and misses, holds the size.
   * @param {() => number} [now] monotonic clock in ms.
   */
  constructor(maxEntries, metrics, now = monotonic) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) {
      throw new TypeError(`cacheMaxEntries must be an integer >= 0 (0 turns caching off), got ${String(maxEntries)}`);
    }
    this.maxEntries = maxEntries;
    this._metrics = metrics;
    this._now = now;
    /** @type {Map<string, {expires: number, reply: object}>} least recently used first */
    this._entries = new Map();
  }

  /** @returns {number} */
  get size() {
    return this._entries.size;
  }

  /**
   * The stored answer while it is fresh (a hit), else undefined (a miss).
   * @param {string} key
   * @returns {object|undefined}
   */
  get(key) {
    const entry = this._entries.get(key);
    if (entry !== undefined) {
      this._entries.delete(key);
      if (entry.expires > this._now()) {
        this._entries.set(key, entry); // now the most recently used
        this._metrics.cacheHits++;
        return entry.reply;
      }
      this._metrics.cacheSize = this._entries.size;
    }
    this._metrics.cacheMisses++;
    return undefined;
  }

  /**
   * Stores a successful answer for `ttl` ms, evicting the least recently used past the bound.
   * @param {string} key
   * @param {object} reply the response message.
   * @param {number} ttl
   */
  put(key, reply, ttl) {
    if (this.maxEntries === 0) return;
    const entries = this._entries;
    entries.delete(key);
    entries.set(key, { expires: this._now() + ttl, reply });
    while (entries.size > this.maxEntries) entries.delete(entries.keys().next().value);
    this._metrics.cacheSize = entries.size;
  }

  /** Forgets every entry. */
  clear() {
    this._entries.clear();
    this._metrics.cacheSize = 0;
  }
}

module.exports = { ResponseCache, checkCacheTtl };
