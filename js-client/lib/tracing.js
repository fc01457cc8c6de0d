'use strict';

/**
 * W3C trace context across the bridge (docs/tracing.md, docs/protocol.md §2).
 *
 * Every request, notification and publish this client sends carries a
 * `traceparent` header (and the `tracestate` of its trace, if any): it
 * continues the current trace, or starts one. The current trace is, in
 * order: the application's active OpenTelemetry span (when
 * `@opentelemetry/api` is found, lib/otel.js), the request or delivery a
 * handler is serving (an AsyncLocalStorage entered around the handler: its
 * own calls continue that trace), or a new trace (random 16-byte trace id).
 * Every message gets a span id of its own, so each hop is a new span whose
 * parent is the sender's. A `traceparent` the caller put in `headers` is
 * sent as it is.
 *
 * Without a tracing backend the ids still join the logs of every process a
 * trace crossed: currentTraceId() in handlers, and the debug log of every
 * message sent and served (`NODE_DEBUG=ipc-bridge`).
 */

const { AsyncLocalStorage } = require('node:async_hooks');
const { debuglog } = require('node:util');
const otel = require('./otel');
const { printable } = require('./printable');
const { promiseOf } = require('./listeners');
const { newSpanId, newTraceId, ZERO_TRACE, ZERO_SPAN } = require('./trace_ids');
const { passedFlags, passedTracestate } = require('./trace_state');

const debug = debuglog('ipc-bridge'); // NODE_DEBUG=ipc-bridge
const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
/**
 * Where the running code is in a trace: its `traceId`, its own `spanId`
 * and the `parentId` it continues (null for a root), with the trace's
 * `flags` and `tracestate`, as they travel (hex strings).
 */
class TraceContext {
  /**
   * @param {string} traceId
   * @param {string} spanId
   * @param {string|null} [parentId]
   * @param {string} [flags]
   * @param {string|null} [tracestate]
   */
  constructor(traceId, spanId, parentId = null, flags = '01', tracestate = null) {
    this.traceId = traceId;
    this.spanId = spanId;
    this.parentId = parentId;
    this.flags = flags;
    this.tracestate = tracestate;
  }

  /** This context's own `traceparent` value. */
  get traceparent() {
    return `00-${this.traceId}-${this.spanId}-${this.flags}`;
  }
}

const storage = new AsyncLocalStorage();

/**
 * The trace context of the request or delivery being handled here, if any.
 * @returns {TraceContext|null}
 */
function currentTraceContext() {
  return activeTrace() ?? null;
}

/**
 * The trace of a message being handled, worked out when something first
 * asks for it (a call the handler makes, currentTraceId()): a delivery
 * whose handler sends nothing costs no parse of its `traceparent` and no
 * span id (~0.4 µs of the ~2 µs a delivery costs a Node subscriber).
 */
class PendingTrace {
  /** @param {object|null|undefined} headers the message's. */
  constructor(headers) {
    this.headers = headers;
    /** @type {TraceContext|null} */
    this.context = null;
  }

  /** @returns {TraceContext} */
  resolve() {
    return (this.context ??= servedContext(senderOf(this.headers), this.headers));
  }
}

/**
 * The trace context handled here, if any.
 * @returns {TraceContext|undefined}
 * @private
 */
function activeTrace() {
  const store = storage.getStore();
  return store === undefined ? undefined : store.resolve();
}

/**
 * The trace id the next message sent from here continues: the active
 * OpenTelemetry span's, else the handled request's or delivery's; null
 * outside any trace (a message sent then starts a new one).
 * @returns {string|null}
 */
function currentTraceId() {
  const span = otel.currentSpan();
  if (span !== null) return span.spanContext().traceId;
  const ctx = activeTrace();
  return ctx !== undefined ? ctx.traceId : null;
}

/**
 * The ids of a valid `traceparent` (W3C trace context §3.2: version `ff`,
 * zero ids, upper case and a version-00 value with more fields are invalid;
 * a later version may add fields), else null.
 * @param {unknown} value
 * @returns {{traceId: string, parentId: string, flags: string}|null}
 */
