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
import {
  type ListedFolder,
  type ListedStep,
  type TreeListing,
  walkListing,
} from "./tree_listing.ts";
import {
  type DiskDirEntry,
  diskError,
  type DiskFailure,
  isDiskFailure,
  KIND_DIR,
  KIND_FILE,
  KIND_LINK,
  REPLACEMENT_CHAR,
} from "./disk_jobs.ts";
import { bigFolderLimits, NameSorter, type SortedNames } from "./name_runs.ts";

/**
 * What a listing needs of the folder store: its root, what lies inside it, and its staging
 * folder (where a big folder's names are sorted).
 */
export type ListedRoot = Pick<ServedFolder, "root" | "isInside" | "stagingDir">;

/** A folder the listing walks: its real path, its names' prefix, its size on disk if known. */
interface Folder {
  path: string;
  prefix: string;
  size?: number;
}

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
 * valid UTF-8 comes marked `notUtf8`, with size and mtime 0. A big folder's names are sorted on
 * disk, in the staging folder (see {@link FolderListingOptions.limits}).
 */
export function walkFolderListing(
  store: ListedRoot,
  dir: string,
  prefix: string,
  options: FolderListingOptions,
): TreeListing {
  const foldersFirst = options.foldersFirst ?? false;
  const limits = { ...bigFolderLimits(), ...options.limits };
  return walkListing<Folder>({ path: dir, prefix }, async (folder, top) => {
    try {
      const size = folder.size ?? (await Deno.stat(folder.path)).size;
      if (size >= limits.bigBytes) {
        return await listBigFolder(store, folder, options.recursive, foldersFirst, limits.runNames);
      }
      return await listFolder(store, folder.path, folder.prefix, options.recursive);
    } catch (error) {
      // One folder the server may not read (permissions, --deny-read) must not cost the client
      // the whole listing: it is left out, as an unreadable file is.
      if (top || !isUnreadable(error)) throw error;
      return null;
    }
  }, { foldersFirst });
}

/** Options for {@link walkFolderListing}. */
export interface FolderListingOptions {
  /** Everything under the folder, not only its own entries. */
  recursive: boolean;
  /** Each folder's subfolders before its files (see `WalkListingOptions`); default false. */
  foldersFirst?: boolean;
  /**
   * From which size on disk a folder is big, its names sorted on disk in runs of `runNames`
   * (default `bigFolderLimits()`, lib/name_runs.ts: 1 MiB and 50,000 names).
   */
  limits?: { bigBytes: number; runNames: number };
}

/** One folder of {@link walkFolderListing}: its entries, and with `recursive` its subfolders. */
async function listFolder(
  store: ListedRoot,
  dir: string,
  prefix: string,
  recursive: boolean,
): Promise<ListedFolder<Folder>> {
  const entries: TreeEntry[] = [];
  const below: { name: string; folder: Folder }[] = [];
  // The whole folder is looked up on a disk thread, symlinks' targets included.
  // Split between two threads: someone waits for this listing, and a large folder's lookups
  // are most of its time.
  const folder = await diskPool.folder(dir, { follow: true, split: true });
  for (const { name: base, reachable, undecodable, at } of readNames(folder)) {
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
    // By place where the name has one, as most have: no index of the names to build.
    const infoOf = () => found(at === undefined ? folder.info(base) : folder.infoAt(at));
    if (reachable.isDirectory) {
      const info = infoOf();
      if (!info) continue;
      entries.push({ name, type: "dir", size: 0, mtime: info.mtime });
      if (recursive) {
        below.push({
          name,
          folder: { path: join(dir, base), prefix: name + "/", size: info.size },
        });
      }
      continue;
    }
    // Symlinked files are listed only when they stay inside; folders are not followed.
    let info: DiskInfo | null;
    if (reachable.isSymlink) {
      const target = found(at === undefined ? folder.target(base) : folder.targetAt(at));
      if (!target || !store.isInside(target.real)) continue;
      info = target.info;
    } else {
      info = infoOf();
    }
    if (info?.type !== "file") continue;
    entries.push({ name, type: "file", size: info.size, mtime: info.mtime });
  }
  return { entries, below };
}

/** What a lookup found, or null when the name went or cannot be read meanwhile. */
function found<T extends object>(result: T | DiskFailure | undefined): T | null {
  if (result === undefined) return null;
  if (!isDiskFailure(result)) return result;
  const error = diskError(result);
  // Removed or replaced mid-walk, unreadable, or a broken or looping link: not listed.
  if (isUnreadable(error) || error instanceof Deno.errors.FilesystemLoop) return null;
  throw error;
}

/*
 * A big folder's listing (a folder at least `BIG_FOLDER_BYTES` on disk): its names are read as
 * they come and sorted by an external sort (lib/name_runs.ts), whose runs go to the staging
 * folder, each name as a record: a tag (what the folder's listing says it is, and whether the
 * record stands for the walk into it, keyed `name/` as walkListing keys it) then the key. Each
 * chunk of records is looked up when the listing reaches it.
 */

/** A record's tag: this plus its {@link KIND_FILE}, {@link KIND_DIR}, {@link KIND_LINK} bits. */
const TAG = 0x40;
/** Tag bit of a record that stands for the walk into a subfolder (a recursive listing). */
const DESCEND = 8;

