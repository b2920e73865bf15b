/**
 * A download from the S3 store, read in place ({@link StoreReader}): ranged GETs from the current
 * position, pinned to the version opened (If-Match on its ETag), so that a reader never sees a
 * mix of two versions, and a read that started at byte 0 checked against the checksum stored with
 * the object. A big object is read as several ranges at once, handed on in order, as rclone and
 * the AWS tools do: over a distant link one HTTP stream is bounded by its window and round trips.
 * Every wait on the store is bounded.
 *
 * @module
 */

import { type Checksum, createChecksum } from "./checksum.ts";
import { describeError, StoreError } from "./errors.ts";
import { IdleTimer } from "./idle_timer.ts";
import { quote } from "./remote_name.ts";
import type { RangeBody } from "./s3_http.ts";
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
  /**
   * Starts a GET of bytes `from` to `to` (inclusive; to the end when null) of the version opened,
   * its body read into the reader's buffers; status 412 if it is gone. Aborting `signal` ends it.
   */
  get: (from: number, to: number | null, signal: AbortSignal) => Promise<RangeBody>;
  /** See {@link RANGED_DEFAULTS}.rangeSize. */
  rangeSize?: number;
  /** See {@link RANGED_DEFAULTS}.ranges. */
  ranges?: number;
}

/** Defaults for the parallel ranged reads of {@link S3Reader}. */
export const RANGED_DEFAULTS = {
  /** Bytes per ranged GET: 8 MiB, a part's size. */
  rangeSize: 8 * 2 ** 20,
  /** Ranges in flight at once, each held whole until read: 4 (32 MiB per download at most). */
  ranges: 4,
} as const;

/**
 * A download from the store, read in place: a ranged GET from the current position, pinned to
 * the version opened (If-Match), so a reader never sees a mix of two versions; a read that
 * started at byte 0 is checked against the stored checksum at the end.
 */
export class S3Reader implements StoreReader {
  #init: S3ReaderInit;
  #position = 0;
  #body?: RangeBody;
  #controller?: AbortController;
  #left?: Uint8Array;
  #checksum: Checksum | null;
  /** Ranges requested ahead, in order, the first starting at the position. */
  #ahead: Promise<Uint8Array>[] = [];
  /** The buffer of the range being read from, which goes back to {@link #spare} once read. */
  #current?: Uint8Array;
  /**
   * Range buffers read out, for the next ranges: a fresh 8 MiB buffer per range cost the
   * allocator's zeroing and the kernel's page faults for every byte downloaded.
   */
  #spare: Uint8Array[] = [];
  /** Where the next range to request starts. */
  #nextRange = 0;
  /** The caller checks the stored checksum (see {@link takeCheck}): this reader hashes nothing. */
  #handedOver = false;

  private constructor(init: S3ReaderInit, checksum: Checksum | null) {
    this.#init = init;
    this.#checksum = checksum;
  }

  /** A reader at byte 0 of what `init` describes. */
  static async open(init: S3ReaderInit): Promise<S3Reader> {
    return new S3Reader(init, init.stored ? await createChecksum() : null);
  }

