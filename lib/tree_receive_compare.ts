/**
 * The receiving end of a folder transfer (lib/tree_receive.ts) holds each checked manifest entry
 * against its own tree, both walked in the same order (lib/tree_walk.ts), so that it holds one
 * folder's names per level: it removes what the sender lacks (`--delete`; never a name the sender
 * noted it has and did not send), makes the folders and links the manifest has, replaces what is
 * in their way, and tells whether a file is needed (no regular file there, another size, another
 * mtime or, with `--checksum`, other content), holding the files needed to a total size. Where
 * names fold case, `--delete` sweeps each folder once the manifest has left it instead
 * (lib/tree_receive_sweep.ts); the receiver's names `--exclude` leaves out are never replaced
 * nor deleted (lib/tree_receive_excluded.ts); and `guard` keeps a folder's top until it shows to
 * be a copy (lib/tree_receive_guard.ts). All of it is the receiver's own disk work, which
 * its caller counts as such (TreeIo.local) for a manifest batch whole.
 *
 * @module
 */

import type { WorkNotices } from "./tree_work.ts";
import { StoreError } from "./errors.ts";
import { overLimitMessage } from "./transfer.ts";
import { type ManifestEntry, MAX_BATCH_ENTRIES } from "./tree_transfer_protocol.ts";
import type { TreeSink } from "./tree_transfer.ts";
import { comparePath, type EntryWalk, type WalkEntry } from "./tree_walk.ts";
import { TopGuard } from "./tree_receive_guard.ts";
import { MAX_FOLDED_NAMES } from "./tree_receive_check.ts";
import type { ReceiveReport } from "./tree_receive_report.ts";
import type { ReceivedFolders } from "./tree_receive_folders.ts";
import { removeFolder } from "./tree_receive_remove.ts";
import { EXCLUDED_IN_WAY, ExcludedNames } from "./tree_receive_excluded.ts";
import { CaseSweeps } from "./tree_receive_sweep.ts";
import type { NamePatterns } from "./name_patterns.ts";
import { EventTurns } from "./event_turns.ts";

/** Options for {@link TreeCompare}. */
export interface TreeCompareOptions {
  /** Remove what the sender does not have, and folders in a file's way (default false). */
  delete?: boolean;
  /** Decide and report only: nothing is made or removed (default false). */
  dryRun?: boolean;
  /** Largest file accepted, in bytes; none by default. */
  maxFileSize?: number;
  /** Most bytes the files needed may add up to; none by default. */
  maxTotalSize?: number;
  /**
   * The receiving folder's filesystem folds case (default false): a name the walk does not find
   * as spelled is looked up by the filesystem ({@link TreeSink.stat}), and `delete` sweeps each
   * folder once the manifest has left it rather than deleting as the walk passes.
   */
  caseInsensitive?: boolean;
  /**
   * With `delete`: the receiving folder was there before this transfer, so it may be anything (a
   * home folder named as a tree's new name): nothing at its top goes until it shows to be a copy
   * of the sender's tree, by holding one of the sender's top-level names (under any case where
   * names fold), other than one systems drop into any folder (lib/incidental_names.ts:
   * `.DS_Store`, `Thumbs.db`...). One that never does keeps its top whole, and
   * {@link TreeCompare.unrelated} counts what it kept (default false: no such wait).
   */
  guard?: boolean;
  /**
   * Sweeping (`delete` where names fold case): most names the walk passed that are held for the
   * sweeps of the folders it is in, so that each is read once (default {@link MAX_FOLDED_NAMES});
   * past it, a folder is read again when it is swept.
   */
  maxHeldNames?: number;
  /**
   * `--exclude`: names the sender leaves out, which `delete` spares here (and never counts as
   * held by `guard`), as rsync does without `--delete-excluded` (default: none).
   */
  exclude?: NamePatterns;
}

