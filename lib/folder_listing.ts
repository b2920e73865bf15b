/**
 * Listing the folder store (lib/file_store.ts): the one walk behind its flat listing and its
 * typed tree listing, which leaves out the private folders, what leads outside the root and what
 * the server may not read, and how names that are not valid UTF-8 are listed (and told apart from
 * a name that is not there).
 *
 * @module
 */

import { join } from "node:path";
import type { ListEntry } from "./protocol.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import type { ServedFolder } from "./tree_store.ts";
import { RESUME_DIR } from "./kept_uploads.ts";
import { STAGING_DIR } from "./remote_name.ts";
import { type DiskInfo, diskPool, type FolderView } from "./disk_pool.ts";
import { type ListedFolder, type TreeListing, walkListing } from "./tree_listing.ts";
import { type DiskDirEntry, diskError, type DiskFailure, isDiskFailure } from "./disk_jobs.ts";

/** What a listing needs of the folder store: its root, and what lies inside it. */
export type ListedRoot = Pick<ServedFolder, "root" | "isInside">;

/**
 * Lists regular files under the root (recursively), sorted by name; the private folders are
 * hidden, and so is any folder the server may not read. Every name is listed, those a client
 * may not ask for (control characters, say) too: it shows them escaped, and the server
 * refuses them when asked. A file whose name is not valid UTF-8 is listed as
 * {@link ListEntry.notUtf8}. Holds the whole list: the server streams its listings instead
 * ({@link walkFolderListing}).
 */
export async function listFiles(store: ListedRoot): Promise<ListEntry[]> {
  const entries: ListEntry[] = [];
  for await (const batch of walkFolderListing(store, store.root, "", { recursive: true })) {
    for (const entry of batch) {
      if (entry.type !== "file") continue;
      const { type: _, ...file } = entry;
      entries.push(file);
    }
  }
  return entries;
}

/**
 * The one walk behind both listings, the flat one ({@link listFiles}) and the typed one
 * (lib/tree_store.ts): the names in the folder `dir` (a real path inside the root, whose names
 * start with `prefix`), and with `recursive` everything under it, in listing order
 * (lib/tree_listing.ts), a folder at a time. The private folders are left out; so are symlinks
 * to folders (never followed), symlinks that lead out, special files, and what a folder the
 * server may not read would hold (`dir` itself unreadable fails the walk). A name that is not
 * valid UTF-8 comes marked `notUtf8`, with size and mtime 0.
 */
export function walkFolderListing(
  store: ListedRoot,
  dir: string,
  prefix: string,
  options: { recursive: boolean; foldersFirst?: boolean },
): TreeListing {
  return walkListing({ path: dir, prefix }, async (folder, top) => {
    try {
      return await listFolder(store, folder.path, folder.prefix, options.recursive);
    } catch (error) {
      // One folder the server may not read (permissions, --deny-read) must not cost the client
      // the whole listing: it is left out, as an unreadable file is.
      if (top || !isUnreadable(error)) throw error;
      return null;
    }
  }, { foldersFirst: options.foldersFirst });
}

/** One folder of {@link walkFolderListing}: its entries, and with `recursive` its subfolders. */
async function listFolder(
  store: ListedRoot,
  dir: string,
  prefix: string,
  recursive: boolean,
): Promise<ListedFolder<{ path: string; prefix: string }>> {
  const entries: TreeEntry[] = [];
  const below: { name: string; folder: { path: string; prefix: string } }[] = [];
  // The whole folder is looked up on a disk thread, symlinks' targets included.
  // Split between two threads: someone waits for this listing, and a large folder's lookups
  // are most of its time.
  const folder = await diskPool.folder(dir, { follow: true, split: true });
  /** What a lookup found, or null when the name went or cannot be read meanwhile. */
  const found = <T extends object>(result: T | DiskFailure | undefined): T | null => {
    if (result === undefined) return null;
    if (!isDiskFailure(result)) return result;
    const error = diskError(result);
    // Removed or replaced mid-walk, unreadable, or a broken or looping link: not listed.
    if (isUnreadable(error) || error instanceof Deno.errors.FilesystemLoop) return null;
    throw error;
  };
  for (const { name: base, reachable, undecodable } of readNames(folder)) {
    const name = prefix + base;
    if (name === STAGING_DIR || name === RESUME_DIR) continue;
    for (const entry of undecodable) {
      if (!(entry.isFile || entry.isDirectory)) continue;
      entries.push({
        name,
        type: entry.isDirectory ? "dir" : "file",
        size: 0,
        mtime: 0,
        notUtf8: true,
      });
    }
    if (!reachable) continue;
    if (reachable.isDirectory) {
      const info = found(folder.info(base));
      if (!info) continue;
      entries.push({ name, type: "dir", size: 0, mtime: info.mtime });
      if (recursive) below.push({ name, folder: { path: join(dir, base), prefix: name + "/" } });
      continue;
    }
    // Symlinked files are listed only when they stay inside; folders are not followed.
    let info: DiskInfo | null;
    if (reachable.isSymlink) {
      const target = found(folder.target(base));
      if (!target || !store.isInside(target.real)) continue;
      info = target.info;
    } else {
      info = found(folder.info(base));
    }
    if (info?.type !== "file") continue;
    entries.push({ name, type: "file", size: info.size, mtime: info.mtime });
  }
  return { entries, below };
}

