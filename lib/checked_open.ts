/**
 * Opening for reading a file that was looked up before (a walk's `lstat`, a resolved path's
 * `stat`), so that what is read is that file and nothing swapped in for it meanwhile by someone
 * who can write in its folder: never what a symlink put in its place leads to (a sender would
 * send a file the swapper cannot read, but the sending process can: an SSH key), and never a FIFO
 * (an open for reading waits for a writer, forever). Owns {@link openChecked}, the file it
 * opens ({@link CheckedFile}) and the error of a file that changed ({@link SwappedError}).
 *
 * Two defences, both without an extra call on the file's path:
 * - The identity check: the file opened must be the one looked up (same device and inode, from
 *   `fstat` of the open file). Deno resolves every symlink of a path itself before it opens it
 *   (its permission check reads each component's link) and opens where the link leads, so
 *   `O_NOFOLLOW` alone never sees a link swapped in before that resolution; the identity does.
 * - The open is made through node:fs, whose flags reach the system as given: `O_NONBLOCK`
 *   opens a FIFO at once (no wait for a writer) so that `fstat` can refuse it, and `O_NOFOLLOW`
 *   refuses a link swapped in after Deno's resolution. Deno's own open takes no such flags. On a
 *   regular file `O_NONBLOCK` changes nothing.
 *
 * With `write`, the same open for reading and writing ({@link CheckedWriter}): continuing a file
 * that a lookup found, as a staged file's append does (lib/staged_file.ts), where a link swapped
 * in would have the bytes written to where it leads and a FIFO would freeze the open.
 *
 * On Windows (no FIFOs in a folder, no such flags) the file is opened with Deno's open and the
 * identity is checked where the system gives one.
 *
 * @module
 */

import type { Stats } from "node:fs";
import { StoreError } from "./errors.ts";

type NodeFs = typeof import("node:fs");

const WINDOWS = Deno.build.os === "windows";

/** node:fs, once {@link loadCheckedOpen} has loaded it. */
let fs: NodeFs | undefined;

/**
 * Makes {@link openChecked} ready: loads node:fs, once. Loading it costs a process (or worker)
 * some 20 ms of Node compatibility layer, which only what opens files to send should pay, not
 * every client start.
 */
export async function loadCheckedOpen(): Promise<void> {
  if (!WINDOWS) fs ??= await import("node:fs");
}

/** Which file a lookup found: its device and inode number. */
export interface FileId {
  /** The device (filesystem) it lives on. */
  dev: number;
  /** Its inode number on that device. */
  ino: number;
}

/** The {@link FileId} of what a lookup found, or undefined where the system gives none. */
export function fileIdOf(info: { dev: number | null; ino: number | null }): FileId | undefined {
  return info.dev === null || info.ino === null ? undefined : { dev: info.dev, ino: info.ino };
}

/**
 * The file at a path is not the regular file that was looked up there: something (a symlink, a
 * FIFO, another file) took its place between the lookup and the open, or it is no regular file
 * at all. A store's refusal of that one file (`io`), which a tree's sender passes on as it is.
 */
export class SwappedError extends StoreError {
  /** Creates the error. */
  constructor(message = SWAPPED) {
    super("io", message);
    this.name = "SwappedError";
  }
}

const SWAPPED = "It changed while being sent: replaced by another file, a symlink or a pipe";

/** What {@link CheckedFile.stat} gives. */
export interface CheckedInfo {
  /** Always true: {@link openChecked} opens nothing else. */
  isFile: boolean;
  /** Size in bytes, now. */
  size: number;
  /** Modification time, now. */
  mtime: Date | null;
  /** The mode bits (null on Windows). */
  mode: number | null;
}

/** A regular file opened by {@link openChecked}: read in place, sought, measured, closed. */
export interface CheckedFile extends Disposable {
  /** Reads into `p` from the current position; the number of bytes read, or null at the end. */
  read(p: Uint8Array): Promise<number | null>;
  /** {@link read} on the calling thread. */
  readSync(p: Uint8Array): number | null;
  /** Moves the position; resolves with it. */
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  /** The file's size and mtime as they are now. */
  stat(): Promise<CheckedInfo>;
  /** {@link stat} on the calling thread (an `fstat`, which never waits for a disk). */
  statSync(): CheckedInfo;
  /**
   * Flushes the file's data to disk; a handle opened for reading can (`fdatasync` asks nothing of
   * the access mode), so a file its owner may not write is flushed too.
   */
  syncData(): Promise<void>;
  /** Lets go of the file; safe to call more than once. */
  close(): void;
}

/**
 * A regular file opened by {@link openChecked} with `write`: written, flushed and given its times
 * through the open file too. Reads and writes share one position, as a file descriptor's do.
 */
