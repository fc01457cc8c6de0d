'use strict';

/**
 * Client options: `{...DEFAULTS, ...options}`, validated once, so the rest of
 * the client can trust every value it reads.
 */

const { DEFAULTS, MAX_CONNECT_ID_LENGTH, MAX_FRAME_LIMIT_BYTES, MIN_HEARTBEAT_INTERVAL_MS } = require('./constants');
const { pickKnownOptions, toNumber } = require('./legacy_options');
const { Overflow } = require('./offline_queue');
const { parseBreakerOptions } = require('./circuit_breaker');
const { parseTlsOption } = require('./tls_options');
const { shownValue } = require('./thrown');

/** Per-call policies while not connected (docs/resilience.md §4). */
const ON_DISCONNECT = Object.freeze(['queue', 'fail']);

/**
 * Throws a TypeError naming the option.
 * @param {string} name
 * @param {string} expected
 * @param {unknown} value
 * @private
 */
function typeError(name, expected, value) {
  throw new TypeError(`option ${name} must be ${expected}, got ${shownValue(value)}`); // NaN as NaN, not JSON's null
}

/**
 * Refuses an id the server would refuse in the connect (docs/protocol.md
 * §3 item 12): more than MAX_CONNECT_ID_LENGTH code points, as Python counts.
 * @param {string} name
 * @param {string} value a string
 */
function checkIdLength(name, value) {
  if (value.length <= MAX_CONNECT_ID_LENGTH) return; // UTF-16 units: never fewer than code points
  const points = [...value].length;
  if (points > MAX_CONNECT_ID_LENGTH) throw new RangeError(`${name} must be at most ${MAX_CONNECT_ID_LENGTH} characters, got ${points}`);
}

/** The option names IPCClient takes. */
const KNOWN_OPTIONS = new Set(Object.keys(DEFAULTS));

/**
 * Checks a number option; a numeric string (`"5000"`) is converted in `o`
 * first (see legacy_options.toNumber()).
 * @param {object} o the merged options.
 * @param {string} name
 * @param {{min?: number, integer?: boolean, infinite?: boolean, nullable?: boolean, exclusiveMin?: boolean}} rule
 *   also the rule of the pool's and the load-balanced client's own options.
 */
function checkNumber(o, name, { min = 0, integer = false, infinite = false, nullable = false, exclusiveMin = false }) {
  const v = (o[name] = toNumber(o[name]));
  if (nullable && v === null) return;
  const ok =
    typeof v === 'number' &&
    !Number.isNaN(v) &&
    (Number.isFinite(v) ? !integer || Number.isInteger(v) : infinite && v > 0) &&
    (exclusiveMin ? v > min : v >= min);
  if (!ok) {
    const what = `${integer ? 'an integer' : 'a number'} ${exclusiveMin ? '>' : '>='} ${min}`;
    typeError(name, `${what}${infinite ? ' or Infinity' : ''}${nullable ? ' or null' : ''}`, v);
  }
}

/**
 * Merges the caller's options over DEFAULTS and validates the result.
 *
 * Durations are milliseconds, sizes bytes; numbers may be given as numeric
 * strings (`port: "8888"`, read from the environment). The legacy names
 * `connectionTimeout`, `reconnectAttempts` and `reconnectDelay` set
 * `connectTimeout`, `maxRetries` and `initialDelay`; the deprecated
 * `highWaterMark` sets `maxConcurrentHandlers` (one `IPC_DEPRECATED_OPTION`
 * warning per process). Unknown keys (`lowWaterMark` among them) are
 * ignored with one `IPC_UNKNOWN_OPTION` process warning per name, so that
 * the warning, not an exception, points at a typo (lib/legacy_options.js).
 *
 * @param {object} [options] the caller's options.
 * @returns {Readonly<typeof DEFAULTS>} the frozen, complete options.
 * @throws {TypeError} a known option with a value of the wrong type.
 * @throws {RangeError} contradictory values (heartbeat, backoff).
 */
