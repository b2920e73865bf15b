/**
 * One file of a tree transfer's receiving end (lib/tree_receive.ts), from its FILE frame on: its
 * data written, verified, and committed (flushed, named, given its mtime and mode) while the next
 * files arrive, at most {@link COMMIT_WINDOW} at once, each reported only once it is durable. A
 * file the connection is cut in is kept for `--resume` where it can be; one that fails on its
 * own (an ABORT, a refusal of the receiver's) fails alone. Holds the commits under way and the
 * running count of bytes received.
 *
 * @module
 */

import { isInterruption, RefusedError, StoreError } from "./errors.ts";
import { KEEP_MIN_BYTES } from "./kept_uploads.ts";
import { SMALL_FILE_MAX } from "./staged_file.ts";
import {
  type ByteSink,
  localWait,
  receiveData,
  type Throttle,
  type TransferResult,
} from "./transfer.ts";
import type { FileHeader, ManifestEntry } from "./tree_transfer_protocol.ts";
import type { KeptPart, TreeFileSink, TreeIo, TreeOptions, TreeSink } from "./tree_transfer.ts";
import type { ReceiveReport } from "./tree_receive_report.ts";
import { WorkNotices } from "./tree_work.ts";
import { slowCommit } from "./slow_disk.ts";

/** Files a receiver commits at once, while the next ones arrive. */
export const COMMIT_WINDOW = 16;

/** Options for {@link FileReceiver}. */
export interface FileReceiverOptions
  extends Pick<TreeOptions, "throttle" | "maxChunk" | "onProgress"> {
  /** Largest file accepted, in bytes; none by default. */
  maxFileSize?: number;
  /**
   * A files transfer (mput, mget; default false): two files of one name are named one after the
   * other, in manifest order, the second waiting for the first's commit.
   */
  files?: boolean;
  /**
   * Whether a file the connection was cut in the middle of is kept for `--resume` (at least
   * {@link KEEP_MIN_BYTES} of it, and where the sink can keep it); default: always. A server
   * that cut the connection itself keeps nothing, as for a single put.
   */
  keepInterrupted?: () => boolean;
  /** Told of a file the connection was cut in, kept for `--resume`, with the bytes kept. */
  onKept?: (path: string, bytes: number) => void;
}

/**
 * Receives and commits the files of one tree transfer, one FILE after another.
 *
 * @example
 * ```ts
 * import { FileReceiver } from "./tree_receive_file.ts";
 * import { ReceiveReport } from "./tree_receive_report.ts";
 * import type { TreeIo, TreeSink } from "./tree_transfer.ts";
 *
 * declare const io: TreeIo, sink: TreeSink;
 * const files = new FileReceiver(io, sink, new ReceiveReport(io.out), { maxFileSize: 1 << 30 });
 * const entry = { path: "a.txt", type: "file" as const, size: 5, mtime: 0, mode: 0o644 };
 * await files.receive({ index: 0, size: 5, offset: 0 }, entry); // read; its commit under way
 * await files.drain(); // every file committed, or failed and reported
 * ```
 */
export class FileReceiver {
  #io: TreeIo;
  #sink: TreeSink;
  #report: ReceiveReport;
  #options: FileReceiverOptions;
  #throttle?: Throttle;
  /** File bytes received so far, for progress (commits may still be under way). */
  #received = 0;
  /** Files being committed, with their indexes (at most {@link COMMIT_WINDOW}). */
  #commits = new Map<Promise<void>, number>();
  /** Files transfers: the commit under way for each name, which a second file of it awaits. */
  #byName = new Map<string, Promise<void>>();
  #notices: WorkNotices;

  /**
   * `notices`: where the flushes are counted for the sender to hear (lib/tree_work.ts); none
   * are told without.
   */
  constructor(
    io: TreeIo,
    sink: TreeSink,
    report: ReceiveReport,
    options: FileReceiverOptions = {},
    notices: WorkNotices = new WorkNotices(io.out, undefined),
  ) {
    this.#notices = notices;
    this.#io = io;
    this.#sink = sink;
    this.#report = report;
    this.#options = options;
    const throttle = options.throttle;
    // Its waits are this side's own, not the peer's.
    this.#throttle = throttle && ((n, signal) => localWait(io.local, () => throttle(n, signal)));
  }

