'use strict';

/**
 * The agent's commands for streams and cancellation (docs/protocol.md §15),
 * merged into agent.js's ops. Consumers report what they got as results or
 * events; producers are described by data (`kind`) and report their life
 * (pulled, closed, aborted) as events.
 *
 *   stream       {channel, payload, timeoutMs, idleTimeoutMs, window, breakAfter, collect}
 *                -> {items|count, error, elapsedMs}
 *   startStream  {tag, channel, ..., pauseAfter}: reads pauseAfter items, then holds the loop
 *                (event streamPaused) until resumeStream / breakStream {tag}; event streamDone
 *   startAbortable {tag, channel, payload, timeoutMs, kind: 'request'|'publish'|'stream'}; abort {tag}
 *                -> event abortDone {tag, error, abortedAt}
 *   serveStream  {channel, kind: 'count'|'endless'|'failAfter'|'stall'|'burst', size, schema}: an async function*
 *                ('burst': yields `payload` items without ever awaiting, then reports event producerRuns
 *                {maxRun}: the most items it yielded between two turns of the event loop);
 *                kind 'syncCount'|'syncEndless'|'syncFailAfter': the same as a function*;
 *                kind 'asyncCount': an async handler resolving to an async generator;
 *                `schema`: served typed (its request checked, its items not)
 *   serveAbortable {channel, ignore}: a handler that waits for ctx.signal (event handlerAborted)
 */

/** Wall-clock ms with sub-ms resolution, comparable across processes on one host. */
function wallMs() {
  return performance.timeOrigin + performance.now();
}

/**
 * @param {import('../../js-client').IPCClient} client
 * @param {(obj: object) => void} out
 * @param {(err: unknown) => object} describe
 * @returns {Record<string, (cmd: any) => unknown>}
 */