function parseTraceparent(value) {
  if (typeof value !== 'string') return null;
  const m = TRACEPARENT_RE.exec(value);
  if (m === null) return null;
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined) || traceId === ZERO_TRACE || parentId === ZERO_SPAN) return null;
  return { traceId, parentId, flags };
}

/**
 * Sets the message's headers: the caller's (copied, never changed) plus the trace context.
 * @param {object} msg
 * @param {string} traceparent
 * @param {string|null} tracestate
 */
function stamp(msg, traceparent, tracestate) {
  const headers = msg.headers == null ? {} : { ...msg.headers };
  headers.traceparent = traceparent;
  if (tracestate !== null && headers.tracestate === undefined) headers.tracestate = tracestate;
  msg.headers = headers;
}

/**
 * Puts the trace context in an outgoing message's headers (see the
 * module's doc for which trace it continues).
 * @param {object} msg a request, notification or publish.
 * @param {'request'|'notify'|'publish'} operation
 * @param {{options?: {host?: string, port?: number}}} [client] names the server in the span.
 * @returns {object|null} its OpenTelemetry span, to end with endSpan(); null without one.
 */
function traceOutgoing(msg, operation, client) {
  if (msg.headers != null && Object.prototype.hasOwnProperty.call(msg.headers, 'traceparent')) return null; // the caller's own
  const ctx = activeTrace();
  const appSpan = otel.currentSpan();
  const options = client && client.options;
  const extra = options ? { 'server.address': options.host, 'server.port': options.port } : undefined;
  const parent = appSpan !== null || ctx === undefined ? null : [ctx.traceId, ctx.spanId, ctx.flags, ctx.tracestate];
  const span = otel.start(operation, msg.channel_id, parent, extra);
  let traceId, spanId, parentId, flags, state;
  if (span !== null) {
    [traceId, spanId, flags, state] = otel.idsOf(span);
    parentId = appSpan !== null ? appSpan.spanContext().spanId : ctx !== undefined ? ctx.spanId : null;
  } else {
    spanId = newSpanId();
    if (appSpan !== null) [traceId, parentId, flags, state] = otel.idsOf(appSpan);
    else if (ctx !== undefined) [traceId, parentId, flags, state] = [ctx.traceId, ctx.spanId, ctx.flags, ctx.tracestate];
    else [traceId, parentId, flags, state] = [newTraceId(), null, '01', null];
  }
  stamp(msg, `00-${traceId}-${spanId}-${flags}`, state);
  if (debug.enabled) debug('%s %s trace=%s span=%s parent=%s', operation, printable(msg.channel_id), traceId, spanId, parentId);
  return span;
}

/**
 * Ends an outgoing message's span (null: nothing to do) with the call's failure, if any.
 * @param {object|null} span
 * @param {unknown} [err]
 * @returns {null} so that `span = endSpan(span, err)` ends it once.
 */
function endSpan(span, err) {
  if (span !== null) otel.end(span, err);
  return null;
}

/**
 * The sender's `tracestate` as a handler's calls pass it on (its valid
 * members, at most 512 characters: lib/trace_state.js), read once the
 * sender's `traceparent` is known valid.
 * @param {object} headers
 * @returns {string|null}
 */
function passedState(headers) {
  return passedTracestate(headers.tracestate);
}

/**
 * The sender's ids from a message's `traceparent`, if it has a valid one,
 * with the flags passed on (the sampled one only: lib/trace_state.js).
 * @param {object|null|undefined} headers the message's.
 * @returns {{traceId: string, parentId: string, flags: string}|null}
 */
function senderOf(headers) {
  const parent = headers != null ? parseTraceparent(headers.traceparent) : null;
  if (parent !== null) parent.flags = passedFlags(parent.flags);
  return parent;
}

/**
 * The trace context of a message handled with no OpenTelemetry span: a new
 * span in the sender's trace, or the root of a new trace.
 * @param {{traceId: string, parentId: string, flags: string}|null} parent the sender's ids (senderOf).
 * @param {object|null|undefined} headers the message's.
 * @returns {TraceContext}
 */
