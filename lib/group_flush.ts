/**
 * Group commit: the flushes to disk of a server's small files, and of the folders they are named
 * into, gathered into one message to a disk thread (lib/disk_pool.ts) rather than one
 * asynchronous call each. Such a call hands off to Deno's blocking threads and back, which costs
 * a small file several times what writing it does, even where the flush itself is free; a disk
 * thread flushes a group for one hand-off, and the event loop never waits for a disk. This
 * module owns the gathering: one group at a time is being flushed, and what is asked for
 * meanwhile leaves together as soon as it is done.
 *
 * @module
 */

import { diskError, type DiskFailure } from "./disk_jobs.ts";

/** What {@link StagedFile} (lib/staged_file.ts) needs to flush a small file and its folder. */
export interface Flusher {
  /**
   * Flushes the file at `path` (still open and whole: the caller keeps it open until this
   * settles); rejects if its data may not be on disk, and is never tried again.
   */
  file(path: string): Promise<void>;
  /** Flushes the folder `dir` once a name was given in it (see `syncDirShared`). */
  folder(dir: string): Promise<void>;
}

/** Runs one group: files, then folders; per file, null once on disk, else why not. */
export type FlushGroup = (files: string[], dirs: string[]) => Promise<(DiskFailure | null)[]>;

/** Options for {@link GroupFlush}. */
export interface GroupFlushOptions {
  /**
   * Files that make a group leave at once (default {@link GROUP_FILES}); fewer wait, up to
   * `waitMs`, for others to join them.
   */
  gather?: number;
  /** Longest a request waits for others to join its group, in ms (default 1). */
  waitMs?: number;
}

/**
 * Files that make a group: most of a tree receiver's commits under way (lib/tree_receive.ts,
 * `COMMIT_WINDOW`), so that the next files arrive while a group is flushed. Each group is one
 * message to a disk thread, whose hand-off costs the event loop about what a few small files'
 * flushes do there.
 */
export const GROUP_FILES = 12;

interface Waiting {
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers flushes into groups, one group under way at a time: a group leaves at once when none
 * is under way, else when the one under way is done, with everything asked for meanwhile. A
 * folder asked for twice in one group is flushed once; every request is answered after a flush
 * that began after it was made, so a name given before a folder is asked for is durable when
 * that request settles.
 *
 * @example
 * ```ts
 * import { GroupFlush } from "./group_flush.ts";
 * import { diskPool } from "./disk_pool.ts";
 *
 * const flush = new GroupFlush((files, dirs) => diskPool.flush(files, dirs));
 * using file = await Deno.open("x.part", { write: true, create: true });
 * await file.write(new TextEncoder().encode("hello"));
 * await flush.file("x.part");
 * await Deno.rename("x.part", "x");
 * await flush.folder(".");
 * ```
 */
export class GroupFlush implements Flusher {
  #run: FlushGroup;
  #files: string[] = [];
  #fileWaits: Waiting[] = [];
  #dirs = new Map<string, Waiting[]>();
  /** Requests waiting (files, and each wait for a folder): each is a commit held up. */
  #waiting = 0;
  #running = false;
  #timer?: ReturnType<typeof setTimeout>;
  #microtask = false;
  /** When the oldest request still waiting was made. */
  #since = 0;
  #gather: number;
  #waitMs: number;

  /** Flushes groups with `run`. */
  constructor(run: FlushGroup, options: GroupFlushOptions = {}) {
    this.#run = run;
    this.#gather = options.gather ?? GROUP_FILES;
    this.#waitMs = options.waitMs ?? 1;
  }

  file(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#files.push(path);
      this.#fileWaits.push({ resolve, reject });
      this.#schedule();
    });
  }

  folder(dir: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const waits = this.#dirs.get(dir);
      if (waits) waits.push({ resolve, reject });
      else this.#dirs.set(dir, [{ resolve, reject }]);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (++this.#waiting === 1) this.#since = performance.now();
    if (this.#running || this.#microtask) return;
    this.#leave();
  }

  /** Sends the group now if it is big enough, else once its oldest request has waited enough. */
  #leave(): void {
    if (this.#waiting >= this.#gather) {
      this.#microtask = true;
      // What else this turn of the event loop asks for goes in the same group.
      queueMicrotask(() => {
        this.#microtask = false;
        void this.#next();
      });
    } else if (this.#timer === undefined) {
      const wait = Math.max(0, this.#since + this.#waitMs - performance.now());
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        void this.#next();
      }, wait);
    }
  }

  async #next(): Promise<void> {
    if (this.#running || (this.#files.length === 0 && this.#dirs.size === 0)) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#running = true;
    const files = this.#files, fileWaits = this.#fileWaits, dirs = this.#dirs;
    this.#files = [];
    this.#fileWaits = [];
    this.#dirs = new Map();
    this.#waiting = 0;
    try {
      const flushed = await this.#run(files, [...dirs.keys()]);
      flushed.forEach((failure, i) => {
        if (failure) fileWaits[i].reject(diskError(failure));
        else fileWaits[i].resolve();
      });
      for (const waits of dirs.values()) for (const wait of waits) wait.resolve();
    } catch (error) {
      for (const wait of fileWaits) wait.reject(error);
      for (const waits of dirs.values()) for (const wait of waits) wait.reject(error);
    } finally {
      this.#running = false;
      if (this.#waiting > 0) this.#leave();
    }
  }
}
