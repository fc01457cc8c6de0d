'use strict';

/**
 * The JSON-lines protocol shared by the Node agents the interop tests drive:
 * one command per stdin line `{id, op, ...}`, one answer per command
 * `{id, ok, result | error}` and events `{event, ...}` on stdout.
 */

const readline = require('node:readline');

/**
 * Writes one JSON line on stdout.
 * @param {object} obj
 */
function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/**
 * An error as JSON, with the fields the tests assert on.
 * @param {any} err
 * @returns {object}
 */
function describe(err) {
  return {
    code: err && err.code,
    name: err && err.name,
    message: err && err.message,
    remoteType: err && err.remoteType,
    details: (err && err.details) ?? null,
    cause: err && err.cause ? String(err.cause.code || err.cause.message) : null
  };
}

/**
 * Runs `ops[cmd.op](cmd)` for each stdin line until stdin closes, then
 * `onClose()` and exit; announces `{event: 'ready'}` first.
 * @param {Record<string, (cmd: any) => unknown>} ops
 * @param {() => Promise<unknown>} onClose
 */
function runCommands(ops, onClose) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    try {
      const fn = ops[cmd.op];
      if (!fn) throw new TypeError(`unknown op ${cmd.op}`);
      const result = await fn(cmd);
      out({ id: cmd.id, ok: true, result: result === undefined ? null : result });
    } catch (err) {
      out({ id: cmd.id, ok: false, error: describe(err) });
    }
  });
  rl.on('close', () => {
    onClose().finally(() => process.exit(0));
  });
  out({ event: 'ready', pid: process.pid });
}

module.exports = { out, describe, runCommands };
