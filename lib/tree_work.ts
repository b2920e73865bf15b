/**
 * Work notices of tree transfers: while one end does long work of its own that moves nothing on
 * the wire, the other sees no byte move, and its idle or stall timeout would cut a transfer that
 * is only busy. The busy end sends KEEPALIVE with counts of its work so far, each checked by the
 * other ({@link PeerWork}), so that a peer cannot hold a connection by saying it works:
 *
 * - `work`: bytes hashed (the sender its own files for a `--checksum` manifest and a file's start
 *   for `--resume`, the receiver its copies to compare and the parts it kept), a file counting
 *   for at least {@link FILE_WORK}; never more than {@link HASHED_AT_MOST} times the files listed
 *   in the manifest, the only files either end hashes.
 * - `flushed` (the receiver; only where both ends agreed to it, {@link PHASE_WORK_FEATURE}): its
 *   flushes of the files it committed. The kernel tells nothing of a flush until it ends, so a
 *   flush under way counts at {@link FLUSH_PACE} bytes a second, up to its file's bytes sent in
 *   this transfer ({@link FLUSH_FILE_WORK} at least): never more than the files the sender sent.
 *   A flush that outlasts that (a disk slower than the pace, or stuck) is left to the timeout.
 * - `removed` (likewise): entries `--delete` removed, which the sender cannot see, so never more
 *   than {@link REMOVED_AT_MOST} in a transfer, together with the names the receiver reports it
 *   deleted (RESULT `{"deleted": NAME}`, {@link PeerWork.deleted}): those reports are the same
 *   work told another way, and would otherwise let a peer send them for ever.
 *
 * A server's watchdog also wants the growth (each entry removed, and each name reported deleted,
 * counting as {@link ENTRY_WORK} bytes) at its minimum rate (lib/watchdog.ts, `Watch.peerWork`).
 *
 * A resumed `put` uses `work` notices too, while its client hashes the start the server kept,
 * bounded by that start alone (feature `put-resume-work`, lib/protocol.ts).
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import type { FrameWriter } from "./frame_writer.ts";
import { keepingAlive } from "./keepalive.ts";
import { testSetting } from "./test_seams.ts";

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

/**
 * WELCOME feature of a server that sends and takes the work notices of a receiver's own phases
 * (`flushed`, `removed`); a client that takes part too asks for them with `"phase_work": true` in
 * its tree request. Without both, neither end sends them.
 */
export const PHASE_WORK_FEATURE = "phase-work";

/**
 * Bytes a second a flush under way counts for: a disk that writes back slower than this (a few
 * times slower than a USB 2 stick) is taken for a stuck one once a file's bytes are used up.
 */
export const FLUSH_PACE = 4 << 20;

/**
 * The least a file's flush counts for, whatever its size: a flush waits for the disk (a journal
 * commit, a seek) about as long as writing this much, so a small file on a slow disk still
 * shows work for a second.
 */
export const FLUSH_FILE_WORK = 4 << 20;

/**
 * Most entries a receiver may claim to have removed in one transfer, and names it may report
 * deleted, together: more than any tree ferry takes holds (twice over, as a name deleted is
 * both), so a claim past it is a lie. Tests lower it with `FERRY_TEST_REMOVED_AT_MOST`
 * (lib/test_seams.ts), as a transfer of this many names is no test's to make.
 */
export const REMOVED_AT_MOST = 1 << 24;

/** {@link REMOVED_AT_MOST}, or less where a test asked for less. */
function removedAtMost(): number {
  const asked = Number(testSetting("FERRY_TEST_REMOVED_AT_MOST"));
  return Number.isSafeInteger(asked) && asked > 0
    ? Math.min(asked, REMOVED_AT_MOST)
    : REMOVED_AT_MOST;
}

/** What an entry removed counts for towards a watchdog's minimum rate, in bytes. */
export const ENTRY_WORK = 4096;

