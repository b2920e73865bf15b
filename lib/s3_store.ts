/**
 * The S3 store: files kept as objects in a bucket of any S3-compatible object store (Ceph's
 * radosgw, MinIO, AWS), so that several ferry servers can serve one namespace. Owns the upload
 * staging (a multipart upload under the hidden staging prefix, published only once verified),
 * the publish step that keeps "no overwrite unless asked" across servers, ranged and
 * version-pinned reads, listing, and the clean-up of what dead servers left behind. Requests are
 * signed by aws4fetch; every one has a timeout, so a store that is down or slow costs a client
 * one clear line, never a hang.
 *
 * Layout under `s3://BUCKET/PREFIX`: each file is the object `PREFIX + name`, its xxh128 checksum
 * in the metadata `ferry-checksum`. `PREFIX.ferry-staging/uploads/` holds uploads in progress,
 * `PREFIX.ferry-staging/claims/` the short-lived claims that serialise publishing a name.
 *
 * @module
 */

import { AwsClient } from "aws4fetch";
import { type Checksum, createChecksum } from "./checksum.ts";
import { describeError, StoreError, UserError } from "./errors.ts";
import { checkName, quote, STAGING_DIR } from "./file_store.ts";
import { formatHex } from "./format.ts";
import type { KeepResult, KeptTotals, KeptUpload } from "./kept_uploads.ts";
import type { ListEntry } from "./protocol.ts";
import type { S3Credentials, S3Location } from "./s3_config.ts";
import type {
  BeginUploadOptions,
  KeptView,
  Store,
  StoreFile,
  StoreReader,
  StoreUpload,
} from "./store.ts";
import type { TransferResult } from "./transfer.ts";

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
  /** Where the store logs what it cleaned up; default nowhere. */
  log?: (line: string) => void;
}

/** Metadata header holding a file's checksum. */
const CHECKSUM_HEADER = "x-amz-meta-ferry-checksum";
const UPLOADS = `${STAGING_DIR}/uploads/`;
const CLAIMS = `${STAGING_DIR}/claims/`;
/** How many times a publish waits for another server's claim on the same name (overwrite). */
const CLAIM_WAITS = 50;
const CLAIM_WAIT_MS = 100;

/** S3's smallest part but the last. */
const MIN_PART = 5 * 2 ** 20;

