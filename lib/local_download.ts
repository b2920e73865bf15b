/**
 * Where a download goes: the local side of a `get`. Resolves LOCAL (a file, a folder to download
 * into, a character device or FIFO, stdout, or a device path Deno will not open, through its
 * stand-in from lib/devices.ts), checks it before the server is asked for anything, finds the
 * `.part` an interrupted download left for `--resume`, and then opens what the bytes go to and
 * commits or keeps it. A file is a staged file (lib/staged_file.ts): `LOCAL.part` until it is
 * verified, then LOCAL. The CLI calls {@link prepareDownload}, then {@link LocalDownload.open}.
 *
 * @module
 */

import {
  type CheckedFile,
  type FileId,
  fileIdOf,
  loadCheckedOpen,
  openChecked,
  SwappedError,
} from "./checked_open.ts";
import { basename, dirname, join, sep } from "node:path";
import type { DownloadTarget } from "./client_session.ts";
import { type DownloadStandIn, downloadStandInOf } from "./devices.ts";
import { isInterruption, LocalFileError, UsageError } from "./errors.ts";
import { formatHex, utf8Length } from "./format.ts";
import { cannotRead, cannotWrite, cannotWriteStdout } from "./local_files.ts";
import { SMALL_FILE_MAX, StagedFile } from "./staged_file.ts";
import { checksumFilePrefix, type ResumePoint } from "./transfer.ts";
import { writeAll } from "./write_all.ts";
import { localNameRules, unfitName } from "./windows_names.ts";

/** Longest name of one folder entry on common file systems (ext4, XFS, Btrfs, APFS), in bytes. */
export const NAME_MAX = 255;

/** What a download is called while it is incomplete, added to LOCAL's name. */
export const PART_SUFFIX = ".part";

const encoder = new TextEncoder();

/**
 * The name a download of the remote `/`-separated `name` gets when no LOCAL is given: its base
 * name, in the current folder.
 *
 * @example
 * ```ts
 * downloadName("photos/2024/beach.jpg"); // "beach.jpg"
 * ```
 */
export function downloadName(name: string): string {
  return name.split("/").filter((s) => s !== "").at(-1) ?? name;
}

/** Whether a download into `local` writes to this process's stdout (`-`, `/dev/stdout`...). */
export function downloadsToStdout(local: string): boolean {
  return local === "-" || downloadStandInOf(local) === "stdout";
}

/** Options for {@link prepareDownload}. */
export interface LocalDownloadOptions {
  /**
   * Whether the user gave LOCAL. Only then does an existing folder mean "into this folder": a
   * name the get picked itself that happens to be a folder is in the way (default true).
   */
  localGiven?: boolean;
  /** Replace an existing LOCAL (default false). */
  force?: boolean;
  /** Continue the `.part` an interrupted download left (default false). */
  resume?: boolean;
  /** Flush the file, then its folder entry, to disk before it is named LOCAL (default true). */
  fsync?: boolean;
  /**
   * The system whose name rules a local name the get makes up from the remote one keeps (default
   * `localNameRules()`, lib/windows_names.ts: this one's): on Windows one it cannot hold
   * (`aux.txt`, `a:b`, `x.`), which the server or the remote file's owner chose, is refused. A
   * LOCAL the user gave is taken as given (it may name a device on purpose).
   */
  os?: typeof Deno.build.os;
  /**
   * Test-only: called just before the `.part` is opened (after the lookups of a resumed one),
   * with its path, to swap something in there (tests/swap_race_test.ts). Never set outside tests.
   */
  beforeOpen?: (part: string) => void;
}

/** The `.part` of an interrupted download: its bytes and checksum, and which file it was. */
export interface PartialDownload extends ResumePoint {
  /** The file whose bytes were hashed: only it is continued (none where the system gives none). */
  id?: FileId;
}

/** A download's local side, checked and ready to open once the server accepts. */
export interface LocalDownload {
  /** Where the bytes go, for messages: the file, the path the user gave, or `stdout`. */
  readonly where: string;
  /** The `.part` file the download is written to until verified; none for stdout or a device. */
  readonly part?: string;
  /** With `resume`: the bytes already in the `.part`, and their checksum, if there are any. */
  readonly resume?: PartialDownload;
  /** Whether a failed download's `.part` was kept for `get --resume`, rather than removed. */
  readonly kept: boolean;
  /**
   * Opens the target once the server has said where its data starts: after the bytes of
   * {@link resume} (`offset` > 0), or from the start. `size`, the file's size where known, lets a
   * small one be written and named without leaving the thread (StagedFileOptions.sync).
   */
  open(offset: number, size?: number): Promise<DownloadTarget>;
}