/** The payload of a work notice: the counts that grew since the last one. */
export interface WorkNotice {
  /** Bytes hashed so far in this transfer. */
  work?: number;
  /** Bytes of the files committed counted as flushed so far ({@link FLUSH_PACE}). */
  flushed?: number;
  /** Entries removed so far. */
  removed?: number;
}

/** The kinds of work a notice may count, in the order they are checked. */
const KINDS = ["work", "flushed", "removed"] as const;

/** Options for {@link WorkNotices}. */
export interface WorkNoticesOptions {
  /**
   * The peer agreed to the receiver's phases ({@link PHASE_WORK_FEATURE}): flushes and removals
   * are counted and told (default false: only hashing is).
   */
  phases?: boolean;
}

/**
 * The busy end: counts its work and, while {@link during} runs, sends a notice every `everyMs`
 * in which a count grew (none when none did: a stalled disk is not hidden, beyond the pace a
 * flush under way counts for).
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
  #phases: boolean;
  #counts: Required<WorkNotice> = { work: 0, flushed: 0, removed: 0 };
  #told: Required<WorkNotice> = { work: 0, flushed: 0, removed: 0 };
  /** What the flushes begun so far may count for, those under way, and when they last did. */
  #flushable = 0;
  #flushing = 0;
  #pacedAt = 0;

  /** `everyMs` undefined: no notices (the peer did not ask for them). */
  constructor(out: FrameWriter, everyMs: number | undefined, options: WorkNoticesOptions = {}) {
    this.#out = out;
    this.#everyMs = everyMs;
    this.#phases = options.phases ?? false;
  }

  /** Whether notices go at all: the peer asked for them. */
  get telling(): boolean {
    return this.#everyMs !== undefined;
  }

  /** Whether the receiver's phases are told ({@link WorkNoticesOptions.phases}). */
  get phases(): boolean {
    return this.#phases && this.telling;
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
      this.#counts.work += add;
    };
  }

  /**
   * Runs `flush`, a file's flush (its commit), of the file's `bytes` sent in this transfer:
   * counted as flushed at {@link FLUSH_PACE} while it runs, up to {@link flushWork} of them.
   */
  async flushing<T>(bytes: number, flush: () => Promise<T>): Promise<T> {
    if (!this.phases) return await flush();
    this.#pace();
    this.#flushable += flushWork(bytes);
    this.#flushing++;
    try {
      return await flush();
    } finally {
      this.#pace();
      this.#flushing--;
    }
  }

  /** Counts `entries` removed (`--delete`). */
  removed(entries: number): void {
    if (this.phases) {
      this.#counts.removed = Math.min(REMOVED_AT_MOST, this.#counts.removed + entries);
    }
  }

  /** Brings the flushes under way up to now, at {@link FLUSH_PACE}. */
  #pace(): void {
    const now = Date.now();
    if (this.#flushing > 0) {
      const paced = Math.floor(FLUSH_PACE * (now - this.#pacedAt) / 1000);
      this.#counts.flushed = Math.min(this.#flushable, this.#counts.flushed + paced);
    }
    this.#pacedAt = now;
  }

  /**
   * Runs `work`, sending a notice every `everyMs` in which the count grew. Resolves only once the
   * last notice is written, so no frame can come between it and what follows.
   */
  during<T>(work: () => Promise<T>): Promise<T> {
    return keepingAlive(this.#out, this.#everyMs, () => {
      this.#pace();
      const notice: WorkNotice = {};
      for (const kind of KINDS) {
        // A flush's last few bytes are not worth a notice: growth that small could read as a
        // peer slower than its minimum rate.
        const least = kind === "flushed" ? FILE_WORK : 1;
        if (this.#counts[kind] >= this.#told[kind] + least) {
          notice[kind] = this.#told[kind] = this.#counts[kind];
        }
      }
      return Object.keys(notice).length > 0 ? { ...notice } : undefined;
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
  /**
   * Told of each claim's growth, in bytes (an entry removed counting {@link ENTRY_WORK}), for a
   * watchdog (lib/watchdog.ts, `Watch.peerWork`).
   */
  onWork?: (grown: number) => void;
  /**
   * The peer is the receiver and both ends agreed to its phases ({@link PHASE_WORK_FEATURE}): it
   * may claim `flushed` (checked against the files this end sent, {@link PeerWork.sent}) and
   * `removed` (default false: a claim of either ends the transfer).
   */
  phases?: boolean;
  /**
   * Times the peer may hash each byte listed (default {@link HASHED_AT_MOST}: a tree's file whole,
   * and its start; a resumed put's sender hashes the start it offers once, so 1).
   */
  times?: number;
}

/** The waiting end: checks the busy end's notices, and the claims against the manifest. */
export class PeerWork {
  #claimed: Required<WorkNotice> = { work: 0, flushed: 0, removed: 0 };
  #listed = 0;
  #sent = 0;
  #ahead: number;
  #times: number;
  #onWork?: (grown: number) => void;
  #phases: boolean;
  /** Names the peer reported deleted. */
  #deleted = 0;
  #removedAtMost = removedAtMost();

  constructor(options: PeerWorkOptions = {}) {
    this.#ahead = options.ahead ?? Infinity;
    this.#times = options.times ?? HASHED_AT_MOST;
    this.#onWork = options.onWork;
    this.#phases = options.phases ?? false;
  }

  /**
   * A KEEPALIVE from the peer. Throws {@link ProtocolError} when it claims no growth (each count
   * it carries must grow, and it must carry one), or more than this end can allow: hashing past
   * the files listed ({@link PeerWorkOptions.times} their bytes, plus
   * {@link PeerWorkOptions.ahead}), flushing past the files sent, removals past
   * {@link REMOVED_AT_MOST} (with the names reported deleted), or a kind of work not agreed. A peer cannot hold the connection by
   * saying it works.
   */
  notice(json: Record<string, unknown>): void {
    const claimed = this.#claimed;
    let grown = 0;
    let counts = 0;
    for (const kind of KINDS) {
      const value = json[kind];
      if (value === undefined) continue;
      if (kind !== "work" && !this.#phases) {
        throw new ProtocolError(`KEEPALIVE with work that was not agreed: ${kind}`);
      }
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= claimed[kind]) {
        throw new ProtocolError("KEEPALIVE without growing work");
      }
      grown += (value - claimed[kind]) * (kind === "removed" ? ENTRY_WORK : 1);
      claimed[kind] = value;
      counts++;
    }
    if (counts === 0) throw new ProtocolError("KEEPALIVE without growing work");
    this.#check(this.#ahead);
    if (claimed.flushed > this.#sent) {
      throw new ProtocolError("KEEPALIVE claims more flushing than the files sent");
    }
    this.#checkRemoved();
    this.#onWork?.(grown);
  }

  /**
   * The peer, the receiver, reported a name it deleted (`--delete`; or would, in a dry run). It
   * counts as an entry removed, for the watchdog ({@link ENTRY_WORK}) and against
   * {@link REMOVED_AT_MOST}, with the entries its notices claim: throws {@link ProtocolError} past
   * it, so that a peer cannot report names without end.
   */
  deleted(): void {
    this.#deleted++;
    this.#checkRemoved();
    this.#onWork?.(ENTRY_WORK);
  }

  #checkRemoved(): void {
    if (this.#claimed.removed + this.#deleted > this.#removedAtMost) {
      throw new ProtocolError(
        "The receiver claims more entries removed or deleted than any tree holds",
      );
    }
  }

  /**
   * This end sent a file of `bytes` (those of it sent in this transfer): the receiver may count
   * its flush as up to {@link flushWork} of them.
   */
  sent(bytes: number): void {
    this.#sent += flushWork(bytes);
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
    if (this.#claimed.work > this.#times * this.#listed + ahead) {
      throw new ProtocolError("KEEPALIVE claims more work than the files listed");
    }
  }
}

/**
 * What flushing a file of which `bytes` were sent may count for (see {@link FLUSH_FILE_WORK}).
 */
export function flushWork(bytes: number): number {
  return Math.max(bytes, FLUSH_FILE_WORK);
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
