'use strict';

// The words of a refusal (docs/typed-contracts.md §2): Node's checker on the
// schemas pydantic publishes answers what pydantic answers, choices as
// Python's repr() writes them and bounds as pydantic-core does. The list is
// shared with tests/test_contracts.py, which checks pydantic against it.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { validate } = require('../lib/contracts');
const { show, pyNumber, pyFloat } = require('../lib/contract_errors');
const { ROOT } = require('./helpers');

const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'contract_messages.json'), 'utf8'));

test('contract message vectors shared with the Python side', () => {
  assert.ok(SPEC.vectors.length > 30);
  for (const { python, schema, value, errors } of SPEC.vectors) assert.deepEqual(validate(schema, value), errors, python);
});

test('a bound is written as Rust writes an f64, a choice as Python repr() writes it', () => {
  const bounds = [[1e-7, '0.0000001'], [1e21, '1000000000000000000000'], [1.5e300, `15${'0'.repeat(299)}`], [0.1, '0.1'],
    [123456789012345678, '123456789012345680'], [-0, '-0'], [5e-324, `0.${'0'.repeat(323)}5`], [1, '1'], [-2.5e-5, '-0.000025']];
  for (const [n, text] of bounds) assert.equal(pyNumber(n), text, String(n));
  const floats = [[1e-7, '1e-07'], [1e16, '1e+16'], [1e15, '1000000000000000.0'], [0.0001, '0.0001'], [1.5e300, '1.5e+300'], [-0, '-0.0'], [5e-324, '5e-324'], [2, '2.0']];
  for (const [n, text] of floats) assert.equal(pyFloat(n), text, String(n));
  assert.equal(show([1, 'a', null, { "it's": true }]), `[1, 'a', None, {"it's": True}]`);
});
