'use strict';

/**
 * A Node client driven by interop-tests/test_js_iterators.py over JSON lines
 * (command_loop.js): subscription() and requests() loops, and sendRequest()
 * with coalesce and cacheTtl. argv[2] is {port, appId, options}.
 *
 * A loop is started by a command and runs in the background; what it sees
 * is reported as events: {event: 'item', loop, channel, payload} for each
 * message or request, {event: 'loopEnd', loop, error} when it ends. A loop
 * started `paused` only registers: `drain` takes what its buffer holds.
 */

const { IPCClient } = require('../../js-client');
const { out, describe, runCommands } = require('./command_loop');

const config = JSON.parse(process.argv[2] || '{}');
const client = new IPCClient(config.appId || 'app', { host: '127.0.0.1', port: config.port, ...(config.options || {}) });
/** @type {Map<string, object>} loop name -> its iterator */
const loops = new Map();
/** @type {Map<string, object>} loop name -> the last request it holds unanswered ('hold') */
const holds = new Map();

/**
 * Runs `for await` over an iterator, handling each item, until it ends.
 * @param {string} name
 * @param {AsyncIterable<any>} it
 * @param {(item: any) => void} handle
 * @param {number|undefined} stopAfter break after this many items.
 */
async function run(name, it, handle, stopAfter) {
  let seen = 0;
  try {
    for await (const item of it) {
      handle(item);
      if (++seen === stopAfter) break;
    }
    out({ event: 'loopEnd', loop: name, error: null });
  } catch (err) {
    out({ event: 'loopEnd', loop: name, error: describe(err) });
  }
}

/** What a served request's loop does with it: answer `mode` ('echo', 'fail', or 'hold': kept unanswered). */
function answer(mode, req, loop) {
  if (mode === 'echo') return req.respond({ echo: req.payload, channel: req.channel, by: 'node' });
  if (mode === 'fail') return req.fail(new RangeError(`refused ${JSON.stringify(req.payload)}`));
  holds.set(loop, req);
  return null;
}

const iteratorOptions = (cmd) => ({ maxBuffered: cmd.maxBuffered, overflow: cmd.overflow });

const ops = {
  connect: () => client.connect(),
  disconnect: () => client.disconnect().then(() => null),
  metrics: () => client.getMetrics(),
  subscription: async (cmd) => {
    const it = await client.subscription(cmd.channel, iteratorOptions(cmd)).ready();
    loops.set(cmd.loop, it);
    if (!cmd.paused) {
      run(cmd.loop, it, (msg) => out({ event: 'item', loop: cmd.loop, channel: msg.channel_id, payload: msg.payload }), cmd.stopAfter);
    }
    return null;
  },
  requests: async (cmd) => {
    const it = await client.requests(cmd.channel, iteratorOptions(cmd)).ready();
    loops.set(cmd.loop, it);
    const handle = (req) => {
      out({ event: 'item', loop: cmd.loop, channel: req.channel, payload: req.payload });
      answer(cmd.mode || 'echo', req, cmd.loop);
    };
    if (!cmd.paused) run(cmd.loop, it, handle, cmd.stopAfter);
    return null;
  },
  // Takes what a paused loop's buffer holds; requests are answered as `mode` says.
  drain: async (cmd) => {
    const it = loops.get(cmd.loop);
    const items = [];
    while (it.buffered > 0) {
      const { value } = await it.next();
      items.push(value.payload);
      if (cmd.mode) answer(cmd.mode, value, cmd.loop);
    }
    return { items, dropped: it.dropped };
  },
  buffered: (cmd) => loops.get(cmd.loop).buffered,
  // The request a 'hold' loop keeps: whether its requester gave up (req.signal), and what answering it now does.
  held: (cmd) => {
    const req = holds.get(cmd.loop);
    return { payload: req.payload, aborted: req.signal !== null && req.signal.aborted };
  },
  respondHeld: (cmd) => holds.get(cmd.loop).respond(cmd.result ?? null),
  close: async (cmd) => {
    await loops.get(cmd.loop).return();
    return null;
  },
  request: async (cmd) => {
    const options = { coalesce: cmd.coalesce, cacheTtl: cmd.cacheTtl, timeout: cmd.timeoutMs };
    return (await client.sendRequest(cmd.channel, cmd.payload ?? null, options)).payload;
  },
  // Fire several identical requests at once; each outcome is reported as an event.
  startRequests: (cmd) => {
    for (let i = 0; i < cmd.count; i++) {
      client.request(cmd.channel, cmd.payload ?? null, { coalesce: cmd.coalesce, cacheTtl: cmd.cacheTtl }).then(
        (payload) => out({ event: 'requestDone', tag: cmd.tag, ok: true, payload }),
        (err) => out({ event: 'requestDone', tag: cmd.tag, ok: false, error: describe(err) })
      );
    }
    return null;
  }
};

client.on('error', (err) => out({ event: 'error', error: describe(err) }));
client.on('close', () => out({ event: 'close' }));

runCommands(ops, () => client.disconnect());
