/**
 * One page of one folder: the next entries after a cursor, in the page's order (lib/page_order.ts:
 * by name, size or date, ascending or descending, folders first), picked from an unsorted read of
 * the folder in memory bounded by the page size, never by the folder's. The read keeps, in
 * bounded heaps, the page's entries, the page before it and the last page, and counts the rest.
 * A page by name looks up, during the read, only its symlinks (whether each is listed), then the
 * page's own entries (size, date); a page by size or date looks every entry up during the read,
 * a batch at a time on a disk thread. A cursor is a place in that order (not an offset), so a
 * page's address stays right while files come and go. What a page lists follows the folder
 * listing's rules (lib/listing_rules.ts), the very ones `ferry list` follows.
 *
 * @module
 */

import { checkName } from "./remote_name.ts";
import { resolveFolder, type ServedFolder } from "./tree_store.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import type { DiskDirEntry } from "./folder_entries.ts";
import { diskPool, type FolderView } from "./disk_pool.ts";
import { AlikeNames, entryFromView, isPrivateName, mayList } from "./listing_rules.ts";
import { BY_NAME, type PageCursor, type PageSort, placeOrder } from "./page_order.ts";

/**
 * The `limit` smallest items under `compare` seen so far, in a binary heap whose top is the
 * largest kept: each {@link offer} costs O(log limit), and memory never grows past `limit`.
 *
 * @example
 * ```ts
 * import { BoundedHeap } from "./folder_page.ts";
 *
 * const heap = new BoundedHeap<number>(2, (a, b) => a - b);
 * for (const n of [5, 1, 4, 2]) heap.offer(n);
 * console.log(heap.sorted()); // [1, 2]
 * ```
 */
export class BoundedHeap<T> {
  #items: T[] = [];
  readonly #limit: number;
  readonly #compare: (a: T, b: T) => number;

  constructor(limit: number, compare: (a: T, b: T) => number) {
    this.#limit = limit;
    this.#compare = compare;
  }

  /** How many items are kept. */
  get size(): number {
    return this.#items.length;
  }

