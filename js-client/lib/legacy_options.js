'use strict';

/**
 * The leniency that lets code written for the legacy
 * `@ifesol/ipc-framework-nodejs` package (docs/legacy.md) run unmodified:
 * its option names, options the client does not know (wrapper classes pass
 * their own settings straight through), and numbers given as strings (read
 * from the environment). Known options are still validated strictly by
 * parseOptions(); this module only decides which keys reach it.
 */

const { WarningCode, warnOnce } = require('./warnings');

/** Legacy option name -> today's name, with the same meaning and unit (ms). */
const LEGACY_ALIASES = Object.freeze({
  connectionTimeout: 'connectTimeout',
  reconnectAttempts: 'maxRetries',
  reconnectDelay: 'initialDelay'
});

/**
 * Deprecated option name -> today's name: still honoured, with one
 * `IPC_DEPRECATED_OPTION` warning per name per process.
 */
const DEPRECATED_ALIASES = Object.freeze({
  highWaterMark: 'maxConcurrentHandlers'
});

/** A finite decimal number, as `Number()` would read it, without hex, binary or `Infinity`. */
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Converts a numeric string (`"8888"`, `" 5000 "`, `"1.5"`) to its number;
 * any other value is returned as it is, for the caller's check to refuse.
 * @param {unknown} value
 * @returns {unknown}
 */
function toNumber(value) {
  if (typeof value !== 'string') return value;
  const text = value.trim();
  if (!DECIMAL.test(text)) return value;
  const n = Number(text);
  return Number.isFinite(n) ? n : value;
}

/**
 * Keeps the keys of `options` that `known` has, renames legacy aliases and
 * deprecated names (the latter with one `IPC_DEPRECATED_OPTION` warning per
 * name per process), and drops the rest with one `IPC_UNKNOWN_OPTION`
 * warning per name per process (the ioredis / nats.js convention). When an
 * old name and today's name are both given, today's wins and an
 * `IPC_OPTION_CONFLICT` warning says so. Undefined values count as absent.
 * @param {object} options the caller's options (an object).
 * @param {{has: (key: string) => boolean}} known the names the receiver takes.
 * @param {{owner?: string, aliases?: Record<string, string>, deprecated?: Record<string, string>}} [settings]
 *   `owner` names the receiver in warnings.
 * @returns {object} a new object with known keys only.
 */
function pickKnownOptions(options, known, { owner = 'IPCClient', aliases = LEGACY_ALIASES, deprecated = DEPRECATED_ALIASES } = {}) {
  const out = {};
  const legacy = [];
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    if (known.has(key)) out[key] = value;
    else if (Object.prototype.hasOwnProperty.call(aliases, key) && known.has(aliases[key])) legacy.push([key, aliases[key]]);
    else if (Object.prototype.hasOwnProperty.call(deprecated, key) && known.has(deprecated[key])) {
      warnOnce(
        `deprecated:${key}`,
        `${owner}: option ${JSON.stringify(key)} is deprecated; use ${JSON.stringify(deprecated[key])}`,
        WarningCode.DEPRECATED_OPTION
      );
      legacy.push([key, deprecated[key]]);
    } else {
      warnOnce(`unknown:${key}`, `${owner}: unknown option ${JSON.stringify(key)} ignored`, WarningCode.UNKNOWN_OPTION);
    }
  }
  for (const [key, name] of legacy) {
    if (name in out) {
      warnOnce(
        `conflict:${key}`,
        `${owner}: options ${JSON.stringify(key)} (old name) and ${JSON.stringify(name)} are both given; ${JSON.stringify(name)} is used`,
        WarningCode.OPTION_CONFLICT
      );
    } else {
      out[name] = options[key];
    }
  }
  return out;
}

module.exports = { LEGACY_ALIASES, DEPRECATED_ALIASES, toNumber, pickKnownOptions };