/** How records compare: by key as walkListing compares them, folders first if asked. */
function recordOrder(foldersFirst: boolean): (a: string, b: string) => number {
  const rank = (record: string) => {
    const bits = record.charCodeAt(0) - TAG;
    return (bits & KIND_DIR) !== 0 && (bits & DESCEND) === 0 ? 0 : 1;
  };
  return (a, b) => {
    if (foldersFirst) {
      const order = rank(a) - rank(b);
      if (order !== 0) return order;
    }
    // What follows the tag, by UTF-16 unit as JavaScript's `<` (compareListed) does.
    const n = Math.min(a.length, b.length);
    for (let i = 1; i < n; i++) {
      const order = a.charCodeAt(i) - b.charCodeAt(i);
      if (order !== 0) return order;
    }
    return a.length - b.length;
  };
}

/** The name a record stands for. */
function recordName(record: string): string {
  return (record.charCodeAt(0) - TAG) & DESCEND ? record.slice(1, -1) : record.slice(1);
}

/** One big folder of {@link walkFolderListing}: its steps, sorted on disk, a chunk at a time. */
async function listBigFolder(
  store: ListedRoot,
  folder: Folder,
  recursive: boolean,
  foldersFirst: boolean,
  runNames: number,
): Promise<ListedFolder<Folder>> {
  const { path: dir, prefix } = folder;
  const sorter = new NameSorter({
    compare: recordOrder(foldersFirst),
    runNames,
    spillDir: store.stagingDir,
  });
  let sorted: SortedNames;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const name = prefix + entry.name;
      if (name === STAGING_DIR || name === RESUME_DIR) continue;
      const kind = (entry.isFile ? KIND_FILE : 0) | (entry.isDirectory ? KIND_DIR : 0) |
        (entry.isSymlink ? KIND_LINK : 0);
      const adding = sorter.add(String.fromCharCode(TAG + kind) + entry.name);
      if (adding) await adding;
      if (!recursive || !entry.isDirectory) continue;
      const descending = sorter.add(String.fromCharCode(TAG + kind + DESCEND) + entry.name + "/");
      if (descending) await descending;
    }
    sorted = await sorter.finish();
  } catch (error) {
    await sorter.discard();
    throw error;
  }
  /** Names read with U+FFFD (see readNames) already found to be the one their name leads to. */
  const claimed = new Set<string>();
  const stepOf = (record: string, view: FolderView): ListedStep<Folder> | null => {
    const bits = record.charCodeAt(0) - TAG;
    const descend = (bits & DESCEND) !== 0;
    const base = recordName(record);
    const name = prefix + base;
    const listed: DiskDirEntry = {
      name: base,
      isFile: (bits & KIND_FILE) !== 0,
      isDirectory: (bits & KIND_DIR) !== 0,
      isSymlink: (bits & KIND_LINK) !== 0,
    };
    if (base.includes(REPLACEMENT_CHAR)) {
      // As readNames tells them apart: the first entry of the kind the name leads to is it,
      // and any other that reads alike is listed as not UTF-8.
      const info = view.info(base);
      const key = (descend ? "/" : "") + base;
      if (
        info === undefined || isDiskFailure(info) || !sameKind(listed, info) || claimed.has(key)
      ) {
        if (descend || !(listed.isFile || listed.isDirectory)) return null;
        const type = listed.isDirectory ? "dir" : "file";
        return { entry: { name, type, size: 0, mtime: 0, notUtf8: true } };
      }
      claimed.add(key);
    }
    if (listed.isDirectory) {
      const info = found(view.info(base));
      if (!info) return null;
      if (descend) {
        return { folder: { path: join(dir, base), prefix: name + "/", size: info.size } };
      }
      return { entry: { name, type: "dir", size: 0, mtime: info.mtime } };
    }
    // Symlinked files are listed only when they stay inside; folders are not followed.
    let info: DiskInfo | null;
    if (listed.isSymlink) {
      const target = found(view.target(base));
      if (!target || !store.isInside(target.real)) return null;
      info = target.info;
    } else {
      info = found(view.info(base));
    }
    if (info?.type !== "file") return null;
    return { entry: { name, type: "file", size: info.size, mtime: info.mtime } };
  };
  return {
    entries: [],
    below: [],
    ordered: {
      next: async () => {
        while (true) {
          const records = await sorted.take();
          if (records.length === 0) return [];
          const names = [...new Set(records.map(recordName))];
          const view = await diskPool.folder(dir, { names, follow: true });
          const steps: ListedStep<Folder>[] = [];
          for (const record of records) {
            const step = stepOf(record, view);
            if (!step) continue;
            // Of entries that read alike, those not UTF-8 go first, as readNames lists them.
            let at = steps.length;
            while (
              step.entry?.notUtf8 && at > 0 && steps[at - 1].entry?.name === step.entry.name &&
              !steps[at - 1].entry?.notUtf8
            ) at--;
            steps.splice(at, 0, step);
          }
          if (steps.length > 0) return steps;
        }
      },
      close: () => sorted.close(),
    },
  };
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
  /** The name's place in the folder's names, when it has only one (it holds no U+FFFD). */
  at?: number;
}

/**
 * The names in the folder as `folder` found them. Deno reads a name that is not valid UTF-8 with
 * U+FFFD for each bad sequence: it cannot be opened by that name, and several (and a real name
 * holding U+FFFD) can read alike. Those are grouped by name to tell them apart: at most one of a
 * group is really called that, the one the name leads to. Any other name is one entry's alone.
 */
function readNames(folder: FolderView): FolderName[] {
  const NONE: DiskDirEntry[] = [];
  const names: FolderName[] = [];
  const alike = new Map<string, DiskDirEntry[]>();
  for (let i = 0; i < folder.names.length; i++) {
    const name = folder.names[i];
    if (!name.includes(REPLACEMENT_CHAR)) {
      names.push({ name, reachable: folder.entry(i), undecodable: NONE, at: i });
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
