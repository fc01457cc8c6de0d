'use strict';

/**
 * The client's methods built on its public core, kept out of the facade:
 * subscriptions and served requests as async iterators (lib/iterators.js,
 * lib/served_requests.js) and the response cache's control
 * (lib/coalescing.js, lib/response_cache.js). The base class of IPCClient;
 * ipc_client/client_extensions.py is the same in Python.
 */

const { EventEmitter } = require('node:events');
const { SubscriptionIterator } = require('./iterators');
const { readOnce } = require('./json_profile');
const { RequestIterator } = require('./served_requests');

/**
 * Iterators and cache control (README "Iterating over messages and
 * requests", docs/resilience.md §11).
 */
class ClientExtensions extends EventEmitter {
  /**
   * The publishes matching a channel or pattern as an async iterable:
   * `for await (const msg of client.subscription('orders.*'))`. Subscribes
   * on the first next() (or ready(), which resolves on the server's ack);
   * `break`, a throw in the loop, return() or unsubscribe() unsubscribes.
   * Restored after a reconnection. At most `maxBuffered` (1000) messages
   * wait for the loop; past that `overflow: 'drop_oldest'` drops the oldest
   * (counted, reported on 'error') and 'error' ends the loop with
   * SlowConsumerError after what was buffered.
   * @param {string} channelId
   * @param {{maxBuffered?: number, overflow?: 'drop_oldest'|'error', timeout?: number}} [options]
   * @returns {import('./iterators').SubscriptionIterator}
   */
  subscription(channelId, options) {
    return new SubscriptionIterator(this, channelId, options);
  }

  /**
   * The requests on a channel or pattern as an async iterable of served
   * requests, each answered once: `for await (const req of
   * client.requests('jobs.*')) req.respond(result)` (or `req.fail(err)`).
   * Serves the channel on the first next() until the loop is left
   * (unserve). One dropped by the overflow policy is answered
   * limit_exceeded; one still waiting or unanswered when the loop ends,
   * responder_lost.
   * @param {string} channelId
   * @param {{maxBuffered?: number, overflow?: 'drop_oldest'|'error', timeout?: number}} [options]
   * @returns {import('./served_requests').RequestIterator}
   */
  requests(channelId, options) {
    return new RequestIterator(this, channelId, options);
  }

  /**
   * The items a streaming handler yields for this request, as an async
   * iterable (docs/protocol.md §15): `for await (const item of
   * client.stream('ticks', payload, { timeout, idleTimeout, window, signal }))`.
   * `timeout`: the whole stream's deadline (ms, default none); `idleTimeout`:
   * the longest wait between items (default `requestTimeout`); `window`: items
   * in flight or buffered at most (64). `break` or an aborted `signal`
   * cancels it at its producer. Throws, after the items that came first,
   * RequestTimeoutError, the producer's error, ResponderLostError...
   * @param {string} channelId
   * @param {unknown} [payload]
   * @param {{timeout?: number|null, idleTimeout?: number, window?: number, signal?: AbortSignal, headers?: Record<string, string>}} [options]
   * @returns {import('./streams').Stream}
   */
  stream(channelId, payload, options) {
    return this._streams.stream(channelId, readOnce(payload), options); // an iterator, read once (§16.3)
  }

  /** Forgets every cached answer (`cacheTtl`). */
  clearCache() {
    this._shared.cache.clear();
  }
}

module.exports = { ClientExtensions };
