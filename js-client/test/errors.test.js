'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const errors = require('../lib/errors');
const pub = require('..');
const { loadErrorCodes } = require('./helpers');

const { ErrorCode, IpcError, RemoteError, errorFromWire, errorToWire } = errors;

test('errors - the enum equals interop-tests/spec/error_codes.json', () => {
  const spec = loadErrorCodes().codes.map((c) => c.code);
  assert.deepEqual(Object.values(ErrorCode), spec);
  for (const [key, value] of Object.entries(ErrorCode)) assert.equal(key, value.toUpperCase());
});

test('errors - every class carries its code and name', () => {
  const cases = [
    [new errors.FrameError('x'), 'bad_frame'],
    [new errors.FrameTooLargeError(2, 1), 'too_large'],
    [new errors.MessageError('x'), 'bad_message'],
    [new errors.NotConnectedError(), 'not_connected'],
    [new errors.ConnectionLostError(), 'connection_lost'],
    [new errors.RequestTimeoutError(), 'timeout'],
    [new errors.CircuitOpenError(), 'circuit_open'],
    [new errors.QueueFullError(), 'queue_full'],
    [new errors.QueueFileError('x', { path: '/q' }), 'queue_file'],
    [new errors.AlreadyServingError('svc'), 'already_serving'],
    [new errors.AbortError(), 'cancelled'],
    [new errors.NoRespondersError(), 'no_responders'],
    [new errors.ResponderLostError(), 'responder_lost'],
    [new errors.HandlerError(), 'handler_error'],
    [new errors.UnauthorizedError(), 'unauthorized'],
    [new errors.ForbiddenError(), 'forbidden'],
    [new errors.SlowConsumerError(), 'slow_consumer'],
    [new errors.ShuttingDownError(), 'shutting_down'],
    [new errors.TooManyConnectionsError(), 'too_many_connections'],
    [new errors.LimitExceededError(), 'limit_exceeded'],
    [new errors.BadRequestError(), 'bad_request'],
    [new errors.IdempotencyConflictError(), 'idempotency_conflict']
  ];
  for (const [err, code] of cases) {
    assert.equal(err.code, code);
    assert.ok(err instanceof IpcError && err instanceof Error);
    assert.equal(err.name, err.constructor.name);
  }
  assert.deepEqual(new Set(cases.map(([, code]) => code)), new Set(Object.values(ErrorCode)));
});

test('errors - a bad_request carries its field errors', () => {
  const fieldErrors = [{ loc: ['items', 0, 'qty'], msg: 'Input should be greater than 0', type: 'greater_than' }];
  const err = errorFromWire({ code: 'bad_request', message: 'invalid', details: { errors: fieldErrors } });
  assert.ok(err instanceof errors.BadRequestError && err instanceof RemoteError);
  assert.deepEqual(err.errors, fieldErrors);
  assert.deepEqual(err.details, { errors: fieldErrors });
  assert.deepEqual(new errors.BadRequestError('x').errors, []);
  assert.deepEqual(errorToWire(err), { code: 'bad_request', message: 'invalid', details: { errors: fieldErrors }, remote_type: 'BadRequestError' });
});

test('errors - errorFromWire maps codes to classes with remote details', () => {
  const err = errorFromWire({ code: 'handler_error', message: 'division by zero', remote_type: 'ZeroDivisionError', remote_stack: 'tb', details: { a: 1 } });
  assert.ok(err instanceof errors.HandlerError && err instanceof RemoteError);
  assert.equal(err.message, 'division by zero');
  assert.equal(err.remoteType, 'ZeroDivisionError');
  assert.equal(err.remoteStack, 'tb');
  assert.deepEqual(err.details, { a: 1 });
  assert.ok(errorFromWire({ code: 'no_responders' }) instanceof errors.NoRespondersError);
  const timeout = errorFromWire({ code: 'timeout', message: '' });
  assert.ok(timeout instanceof errors.RequestTimeoutError && timeout.remote === true);
  const other = errorFromWire({ code: 'bad_message', message: 'm' });
  assert.ok(other instanceof RemoteError);
  assert.equal(other.code, 'bad_message');
});

test('errors - a code that is no string is handler_error, a message that is no string empty, as in Python', () => {
  // A 1.1.x handler's error object (docs/legacy.md); Python's twin: tests/test_legacy_error_objects.py.
  for (const code of [5, true, null, '', ['x'], { c: 1 }]) {
    const err = errorFromWire({ code, message: 'm' });
    assert.ok(err instanceof errors.HandlerError, JSON.stringify(code));
    assert.equal(err.code, 'handler_error');
    assert.equal(err.message, 'm');
  }
  for (const message of [7, true, ['m'], { m: 1 }]) {
    assert.equal(errorFromWire({ code: 'not_found', message }).message, errorFromWire({ code: 'not_found', message: '' }).message);
  }
});

