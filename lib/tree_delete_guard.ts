/**
 * The client's side of `--delete`'s guard (the receiver's is `TreeCompareOptions.guard`, in
 * lib/tree_receive_compare.ts, kept by lib/tree_receive_guard.ts): a destination that was there before the run is taken for a copy of
 * the tree only if it holds one of the tree's top-level names, other than those systems drop into
 * any folder (lib/incidental_names.ts: `.DS_Store`, `Thumbs.db`...). {@link unrelatedBefore} looks before
 * anything moves, so that a refused run leaves the folder as it was (and the same command run again
 * refuses again), and {@link unrelatedMessage} is the one line that says so, with the ways out.
 *
 * @module
 */

import { join } from "node:path";
import { foldName } from "./case_folding.ts";
import { RefusedError } from "./errors.ts";
import { listRemote } from "./remote_listing.ts";
import type { TreeSession } from "./tree_client.ts";
import { isTreePart } from "./tree_local.ts";
import { isIncidentalName } from "./incidental_names.ts";
import { NamePatterns } from "./name_patterns.ts";

/**
 * The line that says `--delete` kept the top of `dest` (as the user named it: a local path, or
 * a remote folder), `kept` names that the tree `name` lacks, and the two ways out.
 *
 * @example
 * ```ts
 * import { unrelatedMessage } from "./tree_delete_guard.ts";
 *
 * console.error(`ferry: ${unrelatedMessage("/home/u", "photos", 37)}`);
 * ```
 */
export function unrelatedMessage(dest: string, name: string, kept: number): string {
  const shown = JSON.stringify(dest);
  const entries = kept === 1 ? "the 1 entry" : `the ${kept} entries`;
  const into = JSON.stringify(dest.replace(/[\\/]*$/, "/"));
  return `kept ${entries} of ${shown} that ${name} lacks: it held none of the names in ${name}, so ` +
    `--delete did not take it for a copy (name ${into} to put ${name} into it, or add ` +
    "--delete-unrelated)";
}

/**
 * `--delete`'s guard, before a transfer (see `TreeCompareOptions.guard`): how many names the
 * destination holds at its top that the tree lacks if it holds none of the tree's top-level names,
 * or 0 (it holds one, is empty, or is missing). A name systems drop into any folder
 * (lib/incidental_names.ts, under any case) is never one it holds in common with the tree. The
 * remote folder's top is listed, names only, and each name looked up in the local folder as it
 * arrives. A get's lookup is the receiver's own (it folds
 * case where the local filesystem does); a put's also takes a name the local folder has under
 * another case or Unicode form, as a server whose filesystem folds case does, for up to
 * {@link FOLDED_NAMES} local names (past them, only exact names count: the side that refuses
 * more). A put to a case-sensitive server that passes by case alone is then the receiver's to
 * refuse. Names `exclude` leaves out are not looked at: `--delete` spares them whatever the
 * folder is, as the receiver's guard does.
 *
 * @example
 * ```ts
 * import { unrelatedBefore } from "./tree_delete_guard.ts";
 * import type { TreeSession } from "./tree_client.ts";
 *
 * declare const session: TreeSession;
 * // get -r photos ~ --delete: does ~ hold any of the names in the server's photos?
 * const kept = await unrelatedBefore(session, "get", "/home/u", "photos");
 * if (kept > 0) console.error(`${kept} names of /home/u would be kept`);
 * ```
 */
export async function unrelatedBefore(
  session: TreeSession,
  command: "put" | "get",
  local: string,
  remote: string | undefined,
  exclude: NamePatterns = NamePatterns.none,
): Promise<number> {
  const prefix = remote === undefined ? "" : `${remote}/`;
  const folded = command === "put" ? await foldedNames(local) : null;
  let listed = 0;
  let shared = false;
  /** Names both hold that say nothing (`.DS_Store`): not among those the tree lacks. */
  let incidental = 0;
  try {
    await listRemote(session, {
      dir: remote,
      namesOnly: true,
      onEntries: (entries) => {
        for (const entry of entries) {
          const name = entry.name.slice(prefix.length);
          if (entry.name.startsWith(prefix) && exclude.excludes(name, entry.type === "dir")) {
            continue;
          }
          listed++;
          if (shared || entry.notUtf8) continue;
          // Only a plain name of that folder is looked for (a hostile one leads nowhere else, and
          // the folder itself, listed as an empty name, is no name the tree holds).
          if (!entry.name.startsWith(prefix)) continue;
          const leaf = entry.name.slice(prefix.length);
          if (/[\\/]/.test(leaf) || leaf === "" || leaf === "." || leaf === "..") continue;
          const both = existsLocally(join(local, leaf)) || (folded?.has(foldName(leaf)) ?? false);
          if (both && isIncidentalName(leaf)) incidental++;
          else shared = both;
        }
      },
    });
  } catch (error) {
    // A put's new folder; a get's missing tree is the transfer's to report.
    if (error instanceof RefusedError && error.code === "not_found") return 0;
    throw error;
  }
  if (shared) return 0;
  if (command === "put") return listed - incidental;
  let held = 0;
  // The receiver's walk leaves out ferry's own staging files: so does this count.
  for await (const entry of Deno.readDir(local)) {
    if (!isTreePart(entry.name) && !exclude.excludes(entry.name, entry.isDirectory)) held++;
  }
  return Math.max(0, held - incidental);
}

/** Most local names {@link unrelatedBefore} holds, folded, for a put. */
const FOLDED_NAMES = 65_536;

/** The folded names of the local folder `dir`'s top; null past {@link FOLDED_NAMES}. */
async function foldedNames(dir: string): Promise<Set<string> | null> {
  const names = new Set<string>();
  for await (const entry of Deno.readDir(dir)) {
    if (names.size >= FOLDED_NAMES) return null;
    names.add(foldName(entry.name));
  }
  return names;
}

/** Whether anything (of any type, a dangling link too) is at the local `path`. */
function existsLocally(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
