'use strict';

/**
 * The agent's commands for binary payloads (docs/protocol.md §16), used by
 * interop-tests/test_js_binary.py. Bytes cannot cross the agent's JSON
 * lines, so both ways they are described:
 *
 * - in a command, `{"$bytes": {"hex": "00ff"}}` or `{"$bytes": {"size": n,
 *   "seed": s}}` (byte i is (i + s) mod 256) anywhere in a payload becomes
 *   bytes, sent as `"as"` says: `buffer` (the default), `uint8array`,
 *   `arraybuffer`, `view` (a Uint8Array into a larger buffer, offset 3),
 *   `dataview`, or the name of a typed array (`Int16Array`, `Float64Array`...):
 *   a window at offset 8 of a larger buffer whose other bytes are 0xee;
 * - in a result or an event, every binary value received is
 *   `{"$bytes": {"type": its class, "size": n, "sha256": hex, "hex": its
 *   first 32 bytes}}`, so a test sees that it arrived as a Buffer, and which.
 */

const crypto = require('node:crypto');

/**
 * The bytes of `{size, seed}`: byte i is (i + seed) mod 256.
 * @param {number} size
 * @param {number} [seed]
 * @returns {Buffer}
 */
function pattern(size, seed = 0) {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i + seed) & 0xff;
  return out;
}

/**
 * A command's payload with each `{"$bytes": ...}` made bytes of the kind it names.
 * @param {unknown} value
 * @returns {unknown}
 */
function materialise(value) {
  if (Array.isArray(value)) return value.map(materialise);
  if (value === null || typeof value !== 'object') return value;
  const spec = value.$bytes;
  if (spec === undefined) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, materialise(v)]));
  const bytes = spec.hex !== undefined ? Buffer.from(spec.hex, 'hex') : pattern(spec.size, spec.seed ?? 0);
  switch (spec.as ?? 'buffer') {
    case 'buffer':
      return bytes;
    case 'uint8array':
      return new Uint8Array(bytes);
    case 'arraybuffer':
      return new Uint8Array(bytes).buffer;
    case 'view': {
      const backing = new Uint8Array(bytes.length + 6).fill(0xee);
      backing.set(bytes, 3);
      return backing.subarray(3, 3 + bytes.length);
    }
    case 'dataview':
      return windowOf(DataView, bytes);
    default: {
      const Kind = /^[A-Z][A-Za-z0-9]*Array$/.test(spec.as) ? globalThis[spec.as] : undefined;
      if (typeof Kind?.BYTES_PER_ELEMENT === 'number') return windowOf(Kind, bytes); // a typed array's constructor
      throw new TypeError(`unknown $bytes kind ${spec.as}`);
    }
  }
}

/**
 * A `Kind` (DataView or a typed array) over `bytes` at byte offset 8 of a
 * larger ArrayBuffer whose other bytes are 0xee: only the window is the value.
 * @param {Function} Kind
 * @param {Buffer} bytes its length a multiple of Kind's element size.
 * @returns {ArrayBufferView}
 */
function windowOf(Kind, bytes) {
  const backing = new ArrayBuffer(bytes.length + 24);
  new Uint8Array(backing).fill(0xee).set(bytes, 8);
  return Kind === DataView ? new DataView(backing, 8, bytes.length) : new Kind(backing, 8, bytes.length / Kind.BYTES_PER_ELEMENT);
}

/**
 * A received value as JSON: each binary value described (its class, size, digest).
 * @param {unknown} value
 * @returns {unknown}
 */
function described(value) {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
    const buf = value instanceof ArrayBuffer ? Buffer.from(value) : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: { type: value.constructor.name, size: buf.length, sha256: crypto.createHash('sha256').update(buf).digest('hex'), hex: buf.subarray(0, 32).toString('hex') } };
  }
  if (Array.isArray(value)) return value.map(described);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, described(v)]));
}

/**
 * The commands, for Object.assign(ops, binaryOps(client, out, describe)).
 * @param {import('../../js-client').IPCClient} client
 * @param {(obj: object) => void} out
 * @param {(err: unknown) => object} describe
 * @returns {Record<string, (cmd: any) => unknown>}
 */