test('errors - a too_large answer is a FrameTooLargeError too, as in Python (§12.3)', () => {
  const err = errorFromWire({ code: 'too_large', message: 'the answer (4000 bytes) is larger than the requester accepts (2048 bytes)' });
  assert.ok(err instanceof errors.FrameTooLargeError && err instanceof RemoteError);
  assert.equal(err.code, 'too_large');
  assert.equal(err.message, 'the answer (4000 bytes) is larger than the requester accepts (2048 bytes)');
  assert.deepEqual([err.size, err.limit], [undefined, undefined]); // index.d.ts: both optional (its text gives them)
  assert.ok(new errors.FrameTooLargeError(10, 5) instanceof errors.FrameTooLargeError);
  assert.ok(!(errorFromWire({ code: 'limit_exceeded' }) instanceof errors.FrameTooLargeError));
  assert.ok(!(new errors.MessageError('m') instanceof errors.FrameTooLargeError));
  assert.ok(!(new RemoteError('too_large', 'x') instanceof errors.FrameError));
});

test('errors - errorToWire describes thrown errors for Python (§6.3)', () => {
  assert.deepEqual(errorToWire(new TypeError('bad input')), { code: 'handler_error', message: 'bad input', remote_type: 'TypeError' });
  const custom = new errors.ForbiddenError('no');
  assert.deepEqual(errorToWire(custom), { code: 'forbidden', message: 'no', remote_type: 'ForbiddenError' });
  assert.deepEqual(errorToWire('plain string'), { code: 'handler_error', message: 'plain string', remote_type: 'string' });
  assert.ok(errorToWire(new Error('x'), { exposeStacks: true }).remote_stack.includes('Error: x'));
});

test('errors - errorToWire: a local client error thrown by a handler is handler_error, only a RemoteError keeps its code (§6.3)', () => {
  // client-only codes (not_connected, circuit_open...) never go on the wire; a local timeout or bad value is the handler's failure
  const local = [
    new errors.NotConnectedError('down'), new errors.RequestTimeoutError('slow'), new errors.CircuitOpenError('open'),
    new errors.MessageError('bad'), new errors.ConnectionLostError('lost'), new errors.QueueFullError('full'),
    new errors.FrameTooLargeError(10, 5), new errors.AbortError('gone')
  ];
  for (const err of local) {
    assert.deepEqual(errorToWire(err), { code: 'handler_error', message: err.message, remote_type: err.name }, err.name);
  }
  // a remote answer a handler passes on keeps its code and remote type, as Python's RemoteError does
  const passedOn = errorFromWire({ code: 'no_responders', message: 'none', remote_type: 'NoResponders' });
  assert.deepEqual(errorToWire(passedOn), { code: 'no_responders', message: 'none', remote_type: 'NoResponders' });
});

test('errors - errorToWire never throws, whatever was thrown: a value with no string form, getters that throw, a Proxy', () => {
  const unreadable = new Error('x');
  Object.defineProperty(unreadable, 'message', {
    get() {
      throw new Error('boom');
    }
  });
  const badName = new RangeError('m');
  badName.name = Object.create(null);
  const noPrimitive = {
    [Symbol.toPrimitive]() {
      throw new Error('no');
    }
  };
  const trap = new Proxy({}, {
    getPrototypeOf() {
      throw new Error('trap');
    }
  });
  assert.deepEqual(errorToWire(Object.create(null)), { code: 'handler_error', message: '[object Object]', remote_type: 'object' });
  assert.deepEqual(errorToWire(noPrimitive), { code: 'handler_error', message: '[object Object]', remote_type: 'object' });
  assert.deepEqual(errorToWire(trap), { code: 'handler_error', message: '[object Object]', remote_type: 'object' });
  assert.deepEqual(errorToWire(unreadable), { code: 'handler_error', message: '<unprintable Error object>', remote_type: 'Error' });
  assert.deepEqual(errorToWire(badName), { code: 'handler_error', message: 'm', remote_type: '[object Object]' });
  const stackless = new Error('s');
  Object.defineProperty(stackless, 'stack', {
    get() {
      throw new Error('no stack');
    }
  });
  assert.deepEqual(errorToWire(stackless, { exposeStacks: true }), { code: 'handler_error', message: 's', remote_type: 'Error' });
});

test('errors - the package exports every error class', () => {
  for (const name of Object.keys(errors)) {
    if (name === 'errorFromWire' || name === 'errorToWire') continue;
    assert.equal(pub[name], errors[name], name);
  }
});