function servedContext(parent, headers) {
  if (parent === null) return new TraceContext(newTraceId(), newSpanId());
  return new TraceContext(parent.traceId, newSpanId(), parent.parentId, parent.flags, passedState(headers));
}

/**
 * The trace a served message is handled in: a new span whose parent is the
 * sender's, entered by run() for everything the code it runs does, awaits
 * included (without OpenTelemetry or the debug log, worked out when first
 * asked: PendingTrace), as often as needed: a handler, then the stream it
 * returned (lib/admission.js). Its OpenTelemetry span, if any, is ended
 * once, by end().
 */
class ServedTrace {
  /** @param {object} msg a served request or notification, or a delivered publish. */
  constructor(msg) {
    const headers = msg.headers;
    this.trace = new PendingTrace(headers);
    /** @type {object|null} */
    this.span = null;
    if (!otel.loaded() && !debug.enabled) return;
    const operation = msg.message_type === 'publish' ? 'deliver' : 'serve';
    const parent = senderOf(headers);
    const remote = parent !== null ? [parent.traceId, parent.parentId, parent.flags, passedState(headers)] : null;
    const span = (this.span = otel.startServed(operation, msg.channel_id, remote, msg.message_id));
    let ctx;
    if (span !== null) {
      const [traceId, spanId, flags, tracestate] = otel.idsOf(span);
      ctx = new TraceContext(traceId, spanId, parent !== null ? parent.parentId : null, flags, tracestate);
    } else {
      ctx = servedContext(parent, headers); // parsed once, above
    }
    this.trace.context = ctx;
    if (debug.enabled) debug('%s %s trace=%s span=%s parent=%s', operation, printable(msg.channel_id), ctx.traceId, ctx.spanId, ctx.parentId);
  }

  /**
   * `fn(arg)` inside this trace (and its span, the active one).
   * @param {Function} fn
   * @param {unknown} arg
   * @returns {unknown} what `fn` returned.
   */
  run(fn, arg) {
    const trace = this.trace;
    if (this.span === null) return storage.run(trace, fn, arg);
    return otel.withSpan(this.span, (a) => storage.run(trace, fn, a), arg);
  }

  /**
   * Ends the span (once) with the failure, if any.
   * @param {unknown} [err]
   */
  end(err) {
    const span = this.span;
    this.span = null;
    if (span !== null) otel.end(span, err);
  }
}

/**
 * Runs a handler inside the trace of the message it handles (ServedTrace).
 * With an OpenTelemetry span, it ends when the handler's result settles.
 * @param {Function} handler
 * @param {object} msg a served request or notification, or a delivered publish.
 * @returns {unknown} what the handler returned.
 */
function runInTrace(handler, msg) {
  if (!otel.loaded() && !debug.enabled) return storage.run(new PendingTrace(msg.headers), handler, msg);
  const served = new ServedTrace(msg);
  if (served.span === null) return served.run(handler, msg);
  let result;
  let pending;
  try {
    result = served.run(handler, msg);
    pending = promiseOf(result); // a result that throws when read (a revoked Proxy) fails the handler, and its span
  } catch (err) {
    served.end(err);
    throw err;
  }
  if (pending === null) {
    served.end();
    return result;
  }
  return pending.then(
    (value) => {
      served.end();
      return value;
    },
    (err) => {
      served.end(err);
      throw err;
    }
  );
}

/**
 * Runs `fn(msg)` in the trace of `msg`, for code that handles a message
 * outside the client's own handlers (the loop over an iterator of
 * requests or messages): its calls continue that trace.
 * @param {object} msg
 * @param {(msg: object) => unknown} fn
 * @returns {unknown} what `fn` returned.
 */
function withinTrace(msg, fn) {
  return runInTrace(fn, msg);
}

module.exports = {
  TraceContext,
  currentTraceContext,
  currentTraceId,
  parseTraceparent,
  newSpanId,
  newTraceId,
  traceOutgoing,
  endSpan,
  runInTrace,
  ServedTrace,
  storage,
  PendingTrace,
  withinTrace
};
