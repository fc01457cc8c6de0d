'use strict';

/**
 * Random and mutated byte streams for fuzzing the Node decoders, from a
 * seeded generator so a failure can be replayed from its seed. Used by
 * js-client/test/fuzz.test.js (a bounded property test) and
 * bench/node/fuzz_decoder.js (the long run bench/fuzz.py drives); the
 * Python twin is bench/_fuzz_frames.py.
 *
 * A stream is a few frames: valid envelopes and envelopes mutated the ways
 * a hostile or broken peer gets them wrong (docs/protocol.md §1, §1.1, §2):
 * bit flips, truncation, splices, zero and huge length prefixes, invalid
 * UTF-8, deep nesting, numbers that overflow a double, lone surrogates,
 * JSON that is not an object, fields of the wrong type, trailing garbage.
 */

const MAX_U32 = 2 ** 32;

/**
 * xoshiro128** seeded through splitmix32: small, fast, and the same
 * sequence on every Node version (Math.random cannot be seeded).
 */
class Rng {
  /** @param {number} seed any 32-bit integer. */
  constructor(seed) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s = [next(), next(), next(), next()];
  }

  /** @returns {number} a uniform 32-bit unsigned integer. */
  u32() {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** @returns {number} in [0, 1). */
  float() {
    return this.u32() / MAX_U32;
  }

  /** @param {number} n @returns {number} an integer in [0, n). */
  int(n) {
    return Math.floor(this.float() * n);
  }

  /** @returns {number} an integer in [lo, hi]. */
  range(lo, hi) {
    return lo + this.int(hi - lo + 1);
  }

  /** @param {number} p @returns {boolean} true with probability p. */
  chance(p) {
    return this.float() < p;
  }

  /** @template T @param {T[]} items @returns {T} */
  pick(items) {
    return items[this.int(items.length)];
  }

  /** @param {number} n @returns {Buffer} n random bytes. */
  bytes(n) {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

function rotl(x, k) {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

const TYPES = ['request', 'response', 'notification', 'publish', 'subscribe', 'unsubscribe'];
const TOKENS = ['orders', 'created', 'a', 'b1', '*', '>', 'system', '$sys', 'services', 'é', '', 'x'.repeat(40)];
const PIECES = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u0000', '\u001f', 'é', '日本', '😀', '\u2028', '\ufeff', '\ud800', '\udc00', '{', '}', ':'];
const ODD_NUMBERS = [0, -0, 1, -1, 0.5, 2 ** 53 + 2, -(2 ** 63), 1e21, 1e-7, 5e-324, 1.7976931348623157e308, -1e308, 123456789.123];
// Raw JSON number texts: each side of the double's range, and overflows (§1.1).
const RAW_NUMBERS = [
  '1e308', '1.7976931348623157e308', '1.7976931348623159e308', '1e309', '-1e400', '1E+400', '1e-400', '-0', '0.0e0',
  '9'.repeat(308), '1' + '0'.repeat(308), '-' + '9'.repeat(320), '1' + '0'.repeat(400) + '.5', '9007199254740993', '1e99999999999'
];
// Bytes that are not UTF-8: a lone continuation, overlong, a surrogate, past U+10FFFF, truncated.
const BAD_UTF8 = ['80', 'bf', 'c0af', 'c1bf', 'e080af', 'eda080', 'edbfbf', 'f4908080', 'f8888080', 'ff', 'fe', 'e282', 'f09f98'].map((h) => Buffer.from(h, 'hex'));
const NOT_OBJECTS = ['[]', '[1,2]', '"x"', '1', '-1.5', 'null', 'true', 'false', '""', '[{}]', '  [] ', '"{}"'];
const GARBAGE = [
  'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
  '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003', // a TLS ClientHello's first bytes
  'PING\r\n',
  '\u0000\u0000\u0000'
];

/** A random string: ASCII, escapes, control characters, astral, lone surrogates. */
function randomString(rng, max = 12) {
  let s = '';
  const n = rng.chance(0.02) ? rng.range(200, 2000) : rng.int(max + 1);
  for (let i = 0; i < n; i++) s += rng.chance(0.7) ? String.fromCharCode(97 + rng.int(26)) : rng.pick(PIECES);
  return s;
}

/** A channel or pattern: mostly valid, sometimes not (§4). */
function randomChannel(rng) {
  if (rng.chance(0.05)) return randomString(rng);
  const n = rng.range(1, 4);
  const tokens = [];
  for (let i = 0; i < n; i++) tokens.push(rng.chance(0.8) ? rng.pick(TOKENS.slice(0, 4)) : rng.pick(TOKENS));
  return tokens.join('.');
}

/** A random JSON value, at most `depth` containers deep. */
function randomValue(rng, depth = 3) {
  const k = rng.int(depth > 0 ? 10 : 7);
  switch (k) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.range(-1000, 1000);
    case 3: return rng.pick(ODD_NUMBERS);
    case 4: return (rng.float() - 0.5) * 10 ** rng.range(-5, 20);
    case 5:
    case 6: return randomString(rng);
    case 7:
    case 8: {
      const obj = {};
      const n = rng.int(5);
      for (let i = 0; i < n; i++) obj[rng.chance(0.1) ? rng.pick(['__proto__', 'constructor', 'message_id', '']) : randomString(rng, 6)] = randomValue(rng, depth - 1);
      return obj;
    }
    default: {
      const n = rng.int(5);
      const arr = [];
      for (let i = 0; i < n; i++) arr.push(randomValue(rng, depth - 1));
      return arr;
    }
  }
}

/** A valid envelope as a plain object (wire field names, §2), optional fields sometimes set. */
function randomEnvelope(rng) {
  const msg = {
    message_id: rng.chance(0.9) ? `m${rng.u32().toString(36)}` : randomString(rng),
    app_id: rng.chance(0.8) ? 'fuzz' : randomString(rng, 6),
    channel_id: rng.chance(0.2) ? 'system' : randomChannel(rng),
    message_type: rng.pick(TYPES)
  };
  if (rng.chance(0.9)) msg.payload = rng.chance(0.15) ? { action: rng.pick(['ping', 'connect', 'stats', 'other']) } : randomValue(rng);
  if (rng.chance(0.8)) msg.timestamp = rng.chance(0.5) ? 1700000000.123 : rng.range(0, 2 ** 31);
  if (rng.chance(0.5)) msg.reply_to = rng.chance(0.8) ? `m${rng.u32().toString(36)}` : null;
  if (rng.chance(0.15)) msg.headers = { trace: randomString(rng, 8) };
  if (rng.chance(0.15)) msg.error = { code: rng.pick(['bad_frame', 'timeout', 'no_responders', 'handler_error', 'made_up']), message: randomString(rng) };
  if (rng.chance(0.15)) msg.timeout_ms = rng.range(0, 60000);
  if (rng.chance(0.1)) msg.ack = rng.chance(0.5);
  if (rng.chance(0.1)) msg[randomString(rng, 6) || 'extra'] = randomValue(rng, 1);
  return msg;
}

/** The connect reply a version-2 (or, without `protocol`, version-1) server sends (§3.2). */
function connectReply(rng) {
  const payload = { status: 'connected', connection_id: `c${rng.int(1000)}` };
  if (rng.chance(0.8)) Object.assign(payload, { protocol: 2, server: 'fuzz', heartbeat_interval_ms: rng.pick([0, 15000]), max_frame_size: rng.pick([1024, 65536, 16777216]) });
  return { message_id: 'r0', app_id: 'fuzz', channel_id: 'system', message_type: 'response', payload, timestamp: 0, reply_to: null };
}

/** An envelope's JSON text with `raw` (any text) as its payload. */
function withRawPayload(rng, raw) {
  const msg = randomEnvelope(rng);
  delete msg.payload;
  const text = JSON.stringify(msg);
  return `${text.slice(0, -1)},"payload":${raw}}`;
}

/** `depth` nested containers around a value. */
function nested(rng, depth) {
  const [open, close] = rng.chance(0.5) ? ['[', ']'] : ['{"k":', '}'];
  return open.repeat(depth) + '1' + close.repeat(depth);
}

/** A value of the wrong type for one envelope field, or the field removed (§2: bad_message). */
function wrongField(rng) {
  const msg = randomEnvelope(rng);
  const field = rng.pick(['message_id', 'app_id', 'channel_id', 'message_type', 'timestamp', 'reply_to', 'headers', 'error', 'timeout_ms', 'ack']);
  const wrong = [1, -1, true, null, '1', 'request2', [], {}, { code: 1 }, -0.5, { a: 1 }, [{}]];
  if (rng.chance(0.2)) delete msg[field];
  else msg[field] = rng.pick(wrong);
  return JSON.stringify(msg);
}

/**
 * The mutations, each from a fresh valid body (and the rng) to new body bytes.
 * Named so the runs can count outcomes per kind.
 */
const MUTATORS = {
  bitflip(rng, body) {
    const out = Buffer.from(body);
    for (let i = rng.range(1, 8); i > 0; i--) out[rng.int(out.length)] ^= 1 << rng.int(8);
    return out;
  },
  bytes(rng, body) {
    const at = rng.int(body.length);
    const op = rng.int(3);
    if (op === 0) return Buffer.concat([body.subarray(0, at), rng.bytes(rng.range(1, 4)), body.subarray(at)]);
    if (op === 1) return Buffer.concat([body.subarray(0, at), body.subarray(Math.min(body.length, at + rng.range(1, 8)))]);
    const out = Buffer.from(body);
    out[at] = rng.pick([0x00, 0x22, 0x5c, 0x7b, 0x7d, 0x2c, 0x3a, 0xff]);
    return out;
  },
  truncate(rng, body) {
    return body.subarray(0, rng.int(body.length));
  },
  splice(rng, body) {
    const other = Buffer.from(JSON.stringify(randomEnvelope(rng)));
    return Buffer.concat([body.subarray(0, rng.int(body.length + 1)), other.subarray(rng.int(other.length))]);
  },
  badUtf8(rng, body) {
    const at = body.indexOf('"', rng.int(body.length)) + 1 || rng.int(body.length);
    return Buffer.concat([body.subarray(0, at), rng.pick(BAD_UTF8), body.subarray(at)]);
  },
  deepNesting(rng) {
    // Around the Python decoder's limit (201 levels), and far past any stack.
    const depth = rng.chance(0.02) ? rng.pick([20000, 200000]) : rng.pick([20, 199, 200, 201, 202, 255, 256, 1000, 5000]);
    return Buffer.from(withRawPayload(rng, nested(rng, depth)));
  },
  hugeNumber(rng) {
    const raw = rng.pick(RAW_NUMBERS);
    return Buffer.from(rng.chance(0.7) ? withRawPayload(rng, rng.chance(0.5) ? raw : `[${raw}]`) : JSON.stringify(randomEnvelope(rng)).replace(/"timestamp":[^,}]+/, `"timestamp":${raw}`));
  },
  notObject(rng) {
    return Buffer.from(rng.chance(0.8) ? rng.pick(NOT_OBJECTS) : `[${JSON.stringify(randomEnvelope(rng))}]`);
  },
  wrongType(rng) {
    return Buffer.from(wrongField(rng));
  },
  badText(rng) {
    // JSON that JavaScript's own parser or a lenient one might let through.
    const pieces = ['NaN', 'Infinity', '-Infinity', '"\\ud800"', '"\\udfff\\ud800"', '"a\\u0000b"', '"\u2028"', "'x'", 'undefined', '0x10', '01', '.5', '+1', '"\\x41"', '"tab\there"'];
    const text = withRawPayload(rng, rng.pick(pieces));
    const op = rng.int(6);
    if (op === 0) return Buffer.from(`\ufeff${text}`);
    if (op === 1) return Buffer.from(`${text.slice(0, -1)},}`);
    if (op === 2) return Buffer.from(`${text} ${text}`);
    if (op === 3) return Buffer.from(`${text}/* c */`);
    if (op === 4) return Buffer.from(`${text.slice(0, -1)},"message_id":${JSON.stringify(randomString(rng))}}`); // duplicate key
    return Buffer.from(text);
  }
};
const MUTATOR_NAMES = Object.keys(MUTATORS);

/** The 4-byte big-endian prefix of `n`. */
function prefix(n) {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/**
 * One stream: 1-6 frames, each valid or mutated, most with the right
 * length prefix; sometimes a bad prefix (zero, huge, off by some bytes),
 * bytes that are no frame at all, or an unfinished frame at the end.
 *
 * @param {Rng} rng
 * @param {{maxFrameSize?: number, handshake?: boolean}} [options]
 *   `handshake`: start with a (sometimes mutated) connect reply, so a
 *   client protocol gets past its handshake.
 * @returns {{bytes: Buffer, frames: number, kinds: string[]}} the stream,
 *   the frames in it, and what each is ('valid' or a mutator's name).
 */
function randomStream(rng, { maxFrameSize = 16 * 1024 * 1024, handshake = false } = {}) {
  const parts = [];
  const kinds = [];
  const add = (kind, body) => {
    kinds.push(kind);
    parts.push(prefix(body.length), body);
  };
  if (handshake) add('reply', Buffer.from(JSON.stringify(connectReply(rng))));
  const n = rng.range(1, 6);
  for (let i = 0; i < n; i++) {
    const valid = Buffer.from(JSON.stringify(randomEnvelope(rng)));
    if (rng.chance(0.35)) {
      add('valid', valid);
      continue;
    }
    const name = rng.pick(MUTATOR_NAMES);
    const body = MUTATORS[name](rng, valid);
    const p = rng.float();
    if (p < 0.04) {
      kinds.push('prefix:zero');
      parts.push(prefix(0), body);
    } else if (p < 0.08) {
      kinds.push('prefix:huge');
      parts.push(prefix(rng.pick([maxFrameSize + 1, MAX_U32 - 1, 0x7fffffff, 0x80000000])), body);
    } else if (p < 0.12) {
      kinds.push('prefix:off');
      parts.push(prefix(Math.max(1, body.length + rng.range(-8, 8))), body);
    } else if (p < 0.14) {
      kinds.push('garbage');
      parts.push(rng.chance(0.5) ? Buffer.from(rng.pick(GARBAGE), 'latin1') : rng.bytes(rng.range(1, 64)));
    } else {
      add(name, body);
    }
  }
  if (rng.chance(0.05)) {
    kinds.push('unfinished');
    const body = Buffer.from(JSON.stringify(randomEnvelope(rng)));
    parts.push(prefix(body.length), body.subarray(0, rng.int(body.length)));
  }
  return { bytes: Buffer.concat(parts), frames: kinds.length, kinds };
}

/**
 * Ways to cut `bytes` into reads: whole, one byte at a time (short streams
 * only: long ones in 1-3 byte steps), and random chunk sizes.
 * @param {Rng} rng
 * @param {Buffer} bytes
 * @returns {Array<{name: string, chunks: Buffer[]}>}
 */
function splits(rng, bytes) {
  const cut = (sizeOf) => {
    const chunks = [];
    for (let pos = 0; pos < bytes.length; ) {
      const n = Math.max(1, sizeOf());
      chunks.push(bytes.subarray(pos, pos + n));
      pos += n;
    }
    return chunks;
  };
  const small = bytes.length <= 4096;
  const smallest = 1 + Math.floor(bytes.length / 2048); // at most about 2,048 reads a stream
  const largest = Math.max(smallest, rng.pick([2, 7, 64, 1500, bytes.length]));
  return [
    { name: 'whole', chunks: [bytes] },
    { name: 'bytewise', chunks: small ? cut(() => 1) : cut(() => Math.ceil(bytes.length / 512)) },
    { name: 'random', chunks: cut(() => rng.range(smallest, largest)) }
  ];
}

module.exports = { Rng, MUTATORS, MUTATOR_NAMES, randomEnvelope, randomStream, randomValue, connectReply, splits, prefix, withRawPayload };
