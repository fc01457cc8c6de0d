'use strict';

/**
 * Length-prefixed framing: `uint32 big-endian LENGTH` + LENGTH bytes
 * (docs/protocol.md §1).
 *
 * The decoder keeps the chunks it is fed in a list and hands out views on
 * them; it copies only when a frame (or a prefix) spans chunks. A frame of
 * at least 64 KiB that the chunks at hand do not complete goes on in a
 * buffer of its own, which the socket may read into directly
 * (`readBuffer()`): its bytes are then never copied. The length
 * limit is checked as soon as the 4-byte prefix is complete, before any of
 * the body is waited for, and an error is sticky: a byte stream cannot be
 * resynchronised (§1.4).
 */

const {
  HEADER_SIZE_BYTES,
  MAX_FRAME_LIMIT_BYTES,
  DEFAULT_MAX_FRAME_SIZE_BYTES
} = require('./constants');
const { FrameError, FrameTooLargeError } = require('./errors');

/** A frame at least this large that the chunks at hand do not complete is assembled in a buffer of its own. */
const ASSEMBLE_FROM_BYTES = 64 * 1024;

/**
 * Prefixes a frame body with its length, in one Buffer, so the frame goes
 * out in a single write (§1.5).
 *
 * @param {string|Buffer|Uint8Array} body the JSON text or its UTF-8 bytes.
 * @param {number} [maxFrameSize] refuse bodies longer than this (bytes).
 * @returns {Buffer} prefix + body.
 * @throws {FrameError} the body is empty.
 * @throws {FrameTooLargeError} the body is over `maxFrameSize`.
 */
function encodeFrame(body, maxFrameSize = MAX_FRAME_LIMIT_BYTES) {
  const isText = typeof body === 'string';
  const n = isText ? Buffer.byteLength(body, 'utf8') : body.length;
  if (n === 0) throw new FrameError('a frame body cannot be empty');
  if (n > maxFrameSize) throw new FrameTooLargeError(n, maxFrameSize);
  const frame = Buffer.allocUnsafe(HEADER_SIZE_BYTES + n);
  frame.writeUInt32BE(n, 0);
  if (isText) frame.write(body, HEADER_SIZE_BYTES, n, 'utf8');
  else frame.set(body, HEADER_SIZE_BYTES);
  return frame;
}

/**
 * A TLS record starts with its content type, then the version 3.x: a
 * ClientHello is 0x16 0x03 0x01, a TLS server's alert 0x15 0x03 0x0N (§1.3).
 */
const TLS_RECORDS = Object.freeze({ 0x15: 'a TLS alert', 0x16: 'a TLS handshake' });
const PEER_SPEAKS_TLS = 'the peer speaks TLS and this side does not';

/**
 * What a stream's first three bytes are when they are a TLS record header
 * (read as a length prefix they would be a frame of some 350 MB), else null (§1.3).
 * @param {Buffer} head at least 3 bytes.
 * @returns {string|null} 'a TLS handshake', 'a TLS alert' or null.
 */
function tlsRecord(head) {
  const kind = TLS_RECORDS[head[0]];
  return kind !== undefined && head[1] === 3 && head[2] <= 4 ? kind : null;
}

/**
 * What FrameDecoder.feed() returns last when a bad length prefix follows
 * complete frames: read in its turn, it fails the connection with `error`.
 */
class FramingFailure {
  /** @param {Error} error the decoder's (sticky) error. */
  constructor(error) {
    this.error = error;
  }
}

/**
 * Incremental frame decoder: feed it chunks as the socket delivers them, get
 * back the complete frame bodies.
 */
class FrameDecoder {
  /**
   * @param {{maxFrameSize?: number|null}} [options] largest body accepted,
   *   in bytes; null means the protocol maximum (2^32 - 1).
   */
  constructor({ maxFrameSize = DEFAULT_MAX_FRAME_SIZE_BYTES } = {}) {
    /** Largest body accepted, in bytes; may be changed between feeds. */
    this.maxFrameSize = maxFrameSize == null ? MAX_FRAME_LIMIT_BYTES : maxFrameSize;
    this._buffers = [];
    this._head = 0; // index of the first unconsumed chunk in _buffers
    this._bufferedBytes = 0;
    this._need = -1; // body length of the frame being assembled; -1 = reading a prefix
    this._error = null;
    this._atStart = true; // the stream's first bytes are still to be checked for TLS
    /** The stream's first bytes were a TLS record: the peer speaks TLS (§1.3). */
    this.tls = false;
    this._frame = null; // a large frame's body, being filled (its length is _need)
    this._filled = 0;
  }

