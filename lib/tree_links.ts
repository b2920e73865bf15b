/**
 * Which symlinks a tree transfer may carry with `--links`: those whose target stays inside the
 * transferred tree, as rsync's `--safe-links`. Both ends apply the same rule: the sender leaves
 * other links out with a note, and the receiver refuses a manifest that holds one, so a hostile
 * peer cannot plant a link that leads out.
 *
 * @module
 */

/** Longest link target carried, in UTF-16 units (a path, not a payload). */
export const MAX_LINK_TARGET = 4096;

/**
 * Whether a symlink at `path` (relative to the tree, `/`-separated) pointing to `target` stays
 * inside the tree. The target must be relative, with every `..` at its start (`../../a/b`) and no
 * more of them than the link's folder is deep: it then resolves within the tree whatever the names
 * after them are, even if they are links too (each of which obeys the same rule). A `..` after a
 * name is refused, since that name may be a link: `d/l/..` is not `d` when `d/l` leads elsewhere.
 * Empty, absolute, NUL, backslash and control characters are refused too.
 *
 * @example
 * ```ts
 * linkStaysInside("sub/link", "../a.txt"); // true
 * linkStaysInside("link", "../outside"); // false
 * linkStaysInside("sub/link", "d/../../x"); // false
 * ```
 */
export function linkStaysInside(path: string, target: string): boolean {
  if (target.length === 0 || target.length > MAX_LINK_TARGET) return false;
  // deno-lint-ignore no-control-regex
  if (target.startsWith("/") || /[\u0000-\u001f\u007f\\]/.test(target)) return false;
  const depth = path.split("/").length - 1;
  let ups = 0;
  let named = false;
  for (const segment of target.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (named) return false;
      ups++;
      continue;
    }
    named = true;
  }
  return ups <= depth;
}
