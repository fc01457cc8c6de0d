'use strict';

/**
 * OpenTelemetry spans for the bridge's messages, when `@opentelemetry/api`
 * can be required (docs/tracing.md). It is never a dependency: it is looked
 * for once, lazily, at the first traced message (from this package, then
 * from the application's main module and working directory, since the API
 * keeps its registrations on a process-wide global whichever copy loads
 * them), and without it nothing is loaded and no span is made. With the API
 * but no registered SDK, its no-op spans are dropped and lib/tracing.js
 * makes the ids itself.
 *
 * The W3C headers are written and read here from the span contexts
 * themselves, not through the registered propagators, so what crosses the
 * bridge is `traceparent`/`tracestate` whatever else the application
 * propagates (docs/protocol.md §2). Spans follow the messaging semantic
 * conventions, as the Python client's ipc_client/otel.py.
 */

const path = require('node:path');
const { describeThrown, safeGet, safeString } = require('./thrown');
const { createRequire } = require('node:module');

const SYSTEM = 'ipc-bridge';
/** operation -> [span kind, messaging.operation.type, the older messaging.operation] */
const KINDS = {
  request: ['CLIENT', 'send', 'publish'],
  notify: ['PRODUCER', 'send', 'publish'],
  publish: ['PRODUCER', 'send', 'publish'],
  serve: ['SERVER', 'process', 'process'],
  deliver: ['CONSUMER', 'process', 'process']
};

let api = null;
let tried = false;
let tracer = null;

/**
 * The API module, required once; null when it cannot be found.
 * @returns {object|null}
 */
function load() {
  tried = true;
  const requires = [require];
  if (require.main !== undefined && require.main !== module) requires.push(require.main.require.bind(require.main));
  requires.push(createRequire(path.join(process.cwd(), 'package.json')));
  for (const req of requires) {
    try {
      api = req('@opentelemetry/api');
      return api;
    } catch {
      // not there: the next place, else none
    }
  }
  return null;
}

/**
 * Whether the API was found (looked for on the first call).
 * @returns {boolean}
 */
function loaded() {
  return (tried ? api : load()) !== null;
}

/**
 * The application's active span when its context is valid, else null.
 * @returns {object|null}
 */
function currentSpan() {
  if (!loaded()) return null;
  const span = api.trace.getActiveSpan();
  return span !== undefined && api.trace.isSpanContextValid(span.spanContext()) ? span : null;
}

/**
 * A context whose span is the sender's (a remote parent).
 * @param {[string, string, string, string|null]} parent trace id, span id, flags, tracestate.
 * @returns {object}
 */
function remoteParent([traceId, spanId, flags, tracestate]) {
  const spanContext = { traceId, spanId, traceFlags: parseInt(flags, 16), isRemote: true };
  if (tracestate) spanContext.traceState = api.createTraceState(tracestate);
  return api.trace.setSpanContext(api.ROOT_CONTEXT, spanContext);
}

/**
 * A span, or null when it would not record (no SDK registered, sampled out).
 * @param {string} operation a key of KINDS.
 * @param {string} channel
 * @param {object} context its parent context.
 * @param {object} [extra] more attributes.
 * @returns {object|null}
 */
function startIn(operation, channel, context, extra, internal = false) {
  const [ownKind, type, older] = KINDS[operation];
  const kind = internal ? 'INTERNAL' : ownKind;
  const attributes = {
    'messaging.system': SYSTEM,
    'messaging.destination.name': channel,
    'messaging.operation.type': type,
    'messaging.operation.name': operation,
    'messaging.operation': older,
    ...extra
  };
  tracer ??= api.trace.getTracer('ipc-bridge', require('./constants').CLIENT_VERSION);
  const span = tracer.startSpan(`${operation} ${channel}`, { kind: api.SpanKind[kind], attributes }, context);
  return span.isRecording() ? span : null;
}

/**
 * A span for an outgoing message: child of the active span, or of `parent`.
 * @param {string} operation
 * @param {string} channel
 * @param {[string, string, string, string|null]|null} parent
 * @param {object} [extra]
 * @returns {object|null}
 */
function start(operation, channel, parent, extra) {
  if (!loaded()) return null;
  return startIn(operation, channel, parent !== null ? remoteParent(parent) : api.context.active(), extra);
}

/**
 * An INTERNAL span for a call that may take several attempts (a
 * load-balanced client's failover), a root: its attempts are its children.
 * @param {string} operation
 * @param {string} channel
 * @returns {object|null}
 */
function startCall(operation, channel) {
  if (!loaded()) return null;
  return startIn(operation, channel, api.ROOT_CONTEXT, undefined, true);
}

/**
 * A span for a served request or a delivery, child of the sender's span; a
 * message without trace context starts a trace of its own, never continues
 * whatever context happens to be active where it is read.
 * @param {string} operation
 * @param {string} channel
 * @param {[string, string, string, string|null]|null} parent
 * @param {string} messageId
 * @returns {object|null}
 */
function startServed(operation, channel, parent, messageId) {
  if (!loaded()) return null;
  const context = parent !== null ? remoteParent(parent) : api.ROOT_CONTEXT;
  return startIn(operation, channel, context, { 'messaging.message.id': messageId });
}

/**
 * A span's ids as they go in the headers: of the flags, only `sampled`
 * (docs/tracing.md §1; Python's SDK sets the Level-2 random bit too).
 * @param {object} span
 * @returns {[string, string, string, string|null]} trace id, span id, flags, tracestate.
 */
function idsOf(span) {
  const sc = span.spanContext();
  const state = sc.traceState ? sc.traceState.serialize() : '';
  return [sc.traceId, sc.spanId, sc.traceFlags & 1 ? '01' : '00', state || null];
}

/**
 * Ends a span; a failure sets its status and `error.type` (the error's code when it has one).
 * @param {object} span
 * @param {unknown} [err]
 */
function end(span, err) {
  if (err != null) {
    const { isError, name, message } = describeThrown(err); // whatever a handler threw (lib/thrown.js)
    span.setAttribute('error.type', safeString((isError && safeGet(err, 'code')) || (isError ? name : 'Error')));
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: message || name });
  }
  span.end();
}

/**
 * Runs `fn(arg)` with `span` active (a handler's own calls are its children).
 * @param {object} span
 * @param {Function} fn
 * @param {unknown} arg
 * @returns {unknown}
 */
function withSpan(span, fn, arg) {
  return api.context.with(api.trace.setSpan(api.ROOT_CONTEXT, span), fn, undefined, arg);
}

module.exports = { loaded, currentSpan, start, startCall, startServed, idsOf, end, withSpan };
