'use strict';

/**
 * A Node worker for the job queue (see manager.py).
 *
 * What it shows: a Node responder on `jobs.work` in app `jobs`, next to the
 * Python workers (worker.py): the manager sends each attempt of a job as a
 * request; the returned value is the result, and a thrown JobError becomes
 * a `handler_error` (remoteType 'JobError') that the manager retries.
 *
 * Run it (server on IPC_HOST:IPC_PORT, default 127.0.0.1:8888), from the
 * repository root, after the manager:
 *
 *     node examples/job-queue/worker.js [NAME]
 */

const { IPCClient } = require('../../js-client');

const host = process.env.IPC_HOST || '127.0.0.1';
const port = Number(process.env.IPC_PORT || 8888);
const name = process.argv[2] || `node-${process.pid}`;

class JobError extends Error {
  constructor(message) {
    super(message);
    this.name = 'JobError'; // travels as remote_type
  }
}

const tasks = {
  square: ({ n }) => n * n,
  wordcount: ({ text }) => text.split(/\s+/).filter(Boolean).length,
  flaky: ({ fail_times: failTimes }, attempt) => {
    // a dependency that is down for the first attempts
    if (attempt <= failTimes) throw new JobError('upstream busy');
    return `ok on attempt ${attempt}`;
  },
  parse: ({ text }) => {
    try {
      return JSON.parse(text);
    } catch {
      throw new JobError('payload is not valid JSON');
    }
  }
};

async function work(msg) {
  const { job_id: jobId, task, args, attempt } = msg.payload;
  await new Promise((resolve) => setTimeout(resolve, 20)); // the job's "work"
  try {
    if (!Object.hasOwn(tasks, task)) throw new JobError(`unknown task '${task}'`);
    const result = tasks[task](args, attempt);
    console.log(`${name} ${jobId} attempt ${attempt} done`);
    return { worker: name, result };
  } catch (err) {
    console.log(`${name} ${jobId} attempt ${attempt} failed: ${err.message}`);
    throw err;
  }
}

async function main() {
  const client = new IPCClient('jobs', { host, port });
  client.on('error', (err) => console.error('bridge:', err.code, err.message));
  await client.connect();
  await client.serve('jobs.work', work);
  console.log(`worker ${name} ready`);
  const stop = () => client.disconnect().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
