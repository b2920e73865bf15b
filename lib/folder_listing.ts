/**
 * Listing the folder store (lib/file_store.ts): the one walk behind its flat listing and its
 * typed tree listing, a small folder looked up whole on the disk threads, a big one sorted on
 * disk; a subfolder the server may not read is left out; and whether a name that is not there is
 * one listed as not valid UTF-8. What a listing shows of each entry (the private folders, what
 * leads outside the root, names not valid UTF-8) is lib/listing_rules.ts's to say, for a big
 * folder's HTTP page (lib/folder_page.ts) as well.
 *
 * @module
 */

import { join } from "node:path";
import type { ListEntry } from "./protocol.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import type { ServedFolder } from "./tree_store.ts";
import { diskPool, type FolderView } from "./disk_pool.ts";
import {
  type ListedFolder,
  type ListedStep,
  type TreeListing,
  walkListing,
} from "./tree_listing.ts";
import { REPLACEMENT_CHAR } from "./disk_jobs.ts";
import { type DiskDirEntry, KIND_DIR, KIND_FILE } from "./folder_entries.ts";
import {
  AlikeNames,
  entryFromRead,
  entryFromView,
  isPrivateName,
  isUnreadable,
  listedEntry,
  lookedUp,
  privateNamesIn,
  readSettlesNames,
  undecodableEntry,
} from "./listing_rules.ts";
import { bigFolderLimits } from "./name_runs.ts";
import { isDescent, recordEntry, recordName } from "./folder_records.ts";

/**
 * What a listing needs of the folder store: its root, what lies inside it, and its staging
 * folder (where a big folder's names are sorted).
 */
export type ListedRoot = Pick<ServedFolder, "root" | "isInside" | "stagingDir">;

