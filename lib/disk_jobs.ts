/**
 * The file-system work a server hands to its disk threads (lib/disk_pool.ts) in one message rather
 * than one asynchronous call at a time: looking up every name of a folder, reading small files
 * whole, and reading and sorting a big folder's names for a listing (lib/folder_records.ts); and
 * reading a folder's entries ({@link eachEntry}), a big folder as they come, and
 * joining a real folder path with a name ({@link childOf}). Each job runs synchronously where it
 * runs (a worker thread), but for a big folder's read; its results are plain data that cross to
 * the event loop's thread by structured clone, errors as their Deno error class name. Nothing
 * here decides what a client may see: the caller checks what came back.
 *
 * @module
 */

import { type RecordsJob, sortRecords } from "./folder_records.ts";
import {
  BIG_FOLDER_BYTES,
  type DiskDirEntry,
  entryOfKinds,
  KIND_LINK,
  kindsOf,
} from "./folder_entries.ts";
import type { SortedRuns } from "./name_runs.ts";
import { type FileId, fileIdOf, openChecked, SwappedError } from "./checked_open.ts";

/** What a lookup found at one name, as plain data. */
export interface DiskInfo {
  /** `file`, `dir`, `link` (a symlink, never followed by an lstat) or `other`. */
  type: "file" | "dir" | "link" | "other";
  /** Size in bytes. */
  size: number;
  /** Modification time, ms since the epoch (0 when the system gives none). */
  mtime: number;
  /** The mode bits as the system gives them (null on Windows). */
  mode: number | null;
}

/** A failure carried across threads: the Deno error class's name and its message. */
export interface DiskFailure {
  error: string;
  message: string;
}

/**
 * Everything a folder holds, each distinct name looked up (lstat), in columns: typed arrays cross
 * between threads for the cost of a copy, where an object a name cost most of a large folder's
 * lookup to clone. Read it through a {@link FolderView}.
 */
export interface FolderLookup {
  /** The names in the order the system gave them (one not valid UTF-8 may appear twice). */
  names: string[];
  /** Per name, what the listing said it is: {@link kindsOf} bits. */
  kinds: Uint8Array;
  /** Per name, what its lstat found: an index into {@link TYPES}, or {@link NOT_LOOKED_UP}. */
  types: Uint8Array;
  /** Per name, the lstat's size. */
  sizes: Float64Array;
  /** Per name, the lstat's mtime, ms since the epoch. */
  mtimes: Float64Array;
  /** Per name, the lstat's mode bits, -1 where the system gives none. */
  modes: Int32Array;
  /** The lookups that failed, by place in {@link names}. */
  failures: Map<number, DiskFailure>;
  /** With `follow`, each symlink's real path and what a stat of it found, by place. */
  targets?: Map<number, { real: string; info: DiskInfo } | DiskFailure>;
}

/** {@link FolderLookup.types}: what each value stands for. */
export const TYPES: readonly DiskInfo["type"][] = ["file", "dir", "link", "other"];

/** {@link FolderLookup.types} of a name not looked up: a repeat, another share's, or failed. */
export const NOT_LOOKED_UP = 255;

/**
 * A {@link FolderLookup} read by name, on the thread that asked for it.
 *
 * @example
 * ```ts
 * import { FolderView, runDiskJob } from "./disk_jobs.ts";
 * import type { FolderLookup } from "./disk_jobs.ts";
 *
 * const view = new FolderView(await runDiskJob({ kind: "folder", dir: "." }) as FolderLookup);
 * for (const name of view.names) console.log(name, view.info(name));
 * ```
 */
export class FolderView {
  readonly #lookup: FolderLookup;
  #index?: Map<string, number>;

  constructor(lookup: FolderLookup) {
    this.#lookup = lookup;
  }

  /** The names in the order the system gave them. */
  get names(): readonly string[] {
    return this.#lookup.names;
  }

