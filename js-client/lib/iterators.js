'use strict';

/**
 * Subscriptions as async iterators, and the buffer they share with served
 * requests' (lib/served_requests.js); README "Iterating over messages and
 * requests"; ipc_client/iterators.py is the same in Python.
 *
 * `client.subscription(pattern)` and `client.requests(pattern)` are built on
 * `subscribe()` and `serve()`, so the client restores them after a
 * reconnection like any subscription or registration. What arrives waits in
 * a bounded buffer (`maxBuffered`) until the loop takes it, and a full
 * buffer meets a named policy, never unbounded memory:
 *
 * - 'drop_oldest': the oldest waiting item makes room. Each drop is counted
 *   (`dropped` here, `iteratorDropped` in getMetrics()) and each overflow
 *   episode (first drop since the buffer was last empty) is reported once
 *   as a SlowConsumerError on 'error' (a process warning without listener).
 * - 'error': the iterator stops listening; the loop gets what was buffered,
 *   then next() rejects with SlowConsumerError (`details`: channel,
 *   max_buffered, overflow: snake_case, as on the wire).
 *
 * Served requests are in lib/served_requests.js. The loop ends when the client
 * is closed for good ('close'), after what was buffered; when the server
 * withdraws the registration (`forbidden` with `details.revoked`) it ends
 * too, and next() then rejects with that ForbiddenError. `break` (or a
 * throw) in `for await`, `return()` or `unsubscribe()` undoes the
 * subscription or registration.
 *
 * Host interface (the IPCClient): `subscribe()`, `unsubscribe()`, `serve()`,
 * `unserve()`, `on('close')`, `_conn`, `_metrics`, `_emitError()`.
 */

const { validatePattern } = require('./channels');
const { ConnectionLostError, NotConnectedError, SlowConsumerError } = require('./errors');
const { shownValue } = require('./thrown'); // a string as a string: "5", not 5

const OVERFLOW_POLICIES = Object.freeze(['drop_oldest', 'error']);
const DEFAULT_MAX_BUFFERED = 1000;
/** Consumed buffer slots are dropped in bulk once there are this many. */
const COMPACT_AT = 1024;

/** The iterators alive on each client: one 'close' listener per client ends them all. */
const live = new WeakMap();

/**
 * The buffer, its policy and the loop's end, shared by both iterators.
 */
class BufferedIterator {
  /**
   * @param {object} client the IPCClient.
   * @param {string} channelId a channel or pattern.
   * @param {{maxBuffered?: number, overflow?: 'drop_oldest'|'error', timeout?: number}} [options]
   *   `timeout`: for the server's ack of the subscription or registration.
   */
  constructor(client, channelId, { maxBuffered = DEFAULT_MAX_BUFFERED, overflow = 'drop_oldest', timeout } = {}) {
    validatePattern(channelId);
    if (!Number.isSafeInteger(maxBuffered) || maxBuffered < 1) {
      throw new TypeError(`maxBuffered must be an integer >= 1, got ${shownValue(maxBuffered)}`);
    }
    if (!OVERFLOW_POLICIES.includes(overflow)) {
      throw new TypeError(`overflow must be one of ${OVERFLOW_POLICIES.join(', ')}, got ${shownValue(overflow)}`);
    }
    this._client = client;
    this.channel = channelId;
    this.maxBuffered = maxBuffered;
    this.overflow = overflow;
    this.dropped = 0;
    this._ackOptions = timeout === undefined ? undefined : { timeout };
    this._items = []; // a queue over an array, from _head on
    this._head = 0;
    this._takers = []; // next() calls waiting for an item
    this._failure = null;
    this._ended = false; // nothing more is buffered; the loop ends once it is empty
    this._closed = false; // return() was called
    this._starting = null;
    this._ready = false;
    this._registered = false;
    this._overflowing = false;
    /** Offers what arrives (the handler given to subscribe() or serve()). */
    this._offer = (item) => this._push(item);
  }

  /** @returns {number} items waiting for the loop. */
  get buffered() {
    return this._items.length - this._head;
  }

  /** @returns {boolean} whether return() was called. */
  get closed() {
    return this._closed;
  }

  /**
   * Registers with the server (once); the first next() does it too.
   * @returns {Promise<this>} resolves once the server acknowledged.
   */
  ready() {
    this._starting ??= this._start();
    return this._starting;
  }

