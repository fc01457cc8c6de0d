'use strict';

/**
 * A pool's KPIs: its members' getMetrics() summed (docs/resilience.md §2).
 * Counters of destroyed members are kept, so a pool's totals do not drop
 * when a connection is replaced; rates and averages are recomputed from the
 * sums, since adding up rates means nothing. A mean is weighted by the count
 * it is a mean over, a destroyed member's too (its part kept in the retired
 * sum), and rounded to 3 decimals as a client's is. Every key is there whether or
 * not a member is live, the current ones (CURRENT_METRICS) at 0 then.
 * Mirrors ipc_client/pool_metrics.py.
 */

const { roundMs } = require('./metrics');

/** Metrics that are current values, not counters: a destroyed member's no longer count. */
const CURRENT_METRICS = new Set(['activeConnections', 'queued', 'queuedBytes', 'cacheSize']);

/** The averages sumMetrics() weighs, each by the count it is a mean over. */
const AVERAGES = ['averageReconnectionTimeMs', 'averageConnectionDurationMs'];

/**
 * Sums the KPIs of several clients (§2), recomputing rates and averages
 * from the sums rather than adding them up.
 * @param {object[]} parts getMetrics() results.
 * @returns {object}
 */
function sumMetrics(parts) {
  const out = combine(parts);
  for (const key of AVERAGES) if (key in out) out[key] = roundMs(out[key]);
  return out;
}

/**
 * sumMetrics() with its averages unrounded: the retired sum keeps them so,
 * so rounding happens once, when a pool reports (as in Python).
 * @param {object[]} parts
 * @returns {object}
 * @private
 */
function combine(parts) {
  const out = {};
  for (const part of parts) {
    for (const [key, value] of Object.entries(part)) {
      if (typeof value === 'number' && Number.isFinite(value)) out[key] = (out[key] ?? 0) + value;
    }
  }
  const ratio = (num, den) => (den > 0 ? num / den : 1);
  if ('connectionSuccessRate' in out) out.connectionSuccessRate = ratio(out.connectionSuccesses ?? 0, out.connectionAttempts ?? 0);
  if ('messageDeliveryRate' in out) {
    const delivered = out.messagesDelivered ?? 0;
    out.messageDeliveryRate = ratio(delivered, delivered + (out.messagesFailed ?? 0));
  }
  const weighted = (avgKey, weightKey) => {
    if (!(avgKey in out)) return;
    let total = 0;
    let weight = 0;
    for (const part of parts) {
      const w = typeof part[weightKey] === 'number' ? part[weightKey] : 0;
      if (typeof part[avgKey] === 'number' && w > 0) {
        total += part[avgKey] * w;
        weight += w;
      }
    }
    out[avgKey] = weight > 0 ? total / weight : 0;
  };
  weighted('averageReconnectionTimeMs', 'reconnections');
  weighted('averageConnectionDurationMs', 'connectionSuccesses');
  return out;
}

/**
 * Every key of a member's getMetrics() at 0: the first part of a pool's sum,
 * so that it reports every key whether or not a member is live (before
 * start(), while its server is down, after close()), the current ones at 0,
 * as the Python pool does.
 * @param {object} snapshot a client's getMetrics().
 * @returns {object}
 */
function zeroMetrics(snapshot) {
  const out = {};
  for (const [key, value] of Object.entries(snapshot)) if (typeof value === 'number') out[key] = 0;
  return out;
}

/**
 * Folds a destroyed member's last KPIs into the retired sum: one object,
 * however many members died.
 * @param {object|null} retired the sum so far, null for none.
 * @param {object} final the member's getMetrics().
 * @returns {object}
 */
function foldRetired(retired, final) {
  const counters = { ...final };
  for (const key of CURRENT_METRICS) delete counters[key];
  return combine(retired === null ? [counters] : [retired, counters]);
}

module.exports = { sumMetrics, foldRetired, zeroMetrics };
