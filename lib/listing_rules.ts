/**
 * What a folder listing shows of a folder's entries, in one place for every way of reading a
 * folder: the folder store's walk (lib/folder_listing.ts, on the disk threads, for `ferry list`
 * and the HTTP listings) and a big folder's page (lib/folder_page.ts, one pass as the names
 * come). The private folders at the top are hidden; special files are never listed; a symlink is
 * listed only as a file, when what it leads to is a file inside the root (a symlink to a folder
 * is never followed); an entry removed, replaced or unreadable since the folder was read is left
 * out; a name that is not valid UTF-8 is listed marked `notUtf8`, with size and date 0. A
 * listing of names alone takes what the folder's read settles without a lookup, in a folder the
 * server may read whole.
 *
 * @module
 */

import { RESUME_DIR } from "./kept_uploads.ts";
import { STAGING_DIR } from "./remote_name.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import type { DiskDirEntry } from "./folder_entries.ts";
import {
  diskError,
  type DiskFailure,
  type DiskInfo,
  type FolderView,
  isDiskFailure,
  REPLACEMENT_CHAR,
} from "./disk_jobs.ts";

/** What a listing needs of the folder store to decide what it shows. */
export interface ListingRoot {
  /** Whether a real path lies inside the root and outside its private folders. */
  isInside(path: string): boolean;
}

/** Where a symlink leads and what is there, as a lookup found it. */
export interface LinkTarget {
  /** The target's real path. */
  real: string;
  /** What a stat of it found. */
  info: DiskInfo;
}

/**
 * Whether the entry `base` of the folder whose names start with `prefix` ("" for the top) is one
 * of the private folders, never listed: they are all at the top.
 */
export function isPrivateName(prefix: string, base: string): boolean {
  return prefix === "" && PRIVATE_NAMES.includes(base);
}

/** The private folders, by name: all at the top. */
const PRIVATE_NAMES: readonly string[] = [STAGING_DIR, RESUME_DIR];

/** The names {@link isPrivateName} leaves out of the folder whose names start with `prefix`. */
export function privateNamesIn(prefix: string): readonly string[] {
  return prefix === "" ? PRIVATE_NAMES : [];
}

/**
 * Whether an entry, as the folder's read gives it, may be listed at all: a file, a folder, or a
 * symlink (then listed or not by where it leads); a special file (FIFO, socket, device) never.
 */
export function mayList(listed: DiskDirEntry): boolean {
  return listed.isFile || listed.isDirectory || listed.isSymlink;
}

/**
 * The entry a listing shows for `name` (full from the root), read from its folder as `listed`,
 * from what its lookup found (`info`, an lstat; null when it went meanwhile) and, for a symlink,
 * where it leads (`target`): null when the listing shows none.
 *
 * @example
 * ```ts
 * import { listedEntry } from "./listing_rules.ts";
 *
 * const root = { isInside: (path: string) => path.startsWith("/share/") };
 * const listed = { name: "a.txt", isFile: false, isDirectory: false, isSymlink: true };
 * const info = { type: "link", size: 5, mtime: 0, mode: null } as const;
 * const target = { real: "/etc/passwd", info: { ...info, type: "file" as const } };
 * console.log(listedEntry(root, "a.txt", listed, info, target)); // null: it leads out
 * ```
 */
export function listedEntry(
  root: ListingRoot,
  name: string,
  listed: DiskDirEntry,
  info: DiskInfo | null,
  target: LinkTarget | null,
): TreeEntry | null {
  if (listed.isDirectory) {
    return info?.type === "dir" ? { name, type: "dir", size: 0, mtime: info.mtime } : null;
  }
  // Symlinked files are listed only when they stay inside; folders are not followed.
  const file = listed.isSymlink
    ? (target && root.isInside(target.real) ? target.info : null)
    : info;
  return file?.type === "file" ? { name, type: "file", size: file.size, mtime: file.mtime } : null;
}

/**
 * The entry a listing of names alone shows for `listed` (its name `name`, full from the root)
 * from the folder's read alone, where the read settles it: a file or a folder, with size and date
 * 0 (what a lookup would add). Undefined where only a lookup settles it: a symlink (where it
 * leads), a name that is not valid UTF-8 (which entry it names), and an entry the read gives no
 * kind (a special file, never listed, or a file system's untyped entry).
 */