/** Encodes a key for a URL path, segment by segment (RFC 3986, as S3 signs it). */
function encodeKey(key: string): string {
  return key.split("/").map((segment) =>
    encodeURIComponent(segment).replace(
      /[!'()*]/g,
      (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
    )
  ).join("/");
}

function xmlText(text: string): string {
  return text.replace(/&(#x?[0-9a-fA-F]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[entity]!;
  });
}

/** Every `<tag>…</tag>` in `xml`, as the text inside. */
function xmlAll(xml: string, tag: string): string[] {
  const found: string[] = [];
  const pattern = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g");
  for (const match of xml.matchAll(pattern)) found.push(match[1]);
  return found;
}

function xmlOne(xml: string, tag: string): string | undefined {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return match ? xmlText(match[1]) : undefined;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return formatHex(new Uint8Array(digest));
}

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException &&
    (error.name === "TimeoutError" || error.name === "AbortError");
}

/** Request details for {@link S3Store}'s requests. */
interface RequestInit {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** Statuses the caller handles itself; other non-2xx statuses throw. */
  expect?: number[];
  /** Aborts the request (its body included) besides the timeout. */
  signal?: AbortSignal;
  /** The response body is read by the caller, under its own timeouts. */
  stream?: boolean;
}

/** No bytes kept: an S3 upload is never resumed (yet), so its staged bytes are never read back. */
const NOTHING: StoreReader = {
  read: () => Promise.resolve(null),
  seek: () => Promise.resolve(0),
  close: () => {},
};

/** The S3 store keeps no interrupted uploads for `put --resume` yet. */
const NO_KEPT: KeptView = {
  enabled: false,
  budget: 0,
  maxAgeMs: 0,
  prune: (): Promise<KeptTotals> => Promise.resolve({ count: 0, bytes: 0 }),
  list: (): Promise<KeptUpload[]> => Promise.resolve([]),
};

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
  /** The S3 store keeps no interrupted uploads. */
  readonly kept: KeptView = NO_KEPT;
  readonly #options: Required<Omit<S3StoreOptions, "log" | "credentials">>;
  readonly #client: AwsClient;
  readonly #log: (line: string) => void;
  readonly #reserved = new Set<string>();

  private constructor(options: S3StoreOptions) {
    this.#options = {
      bucket: options.bucket,
      prefix: options.prefix,
      endpoint: options.endpoint.replace(/\/+$/, ""),
      region: options.region ?? "us-east-1",
      timeoutMs: options.timeoutMs ?? S3_DEFAULTS.timeoutMs,
      partSize: Math.max(MIN_PART, options.partSize ?? S3_DEFAULTS.partSize),
      cleanAfterMs: options.cleanAfterMs ?? S3_DEFAULTS.cleanAfterMs,
      claimStaleMs: options.claimStaleMs ?? S3_DEFAULTS.claimStaleMs,
    };
    this.location = `s3://${options.bucket}/${options.prefix} at ${this.#options.endpoint}`;
    this.#log = options.log ?? (() => {});
    this.#client = new AwsClient({
      ...options.credentials,
      service: "s3",
      region: this.#options.region,
      // Retrying is the client's choice, made with the whole transfer in view.
      retries: 0,
    });
  }

  /**
   * Checks that the bucket answers, and removes what servers that died left staged (uploads
   * untouched for `cleanAfterMs`, stale claims). Throws {@link UserError} when the bucket cannot
   * be reached.
   */
  static async open(options: S3StoreOptions): Promise<S3Store> {
    const store = new S3Store(options);
    let response: Response;
    try {
      response = await store.#request("HEAD", null, { expect: [404] });
    } catch (error) {
      throw new UserError(describeError(error));
    }
    if (response.status === 404) {
      throw new UserError(`Bucket ${options.bucket} does not exist at ${store.#options.endpoint}`);
    }
    await store.cleanStale();
    return store;
  }

  /** Part size in use, for tests and the banner. */
  get partSize(): number {
    return this.#options.partSize;
  }

  #url(key: string | null, query?: Record<string, string>): string {
    const { endpoint, bucket, prefix } = this.#options;
    let url = `${endpoint}/${bucket}`;
    if (key !== null) url += "/" + encodeKey(prefix + key);
    if (query) {
      const pairs = Object.entries(query).map(([k, v]) =>
        v === "" ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`
      );
      if (pairs.length) url += "?" + pairs.join("&");
    }
    return url;
  }

  #unavailable(error: unknown): StoreError {
    const { endpoint, timeoutMs } = this.#options;
    if (isTimeout(error)) {
      return new StoreError(
        "io",
        `Object store at ${endpoint} did not answer within ${timeoutMs / 1000} s`,
      );
    }
    return new StoreError(
      "io",
      `Object store at ${endpoint} is unreachable: ${describeError(error)}`,
    );
  }

  /** Sends one signed request, under the timeout; non-2xx statuses not expected throw. */
  async #request(method: string, key: string | null, init: RequestInit = {}): Promise<Response> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("timeout", "TimeoutError")),
      this.#options.timeoutMs,
    );
    const abort = () => controller.abort(init.signal?.reason);
    init.signal?.addEventListener("abort", abort, { once: true });
    let response: Response;
    try {
      response = await this.#client.fetch(this.#url(key, init.query), {
        method,
        headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD", ...init.headers },
        body: init.body as BodyInit | undefined,
        signal: controller.signal,
      });
      if (init.stream && response.ok) return response;
      if (response.ok || init.expect?.includes(response.status)) {
        // Read the (small) body under the same timeout, so the caller's read cannot hang.
        const text = method === "HEAD" ? "" : await response.text();
        return new Response(method === "HEAD" || response.status === 204 ? null : text, {
          status: response.status,
          headers: response.headers,
        });
      }
      const text = await response.text().catch(() => "");
      throw this.#failure(response.status, text, method, key);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw this.#unavailable(controller.signal.reason ?? error);
    } finally {
      clearTimeout(timer);
      init.signal?.removeEventListener("abort", abort);
    }
  }

  #failure(status: number, text: string, method: string, key: string | null): StoreError {
    const code = xmlOne(text, "Code") ?? `HTTP ${status}`;
    const { bucket, endpoint } = this.#options;
    if (code === "NoSuchBucket") {
      return new StoreError("io", `Bucket ${bucket} does not exist at ${endpoint}`);
    }
    if (status === 403) {
      return new StoreError("io", `Object store refused the server's credentials (${code})`);
    }
    const what = key === null ? `bucket ${bucket}` : quote(key);
    return new StoreError("io", `Object store failed ${method} ${what}: ${code}`);
  }

  /** Removes uploads staged by servers that died, and their claims. */
  async cleanStale(): Promise<void> {
    const now = await this.#storeNow();
    const { cleanAfterMs, claimStaleMs } = this.#options;
    for (const upload of await this.#listUploads(UPLOADS)) {
      if (now - upload.initiated < cleanAfterMs) continue;
      // Started long ago, but a slow upload of a big file may still be sending parts.
      const parts = await this.#request("GET", upload.key, { query: { uploadId: upload.id } });
      const latest = Math.max(
        upload.initiated,
        ...xmlAll(await parts.text(), "LastModified").map((t) => Date.parse(xmlText(t))),
      );
      if (now - latest < cleanAfterMs) continue;
      await this.#request("DELETE", upload.key, { query: { uploadId: upload.id }, expect: [404] });
      this.#log(`cleaned up an upload staged by a server that stopped: ${quote(upload.key)}`);
    }
    for await (const object of this.#listObjects(UPLOADS)) {
      if (now - object.mtime < cleanAfterMs) continue;
      await this.#request("DELETE", object.key, { expect: [404] });
    }
    for await (const object of this.#listObjects(CLAIMS)) {
      if (now - object.mtime < claimStaleMs) continue;
      await this.#request("DELETE", object.key, { expect: [404] });
    }
  }

  /** The store's clock: ages of objects are measured on it, whatever this machine's says. */
  async #storeNow(): Promise<number> {
    const response = await this.#request("HEAD", null);
    return Date.parse(response.headers.get("date") ?? "") || Date.now();
  }

  async #listUploads(under: string): Promise<{ key: string; id: string; initiated: number }[]> {
    const found: { key: string; id: string; initiated: number }[] = [];
    const query: Record<string, string> = { uploads: "", prefix: this.#options.prefix + under };
    for (let page = 0; page < 10_000; page++) {
      const xml = await (await this.#request("GET", null, { query })).text();
      for (const upload of xmlAll(xml, "Upload")) {
        const key = xmlOne(upload, "Key") ?? "";
        if (!key.startsWith(this.#options.prefix)) continue;
        found.push({
          key: key.slice(this.#options.prefix.length),
          id: xmlOne(upload, "UploadId") ?? "",
          initiated: Date.parse(xmlOne(upload, "Initiated") ?? "") || 0,
        });
      }
      if (xmlOne(xml, "IsTruncated") !== "true") break;
      query["key-marker"] = xmlOne(xml, "NextKeyMarker") ?? "";
      query["upload-id-marker"] = xmlOne(xml, "NextUploadIdMarker") ?? "";
    }
    return found;
  }

  /** Objects under `under` (relative to the prefix), page by page: ListObjectsV2. */
  async *#listObjects(under: string): AsyncGenerator<{ key: string; size: number; mtime: number }> {
    const prefix = this.#options.prefix;
    const query: Record<string, string> = { "list-type": "2", prefix: prefix + under };
    for (let page = 0; page < 1_000_000; page++) {
      const xml = await (await this.#request("GET", null, { query })).text();
      for (const contents of xmlAll(xml, "Contents")) {
        const key = xmlOne(contents, "Key") ?? "";
        if (!key.startsWith(prefix)) continue;
        yield {
          key: key.slice(prefix.length),
          size: Number(xmlOne(contents, "Size") ?? 0),
          mtime: Date.parse(xmlOne(contents, "LastModified") ?? "") || 0,
        };
      }
      const next = xmlOne(xml, "NextContinuationToken");
      if (xmlOne(xml, "IsTruncated") !== "true" || !next) return;
      query["continuation-token"] = next;
    }
  }

  /** Whether any object lies under `name/`: the name is a folder. */
  async #isFolder(name: string): Promise<boolean> {
    const response = await this.#request("GET", null, {
      query: { "list-type": "2", prefix: this.#options.prefix + name + "/", "max-keys": "1" },
    });
    return xmlAll(await response.text(), "Contents").length > 0;
  }

  async #head(key: string): Promise<Response | null> {
    const response = await this.#request("HEAD", key, { expect: [404] });
    return response.status === 404 ? null : response;
  }

  /** Opens a file for download, pinned to the version found now. */
  async openFile(name: string): Promise<StoreFile> {
    const key = checkName(name).join("/");
    const head = await this.#head(key);
    if (!head) {
      if (await this.#isFolder(key)) {
        throw new StoreError("not_a_file", `Not a regular file: ${quote(name)}`);
      }
      throw new StoreError("not_found", `No such file: ${quote(name)}`);
    }
    const size = Number(head.headers.get("content-length") ?? 0);
    const mtime = Date.parse(head.headers.get("last-modified") ?? "") || 0;
    const etag = head.headers.get("etag") ?? "";
    const stored = head.headers.get(CHECKSUM_HEADER);
    const file = new S3Reader({
      name,
      size,
      etag,
      stored,
      checksum: stored ? await createChecksum() : null,
      timeoutMs: this.#options.timeoutMs,
      get: (from, signal) =>
        this.#request("GET", key, {
          headers: { Range: `bytes=${from}-`, ...(etag ? { "If-Match": etag } : {}) },
          expect: [412],
          signal,
          stream: true,
        }),
    });
    return { file, size, mtime };
  }

  /**
   * Starts an upload: checks the name, that it is free (unless overwriting) and neither a folder
   * nor under a file. Two uploads of one name on this server cannot run at once; across servers,
   * the publish decides.
   */
  async beginUpload(name: string, options: BeginUploadOptions = {}): Promise<StoreUpload> {
    const segments = checkName(name);
    const key = segments.join("/");
    const overwrite = options.overwrite ?? false;
    if (this.#reserved.has(key)) {
      throw new StoreError("exists", `An upload of ${quote(name)} is already in progress`);
    }
    const parents = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join("/"));
    const [existing, folder, ...files] = await Promise.all([
      this.#head(key),
      this.#isFolder(key),
      ...parents.map((parent) => this.#head(parent)),
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
    this.#reserved.add(key);
    const size = options.size ?? null;
    return new S3Upload({
      name,
      key,
      overwrite,
      // A small file is buffered whole and published with one PUT; only bigger ones stage parts.
      bufferSize: size !== null && size < this.#options.partSize ? size : this.#options.partSize,
      staging: UPLOADS + crypto.randomUUID(),
      store: this,
      done: () => this.#reserved.delete(key),
    });
  }

  /** Every file under the prefix, sorted by name; staging and names no client could ask for are left out. */
  async list(): Promise<ListEntry[]> {
    const entries: ListEntry[] = [];
    for await (const object of this.#listObjects("")) {
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

  // The steps of an upload, called by S3Upload.

  /** Starts the multipart upload that stages a big file. */
  async createUpload(staging: string): Promise<string> {
    const response = await this.#request("POST", staging, { query: { uploads: "" } });
    const id = xmlOne(await response.text(), "UploadId");
    if (!id) throw new StoreError("io", "Object store started an upload without an id");
    return id;
  }

  /** Sends one part; resolves with its ETag. */
  async uploadPart(staging: string, id: string, part: number, bytes: Uint8Array): Promise<string> {
    const response = await this.#request("PUT", staging, {
      query: { partNumber: String(part), uploadId: id },
      body: bytes,
    });
    return response.headers.get("etag") ?? "";
  }

  /** Joins the parts into the staging object. */
  async completeUpload(staging: string, id: string, etags: string[]): Promise<void> {
    const parts = etags.map((etag, i) =>
      `<Part><PartNumber>${i + 1}</PartNumber><ETag>${
        etag.replace(/&/g, "&amp;").replace(/</g, "&lt;")
      }</ETag></Part>`
    ).join("");
    const response = await this.#request("POST", staging, {
      query: { uploadId: id },
      body: `<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>`,
    });
    // A complete can fail after its 200 has begun: the error is then in the body.
    const text = await response.text();
    if (text.includes("<Error>")) throw this.#failure(200, text, "POST", staging);
  }

  /** Abandons a multipart upload, best effort. */
  async abortUpload(staging: string, id: string): Promise<void> {
    await this.#request("DELETE", staging, { query: { uploadId: id }, expect: [404] }).catch(
      () => {},
    );
  }

  /** Removes a staging object, best effort. */
  async removeStaged(staging: string): Promise<void> {
    await this.#request("DELETE", staging, { expect: [404] }).catch(() => {});
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
    await this.#withClaim(name, key, overwrite, async () => {
      if (!overwrite && await this.#head(key)) {
        throw new StoreError("exists", `File exists: ${quote(name)}`);
      }
      const headers: Record<string, string> = { [CHECKSUM_HEADER]: checksum };
      // Stores that honour it make the no-overwrite rule hold against writers other than ferry.
      if (!overwrite) headers["If-None-Match"] = "*";
      let body: Uint8Array | undefined;
      if ("bytes" in from) {
        body = from.bytes;
      } else {
        const { bucket, prefix } = this.#options;
        headers["x-amz-copy-source"] = `/${bucket}/${encodeKey(prefix + from.staged)}`;
        headers["x-amz-metadata-directive"] = "REPLACE";
      }
      const response = await this.#request("PUT", key, { headers, body, expect: [412] });
      if (response.status === 412) throw new StoreError("exists", `File exists: ${quote(name)}`);
      const text = await response.text();
      if (text.includes("<Error>")) throw this.#failure(200, text, "PUT", key);
    });
  }

  async #withClaim(
    name: string,
    key: string,
    overwrite: boolean,
    publish: () => Promise<void>,
  ): Promise<void> {
    const claim = CLAIMS + await sha256Hex(key);
    for (let wait = 0;; wait++) {
      const taken = await this.#request("PUT", claim, {
        headers: { "If-None-Match": "*" },
        body: key,
        expect: [412],
      });
      if (taken.ok) break;
      const held = await this.#head(claim);
      if (held) {
        const now = Date.parse(held.headers.get("date") ?? "") || Date.now();
        const since = Date.parse(held.headers.get("last-modified") ?? "") || now;
        if (now - since > this.#options.claimStaleMs) {
          // Its server died while publishing: the claim is broken, and raced for again.
          await this.#request("DELETE", claim, { expect: [404] });
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
      await this.#request("DELETE", claim, { expect: [404] }).catch(() => {});
    }
  }
}

