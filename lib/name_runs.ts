/**
 * Sorting more names than memory should hold: an external merge sort. Names are held until there
 * are {@link RUN_NAMES} of them, then sorted and written out as one run to a private file; once
 * all are in, the runs are merged, a chunk at a time. What memory holds is one run's names while
 * they come and one buffer per run while they are merged, whatever the count. A sort that never
 * passes the threshold (the common case) stays in memory and touches no file.
 *
 * The run files exist only while the names are being read: each is opened, then removed, before
 * the merge starts (it is read through its open file), so no listing ever sees one after that,
 * and {@link SortedNames.close} gives the space back. Whatever fails on the way removes them. A
 * sort done on one thread and merged on another hands its runs over by path
 * ({@link NameSorter.finishRuns}, {@link openSortedRuns}), and the merging side opens and removes
 * them at once. A sort on a thread that dies leaves its runs where nothing on that thread can
 * remove them: every run file's name starts with the sort's tag ({@link NameSorterOptions.runTag}),
 * by which whoever asked for the sort removes them ({@link removeRuns}).
 *
 * @module
 */

import { join } from "node:path";
import { BIG_FOLDER_BYTES } from "./folder_entries.ts";
import { testSetting } from "./test_seams.ts";

/**
 * Names held in memory before they are sorted and spilled to a run file: at some 100 bytes a name
 * in memory, a few MiB. A test can lower it (and send every folder down the spilling path)
 * through the environment variable `FERRY_TEST_FOLDER_RUN`, where the program may read it.
 */
export const RUN_NAMES = 50_000;

/** Names handed out at a time by a {@link SortedNames} that spilled. */
const CHUNK_NAMES = 1024;

/**
 * Most runs merged at once, each an open file: past this many, the latest ones are merged into
 * one longer run first, as a binary counter carries (so each name is rewritten a few times at
 * most, log base 16 of the runs).
 */
const FAN_IN = 16;

/** Bytes read from a run file at a time while merging. */
const READ_BYTES = 64 * 1024;

/**
 * The run length a test asked for through `FERRY_TEST_FOLDER_RUN`, or undefined: a program
 * without the permission to read it (the usual case) keeps {@link RUN_NAMES}.
 */
