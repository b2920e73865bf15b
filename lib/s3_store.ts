/**
 * The S3 store: files kept as objects in a bucket of any S3-compatible object store (Ceph's
 * radosgw, MinIO, AWS), so that several ferry servers can serve one namespace. Owns what makes
 * the folder store's guarantees hold there: upload staging (a multipart upload under the hidden
 * staging prefix, published only once verified; the upload itself is lib/s3_upload.ts's), the
 * publish step that keeps "no overwrite unless asked" across servers, version-pinned reads
 * (lib/s3_reader.ts), interrupted uploads kept for `put --resume` (lib/s3_kept.ts), and the
 * clean-up of what dead servers left behind. The requests themselves, each under a timeout, are
 * lib/s3_bucket.ts's.
 *
 * Layout under `s3://BUCKET/PREFIX`: each file is the object `PREFIX + name`, its xxh128 checksum
 * in the metadata `ferry-checksum`, and for a file a tree transfer stored, the sender's mtime (ms
 * since the epoch, `ferry-mtime`) and mode (octal, `ferry-mode`), which a listing does not carry. Under `PREFIX.ferry-staging/`: `uploads/` holds uploads in
 * progress, `claims/` the short-lived claims that serialise publishing a name, `kept/` the
 * interrupted uploads kept for a resume.
 *
 * @module
 */

import { describeError, StoreError, UserError } from "./errors.ts";
import { checkName, quote, STAGING_DIR } from "./remote_name.ts";
import { formatHex } from "./format.ts";
import type { KeptOptions } from "./kept_uploads.ts";
import type { ListEntry } from "./protocol.ts";
import { S3Bucket } from "./s3_bucket.ts";
import type { S3Credentials, S3Location } from "./s3_config.ts";
import { keptChanged, type KeptObject, S3Kept } from "./s3_kept.ts";
import { S3Reader } from "./s3_reader.ts";
import { S3Tree } from "./s3_tree.ts";
import { S3Upload } from "./s3_upload.ts";
import type {
  BeginUploadOptions,
  ListTreeOptions,
  MakeDirOptions,
  MoveOptions,
  RemoveOptions,
  Store,
  StoreFile,
  StoreUpload,
} from "./store.ts";
import type { TreeListing } from "./tree_listing.ts";
import type { TreeSink, TreeSource } from "./tree_transfer.ts";

/** Defaults for {@link S3StoreOptions}. */
export const S3_DEFAULTS = {
  /** Bytes per multipart part, and the most an upload buffers at once, twice: 8 MiB. */
  partSize: 8 * 2 ** 20,
  /** Longest wait for any one request, or between two pieces of a download: 30 s. */
  timeoutMs: 30_000,
  /** Staged uploads untouched for this long belong to a dead server and are removed: 1 hour. */
  cleanAfterMs: 3600_000,
  /** A publish claim older than this belongs to a dead server and may be broken: 2 minutes. */
  claimStaleMs: 120_000,
} as const;

/** Options for {@link S3Store.open}. */
export interface S3StoreOptions extends S3Location {
  /** Base URL of the store, `http(s)://HOST[:PORT]`; buckets are addressed path-style. */
  endpoint: string;
  /** Region the requests are signed for (default `us-east-1`). */
  region?: string;
  /** Keys that sign requests. */
  credentials: S3Credentials;
  /** See {@link S3_DEFAULTS}.timeoutMs. */
  timeoutMs?: number;
  /** See {@link S3_DEFAULTS}.partSize; at least 5 MiB, S3's smallest part. */
  partSize?: number;
  /** See {@link S3_DEFAULTS}.cleanAfterMs. */
  cleanAfterMs?: number;
  /** See {@link S3_DEFAULTS}.claimStaleMs. */
  claimStaleMs?: number;
  /** Bounds on interrupted uploads kept for `put --resume` (as the folder store's). */
  kept?: KeptOptions;
  /** Where the store logs what it cleaned up or evicted; default nowhere. */
  log?: (line: string) => void;
}

