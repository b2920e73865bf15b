/**
 * The file-system work a server hands to its disk threads (lib/disk_pool.ts) in one message rather
 * than one asynchronous call at a time: looking up every name of a folder, and reading small
 * files whole. Each job runs synchronously where it runs (a worker thread); its results are plain
 * data that cross to the event loop's thread by structured clone, errors as their Deno error
 * class name. Nothing here decides what a client may see: the caller checks what came back.
 *
 * @module
 */

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

/** One entry as the folder's listing gives it (a name may appear twice: see the listing). */
export interface DiskDirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** Everything a folder holds, each distinct name looked up (lstat). */
export interface FolderLookup {
  /** The folder's entries in the order the system gave them. */
  entries: DiskDirEntry[];
  /** For each distinct name of `entries`, what an lstat of it found. */
  infos: Map<string, DiskInfo | DiskFailure>;
  /**
   * With `follow`, for each distinct name that is a symlink: its real path and what a stat of
   * that found.
   */
  targets?: Map<string, { real: string; info: DiskInfo } | DiskFailure>;
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
  | { kind: "folder"; dir: string; follow?: boolean }
  | { kind: "read"; path: string; max: number };

/** What a job gives back. */
export type DiskResult = FolderLookup | SmallRead | DiskFailure;

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
  const errors = Deno.errors as unknown as Record<
    string,
    (new (message: string) => Error) | undefined
  >;
  const Class = errors[failure.error];
  return Class ? new Class(failure.message) : new Error(failure.message);
}

function lookUpFolder(dir: string, follow: boolean): FolderLookup {
  const entries: DiskDirEntry[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const { name, isFile, isDirectory, isSymlink } = entry;
    entries.push({ name, isFile, isDirectory, isSymlink });
  }
  const infos: FolderLookup["infos"] = new Map();
  const targets: NonNullable<FolderLookup["targets"]> = new Map();
  for (const { name } of entries) {
    if (infos.has(name)) continue;
    const path = `${dir}/${name}`;
    let info: DiskInfo;
    try {
      info = infoOf(Deno.lstatSync(path));
    } catch (error) {
      infos.set(name, failureOf(error));
      continue;
    }
    infos.set(name, info);
    if (!follow || info.type !== "link") continue;
    try {
      const real = Deno.realPathSync(path);
      targets.set(name, { real, info: infoOf(Deno.statSync(real)) });
    } catch (error) {
      targets.set(name, failureOf(error));
    }
  }
  return follow ? { entries, infos, targets } : { entries, infos };
}

/** The real path of `path`: its folder's, resolved once per batch, joined with a name that is no link. */
function realPathOf(path: string, batch: DiskBatch): { real: string; info: DiskInfo } {
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
  const separator = windows ? "\\" : "/";
  const name = path.slice(cut + 1);
  const real = realDir.endsWith(separator) ? realDir + name : realDir + separator + name;
  const info = infoOf(Deno.lstatSync(real));
  if (info.type !== "link") return { real, info };
  // A symlink: resolved whole, and what it leads to measured.
  const target = Deno.realPathSync(path);
  return { real: target, info: infoOf(Deno.statSync(target)) };
}

function readSmall(path: string, max: number, batch: DiskBatch): SmallRead {
  // Measured by its path before it is opened: a FIFO there would block the open, so only a
  // regular file is opened, then measured again through the file, and read no further than
  // that: one swapped for a huge file meanwhile is never read whole (readFileSync would).
  const { real, info } = realPathOf(path, batch);
  if (info.type !== "file" || info.size > max) return { real, info };
  using file = Deno.openSync(real, { read: true });
  const opened = infoOf(file.statSync());
  if (opened.type !== "file" || opened.size > max) return { real, info: opened };
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
}

/** A fresh {@link DiskBatch}. */
export function newDiskBatch(): DiskBatch {
  return { realDirs: new Map() };
}

/** Runs one job on the calling thread; never throws (a failure is returned). */
export function runDiskJob(job: DiskJob, batch: DiskBatch = newDiskBatch()): DiskResult {
  try {
    return job.kind === "folder"
      ? lookUpFolder(job.dir, job.follow ?? false)
      : readSmall(job.path, job.max, batch);
  } catch (error) {
    return failureOf(error);
  }
}
