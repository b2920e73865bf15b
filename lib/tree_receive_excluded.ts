/**
 * `--exclude` on a tree transfer's receiving end (lib/tree_receive_compare.ts holds the manifest
 * against the receiver's tree): the receiver's excluded names are never replaced nor deleted,
 * whoever has them. An entry whose way one is in fails, and so does all under a folder refused
 * so; a folder `--delete` removes keeps the excluded names it holds, and stays with them; and
 * where names fold case, a name found under the sender's spelling is judged by the receiver's own
 * (`--exclude .env` keeps `.env` from a sender's `.ENV`), looked up one folder at a time.
 *
 * @module
 */

import type { WorkNotices } from "./tree_work.ts";
import type { TreeSink } from "./tree_transfer.ts";
import type { WalkEntry } from "./tree_walk.ts";
import { foldName } from "./case_folding.ts";
import type { ReceiveReport } from "./tree_receive_report.ts";
import type { ReceivedFolders } from "./tree_receive_folders.ts";
import { removeFolder } from "./tree_receive_remove.ts";
import type { NamePatterns } from "./name_patterns.ts";
import type { EventTurns } from "./event_turns.ts";

/**
 * Why an entry fails whose way an excluded name of the receiver's is in: `--exclude` promises
 * that the receiver's excluded names are never replaced nor deleted, whoever has them.
 */
export const EXCLUDED_IN_WAY = "An excluded name is in the way (it is never replaced or deleted)";

/** What {@link ExcludedNames} acts through: parts of lib/tree_receive_compare.ts's TreeCompare. */
export interface ExcludedNamesParts {
  /** The receiving folder. */
  sink: TreeSink;
  /** Where each name's fate is told. */
  report: ReceiveReport;
  /** The folders on the way, told of those changed. */
  folders: ReceivedFolders;
  /** Counts the entries removed, for the sender to hear (lib/tree_work.ts). */
  notices?: WorkNotices;
  /** Turns for the event loop, taken once a name read. */
  turns: EventTurns;
}

/**
 * The receiver's names that `--exclude` leaves out, kept from being replaced or deleted.
 *
 * @example
 * ```ts
 * import { ExcludedNames } from "./tree_receive_excluded.ts";
 * import { EventTurns } from "./event_turns.ts";
 * import type { NamePatterns } from "./name_patterns.ts";
 * import type { ReceivedFolders } from "./tree_receive_folders.ts";
 * import type { ReceiveReport } from "./tree_receive_report.ts";
 * import type { TreeSink } from "./tree_transfer.ts";
 *
 * declare const sink: TreeSink, report: ReceiveReport, folders: ReceivedFolders;
 * declare const exclude: NamePatterns;
 * const excluded = new ExcludedNames({ sink, report, folders, turns: new EventTurns() }, exclude);
 * const mine = await sink.stat?.("CONFIG/.ENV");
 * if (mine && excluded.excludes(mine, await excluded.ownPath("CONFIG/.ENV"))) {
 *   // the receiver's own config/.env: never replaced
 * }
 * if (!await excluded.removeKeeping("old")) {
 *   // "old" stays: it holds excluded names (what else it held is gone)
 * }
 * ```
 */
export class ExcludedNames {
  #parts: ExcludedNamesParts;
  #exclude?: NamePatterns;
  #dry: boolean;
  /**
   * A folder of the manifest refused because an excluded name of the receiver's is in its way:
   * nothing is made under it either.
   */
  #blocked?: string;
  /**
   * Where names fold case: the receiver's own spellings of one folder's names, by folded name, so
   * that a name found under the sender's spelling is judged by its own.
   */
  #spellings?: { folder: string; own: string; names: Map<string, string> };

  /** `exclude`: the transfer's patterns, if any; with `dryRun`, nothing is removed. */
  constructor(
    parts: ExcludedNamesParts,
    exclude?: NamePatterns,
    options: { dryRun?: boolean } = {},
  ) {
    this.#parts = parts;
    this.#exclude = exclude;
    this.#dry = options.dryRun ?? false;
  }

  /** Whether the transfer has `--exclude` patterns. */
  get active(): boolean {
    return this.#exclude !== undefined && !this.#exclude.empty;
  }

  /**
   * Whether `--exclude` leaves out the receiver's `mine` (at `path`, its own spelling of it):
   * `--delete` spares it, and nothing replaces it.
   */
  excludes(mine: WalkEntry, path = mine.path): boolean {
    return this.#exclude?.excludes(path, mine.type === "dir") ?? false;
  }

  /** Whether `path` is, or is under, a folder refused for an excluded name in its way. */
  isBlocked(path: string): boolean {
    const blocked = this.#blocked;
    if (blocked === undefined) return false;
    if (path === blocked || path.startsWith(blocked + "/")) return true;
    this.#blocked = undefined;
    return false;
  }

  /**
   * The manifest's folder `path` is refused for an excluded name in its way: nothing is made
   * under it either (unless it is under one refused already).
   */
  block(path: string): void {
    if (!this.isBlocked(path)) this.#blocked = path;
  }

  /**
   * The receiver's own spelling of `path`, which its filesystem found under the sender's
   * spelling (one that folds case): each folder on the way is read once for all its names the
   * manifest reaches that way in a row.
   */
  async ownPath(path: string): Promise<string> {
    const cut = path.lastIndexOf("/");
    const folder = cut < 0 ? "" : path.slice(0, cut);
    const leaf = path.slice(cut + 1);
    let known = this.#spellings;
    if (known?.folder !== folder) {
      const own = folder ? await this.ownPath(folder) : "";
      const names = new Map<string, string>();
      const turns = this.#parts.turns;
      const walk = await this.#parts.sink.walker(own).catch(() => null);
      try {
        for (let found = walk?.peek(); found; found = walk!.peek()) {
          if (turns.due) await turns.take();
          await walk!.next(false);
          names.set(foldName(found.path), found.path);
        }
      } finally {
        walk?.close?.();
      }
      known = this.#spellings = { folder, own, names };
    }
    const name = known.names.get(foldName(leaf)) ?? leaf;
    return known.own ? `${known.own}/${name}` : name;
  }

  /**
   * Removes the receiver's folder `path` but for the excluded names it holds, and each folder
   * they are in (told, not counted: they are not deleted); whether it is gone, told as deleted by
   * the caller. The inside of a folder kept is told as deleted entry by entry. A sink that cannot
   * remove a folder entry by entry (an S3 store's) keeps it whole: excluded names may be in it.
   */
  async removeKeeping(path: string): Promise<boolean> {
    const { sink, report, folders, notices } = this.#parts;
    if (!sink.removeIn) {
      report.note({
        kind: "ignored",
        path,
        message: "Kept: --exclude may leave names in it, and this store removes no folder in part",
      });
      return false;
    }
    return await removeFolder(sink, path, (entries) => notices?.removed(entries), {
      keep: (inner, folder) => this.#exclude!.excludes(inner, folder),
      dryRun: this.#dry,
      kept: async (folder, removed) => {
        for (const gone of removed) {
          folders.changed(gone);
          await report.deleted(gone);
        }
        folders.changed(folder);
        report.note({
          kind: "ignored",
          path: folder,
          message: "Kept: it holds excluded names",
        });
      },
    });
  }
}
