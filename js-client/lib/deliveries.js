'use strict';

/**
 * Runs a subscription handler for a delivered publish (Admission.invoke's
 * case with nobody to answer): inside the publish's trace, errors to
 * 'error', an async handler counted towards `maxConcurrentHandlers` until
 * it settles. A delivery has no answer, stream, key or cancel, so it makes
 * none of the closures a served request needs: every message published
 * to a subscriber passes here.
 */

const { promiseOf } = require('./listeners');
const { ServedTrace } = require('./tracing');
const { patternMatches } = require('./channels');

/**
 * Calls every handler whose pattern matches a publish's channel, each once
 * even when several of its patterns match (§5.3), in the table's order.
 * The set of handlers called is made only once a second one is: most
 * publishes reach one handler.
 * @param {Map<string, Set<Function>>} subscriptions pattern -> handlers.
 * @param {import('./admission').Admission} admission
 * @param {Connection} conn the connection it came on.
 * @param {object} msg
 */
function deliverPublish(subscriptions, admission, conn, msg) {
  let one = null; // the one handler called so far
  let called = null; // every handler called, once there are two
  for (const [pattern, handlers] of subscriptions) {
    if (!patternMatches(pattern, msg.channel_id)) continue;
    for (const handler of handlers) {
      if (called !== null) {
        if (called.has(handler)) continue;
        called.add(handler);
      } else if (one === null) one = handler;
      else if (one === handler) continue;
      else called = new Set([one, handler]);
      admission.invoke(handler, msg, conn, false);
    }
  }
}

/**
 * @param {import('./admission').Admission} admission
 * @param {Function} handler
 * @param {object} msg a publish (or a 1.1.x server's notification).
 */
function deliver(admission, handler, msg) {
  const served = new ServedTrace(msg);
  let pending;
  try {
    pending = promiseOf(served.run(handler, msg)); // reading the result can throw (a throwing `then` getter): the handler's throw too
  } catch (err) {
    served.end(err);
    admission.host._emitError(err);
    return;
  }
  if (pending === null) {
    served.end();
    return;
  }
  const tracked = admission._track();
  pending.then(
    () => {
      admission._untrack(tracked);
      served.end();
    },
    (err) => {
      admission._untrack(tracked);
      served.end(err);
      admission.host._emitError(err);
    }
  );
}

module.exports = { deliver, deliverPublish };
