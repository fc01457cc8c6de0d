'use strict';

/**
 * Inbound handler admission: the messages that run application handlers
 * (requests to serve, notifications, publishes) are dispatched at once
 * while fewer than `maxConcurrentHandlers` async handlers run, else held back in
 * arrival order until running handlers finish.
 *
 * The socket is never paused for it: responses and pings must keep
 * flowing, or a handler that awaits a request of its own could wait on
 * itself, and the server would take the unanswered pings for a dead
 * client. A held request whose deadline (its `timeout_ms`, counted from
 * receipt) passes, or that a `cancel` names (dropHeld()), is dropped unrun:
 * the server has answered it already, or no longer waits for it (a stream
 * request has no deadline by default: run later, it would wait for credit
 * that never comes and hold its slot for good). Held requests and
 * notifications are dropped with their connection; held publishes are not
 * (restart()): delivered already, they are handled, as the Python client
 * keeps them. A held publish runs the handlers it matched on arrival that
 * are still subscribed at dispatch (a handler subscribed meanwhile does not
 * get it), as Python's; one dispatched at once is matched then, so the
 * common path costs nothing more. A handler still running after a lost
 * connection still counts towards the limit (as in Python): only
 * disconnect() restarts the count and drops all held work (reset()).
 *
 * Since the socket is not paused, what waits is bounded here instead
 * (`maxHeldMessages`): past it a new arrival is not held. A request is
 * answered `limit_exceeded` at once, so its requester gets an error, not a
 * silent timeout; a publish (or notification) is dropped, counted
 * (`heldDropped`) and reported once per overflow episode as a
 * SlowConsumerError on 'error', the episode ending when the held count is
 * back to half the bound (as the iterators report `maxBuffered` overflows).
 * The mirror of Python's ipc_client/admission.py.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`, `_conn`,
 * `_subs` (`onPublish()`, `onServed()`), `_producers` (`serving()`,
 * `forget()`...), `_emitError()`.
 */

const { now } = require('./connection');
const { reply } = require('./replies');
const { ErrorCode, errorToWire, SlowConsumerError } = require('./errors');
const { isKeyed } = require('./keyed_runs');
const { isStreamResult } = require('./producers');
const { promiseOf } = require('./listeners');
const { ServedTrace } = require('./tracing');
const { isBroadcast } = require('./legacy_server');
const { patternMatches } = require('./channels');
const { deliver } = require('./deliveries');

/** Consumed held entries are dropped in bulk once there are this many. */
const HELD_COMPACT_AT = 1024;

/**
 * Runs inbound handlers, at most `maxConcurrentHandlers` async ones at a time.
 */
