/**
 * A big folder's names as a listing sorts them on disk (lib/folder_listing.ts): each entry as a
 * record, a tag (what the folder's read says it is, and whether the record stands for the walk
 * into a subfolder, keyed `name/` as lib/tree_listing.ts keys it) then the key; how records
 * compare; and the read and sort of a folder's records into runs (lib/name_runs.ts), which a disk
 * thread does (lib/disk_jobs.ts), so that neither holds up the event loop.
 *
 * @module
 */

import { type DiskDirEntry, entryOfKinds, kindsOf } from "./folder_entries.ts";
import { NameSorter, type SortedRuns } from "./name_runs.ts";
import { testSetting } from "./test_seams.ts";

/** A record's tag: this plus its entry's `kindsOf` bits (lib/disk_jobs.ts). */
const TAG = 0x40;
/** Tag bit of a record that stands for the walk into a subfolder (a recursive listing). */
const DESCEND = 8;

/** How records compare: by key as walkListing compares them (compareListed), tag aside. */
export function compareRecords(a: string, b: string): number {
  // What follows the tag, by UTF-16 unit as JavaScript's `<` (compareListed) does.
  const n = Math.min(a.length, b.length);
  for (let i = 1; i < n; i++) {
    const order = a.charCodeAt(i) - b.charCodeAt(i);
    if (order !== 0) return order;
  }
  return a.length - b.length;
}

/** Whether a record stands for the walk into a subfolder, not for an entry. */
export function isDescent(record: string): boolean {
  return ((record.charCodeAt(0) - TAG) & DESCEND) !== 0;
}

/** The name a record stands for. */
export function recordName(record: string): string {
  return isDescent(record) ? record.slice(1, -1) : record.slice(1);
}

/** The entry a record stands for, as the folder's read gave it. */
export function recordEntry(record: string): DiskDirEntry {
  return entryOfKinds(recordName(record), (record.charCodeAt(0) - TAG) & ~DESCEND);
}

/** What to read and sort for {@link sortRecords}. */
export interface RecordsJob {
  /** The folder, a real path. */
  dir: string;
  /** Names left out (a listing's private folders, at the top). */
  skip: string[];
  /** A descent record for each subfolder too (a recursive listing). */
  descend: boolean;
  /** Records sorted in memory at once. */
  runNames: number;
  /** Where the runs are spilled (a server's staging folder). */
  spillDir: string;
  /**
   * What the run files' names start with (lib/name_runs.ts `NameSorterOptions.runTag`), for the
   * caller to remove them by should the sort's thread die (default: the sorter's own).
   */
  runTag?: string;
}

/**
 * Reads the folder `job.dir` as its entries come and sorts its records in runs, spilled to
 * `job.spillDir`: the runs are then the caller's to merge (lib/name_runs.ts `openSortedRuns`).
 */
export async function sortRecords(job: RecordsJob): Promise<SortedRuns> {
  const sorter = new NameSorter({
    compare: compareRecords,
    runNames: job.runNames,
    spillDir: job.spillDir,
    runTag: job.runTag,
  });
  const skip = new Set(job.skip);
  try {
    for await (const entry of Deno.readDir(job.dir)) {
      if (skip.has(entry.name)) continue;
      const kind = kindsOf(entry);
      const adding = sorter.add(String.fromCharCode(TAG + kind) + entry.name);
      if (adding) {
        await adding;
        await diesForTest();
      }
      if (!job.descend || !entry.isDirectory) continue;
      const descending = sorter.add(String.fromCharCode(TAG + kind + DESCEND) + entry.name + "/");
      if (descending) await descending;
    }
  } catch (error) {
    await sorter.discard();
    throw error;
  }
  return await sorter.finishRuns();
}

/**
 * Test-only (docs/testing.md): with `FERRY_TEST_DISK_THREAD_DIES` set (lib/test_seams.ts), a disk
 * thread sorting a folder's records dies of an uncaught error once it has spilled its first run,
 * as one that runs out of memory would, and goes no further: what it spilled stays for its owner
 * to remove. Never on the main thread, which would take the program with it.
 */
async function diesForTest(): Promise<void> {
  if (!("WorkerGlobalScope" in globalThis)) return;
  if (testSetting("FERRY_TEST_DISK_THREAD_DIES") === undefined) return;
  setTimeout(() => {
    throw new Error("FERRY_TEST_DISK_THREAD_DIES: the disk thread dies mid-sort");
  });
  await new Promise<never>(() => {});
}
