'use strict';

/**
 * The Node side of bench/fuzz.py: random and mutated streams
 * (fuzz_frames.js) through the js-client's framing decoder, envelope
 * decoder and client protocol, each whole, byte by byte and in random
 * chunks, held to the invariant of fuzz_targets.js. Only the repository's
 * js-client, no npm packages.
 *
 *   node bench/node/fuzz_decoder.js --frames N --seconds S [--seed X]
 *
 * Stops at N frames or S seconds, whichever comes first. Progress goes to
 * stderr; the last stdout line is `result {json}` with the counts: frames
 * per decoder, outcomes by code, frames by kind, the slowest stream, and
 * the first few breaches (each with its seed and stream number, and its
 * bytes in hex, so it can be replayed).
 */

const { Rng, randomStream, splits } = require('./fuzz_frames');
const { checkStream, InvariantBroken, describe } = require('./fuzz_targets');

const LIMITS = [1024, 65536, 16 * 1024 * 1024];
const KEPT_BREACHES = 5;
const SLOW_STREAM_MS = 1000;

function parseArgs(argv) {
  const args = { frames: 1_000_000, seconds: 600, seed: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in args)) throw new Error(`unknown option ${argv[i]}`);
    args[name] = Number(argv[i + 1]);
  }
  return args;
}

/** Adds one to `counts[key]`. */
function bump(counts, key, n = 1) {
  counts[key] = (counts[key] ?? 0) + n;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const rng = new Rng(args.seed);
  const started = process.hrtime.bigint();
  const elapsedMs = () => Number(process.hrtime.bigint() - started) / 1e6;
  const counts = {
    streams: 0,
    frames: 0,
    bytes: 0,
    frames_by_kind: {},
    // Fed: the frames in the streams; read: the bodies the framing decoder
    // returned, the messages and events the client protocol returned.
    framing: { frames_fed: 0, bodies_read: 0, outcomes: {} },
    envelope: { bodies_fed: 0, outcomes: {} },
    client: { frames_fed: 0, items_read: 0, outcomes: {} },
    splits_per_stream: 3,
    slowest_stream_ms: 0,
    slow_streams: 0,
    breaches: 0,
    breach_examples: []
  };
  let nextReport = 10_000;
  while (counts.frames < args.frames && elapsedMs() < args.seconds * 1000) {
    const maxFrameSize = rng.pick(LIMITS);
    const stream = randomStream(rng, { maxFrameSize, handshake: rng.chance(0.8) });
    const index = counts.streams++;
    counts.frames += stream.frames;
    counts.bytes += stream.bytes.length;
    for (const kind of stream.kinds) bump(counts.frames_by_kind, kind);
    const t0 = elapsedMs();
    try {
      const outcome = checkStream(stream, splits(rng, stream.bytes), maxFrameSize);
      counts.framing.frames_fed += stream.frames;
      counts.framing.bodies_read += outcome.envelope.length;
      bump(counts.framing.outcomes, outcome.framing);
      counts.envelope.bodies_fed += outcome.envelope.length;
      for (const verdict of outcome.envelope) bump(counts.envelope.outcomes, verdict);
      counts.client.frames_fed += stream.frames;
      for (const word of outcome.client.split(' ')) {
        bump(counts.client.outcomes, word);
        if (!word.startsWith('state:')) counts.client.items_read++;
      }
    } catch (err) {
      counts.breaches++;
      if (counts.breach_examples.length < KEPT_BREACHES) {
        counts.breach_examples.push({
          seed: args.seed,
          stream: index,
          kinds: stream.kinds,
          error: err instanceof InvariantBroken ? err.message : `harness: ${describe(err)}`,
          hex: stream.bytes.subarray(0, 4096).toString('hex')
        });
      }
    }
    const took = elapsedMs() - t0;
    if (took > counts.slowest_stream_ms) counts.slowest_stream_ms = Math.round(took * 10) / 10;
    if (took > SLOW_STREAM_MS) counts.slow_streams++;
    if (counts.frames >= nextReport) {
      process.stderr.write(`node: ${counts.frames} frames, ${counts.breaches} breaches, ${(elapsedMs() / 1000).toFixed(1)} s\n`);
      nextReport += 100_000;
    }
  }
  counts.seconds = Math.round(elapsedMs()) / 1000;
  counts.stopped_by = counts.frames >= args.frames ? 'frames' : 'time';
  process.stdout.write(`result ${JSON.stringify(counts)}\n`);
}

main();
