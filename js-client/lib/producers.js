'use strict';

/**
 * The responder's side of streams and cancellation (docs/protocol.md §15),
 * the mirror of ipc_client/producers.py: served requests that a `cancel`
 * can stop, and handlers that stream.
 *
 * A served request's handler is called `handler(msg, ctx)`; `ctx.signal` is
 * an AbortSignal aborted when the requester gives up (its `reason` an
 * IpcError: code `cancelled`, `timeout` or `connection_lost`). The
 * AbortController is made only when a handler reads `ctx.signal`. An answer
 * the handler gives anyway is not sent (the server no longer waits for it)
 * and is counted (`lateAnswers`, in getMetrics()).
 *
 * A handler that is an `async function*` or a `function*`, or returns any
 * async iterable or a generator object (or a promise of one: an `async`
 * handler that returns a generator, as Python awaits and streams it),
 * streams its items (as in Python, a
 * sync generator streams; an array or another sync iterable is a value;
 * a `function*` is pulled as `for await` would: a promise it yields is
 * awaited): one is pulled only while credit remains (the
 * request's `window` plus every `credit` since), so the iterator never runs
 * ahead of its consumer; the end is `stream_end`, a failure an error
 * response. A cancel, the connection's loss or an item that cannot be sent
 * (`handler_error`, as in Python) closes the iterator (`return()`); a
 * cancel or the loss also aborts `ctx.signal`. JS cannot interrupt an
 * iterator busy in next(): its handler slot is freed at the abort (counted,
 * `detached`) and return() is called once that next() settles, so stream
 * handlers that await should honour `ctx.signal` to stop early.
 *
 * A stream request's credit is counted from its arrival (expect()), before
 * its handler runs or while it waits for a handler slot, so a `credit` the
 * server relays right behind the request is never lost. The producer waits
 * while the socket is over its high water mark, and gives the event loop a
 * turn (setImmediate) after SLICE_ITEMS items in a row or SLICE_MS ms: an
 * iterator that never awaits anything but its consumer otherwise runs on
 * promise jobs alone, and the loop's timers, reads (pings, credits,
 * cancels) and other handlers would wait for it.
 *
 * A cancel of a request still held for a handler slot drops it there
 * (Admission.dropHeld()): it never runs.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`
 * (`exposeStacks`), `_admission` (`dropHeld()`), `_emitError()`.
 */

const { debuglog, types } = require('node:util');
const { ErrorCode, IpcError, ConnectionLostError, RequestTimeoutError, AbortError } = require('./errors');
const { reply, replyError } = require('./replies');
const { thrownMessage } = require('./thrown');
const { Credit, STREAMS, SLICE_ITEMS, SLICE_MS, streamItem, streamEnd, cancelReason } = require('./protocol/streams');

const debug = debuglog('ipc-bridge'); // NODE_DEBUG=ipc-bridge
/** What a producer's wait for its iterator's next() gets when the stream stops first. */
const STOPPED = Symbol('stopped');

/**
 * What a served request's handler gets beside the message: its `signal`.
 */
class ServeContext {
  constructor() {
    this._controller = null;
    this._reason = null;
    this._keyed = false; // a keyed request's run (Producers.serving)
    this._skipped = false; // _skip(): no answer, none counted
    this._stopped = null; // the requester's cancel: how its serve span ends, whatever the handler then does (docs/tracing.md §4)
  }

  /** @returns {AbortSignal} aborted when the requester gives up (§15.4). */
  get signal() {
    if (this._controller === null) {
      this._controller = new AbortController();
      if (this._reason !== null) this._controller.abort(this._reason);
    }
    return this._controller.signal;
  }

  /** @returns {boolean} whether the requester gave up. */
  get cancelled() {
    return this._reason !== null;
  }

  /**
   * Ended unanswered on this side (a served-requests loop found its deadline
   * passed: the server answered it `timeout`): aborted, and its answer is
   * dropped without being counted late.
   * @param {Error} reason
   * @private
   */
  _skip(reason) {
    this._skipped = true;
    this._abort(reason);
  }

  /**
   * @param {Error} reason
   * @private
   */
  _abort(reason) {
    if (this._reason !== null) return;
    this._reason = reason;
    if (this._controller !== null) this._controller.abort(reason);
  }
}

/**
 * The error a cancel's reason stands for, as `ctx.signal.reason`.
 * @param {string} code
 * @returns {Error}
 */
function reasonError(code) {
  if (code === ErrorCode.TIMEOUT) return new RequestTimeoutError('the request timed out: the requester gave up', { remote: true });
  if (code === ErrorCode.CONNECTION_LOST) return new ConnectionLostError('the requester disconnected');
  if (code === ErrorCode.CANCELLED) return new AbortError('the requester cancelled the request');
  return new IpcError(code, `the request was cancelled: ${code}`);
}

/** @returns {AbortError} a stream stopped before its end (a cancel, the connection's loss). */
const stopped = () => new AbortError('the stream was stopped before its end');

/**
 * Served requests by id, and the streams among them.
 */
