/**
 * The client's local files: opening what to upload (a file, a device, a pipe or stdin) as a
 * stream, and turning the operating system's errors into one-line messages that say which local
 * thing failed (`Cannot read PATH: reason`). Where a download goes is lib/local_download.ts.
 *
 * @module
 */

import { resolve } from "node:path";
import { DEVICE_FILES_RULE } from "./devices.ts";
import { LocalFileError, StdoutClosed, UserError } from "./errors.ts";
import type { DirectReader } from "./frame_reader.ts";
import {
  type CheckedFile,
  fileIdOf,
  loadCheckedOpen,
  openChecked,
  SwappedError,
} from "./checked_open.ts";

/** Wordings for the failures users meet, by errno name; anything else keeps the OS's words. */
const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a folder",
  ENOTDIR: "not a folder",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  ENAMETOOLONG: "file name too long",
  EPIPE: "it was closed (broken pipe)",
};

/**
 * The operating system's reason for a failed file operation, as words that can follow a colon:
 * without Deno's `(os error N): op 'path'` tail (the message names the path itself), and in
 * lower case. `missing` is what ENOENT means at the call site (no such file, or no such folder).
 */
export function osReason(error: unknown, missing = "no such file"): string {
  const code = (error as { code?: unknown })?.code;
  if (code === "ENOENT" || error instanceof Deno.errors.NotFound) return missing;
  if (typeof code === "string" && code in REASONS) return REASONS[code];
  const text = (error instanceof Error ? error.message : String(error)).split("\n")[0];
  const bare = text.replace(/\s*\(os error \d+\).*$/, "").replace(/: \w+ '.*'$/, "");
  return bare.charAt(0).toLowerCase() + bare.slice(1);
}

/**
 * Why Deno's permissions refused to let the client `op` at `path`, and what to do instead, as
 * words that can follow a colon. When the flags allow the path, the refusal is Deno's rule for
 * device and kernel files (see lib/devices.ts), which no flag short of --allow-all lifts, so
 * the way round is the shell's redirection.
 */
function sandboxReason(path: string, op: "read" | "write"): string {
  if (Deno.permissions.querySync({ name: op, path }).state !== "granted") {
    return "not allowed by Deno's permissions: run ferry with --allow-read and --allow-write, " +
      "as deno task client does";
  }
  if (op === "write" && resolve(path) === "/dev/tty") {
    return "Deno lets a program write to the terminal only through its own stderr or stdout, " +
      "and neither is a terminal here";
  }
  const redirect = op === "read" ? `put - NAME < ${path}` : `get NAME - > ${path}`;
  return `${DEVICE_FILES_RULE}; use "-" and a shell redirection instead ` +
    `(ferry HOST PORT ${redirect})`;
}

/** `Cannot read PATH: reason`, for a local file that could not be opened or read. */
export function cannotRead(path: string, error: unknown): UserError {
  if (error instanceof UserError) return error;
  if (error instanceof SwappedError) {
    return new LocalFileError(path, `Cannot read ${path}: ${error.message.toLowerCase()}`);
  }
  if (error instanceof Deno.errors.NotCapable) {
    return new LocalFileError(path, `Cannot read ${path}: ${sandboxReason(path, "read")}`);
  }
  return new LocalFileError(path, `Cannot read ${path}: ${osReason(error)}`);
}

/** `Cannot write PATH: reason`, for a local file that could not be created or written. */
export function cannotWrite(path: string, error: unknown): UserError {
  if (error instanceof UserError) return error;
  if (error instanceof Deno.errors.NotCapable) {
    return new LocalFileError(path, `Cannot write ${path}: ${sandboxReason(path, "write")}`);
  }
  return new LocalFileError(path, `Cannot write ${path}: ${osReason(error, "no such folder")}`);
}

/** `Cannot write to stdout: reason`: a closed pipe or a full disk is not the network's fault. */
export function cannotWriteStdout(error: unknown): UserError {
  if (error instanceof UserError) return error;
  const message = `Cannot write to stdout: ${osReason(error)}`;
  return error instanceof Deno.errors.BrokenPipe
    ? new StdoutClosed(message)
    : new UserError(message);
}

/** Something an upload can be read from in place: a file, a device, a pipe, stdin. */
export interface Readable extends DirectReader {
  /** Moves the read position; files have it, pipes do not. */
  seek?(offset: number, whence: Deno.SeekMode): Promise<number>;
  /**
   * Reads without leaving the calling thread. Used only when the source has a size (a regular
   * file): a pipe or device could block the client for any time.
   */
  readSync?(p: Uint8Array): number | null;
}

