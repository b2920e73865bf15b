/**
 * Walking a list of files (mput, mget) as a tree transfer walks a folder: the sender's
 * {@link EntryWalk} over names the user gave, in the list's order, each looked at only when the
 * walk reaches it. A folder's walk, in walk order, is lib/tree_walk.ts's.
 *
 * @module
 */

import type { EntryWalk, WalkEntry } from "./tree_walk.ts";

/**
 * A walk of a list of files (mput, mget), in the list's order: entry `i` is what `at(i)` says,
 * asked for only when the walk reaches it, so the files are looked at one at a time.
 *
 * @example
 * ```ts
 * import { ListWalk } from "./list_walk.ts";
 *
 * const names = ["a.txt", "b.txt"];
 * const walk = await ListWalk.open(names.length, async (i) => {
 *   const info = await Deno.stat(names[i]);
 *   return { path: names[i], type: "file", size: info.size, mtime: 0, mode: 0o644 };
 * });
 * ```
 */
export class ListWalk implements EntryWalk {
  #count: number;
  #at: (index: number) => Promise<WalkEntry>;
  #index = 0;
  #current?: WalkEntry;

  private constructor(count: number, at: (index: number) => Promise<WalkEntry>) {
    this.#count = count;
    this.#at = at;
  }

  /** Starts the walk of `count` entries. */
  static async open(count: number, at: (index: number) => Promise<WalkEntry>): Promise<ListWalk> {
    const walk = new ListWalk(count, at);
    await walk.#load();
    return walk;
  }

  async #load(): Promise<void> {
    this.#current = this.#index < this.#count ? await this.#at(this.#index) : undefined;
  }

  /** The current entry; undefined once the walk is over. */
  peek(): WalkEntry | undefined {
    return this.#current;
  }

  /** Moves to the next entry of the list. */
  async next(): Promise<void> {
    this.#index++;
    await this.#load();
  }
}
