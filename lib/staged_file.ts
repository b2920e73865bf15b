/**
 * Staged writes: a file written under a name of its own and given its real name only once it is
 * whole and verified, so the real name holds all of it or nothing, even after a power cut. This
 * module owns creating or continuing the staging file, writing it in {@link FILE_WRITE_PIECE}
 * pieces, flushing behind the writes, the flush before naming, the move into place (replacing,
 * or refusing a name that is taken), the folder sync after it, and removing or keeping the bytes
 * when the transfer fails. The server's uploads (lib/folder_uploads.ts), the client's downloads
 * (lib/local_download.ts), the TLS identity and the known-servers file are written through it.
 *
 * @module
 */

import {
  type CheckedWriter,
  type FileId,
  loadCheckedOpen,
  openChecked,
  SwappedError,
} from "./checked_open.ts";
import { dirname } from "node:path";
import { isNoSpace } from "./errors.ts";
import { FlushBehind } from "./flush_behind.ts";
import { FILE_WRITE_PIECE, writeAll, writeAllSync } from "./write_all.ts";

/** How {@link StagedFile.open} opens the staging file. */
export type StagedMode =
  /** A new file; an error if anything is there already. */
  | "create"
  /** Made if missing, emptied if there. */
  | "replace"
  /**
   * Continued after the bytes already there (a resume): opened through the checked open
   * (lib/checked_open.ts), so only a regular file is continued, never through a symlink, and a
   * FIFO is refused rather than waited on.
   */
  | "append";

/**
 * The open staging file: Deno's for a file created or emptied, the checked open's for one
 * continued (`"append"`).
 */
export type StagingFile = Deno.FsFile | CheckedWriter;

/** Options for {@link StagedFile.open}. */
export interface StagedFileOptions {
  /** How to open the staging file (default `"create"`). */
  mode?: StagedMode;
  /** Open it for reading too, to read back the bytes an append continues (default false). */
  read?: boolean;
  /**
   * `append` of a file found by a lookup (lstat): the file opened must be that one (device and
   * inode), or it is closed unwritten and a `SwappedError` thrown (lib/checked_open.ts), as it is
   * for anything but a regular file there, whether or not this is given. Ignored by the other
   * modes, whose open makes the file.
   */
  expect?: FileId;
  /**
   * Permission bits of a file it creates, less the umask, such as 0o600 for a secret (default:
   * 0o666 less the umask). Ignored on Windows.
   */
  permissions?: number;
  /**
   * Flush to disk behind the writes and before the file is named, then sync its folder, so a
   * power cut leaves the name whole or absent (default true).
   */
  fsync?: boolean;
  /**
   * Write a regular file without leaving the calling thread (see `writeAllSync`): quicker, for
   * the client, which has nothing else to do meanwhile. A server must not, since one slow write
   * would hold up every connection (default false). Anything but a regular file is written
   * asynchronously either way: a FIFO could block for any time.
   */
  writeSync?: boolean;
  /**
   * A small file (at most {@link SMALL_FILE_MAX} bytes): every step but the flush to disk (open,
   * writes, times, close, naming) runs on the calling thread, implying `writeSync`. Each is
   * microseconds of page-cache work, less than the hand-off of an asynchronous call to another
   * thread. The caller bounds it to small files, so a server's connections wait on one another for
   * no more than that; the flush, which waits for the disk, stays asynchronous (default false).
   */
  sync?: boolean;
  /**
   * Told when creating, writing or naming the file ran out of disk space, with how many bytes
   * the step needs; resolves true once it has freed some, and the step is run again. Without it
   * (the default), running out of space is an error like any other.
   */
  onNoSpace?: (bytes: number) => Promise<boolean>;
  /**
   * Turns a failure of the file system into the error thrown, given the path it concerns (the
   * staging file, or the name it was being given): the client's `Cannot write PATH: reason`.
   * By default the error is thrown as it is.
   */
  failure?: (error: unknown, path: string) => unknown;
}

/** Options for {@link StagedFile.commit}. */
export interface CommitOptions {
  /** Replace a file that has the name already (default false: refuse, and say so). */
  replace?: boolean;
  /**
   * Modification time to give the file, ms since the epoch, set through the open file after the
   * last write (default: when it was written).
   */
  mtime?: number;
}

/**
 * Largest file written with {@link StagedFileOptions.sync}: 256 KiB, a quarter of a transfer
 * buffer, whose page-cache writes take tens of microseconds, not the milliseconds a large file's
 * can.
 */
export const SMALL_FILE_MAX = 256 << 10;

