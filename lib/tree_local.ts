/**
 * The client's local end of tree transfers: a local folder as the source of `put -r` and as the
 * sink of `get -r`. A sink trusts nothing the server sends: every path is checked with the same
 * rules as the server's ({@link checkName}), every folder on the way is checked with `lstat` and
 * must be a real folder (never a symlink, so nothing is ever written through one), and each file
 * is written to a hidden `.ferry-*.part` file beside its target and renamed into place only once
 * it is verified.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { StoreError, UserError } from "./errors.ts";
import { checkName, isValidName, quote } from "./remote_name.ts";
import { CreationModes, SMALL_FILE_MAX, StagedFile } from "./staged_file.ts";
import { cannotRead, cannotWrite } from "./local_files.ts";
import { checksumFilePrefix } from "./transfer.ts";
import { formatHex } from "./format.ts";
import { KEEP_MIN_BYTES } from "./kept_uploads.ts";
import { partialDownload } from "./local_download.ts";
import {
  folderIsFinished,
  type TreeFileSink,
  type TreeSink,
  type TreeSource,
} from "./tree_transfer.ts";
import type { ManifestEntry, ManifestTop } from "./tree_transfer_protocol.ts";
import { foldsCase } from "./case_folding.ts";
import { unfitName } from "./windows_names.ts";
import { entryOf, MODE_BITS, TreeWalker, type WalkEntry } from "./tree_walk.ts";
import { childOf } from "./disk_jobs.ts";
import { slowRemoval, slowRemovalSync } from "./slow_disk.ts";
import {
  type CheckedFile,
  type FileId,
  fileIdOf,
  loadCheckedOpen,
  openChecked,
  SwappedError,
} from "./checked_open.ts";

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Gone already, or not ours to remove after all: it is skipped either way.
  }
}

/** Options for {@link localSource}. */
export interface LocalSourceOptions {
  /**
   * Test-only: called between the walk's lookup of a file and its open, with its path, to swap
   * something in for it there (tests/swap_race_test.ts). Never set outside tests.
   */
  beforeOpen?: (path: string) => void;
}

/** The local folder `base` as a tree source; refused unless it is a folder. */
export async function localSource(
  base: string,
  options: LocalSourceOptions = {},
): Promise<TreeSource> {
  const { beforeOpen } = options;
  await loadCheckedOpen();
  let real: string;
  let info: Deno.FileInfo;
  try {
    real = await Deno.realPath(base);
    info = await Deno.stat(real);
    if (!info.isDirectory) throw new UserError(`${base} is not a folder`);
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw cannotRead(base, error);
  }
  return {
    top: { mtime: info.mtime?.getTime() ?? 0, mode: (info.mode ?? 0o755) & MODE_BITS },
    // What an interrupted get -r left is not part of the tree.
    walker: await TreeWalker.open(real, { skip: isTreePart, undecodable: true, sync: true }),
    // Opened on this thread (it never waits: lib/checked_open.ts), the file the walk found or
    // none: the sender reads a small file's few bytes the same way.
    open: (path, _index, id) => {
      const full = join(real, path);
      beforeOpen?.(full);
      return Promise.resolve(openChecked(full, { expect: id }));
    },
    sync: true,
    readLink: (path) => Deno.readLink(join(real, path)),
    allowed: isValidName,
  };
}

/** Options for {@link localSink}. */
export interface LocalSinkOptions {
  /** Flush each file, then its folder entry, to disk before reporting it (default true). */
  fsync?: boolean;
  /**
   * Test-only: called just before a staging file is opened, with its path, to swap something in
   * there (tests/swap_race_test.ts). Never set outside tests.
   */
  beforeOpen?: (part: string) => void;
  /**
   * `--resume`: keep the parts an interrupted run left of big files, and offer them to the
   * server (default false: they are removed as the tree is walked, and those files start over).
   */
  resume?: boolean;
  /**
   * The system whose name rules the folder keeps (default: this one's, `Deno.build.os`): on
   * Windows, a name it cannot hold is refused, entry by entry (lib/windows_names.ts).
   */
  os?: typeof Deno.build.os;
}

/** Prefix of the hidden files a download is written to before it is renamed into place. */
export const TREE_PART_PREFIX = ".ferry-";

/**
 * A download's hidden staging file, as {@link localSink} names them: a random name for a small
 * file, and for a big one a name made from the file's own ({@link keptPartName}), which a
 * `--resume` finds again.
 */
const PART_NAME = /(^|\/)\.ferry-([0-9a-f-]{36}|[0-9a-f]{32})\.part$/;

/** Whether `path` is a staging file an interrupted `get -r` left behind. */
export function isTreePart(path: string): boolean {
  return PART_NAME.test(path);
}

