/**
 * One page of one folder: the next entries after a cursor, in the page's order (folders first,
 * each group by name, as lib/tree_listing.ts orders them), picked from an unsorted read of the
 * folder in memory bounded by the page size, never by the folder's. The read keeps, in bounded
 * heaps, the page's entries, the page before it and the last page, and counts the rest; only the
 * page's own entries are then looked up (size, date). A cursor is a name in that order (not an
 * offset), so a page's address stays right while files come and go. What a page lists follows
 * the folder listing's rules (lib/file_store.ts `walkListing`): the private folders, special
 * files, symlinks to folders and symlinks leading out are left out; a name that is not valid
 * UTF-8 is listed marked `notUtf8`.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import { childOf, REPLACEMENT_CHAR } from "./disk_jobs.ts";
import { compareListed } from "./tree_listing.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import { checkName } from "./remote_name.ts";
import { BIDI_CONTROL, CONTROL_CHAR } from "./terminal_chars.ts";
import { resolveFolder, type ServedFolder } from "./tree_store.ts";

/** A place in a folder's page order: after the folder or file `name` (one segment). */
export interface PageCursor {
  /** The entry's name within its folder. */
  name: string;
  /** Whether it is a folder (folders come before every file). */
  dir: boolean;
}

/**
 * Entries on a page of a big folder, unless the server is told otherwise (`--http-page-size`):
 * few enough for a browser to draw at once, where a whole folder of 100,000 rows takes it tens
 * of seconds (docs/performance.md, "A big folder in the browser").
 */
export const PAGE_SIZE = 1000;

/** Longest cursor or query accepted, in UTF-8 bytes (a name's longest, as the store checks it). */
const MAX_CURSOR_BYTES = 1024;
/** Longest query accepted, in characters. */
export const MAX_QUERY_CHARS = 256;

/**
 * The cursor as a URL carries it: the name, with `/` after it for a folder (`photos/`,
 * `report.pdf`).
 */
export function formatCursor(cursor: PageCursor): string {
  return cursor.name + (cursor.dir ? "/" : "");
}

/**
 * Reads a cursor as {@link formatCursor} writes it. It is only ever compared with names, never
 * used as a path; still, anything that cannot be one name (a slash inside, `.`, `..`, a NUL,
 * over 1024 bytes) is refused (`StoreError` `bad_request`). A name the listing shows but no
 * request can carry (control characters, U+FFFD for bytes that are not UTF-8) is a valid cursor.
 *
 * @example
 * ```ts
 * import { parseCursor } from "./folder_page.ts";
 *
 * console.log(parseCursor("photos/")); // { name: "photos", dir: true }
 * ```
 */
export function parseCursor(text: string): PageCursor {
  const dir = text.endsWith("/");
  const name = dir ? text.slice(0, -1) : text;
  const refuse = (why: string) => new StoreError("bad_request", `Refused ?after: ${why}`);
  if (name === "") throw refuse("it names no entry");
  if (name.includes("/")) throw refuse("a name in this folder has no slash inside");
  if (name === "." || name === "..") throw refuse(`"${name}" is not a name in a folder`);
  if (name.includes("\0")) throw refuse("it contains a NUL byte");
  if (new TextEncoder().encode(name).length > MAX_CURSOR_BYTES) {
    throw refuse(`it is longer than ${MAX_CURSOR_BYTES} bytes`);
  }
  return { name, dir };
}

/**
 * Checks a query (`?q=`): at most {@link MAX_QUERY_CHARS} characters, none a control character
 * (C0, DEL, C1) or a bidirectional control, as for a name (lib/remote_name.ts `checkName`).
 * Returns it trimmed ("" for none).
 */
export function parseQuery(text: string): string {
  const query = text.trim();
  if (query.length > MAX_QUERY_CHARS) {
    throw new StoreError(
      "bad_request",
      `Refused ?q: it is longer than ${MAX_QUERY_CHARS} characters`,
    );
  }
  // The page shows the query: nothing in it may reorder or hide the text around it.
  if (CONTROL_CHAR.test(query)) {
    throw new StoreError("bad_request", "Refused ?q: it contains a control character");
  }
  if (BIDI_CONTROL.test(query)) {
    throw new StoreError(
      "bad_request",
      "Refused ?q: it contains a bidirectional control character",
    );
  }
  return query;
}

/** Compares two places in page order: folders first, then by name (tree_listing.ts's order). */
export function comparePlaces(a: PageCursor, b: PageCursor): number {
  return (a.dir === b.dir ? 0 : a.dir ? -1 : 1) || compareListed(a.name, b.name);
}

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

/** One entry as the read of a folder found it, before it is looked up. */
export interface Found extends PageCursor {
  /** The real path a symlinked file leads to; undefined for anything else. */
  target?: string;
}