export function entryFromRead(name: string, listed: DiskDirEntry): TreeEntry | undefined {
  if (listed.isSymlink || listed.name.includes(REPLACEMENT_CHAR)) return undefined;
  if (listed.isFile) return { name, type: "file", size: 0, mtime: 0 };
  if (listed.isDirectory) return { name, type: "dir", size: 0, mtime: 0 };
  return undefined;
}

/**
 * Whether a listing of names alone may take the folder `dir`'s (a real path) entries from its
 * read ({@link entryFromRead}): the process may read everything in it. Where something in it is
 * denied (`--deny-read`), the lookup of that name fails and the full listing leaves it out, so
 * each name there is looked up. Asked of the permissions, with no system call.
 */
export function readSettlesNames(dir: string): boolean {
  const status = Deno.permissions.querySync({ name: "read", path: dir });
  return status.state === "granted" && !status.partial;
}

/**
 * The entry a listing shows for `name` read from an entry that is not valid UTF-8, which no
 * request can reach: a file or a folder, marked `notUtf8`, with size and date 0; null otherwise.
 */
export function undecodableEntry(name: string, listed: DiskDirEntry): TreeEntry | null {
  if (!(listed.isFile || listed.isDirectory)) return null;
  return { name, type: listed.isDirectory ? "dir" : "file", size: 0, mtime: 0, notUtf8: true };
}

/**
 * Tells apart the entries of one folder whose names read alike. Deno reads a name that is not
 * valid UTF-8 with U+FFFD for each bad sequence: it cannot be opened by that name, and several
 * (and a real name holding U+FFFD) can read alike. At most one of them is really called that:
 * the first whose kind is what a lookup by the name found. The others are listed with
 * {@link undecodableEntry}.
 */
export class AlikeNames {
  #claimed = new Set<string>();

  /**
   * Whether the entry read as `listed` is the one its name leads to, given what a lookup by the
   * name found (`info`). A name without U+FFFD always is. `key` tells apart claims of one name
   * that stand for different things (a walk into a folder, say); it defaults to the name.
   */
  owns(
    listed: DiskDirEntry,
    info: DiskInfo | DiskFailure | undefined,
    key: string = listed.name,
  ): boolean {
    if (!listed.name.includes(REPLACEMENT_CHAR)) return true;
    if (info === undefined || isDiskFailure(info) || !sameKind(listed, info)) return false;
    if (this.#claimed.has(key)) return false;
    this.#claimed.add(key);
    return true;
  }
}

/**
 * The entry a listing shows for `listed`, one of a folder's entries whose lookup is in `view`
 * (with its symlinks followed), its name full from the root once `prefix` is put before it.
 * Entries whose names read alike go through the same `alike`. `at` is the name's place in the
 * view's names, where it has only one (it holds no U+FFFD): it is then read by place, without
 * the index of names a lookup by name builds.
 */
export function entryFromView(
  root: ListingRoot,
  view: FolderView,
  prefix: string,
  listed: DiskDirEntry,
  alike: AlikeNames,
  at?: number,
): TreeEntry | null {
  const base = listed.name;
  const name = prefix + base;
  const byPlace = at !== undefined && !base.includes(REPLACEMENT_CHAR);
  const info = byPlace ? view.infoAt(at) : view.info(base);
  if (!alike.owns(listed, info)) return undecodableEntry(name, listed);
  const target = !listed.isSymlink
    ? null
    : lookedUp(byPlace ? view.targetAt(at) : view.target(base));
  return listedEntry(root, name, listed, lookedUp(info), target);
}

/** Whether a folder entry and what a lookup found describe the same kind of thing. */
export function sameKind(entry: DiskDirEntry, info: DiskInfo): boolean {
  return entry.isFile === (info.type === "file") && entry.isDirectory === (info.type === "dir") &&
    entry.isSymlink === (info.type === "link");
}

/**
 * What a lookup found, or null when the name went or cannot be read meanwhile (removed or
 * replaced since the read, unreadable, a broken or looping link): not listed. Any other failure
 * is thrown.
 */
export function lookedUp<T extends object>(result: T | DiskFailure | undefined): T | null {
  if (result === undefined) return null;
  if (!isDiskFailure(result)) return result;
  const error = diskError(result);
  if (isUnreadable(error) || error instanceof Deno.errors.FilesystemLoop) return null;
  throw error;
}

/** A folder that cannot be listed: no permission, or gone or replaced since it was seen. */
export function isUnreadable(error: unknown): boolean {
  return error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory;
}