/** What a {@link TreeCompare} acts through. */
export interface TreeCompareParts {
  /** A walk of the receiving folder as it is; null when there is none yet. */
  own: EntryWalk | null;
  /** The receiving folder. */
  sink: TreeSink;
  /** Where each name's fate is told. */
  report: ReceiveReport;
  /** The folders on the way, told of those this transfer enters or changes. */
  folders: ReceivedFolders;
  /**
   * Counts the bytes hashed for `--checksum` and the entries removed, for the sender to hear
   * (lib/tree_work.ts).
   */
  notices?: WorkNotices;
  /**
   * Turns for the event loop, taken once an entry of either tree (default: its own): a walk of
   * names in memory awaits nothing really pending, and an entry can cost about a millisecond
   * against --exclude patterns at their limits, so a batch (or a run of the receiver's own names)
   * could hold a server's other clients, and this transfer's notices, for seconds.
   */
  turns?: EventTurns;
}

/**
 * A manifest held against the receiver's own tree, entry by entry.
 *
 * @example
 * ```ts
 * import { TreeCompare } from "./tree_receive_compare.ts";
 * import { ReceivedFolders } from "./tree_receive_folders.ts";
 * import { ReceiveReport } from "./tree_receive_report.ts";
 * import type { TreeIo, TreeSink } from "./tree_transfer.ts";
 *
 * declare const io: TreeIo, sink: TreeSink;
 * const report = new ReceiveReport(io.out);
 * const folders = new ReceivedFolders((entry, found) => sink.finishDir(entry.path, entry, found));
 * const own = await sink.walker();
 * const compare = new TreeCompare({ own, sink, report, folders }, { delete: true });
 * if (await compare.visit(0, { path: "a.txt", type: "file", size: 5, mtime: 0, mode: 0o644 })) {
 *   // ask the sender for a.txt
 * }
 * await compare.end(0); // the manifest is over: what the receiver has past it goes
 * ```
 */
export class TreeCompare {
  #own: EntryWalk | null;
  #sink: TreeSink;
  #report: ReceiveReport;
  #folders: ReceivedFolders;
  #delete: boolean;
  #dry: boolean;
  #maxFileSize?: number;
  #maxTotalSize?: number;
  #wantedBytes = 0;
  /**
   * Names the sender has and did not send (its notes), in walk order, until the walk passes
   * them: `--delete` keeps them and what is under them.
   */
  #spared: string[] = [];
  #caseless: boolean;
  /**
   * `delete` where the filesystem folds case: each folder that was there already is swept once
   * the manifest leaves it, rather than deleted from as the walk passes (lib/tree_receive_sweep.ts
   * says why); null otherwise.
   */
  #sweeps: CaseSweeps | null;
  /**
   * `guard` (lib/tree_receive_guard.ts), until the receiver is found to hold one of the sender's
   * top-level names: the top's names the sender lacks are held, not deleted; null otherwise.
   */
  #guard: TopGuard | null;
  /** `--exclude`: the receiver's names it leaves out, never replaced nor deleted. */
  #excluded: ExcludedNames;

  #notices?: WorkNotices;
  #turns: EventTurns;

  constructor(parts: TreeCompareParts, options: TreeCompareOptions = {}) {
    this.#own = parts.own;
    this.#sink = parts.sink;
    this.#report = parts.report;
    this.#folders = parts.folders;
    this.#notices = parts.notices;
    this.#turns = parts.turns ?? new EventTurns();
    this.#delete = options.delete ?? false;
    this.#dry = options.dryRun ?? false;
    this.#maxFileSize = options.maxFileSize;
    this.#maxTotalSize = options.maxTotalSize;
    this.#caseless = options.caseInsensitive ?? false;
    this.#sweeps = this.#caseless && this.#delete
      ? new CaseSweeps(parts.sink, {
        maxHeld: options.maxHeldNames ?? MAX_FOLDED_NAMES,
        walked: Boolean(parts.own),
      })
      : null;
    this.#guard = this.#delete && options.guard
      ? new TopGuard({
        sink: parts.sink,
        turns: this.#turns,
        remove: (found) => this.#removeExtra(found),
      }, { caseInsensitive: this.#caseless })
      : null;
    this.#excluded = new ExcludedNames({ ...parts, turns: this.#turns }, options.exclude, {
      dryRun: this.#dry,
    });
  }

  /**
   * Top-level names of the receiving folder kept by `guard`: it held none of the sender's, so
   * `--delete` did not take it for a copy; 0 once the manifest is over (or the folder was
   * empty).
   */
  get unrelated(): number {
    return this.#guard?.unrelated ?? 0;
  }

