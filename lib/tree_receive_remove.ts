/**
 * `--delete` of a folder on a tree transfer's receiving end, entry by entry, so that the removal
 * of a folder of any size can be told to the sender as it goes (lib/tree_work.ts, `removed`):
 * one call that removes a folder with all it holds moves nothing on the wire for as long as it
 * takes, minutes for hundreds of thousands of entries on a slow disk, and the sender's timeout
 * would cut the transfer. Every entry goes through the sink ({@link TreeSink.walker},
 * {@link TreeSink.removeIn} for the files of a folder, found once for them all, and
 * {@link TreeSink.remove}), so each removal is checked as any other (never through a symlink on
 * the way, never out of the receiving folder), and only the folder's own removal is flushed.
 *
 * @module
 */

import type { TreeSink } from "./tree_transfer.ts";
import { EventTurns } from "./event_turns.ts";

/** Files of a folder removed in one {@link TreeSink.removeIn}, its folder found once for them. */
export const REMOVE_BATCH = 256;

/** What {@link removeFolder} leaves in place: `--exclude`'s names, and the folders they are in. */
export interface KeepOptions {
  /** Whether the entry at the tree path `path` (a `folder` or not) stays, with all it holds. */
  keep(path: string, folder: boolean): boolean;
  /**
   * A folder kept because something in it stays, with the tree paths of the entries removed
   * from it (folders among them removed whole), told deepest first.
   */
  kept(folder: string, removed: string[]): Promise<void>;
  /** Decide and tell only: nothing is removed (default false). */
  dryRun?: boolean;
}

/**
 * Removes the folder `path` of `sink` (one with {@link TreeSink.removeIn}) and all it holds,
 * deepest first, telling `onRemoved` of each entry as it goes. What the sink's walk leaves out
 * (names it does not carry) goes with the folder itself, which the sink removes with whatever is
 * left in it. With `keep`, entries it keeps stay (never walked into) and so does every folder on
 * their way: whether the folder `path` was removed.
 *
 * @example
 * ```ts
 * import { removeFolder } from "./tree_receive_remove.ts";
 * import type { TreeSink } from "./tree_transfer.ts";
 *
 * declare const sink: TreeSink;
 * let removed = 0;
 * await removeFolder(sink, "old/cache", (n) => removed += n);
 * ```
 */
export async function removeFolder(
  sink: TreeSink,
  path: string,
  onRemoved: (entries: number) => void,
  keep?: KeepOptions,
): Promise<boolean> {
  // A sink that removes on the calling thread (the client's) never returns to the event loop
  // otherwise, and the timer that sends the notices would not run until the whole folder is gone.
  const turns = new EventTurns();
  const removed = async () => {
    onRemoved(1);
    if (turns.due) await turns.take();
  };
  if (await removeInside(sink, path, removed, keep)) return false;
  if (keep?.dryRun) return true;
  await sink.remove(path);
  await removed();
  return true;
}

/** Removes what the folder `path` holds; whether `keep` kept anything in it. */
async function removeInside(
  sink: TreeSink,
  path: string,
  removed: () => Promise<void>,
  keep?: KeepOptions,
): Promise<boolean> {
  const walk = await sink.walker(path);
  if (!walk) return false;
  const dry = keep?.dryRun ?? false;
  let files: string[] = [];
  /** With `keep`, what went from this folder: told if the folder stays. */
  const gone: string[] = [];
  let kept = false;
  const removeFiles = async () => {
    if (!dry && files.length > 0) await sink.removeIn!(path, files, removed);
    files = [];
  };
  try {
    for (let found = walk.peek(); found; found = walk.peek()) {
      await walk.next(false);
      const inner = `${path}/${found.path}`;
      const folder = found.type === "dir";
      if (keep?.keep(inner, folder)) {
        kept = true;
        continue;
      }
      if (!folder) {
        files.push(found.path);
        if (keep) gone.push(inner);
        if (files.length >= REMOVE_BATCH) await removeFiles();
        continue;
      }
      if (await removeInside(sink, inner, removed, keep)) {
        kept = true;
        continue;
      }
      if (keep) gone.push(inner);
      if (!dry) await removeOne(sink, inner, removed);
    }
    await removeFiles();
  } finally {
    walk.close?.();
  }
  if (kept) await keep!.kept(path, gone);
  return kept;
}

/** Removes one name inside a folder being removed. */
async function removeOne(sink: TreeSink, path: string, removed: () => Promise<void>) {
  // Not flushed: the folder's own removal is, and takes this with it.
  await sink.remove(path, { flush: false });
  await removed();
}