  /** Keeps `item` if it is among the `limit` smallest so far. */
  offer(item: T): void {
    const items = this.#items;
    if (this.#limit <= 0) return;
    if (items.length < this.#limit) {
      items.push(item);
      this.#up(items.length - 1);
    } else if (this.#compare(item, items[0]) < 0) {
      items[0] = item;
      this.#down(0);
    }
  }

  /** The largest item kept (the heap's top, so no sort), undefined when none is. */
  largest(): T | undefined {
    return this.#items[0];
  }

  /** The items kept, smallest first. */
  sorted(): T[] {
    return [...this.#items].sort(this.#compare);
  }

  #up(i: number): void {
    const items = this.#items;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.#compare(items[i], items[parent]) <= 0) return;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  #down(i: number): void {
    const items = this.#items;
    for (;;) {
      const left = 2 * i + 1, right = left + 1;
      let top = i;
      if (left < items.length && this.#compare(items[left], items[top]) > 0) top = left;
      if (right < items.length && this.#compare(items[right], items[top]) > 0) top = right;
      if (top === i) return;
      [items[i], items[top]] = [items[top], items[i]];
      i = top;
    }
  }
}

/** One entry as the read of a folder found it, before or after it is looked up. */
export interface Found extends PageCursor {
  /** The entry as the folder's read gave it (absent in a test's selector). */
  listed?: DiskDirEntry;
  /** What the listing shows of it, where the read looked it up (a sort by size or date). */
  entry?: TreeEntry;
}

/** What a page is given: where it starts, what it keeps, in which order, and how many. */
export interface PageRequest {
  /** Start after this place (default: the folder's first entry). */
  after?: PageCursor;
  /** Keep only names holding this text, compared case-insensitively (default: all). */
  query?: string;
  /** The page's order (default {@link BY_NAME}). */
  sort?: PageSort;
  /** Most entries on the page. */
  size: number;
}

/**
 * Where a page's links lead: `null` is the first page (no cursor), undefined means there is no
 * such page.
 */
export type PageLink = PageCursor | null | undefined;

/** Picks one page from a folder's entries, as they come in any order (see the module). */
export class PageSelector {
  readonly #after?: PageCursor;
  readonly #query: string;
  readonly #size: number;
  readonly #compare: (a: PageCursor, b: PageCursor) => number;
  readonly #keyed: boolean;
  #page: BoundedHeap<Found>;
  #previous: BoundedHeap<Found>;
  #last: BoundedHeap<Found>;
  /** Entries the folder lists. */
  total = 0;
  /** Of those, the ones the query keeps. */
  matching = 0;
  /** Of those, the ones before the page (at or before the cursor). */
  before = 0;

  constructor(request: PageRequest) {
    this.#after = request.after;
    this.#query = (request.query ?? "").toLowerCase();
    this.#size = Math.max(1, request.size);
    const sort = request.sort ?? BY_NAME;
    this.#keyed = sort.key !== "name";
    const compare = this.#compare = placeOrder(sort);
    const reversed = (a: Found, b: Found) => compare(b, a);
    this.#page = new BoundedHeap(this.#size, compare);
    // One more than a page: the entry before a page's first is the cursor that leads to it.
    this.#previous = new BoundedHeap(this.#size + 1, reversed);
    this.#last = new BoundedHeap(this.#size + 1, reversed);
  }

  /** Whether the query keeps the name `name` (every name without a query). */
  keeps(name: string): boolean {
    return !this.#query || name.toLowerCase().includes(this.#query);
  }

  /** Takes one entry the folder lists (with its `key` in a sort by size or date). */
  add(found: Found): void {
    this.total++;
    if (!this.keeps(found.name)) return;
    this.matching++;
    this.#last.offer(found);
    if (this.#after && this.#compare(found, this.#after) <= 0) {
      this.before++;
      this.#previous.offer(found);
    } else {
      this.#page.offer(found);
    }
  }

  /** The page's entries, in order, and where its links lead. */
  result(): { entries: Found[]; previous: PageLink; next: PageLink; last: PageLink } {
    const entries = this.#page.sorted();
    const place = (found: Found): PageCursor =>
      this.#keyed
        ? { name: found.name, dir: found.dir, key: found.key ?? 0 }
        : { name: found.name, dir: found.dir };
    const previous = this.before === 0
      ? undefined
      : this.before <= this.#size
      ? null
      : place(this.#previous.largest()!);
    const after = this.matching - this.before;
    const next = after > this.#size ? place(entries.at(-1)!) : undefined;
    const last = this.matching <= this.#size ? null : place(this.#last.largest()!);
    return { entries, previous, next, last };
  }
}

/** One page of a folder: its entries, counts and links (see {@link listFolderPage}). */
export interface FolderPage {
  /** The page's entries in page order, names full from the root, as the folder listing's. */
  entries: TreeEntry[];
  /** Entries the folder lists. */
  total: number;
  /** Of those, the ones the query keeps (`total` without a query). */
  matching: number;
  /** Of those, the ones before the page. */
  before: number;
  /** The page before this one. */
  previous: PageLink;
  /** The page after this one. */
  next: PageLink;
  /** The last page (null when the first is also the last). */
  last: PageLink;
}

/** What {@link listFolderPage} reads: a page of a folder. */
export interface FolderPageRequest extends PageRequest {
  /** The folder, relative to the root (default: the root). */
  dir?: string;
  /**
   * Its real path, when the caller has found it already (lib/tree_store.ts `resolveFolder`):
   * it is not found again. Default: found here.
   */
  folder?: string;
}

/** Entries looked up in one job on a disk thread while a folder is read for a page. */
const LOOKUP_BATCH = 1024;

/**
 * One page of the folder `dir` (the root when absent), read as {@link PageSelector} describes.
 * The folder is read once, a batch of names at a time; the lookups it needs (see the module) are
 * done a batch at a time on a disk thread (lib/disk_pool.ts).
 *
 * @example
 * ```ts ignore
 * import { listFolderPage } from "./folder_page.ts";
 * import { FileStore } from "./file_store.ts";
 *
 * const store = await FileStore.open("./share");
 * const newest = { key: "mtime", descending: true } as const;
 * const page = await listFolderPage(store, { dir: "photos", size: 1000, sort: newest });
 * console.log(page.entries.length, "of", page.total);
 * ```
 */
export async function listFolderPage(
  store: ServedFolder,
  options: FolderPageRequest,
): Promise<FolderPage> {
  const folder = options.folder ?? await resolveFolder(store, options.dir);
  const prefix = options.dir === undefined ? "" : checkName(options.dir).join("/") + "/";
  const sort = options.sort ?? BY_NAME;
  const keyOf = (entry: TreeEntry) => sort.key === "size" ? entry.size : entry.mtime;
  const selector = new PageSelector(options);
  // Names that read alike (not UTF-8) are told apart in the order the folder gives them.
  const alike = new AlikeNames();
  const place = (batch: DiskDirEntry[], view: FolderView) => {
    batch.forEach((listed, at) => {
      const entry = entryFromView(store, view, prefix, listed, alike, at);
      if (!entry) return;
      const dir = entry.type === "dir";
      selector.add({ name: listed.name, dir, key: keyOf(entry), listed, entry });
    });
  };
  // A batch's lookups run on a disk thread while the read goes on; the batch before it is
  // placed meanwhile, so at most two are under way.
  let batch: DiskDirEntry[] = [];
  let placing: Promise<void> | undefined;
  const lookUp = async () => {
    const taken = batch;
    batch = [];
    const view = diskPool.folder(folder, {
      names: taken.map((listed) => listed.name),
      follow: true,
    });
    view.catch(() => {}); // Awaited (and its failure thrown) once the batch before is placed.
    const before = placing;
    placing = (async () => {
      await before;
      place(taken, await view);
    })();
    placing.catch(() => {}); // Awaited below, or by the next batch.
    await before;
  };
  for await (const listed of Deno.readDir(folder)) {
    if (!mayList(listed) || isPrivateName(prefix, listed.name)) continue;
    // By name, a file or a folder is placed as the read gives it, and so is one the search
    // leaves out (it is only counted); a symlink is listed (and placed as a file) only once its
    // lookup says where it leads.
    if (!listed.isSymlink && (sort.key === "name" || !selector.keeps(listed.name))) {
      selector.add({ name: listed.name, dir: listed.isDirectory, listed });
      continue;
    }
    batch.push(listed);
    if (batch.length >= LOOKUP_BATCH) await lookUp();
  }
  if (batch.length > 0) await lookUp();
  await placing;
  const { entries, previous, next, last } = selector.result();
  return {
    entries: sort.key === "name" ? await lookUpPage(store, folder, prefix, entries) : entries.map(
      (found) => found.entry!,
    ),
    total: selector.total,
    matching: selector.matching,
    before: selector.before,
    previous,
    next,
    last,
  };
}

/**
 * The entries of a page by name, looked up now (size, date) in one job on a disk thread: one gone
 * or replaced since the read is left out, as the listing's rules say.
 */
async function lookUpPage(
  store: ServedFolder,
  folder: string,
  prefix: string,
  page: Found[],
): Promise<TreeEntry[]> {
  if (page.length === 0) return [];
  const view = await diskPool.folder(folder, {
    names: page.map((found) => found.name),
    follow: true,
  });
  const alike = new AlikeNames();
  const entries: TreeEntry[] = [];
  page.forEach((found, at) => {
    const entry = entryFromView(store, view, prefix, found.listed!, alike, at);
    if (entry) entries.push(entry);
  });
  return entries;
}
