/**
 * Rate limiting for `--limit-rate`: a pacer that delays each chunk so the average rate since the
 * start stays at or under the limit.
 *
 * @module
 */

/** Paces a stream of chunks to a byte rate. */
export class RateLimiter {
  /** Bytes per second. */
  readonly rate: number;
  #start = 0;
  #bytes = 0;

  /** Creates a limiter for `rate` bytes per second. */
  constructor(rate: number) {
    this.rate = rate;
  }

  /** Chunk size that keeps the pacing smooth: about an eighth of a second's worth. */
  get chunkSize(): number {
    return Math.min(33554432, Math.max(16384, Math.floor(this.rate / 8)));
  }

  /** Accounts for `bytes` and waits until the average rate is back under the limit. */
  async take(bytes: number): Promise<void> {
    if (this.#start === 0) this.#start = performance.now();
    this.#bytes += bytes;
    const due = this.#start + (this.#bytes / this.rate) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}
