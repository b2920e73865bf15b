/**
 * A test-only seam that makes a receiver's disk slow: with the environment variable
 * `FERRY_TEST_SLOW_DISK=MS` (read only where the program may, lib/test_seams.ts),
 * each file a tree transfer commits waits MS before its commit (its flush), and each entry a
 * removal takes away waits MS, one wait after another for the whole process, as a disk that does
 * one thing at a time. A test can then hold the phases that move nothing on the wire (flushing,
 * `--delete`) for as long as it needs, with no sleep of its own and no big files. A removal the
 * program does on its calling thread waits there too ({@link slowRemovalSync}), as a slow disk
 * would hold it. Programs run without that permission (the usual case) never wait.
 *
 * @module
 */

import { join } from "node:path";
import { testSetting } from "./test_seams.ts";

/** What `FERRY_TEST_SLOW_DISK` asked for, in ms; 0 for nothing. */
function slowMs(): number {
  const ms = Number(testSetting("FERRY_TEST_SLOW_DISK"));
  return Number.isSafeInteger(ms) && ms > 0 ? ms : 0;
}
/** The waits under way, one after another. */
let queue: Promise<void> = Promise.resolve();

/** Waits `units` turns of the slow disk, after those already waiting. */
function wait(units: number): Promise<void> {
  const ms = slowMs() * units;
  if (ms <= 0) return Promise.resolve();
  const turn = queue.then(() => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  queue = turn;
  return turn;
}

/** Before a tree file's commit: one turn. */
export function slowCommit(): Promise<void> {
  return wait(1);
}

/**
 * Before `path` (a real path, not followed if it is a link) is removed with all it holds: one
 * turn for each entry there.
 */
export async function slowRemoval(path: string): Promise<void> {
  if (slowMs() === 0) return;
  await wait(countEntries(path));
}

/** {@link slowRemoval} for a removal done on the calling thread: it blocks, as the disk would. */
export function slowRemovalSync(path: string): void {
  const ms = slowMs() * (slowMs() === 0 ? 0 : countEntries(path));
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function countEntries(path: string): number {
  let info;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return 0;
  }
  let count = 1;
  if (info.isDirectory) {
    for (const entry of Deno.readDirSync(path)) count += countEntries(join(path, entry.name));
  }
  return count;
}