/** Metadata header holding a file's checksum. */
const CHECKSUM_HEADER = "x-amz-meta-ferry-checksum";
/** Metadata headers holding the mtime and mode a tree transfer's sender gave a file. */
const MTIME_HEADER = "x-amz-meta-ferry-mtime";
const MODE_HEADER = "x-amz-meta-ferry-mode";
const UPLOADS = `${STAGING_DIR}/uploads/`;
const CLAIMS = `${STAGING_DIR}/claims/`;
/** How many times a publish waits for another server's claim on the same name (overwrite). */
const CLAIM_WAITS = 50;
const CLAIM_WAIT_MS = 100;
/** S3's smallest part but the last. */
const MIN_PART = 5 * 2 ** 20;

/** A file's mtime and mode as stored with it (see {@link S3Store.stat}). */
export interface S3FileStamp {
  /** The sender's mtime if a tree transfer stored one, else when the object was stored. */
  mtime: number;
  /** The sender's permission bits if stored, else 0o644. */
  mode: number;
}

/** The stamp in an object's headers: what ferry stored, else the store's own time. */
function stampOf(headers: Headers): S3FileStamp {
  const stored = Number(headers.get(MTIME_HEADER) ?? NaN);
  const mode = parseInt(headers.get(MODE_HEADER) ?? "", 8);
  return {
    mtime: Number.isFinite(stored) && stored >= 0
      ? stored
      : Date.parse(headers.get("last-modified") ?? "") || 0,
    mode: Number.isInteger(mode) && mode >= 0 ? mode & 0o777 : 0o644,
  };
}

/** The metadata headers that store a stamp; none for a stamp not given. */
function stampHeaders(stamp: { mtime?: number; mode?: number }): Record<string, string> {
  const headers: Record<string, string> = {};
  if (stamp.mtime !== undefined && Number.isFinite(stamp.mtime) && stamp.mtime >= 0) {
    headers[MTIME_HEADER] = String(stamp.mtime);
  }
  if (stamp.mode !== undefined) headers[MODE_HEADER] = (stamp.mode & 0o777).toString(8);
  return headers;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return formatHex(new Uint8Array(digest));
}

/**
 * A bucket (and prefix) served as the store.
 *
 * @example
 * ```ts
 * import { S3Store } from "./s3_store.ts";
 * const store = await S3Store.open({
 *   bucket: "ferry",
 *   prefix: "",
 *   endpoint: "http://127.0.0.1:7480",
 *   credentials: { accessKeyId: "KEY", secretAccessKey: "SECRET" },
 * });
 * for await (const batch of await store.listTree({ dir: "photos" })) {
 *   for (const entry of batch) console.log(entry.name, entry.type);
 * }
 * ```
 */
export class S3Store implements Store {
  /** `s3://bucket/prefix at endpoint`, for the banner. */
  readonly location: string;
  /** Interrupted uploads kept for `put --resume`. */
  readonly kept: S3Kept;
  /** Bytes per part. */
  readonly partSize: number;
  /** A tree's cut files are kept and continued as single puts' are (lib/s3_tree.ts). */
  readonly treeResume = true;
  readonly #bucket: S3Bucket;
  readonly #cleanAfterMs: number;
  readonly #claimStaleMs: number;
  readonly #log: (line: string) => void;
  readonly #reserved = new Set<string>();
  readonly #tree: S3Tree;

