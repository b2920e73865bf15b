/**
 * The sending end of a tree transfer: streams the manifest in batches, one batch ahead of the
 * receiver's answers, then the files it asks for back to back, and collects the receiver's
 * reports as they come. Memory holds two batches, the files sent whose report has not come back
 * (at most {@link MAX_UNREPORTED}) and one folder's names per level.
 *
 * @module
 */

import { ProtocolError, RefusedError } from "./errors.ts";
import { utf8Length } from "./format.ts";
import { parseError } from "./protocol.ts";
import { FrameType, frameTypeName } from "./frames.ts";
import type { FrameReader } from "./frame_reader.ts";
import { localWait } from "./transfer.ts";
import {
  type ManifestEntry,
  type ManifestNote,
  MAX_BATCH_ENTRIES,
  parseResult,
  parseResumeOffers,
  parseSummary,
  parseWant,
  type TreeSummary,
} from "./tree_transfer_protocol.ts";
import type { TreeIo, TreeOptions, TreeSource } from "./tree_transfer.ts";
import { linkStaysInside } from "./tree_links.ts";
import type { FileId } from "./checked_open.ts";
import {
  checksumOf,
  PREPARE_AHEAD,
  type Prepared,
  prepareFile,
  READ_WHOLE_AHEAD,
  sendFile,
} from "./tree_send_file.ts";
import { fileBytes, PeerWork, WorkNotices } from "./tree_work.ts";
import { EventTurns } from "./event_turns.ts";

export interface SendTreeOptions extends TreeOptions {
  /** Put each file's checksum in the manifest (the receiver compares contents). */
  checksum?: boolean;
  /** Most entries per MANIFEST frame (default {@link MAX_BATCH_ENTRIES}). */
  batchEntries?: number;
  /** Send symlinks whose target stays inside the tree, as links (`--links`; default false). */
  links?: boolean;
}

/** A manifest batch as the sender keeps it until the receiver has answered it. */
interface Batch {
  from: number;
  entries: ManifestEntry[];
  /** Which file the walk found at each entry, where it says: the file opened must be that one. */
  ids: (FileId | undefined)[];
  last: boolean;
}

/**
 * Largest MANIFEST payload ferry builds, in UTF-8 bytes as it goes out, well under the control
 * frame limit.
 */
const BATCH_BYTES = 48 << 10;

/**
 * Most `--exclude`d names one batch walks past: past them it goes as it is, empty perhaps, so a
 * long run of excluded names still moves bytes and meets no idle timeout on the way.
 */
const EXCLUDED_PER_BATCH = 16 * MAX_BATCH_ENTRIES;

/** The note of a folder the sender could not read (its own entry is sent, its contents not). */
const UNREAD_FOLDER = "folder not readable: its contents";

/**
 * Most files sent whose RESULT has not come back: past it the sender waits for the receiver, so
 * one that never reports cannot make it hold every name of the tree.
 */
export const MAX_UNREPORTED = 4 * MAX_BATCH_ENTRIES;

/** Reads the peer's frames while the sender writes: WANTs in order, RESULTs, the final OK. */
class SenderInbox {
  #wants: PromiseWithResolvers<Record<string, unknown>>[] = [];
  #nextWant = 0;
  #done = Promise.withResolvers<TreeSummary>();
  #failed?: unknown;
  #ended = false;
  /** Waiting for the next RESULT (or the end). */
  #waiting?: PromiseWithResolvers<void>;

  /** `batches()` is how many MANIFEST batches went: a WANT for any other is refused. */
  constructor(
    frames: FrameReader,
    batches: () => number,
    onResult: (json: Record<string, unknown>) => void | Promise<void>,
    peer: PeerWork,
  ) {
    this.#done.promise.catch(() => {});
    // RESULTs come one per file: read many at once.
    frames.batchReads(true);
    (async () => {
      while (true) {
        const frame = await frames.readControl();
        if (!frame) throw new ProtocolError("Connection closed during the tree transfer");
        switch (frame.type) {
          case FrameType.KEEPALIVE:
            // The receiver hashing its copies of the files listed (--checksum), flushing the files
            // sent, or removing what this end lacks (--delete).
            peer.notice(frame.json);
            continue;
          case FrameType.WANT:
            // Answers only to batches sent: the slots held stay within the two in flight.
            if (this.#nextWant >= batches()) {
              throw new ProtocolError("WANT for a manifest batch that was not sent");
            }
            this.#slot(this.#nextWant++).resolve(frame.json);
            continue;
          case FrameType.RESULT:
            await onResult(frame.json);
            this.#wake();
            continue;
          case FrameType.OK:
            this.#done.resolve(parseSummary(frame.json));
            this.#ended = true;
            this.#wake();
            return;
          case FrameType.ERROR: {
            const error = parseError(frame.json);
            throw new RefusedError(error.code, error.message);
          }
          default:
            throw new ProtocolError(`Unexpected ${frameTypeName(frame.type)} in a tree transfer`);
        }
      }
    })().catch((error) => {
      this.#failed = error;
      for (const slot of this.#wants) slot?.reject(error);
      this.#done.reject(error);
      this.#waiting?.reject(error);
    }).finally(() => frames.batchReads(false));
  }

  #wake() {
    this.#waiting?.resolve();
    this.#waiting = undefined;
  }

