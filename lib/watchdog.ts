/**
 * The server's connection watchdog: the time limits that keep a silent, slow or trickling
 * client from holding a connection for ever. It owns the rules and the clock; the server says
 * which phase each connection is in and does the cutting.
 *
 * - The handshake (TLS, preamble, HELLO, authentication, or a seed request line) must be done
 *   within a deadline counted from the accept, which bytes sent meanwhile do not extend.
 * - A request message, once its first byte is in, must be complete within that same time.
 * - An upload's data must arrive at a minimum average rate over each window (the idle timeout),
 *   not counting the time the server itself spends writing to its disk.
 * - Any phase that moves no byte for the idle timeout is cut; a client that has yet to read what
 *   the server sent gets {@link BEHIND_PERIODS} times as long. Time the server spends on its own
 *   disk work (a local wait, such as hashing its files for `--checksum`) is not idle, unless it
 *   is also waiting to write to the client: the client has nothing to answer meanwhile.
 * - A client that tells, in a tree transfer, that it is hashing files, flushing them or removing
 *   names (lib/tree_work.ts), or reports names it deleted, must claim growth at the minimum rate
 *   from one notice to the next while the server sends nothing; what it claims counts as data
 *   towards an upload's rate.
 *
 * @module
 */

import { watchInterval } from "./connection.ts";
import { formatBytes } from "./format.ts";
import { KEEPALIVE_MAX_MS, KEEPALIVE_MIN_MS } from "./protocol.ts";
import type { Activity } from "./connection_activity.ts";
import type { LocalWaits } from "./transfer.ts";

/**
 * Idle periods a connection may go without moving a byte while its client is behind: the server
 * waits to send to it, or did, and has heard nothing since (see Activity.peerBehind). The kernel
 * wakes a blocked writer only once about a third of the socket's send buffer has drained (up to
 * 1.3 MiB with Linux's default 4 MiB buffer, which loopback reaches), and Deno can neither shrink
 * that buffer nor ask how much of it is left. A client reading 50 KiB/s shows progress only
 * every 27 s; with four periods it survives a 10 s idle timeout, and one that reads nothing is
 * still cut.
 */
export const BEHIND_PERIODS = 4;

/** Rate window used when there is no idle timeout to take it from. */
export const DEFAULT_RATE_WINDOW_MS = 120_000;

/** Limits for a {@link Watchdog}. */
export interface WatchdogOptions {
  /** Cut a connection that moves no byte for this long; 0 never. */
  idleTimeoutMs: number;
  /** The handshake, and each request message once begun, must be done within this; 0 never. */
  handshakeTimeoutMs: number;
  /** Least average upload rate, bytes per second, over each window; 0 for none. */
  minRate: number;
  /** The window the upload rate is averaged over (default: the idle timeout, or 120 s). */
  rateWindowMs?: number;
}

/** Why the watchdog cuts a connection. */
export interface Cut {
  /** For the server's log: `handshake not completed within 5 s`. */
  reason: string;
  /** For the client, one sentence. */
  message: string;
}

/** Where a connection is, as far as the watchdog's rules go. */
type Phase = "handshake" | "waiting" | "receiving" | "working";

/**
 * One connection under watch. Its {@link activity} goes to the connection's frame reader and
 * writer, which stamp it as bytes move; the server calls the phase methods as it goes.
 */
export class Watch {
  /** Stamped by the frame reader and writer. */
  readonly activity: Activity;
  /** Called once, when a rule is broken. */
  readonly onCut: (cut: Cut) => void;
  #phase: Phase = "handshake";
  #accepted: number;
  /** Waiting: bytes received when the wait began, and when the next message was first seen. */
  #receivedBefore = 0;
  #messageSeen?: number;
  /** Receiving: the current window's start and the bytes received by then. */
  #windowStart = 0;
  #windowBytes = 0;
  /** Local waits under way, since when, and their total so far (ms). */
  #local = 0;
  #localSince = 0;
  #localTotal = 0;
  #localAtWindowStart = 0;
  /**
   * Work the client claimed (bytes hashed, lib/tree_work.ts), when it last told, and the bytes
   * this end had sent by then.
   */
  #worked = 0;
  #workTold = 0;
  #sentAtWorkTold = 0;
  /** A rule broken between ticks, reported at the next. */
  #broke?: Cut;
  #cut = false;
  #options?: Required<WatchdogOptions>;

