'use strict';

/**
 * Binary attachments (docs/protocol.md §16), sans-I/O: the binary frame's
 * codec (the walk that takes Buffers out of a payload and puts them back is
 * payload_paths.js, re-exported here). The Node twin of
 * ipc_protocol/attachments.py.
 *
 *     body:  0x00 | J u32 | N u32 | N x u32 lengths | J bytes of JSON | attachments
 *
 * The envelope's `attachments` field lists, in order, the path of each
 * attachment in `payload` (object keys and list indexes; [] is the payload
 * itself), where the JSON holds a null: paths are out of band, so no user
 * data can pass for a placeholder (§16.2 item 3).
 *
 * Sending, an ArrayBuffer, a SharedArrayBuffer or any view of one (a
 * Buffer, any typed array, a DataView: the view's own bytes) anywhere in a
 * payload (in a sync iterator's items, in what a toJSON() returns) goes
 * out as an attachment, written as a view of the caller's memory, not a copy
 * (§16.3); received, each is a Buffer, a view of the frame it came in.
 * To a peer that did not grant `binary` the bytes go as the tagged base64 of
 * §16.5, the form the server gives such peers.
 */

const { HEADER_SIZE_BYTES } = require('../constants');
const { encodeMessage, validateEnvelope } = require('../envelope');
const { encodeFrame } = require('../framing');
const { parseBody, stringifyValue } = require('../json_profile');
const { FrameError, FrameTooLargeError, MessageError } = require('../errors');
const { BINARY } = require('./streams'); // the feature's name in the handshake (§16.1)
const { AttachmentError, BASE64_TAG, isBinary, bytesDigest, extractAttachments, tagBase64, placesOf, resolve } = require('./payload_paths');

/** The marker byte a binary frame's body starts with (a JSON body never does). */
const BINARY_MARKER = 0x00;
/** Attachments one frame may carry (§16.2 item 2). */
const MAX_ATTACHMENTS = 65535;
/** Marker, J and N: the fixed part of a binary frame's body, in bytes. */
const FIXED_HEADER_BYTES = 9;
/** The message types whose payload may hold attachments (§16.2 item 5). */
const BINARY_TYPES = new Set(['request', 'response', 'notification', 'publish', 'stream_item']);
/**
 * Below this many attachment bytes a frame is built as one Buffer (a copy):
 * a write per small part costs more than copying it.
 */
const COPY_BELOW_BYTES = 64 * 1024;

/**
 * The frame of `message` for a connection: a JSON frame (one Buffer, byte
 * for byte what it was before §16) when its payload holds no binary value,
 * else a binary frame as a list of Buffers (the head, then the attachments,
 * views of the caller's memory), or, to a peer without `binary`, a JSON
 * frame with the tagged base64 of §16.5. Bytes in a frame of another type
 * than the five of §16.2 item 5 are refused.
 * @param {object} message
 * @param {{legacy: boolean, features: Set<string>, sendLimit: number}} proto the protocol's state.
 * @returns {Buffer|Buffer[]}
 * @throws {MessageError|FrameTooLargeError} (before anything is sent) it cannot be sent.
 */
function encodeOutgoing(message, proto) {
  const found = extractAttachments(message.payload);
  if (found === null) return encodeFrame(encodeMessage(message, { legacy: proto.legacy }), proto.sendLimit);
  if (found.buffers.length === 0) return encodeFrame(encodeMessage({ ...message, payload: found.payload }, { legacy: proto.legacy }), proto.sendLimit);
  if (!BINARY_TYPES.has(message.message_type)) throw new MessageError(`a ${message.message_type} cannot carry binary data (§16.2)`);
  if (proto.legacy || !proto.features.has(BINARY)) {
    const tagged = { ...message, payload: tagBase64(found) };
    return encodeFrame(encodeMessage(tagged, { legacy: proto.legacy }), proto.sendLimit);
  }
  return encodeBinaryFrame({ ...message, payload: found.payload }, found.paths, found.buffers, proto.sendLimit);
}