  private constructor(options: S3StoreOptions) {
    this.#bucket = new S3Bucket({
      ...options,
      timeoutMs: options.timeoutMs ?? S3_DEFAULTS.timeoutMs,
    });
    this.partSize = Math.max(MIN_PART, options.partSize ?? S3_DEFAULTS.partSize);
    this.#cleanAfterMs = options.cleanAfterMs ?? S3_DEFAULTS.cleanAfterMs;
    this.#claimStaleMs = options.claimStaleMs ?? S3_DEFAULTS.claimStaleMs;
    this.#log = options.log ?? (() => {});
    this.kept = new S3Kept(this.#bucket, options.kept ?? {}, this.#log);
    this.location = `s3://${options.bucket}/${options.prefix} at ${this.#bucket.endpoint}`;
    this.#tree = new S3Tree({
      bucket: this.#bucket,
      store: this,
      withClaim: (name, key, overwrite, work) => this.#withClaim(name, key, overwrite, work),
      checksum: async (key) => (await this.#bucket.head(key))?.headers.get(CHECKSUM_HEADER) ?? null,
      stat: (key) => this.stat(key),
      kept: this.kept,
      readKept: (name, kept) =>
        this.#reader(name, kept.key, kept.bytes, kept.etag, { stored: null }),
      resumeUpload: (name, options, kept) => this.#begin(name, { ...options, resume: true }, kept),
    });
  }

  /**
   * Checks that the bucket answers, and removes what servers that died left staged (uploads
   * untouched for `cleanAfterMs`, stale claims) and kept uploads past their bounds. Throws
   * {@link UserError} when the bucket cannot be reached.
   */
  static async open(options: S3StoreOptions): Promise<S3Store> {
    const store = new S3Store(options);
    try {
      if (!await store.#bucket.head(null)) {
        throw new UserError(
          `Bucket ${options.bucket} does not exist at ${store.#bucket.endpoint}`,
        );
      }
      await store.cleanStale();
      await store.kept.prune();
    } catch (error) {
      if (error instanceof UserError) throw error;
      throw new UserError(describeError(error));
    }
    return store;
  }

  /** Removes uploads staged by servers that died, and their claims. */
  async cleanStale(): Promise<void> {
    const bucket = this.#bucket;
    const now = await bucket.now();
    for (const upload of await bucket.listUploads(UPLOADS)) {
      // Started long ago, but a slow upload of a big file may still be sending parts.
      if (now - upload.initiated < this.#cleanAfterMs) continue;
      if (now - await bucket.lastActive(upload) < this.#cleanAfterMs) continue;
      await bucket.abortUpload(upload.key, upload.id);
      this.#log(`cleaned up an upload staged by a server that stopped: ${quote(upload.key)}`);
    }
    for await (const object of bucket.listObjects(UPLOADS)) {
      if (now - object.mtime >= this.#cleanAfterMs) await bucket.remove(object.key);
    }
    for await (const object of bucket.listObjects(CLAIMS)) {
      if (now - object.mtime >= this.#claimStaleMs) await bucket.remove(object.key);
    }
  }

  /** Opens a file for download, pinned to the version found now. */
  async openFile(name: string): Promise<StoreFile> {
    const key = checkName(name).join("/");
    const head = await this.#bucket.head(key);
    if (!head) {
      if (await this.#bucket.hasAny(key + "/")) {
        throw new StoreError("not_a_file", `Not a regular file: ${quote(name)}`);
      }
      throw new StoreError("not_found", `No such file: ${quote(name)}`);
    }
    const size = Number(head.headers.get("content-length") ?? 0);
    const { mtime } = stampOf(head.headers);
    const file = await this.#reader(name, key, size, head.headers.get("etag") ?? "", {
      stored: head.headers.get(CHECKSUM_HEADER),
    });
    return { file, size, mtime };
  }

  /** The mtime and mode stored with the object `key` (one HEAD), or null if there is none. */
  async stat(key: string): Promise<S3FileStamp | null> {
    const head = await this.#bucket.head(key);
    return head ? stampOf(head.headers) : null;
  }

  #reader(
    name: string,
    key: string,
    size: number,
    etag: string,
    options: { stored: string | null },
  ): Promise<S3Reader> {
    return S3Reader.open({
      name,
      size,
      stored: options.stored,
      timeoutMs: this.#bucket.timeoutMs,
      get: (from, to, signal) => this.#bucket.getRange(key, { from, to, etag }, signal),
    });
  }

  /**
   * Starts an upload: checks the name, that it is free (unless overwriting) and neither a folder
   * nor under a file. Two uploads of one name on this server cannot run at once; across servers,
   * the publish decides. With `resume`, what was kept for the name (of the same announced size)
   * is taken up again.
   */
  beginUpload(name: string, options: BeginUploadOptions = {}): Promise<StoreUpload> {
    return this.#begin(name, options);
  }

  /**
   * {@link beginUpload}; with `expected`, a resume that must continue exactly that version of the
   * kept bytes (a tree transfer offered their checksum to the sender before it began the upload):
   * anything else kept now is refused as {@link keptChanged}.
   */
  async #begin(
    name: string,
    options: BeginUploadOptions,
    expected?: KeptObject,
  ): Promise<S3Upload> {
    const segments = checkName(name);
    const key = segments.join("/");
    const overwrite = options.overwrite ?? false;
    if (this.#reserved.has(key)) {
      throw new StoreError("in_progress", `An upload of ${quote(name)} is already in progress`);
    }
    const bucket = this.#bucket;
    const parents = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join("/"));
    const [existing, folder, kept, ...files] = await Promise.all([
      bucket.head(key),
      bucket.hasAny(key + "/"),
      this.kept.find(key),
      ...parents.map((parent) => bucket.head(parent)),
    ]);
    const file = files.findIndex((found) => found !== null);
    if (file >= 0) {
      throw new StoreError(
        "not_a_file",
        `Refused name ${quote(name)}: ${segments[file]} is not a folder`,
      );
    }
    if (folder) throw new StoreError("not_a_file", `${quote(name)} is a folder`);
    if (existing && !overwrite) throw new StoreError("exists", `File exists: ${quote(name)}`);
    if (expected && (kept?.etag !== expected.etag || kept.bytes !== expected.bytes)) {
      throw keptChanged(name);
    }
    const size = options.size ?? null;
    const resumable = options.resume === true && kept !== null && kept.size === size;
    // A fresh put replaces whatever was kept for this name; so does a resume of another size.
    if (kept && !resumable) await this.kept.drop(key);
    this.#reserved.add(key);
    const upload = new S3Upload({
      name,
      key,
      overwrite,
      // A small file is buffered whole and published with one PUT; only bigger ones stage parts.
      bufferSize: size !== null && size < this.partSize && !resumable ? size : this.partSize,
      size,
      stamp: stampHeaders(options),
      staging: UPLOADS + crypto.randomUUID(),
      store: this,
      bucket,
      keptDropped: options.resume === true && kept !== null && !resumable,
      done: () => this.#reserved.delete(key),
    });
    if (resumable) {
      try {
        await upload.resume(
          kept,
          await this.#reader(name, kept.key, kept.bytes, kept.etag, { stored: null }),
        );
      } catch (error) {
        await upload.discard();
        throw error;
      }
    }
    return upload;
  }

  /** Every file under the prefix, sorted by name; staging and unaskable names left out. */
  async list(): Promise<ListEntry[]> {
    const entries: ListEntry[] = [];
    for await (const object of this.#bucket.listObjects("")) {
      if (object.key.endsWith("/")) continue;
      try {
        checkName(object.key);
      } catch {
        continue;
      }
      entries.push({ name: object.key, size: object.size, mtime: object.mtime });
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** See {@link Store.listTree} (lib/s3_tree.ts). */
  listTree(options?: ListTreeOptions): Promise<TreeListing> {
    return this.#tree.listTree(options);
  }

  /** See {@link Store.isFolder}: a folder is any key under `NAME/`. */
  isFolder(name?: string): Promise<boolean> {
    return this.#tree.isFolder(name);
  }

  /** See {@link Store.remove} (lib/s3_tree.ts). */
  remove(name: string, options?: RemoveOptions): Promise<void> {
    return this.#tree.remove(name, options);
  }

  /** See {@link Store.move} (lib/s3_tree.ts): a copy, then a delete. */
  move(from: string, to: string, options?: MoveOptions): Promise<void> {
    return this.#tree.move(from, to, options);
  }

  /** See {@link Store.makeDir} (lib/s3_tree.ts): a marker object `NAME/`. */
  makeDir(name: string, options?: MakeDirOptions): Promise<void> {
    return this.#tree.makeDir(name, options);
  }

  /** See {@link Store.treeSource} (lib/s3_tree.ts). */
  treeSource(base?: string): Promise<TreeSource> {
    return this.#tree.treeSource(base);
  }

  /** See {@link Store.treeSink} (lib/s3_tree.ts). */
  treeSink(base?: string): TreeSink {
    return this.#tree.treeSink(base);
  }

  /**
   * Publishes a verified upload under `key`: the bytes of a small one, or a copy of the staged
   * object of a big one (the store copies by reference), with the checksum (and `metadata`: a
   * tree transfer's mtime and mode) in the metadata.
   * Servers publish a name one at a time, each holding its claim (a conditional PUT that exactly
   * one of them wins), so without `overwrite` exactly one of two servers racing wins.
   */
  async publish(
    name: string,
    key: string,
    overwrite: boolean,
    checksum: string,
    from: { bytes: Uint8Array } | { staged: string },
    metadata: Record<string, string> = {},
  ): Promise<void> {
    const bucket = this.#bucket;
    await this.#withClaim(name, key, overwrite, async () => {
      if (!overwrite && await bucket.head(key)) {
        throw new StoreError("exists", `File exists: ${quote(name)}`);
      }
      const headers: Record<string, string> = { ...metadata, [CHECKSUM_HEADER]: checksum };
      // Stores that honour it make the no-overwrite rule hold against writers other than ferry.
      if (!overwrite) headers["If-None-Match"] = "*";
      let body: Uint8Array | undefined;
      if ("bytes" in from) {
        body = from.bytes;
      } else {
        headers["x-amz-copy-source"] = bucket.copySource(from.staged);
        headers["x-amz-metadata-directive"] = "REPLACE";
      }
      const response = await bucket.request("PUT", key, { headers, body, expect: [412] });
      if (response.status === 412) throw new StoreError("exists", `File exists: ${quote(name)}`);
      const text = await response.text();
      if (text.includes("<Error>")) throw bucket.failure(200, text, "PUT", key);
    });
  }

  async #withClaim(
    name: string,
    key: string,
    overwrite: boolean,
    publish: () => Promise<void>,
  ): Promise<void> {
    const bucket = this.#bucket;
    const claim = CLAIMS + await sha256Hex(key);
    for (let wait = 0;; wait++) {
      const taken = await bucket.request("PUT", claim, {
        headers: { "If-None-Match": "*" },
        body: key,
        expect: [412],
      });
      if (taken.ok) break;
      const held = await bucket.head(claim);
      if (held) {
        const now = Date.parse(held.headers.get("date") ?? "") || Date.now();
        const since = Date.parse(held.headers.get("last-modified") ?? "") || now;
        if (now - since > this.#claimStaleMs) {
          // Its server died while publishing: the claim is broken, and raced for again.
          await bucket.remove(claim);
          continue;
        }
        if (!overwrite) {
          throw new StoreError(
            "exists",
            `File exists: ${quote(name)} (another server is storing it)`,
          );
        }
      }
      if (wait >= CLAIM_WAITS) {
        throw new StoreError("busy", `Another server has been storing ${quote(name)} for too long`);
      }
      await new Promise((resolve) => setTimeout(resolve, CLAIM_WAIT_MS));
    }
    try {
      await publish();
    } finally {
      await bucket.remove(claim).catch(() => {});
    }
  }
}