  /** The `i`th entry as the listing gave it. */
  entry(i: number): DiskDirEntry {
    return entryOfKinds(this.#lookup.names[i], this.#lookup.kinds[i]);
  }

  /** What the lookup of `name` found; undefined when it was not looked up (gone meanwhile). */
  info(name: string): DiskInfo | DiskFailure | undefined {
    const i = this.#place(name);
    return i === undefined ? undefined : this.infoAt(i);
  }

  /**
   * What the lookup of the `i`th name found, as {@link info} gives it: by place, without the
   * index of names a lookup by name builds, where `i` is the name's first place (the only one of
   * a name without U+FFFD: only names that are not UTF-8 read alike).
   */
  infoAt(i: number): DiskInfo | DiskFailure | undefined {
    const failure = this.#lookup.failures.get(i);
    if (failure) return failure;
    const type = this.#lookup.types[i];
    if (type === NOT_LOOKED_UP) return undefined;
    const mode = this.#lookup.modes[i];
    return {
      type: TYPES[type],
      size: this.#lookup.sizes[i],
      mtime: this.#lookup.mtimes[i],
      mode: mode < 0 ? null : mode,
    };
  }

  /** With `follow`: where the symlink `name` leads and what is there. */
  target(name: string): { real: string; info: DiskInfo } | DiskFailure | undefined {
    const i = this.#place(name);
    return i === undefined ? undefined : this.targetAt(i);
  }

  /** {@link target} of the `i`th name, by place as {@link infoAt}. */
  targetAt(i: number): { real: string; info: DiskInfo } | DiskFailure | undefined {
    return this.#lookup.targets?.get(i);
  }

  /** Where `name` first appears. */
  #place(name: string): number | undefined {
    if (!this.#index) {
      this.#index = new Map();
      this.#lookup.names.forEach((n, i) => {
        if (!this.#index!.has(n)) this.#index!.set(n, i);
      });
    }
    return this.#index.get(name);
  }
}

/**
 * Takes into `lookup` what the lookup of a share of its names found: `share` looked up the names
 * from place `at` on (a `names` job), as `DiskPool.folder` shares out a large folder's lookups.
 */
export function placeShare(lookup: FolderLookup, share: FolderLookup, at: number): void {
  lookup.types.set(share.types, at);
  lookup.sizes.set(share.sizes, at);
  lookup.mtimes.set(share.mtimes, at);
  lookup.modes.set(share.modes, at);
  for (const [i, failure] of share.failures) lookup.failures.set(at + i, failure);
  if (share.targets) {
    for (const [i, target] of share.targets) {
      lookup.targets?.set(at + i, target);
    }
  }
}

/** What reading a small file found. */
export interface SmallRead {
  /** The file's real path (symlinks resolved): the caller checks it is one it may serve. */
  real: string;
  /** What a stat of the real path found. */
  info: DiskInfo;
  /** The whole file, when it is a regular file of at most the size asked for. */
  bytes?: Uint8Array<ArrayBuffer>;
}

/** A job for a disk thread. */
export type DiskJob =
  | {
    kind: "folder";
    dir: string;
    follow?: boolean;
    /**
     * {@link FolderLookup.kinds} bits whose names the folder's read is trusted on: a name it gives
     * one of these kinds (and not {@link KIND_LINK}, nor a name that is not UTF-8) is not looked
     * up and comes back {@link NOT_LOOKED_UP}. For a listing of names alone, which needs no size
     * or time: a file system that cannot tell a name's kind from its read gives none of the bits,
     * and those names are looked up as ever. Default 0: every name is looked up.
     */
    trustKinds?: number;
    /**
     * Look the names up only if the folder holds at most this many: a larger one's come back
     * {@link NOT_LOOKED_UP}, for the caller to share their lookups out between threads (by
     * `names`) rather than have each thread read the folder again.
     */
    lookUpAtMost?: number;
    /** Read the folder as it comes from this size on disk (default {@link BIG_FOLDER_BYTES}). */
    bigBytes?: number;
    /**
     * A folder whose size on disk says it is big (see `bigBytes`) is not read: it is answered
     * {@link FOLDER_TOO_BIG}, for the caller to read as it comes and sort on disk (a listing,
     * lib/folder_listing.ts). Decided by the stat the read makes anyway, so the caller need not
     * look the folder up first.
     */
    leaveBig?: boolean;
    /**
     * Look up only these names, without reading the folder: a chunk of a big folder's names,
     * which a walk sorts on disk (lib/name_runs.ts) rather than in memory.
     */
    names?: string[];
    /**
     * Look the folder up only if it holds at most this many names (and its size on disk says it
     * may): a larger one is answered {@link FOLDER_TOO_BIG}, without a lookup.
     */
    most?: number;
  }
  | { kind: "read"; path: string; max: number }
  /** A big folder read and its records sorted in runs for a listing (lib/folder_records.ts). */
  | ({ kind: "records" } & RecordsJob);