function streamOps(client, out, describe) {
  const paused = new Map(); // tag -> {resume, stop}
  const controllers = new Map(); // tag -> AbortController

  const options = (cmd, signal) => ({
    ...(cmd.timeoutMs !== undefined ? { timeout: cmd.timeoutMs } : {}),
    ...(cmd.idleTimeoutMs !== undefined ? { idleTimeout: cmd.idleTimeoutMs } : {}),
    ...(cmd.window !== undefined ? { window: cmd.window } : {}),
    ...(signal !== undefined ? { signal } : {})
  });

  async function consume(cmd, stream, onItem) {
    const started = performance.now();
    const items = [];
    let count = 0;
    let error = null;
    try {
      for await (const item of stream) {
        count++;
        if (cmd.collect !== false) items.push(item);
        if (onItem !== undefined) await onItem(count);
        if (cmd.breakAfter !== undefined && count >= cmd.breakAfter) break;
      }
    } catch (err) {
      error = describe(err);
    }
    return { ...(cmd.collect !== false ? { items } : {}), count, error, elapsedMs: performance.now() - started };
  }

  function producer(cmd) {
    const report = (event, extra) => out({ event, channel: cmd.channel, ...extra });
    const item = (i) => (cmd.size !== undefined ? 'x'.repeat(cmd.size) : i);
    switch (cmd.kind) {
      case 'count':
        return async function* (msg) {
          const n = typeof msg.payload === 'number' ? msg.payload : msg.payload.n;
          for (let i = 0; i < n; i++) yield item(i);
        };
      case 'endless':
        return async function* (msg, ctx) {
          let pulled = 0;
          try {
            for (;;) {
              pulled++;
              if (pulled % 1000 === 0 || pulled <= 256) report('producerPulled', { pulled });
              yield item(pulled - 1);
            }
          } finally {
            report('producerClosed', { pulled, aborted: ctx.signal.aborted, reason: ctx.signal.aborted ? describe(ctx.signal.reason) : null });
          }
        };
      case 'failAfter':
        return async function* (msg) {
          for (let i = 0; i < msg.payload; i++) yield i;
          throw new TypeError(`failed after ${msg.payload}`);
        };
      case 'stall':
        return async function* (msg, ctx) {
          yield 'first';
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
          report('producerAborted', { reason: describe(ctx.signal.reason), at: wallMs() });
        };
      case 'burst':
        return async function* (msg) {
          let turns = 0;
          let ticking = true;
          const tick = () => {
            turns++;
            if (ticking) setImmediate(tick);
          };
          setImmediate(tick);
          let last = -1;
          let run = 0;
          let maxRun = 0;
          try {
            for (let i = 0; i < msg.payload; i++) {
              run = turns === last ? run + 1 : 1;
              last = turns;
              maxRun = Math.max(maxRun, run);
              yield i;
            }
          } finally {
            ticking = false;
            report('producerRuns', { maxRun, turns });
          }
        };
      case 'syncCount':
        return function* (msg) {
          const n = typeof msg.payload === 'number' ? msg.payload : msg.payload.n;
          for (let i = 0; i < n; i++) yield item(i);
        };
      case 'syncEndless':
        return function* (msg, ctx) {
          let pulled = 0;
          try {
            for (;;) {
              pulled++;
              yield item(pulled - 1);
            }
          } finally {
            report('producerClosed', { pulled, aborted: ctx.signal.aborted, reason: ctx.signal.aborted ? describe(ctx.signal.reason) : null });
          }
        };
      case 'syncFailAfter':
        return function* (msg) {
          for (let i = 0; i < msg.payload; i++) yield i;
          throw new TypeError(`failed after ${msg.payload}`);
        };
      case 'asyncCount':
        // an async handler whose awaited result is a generator: it streams, as in Python
        return async (msg) => {
          await new Promise((resolve) => setImmediate(resolve));
          const n = typeof msg.payload === 'number' ? msg.payload : msg.payload.n;
          return (async function* () {
            for (let i = 0; i < n; i++) yield item(i);
          })();
        };
      default:
        throw new TypeError(`unknown stream producer kind ${cmd.kind}`);
    }
  }

  return {
    stream: (cmd) => consume(cmd, client.stream(cmd.channel, cmd.payload ?? null, options(cmd))),
    startStream: (cmd) => {
      const gate = {};
      const wait = () => new Promise((resolve) => (gate.resume = resolve));
      paused.set(cmd.tag, gate);
      const stream = client.stream(cmd.channel, cmd.payload ?? null, options(cmd));
      consume(cmd, stream, async (count) => {
        if (count !== cmd.pauseAfter) return;
        out({ event: 'streamPaused', tag: cmd.tag, count });
        const go = await wait();
        if (go === 'break') await stream.return();
      }).then((result) => out({ event: 'streamDone', tag: cmd.tag, ...result }));
      return null;
    },
    resumeStream: (cmd) => {
      paused.get(cmd.tag).resume('go');
      return null;
    },
    breakStream: (cmd) => {
      paused.get(cmd.tag).resume('break');
      return null;
    },
    startAbortable: (cmd) => {
      const controller = new AbortController();
      controllers.set(cmd.tag, controller);
      const started = performance.now();
      const { signal } = controller;
      const call =
        cmd.kind === 'publish'
          ? client.publish(cmd.channel, cmd.payload ?? null, { ack: true, signal })
          : cmd.kind === 'stream'
            ? consume(cmd, client.stream(cmd.channel, cmd.payload ?? null, options(cmd, signal))).then((r) => {
                if (r.error) throw Object.assign(new Error(r.error.message), r.error);
                return r;
              })
            : client.request(cmd.channel, cmd.payload ?? null, { signal, ...(cmd.timeoutMs !== undefined ? { timeout: cmd.timeoutMs } : {}) });
      call.then(
        (result) => out({ event: 'abortDone', tag: cmd.tag, ok: true, result, elapsedMs: performance.now() - started }),
        (err) => out({ event: 'abortDone', tag: cmd.tag, ok: false, error: describe(err), elapsedMs: performance.now() - started })
      );
      return null;
    },
    abort: (cmd) => {
      const at = wallMs();
      controllers.get(cmd.tag).abort();
      return { abortedAt: at };
    },
    serveStream: (cmd) => client.serve(cmd.channel, producer(cmd), cmd.schema === undefined ? undefined : { schema: cmd.schema }).then(() => null),
    serveAbortable: (cmd) =>
      client
        .serve(cmd.channel, (msg, ctx) => {
          out({ event: 'handlerStarted', channel: cmd.channel });
          return new Promise((resolve, reject) => {
            ctx.signal.addEventListener(
              'abort',
              () => {
                out({ event: 'handlerAborted', channel: cmd.channel, reason: describe(ctx.signal.reason), at: wallMs() });
                if (cmd.ignore) resolve('answered anyway');
                else reject(ctx.signal.reason);
              },
              { once: true }
            );
          });
        })
        .then(() => null),
    wallClock: () => wallMs()
  };
}

module.exports = { streamOps, wallMs };
