/**
 * The client's stall watchdog, which lib/client.ts's `Session` runs each request under: a server
 * that stops mid-request (frozen, or a network that silently drops everything) would otherwise be
 * waited for forever. It gives a request up, closing the connection, once the server has sent
 * nothing and taken nothing for the stall timeout, not counting the time the client spends on its
 * own side (reading the source, writing the target, pacing for a rate limit); and while that own
 * side keeps a download from reading the socket for long, it reads ahead to see the server going
 * away. The server's watchdog, with rules of its own, is lib/watchdog.ts.
 *
 * @module
 */

import { watchInterval } from "./connection.ts";
import type { Activity } from "./connection_activity.ts";
import { UserError } from "./errors.ts";
import type { FrameReader } from "./frame_reader.ts";
import type { LocalWaits } from "./transfer.ts";

/**
 * A download whose local side (its sink, its pacing) has kept it from reading the socket for
 * this long starts reading ahead, to see the server going away (see FrameReader.watch).
 */
const WATCH_AFTER_MS = 1000;

/**
 * Most bytes a download reads ahead while its local side is busy: a server's close is seen only
 * once the bytes it sent before it are in, and this covers what the kernels' buffers hold.
 */
const READ_AHEAD_LIMIT = 16 << 20;

/** Options for {@link StallWatchdog}. */
export interface StallWatchdogOptions {
  /** `host:port` of the server, for messages. */
  target: string;
  /**
   * Give up a request once the server has sent nothing and taken nothing for this many
   * milliseconds, not counting time spent on the local side. Off when absent.
   */
  stallTimeoutMs?: number;
  /** Closes the connection, which makes whatever is pending fail. */
  close: () => void;
}

/**
 * One connection's stall watchdog. Its {@link activity} goes to the connection's frame reader and
 * writer, which stamp it as bytes move; its {@link local} is told of every wait on the local side.
 *
 * @example Run a request under the watchdog
 * ```ts
 * import { StallWatchdog } from "./client_watchdog.ts";
 * import { FrameReader } from "./frame_reader.ts";
 *
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 9000 });
 * const watchdog = new StallWatchdog({
 *   target: "127.0.0.1:9000",
 *   stallTimeoutMs: 30_000,
 *   close: () => conn.close(),
 * });
 * const frames = new FrameReader(conn, { activity: watchdog.activity });
 * const frame = await watchdog.run(() => frames.readControl(), (error) => error);
 * ```
 */
export class StallWatchdog {
  /** When bytes last moved either way; the frame reader and writer keep it. */
  readonly activity: Activity = { last: Date.now() };
  /** Told of each wait on the local side; the watchdog holds off while any is under way. */
  readonly local: LocalWaits = {
    begin: () => {
      if (this.#localBusy++ === 0) this.#localSince = Date.now();
    },
    end: () => {
      this.#localBusy--;
      this.activity.last = Date.now();
      this.#watchStop?.abort();
    },
  };
  #target: string;
  #limit?: number;
  #close: () => void;
  /** Waits on the local side now under way. */
  #localBusy = 0;
  /** When the local side last became busy. */
  #localSince = 0;
  /** Stops a read ahead (see {@link watchWhileLocal}) when the local side is done. */
  #watchStop?: AbortController;
  #stalled = false;

  /** Watches the connection that `options.close` closes. */
  constructor(options: StallWatchdogOptions) {
    this.#target = options.target;
    this.#limit = options.stallTimeoutMs;
    this.#close = options.close;
  }

  /**
   * Runs one request under the watchdog. The connection is closed when it fires, which makes
   * whatever is pending fail; that failure is reported as the stall. Any other failure is thrown
   * as `failure` words it.
   */
  async run<T>(request: () => Promise<T>, failure: (error: unknown) => unknown): Promise<T> {
    const limit = this.#limit;
    if (limit === undefined) {
      try {
        return await request();
      } catch (error) {
        throw failure(error);
      }
    }
    if (this.#stalled) throw this.#stallError(limit);
    this.activity.last = Date.now();
    const timer = setInterval(() => {
      if (this.#localBusy === 0 && Date.now() - this.activity.last > limit) {
        this.#stalled = true;
        clearInterval(timer);
        this.#close();
      }
    }, watchInterval(limit));
    try {
      return await request();
    } catch (error) {
      throw this.#stalled ? this.#stallError(limit) : failure(error);
    } finally {
      clearInterval(timer);
    }
  }

  #stallError(limit: number): UserError {
    const seconds = limit / 1000;
    return new UserError(
      `Server at ${this.#target} sent and took nothing for ${seconds} s; ` +
        "gave up (--stall-timeout)",
    );
  }

  /**
   * While a download's local side keeps it from reading `frames` for long (a slow sink, the
   * pacing), reads ahead to see whether the server ends the transfer, and aborts `lost` with the
   * reason if it does before END. Returns the function that stops watching.
   */
  watchWhileLocal(frames: FrameReader, lost: AbortController): () => void {
    const timer = setInterval(() => {
      if (this.#localBusy === 0 || Date.now() - this.#localSince < WATCH_AFTER_MS) return;
      if (this.#watchStop && !this.#watchStop.signal.aborted) return;
      const stop = this.#watchStop = new AbortController();
      frames.watch(READ_AHEAD_LIMIT, stop.signal).then((outcome) => {
        if (outcome && "error" in outcome) lost.abort(outcome.error);
      });
    }, WATCH_AFTER_MS / 4);
    return () => {
      clearInterval(timer);
      this.#watchStop?.abort();
      this.#watchStop = undefined;
    };
  }
}