export interface CheckedWriter extends CheckedFile {
  /** Writes from `p` at the current position; resolves with how many bytes it took. */
  write(p: Uint8Array): Promise<number>;
  /** {@link write} on the calling thread. */
  writeSync(p: Uint8Array): number;
  /** Sets its access and modification times. */
  utime(atime: Date, mtime: Date): Promise<void>;
  /** {@link utime} on the calling thread. */
  utimeSync(atime: Date, mtime: Date): void;
}

/** Options for {@link openChecked}. */
export interface OpenCheckedOptions {
  /** The file the lookup found: anything else at the path is refused with {@link SwappedError}. */
  expect?: FileId;
  /**
   * Follow a symlink at the path itself (default false: a link there is refused). For a path
   * the user named, which may be a link on purpose; `expect` then names what it led to.
   */
  follow?: boolean;
  /**
   * Open for writing too (read and write; a missing file is not created), to continue the file
   * after its bytes: a {@link CheckedWriter} (default false).
   */
  write?: boolean;
}

/**
 * Opens the regular file at `path` for reading (and writing, with `write`), refusing with
 * {@link SwappedError} anything else found there (a FIFO, a folder, a symlink unless `follow`)
 * and, with `expect`, any other file than the one looked up. Never waits for a FIFO's other end.
 * {@link loadCheckedOpen} first. Other failures (no such file, permission denied) are thrown as
 * Deno's errors are, by class.
 *
 * @example
 * ```ts
 * import { fileIdOf, loadCheckedOpen, openChecked } from "./checked_open.ts";
 *
 * await loadCheckedOpen();
 * const found = Deno.lstatSync("deno.json");
 * using file = openChecked("deno.json", { expect: fileIdOf(found) });
 * console.log(file.statSync().size);
 * ```
 */
