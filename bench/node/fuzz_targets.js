'use strict';

/**
 * The fuzz invariant held against each Node decoder (h11's): the input
 * decodes, or the documented error is raised (an IpcError whose code is in
 * interop-tests/spec/error_codes.json), never anything else; and how the
 * bytes are split into reads never changes the outcome (docs/protocol.md
 * §1 item 2). A breach throws InvariantBroken. The targets:
 *
 *   framing    lib/framing.js FrameDecoder: the bodies, then bad_frame or
 *              too_large (sticky), or the bytes still buffered
 *   envelope   lib/envelope.js decodeMessage on each body: a message, or
 *              bad_frame / bad_message; what decodes re-encodes (or is
 *              refused, bad_message), and the re-encoding is stable
 *   client     lib/protocol/client_protocol.js fed as a pump feeds it:
 *              receiveData/receiveFrame never throw; what they return is a
 *              message or a known event carrying a typed error
 *
 * Used by js-client/test/fuzz.test.js and bench/node/fuzz_decoder.js.
 */

const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const LIB = path.join(ROOT, 'js-client', 'lib');
const { FrameDecoder, FramingFailure } = require(path.join(LIB, 'framing'));
const { decodeMessage, encodeMessage } = require(path.join(LIB, 'envelope'));
const { IpcError } = require(path.join(LIB, 'errors'));
const { ProtocolViolation, PingReceived, PongReceived } = require(path.join(LIB, 'protocol', 'protocol'));
const { ClientProtocol, Connected, HandshakeRefused, InvalidMessage } = require(path.join(LIB, 'protocol', 'client_protocol'));

/** Every documented code (§11), read from the shared spec so new codes count at once. */
const SPEC_CODES = new Set(
  JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'error_codes.json'), 'utf8')).codes.map((c) => c.code)
);
const FRAMING_CODES = new Set(['bad_frame', 'too_large']); // §1 item 4
const ENVELOPE_CODES = new Set(['bad_frame', 'bad_message']); // §1.1, §2

/** The invariant does not hold: `target` names the decoder. */
class InvariantBroken extends Error {
  constructor(target, what) {
    super(`${target}: ${what}`);
    this.name = 'InvariantBroken';
    this.target = target;
  }
}

/** A short description of anything thrown. */
function describe(err) {
  return err instanceof Error ? `${err.constructor.name}(${err.code ?? ''}): ${String(err.message).slice(0, 200)}` : String(err);
}

/** Throws unless `err` is an IpcError with one of `codes`. */
function checkError(target, err, codes) {
  if (!(err instanceof IpcError) || !codes.has(err.code) || !SPEC_CODES.has(err.code)) {
    throw new InvariantBroken(target, `undocumented error ${describe(err)}`);
  }
}

/**
 * The framing decoder's outcome for one way of splitting a stream.
 * @param {Buffer[]} chunks
 * @param {number} maxFrameSize
 * @returns {{bodies: Buffer[], error: string|null, buffered: number}}
 */
function framingOutcome(chunks, maxFrameSize) {
  const dec = new FrameDecoder({ maxFrameSize });
  const bodies = [];
  const failed = (err) => {
    checkError('framing', err, FRAMING_CODES);
    let again = null;
    try {
      dec.feed(Buffer.alloc(1));
    } catch (e) {
      again = e;
    }
    if (again !== err) throw new InvariantBroken('framing', 'the error is not sticky');
    return { bodies, error: err.code, buffered: 0 };
  };
  for (const chunk of chunks) {
    let out;
    try {
      out = dec.feed(chunk);
    } catch (err) {
      return failed(err);
    }
    for (let i = 0; i < out.length; i++) {
      const item = out[i];
      if (item instanceof FramingFailure) {
        if (i !== out.length - 1) throw new InvariantBroken('framing', 'a FramingFailure is not last');
        return failed(item.error);
      }
      if (!(item.length > 0 && item.length <= maxFrameSize)) throw new InvariantBroken('framing', `a body of ${item.length} bytes`);
      bodies.push(item);
    }
  }
  return { bodies, error: null, buffered: dec.bufferedBytes };
}

/** Throws unless two framing outcomes are the same. */
function sameFraming(a, b, how) {
  const same =
    a.error === b.error && a.buffered === b.buffered && a.bodies.length === b.bodies.length && a.bodies.every((body, i) => body.equals(b.bodies[i]));
  if (!same) {
    const show = (o) => `${o.bodies.length} bodies, error ${o.error}, ${o.buffered} buffered`;
    throw new InvariantBroken('framing', `split ${how} changed the outcome: ${show(a)} vs ${show(b)}`);
  }
}

/**
 * The envelope decoder's verdict on one body: 'ok' or the error code.
 * What decodes must re-encode (or be refused with bad_message), and decode
 * again to the same text (a responder echoing a payload, a relay).
 * @param {Buffer} body
 * @returns {string}
 */
