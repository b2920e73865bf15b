/**
 * Work notices of tree transfers: while one end hashes files (the sender its own for a
 * `--checksum` manifest and a file's start for `--resume`, the receiver its copies to compare and
 * the parts it kept), the other sees no byte move, and its idle or stall timeout would cut a
 * transfer that is only busy. The busy end sends KEEPALIVE `{"work": N}`, N the bytes it has
 * hashed so far in the transfer, a file counting for at least {@link FILE_WORK}
 * ({@link WorkNotices}); the other end checks each claim ({@link PeerWork}): N must grow, and may
 * never pass {@link HASHED_AT_MOST} times the files listed in the manifest, the only files either
 * end hashes. A server's watchdog also wants the growth at its minimum rate (lib/watchdog.ts,
 * `Watch.peerWork`).
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import type { FrameWriter } from "./frame_writer.ts";
import { keepingAlive } from "./keepalive.ts";

/**
 * How often a client tells a server that says nothing of its wishes (one that predates WELCOME's
 * `keepalive`) that it is at work: under the shortest idle timeout `ferry-server` takes (1 s).
 */
export const DEFAULT_WORK_NOTICE_MS = 400;

/** Times a file may be hashed in one transfer: whole (`--checksum`), and its start (`--resume`). */
export const HASHED_AT_MOST = 2;

/**
 * The least work a file hashed counts for, whatever its size: opening and reading a small file
 * costs about what hashing this much does, so a tree of small files on a slow disk still shows
 * work at the minimum rate.
 */
export const FILE_WORK = 64 << 10;

/** The payload of a work notice. */
export interface WorkNotice {
  /** Bytes hashed so far in this transfer. */
  work: number;
}

/**
 * The busy end: counts the bytes hashed and, while {@link during} runs, sends a notice every
 * `everyMs` in which the count grew (none when it did not: a stalled disk is not hidden).
 *
 * @example
 * ```ts ignore
 * const notices = new WorkNotices(out, 250);
 * const sum = await notices.during(() => checksumOf(file, { onProgress: notices.counter(size) }));
 * ```
 */
export class WorkNotices {
  #out: FrameWriter;
  #everyMs?: number;
  #work = 0;
  #told = 0;

  /** `everyMs` undefined: no notices (the peer did not ask for them). */
  constructor(out: FrameWriter, everyMs: number | undefined) {
    this.#out = out;
    this.#everyMs = everyMs;
  }

  /**
   * A progress callback for hashing one file listed with `size` bytes: counts what it hashes, at
   * least {@link FILE_WORK} once it starts, and at most its listed size or that (a file that grew
   * since it was listed is not claimed beyond its entry).
   */
  counter(size: number): (bytes: number) => void {
    const most = fileWork(size);
    let counted = 0;
    return (bytes) => {
      const add = Math.min(Math.max(bytes, FILE_WORK), most) - counted;
      if (add <= 0) return;
      counted += add;
      this.#work += add;
    };
  }

  /**
   * Runs `work`, sending a notice every `everyMs` in which the count grew. Resolves only once the
   * last notice is written, so no frame can come between it and what follows.
   */
  during<T>(work: () => Promise<T>): Promise<T> {
    return keepingAlive(this.#out, this.#everyMs, () => {
      if (this.#work <= this.#told) return undefined;
      return { work: this.#told = this.#work } satisfies WorkNotice;
    }, work);
  }
}

/** Options for {@link PeerWork}. */
export interface PeerWorkOptions {
  /**
   * Bytes the peer may claim beyond the files listed so far, while it hashes for a manifest batch
   * not sent yet (the receiving end's view; default: no bound until that batch comes, when every
   * claim must be covered). The sending end, whose peer hashes only files listed, gives 0.
   */
  ahead?: number;
  /** Told of each claim's growth, for a watchdog (lib/watchdog.ts, `Watch.peerWork`). */
  onWork?: (grown: number) => void;
}

/** The waiting end: checks the busy end's notices, and the claims against the manifest. */
export class PeerWork {
  #claimed = 0;
  #listed = 0;
  #ahead: number;
  #onWork?: (grown: number) => void;

  constructor(options: PeerWorkOptions = {}) {
    this.#ahead = options.ahead ?? Infinity;
    this.#onWork = options.onWork;
  }

  /**
   * A KEEPALIVE from the peer. Throws {@link ProtocolError} when it claims no growth, or more than
   * the files listed cover ({@link HASHED_AT_MOST} times their bytes, plus
   * {@link PeerWorkOptions.ahead}): a peer cannot hold the connection by saying it works.
   */
  notice(json: Record<string, unknown>): void {
    const work = json.work;
    if (typeof work !== "number" || !Number.isSafeInteger(work) || work <= this.#claimed) {
      throw new ProtocolError("KEEPALIVE in a tree transfer without growing work");
    }
    const grown = work - this.#claimed;
    this.#claimed = work;
    this.#check(this.#ahead);
    this.#onWork?.(grown);
  }

  /**
   * Files worth `bytes` of work ({@link fileBytes}) were listed in a MANIFEST. `sent`: this end
   * sent it (its peer hashes those files next); otherwise it came from the peer, whose claims so
   * far must now be covered.
   */
  listed(bytes: number, sent: boolean): void {
    this.#listed += bytes;
    if (!sent) this.#check(0);
  }

  #check(ahead: number): void {
    if (this.#claimed > HASHED_AT_MOST * this.#listed + ahead) {
      throw new ProtocolError("KEEPALIVE claims more work than the files listed");
    }
  }
}

/** The work hashing one file of `size` bytes may count for (see {@link FILE_WORK}). */
function fileWork(size: number): number {
  return Math.max(size, FILE_WORK);
}

/**
 * The work hashing each file of a manifest batch once may count for: all that either end may
 * claim for it, {@link HASHED_AT_MOST} times over.
 */
export function fileBytes(entries: readonly { type: string; size: number }[]): number {
  let bytes = 0;
  for (const entry of entries) if (entry.type === "file") bytes += fileWork(entry.size);
  return bytes;
}