class Producers {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** @type {Map<string, ServeContext>} request id -> its context, while its handler runs */
    this.running = new Map();
    /** Answers not sent: the requester had given up. */
    this.lateAnswers = 0;
    /** Streams stopped while their iterator was busy in next(): slot freed, return() deferred. */
    this.detached = 0;
    /** @type {Map<string, {conn: Connection, credit: Credit, wake: Function|null, interrupt: Function|null, started: boolean}>} */
    this._producing = new Map();
  }

  /**
   * A served request's handler starts: its context, found by a cancel.
   * @param {object} msg
   * @param {boolean} [keyed] a keyed request's run: the loss of its
   *   connection does not abort it, a resend joins it (lib/keyed_runs.js).
   * @returns {ServeContext}
   */
  serving(msg, keyed = false) {
    const ctx = new ServeContext();
    ctx._keyed = keyed;
    if (msg.message_type === 'request') this.running.set(msg.message_id, ctx);
    return ctx;
  }

  /**
   * The handler answered: whether its answer goes out (false when a cancel
   * came first: dropped and counted).
   * @param {object} msg
   * @param {ServeContext} ctx
   * @returns {boolean}
   */
  answers(msg, ctx) {
    if (this.running.get(msg.message_id) === ctx) this.running.delete(msg.message_id);
    if (msg.window !== undefined) this.forget(msg);
    if (!ctx.cancelled) return true;
    if (ctx._skipped) return false;
    this.lateAnswers++;
    return false;
  }

  /**
   * A served request arrived: if it opens a stream, its credit counts from
   * now on, whatever its handler returns and however long it waits for a
   * handler slot (§15.3).
   * @param {Connection} conn
   * @param {object} msg
   */
  expect(conn, msg) {
    if (msg.window !== undefined && msg.message_type === 'request' && conn.features.has(STREAMS)) {
      this._producing.set(msg.message_id, { conn, credit: new Credit(msg.window), wake: null, interrupt: null, started: false });
    }
  }

  /**
   * A served request's handler answered without streaming, or it was
   * dropped unrun: its stream's books go (one that streamed removes its own).
   * @param {object} msg
   */
  forget(msg) {
    const producing = this._producing.get(msg.message_id);
    if (producing !== undefined && !producing.started) this._producing.delete(msg.message_id);
  }

  /**
   * A `credit` or `cancel` from the server for a request we serve.
   * @param {Connection} conn
   * @param {object} msg
   */
  onFrame(conn, msg) {
    const id = msg.reply_to;
    if (msg.message_type === 'credit') {
      const producing = this._producing.get(id);
      if (producing !== undefined && producing.credit.grant(msg.window) && producing.wake !== null) producing.wake();
      return;
    }
    const ctx = this.running.get(id);
    if (ctx === undefined) {
      this.host._admission.dropHeld(conn, id); // held for a handler slot: it never runs; else it has ended: nothing to stop (§15.4)
      return;
    }
    this.running.delete(id);
    const code = cancelReason(msg);
    ctx._stopped = new AbortError(`the requester gave up (${code})`); // error.type cancelled, as Python's cancelled task
    this._stop(id, ctx, reasonError(code));
  }

  /**
   * Nobody will grant credit again, nor read an answer: every handler's
   * signal aborts and every stream stops; a keyed run's only on
   * disconnect(), as it goes on for its resend after a loss (lib/keyed_runs.js).
   * No cancel of a later connection reaches any of them.
   * @param {boolean} [disconnecting] disconnect() ends the connection.
   */
  connectionLost(disconnecting = true) {
    for (const [id, producing] of this._producing) if (!producing.started) this._producing.delete(id);
    const running = [...this.running];
    this.running.clear();
    for (const [id, ctx] of running) {
      if (disconnecting || !ctx._keyed) this._stop(id, ctx, new ConnectionLostError('the connection to the server was lost'));
    }
  }

  /**
   * @param {string} id
   * @param {ServeContext} ctx
   * @param {Error} reason
   * @private
   */
  _stop(id, ctx, reason) {
    ctx._abort(reason);
    const producing = this._producing.get(id);
    if (producing === undefined) return;
    if (producing.interrupt !== null) producing.interrupt(STOPPED);
    if (producing.wake !== null) producing.wake();
  }

  /**
   * Streams the items of what a handler returned (an async iterable or a
   * sync generator: isStreamResult()), answering `msg` (§15.3); `done()`
   * when it is over (the admission slot).
   * @param {Connection} conn
   * @param {object} msg
   * @param {AsyncIterable<unknown>|Generator<unknown>} iterable
   * @param {ServeContext} ctx
   * @param {() => void} done
   * @returns {Promise<unknown>} null, its failure, or an AbortError when a cancel or the connection's loss stopped it.
   */
  async produce(conn, msg, iterable, ctx, done) {
    const { appId } = this.host;
    const exposeStacks = this.host.options.exposeStacks;
    const id = msg.message_id;
    let iterator = null;
    let ended = false; // the iterator finished (done, or threw): nothing to close
    let busy = null; // its next(), still pending when the stream stopped
    let producing; // its credit, known since expect()
    try {
      iterator = isAsyncIterable(iterable) ? iterable[Symbol.asyncIterator]() : pulled(iterable);
      if (msg.window === undefined || msg.message_type !== 'request' || !conn.features.has(STREAMS)) {
        if (msg.message_type === 'request' && this.answers(msg, ctx)) {
          reply(conn, appId, msg, null, { code: ErrorCode.BAD_REQUEST, message: `the handler of ${msg.channel_id} streams its answer: call stream()` });
        }
        return null;
      }
      producing = this._producing.get(id);
      if (producing === undefined || producing.conn !== conn) {
        producing = { conn, credit: new Credit(msg.window), wake: null, interrupt: null, started: false }; // not expected: counted from now
        this._producing.set(id, producing);
      }
      producing.started = true;
      let run = 0; // items sent since the loop last had a turn
      let sliceEnds = performance.now() + SLICE_MS;
      for (;;) {
        if (producing.credit.available === 0) {
          while (producing.credit.available === 0 && !ctx.cancelled && !conn.closed) {
            await new Promise((resolve) => (producing.wake = resolve));
            producing.wake = null;
          }
          run = 0; // a grant is read in a turn of the loop
          sliceEnds = performance.now() + SLICE_MS;
        }
        if (ctx.cancelled || conn.closed) return stopped();
        let pending;
        let step;
        try {
          pending = Promise.resolve(iterator.next());
          // not Promise.race(): its reactions on a long-lived promise would pile up item after item
          step = await new Promise((resolve, reject) => {
            producing.interrupt = resolve;
            pending.then(resolve, reject);
          });
        } catch (err) {
          ended = true; // a throwing iterator is finished
          throw err;
        } finally {
          producing.interrupt = null;
        }
        if (step === STOPPED) {
          busy = pending; // a cancel mid-next(): free the slot now, close the iterator later
          return stopped();
        }
        if (step.done) {
          ended = true;
          break;
        }
        if (ctx.cancelled || conn.closed) return stopped();
        let sent;
        try {
          sent = conn.send(streamItem(appId, msg, step.value));
        } catch (err) {
          if (err instanceof ConnectionLostError) return stopped(); // the loss stops the stream
          // the producer's own failure (not the consumer's limit): handler_error, as in Python
          throw new Error(`an item of the stream cannot be sent: ${thrownMessage(err)}`, { cause: err });
        }
        producing.credit.take();
        if (!sent) await conn.drained(); // may settle in the same turn (a write the OS took at once)
        if (++run >= SLICE_ITEMS || performance.now() >= sliceEnds) {
          await new Promise((resolve) => setImmediate(resolve));
          if (ctx.cancelled || conn.closed) return stopped();
          run = 0;
          sliceEnds = performance.now() + SLICE_MS;
        }
      }
      if (this.answers(msg, ctx) && !conn.closed) conn.send(streamEnd(appId, msg));
      return null;
    } catch (err) {
      if (!conn.closed && this.answers(msg, ctx)) replyError(conn, appId, msg, err, exposeStacks);
      return err;
    } finally {
      if (producing !== undefined && this._producing.get(id) === producing) this._producing.delete(id);
      if (this.running.get(id) === ctx) this.running.delete(id);
      if (busy !== null) {
        this.detached++;
        debug('stream %s stopped while its handler awaited: slot freed, return() once next() settles', id);
        busy.then((step) => (step !== null && typeof step === 'object' && step.done ? undefined : this._close(iterator)), () => {}); // a throw: finished
      } else if (!ended && iterator !== null) {
        await this._close(iterator);
      }
      done();
    }
  }

  /**
   * Closes a stream's iterator (its `finally` runs).
   * @param {AsyncIterator<unknown>} iterator
   * @returns {Promise<void>}
   * @private
   */
  async _close(iterator) {
    if (typeof iterator.return !== 'function') return;
    try {
      await iterator.return();
    } catch (err) {
      this.host._emitError(err, 'closing a stream handler');
    }
  }
}

/**
 * Whether `result` is an async iterable.
 * @param {unknown} result
 * @returns {boolean}
 */
function isAsyncIterable(result) {
  return result !== null && typeof result === 'object' && typeof result[Symbol.asyncIterator] === 'function';
}

/**
 * Whether a handler's result streams (§15.6): an async iterable (an `async
 * function*`'s generator...) or a generator object (a `function*`'s), as
 * Python streams both kinds of generator. Arrays, Sets and other sync
 * iterables are values.
 * @param {unknown} result
 * @returns {boolean}
 */
function isStreamResult(result) {
  return isAsyncIterable(result) || types.isGeneratorObject(result);
}

/**
 * A sync generator as the async iterator `for await` makes of it: a
 * promise it yields is awaited, and return() reaches the generator (its
 * `finally` runs), so a producer treats it as an `async function*`.
 * @param {Generator<unknown>} generator
 * @returns {AsyncGenerator<unknown>}
 * @private
 */
async function* pulled(generator) {
  return yield* generator;
}

module.exports = { Producers, ServeContext, isAsyncIterable, isStreamResult };
