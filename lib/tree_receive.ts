/**
 * The receiving end of a tree transfer: the conversation with the sender. It answers each
 * manifest batch with WANT, takes the files asked for as they come, holds the flow control that
 * keeps at most two batches of files waiting (docs/protocol.md, "Flow control"), and ends with OK
 * and a {@link TreeSummary}. Each concern has its module: the manifest's rules
 * (lib/tree_receive_check.ts), the comparison with the receiver's own tree
 * (lib/tree_receive_compare.ts; its `--exclude`d names, never replaced nor deleted, in
 * lib/tree_receive_excluded.ts; `--delete`'s guard of a folder's top in
 * lib/tree_receive_guard.ts), the folders' mtimes and modes (lib/tree_receive_folders.ts),
 * `--resume` offers (lib/tree_receive_offers.ts), each file's data and commit
 * (lib/tree_receive_file.ts), and what is told of each name (lib/tree_receive_report.ts).
 * Whatever the tree's size, memory holds at most two batches of files waiting to come, the folders
 * on the way to the current entry, and the folders whose files are still being committed.
 *
 * @module
 */

import { ProtocolError, RefusedError, StoreError } from "./errors.ts";
import { parseError } from "./protocol.ts";
import { FrameType, frameTypeName } from "./frames.ts";
import { localWait, overLimitMessage } from "./transfer.ts";
import {
  type ManifestEntry,
  type ManifestTop,
  MAX_BATCH_ENTRIES,
  parseFileHeader,
  parseManifest,
  type TreeSummary,
} from "./tree_transfer_protocol.ts";
import type { TreeIo, TreeOptions, TreeSink } from "./tree_transfer.ts";
import type { EntryWalk } from "./tree_walk.ts";
import { ManifestCheck } from "./tree_receive_check.ts";
import { TreeCompare } from "./tree_receive_compare.ts";
import { FileReceiver, type FileReceiverOptions } from "./tree_receive_file.ts";
import { ReceivedFolders } from "./tree_receive_folders.ts";
import { type IndexedOffer, ResumeOffers } from "./tree_receive_offers.ts";
import { ReceiveReport } from "./tree_receive_report.ts";
import { fileBytes, PeerWork, WorkNotices } from "./tree_work.ts";
import { EventTurns } from "./event_turns.ts";

/**
 * Options for {@link receiveTree}; those of each file's data and commit (`maxFileSize`,
 * `keepInterrupted`, `onKept`) are {@link FileReceiverOptions}'.
 */
export interface ReceiveTreeOptions extends TreeOptions, FileReceiverOptions {
  /** Remove what the sender does not have (default false). */
  delete?: boolean;
  /**
   * With `delete`, make a receiving folder that was there already a copy of the sender's tree
   * even if it holds none of the sender's top-level names (`--delete-unrelated`; default false:
   * such a folder keeps everything at its top, and the summary counts it as
   * {@link TreeSummary.unrelated}).
   */
  deleteUnrelated?: boolean;
  /**
   * The error a transfer whose receiving folder kept its top ({@link TreeSummary.unrelated}:
   * `kept` names) ends with, in place of its final OK, once everything else is done: for a
   * sender that predates that count (an older client), which would otherwise take the transfer
   * for a success. None by default: the OK counts them.
   */
  unrelatedError?: (kept: number) => Error;
  /** Most entries the manifest may hold (default 1,000,000). */
  maxEntries?: number;
  /** Most bytes the files sent may add up to; none by default. */
  maxTotalSize?: number;
  /** Treat names as case-insensitive, whatever the filesystem says (default: ask the sink). */
  caseInsensitive?: boolean;
  /**
   * A files transfer (mput, mget), not a folder: the manifest lists files only, in any order,
   * each checked and refused on its own (a bad name fails that file, not the transfer), every
   * file is wanted that the sink admits, and nothing is compared, deleted or given a folder's
   * times. Two files of one name are written one after the other, in manifest order.
   */
  files?: boolean;
  /**
   * `--resume`: offer the sender, for each big file wanted, what an interrupted transfer kept of
   * it ({@link TreeSink.resume}); default false.
   */
  resume?: boolean;
  /**
   * Accept symlinks whose target stays inside the tree (`--links`; default false: a manifest
   * with a link is refused). Each target is checked again (lib/tree_receive_check.ts).
   */
  links?: boolean;
}

