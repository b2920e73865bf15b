/**
 * The guard of `--delete` on a tree transfer's receiving end (`TreeCompareOptions.guard` in
 * lib/tree_receive_compare.ts): a receiving folder that was there before the transfer may be
 * anything (a home folder named as a tree's new name), so nothing at its top goes until it shows
 * to be a copy of the sender's tree, by holding one of the sender's top-level names other than one
 * systems drop into any folder (lib/incidental_names.ts). The names held meanwhile are counted,
 * and go once it shows, through a walk of the top as it was: memory stays bounded however many
 * were held.
 *
 * @module
 */

import type { TreeSink } from "./tree_transfer.ts";
import { comparePath, type EntryWalk, type WalkEntry } from "./tree_walk.ts";
import { foldName } from "./case_folding.ts";
import { isIncidentalName } from "./incidental_names.ts";
import type { EventTurns } from "./event_turns.ts";

/**
 * Most top-level names of the kind systems drop into any folder (AppleDouble `._*` files come one
 * per file) a {@link TopGuard} holds apart; past them it keeps every such name.
 */
const MAX_INCIDENTAL = 4096;

/** What a {@link TopGuard} acts through. */
export interface TopGuardParts {
  /** The receiving folder. */
  sink: TreeSink;
  /** Turns for the event loop, taken once a held name walked again. */
  turns: EventTurns;
  /** Removes a held name the sender lacks, once the guard is lifted (`--delete`'s rules). */
  remove(found: WalkEntry): Promise<void>;
}

/**
 * The top-level names of a receiving folder held from `--delete` until it shows to be a copy of
 * the sender's tree.
 *
 * @example
 * ```ts
 * import { TopGuard } from "./tree_receive_guard.ts";
 * import { EventTurns } from "./event_turns.ts";
 * import type { TreeSink } from "./tree_transfer.ts";
 * import type { WalkEntry } from "./tree_walk.ts";
 *
 * declare const sink: TreeSink;
 * const remove = (found: WalkEntry) => sink.remove(found.path);
 * const guard = new TopGuard({ sink, turns: new EventTurns(), remove });
 * await guard.pass({ path: "notes.txt", type: "file", size: 3, mtime: 0, mode: 0o644 }, {});
 * await guard.shared("src"); // the sender has src too: notes.txt goes
 * console.log(guard.holding, guard.unrelated); // false 0
 * ```
 */
export class TopGuard {
  #parts: TopGuardParts;
  #caseless: boolean;
  /**
   * Until the receiver is found to hold one of the sender's top-level names: the top's names the
   * sender lacks are held, not deleted.
   */
  #holding = true;
  /** Top-level names held so far. */
  #held = 0;
  /**
   * The top folder as it was when the guard held its first name (`from`), walked again up to the
   * first shared name to delete what it held: a walk holds its folder's names as it read them (a
   * big folder's sorted on disk), so memory stays bounded however many were held, and none that
   * this transfer made since is among them.
   */
  #heldWalk?: { walk: EntryWalk | null; from: string };
  /**
   * The top-level names systems drop into any folder (lib/incidental_names.ts) that the receiver
   * holds and the sender has too, met while the guard holds: they lift nothing, and
   * {@link #related} leaves them, being the sender's; null past {@link MAX_INCIDENTAL} of them
   * (memory stays bounded): every such name is left then.
   */
  #incidental: Set<string> | null = new Set();

  /** With `caseInsensitive`, names are compared as the receiver's filesystem folds them. */
  constructor(parts: TopGuardParts, options: { caseInsensitive?: boolean } = {}) {
    this.#parts = parts;
    this.#caseless = options.caseInsensitive ?? false;
  }

  /** Whether the guard still holds: the receiver showed none of the sender's names yet. */
  get holding(): boolean {
    return this.#holding;
  }

  /**
   * Top-level names of the receiving folder kept: it held none of the sender's, so `--delete`
   * did not take it for a copy; 0 once the guard is lifted.
   */
  get unrelated(): number {
    return this.#holding ? this.#held : 0;
  }

  /**
   * The receiver's top-level name `mine`, which the sender lacks, passed before any shared one.
   * A name the sender noted (`spared`: has and did not send) is a shared one; one `kept` (left
   * out by the sender, or left for a sweep) is neither a sign of a copy nor a name held; any other
   * is held, and with it, the first time, a walk of the top as it is now.
   */
  async pass(mine: WalkEntry, how: { spared?: boolean; kept?: boolean }): Promise<void> {
    if (how.spared) return await this.shared(mine.path);
    if (how.kept) return;
    this.#held++;
    this.#heldWalk ??= { walk: await this.#parts.sink.walker(""), from: mine.path };
  }

  /** A top-level name swept while the guard holds, counted as held unless `excluded`. */
  swept(excluded: boolean): void {
    if (!excluded) this.#held++;
  }

  /**
   * The receiver holds `name`, one of the sender's top-level names: a copy, unless it is a name
   * systems drop into any folder, which is only kept apart from those the sender lacks.
   */
  async shared(name: string): Promise<void> {
    if (!isIncidentalName(name, { foldCase: this.#caseless })) return await this.#related(name);
    const kept = this.#incidental;
    if (kept && kept.size >= MAX_INCIDENTAL) this.#incidental = null;
    else kept?.add(this.#caseless ? foldName(name) : name);
  }

  /**
   * The receiver holds `shared`, one of the sender's top-level names, so it is a copy: the guard
   * is lifted, and the top-level names it held (all before `shared`) go, but for those systems
   * drop into any folder that the sender has too.
   */
  async #related(shared: string): Promise<void> {
    this.#holding = false;
    const held = this.#heldWalk;
    this.#heldWalk = undefined;
    const walk = held?.walk;
    if (!walk) return;
    const turns = this.#parts.turns;
    try {
      for (let found = walk.peek(); found; found = walk.peek()) {
        if (comparePath(found.path, shared) >= 0) break;
        if (turns.due) await turns.take();
        await walk.next(false);
        // Before the first held name, only what this transfer made: none of the receiver's own.
        if (comparePath(found.path, held.from) < 0 || this.#sendersIncidental(found.path)) continue;
        await this.#parts.remove(found);
      }
    } finally {
      walk.close?.();
      this.#incidental = new Set();
    }
  }

  /** Whether the top-level `name` is one of {@link #incidental} (any such, past their count). */
  #sendersIncidental(name: string): boolean {
    const fold = this.#caseless;
    if (!isIncidentalName(name, { foldCase: fold })) return false;
    return this.#incidental?.has(fold ? foldName(name) : name) ?? true;
  }

  /** Gives back the walk of the top it holds, if any. */
  close(): void {
    this.#heldWalk?.walk?.close?.();
    this.#heldWalk = undefined;
  }
}