/**
 * A binary frame (§16.2), length prefix included: one Buffer when the
 * attachments are small, else the head followed by the attachments themselves.
 * @param {object} message its payload holds a null at each path.
 * @param {Array<Array<string|number>>} paths
 * @param {Buffer[]} buffers
 * @param {number} limit the largest body allowed (§1).
 * @returns {Buffer|Buffer[]}
 * @throws {MessageError} an invalid field, or more than MAX_ATTACHMENTS.
 * @throws {FrameTooLargeError} the whole body is over `limit`.
 */
function encodeBinaryFrame(message, paths, buffers, limit) {
  const n = buffers.length;
  if (n === 0 || n > MAX_ATTACHMENTS) throw new MessageError(`a binary frame carries 1 to ${MAX_ATTACHMENTS} attachments, not ${n}`);
  const json = envelopeJson(message, paths);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  let attached = 0;
  for (let i = 0; i < n; i++) attached += buffers[i].length;
  const headBytes = FIXED_HEADER_BYTES + 4 * n + jsonBytes;
  const length = headBytes + attached;
  if (length > limit) throw new FrameTooLargeError(length, limit); // §1 item 1: the limit covers it all
  const inline = attached < COPY_BELOW_BYTES;
  const head = Buffer.allocUnsafe(HEADER_SIZE_BYTES + headBytes + (inline ? attached : 0));
  head.writeUInt32BE(length, 0);
  head[4] = BINARY_MARKER;
  head.writeUInt32BE(jsonBytes, 5);
  head.writeUInt32BE(n, 9);
  let at = 13;
  for (let i = 0; i < n; i++, at += 4) head.writeUInt32BE(buffers[i].length, at);
  at += head.write(json, at, jsonBytes, 'utf8');
  if (!inline) return [head, ...buffers.filter((b) => b.length > 0)];
  for (let i = 0; i < n; i++) at += buffers[i].copy(head, at);
  return head;
}

/**
 * A binary frame's JSON envelope: canonical, with `attachments` last (§16.2 item 3).
 * @param {object} message
 * @param {Array<Array<string|number>>} paths
 * @returns {string}
 * @private
 */
function envelopeJson(message, paths) {
  return `${encodeMessage(message).slice(0, -1)},"attachments":${stringifyValue(paths, 'attachments')}}`;
}

/**
 * Decodes a binary frame's body (§16.2): the message, each attachment a
 * Buffer (a view of `body`) at its path.
 * @param {Buffer} body a frame body starting with 0x00.
 * @param {boolean} [granted] whether the connection was granted `binary` (§16.1 item 2).
 * @returns {object} the message.
 * @throws {FrameError} bad_frame: the layout does not add up (fatal, §1.4), or the JSON is not.
 * @throws {MessageError} bad_message: a bad envelope: the stream stays in sync.
 * @throws {AttachmentError} bad_message: attachments that do not fit the envelope, or (a good
 *   frame) not granted: the stream stays in sync, but a client's server broke the protocol.
 */
function decodeBinaryFrame(body, granted = true) {
  const { jsonStart, jsonEnd, lengths } = readLayout(body);
  const obj = parseBody(body.subarray(jsonStart, jsonEnd));
  const paths = obj.attachments;
  delete obj.attachments;
  const msg = validateEnvelope(obj);
  if (!BINARY_TYPES.has(msg.message_type)) throw new AttachmentError(`a ${msg.message_type} frame cannot carry attachments`);
  if (!Array.isArray(paths) || paths.length !== lengths.length) {
    throw new AttachmentError(`invalid envelope: attachments: must be a list of ${lengths.length} paths`);
  }
  const places = placesOf(msg.payload, paths);
  if (!granted) throw new AttachmentError('binary frames were not negotiated in the handshake (features)'); // checked last, as in Python
  let at = jsonEnd;
  for (let i = 0; i < lengths.length; i++) {
    const buf = body.subarray(at, at + lengths[i]);
    at += lengths[i];
    const place = places[i];
    if (place === null) msg.payload = buf;
    else place.parent[place.key] = buf;
  }
  return msg;
}

