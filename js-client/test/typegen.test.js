'use strict';

/**
 * The TypeScript generator (lib/typegen.js, bin/ipc-bridge-types.js):
 * describe answers in, declarations out. That they compile, and refuse
 * misuse, is checked with tsc by interop-tests/test_typed_contracts.py.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { generateTypes, apiNameOf, SchemaTooDeep } = require('../lib/typegen');
const { templateParts, templateText, templateMatches, overlap } = require('../lib/typegen_channels');
const { main } = require('../bin/ipc-bridge-types');

const body = (text) => text.split('\n').filter((l) => !l.startsWith('//')).join('\n').trim();

test('typegen - the interface name comes from the app', () => {
  assert.equal(apiNameOf('shop'), 'ShopApi');
  assert.equal(apiNameOf('order-service.eu'), 'OrderServiceEuApi');
  assert.equal(apiNameOf('3d'), '_3dApi');
  assert.equal(apiNameOf(null), 'BridgeApi');
  assert.throws(() => generateTypes({ channels: {} }, { name: 'not valid' }), TypeError);
  assert.throws(() => generateTypes({ nope: 1 }), TypeError);
});

test('typegen - models, enums, optionals, lists, unions, tuples and maps', () => {
  const doc = {
    app: 'shop',
    channels: {
      'shop.quote': {
        request: {
          $defs: { Size: { enum: ['S', 'M'], type: 'string', title: 'Size' } },
          title: 'Ask',
          type: 'object',
          properties: {
            size: { $ref: '#/$defs/Size', description: 'Which one.' },
            at: { type: 'string', format: 'date-time' },
            blob: { type: 'string', format: 'binary' },
            maybe: { anyOf: [{ type: 'string' }, { type: 'null' }], default: null },
            both: { type: ['integer', 'null'] },
            pair: { type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }] },
            tags: { type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'integer' }] } },
            counts: { type: 'object', additionalProperties: { type: 'integer' } },
            'odd-key': { const: 'x' }
          },
          required: ['size', 'at', 'pair']
        },
        response: { type: 'array', items: { $ref: '#/$defs/Size' }, $defs: { Size: { enum: ['S', 'M'], type: 'string', title: 'Size' } } }
      },
      'shop.any': { request: {}, response: true }
    }
  };
  assert.equal(body(generateTypes(doc)), `export interface Ask {
  /** Which one. */
  size: Size;
  /** format: date-time (ISO 8601 string) */
  at: string;
  /** format: binary */
  blob?: Buffer;
  maybe?: string | null;
  both?: number | null;
  pair: [string, number];
  tags?: (string | number)[];
  counts?: {
    [key: string]: number;
  };
  "odd-key"?: "x";
}

export type Size = "S" | "M";

/** The channels of app "shop": what each request carries and what its answer is. */
export interface ShopApi {
  "shop.any": { request: unknown; response: unknown };
  "shop.quote": { request: Ask; response: Size[] };
}`);
});

test('typegen - one name per distinct model, recursive models, patterns as template keys', () => {
  const node = { title: 'Node', type: 'object', properties: { next: { anyOf: [{ $ref: '#' }, { type: 'null' }] } } };
  const itemA = { $defs: { Item: { title: 'Item', type: 'object', properties: { a: { type: 'string' } }, required: ['a'] } }, $ref: '#/$defs/Item' };
  const itemB = { $defs: { Item: { title: 'Item', type: 'object', properties: { b: { type: 'integer' } }, required: ['b'] } }, $ref: '#/$defs/Item' };
  const text = body(generateTypes({
    channels: {
      'a.one': { request: itemA, response: itemA },
      'a.two': { request: itemB, response: node },
      'jobs.*': { request: { type: 'string' }, response: { type: 'null' } },
      'a.>': { request: {}, response: {} }
    }
  }, { name: 'Api', app: 'x' }));
  assert.match(text, /export interface Item \{\n {2}a: string;\n\}/);
  assert.match(text, /export interface Item2 \{\n {2}b: number;\n\}/);
  assert.match(text, /export interface Node \{\n {2}next\?: Node \| null;\n\}/);
  // a.> covers a.one and a.two: they are tagged, and in its template's union.
  assert.match(text, /"a\.one": \{ request: Item; response: Item; channel: "a\.one" \};/);
  assert.match(text, /"a\.two": \{ request: Item2; response: Node; channel: "a\.two" \};/);
  assert.match(text, /\[channel: `a\.\$\{string\}`\]:\n {4}\| \{ request: unknown; response: unknown; channel: "a\.>" \}\n {4}\| \{ request: Item; response: Item; channel: "a\.one" \}\n/);
  assert.match(text, /\[channel: `jobs\.\$\{string\}`\]: \{ request: string; response: null; channel: "jobs\.\*" \};/);
  assert.match(text, /^\/\*\* The channels of app "x"/m);
});

test('typegen - patterns: one signature per template, holding every entry that may apply under it', () => {
  const int = { type: 'integer' };
  const text = body(generateTypes({
    channels: {
      'orders.*': { request: int, response: int },
      'orders.>': { request: int, response: { type: 'string' } },
      'orders.eu.north': { request: { type: 'string' }, response: { type: 'boolean' } },
      '*.eu': { request: { type: 'null' }, response: { type: 'null' } },
      'jobs.*': { request: int, response: int },
      news: { request: int, response: int }
    }
  }, { name: 'Api' }));
  // orders.* and orders.> share a template: one signature, not two (TS2374). The
  // exact orders.eu.north is under it (TS2411 unless in its union), and *.eu's
  // template overlaps it (orders.eu): TypeScript types such a name by the
  // intersection of both signatures, so each holds the other's entries. Each
  // entry is tagged with what serves it; news, under no template, is not.
  assert.equal(text, `/** The channels: what each request carries and what its answer is. */