/** One tree transfer's receiving end, between its frames. */
class TreeReceiver {
  #io: TreeIo;
  #sink: TreeSink;
  #options: ReceiveTreeOptions;
  #flat: boolean;
  #dry: boolean;
  #report: ReceiveReport;
  #check: ManifestCheck;
  #folders: ReceivedFolders;
  #compare: TreeCompare;
  #offers: ResumeOffers;
  #files: FileReceiver;
  /** This side's hashing, told to the sender; the sender's, checked. */
  #notices: WorkNotices;
  #peer: PeerWork;
  /** Turns for the event loop in the manifest's check and comparison, entry by entry. */
  #turns = new EventTurns();
  /**
   * Files wanted and not yet received, in manifest order. The sender may run one batch ahead of
   * its files, no more (docs/protocol.md), so this holds at most two batches.
   */
  #pending: { index: number; entry: ManifestEntry }[] = [];
  /** Where the latest batch started: files of earlier ones must all have come by the next. */
  #batchFrom = 0;
  #last = false;
  /** Whether a MANIFEST came yet; the first one carries the folder's own mtime and mode. */
  #manifested = false;
  #top?: ManifestTop;
  /** Whether this transfer made the receiving folder: only then does it take the sender's mode. */
  #madeBase = false;
  #plannedFiles = 0;

  /** Opens the receiving folder's walk, or makes the folder; learns whether names fold case. */
  static async open(
    io: TreeIo,
    sink: TreeSink,
    options: ReceiveTreeOptions,
  ): Promise<TreeReceiver> {
    const flat = options.files ?? false;
    const dry = options.dryRun ?? false;
    // This side's own disk work is told of (io.local), so that a server's minimum upload rate
    // counts only the time it waits for the sender.
    const own = flat ? null : await localWait(io.local, () => sink.walker());
    // A receiving folder that was there already is the receiver's own (a home folder, /tmp): it
    // keeps its mode, whatever the sender says, and takes only the sender's mtime at the end (a
    // re-sync's times match the sender's). Only one this transfer makes takes the mode too.
    const madeBase = !own && !dry && !flat;
    if (madeBase) await localWait(io.local, () => sink.makeBase());
    // Whether names fold is learnt by reading what the folder holds: nothing is written into a
    // folder of the user's to learn it. An empty one tells nothing, and needs telling only when
    // the manifest has two names that differ only by case (or a folder too big to hold folded):
    // then the folder is asked again, holding what this transfer wrote into it by then, or is
    // probed (in a dry run too, which says what the transfer would do).
    const empty = own === null || own.peek() === undefined;
    const ask = (probe: boolean) => localWait(io.local, () => sink.caseInsensitive({ probe }));
    let caseless = flat ? false : options.caseInsensitive;
    // A dry run into a folder that is not there yet takes names as distinct.
    if (caseless === undefined) caseless = own || !dry ? await ask(false) : false;
    // Names that tell nothing (none with an ASCII letter): they are compared now, so it is asked.
    if (caseless === undefined && !empty) caseless = await ask(true);
    return new TreeReceiver(io, sink, options, {
      own,
      madeBase,
      caseless: caseless ?? (async () => (await ask(true)) ?? false),
      // A folder that held nothing has no name under another case to find, or to keep.
      compareCaseless: caseless === true && !empty,
    });
  }