  /** The index of the first file whose commit is under way; Infinity when none is. */
  get firstUnderWay(): number {
    let first = Infinity;
    for (const index of this.#commits.values()) first = Math.min(first, index);
    return first;
  }

  /**
   * Waits until every commit under way has finished, or failed and been reported; the sender
   * hears meanwhile that this side flushes.
   */
  async settle(): Promise<void> {
    if (this.#commits.size === 0) return;
    await this.#notices.during(() => Promise.allSettled([...this.#commits.keys()]));
  }

  /**
   * Waits for every commit under way, and any that a file still to come would start; the sender
   * hears meanwhile that this side flushes, and of each file done (its RESULT leaves at once).
   */
  async drain(): Promise<void> {
    if (this.#commits.size === 0) return;
    await this.#io.out.uncork();
    await this.#notices.during(async () => {
      while (this.#commits.size > 0) await Promise.all(this.#commits.keys());
    });
  }

  /**
   * Receives the data of the file announced by `header` (its manifest entry: `entry`), then
   * commits it while the caller reads on; past {@link COMMIT_WINDOW} commits under way, waits for
   * one. `kept` is the part of it an interrupted transfer kept, when the sender continues after
   * it. A failure of the file's own is reported; any other (the connection's) is thrown.
   */
  async receive(header: FileHeader, entry: ManifestEntry, kept?: KeptPart): Promise<void> {
    const io = this.#io;
    const options = this.#options;
    const { index, size, offset } = header;
    if (options.maxFileSize !== undefined && size > options.maxFileSize) {
      throw new StoreError("too_large", `Refused file over the limit: ${entry.path}`);
    }
    let target: TreeFileSink | null = null;
    let refusal: StoreError | undefined;
    // A second file of one name (mput a/x b/x) waits for the first to be named, as it would
    // one put after the other: it then replaces it, or is refused as existing.
    const before = this.#byName.get(entry.path);
    if (before) await before;
    try {
      target = await localWait(
        io.local,
        () => kept ? kept.open() : this.#sink.beginFile(entry.path, entry, index),
      );
    } catch (error) {
      if (!(error instanceof StoreError) && !(error instanceof Deno.errors.PermissionDenied)) {
        throw error;
      }
      refusal = error instanceof StoreError ? error : new StoreError("io", error.message);
    }
    const into: ByteSink = target ?? { write: () => Promise.resolve() };
    // A large file's data takes a while: the answers held back so far go first.
    if (size > SMALL_FILE_MAX) await io.out.uncork();
    /** Bytes of this file that came in this transfer, for keeping it if the connection goes. */
    let receivedHere = 0;
    let result;
    try {
      result = await receiveData(io.frames, into, {
        pool: io.pool,
        localWaits: io.local,
        sizeHint: size,
        announcedSize: size,
        maxSize: options.maxFileSize,
        resumeFrom: kept?.point,
        throttle: this.#throttle,
        maxChunk: options.maxChunk,
        onProgress: (n) => {
          receivedHere = n - offset;
          options.onProgress?.(this.#received + n);
        },
      });
      if (refusal !== undefined) throw refusal;
    } catch (error) {
      const arrived = offset + receivedHere;
      if (
        target?.keep && isInterruption(error) && arrived >= KEEP_MIN_BYTES &&
        (options.keepInterrupted?.() ?? true)
      ) {
        const saved = await target.keep().then(() => true, () => target!.discard());
        if (saved) options.onKept?.(entry.path, arrived);
      } else {
        await target?.discard();
      }
      // ABORT from the sender, or the receiver's own refusal once the data was read in full:
      // this file only. Anything else leaves the connection out of step.
      if (
        !(error instanceof RefusedError || error === refusal ||
          error instanceof StoreError && error.code === "io")
      ) {
        throw error;
      }
      await this.#report.failed(index, entry.path, error);
      return;
    }
    this.#received += result.size;
    // What its flush may count for is what the sender counts: the bytes it announced sending.
    this.#commit(index, entry, target!, result, offset, size - offset);
    if (this.#commits.size >= COMMIT_WINDOW) {
      // The sender, which waits for this side to read on, hears meanwhile that it flushes.
      await this.#notices.during(() => Promise.race(this.#commits.keys()));
    }
  }

  /**
   * Commits a received file while the next ones arrive: a few at once let the filesystem flush
   * them together (flushing, above all). It is reported only once it is durable.
   */
  #commit(
    index: number,
    entry: ManifestEntry,
    target: TreeFileSink,
    result: TransferResult,
    resumed: number,
    sent: number,
  ): void {
    const report = this.#report;
    const committing = (async () => {
      try {
        await localWait(this.#io.local, () =>
          this.#notices.flushing(sent, async () => {
            await slowCommit();
            await target.commit(result);
          }));
      } catch (error) {
        await report.failed(index, entry.path, error).catch(() => {});
        return;
      }
      await report.committed(index, entry.path, result, resumed).catch(() => {});
    })().finally(() => {
      this.#commits.delete(committing);
      if (this.#byName.get(entry.path) === committing) this.#byName.delete(entry.path);
    });
    this.#commits.set(committing, index);
    if (this.#options.files) this.#byName.set(entry.path, committing);
  }
}