  /**
   * Where the next read should land: the rest of a large frame's own
   * buffer while one is assembled (feed the part of it that was read: it
   * is counted, not copied), else `fallback`.
   * @template T
   * @param {T} fallback
   * @returns {Buffer|T}
   */
  readBuffer(fallback) {
    return this._frame === null ? fallback : this._frame.subarray(this._filled);
  }

  /**
   * Bytes received but not yet returned as part of a frame.
   * @returns {number}
   */
  get bufferedBytes() {
    return this._bufferedBytes + this._filled;
  }

  /**
   * The sticky error, once one was raised.
   * @returns {Error|null}
   */
  get error() {
    return this._error;
  }

  /**
   * Feeds one chunk and returns the frame bodies it completed. A bad length
   * prefix after complete frames ends the list with a FramingFailure (the
   * frames before it are the peer's, however TCP split the bytes, §1.4);
   * alone, it throws.
   *
   * @param {Buffer} chunk any slice of the stream, possibly empty.
   * @returns {Array<Buffer|FramingFailure>} complete bodies, in order; possibly views on `chunk`.
   * @throws {FrameError} a zero length prefix (and on every later call).
   * @throws {FrameTooLargeError} a length over `maxFrameSize` (and on every later call).
   * @throws {FrameError} the stream starts with a TLS record (§1.3; `tls` is then true).
   */
  feed(chunk) {
    if (this._error !== null) throw this._error;
    if (this._atStart) this._checkStart(chunk);
    const frames = [];
    try {
      // The limit was lowered (by a handshake) since this frame's prefix
      // was read: it holds all the same, whatever the split (§1 item 2).
      if (this._need > this.maxFrameSize) this._fail(new FrameTooLargeError(this._need, this.maxFrameSize));
      this._parse(chunk, frames);
    } catch (err) {
      if (frames.length === 0) throw err;
      frames.push(new FramingFailure(err));
    }
    return frames;
  }

  /**
   * @param {Buffer} chunk
   * @param {Buffer[]} frames where complete bodies go.
   * @private
   */
  _parse(chunk, frames) {
    if (this._frame !== null) {
      chunk = this._fill(chunk, frames);
      if (chunk.length === 0) return;
    }
    if (chunk.length > 0) {
      this._buffers.push(chunk);
      this._bufferedBytes += chunk.length;
    }
    for (;;) {
      if (this._need < 0) {
        if (this._bufferedBytes < HEADER_SIZE_BYTES) break;
        if (this._takeWhole(frames)) continue;
        const n = this._readLength();
        if (n === 0) this._fail(new FrameError('zero-length frame'));
        if (n > this.maxFrameSize) this._fail(new FrameTooLargeError(n, this.maxFrameSize));
        this._need = n;
      }
      if (this._bufferedBytes < this._need) {
        if (this._need >= ASSEMBLE_FROM_BYTES) this._assemble(this._need);
        break;
      }
      frames.push(this._consume(this._need));
      this._need = -1;
    }
  }

  /**
   * Takes the frames that lie whole in the first chunk, read by offset: one
   * view per frame, the chunk sliced once after them (a read of a few hundred
   * frames made three views a frame). A prefix it does not vouch for (zero,
   * over the limit, a body not all here) is left to the general path, which
   * fails or waits as it always did.
   * @param {Buffer[]} frames where complete bodies go.
   * @returns {boolean} whether it took any.
   * @private
   */
  _takeWhole(frames) {
    const buf = this._buffers[this._head];
    const end = buf.length;
    const max = this.maxFrameSize;
    let pos = 0;
    while (end - pos >= HEADER_SIZE_BYTES) {
      const n = buf.readUInt32BE(pos);
      const start = pos + HEADER_SIZE_BYTES;
      if (n === 0 || n > max || end - start < n) break;
      frames.push(buf.subarray(start, start + n));
      pos = start + n;
    }
    if (pos === 0) return false;
    this._advance(pos);
    return true;
  }

