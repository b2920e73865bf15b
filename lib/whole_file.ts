/**
 * A small file staged whole in one synchronous step: created under its staging name, written,
 * given its mode and mtime, flushed when asked, closed and named, or refused over a name that is
 * taken. It is what a disk thread runs for a server's small upload (lib/disk_jobs.ts), every byte
 * already verified; lib/staged_file.ts writes files as their bytes come and shares its
 * {@link CreationModes} and {@link moveNoClobberSync}. It imports nothing, so that a disk
 * thread's module graph stays small (lib/disk_pool.ts's `DISK_THREAD_MODULES`).
 *
 * @module
 */

/**
 * Whether files created in a folder keep the whole mode they were given at creation: the umask,
 * and a default ACL, which can differ from folder to folder, may take bits away, and a chmod by
 * path puts them back. The first file of each mode created in a folder is looked at; the others
 * created there with that mode are alike, and need no chmod when it kept all of it. Only a file
 * this process has just created counts: one emptied or continued may have had any mode.
 *
 * @example
 * ```ts
 * import { CreationModes } from "./whole_file.ts";
 *
 * const modes = new CreationModes();
 * using file = Deno.openSync("x.part", { write: true, createNew: true, mode: 0o644 });
 * if (!modes.keeps(".", 0o644, file)) Deno.chmodSync("x.part", 0o644);
 * ```
 */
export class CreationModes {
  #dir?: string;
  #kept = new Map<number, boolean>();

  /** Whether `file`, just created in `dir` with `mode`, has all of it. */
  keeps(dir: string, mode: number, file: Deno.FsFile): boolean {
    if (this.#dir !== dir) {
      this.#dir = dir;
      this.#kept.clear();
    }
    let kept = this.#kept.get(mode);
    if (kept === undefined) {
      try {
        // An fstat of a file just created: its inode is in memory, no disk wait.
        kept = (file.statSync().mode! & 0o777) === mode;
      } catch {
        return false;
      }
      this.#kept.set(mode, kept);
    }
    return kept;
  }
}

/**
 * Moves `from` to `to` unless `to` exists, atomically where the filesystem has hard links, on the
 * calling thread. Returns false, leaving `from` in place, when `to` exists.
 */
export function moveNoClobberSync(from: string, to: string): boolean {
  try {
    Deno.linkSync(from, to);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // No hard links here: check, then rename, is the next best thing.
    try {
      Deno.lstatSync(to);
      return false;
    } catch (statError) {
      if (!(statError instanceof Deno.errors.NotFound)) throw statError;
    }
    Deno.renameSync(from, to);
    return true;
  }
  Deno.removeSync(from);
  return true;
}

/** What {@link writeWholeSync} writes, and where. */
export interface WholeFile {
  /** The staging path: created new (nothing may be there). */
  staging: string;
  /** The name it is given once whole. */
  target: string;
  /** All its bytes, verified. */
  bytes: Uint8Array;
  /** Permission bits, given at creation and restored where the umask took some (no chmod on Windows). */
  permissions?: number;
  /** Modification time, ms since the epoch (default: when it was written). */
  mtime?: number;
  /** Replace a file that has the name (default false: refuse, and leave that file as it is). */
  replace?: boolean;
  /** Flush the file's data to disk before it is named (default true). */
  fsync?: boolean;
}

/** A step of {@link writeWholeSync} failed: `cause` is the system's error, `path` what it concerned. */
export class WholeFileError extends Error {
  /** The staging path, or the name it was being given. */
  readonly path: string;
  constructor(cause: unknown, path: string) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "WholeFileError";
    this.path = path;
  }
}

/** Per thread: what creation keeps of each mode in the staging folder (see {@link CreationModes}). */
const modes = new CreationModes();

/**
 * Writes `job.bytes` to a new file at `job.staging` and gives it the name `job.target`; true once
 * named, false when the name is taken and `replace` is not set. On failure (a
 * {@link WholeFileError}) and on refusal the staging file is gone. The folder the name is in is
 * not synced: the caller shares that sync between the files named there.
 *
 * @example
 * ```ts
 * import { writeWholeSync } from "./whole_file.ts";
 *
 * const named = writeWholeSync({
 *   staging: "note.txt.part",
 *   target: "note.txt",
 *   bytes: new TextEncoder().encode("hello\n"),
 *   mtime: Date.now(),
 * });
 * console.log(named ? "written" : "note.txt was there already");
 * ```
 */
export function writeWholeSync(job: WholeFile): boolean {
  const { staging, target, bytes, permissions } = job;
  const mode = Deno.build.os === "windows" ? undefined : permissions;
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(staging, { write: true, createNew: true, mode });
  } catch (error) {
    throw new WholeFileError(error, staging);
  }
  let named = false;
  try {
    try {
      try {
        for (let done = 0; done < bytes.length;) {
          done += file.writeSync(bytes.subarray(done));
        }
        if (mode !== undefined && !modes.keeps(dirOf(staging), mode, file)) {
          Deno.chmodSync(staging, mode);
        }
        // Through the open file, after the last write (which would set it again).
        if (job.mtime !== undefined) file.utimeSync(new Date(), new Date(job.mtime));
        // Flushed before it gets its name: after a power cut the name is whole or absent.
        if (job.fsync ?? true) file.syncDataSync();
      } finally {
        file.close();
      }
    } catch (error) {
      throw new WholeFileError(error, staging);
    }
    try {
      if (job.replace) Deno.renameSync(staging, target);
      else if (!moveNoClobberSync(staging, target)) return false;
    } catch (error) {
      throw new WholeFileError(error, target);
    }
    named = true;
    return true;
  } finally {
    if (!named) {
      try {
        Deno.removeSync(staging);
      } catch {
        // Never created, or gone already.
      }
    }
  }
}

function dirOf(path: string): string {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return cut <= 0 ? path.slice(0, cut + 1) : path.slice(0, cut);
}
