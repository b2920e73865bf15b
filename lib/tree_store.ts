/**
 * Operations on the served tree beyond single files: listing one folder or a whole subtree, and
 * removing, renaming and creating names, on the folder store as {@link ServedFolder} (what these
 * need of it), and an rm, mv or mkdir on any store ({@link changeTree}). Every name goes through
 * the store's {@link checkName} and its folder walk ({@link ServedFolder.folderOf}), so no
 * operation leaves the root, reaches the private folders or follows a symlink that leads out.
 *
 * @module
 */

import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { StoreError } from "./errors.ts";
import { foldName } from "./case_folding.ts";
import { checkName, quote } from "./remote_name.ts";
import { checkFitName } from "./windows_names.ts";
import { moveNoClobber, syncDir } from "./staged_file.ts";
import { slowRemoval } from "./slow_disk.ts";
import type {
  BeginUploadOptions,
  ListTreeOptions,
  MakeDirOptions,
  MoveOptions,
  RemoveOptions,
  Store,
  StoreFile,
  StoreUpload,
} from "./store.ts";
import type { TreeChangeRequest } from "./tree_protocol.ts";
import type { TreeListing } from "./tree_listing.ts";

export type { ListTreeOptions, MakeDirOptions, MoveOptions, RemoveOptions };

/** Options of the folder store's uploads: those of any store's (see {@link BeginUploadOptions}). */
export type FileUploadOptions = BeginUploadOptions;

/**
 * What the operations on the served tree (here and in lib/folder_tree.ts) need of the folder
 * store. lib/file_store.ts's `FileStore` is one and hands itself in; it is declared here, below
 * the store, so that the store can delegate to these operations without the two importing each
 * other.
 */
export interface ServedFolder {
  /** Real path of the served folder. */
  readonly root: string;
  /** Real path of the hidden staging folder, on the root's filesystem. */
  readonly stagingDir: string;
  /**
   * Whether changes are flushed to disk before they are reported done: uploads, and the folders
   * names are made, removed or renamed in (false for a server run with `--no-fsync`).
   */
  readonly fsync: boolean;
  /**
   * The real path of the folder that holds `name` (checked with {@link checkName}), every folder
   * on the way checked as for an upload; missing folders are created with `create`, otherwise
   * the result is null.
   */
  folderOf(name: string, create?: boolean): Promise<string | null>;
  /** Whether a real path lies inside the root and outside its private folders. */
  isInside(path: string): boolean;
  /**
   * Told that names in the tree were removed, renamed or replaced: folders it remembers having
   * checked are checked again before the next upload is named into them.
   */
  forgetFolders(): void;
  /** The real path of the regular file `name`; throws `StoreError` when there is none. */
  resolveFile(name: string): Promise<string>;
  /** Opens the regular file `name`, as {@link Store.openFile}: the one resolved, or none. */
  openFile(name: string): Promise<StoreFile>;
  /** See {@link Store.readWhole}. */
  readWhole(name: string, max: number): Promise<Uint8Array | null>;
  /**
   * The names in the folder `dir` (a real path inside the root, whose names start with
   * `prefix`), and with `recursive` everything under it, in listing order (lib/tree_listing.ts).
   */
  walkListing(
    dir: string,
    prefix: string,
    options: { recursive: boolean; namesOnly?: boolean },
  ): TreeListing;
  /** Starts an upload, as {@link Store.beginUpload}, with a tree's file's mtime and mode. */
  beginUpload(name: string, options?: FileUploadOptions): Promise<StoreUpload>;
}

/** No such name: nothing there, or a file where the path expects a folder on the way. */
function isAbsent(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}

/** The entry `name` itself (not what a symlink there points to), or null when there is none. */
async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (isAbsent(error)) return null;
    throw error;
  }
}

/**
 * Where `name` is: the real path of its folder joined with its last segment, which may or may not
 * exist. Null when a folder on the way is missing.
 */
async function locate(store: ServedFolder, name: string): Promise<string | null> {
  const folder = await store.folderOf(name);
  return folder === null ? null : join(folder, checkName(name).at(-1)!);
}

/**
 * The real path of the folder `dir` names (the root when absent). A symlink to a folder inside
 * the root is followed, as for any other name; one that leads out is refused.
 */