/** A folder the listing walks: its real path, and its names' prefix. */
interface Folder {
  path: string;
  prefix: string;
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
 * disk, in the staging folder (see {@link FolderListingOptions.limits}). With
 * {@link FolderListingOptions.namesOnly}, the same names with the same types, each from the
 * folder's read alone where it settles it (sizes and times then 0).
 */
export function walkFolderListing(
  store: ListedRoot,
  dir: string,
  prefix: string,
  options: FolderListingOptions,
): TreeListing {
  const namesOnly = options.namesOnly ?? false;
  const limits = { ...bigFolderLimits(), ...options.limits };
  return walkListing<Folder>({ path: dir, prefix }, async (folder, top) => {
    try {
      // Whether the folder is big is the disk thread's to say, from the stat its read makes:
      // nothing here looks a folder up first, nor (names alone) each subfolder for its size.
      const listed = await listFolder(store, folder, options.recursive, namesOnly, limits.bigBytes);
      return listed ?? await listBigFolder(store, folder, {
        recursive: options.recursive,
        namesOnly,
        runNames: limits.runNames,
      });
    } catch (error) {
      // One folder the server may not read (permissions, --deny-read) must not cost the client
      // the whole listing: it is left out, as an unreadable file is.
      if (top || !isUnreadable(error)) throw error;
      return null;
    }
  });
}

/** Options for {@link walkFolderListing}. */
export interface FolderListingOptions {
  /** Everything under the folder, not only its own entries. */
  recursive: boolean;
  /**
   * Names and types are all that is wanted (default false): a file or a subfolder is taken as
   * the folder's read types it (lib/listing_rules.ts `entryFromRead`), with size and mtime 0,
   * rather than looked up (an `lstat` each, most of a large folder's listing). What the read
   * cannot settle is looked up as ever: symlinks (where they lead) and names that are not UTF-8,
   * so the names and types are those of the full listing.
   */
  namesOnly?: boolean;
  /**
   * From which size on disk a folder is big, its names sorted on disk in runs of `runNames`
   * (default `bigFolderLimits()`, lib/name_runs.ts: 1 MiB and 50,000 names).
   */
  limits?: { bigBytes: number; runNames: number };
}

/**
 * One folder of {@link walkFolderListing}: its entries, and with `recursive` its subfolders;
 * null, without a read, for a folder at least `bigBytes` on disk (see {@link listBigFolder}).
 */
async function listFolder(
  store: ListedRoot,
  { path: dir, prefix }: Folder,
  recursive: boolean,
  namesOnly: boolean,
  bigBytes: number,
): Promise<ListedFolder<Folder> | null> {
  const entries: TreeEntry[] = [];
  const below: { name: string; folder: Folder }[] = [];
  // The whole folder is looked up on a disk thread, symlinks' targets included.
  // Split between two threads: someone waits for this listing, and a large folder's lookups
  // are most of its time. Names alone need no lookup of what the read settles.
  const fromRead = namesOnly && readSettlesNames(dir);
  const folder = await diskPool.folderUnlessBig(dir, {
    follow: true,
    split: true,
    bigBytes,
    trustKinds: fromRead ? KIND_FILE | KIND_DIR : 0,
  });
  if (!folder) return null;
  for (const { name: base, reachable, undecodable, at } of readNames(folder)) {
    if (isPrivateName(prefix, base)) continue;
    const name = prefix + base;
    for (const listed of undecodable) {
      const entry = undecodableEntry(name, listed);
      if (entry) entries.push(entry);
    }
    if (!reachable) continue;
    const read = fromRead ? entryFromRead(name, reachable) : undefined;
    if (read) {
      entries.push(read);
      if (recursive && read.type === "dir") {
        below.push({ name, folder: subfolder(dir, base, name) });
      }
      continue;
    }
    // By place where the name has one, as most have: no index of the names to build.
    const link = reachable.isSymlink;
    const info = link ? null : lookedUp(at === undefined ? folder.info(base) : folder.infoAt(at));
    const target = link
      ? lookedUp(at === undefined ? folder.target(base) : folder.targetAt(at))
      : null;
    const entry = listedEntry(store, name, reachable, info, target);
    if (!entry) continue;
    entries.push(entry);
    if (recursive && entry.type === "dir") below.push({ name, folder: subfolder(dir, base, name) });
  }
  return { entries, below };
}

/** The subfolder `base` of the folder `dir`, listed as `name`, to walk into. */
function subfolder(dir: string, base: string, name: string): Folder {
  return { path: join(dir, base), prefix: name + "/" };
}

/*
 * A big folder's listing (a folder at least `BIG_FOLDER_BYTES` on disk): its names are read as
 * they come and sorted by an external sort (lib/name_runs.ts), on a disk thread, whose runs go to
 * the staging folder, each name as a record (lib/folder_records.ts). Each chunk of records is
 * looked up when the listing reaches it.
 */

/** How {@link listBigFolder} lists. */
interface BigFolderOptions {
  recursive: boolean;
  namesOnly: boolean;
  /** Names per sorted run. */
  runNames: number;
}

/** One big folder of {@link walkFolderListing}: its steps, sorted on disk, a chunk at a time. */
async function listBigFolder(
  store: ListedRoot,
  folder: Folder,
  options: BigFolderOptions,
): Promise<ListedFolder<Folder>> {
  const { recursive, namesOnly, runNames } = options;
  const { path: dir, prefix } = folder;
  // Read and sorted on a disk thread: a sort of a run's names holds its thread for some 100 ms.
  const sorted = await diskPool.sortedRecords({
    dir,
    skip: [...privateNamesIn(prefix)],
    descend: recursive,
    runNames,
    spillDir: store.stagingDir,
  });
  // Names that read alike are told apart as the chunks come, in the listing's order.
  const alike = new AlikeNames();
  /**
   * What a names-only listing takes from a record without a lookup (see listFolder): its entry,
   * or the walk into a subfolder the read settles as one (as entryFromRead would list it).
   */
  const readSettles = namesOnly && readSettlesNames(dir);
  const fromRead = (record: string): ListedStep<Folder> | undefined => {
    if (!readSettles) return undefined;
    const listed = recordEntry(record);
    const entry = entryFromRead(prefix + listed.name, listed);
    if (!entry) return undefined;
    if (!isDescent(record)) return { entry };
    return entry.type === "dir" ? { folder: subfolder(dir, listed.name, entry.name) } : undefined;
  };
  const stepOf = (record: string, view: FolderView): ListedStep<Folder> | null => {
    const listed = recordEntry(record);
    if (!isDescent(record)) {
      const entry = entryFromView(store, view, prefix, listed, alike);
      return entry ? { entry } : null;
    }
    const base = listed.name;
    const info = view.info(base);
    if (!alike.owns(listed, info, "/" + base)) return null;
    if (!lookedUp(info)) return null;
    return { folder: subfolder(dir, base, prefix + base) };
  };
  return {
    entries: [],
    below: [],
    ordered: {
      next: async () => {
        while (true) {
          const records = await sorted.take();
          if (records.length === 0) return [];
          const read = records.map(fromRead);
          const names = [...new Set(records.filter((_, i) => !read[i]).map(recordName))];
          const view = names.length === 0
            ? undefined
            : await diskPool.folder(dir, { names, follow: true });
          const steps: ListedStep<Folder>[] = [];
          for (const [i, record] of records.entries()) {
            const step = read[i] ?? stepOf(record, view!);
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
 * The names in the folder as `folder` found them: names that read alike (not valid UTF-8, see
 * lib/listing_rules.ts `AlikeNames`) grouped, the one the name leads to told from the others.
 * Any other name is one entry's alone.
 */
function readNames(folder: FolderView): FolderName[] {
  const NONE: DiskDirEntry[] = [];
  const names: FolderName[] = [];
  const groups = new Map<string, DiskDirEntry[]>();
  for (let i = 0; i < folder.names.length; i++) {
    const name = folder.names[i];
    if (!name.includes(REPLACEMENT_CHAR)) {
      names.push({ name, reachable: folder.entry(i), undecodable: NONE, at: i });
      continue;
    }
    const group = groups.get(name);
    if (group) group.push(folder.entry(i));
    else groups.set(name, [folder.entry(i)]);
  }
  const alike = new AlikeNames();
  for (const [name, group] of groups) {
    const info = folder.info(name);
    const real = group.findIndex((entry) => alike.owns(entry, info));
    names.push({
      name,
      reachable: real >= 0 ? group[real] : undefined,
      undecodable: group.filter((_, i) => i !== real),
    });
  }
  return names;
}
