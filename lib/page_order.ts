/**
 * The order of a big folder's pages and the places in it: a sort (by name, size or modification
 * time, ascending or descending, folders always first), a cursor that names a place in that order
 * (the sort's key and the name, never an offset, so a page's address stays right while files come
 * and go), and the checks of what a URL brings for them (`?sort=`, `?order=`, `?after=`, `?q=`).
 * lib/folder_page.ts picks a page in this order.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import { compareListed } from "./tree_listing.ts";
import { BIDI_CONTROL, CONTROL_CHAR } from "./terminal_chars.ts";
import { utf8Length } from "./format.ts";
import { MAX_NAME_BYTES } from "./remote_name.ts";

/** What a folder's page is sorted by: the name, the size or the modification time. */
export type SortKey = "name" | "size" | "mtime";

/** The sort keys, as `?sort=` names them. */
export const SORT_KEYS: readonly SortKey[] = ["name", "size", "mtime"];

/** A page's order: by `key`, folders first, ties by name; `descending` reverses both. */
export interface PageSort {
  /** What the entries are sorted by. */
  key: SortKey;
  /** Largest, newest or last name first (within the folders, then within the files). */
  descending: boolean;
}

/** The order of a folder shown whole, and of a page unless told otherwise. */
export const BY_NAME: PageSort = { key: "name", descending: false };

/** A place in a folder's page order: after the folder or file `name` (one segment). */
export interface PageCursor {
  /** The entry's name within its folder. */
  name: string;
  /** Whether it is a folder (folders come before every file). */
  dir: boolean;
  /** In a sort by size or date, the entry's size in bytes or its mtime in ms since the epoch. */
  key?: number;
}

/**
 * Entries on a page of a big folder, unless the server is told otherwise (`--http-page-size`):
 * few enough for a browser to draw at once, where a whole folder of 100,000 rows takes it tens
 * of seconds (docs/performance.md, "A big folder in the browser").
 */
export const PAGE_SIZE = 1000;

/** Longest query accepted, in characters. */
export const MAX_QUERY_CHARS = 256;
/** A cursor's key: a whole number of at most 16 digits (sizes and ms dates fit). */
const KEY = /^-?\d{1,16}$/;

/**
 * Reads `?sort=` and `?order=` (null where absent): `name` (default), `size` or `mtime`, and
 * `asc` (default) or `desc`. Anything else is refused (`StoreError` `bad_request`).
 *
 * @example
 * ```ts
 * import { parseSort } from "./page_order.ts";
 *
 * console.log(parseSort("mtime", "desc")); // { key: "mtime", descending: true }
 * ```
 */
export function parseSort(sort: string | null, order: string | null): PageSort {
  // The refusal shows what was sent only when it is a plain word: nothing in a message may
  // reorder or hide the text around it.
  const shown = (text: string) => /^[\w-]*$/.test(text) ? `"${text.slice(0, 40)}"` : "it";
  if (sort !== null && !(SORT_KEYS as readonly string[]).includes(sort)) {
    throw new StoreError(
      "bad_request",
      `Refused ?sort: ${shown(sort)} is not one of ${SORT_KEYS.join(", ")}`,
    );
  }
  if (order !== null && order !== "asc" && order !== "desc") {
    throw new StoreError("bad_request", `Refused ?order: ${shown(order)} is not asc or desc`);
  }
  return { key: (sort ?? "name") as SortKey, descending: order === "desc" };
}

/** The URL parameters of a sort: none for {@link BY_NAME}. */
export function sortParams(sort: PageSort): [string, string][] {
  const params: [string, string][] = [];
  if (sort.key !== "name") params.push(["sort", sort.key]);
  if (sort.descending) params.push(["order", "desc"]);
  return params;
}

/**
 * The cursor as a URL carries it: the name, with `/` after it for a folder (`photos/`,
 * `report.pdf`), after the key and a `/` in a sort by size or date (`4096/report.pdf`): no name
 * holds a slash, so neither is ever read as part of it.
 */
