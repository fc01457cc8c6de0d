#!/usr/bin/env node
'use strict';

/**
 * ipc-bridge-types: TypeScript declarations for the typed channels of one
 * app (docs/typed-contracts.md).
 *
 *     npx ipc-bridge-types --host 127.0.0.1 --port 8888 --app shop --out shop-api.d.ts
 *     npx ipc-bridge-types --from schema.json --out shop-api.d.ts
 *
 * Live, it connects as the app and asks the server's `describe` action
 * (docs/protocol.md §8), every page of it, as a user (`--user`) over TLS
 * (`--tls*`) where the server asks for them, with the flags of `python -m ipc_server stats`;
 * with `--from`, it reads a file holding that answer
 * (`python -m ipc_client schemas MODULE:OBJECT` writes one without a
 * server). The conversion is lib/typegen.js; this file is the I/O. No
 * dependencies. Exit status: 0 written, 1 failed (the server, a cluster
 * node that did not answer without --partial, writing --out, or a server's
 * schema nesting types too deeply), 2 bad arguments: a value out of range or a file a flag names
 * that cannot be used (a --from file nested too deeply too), named by its flag as `python -m ipc_server stats`
 * and `python -m ipc_client schemas` name theirs.
 */

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { X509Certificate } = require('node:crypto');
const { createSecureContext } = require('node:tls');
const { IPCClient } = require('../lib/client');
const { MAX_CONNECT_ID_LENGTH } = require('../lib/constants');
const { MAX_JSON_DEPTH, deeperThan } = require('../lib/json_profile');
const { generateTypes, SchemaTooDeep } = require('../lib/typegen');

const USAGE = `usage: ipc-bridge-types (--app APP [--host HOST] [--port PORT] [--user USER] [--token TOKEN | --token-file FILE] [--tls ...] | --from FILE) [--out FILE] [--name NAME]

  --app         the app whose channels to describe (live); with --from, overrides the file's app
  --host        the server (default 127.0.0.1)
  --port        its port (default 8888)
  --user        the user to connect as (servers with a users file)
  --token       the token (the shared one, or the user's), if the server requires one (default: $IPC_TOKEN)
  --token-file  a file holding the token instead (kept off the command line)
  --tls         TLS, verified against Node's CAs
  --tls-ca      PEM CA bundle that signed the server's certificate (turns TLS on)
  --tls-cert    PEM client certificate (mutual TLS; turns TLS on)
  --tls-key     PEM key of --tls-cert (default: in the --tls-cert file)
  --tls-server-hostname  the name the server's certificate must carry, if not --host
  --timeout     milliseconds for connecting and the answer (default 10000)
  --from        a JSON file with the describe answer, e.g. from: python -m ipc_client schemas MODULE:OBJECT
  --out         the .d.ts file to write (default: standard output)
  --name        the interface's name (default: the app in PascalCase plus Api, e.g. ShopApi)
  --partial     write the declarations even when cluster nodes did not answer (their channels left out; default: exit 1)`;

const OPTIONS = {
  app: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8888' },
  user: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-hostname': { type: 'string' },
  timeout: { type: 'string', default: '10000' },
  from: { type: 'string' },
  out: { type: 'string' },
  name: { type: 'string' },
  partial: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
};

/**
 * The describe answer, from the server or the file.
 * @param {object} args parsed arguments.
 * @returns {Promise<{doc: object, source: string}>}
 */
async function load(args) {
  if (args.from !== undefined) return { doc: args.doc, source: path.basename(args.from) };
  const client = new IPCClient(args.app, args.client);
  client.on('error', () => {}); // the failure is the rejection below
  try {
    await client.connect();
    return { doc: await describeAll(client), source: `${args.host}:${args.client.port}` };
  } finally {
    await client.disconnect();
  }
}

/**
 * The whole describe answer, page after page: a server answers at most a
 * page of channels (1024 unless asked) with `total`, `offset` and `limit`
 * (docs/protocol.md §8); one of before answers them all at once.
 * @param {IPCClient} client connected as the app.
 * @returns {Promise<object>}
 */
async function describeAll(client) {
  const first = await client.system('describe');
  if (first === null || typeof first !== 'object' || !Number.isInteger(first.total)) return first;
  const entries = Object.entries(first.channels); // fromEntries below: a channel named __proto__ stays a channel
  const missing = new Set(Array.isArray(first.missing) ? first.missing : []);
  const limit = Number.isInteger(first.limit) && first.limit > 0 ? first.limit : 1024;
  for (let offset = (first.offset || 0) + limit; offset < first.total; offset += limit) {
    const page = await client.system('describe', { params: { offset, limit } });
    entries.push(...Object.entries(page.channels));
    if (Array.isArray(page.missing)) for (const node of page.missing) missing.add(node);
  }
  return { channels: Object.fromEntries(entries), missing: [...missing] };
}

