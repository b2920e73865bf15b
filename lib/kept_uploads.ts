/**
 * Interrupted uploads kept for `put --resume`, in the hidden folder {@link RESUME_DIR} at the top
 * of the root: what is kept, for how long and within what budget, and which goes first (the
 * oldest) when the budget is passed or a new upload needs the space. Each kept upload is two
 * files, `ID.part` (the bytes that arrived) and `ID.json` (name, announced size, when it was
 * kept), ID being the SHA-256 of the name in hex.
 *
 * The folder is the only record: nothing is held in memory, so what an operator removes by hand
 * is simply gone, and a restart finds what the last run kept.
 *
 * @module
 */

import { join } from "node:path";
import { formatHex } from "./format.ts";

/** Hidden folder at the top of the root holding interrupted uploads kept for resuming. */
export const RESUME_DIR = ".ferry-resume";

/** Defaults for {@link KeptOptions}. */
export const KEPT_DEFAULTS = {
  /** All kept data together, in bytes: 16 GiB. */
  budget: 16 * 2 ** 30,
  /** How long an upload is kept: 24 hours. */
  maxAgeMs: 24 * 3600_000,
} as const;

/**
 * A cut upload (or tree file) shorter than this is not kept for a resume: resending it costs
 * less than checking it.
 */
export const KEEP_MIN_BYTES = 1 << 20;

/** Why a kept upload was removed. */
export type EvictionReason =
  /** All kept data together was over the budget, and this was the oldest. */
  | "budget"
  /** Keeping is off (a budget of 0): whatever an earlier run kept goes. */
  | "off"
  /** It was kept for longer than the server keeps uploads. */
  | "expired"
  /** The disk was full, and an upload in progress needed the space. */
  | "room"
  /** A new upload of the same name started over. */
  | "replaced";

/** A kept upload that was removed, for the server's log. */
export interface Eviction {
  /** The upload's remote name. */
  name: string;
  /** Bytes it held. */
  bytes: number;
  /** Why it went. */
  reason: EvictionReason;
  /** For `room`: the upload that needed the space. */
  forName?: string;
}

/** Options for {@link KeptUploads}. */
export interface KeptOptions {
  /**
   * All kept data together stays within this many bytes; the oldest goes first. 0 keeps
   * nothing: interrupted uploads are discarded (default {@link KEPT_DEFAULTS}.budget, 16 GiB).
   */
  budget?: number;
  /** Kept data older than this many milliseconds is removed (default 24 hours). */
  maxAgeMs?: number;
  /** Told of every kept upload removed, whatever the reason. */
  onEvict?: (eviction: Eviction) => void;
}

/** A kept upload, as the kept query shows it. */
export interface KeptUpload {
  /** Remote name. */
  name: string;
  /** Bytes kept. */
  bytes: number;
  /** Size the upload announced (the whole file), or null if it announced none. */
  size: number | null;
  /** When it was kept, milliseconds since the epoch. */
  keptAt: number;
  /** When it will be removed, milliseconds since the epoch. */
  expiresAt: number;
}

/** What {@link KeptUploads.keep} did. */
export type KeepResult =
  | { kept: true; expiresAt: number }
  | { kept: false; reason: "off" | "over_budget" };

/** What the folder holds, in total. */
export interface KeptTotals {
  /** Kept uploads. */
  count: number;
  /** Their bytes together. */
  bytes: number;
}

interface KeptMeta {
  name: string;
  size: number | null;
  keptAt: number;
}

interface Entry extends KeptUpload {
  id: string;
}

/** SHA-256 of the name, in hex: the kept files' stem, the same in every build so far. */
async function idOf(name: string): Promise<string> {
  return formatHex(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name))),
  );
}

async function readMeta(path: string): Promise<KeptMeta | null> {
  try {
    const meta = JSON.parse(await Deno.readTextFile(path));
    if (typeof meta?.name !== "string" || typeof meta?.keptAt !== "number") return null;
    return {
      name: meta.name,
      size: typeof meta.size === "number" ? meta.size : null,
      keptAt: meta.keptAt,
    };
  } catch {
    return null;
  }
}

async function removeQuietly(path: string): Promise<void> {
  await Deno.remove(path).catch(() => {});
}

/**
 * The kept uploads of one root. Every operation on the folder runs after the one before has
 * finished, so none can see a kept upload half-written (its data without its description) and
 * take it for debris.
 *
 * @example
 * ```ts
 * const kept = new KeptUploads("/srv/root/.ferry-resume", { budget: 2 ** 30 });
 * await Deno.mkdir(kept.dir, { recursive: true });
 * const { count, bytes } = await kept.prune();
 * console.log(`${count} kept uploads, ${bytes} bytes`);
 * ```
 */
