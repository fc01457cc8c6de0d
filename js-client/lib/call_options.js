'use strict';

/**
 * A call's options and outcome, read the same way by every kind of call:
 * the per-call options of sendRequest/publish/notify (docs/resilience.md
 * §4), and how a failure counts (the metrics, the circuit breaker).
 */

const { ON_DISCONNECT } = require('./options');
const { toNumber } = require('./legacy_options');
const { AbortError, ProtocolError, RemoteError, RequestTimeoutError } = require('./errors');

/**
 * Checks a per-call timeout argument. A numeric string is read as its
 * number, as the client's own options are (lib/options.js): other text is
 * a TypeError naming the option.
 * @param {unknown} timeout milliseconds.
 * @param {string} [name] the option's name, for the error.
 * @returns {number}
 */
function checkTimeout(timeout, name = 'timeout') {
  timeout = toNumber(timeout);
  if (typeof timeout !== 'number' || !(timeout > 0)) {
    throw new TypeError(`${name} must be a positive number of milliseconds, got ${String(timeout)}`);
  }
  return timeout;
}

/**
 * A timeout as its caller gave it, for an error message: whole
 * milliseconds as they are, a fraction to 3 places (0.1 + 0.2 says 0.3),
 * never the budget left when the call was written (299 for 300).
 * @param {number} ms
 * @returns {string}
 */
function timeoutText(ms) {
  const text = Number.isInteger(ms) ? String(ms) : String(Number(ms.toFixed(3)));
  return text === '0' ? String(ms) : text;
}

/**
 * The key of a sendRequest() option a pool or a load-balanced client sets
 * (namingTimeout()): the call's own timeout, which its RequestTimeoutError
 * names, while the `timeout` it passes is what is left of it after the
 * wait for a connection (docs/resilience.md §4). Not for applications.
 */
const NAMED_TIMEOUT = Symbol('namedTimeout');

/**
 * `options` with the call's own timeout to name (NAMED_TIMEOUT).
 * @param {object|undefined|null} options a sendRequest()'s.
 * @param {number} ms the call's own timeout as it was given.
 * @returns {object}
 */
function namingTimeout(options, ms) {
  return { ...options, [NAMED_TIMEOUT]: ms };
}

/**
 * Reads the per-call options of sendRequest/publish/notify (docs/resilience.md §4).
 * @param {object} options
 * @param {number} defaultTimeout
 * @param {string} defaultPolicy the client's `onDisconnect`.
 * `idempotencyKey` is read by sendRequest only (docs/protocol.md §6.6).
 * @returns {{headers: object|undefined, priority: number, onDisconnect: string, timeout: number, idempotencyKey: string|undefined}}
 */
function callOptions(options, defaultTimeout, defaultPolicy) {
  if (options === null || typeof options !== 'object') throw new TypeError('call options must be an object');
  const { headers, onDisconnect = defaultPolicy, timeout = defaultTimeout, idempotencyKey } = options;
  const priority = toNumber(options.priority ?? 0); // numeric text too, as timeout
  if (!Number.isSafeInteger(priority)) throw new TypeError(`priority must be an integer, got ${String(priority)}`);
  if (!ON_DISCONNECT.includes(onDisconnect)) throw new TypeError(`onDisconnect must be 'queue' or 'fail', got ${String(onDisconnect)}`);
  return { headers, priority, onDisconnect, timeout: checkTimeout(timeout), idempotencyKey };
}

/**
 * Whether a failed call counts in the metrics' `messagesFailed` rather than
 * `messagesDelivered` (an answer from the other side, such as
 * `handler_error`): a local failure, or a `timeout` whether the local
 * timer or the server's own answer ended it. The server times a request
 * out at the deadline this client's timer has too (docs/protocol.md §6.5),
 * so which of the two comes first is a race; both count the same, as in
 * Python.
 * @param {unknown} err
 * @returns {boolean}
 */
function countsAsFailed(err) {
  if (err instanceof RequestTimeoutError) return true; // `.remote` or not
  return !(err instanceof RemoteError);
}

/**
 * Whether a call was refused before it left the process (it cannot be
 * encoded, or is larger than the frame limit): it says nothing about the
 * service, so the circuit breaker does not count it (as in Python).
 * @param {unknown} err
 * @returns {boolean}
 */
function isLocalRefusal(err) {
  return err instanceof ProtocolError || err instanceof TypeError || err instanceof RangeError || err instanceof AbortError; // nor a caller giving up
}

module.exports = { NAMED_TIMEOUT, checkTimeout, timeoutText, callOptions, countsAsFailed, isLocalRefusal, namingTimeout };
