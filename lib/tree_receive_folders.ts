/**
 * The folders of a tree being received (lib/tree_receive.ts), from the moment the manifest enters
 * them until they get the sender's mtime and mode: the ones on the way to the current entry, each
 * with what the receiver's own walk found there while the transfer has changed nothing in it, and
 * the ones the manifest has left, waiting for their last file to be done (at most
 * {@link MAX_CLOSING} before the receiver waits for the commits under way). A folder is finished
 * as soon as its files are, not at the end, so memory does not grow with the tree.
 *
 * @module
 */

import { type ManifestEntry, MAX_BATCH_ENTRIES } from "./tree_transfer_protocol.ts";
import type { WalkEntry } from "./tree_walk.ts";

/**
 * Folders left by the walk and waiting for their files before they get their mtime and mode; past
 * this many, the receiver waits for the commits under way before reading on.
 */
export const MAX_CLOSING = 4 * MAX_BATCH_ENTRIES;

/** A folder of the manifest, with what the receiver's walk found there while it is unchanged. */
interface Folder {
  entry: ManifestEntry;
  found?: WalkEntry;
}

/** Options for {@link ReceivedFolders}. */
export interface ReceivedFoldersOptions {
  /** A dry run (default false): no folder is ever finished. */
  dryRun?: boolean;
}

/**
 * The folders of a received tree that are still to be given their mtime and mode.
 *
 * @example
 * ```ts
 * import { ReceivedFolders } from "./tree_receive_folders.ts";
 *
 * const folders = new ReceivedFolders((entry) => Deno.utime(entry.path, 0, entry.mtime / 1000));
 * folders.enter({ path: "docs", type: "dir", size: 0, mtime: 0, mode: 0o755 });
 * folders.leave("notes.txt", 3); // docs holds entries 0 to 3 at most
 * await folders.finish(4); // entries 0 to 3 are done: docs is given its mtime
 * ```
 */
export class ReceivedFolders {
  #finishDir: (entry: ManifestEntry, found?: WalkEntry) => Promise<void>;
  #dry: boolean;
  /** Folders that may still get entries, outermost first. */
  #entered: Folder[] = [];
  /**
   * Folders the manifest has left, in the order it left them (deepest first), each with the last
   * index it could hold: given their mtime and mode once every file up to there is done.
   */
  #closing: (Folder & { upTo: number })[] = [];

  /**
   * `finishDir` gives a folder its mtime and mode ({@link TreeSink.finishDir}); `found`, what the
   * receiver's walk found there, is given when the transfer changed nothing in it.
   */
  constructor(
    finishDir: (entry: ManifestEntry, found?: WalkEntry) => Promise<void>,
    options: ReceivedFoldersOptions = {},
  ) {
    this.#finishDir = finishDir;
    this.#dry = options.dryRun ?? false;
  }

  /** The manifest enters a folder, which the receiver's walk found as `found` (if it did). */
  enter(entry: ManifestEntry, found?: WalkEntry): void {
    this.#entered.push({ entry, found });
  }

  /** Notes that the folder holding `path` is changed by this transfer. */
  changed(path: string): void {
    const entered = this.#entered;
    const cut = path.lastIndexOf("/");
    const parent = cut < 0 ? "" : path.slice(0, cut);
    for (let i = entered.length - 1; i >= 0; i--) {
      if (entered[i].entry.path === parent) {
        entered[i].found = undefined;
        return;
      }
    }
  }

  /**
   * The manifest goes on to `path` (undefined: it ended): the folders it leaves on the way wait
   * for every entry up to `upTo`.
   */
  leave(path: string | undefined, upTo: number): void {
    if (this.#dry) return;
    const entered = this.#entered;
    while (entered.length > 0) {
      const folder = entered.at(-1)!;
      if (path !== undefined && path.startsWith(folder.entry.path + "/")) return;
      entered.pop();
      this.#closing.push({ ...folder, upTo });
    }
  }

  /** Whether folders wait for their files. */
  get waiting(): boolean {
    return this.#closing.length > 0;
  }

  /** Whether so many wait that the receiver should let its commits finish before reading on. */
  get crowded(): boolean {
    return this.#closing.length > MAX_CLOSING;
  }

  /** Gives the folders whose entries are all done, up to `firstUndone`, their mtime and mode. */
  async finish(firstUndone: number): Promise<void> {
    const closing = this.#closing;
    let done = 0;
    while (done < closing.length && closing[done].upTo < firstUndone) {
      const { entry, found } = closing[done++];
      await this.#finishDir(entry, found);
    }
    closing.splice(0, done);
  }
}
