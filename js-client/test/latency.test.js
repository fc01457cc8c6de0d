'use strict';

// The sliding-window latency statistics of the service client (§9), on
// explicit times.

const test = require('node:test');
const assert = require('node:assert/strict');
const { LatencyWindow, percentile, DEFAULT_WINDOW_SIZE } = require('../lib/latency');

test('latency - an empty window has no figures and no rate', () => {
  const w = new LatencyWindow();
  assert.equal(w.size, DEFAULT_WINDOW_SIZE);
  assert.deepEqual(w.snapshot(100), { count: 0, avg: null, p50: null, p99: null, perSecond: 0 });
});

test('latency - percentiles by nearest rank', () => {
  const values = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile(values, 0), 1);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 50), null);
});

test('latency - avg, p50, p99 over the recorded calls, in any order', () => {
  const w = new LatencyWindow(1000);
  for (let i = 1000; i >= 1; i--) w.record(i, 0);
  const s = w.snapshot(1000);
  assert.equal(s.count, 1000);
  assert.equal(s.avg, 500.5);
  assert.equal(s.p50, 500);
  assert.equal(s.p99, 990);
});

test('latency - the window keeps only the last N calls', () => {
  const w = new LatencyWindow(4);
  for (const v of [1000, 1000, 1, 2, 3, 4]) w.record(v, 0);
  const s = w.snapshot(10);
  assert.equal(s.count, 4);
  assert.equal(s.avg, 2.5);
  assert.equal(s.p99, 4);
});

test('latency - the rate is the window over the time since its oldest call started', () => {
  const w = new LatencyWindow(3);
  w.record(5, 0); // falls out
  w.record(5, 1000);
  w.record(5, 1500);
  w.record(5, 2000);
  assert.equal(w.snapshot(3000).perSecond, 1.5); // 3 calls over 2 s
  assert.equal(w.snapshot(7000).perSecond, 0.5); // and it falls when calls stop
});

test('latency - a bad size throws', () => {
  assert.throws(() => new LatencyWindow(0), TypeError);
  assert.throws(() => new LatencyWindow(1.5), TypeError);
});