  #stalled(): StoreError {
    return new StoreError(
      "io",
      `Object store stopped sending ${quote(this.#init.name)} for ${this.#init.timeoutMs / 1000} s`,
    );
  }

  async #timed<T>(work: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const controller = this.#controller;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const stalled = this.#stalled();
        // The whole download is lost: the other ranges in flight end with this stall as reason.
        controller?.abort(stalled);
        reject(stalled);
      }, this.#init.timeoutMs);
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #open(): Promise<RangeBody> {
    this.#controller = new AbortController();
    const from = this.#position;
    const body = await this.#timed(this.#init.get(from, null, this.#controller.signal));
    this.#check(body, this.#init.size - from);
    return body;
  }

  /** Refuses a response that is not the `length` bytes asked for. */
  #check(body: RangeBody, length: number): void {
    if (body.status === 412) {
      body.cancel();
      throw this.#replaced();
    }
    if (body.length !== length || (body.status !== 206 && body.status !== 200)) {
      body.cancel();
      const what = `${body.length} bytes of ${quote(this.#init.name)} (HTTP ${body.status})`;
      throw new StoreError("io", `Object store sent ${what} where ${length} were asked for`);
    }
  }

  /** Whether what is left is read as parallel ranges rather than one stream. */
  #ranged(): boolean {
    const rangeSize = this.#init.rangeSize ?? RANGED_DEFAULTS.rangeSize;
    return (this.#init.ranges ?? RANGED_DEFAULTS.ranges) > 1 &&
      this.#init.size - this.#position > rangeSize;
  }

  /**
   * Reads bytes `from` to `from + length` whole, each wait on the store bounded: by one timer per
   * range, pushed back as bytes arrive, rather than a timer and a race for every chunk the body
   * yields.
   */
  async #range(from: number, length: number, signal: AbortSignal): Promise<Uint8Array> {
    const body = await this.#timed(this.#init.get(from, from + length - 1, signal));
    this.#check(body, length);
    const spare = this.#spare.pop();
    const bytes = spare && spare.length >= length
      ? spare.subarray(0, length)
      : new Uint8Array(Math.max(length, this.#init.rangeSize ?? RANGED_DEFAULTS.rangeSize))
        .subarray(0, length);
    let stalled = false;
    const idle = new IdleTimer(this.#init.timeoutMs, () => {
      stalled = true;
      // Ends the pending read, which is then reported as the stall it is.
      body.cancel();
    });
    let filled = 0;
    try {
      while (filled < length) {
        const n = await body.read(bytes.subarray(filled));
        if (stalled) throw this.#stalled();
        if (n === null) break;
        idle.touch();
        filled += n;
      }
    } catch (error) {
      throw stalled ? this.#stalled() : error;
    } finally {
      idle.stop();
      body.cancel();
    }
    if (filled < length) {
      throw new StoreError("io", `Object store ended ${quote(this.#init.name)} early`);
    }
    return bytes;
  }

  /** The next bytes in order from the ranges in flight, requesting more to keep them full. */
  async #nextRanged(): Promise<Uint8Array> {
    const rangeSize = this.#init.rangeSize ?? RANGED_DEFAULTS.rangeSize;
    const ranges = this.#init.ranges ?? RANGED_DEFAULTS.ranges;
    this.#controller ??= new AbortController();
    const signal = this.#controller.signal;
    if (this.#ahead.length === 0) this.#nextRange = this.#position;
    while (this.#ahead.length < ranges && this.#nextRange < this.#init.size) {
      const length = Math.min(rangeSize, this.#init.size - this.#nextRange);
      const range = this.#range(this.#nextRange, length, signal);
      // Awaited in turn; one that fails after a close is nobody's concern.
      range.catch(() => {});
      this.#ahead.push(range);
      this.#nextRange += length;
    }
    const bytes = await this.#ahead[0];
    this.#ahead.shift();
    return bytes;
  }

  #replaced(): StoreError {
    return new StoreError(
      "io",
      `${quote(this.#init.name)} was replaced while being read: get it again`,
    );
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#position >= this.#init.size) {
      this.#verify();
      return null;
    }
    if (!this.#left || this.#left.length === 0) {
      try {
        if (this.#body === undefined && (this.#ahead.length > 0 || this.#ranged())) {
          // The range just read goes back before the next is awaited: 4 ranges held at most.
          this.#left = undefined;
          if (this.#current) this.#spare.push(this.#current);
          this.#current = undefined;
          this.#left = this.#current = await this.#nextRanged();
        } else {
          // One stream, read straight into the caller's buffer.
          this.#body ??= await this.#open();
          const want = Math.min(p.length, this.#init.size - this.#position);
          const n = await this.#timed(this.#body.read(p.subarray(0, want)));
          if (n === null) {
            throw new StoreError("io", `Object store ended ${quote(this.#init.name)} early`);
          }
          this.#checksum?.update(p.subarray(0, n));
          this.#position += n;
          return n;
        }
      } catch (error) {
        const reason = this.#controller?.signal.reason;
        this.close();
        if (error instanceof StoreError) throw error;
        // A range cut short because another one stalled: the stall is what went wrong.
        if (reason instanceof StoreError) throw reason;
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
    this.#compare(checksum.digest());
  }

  #compare(digest: string): void {
    if (digest !== this.#init.stored) {
      throw new StoreError(
        "checksum",
        `Stored ${quote(this.#init.name)} does not match the checksum it was stored with`,
      );
    }
  }

  /** See {@link StoreReader.takeCheck}. */
  takeCheck(): ((checksum: string) => void) | undefined {
    if (!this.#init.stored) return undefined;
    this.#handedOver = true;
    this.#checksum = null;
    return (digest) => this.#compare(digest);
  }

  async seek(offset: number, whence: Deno.SeekMode): Promise<number> {
    if (whence !== Deno.SeekMode.Start) throw new Error("S3Reader seeks from the start only");
    if (offset === this.#position) return offset;
    this.close();
    this.#position = offset;
    // Only a read from byte 0 can be checked against the stored checksum.
    this.#checksum = offset === 0 && this.#init.stored && !this.#handedOver
      ? await createChecksum()
      : null;
    return offset;
  }

  close(): void {
    this.#controller?.abort();
    this.#controller = undefined;
    this.#body?.cancel();
    this.#body = undefined;
    this.#left = undefined;
    this.#ahead = [];
    this.#current = undefined;
    this.#spare = [];
  }
}
