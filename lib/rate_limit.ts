/**
 * Rate limiting for `--limit-rate`: a pacer that spaces chunks so the average rate since the
 * start stays at or under the limit, and the chunk size that keeps bytes moving at that rate.
 *
 * @module
 */

/** Largest paced chunk: the wire's largest DATA frame. */
const MAX_PACED_CHUNK = 33554432;

/**
 * Smallest paced chunk, unless the rate is lower still: below it a DATA frame's 5-byte header
 * and a system call per chunk would cost more than the pacing is worth.
 */
export const MIN_PACED_CHUNK = 1024;

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

  /**
   * Chunk size that keeps the pacing smooth: an eighth of a second's worth, at least
   * {@link MIN_PACED_CHUNK}, but never more than one second's worth, so that even at a few bytes
   * a second something leaves every second and a peer's idle timeout sees the transfer move.
   *
   * @example
   * ```ts
   * new RateLimiter(8 << 20).chunkSize; // 1 MiB: 8 MiB/s in eighths of a second
   * new RateLimiter(1024).chunkSize; // 1 KiB, once a second
   * new RateLimiter(1).chunkSize; // 1 byte, once a second
   * ```
   */
  get chunkSize(): number {
    const eighth = Math.floor(this.rate / 8);
    const second = Math.max(1, Math.floor(this.rate));
    return Math.min(MAX_PACED_CHUNK, second, Math.max(MIN_PACED_CHUNK, eighth));
  }

  /**
   * Waits until `bytes` more may leave, then accounts for them: the first chunk goes at once,
   * each later one when the bytes before it have had their time. Rejects with the signal's
   * reason as soon as `signal` aborts (the connection is gone), instead of sleeping on.
   *
   * @example
   * ```ts
   * const limiter = new RateLimiter(1 << 20);
   * for (const chunk of [new Uint8Array(1024), new Uint8Array(1024)]) {
   *   await limiter.take(chunk.length);
   *   // send chunk
   * }
   * ```
   */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const now = performance.now();
    if (this.#start === 0) this.#start = now;
    const due = this.#start + (this.#bytes / this.rate) * 1000;
    this.#bytes += bytes;
    const wait = due - now;
    if (wait > 1) await sleep(wait, signal);
  }
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