export interface Api {
  [channel: \`\${string}.eu\`]:
    | { request: null; response: null; channel: "*.eu" }
    | { request: number; response: number; channel: "jobs.*" }
    | { request: number; response: number; channel: "orders.*" }
    | { request: number; response: string; channel: "orders.>" };
  [channel: \`jobs.\${string}\`]:
    | { request: null; response: null; channel: "*.eu" }
    | { request: number; response: number; channel: "jobs.*" };
  news: { request: number; response: number };
  [channel: \`orders.\${string}\`]:
    | { request: null; response: null; channel: "*.eu" }
    | { request: number; response: number; channel: "orders.*" }
    | { request: number; response: string; channel: "orders.>" }
    | { request: string; response: boolean; channel: "orders.eu.north" };
  "orders.eu.north": { request: string; response: boolean; channel: "orders.eu.north" };
}`);
});

test('typegen - template matching and overlap are TypeScript\'s, where ${string} takes dots and nothing too', () => {
  const t = (pattern) => templateParts(pattern);
  assert.deepEqual(t('a.*.b'), ['a.', '.b']);
  assert.deepEqual(t('orders.>'), ['orders.', '']);
  assert.deepEqual(t('*'), ['', '']);
  assert.equal(templateText(t('a.*.b')), 'a.${string}.b');
  assert.equal(templateText(t('a`b.${x}.*')), 'a\\`b.\\${x}.${string}');
  assert.ok(templateMatches(t('orders.*'), 'orders.eu.north')); // not a wire match, a template one
  assert.ok(templateMatches(t('orders.*'), 'orders.'));
  assert.ok(templateMatches(t('a.*.b.*.c'), 'a.x.b.y.b.z.c'));
  assert.ok(!templateMatches(t('a.*.a'), 'a.a'));
  assert.ok(!templateMatches(t('a.*.b.*.c'), 'a.x.c.b'));
  assert.ok(overlap(t('orders.*'), t('*.eu')));
  assert.ok(overlap(t('*'), t('a.*.b')));
  assert.ok(!overlap(t('orders.*'), t('jobs.*')));
  assert.ok(!overlap(t('*.eu'), t('*.us')));
});

test('typegen - a model never takes the name of a global the declarations use', () => {
  const text = body(generateTypes({
    channels: {
      upload: {
        request: {
          $defs: { Buffer: { title: 'Buffer', type: 'object', properties: { size: { type: 'integer' } }, required: ['size'] } },
          title: 'Upload',
          type: 'object',
          properties: { data: { type: 'string', format: 'binary' }, meta: { $ref: '#/$defs/Buffer' } },
          required: ['data', 'meta']
        },
        response: { type: 'string', format: 'binary' }
      }
    }
  }, { name: 'Api' }));
  assert.match(text, /export interface Upload \{\n {2}\/\*\* format: binary \*\/\n {2}data: Buffer;\n {2}meta: Buffer2;\n\}/);
  assert.match(text, /export interface Buffer2 \{\n {2}size: number;\n\}/);
  assert.match(text, /upload: \{ request: Upload; response: Buffer \};/);
  assert.doesNotMatch(text, /interface Buffer \{/);
  assert.throws(() => generateTypes({ channels: {} }, { name: 'Buffer' }), /would hide the global Buffer/);
});

test('typegen - the command reads a file and writes the declarations', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-types-'));
  const from = path.join(dir, 'schema.json');
  const out = path.join(dir, 'api.d.ts');
  fs.writeFileSync(from, JSON.stringify({ app: 'pricing', channels: { 'p.get': { request: { type: 'integer' }, response: { type: 'string' } } } }));
  const stderr = process.stderr.write;
  process.stderr.write = () => true;
  try {
    assert.equal(await main(['--from', from, '--out', out]), 0);
    assert.equal(await main(['--port', '1']), 2); // neither --app nor --from
    assert.equal(await main(['--bogus']), 2);
    assert.equal(await main(['--from', path.join(dir, 'missing.json')]), 2); // as schemas' target it cannot load
  } finally {
    process.stderr.write = stderr;
  }
  const text = fs.readFileSync(out, 'utf8');
  assert.match(text, /^\/\/ Generated by ipc-bridge-types from schema\.json \(app "pricing"\)/);
  assert.match(text, /export interface PricingApi \{\n {2}"p\.get": \{ request: number; response: string \};\n\}/);
});

