'use strict';

/**
 * `node drive.js <block.js> <driver.js>`: runs a code block of
 * ipc-framework-nodejs.md with test code appended in the same module scope.
 *
 * The block's file is read as it is (its `require('./...')` resolves next to
 * it, as when run directly); the driver reaches the block's top-level
 * bindings, to call methods the document defines but its own usage never
 * calls (Service Discovery's UserService.createUser / getUserById). Used by
 * interop-tests/test_legacy_docs_patterns.py only.
 */

const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');

const [block, driver] = process.argv.slice(2).map((p) => path.resolve(p));
if (!block || !driver) {
  console.error('usage: node drive.js <block.js> <driver.js>');
  process.exit(2);
}
const source = `${fs.readFileSync(block, 'utf8')}\n;${fs.readFileSync(driver, 'utf8')}`;
const mod = new Module(block, module);
mod.filename = block;
mod.paths = Module._nodeModulePaths(path.dirname(block));
mod._compile(source, block);