/** What a folder's lookup with `most` answers for a folder past that many names. */
export interface FolderTooBig {
  tooBig: true;
}

/** The {@link FolderTooBig} answer. */
export const FOLDER_TOO_BIG: FolderTooBig = { tooBig: true };

/** What a job gives back. */
export type DiskResult = FolderLookup | FolderTooBig | SmallRead | SortedRuns | DiskFailure;

function infoOf(info: Deno.FileInfo): DiskInfo {
  const type = info.isSymlink ? "link" : info.isDirectory ? "dir" : info.isFile ? "file" : "other";
  return { type, size: info.size, mtime: info.mtime?.getTime() ?? 0, mode: info.mode };
}

function failureOf(error: unknown): DiskFailure {
  return error instanceof Error
    ? { error: error.name, message: error.message }
    : { error: "Error", message: String(error) };
}

/** Whether a job's result is a failure. */
export function isDiskFailure(value: unknown): value is DiskFailure {
  return typeof value === "object" && value !== null && "error" in value;
}

/** The error a {@link DiskFailure} stands for: the same Deno error class where there is one. */
export function diskError(failure: DiskFailure): Error {
  if (failure.error === "SwappedError") return new SwappedError(failure.message);
  const errors = Deno.errors as unknown as Record<
    string,
    (new (message: string) => Error) | undefined
  >;
  const Class = errors[failure.error];
  return Class ? new Class(failure.message) : new Error(failure.message);
}

/*
 * Reading a folder's entries without building them all at once. `Deno.readDirSync` makes an
 * object for every entry of the folder before the first one is seen, some hundreds of bytes each,
 * so a folder of a million names would cost hundreds of MiB for a moment; `Deno.readDir` hands
 * them over in batches, but costs more per entry. So a folder whose size on disk says it is big
 * is read as it comes, and every other folder, the common case, in one synchronous call.
 */

/** Options for {@link eachEntry}. */
export interface EachEntryOptions {
  /**
   * Read the folder as it comes from this size on disk, in bytes (default
   * {@link BIG_FOLDER_BYTES}).
   */
  bigBytes?: number;
  /** The folder's size on disk, where the caller has just looked (default: looked up here). */
  size?: number;
}

/**
 * Calls `each` for every entry of the folder `dir`, in the order the system gives them: before it
 * returns, for a small folder (and returns undefined), or as the entries come, for a big one (and
 * returns a promise that settles when the last has been seen). Errors of reading are thrown, or
 * reject the promise.
 *
 * @example
 * ```ts
 * import { eachEntry } from "./disk_jobs.ts";
 *
 * const names: string[] = [];
 * await eachEntry(".", (entry) => names.push(entry.name));
 * console.log(names.length);
 * ```
 */
export function eachEntry(
  dir: string,
  each: (entry: Deno.DirEntry) => void,
  options: EachEntryOptions = {},
): Promise<void> | undefined {
  const size = options.size ?? Deno.statSync(dir).size;
  if (size < (options.bigBytes ?? BIG_FOLDER_BYTES)) {
    for (const entry of Deno.readDirSync(dir)) each(entry);
    return undefined;
  }
  return (async () => {
    for await (const entry of Deno.readDir(dir)) each(entry);
  })();
}

/** U+FFFD, which Deno puts in a file name for each sequence that is not valid UTF-8. */
export const REPLACEMENT_CHAR = "\ufffd";