test('typegen - the command connects as --user with the token of --token-file', async () => {
  const { Peer } = require('./helpers');
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply({ app: 'shop', channels: {} }) });
  await peer.listen();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-types-'));
  const tokenFile = path.join(dir, 'alice.token');
  fs.writeFileSync(tokenFile, 'alice-token\n');
  const stderr = process.stderr.write;
  process.stderr.write = () => true;
  try {
    const out = path.join(dir, 'api.d.ts');
    assert.equal(await main(['--port', String(peer.port), '--app', 'shop', '--user', 'alice', '--token-file', tokenFile, '--out', out]), 0);
    const connect = peer.received.find((m) => m.channel_id === 'system' && m.payload.action === 'connect');
    assert.equal(connect.payload.user, 'alice');
    assert.equal(connect.payload.token, 'alice-token');
    assert.equal(await main(['--app', 'shop', '--tls-key', tokenFile]), 2); // a key without its certificate
    assert.equal(await main(['--app', 'shop', '--token', 't', '--token-file', tokenFile]), 2);
    assert.equal(await main(['--app', 'shop', '--tls-ca', path.join(dir, 'missing.pem')]), 2);
  } finally {
    process.stderr.write = stderr;
    await peer.close();
  }
});

test('typegen - a cluster node missing from the describe answer fails the command unless --partial', async () => {
  const { Peer } = require('./helpers');
  // Two pages; the second names a node that did not answer in time (docs/cluster.md §4).
  const pages = [
    { channels: { 'a.x': { request: { type: 'integer' }, response: {} } }, total: 2, offset: 0, limit: 1, missing: [] },
    { channels: { 'a.y': { request: { type: 'string' }, response: {} } }, total: 2, offset: 1, limit: 1, missing: ['node-b'] }
  ];
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(pages[msg.payload.offset || 0]) });
  await peer.listen();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-types-'));
  const out = path.join(dir, 'api.d.ts');
  const lines = [];
  const stderr = process.stderr.write;
  process.stderr.write = (text) => lines.push(String(text)) > 0;
  try {
    assert.equal(await main(['--port', String(peer.port), '--app', 'shop', '--out', out]), 1);
    assert.equal(fs.existsSync(out), false);
    assert.match(lines.join(''), /cluster node node-b did not answer describe in time: its channels are not in the answer; ask again, or give --partial/);
    lines.length = 0;
    assert.equal(await main(['--port', String(peer.port), '--app', 'shop', '--out', out, '--partial']), 0);
    assert.match(lines.join(''), /warning: cluster node node-b did not answer describe in time/);
    assert.match(fs.readFileSync(out, 'utf8'), /"a\.x": \{ request: number;[^}]*\};\n {2}"a\.y": \{ request: string;/);
  } finally {
    process.stderr.write = stderr;
    await peer.close();
  }
});

test('typegen - every bad argument is an exit 2 naming its flag, before anything connects', async () => {
  // Port 1 refuses: an exit 1 would mean the value got as far as connecting.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-types-'));
  const file = (name, text) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const empty = file('empty.token', '');
  const junk = file('junk.pem', 'junk');
  const cases = [
    [['--timeout', 'Infinity'], /^ipc-bridge-types: --timeout must be a positive, finite number of ms, got "Infinity"/],
    [['--timeout', '1e400'], /--timeout must be a positive, finite number of ms, got "1e400"/],
    [['--timeout', '0x10'], /--timeout must be/],
    [['--timeout=-1'], /--timeout must be/],
    [['--timeout', ''], /--timeout must be/],
    [['--port', '1e3'], /--port must be a port number 1-65535, got "1e3"/],
    [['--port', '70000'], /--port must be a port number 1-65535/],
    [['--app', ''], /--app must be 1 to 256 characters, got 0/],
    [['--app', 'a'.repeat(257)], /--app must be 1 to 256 characters, got 257/],
    [['--host', ''], /--host must be a host name or address/],
    [['--user', ''], /--user must be 1 to 256 characters, got 0/],
    [['--tls-server-hostname', ''], /--tls-server-hostname must be a host name/],
    [['--token-file', path.join(dir, 'missing.token')], /--token-file \S+missing\.token: no such file/],
    [['--token-file', dir], /--token-file \S+: not a file/],
    [['--token-file', empty], /--token-file \S+ is empty/],
    [['--tls-ca', path.join(dir, 'missing.pem')], /--tls-ca \S+: no such file/],
    [['--tls-ca', junk], /--tls-ca must hold PEM CA certificates/],
    [['--tls-cert', junk], /--tls-cert must hold a PEM certificate and its matching key/],
    [['--out', ''], /--out must be a file name/],
    [['--from', junk], /--from \S+junk\.pem: not JSON/],
    [['--from', file('nochannels.json', '{"app": "x"}')], /--from \S+: not a describe answer/],
    [['--from', path.join(dir, 'missing.json')], /--from \S+: no such file/]
  ];
  const stderr = process.stderr.write;
  let said = '';
  process.stderr.write = (text) => {
    said += text;
    return true;
  };
  try {
    for (const [args, message] of cases) {
      said = '';
      const status = await main(['--app', 'shop', '--port', '1', '--timeout', '5000', ...args]);
      assert.equal(status, 2, `${args.join(' ')}: ${said}`);
      assert.match(said, message, args.join(' '));
    }
  } finally {
    process.stderr.write = stderr;
  }
});

