'use strict';

/**
 * A schema's `pattern` read as pydantic reads it (lib/contract_patterns.js,
 * docs/typed-contracts.md §3): Rust's regex syntax and Unicode classes,
 * Python's `re` for what only it reads, and no check at all for what has
 * no faithful translation. Each verdict below is pydantic's (2.x, both
 * engines); interop-tests/test_typed_contracts.py holds a Python and a Node
 * responder to the same ones over the wire.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { compilePattern } = require('../lib/contract_patterns');
const { checkSchemaOption, validate } = require('../lib/contracts');

/** [pattern, what pydantic accepts, what it refuses] */
const RUST = [
  ['\\A[A-Z]{2}\\d+\\z', ['AB12', 'AB١٢'], ['AAB12z', 'AB12\n', 'ab12']], // \A and \z anchor; \d is Unicode
  ['^\\w+$', ['José', 'a_b', 'e\u0301', 'Ⅷ'], ['a b', '²', 'a-b']],
  ['^\\d+$', ['123', '١٢٣'], ['12a', '²']],
  ['^\\s$', [' ', '\u00a0', '\u0085'], ['\ufeff', 'a']],
  ['^.$', ['\r', 'é', '😀'], ['\n']], // `.` stops at \n alone
  ['^[^\\n]$', ['\r'], ['\n']],
  ['\\bé\\b', ['x é y', 'é'], ['xé']], // a Unicode word boundary
  ['(?i)^abc$', ['ABC', 'aBc'], ['ab']],
  ['(?m)^b$', ['a\nb'], ['a\rb', 'ab']],
  ['(?s)^.$', ['\n'], ['ab']],
  ['^\\p{Greek}+$', ['αβ'], ['a', '\u0342']], // a bare script name: Script, not Script_Extensions
  ['^\\p{greek}+$', ['αβ'], ['a']],
  ['^\\pL+$', ['αb'], ['1']],
  ['^\\p{sc=Han}+$', ['中文'], ['a']],
  ['^[[:alpha:]]+$', ['abc'], ['é', '1']],
  ['^[a[bc]]+$', ['abcb'], ['d']],
  ['^\\x{41}\\u0042\\U00000043$', ['ABC'], ['abc']],
  ['^[A-Z]+\\-\\d+$', ['AB-12'], ['ab-12']],
  ['^[a-z\\_]+$', ['a_b'], ['a-b']],
  ['^a}$', ['a}'], ['a']],
  ['\\<a', ['a', 'x a'], ['ba']]
];
// Only Python's `re` reads these (pydantic's regex_engine='python-re'): its `\w`, and `$` before a last newline.
const PYTHON = [
  ['(?=.*\\d)^.{4,}$', ['abc1'], ['abcd', 'a1']],
  ['^(a)\\1$', ['aa'], ['ab']],
  ['^(?P<x>a)(?P=x)$', ['aa'], ['ab']],
  ['^(?!ab)\\w+$', ['ac', 'ac\n', '²'], ['ab', 'e\u0301']],
  ['^a\\Z', ['a'], ['a\n']]
];

test('contract patterns - Rust\'s syntax and Unicode classes, as pydantic checks a pattern', () => {
  for (const [pattern, good, bad] of [...RUST, ...PYTHON]) {
    const re = compilePattern(pattern);
    assert.ok(re instanceof RegExp, pattern);
    for (const value of good) assert.equal(re.test(value), true, `${pattern} should accept ${JSON.stringify(value)}`);
    for (const value of bad) assert.equal(re.test(value), false, `${pattern} should refuse ${JSON.stringify(value)}`);
  }
});

test('contract patterns - what has no faithful translation is not checked, never checked wrongly', () => {
  for (const pattern of ['(?x) a b', 'a(?i)bc', '(?i:a)b', '^[a-z&&[^b]]+$', '^(?U)a+$', '^\\p{Whatever}$', '^[^\\W]$']) {
    assert.equal(compilePattern(pattern), null, pattern);
    const schema = checkSchemaOption({ request: { type: 'string', pattern } }).request;
    assert.deepEqual(validate(schema, 'anything at all'), [], pattern);
  }
  assert.equal(compilePattern('([a-z'), undefined); // no pattern in any dialect: serve() refuses it
  assert.throws(() => checkSchemaOption({ request: { type: 'string', pattern: '([a-z' } }), TypeError);
});

test('contract patterns - a refusal names the pattern as the schema writes it', () => {
  const schema = { type: 'object', properties: { code: { type: 'string', pattern: '\\A[A-Z]{2}\\d+\\z' } } };
  assert.deepEqual(validate(schema, { code: 'AAB12z' }), [
    { loc: ['code'], msg: "String should match pattern '\\A[A-Z]{2}\\d+\\z'", type: 'string_pattern_mismatch' }
  ]);
});
