/**
 * The idle clock of one stream of bytes: one that moves no byte for the idle time is cut. The HTTP
 * side times its request and response bodies with it, the S3 reader each range it reads. Each
 * chunk only stamps the time; one timer runs per idle period and, when it fires early because
 * bytes moved meanwhile, sleeps again for the rest. A timer cleared and set again for every chunk
 * cost a timer-heap update per 64 KiB, for nothing.
 *
 * @module
 */

/**
 * Calls `onIdle` once when {@link IdleTimer.touch} has not been called for `idleMs`.
 *
 * @example
 * ```ts
 * import { IdleTimer } from "./idle_timer.ts";
 *
 * const idle = new IdleTimer(120_000, () => console.error("idle: cut"));
 * idle.touch(); // after each chunk moved
 * idle.stop(); // when the transfer ends
 * ```
 */
export class IdleTimer {
  #idleMs: number;
  #onIdle: () => void;
  #last = Date.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /** Starts the clock now; `idleMs` 0 (or less) never fires. */
  constructor(idleMs: number, onIdle: () => void) {
    this.#idleMs = idleMs;
    this.#onIdle = onIdle;
    if (idleMs > 0) this.#sleep(idleMs);
  }

  /** Bytes moved: the idle period starts again from now. */
  touch(): void {
    this.#last = Date.now();
  }

  /** The transfer is over: the timer never fires. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #sleep(ms: number): void {
    this.#timer = setTimeout(() => {
      if (this.#stopped) return;
      const idle = Date.now() - this.#last;
      if (idle >= this.#idleMs) {
        this.#stopped = true;
        this.#onIdle();
      } else {
        this.#sleep(this.#idleMs - idle);
      }
    }, ms);
  }
}
