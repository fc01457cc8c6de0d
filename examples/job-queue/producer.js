'use strict';

/**
 * A Node producer for the job queue (see manager.py).
 *
 * What it shows: Node calling a Python service. It subscribes to the
 * dead-letter channel `jobs.dead`, submits six jobs with priorities
 * (request `jobs.submit`), then asks the manager to drain (request
 * `jobs.drain`, answered once every job is done or dead) and prints the
 * summary: one job that fails twice and then succeeds on its third attempt,
 * and one that fails every attempt and lands on `jobs.dead`.
 *
 * Run it (server on IPC_HOST:IPC_PORT, default 127.0.0.1:8888), from the
 * repository root, after the manager; it finishes once workers have done
 * the jobs:
 *
 *     node examples/job-queue/producer.js
 */

const { IPCClient } = require('../../js-client');

const host = process.env.IPC_HOST || '127.0.0.1';
const port = Number(process.env.IPC_PORT || 8888);

const JOBS = [
  { task: 'square', args: { n: 7 }, priority: 0 },
  { task: 'wordcount', args: { text: 'the quick brown fox' }, priority: 5 },
  { task: 'flaky', args: { fail_times: 2 }, priority: 1 },
  { task: 'parse', args: { text: '{"ok": true}' }, priority: 0 },
  { task: 'parse', args: { text: '{broken' }, priority: 9 }, // poison: always fails
  { task: 'square', args: { n: 12 }, priority: 5 }
];

function printSummary(summary) {
  console.log(`summary: ${summary.total} jobs, ${summary.done} done, ${summary.dead} dead`);
  for (const j of summary.jobs) {
    const outcome = j.status === 'done' ? `result ${JSON.stringify(j.result)}` : `error ${j.error}`;
    console.log(
      `  ${j.id.padEnd(6)} ${j.task.padEnd(10)} priority ${String(j.priority).padEnd(2)} ${j.status.padEnd(4)} attempts ${j.attempts}  ${outcome}`
    );
  }
}

async function main() {
  const client = new IPCClient('jobs', { host, port });
  client.on('error', (err) => console.error('bridge:', err.code, err.message));
  await client.connect();
  await client.subscribe('jobs.dead', (msg) => {
    const job = msg.payload;
    console.log(`dead letter: ${job.id} ${job.task} after ${job.attempts} attempts (${job.error})`);
  });

  for (const job of JOBS) {
    const { payload } = await client.sendRequest('jobs.submit', job, 5000);
    console.log(`submitted ${payload.job_id} ${job.task} priority ${job.priority}`);
  }
  console.log(`submitted ${JOBS.length} jobs; waiting for them to finish`);

  const { payload: summary } = await client.sendRequest('jobs.drain', null, 60000);
  printSummary(summary);
  await client.disconnect();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