function lookUpFolder(
  job: DiskJob & { kind: "folder" },
): FolderLookup | FolderTooBig | Promise<FolderLookup> {
  const { dir, follow = false, lookUpAtMost = Infinity, trustKinds = 0 } = job;
  if (job.names) return lookUpNames(dir, job.names, new Array(job.names.length).fill(0), follow);
  const bigBytes = job.bigBytes ?? BIG_FOLDER_BYTES;
  const size = Deno.statSync(dir).size;
  if (job.leaveBig && size >= bigBytes) return FOLDER_TOO_BIG;
  const names: string[] = [];
  const listed: number[] = [];
  const reading = eachEntry(dir, (entry) => {
    names.push(entry.name);
    listed.push(kindsOf(entry));
  }, { bigBytes, size });
  const lookUp = () =>
    names.length > lookUpAtMost
      ? notLookedUp(names, listed, follow)
      : lookUpNames(dir, names, listed, follow, trustKinds);
  return reading ? reading.then(lookUp) : lookUp();
}

/**
 * Bytes a name takes in a folder's size on disk, at least, on the file systems that tell (ext4,
 * tmpfs, XFS): a folder larger than `most` of them (and than a few blocks) holds too many names
 * to be worth reading only to find out.
 */
const FOLDER_BYTES_PER_NAME = 12;

/** A folder this size on disk may hold few names whatever `most` is (long names, or blocks). */
const FOLDER_BYTES_FLOOR = 64 << 10;

/** A folder's lookup with `most`: read in one call, and looked up only if small enough. */
function lookUpSmallFolder(
  job: DiskJob & { kind: "folder"; most: number },
): FolderLookup | FolderTooBig {
  const { dir, most, follow = false } = job;
  const size = Deno.statSync(dir).size;
  if (size > Math.max(most * FOLDER_BYTES_PER_NAME, FOLDER_BYTES_FLOOR)) return FOLDER_TOO_BIG;
  const names: string[] = [];
  const listed: number[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (names.length === most) return FOLDER_TOO_BIG;
    names.push(entry.name);
    listed.push(kindsOf(entry));
  }
  return lookUpNames(dir, names, listed, follow);
}

/** A folder's names and kinds, none of them looked up yet. */
function notLookedUp(names: string[], listed: number[], follow: boolean): FolderLookup {
  const n = names.length;
  return {
    names,
    kinds: Uint8Array.from(listed),
    types: new Uint8Array(n).fill(NOT_LOOKED_UP),
    sizes: new Float64Array(n),
    mtimes: new Float64Array(n),
    modes: new Int32Array(n).fill(-1),
    failures: new Map(),
    ...(follow ? { targets: new Map() } : {}),
  };
}

function lookUpNames(
  dir: string,
  names: string[],
  listed: number[],
  follow: boolean,
  trustKinds = 0,
): FolderLookup {
  const n = names.length;
  const lookup = notLookedUp(names, listed, follow);
  // Only names that are not UTF-8 can read alike (with U+FFFD): only those are looked up once.
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const name = names[i];
    if (name.includes(REPLACEMENT_CHAR)) {
      if (seen.has(name)) continue;
      seen.add(name);
    } else if ((listed[i] & trustKinds) !== 0 && (listed[i] & KIND_LINK) === 0) {
      continue;
    }
    const path = `${dir}/${name}`;
    let info: DiskInfo;
    try {
      info = infoOf(Deno.lstatSync(path));
    } catch (error) {
      lookup.failures.set(i, failureOf(error));
      continue;
    }
    lookup.types[i] = TYPES.indexOf(info.type);
    lookup.sizes[i] = info.size;
    lookup.mtimes[i] = info.mtime;
    lookup.modes[i] = info.mode ?? -1;
    if (!follow || info.type !== "link") continue;
    try {
      const real = Deno.realPathSync(path);
      lookup.targets!.set(i, { real, info: infoOf(Deno.statSync(real)) });
    } catch (error) {
      lookup.targets!.set(i, failureOf(error));
    }
  }
  return lookup;
}

const SEPARATOR = Deno.build.os === "windows" ? "\\" : "/";

