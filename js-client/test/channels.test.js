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

test('channels - a wildcard inside a token is no channel and no pattern (§4.3), with the Python wording', () => {
  for (const name of ['ord*', 'orders.ord*', 'a.b>', 'a.>b', '**', '>>', '*>', 'a.*b.c']) {
    assert.throws(() => validateChannel(name), { code: ErrorCode.BAD_MESSAGE, message: `channel ${JSON.stringify(name)}: wildcards must be whole tokens` });
    assert.throws(() => validatePattern(name), { code: ErrorCode.BAD_MESSAGE, message: `pattern ${JSON.stringify(name)}: wildcards must be whole tokens` });
  }
});

test('channels - a wildcard character is only ever a wildcard token, so isPattern() is false for every channel', () => {
  for (const name of ['orders', 'orders.created', '$sys.services', 'a-b.c_d', '\u00e9.\u{1F600}']) {
    assert.equal(validateChannel(name), name);
    assert.equal(isPattern(name), false, name);
    for (const pattern of [`${name}.*`, `${name}.>`, `*.${name}`]) {
      assert.equal(validatePattern(pattern), pattern);
      assert.equal(isPattern(pattern), true, pattern);
    }
  }
});

test('channels - a name that is not valid Unicode (a lone surrogate) is bad_message (§1.1), with the Python wording', () => {
  for (const name of ['svc.a\ud800', 'x.\udc00', '\udbff', 'a.\ude00\ud83d']) {
    for (const [validate, what] of [[validateChannel, 'channel'], [validatePattern, 'pattern']]) {
      assert.throws(() => validate(name), { code: ErrorCode.BAD_MESSAGE, message: `${what} ${JSON.stringify(name)} holds a lone surrogate, which is not valid Unicode` });
    }
  }
  assert.equal(validateChannel('a.\ud83d\ude00'), 'a.\ud83d\ude00'); // a pair is one character (an emoji)
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

test('channels - the rules are Python\'s (ipc_protocol.channels): str.isspace() at a token\'s edge, length in code points', () => {
  // Python's str.isspace(), which str.strip() removes: refused at either end of a token, fine inside.
  const spaces = '\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
  for (const s of spaces) {
    for (const c of [`a.${s}b`, `a.b${s}`, `${s}a`]) assert.throws(() => validateChannel(c), { code: ErrorCode.BAD_MESSAGE }, JSON.stringify(c));
    assert.throws(() => validatePattern(`${s}a.*`), { code: ErrorCode.BAD_MESSAGE }, JSON.stringify(s));
    assert.equal(validateChannel(`a.b${s}c`), `a.b${s}c`);
  }
  // Not spaces to Python though JS trim() strips U+FEFF; nor U+180E, U+200B.
  for (const c of ['a.\ufeffb', '\ufeffa', 'a\ufeff', 'a.\u180eb', 'a.\u200bb']) assert.equal(validateChannel(c), c);
  // 512 characters at most, an emoji (two UTF-16 units) being one.
  const emoji = '\u{1F600}';
  for (const c of ['a.' + emoji.repeat(300), emoji.repeat(512), 'x'.repeat(511) + emoji]) {
    assert.equal(validateChannel(c), c);
    assert.equal(validatePattern(c), c);
  }
  for (const c of [emoji.repeat(513), 'x'.repeat(512) + emoji, emoji.repeat(1000)]) {
    assert.throws(() => validateChannel(c), { code: ErrorCode.BAD_MESSAGE });
    assert.throws(() => validatePattern(c), { code: ErrorCode.BAD_MESSAGE });
  }
});