/**
 * Resolves and checks the local side of a download of the remote `name` into `local` (`-` for
 * stdout) before the server is asked, so a doomed transfer never touches the network: the
 * folder exists, the name fits (one the get made up fits this system's rules, too), LOCAL is not
 * in the way unless forced, the `.part` can be made, and `--resume` has a regular file to continue.
 *
 * @example
 * ```ts
 * const local = await prepareDownload("photos/beach.jpg", ".", { resume: true });
 * // session.get("photos/beach.jpg", (info) => local.open(info.offset), { resume: local.resume })
 * ```
 */
export async function prepareDownload(
  name: string,
  local: string,
  options: LocalDownloadOptions = {},
): Promise<LocalDownload> {
  // Before anything looks at it: on Windows, a made-up `CON` would be the console.
  if (options.localGiven === false) checkMadeUpName(name, local, local, options);
  // stdout for "-"; a device Deno would not open has a stand-in (lib/devices.ts).
  const standIn = local === "-" ? "stdout" : downloadStandInOf(local);
  if (standIn) return notResumable(options, local, standInDownload(standIn, local));
  const checked = await checkTarget(name, local, options);
  if ("stream" in checked) return notResumable(options, local, streamDownload(local));
  const resume = options.resume ? await partialDownload(checked.part) : undefined;
  return fileDownload(checked, resume, options);
}

/** A download into something that is not a regular file: refused with `--resume`. */
function notResumable(
  options: LocalDownloadOptions,
  local: string,
  download: LocalDownload,
): LocalDownload {
  if (options.resume) {
    throw new UsageError(`--resume needs a regular file, and ${local} is not one`);
  }
  return download;
}

// The checks before a download look on the client's own thread: it waits for nothing else
// meanwhile, and mget makes them for every file, where a thread hand-off each cost more than
// the lookup (docs/performance.md).

/** What is at `path` itself (a symlink is not followed), or null when nothing is. */
function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Whether anything (even a dangling symlink) is at `path`. */
function exists(path: string): boolean {
  return lstatOrNull(path) !== null;
}

/** `path`'s details, or null when there is nothing there (or a file where a folder should be). */
function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return null;
    }
    throw cannotWrite(path, error);
  }
}

/**
 * Refuses `leaf`, the local name a get of the remote `name` made up (at `path`), where the system
 * whose rules it keeps ({@link LocalDownloadOptions.os}) cannot hold it: a hostile server, or
 * whoever named the remote file, chose it.
 */
function checkMadeUpName(
  name: string,
  leaf: string,
  path: string,
  options: LocalDownloadOptions,
): void {
  const why = unfitName(leaf, options.os ?? localNameRules());
  if (!why) return;
  throw new LocalFileError(
    path,
    `Cannot write ${path}: ${why} (get ${name} LOCAL saves it under a name of your own)`,
  );
}

/** Where a download into a file goes: LOCAL, and the `.part` it is written to until verified. */
interface FileTarget {
  local: string;
  part: string;
}

/**
 * A LOCAL that is a character device or a FIFO (`/dev/null`, a named pipe): written into in
 * place, as stdout is. A `.part` renamed over it would replace the device with a file.
 */
interface StreamTarget {
  stream: true;
}

/**
 * Resolves LOCAL (into it, if the user gave a folder) and checks everything that can be checked
 * before the server is asked: the folder exists, the name fits, LOCAL is not in the way, and the
 * `.part` is not a folder. Otherwise the server would send the file only for it to be dropped.
 */