interface S3ReaderInit {
  name: string;
  size: number;
  etag: string;
  /** The checksum stored with the object, if any. */
  stored: string | null;
  /** A fresh checksum to verify a read from the start with, when there is a stored one. */
  checksum: Checksum | null;
  timeoutMs: number;
  /** Starts a ranged GET from `from`, pinned to the version opened. */
  get: (from: number, signal: AbortSignal) => Promise<Response>;
}

/**
 * A download from the store, read in place: a ranged GET from the current position, pinned to
 * the version opened (If-Match), so a reader never sees a mix of two versions; a read that
 * started at byte 0 is checked against the stored checksum at the end.
 */
class S3Reader implements StoreReader {
  #init: S3ReaderInit;
  #position = 0;
  #body?: ReadableStreamDefaultReader<Uint8Array>;
  #controller?: AbortController;
  #left?: Uint8Array;
  #checksum: Checksum | null;

  constructor(init: S3ReaderInit) {
    this.#init = init;
    this.#checksum = init.checksum;
  }

  async #timed<T>(work: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const controller = this.#controller;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller?.abort();
        reject(
          new StoreError(
            "io",
            `Object store stopped sending ${quote(this.#init.name)} for ${
              this.#init.timeoutMs / 1000
            } s`,
          ),
        );
      }, this.#init.timeoutMs);
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #open(): Promise<ReadableStreamDefaultReader<Uint8Array>> {
    this.#controller = new AbortController();
    const response = await this.#init.get(this.#position, this.#controller.signal);
    if (response.status === 412) {
      throw new StoreError(
        "io",
        `${quote(this.#init.name)} was replaced while being read: get it again`,
      );
    }
    if (!response.body) throw new StoreError("io", "Object store sent no body");
    return response.body.getReader();
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#position >= this.#init.size) {
      this.#verify();
      return null;
    }
    if (!this.#left || this.#left.length === 0) {
      try {
        this.#body ??= await this.#open();
        const next = await this.#timed(this.#body.read());
        if (next.done) {
          throw new StoreError("io", `Object store ended ${quote(this.#init.name)} early`);
        }
        this.#left = next.value;
      } catch (error) {
        this.close();
        if (error instanceof StoreError) throw error;
        throw new StoreError(
          "io",
          `Object store failed while sending ${quote(this.#init.name)}: ${describeError(error)}`,
        );
      }
    }
    const n = Math.min(p.length, this.#left.length, this.#init.size - this.#position);
    p.set(this.#left.subarray(0, n));
    this.#left = this.#left.subarray(n);
    this.#checksum?.update(p.subarray(0, n));
    this.#position += n;
    return n;
  }

  #verify(): void {
    const checksum = this.#checksum;
    if (!checksum) return;
    this.#checksum = null;
    if (checksum.digest() !== this.#init.stored) {
      throw new StoreError(
        "checksum",
        `Stored ${quote(this.#init.name)} does not match the checksum it was stored with`,
      );
    }
  }

  async seek(offset: number, whence: Deno.SeekMode): Promise<number> {
    if (whence !== Deno.SeekMode.Start) throw new Error("S3Reader seeks from the start only");
    if (offset === this.#position) return offset;
    this.close();
    this.#position = offset;
    // Only a read from byte 0 can be checked against the stored checksum.
    this.#checksum = offset === 0 && this.#init.stored ? await createChecksum() : null;
    return offset;
  }

  close(): void {
    this.#controller?.abort();
    this.#controller = undefined;
    this.#body = undefined;
    this.#left = undefined;
  }
}