function testRunNames(): number | undefined {
  const value = testSetting("FERRY_TEST_FOLDER_RUN");
  const n = Number(value);
  return value && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The size on disk from which a folder is big, its names sorted in runs ({@link NameSorter}),
 * and the runs' length: `BIG_FOLDER_BYTES` (lib/disk_jobs.ts) and {@link RUN_NAMES}, unless a
 * test asked for short runs, which go with every folder taken as big.
 */
export function bigFolderLimits(): { bigBytes: number; runNames: number } {
  const testRun = testRunNames();
  return testRun
    ? { bigBytes: 0, runNames: testRun }
    : { bigBytes: BIG_FOLDER_BYTES, runNames: RUN_NAMES };
}

/** Options for {@link NameSorter}. */
export interface NameSorterOptions {
  /** How two names compare. */
  compare: (a: string, b: string) => number;
  /** Names held before a run is spilled (default {@link RUN_NAMES}). */
  runNames?: number;
  /**
   * The folder the run files go in, private to the program (a server's staging folder, say);
   * default: a temporary folder of its own, made when the first run is spilled and removed with
   * the runs.
   */
  spillDir?: string;
  /**
   * What the name of every run file this sorter writes starts with (`TAG.ID.names`), so that
   * whoever asked for the sort can remove them by it ({@link removeRuns}) when the sort ends
   * where its sorter cannot (its thread died); default: a fresh one of its own.
   */
  runTag?: string;
}

/**
 * Takes names in any order ({@link add}) and gives them back sorted ({@link finish}), spilling
 * sorted runs to files past {@link NameSorterOptions.runNames}. Names must not hold U+0000 (no
 * file name does): it ends each name in a run file.
 *
 * @example
 * ```ts
 * import { NameSorter } from "./name_runs.ts";
 *
 * const sorter = new NameSorter({ compare: (a, b) => a < b ? -1 : a > b ? 1 : 0, runNames: 2 });
 * for (const name of ["c", "a", "d", "b"]) await sorter.add(name);
 * const sorted = await sorter.finish();
 * try {
 *   for (let chunk = await sorted.take(); chunk.length > 0; chunk = await sorted.take()) {
 *     console.log(chunk);
 *   }
 * } finally {
 *   sorted.close();
 * }
 * ```
 */
export class NameSorter {
  #held: string[] = [];
  /** The run files, each with how many merges made it: never rising along the list. */
  #runs: { path: string; level: number }[] = [];
  #compare: (a: string, b: string) => number;
  #runNames: number;
  #spillDir?: string;
  #runTag: string;
  /** The temporary folder this sorter made for its runs, removed with them. */
  #ownDir?: string;

  constructor(options: NameSorterOptions) {
    this.#compare = options.compare;
    this.#runNames = Math.max(1, options.runNames ?? RUN_NAMES);
    this.#spillDir = options.spillDir;
    this.#runTag = options.runTag ?? crypto.randomUUID();
  }

  /** Adds a name; the promise, when there is one, settles once a full run is spilled. */
  add(name: string): Promise<void> | undefined {
    this.#held.push(name);
    return this.#held.length >= this.#runNames ? this.#spill() : undefined;
  }

  async #spill(): Promise<void> {
    const names = this.#held.sort(this.#compare);
    this.#held = [];
    if (this.#spillDir === undefined) {
      this.#ownDir = await Deno.makeTempDir({ prefix: "ferry-names-" });
      this.#spillDir = this.#ownDir;
    }
    const path = this.#newRun(0);
    await Deno.writeFile(path, new TextEncoder().encode(names.join("\0") + "\0"), {
      createNew: true,
      mode: 0o600,
    });
    while (this.#runs.length >= FAN_IN) {
      const level = this.#runs.at(-1)!.level;
      if (this.#runs.at(-FAN_IN)!.level !== level) break;
      await this.#merge(level + 1);
    }
  }

  /** A new run file's path, listed (before it is written: a failed write is removed too). */
  #newRun(level: number): string {
    const path = join(this.#spillDir!, `${this.#runTag}.${crypto.randomUUID()}.names`);
    this.#runs.push({ path, level });
    return path;
  }

  /** Merges the last {@link FAN_IN} runs into one of `level`. */
  async #merge(level: number): Promise<void> {
    const merged = await this.#open(this.#runs.splice(-FAN_IN).map((run) => run.path));
    try {
      using file = await Deno.open(this.#newRun(level), {
        write: true,
        createNew: true,
        mode: 0o600,
      });
      const encoder = new TextEncoder();
      for (let chunk = await merged.take(); chunk.length > 0; chunk = await merged.take()) {
        const bytes = encoder.encode(chunk.join("\0") + "\0");
        for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
      }
    } finally {
      merged.close();
    }
  }

  /** The run files at `paths`, open and removed (on failure: closed, and every run removed). */
  #open(paths: string[]): Promise<SortedNames> {
    return openSortedRuns({ files: paths, held: [] }, this.#compare);
  }

  /**
   * The names, sorted; the sorter is done with. Each run file is open and already removed when
   * this resolves; a failure removes them all.
   */
  async finish(): Promise<SortedNames> {
    try {
      return await openSortedRuns(await this.#sorted(), this.#compare);
    } finally {
      await this.#removeOwnDir();
    }
  }

  /**
   * The names, sorted, as {@link SortedRuns} for another thread to merge ({@link openSortedRuns}),
   * which then owns the run files; the sorter is done with. Only for a sorter given a `spillDir`
   * (its own temporary folder would go with it). A failure removes the runs.
   */
  async finishRuns(): Promise<SortedRuns> {
    if (this.#ownDir !== undefined || this.#spillDir === undefined) {
      throw new TypeError("finishRuns needs a spillDir");
    }
    return await this.#sorted();
  }

  /**
   * The names held, sorted, and the run files merged down to at most {@link FAN_IN}, handed over
   * as {@link SortedRuns}: what {@link finish} opens and {@link finishRuns} gives. A failure
   * removes the runs.
   */
  async #sorted(): Promise<SortedRuns> {
    const held = this.#held.sort(this.#compare);
    this.#held = [];
    try {
      while (this.#runs.length > FAN_IN) await this.#merge(this.#runs.at(-1)!.level + 1);
    } catch (error) {
      await this.discard();
      throw error;
    }
    return { files: this.#runs.splice(0).map((run) => run.path), held };
  }

  /** Removes the run files spilled so far, and forgets every name: for a sort given up. */
  async discard(): Promise<void> {
    this.#held = [];
    const runs = this.#runs.splice(0);
    await Promise.all(runs.map((run) => Deno.remove(run.path).catch(() => {})));
    await this.#removeOwnDir();
  }

  async #removeOwnDir(): Promise<void> {
    if (this.#ownDir === undefined) return;
    await Deno.remove(this.#ownDir, { recursive: true }).catch(() => {});
    this.#ownDir = undefined;
  }
}

/**
 * Removes the run files in `spillDir` of the sort tagged `runTag` ({@link NameSorterOptions.runTag})
 * that are still there: for the one who asked for a sort on a thread that died mid-way, or failed.
 * How many it removed.
 *
 * @example
 * ```ts
 * import { removeRuns } from "./name_runs.ts";
 *
 * const runTag = crypto.randomUUID();
 * // ... a disk thread sorted with { spillDir: "/srv/.ferry-staging", runTag } and died
 * await removeRuns("/srv/.ferry-staging", runTag);
 * ```
 */
export async function removeRuns(spillDir: string, runTag: string): Promise<number> {
  const prefix = `${runTag}.`;
  let removed = 0;
  try {
    for await (const entry of Deno.readDir(spillDir)) {
      if (!entry.name.startsWith(prefix) || !entry.name.endsWith(".names")) continue;
      await Deno.remove(join(spillDir, entry.name)).then(() => removed++, () => {});
    }
  } catch (error) {
    // No folder, no runs.
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}

/**
 * Sorted names as a {@link NameSorter} leaves them ({@link NameSorter.finishRuns}), plain data that
 * may cross to another thread: run files, each sorted, and the last run, held.
 */
export interface SortedRuns {
  /** The run files' paths, each a sorted run of names ended by U+0000; at most {@link FAN_IN}. */
  files: string[];
  /** The names of the last run, sorted, which were never spilled. */
  held: string[];
}

/**
 * The names of `runs` in order, merged a chunk at a time: each run file is opened, then removed
 * (it is read through its open file, gone from every listing of its folder). On failure, every
 * run file is closed and removed.
 */
export async function openSortedRuns(
  runs: SortedRuns,
  compare: (a: string, b: string) => number,
): Promise<SortedNames> {
  const open: Run[] = [new HeldRun(runs.held)];
  try {
    for (const path of runs.files) {
      open.push(await FileRun.open(path));
      await Deno.remove(path);
    }
  } catch (error) {
    for (const run of open) run.close();
    await Promise.all(runs.files.map((path) => Deno.remove(path).catch(() => {})));
    throw error;
  }
  return new SortedNames(open, compare);
}

/** One sorted run being merged: its next name, and a way to move past it. */
interface Run {
  /** The run's next name; undefined once it is used up. */
  head: string | undefined;
  /** Moves past {@link head}. */
  advance(): Promise<void> | undefined;
  close(): void;
}

/** A run held in memory. */
class HeldRun implements Run {
  #names: string[];
  #next = 0;
  head: string | undefined;

  constructor(names: string[]) {
    this.#names = names;
    this.head = names[0];
  }

  /** What is left of it, whole, at once. */
  rest(): string[] {
    const rest = this.#next === 0 ? this.#names : this.#names.slice(this.#next);
    this.#names = [];
    this.#next = 0;
    this.head = undefined;
    return rest;
  }

  advance(): undefined {
    this.head = this.#names[++this.#next];
    return undefined;
  }

  close(): void {
    this.#names = [];
    this.head = undefined;
  }
}

/** A run read from its (removed) file, a buffer at a time. */
class FileRun implements Run {
  #file: Deno.FsFile;
  #names: string[] = [];
  #next = 0;
  /** Bytes read past the last complete name. */
  #tail = new Uint8Array(0);
  #ended = false;
  #decoder = new TextDecoder();
  head: string | undefined;

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  static async open(path: string): Promise<FileRun> {
    const run = new FileRun(await Deno.open(path, { read: true }));
    try {
      await run.#fill();
    } catch (error) {
      run.close();
      throw error;
    }
    return run;
  }

  advance(): Promise<void> | undefined {
    this.head = this.#names[++this.#next];
    return this.head === undefined && !this.#ended ? this.#fill() : undefined;
  }

  /** Reads until at least one more name is complete, or the file ends. */
  async #fill(): Promise<void> {
    this.#names = [];
    this.#next = 0;
    while (this.#names.length === 0 && !this.#ended) {
      const buffer = new Uint8Array(this.#tail.length + READ_BYTES);
      buffer.set(this.#tail);
      const n = await this.#file.read(buffer.subarray(this.#tail.length));
      if (n === null) {
        this.#ended = true;
        break;
      }
      const filled = buffer.subarray(0, this.#tail.length + n);
      const end = filled.lastIndexOf(0);
      if (end < 0) {
        this.#tail = filled;
        continue;
      }
      this.#names = this.#decoder.decode(filled.subarray(0, end)).split("\0");
      this.#tail = filled.slice(end + 1);
    }
    this.head = this.#names[0];
    if (this.#ended) this.close();
  }

  close(): void {
    this.#ended = true;
    try {
      this.#file.close();
    } catch {
      // Closed already.
    }
  }
}

/**
 * Names in sorted order, a chunk at a time ({@link take}), from a {@link NameSorter}. Close it
 * when done, or when giving up before the end: that gives the run files' space back.
 */
export class SortedNames {
  /** The runs, as a binary heap by their heads (a run used up leaves it). */
  #heap: Run[];
  #compare: (a: string, b: string) => number;

  constructor(runs: Run[], compare: (a: string, b: string) => number) {
    this.#compare = compare;
    this.#heap = runs.filter((run) => run.head !== undefined);
    for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  /** Whether every name was held in memory (nothing was spilled). */
  get inMemory(): boolean {
    return this.#heap.every((run) => run instanceof HeldRun);
  }

  /** The next names in order, at most `max` of them (all when held); none once all are out. */
  async take(max = CHUNK_NAMES): Promise<string[]> {
    const heap = this.#heap;
    if (heap.length === 1 && heap[0] instanceof HeldRun) {
      return (heap.pop() as HeldRun).rest();
    }
    const out: string[] = [];
    while (out.length < max && heap.length > 0) {
      const run = heap[0];
      out.push(run.head!);
      const moving = run.advance();
      if (moving) await moving;
      if (run.head === undefined) {
        const last = heap.pop()!;
        if (heap.length === 0) break;
        heap[0] = last;
      }
      this.#down(0);
    }
    return out;
  }

  /** Closes every run: what was not taken is forgotten. */
  close(): void {
    for (const run of this.#heap.splice(0)) run.close();
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    while (true) {
      const left = 2 * i + 1;
      if (left >= n) return;
      let least = left;
      if (left + 1 < n && this.#compare(heap[left + 1].head!, heap[left].head!) < 0) {
        least = left + 1;
      }
      if (this.#compare(heap[least].head!, heap[i].head!) >= 0) return;
      [heap[i], heap[least]] = [heap[least], heap[i]];
      i = least;
    }
  }
}
