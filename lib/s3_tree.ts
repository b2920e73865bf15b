/**
 * Folders in the S3 store: listing one folder or a subtree, `rm`, `mv`, `mkdir`, and the two
 * views tree transfers need (a walk of a folder for `get -r`, a receiver for `put -r`, which
 * offers `--resume` what a cut `put -r` kept of a file, as lib/s3_kept.ts keeps a put's). Owns how
 * folders are represented in a bucket, which has none: a folder is every key under `NAME/`, and
 * an empty one is kept by a zero-byte marker object `NAME/`. Each request goes through
 * lib/s3_bucket.ts; publishing a name (a move's copy) takes the S3 store's claim, as a put does.
 *
 * What S3 cannot give: a move is a copy then a delete (a reader may briefly see both names, and
 * a folder moves object by object), and `rm -r` removes a page of keys at a time.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import { checkName, isValidName, nameIn, quote, STAGING_DIR } from "./remote_name.ts";
import type { BucketObject, S3Bucket } from "./s3_bucket.ts";
import type { KeptObject, S3Kept } from "./s3_kept.ts";
import type {
  BeginUploadOptions,
  ListTreeOptions,
  MakeDirOptions,
  MoveOptions,
  RemoveOptions,
  Store,
  StoreReader,
  StoreUpload,
} from "./store.ts";
import { checksumFilePrefix } from "./transfer.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import type { ManifestEntry } from "./tree_transfer_protocol.ts";
import { type ListedFolder, type TreeListing, walkListing } from "./tree_listing.ts";
import {
  type KeptPart,
  sourceFile,
  type TreeFileSink,
  type TreeSink,
  type TreeSource,
  uploadSink,
} from "./tree_transfer.ts";
import { compareName, type EntryWalk, type WalkEntry } from "./tree_walk.ts";

/** Keys removed by one DeleteObjects request: S3's most. */
const DELETE_BATCH = 1000;
/** Objects copied at once when a folder moves. */
const MOVE_COPIES = 8;

/** What the S3 store lends its folders. */
export interface S3TreeInit {
  /** The bucket and prefix served. */
  bucket: S3Bucket;
  /** The store, for opening and uploading files of a tree transfer. */
  store: Store;
  /**
   * Runs `work` holding the claim that serialises publishing `key` across servers; without
   * `overwrite`, a name another server is publishing is refused.
   */
  withClaim(
    name: string,
    key: string,
    overwrite: boolean,
    work: () => Promise<void>,
  ): Promise<void>;
  /** The checksum stored with the object `key`, or null. */
  checksum(key: string): Promise<string | null>;
  /**
   * The mtime and mode stored with the object `key` (a listing does not carry them), or null if
   * it is gone.
   */
  stat(key: string): Promise<{ mtime: number; mode: number } | null>;
  /** The interrupted uploads kept for `--resume` (lib/s3_kept.ts). */
  kept: S3Kept;
  /** A reader of the kept bytes `kept` of the file `name`, pinned to their version. */
  readKept(name: string, kept: KeptObject): Promise<StoreReader>;
  /**
   * Starts an upload of `name` that continues the kept bytes `kept`, that version exactly: if
   * another is kept now, it is refused (StoreError `io`).
   */
  resumeUpload(name: string, options: BeginUploadOptions, kept: KeptObject): Promise<StoreUpload>;
}

/** HEAD requests a walk makes at once for the stamps of one folder's files. */
const STAT_REQUESTS = 16;

/**
 * The folders of the S3 store.
 *
 * @example
 * ```ts ignore
 * const tree = new S3Tree({ bucket, store, withClaim, checksum });
 * await tree.makeDir("photos");
 * for await (const batch of await tree.listTree({ dir: "photos" })) console.log(batch);
 * ```
 */
export class S3Tree {
  readonly #init: S3TreeInit;

  constructor(init: S3TreeInit) {
    this.#init = init;
  }

