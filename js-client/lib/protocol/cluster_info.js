'use strict';

/**
 * What the handshake says about clusters (docs/protocol.md §3 item 10,
 * §15.1 item 6; docs/cluster.md §6): a client asks for the feature
 * `cluster`; a server in cluster mode grants it and names its cluster in
 * the reply's `cluster`, so a client over several servers knows which of
 * them deliver the same publishes. A standalone server grants nothing new.
 *
 * Pure; the Python mirror is `ipc_protocol/cluster_info.py`.
 */

const { FEATURES } = require('./streams');

const CLUSTER = 'cluster';
/** What the client asks for: every feature of §15.1, `cluster` last. */
const ASKED_FEATURES = Object.freeze([...FEATURES, CLUSTER]);

/**
 * The cluster a connect reply names.
 * @param {object} reply the reply's payload.
 * @returns {string|null} null: a standalone server, or one older than the feature.
 */
function clusterOf(reply) {
  const name = reply?.[CLUSTER];
  return typeof name === 'string' && name.length > 0 ? name : null;
}

module.exports = { CLUSTER, ASKED_FEATURES, clusterOf };
