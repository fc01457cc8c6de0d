'use strict';

/**
 * Makes one IPCClient (or ConnectionPool, or LoadBalancedClient) per option
 * set and reports whether it was refused.
 *
 * argv[2] is a JSON array of option objects; the strings "NaN", "Infinity"
 * and "-Infinity" stand for those numbers, which JSON cannot carry, at any
 * depth (a circuitBreaker's fields too). argv[3] is what to make: "client"
 * (the default), "pool" (of 127.0.0.1:1) or "balancer" (over 127.0.0.1:1).
 * One line per set, in order: {"index": i, "error": null} or {"index": i,
 * "error": name, "message": text}. Nothing connects: the constructor checks them.
 */

const { ConnectionPool, IPCClient, LoadBalancedClient } = require('../../js-client');

const NUMBERS = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
process.removeAllListeners('warning'); // an unknown option's warning is not what these ask

const MAKE = {
  client: (options) => new IPCClient('app', options),
  pool: (options) => new ConnectionPool('app', { host: '127.0.0.1', port: 1, ...options }),
  balancer: (options) => new LoadBalancedClient('app', ['127.0.0.1:1'], options)
};

const revive = (value) =>
  value !== null && typeof value === 'object'
    ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]))
    : typeof value === 'string' && Object.hasOwn(NUMBERS, value) ? NUMBERS[value] : value;

const sets = JSON.parse(process.argv[2]);
const make = MAKE[process.argv[3] ?? 'client'];
sets.forEach((set, index) => {
  try {
    make(revive(set));
    console.log(JSON.stringify({ index, error: null }));
  } catch (err) {
    console.log(JSON.stringify({ index, error: err.name, message: err.message }));
  }
});