class Admission {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    this.limit = host.options.maxConcurrentHandlers;
    this.maxHeld = host.options.maxHeldMessages;
    this._overflowing = false; // a dropped publish was reported: till held falls to half the bound
    this.exposeStacks = host.options.exposeStacks;
    /** Async handlers in flight, counted since the last disconnect(). */
    this.running = 0;
    this._held = []; // {conn, msg, expires, handlers} waiting for a handler slot, from _heldHead on
    this._heldHead = 0;
    this._epoch = {}; // what a handler's end is counted against: a new one at every reset
  }

  /**
   * How many inbound messages are held back.
   * @returns {number}
   */
  get heldCount() {
    return this._held.length - this._heldHead;
  }

  /**
   * disconnect(): the count restarts at 0 and all held work is dropped.
   */
  reset() {
    this.running = 0;
    this._held = [];
    this._heldHead = 0;
    this._epoch = {};
    this._overflowing = false;
  }

  /**
   * A connection ends: held requests and notifications are dropped (the
   * server answers its requests responder_lost), held publishes stay for
   * resume(): the server delivered them, so they are handled, in order.
   * Handlers still running go on counting: they still run.
   */
  restart() {
    const kept = [];
    for (let i = this._heldHead; i < this._held.length; i++) {
      const held = this._held[i];
      if (isBroadcast(held.conn, held.msg)) kept.push(held);
    }
    this._held = kept;
    this._heldHead = 0;
    this._overflowEnds();
  }

  /** Dispatches held work while there is room (after restart(), once the client's state is settled). */
  resume() {
    this._drainHeld();
  }

  /**
   * Dispatches one inbound message that runs handlers, or holds it back.
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   */
  admit(conn, msg) {
    if (this._held.length === this._heldHead && this.running < this.limit) {
      this._dispatch(conn, msg);
      return;
    }
    if (this.heldCount >= this.maxHeld) {
      this._refuse(conn, msg);
      return;
    }
    const timed = msg.message_type === 'request' && typeof msg.timeout_ms === 'number' && msg.timeout_ms > 0;
    const handlers = isBroadcast(conn, msg) ? matched(this.host._subs.subscriptions, msg.channel_id) : null; // matched on arrival
    this._held.push({ conn, msg, expires: timed ? now() + msg.timeout_ms : Infinity, handlers });
  }

  /**
   * A message over `maxHeldMessages`, neither held nor run: a request is
   * answered `limit_exceeded`; a publish or notification is dropped, and
   * reported if it starts an overflow episode.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _refuse(conn, msg) {
    const host = this.host;
    host._metrics.heldDropped++;
    if (msg.message_type === 'request') {
      if (msg.window !== undefined) host._producers.forget(msg); // never run: its stream's books go
      const message = `the responder already holds ${this.maxHeld} messages waiting for a handler slot`;
      if (conn === host._conn) reply(conn, host.appId, msg, null, { code: ErrorCode.LIMIT_EXCEEDED, message, details: { max_held_messages: this.maxHeld } });
      return;
    }
    if (this._overflowing) return;
    this._overflowing = true;
    const details = { channel: msg.channel_id, max_held_messages: this.maxHeld, dropped: host._metrics.heldDropped };
    host._emitError(new SlowConsumerError(`${this.maxHeld} inbound messages wait for a handler slot: dropping new ones, the first on '${msg.channel_id}'`, { details }));
  }

  /**
   * A `cancel` named a request not running: if it is held for a slot, it
   * never runs (the mirror of Python's Admission.drop_held). A keyed one
   * too: the server passes no requester's cancel of a keyed request on, and
   * sends its own only once it has ended the key's run (docs/protocol.md
   * §6.6 items 3 and 7).
   * @param {Connection} conn the connection the cancel came on.
   * @param {string} id the request's id (the cancel's `reply_to`).
   * @returns {boolean} whether a held request was dropped.
   */
  dropHeld(conn, id) {
    const held = this._held;
    for (let i = this._heldHead; i < held.length; i++) {
      const { conn: from, msg } = held[i];
      if (from !== conn || msg.message_id !== id || msg.message_type !== 'request') continue;
      held.splice(i, 1); // rare (a cancel of a request not running): the queue's O(1) take is not worth a tombstone
      if (this._heldHead === held.length) {
        this._held = [];
        this._heldHead = 0;
      }
      if (msg.window !== undefined) this.host._producers.forget(msg); // dropped unrun: its stream's books go
      return true;
    }
    return false;
  }

  /**
   * Calls a handler, sync or async. With `answer`, its result (or error) is
   * the response on `from`; without, errors go to the 'error' event. Async
   * handlers count towards the limit of the connection the message came on.
   * @param {Function} handler
   * @param {object} msg
   * @param {Connection} from the connection the message came on.
   * @param {boolean} answer
   */
  invoke(handler, msg, from, answer) {
    if (!answer && isBroadcast(from, msg)) return deliver(this, handler, msg); // nothing to answer: no closures (lib/deliveries.js)
    const conn = answer ? from : null;
    const { host, exposeStacks } = this;
    const producers = host._producers;
    let run = null; // a keyed request's run (lib/keyed_runs.js); none when the server scopes keys per user (§6.6 item 10)
    if (conn !== null && isKeyed(msg) && conn.info?.keysPerUser !== true) {
      run = host._keyedRuns.start(conn, msg);
      if (run === null) return; // answered by its key's run, or its kept answer
    }
    // A served request's handler(msg, ctx): ctx.signal aborts when the requester gives up (§15.4).
    const ctx = isBroadcast(from, msg) ? undefined : producers.serving(msg, run !== null);
    const respond = (payload, error) => {
      if (!producers.answers(msg, ctx)) {
        if (run !== null) host._keyedRuns.abandon(run); // a cancel came first: no answer
      } else if (run === null) {
        reply(conn, host.appId, msg, payload, error, exposeStacks);
      } else {
        host._keyedRuns.finish(run, payload, error);
      }
    };
    // its own calls, and the stream it returns, continue the message's trace; its span ends with them (docs/tracing.md)
    const served = new ServedTrace(msg);
    const stream = (value, tracked) => {
      if (run !== null) host._keyedRuns.abandon(run); // not a stream request: answered bad_request, nothing to share
      const produced = served.run((it) => producers.produce(conn, msg, it, ctx, () => this._untrack(tracked)), value);
      produced.then((failure) => served.end(failure), (err) => served.end(err));
    };
    const failed = (err) => {
      served.end(ctx?._stopped ?? err); // a handler its requester's cancel stopped: cancelled
      if (conn !== null) respond(null, errorToWire(err, { exposeStacks }));
      else host._emitError(err);
    };
    let result;
    let streams;
    let pending = null;
    try {
      result = served.run(ctx === undefined ? handler : (m) => handler(m, ctx), msg);
      // reading the result can throw (a revoked Proxy, a throwing `then` getter): the handler's throw too
      streams = conn !== null && isStreamResult(result);
      if (!streams) pending = promiseOf(result);
    } catch (err) {
      failed(err);
      return;
    }
    if (streams) {
      stream(result, this._track()); // a stream holds its handler slot until it ends (§15.6)
      return;
    }
    if (pending === null) {
      served.end();
      if (conn !== null) respond(result);
      return;
    }
    const tracked = this._track();
    pending.then(
      (value) => {
        let streamsValue;
        try {
          streamsValue = conn !== null && isStreamResult(value);
        } catch (err) {
          this._untrack(tracked);
          failed(err);
          return;
        }
        if (streamsValue) {
          // an async handler that resolves to a generator streams it, as Python's does (§15.6); the slot is held till it ends
          stream(value, tracked);
          return;
        }
        this._untrack(tracked);
        served.end(ctx?._stopped);
        if (conn !== null) respond(value);
      },
      (err) => {
        this._untrack(tracked);
        failed(err);
      }
    );
  }

  /**
   * Runs the handlers of one admitted message.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _dispatch(conn, msg) {
    if (isBroadcast(conn, msg)) this.host._subs.onPublish(conn, msg); // a 1.1.x server's notifications too (lib/legacy_server.js)
    else this.host._subs.onServed(conn, msg, msg.message_type === 'request');
  }

  /**
   * Takes the oldest held-back message (a queue over an array: O(1), the
   * consumed head is dropped in bulk).
   * @returns {{conn: Connection, msg: object, expires: number}}
   * @private
   */
  _takeHeld() {
    const held = this._held[this._heldHead];
    this._held[this._heldHead++] = undefined;
    if (this._heldHead === this._held.length) {
      this._held = [];
      this._heldHead = 0;
    } else if (this._heldHead >= HELD_COMPACT_AT && this._heldHead * 2 >= this._held.length) {
      this._held = this._held.slice(this._heldHead);
      this._heldHead = 0;
    }
    return held;
  }

  /**
   * Dispatches held-back messages while there is room, skipping requests
   * whose deadline passed while they waited; a publish is dispatched
   * whatever connection it came on (restart()).
   * @private
   */
  _drainHeld() {
    const epoch = this._epoch;
    while (this.heldCount > 0 && this.running < this.limit && this._epoch === epoch) {
      const held = this._takeHeld();
      const conn = this.host._conn;
      if (held.handlers !== null) {
        this._deliverHeld(held);
        continue;
      }
      if (held.conn !== conn || held.expires <= now()) {
        if (held.msg.window !== undefined) this.host._producers.forget(held.msg); // dropped unrun: its stream's books go
        continue; // never answered on another connection
      }
      this._dispatch(conn, held.msg);
    }
    this._overflowEnds();
  }

  /** Back to half the bound: the next drop starts a new episode (reported). @private */
  _overflowEnds() {
    if (this._overflowing && this.heldCount * 2 <= this.maxHeld) this._overflowing = false;
  }

  /**
   * A held publish: the handlers it matched on arrival that are still
   * subscribed under a pattern matching its channel (none starts after
   * unsubscribe() resolved or the server withdrew it, none subscribed since).
   * @param {{conn: Connection, msg: object, handlers: Function[]}} held
   * @private
   */
  _deliverHeld({ conn, msg, handlers }) {
    const subscriptions = this.host._subs.subscriptions;
    for (const handler of handlers) {
      if (subscribed(subscriptions, handler, msg.channel_id)) this.invoke(handler, msg, conn, false);
    }
    this.host._emitSafely('message', msg);
  }

  /**
   * One more async handler running, counted until the count restarts
   * (disconnect(): reset()).
   * @returns {object} what its end is counted against.
   * @private
   */
  _track() {
    this.running++;
    return this._epoch;
  }

  /**
   * One async handler done: lets held-back messages in. Handlers started
   * before the count restarted no longer count.
   * @param {object} epoch what _track() returned.
   * @private
   */
  _untrack(epoch) {
    if (epoch !== this._epoch) return;
    this.running--;
    this._drainHeld();
  }
}

/**
 * The handlers subscribed under a pattern matching `channel`, each once, in subscription order.
 * @param {Map<string, Set<Function>>} subscriptions
 * @param {string} channel
 * @returns {Function[]}
 */
function matched(subscriptions, channel) {
  const handlers = [];
  for (const [pattern, set] of subscriptions) {
    if (!patternMatches(pattern, channel)) continue;
    for (const handler of set) if (!handlers.includes(handler)) handlers.push(handler);
  }
  return handlers;
}

/**
 * Whether `handler` is still subscribed under a pattern matching `channel`.
 * @param {Map<string, Set<Function>>} subscriptions
 * @param {Function} handler
 * @param {string} channel
 * @returns {boolean}
 */
function subscribed(subscriptions, handler, channel) {
  for (const [pattern, set] of subscriptions) {
    if (set.has(handler) && patternMatches(pattern, channel)) return true;
  }
  return false;
}

module.exports = { Admission };
