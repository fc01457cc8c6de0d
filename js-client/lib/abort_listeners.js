'use strict';

/**
 * One 'abort' listener per AbortSignal, however many calls wait on it.
 *
 * An application often passes one signal (its shutdown's) to every call.
 * Registered once per call, more than ten calls in flight made Node print
 * `MaxListenersExceededWarning` for the signal, a leak warning for no leak.
 * Here the signal holds one listener that runs the calls' own, in the
 * order they came, and is taken off when the last call is done with it.
 */

/** @type {WeakMap<AbortSignal, {fns: Set<() => void>, dispatch: () => void}>} */
const bySignal = new WeakMap();

/**
 * Runs `fn` once when `signal` aborts, unless the returned function is
 * called first (the call ended: it takes `fn` off).
 * @param {AbortSignal} signal
 * @param {() => void} fn
 * @returns {() => void}
 */
function whenAborted(signal, fn) {
  let entry = bySignal.get(signal);
  if (entry === undefined) {
    const fns = new Set();
    const dispatch = () => {
      if (bySignal.get(signal) === current) bySignal.delete(signal);
      for (const each of fns) {
        fns.delete(each);
        try {
          each();
        } catch (err) {
          process.nextTick(() => {
            throw err; // as an EventTarget listener's own: uncaught, the others still run
          });
        }
      }
    };
    const current = { fns, dispatch };
    entry = current;
    bySignal.set(signal, current);
    signal.addEventListener('abort', dispatch, { once: true });
  }
  const own = () => fn(); // one per registration, so the same fn may wait twice
  const { fns, dispatch } = entry;
  fns.add(own);
  return () => {
    if (!fns.delete(own) || fns.size !== 0 || bySignal.get(signal)?.fns !== fns) return;
    bySignal.delete(signal);
    signal.removeEventListener('abort', dispatch);
  };
}

module.exports = { whenAborted };