  private constructor(
    io: TreeIo,
    sink: TreeSink,
    options: ReceiveTreeOptions,
    found: {
      own: EntryWalk | null;
      madeBase: boolean;
      caseless: boolean | (() => Promise<boolean>);
      compareCaseless: boolean;
    },
  ) {
    const { own, caseless } = found;
    this.#io = io;
    this.#sink = sink;
    this.#options = options;
    this.#flat = options.files ?? false;
    this.#dry = options.dryRun ?? false;
    this.#madeBase = found.madeBase;
    const report = this.#report = new ReceiveReport(io.out, options.onEvent);
    const notices = this.#notices = new WorkNotices(io.out, io.noticeMs, {
      phases: io.phaseWork,
    });
    // The sender hashes a batch's files before it sends the batch: its claims are checked when
    // the batch comes, and meanwhile may run at most a batch of the largest files allowed ahead.
    const ahead = options.maxFileSize === undefined
      ? undefined
      : MAX_BATCH_ENTRIES * options.maxFileSize;
    this.#peer = new PeerWork({ ahead, onWork: io.peerWork });
    this.#check = new ManifestCheck((path) => sink.check(path), {
      maxEntries: options.maxEntries,
      files: this.#flat,
      caseInsensitive: caseless,
      exclude: options.exclude,
      turns: this.#turns,
    });
    const folders = this.#folders = new ReceivedFolders(
      (entry, found) => localWait(io.local, () => sink.finishDir(entry.path, entry, found)),
      { dryRun: this.#dry },
    );
    this.#compare = new TreeCompare({ own, sink, report, folders, notices, turns: this.#turns }, {
      delete: options.delete,
      // A folder that was there already may be anything: its top waits for a shared name.
      guard: own !== null && !options.deleteUnrelated,
      dryRun: this.#dry,
      maxFileSize: options.maxFileSize,
      maxTotalSize: options.maxTotalSize,
      caseInsensitive: found.compareCaseless,
      exclude: options.exclude,
    });
    this.#offers = new ResumeOffers(sink, { resume: options.resume });
    this.#files = new FileReceiver(io, sink, report, options, notices);
  }

  /**
   * Answers a MANIFEST batch: checked whole, acted on entry by entry, answered with WANT. Its
   * caller counts all of it as this side's own disk work (io.local).
   */
  async manifest(json: Record<string, unknown>): Promise<void> {
    const options = this.#options;
    const pending = this.#pending;
    if (this.#last) throw new ProtocolError("MANIFEST after the last one");
    // Flow control: a sender streams the files of one batch while the receiver answers the
    // next, and no further ahead; a manifest that runs on without them is refused, so what is
    // waiting here stays within two batches whatever the tree's size.
    if (pending.length > 0 && pending[0].index < this.#batchFrom) {
      throw new StoreError(
        "bad_request",
        "Refused tree: the sender ran more than one manifest batch ahead of its files",
      );
    }
    // Just off the network: the event loop had its turns while this side waited for it.
    this.#turns.restart();
    const batch = parseManifest(json, { links: options.links && !this.#flat });
    this.#peer.listed(fileBytes(batch.entries), false);
    if (!this.#manifested && !this.#flat) {
      this.#top = batch.top;
      // A folder made for this tree takes the sender's mode before anything goes in, so that an
      // interrupted run leaves it as a whole one would; it is finished again at the end. (Made
      // here, it held nothing: no part kept for --resume is in it.)
      if (this.#top && this.#madeBase) await this.#sink.finishBase(this.#top, true);
    }
    this.#manifested = true;
    for (const note of batch.notes ?? []) {
      this.#report.note({ kind: "ignored", ...note });
      if (!this.#flat) this.#compare.spare(note.path);
    }
    // The whole batch is checked before anything is done for any of it.
    const from = this.#batchFrom = await this.#check.batch(batch.entries);
    const want: number[] = [];
    const resume: IndexedOffer[] = [];
    // Hashing this side's copies (--checksum) or the parts it kept (--resume), or removing what
    // the sender lacks (--delete), can take longer than the sender's idle timeout: it hears of
    // it.
    const decide = async () => {
      await this.#decide(batch.entries, from, want, resume);
      this.#last = batch.last;
      if (this.#last) await this.#compare.end(from + batch.entries.length - 1);
    };
    const busy = (options.resume && !this.#dry) ||
      batch.entries.some((entry) => entry.checksum !== undefined) ||
      (options.delete && !this.#dry && this.#notices.phases);
    await (busy ? this.#notices.during(decide) : decide());
    await this.#io.out.writeControl(FrameType.WANT, {
      want,
      ...(resume.length ? { resume } : {}),
    });
    await this.#finishFolders();
    this.#plannedFiles += want.length;
    options.onPlan?.(this.#plannedFiles, this.#compare.wantedBytes);
    await options.drain?.();
  }

  /** Acts on each entry of a checked batch: which are wanted, and the resume offers for them. */
  async #decide(
    entries: ManifestEntry[],
    from: number,
    want: number[],
    resume: IndexedOffer[],
  ): Promise<void> {
    const pending = this.#pending;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i];
      const index = from + i;
      if (this.#flat) {
        if (await this.#admit(index, entry)) {
          want.push(index);
          pending.push({ index, entry });
        }
        continue;
      }
      if (!await this.#compare.visit(index, entry)) continue;
      want.push(index);
      if (this.#dry) {
        // Counted as the transfer would count it: a dry run's summary says what it would do.
        this.#report.wouldReceive(entry.path, entry.size);
        continue;
      }
      pending.push({ index, entry });
      // Its kept part is hashed (for its prefix): work the sender hears of, as a checksum's.
      const offer = await this.#offers.offer(index, entry, this.#notices.counter(entry.size));
      if (offer) resume.push(offer);
    }
  }

  /**
   * A files transfer's entry, checked on its own: whether it is wanted (the sink admits it); if
   * not, it failed, and is reported.
   */
  async #admit(index: number, entry: ManifestEntry): Promise<boolean> {
    const maxFileSize = this.#options.maxFileSize;
    try {
      this.#sink.check(entry.path);
      const unfit = this.#sink.unfit?.(entry.path);
      if (unfit) throw new StoreError("bad_name", unfit);
      if (maxFileSize !== undefined && entry.size > maxFileSize) {
        throw new StoreError("too_large", overLimitMessage(maxFileSize, entry.size));
      }
      await this.#sink.admit?.(entry.path, entry, index);
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      await this.#report.failed(index, entry.path, error);
      return false;
    }
    return true;
  }

  /** Takes a KEEPALIVE: the sender's work notice, checked. */
  noticed(json: Record<string, unknown>): void {
    this.#peer.notice(json);
  }

  /** Takes a FILE: the next file wanted, continued after its kept part if it was offered. */
  async file(json: Record<string, unknown>): Promise<void> {
    const header = parseFileHeader(json);
    const next = this.#pending.shift();
    if (!next || next.index !== header.index) {
      throw new ProtocolError("FILE that was not asked for");
    }
    const kept = await this.#offers.take(header.index, header.offset);
    await this.#files.receive(header, next.entry, kept);
    if (this.#folders.waiting) await this.#finishFolders();
  }

  /** Takes FINISH: once every file is committed and every folder finished, OK and the summary. */
  async finish(): Promise<TreeSummary> {
    if (!this.#last || this.#pending.length > 0) throw new ProtocolError("FINISH before the end");
    await this.#files.drain();
    if (!this.#dry) {
      await localWait(this.#io.local, async () => {
        await this.#finishFolders();
        // A re-synced folder takes the sender's mtime too, unless --delete's guard found it no
        // copy of the tree (then it is the receiver's own, and the run fails).
        if (this.#top && (this.#madeBase || this.#compare.unrelated === 0)) {
          await this.#sink.finishBase(this.#top, this.#madeBase);
        }
        await this.#sink.done?.();
      });
    }
    const unrelated = this.#compare.unrelated;
    if (unrelated > 0) {
      const error = this.#options.unrelatedError?.(unrelated);
      if (error) throw error;
      this.#report.summary.unrelated = unrelated;
    }
    const summary = await this.#report.finish();
    await this.#io.out.uncork();
    return summary;
  }

  /**
   * The transfer failed. Files already verified are still being committed: they finish (or are
   * cleaned up) first, so that what is left is whole files only, even if the process exits next;
   * the parts offered and never used are kept again for the next run.
   */
  async abandon(): Promise<void> {
    await this.#files.settle();
    await this.#offers.releaseAll();
  }

  /** Gives back what the walk of the receiver's own tree holds. */
  close(): void {
    this.#compare.close();
  }

  /**
   * Gives the folders whose files are all done their mtime and mode. Too many waiting (a slow
   * commit while the walk runs on): the commits under way are waited for first.
   */
  async #finishFolders(): Promise<void> {
    if (this.#folders.crowded) await this.#files.settle();
    const pending = this.#pending[0]?.index ?? Infinity;
    await this.#folders.finish(Math.min(pending, this.#files.firstUnderWay));
  }
}

/**
 * Receives a tree into `sink`: answers the sender's manifest, writes and commits each file it
 * needs, deletes what the sender lacks if asked, and ends with OK and a {@link TreeSummary}.
 * Every entry is checked before anything is done for it; a manifest that breaks the rules (bad
 * names, out of order, a folder not announced, over the caps) stops the whole transfer.
 */
export async function receiveTree(
  io: TreeIo,
  sink: TreeSink,
  options: ReceiveTreeOptions = {},
): Promise<TreeSummary> {
  const receiver = await TreeReceiver.open(io, sink, options);
  // Small files are three small frames each: read many at once.
  io.frames.batchReads(true);
  try {
    while (true) {
      // Answers (WANT, RESULT) are held back while the next frame is already here, and leave
      // together, in one write, before the receiver waits for the sender.
      if (io.frames.frameKept) io.out.cork();
      else await io.out.uncork();
      const frame = await io.frames.readControl();
      if (!frame) throw new ProtocolError("Connection closed during the tree transfer");
      switch (frame.type) {
        case FrameType.KEEPALIVE:
          // The sender hashing its files for the next batch (--checksum).
          receiver.noticed(frame.json);
          continue;
        case FrameType.MANIFEST:
          // Comparing a batch with this side's tree (and deleting, with --delete) is its own
          // disk work, however long it takes.
          await localWait(io.local, () => receiver.manifest(frame.json));
          continue;
        case FrameType.FILE:
          await receiver.file(frame.json);
          continue;
        case FrameType.FINISH:
          return await receiver.finish();
        case FrameType.ERROR:
        case FrameType.ABORT: {
          const error = parseError(frame.json);
          throw new RefusedError(error.code, error.message);
        }
        default:
          throw new ProtocolError(`Unexpected ${frameTypeName(frame.type)} in a tree transfer`);
      }
    }
  } catch (error) {
    await receiver.abandon();
    throw error;
  } finally {
    // A big folder's names sorted on disk, if the walk stopped before its end, are given back.
    receiver.close();
    io.frames.batchReads(false);
    // Whatever is still held back goes before the caller's own answer (an ERROR, say).
    await io.out.uncork().catch(() => {});
  }
}
