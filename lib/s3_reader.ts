/**
 * A download from the S3 store, read in place ({@link StoreReader}): a ranged GET from the current
 * position, pinned to the version opened (If-Match on its ETag), so that a reader never sees a
 * mix of two versions, and a read that started at byte 0 checked against the checksum stored with
 * the object. Every wait on the store is bounded.
 *
 * @module
 */

import { type Checksum, createChecksum } from "./checksum.ts";
import { describeError, StoreError } from "./errors.ts";
import { quote } from "./file_store.ts";
import type { StoreReader } from "./store.ts";

/** Nothing to read: the staged bytes of an upload that resumes nothing. */
export const NOTHING: StoreReader = {
  read: () => Promise.resolve(null),
  seek: () => Promise.resolve(0),
  close: () => {},
};

/** What an {@link S3Reader} reads. */
export interface S3ReaderInit {
  /** The name, for messages. */
  name: string;
  /** Bytes in the version opened. */
  size: number;
  /** The checksum stored with the object, if any: a read from byte 0 is checked against it. */
  stored: string | null;
  /** Longest wait for the store, in milliseconds. */
  timeoutMs: number;
  /** Starts a GET from byte `from` of the version opened; 412 if it is gone. */
  get: (from: number, signal: AbortSignal) => Promise<Response>;
}

/**
 * A download from the store, read in place: a ranged GET from the current position, pinned to
 * the version opened (If-Match), so a reader never sees a mix of two versions; a read that
 * started at byte 0 is checked against the stored checksum at the end.
 */
export class S3Reader implements StoreReader {
  #init: S3ReaderInit;
  #position = 0;
  #body?: ReadableStreamDefaultReader<Uint8Array>;
  #controller?: AbortController;
  #left?: Uint8Array;
  #checksum: Checksum | null;

  private constructor(init: S3ReaderInit, checksum: Checksum | null) {
    this.#init = init;
    this.#checksum = checksum;
  }

  /** A reader at byte 0 of what `init` describes. */
  static async open(init: S3ReaderInit): Promise<S3Reader> {
    return new S3Reader(init, init.stored ? await createChecksum() : null);
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