export async function resolveFolder(store: ServedFolder, dir?: string): Promise<string> {
  if (dir === undefined) return store.root;
  const missing = () => new StoreError("not_found", `No such folder: ${quote(dir)}`);
  const path = await locate(store, dir);
  if (path === null) throw missing();
  let info = await lstatOrNull(path);
  if (!info) throw missing();
  let real = path;
  if (info.isSymlink) {
    real = await Deno.realPath(path).catch(() => "");
    if (!real) throw missing();
    if (!store.isInside(real)) {
      throw new StoreError("bad_name", `Refused name ${quote(dir)}: it leads outside the root`);
    }
    info = await Deno.stat(real);
  }
  if (!info.isDirectory) throw new StoreError("not_a_file", `Not a folder: ${quote(dir)}`);
  return real;
}

/**
 * Lists a folder's files and subfolders, or with `recursive` everything under it, sorted by name
 * (lib/tree_listing.ts), as it walks the folder. Names are relative to the root. The private
 * folders, symlinks to folders (never followed) and symlinks leading out are left out, and so is
 * what a folder the server may not read would hold. A name that is not valid UTF-8 is listed
 * marked `notUtf8`. The folder is found before this resolves, so a missing one is refused
 * before anything is listed; `found` is its real path where the caller found it already
 * ({@link resolveFolder}), and it is not found again.
 */
export async function listTree(
  store: ServedFolder,
  options: ListTreeOptions = {},
  found?: string,
): Promise<TreeListing> {
  const top = found ?? await resolveFolder(store, options.dir);
  const prefix = options.dir === undefined ? "" : checkName(options.dir).join("/") + "/";
  const recursive = options.recursive ?? false;
  return store.walkListing(top, prefix, {
    recursive,
    namesOnly: options.namesOnly ?? false,
  });
}

/**
 * Removes a file, a symlink (never what it points to) or, with `recursive`, a folder and all it
 * holds (symlinks inside are removed, never followed).
 */
export async function removeName(
  store: ServedFolder,
  name: string,
  options: RemoveOptions = {},
): Promise<void> {
  const path = await locate(store, name);
  const info = path === null ? null : await lstatOrNull(path);
  if (!info) throw new StoreError("not_found", `No such file or folder: ${quote(name)}`);
  if (info.isDirectory && !options.recursive) {
    throw new StoreError("not_a_file", `${quote(name)} is a folder`);
  }
  store.forgetFolders();
  try {
    await slowRemoval(path!);
    await Deno.remove(path!, { recursive: info.isDirectory });
  } catch (error) {
    if (!isAbsent(error)) throw error;
    throw new StoreError("not_found", `No such file or folder: ${quote(name)}`);
  } finally {
    // Before and after: an upload named meanwhile may have looked at what was going.
    store.forgetFolders();
  }
  if (options.flush ?? true) await flushFolder(store, join(path!, ".."));
}

/**
 * Removes the files and links `names` (a name that is a folder by now is refused by the system,
 * never emptied) of the folder `dir`, found once as {@link resolveFolder} finds it, awaiting
 * `removed` after each. Not flushed: for the inside of a folder being removed (a tree's
 * `--delete`), whose own removal is.
 */
export async function removeNamesIn(
  store: ServedFolder,
  dir: string,
  names: string[],
  removed: () => Promise<void>,
): Promise<void> {
  const real = await resolveFolder(store, dir);
  store.forgetFolders();
  try {
    for (const name of names) {
      const path = join(real, name);
      await slowRemoval(path);
      await Deno.remove(path).catch((error) => {
        if (!isAbsent(error)) throw error;
      });
      await removed();
    }
  } finally {
    store.forgetFolders();
  }
}

/**
 * Renames `from` to `to` inside the root, atomically: a file, a symlink (the link itself) or a
 * folder with everything in it. The new name's folder must exist. A name that is taken is refused
 * unless `overwrite` is set and it is not a folder.
 */