/**
 * Reads and checks a binary frame's layout against the body's length,
 * before anything is sliced out (§16.2 items 1-2).
 * @param {Buffer} body
 * @returns {{jsonStart: number, jsonEnd: number, lengths: number[]}}
 * @throws {FrameError}
 * @private
 */
function readLayout(body) {
  if (body.length < FIXED_HEADER_BYTES) throw new FrameError(`a binary frame of ${body.length} bytes is shorter than its header`);
  const j = body.readUInt32BE(1);
  const n = body.readUInt32BE(5);
  if (n === 0 || n > MAX_ATTACHMENTS) throw new FrameError(`a binary frame carries 1 to ${MAX_ATTACHMENTS} attachments, not ${n}`);
  const jsonStart = FIXED_HEADER_BYTES + 4 * n;
  if (jsonStart > body.length) throw new FrameError(`a binary frame of ${body.length} bytes cannot hold ${n} attachment lengths`);
  const lengths = new Array(n);
  let total = jsonStart + j;
  for (let i = 0; i < n; i++) {
    lengths[i] = body.readUInt32BE(FIXED_HEADER_BYTES + 4 * i);
    total += lengths[i]; // at most 65,535 x 2^32: exact in a double
  }
  if (total !== body.length) throw new FrameError(`a binary frame's parts add up to ${total} bytes, not its length ${body.length}`);
  return { jsonStart, jsonEnd: jsonStart + j, lengths };
}

/**
 * Writes a frame from encodeOutgoing() to a socket: a list of Buffers goes
 * as several writes, which a corked socket sends in one writev without
 * copying them.
 * @param {import('node:net').Socket} socket
 * @param {Buffer|Buffer[]} frame
 * @param {(err?: Error|null) => void} [onWritten] called once the last part is written.
 * @returns {boolean} the socket's write() of the last part.
 */
function writeFrame(socket, frame, onWritten) {
  if (Array.isArray(frame)) {
    for (let i = 0; i < frame.length - 1; i++) socket.write(frame[i]);
    frame = frame[frame.length - 1];
  }
  return onWritten === undefined ? socket.write(frame) : socket.write(frame, onWritten);
}

/**
 * The body size of `message`'s frame to a peer granted `binary`, checking
 * that it can be encoded at all: what the offline queue counts for a call
 * it holds before any connection says what the peer speaks.
 * @param {object} message
 * @returns {number}
 * @throws {MessageError} it cannot be sent.
 */
function messageBytes(message) {
  return measured(message).bytes;
}

/**
 * The JSON text messageBytes() measures, the walk that found the
 * attachments (null: none), and the size.
 * @param {object} message
 * @returns {{json: string, found: import('./payload_paths').Extracted|null, bytes: number}}
 * @private
 */
function measured(message) {
  const found = BINARY_TYPES.has(message.message_type) ? extractAttachments(message.payload) : null;
  if (found === null || found.buffers.length === 0) {
    const json = encodeMessage(found === null ? message : { ...message, payload: found.payload });
    return { json, found, bytes: Buffer.byteLength(json, 'utf8') }; // the frame's bytes, as sent (and as Python counts them)
  }
  const json = envelopeJson({ ...message, payload: found.payload }, found.paths);
  let bytes = FIXED_HEADER_BYTES + 4 * found.buffers.length + Buffer.byteLength(json, 'utf8');
  for (const buf of found.buffers) bytes += buf.length;
  return { json, found, bytes };
}

