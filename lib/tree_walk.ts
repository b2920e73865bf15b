/**
 * Walking a local folder in the order tree transfers use: depth first, a folder just before what
 * it holds, the names in each folder sorted by code point (which is UTF-8 byte order). Both ends
 * of a tree transfer walk in this order, so the receiver can compare its own tree with the
 * sender's manifest as the two stream past, holding one folder's names at a time rather than the
 * whole tree. Symlinks are reported as links, never followed.
 *
 * @module
 */

import { type DiskInfo, diskPool, type FolderView } from "./disk_pool.ts";
import { childOf, diskError, isDiskFailure } from "./disk_jobs.ts";
import { bigFolderLimits, NameSorter, type SortedNames } from "./name_runs.ts";
import { type FileId, fileIdOf } from "./checked_open.ts";

/** What a walk (or a manifest) says about one name. */
export interface WalkEntry {
  /** Path relative to the walk's base, `/`-separated. */
  path: string;
  /** A regular file, a folder, a symlink, or anything else (device, FIFO, socket). */
  type: "file" | "dir" | "link" | "other";
  /** Size in bytes (0 but for files). */
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  /** Permission bits (`0o777` at most; setuid, setgid and sticky are never carried). */
  mode: number;
  /**
   * The name on disk is not valid UTF-8: `path` holds U+FFFD for each bad sequence, so it cannot
   * be opened by it (type `other`). Only walks opened with `undecodable` report these.
   */
  notUtf8?: boolean;
  /**
   * Which file the lookup found (walks on the calling thread, `sync`): a sender opens that file
   * or none (lib/checked_open.ts), never one swapped in since.
   */
  id?: FileId;
}

/** The permission bits a tree transfer carries: never setuid, setgid or sticky. */
export const MODE_BITS = 0o777;

/**
 * Compares two names by code point, which is how their UTF-8 bytes compare. JavaScript's `<`
 * compares UTF-16 units, which puts U+E000-U+FFFF after the surrogates of higher code points.
 */
