/**
 * The rules a tree transfer's manifest must keep before its receiver (lib/tree_receive.ts) acts on
 * any of it: the cap on entries; for a folder, each name allowed by the receiver, links that stay
 * inside the tree, strict walk order, every name in a folder announced before it and, where names
 * fold case, no two in a folder that differ only by case; for a files transfer, files only. A
 * break is a hostile or broken sender: the whole transfer stops (docs/security.md). It holds the
 * folders on the way to the current entry and, where names fold case, their folded names.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import type { ManifestEntry } from "./tree_transfer_protocol.ts";
import { comparePath } from "./tree_walk.ts";
import { foldName } from "./case_folding.ts";
import { linkStaysInside } from "./tree_links.ts";
import type { NamePatterns } from "./name_patterns.ts";
import { EventTurns } from "./event_turns.ts";

/** Default cap on the number of entries a receiver accepts. */
export const DEFAULT_MAX_ENTRIES = 1_000_000;

/**
 * Most names a receiver on a filesystem that folds case holds for one folder, to refuse two that
 * differ only by case: a larger folder is refused rather than held in memory whole.
 */
export const MAX_FOLDED_NAMES = 100_000;

/** Options for {@link ManifestCheck}. */
export interface ManifestCheckOptions {
  /** Most entries the whole manifest may hold (default {@link DEFAULT_MAX_ENTRIES}). */
  maxEntries?: number;
  /**
   * A files transfer (mput, mget; default false): files only, in any order, and the names are
   * the receiver's to check one by one (a bad one fails that file, not the transfer).
   */
  files?: boolean;
  /**
   * Refuse two names of one folder that differ only by case (default false). A function asks
   * whether names fold when it is not known yet (an empty receiving folder tells nothing): asked
   * only when a batch holds two such names, or a folder over {@link MAX_FOLDED_NAMES} names, and
   * once at most.
   */
  caseInsensitive?: boolean | (() => Promise<boolean>);
  /**
   * `--exclude`: names the sender was asked to leave out, refused if it sends one anyway (a
   * hostile server must not overwrite what the user excluded, a `.env` say; default: none).
   */
  exclude?: NamePatterns;
  /**
   * Turns for the event loop, taken once an entry (default: a clock of each batch's own): an
   * entry can cost about a millisecond against `exclude` at its limits, and a batch awaits nothing
   * meanwhile, so it could hold a server's other clients for a second.
   */
  turns?: EventTurns;
}

/** A manifest that breaks the rules (hostile or broken sender): the whole transfer stops. */
export function badManifest(why: string): StoreError {
  return new StoreError("bad_name", `Refused manifest: ${why}`);
}

/**
 * Checks a manifest batch by batch, each whole, and numbers its entries.
 *
 * @example
 * ```ts
 * import { ManifestCheck } from "./tree_receive_check.ts";
 *
 * const check = new ManifestCheck((path) => void path, { caseInsensitive: true });
 * const entry = { size: 0, mtime: 0, mode: 0o755 };
 * await check.batch([{ ...entry, path: "docs", type: "dir" }]); // 0: the batch's first index
 * await check.batch([{ ...entry, path: "docs/A", type: "file" }, { ...entry, path: "docs/a", type: "file" }]);
 * // throws StoreError bad_name: "Refused manifest: names differ only by case: docs/a"
 * ```
 */
export class ManifestCheck {
  #allowed: (path: string) => void;
  #maxEntries: number;
  #files: boolean;
  #exclude?: NamePatterns;
  #turns?: EventTurns;
  /** Whether names are held folded: they fold, or it is not known yet ({@link #ask}). */
  #folding: boolean;
  /** Asks whether names fold, until it is known. */
  #ask?: () => Promise<boolean>;
  /** Not known yet whether names fold: the refusal of this batch if they do. */
  #doubt?: StoreError;
  /** Entries checked so far: the index of the next one. */
  #count = 0;
  #previous?: string;
  /** Folders of the manifest on the way to the current entry. */
  #open: string[] = [];
  /** Where names fold case: the folded names seen in each folder on the way. */
  #folded = new Map<string, Set<string>>();

