'use strict';

/**
 * The walk over a payload for binary attachments (docs/protocol.md §16.3):
 * finding Buffers, typed arrays, DataViews and ArrayBuffers, taking them out (a null and
 * a path where each was), checking received paths and putting the bytes back,
 * and the tagged base64 form of §16.5. The Node twin of
 * ipc_protocol/payload_paths.py; the binary frame itself is attachments.js.
 */

const { createHash } = require('node:crypto');
const { MAX_JSON_DEPTH, isObject } = require('../json_profile');
const { MessageError } = require('../errors');

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
 * Whether `value` travels as an attachment: an ArrayBuffer, or any view of
 * one (a Buffer, any typed array, a DataView: `ArrayBuffer.isView`). A view
 * is its own window of bytes, as `Buffer.from(v.buffer, v.byteOffset,
 * v.byteLength)` takes it (a multi-byte array's elements in the platform's
 * byte order), never the whole ArrayBuffer under it.
 * @param {unknown} value
 * @returns {boolean}
 */
function isBinary(value) {
  return ArrayBuffer.isView(value) || value instanceof ArrayBuffer;
}

/**
 * `value`'s bytes as a Buffer sharing its memory (no copy): a view's window.
 * @param {ArrayBufferView|ArrayBuffer} value
 * @returns {Buffer}
 */
function asBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
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
 * the paths and the bytes.
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
  if (typeof payload !== 'object' || payload === null || !holdsBinary(payload, [])) return null;
  const found = { payload: null, paths: [], buffers: [] };
  found.payload = walk(payload, [], found, new Set(), 2);
  return found.buffers.length === 0 ? null : found;
}

/**
 * Whether `value` holds a binary value anywhere: the check every payload
 * goes through, so it allocates nothing for a scalar and one list for the
 * rest. A container that is its own ancestor (a cycle) answers false at
 * once: the JSON encoder then refuses it, as it always did.
 * @param {object} value not null.
 * @param {object[]} ancestors the containers above `value`.
 * @returns {boolean}
 * @private
 */
function holdsBinary(value, ancestors) {
  if (isBinary(value)) return true;
  if (typeof value.toJSON === 'function' || ancestors.length >= MAX_JSON_DEPTH || ancestors.includes(value)) return false;
  ancestors.push(value);
  let found = false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === 'object' && item !== null && holdsBinary(item, ancestors)) {
        found = true;
        break;
      }
    }
  } else {
    for (const key in value) {
      const item = value[key];
      if (typeof item === 'object' && item !== null && hasOwn.call(value, key) && holdsBinary(item, ancestors)) {
        found = true;
        break;
      }
    }
  }
  ancestors.pop();
  return found;
}

/**
 * One value of the walk; returns it, or its copy holding placeholders.
 * @param {unknown} value
 * @param {Array<string|number>} stack the path down to `value`.
 * @param {Extracted} found
 * @param {Set<object>} ancestors the containers above `value` (a cycle would never end).
 * @param {number} depth `value`'s level, the frame's object being 1 (§1.1).
 * @returns {unknown}
 * @private
 */
function walk(value, stack, found, ancestors, depth) {
  if (typeof value !== 'object' || value === null) return value;
  if (isBinary(value)) {
    found.paths.push(stack.slice());
    found.buffers.push(asBuffer(value));
    return null;
  }
  if (typeof value.toJSON === 'function') return value; // a Date and the like: JSON's own
  if (depth >= MAX_JSON_DEPTH || ancestors.has(value)) {
    throw new MessageError(ancestors.has(value) ? 'payload is not JSON serialisable: it holds a cycle' : `payload is nested deeper than ${MAX_JSON_DEPTH} levels: no peer decodes it`);
  }
  ancestors.add(value);
  let copy = null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      stack.push(i);
      const item = walk(value[i], stack, found, ancestors, depth + 1);
      stack.pop();
      if (item !== value[i]) (copy ??= value.slice())[i] = item;
    }
  } else {
    for (const key in value) {
      if (!hasOwn.call(value, key)) continue;
      stack.push(key);
      const item = walk(value[key], stack, found, ancestors, depth + 1);
      stack.pop();
      if (item !== value[key]) (copy ??= { ...value })[key] = item;
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