export function formatCursor(cursor: PageCursor): string {
  return (cursor.key === undefined ? "" : `${cursor.key}/`) + cursor.name +
    (cursor.dir ? "/" : "");
}

/**
 * Reads a cursor as {@link formatCursor} writes it for the sort `sort`. It is only ever compared
 * with names and keys, never used as a path; still, anything that cannot be one name (a slash
 * inside, `.`, `..`, a NUL, over 1024 bytes) or, in a sort by size or date, has no whole number
 * before it, is refused (`StoreError` `bad_request`). A name the listing shows but no request can
 * carry (control characters, U+FFFD for bytes that are not UTF-8) is a valid cursor.
 *
 * @example
 * ```ts
 * import { parseCursor } from "./page_order.ts";
 *
 * console.log(parseCursor("photos/")); // { name: "photos", dir: true }
 * console.log(parseCursor("4096/a.txt", { key: "size", descending: true }));
 * // { name: "a.txt", dir: false, key: 4096 }
 * ```
 */
export function parseCursor(text: string, sort: PageSort = BY_NAME): PageCursor {
  const refuse = (why: string) => new StoreError("bad_request", `Refused ?after: ${why}`);
  let key: number | undefined;
  if (sort.key !== "name") {
    const cut = text.indexOf("/");
    const what = sort.key === "size" ? "SIZE" : "MTIME";
    if (cut < 0 || !KEY.test(text.slice(0, cut))) {
      throw refuse(`in a sort by ${sort.key} it is ${what}/NAME, a whole number then a name`);
    }
    key = Number(text.slice(0, cut));
    if (!Number.isSafeInteger(key)) throw refuse(`its ${sort.key} is out of range`);
    text = text.slice(cut + 1);
  }
  const dir = text.endsWith("/");
  const name = dir ? text.slice(0, -1) : text;
  if (name === "") throw refuse("it names no entry");
  if (name.includes("/")) throw refuse("a name in this folder has no slash inside");
  if (name === "." || name === "..") throw refuse(`"${name}" is not a name in a folder`);
  if (name.includes("\0")) throw refuse("it contains a NUL byte");
  // A name's longest, as the store checks it.
  if (utf8Length(name) > MAX_NAME_BYTES) {
    throw refuse(`it is longer than ${MAX_NAME_BYTES} bytes`);
  }
  return key === undefined ? { name, dir } : { name, dir, key };
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

/** Folders before files, whatever the sort: the first rule of every page order. */
function foldersFirst(a: PageCursor, b: PageCursor): number {
  return a.dir === b.dir ? 0 : a.dir ? -1 : 1;
}

/** Compares two places by name: folders first, then by name (tree_listing.ts's order). */
export function comparePlaces(a: PageCursor, b: PageCursor): number {
  return foldersFirst(a, b) || compareListed(a.name, b.name);
}

/**
 * How places compare in the order `sort`: folders first, then by the key (the name, or the
 * size or date then the name), reversed for a descending sort. Two places compare equal only
 * when they have the same name, kind and key, so the order is total over a folder's entries.
 *
 * @example
 * ```ts
 * import { placeOrder } from "./page_order.ts";
 *
 * const newestFirst = placeOrder({ key: "mtime", descending: true });
 * const places = [{ name: "a", dir: false, key: 1 }, { name: "b", dir: false, key: 2 }];
 * console.log(places.sort(newestFirst).map((p) => p.name)); // ["b", "a"]
 * ```
 */
export function placeOrder(sort: PageSort): (a: PageCursor, b: PageCursor) => number {
  const sign = sort.descending ? -1 : 1;
  if (sort.key === "name") {
    return sort.descending
      ? (a, b) => foldersFirst(a, b) || compareListed(b.name, a.name)
      : comparePlaces;
  }
  return (a, b) =>
    foldersFirst(a, b) || sign * ((a.key ?? 0) - (b.key ?? 0) || compareListed(a.name, b.name));
}
