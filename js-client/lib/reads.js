'use strict';

/**
 * Where a plain TCP connection's reads land (the socket's `onread`, as
 * ipc_client/reads.py's `get_buffer`): the rest of a large frame's own
 * buffer while one is assembled, so its bytes go from the kernel straight
 * into the frame, never copied out of the chunks they arrived in; else the
 * connection's slab, 64 KiB that successive reads fill, replaced when
 * little of it is left. The frames handed on are views of a slab or of
 * their own buffer, so a slab is never written twice: it is dropped, and
 * freed once no view holds it. Read so, a chunk also skips the stream
 * machinery of 'data' events. A TLS socket has no `onread`: it is read
 * through 'data', and a large frame is filled from the chunks as they come.
 */

const SLAB_BYTES = 64 * 1024;
/** A slab with less than this left is replaced, so that reads stay large. */
const MIN_READ_BYTES = 16 * 1024;

/**
 * The `onread` option of a connection's socket.
 * @param {{readBuffer(fallback: null): Buffer|null}} proto the connection's protocol.
 * @param {(chunk: Buffer) => void} onData what the bytes read go to.
 * @returns {{buffer: () => Buffer, callback: (nread: number, buf: Buffer) => void}}
 */
function readsInto(proto, onData) {
  let slab = null;
  let used = 0;
  return {
    buffer() {
      const frame = proto.readBuffer(null);
      if (frame !== null) return frame;
      if (slab === null || SLAB_BYTES - used < MIN_READ_BYTES) {
        slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
        used = 0;
      }
      return slab.subarray(used);
    },
    callback(nread, buf) {
      if (slab !== null && buf.buffer === slab.buffer) used += nread;
      onData(buf.subarray(0, nread));
    }
  };
}

module.exports = { readsInto, SLAB_BYTES, MIN_READ_BYTES };