async function checkTarget(
  name: string,
  given: string,
  options: LocalDownloadOptions,
): Promise<FileTarget | StreamTarget> {
  let local = given;
  const info = statOrNull(local);
  if (info?.isCharDevice || info?.isFifo) return { stream: true };
  if (info?.isBlockDevice || info?.isSocket) {
    throw new LocalFileError(
      local,
      `Cannot write ${local}: it is a ${info.isSocket ? "socket" : "block device"}`,
    );
  }
  if (info?.isDirectory && options.localGiven === false) {
    // Only a LOCAL the user gave means "into this folder"; a name the get picked itself that
    // happens to be a folder is in the way, and writing into it would surprise.
    throw new LocalFileError(
      local,
      `Cannot write ${local}: it is a folder (to download into it: get ${name} ${local}/)`,
    );
  }
  if (info?.isDirectory) {
    local = join(local, downloadName(name));
    checkMadeUpName(name, downloadName(name), local, options);
  } else if (local.endsWith("/") || local.endsWith(sep)) {
    const what = exists(local.replace(/[\\/]+$/, "")) ? "not a folder" : "no such folder";
    throw new LocalFileError(local, `Cannot write into ${local}: ${what}`);
  }
  const folder = dirname(local);
  const parent = statOrNull(folder);
  if (!parent) throw new LocalFileError(local, `Cannot write ${local}: no such folder ${folder}`);
  if (!parent.isDirectory) {
    throw new LocalFileError(local, `Cannot write ${local}: ${folder} is not a folder`);
  }
  if (utf8Length(basename(local)) > NAME_MAX) {
    throw new LocalFileError(local, `Cannot write ${local}: file name too long`);
  }
  if (!options.force && exists(local)) {
    throw new LocalFileError(local, `Local file exists: ${local} (use --force to replace it)`);
  }
  const part = await partPathFor(local);
  if (statOrNull(part)?.isDirectory) {
    throw new LocalFileError(part, `Cannot write ${part}: it is a folder`);
  }
  checkWritable(folder, part);
  return { local, part };
}

/**
 * Checks that files can be made in `folder` by making and removing an empty one, so a folder
 * the user may not write in (permissions, a read-only mount) is reported before a download
 * starts rather than after the server has begun to send. Failures name `target`, the file that
 * could not be written.
 */
export function checkWritable(folder: string, target: string): void {
  // Once per folder and process: mget of many files into one folder need not probe it for each.
  if (writableFolders.has(folder)) return;
  let probe: string;
  try {
    probe = Deno.makeTempFileSync({ dir: folder, prefix: ".ferry-probe-" });
  } catch (error) {
    throw cannotWrite(target, error);
  }
  try {
    Deno.removeSync(probe);
  } catch {
    // Made but not removable: the download itself will say what is wrong, if anything.
  }
  writableFolders.add(folder);
}

/** Folders {@link checkWritable} found writable in this process. */
const writableFolders = new Set<string>();

/**
 * The name a download into `local` is written under until it is verified: `LOCAL.part`, or, when
 * that would be longer than {@link NAME_MAX} bytes (the server takes names up to that long), a
 * shortened base name, `~`, and 12 hex digits of a SHA-256 of the whole base name, then `.part`.
 * The same LOCAL always gives the same name, so `get --resume` finds its `.part` again.
 */
export async function partPathFor(local: string): Promise<string> {
  const base = basename(local);
  if (utf8Length(base + PART_SUFFIX) <= NAME_MAX) return local + PART_SUFFIX;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(base)));
  const tag = `~${formatHex(digest.subarray(0, 6))}${PART_SUFFIX}`;
  let room = NAME_MAX - utf8Length(tag);
  let short = "";
  // Whole characters only, so the shortened name is still valid UTF-8.
  for (const char of base) {
    room -= utf8Length(char);
    if (room < 0) break;
    short += char;
  }
  const folder = local.slice(0, local.length - base.length);
  return local.endsWith(base) ? folder + short + tag : join(local, "..", short + tag);
}

/**
 * The bytes of an earlier, interrupted download and their checksum, if there are any: only a
 * regular file at `part` counts (nothing to resume otherwise), the one `looked` found there
 * when given (an lstat of `part`; by default it is looked up here).
 */
export async function partialDownload(
  part: string,
  onProgress?: (bytes: number) => void,
  looked?: Deno.FileInfo,
): Promise<PartialDownload | undefined> {
  // Only a regular file is a part to continue, and only the one looked up is read: a symlink
  // there (or one swapped in) would have its target's first bytes hashed for the server.
  let found: Deno.FileInfo;
  try {
    found = looked ?? await Deno.lstat(part);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw cannotRead(part, error);
  }
  if (!found.isFile || found.size === 0) return undefined;
  await loadCheckedOpen();
  const id = fileIdOf(found);
  let file: CheckedFile;
  try {
    file = openChecked(part, { expect: id });
  } catch (error) {
    if (error instanceof SwappedError || error instanceof Deno.errors.NotFound) return undefined;
    throw cannotRead(part, error);
  }
  try {
    const size = (await file.stat()).size;
    if (size === 0) return undefined;
    const checksum = await checksumFilePrefix(file, size, { onProgress });
    return checksum ? { size, checksum, id } : undefined;
  } catch (error) {
    throw cannotRead(part, error);
  } finally {
    file.close();
  }
}