  /** Bytes of the files needed so far. */
  get wantedBytes(): number {
    return this.#wantedBytes;
  }

  /**
   * A name the sender has and did not send (its note: a folder it could not read, a symlink, a
   * name ferry does not carry): `--delete` keeps it and what is under it, as what the sender
   * lacks is only what it does not have. Notes come in walk order, with their batch.
   */
  spare(path: string): void {
    if (!this.#delete) return;
    // Only notes out of order (a hostile sender's) could pile up, and then they protect less.
    if (this.#spared.length >= 2 * MAX_BATCH_ENTRIES) this.#spared.shift();
    this.#spared.push(path);
    this.#sweeps?.noted(path);
  }

  /**
   * Acts on the manifest's entry `index`: what the receiver has before it in walk order and the
   * sender lacks goes (with `delete`); a folder or link is made, or left as it is; a file in the
   * way of one is replaced, a folder in a file's way too (with `delete`; else that file fails).
   * Whether the entry is a file the receiver needs; if so, its folder counts as changed.
   */
  async visit(index: number, entry: ManifestEntry): Promise<boolean> {
    if (this.#turns.due) await this.#turns.take();
    let mine = await this.#catchUp(entry.path);
    // The walk has passed all of the folders the manifest leaves here: they are swept.
    if (this.#sweeps) await this.#sweeps.leave(entry.path, this.#swept);
    /** Whether `mine` is the walk's current entry, which the walk is moved past below. */
    const walked = mine !== undefined;
    if (!mine && this.#caseless && this.#own && this.#sink.stat) {
      // The walk meets a name under the case the receiver has it: this one may be there still.
      mine = await this.#sink.stat(entry.path) ?? undefined;
    }
    // An excluded name of the receiver's (by its own spelling), or a folder refused for one, is
    // in this entry's way: it is never replaced, nor written into.
    // A name the walk met spelled as the entry is, of the entry's kind, is one the manifest's
    // check has already found not excluded: only another kind or another spelling is asked.
    const excluded = this.#excluded;
    const asked = mine !== undefined && excluded.active &&
      !(walked && (mine.type === "dir") === (entry.type === "dir"));
    const inWay = excluded.isBlocked(entry.path) ||
      (asked && excluded.excludes(mine!, walked ? mine!.path : await excluded.ownPath(entry.path)));
    // One of the sender's top-level names is here already (as any type): the receiving folder is
    // a copy, and what its top held before this name goes now, before anything replaces it.
    if (mine && !inWay && this.#guard?.holding && !entry.path.includes("/")) {
      await this.#guard.shared(entry.path);
    }
    const pass = walked ? (descend: boolean) => this.#own!.next(descend) : () => undefined;
    this.#sweeps?.sent(entry.path);
    this.#passNotes(entry.path);
    this.#folders.leave(entry.path, index - 1);
    if (inWay) {
      await pass(false);
      if (entry.type === "dir") excluded.block(entry.path);
      await this.#refuseInWay(index, entry.path);
      return false;
    }
    const unfit = this.#sink.unfit?.(entry.path);
    if (unfit) {
      // Nothing is made or replaced for it, nor under it; what the receiver has there stays.
      await pass(false);
      this.spare(entry.path);
      await this.#report.refused(index, entry.path, unfit);
      return false;
    }
    if (entry.type === "link") {
      await pass(false);
      await this.#link(index, entry, mine);
      return false;
    }
    if (entry.type === "dir") {
      await this.#folder(entry, mine, pass);
      // Gone into by the walk: what it passes there is held for the sweep.
      if (walked && mine?.type === "dir") this.#sweeps?.walkedInto(entry.path);
      return false;
    }
    // A file, by far the most common entry: handled here rather than in a method of its own,
    // which would cost each entry of a pass that changes nothing one more await.
    if (mine?.type === "dir") {
      await pass(false);
      if (!this.#delete) {
        await this.#report.refused(
          index,
          entry.path,
          "A folder is in the way (use --delete to replace it)",
          "a folder is in the way",
        );
        return false;
      }
    } else if (mine) {
      await pass(false);
    }
    // A folder in the way goes only once the file that replaces it is wanted: a file refused
    // (over a limit) leaves it as it was.
    if (this.#maxFileSize !== undefined && entry.size > this.#maxFileSize) {
      await this.#report.refused(
        index,
        entry.path,
        overLimitMessage(this.#maxFileSize, entry.size),
      );
      return false;
    }
    if (await this.#differs(entry, mine?.type === "dir" ? undefined : mine)) {
      this.#wantedBytes += entry.size;
      this.#folders.changed(entry.path);
      if (this.#maxTotalSize !== undefined && this.#wantedBytes > this.#maxTotalSize) {
        throw new StoreError(
          "too_large",
          `Refused tree: over the limit of ${this.#maxTotalSize} bytes in all`,
        );
      }
      if (mine?.type === "dir" && !await this.#makeWay(entry.path)) {
        this.#wantedBytes -= entry.size;
        await this.#refuseInWay(index, entry.path);
        return false;
      }
      return true;
    }
    this.#report.skipped(entry.path);
    return false;
  }

  /** A folder of the manifest: made (replacing a file or link of its name) unless it is here. */
  async #folder(
    entry: ManifestEntry,
    mine: WalkEntry | undefined,
    pass: (descend: boolean) => Promise<void> | undefined,
  ): Promise<void> {
    if (mine?.type === "dir") {
      await pass(true);
      this.#sweeps?.entered(entry.path);
    } else {
      if (mine) {
        // A file (or link) where the sender has a folder: the folder wins, as a newer file
        // would replace an older one.
        await pass(false);
        if (!this.#dry) await this.#remove(entry.path, false);
      }
      if (!this.#dry) await this.#sink.makeDir(entry.path);
      this.#folders.changed(entry.path);
      // New here: nothing in it to sweep, and no notes to hold for it.
      this.#sweeps?.made(entry.path);
    }
    this.#folders.enter(entry, mine?.type === "dir" ? mine : undefined);
  }

  /**
   * The manifest ended after entry `last`: what the receiver has past it goes (with `delete`),
   * and every folder still open waits for its files.
   */
  async end(last: number): Promise<void> {
    await this.#catchUp(undefined);
    const sweeps = this.#sweeps;
    if (sweeps) {
      await sweeps.leave(undefined, this.#swept);
      if (this.#own) await sweeps.sweep("", this.#swept);
    }
    this.#guard?.close();
    this.#folders.leave(undefined, last);
  }

  /**
   * Sweeping: `found`, which the swept `folder` holds and the sender has under no case, goes
   * (with the rules of {@link #removeExtra}), unless the guard never lifted: the top held none of
   * the sender's names, and keeps all it held.
   */
  #swept = async (found: WalkEntry, folder: string): Promise<void> => {
    if (this.#turns.due) await this.#turns.take();
    if (folder === "" && this.#guard?.holding) {
      this.#guard.swept(this.#excluded.excludes(found));
      return;
    }
    await this.#removeExtra(found);
  };

  /** Gives back what the walk holds, if it stopped before its end. */
  close(): void {
    // A big folder's names sorted on disk are given back.
    this.#own?.close?.();
    this.#guard?.close();
  }

  /** Whether the file `entry` differs from the receiver's `mine` (none: it has no file there). */
  async #differs(entry: ManifestEntry, mine: WalkEntry | undefined): Promise<boolean> {
    if (!mine || mine.type !== "file" || mine.size !== entry.size) return true;
    if (entry.checksum) {
      const counter = this.#notices?.counter(entry.size);
      return await this.#sink.checksum(entry.path, counter, mine.id) !== entry.checksum;
    }
    return Math.trunc(mine.mtime) !== Math.trunc(entry.mtime);
  }

  /** Moves the walk of the receiver's own tree up to `path`; its entry there, if any. */
  async #catchUp(path: string | undefined): Promise<WalkEntry | undefined> {
    const own = this.#own;
    for (let mine = own?.peek(); mine; mine = own?.peek()) {
      const order = path === undefined ? -1 : comparePath(mine.path, path);
      if (order > 0) return undefined;
      if (order === 0) return mine;
      if (this.#turns.due) await this.#turns.take();
      await own!.next(false);
      this.#sweeps?.passed(mine);
      // Passed while the guard holds: a top-level name (the walk goes only into shared folders).
      if (this.#guard?.holding && !mine.path.includes("/")) {
        // Kept: left out by the sender, or, sweeping, swept at the end (or kept whole).
        await this.#guard.pass(mine, {
          spared: this.#isSpared(mine.path),
          kept: this.#excluded.excludes(mine) || this.#sweeps !== null,
        });
      } else if (!this.#sweeps) await this.#removeExtra(mine);
    }
    return undefined;
  }

  /** Forgets the notes the walk has passed on its way to `path`. */
  #passNotes(path: string): void {
    const spared = this.#spared;
    while (
      spared.length > 0 && comparePath(spared[0], path) < 0 && !path.startsWith(spared[0] + "/")
    ) spared.shift();
  }

  #isSpared(path: string): boolean {
    this.#passNotes(path);
    const spared = this.#spared;
    return spared.length > 0 && (path === spared[0] || path.startsWith(spared[0] + "/"));
  }

  /**
   * Removes `path`, a `folder` or not, counting the entries removed for the sender to hear
   * (lib/tree_work.ts): a folder entry by entry where the sender takes such notices and the sink
   * removes a folder's files together (lib/tree_receive_remove.ts), else with one call, the
   * quicker (an S3 store's removes a thousand keys a request).
   */
  async #remove(path: string, folder: boolean): Promise<void> {
    const notices = this.#notices;
    if (folder && notices?.phases && this.#sink.removeIn) {
      await removeFolder(this.#sink, path, (entries) => notices.removed(entries));
      return;
    }
    await this.#sink.remove(path);
    notices?.removed(1);
  }

  /** Refuses the entry at `index`: an excluded name of the receiver's is where it would go. */
  #refuseInWay(index: number, path: string): Promise<void> {
    return this.#report.refused(index, path, EXCLUDED_IN_WAY, "an excluded name is in the way");
  }

  /**
   * Removes the receiver's folder `path`, in a file's way (with `delete`): whether it is gone.
   * Under `--exclude` it stays if it holds an excluded name (what else it held goes).
   */
  async #makeWay(path: string): Promise<boolean> {
    if (!this.#excluded.active) {
      if (!this.#dry) await this.#remove(path, true);
      return true;
    }
    return await this.#excluded.removeKeeping(path);
  }

  /**
   * A name the receiver has and the sender does not: removed with `delete`, unless spared (noted
   * by the sender, or excluded); under `--exclude`, a folder keeps its excluded names, and stays
   * with them.
   */
  async #removeExtra(extra: WalkEntry): Promise<void> {
    if (!this.#delete || this.#isSpared(extra.path) || this.#excluded.excludes(extra)) return;
    if (extra.type === "dir" && this.#excluded.active) {
      if (!await this.#excluded.removeKeeping(extra.path)) return;
    } else if (!this.#dry) await this.#remove(extra.path, extra.type === "dir");
    this.#folders.changed(extra.path);
    await this.#report.deleted(extra.path);
  }

  /** A link of the manifest: made (or replaced) unless the receiver has it already. */
  async #link(index: number, entry: ManifestEntry, mine: WalkEntry | undefined): Promise<void> {
    const sink = this.#sink;
    const target = entry.target!;
    if (mine?.type === "link") {
      const current = await sink.readLink?.(entry.path).catch(() => null);
      if (current === target) {
        this.#report.skipped(entry.path);
        return;
      }
    }
    // Made or replaced below, or failed half-way: either way its folder may not be as it was.
    this.#folders.changed(entry.path);
    try {
      if (mine?.type === "dir") {
        if (!this.#delete) {
          throw new StoreError("not_a_file", "A folder is in the way (use --delete to replace it)");
        }
        if (!await this.#makeWay(entry.path)) throw new StoreError("denied", EXCLUDED_IN_WAY);
      }
      if (!this.#dry) {
        if (!sink.makeLink) throw new StoreError("unsupported", "Links cannot be made here");
        await sink.makeLink(entry.path, target);
      }
    } catch (error) {
      if (!(error instanceof StoreError) && !(error instanceof Deno.errors.PermissionDenied)) {
        throw error;
      }
      await this.#report.failed(index, entry.path, error);
      return;
    }
    await this.#report.madeLink(index, entry.path);
  }
}
