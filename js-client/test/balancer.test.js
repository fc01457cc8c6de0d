'use strict';

// Server selection (§8) without sockets: the four strategies, health and
// exclusion, per-server statistics and the server list syntax.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Strategy, Balancer, ServerState, parseServer } = require('../lib/balancer');

/**
 * ServerStates from weights.
 * @param {...number} weights
 */
function servers(...weights) {
  return weights.map((weight, i) => new ServerState({ host: 'h', port: 1000 + i, weight }));
}

/**
 * Picks `n` times and returns the chosen ports.
 */
function picks(balancer, n, exclude) {
  return Array.from({ length: n }, () => balancer.pick(exclude)?.port ?? null);
}

test('balancer - parses "host:port", [host, port] and {host, port, weight}', () => {
  assert.deepEqual(parseServer('127.0.0.1:8888'), { host: '127.0.0.1', port: 8888, weight: 1 });
  assert.deepEqual(parseServer('[::1]:9'), { host: '::1', port: 9, weight: 1 });
  assert.deepEqual(parseServer(['a', 1]), { host: 'a', port: 1, weight: 1 });
  assert.deepEqual(parseServer({ host: 'b', port: 2, weight: 3 }), { host: 'b', port: 2, weight: 3 });
  assert.deepEqual(parseServer({ port: 2 }), { host: 'localhost', port: 2, weight: 1 });
  // The port of "host:port" in decimal digits only, as Python reads it (Number() took '0x50', '1e2', ' 80').
  // In an array or object the port and weight are numbers, as Python's parse_server takes them (['a', '80'] passed here only).
  for (const bad of ['nohost', ':1', 'a:0', 'a:x', 'a:0x50', 'a:1e2', 'a: 80', 'a:80.0', 'a:+80', 'a:８８８８', ['a'], ['a', '80'], ['a', ' 80'], { host: 'a', port: '80' }, { host: 'a', port: 1, weight: '2' }, { host: 'a', port: 1, weight: 0 }, null, 5]) {
    assert.throws(() => parseServer(bad), TypeError, JSON.stringify(bad));
  }
  // What was given, NaN and BigInts included (JSON.stringify wrote null, or threw a TypeError of its own).
  assert.throws(() => parseServer(['a', NaN]), { message: 'a server is "host:port", [host, port] or {host, port, weight}, got ["a",NaN]' });
  assert.throws(() => parseServer({ host: 'a', port: 1, weight: NaN }), { message: 'a server weight must be a positive number, got NaN' });
  assert.throws(() => parseServer({ host: 'a', port: 1n }), { message: /got \{"host":"a","port":1n\}$/ });
});

test('balancer - round robin cycles through the healthy servers', () => {
  const list = servers(1, 1, 1);
  const b = new Balancer(list);
  assert.equal(b.strategy, Strategy.ROUND_ROBIN);
  assert.deepEqual(picks(b, 6), [1000, 1001, 1002, 1000, 1001, 1002]);
  list[1].healthy = false;
  assert.deepEqual(picks(b, 4), [1000, 1002, 1000, 1002]);
  list[1].healthy = true;
  assert.deepEqual(new Set(picks(b, 3)), new Set([1000, 1001, 1002]));
});

test('balancer - no healthy server left, or all excluded: null', () => {
  const list = servers(1, 1);
  for (const strategy of Object.values(Strategy)) {
    const b = new Balancer(list, { strategy });
    assert.equal(b.pick(new Set(list)), null, strategy);
    assert.equal(b.pick(new Set([list[0]])).port, 1001, strategy);
  }
  list[0].healthy = list[1].healthy = false;
  assert.equal(new Balancer(list).pick(), null);
});

test('balancer - least connections picks the server with the fewest calls in flight', () => {
  const list = servers(1, 1, 1);
  const b = new Balancer(list, { strategy: Strategy.LEAST_CONNECTIONS });
  list[0].inFlight = 3;
  list[1].inFlight = 1;
  list[2].inFlight = 2;
  assert.equal(b.pick().port, 1001);
  list[1].inFlight = 5;
  assert.equal(b.pick().port, 1002);
  list[2].healthy = false;
  assert.equal(b.pick().port, 1000);
  // Ties spread: an idle cluster is not all sent to the first server.
  for (const s of list) {
    s.inFlight = 0;
    s.healthy = true;
  }
  assert.equal(new Set(picks(b, 3)).size, 3);
});

test('balancer - least connections follows begin()/end() as calls run', () => {
  const list = servers(1, 1);
  const b = new Balancer(list, { strategy: Strategy.LEAST_CONNECTIONS });
  const running = [];
  for (let i = 0; i < 10; i++) {
    const s = b.pick();
    s.begin();
    running.push(s);
  }
  assert.deepEqual(list.map((s) => s.inFlight), [5, 5]);
  running.filter((s) => s === list[0]).forEach((s) => s.end(true, 1));
  assert.deepEqual(picks(b, 3), [1000, 1000, 1000]);
});

test('balancer - smooth weighted round robin: exact shares, interleaved', () => {
  const list = servers(5, 1, 1);
  const b = new Balancer(list, { strategy: Strategy.WEIGHTED });
  assert.deepEqual(picks(b, 7), [1000, 1000, 1001, 1000, 1002, 1000, 1000]);
  const counts = new Map();
  for (const port of picks(b, 7000)) counts.set(port, (counts.get(port) ?? 0) + 1);
  assert.deepEqual([...counts.entries()].sort(), [[1000, 5000], [1001, 1000], [1002, 1000]]);
});

test('balancer - weighted skips unhealthy servers and keeps the others\' ratio', () => {
  const list = servers(3, 1, 2);
  const b = new Balancer(list, { strategy: Strategy.WEIGHTED });
  list[2].healthy = false;
  const got = picks(b, 400);
  assert.equal(got.filter((p) => p === 1000).length, 300);
  assert.equal(got.filter((p) => p === 1001).length, 100);
});

test('balancer - random uses the injected source', () => {
  const list = servers(1, 1, 1, 1);
  const seq = [0, 0.26, 0.5, 0.99, 0.999999];
  const b = new Balancer(list, { strategy: Strategy.RANDOM, random: () => seq.shift() });
  assert.deepEqual(picks(b, 5), [1000, 1001, 1002, 1003, 1003]);
  list[0].healthy = false;
  const c = new Balancer(list, { strategy: Strategy.RANDOM, random: () => 0 });
  assert.equal(c.pick().port, 1001);
});

test('balancer - server statistics', () => {
  const [s] = servers(2);
  assert.deepEqual(s.snapshot(), {
    host: 'h', port: 1000, weight: 2, healthy: true, inFlight: 0, requests: 0, errors: 0, errorRate: 0, averageLatencyMs: null
  });
  s.begin();
  s.begin();
  assert.equal(s.snapshot().inFlight, 2);
  assert.equal(s.snapshot().requests, 0); // counted once they end (as Python)
  s.end(true, 10);
  s.end(false, 30);
  const snap = s.snapshot();
  assert.equal(snap.inFlight, 0);
  assert.equal(snap.requests, 2);
  assert.equal(snap.errors, 1);
  assert.equal(snap.errorRate, 0.5);
  assert.equal(snap.averageLatencyMs, 20);
  assert.equal(s.address, 'h:1000');
});

test('balancer - bad strategy or empty list throws', () => {
  assert.throws(() => new Balancer(servers(1), { strategy: 'fastest' }), TypeError);
  assert.throws(() => new Balancer([]), TypeError);
});