/**
 * The cluster nodes a describe answer names as not answering in time
 * (docs/cluster.md §4): their channels are not in it.
 * @param {object} doc the describe answer.
 * @returns {string[]}
 */
function missingNodes(doc) {
  return Array.isArray(doc.missing) ? doc.missing.map(String) : [];
}

/**
 * The describe answer in --from's file: one that cannot be read, is not
 * JSON or not an answer is a bad argument, as a target
 * `python -m ipc_client schemas` cannot load is.
 * @param {string} file the path.
 * @returns {object}
 */
function readFrom(file) {
  let doc;
  try {
    doc = JSON.parse(readFlagFile('--from', file).toString('utf8'));
  } catch (err) {
    throw err instanceof UsageError ? err : new UsageError(`--from ${file}: not JSON: ${err.message}`);
  }
  if (doc === null || typeof doc !== 'object' || doc.channels === null || typeof doc.channels !== 'object') {
    throw new UsageError(`--from ${file}: not a describe answer ({"app": ..., "channels": {...}})`);
  }
  // JSON.parse nests as deep as the text; the walks after it recurse (3,000 levels overflowed the stack).
  if (deeperThan(doc, 1, MAX_JSON_DEPTH)) {
    throw new UsageError(`--from ${file}: nested deeper than ${MAX_JSON_DEPTH} levels, which no server's describe answer is (docs/protocol.md §1.1)`);
  }
  return doc;
}

/**
 * Every flag checked before anything connects, each error naming its flag
 * (exit 2), as `python -m ipc_server stats` checks the same flags; live,
 * the client's options are set on `args.client`.
 * @param {object} args parsed arguments.
 */
function checkArgs(args) {
  if (args.out === '') throw new UsageError('--out must be a file name (leave it out for standard output)');
  if (args.app !== undefined) connectId('--app', args.app);
  if (args.from !== undefined) return;
  if (!/^[0-9]+$/.test(args.port) || Number(args.port) < 1 || Number(args.port) > 65535) {
    throw new UsageError(`--port must be a port number 1-65535, got ${JSON.stringify(args.port)}`);
  }
  // A decimal number, as Python's float() reads --timeout: not Infinity, 1e400, 0x10 or ''.
  const timeout = /^[+]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$/i.test(args.timeout) ? Number(args.timeout) : NaN;
  if (!(Number.isFinite(timeout) && timeout > 0)) {
    throw new UsageError(`--timeout must be a positive, finite number of ms, got ${JSON.stringify(args.timeout)}`);
  }
  if (args.host === '') throw new UsageError('--host must be a host name or address, got ""');
  if (args['tls-server-hostname'] === '') throw new UsageError('--tls-server-hostname must be a host name, got ""');
  if (args.user !== undefined) connectId('--user', args.user);
  args.client = { host: args.host, port: Number(args.port), reconnect: false, connectTimeout: timeout, requestTimeout: timeout, ...credentials(args) };
}

/**
 * An app id or user: what the server accepts in a connect (docs/protocol.md §3).
 * @param {string} flag the flag, for the message.
 * @param {string} value its value.
 */
function connectId(flag, value) {
  const length = [...value].length; // code points, as the server counts
  if (length < 1 || length > MAX_CONNECT_ID_LENGTH) throw new UsageError(`${flag} must be 1 to ${MAX_CONNECT_ID_LENGTH} characters, got ${length}`);
}

/**
 * A file a flag names, read; missing, not a file or unreadable is a bad argument.
 * @param {string} flag the flag, for the message.
 * @param {string} file the path.
 * @returns {Buffer}
 */
function readFlagFile(flag, file) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'not a file' : `cannot read it: ${err.message}`;
    throw new UsageError(`${flag} ${file}: ${why}`);
  }
}

/**
 * The client's `user`, `token` and `tls` options from the flags, as
 * `python -m ipc_server stats` takes them (ipc_server/cli_view.py).
 * @param {object} args parsed arguments.
 * @returns {{user?: string, token?: string, tls?: object}}
 */
