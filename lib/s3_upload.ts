/**
 * An upload to the S3 store (lib/s3_store.ts): the bytes of one put gathered into part-sized
 * buffers and sent as a multipart upload under the staging prefix, then published by the store
 * once verified, kept for a later `put --resume` (lib/s3_kept.ts), or aborted. The store decides
 * the name and publishes it; this module owns the upload's parts from its first byte to one of
 * those ends, a resumed upload's kept bytes included.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import type { KeepResult } from "./kept_uploads.ts";
import { quote } from "./remote_name.ts";
import { BucketError, type S3Bucket } from "./s3_bucket.ts";
import { keptChanged, type KeptObject, type S3Kept } from "./s3_kept.ts";
import { NOTHING } from "./s3_reader.ts";
import type { StoreReader, StoreUpload } from "./store.ts";
import type { TransferResult } from "./transfer.ts";

/** Parts of a kept upload copied at once when a resumed upload ends. */
const KEPT_COPIES = 4;

/**
 * What an upload needs of its store, lib/s3_store.ts's S3Store (named here rather than imported,
 * so the two modules do not import each other).
 */
export interface S3UploadStore {
  /** Bytes per part. */
  readonly partSize: number;
  /** Interrupted uploads kept for `put --resume`. */
  readonly kept: S3Kept;
  /** Publishes a verified upload under `key` (see S3Store.publish). */
  publish(
    name: string,
    key: string,
    overwrite: boolean,
    checksum: string,
    from: { bytes: Uint8Array } | { staged: string },
    metadata?: Record<string, string>,
  ): Promise<void>;
}

/** What {@link S3Store.beginUpload} gives an upload. */
export interface S3UploadInit {
  name: string;
  key: string;
  overwrite: boolean;
  bufferSize: number;
  size: number | null;
  /** Metadata headers published with the file (a tree transfer's mtime and mode). */
  stamp: Record<string, string>;
  staging: string;
  store: S3UploadStore;
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
export class S3Upload implements StoreUpload {
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

  /** Sends what is buffered as the last part and joins the parts into the staging object. */
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
      const { store, name, key, overwrite, staging, stamp } = this.#init;
      if (this.#id === undefined && this.#keptParts === 0) {
        const bytes = this.#buffers[this.#current].subarray(0, this.#filled);
        await store.publish(name, key, overwrite, verified.checksum, { bytes }, stamp);
      } else {
        await this.#complete();
        await store.publish(name, key, overwrite, verified.checksum, { staged: staging }, stamp);
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
