'use strict';

/**
 * The walk over a payload for binary attachments (docs/protocol.md §16.3):
 * finding Buffers, typed arrays, DataViews, ArrayBuffers and
 * SharedArrayBuffers, taking them out (a null and a path where each was),
 * checking received paths and putting the bytes back, and the tagged base64
 * form of §16.5. The Node twin of ipc_protocol/payload_paths.py; the binary
 * frame itself is attachments.js.
 *
 * The walk sees what JSON.stringify will write: a sync iterator (a
 * generator, `array.values()`) as the array of its items, an object with
 * a `toJSON()` as what that returns; binary values there are attachments
 * too, never a Buffer's `{"type":"Buffer","data":[...]}` or a typed
 * array's object of numbers.
 */

const { createHash } = require('node:crypto');
const { MAX_JSON_DEPTH, isObject, isBareIterator } = require('../json_profile');
const { MessageError } = require('../errors');
const { thrownMessage } = require('../thrown');

/** The tag of an attachment sent as base64 to a peer without `binary` (§16.5). */
const BASE64_TAG = '$base64'; // the key of the object that replaces an attachment

const hasOwn = Object.prototype.hasOwnProperty;

/**
 * A binary frame whose envelope is valid but whose attachments do not fit
 * it (§16.2 items 4-5), or that was not granted (§16.1 item 2):
 * `bad_message`. A client takes it as the server breaking the protocol
 * (a violation: the connection closes and reconnects), where an invalid
 * envelope is only skipped. The Node twin of Python's AttachmentError;
 * it reports itself as the MessageError it is.
 */
class AttachmentError extends MessageError {
  constructor(message) {
    super(message);
    this.name = 'MessageError';
  }
}

/**
 * Whether `value` travels as an attachment: an ArrayBuffer or a
 * SharedArrayBuffer (JSON would write either as `{}`), or any view of
 * one (a Buffer, any typed array, a DataView: `ArrayBuffer.isView`). A view
 * is its own window of bytes, as `Buffer.from(v.buffer, v.byteOffset,
 * v.byteLength)` takes it (a multi-byte array's elements in the platform's
 * byte order), never the whole ArrayBuffer under it.
 * @param {unknown} value
 * @returns {boolean}
 */
function isBinary(value) {
  return ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof SharedArrayBuffer;
}

/**
 * `value`'s bytes as a Buffer sharing its memory (no copy): a view's window.
 * @param {ArrayBufferView|ArrayBuffer} value
 * @returns {Buffer}
 */
function asBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return Buffer.from(value);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * A digest of a binary value's bytes, for keys that must tell payloads
 * apart (request coalescing) without holding megabytes of base64.
 * @param {ArrayBufferView|ArrayBuffer} value
 * @returns {string}
 */
function bytesDigest(value) {
  const buf = asBuffer(value);
  return `${buf.length}:${createHash('sha256').update(buf).digest('base64')}`;
}

/**
 * What a payload's walk found: the payload with a null where each binary
 * value was (copies of the containers on the way, the caller's untouched),
 * the paths and the bytes. No bytes and a payload of its own: an iterator
 * (used up by the walk) held none, and its items are in `payload`.
 * @typedef {object} Extracted
 * @property {unknown} payload
 * @property {Array<Array<string|number>>} paths
 * @property {Buffer[]} buffers
 */

/**
 * Takes the binary values out of `payload` (§16.3), in JSON's order.
 * @param {unknown} payload
 * @returns {Extracted|null} null when it holds none (the common case: nothing is copied).
 * @throws {MessageError} nested deeper than the JSON profile allows, or a cycle.
 */
function extractAttachments(payload) {
  if (typeof payload !== 'object' || payload === null || !holdsBinary(payload, [], '')) return null;
  const found = { payload: null, paths: [], buffers: [] };
  found.payload = walk(payload, [], found, new Set(), 2, '');
  return found.buffers.length === 0 && found.payload === payload ? null : found;
}

/**
 * Whether `value` holds a binary value anywhere, or may: then the walk
 * looks. The check every payload goes through, so it allocates nothing for
 * a scalar and one list for the rest. A container that is its own ancestor
 * (a cycle) answers false at once: the JSON encoder then refuses it, as it
 * always did. A sync iterator cannot be looked into without being used up:
 * true, and the walk makes it an array. A `toJSON()` (but a Date's, which
 * gives a string) is asked what it gives, with the key JSON.stringify
 * would pass it.
 * @param {object} value not null.
 * @param {object[]} ancestors the containers above `value`.
 * @param {string|number|null} key `value`'s key or index ('' for the payload);
 *   null: `value` is what a toJSON() returned, whose own toJSON JSON does not call.
 * @returns {boolean}
 * @private
 */
function holdsBinary(value, ancestors, key) {
  if (isBinary(value)) return true;
  if (ancestors.length >= MAX_JSON_DEPTH || ancestors.includes(value)) return false;
  if (typeof value.toJSON === 'function' && key !== null) {
    if (value instanceof Date) return false;
    const json = askToJSON(value, key);
    return typeof json === 'object' && json !== null && holdsBinary(json, ancestors, null);
  }
  ancestors.push(value);
  let found = false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === 'object' && item !== null && holdsBinary(item, ancestors, i)) {
        found = true;
        break;
      }
    }
  } else if (typeof value.next === 'function' && isBareIterator(value)) {
    found = typeof value[Symbol.iterator] === 'function'; // an async one is JSON's to refuse
  } else {
    for (const k in value) {
      const item = value[k];
      if (typeof item === 'object' && item !== null && hasOwn.call(value, k) && holdsBinary(item, ancestors, k)) {
        found = true;
        break;
      }
    }
  }
  ancestors.pop();
  return found;
}