/**
 * Whether `name`, which was not found, is listed as not valid UTF-8 (see {@link listFiles}): its
 * folder holds an entry that reads as its last segment, yet nothing is called that.
 */
export async function isListedUndecodable(
  store: ListedRoot,
  segments: string[],
): Promise<boolean> {
  const last = segments.at(-1)!;
  if (!last.includes(REPLACEMENT_CHAR)) return false;
  // Only inside the root: a folder symlinked elsewhere says nothing about what is there.
  const dir = await Deno.realPath(join(store.root, ...segments.slice(0, -1))).catch(() => null);
  if (!dir || (dir !== store.root && !store.isInside(dir))) return false;
  if (await Deno.lstat(join(dir, last)).then(() => true, () => false)) return false;
  try {
    for await (const entry of Deno.readDir(dir)) if (entry.name === last) return true;
  } catch {
    // No such folder: nothing there to be undecodable.
  }
  return false;
}

/** U+FFFD, which Deno puts in a file name for each sequence that is not valid UTF-8. */
const REPLACEMENT_CHAR = "\ufffd";

/** Whether a folder entry and what a lookup found describe the same kind of thing. */
function sameKind(entry: DiskDirEntry, info: DiskInfo): boolean {
  return entry.isFile === (info.type === "file") && entry.isDirectory === (info.type === "dir") &&
    entry.isSymlink === (info.type === "link");
}

/** One name a folder holds, as a listing sees it (see {@link readNames}). */
interface FolderName {
  /** The name as Deno reads it. */
  name: string;
  /** The entry the name leads to; undefined when none does. */
  reachable?: DiskDirEntry;
  /** Entries that read as this name but are not valid UTF-8: no name leads to them. */
  undecodable: DiskDirEntry[];
}

/**
 * The names in the folder as `folder` found them. Deno reads a name that is not valid UTF-8 with
 * U+FFFD for each bad sequence: it cannot be opened by that name, and several (and a real name
 * holding U+FFFD) can read alike. Those are grouped by name to tell them apart: at most one of a
 * group is really called that, the one the name leads to. Any other name is one entry's alone.
 */
function readNames(folder: FolderView): FolderName[] {
  const names: FolderName[] = [];
  const alike = new Map<string, DiskDirEntry[]>();
  for (let i = 0; i < folder.names.length; i++) {
    const name = folder.names[i];
    if (!name.includes(REPLACEMENT_CHAR)) {
      names.push({ name, reachable: folder.entry(i), undecodable: [] });
      continue;
    }
    const group = alike.get(name);
    if (group) group.push(folder.entry(i));
    else alike.set(name, [folder.entry(i)]);
  }
  for (const [name, group] of alike) {
    const info = folder.info(name);
    const real = info && !isDiskFailure(info)
      ? group.findIndex((entry) => sameKind(entry, info))
      : -1;
    names.push({
      name,
      reachable: real >= 0 ? group[real] : undefined,
      undecodable: group.filter((_, i) => i !== real),
    });
  }
  return names;
}

/** A folder that cannot be listed: no permission, or gone or replaced since it was seen. */
export function isUnreadable(error: unknown): boolean {
  return error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory;
}
