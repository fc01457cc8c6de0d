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
 * (docs/protocol.md §8); with `--from`, it reads a file holding that answer
 * (`python -m ipc_client schemas MODULE:OBJECT` writes one without a
 * server). The conversion is lib/typegen.js; this file is the I/O. No
 * dependencies. Exit status: 0 written, 1 failed, 2 bad arguments.
 */

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { IPCClient } = require('../lib/client');
const { generateTypes } = require('../lib/typegen');

const USAGE = `usage: ipc-bridge-types (--app APP [--host HOST] [--port PORT] [--token TOKEN] | --from FILE) [--out FILE] [--name NAME]

  --app      the app whose channels to describe (live); with --from, overrides the file's app
  --host     the server (default 127.0.0.1)
  --port     its port (default 8888)
  --token    the server's token, if it requires one (default: $IPC_TOKEN)
  --timeout  milliseconds for connecting and the answer (default 10000)
  --from     a JSON file with the describe answer, e.g. from: python -m ipc_client schemas MODULE:OBJECT
  --out      the .d.ts file to write (default: standard output)
  --name     the interface's name (default: the app in PascalCase plus Api, e.g. ShopApi)`;

const OPTIONS = {
  app: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8888' },
  token: { type: 'string' },
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
  const token = args.token ?? process.env.IPC_TOKEN;
  const client = new IPCClient(args.app, {
    host: args.host, port, reconnect: false, connectTimeout: timeout, requestTimeout: timeout, ...(token ? { token } : {})
  });
  client.on('error', () => {}); // the failure is the rejection below
  try {
    await client.connect();
    return { doc: await client.system('describe'), source: `${args.host}:${port}` };
  } finally {
    await client.disconnect();
  }
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
