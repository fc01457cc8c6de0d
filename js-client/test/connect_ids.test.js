'use strict';

// The ids a connect names have a maximum length (docs/protocol.md §3 item 12):
// the client refuses, at construction, what the server would refuse.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient } = require('..');
const { MAX_CONNECT_ID_LENGTH } = require('../lib/constants');

test('connect ids - the limit is the server\'s, 256 characters', () => {
  assert.equal(MAX_CONNECT_ID_LENGTH, 256);
});

test('connect ids - an appId, connectionId or user over the limit throws RangeError at construction', () => {
  const long = 'x'.repeat(MAX_CONNECT_ID_LENGTH + 1);
  assert.throws(() => new IPCClient(long), { name: 'RangeError', message: /appId must be at most 256 characters, got 257/ });
  assert.throws(() => new IPCClient('app', { connectionId: long }), { name: 'RangeError', message: /connectionId must be at most 256/ });
  assert.throws(() => new IPCClient('app', { user: long, token: 't' }), { name: 'RangeError', message: /user must be at most 256/ });
});

test('connect ids - the limit counts code points, as the server does: 256 emoji fit', () => {
  const emoji = '\u{1F600}'.repeat(MAX_CONNECT_ID_LENGTH); // 512 UTF-16 units
  const client = new IPCClient(emoji, { connectionId: emoji, user: emoji, token: 't' });
  assert.equal(client.appId, emoji);
  assert.throws(() => new IPCClient(emoji + 'x'), RangeError);
});