interface S3UploadInit {
  name: string;
  key: string;
  overwrite: boolean;
  bufferSize: number;
  staging: string;
  store: S3Store;
  done: () => void;
}

/**
 * An upload to the store. Bytes gather in a part-sized buffer; an upload that fits in one is
 * published with a single PUT at commit. A bigger one becomes a multipart upload under the
 * staging prefix, one part sent while the next fills (two buffers: memory is bounded per
 * transfer), completed and published only at commit, after the transfer was verified.
 */
class S3Upload implements StoreUpload {
  readonly name: string;
  readonly offset = 0;
  readonly keptDropped = false;
  readonly file: StoreReader = NOTHING;
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

  constructor(init: S3UploadInit) {
    this.name = init.name;
    this.#init = init;
    this.#buffers = [new Uint8Array(init.bufferSize)];
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
    const { store, staging, bufferSize } = this.#init;
    await this.#sending;
    this.#id ??= await store.createUpload(staging);
    const id = this.#id;
    const part = this.#etags.length + 1;
    this.#etags.push("");
    const bytes = this.#buffers[this.#current].subarray(0, this.#filled);
    this.#sending = store.uploadPart(staging, id, part, bytes).then((etag) => {
      this.#etags[part - 1] = etag;
    });
    this.#sending.catch(() => {}); // awaited before the next part, and at commit
    this.#current = 1 - this.#current;
    this.#buffers[this.#current] ??= new Uint8Array(bufferSize);
    this.#filled = 0;
  }

  async commit(verified?: TransferResult): Promise<void> {
    if (this.#finished) throw new Error("Upload is already finished");
    try {
      if (!verified || verified.size !== this.#size) {
        throw new StoreError("checksum", `Upload of ${quote(this.name)} was not verified`);
      }
      const { store, name, key, overwrite, staging } = this.#init;
      if (this.#id === undefined) {
        const bytes = this.#buffers[this.#current].subarray(0, this.#filled);
        await store.publish(name, key, overwrite, verified.checksum, { bytes });
      } else {
        if (this.#filled > 0) await this.#sendPart();
        await this.#sending;
        await store.completeUpload(staging, this.#id, this.#etags);
        this.#id = undefined;
        this.#staged = true;
        await store.publish(name, key, overwrite, verified.checksum, { staged: staging });
      }
    } catch (error) {
      await this.discard();
      throw error;
    }
    await this.discard();
  }

  keep(): Promise<KeepResult> {
    return this.discard().then(() => ({ kept: false, reason: "off" }));
  }

  async discard(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    const { store, staging, done } = this.#init;
    try {
      await this.#sending.catch(() => {});
      if (this.#id !== undefined) await store.abortUpload(staging, this.#id);
      if (this.#staged) await store.removeStaged(staging);
    } finally {
      this.#buffers = [];
      done();
    }
  }
}
