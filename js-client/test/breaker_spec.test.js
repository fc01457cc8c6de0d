'use strict';

/**
 * The circuit breaker against interop-tests/spec/circuit_breaker.json
 * (docs/resilience.md §6): its counters, its states and its events, step by
 * step on a clock the test moves. tests/test_breaker_spec.py runs the same
 * file against the Python breaker, so the two cannot drift apart.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { CircuitBreaker, parseBreakerOptions } = require('../lib/circuit_breaker');
const { ErrorCode } = require('../lib/errors');

const SPEC = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'interop-tests', 'spec', 'circuit_breaker.json'), 'utf8'));

const OUTCOMES = { ok: null, timeout: { code: ErrorCode.TIMEOUT }, handler_error: { code: ErrorCode.HANDLER_ERROR } };

/** The spec's snake_case keys, as the Node snapshot names them. */
const camel = (key) => key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

function run(scenario) {
  const options = { ...SPEC.options, ...(scenario.options ?? {}) };
  const clock = { t: 1000 };
  const events = [];
  const breaker = new CircuitBreaker(
    parseBreakerOptions({
      failureThreshold: options.failure_threshold,
      resetTimeout: options.reset_timeout_ms,
      successThreshold: options.success_threshold,
      halfOpenMaxCalls: options.half_open_max_calls
    }),
    { now: () => clock.t, wall: () => clock.t - 1000, onChange: (state) => events.push(`circuit_${state}`) }
  );
  const calls = new Map();
  const start = (name, expect) => {
    const permit = breaker.acquire();
    assert.equal(permit === null ? 'rejected' : 'admitted', expect, name);
    return permit;
  };
  scenario.steps.forEach((step, i) => {
    const where = `${scenario.name}, step ${i}: ${JSON.stringify(step)}`;
    if ('start' in step) {
      const permit = start(step.start, step.expect ?? 'admitted');
      if (permit !== null) calls.set(step.start, permit);
    } else if ('end' in step) {
      breaker.release(calls.get(step.end), OUTCOMES[step.with]);
      calls.delete(step.end);
    } else if ('cancel' in step) {
      breaker.cancel(calls.get(step.cancel));
      calls.delete(step.cancel);
    } else if ('call' in step) {
      const permit = start('call', step.expect ?? 'admitted');
      if (permit !== null) breaker.release(permit, OUTCOMES[step.call]);
    } else if ('advance_ms' in step) {
      clock.t += step.advance_ms;
    } else if ('snapshot' in step) {
      const fired = [...events];
      const snapshot = breaker.snapshot();
      const state = breaker.state;
      const got = Object.fromEntries(Object.keys(step.snapshot).map((k) => [k, snapshot[camel(k)]]));
      assert.deepEqual(got, step.snapshot, where);
      assert.deepEqual([events, breaker.state], [fired, state], `${where}: reading it changed the breaker`);
      assert.equal(state, step.snapshot.state, where);
    } else if ('events' in step) {
      assert.deepEqual(events, step.events, where);
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  });
}

for (const scenario of SPEC.scenarios) {
  test(`breaker spec - ${scenario.name}`, () => run(scenario));
}