export function openChecked(
  path: string,
  options: OpenCheckedOptions & { write: true },
): CheckedWriter;
export function openChecked(path: string, options?: OpenCheckedOptions): CheckedFile;
export function openChecked(path: string, options: OpenCheckedOptions = {}): CheckedWriter {
  if (WINDOWS) return openOnWindows(path, options);
  if (!fs) throw new Error("openChecked called before loadCheckedOpen");
  const { O_RDONLY, O_RDWR, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
  // Read and write, not write alone: a FIFO opened so never waits nor fails for want of a reader
  // (ENXIO), and is then refused by its fstat as any other non-file is.
  const access = options.write ? O_RDWR : O_RDONLY;
  let fd: number;
  try {
    fd = fs.openSync(path, access | O_NONBLOCK | (options.follow ? 0 : O_NOFOLLOW));
  } catch (error) {
    throw denoError(error, path);
  }
  try {
    const stats = fs.fstatSync(fd);
    check(stats.isFile(), { dev: stats.dev, ino: stats.ino }, options.expect);
    return new NodeFile(fs, fd, infoOf(stats));
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

function check(isFile: boolean, found: FileId | undefined, expect: FileId | undefined): void {
  if (!isFile || isOtherFile(found, expect)) throw new SwappedError();
}

/**
 * Whether the file an open found is another than the one a lookup found (device or inode differ);
 * false where either is unknown (a system that gives none).
 */
export function isOtherFile(found: FileId | undefined, expect: FileId | undefined): boolean {
  return found !== undefined && expect !== undefined &&
    (found.dev !== expect.dev || found.ino !== expect.ino);
}

/**
 * node:fs errors carry a code and no class, and words of their own: given Deno's class and
 * words (`Input/output error (os error 5)`), as every other file operation throws them. A link
 * at the name (`O_NOFOLLOW`) is a swap.
 */
function denoError(error: unknown, path?: string): unknown {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return error;
  // A folder opened to be written fails before its fstat could refuse it as it does any non-file.
  if ((code === "ELOOP" || code === "EISDIR") && path !== undefined) return new SwappedError();
  const known = OS_ERRORS[code];
  if (!known) return error;
  const [Class, text] = known;
  const errno = -((error as { errno?: number }).errno ?? 0);
  const message = `${text} (os error ${errno})${path === undefined ? "" : `: open '${path}'`}`;
  return Object.assign(new Class(message), { code });
}

const OS_ERRORS: Record<string, [new (message: string) => Error, string]> = {
  ENOENT: [Deno.errors.NotFound, "No such file or directory"],
  EACCES: [Deno.errors.PermissionDenied, "Permission denied"],
  EPERM: [Deno.errors.PermissionDenied, "Operation not permitted"],
  ENOTDIR: [Deno.errors.NotADirectory, "Not a directory"],
  EISDIR: [Deno.errors.IsADirectory, "Is a directory"],
  EIO: [Error, "Input/output error"],
};

function infoOf(stats: Stats): CheckedInfo {
  return { isFile: stats.isFile(), size: stats.size, mtime: stats.mtime, mode: stats.mode };
}

/**
 * A file opened through node:fs: read and written at a position of its own (pread, pwrite), never
 * by the fd's.
 */
class NodeFile implements CheckedWriter {
  #fs: NodeFs;
  #fd: number;
  #position = 0;
  #closed = false;
  /** What the open's own `fstat` found, given by the first {@link statSync}: one call, not two. */
  #opened?: CheckedInfo;

  constructor(fs: NodeFs, fd: number, opened: CheckedInfo) {
    this.#fs = fs;
    this.#fd = fd;
    this.#opened = opened;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#fs.read(this.#fd, p, 0, p.length, this.#position, (error, n) => {
        if (error) return reject(denoError(error));
        this.#position += n;
        resolve(n === 0 ? null : n);
      });
    });
  }

  readSync(p: Uint8Array): number | null {
    if (p.length === 0) return 0;
    let n: number;
    try {
      n = this.#fs.readSync(this.#fd, p, 0, p.length, this.#position);
    } catch (error) {
      throw denoError(error);
    }
    this.#position += n;
    return n === 0 ? null : n;
  }

  write(p: Uint8Array): Promise<number> {
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#fs.write(this.#fd, p, 0, p.length, this.#position, (error, n) => {
        if (error) return reject(denoError(error));
        this.#position += n;
        resolve(n);
      });
    });
  }

  writeSync(p: Uint8Array): number {
    let n: number;
    try {
      n = this.#fs.writeSync(this.#fd, p, 0, p.length, this.#position);
    } catch (error) {
      throw denoError(error);
    }
    this.#position += n;
    return n;
  }

  syncData(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#fs.fdatasync(this.#fd, (error) => error ? reject(denoError(error)) : resolve());
    });
  }

  utime(atime: Date, mtime: Date): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#fs.futimes(
        this.#fd,
        seconds(atime),
        seconds(mtime),
        (error) => error ? reject(denoError(error)) : resolve(),
      );
    });
  }

  utimeSync(atime: Date, mtime: Date): void {
    try {
      this.#fs.futimesSync(this.#fd, seconds(atime), seconds(mtime));
    } catch (error) {
      throw denoError(error);
    }
  }

  seek(offset: number, whence: Deno.SeekMode): Promise<number> {
    const base = whence === Deno.SeekMode.Start
      ? 0
      : whence === Deno.SeekMode.Current
      ? this.#position
      : this.statSync().size;
    this.#position = base + offset;
    return Promise.resolve(this.#position);
  }

  stat(): Promise<CheckedInfo> {
    try {
      return Promise.resolve(this.statSync());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  statSync(): CheckedInfo {
    const opened = this.#opened;
    if (opened) {
      this.#opened = undefined;
      return opened;
    }
    return infoOf(this.#fs.fstatSync(this.#fd));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#fs.closeSync(this.#fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A time as node:fs takes it, in seconds. node:fs cuts the seconds it is given (a Date too) down
 * to whole milliseconds, and ms / 1000 is often a hair below its millisecond: half of all times
 * were stored 1 ms early, and a tree's resumed file then differed from its sender's. A
 * microsecond over is stored as the millisecond itself.
 */
function seconds(date: Date): number {
  return date.getTime() / 1000 + 1e-6;
}

/** Windows: Deno's open, then the same checks through the open file. */
function openOnWindows(path: string, options: OpenCheckedOptions): CheckedWriter {
  if (!options.follow) {
    // No O_NOFOLLOW: a link at the name is refused by its lookup, then by the identity.
    if (Deno.lstatSync(path).isSymlink) throw new SwappedError();
  }
  const file = Deno.openSync(path, { read: true, write: options.write ?? false });
  let closed = false;
  try {
    const info = file.statSync();
    check(info.isFile, fileIdOf(info), options.expect);
  } catch (error) {
    file.close();
    throw error;
  }
  const close = () => {
    if (closed) return;
    closed = true;
    file.close();
  };
  return {
    read: (p) => file.read(p),
    readSync: (p) => file.readSync(p),
    seek: (offset, whence) => file.seek(offset, whence),
    stat: () => file.stat(),
    statSync: () => file.statSync(),
    write: (p) => file.write(p),
    writeSync: (p) => file.writeSync(p),
    syncData: () => file.syncData(),
    utime: (atime, mtime) => file.utime(atime, mtime),
    utimeSync: (atime, mtime) => file.utimeSync(atime, mtime),
    close,
    [Symbol.dispose]: close,
  };
}
