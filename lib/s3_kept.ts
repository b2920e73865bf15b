/**
 * Interrupted uploads the S3 store keeps for `put --resume`: each one an object under
 * `PREFIX.ferry-staging/kept/`, named by the SHA-256 of the file's name, carrying the name and
 * the announced size in its metadata; within a byte budget and an age, the oldest going first,
 * as the folder store's kept uploads (lib/kept_uploads.ts). Any server on the bucket can resume
 * what another kept.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import { quote, STAGING_DIR } from "./remote_name.ts";
import { formatBytes, formatDuration, formatHex } from "./format.ts";
import {
  type KeepResult,
  KEPT_DEFAULTS,
  type KeptOptions,
  type KeptTotals,
  type KeptUpload,
} from "./kept_uploads.ts";
import type { S3Bucket } from "./s3_bucket.ts";
import type { KeptView } from "./store.ts";

/** Where kept uploads live, under the prefix. */
export const KEPT_KEYS = `${STAGING_DIR}/kept/`;

const NAME_HEADER = "x-amz-meta-ferry-name";
const SIZE_HEADER = "x-amz-meta-ferry-size";

/** A kept upload found for a name. */
export interface KeptObject {
  /** Its key, relative to the prefix. */
  key: string;
  /** Bytes kept. */
  bytes: number;
  /** The size the upload announced, or null. */
  size: number | null;
  /** Its ETag, to pin reads and copies to this version. */
  etag: string;
}

async function keyOf(name: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name));
  return KEPT_KEYS + formatHex(new Uint8Array(digest));
}

/** The kept uploads of one S3 store. */
export class S3Kept implements KeptView {
  /** Bytes all kept uploads together may hold; 0 keeps none. */
  readonly budget: number;
  /** How long one is kept, in milliseconds. */
  readonly maxAgeMs: number;
  /** Where they are, for the banner. */
  readonly where: string;
  #bucket: S3Bucket;
  #log: (line: string) => void;

  /** For `bucket`, logging what it removes to `log`. */
  constructor(bucket: S3Bucket, options: KeptOptions, log: (line: string) => void) {
    this.#bucket = bucket;
    this.budget = options.budget ?? KEPT_DEFAULTS.budget;
    this.maxAgeMs = options.maxAgeMs ?? KEPT_DEFAULTS.maxAgeMs;
    this.where = `${bucket.prefix}${KEPT_KEYS}`;
    this.#log = log;
  }

  /** Whether interrupted uploads are kept at all. */
  get enabled(): boolean {
    return this.budget > 0;
  }

  /** What is kept for `key` (a file's key), if anything. */
  async find(key: string): Promise<KeptObject | null> {
    const kept = await keyOf(key);
    const head = await this.#bucket.head(kept);
    if (!head) return null;
    const size = head.headers.get(SIZE_HEADER);
    return {
      key: kept,
      bytes: Number(head.headers.get("content-length") ?? 0),
      size: size ? Number(size) : null,
      etag: head.headers.get("etag") ?? "",
    };
  }

  /**
   * A test of whether anything is kept for a file's key, from one listing of the kept uploads
   * (a request per 1,000 of them) rather than a HEAD per key, for a tree's many files. What is
   * kept after the listing is not seen: a file found nothing for is sent whole, as it would be.
   */
  async lister(): Promise<(key: string) => Promise<boolean>> {
    const kept = new Set<string>();
    for await (const object of this.#bucket.listObjects(KEPT_KEYS)) kept.add(object.key);
    return async (key) => kept.size > 0 && kept.has(await keyOf(key));
  }

  /** Removes what is kept for `key`; says whether there was anything. */
  async drop(key: string): Promise<boolean> {
    const kept = await keyOf(key);
    if (!await this.#bucket.head(kept)) return false;
    await this.#bucket.remove(kept);
    return true;
  }

  /**
   * Keeps the staged object `staged` (the bytes of an interrupted upload of `key`) for a resume:
   * copied by reference under the kept key with the name and size, then the budget is enforced.
   * Removes `staged` either way.
   */
  async keep(key: string, staged: string, size: number | null): Promise<KeepResult> {
    if (!this.enabled) return { kept: false, reason: "off" };
    const kept = await keyOf(key);
    try {
      const response = await this.#bucket.request("PUT", kept, {
        headers: {
          "x-amz-copy-source": this.#bucket.copySource(staged),
          "x-amz-metadata-directive": "REPLACE",
          [NAME_HEADER]: encodeURIComponent(key),
          [SIZE_HEADER]: size === null ? "" : String(size),
        },
      });
      const text = await response.text();
      if (text.includes("<Error>")) throw this.#bucket.failure(200, text, "PUT", kept);
    } finally {
      await this.#bucket.remove(staged).catch(() => {});
    }
    await this.prune();
    const head = await this.#bucket.head(kept);
    if (!head) return { kept: false, reason: "over_budget" };
    const since = Date.parse(head.headers.get("last-modified") ?? "") || Date.now();
    return { kept: true, expiresAt: since + this.maxAgeMs };
  }

  async #all(): Promise<{ key: string; bytes: number; keptAt: number }[]> {
    const found = [];
    for await (const object of this.#bucket.listObjects(KEPT_KEYS)) {
      found.push({ key: object.key, bytes: object.size, keptAt: object.mtime });
    }
    return found.sort((a, b) => a.keptAt - b.keptAt);
  }

  /** Removes what is expired or, oldest first, over the budget; says what is left. */
  async prune(): Promise<KeptTotals> {
    const now = await this.#bucket.now();
    let all = await this.#all();
    let total = all.reduce((sum, entry) => sum + entry.bytes, 0);
    const gone = new Set<string>();
    for (const entry of all) {
      const expired = now - entry.keptAt > this.maxAgeMs;
      if (!expired && total <= this.budget) continue;
      await this.#bucket.remove(entry.key);
      gone.add(entry.key);
      total -= entry.bytes;
      const why = !this.enabled
        ? "keeping is off"
        : expired
        ? `expired after ${formatDuration(this.maxAgeMs)}`
        : `over the keep budget of ${formatBytes(this.budget)}`;
      this.#log(`evicted kept upload ${quote(entry.key)} ${entry.bytes} bytes: ${why}`);
    }
    all = all.filter((entry) => !gone.has(entry.key));
    return { count: all.length, bytes: total };
  }

  /** The kept uploads, for the kept query. */
  async list(): Promise<KeptUpload[]> {
    const entries: KeptUpload[] = [];
    for (const entry of await this.#all()) {
      const head = await this.#bucket.head(entry.key);
      if (!head) continue;
      let name: string;
      try {
        name = decodeURIComponent(head.headers.get(NAME_HEADER) ?? "");
      } catch {
        continue;
      }
      if (!name) continue;
      const size = head.headers.get(SIZE_HEADER);
      entries.push({
        name,
        bytes: entry.bytes,
        size: size ? Number(size) : null,
        keptAt: entry.keptAt,
        expiresAt: entry.keptAt + this.maxAgeMs,
      });
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}

/** The error for kept bytes that changed while being resumed. */
export function keptChanged(name: string): StoreError {
  return new StoreError("io", `The kept upload of ${quote(name)} changed while being resumed`);
}
