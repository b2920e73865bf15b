/**
 * `--delete` of a folder on a tree transfer's receiving end, entry by entry, so that the removal
 * of a folder of any size can be told to the sender as it goes (lib/tree_work.ts, `removed`):
 * one call that removes a folder with all it holds moves nothing on the wire for as long as it
 * takes, minutes for hundreds of thousands of entries on a slow disk, and the sender's timeout
 * would cut the transfer. Every entry goes through the sink ({@link TreeSink.walker} and
 * {@link TreeSink.remove}), so each removal is checked as any other (never through a symlink on
 * the way, never out of the receiving folder), and only the folder's own removal is flushed.
 *
 * @module
 */

import type { TreeSink } from "./tree_transfer.ts";

/**
 * Removes the folder `path` of `sink` and all it holds, deepest first, telling `onRemoved` of
 * each entry as it goes. What the sink's walk leaves out (names it does not carry) goes with the
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
  await removeInside(sink, path, onRemoved);
  await sink.remove(path);
  onRemoved(1);
}

async function removeInside(
  sink: TreeSink,
  path: string,
  onRemoved: (entries: number) => void,
): Promise<void> {
  const walk = await sink.walker(path);
  if (!walk) return;
  try {
    for (let found = walk.peek(); found; found = walk.peek()) {
      await walk.next(false);
      const inner = `${path}/${found.path}`;
      if (found.type === "dir") await removeInside(sink, inner, onRemoved);
      // Not flushed: the folder's own removal is, and takes this with it.
      await sink.remove(inner, { flush: false });
      onRemoved(1);
    }
  } finally {
    walk.close?.();
  }
}
