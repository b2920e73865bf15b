/**
 * Disk threads: the server's file-system lookups and small reads (lib/disk_jobs.ts) run
 * synchronously on a few worker threads, many to a message. Each asynchronous Deno call hands off
 * to a thread of its own and back, which costs more than the page-cache work of an `lstat` or a
 * small read; run on the event loop's thread instead, one that waits for a cold disk would hold
 * up every connection. Here neither happens: the event loop sends a batch and goes on. Jobs asked
 * for in the same turn of the event loop leave together; a thread idle for a while is stopped.
 *
 * @module
 */

import type { DiskRequest, DiskResponse } from "./disk_worker.ts";
import { compareRecords, type RecordsJob } from "./folder_records.ts";
import { openSortedRuns, removeRuns, type SortedNames, type SortedRuns } from "./name_runs.ts";
import { loadCheckedOpen } from "./checked_open.ts";
import {
  diskError,
  type DiskFailure,
  type DiskJob,
  type DiskResult,
  type FolderLookup,
  FolderView,
  isDiskFailure,
  placeShare,
  runDiskJob,
  type SmallRead,
} from "./disk_jobs.ts";

export type { DiskInfo, FolderView, SmallRead } from "./disk_jobs.ts";

/** Options for {@link DiskPool.folder} (see there for how they go together). */
export interface FolderOptions {
  /** Find where each symlink leads, and what is there (default false). */
  follow?: boolean;
  /** Share a large folder's lookups between two threads (default false). */
  split?: boolean;
  /** Names from which a `split` folder is shared (default {@link SPLIT_NAMES}). */
  splitFrom?: number;
  /** Size on disk from which the folder is big (default `BIG_FOLDER_BYTES`, lib/folder_entries.ts). */
  bigBytes?: number;
  /** Look up only these names, without reading the folder (default: every name). */
  names?: string[];
  /** Kinds of entry taken from the folder's read without a lookup (default 0: none). */
  trustKinds?: number;
}

/** Options for {@link DiskPool}. */
export interface DiskPoolOptions {
  /**
   * Most threads at once (default 4): a folder read from a cold disk holds its thread meanwhile,
   * and the others go on with other connections' jobs.
   */
  threads?: number;
  /** A thread with nothing to do for this long, in ms, is stopped (default 30,000). */
  idleMs?: number;
  /** The threads' script (default lib/disk_worker.ts). */
  script?: URL;
}

/**
 * The modules a disk thread loads, as file URLs where the library is local: a server run with a
 * list of readable paths (`deno task serve`) must be able to read them (lib/server_launch.ts).
 */
export const DISK_THREAD_MODULES: readonly URL[] = [
  new URL("./disk_worker.ts", import.meta.url),
  new URL("./disk_jobs.ts", import.meta.url),
  new URL("./folder_records.ts", import.meta.url),
  new URL("./folder_entries.ts", import.meta.url),
  new URL("./name_runs.ts", import.meta.url),
  new URL("./test_seams.ts", import.meta.url),
  new URL("./checked_open.ts", import.meta.url),
  new URL("./errors.ts", import.meta.url),
];

/** Most jobs in one message: a long queue is spread over the threads. */
const BATCH_JOBS = 64;

/** Batches asked for early that may wait on the first thread before they go to another. */
const EARLY_QUEUE = 2;

/**
 * Names from which a split folder's lookups are shared between two threads: below, the second
 * round trip of its names costs about what the shared lookups save.
 */
export const SPLIT_NAMES = 1000;

/** Threads kept started while the pool is held: a split folder's two shares start at once. */
const HELD_THREADS = 2;

interface Waiting {
  job: DiskJob;
  resolve: (result: DiskResult | Promise<DiskResult>) => void;
  alone?: boolean;
  /** Asked for before it is needed: see {@link DiskPool} `#pick`. */
  early?: boolean;
  /** Answered already: a thread stopped mid-batch runs only the others again. */
  answered?: boolean;
  /**
   * Whether a thread stopped under it runs it again on the calling thread (default true); if
   * not, it is answered with {@link STOPPED}, for its caller to clean up after first.
   */
  rerun?: boolean;
}