  /** Starts watching a connection accepted now, under `options` (its watchdog's). */
  constructor(onCut: (cut: Cut) => void, options?: Required<WatchdogOptions>) {
    const now = Date.now();
    this.activity = { last: now, received: 0, sent: 0 };
    this.#accepted = now;
    this.onCut = onCut;
    this.#options = options;
  }

  /**
   * How often a client at work in a tree transfer should tell (WELCOME's `keepalive`, ms): a
   * quarter of the idle timeout, within {@link KEEPALIVE_MIN_MS} and {@link KEEPALIVE_MAX_MS};
   * undefined when nothing is ever idle.
   */
  get noticeMs(): number | undefined {
    const idle = this.#options?.idleTimeoutMs ?? 0;
    if (idle <= 0) return undefined;
    return Math.min(KEEPALIVE_MAX_MS, Math.max(KEEPALIVE_MIN_MS, Math.floor(idle / 4)));
  }

  /**
   * The client's work notice grew by `grown` bytes (checked against its manifest already, by
   * lib/tree_work.ts), or it reported names it deleted (`--delete`), which count likewise. The
   * growth must keep to the minimum rate since its previous notice; a first notice (none within a
   * rate window, the idle timeout), or one after the server sent anything, needs only to grow:
   * what moved before it was live traffic, which the other rules judge (a receiver deletes as
   * each manifest batch comes, and the files of the one before may take minutes to go). It
   * counts as data towards an upload's rate.
   */
  peerWork(grown: number): void {
    const now = Date.now();
    const { minRate = 0, rateWindowMs = DEFAULT_RATE_WINDOW_MS } = this.#options ?? {};
    const since = now - this.#workTold;
    const sent = this.activity.sent ?? 0;
    const chained = this.#workTold > 0 && since <= rateWindowMs && sent === this.#sentAtWorkTold;
    this.#workTold = now;
    this.#sentAtWorkTold = sent;
    this.#worked += grown;
    if (minRate > 0 && chained && grown < minRate * since / 1000) {
      const slower = `slower than ${formatBytes(minRate)}/s`;
      this.#broke ??= {
        reason: `work notices ${slower}`,
        message: `Work notices ${slower}: closed by the server`,
      };
    }
  }

  /**
   * Told while the server waits on its own disk during an upload; that time does not count
   * against the client's rate. Two timestamps a chunk: nothing the data path would notice.
   */
  readonly localWaits: LocalWaits = {
    begin: () => {
      if (this.#local++ === 0) this.#localSince = Date.now();
    },
    end: () => {
      if (--this.#local === 0) {
        const now = Date.now();
        this.#localTotal += now - this.#localSince;
        this.activity.last = now;
      }
    },
  };

  /** The handshake is done, or the connection waits for the client's next request. */
  waiting(): void {
    this.#phase = "waiting";
    this.#receivedBefore = this.activity.received ?? 0;
    this.#messageSeen = undefined;
  }

  /**
   * How long the connection has sat between requests at time `now`: waiting for the next one, no
   * byte of it in, nothing moving either way (ms). Undefined in any other phase, and while the
   * client may still be reading the last answer from the kernel's buffers.
   */
  idleBetweenRequests(now: number): number | undefined {
    const { received, peerBehind } = this.activity;
    if (this.#phase !== "waiting" || (received ?? 0) > this.#receivedBefore || peerBehind) {
      return undefined;
    }
    return Math.max(0, now - this.activity.last);
  }

  /** An upload's data phase begins: the minimum rate applies from now. */
  receiving(): void {
    this.#phase = "receiving";
    this.#windowStart = Date.now();
    this.#windowBytes = this.#progress();
    this.#localAtWindowStart = this.#localNow(this.#windowStart);
  }

  /** Bytes received, and work claimed, so far: what an upload's rate is judged by. */
  #progress(): number {
    return (this.activity.received ?? 0) + this.#worked;
  }

  /** The server is at work or sending: only the idle rule applies. */
  working(): void {
    this.#phase = "working";
  }

  #localNow(now: number): number {
    return this.#localTotal + (this.#local > 0 ? now - this.#localSince : 0);
  }

  /** Applies the rules at time `now`; returns what was broken, if anything. */
  check(now: number, options: Required<WatchdogOptions>): Cut | undefined {
    if (this.#cut) return undefined;
    const cut = this.#broken(now, options);
    if (cut) this.#cut = true;
    return cut;
  }

  #broken(now: number, options: Required<WatchdogOptions>): Cut | undefined {
    const { idleTimeoutMs, handshakeTimeoutMs, minRate, rateWindowMs } = options;
    const activity = this.activity;
    if (this.#broke) return this.#broke;
    const deadline = seconds(handshakeTimeoutMs);
    const bounded = handshakeTimeoutMs > 0;
    if (bounded && this.#phase === "handshake" && now - this.#accepted > handshakeTimeoutMs) {
      return {
        reason: `handshake not completed within ${deadline}`,
        message: `Handshake not completed within ${deadline}: closed by the server`,
      };
    }
    if (bounded && this.#phase === "waiting" && (activity.received ?? 0) > this.#receivedBefore) {
      // Seen at a tick, so up to one tick late: the limit is in seconds, the tick a fraction.
      this.#messageSeen ??= now;
      if (now - this.#messageSeen > handshakeTimeoutMs) {
        return {
          reason: `request not completed within ${deadline}`,
          message: `Request not completed within ${deadline}: closed by the server`,
        };
      }
    }
    // The server's own disk work is not the client's silence, unless the server is stuck writing
    // to a client that does not read.
    const busy = this.#local > 0 && activity.peerBehind !== true;
    if (idleTimeoutMs > 0 && !busy) {
      const limit = activity.peerBehind === true ? idleTimeoutMs * BEHIND_PERIODS : idleTimeoutMs;
      if (now - activity.last > limit) {
        const idle = seconds(limit);
        return {
          reason: `idle for ${idle}`,
          message: `Connection idle for ${idle}: closed by the server`,
        };
      }
    }
    if (this.#phase === "receiving" && minRate > 0) {
      const local = this.#localNow(now);
      const elapsed = now - this.#windowStart - (local - this.#localAtWindowStart);
      if (elapsed >= rateWindowMs) {
        const got = this.#progress() - this.#windowBytes;
        // Nothing at all is the idle rule's to judge (it may be off).
        if (got > 0 && got < minRate * elapsed / 1000) {
          const slower = `slower than ${formatBytes(minRate)}/s over ${seconds(rateWindowMs)}`;
          return {
            reason: `upload ${slower}`,
            message: `Upload ${slower}: closed by the server`,
          };
        }
        this.#windowStart = now;
        this.#windowBytes = this.#progress();
        this.#localAtWindowStart = local;
      }
    }
    return undefined;
  }
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}