  /**
   * `allowed` is the receiver's name rules: it throws a {@link StoreError} for a name it may not
   * hold (a folder's names only; a files transfer checks its own).
   */
  constructor(allowed: (path: string) => void, options: ManifestCheckOptions = {}) {
    this.#allowed = allowed;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#files = options.files ?? false;
    this.#exclude = options.exclude;
    this.#turns = options.turns;
    const caseless = options.caseInsensitive ?? false;
    if (typeof caseless === "function") this.#ask = caseless;
    this.#folding = caseless !== false;
  }

  /**
   * Checks a batch whole, before anything is done for any of it; the manifest index of its first
   * entry. Throws a {@link StoreError} (`bad_name`, `too_large`) for a batch that breaks a rule.
   */
  async batch(entries: readonly ManifestEntry[]): Promise<number> {
    if (this.#count + entries.length > this.#maxEntries) {
      throw new StoreError("too_large", `Refused tree: more than ${this.#maxEntries} entries`);
    }
    const turns = this.#turns ?? new EventTurns();
    for (const entry of entries) {
      if (!this.#files) this.#check(entry);
      else if (entry.type !== "file") throw badManifest("a folder in a transfer of files");
      if (turns.due) await turns.take();
    }
    const doubt = this.#doubt;
    if (doubt) {
      // Names that would be one file here, if names fold: now it matters whether they do.
      this.#doubt = undefined;
      const folds = await this.#ask!();
      this.#ask = undefined;
      if (folds) throw doubt;
      this.#folding = false;
      this.#folded.clear();
    }
    const from = this.#count;
    this.#count += entries.length;
    return from;
  }

  #check(entry: ManifestEntry): void {
    try {
      this.#allowed(entry.path);
    } catch (error) {
      throw error instanceof StoreError ? badManifest(error.message) : error;
    }
    if (this.#exclude?.excludes(entry.path, entry.type === "dir")) {
      throw badManifest(`a name that was excluded: ${entry.path}`);
    }
    if (entry.type === "link" && !linkStaysInside(entry.path, entry.target!)) {
      throw badManifest(`a symlink that leads outside the tree: ${entry.path}`);
    }
    if (this.#previous !== undefined && comparePath(this.#previous, entry.path) >= 0) {
      throw badManifest("entries out of order or repeated");
    }
    this.#previous = entry.path;
    const cut = entry.path.lastIndexOf("/");
    const parent = cut < 0 ? "" : entry.path.slice(0, cut);
    const open = this.#open;
    while (open.length > 0 && open.at(-1) !== parent) this.#folded.delete(open.pop()!);
    if (parent !== "" && open.at(-1) !== parent) {
      throw badManifest("a name in a folder that was not announced");
    }
    if (this.#folding) {
      // Two names that differ only by case would be one file here: the second would overwrite
      // the first (or land inside it), whatever the manifest meant.
      const names = this.#folded.get(parent) ?? new Set<string>();
      const key = foldName(entry.path.slice(cut + 1));
      let refusal: StoreError | undefined;
      if (names.has(key)) refusal = badManifest(`names differ only by case: ${entry.path}`);
      else if (names.size >= MAX_FOLDED_NAMES) {
        refusal = new StoreError(
          "too_large",
          `Refused tree: more than ${MAX_FOLDED_NAMES} names in one folder, on a filesystem ` +
            "that folds case",
        );
      } else {
        names.add(key);
        this.#folded.set(parent, names);
      }
      // Not known yet whether names fold: the batch is asked about once it is checked whole.
      if (refusal && !this.#ask) throw refusal;
      this.#doubt ??= refusal;
    }
    if (entry.type === "dir") open.push(entry.path);
  }
}