export class KeptUploads {
  /** The folder. */
  readonly dir: string;
  /** Byte budget for all kept data together; 0 when keeping is off. */
  readonly budget: number;
  /** How long an upload is kept, in milliseconds. */
  readonly maxAgeMs: number;
  #onEvict?: (eviction: Eviction) => void;
  #queue: Promise<unknown> = Promise.resolve();
  /**
   * The folder is known to hold nothing: its last scan found nothing live and nothing was kept
   * since. Every put asks to drop what is kept for its name, and a tree or mput of thousands of
   * files would otherwise pay a stat and an open for each; only this process writes the folder
   * (the store empties its staging folder at start, so one server per root).
   */
  #none = false;

  /** For the folder `dir`, which the caller creates. */
  constructor(dir: string, options: KeptOptions = {}) {
    this.dir = dir;
    this.budget = options.budget ?? KEPT_DEFAULTS.budget;
    this.maxAgeMs = options.maxAgeMs ?? KEPT_DEFAULTS.maxAgeMs;
    this.#onEvict = options.onEvict;
  }

  /** Where they are kept, for the server's banner: the hidden folder's name. */
  get where(): string {
    return RESUME_DIR;
  }

  /** Whether interrupted uploads are kept at all. */
  get enabled(): boolean {
    return this.budget > 0;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #paths(id: string): { part: string; meta: string } {
    return { part: join(this.dir, `${id}.part`), meta: join(this.dir, `${id}.json`) };
  }

