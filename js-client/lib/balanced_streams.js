'use strict';

/**
 * Streams through a load-balanced client and a service client
 * (docs/protocol.md §15; docs/resilience.md §8, §9), the mirror of
 * ipc_client/balanced_streams.py; the stream itself, and the pool's, are
 * in pooled_streams.js (whose doc says what each promises).
 */

const { EventEmitter } = require('node:events');
const { readOnce } = require('./json_profile');
const { HeldStream, LEFT, leftBy } = require('./pooled_streams');
const { checkStream } = require('./streams');
const { failOver, nextServer } = require('./failover');
const { bounded } = require('./cancellation');
const { AbortError, NotConnectedError } = require('./errors');
const { callTrace } = require('./call_trace');

const now = () => performance.now();

/**
 * Reads the first result of a stream on one healthy server after another
 * (LoadBalancedClient.stream(), ServiceClient.stream()).
 * @param {import('./load_balanced_client').LoadBalancedClient} lb
 * @param {HeldStream} held
 * @param {string} channelId
 * @param {unknown} payload
 * @param {object} options checked by checkStream().
 * @returns {Promise<IteratorResult<unknown>>}
 */
async function routeStream(lb, held, channelId, payload, options) {
  if (lb._closed || !lb._started) {
    lb._unsent++; // it reached no server: failed in the client's own count, as a request
    throw new NotConnectedError(lb._closed ? 'the client is closed' : 'start() was not called');
  }
  const call = callTrace('request', channelId, options.headers); // its attempts in one trace, as a request's (docs/tracing.md §1)
  if (call !== null) {
    const onEnd = held.onEnd;
    held.onEnd = (error) => {
      call.end(error === LEFT ? new AbortError('the reader left the stream') : error);
      if (onEnd !== null) onEnd(error);
    };
  }
  const budget = options.timeout ?? lb._requestTimeout;
  const deadline = now() + budget;
  const tried = new Set();
  let lastError = null;
  for (;;) {
    if (held._finished) throw LEFT; // the reader left (while a service started): no attempt
    const left = deadline - now();
    let server;
    try {
      server = nextServer(lb._balancer, tried, lastError, left, `started the stream on ${JSON.stringify(channelId)}`, budget);
    } catch (err) {
      if (tried.size === 0) lb._unsent++; // none healthy: no server tried
      throw err;
    }
    const pool = lb._pools.get(server);
    const started = now();
    server.begin();
    // in flight for the whole stream; its latency the time to the first item; a reader leaving is no failure
    held._attemptEnd = (error) => server.end(error === null || leftBy(error), (held.answered ?? now()) - started);
    let leased = false;
    try {
      const member = await held._member(pool, Math.min(left, pool.acquireTimeout));
      leased = true;
      const rest = options.timeout === null ? null : Math.max(1, deadline - now());
      const inner = member.client.stream(channelId, payload, { ...options, timeout: rest });
      // the call's trace current for the open only (its request, up to its first item), never the reader's code
      const first = await (call === null ? held._read(inner) : call.run(() => held._read(inner)));
      lb._health.markUp(server); // it answered: in rotation
      return first;
    } catch (err) {
      if (leftBy(err) || held._finished) throw err;
      held._settleAttempt(err);
      if (!leased) pool._countUnsent(); // an attempt that got no connection: failed in that pool, as a request's
      if (lb._closed) throw err; // as the calls in flight: connection_lost, never another server
      failOver(server, err, leased, (s, e) => lb._health.markDown(s, e));
      lastError = err;
    }
  }
}

/**
 * LoadBalancedClient.stream() (a base of the load-balanced client).
 */
class BalancedStreaming extends EventEmitter {
  /**
   * IPCClient.stream() on one healthy server, picked as for a request.
   * Until the first item, the errors a request fails over on try the next
   * healthy server, each at most once, within `timeout` (the whole
   * stream's, ms; default none, and then `requestTimeout` bounds the
   * failovers); after it, an error is thrown to the reader.
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload]
   * @param {{timeout?: number|null, idleTimeout?: number, window?: number, signal?: AbortSignal, headers?: Record<string, string>}} [options]
   * @returns {HeldStream} an async iterator, as IPCClient.stream()'s.
   * @throws {TypeError|RangeError} bad arguments (at the call); the first
   *   next() rejects as sendRequest() does, later ones as IPCClient.stream()'s.
   */
  stream(channelId, payload = null, options = {}) {
    const checked = checkStream(channelId, options);
    const once = readOnce(payload); // an iterator, read once: a failover sends it again (§16.3)
    return new HeldStream(channelId, (held) => routeStream(this, held, channelId, once, checked), checked.signal);
  }
}

/**
 * ServiceClient.stream() (a base of the service client).
 */
class ServiceStreaming {
  /**
   * The items `method` (a channel in the service's app) streams, as
   * LoadBalancedClient.stream() reads them; a service not started yet is
   * started first, within `timeout` (default: within the service's
   * `timeout`). Counted in metrics() as one call once it ended
   * (docs/resilience.md §9).
   * @param {string} service a configured service's name.
   * @param {string} method the channel.
   * @param {unknown} [data]
   * @param {{timeout?: number|null, idleTimeout?: number, window?: number, signal?: AbortSignal, headers?: Record<string, string>}} [options]
   * @returns {HeldStream} an async iterator, as IPCClient.stream()'s.
   * @throws {TypeError} an unknown service, bad arguments (at the call).
   */
  stream(service, method, data = null, options = {}) {
    if (!this._services.has(service)) throw new TypeError(`unknown service ${JSON.stringify(service)}`);
    const checked = checkStream(method, options);
    return new HeldStream(method, (held) => this._streamFrom(held, service, method, data, checked), checked.signal);
  }

  /** @private */
  async _streamFrom(held, service, method, data, options) {
    if (this._closed) throw new NotConnectedError('the service client is shut down');
    const svc = this._service(service); // the service as it is now
    const started = now();
    held.onEnd = (error) => {
      if (!leftBy(error)) svc.record(started, error, held.answered);
      else if (held.answered !== null) svc.record(started, null, held.answered); // a reader leaving: served, once it had an item
    };
    const budget = options.timeout ?? svc.client._requestTimeout;
    if (!svc.started) {
      await bounded(svc.ensureStarted(), started + budget, options.signal, `service ${JSON.stringify(service)} did not start within ${budget} ms`);
    }
    const timeout = options.timeout === null ? null : Math.max(1, started + budget - now());
    return routeStream(svc.client, held, method, data, { ...options, timeout });
  }
}

module.exports = { BalancedStreaming, ServiceStreaming, routeStream };
