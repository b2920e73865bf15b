/**
 * The disk thread's script (a Web Worker started by lib/disk_pool.ts): runs each batch of
 * {@link DiskJob}s it is sent, in order, and answers with their results as they are done, moving
 * the bytes of the files it read rather than copying them.
 *
 * @module
 */

import { type DiskJob, type DiskResult, newDiskBatch, runDiskJob } from "./disk_jobs.ts";
import { loadCheckedOpen } from "./checked_open.ts";

/** A batch of jobs, numbered by the pool. */
export interface DiskRequest {
  id: number;
  jobs: DiskJob[];
}

/**
 * Results of a batch, in the order of its jobs, from the job at `from`: a batch may be answered
 * in several parts, the last of which ends at its last job.
 */
export interface DiskResponse {
  id: number;
  from: number;
  results: DiskResult[];
}

/**
 * A batch that takes longer than this, in ms, is answered in parts, each with the results done
 * since the last: the caller starts on the first folders while the next ones are looked up, for a
 * message every few milliseconds of work rather than one a job (a batch of small reads, quicker,
 * is answered whole).
 */
const ANSWER_EVERY_MS = 2;

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<DiskRequest>) => void) | null;
  postMessage(message: DiskResponse, transfer: Transferable[]): void;
};

/** Settles once small files can be opened (lib/checked_open.ts): loaded by the first read. */
let readsReady: Promise<void> | undefined;

scope.onmessage = ({ data }) => {
  if (!readsReady && data.jobs.some((job) => job.kind === "read")) readsReady = loadCheckedOpen();
  // Batches run in the order they came: each waits behind the same promise once it exists.
  if (readsReady) void readsReady.then(() => runBatch(data));
  else runBatch(data);
};

/** Runs the batch `data`, answering as its results come. */
function runBatch(data: DiskRequest): void {
  const { id, jobs } = data;
  const batch = newDiskBatch();
  const results: (DiskResult | undefined)[] = new Array(jobs.length);
  let sent = 0;
  let sentAt = performance.now();
  /** Sends the results done from `sent` on, up to the first still being read. */
  const answer = (force: boolean) => {
    let end = sent;
    while (end < jobs.length && results[end] !== undefined) end++;
    if (
      end === sent || (!force && end < jobs.length && performance.now() - sentAt < ANSWER_EVERY_MS)
    ) {
      return;
    }
    const part = results.slice(sent, end) as DiskResult[];
    const transfer: Transferable[] = [];
    for (const result of part) {
      if ("bytes" in result && result.bytes) transfer.push(result.bytes.buffer);
    }
    scope.postMessage({ id, from: sent, results: part }, transfer);
    sent = end;
    sentAt = performance.now();
  };
  for (let i = 0; i < jobs.length; i++) {
    const result = runDiskJob(jobs[i], batch);
    // A big folder's lookup answers with a promise (it reads the folder as it comes): the jobs
    // after it run meanwhile, and wait for it to be answered.
    if (result instanceof Promise) {
      void result.then((settled) => {
        results[i] = settled;
        answer(true);
      });
      continue;
    }
    results[i] = result;
    answer(i === jobs.length - 1);
  }
}
