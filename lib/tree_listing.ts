/**
 * The order of a typed listing, and the walk that produces it a folder at a time: every store
 * lists in this order, so a listing can go out as it is walked, whatever its size, holding one
 * folder's names per level of the tree and never the whole listing.
 *
 * The order is the one listings always had: entries sorted by their whole name as JavaScript
 * compares strings (UTF-16 code units). It needs no more than a depth-first walk: everything
 * under the folder `a` starts with `a/`, so it falls, as one run, where the key `a/` falls among
 * the folder's own names (`a` itself, `a-b`, `a.txt`, then `a/...`, then `a0`).
 *
 * @module
 */

import type { TreeEntry } from "./tree_protocol.ts";

/** A listing under way: its entries in listing order, a batch at a time. */
export type TreeListing = AsyncIterable<TreeEntry[]>;

/** Most entries in one batch of a {@link TreeListing}. */
export const LISTING_BATCH = 1024;

/** One folder as a store lists it for {@link walkListing}. */
export interface ListedFolder<F> {
  /** The folder's own entries (names relative to the root), in any order. */
  entries: TreeEntry[];
  /** The subfolders to walk into (a recursive listing), each with its name and its handle. */
  below: { name: string; folder: F }[];
  /**
   * Or, for a folder too big to sort in memory, all of its steps already in the listing's order
   * (`entries` and `below` are then empty), a chunk at a time.
   */
  ordered?: OrderedSteps<F>;
}

/** A big folder's steps in listing order (see {@link ListedFolder.ordered}). */
export interface OrderedSteps<F> {
  /** The next steps; none once all are out. */
  next(): Promise<ListedStep<F>[]>;
  /** Called once the folder is walked, or the walk given up: gives back what it holds. */
  close(): void;
}

/** An entry of a folder, or one of its subfolders to walk into. */
export type ListedStep<F> = { entry: TreeEntry } | { entry?: undefined; folder: F };

/**
 * Lists one folder: `top` is true for the folder the listing starts from. Null leaves the folder
 * out (one the store may not read, say); a throw ends the listing.
 */
export type ListFolder<F> = (folder: F, top: boolean) => Promise<ListedFolder<F> | null>;

/** Compares two names as listings order them (see the module's comment). */
export function compareListed(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

type Step<F> = ListedStep<F> & { key: string };

/**
 * Walks a tree from `top` in listing order, depth first, with `list` looking up one folder at a
 * time; yields the entries in batches of at most {@link LISTING_BATCH}. What it holds is the
 * sorted names of each folder on the way down, nothing more.
 *
 * @example
 * ```ts
 * import { walkListing } from "./tree_listing.ts";
 *
 * const listing = walkListing("", (dir) =>
 *   Promise.resolve({
 *     entries: dir === "" ? [{ name: "a", type: "dir", size: 0, mtime: 0 }] : [],
 *     below: dir === "" ? [{ name: "a", folder: "a" }] : [],
 *   }));
 * for await (const batch of listing) console.log(batch.map((e) => e.name));
 * ```
 */
export async function* walkListing<F>(
  top: F,
  list: ListFolder<F>,
): AsyncGenerator<TreeEntry[]> {
  yield* walkFolder(top, list, true);
}

async function* walkFolder<F>(
  folder: F,
  list: ListFolder<F>,
  top: boolean,
): AsyncGenerator<TreeEntry[]> {
  const listed = await list(folder, top);
  if (!listed) return;
  if (listed.ordered) {
    yield* walkOrdered(listed.ordered, list);
    return;
  }
  const steps: Step<F>[] = listed.entries.map((entry) => ({ key: entry.name, entry }));
  for (const { name, folder } of listed.below) steps.push({ key: name + "/", folder });
  listed.entries = [];
  // Stable: entries of one name (names that are not UTF-8 can read alike) keep the store's order.
  steps.sort((a, b) => compareListed(a.key, b.key));
  // Walked as a big folder's one chunk would be.
  let given = false;
  const whole: OrderedSteps<F> = {
    next: () => Promise.resolve(given ? [] : (given = true, steps)),
    close: () => {},
  };
  yield* walkOrdered(whole, list);
}

/** A folder's walk from its steps, sorted already, a chunk at a time. */
async function* walkOrdered<F>(
  ordered: OrderedSteps<F>,
  list: ListFolder<F>,
): AsyncGenerator<TreeEntry[]> {
  try {
    let batch: TreeEntry[] = [];
    for (let steps = await ordered.next(); steps.length > 0; steps = await ordered.next()) {
      for (const step of steps) {
        if (step.entry) {
          batch.push(step.entry);
          if (batch.length >= LISTING_BATCH) {
            yield batch;
            batch = [];
          }
          continue;
        }
        if (batch.length > 0) {
          yield batch;
          batch = [];
        }
        yield* walkFolder(step.folder, list, false);
      }
    }
    if (batch.length > 0) yield batch;
  } finally {
    ordered.close();
  }
}