  /** Whether `key` is a file, a folder (keys under `key/`) or nothing. */
  async #kind(key: string): Promise<"file" | "dir" | null> {
    const bucket = this.#init.bucket;
    const [file, dir] = await Promise.all([bucket.head(key), bucket.hasAny(key + "/")]);
    return file ? "file" : dir ? "dir" : null;
  }

  /** See {@link Store.isFolder}. */
  async isFolder(name?: string): Promise<boolean> {
    if (name === undefined) return true;
    const kind = await this.#kind(checkName(name).join("/"));
    if (kind === "file") throw new StoreError("not_a_file", `Not a folder: ${quote(name)}`);
    return kind === "dir";
  }

  /**
   * Checks the folders `name` lies in: none may be a file, and the last must exist, unless
   * `create`, which makes them (a marker each, so that they outlive what is put in them).
   */
  async #checkParents(name: string, create: boolean): Promise<void> {
    const bucket = this.#init.bucket;
    const segments = checkName(name);
    const parents = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join("/"));
    if (parents.length === 0) return;
    const parent = parents.at(-1)!;
    const [exists, ...files] = await Promise.all([
      bucket.hasAny(parent + "/"),
      ...parents.map((key) => bucket.head(key)),
    ]);
    const file = files.findIndex((found) => found !== null);
    if (file >= 0) {
      throw new StoreError(
        "not_a_file",
        `Refused name ${quote(name)}: ${segments[file]} is not a folder`,
      );
    }
    if (exists) return;
    if (!create) throw new StoreError("not_found", `No such folder for ${quote(name)}`);
    for (const key of parents) await this.#mark(key);
  }

  /** Puts the marker that keeps the folder `key` when it holds nothing else. */
  async #mark(key: string): Promise<void> {
    await this.#init.bucket.request("PUT", key + "/", { body: new Uint8Array(0) });
  }

  /** Keeps the folder `name` lies in once `name` is gone from it (as a folder store does). */
  async #keepParent(name: string): Promise<void> {
    const segments = checkName(name);
    if (segments.length > 1) await this.#mark(segments.slice(0, -1).join("/"));
  }

  /**
   * See {@link Store.listTree}: a folder by delimiter listing, a subtree one such listing per
   * folder, walked as the listing goes out (lib/tree_listing.ts), so only the folders on the way
   * are held. A folder's mtime is its marker's (a HEAD each, {@link STAT_REQUESTS} at once, in a
   * recursive listing that asks for folder times; 0 without one, and in a listing of one folder).
   */
  async listTree(options: ListTreeOptions = {}): Promise<TreeListing> {
    const { dir } = options;
    if (dir !== undefined && !await this.isFolder(dir)) {
      throw new StoreError("not_found", `No such folder: ${quote(dir)}`);
    }
    const base = dir === undefined ? "" : checkName(dir).join("/") + "/";
    const recursive = options.recursive ?? false;
    const times = recursive && (options.folderTimes ?? true);
    return walkListing(base, (under) => this.#listLevel(under, recursive, times));
  }

  /** One folder of a listing: the keys and prefixes right under `under` (empty or ending in `/`). */
  async #listLevel(
    under: string,
    recursive: boolean,
    times: boolean,
  ): Promise<ListedFolder<string>> {
    const entries: TreeEntry[] = [];
    const below: { name: string; folder: string }[] = [];
    for await (const found of this.#init.bucket.listLevel(under)) {
      if ("prefix" in found) {
        const name = found.prefix.slice(0, -1);
        if (!isValidName(name)) continue;
        entries.push({ name, type: "dir", size: 0, mtime: 0 });
        if (recursive) below.push({ name, folder: found.prefix });
      } else if (found.key !== under && isValidName(found.key)) {
        entries.push({ name: found.key, type: "file", size: found.size, mtime: found.mtime });
      }
    }
    if (times) await this.#markerTimes(entries.filter((entry) => entry.type === "dir"));
    return { entries, below };
  }

  /** Gives each folder of `dirs` its marker's mtime, if it has a marker. */
  async #markerTimes(dirs: TreeEntry[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < dirs.length) {
        const entry = dirs[next++];
        const marker = await this.#init.bucket.head(entry.name + "/");
        await marker?.body?.cancel();
        const modified = Date.parse(marker?.headers.get("last-modified") ?? "");
        if (Number.isFinite(modified)) entry.mtime = modified;
      }
    };
    await Promise.all(Array.from({ length: Math.min(STAT_REQUESTS, dirs.length) }, worker));
  }

  /** See {@link Store.remove}: a folder's keys go a page (1,000) at a time. */
  async remove(name: string, options: RemoveOptions = {}): Promise<void> {
    const key = checkName(name).join("/");
    const kind = await this.#kind(key);
    if (kind === null) throw new StoreError("not_found", `No such file or folder: ${quote(name)}`);
    if (kind === "dir" && !options.recursive) {
      throw new StoreError("not_a_file", `${quote(name)} is a folder`);
    }
    await this.#keepParent(name);
    const bucket = this.#init.bucket;
    if (kind === "file") return await bucket.remove(key);
    let batch: string[] = [];
    for await (const object of bucket.listObjects(key + "/")) {
      batch.push(object.key);
      if (batch.length === DELETE_BATCH) {
        await bucket.removeMany(batch);
        batch = [];
      }
    }
    await bucket.removeMany(batch);
  }

  /** See {@link Store.makeDir}: a marker object `NAME/`. */
  async makeDir(name: string, options: MakeDirOptions = {}): Promise<void> {
    const key = checkName(name).join("/");
    const parents = options.parents ?? false;
    const kind = await this.#kind(key);
    if (kind === "dir" && parents) return;
    if (kind !== null) {
      throw new StoreError(
        "exists",
        `${kind === "dir" ? "Folder" : "File"} exists: ${quote(name)}`,
      );
    }
    await this.#checkParents(name, parents);
    await this.#mark(key);
  }

  /**
   * See {@link Store.move}. A file is copied (checksum and all) under the claim a put takes, so
   * the no-overwrite rule holds across servers, then the old name is removed. A folder is moved
   * object by object, a page at a time; its new name must be free.
   */
  async move(from: string, to: string, options: MoveOptions = {}): Promise<void> {
    const source = checkName(from).join("/");
    const target = checkName(to).join("/");
    const overwrite = options.overwrite ?? false;
    const kind = await this.#kind(source);
    if (kind === null) throw new StoreError("not_found", `No such file or folder: ${quote(from)}`);
    if (source === target) return;
    if (kind === "dir" && (target + "/").startsWith(source + "/")) {
      throw new StoreError("bad_request", `Cannot move ${quote(from)} into itself`);
    }
    await this.#checkParents(to, false);
    const existing = await this.#kind(target);
    if (existing === "dir") throw new StoreError("not_a_file", `${quote(to)} is a folder`);
    if (existing === "file") {
      if (kind === "dir") {
        throw new StoreError("not_a_file", `Cannot replace file ${quote(to)} with a folder`);
      }
      if (!overwrite) throw new StoreError("exists", `File exists: ${quote(to)}`);
    }
    await this.#keepParent(from);
    const bucket = this.#init.bucket;
    if (kind === "file") {
      await this.#init.withClaim(to, target, overwrite, async () => {
        if (!overwrite && await bucket.head(target)) {
          throw new StoreError("exists", `File exists: ${quote(to)}`);
        }
        await this.#copy(source, target, to, overwrite);
      });
      return await bucket.remove(source);
    }
    // Each page is copied, then removed, before the next is listed.
    let page: BucketObject[] = [];
    const flush = async () => {
      for (let i = 0; i < page.length; i += MOVE_COPIES) {
        await Promise.all(
          page.slice(i, i + MOVE_COPIES).map((object) => {
            const rest = object.key.slice(source.length);
            return this.#copy(object.key, target + rest, to + rest.replace(/\/$/, ""), false);
          }),
        );
      }
      await bucket.removeMany(page.map((object) => object.key));
      page = [];
    };
    for await (const object of bucket.listObjects(source + "/")) {
      page.push(object);
      if (page.length === DELETE_BATCH) await flush();
    }
    await flush();
  }

  /** Copies one object inside the store, its metadata with it; refuses a taken name unless asked. */
  async #copy(from: string, to: string, name: string, overwrite: boolean): Promise<void> {
    const bucket = this.#init.bucket;
    const headers: Record<string, string> = { "x-amz-copy-source": bucket.copySource(from) };
    if (!overwrite) headers["If-None-Match"] = "*";
    const response = await bucket.request("PUT", to, { headers, expect: [412] });
    if (response.status === 412) throw new StoreError("exists", `File exists: ${quote(name)}`);
    const text = await response.text();
    if (text.includes("<Error>")) throw bucket.failure(200, text, "PUT", to);
  }

  /** See {@link Store.treeSource}. */
  async treeSource(base?: string): Promise<TreeSource> {
    if (!await this.isFolder(base)) {
      throw new StoreError("not_found", `No such folder: ${quote(base ?? "")}`);
    }
    const store = this.#init.store;
    return {
      walker: await S3Walk.open(this.#init.bucket, base, this.#init.stat),
      open: async (path) => sourceFile(await store.openFile(nameIn(base, path))),
      allowed: (path) => isValidName(nameIn(base, path)),
    };
  }

  /**
   * See {@link Store.treeSink}. Each file goes through the store's upload (staged, verified,
   * published under the claim, with the sender's mtime and mode); folders keep no mtime or mode
   * in a bucket.
   */
  treeSink(base?: string): TreeSink {
    const name = (path: string) => nameIn(base, path);
    /** What is kept, listed once, at the first file a `--resume` looks for. */
    let keptNow: Promise<(key: string) => Promise<boolean>> | undefined;
    return {
      check: (path) => void checkName(name(path)),
      walker: async () =>
        await this.isFolder(base)
          ? await S3Walk.open(this.#init.bucket, base, this.#init.stat)
          : null,
      makeBase: async () => {
        if (base !== undefined) await this.makeDir(base, { parents: true });
      },
      makeDir: (path) => this.makeDir(name(path), { parents: true }),
      remove: (path) => this.remove(name(path), { recursive: true }),
      // A fresh upload drops what was kept for the name, as a put without --resume does.
      beginFile: async (path, entry): Promise<TreeFileSink> =>
        uploadSink(await this.#init.store.beginUpload(name(path), uploadOptions(entry))),
      resume: async (path, entry, onProgress) => {
        keptNow ??= this.#init.kept.lister();
        if (!await (await keptNow)(checkName(name(path)).join("/"))) return null;
        return await this.#keptPart(name(path), entry, onProgress);
      },
      finishDir: () => Promise.resolve(),
      finishBase: () => Promise.resolve(),
      checksum: (path) => this.#init.checksum(checkName(name(path)).join("/")),
      // Keys are compared byte for byte: `A` and `a` are two names.
      caseInsensitive: () => Promise.resolve(false),
    };
  }

  /**
   * See {@link TreeSink.resume}: what a single `put --resume` of `name` would continue
   * (lib/s3_kept.ts), its checksum read back from the store. Nothing is held meanwhile but the
   * kept object's version (its ETag): the upload, with its part-sized buffers, starts only when
   * the sender continues the file, and only from that same version.
   */
  async #keptPart(
    name: string,
    entry: ManifestEntry,
    onProgress?: (bytes: number) => void,
  ): Promise<KeptPart | null> {
    const key = checkName(name).join("/");
    const kept = await this.#init.kept.find(key);
    // Kept for another size, or whole already: the fresh upload that follows drops it.
    if (!kept || kept.size !== entry.size || kept.bytes === 0 || kept.bytes >= entry.size) {
      return null;
    }
    const reader = await this.#init.readKept(name, kept);
    let checksum;
    try {
      checksum = await checksumFilePrefix(reader, kept.bytes, { onProgress });
    } catch {
      // Kept bytes that cannot be read back are not offered: the file goes whole.
      checksum = null;
    } finally {
      reader.close();
    }
    if (!checksum) return null;
    return {
      point: { size: kept.bytes, checksum },
      open: async () => uploadSink(await this.#init.resumeUpload(name, uploadOptions(entry), kept)),
      // Not used this time: the kept object simply stays where it is, for the next run. Dropped
      // (the sender's file did not match it), it goes now, or with the fresh upload that follows.
      release: async (drop) => {
        if (drop) await this.#init.kept.drop(key).catch(() => {});
      },
    };
  }
}

/** The upload of a tree's file: replacing what is there, with the sender's size, mtime and mode. */
function uploadOptions(entry: ManifestEntry): BeginUploadOptions {
  return { overwrite: true, size: entry.size, mtime: entry.mtime, mode: entry.mode };
}

interface Level {
  entries: WalkEntry[];
  next: number;
}

/**
 * A walk of a folder of the bucket in walk order ({@link EntryWalk}), one level listed at a time
 * with a delimiter: memory holds the names of the folders on the current path only, as a walk of
 * a local folder does. A listing does not carry the mtime and mode a tree transfer stored with
 * each file, so each level's files are then asked for theirs, {@link STAT_REQUESTS} at once: a
 * sync that finds nothing changed costs one HEAD per file, and no byte of any file.
 */
export class S3Walk implements EntryWalk {
  readonly #bucket: S3Bucket;
  /** Key prefix of the walk's base: empty or ending in `/`. */
  readonly #base: string;
  readonly #stat: S3TreeInit["stat"];
  #stack: Level[] = [];
  #current?: WalkEntry;

  private constructor(bucket: S3Bucket, base: string, stat: S3TreeInit["stat"]) {
    this.#bucket = bucket;
    this.#base = base;
    this.#stat = stat;
  }

  /** Starts a walk of the folder `base` (the root when undefined). */
  static async open(
    bucket: S3Bucket,
    base: string | undefined,
    stat: S3TreeInit["stat"],
  ): Promise<S3Walk> {
    const walk = new S3Walk(
      bucket,
      base === undefined ? "" : checkName(base).join("/") + "/",
      stat,
    );
    await walk.#push("");
    walk.#settle();
    return walk;
  }

  async #push(path: string): Promise<void> {
    const under = this.#base + path;
    const byPath = new Map<string, WalkEntry>();
    for await (const found of this.#bucket.listLevel(under)) {
      if ("prefix" in found) {
        const rel = found.prefix.slice(this.#base.length, -1);
        // A name both a file and a folder (possible in a bucket, not on a disk): the file counts.
        // A bucket keeps no folder times: a folder received from one is dated when received.
        const dir: WalkEntry = { path: rel, type: "dir", size: 0, mtime: Date.now(), mode: 0o755 };
        if (!byPath.has(rel)) byPath.set(rel, dir);
      } else if (found.key !== under) {
        const rel = found.key.slice(this.#base.length);
        const { size, mtime } = found;
        byPath.set(rel, { path: rel, type: "file", size, mtime, mode: 0o644 });
      }
    }
    const entries = [...byPath.values()].filter((entry) =>
      isValidName(this.#base + entry.path) && !(this.#base === "" && entry.path === STAGING_DIR)
    ).sort((a, b) => compareName(a.path, b.path));
    await this.#stamp(entries.filter((entry) => entry.type === "file"));
    this.#stack.push({ entries, next: 0 });
  }

  /** Gives `files` the mtime and mode stored with each (those listed if it is gone meanwhile). */
  async #stamp(files: WalkEntry[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const entry = files[next++];
        const stamp = await this.#stat(this.#base + entry.path);
        if (stamp) Object.assign(entry, stamp);
      }
    };
    await Promise.all(Array.from({ length: Math.min(STAT_REQUESTS, files.length) }, worker));
  }

  #settle(): void {
    this.#current = undefined;
    while (this.#stack.length > 0) {
      const level = this.#stack.at(-1)!;
      if (level.next < level.entries.length) {
        this.#current = level.entries[level.next++];
        return;
      }
      this.#stack.pop();
    }
  }

  /** See {@link EntryWalk.peek}. */
  peek(): WalkEntry | undefined {
    return this.#current;
  }

  /** See {@link EntryWalk.next}. */
  async next(descend = true): Promise<void> {
    const current = this.#current;
    if (current?.type === "dir" && descend) await this.#push(current.path + "/");
    this.#settle();
  }
}
