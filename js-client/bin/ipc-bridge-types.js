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
 * (docs/protocol.md §8), as a user (`--user`) over TLS (`--tls*`) where the
 * server asks for them, with the flags of `python -m ipc_server stats`;
 * with `--from`, it reads a file holding that answer
 * (`python -m ipc_client schemas MODULE:OBJECT` writes one without a
 * server). The conversion is lib/typegen.js; this file is the I/O. No
 * dependencies. Exit status: 0 written, 1 failed, 2 bad arguments.
 */

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { IPCClient } = require('../lib/client');
const { generateTypes } = require('../lib/typegen');

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
  --name        the interface's name (default: the app in PascalCase plus Api, e.g. ShopApi)`;

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
  help: { type: 'boolean', short: 'h' }
};

/**
 * The describe answer, from the server or the file.
 * @param {object} args parsed arguments.
 * @returns {Promise<{doc: object, source: string}>}
 */
async function load(args) {
  if (args.from !== undefined) {
    const doc = JSON.parse(fs.readFileSync(args.from, 'utf8'));
    return { doc, source: path.basename(args.from) };
  }
  const port = Number(args.port);
  const timeout = Number(args.timeout);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port must be a port number, got ${args.port}`);
  if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of ms, got ${args.timeout}`);
  const client = new IPCClient(args.app, {
    host: args.host, port, reconnect: false, connectTimeout: timeout, requestTimeout: timeout, ...credentials(args)
  });
  client.on('error', () => {}); // the failure is the rejection below
  try {
    await client.connect();
    return { doc: await client.system('describe'), source: `${args.host}:${port}` };
  } finally {
    await client.disconnect();
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
    token = fs.readFileSync(args['token-file'], 'utf8').replace(/[\r\n]+$/, '');
    if (!token) throw new UsageError(`--token-file ${args['token-file']} is empty`);
  }
  if (token) options.token = token;
  const tlsFlags = ['tls-ca', 'tls-cert', 'tls-key', 'tls-server-hostname'].filter((flag) => args[flag] !== undefined);
  if (args['tls-key'] !== undefined && args['tls-cert'] === undefined) throw new UsageError('--tls-key needs --tls-cert (the certificate it belongs to)');
  if (args.tls || tlsFlags.length > 0) {
    const tls = {};
    if (args['tls-ca'] !== undefined) tls.ca = fs.readFileSync(args['tls-ca']);
    if (args['tls-cert'] !== undefined) {
      tls.cert = fs.readFileSync(args['tls-cert']);
      tls.key = args['tls-key'] !== undefined ? fs.readFileSync(args['tls-key']) : tls.cert; // one file may hold both
    }
    if (args['tls-server-hostname'] !== undefined) tls.servername = args['tls-server-hostname'];
    options.tls = tls;
  }
  return options;
}

class UsageError extends Error {}

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
  } catch (err) {
    process.stderr.write(`ipc-bridge-types: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  try {
    const { doc, source } = await load(args);
    const text = generateTypes(doc, { name: args.name, app: args.app, source });
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
