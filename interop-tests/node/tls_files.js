'use strict';

/**
 * The Python tests make certificates with trustme and pass their file
 * paths; the js-client's `tls` option takes their contents, as
 * tls.connect() does. `{caFile, certFile, keyFile, ...}` -> `{ca, cert, key, ...}`.
 */

const fs = require('node:fs');

/**
 * @param {object} options client options, maybe with a `tls` object naming files.
 * @returns {object} the same options, the files read.
 */
function withTlsFiles(options) {
  const tls = options.tls;
  if (tls === null || typeof tls !== 'object') return options;
  const { caFile, certFile, keyFile, ...rest } = tls;
  const files = {};
  if (caFile !== undefined) files.ca = fs.readFileSync(caFile);
  if (certFile !== undefined) files.cert = fs.readFileSync(certFile);
  if (keyFile !== undefined) files.key = fs.readFileSync(keyFile);
  return { ...options, tls: { ...rest, ...files } };
}

module.exports = { withTlsFiles };
