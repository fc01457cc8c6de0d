'use strict';

/**
 * Process warnings of the client: what it has to tell and nobody listens
 * for. All of them have the type `IpcBridgeWarning` and a stable `.code`,
 * so an application can filter them (`process.on('warning')`, or
 * `node --disable-warning=IPC_UNKNOWN_OPTION`), as ioredis and nats.js do.
 *
 *     IPC_UNKNOWN_OPTION   an option the client does not know; ignored (once per name per process)
 *     IPC_OPTION_CONFLICT  a legacy option name and today's name both given; today's wins
 *     IPC_DEPRECATED_OPTION  an option name that still works but will go (once per name per process)
 *     IPC_UNHANDLED_ERROR  an error with no 'error' listener to take it (its `.cause`)
 */

const { describeThrown, safeGet, safeString } = require('./thrown');
const { printable } = require('./printable');

const WARNING_TYPE = 'IpcBridgeWarning';

const WarningCode = Object.freeze({
  UNKNOWN_OPTION: 'IPC_UNKNOWN_OPTION',
  OPTION_CONFLICT: 'IPC_OPTION_CONFLICT',
  DEPRECATED_OPTION: 'IPC_DEPRECATED_OPTION',
  UNHANDLED_ERROR: 'IPC_UNHANDLED_ERROR'
});

/** Keys already warned about, for the warnings given once per process. */
const warnedOnce = new Set();

/**
 * Emits one process warning: one line, its characters that are not
 * printable escaped (lib/printable.js), since a peer's error text may be in
 * it; the error itself, raw, is its `.cause`.
 * @param {string} message
 * @param {string} code one of WarningCode.
 * @param {unknown} [cause] attached as the warning's `.cause`.
 */
function warn(message, code, cause) {
  const warning = new Error(printable(message), cause === undefined ? undefined : { cause });
  warning.name = WARNING_TYPE;
  warning.code = code;
  process.emitWarning(warning);
}

/**
 * Emits a warning unless one with the same key was emitted already in this
 * process: a pool passes the same options to every member it opens, and
 * the application should hear about a typo once, not once per connection.
 * @param {string} key
 * @param {string} message
 * @param {string} code
 * @returns {boolean} whether it was emitted.
 */
function warnOnce(key, message, code) {
  if (warnedOnce.has(key)) return false;
  warnedOnce.add(key);
  warn(message, code);
  return true;
}

/**
 * Reports an error nobody listens for: one warning per error, so it is
 * never silently dropped, and never an 'error' event that would crash the
 * process. Never throws, whatever `err` is (lib/thrown.js).
 * @param {unknown} err
 * @param {string} [context] what the client was doing, for the message.
 */
function warnUnhandled(err, context) {
  const { isError, name, message } = describeThrown(err); // whatever was thrown: never a crash here
  const code = isError ? safeGet(err, 'code') : undefined;
  const what = isError ? `${name}${code ? ` (${safeString(code)})` : ''}: ${message}` : message;
  warn(`${context ? `${context}: ` : ''}${what} (no 'error' listener on the client)`, WarningCode.UNHANDLED_ERROR, err);
}

module.exports = { WARNING_TYPE, WarningCode, warn, warnOnce, warnUnhandled };