/** What a page is given: where it starts, what it keeps, and how many. */
export interface PageRequest {
  /** Start after this place (default: the folder's first entry). */
  after?: PageCursor;
  /** Keep only names holding this text, compared case-insensitively (default: all). */
  query?: string;
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
    const reversed = (a: Found, b: Found) => comparePlaces(b, a);
    this.#page = new BoundedHeap(this.#size, comparePlaces);
    // One more than a page: the entry before a page's first is the cursor that leads to it.
    this.#previous = new BoundedHeap(this.#size + 1, reversed);
    this.#last = new BoundedHeap(this.#size + 1, reversed);
  }

  /** Takes one entry the folder lists. */
  add(found: Found): void {
    this.total++;
    if (this.#query && !found.name.toLowerCase().includes(this.#query)) return;
    this.matching++;
    this.#last.offer(found);
    if (this.#after && comparePlaces(found, this.#after) <= 0) {
      this.before++;
      this.#previous.offer(found);
    } else {
      this.#page.offer(found);
    }
  }

  /** The page's entries, in order, and where its links lead. */
  result(): { entries: Found[]; previous: PageLink; next: PageLink; last: PageLink } {
    const entries = this.#page.sorted();
    const place = (found: Found): PageCursor => ({ name: found.name, dir: found.dir });
    const previous = this.before === 0
      ? undefined
      : this.before <= this.#size
      ? null
      : place(this.#previous.sorted().at(-1)!);
    const after = this.matching - this.before;
    const next = after > this.#size ? place(entries.at(-1)!) : undefined;
    const last = this.matching <= this.#size ? null : place(this.#last.sorted().at(-1)!);
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

/**
 * One page of the folder `dir` (the root when absent), read as {@link PageSelector} describes.
 * The folder is read once, a batch of names at a time; only symlinks are looked up during the
 * read (whether they lead to a file inside the root), and then only the page's own entries.
 *
 * @example
 * ```ts ignore
 * import { listFolderPage } from "./folder_page.ts";
 * import { FileStore } from "./file_store.ts";
 *
 * const store = await FileStore.open("./share");
 * const page = await listFolderPage(store, { dir: "photos", size: 1000 });
 * console.log(page.entries.length, "of", page.total);
 * ```
 */
export async function listFolderPage(
  store: ServedFolder,
  options: PageRequest & { dir?: string },
): Promise<FolderPage> {
  const folder = await resolveFolder(store, options.dir);
  const prefix = options.dir === undefined ? "" : checkName(options.dir).join("/") + "/";
  const selector = new PageSelector(options);
  const top = folder === store.root;
  for await (const entry of Deno.readDir(folder)) {
    if (entry.isFile) {
      selector.add({ name: entry.name, dir: false });
      continue;
    }
    if (entry.isDirectory) {
      // The private folders, at the top, are the only folders inside the root not inside it.
      if (!top || store.isInside(childOf(folder, entry.name))) {
        selector.add({ name: entry.name, dir: true });
      }
      continue;
    }
    if (!entry.isSymlink) continue;
    // Symlinked files are listed only when they stay inside; folders are not followed.
    const target = await Deno.realPath(childOf(folder, entry.name)).catch(() => null);
    if (!target || !store.isInside(target)) continue;
    const info = await Deno.stat(target).catch(() => null);
    if (info?.isFile) selector.add({ name: entry.name, dir: false, target });
  }
  const { entries, previous, next, last } = selector.result();
  const infos = await Promise.all(
    entries.map((found) =>
      (found.target ? Deno.stat(found.target) : Deno.lstat(childOf(folder, found.name)))
        .catch(() => null)
    ),
  );
  const listed: TreeEntry[] = [];
  const claimed = new Set<string>();
  entries.forEach((found, i) => {
    const info = infos[i];
    const name = prefix + found.name;
    const type = found.dir ? "dir" : "file";
    const same = info !== null && (found.dir ? info.isDirectory : info.isFile);
    if (found.name.includes(REPLACEMENT_CHAR)) {
      // Names that are not UTF-8 read with U+FFFD and can read alike: at most one of them is
      // really called that (the one a lookup by the name finds); no request reaches the others.
      if (!same || claimed.has(found.name)) {
        listed.push({ name, type, size: 0, mtime: 0, notUtf8: true });
        return;
      }
      claimed.add(found.name);
    }
    // Gone, or replaced by something else, since the read: not listed.
    if (!same) return;
    listed.push({
      name,
      type,
      size: found.dir ? 0 : info.size,
      mtime: info.mtime?.getTime() ?? 0,
    });
  });
  return {
    entries: listed,
    total: selector.total,
    matching: selector.matching,
    before: selector.before,
    previous,
    next,
    last,
  };
}
