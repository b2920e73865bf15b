/**
 * Write-behind flushing for a file that will be flushed to disk before it gets its name. While
 * data is still arriving, a second handle keeps one `fdatasync` running, so the disk writes
 * overlap the transfer and the final flush has only the tail left. Without it the kernel holds a
 * whole upload in memory and writes it all out after the last byte, so a flushed transfer took
 * several times its network time (docs/performance.md, "Flushing behind the writes").
 *
 * A second handle because Deno runs operations on one file handle one after another: a flush on
 * the writing handle held every write behind it. This is only an optimisation: the final flush on
 * the writing handle decides, and it reports any write-back error (Linux reports such an error to
 * every handle that was open when it happened).
 *
 * @module
 */

import { type CheckedFile, loadCheckedOpen, openChecked } from "./checked_open.ts";
import { closeQuietly } from "./connection.ts";

/** Bytes written between the starts of two flushes, at the least. */
export const FLUSH_EVERY = 32 * 1024 * 1024;

/** Options for {@link FlushBehind}. */
export interface FlushBehindOptions {
  /** Bytes that must be waiting before a flush starts; defaults to {@link FLUSH_EVERY}. */
  every?: number;
}

/** Keeps a flush of `path` running behind the writes to it. */
export class FlushBehind {
  #path: string;
  #every: number;
  #waiting = 0;
  #handle?: CheckedFile;
  #running?: Promise<void>;
  #stopped = false;
  #flushes = 0;

  /** For the file at `path`, which the caller writes through a handle of its own. */
  constructor(path: string, options: FlushBehindOptions = {}) {
    this.#path = path;
    this.#every = options.every ?? FLUSH_EVERY;
  }

  /** Flushes started so far. */
  get flushes(): number {
    return this.#flushes;
  }

  /** Counts bytes just written; starts a flush once enough are waiting and none is running. */
  wrote(bytes: number): void {
    this.#waiting += bytes;
    if (this.#stopped || this.#running || this.#waiting < this.#every) return;
    this.#waiting = 0;
    this.#flushes++;
    this.#running = this.#flush().finally(() => this.#running = undefined);
  }

  async #flush(): Promise<void> {
    try {
      // Through the checked open: the path may be in a folder others write to (a download's
      // `.part`), and a FIFO swapped in would freeze Deno's open, and with it the final flush,
      // which waits for this one. A link there is refused too; the writing handle is not. For
      // reading only: a file made with a mode its owner may not write (0444) opens so too.
      if (!this.#handle) {
        await loadCheckedOpen();
        this.#handle = openChecked(this.#path);
      }
      await this.#handle.syncData();
    } catch {
      // Cannot open or flush: no more write-behind. The final flush reports what matters.
      this.#stopped = true;
    }
  }

  /** Resolves once no flush is running. */
  async idle(): Promise<void> {
    await this.#running;
  }

  /** Stops flushing: waits for a flush that is running, then closes the second handle. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
    if (this.#handle) closeQuietly(this.#handle);
    this.#handle = undefined;
  }
}
