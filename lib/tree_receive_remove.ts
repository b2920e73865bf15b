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

/**
 * Removes the folder `path` of `sink` (one with {@link TreeSink.removeIn}) and all it holds,
 * deepest first, telling `onRemoved` of each entry as it goes. What the sink's walk leaves out (names it does not carry) goes with the
 * folder itself, which the sink removes with whatever is left in it.
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
): Promise<void> {
  // A sink that removes on the calling thread (the client's) never returns to the event loop
  // otherwise, and the timer that sends the notices would not run until the whole folder is gone.
  const turns = new EventTurns();
  const removed = async () => {
    onRemoved(1);
    if (turns.due) await turns.take();
  };
  await removeInside(sink, path, removed);
  await sink.remove(path);
  await removed();
}

async function removeInside(
  sink: TreeSink,
  path: string,
  removed: () => Promise<void>,
): Promise<void> {
  const walk = await sink.walker(path);
  if (!walk) return;
  let files: string[] = [];
  const removeFiles = async () => {
    await sink.removeIn!(path, files, removed);
    files = [];
  };
  try {
    for (let found = walk.peek(); found; found = walk.peek()) {
      await walk.next(false);
      if (found.type !== "dir") {
        files.push(found.path);
        if (files.length >= REMOVE_BATCH) await removeFiles();
        continue;
      }
      const inner = `${path}/${found.path}`;
      await removeInside(sink, inner, removed);
      await removeOne(sink, inner, removed);
    }
    await removeFiles();
  } finally {
    walk.close?.();
  }
}

/** Removes one name inside a folder being removed. */
async function removeOne(sink: TreeSink, path: string, removed: () => Promise<void>) {
  // Not flushed: the folder's own removal is, and takes this with it.
  await sink.remove(path, { flush: false });
  await removed();
}