/**
 * `payload` as the encoder writes it now, for a call written later than it
 * is made (a keyed request's resend, a turn in a full send buffer's line;
 * the offline queue takes heldMessage()): its JSON values parsed back from
 * JSON.stringify's text, so an object or array the caller changes afterwards
 * is not what is sent (docs/protocol.md §16.3), a nested iterator as the
 * array of its items, a toJSON() as what it gave; each attachment a Buffer,
 * copied when they total fewer than `below` bytes (as a frame sent at once
 * copies them), else of the caller's memory. The caller's payload is
 * untouched; a scalar comes back as it is. Never on the hot path of a call
 * written at once: it costs a stringify and a parse (docs/performance.md).
 * @param {unknown} payload
 * @param {number} [below] copy only attachments totalling fewer bytes.
 * @returns {unknown}
 * @throws {MessageError} what the encoder would refuse (at the call, then).
 */
function snapshot(payload, below = Infinity) {
  if (typeof payload !== 'object' || payload === null) return payload;
  const found = extractAttachments(payload);
  const value = JSON.parse(stringifyValue(found === null ? payload : found.payload, 'payload'));
  return found === null ? value : withBuffers(value, found, below);
}

/**
 * `message` as the offline queue holds it (snapshot()'s payload, parsed
 * from the text messageBytes() measures: one stringify for both) and that size.
 * @param {object} message
 * @param {number} [below] see snapshot().
 * @returns {{message: object, bytes: number}}
 * @throws {MessageError} it cannot be sent.
 */
function heldMessage(message, below = Infinity) {
  const { json, found, bytes } = measured(message);
  const payload = JSON.parse(json).payload;
  return { message: { ...message, payload: found === null ? payload : withBuffers(payload, found, below) }, bytes };
}

/**
 * Puts a walk's attachments into `value` (a parsed copy holding a null at
 * each path), copied when they total fewer than `below` bytes.
 * @private
 */
function withBuffers(value, found, below) {
  let total = 0;
  for (const buf of found.buffers) total += buf.length;
  found.paths.forEach((path, i) => {
    const buf = total < below ? Buffer.from(found.buffers[i]) : found.buffers[i]; // Buffer.from(buffer) copies
    if (path.length === 0) value = buf;
    else resolve(value, path).parent[path[path.length - 1]] = buf;
  });
  return value;
}

/**
 * `message` as JSON can hold it in the offline queue's file: each
 * attachment as base64 in `attachments_base64`, its path in `attachments`.
 * @param {object} message
 * @returns {object} `message` itself when its payload holds no bytes.
 */
function storable(message) {
  const found = BINARY_TYPES.has(message.message_type) ? extractAttachments(message.payload) : null;
  if (found === null) return message;
  if (found.buffers.length === 0) return { ...message, payload: found.payload };
  return { ...message, payload: found.payload, attachments: found.paths, attachments_base64: found.buffers.map((b) => b.toString('base64')) };
}

/**
 * The message storable() made, with its Buffers back in place (a record
 * whose paths do not fit keeps its nulls: the file is ours, so it is not expected).
 * @param {object} message
 * @returns {object}
 */
function revive(message) {
  const { attachments: paths, attachments_base64: data, ...rest } = message;
  if (!Array.isArray(paths) || !Array.isArray(data) || paths.length !== data.length) return message;
  try {
    const places = placesOf(rest.payload, paths);
    places.forEach((place, i) => {
      const buf = Buffer.from(String(data[i]), 'base64');
      if (place === null) rest.payload = buf;
      else place.parent[place.key] = buf;
    });
  } catch {
    // left as nulls
  }
  return rest;
}

/**
 * A frame's size on the wire, prefix included.
 * @param {Buffer|Buffer[]} frame
 * @returns {number}
 */
function frameBytes(frame) {
  if (!Array.isArray(frame)) return frame.length;
  let n = 0;
  for (const part of frame) n += part.length;
  return n;
}

module.exports = {
  AttachmentError,
  BINARY,
  BINARY_MARKER,
  BINARY_TYPES,
  BASE64_TAG,
  MAX_ATTACHMENTS,
  isBinary,
  bytesDigest,
  extractAttachments,
  encodeOutgoing,
  encodeBinaryFrame,
  decodeBinaryFrame,
  writeFrame,
  frameBytes,
  messageBytes,
  snapshot,
  heldMessage,
  COPY_BELOW_BYTES,
  storable,
  revive
};