export function compareName(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (U+D800-U+DFFF) stand for code points above U+FFFF: move them past U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Compares two relative paths in walk order: segment by segment, a folder before its contents.
 * Character by character with `/` below every other, which orders as comparing the segments does
 * (a segment that ends first is the shorter, so the first), without splitting either path.
 */
export function comparePath(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === SLASH) return -1;
    if (y === SLASH) return 1;
    if (x >= 0xd800 && y >= 0xd800) {
      // As in compareName: surrogates stand for code points above U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

const SLASH = 0x2f;

/** The entry for `info` at `path`. */
export function entryOf(path: string, info: Deno.FileInfo): WalkEntry {
  const type = info.isSymlink ? "link" : info.isDirectory ? "dir" : info.isFile ? "file" : "other";
  return {
    path,
    type,
    size: type === "file" ? info.size : 0,
    mtime: info.mtime?.getTime() ?? 0,
    mode: (info.mode ?? 0o644) & MODE_BITS,
    ...(type === "file" && info.ino !== null ? { id: fileIdOf(info) } : {}),
  };
}

interface Level {
  dir: string;
  prefix: string;
  /** The folder's names, sorted: all of them, or a big folder's next chunk. */
  names: string[];
  next: number;
  /** What the disk thread found at each of {@link names} (walks that are not `sync`). */
  found?: FolderView;
  /** A big folder's names still to come, sorted by an external sort (lib/name_runs.ts). */
  more?: SortedNames;
  /** A big folder's last name handed out so far, so that a repeat is walked once. */
  last?: string;
  /**
   * Walks that are not `sync`: the names before this one were looked at for folders to look up
   * ahead.
   */
  scanned: number;
  /** The folders of this one looked up ahead (asked for, or back), not yet gone into or passed. */
  early: string[];
}

/** A folder looked up before the walk reaches it (walks that are not `sync`). */
interface Early {
  /** Settles once the lookup is back. */
  ready: Promise<void>;
  /** The folder, once back; none for a folder too large to look up ahead, or a failure. */
  level?: Level;
  /** Why the lookup failed: thrown when the walk goes into the folder, as its own lookup would. */
  error?: unknown;
  /** Names it counts for in {@link AHEAD_ROOM}: as many as it may hold until back, then its own. */
  weight: number;
}

/**
 * Most names of a folder looked up ahead: a larger one is looked up when the walk reaches it
 * (and waiting for it costs little beside its own lookup).
 */
const AHEAD_NAMES = 1024;

/**
 * Names a walk on the disk threads holds in folders looked up before it reaches them, at most, a
 * folder not back yet counting for {@link AHEAD_NAMES}: at most 16 folders under way. Each lookup
 * the walk waited for in turn left the disk thread idle while the caller handled a folder, and the
 * caller idle while the next was looked up; looked up ahead, several leave in one message.
 */
const AHEAD_ROOM = 16 * AHEAD_NAMES;

/** Folders looked up ahead at most, however few names they hold: each costs its own objects. */
const AHEAD_FOLDERS = 64;

/** The entry for what a disk thread found at `path`. */
function entryOfDisk(path: string, info: DiskInfo): WalkEntry {
  return {
    path,
    type: info.type,
    size: info.type === "file" ? info.size : 0,
    mtime: info.mtime,
    mode: (info.mode ?? 0o644) & MODE_BITS,
  };
}

/** Unreadable folders a walk holds until {@link TreeWalker.takeUnread} (a receiver's never asks). */
const MAX_UNREAD = 1024;

/** What {@link TreeWalker.takeUnread} gives when there is nothing to take. */
const NONE_UNREAD: readonly string[] = Object.freeze([]);

/** Options for {@link TreeWalker.open}. */
export interface TreeWalkerOptions {
  /** Names to leave out, by path relative to the base (the server's private folders, say). */
  skip?: (path: string) => boolean;
  /**
   * Folders the caller will not go into (`--exclude`d ones), by path: never looked up ahead.
   * They are still walked past as entries.
   */
  prune?: (path: string) => boolean;
  /**
   * Report names that are not valid UTF-8 as entries marked {@link WalkEntry.notUtf8}, so a
   * sender can say it leaves them out (default false: they are passed over silently).
   */
  undecodable?: boolean;
  /**
   * Look each entry up on the calling thread, where a thread hand-off per entry costs more than
   * the lookup: the client's own folders (default false). A server's walk looks a whole folder up
   * on a disk thread (lib/disk_pool.ts) instead, since a lookup that waits for the disk would
   * hold up every connection.
   */
  sync?: boolean;
  /**
   * Look up on the disk threads, ahead of the walk, the folders it is to go into (default true;
   * walks that are not `sync`). False for a walk that never goes into its folders (a receiver's
   * sweep of one folder), which would only read them for nothing.
   */
  lookAhead?: boolean;
  /**
   * A folder at least this many bytes long on disk is read as its entries come and its names
   * sorted in runs of {@link runNames} (default `BIG_FOLDER_BYTES`, lib/folder_entries.ts): every other
   * folder is read and sorted whole, in memory.
   */
  bigBytes?: number;
  /** Names of a big folder sorted in memory at once (default `RUN_NAMES`, lib/name_runs.ts). */
  runNames?: number;
  /**
   * Where a big folder's runs of sorted names are spilled: a folder private to the program (a
   * server's staging folder); default: a temporary folder of their own.
   */
  spillDir?: string;
}

/**
 * A depth-first walk of a folder in walk order, one entry at a time: {@link peek} shows the
 * current entry, {@link next} moves past it, into it if it is a folder and `descend` is set.
 * Memory holds the names of the folders on the current path only, and of a big folder at most
 * {@link TreeWalkerOptions.runNames} of them: the rest wait, sorted, in private files, which
 * {@link close} gives back (call it when a walk is given up before its end).
 *
 * @example
 * ```ts
 * const walk = await TreeWalker.open("photos");
 * for (let e = walk.peek(); e; e = walk.peek()) {
 *   console.log(e.path, e.type);
 *   await walk.next();
 * }
 * ```
 */
export class TreeWalker implements EntryWalk {
  #stack: Level[] = [];
  /** Folders gone into and found unreadable, until {@link takeUnread}. */
  #unread: string[] = [];
  #current?: WalkEntry;
  #skip?: (path: string) => boolean;
  #prune?: (path: string) => boolean;
  #undecodable: boolean;
  #sync: boolean;
  /** Whether folders are looked up ahead (never for `sync` walks). */
  #ahead: boolean;
  #bigBytes: number;
  #runNames: number;
  #spillDir?: string;
  /** Folders looked up ahead, by real path. */
  #early = new Map<string, Early>();
  /** What {@link #early} counts for in {@link AHEAD_ROOM}. */
  #held = 0;

  private constructor(options: TreeWalkerOptions) {
    this.#skip = options.skip;
    this.#prune = options.prune;
    this.#undecodable = options.undecodable ?? false;
    this.#sync = options.sync ?? false;
    this.#ahead = !this.#sync && (options.lookAhead ?? true);
    const limits = bigFolderLimits();
    this.#bigBytes = options.bigBytes ?? limits.bigBytes;
    this.#runNames = options.runNames ?? limits.runNames;
    this.#spillDir = options.spillDir;
  }

  /** Starts a walk of the folder at `base` (a real path). */
  static async open(base: string, options: TreeWalkerOptions = {}): Promise<TreeWalker> {
    const walker = new TreeWalker(options);
    try {
      await walker.#push(base, "");
      await walker.#advance();
    } catch (error) {
      walker.close();
      throw error;
    }
    walker.#lookAhead();
    return walker;
  }

  /** See {@link EntryWalk.takeUnread}. */
  takeUnread(): readonly string[] {
    // Asked after every entry a sender walks: nearly always none, and then nothing is made.
    return this.#unread.length === 0 ? NONE_UNREAD : this.#unread.splice(0);
  }

  /** Ends the walk before its end: a big folder's sorted names on disk are given back. */
  close(): void {
    for (const level of this.#stack.splice(0)) level.more?.close();
    this.#current = undefined;
    // Lookups still under way are dropped as they come back.
    this.#early.clear();
    this.#held = 0;
  }

  /** Enters the folder `dir`; `size` is its size on disk, when already known. */
  async #push(dir: string, prefix: string, size?: number, parent?: Level): Promise<void> {
    // Names that are not valid UTF-8 read with U+FFFD, so two can read alike: each name is walked
    // once, and one that leads nowhere (no name can reach it) is left out when it is reached.
    const unique = new Set<string>();
    if (this.#sync) {
      if (Deno.statSync(dir).size >= this.#bigBytes) return await this.#pushBig(dir, prefix);
      for (const entry of Deno.readDirSync(dir)) unique.add(entry.name);
      const names = [...unique].sort(compareName);
      this.#stack.push({ dir, prefix, names, next: 0, scanned: 0, early: [] });
      return;
    }
    const early = this.#early.get(dir);
    if (early) {
      await early.ready;
      this.#early.delete(dir);
      this.#held -= early.weight;
      if (parent) parent.early = parent.early.filter((path) => path !== dir);
      if (early.error !== undefined) throw early.error;
      if (early.level) {
        this.#stack.push(early.level);
        return;
      }
    }
    size ??= (await Deno.stat(dir)).size;
    if (size >= this.#bigBytes) return await this.#pushBig(dir, prefix);
    this.#stack.push(levelOf(dir, prefix, await diskPool.folder(dir)));
  }

  /**
   * Asks the disk threads for the folders the walk goes into next, in walk order as far as it is
   * known, while there is room: those of the current folder and of the folders above it, and
   * those of the folders already looked up ahead. Big folders are left to {@link #pushBig}.
   */
  #lookAhead(): void {
    // Topped up once half the room is free, not a folder at a time: those asked for together
    // leave in one message.
    if (!this.#ahead || this.#held > AHEAD_ROOM / 2 || this.#early.size > AHEAD_FOLDERS / 2) return;
    const top = this.#stack.length - 1;
    for (let i = top; i >= 0; i--) {
      const level = this.#stack[i];
      // Below the top, the name at `next - 1` is the folder the walk is in; at the top, it is
      // the current entry, which may be a folder still to go into.
      level.scanned = Math.max(level.scanned, i === top ? level.next - 1 : level.next);
      if (!this.#scan(level)) return;
    }
  }

  /** Looks up ahead the folders `level` holds, and below; false once there is no more room. */
  #scan(level: Level): boolean {
    for (const dir of level.early) {
      const below = this.#early.get(dir)?.level;
      if (below && !this.#scan(below)) return false;
    }
    while (level.scanned < level.names.length) {
      if (this.#held + AHEAD_NAMES > AHEAD_ROOM || this.#early.size >= AHEAD_FOLDERS) return false;
      const name = level.names[level.scanned++];
      const found = level.found?.info(name);
      if (found === undefined || isDiskFailure(found) || found.type !== "dir") continue;
      if (found.size >= this.#bigBytes) continue;
      const path = level.prefix + name;
      if (this.#skip?.(path) || this.#prune?.(path)) continue;
      const dir = childOf(level.dir, name);
      level.early.push(dir);
      const early: Early = { ready: Promise.resolve(), weight: AHEAD_NAMES };
      this.#early.set(dir, early);
      this.#held += early.weight;
      early.ready = diskPool.smallFolder(dir, AHEAD_NAMES).then(
        (folder) => {
          if (folder) early.level = levelOf(dir, path + "/", folder);
        },
        (error) => {
          early.error = error;
        },
      ).finally(() => {
        // Back: what it holds can be asked for in turn, unless the walk passed it meanwhile.
        if (this.#early.get(dir) !== early) return;
        this.#held += (early.level?.names.length ?? 0) - early.weight;
        early.weight = early.level?.names.length ?? 0;
        this.#lookAhead();
      });
    }
    return true;
  }

  /** Forgets the folder `dir` looked up ahead, and what was looked up below it: not gone into. */
  #forget(dir: string, parent?: Level): void {
    if (parent) parent.early = parent.early.filter((path) => path !== dir);
    const early = this.#early.get(dir);
    if (!early) return;
    this.#early.delete(dir);
    this.#held -= early.weight;
    for (const below of early.level?.early ?? []) this.#forget(below);
  }

  /**
   * Enters a big folder: its names are read as they come, sorted in runs spilled to disk, and
   * handed out a chunk at a time ({@link #refill}), each chunk looked up when it is reached.
   */
  async #pushBig(dir: string, prefix: string): Promise<void> {
    const sorter = new NameSorter({
      compare: compareName,
      runNames: this.#runNames,
      spillDir: this.#spillDir,
    });
    let more: SortedNames;
    try {
      for await (const entry of Deno.readDir(dir)) {
        const spilling = sorter.add(entry.name);
        if (spilling) await spilling;
      }
      more = await sorter.finish();
    } catch (error) {
      await sorter.discard();
      throw error;
    }
    this.#stack.push({ dir, prefix, names: [], next: 0, more, scanned: 0, early: [] });
  }

  /** The next chunk of a big folder's names, looked up unless the walk is `sync`. */
  async #refill(level: Level): Promise<void> {
    level.names = [];
    level.next = 0;
    level.scanned = 0;
    level.found = undefined;
    while (level.more && level.names.length === 0) {
      const chunk = await level.more.take();
      if (chunk.length === 0) {
        level.more.close();
        level.more = undefined;
        return;
      }
      // Repeats (names that are not UTF-8 can read alike) come together: each is walked once.
      level.names = chunk.filter((name, i) => name !== (i === 0 ? level.last : chunk[i - 1]));
      level.last = chunk.at(-1);
    }
    if (!this.#sync && level.names.length > 0) {
      level.found = await diskPool.folder(level.dir, { names: level.names });
    }
  }

  /** Finds the next entry that still exists, reading on through big folders. */
  async #advance(): Promise<void> {
    while (!this.#settle()) await this.#refill(this.#stack.at(-1)!);
  }

  /**
   * Finds the next entry that still exists, popping finished folders; false when the current
   * folder's next names are still to be read ({@link #refill}).
   */
  #settle(): boolean {
    this.#current = undefined;
    while (this.#stack.length > 0) {
      const level = this.#stack.at(-1)!;
      if (level.next >= level.names.length) {
        if (level.more) return false;
        this.#stack.pop();
        continue;
      }
      const name = level.names[level.next++];
      const path = level.prefix + name;
      if (this.#skip?.(path)) continue;
      try {
        if (!level.found) {
          this.#current = entryOf(path, Deno.lstatSync(childOf(level.dir, name)));
          return true;
        }
        const found = level.found.info(name);
        if (found === undefined) continue;
        if (isDiskFailure(found)) throw diskError(found);
        this.#current = entryOfDisk(path, found);
        return true;
      } catch (error) {
        // Gone since the folder was read: as if it had never been there.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        // Or read with U+FFFD for bytes that are not UTF-8, so that no name leads to it.
        if (this.#undecodable && name.includes("\ufffd")) {
          this.#current = { path, type: "other", size: 0, mtime: 0, mode: 0, notUtf8: true };
          return true;
        }
      }
    }
    return true;
  }

  /** The current entry; undefined once the walk is over. */
  peek(): WalkEntry | undefined {
    return this.#current;
  }

  /** Moves past the current entry: into it first if it is a folder and `descend` is set. */
  async next(descend = true): Promise<void> {
    const current = this.#current;
    const top = this.#stack.at(-1);
    const names = top?.names;
    if (current?.type === "dir" && this.#ahead) {
      const level = this.#stack.at(-1)!;
      // Gone into or passed, it is not to be looked up ahead any more.
      level.scanned = Math.max(level.scanned, level.next);
      if (!descend) this.#forget(childOf(level.dir, level.names[level.next - 1]), level);
    }
    if (current?.type === "dir" && descend) {
      const level = this.#stack.at(-1)!;
      const name = level.names[level.next - 1];
      // Its size on disk, which says whether it is big, as its lookup found it.
      const found = level.found?.info(name);
      const size = found && !isDiskFailure(found) ? found.size : undefined;
      try {
        await this.#push(childOf(level.dir, name), current.path + "/", size, level);
      } catch (error) {
        // Removed meanwhile, or unreadable: its contents are not part of the walk. An
        // unreadable one is told of (takeUnread): its contents are there, only not seen.
        if (
          error instanceof Deno.errors.PermissionDenied ||
          error instanceof Deno.errors.NotCapable
        ) {
          // A sender takes them after each step; a walk nobody asks holds a few at most.
          if (this.#unread.length < MAX_UNREAD) this.#unread.push(current.path);
        } else if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    await this.#advance();
    // Looked at again only when the walk went into, passed or left a folder (or read on in a big
    // one): past a file, what comes next is as it was, and looking at it for every entry cost.
    const now = this.#stack.at(-1);
    if (current?.type === "dir" || now !== top || now?.names !== names) this.#lookAhead();
  }
}

/** A level of the walk for the folder `dir`, as the disk thread found it. */
function levelOf(dir: string, prefix: string, folder: FolderView): Level {
  // As in the walk's own reads: each name once.
  const names = [...new Set(folder.names)].sort(compareName);
  return { dir, prefix, names, next: 0, found: folder, scanned: 0, early: [] };
}

/**
 * What a sender walks: a folder ({@link TreeWalker}) or a list of files (`ListWalk`,
 * lib/list_walk.ts).
 */
export interface EntryWalk {
  /** The current entry; undefined once the walk is over. */
  peek(): WalkEntry | undefined;
  /** Moves past the current entry (into it if it is a folder and `descend` is set). */
  next(descend?: boolean): Promise<void>;
  /** Gives back what the walk holds, when it is given up before its end. */
  close?(): void;
  /**
   * The folders the walk went into but could not read since the last call (their contents are
   * left out of the walk), and forgets them: a sender notes them, so that the receiver's
   * `--delete` keeps its copy of what they hold.
   */
  takeUnread?(): readonly string[];
}