/** What a job not to run again ({@link Waiting.rerun}) is answered when its thread stops. */
const STOPPED: DiskFailure = { error: "DiskThreadStopped", message: "The disk thread stopped" };

interface Thread {
  worker: Worker;
  /** Batches sent and not answered, by id. */
  sent: Map<number, Waiting[]>;
  idle?: ReturnType<typeof setTimeout>;
}

/**
 * A few worker threads that run {@link DiskJob}s. When no thread can be started (a build
 * without the worker's script, say), the jobs run on the calling thread instead: slower for
 * other connections, but the same results.
 *
 * @example
 * ```ts
 * import { DiskPool } from "./disk_pool.ts";
 *
 * const pool = new DiskPool();
 * const folder = await pool.folder(".");
 * console.log(folder.names.length, "names");
 * pool.close();
 * ```
 */
export class DiskPool {
  #threads: Thread[] = [];
  /** Whether small files can be opened on this thread (lib/checked_open.ts). */
  #readsReady = false;
  #queue: Waiting[] = [];
  #flushing = false;
  #nextId = 0;
  #max: number;
  #idleMs: number;
  #script: URL;
  /** Set once a thread failed to start or died: every job runs on the calling thread then. */
  #broken = false;
  /** {@link hold} calls not yet released: while there are any, HELD_THREADS threads stay. */
  #holds = 0;
  #onBroken = new Set<(why: string) => void>();

  constructor(options: DiskPoolOptions = {}) {
    this.#max = Math.max(1, options.threads ?? 4);
    this.#idleMs = options.idleMs ?? 30_000;
    this.#script = options.script ?? DISK_THREAD_MODULES[0];
  }

  /**
   * Every name in the folder `dir`, each looked up (see {@link FolderLookup}). With `split`, a
   * folder of more than `splitFrom` names (default {@link SPLIT_NAMES}) has its lookups shared
   * between two threads, each looking up half of the names the first read: for one large folder
   * someone waits for (a listing). `bigBytes` is the folder size on disk from which it is read as
   * it comes (default `BIG_FOLDER_BYTES`, lib/folder_entries.ts). With `names`, only those are looked
   * up, and the folder is not read (a chunk of a big folder's names: see `DiskJob`). With
   * `trustKinds`, the names the folder's read gives one of those kinds are not looked up (see
   * `DiskJob`), and the folder is never split: what is left to look up is a few names, if any.
   */
  async folder(dir: string, options: FolderOptions = {}): Promise<FolderView> {
    return (await this.#folder(dir, options, false))!;
  }

  /**
   * The folder `dir` looked up as {@link folder} does, unless its size on disk says it is big
   * (at least `bigBytes`): undefined then, without a read, for the caller to read it as it comes
   * (a listing sorts such a folder on disk). The disk thread decides by the stat its read makes
   * anyway, so the caller needs no lookup of the folder first.
   */
  folderUnlessBig(dir: string, options: FolderOptions = {}): Promise<FolderView | undefined> {
    return this.#folder(dir, options, true);
  }

  async #folder(
    dir: string,
    options: FolderOptions,
    leaveBig: boolean,
  ): Promise<FolderView | undefined> {
    const { follow, bigBytes, names, trustKinds } = options;
    const split = options.split === true && this.#max > 1 && !this.#broken && !names &&
      !trustKinds;
    const splitFrom = options.splitFrom ?? SPLIT_NAMES;
    const job: DiskJob = { kind: "folder", dir, follow, bigBytes, names, trustKinds, leaveBig };
    const read = await this.#run(split ? { ...job, lookUpAtMost: splitFrom } : job, true);
    if (isDiskFailure(read)) throw diskError(read);
    if ("tooBig" in read) return undefined;
    const lookup = read as FolderLookup;
    const n = lookup.names.length;
    if (!split || n <= splitFrom) return new FolderView(lookup);
    // The folder is read once; its names go back out in two halves, each to a thread of its own.
    const half = Math.ceil(n / 2);
    const shares = await Promise.all(
      [lookup.names.slice(0, half), lookup.names.slice(half)].map((names) =>
        this.#run({ kind: "folder", dir, follow, names }, true)
      ),
    );
    for (const share of shares) if (isDiskFailure(share)) throw diskError(share);
    placeShare(lookup, shares[0] as FolderLookup, 0);
    placeShare(lookup, shares[1] as FolderLookup, half);
    return new FolderView(lookup);
  }