/**
 * A download into a file: written to the `.part`, renamed to LOCAL only once verified. If the
 * connection is cut, the `.part` stays for `get --resume`; if the data is bad, or LOCAL's disk
 * failed, it goes.
 */
function fileDownload(
  target: FileTarget,
  resume: PartialDownload | undefined,
  options: LocalDownloadOptions,
): LocalDownload {
  const { local, part } = target;
  let kept = false;
  return {
    where: local,
    part,
    resume,
    get kept() {
      return kept;
    },
    open: async (offset, size) => {
      // The `.part`'s name is known in advance, and its folder may be writable by others: a
      // symlink there must never be written through. A new download removes whatever has the
      // name (a link goes itself) and creates the file new, which never follows a link (one put
      // there meanwhile fails the download); a resumed one continues only the regular file that
      // the lookup that hashed it found there (resume.id), opened through the checked open,
      // which refuses a link or a FIFO swapped in since (lib/staged_file.ts).
      let expect: FileId | undefined;
      if (offset > 0) {
        const found = lstatOrNull(part);
        if (!found?.isFile) {
          throw new LocalFileError(part, `Cannot write ${part}: it is not a regular file`);
        }
        expect = resume?.id ?? fileIdOf(found);
      } else {
        try {
          Deno.removeSync(part);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw cannotWrite(part, error);
        }
      }
      options.beforeOpen?.(part);
      const staged = await StagedFile.open(part, {
        mode: offset > 0 ? "append" : "create",
        expect,
        fsync: options.fsync ?? true,
        // The client has nothing else to do meanwhile: its regular files are written on this
        // thread (docs/performance.md), and a small new one opened and named there too.
        writeSync: true,
        sync: offset === 0 && size !== undefined && size <= SMALL_FILE_MAX,
        failure: (error, path) => cannotWrite(path, error),
      });
      return {
        write: (chunk) => staged.write(chunk),
        commit: async () => {
          if (!await staged.commit(local, { replace: options.force })) {
            throw new LocalFileError(
              local,
              `Local file exists: ${local} (it appeared during the download)`,
            );
          }
        },
        discard: async (cause) => {
          if (staged.size > 0 && isInterruption(cause)) {
            await staged.keep();
            kept = true;
            return;
          }
          await staged.discard();
        },
      };
    },
  };
}

/** A download written into a character device or FIFO in place; see {@link StreamTarget}. */
function streamDownload(local: string): LocalDownload {
  return {
    where: local,
    kept: false,
    open: async () => {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(local, { write: true });
      } catch (error) {
        throw cannotWrite(local, error);
      }
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        file.close();
      };
      return {
        write: async (chunk) => {
          try {
            await writeAll(file, chunk);
          } catch (error) {
            throw cannotWrite(local, error);
          }
        },
        commit: () => Promise.resolve(close()),
        // Bytes already written to a device or pipe cannot be taken back; the exit code says
        // they are bad, as for stdout.
        discard: () => Promise.resolve(close()),
      };
    },
  };
}

/**
 * A download into a stand-in (see `downloadStandInOf`); `local` is what the user gave, for
 * messages. Bytes written cannot be taken back, so a download that fails verification leaves
 * them there, and the exit status says they are bad.
 */
function standInDownload(standIn: DownloadStandIn, local: string): LocalDownload {
  return {
    where: local === "-" ? "stdout" : local,
    kept: false,
    open: () => Promise.resolve(standInTarget(standIn, local)),
  };
}

function standInTarget(standIn: DownloadStandIn, local: string): DownloadTarget {
  if (standIn === "full") {
    return {
      // As the kernel's /dev/full: opening and writing nothing succeed, any byte fails.
      write: (chunk) =>
        chunk.length === 0
          ? Promise.resolve()
          : Promise.reject(cannotWrite(local, { code: "ENOSPC" })),
      commit: () => Promise.resolve(),
      discard: () => Promise.resolve(),
    };
  }
  const stream = standIn === "stdout" ? Deno.stdout : Deno.stderr;
  const failed = (error: unknown) =>
    standIn === "stdout" && local === "-" ? cannotWriteStdout(error) : cannotWrite(local, error);
  const writer = stream.writable.getWriter();
  return {
    write: (chunk) =>
      writer.write(chunk).catch((error) => {
        throw failed(error);
      }),
    commit: async () => {
      await writer.ready.catch((error) => {
        throw failed(error);
      });
      writer.releaseLock();
    },
    discard: () => Promise.resolve(writer.releaseLock()),
  };
}
