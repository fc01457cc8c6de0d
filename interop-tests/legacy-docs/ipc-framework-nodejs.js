'use strict';

/**
 * What the code blocks of ipc-framework-nodejs.md get from
 * `require('./ipc-framework-nodejs')` in place of
 * `require('@ifesol/ipc-framework-nodejs')`: the ipc-bridge Node client
 * (js-client), as it is.
 *
 * The only change is the port. The blocks connect to the legacy default,
 * 8888 (no `port` option, or `port: 8888` / `'8888'`); the tests run the
 * server on a free port, given in IPC_TEST_PORT, and this subclass puts it
 * in place of 8888. Any other port passes through untouched, and without
 * IPC_TEST_PORT nothing is changed. Nothing more.
 */

const bridge = require('../../js-client');

const LEGACY_DEFAULT_PORT = 8888;

function testPort(options) {
  const port = Number(process.env.IPC_TEST_PORT);
  if (!process.env.IPC_TEST_PORT || !Number.isInteger(port)) return options;
  if (options === undefined) return { port };
  if (options === null || typeof options !== 'object') return options;
  const given = options.port;
  if (given === undefined || given === LEGACY_DEFAULT_PORT || given === String(LEGACY_DEFAULT_PORT)) {
    return { ...options, port };
  }
  return options;
}

class IPCClient extends bridge.IPCClient {
  constructor(appId, options) {
    super(appId, testPort(options));
  }
}

module.exports = { ...bridge, IPCClient };
