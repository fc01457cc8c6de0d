'use strict';

/**
 * Raw-socket framing checks from Node towards the Python server: frames
 * written one byte per write, a thousand frames in one write, and frames the
 * server must refuse. Uses only js-client's framing and envelope modules, so
 * the bytes on the wire are exactly the ones chosen here.
 *
 * argv: port mode [extra]. Prints JSON lines: {"event": "reply", ...} for
 * every frame the server sends, {"event": "closed"} when it closes, and
 * {"event": "done", ...} with a summary.
 */

const net = require('node:net');
const { FrameDecoder, encodeFrame } = require('../../js-client/lib/framing');
const { buildMessage, decodeMessage, encodeMessage } = require('../../js-client/lib/envelope');

const [port, mode, extra] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const socket = net.connect({ host: '127.0.0.1', port });
socket.setNoDelay(true);
const decoder = new FrameDecoder({ maxFrameSize: null });
const replies = [];
let onReply = () => {};

socket.on('data', (chunk) => {
  for (const body of decoder.feed(chunk)) {
    const msg = decodeMessage(body);
    replies.push(msg);
    out({ event: 'reply', reply_to: msg.reply_to, payload: msg.payload, error: msg.error ?? null });
    onReply(msg);
  }
});
socket.on('error', (err) => out({ event: 'socketError', code: err.code }));
socket.on('close', () => {
  out({ event: 'closed', replies: replies.length });
  process.exit(0);
});

/**
 * Resolves with the next frame from the server.
 * @returns {Promise<object>}
 */
function nextReply() {
  return new Promise((resolve) => {
    onReply = (msg) => {
      onReply = () => {};
      resolve(msg);
    };
  });
}

/**
 * Writes `buf` one byte per write, waiting for each to be flushed.
 * @param {Buffer} buf
 */
async function writeBytewise(buf) {
  for (let i = 0; i < buf.length; i++) {
    await new Promise((resolve) => socket.write(buf.subarray(i, i + 1), resolve));
  }
}

const frame = (msg) => encodeFrame(encodeMessage(msg));
const ping = () => buildMessage('request', 'raw', 'system', { action: 'ping' });

async function handshake(bytewise) {
  const hello = buildMessage('request', 'raw', 'system', { action: 'connect', connection_id: `raw-${process.pid}`, protocol: 2, client: 'raw/0' });
  const reply = nextReply();
  if (bytewise) await writeBytewise(frame(hello));
  else socket.write(frame(hello));
  const msg = await reply;
  if (msg.reply_to !== hello.message_id) throw new Error('bad handshake reply');
  return msg.payload;
}

const modes = {
  // Handshake and three pings, every byte in its own write.
  async bytewise() {
    await handshake(true);
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const p = ping();
      ids.push(p.message_id);
      const reply = nextReply();
      await writeBytewise(frame(p));
      await reply;
    }
    const answered = replies.slice(1).map((m) => m.reply_to);
    out({ event: 'done', ok: JSON.stringify(answered) === JSON.stringify(ids), answered: answered.length });
    socket.end();
  },
  // 1,000 pings in a single write; every one answered, in order.
  async burst() {
    await handshake(false);
    const pings = Array.from({ length: 1000 }, ping);
    const all = new Promise((resolve) => {
      onReply = () => {
        if (replies.length === 1001) resolve();
      };
    });
    socket.write(Buffer.concat(pings.map(frame)));
    await all;
    const inOrder = replies.slice(1).every((m, i) => m.reply_to === pings[i].message_id && m.payload.status === 'pong');
    out({ event: 'done', ok: inOrder, answered: replies.length - 1 });
    socket.end();
  },
  // A length prefix over the server's limit (argv[4]), then a little body.
  async oversize() {
    await handshake(false);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(Number(extra) + 1, 0);
    socket.write(Buffer.concat([prefix, Buffer.from('{"message_id":')]));
  },
  // A zero-length frame after the handshake.
  async zero() {
    await handshake(false);
    socket.write(Buffer.alloc(4));
  },
  // A frame that is not JSON.
  async garbage() {
    await handshake(false);
    socket.write(encodeFrame(Buffer.from('this is not json')));
  }
};

modes[mode]().catch((err) => {
  out({ event: 'failed', message: err.message });
  process.exit(1);
});
