/**
 * `--delete` on a receiving filesystem that folds case (lib/tree_receive_compare.ts's
 * `TreeCompare` with `caseInsensitive`): a name the receiver has under another case than the
 * sender's is the same entry, which the receiver's walk (in code-point order) meets apart from the
 * sender's, before it or after it, even batches later; deleting it as the walk passed it deleted
 * the file just received. So each folder that was there already is swept once the manifest leaves
 * it, of the names whose folded form the sender has not sent there, nor noted. This module owns
 * the folders to sweep, the folded names the sender has in each, and what the walk passed there
 * (bounded); what becomes of a name the sender lacks is the compare's to say.
 *
 * @module
 */

import { foldName } from "./case_folding.ts";
import { MAX_BATCH_ENTRIES } from "./tree_transfer_protocol.ts";
import type { TreeSink } from "./tree_transfer.ts";
import type { WalkEntry } from "./tree_walk.ts";

/**
 * Told of a name that a swept `folder` holds and the sender has under no case, by its path from
 * the receiving folder's top.
 */
export type SweptName = (found: WalkEntry, folder: string) => Promise<void>;

/**
 * The sweeps of one tree transfer's receiving folder, fed as the manifest and the receiver's own
 * walk go on.
 *
 * @example
 * ```ts
 * import { CaseSweeps } from "./tree_receive_sweep.ts";
 * import type { TreeSink } from "./tree_transfer.ts";
 *
 * declare const sink: TreeSink;
 * const sweeps = new CaseSweeps(sink, { maxHeld: 100_000, walked: true });
 * sweeps.sent("README.md"); // the sender has it: no case of it goes
 * sweeps.passed({ path: "readme.md", type: "file", size: 5, mtime: 0, mode: 0o644 });
 * sweeps.passed({ path: "old.txt", type: "file", size: 3, mtime: 0, mode: 0o644 });
 * await sweeps.sweep("", async (found) => {
 *   await sink.remove(found.path); // old.txt alone
 * });
 * ```
 */
export class CaseSweeps {
  #sink: TreeSink;
  #maxHeld: number;
  /** The folders to sweep on the way to the current entry, innermost last. */
  #sweeps: string[] = [];
  /** The folded names the sender has (sent or noted) in each folder to sweep. */
  #sent = new Map<string, Set<string>>();
  /**
   * For each folder to sweep that the walk went into, what the walk passed there that the sender
   * did not have as spelled, so that the sweep need not read the folder again; null once more such
   * names than `maxHeld` are held in all (memory stays bounded): that folder is read again when it
   * is swept.
   */
  #passed = new Map<string, WalkEntry[] | null>();
  /** How many names {@link #passed} holds. */
  #passedCount = 0;

  /**
   * Sweeps of `sink`'s folders. `maxHeld`: most names the walk passed held for the sweeps of the
   * folders it is in, in all. `walked`: the receiving folder was there already, and the walk
   * passes its top.
   */
  constructor(sink: TreeSink, options: { maxHeld: number; walked: boolean }) {
    this.#sink = sink;
    this.#maxHeld = options.maxHeld;
    if (options.walked) this.#passed.set("", []);
  }

  /** A name the sender noted (has and did not send): no case of it goes from its folder. */
  noted(path: string): void {
    // Held until its folder is swept, or entered as new; only a hostile sender's notes, in
    // folders it never sends, would be left over, and past this many they protect nothing.
    if (this.#sent.size < 4 * MAX_BATCH_ENTRIES) this.#sentIn(path);
  }

  /** An entry of the manifest: no case of it goes from its folder, if that is one to sweep. */
  sent(path: string): void {
    const cut = path.lastIndexOf("/");
    const parent = cut < 0 ? "" : path.slice(0, cut);
    if (parent === "" || this.#sweeps.at(-1) === parent) this.#sentIn(path);
  }

  /** The manifest went into `folder`, which the receiver has: it is swept once it is left. */
  entered(folder: string): void {
    this.#sweeps.push(folder);
  }

  /** The walk went into the receiver's `folder`: what it passes there is held for the sweep. */
  walkedInto(folder: string): void {
    this.#passed.set(folder, []);
  }

  /** `folder` is new here: nothing in it to sweep, and no notes to hold for it. */
  made(folder: string): void {
    this.#sent.delete(folder);
  }

  /** The walk passed the receiver's `mine`: held for its folder's sweep, while there is room. */
  passed(mine: WalkEntry): void {
    const cut = mine.path.lastIndexOf("/");
    const parent = cut < 0 ? "" : mine.path.slice(0, cut);
    const passed = this.#passed.get(parent);
    if (!passed) return;
    if (this.#passedCount < this.#maxHeld) {
      passed.push(mine);
      this.#passedCount++;
    } else {
      this.#passed.set(parent, null);
      this.#passedCount -= passed.length;
    }
  }

  /** Sweeps the folders the manifest has left on its way to `path` (all, when undefined). */
  async leave(path: string | undefined, swept: SweptName): Promise<void> {
    const sweeps = this.#sweeps;
    while (sweeps.length > 0 && (path === undefined || !path.startsWith(sweeps.at(-1)! + "/"))) {
      await this.sweep(sweeps.pop()!, swept);
    }
  }

  /** Tells `swept` of each name the folder `folder` holds that the sender has under no case. */
  async sweep(folder: string, swept: SweptName): Promise<void> {
    const keys = this.#sent.get(folder);
    this.#sent.delete(folder);
    const passed = this.#passed.get(folder);
    this.#passed.delete(folder);
    if (passed) {
      // Read once, by the walk: what it passed there is all the folder held.
      this.#passedCount -= passed.length;
      for (const found of passed) {
        const cut = found.path.lastIndexOf("/");
        if (keys?.has(foldName(found.path.slice(cut + 1)))) continue;
        await swept(found, folder);
      }
      return;
    }
    const walk = await this.#sink.walker(folder);
    if (!walk) return;
    try {
      for (let found = walk.peek(); found; found = walk.peek()) {
        await walk.next(false);
        if (keys?.has(foldName(found.path))) continue;
        const path = folder === "" ? found.path : `${folder}/${found.path}`;
        await swept({ ...found, path }, folder);
      }
    } finally {
      walk.close?.();
    }
  }

  /** Notes that the sender has `path`, in its folder's folded names. */
  #sentIn(path: string): void {
    const cut = path.lastIndexOf("/");
    const parent = cut < 0 ? "" : path.slice(0, cut);
    const keys = this.#sent.get(parent) ?? new Set<string>();
    keys.add(foldName(path.slice(cut + 1)));
    this.#sent.set(parent, keys);
  }
}
