/**
 * The disk thread's script (a Web Worker started by lib/disk_pool.ts): runs each batch of
 * {@link DiskJob}s it is sent, in order, and answers with their results, moving the bytes of the
 * files it read rather than copying them.
 *
 * @module
 */

import { type DiskJob, type DiskResult, newDiskBatch, runDiskJob } from "./disk_jobs.ts";

/** A batch of jobs, numbered by the pool. */
export interface DiskRequest {
  id: number;
  jobs: DiskJob[];
}

/** The results of a batch, in the order of its jobs. */
export interface DiskResponse {
  id: number;
  results: DiskResult[];
}

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<DiskRequest>) => void) | null;
  postMessage(message: DiskResponse, transfer: Transferable[]): void;
};

scope.onmessage = ({ data }) => {
  const batch = newDiskBatch();
  const results = data.jobs.map((job) => runDiskJob(job, batch));
  // A big folder's lookup answers with a promise (it reads the folder as it comes).
  if (results.some((result) => result instanceof Promise)) {
    Promise.all(results).then((settled) => answer(data.id, settled));
  } else answer(data.id, results as DiskResult[]);
};

function answer(id: number, results: DiskResult[]): void {
  const transfer: Transferable[] = [];
  for (const result of results) {
    if ("bytes" in result && result.bytes) transfer.push(result.bytes.buffer);
  }
  scope.postMessage({ id, results }, transfer);
}