  async #remove(entry: Entry, reason: EvictionReason, forName?: string): Promise<void> {
    const { part, meta } = this.#paths(entry.id);
    await removeQuietly(part);
    await removeQuietly(meta);
    this.#onEvict?.({ name: entry.name, bytes: entry.bytes, reason, forName });
  }

  /**
   * Reads the folder: the kept uploads still live, oldest first, and those it removed because
   * they were past their time. What lost its data or its description (a crash between the two)
   * is removed on the way too.
   */
  async #scan(): Promise<{ live: Entry[]; expired: Entry[] }> {
    const ids = new Set<string>();
    for await (const entry of Deno.readDir(this.dir)) {
      ids.add(entry.name.replace(/\.(part|json)$/, ""));
    }
    const now = Date.now();
    const live: Entry[] = [];
    const expired: Entry[] = [];
    for (const id of ids) {
      const { part, meta: metaPath } = this.#paths(id);
      const info = await Deno.stat(part).catch(() => null);
      const meta = await readMeta(metaPath);
      if (!info?.isFile || !meta) {
        await removeQuietly(part);
        await removeQuietly(metaPath);
        continue;
      }
      const entry: Entry = {
        id,
        name: meta.name,
        bytes: info.size,
        size: meta.size,
        keptAt: meta.keptAt,
        expiresAt: meta.keptAt + this.maxAgeMs,
      };
      if (entry.expiresAt > now) {
        live.push(entry);
        continue;
      }
      await this.#remove(entry, "expired");
      expired.push(entry);
    }
    live.sort((a, b) => a.keptAt - b.keptAt || (a.id < b.id ? -1 : 1));
    this.#none = live.length === 0;
    return { live, expired };
  }

  /** Removes the oldest of `entries` (except `spare`) until they fit the budget; the rest. */
  async #fitBudget(entries: Entry[], spare?: string): Promise<Entry[]> {
    let total = entries.reduce((sum, entry) => sum + entry.bytes, 0);
    const left: Entry[] = [];
    for (const entry of entries) {
      if (total > this.budget && entry.id !== spare) {
        await this.#remove(entry, this.enabled ? "budget" : "off");
        total -= entry.bytes;
      } else {
        left.push(entry);
      }
    }
    return left;
  }

  /**
   * Removes what is past its time, broken, or over the budget (oldest first), and returns what
   * is left. With keeping off, that removes everything.
   */
  prune(): Promise<KeptTotals> {
    return this.#serial(async () => {
      const left = await this.#fitBudget((await this.#scan()).live);
      return { count: left.length, bytes: left.reduce((sum, entry) => sum + entry.bytes, 0) };
    });
  }

  /** The kept uploads, oldest first, after removing what is past its time. */
  list(): Promise<KeptUpload[]> {
    return this.#serial(async () =>
      (await this.#scan()).live.map(({ id: _, ...upload }) => upload)
    );
  }

  /**
   * Keeps the interrupted upload in `staged` (moving the file) under `name`, then removes the
   * oldest others until all fit the budget. An upload that alone is over the budget, or any
   * upload when keeping is off, is removed instead.
   */
  keep(staged: string, name: string, size: number | null): Promise<KeepResult> {
    // At once, not when its turn comes: a drop or take asked after this keep must find it.
    this.#none = false;
    return this.#serial(async (): Promise<KeepResult> => {
      if (!this.enabled) {
        // Keeping off: the folder was emptied when the store opened, and stays empty.
        this.#none = true;
        await removeQuietly(staged);
        return { kept: false, reason: "off" };
      }
      const bytes = (await Deno.stat(staged)).size;
      if (bytes > this.budget) {
        await removeQuietly(staged);
        return { kept: false, reason: "over_budget" };
      }
      const id = await idOf(name);
      const { part, meta } = this.#paths(id);
      const keptAt = Date.now();
      await Deno.rename(staged, part);
      try {
        await Deno.writeTextFile(meta, JSON.stringify({ name, size, keptAt } satisfies KeptMeta));
      } catch (error) {
        await removeQuietly(part);
        await removeQuietly(meta);
        throw error;
      }
      await this.#fitBudget((await this.#scan()).live, id);
      return { kept: true, expiresAt: keptAt + this.maxAgeMs };
    });
  }

  /**
   * Hands over the kept data of `name` for a resume: moves it to `to` and forgets it, and
   * resolves with a lookup (lstat) of what it moved, for the open that continues it to check
   * against (StagedFileOptions.expect). Only data kept for the same announced `size` (when one is
   * given) and not past its time is handed over; resolves null, leaving it be, otherwise. Anything
   * but a regular file found there (put in the folder by hand) is no upload: removed, and null.
   */
  take(name: string, size: number | null, to: string): Promise<Deno.FileInfo | null> {
    if (this.#none) return Promise.resolve(null);
    return this.#serial(async () => {
      const id = await idOf(name);
      const { part, meta: metaPath } = this.#paths(id);
      const meta = await readMeta(metaPath);
      if (!meta || meta.name !== name || (size !== null && meta.size !== size)) return null;
      const expiresAt = meta.keptAt + this.maxAgeMs;
      if (expiresAt <= Date.now()) {
        const bytes = (await Deno.stat(part).catch(() => null))?.size ?? 0;
        await this.#remove({ id, ...meta, bytes, expiresAt }, "expired");
        return null;
      }
      try {
        await Deno.rename(part, to);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return null;
        throw error;
      }
      await removeQuietly(metaPath);
      const found = await Deno.lstat(to).catch(() => null);
      if (found?.isFile) return found;
      await removeQuietly(to);
      return null;
    });
  }

  /**
   * Removes whatever is kept for `name`: a new upload of it started over. Resolves with whether
   * anything was kept, so a resume for another size can say that it starts over.
   */
  drop(name: string): Promise<boolean> {
    if (this.#none) return Promise.resolve(false);
    return this.#serial(async () => {
      const id = await idOf(name);
      const { part, meta: metaPath } = this.#paths(id);
      const info = await Deno.stat(part).catch(() => null);
      const meta = await readMeta(metaPath);
      if (!info && !meta) return false;
      await removeQuietly(part);
      await removeQuietly(metaPath);
      if (meta) this.#onEvict?.({ name: meta.name, bytes: info?.size ?? 0, reason: "replaced" });
      return true;
    });
  }

  /**
   * Frees space for the upload of `forName`, whose write failed for lack of it: removes kept
   * uploads, oldest first, until at least `bytes` are freed (at least one upload either way).
   * Resolves with the number removed; 0 means there was nothing left to remove. The upload's
   * own kept data, if it is resuming, is no longer here: it is the upload's staging file now.
   */
  makeRoom(forName: string, bytes: number): Promise<number> {
    return this.#serial(async () => {
      // Whatever was past its time goes first, and counts.
      const { live, expired } = await this.#scan();
      let removed = expired.length;
      let freed = expired.reduce((sum, entry) => sum + entry.bytes, 0);
      for (const entry of live) {
        if (removed > 0 && freed >= bytes) break;
        await this.#remove(entry, "room", forName);
        removed++;
        freed += entry.bytes;
      }
      return removed;
    });
  }
}