/** {@link PART_NAME} under any case: what a filesystem that folds case takes for a staging name. */
const PART_NAME_ANY_CASE = new RegExp(PART_NAME.source, "i");

/** Most parts a `--resume` holds on to as it walks: more than any interrupted run leaves. */
const MAX_KEPT_PARTS = 1024;

/** Whether a staging file's name is a {@link keptPartName}, not a random one. */
function isKept(path: string): boolean {
  return /\.ferry-[0-9a-f]{32}\.part$/.test(path);
}

/** The staging name of the big file `leaf`, the same on every run: 32 hex of its SHA-256. */
async function keptPartName(leaf: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(leaf));
  return `${TREE_PART_PREFIX}${formatHex(new Uint8Array(digest).subarray(0, 16))}.part`;
}

/** The local folder `base` (created if missing) as the sink of a tree download. */
export function localSink(base: string, options: LocalSinkOptions = {}): TreeSink {
  const fsync = options.fsync ?? true;
  const resume = options.resume ?? false;
  /** With --resume: the parts found as the tree was walked, until one is resumed or the end. */
  const keptParts = new Set<string>();
  let root: string | undefined;
  /** The folder most recently checked, which the next file most likely shares. */
  let checked: { key: string; path: string } | undefined;

  const top = async () => {
    root ??= await Deno.realPath(base).catch((error) => {
      throw cannotWrite(base, error);
    });
    return root;
  };
  /**
   * The folder `segments` names under the base, each step checked with lstat: a symlink or a
   * file on the way is refused; a missing folder is created when `create` is set, or null.
   */
  const folder = async (segments: string[], create: boolean): Promise<string | null> => {
    const key = segments.join("/");
    if (checked?.key === key) return checked.path;
    let current = await top();
    for (const [i, segment] of segments.entries()) {
      current = join(current, segment);
      const shown = segments.slice(0, i + 1).join("/");
      let info: Deno.FileInfo;
      // On this thread, as every step on a folder here: microseconds of metadata work, less
      // than an asynchronous call's hand-off to another thread.
      try {
        info = Deno.lstatSync(current);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw cannotWrite(current, error);
        if (!create) return null;
        try {
          Deno.mkdirSync(current);
        } catch (error) {
          throw cannotWrite(current, error);
        }
        continue;
      }
      if (info.isSymlink) {
        throw new StoreError("bad_name", `Refused to write through the symlink ${shown}`);
      }
      if (!info.isDirectory) throw new StoreError("not_a_file", `${shown} is not a folder`);
    }
    checked = { key, path: current };
    return current;
  };
  const split = (path: string) => {
    const segments = path.split("/");
    return { parents: segments.slice(0, -1), leaf: segments.at(-1)! };
  };
  /**
   * Removes the parts found for --resume and not used, in the folder `dir` (all when absent):
   * its files are all done, so nothing will resume them. Called before the folder gets its
   * mtime, which removing a name would change.
   */
  const dropUnused = (dir?: string): boolean => {
    let dropped = false;
    for (const part of keptParts) {
      if (dir !== undefined && dirname(part) !== dir) continue;
      removeQuietly(part);
      keptParts.delete(part);
      dropped = true;
    }
    return dropped;
  };
  /** Gives the folder `dir`, whose files are all done, the mode and mtime of `entry`. */
  const finishFolder = (dir: string, entry: ManifestEntry | ManifestTop, found?: WalkEntry) => {
    // A part removed changed the folder's mtime: it is given the sender's again.
    if (!dropUnused(dir) && folderIsFinished(entry, found)) return;
    // Owner rwx stays, so the tree can be updated and removed again.
    if (Deno.build.os !== "windows") Deno.chmodSync(dir, entry.mode | 0o700);
    Deno.utimeSync(dir, new Date(), new Date(entry.mtime));
  };
  /** Whether files created in a folder keep the whole mode they are given. */
  const modes = new CreationModes();
  /**
   * A file staged at `part` in `dir` (new, emptied, or continued after its kept bytes), then
   * named `target`.
   */
  const stagedSink = async (
    dir: string,
    part: string,
    target: string,
    path: string,
    entry: ManifestEntry,
    how: "create" | "append",
    kept?: { expect?: FileId },
  ): Promise<TreeFileSink> => {
    const mode = Deno.build.os === "windows" ? undefined : entry.mode & 0o777;
    options.beforeOpen?.(part);
    // A small file is written and named without leaving this thread, as the server's are.
    const sync = how !== "append" && entry.size <= SMALL_FILE_MAX;
    const staged = await StagedFile.open(part, {
      mode: how,
      expect: kept?.expect,
      fsync,
      writeSync: true,
      sync,
      permissions: mode,
      // Rename refuses a folder at the name (and replaces a file or a symlink itself, never
      // what a symlink points to).
      failure: (error, at) =>
        error instanceof Deno.errors.IsADirectory && at === target
          ? new StoreError("not_a_file", `${path} is a folder`)
          // Its staging name taken again since it was cleared (a link swapped in): that file
          // fails alone, written through nothing.
          : error instanceof Deno.errors.AlreadyExists && at === part
          ? new SwappedError(`Its staging file ${part} was replaced as it was opened`)
          : error instanceof SwappedError
          ? error
          : cannotWrite(target, error),
    });
    return {
      write: (chunk) => staged.write(chunk),
      commit: async () => {
        // The file's mode and mtime are given before it is named. The mode was given at
        // creation, less the umask: set whole unless all of it is known to be there already (a
        // file emptied or continued may have had any mode).
        const chmod = mode !== undefined &&
          !(how === "create" && modes.keeps(dir, mode, staged.file));
        await staged.commit(() => {
          if (chmod) Deno.chmodSync(staged.path, mode!);
          return target;
        }, { replace: true, mtime: entry.mtime });
      },
      discard: () => staged.discard(),
      // Only a part a later run can find again (a big file's) is worth keeping.
      ...(kept ? { keep: () => staged.keep() } : {}),
    };
  };

  const os = options.os ?? Deno.build.os;
  return {
    ...(os === "windows" ? { unfit: (path: string) => unfitName(path, os) } : {}),
    check: (path) => {
      checkName(path);
      // A peer's name that is a staging file's would be written through (a link named so, say,
      // then a big file staged under that name): such names are this client's alone, in any case.
      if (PART_NAME_ANY_CASE.test(path)) {
        throw new StoreError(
          "bad_name",
          `Refused name ${quote(path)}: it is reserved for ferry's own staging files`,
        );
      }
    },
    walker: async (path) => {
      let real: string;
      if (path) {
        // A folder within: reached as any other, never through a symlink.
        const dir = await folder(path.split("/"), false);
        if (dir === null) return null;
        real = dir;
      } else {
        let info: Deno.FileInfo;
        try {
          info = await Deno.stat(base);
        } catch (error) {
          if (error instanceof Deno.errors.NotFound) return null;
          throw cannotRead(base, error);
        }
        if (!info.isDirectory) throw new UserError(`Cannot write into ${base}: not a folder`);
        real = await top();
      }
      return await TreeWalker.open(real, {
        sync: true,
        // A staging file an interrupted run left behind: ours, so it goes, unless --resume may
        // continue it (a few, at most: one per file cut).
        skip: (name) => {
          if (!isTreePart(name)) return false;
          // A walk given a folder (the top one too: "") comes mid-transfer (a sweep,
          // lib/tree_receive.ts): the staging files there may be this transfer's own.
          if (path !== undefined) return true;
          const full = join(real, name);
          if (resume && keptParts.size < MAX_KEPT_PARTS && isKept(name)) {
            keptParts.add(full);
          } else {
            removeQuietly(full);
          }
          return true;
        },
      });
    },
    stat: async (path) => {
      const { parents, leaf } = split(path);
      const dir = await folder(parents, false).catch(() => null);
      if (dir === null) return null;
      try {
        return entryOf(path, Deno.lstatSync(join(dir, leaf)));
      } catch {
        return null;
      }
    },
    makeBase: async () => {
      await Deno.mkdir(base, { recursive: true }).catch((error) => {
        throw cannotWrite(base, error);
      });
    },
    makeDir: async (path) => {
      await folder(path.split("/"), true);
    },
    remove: async (path) => {
      const { parents, leaf } = split(path);
      const dir = await folder(parents, false);
      if (dir === null) return;
      const target = join(dir, leaf);
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(target);
      } catch {
        return;
      }
      // A symlink goes itself; only a real folder is removed with what it holds, off this
      // thread (it may hold any number of files); a file's name goes on it.
      if (info.isDirectory) {
        await slowRemoval(target);
        await Deno.remove(target, { recursive: true });
      } else {
        slowRemovalSync(target);
        Deno.removeSync(target);
      }
      checked = undefined;
    },
    removeIn: async (path, names, removed) => {
      const dir = await folder(path.split("/"), false);
      if (dir === null) return;
      for (const name of names) {
        const target = join(dir, name);
        slowRemovalSync(target);
        try {
          Deno.removeSync(target);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
        await removed();
      }
      checked = undefined;
    },
    beginFile: async (path, entry): Promise<TreeFileSink> => {
      // The folder checked last is most often this file's too: found by its name alone.
      const cut = path.lastIndexOf("/");
      const key = cut < 0 ? "" : path.slice(0, cut);
      const leaf = path.slice(cut + 1);
      const dir = checked?.key === key ? checked.path : (await folder(split(path).parents, true))!;
      // A big file is staged under a name a later --resume finds again, even if this process
      // is killed; a small one under a random name, which the next run removes, and created
      // new: nothing can be there (no stat to check what it is; no mode left from before).
      if (entry.size > KEEP_MIN_BYTES) {
        const part = join(dir, await keptPartName(leaf));
        // Whatever has its name goes, and the part is created new: emptied where it was, its open
        // would follow a symlink swapped in meanwhile (its name is known in advance) and empty and
        // write what it leads to; created new, it never follows one (the file fails instead).
        removeQuietly(part);
        return await stagedSink(dir, part, join(dir, leaf), path, entry, "create", {});
      }
      const part = childOf(dir, `${TREE_PART_PREFIX}${crypto.randomUUID()}.part`);
      return await stagedSink(dir, part, childOf(dir, leaf), path, entry, "create");
    },
    resume: async (path, entry, onProgress) => {
      const { parents, leaf } = split(path);
      const dir = await folder(parents, false);
      if (dir === null) return null;
      const part = join(dir, await keptPartName(leaf));
      keptParts.delete(part);
      let found: Deno.FileInfo;
      try {
        found = Deno.lstatSync(part);
      } catch {
        return null;
      }
      if (!found.isFile) return null;
      // A part that cannot be read is no part to resume: the file starts over.
      const point = await partialDownload(part, onProgress, found).catch(() => undefined);
      if (!point) return null;
      return {
        point,
        // Continued only if it is still the part looked up: never through a link swapped in.
        open: () =>
          stagedSink(dir, part, join(dir, leaf), path, entry, "append", {
            expect: fileIdOf(found),
          }),
        // Kept again is where it is already.
        release: (drop) => Promise.resolve(drop ? removeQuietly(part) : undefined),
      };
    },
    // What is left is in folders the sender does not have.
    done: () => Promise.resolve(void dropUnused()),
    makeLink: async (path, target) => {
      const { parents, leaf } = split(path);
      const dir = (await folder(parents, true))!;
      const to = join(dir, leaf);
      let there: Deno.FileInfo | null = null;
      try {
        there = Deno.lstatSync(to);
      } catch {
        // Not there (or not to be looked at): the symlink and the rename report real trouble.
      }
      if (there?.isDirectory) throw new StoreError("not_a_file", `${path} is a folder`);
      // Made under a staging name, then renamed over whatever file or link has the name.
      const staged = join(dir, `${TREE_PART_PREFIX}${crypto.randomUUID()}.part`);
      try {
        Deno.symlinkSync(target, staged);
      } catch (error) {
        throw cannotWrite(to, error);
      }
      try {
        Deno.renameSync(staged, to);
      } catch (error) {
        removeQuietly(staged);
        throw cannotWrite(to, error);
      }
      checked = undefined;
    },
    readLink: async (path) => {
      const { parents, leaf } = split(path);
      const dir = await folder(parents, false);
      if (dir === null) throw new StoreError("not_found", `No such link: ${path}`);
      return Deno.readLinkSync(join(dir, leaf));
    },
    finishDir: async (path, entry, found) => {
      const dir = await folder(path.split("/"), false);
      if (dir === null) return;
      finishFolder(dir, entry, found);
    },
    finishBase: async (entry, made) => {
      const dir = await top();
      if (made) return finishFolder(dir, entry);
      // The receiver's own folder: its mode stays; its mtime is set only if it differs.
      if (Math.trunc(Deno.statSync(dir).mtime?.getTime() ?? NaN) === Math.trunc(entry.mtime)) {
        return;
      }
      Deno.utimeSync(dir, new Date(), new Date(entry.mtime));
    },
    // No folder of this client's own is on the receiving folder's filesystem: a probe, when
    // asked for, goes into the receiving folder itself.
    caseInsensitive: async (ask) => foldsCase(await top(), { probe: ask?.probe ?? false }),
    checksum: async (path, onProgress, id) => {
      await loadCheckedOpen();
      // A small file (the walk found a regular file) is opened and read on this thread; what
      // took its place since, a FIFO or a link, is not read (no checksum: it is received again).
      let file: CheckedFile;
      try {
        file = openChecked(join(await top(), path), { expect: id });
      } catch (error) {
        if (error instanceof SwappedError) return null;
        throw error;
      }
      using _ = file;
      const info = file.statSync();
      const sync = info.size <= SMALL_FILE_MAX;
      const sum = await checksumFilePrefix(file, info.size, { sync, onProgress });
      return sum?.digest() ?? null;
    },
  };
}