  /** @private */
  async _start() {
    if (this._closed) return this; // return() came first: nothing to register
    try {
      await this._register();
    } catch (err) {
      this._ended = true;
      throw err;
    }
    this._ready = true;
    if (this._closed) {
      await this._unregister(); // return() came during the registration
      return this;
    }
    let its = live.get(this._client);
    if (its === undefined) {
      live.set(this._client, (its = new Set()));
      this._client.on('close', () => {
        for (const it of [...its]) it._clientClosed();
      });
      // The server withdrew a registration (forbidden, details.revoked): its iterators end with the error.
      this._client._subs?.onWithdrawn(({ handlers, error }) => {
        for (const it of [...its]) if (handlers.includes(it._callback)) it._revoked(error);
      });
    }
    its.add(this);
    return this;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /**
   * The next item; `done` once the loop has ended.
   * @returns {Promise<IteratorResult<any>>}
   */
  async next() {
    if (!this._ready) {
      if (this._closed) return { value: undefined, done: true };
      await this.ready();
    }
    for (;;) {
      while (this._head < this._items.length) {
        const item = this._take();
        if (this._accept(item)) return { value: item, done: false };
      }
      if (this._failure !== null) {
        const failure = this._failure;
        this._failure = null;
        throw failure;
      }
      if (this._ended) return { value: undefined, done: true };
      await new Promise((resolve) => this._takers.push(resolve));
    }
  }

  /**
   * Ends the loop and undoes the registration (`for await` calls it on
   * `break` or a throw); what is still buffered is discarded.
   * @returns {Promise<IteratorResult<any>>}
   */
  async return() {
    if (!this._closed) {
      this._closed = this._ended = true;
      this._failure = null;
      const leftovers = this._items.slice(this._head);
      this._items = [];
      this._head = 0;
      this._finish(leftovers);
      this._wake();
      live.get(this._client)?.delete(this);
      if (this._starting !== null) {
        // Withdrawn before awaiting the registration: one still waiting for
        // the connection ends now and is never sent (lib/subscriptions.js).
        const undo = this._unregister();
        try {
          await this._starting;
        } catch {
          await undo.catch(() => {});
          return { value: undefined, done: true }; // never registered
        }
        await undo;
      }
    }
    return { value: undefined, done: true };
  }

  // ------------------------------------------------------ the client's side

  /**
   * An item arrives: buffered, or the policy decides (runs for every message).
   * @param {any} item
   * @private
   */
  _push(item) {
    if (this._ended) {
      this._refuse(item, false);
      return;
    }
    if (this._items.length - this._head >= this.maxBuffered) {
      if (this.overflow === 'error') {
        this._refuse(item, true);
        const details = { channel: this.channel, max_buffered: this.maxBuffered, overflow: this.overflow };
        this._end(new SlowConsumerError(`more than ${this.maxBuffered} items waited for the loop on ${this.channel}`, { details }));
        this._unregister().catch((err) => this._client._emitError(err));
        return;
      }
      this._drop(this._take());
    }
    this._items.push(item);
    if (this._takers.length !== 0) this._wake();
  }

  /**
   * Takes the oldest buffered item (O(1): the consumed head is dropped in bulk).
   * @private
   */
  _take() {
    const item = this._items[this._head];
    this._items[this._head++] = undefined;
    if (this._head === this._items.length) {
      this._items = [];
      this._head = 0;
      this._overflowing = false; // caught up: the next drop is a new episode
    } else if (this._head >= COMPACT_AT && this._head * 2 >= this._items.length) {
      this._items = this._items.slice(this._head);
      this._head = 0;
    }
    return item;
  }

  /**
   * drop_oldest: counts it, and reports the first drop of an overflow episode.
   * @private
   */
  _drop(item) {
    this.dropped++;
    this._client._metrics.iteratorDropped++;
    this._refuse(item, true);
    if (this._overflowing) return;
    this._overflowing = true;
    const details = { channel: this.channel, max_buffered: this.maxBuffered, overflow: this.overflow, dropped: this.dropped };
    this._client._emitError(
      new SlowConsumerError(`the loop on ${this.channel} fell ${this.maxBuffered} items behind: dropping the oldest`, { details })
    );
  }

  /** @private */
  _end(failure) {
    this._ended = true;
    if (failure !== null && this._failure === null) this._failure = failure;
    live.get(this._client)?.delete(this);
    this._wake();
  }

  /** @private */
  _wake() {
    const takers = this._takers;
    this._takers = [];
    for (const resolve of takers) resolve();
  }

  /**
   * The client closed for good: the loop ends once the buffer is empty, and
   * the registration is dropped so a later connect() does not restore it.
   * @private
   */
  _clientClosed() {
    this._end(null);
    this._unregister().catch((err) => this._client._emitError(err));
  }

  /**
   * The function given to subscribe() or serve().
   * @private
   */
  get _callback() {
    return this._offer;
  }

  /**
   * The server withdrew the registration (the user's rights shrank): the
   * loop gets what was buffered, then next() rejects with `error`.
   * @param {Error} error the ForbiddenError.
   * @private
   */
  _revoked(error) {
    this._registered = false; // the client dropped it already: nothing to undo
    this._end(error);
  }

  /** @private */
  async _unregister() {
    if (!this._registered) return;
    this._registered = false;
    try {
      await this._withdraw();
    } catch (err) {
      if (!(err instanceof ConnectionLostError || err instanceof NotConnectedError)) throw err; // else the server forgot it with the connection
    }
  }

  /**
   * Whether the loop gets `item` (a request may no longer be answerable).
   * @private
   */
  _accept() {
    return true;
  }

  /**
   * `item` does not reach the loop: dropped by the policy, or arrived after the end.
   * @private
   */
  _refuse() {}

  /**
   * The loop ended with `leftovers` still buffered.
   * @private
   */
  _finish() {}
}

/**
 * `for await (const msg of client.subscription(pattern))`: the publishes matching `pattern`.
 */
class SubscriptionIterator extends BufferedIterator {
  /** @private */
  async _register() {
    this._registered = true;
    try {
      await this._client.subscribe(this.channel, this._offer, this._ackOptions);
    } catch (err) {
      this._registered = false; // subscribe() left nothing behind
      throw err;
    }
  }

  /** @private */
  _withdraw() {
    return this._client.unsubscribe(this.channel, this._offer);
  }

  /**
   * The same as return().
   * @returns {Promise<void>}
   */
  async unsubscribe() {
    await this.return();
  }
}

module.exports = { BufferedIterator, SubscriptionIterator, OVERFLOW_POLICIES, DEFAULT_MAX_BUFFERED };