function credentials(args) {
  const options = {};
  if (args.user !== undefined) options.user = args.user;
  if (args.token !== undefined && args['token-file'] !== undefined) throw new UsageError('give --token or --token-file, not both');
  let token = args.token ?? process.env.IPC_TOKEN;
  if (args['token-file'] !== undefined) {
    token = readFlagFile('--token-file', args['token-file']).toString('utf8').replace(/[\r\n]+$/, '');
    if (!token) throw new UsageError(`--token-file ${args['token-file']} is empty`);
  }
  if (token) options.token = token;
  const tlsFlags = ['tls-ca', 'tls-cert', 'tls-key', 'tls-server-hostname'].filter((flag) => args[flag] !== undefined);
  if (args['tls-key'] !== undefined && args['tls-cert'] === undefined) throw new UsageError('--tls-key needs --tls-cert (the certificate it belongs to)');
  if (args.tls || tlsFlags.length > 0) {
    const tls = {};
    if (args['tls-ca'] !== undefined) tls.ca = readFlagFile('--tls-ca', args['tls-ca']);
    if (args['tls-cert'] !== undefined) {
      tls.cert = readFlagFile('--tls-cert', args['tls-cert']);
      tls.key = args['tls-key'] !== undefined ? readFlagFile('--tls-key', args['tls-key']) : tls.cert; // one file may hold both
    }
    if (args['tls-server-hostname'] !== undefined) tls.servername = args['tls-server-hostname'];
    // PEM that does not parse is refused here, as Python's client refuses it when made
    // (createSecureContext lets a CA file without a certificate pass).
    if (tls.ca !== undefined) pemCheck('--tls-ca', 'PEM CA certificates', () => new X509Certificate(tls.ca));
    if (tls.cert !== undefined) pemCheck(args['tls-key'] !== undefined ? '--tls-cert, --tls-key' : '--tls-cert', 'a PEM certificate and its matching key', () => createSecureContext({ cert: tls.cert, key: tls.key }));
    options.tls = tls;
  }
  return options;
}

/**
 * @param {string} flags the flags, for the message.
 * @param {string} what what they must hold, for the message.
 * @param {() => unknown} parse throws when the PEM does not parse.
 */
function pemCheck(flags, what, parse) {
  try {
    parse();
  } catch (err) {
    throw new UsageError(`${flags} must hold ${what}: ${err.message}`);
  }
}

class UsageError extends Error {}

/**
 * `convert()`, whose `SchemaTooDeep` is a bad `--from` file (exit 2); in a
 * server's answer it is a failure (exit 1), as the server's other faults.
 * @param {object} args parsed arguments.
 * @param {() => string} convert
 * @returns {string}
 */
function fromFile(args, convert) {
  try {
    return convert();
  } catch (err) {
    throw err instanceof SchemaTooDeep && args.from !== undefined ? new UsageError(`--from ${args.from}: ${err.message}`) : err;
  }
}

/**
 * Runs the command.
 * @param {string[]} argv the arguments after the program's name.
 * @returns {Promise<number>} the exit status.
 */
async function main(argv) {
  let args;
  try {
    args = parseArgs({ args: argv, options: OPTIONS, strict: true }).values;
    if (args.help) {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (args.from === undefined && args.app === undefined) throw new UsageError('give --app (asks the server) or --from FILE');
    checkArgs(args);
    if (args.from !== undefined) args.doc = readFrom(args.from);
  } catch (err) {
    process.stderr.write(`ipc-bridge-types: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  try {
    const { doc, source } = await load(args);
    const missing = missingNodes(doc);
    if (missing.length > 0) {
      const what = `cluster node${missing.length === 1 ? '' : 's'} ${missing.join(', ')} did not answer describe in time: ${missing.length === 1 ? 'its' : 'their'} channels are not in the answer`;
      if (!args.partial) throw new Error(`${what}; ask again, or give --partial to write the declarations without them`);
      process.stderr.write(`ipc-bridge-types: warning: ${what} (--partial)\n`);
    }
    const text = fromFile(args, () => generateTypes(doc, { name: args.name, app: args.app, source }));
    const count = Object.keys(doc.channels).length;
    if (args.out === undefined) process.stdout.write(text);
    else {
      fs.writeFileSync(args.out, text);
      process.stderr.write(`ipc-bridge-types: ${count} channel${count === 1 ? '' : 's'} written to ${args.out}\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`ipc-bridge-types: ${err.code ? `[${err.code}] ` : ''}${err.message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((status) => {
    process.exitCode = status;
  });
}

module.exports = { main };