/**
 * Checks every watched connection a few times a second and calls its {@link Watch.onCut} when it
 * breaks a rule.
 *
 * @example
 * ```ts
 * const watchdog = new Watchdog({ idleTimeoutMs: 120_000, handshakeTimeoutMs: 10_000, minRate: 256 });
 * const watch = watchdog.watch((cut) => console.error(cut.reason));
 * watch.waiting(); // handshake done
 * watchdog.unwatch(watch);
 * watchdog.stop();
 * ```
 */
export class Watchdog {
  readonly options: Required<WatchdogOptions>;
  #watches = new Set<Watch>();
  #timer: ReturnType<typeof setInterval>;

  /** Starts the clock. */
  constructor(options: WatchdogOptions) {
    this.options = {
      ...options,
      rateWindowMs: options.rateWindowMs ?? (options.idleTimeoutMs || DEFAULT_RATE_WINDOW_MS),
    };
    const shortest = Math.min(
      ...[options.idleTimeoutMs, options.handshakeTimeoutMs].filter((ms) => ms > 0),
    );
    this.#timer = setInterval(() => this.#tick(), watchInterval(shortest));
  }

  /** Watches a connection accepted now. */
  watch(onCut: (cut: Cut) => void): Watch {
    const watch = new Watch(onCut, this.options);
    this.#watches.add(watch);
    return watch;
  }

  /** Stops watching a connection (closed). */
  unwatch(watch: Watch): void {
    this.#watches.delete(watch);
  }

  /** Stops the clock. */
  stop(): void {
    clearInterval(this.#timer);
  }

  #tick(): void {
    const now = Date.now();
    for (const watch of this.#watches) {
      const cut = watch.check(now, this.options);
      if (cut) watch.onCut(cut);
    }
  }
}