/** Options for {@link uploadSourceOf}. */
export interface UploadSourceOptions {
  /** What the source is called in `Cannot read ...` messages: its path, or `stdin`. */
  name: string;
  /**
   * The size announced for a regular file: the source ends at that offset, and a file that
   * ends sooner is an error. A server refuses an upload longer than it announced.
   */
  size?: number | null;
  /** Called when the file turns out longer than `size`: it grew after it was measured. */
  onGrew?: () => void;
}

/**
 * What an upload reads from `source`: read in place, ending at the announced size, with read
 * errors that say which local source failed (`Cannot read NAME: reason`), so a failure
 * mid-upload is not mistaken for the network's. The caller closes the source.
 */
export function uploadSourceOf(source: Readable, options: UploadSourceOptions): DirectReader {
  const size = options.size ?? null;
  /** Bytes left before `size`, once the starting position is known (a resume starts past 0). */
  let left: number | undefined;
  // A regular file is read on this thread: Deno hands an asynchronous read to another thread,
  // and waking it for every buffer cost more than the read (see writeAllSync in lib/write_all.ts).
  const readSync = source.readSync?.bind(source);
  const readFile = async (p: Uint8Array) => readSync ? readSync(p) : await source.read(p);
  const read = async (p: Uint8Array): Promise<number | null> => {
    if (size !== null && left === undefined) {
      left = size - (await source.seek?.(0, Deno.SeekMode.Current) ?? 0);
    }
    if (left === undefined) return await source.read(p);
    if (left <= 0) {
      // Exactly what was announced has been read: a byte more means the file grew.
      if (await readFile(new Uint8Array(1)) !== null) options.onGrew?.();
      return null;
    }
    const n = await readFile(p.subarray(0, Math.min(p.length, left)));
    if (n === null) {
      throw new LocalFileError(
        options.name,
        `Cannot read ${options.name}: it shrank while being uploaded`,
      );
    }
    left -= n;
    return n;
  };
  return {
    read: (p) =>
      read(p).catch((error) => {
        throw cannotRead(options.name, error);
      }),
  };
}

/** A local source opened for upload: read in place, and closed by whoever opened it. */
export interface UploadFile extends Readable {
  /** Moves the read position (a regular file's; a pipe refuses). */
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  /** Lets go of it. */
  close(): void;
}

/** A local source opened for upload. */
export interface LocalUpload {
  /** The open file (or device, or pipe). */
  file: UploadFile;
  /** Its size when it is a regular file; null when it can only be streamed. */
  size: number | null;
}

/** Options for {@link openUpload}. */
export interface OpenUploadOptions {
  /**
   * Test-only: called between a regular file's lookup and its open, to swap something in for
   * it there (tests/swap_race_test.ts). Never set outside tests.
   */
  beforeOpen?: (path: string) => void;
}

/**
 * Opens `path` for upload: a regular file with its size, or anything else that can be read (a
 * pipe such as `<(cmd)`, a character device) to be streamed like stdin. A folder is refused.
 */
export async function openUpload(
  path: string,
  options: OpenUploadOptions = {},
): Promise<LocalUpload> {
  // A regular file is opened and measured on this thread (mput checks every file so): the
  // client waits for nothing else, and opens the file it found or none (a FIFO swapped in since
  // would block the open; a symlink would lead elsewhere: lib/checked_open.ts). Anything else is
  // opened asynchronously, as a FIFO's open waits for a writer.
  let found: Deno.FileInfo | undefined;
  try {
    const info = Deno.statSync(path);
    if (info.isFile && !/[\\/]$/.test(path)) found = info;
  } catch {
    // Said below, by the open, as it always was.
  }
  if (found) {
    await loadCheckedOpen();
    options.beforeOpen?.(path);
    let file: CheckedFile;
    try {
      file = openChecked(path, { follow: true, expect: fileIdOf(found) });
    } catch (error) {
      throw cannotRead(path, error);
    }
    try {
      return { file, size: file.statSync().size };
    } catch (error) {
      file.close();
      throw cannotRead(path, error);
    }
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw cannotRead(path, error);
  }
  try {
    const info = await file.stat();
    if (info.isDirectory) throw new LocalFileError(path, `Cannot upload ${path}: it is a folder`);
    // The OS refuses "file/" (ENOTDIR), but Deno drops the slash when it checks permissions.
    if (/[\\/]$/.test(path)) throw new LocalFileError(path, `Cannot read ${path}: not a folder`);
    return { file, size: info.isFile ? info.size : null };
  } catch (error) {
    file.close();
    throw cannotRead(path, error);
  }
}
