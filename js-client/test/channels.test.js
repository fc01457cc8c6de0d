'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { validateChannel, validatePattern, isPattern, isReserved, patternMatches } = require('../lib/channels');
const { ErrorCode } = require('../lib/errors');

test('channels - valid channels', () => {
  for (const c of ['orders', 'orders.created', '$sys.services', 'a.b.c.d', 'x'.repeat(512)]) {
    assert.equal(validateChannel(c), c);
  }
});

test('channels - invalid channels are bad_message', () => {
  for (const c of ['', 'a..b', '.a', 'a.', ' a', 'a. b', 'orders.*', 'orders.>', 'x'.repeat(513), 5, null]) {
    assert.throws(() => validateChannel(c), { code: ErrorCode.BAD_MESSAGE }, String(c));
  }
});

test('channels - valid and invalid patterns (§4.3)', () => {
  for (const p of ['orders.*', 'orders.>', '*', '>', '*.*.x', 'a.*.>']) assert.equal(validatePattern(p), p);
  for (const p of ['ord*', 'orders.>.x', 'a.b>', '>.a', '', 'a..*']) {
    assert.throws(() => validatePattern(p), { code: ErrorCode.BAD_MESSAGE }, p);
  }
});

test('channels - "*" matches exactly one token (§4.2)', () => {
  assert.ok(patternMatches('orders.*', 'orders.created'));
  assert.ok(!patternMatches('orders.*', 'orders'));
  assert.ok(!patternMatches('orders.*', 'orders.eu.created'));
  assert.ok(patternMatches('*.created', 'orders.created'));
  assert.ok(patternMatches('a.*.c', 'a.b.c'));
  assert.ok(!patternMatches('a.*.c', 'a.b.d'));
});

test('channels - ">" matches one or more trailing tokens (§4.2)', () => {
  assert.ok(patternMatches('orders.>', 'orders.created'));
  assert.ok(patternMatches('orders.>', 'orders.eu.created'));
  assert.ok(!patternMatches('orders.>', 'orders'));
  assert.ok(patternMatches('>', 'anything.at.all'));
  assert.ok(patternMatches('*.>', 'a.b'));
  assert.ok(!patternMatches('*.>', 'a'));
});

test('channels - exact names match only themselves', () => {
  assert.ok(patternMatches('orders.created', 'orders.created'));
  assert.ok(!patternMatches('orders.created', 'orders.create'));
  assert.ok(!patternMatches('orders', 'orders.created'));
});

test('channels - isPattern and isReserved (§4.4)', () => {
  assert.ok(isPattern('a.*') && isPattern('a.>') && !isPattern('a.b'));
  assert.ok(isReserved('system') && isReserved('system.x') && isReserved('$sys.services'));
  assert.ok(!isReserved('systems') && !isReserved('my.system'));
});

test('channels - a channel found valid once is valid again; a bad one is refused every time, however many came between', () => {
  for (let i = 0; i < 3000; i++) assert.equal(validateChannel(`svc.n${i}`), `svc.n${i}`);
  for (let round = 0; round < 2; round++) {
    for (const c of ['a..b', 'orders.*', ' a', 5]) assert.throws(() => validateChannel(c), { code: ErrorCode.BAD_MESSAGE }, String(c));
    assert.equal(validateChannel('svc.n2999'), 'svc.n2999');
    assert.equal(validateChannel('svc.n0'), 'svc.n0');
  }
});