/**
 * The path of `name` (one segment, checked or as a folder listing gives it: no separator, `.` or
 * `..`) in the folder `dir`, a real path: joined as they are, without the normalizing node:path's
 * `join` does, which cost a measurable part of a walk or a small file's handling.
 */
export function childOf(dir: string, name: string): string {
  return dir.endsWith(SEPARATOR) || dir.endsWith("/") ? dir + name : dir + SEPARATOR + name;
}

/**
 * The real path of `path`: its folder's, resolved once per batch, joined with a name that is no
 * link; what a lookup found there, and which file it is.
 */
function realPathOf(
  path: string,
  batch: DiskBatch,
): { real: string; info: DiskInfo; id?: FileId } {
  const windows = Deno.build.os === "windows";
  const cut = windows
    ? Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"))
    : path.lastIndexOf("/");
  const dir = cut === 0 ? path.slice(0, 1) : path.slice(0, cut);
  let realDir = batch.realDirs.get(dir);
  if (realDir === undefined) {
    realDir = Deno.realPathSync(dir);
    batch.realDirs.set(dir, realDir);
  }
  const real = childOf(realDir, path.slice(cut + 1));
  const found = Deno.lstatSync(real);
  const info = infoOf(found);
  if (info.type !== "link") return { real, info, id: fileIdOf(found) };
  // A symlink: resolved whole, and what it leads to measured.
  const target = Deno.realPathSync(path);
  const led = Deno.statSync(target);
  return { real: target, info: infoOf(led), id: fileIdOf(led) };
}

function readSmall(path: string, max: number, batch: DiskBatch): SmallRead {
  // Measured by its path before it is opened: only a regular file is opened, and only the one
  // found (lib/checked_open.ts: a link or FIFO swapped in since is refused, never followed or
  // waited on), then measured again through the file, and read no further than that: one
  // swapped for a huge file meanwhile is never read whole (readFileSync would).
  const { real, info, id } = realPathOf(path, batch);
  if (info.type !== "file" || info.size > max) return { real, info };
  batch.beforeOpen?.(real);
  using file = openChecked(real, { expect: id });
  const now = file.statSync();
  const opened: DiskInfo = {
    type: "file",
    size: now.size,
    mtime: now.mtime?.getTime() ?? 0,
    mode: now.mode,
  };
  if (opened.size > max) return { real, info: opened };
  const bytes = new Uint8Array(opened.size);
  let filled = 0;
  while (filled < bytes.length) {
    const n = file.readSync(bytes.subarray(filled));
    if (n === null) throw new Deno.errors.UnexpectedEof("it shrank while being read");
    filled += n;
  }
  return { real, info: opened, bytes };
}

/**
 * What the jobs of one batch share: the real paths of the folders they read from, each resolved
 * once (every path component costs Deno a `readlink` for its permission checks on each call).
 * A batch is one message, so nothing is remembered for longer than it takes to run.
 */
export interface DiskBatch {
  realDirs: Map<string, string>;
  /**
   * Test-only: called between a small file's lookup and its open, with its real path, to swap
   * something in for it there (tests/swap_race_test.ts). Never set outside tests.
   */
  beforeOpen?: (real: string) => void;
}

/** A fresh {@link DiskBatch}. */
export function newDiskBatch(): DiskBatch {
  return { realDirs: new Map() };
}

/**
 * Runs one job on the calling thread; never throws (a failure is returned). A read, and the lookup
 * of an ordinary folder, answer at once; the lookup of a big folder, read as it comes
 * ({@link eachEntry}), answers with a promise.
 */
export function runDiskJob(
  job: DiskJob,
  batch: DiskBatch = newDiskBatch(),
): DiskResult | Promise<DiskResult> {
  try {
    if (job.kind === "read") return readSmall(job.path, job.max, batch);
    if (job.kind === "records") return sortRecords(job).catch(failureOf);
    if (job.most !== undefined) return lookUpSmallFolder({ ...job, most: job.most });
    const lookup = lookUpFolder(job);
    return lookup instanceof Promise ? lookup.catch(failureOf) : lookup;
  } catch (error) {
    return failureOf(error);
  }
}