  /** Resolves at the next RESULT or the final OK; rejects if the inbox stops. */
  nextResult(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#ended) return Promise.resolve();
    this.#waiting ??= Promise.withResolvers();
    return this.#waiting.promise;
  }

  #slot(i: number) {
    this.#wants[i] ??= Promise.withResolvers();
    this.#wants[i].promise.catch(() => {});
    if (this.#failed) this.#wants[i].reject(this.#failed);
    return this.#wants[i];
  }

  /** The receiver's answer to batch `i`. */
  async want(i: number): Promise<Record<string, unknown>> {
    const json = await this.#slot(i).promise;
    delete this.#wants[i];
    return json;
  }

  /** The receiver's final summary. */
  get done(): Promise<TreeSummary> {
    return this.#done.promise;
  }

  /** How many WANTs came so far. */
  get wantsIn(): number {
    return this.#nextWant;
  }

  /** Whether the receiver's final OK came. */
  get ended(): boolean {
    return this.#ended;
  }

  /** The error that stopped the inbox, if one did. */
  get failed(): unknown {
    return this.#failed;
  }
}

/**
 * Sends the tree `source` walks. Resolves with the receiver's summary once it has committed
 * (or failed) every file it asked for; throws if the receiver refuses the whole transfer.
 */
export async function sendTree(
  io: TreeIo,
  source: TreeSource,
  options: SendTreeOptions = {},
): Promise<TreeSummary> {
  const batchEntries = Math.min(options.batchEntries ?? MAX_BATCH_ENTRIES, MAX_BATCH_ENTRIES);
  const inFlight = new Map<number, { path: string; size: number; checksum?: string }>();
  /** Files the receiver refused on reading the manifest: neither wanted nor skipped. */
  const refusedEarly = new Set<number>();
  /** The batches sent whose answer is not dealt with yet (two at most). */
  const held: Batch[] = [];
  const heldAt = (index: number) =>
    held.findIndex((b) => index >= b.from && index < b.from + b.entries.length);
  const entryAt = (index: number) => {
    const batch = held[heldAt(index)];
    return batch?.entries[index - batch.from];
  };
  /** The number of the held batch that lists `index` (counted from 0 as they went). */
  const batchOf = (index: number) => batchesSent - held.length + heldAt(index);
  let bytes = 0;
  let batchesSent = 0;
  // The receiver hashes only its copies of the files listed, and flushes only the files sent: it
  // may claim no more than them (removals have a bound of their own).
  const peer = new PeerWork({ ahead: 0, onWork: io.peerWork, phases: io.phaseWork });
  const notices = new WorkNotices(io.out, io.noticeMs);
  const inbox = new SenderInbox(io.frames, () => batchesSent, async (json) => {
    const result = parseResult(json);
    if ("deleted" in result) {
      // Work like the removals its notices claim, and bounded with them: a receiver cannot
      // report names without end, nor slower than a server's minimum rate.
      peer.deleted();
      options.onEvent?.({ kind: "deleted", path: result.deleted });
      // Millions of them may come: their reports go out as they gather, and the receiver waits
      // meanwhile, rather than pile up here.
      if (options.drain) await localWait(io.local, options.drain);
      return;
    }
    // A file sent, or one the receiver refused on reading the manifest (over its limit, say).
    const sent = inFlight.get(result.index);
    const file = sent ?? entryAt(result.index);
    if (!file) throw new ProtocolError("RESULT for a file that was not sent");
    if (!sent) {
      // Refused on reading its batch, so before its WANT, and once: else a receiver could
      // repeat the report for as long as it held the WANT back.
      if (refusedEarly.has(result.index) || batchOf(result.index) < inbox.wantsIn) {
        throw new ProtocolError("RESULT for a file reported already");
      }
      refusedEarly.add(result.index);
    }
    inFlight.delete(result.index);
    const checksum = sent?.checksum;
    options.onEvent?.(
      result.ok
        ? { kind: "sent", path: file.path, size: file.size, index: result.index, checksum }
        : {
          kind: "failed",
          path: file.path,
          message: result.message,
          index: result.index,
          code: result.code,
        },
    );
  }, peer);
  let nextIndex = 0;
  let topSent = false;
  /** The checksum of the file last hashed, which may not have fitted in its batch. */
  let carried: { path: string; checksum: string | null } | undefined;
  let plannedFiles = 0;
  let plannedBytes = 0;
  /** Builds and sends the next batch; null once the walk is over and the last batch went. */
  const sendBatch = (): Promise<Batch> =>
    // Hashing a batch's files can take longer than the receiver's idle timeout: it hears of it.
    options.checksum ? notices.during(buildBatch) : buildBatch();
  const buildBatch = async (): Promise<Batch> => {
    const entries: ManifestEntry[] = [];
    const ids: (FileId | undefined)[] = [];
    const notes: ManifestNote[] = [];
    let size = 0;
    let excluded = 0;
    const walker = source.walker;
    // A walk of names in memory awaits nothing really pending, and an entry can cost about a
    // millisecond against --exclude patterns at their limits: a server's other clients get turns.
    const turns = new EventTurns();
    for (
      let e = walker.peek();
      e && entries.length < batchEntries && notes.length < MAX_BATCH_ENTRIES;
      e = walker.peek()
    ) {
      if (turns.due) await turns.take();
      // Left out, and a folder never gone into: the receiver spares its own of these names too.
      if (options.exclude?.excludes(e.path, e.type === "dir")) {
        await walker.next(false);
        if (++excluded >= EXCLUDED_PER_BATCH) break;
        continue;
      }
      let target: string | undefined;
      if (e.type === "link" && options.links && source.readLink && source.allowed(e.path)) {
        target = await source.readLink(e.path).catch(() => undefined);
      }
      const unsendable = e.notUtf8
        ? "its name is not valid UTF-8"
        : !source.allowed(e.path)
        ? "a name ferry does not carry"
        : e.type === "link" && target !== undefined && !linkStaysInside(e.path, target)
        ? "symlink leads outside the tree"
        : e.type === "link" && target === undefined
        ? "symlink not followed"
        : e.type === "other"
        ? "not a regular file or folder"
        : undefined;
      if (unsendable || e.type === "other") {
        const note = { path: e.path, message: unsendable ?? "" };
        // The receiver hears of it too (it may be the user's end); it counts towards the frame.
        size += utf8Length(JSON.stringify(note)) + 1;
        if (size > BATCH_BYTES && entries.length + notes.length > 0) break;
        notes.push(note);
        options.onEvent?.({ kind: "ignored", ...note });
        await walker.next(false);
        continue;
      }
      const entry: ManifestEntry = {
        path: e.path,
        type: e.type,
        size: e.size,
        mtime: e.mtime,
        mode: e.mode,
      };
      if (target !== undefined) entry.target = target;
      if (options.checksum && e.type === "file") {
        const at = nextIndex + entries.length;
        const id = e.id;
        // A file hashed for a batch it did not fit in goes first in the next, hashed once.
        const sum = carried?.path === e.path ? carried.checksum : await localWait(
          io.local,
          () => checksumOf(source, e.path, at, io.pool, notices.counter(e.size), id),
        );
        carried = { path: e.path, checksum: sum };
        entry.checksum = sum ?? undefined;
      }
      size += utf8Length(JSON.stringify(entry)) + 1;
      if (size > BATCH_BYTES && entries.length > 0) break;
      entries.push(entry);
      ids.push(e.id);
      await walker.next(true);
      // A folder it could not read goes in this batch's notes, with the folder's own entry: the
      // receiver hears of it before it could delete its copy of what the folder holds.
      const unread = walker.takeUnread?.();
      if (unread?.length) {
        for (const path of unread) {
          const note = { path, message: UNREAD_FOLDER };
          size += utf8Length(JSON.stringify(note)) + 1;
          notes.push(note);
          options.onEvent?.({ kind: "ignored", ...note });
        }
      }
    }
    const last = walker.peek() === undefined;
    const from = nextIndex;
    nextIndex += entries.length;
    const batch = { from, entries, ids, last };
    held.push(batch);
    batchesSent++;
    peer.listed(fileBytes(entries), true);
    await io.out.writeControl(FrameType.MANIFEST, {
      entries,
      last,
      ...(!topSent && source.top ? { top: source.top } : {}),
      ...(notes.length > 0 ? { notes } : {}),
    });
    topSent = true;
    return batch;
  };
  try {
    let batch = 0;
    let current: Batch | null = await sendBatch();
    while (current) {
      // The next batch goes out before this one's files, so the receiver's answer to it is on
      // its way while they stream: no round trip is waited for but the first.
      const next: Batch | null = current.last ? null : await sendBatch();
      // What is held back leaves before waiting: the receiver may be waiting for it.
      await io.out.uncork();
      const answer = await inbox.want(batch++);
      const want = parseWant(answer, current.from, current.from + current.entries.length);
      const batchFrom = current.from;
      const offers = parseResumeOffers(answer, want, (i) => current!.entries[i - batchFrom].size);
      const wanted = new Set(want);
      for (const index of want) {
        plannedFiles++;
        plannedBytes += current.entries[index - current.from]?.size ?? 0;
      }
      options.onPlan?.(plannedFiles, plannedBytes);
      for (let i = 0; i < current.entries.length; i++) {
        const entry = current.entries[i];
        const index = current.from + i;
        if (refusedEarly.size > 0 && refusedEarly.delete(index)) continue;
        if (entry.type !== "dir" && !wanted.has(index)) {
          options.onEvent?.({ kind: "skipped", path: entry.path });
        }
      }
      if (!options.dryRun) {
        for (const index of want) {
          const entry = current.entries[index - current.from];
          if (entry.type !== "file") throw new ProtocolError("WANT for a folder or link");
        }
        // A few files are opened (and small ones read) ahead of their turn: each open, stat and
        // read waits for a thread of its own, and one file after another those waits added up.
        const ahead = new Map<number, Promise<Prepared>>();
        const prepareAhead = source.readWhole ? READ_WHOLE_AHEAD : PREPARE_AHEAD;
        let queued = 0;
        try {
          for (const [k, index] of want.entries()) {
            // Topped up once half has gone, not one file at a time: the reads asked for
            // together leave for the disk thread in one message.
            const refill = queued <= k + (prepareAhead >> 1);
            for (; refill && queued < want.length && queued <= k + prepareAhead; queued++) {
              const i = want[queued];
              const entry = current.entries[i - current.from];
              const offer = offers.get(i);
              const counter = offer && notices.counter(offer.offset);
              const id = current.ids[i - current.from];
              ahead.set(i, prepareFile(io, source, i, entry, offer, counter, id));
            }
            const entry = current.entries[index - current.from];
            while (inFlight.size >= MAX_UNREPORTED) {
              // What is held back leaves first: the receiver may need it to report anything.
              await io.out.uncork();
              await inbox.nextResult();
              if (inFlight.size >= MAX_UNREPORTED && inbox.ended) {
                throw new ProtocolError("Tree summary before the files sent were reported");
              }
            }
            // Checking a big file's start against what the receiver kept can take longer than
            // its idle timeout: it hears of it.
            const preparing = ahead.get(index)!;
            const prepared = await (offers.size > 0 ? notices.during(() => preparing) : preparing);
            ahead.delete(index);
            const file: { path: string; size: number; checksum?: string } = {
              path: entry.path,
              size: entry.size,
            };
            inFlight.set(index, file);
            // Counted before it goes: the receiver may begin to flush it once its END is in.
            peer.sent(prepared.size - (prepared.resumeFrom?.size ?? 0));
            const sent = await sendFile(io, prepared, index, bytes, options);
            bytes += sent?.size ?? 0;
            // The receiver's RESULT may come back before this line: it then reports no checksum.
            if (sent) {
              file.size = sent.size;
              file.checksum = sent.checksum;
            }
          }
        } finally {
          for (const prepared of ahead.values()) void prepared.then((p) => p.file?.close());
        }
      } else {
        for (const index of want) {
          const entry = current.entries[index - current.from];
          options.onEvent?.({ kind: "sent", path: entry.path, size: entry.size });
        }
      }
      held.shift();
      current = next;
      if (options.drain) await localWait(io.local, options.drain);
    }
    await io.out.writeControl(FrameType.FINISH, {});
    await io.out.uncork();
    return await inbox.done;
  } catch (error) {
    // The receiver's reason, when it gave one, explains the broken pipe it caused.
    throw inbox.failed ?? error;
  } finally {
    // Used up, or given up: a big folder's names sorted on disk are given back either way.
    source.walker.close?.();
  }
}