  /**
   * Every name in the folder `dir`, each looked up, as {@link folder} does, if it holds at most
   * `most` names; undefined, without a lookup, for a larger one. For looking folders up before
   * they are needed (several asked for together leave in one message), where a large folder is
   * better looked up when it is (it may be read as it comes, and it holds memory meanwhile).
   */
  async smallFolder(dir: string, most: number): Promise<FolderView | undefined> {
    const result = await this.#run({ kind: "folder", dir, most }, false, true);
    if (isDiskFailure(result)) throw diskError(result);
    if ("tooBig" in result) return undefined;
    return new FolderView(result as FolderLookup);
  }

  /**
   * The records of the big folder `job.dir`, read as they come and sorted in runs on a thread of
   * its own (lib/folder_records.ts), merged here a chunk at a time: close what this gives, as
   * for any `SortedNames`. The run files are this call's from the start: tagged with a name of
   * its own, they are removed here if the thread dies mid-sort (the sort then runs again on this
   * thread, as a stopped thread's jobs do) or the sort fails, rather than left in `job.spillDir`
   * until the server starts again.
   */
  async sortedRecords(job: RecordsJob): Promise<SortedNames> {
    let runTag = crypto.randomUUID();
    let result = await this.#run({ kind: "records", ...job, runTag }, true, false, false);
    if (result === STOPPED) {
      await removeRuns(job.spillDir, runTag);
      runTag = crypto.randomUUID();
      result = await runDiskJob({ kind: "records", ...job, runTag });
    }
    if (isDiskFailure(result)) {
      await removeRuns(job.spillDir, runTag);
      throw diskError(result);
    }
    return await openSortedRuns(result as SortedRuns, compareRecords);
  }

  /**
   * The file at `path` (symlinks followed), read whole when it is a regular file of at most
   * `max` bytes. The caller checks {@link SmallRead.real} before it uses what was read.
   */
  async readSmall(path: string, max: number): Promise<SmallRead> {
    // A read may run on this thread too (no thread could start, or one was stopped under it).
    if (!this.#readsReady) {
      await loadCheckedOpen();
      this.#readsReady = true;
    }
    const result = await this.#run({ kind: "read", path, max });
    if (isDiskFailure(result)) throw diskError(result);
    return result as SmallRead;
  }

