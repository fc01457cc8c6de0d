'use strict';

/**
 * A Node client driven by interop-tests/test_js_handler_errors.py over JSON
 * lines (command_loop.js): handlers that throw what JavaScript lets them
 * throw, or return what JSON cannot carry. argv[2] is {port, appId, options}.
 *
 * The client has no 'error' listener until `listenErrors`: what nobody
 * listens for must become a process warning, reported here as {event:
 * 'warning', code, message}, never a crash (an uncaught exception or an
 * unhandled rejection is reported as {event: 'crash'} before the process
 * dies).
 *
 *   serveOdd      {channel, kind}: a responder of one of the KINDS below
 *   subscribeOdd  {channel, throws?, async?}: a subscription handler that throws
 *                 (or, async, rejects with) one of THROWN below, Object.create(null) by default
 *   listenErrors  {}: an 'error' listener, reporting each as {event: 'error', ...} (reported())
 */

const {
  IPCClient,
  ForbiddenError,
  NotConnectedError,
  RequestTimeoutError,
  CircuitOpenError,
  MessageError
} = require('../../js-client');
const { out, runCommands } = require('./command_loop');

const config = JSON.parse(process.argv[2] || '{}');
const client = new IPCClient(config.appId || 'app', { host: '127.0.0.1', port: config.port, ...(config.options || {}) });

for (const event of ['uncaughtException', 'unhandledRejection']) {
  process.on(event, (err) => {
    out({ event: 'crash', kind: event, message: String(err && err.message) });
    process.exit(1);
  });
}
process.on('warning', (warning) => out({ event: 'warning', code: warning.code ?? null, message: warning.message }));

/** What a subscribeOdd handler throws, by `throws`. */
const THROWN = {
  nullProto: () => Object.create(null),
  text: () => 'a string, not an Error',
  nothing: () => undefined
};

/**
 * What an 'error' listener got, as JSON: whether it is an Error, its name,
 * code, message and remoteType, and its cause (`causeType` null: none).
 * @param {unknown} err
 * @returns {object}
 */
function reported(err) {
  const isError = err instanceof Error;
  const hasCause = isError && Object.hasOwn(err, 'cause');
  return {
    isError,
    name: isError ? err.name : null,
    code: isError ? (err.code ?? null) : null,
    message: isError ? err.message : String(err),
    remoteType: isError ? (err.remoteType ?? null) : null,
    causeType: hasCause ? typeof err.cause : null,
    cause: hasCause && typeof err.cause === 'string' ? err.cause : null
  };
}

/** Handlers by kind. */
const KINDS = {
  throwText: () => {
    throw 'a string, not an Error';
  },
  throwNullProto: () => {
    throw Object.create(null);
  },
  rejectNullProto: async () => {
    throw Object.create(null);
  },
  streamNullProto: async function* () {
    yield 1;
    throw Object.create(null);
  },
  unreadableMessage: () => {
    const err = new Error('x');
    Object.defineProperty(err, 'message', {
      get() {
        throw new Error('boom');
      }
    });
    throw err;
  },
  // errors that cannot be sent as they are (§6.3): answered handler_error, made sendable
  loneSurrogate: async () => {
    throw new TypeError('bad \ud800 text');
  },
  hugeMessage: () => {
    throw new RangeError('x'.repeat(17 * 1024 * 1024)); // over the server's 16 MiB frame limit
  },
  bigintDetails: () => {
    throw new ForbiddenError('not you', { details: { n: 10n } });
  },
  cyclicDetails: () => {
    const details = {};
    details.self = details;
    throw new ForbiddenError('not you', { details });
  },
  streamLoneSurrogate: function* () {
    yield 1;
    throw new Error('bad \udc00');
  },
  // this client's local errors, as a handler whose downstream call failed throws them: handler_error (§6.3)
  throwNotConnected: () => {
    throw new NotConnectedError('downstream not connected');
  },
  rejectRequestTimeout: async () => {
    throw new RequestTimeoutError('downstream timed out');
  },
  throwCircuitOpen: () => {
    throw new CircuitOpenError('downstream circuit open');
  },
  throwMessageError: () => {
    throw new MessageError('downstream bad value');
  },
  throwForbidden: () => {
    throw new ForbiddenError('not you');
  },
  // results JSON would write as {}, their data lost: handler_error, as Python refuses a set
  mapResult: () => new Map([['a', 1]]),
  setInResult: async () => ({ tags: new Set(['a']) })
};

const ops = {
  connect: () => client.connect(),
  serveOdd: (cmd) => {
    const handler = KINDS[cmd.kind];
    if (handler === undefined) throw new TypeError(`unknown kind ${cmd.kind}`);
    return client.serve(cmd.channel, handler).then(() => null);
  },
  subscribeOdd: (cmd) => {
    const make = THROWN[cmd.throws ?? 'nullProto'];
    if (make === undefined) throw new TypeError(`unknown throws ${cmd.throws}`);
    const handler = cmd.async
      ? async () => {
          throw make();
        }
      : () => {
          throw make();
        };
    return client.subscribe(cmd.channel, handler).then(() => null);
  },
  listenErrors: () => {
    client.on('error', (err) => out({ event: 'error', ...reported(err) }));
    return null;
  },
  serveEcho: (cmd) => client.serve(cmd.channel, (msg) => msg.payload).then(() => null)
};

runCommands(ops, () => client.disconnect());