/**
 * Whether files created in a folder keep the whole mode they were given at creation: the umask,
 * and a default ACL, which can differ from folder to folder, may take bits away, and a chmod by
 * path puts them back. The first file of each mode created in a folder is looked at; the others
 * created there with that mode are alike, and need no chmod when it kept all of it. Only a file
 * this process has just created counts: one emptied or continued may have had any mode.
 *
 * @example
 * ```ts
 * import { CreationModes, StagedFile } from "./staged_file.ts";
 *
 * const modes = new CreationModes();
 * const staged = await StagedFile.open("dir/x.part", { permissions: 0o644 });
 * if (!modes.keeps("dir", 0o644, staged.file)) await Deno.chmod(staged.path, 0o644);
 * ```
 */
export class CreationModes {
  #dir?: string;
  #kept = new Map<number, boolean>();

  /** Whether `file`, just created in `dir` with `mode`, has all of it. */
  keeps(dir: string, mode: number, file: { statSync(): { mode: number | null } }): boolean {
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
 * Where a committed file goes: a path, or a function that prepares one and returns it (creating
 * its folders, checking the name, or setting the staged file's mode and times first). The
 * function runs after the flush, and again if the move needed room that was then made.
 */
export type CommitTarget = string | (() => string | Promise<string>);

/**
 * Runs `step`; while it fails for lack of space and `onNoSpace` frees some, runs it again.
 */
async function withRoom<T>(
  onNoSpace: ((bytes: number) => Promise<boolean>) | undefined,
  bytes: number,
  step: () => Promise<T>,
): Promise<T> {
  for (;;) {
    try {
      return await step();
    } catch (error) {
      if (!onNoSpace || !isNoSpace(error) || !await onNoSpace(bytes)) throw error;
    }
  }
}

const asIs = (error: unknown) => error;

/** Whether the open `file` is a regular file (false if it cannot be told). */
function isFile(file: Deno.FsFile): Promise<boolean> {
  return file.stat().then((info) => info.isFile, () => false);
}

/** {@link isFile} on the calling thread. */
function isFileSync(file: Deno.FsFile): boolean {
  try {
    return file.statSync().isFile;
  } catch {
    return false;
  }
}

/**
 * A file being written under a staging name, until it is committed to its real name, discarded,
 * or kept for a later append.
 *
 * @example Write a file that appears whole or not at all
 * ```ts
 * import { StagedFile } from "./staged_file.ts";
 *
 * const staged = await StagedFile.open("report.pdf.part", { mode: "replace" });
 * try {
 *   await staged.write(new TextEncoder().encode("%PDF-1.7 ..."));
 *   if (!await staged.commit("report.pdf")) console.log("report.pdf appeared meanwhile");
 * } catch (error) {
 *   await staged.discard();
 *   throw error;
 * }
 * ```
 */
export class StagedFile {
  /** Path of the staging file. */
  readonly path: string;
  /** Bytes that were there when it was opened: the start of an append, else 0. */
  readonly offset: number;
  #file: StagingFile;
  #writeSync: boolean;
  #sync: boolean;
  #fsync: boolean;
  #onNoSpace?: (bytes: number) => Promise<boolean>;
  #failure: (error: unknown, path: string) => unknown;
  #flusher?: FlushBehind;
  #closed = false;
  #state: "open" | "committed" | "kept" | "discarded" = "open";
  /** Where the next chunk goes: the end of the last write that succeeded. */
  #position: number;

  private constructor(
    path: string,
    file: StagingFile,
    offset: number,
    writeSync: boolean,
    options: StagedFileOptions,
  ) {
    this.path = path;
    this.offset = offset;
    this.#position = offset;
    this.#file = file;
    this.#writeSync = writeSync;
    this.#sync = options.sync ?? false;
    this.#fsync = options.fsync ?? true;
    this.#onNoSpace = options.onNoSpace;
    this.#failure = options.failure ?? asIs;
    // A small file never has enough waiting to start a flush behind it.
    if (this.#fsync && !this.#sync) this.#flusher = new FlushBehind(path);
  }

  /** Opens (creates, empties or continues, by `options.mode`) the staging file at `path`. */
  static async open(path: string, options: StagedFileOptions = {}): Promise<StagedFile> {
    const mode = options.mode ?? "create";
    if (mode === "append") return await StagedFile.#continue(path, options);
    const failure = options.failure ?? asIs;
    const how: Deno.OpenOptions = { read: options.read ?? false, write: true };
    if (options.permissions !== undefined) how.mode = options.permissions;
    if (mode === "create") how.createNew = true;
    if (mode === "replace") Object.assign(how, { create: true, truncate: true });
    let file: Deno.FsFile;
    try {
      // Even an empty file can need a block of its folder's.
      file = await withRoom(
        options.onNoSpace,
        0,
        options.sync ? () => Promise.resolve(Deno.openSync(path, how)) : () => Deno.open(path, how),
      );
    } catch (error) {
      throw failure(error, path);
    }
    try {
      // Something left at a `.part`'s path by hand, a FIFO say, is never written synchronously;
      // a file just created (createNew, which never follows a symlink) is a regular file. A
      // small file's stat of its open file runs on this thread, as its open did: fstat never
      // blocks, and the hand-off would cost more than the call.
      const wantSync = options.writeSync === true || options.sync === true;
      const writeSync = wantSync &&
        (mode === "create" || (options.sync ? isFileSync(file) : await isFile(file)));
      return new StagedFile(path, file, 0, writeSync, options);
    } catch (error) {
      file.close();
      throw failure(error, path);
    }
  }

  /**
   * `append`: continues the regular file at `path` (the one `expect` names), opened through the
   * checked open, after its bytes. Its name is known in advance and its folder may be writable by
   * others (a `.part` beside the download): Deno's own open would follow a symlink swapped in and
   * wait forever on a FIFO before any check of what it opened could run.
   */
  static async #continue(path: string, options: StagedFileOptions): Promise<StagedFile> {
    const failure = options.failure ?? asIs;
    let file: CheckedWriter;
    try {
      await loadCheckedOpen();
      file = openChecked(path, { write: true, expect: options.expect });
    } catch (error) {
      throw failure(
        error instanceof SwappedError
          ? new SwappedError(
            "It changed as it was opened: replaced by another file, a link or a pipe",
          )
          : error,
        path,
      );
    }
    try {
      const offset = await file.seek(0, Deno.SeekMode.End);
      // A regular file, checked: written on the calling thread if asked.
      const writeSync = options.writeSync === true || options.sync === true;
      return new StagedFile(path, file, offset, writeSync, options);
    } catch (error) {
      file.close();
      throw failure(error, path);
    }
  }

  /** The open staging file, to read back the bytes an append continues. */
  get file(): StagingFile {
    return this.#file;
  }

  /** Bytes in the staging file: the offset, and every chunk written since. */
  get size(): number {
    return this.#position;
  }

  /**
   * Appends a chunk; once it resolves, the bytes are in the file. Straight to the file, not
   * through `file.writable`, which holds writes under 64 KiB back until it is closed: the flush
   * before naming would have missed them.
   */
  async write(chunk: Uint8Array): Promise<void> {
    try {
      if (this.#writeSync) writeAllSync(this.#file, chunk, { piece: FILE_WRITE_PIECE });
      else await writeAll(this.#file, chunk, { piece: FILE_WRITE_PIECE });
    } catch (error) {
      await this.#rewrite(chunk, error);
    }
    this.#position += chunk.length;
    this.#flusher?.wrote(chunk.length);
  }

  /** After a failed write: makes room and writes the chunk again if it can, else throws. */
  async #rewrite(chunk: Uint8Array, failed: unknown): Promise<void> {
    let error = failed;
    while (this.#onNoSpace && isNoSpace(error) && await this.#onNoSpace(chunk.length)) {
      try {
        // Part of the chunk may have gone in before the disk filled: write it all again, over it.
        await this.#file.seek(this.#position, Deno.SeekMode.Start);
        await writeAll(this.#file, chunk, { piece: FILE_WRITE_PIECE });
        return;
      } catch (again) {
        error = again;
      }
    }
    throw this.#failure(error, this.path);
  }

  async #close(): Promise<void> {
    if (this.#flusher) await this.#flusher.stop();
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }

  async #closeQuietly(): Promise<void> {
    try {
      await this.#close();
    } catch {
      // Closing can only fail for a file that is already gone; it is being removed anyway.
    }
  }

  #finish(next: "committed" | "kept"): void {
    if (this.#state !== "open") throw new Error(`Staged file is already ${this.#state}`);
    this.#state = next;
  }

  /**
   * Flushes the file, gives it the name `target` and syncs that folder (a sync shared with other
   * commits into it: {@link syncDirShared}). Call only once the data is verified. Resolves false
   * when `target` exists and `replace` is not set: that file is left as it is. Whenever it does
   * not resolve true, the staging file is gone.
   */
  async commit(target: CommitTarget, options: CommitOptions = {}): Promise<boolean> {
    this.#finish("committed");
    try {
      try {
        // Through the open file, after the last write (which would set it again).
        if (options.mtime !== undefined) {
          const mtime = new Date(options.mtime);
          if (this.#sync) this.#file.utimeSync(new Date(), mtime);
          else await this.#file.utime(new Date(), mtime);
        }
        // Flushed before it gets its name: after a power cut the name is whole or absent, never
        // empty. Not retried after making room: Linux forgets the unwritten pages of a failed
        // flush, so a second flush would report success for data that never reached the disk.
        if (this.#fsync) await this.#file.syncData();
        await this.#close();
      } catch (error) {
        throw this.#failure(error, this.path);
      }
      let to = typeof target === "string" ? target : undefined;
      let moved: boolean;
      try {
        // Creating folders and linking the name can each need a block of their own.
        moved = await withRoom(this.#onNoSpace, 0, async () => {
          if (typeof target !== "string") to = await target();
          if (!options.replace) return await moveNoClobber(this.path, to!, this.#sync);
          if (this.#sync) Deno.renameSync(this.path, to!);
          else await Deno.rename(this.path, to!);
          return true;
        });
      } catch (error) {
        throw to === undefined ? error : this.#failure(error, to);
      }
      if (!moved) {
        await Deno.remove(this.path).catch(() => {});
        return false;
      }
      const folder = dirname(to!);
      if (this.#fsync) await syncDirShared(folder);
      return true;
    } catch (error) {
      await this.#closeQuietly();
      await Deno.remove(this.path).catch(() => {});
      throw error;
    }
  }

  /**
   * Closes the file and leaves its bytes where they are, to be continued later (`mode:
   * "append"`) or moved by the caller; {@link discard} still removes them.
   */
  async keep(): Promise<void> {
    this.#finish("kept");
    await this.#close();
  }

  /**
   * Throws the staging file away. Safe to call more than once, and after a failed commit; after
   * a successful one it does nothing.
   */
  async discard(): Promise<void> {
    if (this.#state === "committed" || this.#state === "discarded") return;
    this.#state = "discarded";
    await this.#closeQuietly();
    await Deno.remove(this.path).catch(() => {});
  }
}

/**
 * Moves `from` to `to` unless `to` exists, atomically where the filesystem has hard links.
 * Returns false, leaving `from` in place, when `to` exists. With `sync`, on the calling thread.
 */
export async function moveNoClobber(from: string, to: string, sync = false): Promise<boolean> {
  // On the calling thread for a small file (StagedFileOptions.sync), as its other steps.
  const link = sync ? (a: string, b: string) => Promise.resolve(Deno.linkSync(a, b)) : Deno.link;
  const lstat = sync ? (p: string) => Promise.resolve(Deno.lstatSync(p)) : Deno.lstat;
  const rename = sync
    ? (a: string, b: string) => Promise.resolve(Deno.renameSync(a, b))
    : Deno.rename;
  const remove = sync ? (p: string) => Promise.resolve(Deno.removeSync(p)) : Deno.remove;
  try {
    await link(from, to);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // No hard links here: check, then rename, is the next best thing.
    try {
      await lstat(to);
      return false;
    } catch (statError) {
      if (!(statError instanceof Deno.errors.NotFound)) throw statError;
    }
    await rename(from, to);
    return true;
  }
  await remove(from);
  return true;
}

/** Per folder: the sync under way, and the next one, which has not started yet. */
const folderSyncs = new Map<string, { running?: Promise<void>; next?: Promise<void> }>();

/**
 * {@link syncDir} for a name just given in `dir`, shared with the other commits into that folder:
 * it joins a sync that has not started yet, or else waits for the one under way (which may have
 * begun before this name was given) and starts the next. The files of a tree, committed several
 * at once into one folder, flush it once between them rather than once each.
 */
export function syncDirShared(dir: string): Promise<void> {
  let state = folderSyncs.get(dir);
  if (!state) folderSyncs.set(dir, state = {});
  if (state.next) return state.next;
  const sync = async () => {
    await state.running;
    // Names given from now on may be missed by this sync: they wait for the next.
    state.next = undefined;
    const running = syncDir(dir);
    state.running = running;
    await running;
    if (state.running !== running) return;
    state.running = undefined;
    if (!state.next) folderSyncs.delete(dir);
  };
  state.next = sync();
  return state.next;
}

/**
 * Flushes a folder's entries to disk, so a rename or link into it survives a power cut. Quietly
 * does nothing where the filesystem cannot sync a folder.
 */
export async function syncDir(dir: string): Promise<void> {
  try {
    using handle = await Deno.open(dir, { read: true });
    await handle.syncData();
  } catch {
    // Some filesystems cannot sync a folder; the file itself was already flushed.
  }
}