function envelopeOutcome(body) {
  let msg;
  try {
    msg = decodeMessage(body);
  } catch (err) {
    checkError('envelope', err, ENVELOPE_CODES);
    return err.code;
  }
  let text;
  try {
    text = encodeMessage(msg);
  } catch (err) {
    // JSON.stringify nests less deep than JSON.parse: refused, typed (§1.1).
    checkError('envelope (re-encoding)', err, new Set(['bad_message']));
    return 'ok, not re-encodable';
  }
  let again;
  try {
    again = encodeMessage(decodeMessage(Buffer.from(text, 'utf8')));
  } catch (err) {
    throw new InvariantBroken('envelope', `a re-encoded message does not decode and re-encode: ${describe(err)}`);
  }
  if (again !== text) throw new InvariantBroken('envelope', 're-encoding a decoded message is not stable');
  return 'ok';
}

/** One thing receiveFrame returned, as a comparable word; throws on anything unknown. */
function describeItem(item) {
  if (item instanceof Connected) return 'connected';
  if (item instanceof PingReceived) return 'ping';
  if (item instanceof PongReceived) return 'pong';
  if (item instanceof HandshakeRefused) {
    if (!(item.error instanceof IpcError)) throw new InvariantBroken('client', `a refusal without a typed error: ${describe(item.error)}`);
    // The server's word, relayed as a RemoteError: any code at all.
    return `refused:${SPEC_CODES.has(item.error.code) ? item.error.code : 'a code of its own'}`;
  }
  if (item instanceof InvalidMessage) {
    checkError('client', item.error, new Set(['bad_message']));
    return 'invalid:bad_message';
  }
  if (item instanceof ProtocolViolation) return `violation:${item.code}`;
  if (item !== null && typeof item === 'object' && typeof item.message_id === 'string' && typeof item.message_type === 'string') {
    return `msg:${item.message_type}`;
  }
  throw new InvariantBroken('client', `receiveFrame returned ${describe(item)}`);
}

/**
 * A client protocol's outcome when fed `chunks` as lib/connection.js feeds
 * a socket's reads (after its connect was sent).
 * @param {Buffer[]} chunks
 * @param {number} maxFrameSize the client's own limit.
 * @returns {string} what came out, in order, and the final state.
 */
function clientOutcome(chunks, maxFrameSize) {
  const proto = new ClientProtocol({ appId: 'fuzz', connectionId: 'c1', maxFrameSize });
  proto.connect();
  proto.dataToSend();
  const items = [];
  const step = (what, fn) => {
    try {
      return fn();
    } catch (err) {
      throw new InvariantBroken('client', `${what} threw ${describe(err)}`);
    }
  };
  // The empty read last: the next read, where a frame in progress meets a
  // limit the handshake lowered once its prefix was read (§1).
  for (const chunk of [...chunks, Buffer.alloc(0)]) {
    if (!proto.live) break;
    const frames = step('receiveData', () => proto.receiveData(chunk, 0));
    for (const frame of frames) {
      if (!proto.live) break;
      items.push(describeItem(step('receiveFrame', () => proto.receiveFrame(frame))));
    }
  }
  const violation = proto.violation;
  if (violation !== null) {
    checkError('client', violation.error, SPEC_CODES);
    if (violation.error.code !== violation.code) throw new InvariantBroken('client', `violation ${violation.code} carries ${violation.error.code}`);
    if (items[items.length - 1] !== `violation:${violation.code}`) items.push(`violation:${violation.code}`);
  }
  items.push(`state:${proto.state}`);
  return items.join(' ');
}

/**
 * Holds every target to the invariant on one stream, under every split.
 * @param {{bytes: Buffer}} stream from fuzz_frames.randomStream().
 * @param {Array<{name: string, chunks: Buffer[]}>} ways from fuzz_frames.splits().
 * @param {number} maxFrameSize
 * @returns {{framing: string, envelope: string[], client: string}} the outcome: the
 *   framing error (or 'ok'), each body's envelope verdict, the client's word list.
 */
function checkStream(stream, ways, maxFrameSize) {
  const [first, ...others] = ways;
  const framing = framingOutcome(first.chunks, maxFrameSize);
  for (const way of others) sameFraming(framing, framingOutcome(way.chunks, maxFrameSize), `${first.name}/${way.name}`);
  const envelope = framing.bodies.map(envelopeOutcome);
  const client = clientOutcome(first.chunks, maxFrameSize);
  for (const way of others) {
    const other = clientOutcome(way.chunks, maxFrameSize);
    if (other !== client) throw new InvariantBroken('client', `split ${first.name}/${way.name} changed the outcome: ${client} vs ${other}`);
  }
  return { framing: framing.error ?? 'ok', envelope, client };
}

module.exports = { InvariantBroken, SPEC_CODES, framingOutcome, envelopeOutcome, clientOutcome, checkStream, describe };