/**
 * What `value.toJSON(key)` returns, as JSON.stringify asks it (an index as a string).
 * @param {{toJSON: Function}} value
 * @param {string|number} key
 * @returns {unknown}
 * @throws {MessageError} it threw (as stringifyValue reports it).
 * @private
 */
function askToJSON(value, key) {
  try {
    return value.toJSON(String(key));
  } catch (err) {
    throw new MessageError(`payload is not JSON serialisable: ${thrownMessage(err)}`, { cause: err });
  }
}

/**
 * One value of the walk; returns it, or its copy holding placeholders.
 * @param {unknown} value
 * @param {Array<string|number>} stack the path down to `value`.
 * @param {Extracted} found
 * @param {Set<object>} ancestors the containers above `value` (a cycle would never end).
 * @param {number} depth `value`'s level, the frame's object being 1 (§1.1).
 * @param {string|number|null} key `value`'s key or index, for a `toJSON()` (null: as holdsBinary()).
 * @returns {unknown}
 * @private
 */
function walk(value, stack, found, ancestors, depth, key) {
  if (typeof value !== 'object' || value === null) return value;
  if (isBinary(value)) {
    found.paths.push(stack.slice());
    found.buffers.push(asBuffer(value));
    return null;
  }
  if (depth >= MAX_JSON_DEPTH || ancestors.has(value)) {
    throw new MessageError(ancestors.has(value) ? 'payload is not JSON serialisable: it holds a cycle' : `payload is nested deeper than ${MAX_JSON_DEPTH} levels: no peer decodes it`);
  }
  if (typeof value.toJSON === 'function' && key !== null) {
    if (value instanceof Date) return value; // JSON's own: a string
    const json = askToJSON(value, key);
    const out = walk(json, stack, found, ancestors, depth, null);
    return out === json ? value : out; // nothing binary in it: JSON.stringify asks it again
  }
  ancestors.add(value);
  let copy = null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      stack.push(i);
      const item = walk(value[i], stack, found, ancestors, depth + 1, i);
      stack.pop();
      if (item !== value[i]) (copy ??= value.slice())[i] = item;
    }
  } else if (typeof value.next === 'function' && isBareIterator(value) && typeof value[Symbol.iterator] === 'function') {
    copy = [...value]; // as JSON writes it; used up, so the array goes on whatever it holds
    copy = walk(copy, stack, found, ancestors, depth, key);
  } else {
    for (const k in value) {
      if (!hasOwn.call(value, k)) continue;
      stack.push(k);
      const item = walk(value[k], stack, found, ancestors, depth + 1, k);
      stack.pop();
      if (item !== value[k]) (copy ??= { ...value })[k] = item;
    }
  }
  ancestors.delete(value);
  return copy ?? value;
}

/**
 * The payload with each attachment as `{"$base64": "..."}` (§16.5).
 * @param {Extracted} found
 * @returns {unknown}
 */
function tagBase64(found) {
  let payload = found.payload;
  for (let i = 0; i < found.paths.length; i++) {
    const tagged = { [BASE64_TAG]: found.buffers[i].toString('base64') };
    const path = found.paths[i];
    if (path.length === 0) payload = tagged;
    else resolve(payload, path).parent[path[path.length - 1]] = tagged; // the walk's copies: the caller's payload is untouched
  }
  return payload;
}

/**
 * Where each path leads: its container and key, null for the payload
 * itself. Every path must lead to a null, and no path may come twice
 * (§16.2 item 4); all are checked before anything is placed.
 * @param {unknown} payload
 * @param {unknown[]} paths
 * @returns {Array<{parent: object, key: string|number}|null>}
 * @throws {AttachmentError}
 * @private
 */
function placesOf(payload, paths) {
  const seen = new Set();
  const places = new Array(paths.length);
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i];
    if (!Array.isArray(path) || !path.every((k) => typeof k === 'string' || (Number.isInteger(k) && k >= 0))) {
      throw new AttachmentError(`invalid envelope: attachments[${i}]: a path is a list of keys and indexes`);
    }
    const id = JSON.stringify(path);
    if (seen.has(id)) throw new AttachmentError(`invalid envelope: attachments[${i}]: the path ${id} comes twice`);
    seen.add(id);
    if (path.length === 0) {
      if (payload !== null) throw new AttachmentError(`invalid envelope: attachments[${i}]: the path [] does not lead to a null`);
      places[i] = null;
      continue;
    }
    const place = resolve(payload, path);
    if (place === null || place.parent[place.key] !== null) {
      throw new AttachmentError(`invalid envelope: attachments[${i}]: the path ${id} does not lead to a null in payload`);
    }
    places[i] = place;
  }
  return places;
}

/**
 * The container and key a non-empty path ends at, or null when the path
 * leaves the JSON (a key on a list, an index on an object, a missing one).
 * @param {unknown} root
 * @param {Array<string|number>} path
 * @returns {{parent: object, key: string|number}|null}
 * @private
 */
function resolve(root, path) {
  let node = root;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    const ok = typeof key === 'number' ? Array.isArray(node) && key < node.length : isObject(node) && hasOwn.call(node, key);
    if (!ok) return null;
    if (i === path.length - 1) return { parent: node, key };
    node = node[key];
  }
  return null;
}

module.exports = { AttachmentError, BASE64_TAG, isBinary, asBuffer, bytesDigest, extractAttachments, tagBase64, placesOf, resolve };