function binaryOps(client, out, describe) {
  return {
    binRequest: async (cmd) => described((await client.sendRequest(cmd.channel, materialise(cmd.payload), cmd.timeoutMs)).payload),
    binPublish: async (cmd) => (await client.publish(cmd.channel, materialise(cmd.payload), { ack: !!cmd.ack })) ?? null,
    binNotify: (cmd) => client.notify(cmd.channel, materialise(cmd.payload)).then(() => null),
    binSubscribe: (cmd) =>
      client.subscribe(cmd.channel, (msg) => out({ event: 'binMessage', sub: cmd.channel, channel: msg.channel_id, payload: described(msg.payload) })).then(() => null),
    // A responder: reports what it got, answers it back (`echo`) or `cmd.reply`.
    binServe: (cmd) =>
      client
        .serve(cmd.channel, (msg) => {
          out({ event: 'binServed', channel: cmd.channel, payload: described(msg.payload) });
          return cmd.reply === undefined ? msg.payload : materialise(cmd.reply);
        })
        .then(() => null),
    // A streaming responder: `chunks` items of `size` bytes, item i seeded i.
    binServeStream: (cmd) =>
      client
        .serve(cmd.channel, async function* (msg) {
          const { chunks, size } = msg.payload;
          for (let i = 0; i < chunks; i++) yield { i, data: pattern(size, i) };
        })
        .then(() => null),
    // A stream consumer: its items' classes and sizes, and the digest of all their bytes.
    binStream: async (cmd) => {
      const hash = crypto.createHash('sha256');
      const types = new Set();
      const sizes = [];
      let error = null;
      try {
        for await (const item of client.stream(cmd.channel, materialise(cmd.payload), { window: cmd.window })) {
          const data = item instanceof Uint8Array ? item : item.data;
          types.add(data.constructor.name);
          sizes.push(data.length);
          hash.update(data);
        }
      } catch (err) {
        error = describe(err);
      }
      return { types: [...types], sizes, sha256: hash.digest('hex'), error };
    },
    binAtLimit: (cmd) => atLimit(client, cmd, describe)
  };
}

/**
 * Sends a request whose frame body is exactly the connection's limit (or
 * one byte more, `over`): the size of a frame is learnt from one that went
 * out (timestamps and deadlines change a frame's length by a digit now and
 * then, so it tries again until it is exact; a try that misses goes out
 * like any request when it is under the limit).
 * @returns {Promise<object>} `{sent, answer}` or `{sent: false, error}` with the attempted size;
 *   `bodies`: the size of every frame body that went out meanwhile, the probe's first.
 */
async function atLimit(client, cmd, describe) {
  const conn = client._conn;
  const limit = conn.sendLimit;
  const sizes = [];
  const write = conn.write;
  conn.write = function recorded(frame, onWritten) {
    sizes.push(Array.isArray(frame) ? frame.reduce((n, part) => n + part.length, 0) - 4 : frame.length - 4);
    return write.call(this, frame, onWritten);
  };
  try {
    const want = limit + (cmd.over ? 1 : 0);
    await client.sendRequest(cmd.channel, { data: pattern(1000) }, cmd.timeoutMs);
    let overhead = sizes[sizes.length - 1] - 1000;
    for (let attempt = 0; attempt < 5; attempt++) {
      const size = want - overhead;
      const before = sizes.length;
      try {
        const res = await client.sendRequest(cmd.channel, { data: pattern(size) }, cmd.timeoutMs);
        const body = sizes[before];
        if (body === want) return { sent: true, body, limit, answer: described(res.payload), bodies: sizes.slice() };
        overhead = body - size;
      } catch (err) {
        if (err.code !== 'too_large') throw err;
        if (err.size === want) return { sent: sizes.length > before, attempted: err.size, limit, error: describe(err), bodies: sizes.slice() };
        overhead = err.size - size;
      }
    }
    throw new Error(`no frame of exactly ${want} bytes in 5 tries`);
  } finally {
    delete conn.write;
  }
}

module.exports = { binaryOps, pattern, materialise, described };
