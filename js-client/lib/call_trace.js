'use strict';

/**
 * One trace for the attempts of one call: a load-balanced client's
 * request, publish, notify or stream that fails over (docs/tracing.md §1).
 * The trace is current only while an attempt is sent: a stream's around
 * each attempt's open, up to its first item, never while the reader's code
 * runs between items. The mirror of ipc_client/call_trace.py.
 */

const otel = require('./otel');
const { newSpanId, newTraceId } = require('./trace_ids');
const { TraceContext, PendingTrace, storage, endSpan } = require('./tracing');

/**
 * The trace of one call's attempts (a load-balanced client's failover),
 * each attempt a span of its own: outside any trace, one drawn for the
 * whole call (with OpenTelemetry, an INTERNAL span `<operation> <channel>`
 * whose children the attempts are); inside one, or with the caller's own
 * `traceparent`, none (callTrace() is null). run(fn) makes it current for
 * what `fn` starts (an attempt's send; a stream's open, never the reader's
 * code between items); end(err) ends its span, once.
 */
class CallTrace {
  constructor(operation, channelId) {
    this.span = otel.startCall(operation, channelId);
    this.trace = new PendingTrace(null);
    if (this.span === null) {
      this.trace.context = new TraceContext(newTraceId(), newSpanId());
    } else {
      const [traceId, spanId, flags, tracestate] = otel.idsOf(this.span);
      this.trace.context = new TraceContext(traceId, spanId, null, flags, tracestate);
    }
  }

  run(fn) {
    const span = this.span;
    return span === null ? storage.run(this.trace, fn) : otel.withSpan(span, () => storage.run(this.trace, fn));
  }

  end(err) {
    this.span = endSpan(this.span, err);
  }
}

/**
 * @param {'request'|'notify'|'publish'} operation
 * @param {string} channelId
 * @param {object|undefined} headers the caller's.
 * @returns {CallTrace|null} null when the call already has a trace.
 */
function callTrace(operation, channelId, headers) {
  const own = headers != null && Object.prototype.hasOwnProperty.call(headers, 'traceparent');
  if (own || storage.getStore() !== undefined || otel.currentSpan() !== null) return null;
  return new CallTrace(operation, channelId);
}

/**
 * Runs `call()`, every attempt of one call (not a stream's: its trace
 * must not stay current between items), in one trace (CallTrace).
 * @param {'request'|'notify'|'publish'} operation
 * @param {string} channelId
 * @param {object|undefined} headers the caller's.
 * @param {() => Promise<T>} call
 * @returns {Promise<T>}
 * @template T
 */
function inOneTrace(operation, channelId, headers, call) {
  const trace = callTrace(operation, channelId, headers);
  if (trace === null) return call();
  if (trace.span === null) return trace.run(call);
  let pending;
  try {
    pending = Promise.resolve(trace.run(call));
  } catch (err) {
    trace.end(err);
    throw err;
  }
  return pending.then(
    (value) => {
      trace.end();
      return value;
    },
    (err) => {
      trace.end(err);
      throw err;
    }
  );
}

module.exports = { CallTrace, callTrace, inOneTrace };
