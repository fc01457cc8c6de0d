'use strict';

/**
 * publish() and notify() (docs/protocol.md §5, §6.1), and the split every
 * call the seed's code leaves un-awaited makes (docs/legacy.md): what the
 * arguments alone make impossible throws at the call, synchronously (as
 * nats.js does for a bad subject); what depends on the connection rejects
 * the returned promise.
 *
 * Why: code that calls publish() or subscribe() without `await` (the
 * Express routes of the 1.1.x documentation) turns a rejection into an
 * unhandled rejection, which ends the process on Node >= 15; a throw is
 * caught by the caller's `try`, or by Express, which answers 500. So an
 * invalid, over-long or reserved channel, a bad option and a payload that
 * cannot be encoded (bad_message) throw; not connected, draining, a full
 * offline queue, a frame over the server's limit and the server's
 * answer reject.
 */

const { buildMessage } = require('./envelope');
const { SYSTEM_CHANNEL } = require('./constants');
const { validateChannel, validatePattern, isReserved } = require('./channels');
const { now } = require('./connection');
const { callOptions } = require('./call_options');
const { traceOutgoing, endSpan } = require('./tracing');
const { checkSignal, abortError, abortable } = require('./cancellation');
const { messageBytes } = require('./protocol/attachments');
const { ForbiddenError, MessageError } = require('./errors');

/**
 * IPCClient.publish(): with `ack`, a call answered by the server's count.
 * @param {import('./calls').Calls} calls
 * @returns {Promise<{delivered: number|null}|undefined>}
 * @throws {MessageError|ForbiddenError|TypeError} an argument error (see the module's doc).
 */
function publish(calls, channelId, data, options) {
  const host = calls.host;
  checkChannelOf('publish', channelId);
  const call = callOptions(options ?? {}, host.options.requestTimeout, host.options.onDisconnect);
  const ack = !!(options && options.ack);
  const signal = checkSignal(options && options.signal); // the caller may give up (§15.4)
  const refused = refusedByState(host);
  if (refused !== null) return refused;
  if (signal !== undefined && signal.aborted) return Promise.reject(abortError(signal));
  const msg = buildMessage('publish', host.appId, channelId, data, call.headers ? { headers: call.headers } : undefined);
  if (ack) msg.ack = true;
  const span = traceOutgoing(msg, 'publish', host);
  const sent = start(calls, msg, now() + call.timeout, call, ack, span);
  if (ack) return acknowledged(calls, msg, signal, sent, span);
  // written now (undefined): final, an abort after the call changes nothing; else it may still leave unsent
  return written(calls, sent === undefined ? Promise.resolve() : abortable(host, msg, signal, sent), span);
}

/**
 * IPCClient.notify(): a one-way request, routed like a request, never answered.
 * Its `signal` as a publish without ack's: aborted before it is written,
 * it leaves unsent (AbortError); once written, nothing can be undone.
 * @param {import('./calls').Calls} calls
 * @returns {Promise<void>}
 * @throws {MessageError|ForbiddenError|TypeError} an argument error (see the module's doc).
 */
function notify(calls, channelId, data, options) {
  const host = calls.host;
  checkChannelOf('notify', channelId);
  const call = callOptions(options ?? {}, host.options.requestTimeout, host.options.onDisconnect);
  const signal = checkSignal(options && options.signal);
  const refused = refusedByState(host);
  if (refused !== null) return refused;
  if (signal !== undefined && signal.aborted) return Promise.reject(abortError(signal));
  const msg = buildMessage('notification', host.appId, channelId, data, call.headers ? { headers: call.headers } : undefined);
  const span = traceOutgoing(msg, 'notify', host);
  const sent = start(calls, msg, now() + call.timeout, call, false, span);
  return written(calls, sent === undefined ? Promise.resolve() : abortable(host, msg, signal, sent), span);
}