/** A chain of `n` models, each referring to the next `fanOut` times. */
const chain = (n, fanOut = 1) => {
  const defs = {};
  for (let i = 0; i < n; i++) {
    const properties = {};
    for (let k = 0; k < fanOut; k++) properties[`f${k}`] = { $ref: `#/$defs/M${i + 1}` };
    defs[`M${i}`] = { title: `M${i}`, type: 'object', properties };
  }
  defs[`M${n}`] = { title: 'End', type: 'object', properties: { x: { type: 'string' } } };
  return { app: 'shop', channels: { 'a.deep': { request: { $ref: '#/$defs/M0', $defs: defs } } } };
};

test('typegen - a --from file nested too deeply is a bad file: exit 2, one line, no stack overflow', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-types-'));
  const file = (name, text) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const deep = (n) => '{"type": "object", "properties": {"a": '.repeat(n) + '{"type": "string"}' + '}}'.repeat(n);
  const cases = [
    // 3,000 objects deep: "Maximum call stack size exceeded", exit 1.
    [file('deep.json', `{"app": "shop", "channels": {"a.b": {"request": ${deep(3000)}}}}`), /^ipc-bridge-types: --from \S+deep\.json: nested deeper than 201 levels, which no server's describe answer is/],
    [file('junk.json', `{"app": "shop", "channels": {}, "x": ${'['.repeat(3000)}${']'.repeat(3000)}}`), /--from \S+junk\.json: nested deeper than 201 levels/],
    // Shallow text, 3,000 models one in another through $ref: the same overflow.
    [file('chain.json', JSON.stringify(chain(3000))), /^ipc-bridge-types: --from \S+chain\.json: channel "a\.deep": its request schema nests types more than 201 deep \(inline or through \$ref\)\n$/]
  ];
  const stderr = process.stderr.write;
  let said = '';
  process.stderr.write = (text) => {
    said += text;
    return true;
  };
  try {
    for (const [from, message] of cases) {
      said = '';
      assert.equal(await main(['--from', from]), 2, said);
      assert.match(said, message);
      assert.doesNotMatch(said, /call stack|RangeError|\n\s+at /);
    }
    said = '';
    assert.equal(await main(['--from', file('fine.json', `{"app": "shop", "channels": {"a.b": {"request": ${deep(90)}}}}`)]), 0, said); // 183 levels
  } finally {
    process.stderr.write = stderr;
  }
});

test('typegen - models met again are worked out once: long chains and shared models stay fast', () => {
  // A chain of 25 models failed "Invalid string length" after 1 GB; 18
  // models each referring twice to the next after 19 s and 3.4 GB. In a
  // child with a deadline: the old conversion would not return in time.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-types-'));
  const bin = path.join(__dirname, '..', 'bin', 'ipc-bridge-types.js');
  for (const [name, doc, interfaces] of [['chain.json', chain(150), 151], ['shared.json', chain(60, 3), 61]]) {
    fs.writeFileSync(path.join(dir, name), JSON.stringify(doc));
    const run = spawnSync(process.execPath, [bin, '--from', path.join(dir, name)], { encoding: 'utf8', timeout: 20000 });
    assert.equal(run.status, 0, `${name}: ${run.signal || run.stderr}`);
    assert.equal((run.stdout.match(/^export interface M\d+ /gm) || []).length + (run.stdout.match(/^export interface End /gm) || []).length, interfaces);
    assert.match(run.stdout, /export interface M0 \{\n {2}f0\?: M1;/);
  }
  assert.throws(() => generateTypes(chain(300)), (err) => err instanceof SchemaTooDeep && /channel "a\.deep": its request schema nests types more than 201 deep/.test(err.message));
});