  /**
   * Goes on with a frame of `n` bytes in a buffer of its own; every
   * buffered byte (fewer than `n`) is its start.
   * @param {number} n
   * @private
   */
  _assemble(n) {
    const frame = Buffer.allocUnsafeSlow(n);
    let filled = 0;
    while (this._bufferedBytes > 0) {
      const buf = this._buffers[this._head];
      frame.set(buf, filled);
      filled += buf.length;
      this._advance(buf.length);
    }
    this._frame = frame;
    this._filled = filled;
  }

  /**
   * Adds `chunk` to the large frame (read in place: only counted); returns
   * what follows the frame in `chunk`.
   * @param {Buffer} chunk
   * @param {Buffer[]} frames where the frame goes once complete.
   * @returns {Buffer}
   * @private
   */
  _fill(chunk, frames) {
    const frame = this._frame;
    const taken = Math.min(chunk.length, frame.length - this._filled);
    const inPlace = chunk.buffer === frame.buffer && chunk.byteOffset === frame.byteOffset + this._filled;
    if (!inPlace) frame.set(taken === chunk.length ? chunk : chunk.subarray(0, taken), this._filled);
    this._filled += taken;
    if (this._filled === frame.length) {
      this._frame = null;
      this._filled = 0;
      this._need = -1;
      frames.push(frame);
    }
    return chunk.subarray(taken);
  }

  /**
   * §1.3: the stream's first three bytes, once they are in, are no TLS record.
   * @param {Buffer} chunk
   * @private
   */
  _checkStart(chunk) {
    if (this._bufferedBytes + chunk.length < 3) return;
    this._atStart = false;
    const head = Buffer.concat([...this._buffers.slice(this._head), chunk.subarray(0, 3)]); // nothing consumed yet
    const kind = tlsRecord(head);
    if (kind !== null) {
      this.tls = true;
      this._fail(new FrameError(`${kind} on a plaintext port: ${PEER_SPEAKS_TLS}`));
    }
  }

  /**
   * Records and throws a protocol error; later feeds throw it again.
   * @param {Error} err
   * @private
   */
  _fail(err) {
    this._error = err;
    this._frame = null;
    this._filled = 0;
    this._buffers = [];
    this._head = 0;
    this._bufferedBytes = 0;
    throw err;
  }

  /**
   * Consumes the 4-byte prefix, reading it in place when it sits in one chunk.
   * @returns {number}
   * @private
   */
  _readLength() {
    const first = this._buffers[this._head];
    if (first.length >= HEADER_SIZE_BYTES) {
      const n = first.readUInt32BE(0);
      this._advance(HEADER_SIZE_BYTES);
      return n;
    }
    return this._consume(HEADER_SIZE_BYTES).readUInt32BE(0);
  }

  /**
   * Drops `n` bytes from the front of the first chunk (n <= its length).
   * @param {number} n
   * @private
   */
  _advance(n) {
    const first = this._buffers[this._head];
    this._bufferedBytes -= n;
    if (n === first.length) this._shift();
    else this._buffers[this._head] = first.subarray(n);
  }

  /**
   * Removes the first chunk; resets the list when it empties so it never grows.
   * @private
   */
  _shift() {
    this._buffers[this._head++] = undefined;
    if (this._head === this._buffers.length) {
      this._buffers = [];
      this._head = 0;
    } else if (this._head >= 1024 && this._head * 2 >= this._buffers.length) {
      this._buffers = this._buffers.slice(this._head);
      this._head = 0;
    }
  }

  /**
   * Takes `n` buffered bytes: a view when they sit in one chunk, else a copy.
   * @param {number} n
   * @returns {Buffer}
   * @private
   */
  _consume(n) {
    const first = this._buffers[this._head];
    if (n <= first.length) {
      const out = n === first.length ? first : first.subarray(0, n);
      this._advance(n);
      return out;
    }
    const dst = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const buf = this._buffers[this._head];
      const take = Math.min(buf.length, n - offset);
      dst.set(take === buf.length ? buf : buf.subarray(0, take), offset);
      offset += take;
      this._advance(take);
    }
    return dst;
  }
}

module.exports = { FrameDecoder, FramingFailure, encodeFrame, tlsRecord, PEER_SPEAKS_TLS };