  /**
   * Keeps two threads running, started now, until as many {@link release} calls: a server holds
   * them while it listens, so that its first request does not wait for a thread to start.
   * `onBroken` is told, once, if no thread can run (the jobs then run on the calling thread).
   */
  hold(onBroken?: (why: string) => void): void {
    if (onBroken) this.#onBroken.add(onBroken);
    if (this.#holds++ > 0 || this.#broken) return;
    while (this.#threads.length < Math.min(HELD_THREADS, this.#max)) {
      if (!this.#start()) return;
    }
    for (const thread of this.#threads.slice(0, HELD_THREADS)) {
      if (thread.idle !== undefined) clearTimeout(thread.idle);
      thread.idle = undefined;
    }
  }

  /** Ends one {@link hold} (and stops telling `onBroken`); with none left, threads idle out. */
  release(onBroken?: (why: string) => void): void {
    if (onBroken) this.#onBroken.delete(onBroken);
    if (this.#holds === 0 || --this.#holds > 0) return;
    for (const thread of [...this.#threads]) {
      if (thread.sent.size > 0) continue;
      this.#threads = this.#threads.filter((t) => t !== thread);
      this.#stop(thread);
    }
  }

  /** Stops every thread; jobs they had not answered run on the calling thread. */
  close(): void {
    this.#holds = 0;
    for (const thread of this.#threads.splice(0)) this.#stop(thread);
  }

  /**
   * Queues `job`; one `alone` leaves in a message of its own, for a thread of its own, and an
   * `early` one (asked for before it is needed) waits for a running thread rather than start one;
   * one not to `rerun` is answered {@link STOPPED} if its thread stops under it.
   */
  #run(job: DiskJob, alone = false, early = false, rerun = true): Promise<DiskResult> {
    if (this.#broken) return Promise.resolve(runDiskJob(job));
    return new Promise((resolve) => {
      this.#queue.push({ job, resolve, alone, early, rerun });
      if (this.#flushing) return;
      this.#flushing = true;
      // What else this turn of the event loop asks for leaves in the same message.
      queueMicrotask(() => this.#flush());
    });
  }

  #flush(): void {
    this.#flushing = false;
    while (this.#queue.length > 0) {
      const alone = this.#queue.findIndex((waiting) => waiting.alone);
      const batch = alone === 0
        ? this.#queue.splice(0, 1)
        : this.#queue.splice(0, Math.min(BATCH_JOBS, alone < 0 ? Infinity : alone));
      const thread = this.#broken ? undefined : this.#pick(batch.every((waiting) => waiting.early));
      if (!thread) {
        for (const { job, resolve } of batch) resolve(runDiskJob(job));
        continue;
      }
      const id = this.#nextId++;
      thread.sent.set(id, batch);
      if (thread.idle !== undefined) clearTimeout(thread.idle);
      thread.idle = undefined;
      const request: DiskRequest = { id, jobs: batch.map((w) => w.job) };
      thread.worker.postMessage(request);
    }
  }

  /**
   * An idle thread, else a new one while there may be more, else the least busy. `early` jobs go
   * to the first thread while it has little else to do, and start one only when none runs: spread
   * over two threads, on CPUs the other end shares, a walk's look-ahead cost more CPU than it
   * saved, and starting a thread costs more than the lookups.
   */
  #pick(early = false): Thread | undefined {
    if (early && this.#threads.length > 0 && this.#threads[0].sent.size < EARLY_QUEUE) {
      return this.#threads[0];
    }
    const idle = this.#threads.find((t) => t.sent.size === 0);
    if (idle) return idle;
    if (this.#threads.length < this.#max && (!early || this.#threads.length === 0)) {
      const started = this.#start();
      if (started) return started;
    }
    let best: Thread | undefined;
    for (const t of this.#threads) if (!best || t.sent.size < best.sent.size) best = t;
    return best;
  }

  #start(): Thread | undefined {
    let worker: Worker;
    try {
      worker = new Worker(this.#script, { type: "module" });
    } catch (error) {
      this.#break(error instanceof Error ? error.message : String(error));
      return undefined;
    }
    const thread: Thread = { worker, sent: new Map() };
    worker.onmessage = ({ data }: MessageEvent<DiskResponse>) => {
      const batch = thread.sent.get(data.id);
      if (!batch) return;
      // A batch is answered in parts, in order: its jobs done so far, then the next ones.
      data.results.forEach((result, i) => {
        const waiting = batch[data.from + i];
        waiting.answered = true;
        waiting.resolve(result);
      });
      if (data.from + data.results.length < batch.length) return;
      thread.sent.delete(data.id);
      if (thread.sent.size === 0) this.#idleLater(thread);
    };
    worker.onerror = (event) => {
      // The script could not load, or the thread died: the same jobs, on this thread.
      event.preventDefault();
      this.#break(event.message);
      this.#threads = this.#threads.filter((t) => t !== thread);
      this.#stop(thread);
    };
    this.#threads.push(thread);
    return thread;
  }

  #break(why: string): void {
    if (this.#broken) return;
    this.#broken = true;
    for (const tell of this.#onBroken) tell(why);
  }

  #idleLater(thread: Thread): void {
    if (this.#holds > 0 && this.#threads.indexOf(thread) < HELD_THREADS) return;
    const timer = setTimeout(() => {
      if (thread.sent.size > 0) return;
      this.#threads = this.#threads.filter((t) => t !== thread);
      this.#stop(thread);
    }, this.#idleMs);
    // An idle thread never keeps the process alive by its timer.
    Deno.unrefTimer(timer);
    thread.idle = timer;
  }

  #stop(thread: Thread): void {
    if (thread.idle !== undefined) clearTimeout(thread.idle);
    thread.worker.terminate();
    for (const batch of thread.sent.values()) {
      for (const { job, resolve, answered, rerun } of batch) {
        if (!answered) resolve(rerun === false ? STOPPED : runDiskJob(job));
      }
    }
    thread.sent.clear();
  }
}

/** The process's disk threads, shared by every served folder. */
export const diskPool: DiskPool = new DiskPool();
