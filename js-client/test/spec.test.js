'use strict';

/**
 * The Node client against the language-neutral spec in interop-tests/spec/
 * (options, states, events), as errors.test.js does for error codes; the
 * Python suite asserts the same files (tests/test_spec.py).
 */

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { DEFAULTS } = require('../lib/constants');
const { State, TRANSITIONS } = require('../lib/state');
const { LEGACY_ALIASES } = require('../lib/legacy_options');
const protocol = require('../lib/protocol/protocol');

const SPEC = path.resolve(__dirname, '..', '..', 'interop-tests', 'spec');

function load(name) {
  return JSON.parse(fs.readFileSync(path.join(SPEC, name), 'utf8'));
}

/** The spec's default as the Node client holds it (durations are ms in both). */
function nodeDefault(option) {
  return option.default === 'unlimited' ? Infinity : option.default;
}

test('spec - every option has the spec default', () => {
  for (const option of load('options.json').options) {
    assert.ok(Object.hasOwn(DEFAULTS, option.node), `DEFAULTS has no ${option.node}`);
    assert.deepEqual(DEFAULTS[option.node], nodeDefault(option), option.node);
  }
});

test('spec - the client has no option the spec does not name', () => {
  const spec = load('options.json');
  const named = new Set([...spec.options.map((o) => o.node), ...spec.node_only.map((o) => o.node)]);
  assert.deepEqual(Object.keys(DEFAULTS).sort(), [...named].sort());
  for (const o of spec.node_only) assert.deepEqual(DEFAULTS[o.node], o.default, o.node);
});

test('spec - the legacy aliases are the spec', () => {
  const spec = load('options.json');
  assert.deepEqual(
    Object.fromEntries(spec.node_legacy_aliases.map((a) => [a.node, a.means])),
    { ...LEGACY_ALIASES }
  );
});

test('spec - the state table is the spec', () => {
  const table = load('states.json').client;
  assert.deepEqual(Object.values(State).sort(), Object.keys(table).sort());
  for (const [from, targets] of Object.entries(table)) {
    assert.deepEqual([...TRANSITIONS[from]].sort(), [...targets].sort(), from);
  }
});

test('spec - the protocol state table is the spec', () => {
  const table = load('states.json').protocol;
  assert.deepEqual(Object.values(protocol.ProtocolState).sort(), Object.keys(table).sort());
  for (const [from, targets] of Object.entries(table)) {
    assert.deepEqual([...protocol.TRANSITIONS[from]].sort(), [...targets].sort(), from);
  }
});

test('spec - the client emits exactly the spec events (names read from its modules)', () => {
  const lib = path.resolve(__dirname, '..', 'lib');
  const clientModules = ['client', 'lifecycle', 'reconnect', 'outbox', 'subscriptions', 'introspection', 'calls', 'admission', 'connection'];
  const emitted = new Set();
  for (const name of clientModules) {
    const file = path.join(lib, `${name}.js`);
    if (!fs.existsSync(file)) continue;
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/_emitSafely\('([a-z_]+)'/g)) emitted.add(m[1]);
  }
  // The breakers' events are emitted as `circuit_${state}`, errors through _emitError().
  const clientSource = fs.readFileSync(path.join(lib, 'client.js'), 'utf8');
  assert.match(clientSource, /_emitSafely\(`circuit_\$\{state\}`/);
  const { CircuitState } = require('../lib/circuit_breaker');
  for (const state of Object.values(CircuitState)) emitted.add(`circuit_${state}`);
  emitted.add('error');
  const spec = load('events.json');
  assert.deepEqual([...emitted].sort(), [...spec.events.map((e) => e.name), ...spec.node_only].sort());
});

test('spec - queue_dropped: the reasons the outbox drops a queued message for are the spec\'s (read from lib/outbox.js)', () => {
  const source = fs.readFileSync(path.resolve(__dirname, '..', 'lib', 'outbox.js'), 'utf8');
  const used = new Set([...source.matchAll(/this\._drop\(\w+, '([a-z_]+)'/g)].map((m) => m[1]));
  const event = load('events.json').events.find((e) => e.name === 'queue_dropped');
  assert.deepEqual([...used].sort(), [...event.reasons].sort());
  for (const reason of event.reasons) assert.ok(event.when.includes(reason), reason);
});