export async function moveName(
  store: ServedFolder,
  from: string,
  to: string,
  options: MoveOptions = {},
): Promise<void> {
  checkFitName(to);
  const source = await locate(store, from);
  const info = source === null ? null : await lstatOrNull(source);
  if (!info) throw new StoreError("not_found", `No such file or folder: ${quote(from)}`);
  const target = await locate(store, to);
  if (target === null) {
    throw new StoreError("not_found", `No such folder for ${quote(to)}`);
  }
  if (source === target) return;
  if (info.isSymlink) await checkLinkMove(source!, target, from, to);
  if (info.isDirectory && (target + sep).startsWith(source! + sep)) {
    throw new StoreError("bad_request", `Cannot move ${quote(from)} into itself`);
  }
  const existing = await lstatOrNull(target);
  // One name under another case, on a filesystem that folds case: only its spelling changes.
  const respelled = existing !== null && sameEntry(source!, info, target, existing);
  if (existing && !respelled) {
    if (existing.isDirectory) throw new StoreError("not_a_file", `${quote(to)} is a folder`);
    if (info.isDirectory) {
      throw new StoreError("not_a_file", `Cannot replace file ${quote(to)} with a folder`);
    }
    if (!options.overwrite) throw new StoreError("exists", `File exists: ${quote(to)}`);
  }
  store.forgetFolders();
  if (respelled || options.overwrite || info.isDirectory) {
    // A folder cannot be hard-linked: checked above, then renamed. rename(2) still refuses to
    // put a folder over anything but an empty folder.
    await Deno.rename(source!, target);
  } else if (!await moveNoClobber(source!, target)) {
    throw new StoreError("exists", `File exists: ${quote(to)}`);
  }
  store.forgetFolders();
  await flushFolder(store, dirname(target));
  // A rename within one folder changed that folder only: flushed once.
  if (dirname(source!) !== dirname(target)) await flushFolder(store, dirname(source!));
}

/**
 * Whether `source` and `target` are one entry under two spellings (a filesystem that folds case
 * finds it by both): one folder, names that fold alike, one inode. Two hard links of one file
 * are two names, and stay so.
 */
function sameEntry(source: string, info: Deno.FileInfo, target: string, found: Deno.FileInfo) {
  return dirname(source) === dirname(target) &&
    foldName(basename(source)) === foldName(basename(target)) &&
    info.ino !== null && info.ino === found.ino && info.dev === found.dev;
}

/**
 * Refuses to move the symlink at `source` to `target` when its target is relative and would be
 * read from the new folder as another path: the link would then point elsewhere, perhaps out of
 * the root. Its text is the user's, so it is never rewritten; a move that keeps its meaning (a
 * rename in its folder, an absolute target) goes ahead.
 */
async function checkLinkMove(source: string, target: string, from: string, to: string) {
  const text = await Deno.readLink(source);
  if (isAbsolute(text)) return;
  if (resolve(dirname(source), text) === resolve(dirname(target), text)) return;
  throw new StoreError(
    "denied",
    `Refused to move symlink ${quote(from)} to ${quote(to)}: its relative target ${
      quote(text)
    } would point elsewhere from there`,
  );
}

/** Creates a folder; its parent must exist unless `parents` is set. */
export async function makeDir(
  store: ServedFolder,
  name: string,
  options: MakeDirOptions = {},
): Promise<void> {
  const parents = options.parents ?? false;
  checkFitName(name);
  const folder = await store.folderOf(name, parents);
  if (folder === null) throw new StoreError("not_found", `No such folder for ${quote(name)}`);
  const path = join(folder, checkName(name).at(-1)!);
  try {
    await Deno.mkdir(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    const info = await lstatOrNull(path);
    if (info?.isDirectory && parents) return;
    throw new StoreError(
      "exists",
      `${info?.isDirectory ? "Folder" : "File"} exists: ${quote(name)}`,
    );
  }
  await flushFolder(store, folder);
}

/**
 * Flushes the folder `dir` after a name in it was made, removed or renamed, so that the change is
 * durable before it is reported; nothing for a store run with `--no-fsync`
 * ({@link ServedFolder.fsync}).
 */
export async function flushFolder(store: ServedFolder, dir: string): Promise<void> {
  if (store.fsync) await syncDir(dir);
}

/**
 * Carries out an rm, mv or mkdir request on any store; a read-only server refuses them all
 * ({@link StoreError} `read_only`).
 */
export async function changeTree(
  store: Store,
  request: TreeChangeRequest,
  options: { readOnly: boolean },
): Promise<void> {
  if (options.readOnly) {
    throw new StoreError("read_only", `Server is read-only: ${request.op} is refused`);
  }
  switch (request.op) {
    case "rm":
      return await store.remove(request.name, { recursive: request.recursive });
    case "mv":
      return await store.move(request.name, request.to, { overwrite: request.overwrite });
    case "mkdir":
      return await store.makeDir(request.name, { parents: request.parents });
  }
}