/**
 * What publish() and notify() refuse from the channel alone, at the call:
 * an invalid or over-long one (MessageError), a reserved one (ForbiddenError;
 * notify() may go to `system` itself, whose actions the server routes, §6.1).
 * The pool and the load-balanced client check it too, before they pick a member.
 * @param {'publish'|'notify'} kind
 * @param {string} channelId
 * @throws {MessageError|ForbiddenError|TypeError}
 */
function checkChannelOf(kind, channelId) {
  validateChannel(channelId);
  if (isReserved(channelId) && (kind === 'publish' || channelId !== SYSTEM_CHANNEL)) {
    throw new ForbiddenError(`channel ${JSON.stringify(channelId)} is reserved for the server`); // notify: the server would drop it, answering nothing (§6.1)
  }
}

/**
 * What subscribe() refuses from its arguments alone, at the call: an invalid
 * pattern (MessageError), a handler that is not a function (TypeError).
 * @param {string} channelId
 * @param {unknown} handler
 */
function checkSubscription(channelId, handler) {
  validatePattern(channelId);
  if (typeof handler !== 'function') throw new TypeError('handler must be a function');
}

/**
 * What unsubscribe() refuses, at the call, on every client (IPCClient, pool,
 * load-balanced): a channel that is not a string, a handler given that is
 * not a function (TypeError). A name nothing is subscribed under, an invalid
 * one included, is not refused: cleanup code may call it freely.
 * @param {unknown} channelId
 * @param {unknown} handler
 */
function checkUnsubscription(channelId, handler) {
  if (typeof channelId !== 'string') throw new TypeError('channel must be a string');
  if (handler !== undefined && typeof handler !== 'function') throw new TypeError('handler must be a function');
}

/**
 * The client's refusal of any new call while it drains (docs/resilience.md
 * §12), as a rejected promise: it depends on the client's state.
 * @returns {Promise<never>|null}
 * @private
 */
function refusedByState(host) {
  try {
    host._drain.check();
    return null;
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Calls.submit(), throwing a payload that cannot be encoded whatever the
 * connection's state: the encoder's MessageError when the call was sent or
 * queued, else (refused before encoding: not connected...) the same check
 * the offline queue makes. Any other failure is the promise's.
 * @returns {Promise<object>|Promise<void>|undefined}
 * @throws {MessageError}
 * @private
 */
function start(calls, msg, deadline, call, expectReply, span) {
  let unsent = null;
  let sent;
  try {
    sent = calls.submit(msg, deadline, call, expectReply, expectReply ? (err) => (unsent = err) : undefined);
  } catch (err) {
    unsent = err;
    sent = Promise.reject(err);
  }
  if (unsent === null) return sent;
  const unencodable = unencodableBy(msg, unsent);
  if (unencodable === null) return sent;
  sent.catch(() => {}); // it is thrown instead
  endSpan(span, unencodable);
  calls.countFailure(unencodable);
  throw unencodable;
}

/**
 * The MessageError that makes `msg` impossible to encode, or null.
 * @param {object} msg
 * @param {unknown} err why its submission failed.
 * @returns {MessageError|null}
 * @private
 */
function unencodableBy(msg, err) {
  if (err instanceof MessageError) return err;
  try {
    messageBytes(msg);
    return null;
  } catch (checked) {
    return checked instanceof MessageError ? checked : null;
  }
}

/**
 * Waits for a publish's ack and reads the server's count.
 * @returns {Promise<{delivered: number|null}>}
 * @private
 */
async function acknowledged(calls, msg, signal, sent, span) {
  const reply = await written(calls, abortable(calls.host, msg, signal, sent), span);
  calls.host._metrics.delivered();
  return { delivered: reply.payload && typeof reply.payload.delivered === 'number' ? reply.payload.delivered : null };
}

/**
 * Waits for a call's outcome, ending its span and counting a failure.
 * @returns {Promise<unknown>}
 * @private
 */
async function written(calls, pending, span) {
  try {
    return await pending;
  } catch (err) {
    span = endSpan(span, err);
    calls.countFailure(err);
    throw err;
  } finally {
    endSpan(span);
  }
}

module.exports = { publish, notify, checkChannelOf, checkSubscription, checkUnsubscription };
