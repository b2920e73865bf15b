/**
 * The S3 store: files kept as objects in a bucket of any S3-compatible object store (Ceph's
 * radosgw, MinIO, AWS), so that several ferry servers can serve one namespace. Owns what makes
 * the folder store's guarantees hold there: upload staging (a multipart upload under the hidden
 * staging prefix, published only once verified), the publish step that keeps "no overwrite unless
 * asked" across servers, version-pinned reads (lib/s3_reader.ts), interrupted uploads kept for
 * `put --resume` (lib/s3_kept.ts), and the clean-up of what dead servers left behind. The
 * requests themselves, each under a timeout, are lib/s3_bucket.ts's.
 *
 * Layout under `s3://BUCKET/PREFIX`: each file is the object `PREFIX + name`, its xxh128 checksum
 * in the metadata `ferry-checksum`. Under `PREFIX.ferry-staging/`: `uploads/` holds uploads in
 * progress, `claims/` the short-lived claims that serialise publishing a name, `kept/` the
 * interrupted uploads kept for a resume.
 *
 * @module
 */

import { describeError, StoreError, UserError } from "./errors.ts";
import { checkName, quote, STAGING_DIR } from "./remote_name.ts";
import { formatHex } from "./format.ts";
import type { KeepResult, KeptOptions } from "./kept_uploads.ts";
import type { ListEntry } from "./protocol.ts";
import { BucketError, S3Bucket } from "./s3_bucket.ts";
import type { S3Credentials, S3Location } from "./s3_config.ts";
import { keptChanged, type KeptObject, S3Kept } from "./s3_kept.ts";
import { NOTHING, S3Reader } from "./s3_reader.ts";
import { S3Tree } from "./s3_tree.ts";
import type {
  BeginUploadOptions,
  ListTreeOptions,
  MakeDirOptions,
  MoveOptions,
  RemoveOptions,
  Store,
  StoreFile,
  StoreReader,
  StoreUpload,
} from "./store.ts";
import type { TransferResult } from "./transfer.ts";
import type { TreeEntry } from "./tree_protocol.ts";
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
const UPLOADS = `${STAGING_DIR}/uploads/`;
const CLAIMS = `${STAGING_DIR}/claims/`;
/** How many times a publish waits for another server's claim on the same name (overwrite). */
const CLAIM_WAITS = 50;
const CLAIM_WAIT_MS = 100;
/** Parts of a kept upload copied at once when a resumed upload ends. */
const KEPT_COPIES = 4;
/** S3's smallest part but the last. */
const MIN_PART = 5 * 2 ** 20;

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
 * console.log((await store.list()).length);
 * ```
 */
export class S3Store implements Store {
  /** `s3://bucket/prefix at endpoint`, for the banner. */
  readonly location: string;
  /** Interrupted uploads kept for `put --resume`. */
  readonly kept: S3Kept;
  /** Bytes per part. */
  readonly partSize: number;
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
    const mtime = Date.parse(head.headers.get("last-modified") ?? "") || 0;
    const file = await this.#reader(name, key, size, head.headers.get("etag") ?? "", {
      stored: head.headers.get(CHECKSUM_HEADER),
    });
    return { file, size, mtime };
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
      get: (from, to, signal) =>
        this.#bucket.request("GET", key, {
          headers: {
            Range: `bytes=${from}-${to ?? ""}`,
            ...(etag ? { "If-Match": etag } : {}),
          },
          expect: [412],
          signal,
          stream: true,
        }),
    });
  }

  /**
   * Starts an upload: checks the name, that it is free (unless overwriting) and neither a folder
   * nor under a file. Two uploads of one name on this server cannot run at once; across servers,
   * the publish decides. With `resume`, what was kept for the name (of the same announced size)
   * is taken up again.
   */
  async beginUpload(name: string, options: BeginUploadOptions = {}): Promise<StoreUpload> {
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
  listTree(options?: ListTreeOptions): Promise<TreeEntry[]> {
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
   * object of a big one (the store copies by reference), with the checksum in the metadata.
   * Servers publish a name one at a time, each holding its claim (a conditional PUT that exactly
   * one of them wins), so without `overwrite` exactly one of two servers racing wins.
   */
  async publish(
    name: string,
    key: string,
    overwrite: boolean,
    checksum: string,
    from: { bytes: Uint8Array } | { staged: string },
  ): Promise<void> {
    const bucket = this.#bucket;
    await this.#withClaim(name, key, overwrite, async () => {
      if (!overwrite && await bucket.head(key)) {
        throw new StoreError("exists", `File exists: ${quote(name)}`);
      }
      const headers: Record<string, string> = { [CHECKSUM_HEADER]: checksum };
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

interface S3UploadInit {
  name: string;
  key: string;
  overwrite: boolean;
  bufferSize: number;
  size: number | null;
  staging: string;
  store: S3Store;
  bucket: S3Bucket;
  keptDropped: boolean;
  done: () => void;
}

/**
 * An upload to the store. Bytes gather in a part-sized buffer; an upload that fits in one is
 * published with a single PUT at commit. A bigger one becomes a multipart upload under the
 * staging prefix, one part sent while the next fills (two buffers: memory is bounded per
 * transfer), completed and published only at commit, after the transfer was verified. A resumed
 * upload starts with the kept bytes: the rest after their whole parts read back into the buffer,
 * the whole parts copied inside the store when it ends.
 */
class S3Upload implements StoreUpload {
  readonly name: string;
  offset = 0;
  readonly keptDropped: boolean;
  file: StoreReader = NOTHING;
  #init: S3UploadInit;
  #buffers: Uint8Array[];
  #current = 0;
  #filled = 0;
  #size = 0;
  #id?: string;
  #etags: string[] = [];
  #sending: Promise<void> = Promise.resolve();
  #finished = false;
  #staged = false;
  /** The kept upload this one continues, removed once it is committed or discarded. */
  #resumed?: KeptObject;
  /** Whole parts of the kept upload still to copy, as parts 1 to this. */
  #keptParts = 0;

  constructor(init: S3UploadInit) {
    this.name = init.name;
    this.keptDropped = init.keptDropped;
    this.#init = init;
    this.#buffers = [new Uint8Array(init.bufferSize)];
  }

  /** Starts from the kept bytes `kept`; `file` reads them back for the client's check. */
  async resume(kept: KeptObject, file: StoreReader): Promise<void> {
    const { bucket, store } = this.#init;
    this.#resumed = kept;
    // Its whole parts are copied inside the store when the upload ends (see #copyKept), where
    // the client is kept informed, rather than now, before the server has answered it; the
    // parts that follow are numbered after them.
    const whole = Math.floor(kept.bytes / store.partSize);
    this.#keptParts = whole;
    this.#etags = new Array(whole).fill("");
    // The rest, under a part, goes back into the buffer, where the next bytes join it.
    const rest = kept.bytes - whole * store.partSize;
    if (rest > 0) {
      const response = await bucket.request("GET", kept.key, {
        headers: {
          Range: `bytes=${whole * store.partSize}-${kept.bytes - 1}`,
          "If-Match": kept.etag,
        },
        expect: [412],
        binary: true,
      });
      if (response.status === 412) throw keptChanged(this.name);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.length !== rest) throw keptChanged(this.name);
      this.#buffers[0].set(bytes);
      this.#filled = rest;
    }
    this.#size = kept.bytes;
    this.offset = kept.bytes;
    this.file = file;
  }

  async write(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const buffer = this.#buffers[this.#current];
      if (this.#filled === buffer.length) {
        await this.#sendPart();
        continue;
      }
      const n = Math.min(buffer.length - this.#filled, chunk.length - offset);
      buffer.set(chunk.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      this.#size += n;
    }
  }

  /** Sends the current buffer as the next part, once the part before it has gone. */
  async #sendPart(): Promise<void> {
    const { bucket, staging, store } = this.#init;
    await this.#sending;
    this.#id ??= await bucket.createUpload(staging);
    const id = this.#id;
    const part = this.#etags.length + 1;
    this.#etags.push("");
    const bytes = this.#buffers[this.#current].subarray(0, this.#filled);
    this.#sending = bucket.uploadPart(staging, id, part, bytes).then((etag) => {
      this.#etags[part - 1] = etag;
    });
    this.#sending.catch(() => {}); // awaited before the next part, and at the end
    this.#current = 1 - this.#current;
    this.#buffers[this.#current] ??= new Uint8Array(store.partSize);
    this.#filled = 0;
  }

  /** Sends what is buffered as the last part and joins the parts into the staging object. */
  /** Copies the whole parts of the kept upload resumed, a few at a time, inside the store. */
  async #copyKept(): Promise<void> {
    const { bucket, staging, store } = this.#init;
    const kept = this.#resumed;
    if (!kept || this.#keptParts === 0) return;
    this.#id ??= await bucket.createUpload(staging);
    const id = this.#id;
    let next = 0;
    const copier = async () => {
      while (next < this.#keptParts) {
        const part = next++;
        const start = part * store.partSize;
        this.#etags[part] = await bucket.copyPart(
          staging,
          id,
          part + 1,
          kept,
          start,
          start + store.partSize - 1,
        ).catch((error) => {
          throw error instanceof BucketError &&
              (error.reply === "PreconditionFailed" || error.reply === "NoSuchKey")
            ? keptChanged(this.name)
            : error;
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(KEPT_COPIES, this.#keptParts) }, copier));
    this.#keptParts = 0;
  }

  async #complete(): Promise<void> {
    const { bucket, staging } = this.#init;
    if (this.#filled > 0) await this.#sendPart();
    await this.#sending;
    await this.#copyKept();
    await bucket.completeUpload(staging, this.#id!, this.#etags);
    this.#id = undefined;
    this.#staged = true;
  }

  async commit(verified?: TransferResult): Promise<void> {
    if (this.#finished) throw new Error("Upload is already finished");
    try {
      if (!verified || verified.size !== this.#size) {
        throw new StoreError("checksum", `Upload of ${quote(this.name)} was not verified`);
      }
      const { store, name, key, overwrite, staging } = this.#init;
      if (this.#id === undefined && this.#keptParts === 0) {
        const bytes = this.#buffers[this.#current].subarray(0, this.#filled);
        await store.publish(name, key, overwrite, verified.checksum, { bytes });
      } else {
        await this.#complete();
        await store.publish(name, key, overwrite, verified.checksum, { staged: staging });
      }
    } catch (error) {
      await this.discard();
      throw error;
    }
    await this.discard();
  }

  /**
   * Keeps what arrived for a later `put --resume`: completed into a staging object and copied
   * (by reference) under the kept prefix, within the kept uploads' bounds.
   */
  async keep(): Promise<KeepResult> {
    if (this.#finished) throw new Error("Upload is already finished");
    const { store, bucket, key, staging, size } = this.#init;
    if (!store.kept.enabled) {
      await this.discard();
      return { kept: false, reason: "off" };
    }
    try {
      if (this.#id === undefined && this.#keptParts === 0) {
        await bucket.request("PUT", staging, {
          body: this.#buffers[this.#current].subarray(0, this.#filled),
        });
        this.#staged = true;
      } else {
        await this.#complete();
      }
      // The kept bytes now include what was resumed: the new kept object replaces the old one.
      this.#resumed = undefined;
      this.#staged = false;
      return await store.kept.keep(key, staging, size);
    } finally {
      await this.discard();
    }
  }

  async discard(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    const { store, bucket, staging, key, done } = this.#init;
    try {
      this.file.close();
      await this.#sending.catch(() => {});
      if (this.#id !== undefined) await bucket.abortUpload(staging, this.#id);
      if (this.#staged) await bucket.remove(staging).catch(() => {});
      // Taken up by this upload, as the folder store takes its kept file: used or bad, it goes.
      if (this.#resumed) await store.kept.drop(key).catch(() => {});
    } finally {
      this.#buffers = [];
      done();
    }
  }
}