function parseOptions(options = {}) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    typeError('options', 'an object', options);
  }
  const o = { ...DEFAULTS, ...pickKnownOptions(options, KNOWN_OPTIONS) };

  if (typeof o.host !== 'string' || o.host.length === 0) typeError('host', 'a non-empty string', o.host);
  checkNumber(o, 'port', { min: 1, integer: true });
  if (o.port > 65535) typeError('port', 'an integer between 1 and 65535', o.port);
  checkNumber(o, 'connectTimeout', { exclusiveMin: true });
  if (typeof o.reconnect !== 'boolean') typeError('reconnect', 'a boolean', o.reconnect);
  checkNumber(o, 'maxRetries', { integer: true, infinite: true });
  checkNumber(o, 'initialDelay', {});
  checkNumber(o, 'maxDelay', {});
  checkNumber(o, 'multiplier', { min: 1 });
  checkNumber(o, 'jitter', {});
  if (o.jitter > 1) typeError('jitter', 'a number between 0 and 1', o.jitter);
  // Under 10 ms a ping is due before it can be answered (docs/protocol.md §9.5).
  checkNumber(o, 'heartbeatInterval', { min: MIN_HEARTBEAT_INTERVAL_MS, nullable: true });
  checkNumber(o, 'heartbeatTimeout', { min: MIN_HEARTBEAT_INTERVAL_MS, nullable: true });
  checkNumber(o, 'requestTimeout', { exclusiveMin: true });
  checkNumber(o, 'queueMaxSize', { integer: true, infinite: true });
  checkNumber(o, 'queueMaxBytes', { integer: true, infinite: true });
  if (!Object.values(Overflow).includes(o.queueOverflow)) {
    typeError('queueOverflow', `one of ${Object.values(Overflow).join(', ')}`, o.queueOverflow);
  }
  if (o.queuePath !== null && (typeof o.queuePath !== 'string' || o.queuePath.length === 0)) {
    typeError('queuePath', 'a non-empty string or null', o.queuePath);
  }
  if (!ON_DISCONNECT.includes(o.onDisconnect)) typeError('onDisconnect', "'queue' or 'fail'", o.onDisconnect);
  if (o.circuitBreaker === false) o.circuitBreaker = null;
  if (o.circuitBreaker !== null) o.circuitBreaker = parseBreakerOptions(o.circuitBreaker);
  checkNumber(o, 'maxFrameSize', { min: 1, integer: true, nullable: true });
  if (o.maxFrameSize !== null && o.maxFrameSize > MAX_FRAME_LIMIT_BYTES) {
    typeError('maxFrameSize', `at most ${MAX_FRAME_LIMIT_BYTES}`, o.maxFrameSize);
  }
  if (o.token !== null && typeof o.token !== 'string') typeError('token', 'a string or null', o.token);
  if (o.user !== null && (typeof o.user !== 'string' || o.user.length === 0)) typeError('user', 'a non-empty string or null', o.user);
  if (o.user !== null) checkIdLength('option user', o.user);
  o.tls = parseTlsOption(o.tls);
  if (o.connectionId !== null && (typeof o.connectionId !== 'string' || o.connectionId.length === 0)) {
    typeError('connectionId', 'a non-empty string or null', o.connectionId);
  }
  if (o.connectionId !== null) checkIdLength('option connectionId', o.connectionId);
  checkNumber(o, 'maxConcurrentHandlers', { min: 1, integer: true, infinite: true });
  checkNumber(o, 'maxHeldMessages', { min: 1, integer: true, infinite: true });
  if (typeof o.exposeStacks !== 'boolean') typeError('exposeStacks', 'a boolean', o.exposeStacks);
  checkNumber(o, 'cacheMaxEntries', { integer: true });
  if (typeof o.waitOnFirstConnect !== 'boolean') typeError('waitOnFirstConnect', 'a boolean', o.waitOnFirstConnect);

  if (o.maxDelay < o.initialDelay) {
    throw new RangeError('option maxDelay must be >= initialDelay');
  }
  if (o.heartbeatInterval !== null && o.heartbeatTimeout !== null && o.heartbeatTimeout <= o.heartbeatInterval) {
    throw new RangeError('option heartbeatTimeout must be greater than heartbeatInterval');
  }
  return Object.freeze(o);
}

/**
 * Refuses `queuePath` for a class that runs several clients: each would
 * load and send every persisted message once (as Python raises ValueError).
 * @param {string} owner the class name, for the message.
 * @param {object} options
 * @throws {TypeError} `queuePath` is set.
 */
function refuseQueuePath(owner, options) {
  if (options != null && options.queuePath !== undefined && options.queuePath !== null) {
    throw new TypeError(
      `${owner} does not accept queuePath: a persisted outbox belongs to one client, and each of its clients would send every persisted message; give a single IPCClient the queuePath instead`
    );
  }
}

module.exports = { parseOptions, refuseQueuePath, checkIdLength, checkNumber, ON_DISCONNECT, KNOWN_OPTIONS };
