/**
 * The receiving end of a tree transfer: checks each manifest batch whole, compares it with its own
 * tree as both are walked in the same order (lib/tree_walk.ts), so it holds one folder's names per
 * level, answers with what it needs, deletes what the sender lacks if asked, and writes, verifies
 * and commits each file on its own, several at once. Whatever the tree's size, memory holds at
 * most two batches of files waiting to come, the folders on the way to the current entry, and
 * the folders whose files are still being committed (docs/protocol.md, "Flow control").
 *
 * @module
 */

import {
  describeError,
  isInterruption,
  ProtocolError,
  RefusedError,
  StoreError,
} from "./errors.ts";
import { parseError } from "./protocol.ts";
import { FrameType, frameTypeName } from "./frames.ts";
import { type ByteSink, localWait, receiveData, type ResumePoint } from "./transfer.ts";
import { KEEP_MIN_BYTES } from "./kept_uploads.ts";
import {
  type ManifestEntry,
  type ManifestTop,
  MAX_BATCH_ENTRIES,
  parseFileHeader,
  parseManifest,
  type TreeSummary,
} from "./tree_transfer_protocol.ts";
import type {
  KeptPart,
  TreeEvent,
  TreeFileSink,
  TreeIo,
  TreeOptions,
  TreeSink,
} from "./tree_transfer.ts";
import { comparePath, type WalkEntry } from "./tree_walk.ts";
import { linkStaysInside } from "./tree_links.ts";
import { SMALL_FILE_MAX } from "./staged_file.ts";

export interface ReceiveTreeOptions extends TreeOptions {
  /** Remove what the sender does not have (default false). */
  delete?: boolean;
  /** Most entries the manifest may hold (default 1,000,000). */
  maxEntries?: number;
  /** Largest file accepted, in bytes; none by default. */
  maxFileSize?: number;
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
   * Whether a file the connection was cut in the middle of is kept for `--resume` (at least
   * {@link KEEP_MIN_BYTES} of it, and where the sink can keep it); default: always. A server
   * that cut the connection itself keeps nothing, as for a single put.
   */
  keepInterrupted?: () => boolean;
  /** Told of a file the connection was cut in, kept for `--resume`, with the bytes kept. */
  onKept?: (path: string, bytes: number) => void;
  /**
   * Accept symlinks whose target stays inside the tree (`--links`; default false: a manifest
   * with a link is refused). Each target is checked again here (lib/tree_links.ts).
   */
  links?: boolean;
}

/** Files a receiver commits at once, while the next ones arrive. */
const COMMIT_WINDOW = 16;

/** Default cap on the number of entries a receiver accepts. */
export const DEFAULT_MAX_ENTRIES = 1_000_000;

/**
 * Most names a receiver on a filesystem that folds case holds for one folder, to refuse two that
 * differ only by case: a larger folder is refused rather than held in memory whole.
 */
export const MAX_FOLDED_NAMES = 100_000;

/**
 * Folders left by the walk and waiting for their files before they get their mtime and mode; past
 * this many, the receiver waits for the commits under way before reading on.
 */
const MAX_CLOSING = 4 * MAX_BATCH_ENTRIES;

/** Most kept parts offered and not yet used: each holds a file open until its FILE comes. */
const MAX_OFFERS = 16;

/** A manifest that breaks the rules (hostile or broken sender): the whole transfer stops. */
function badManifest(why: string): StoreError {
  return new StoreError("bad_name", `Refused manifest: ${why}`);
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
  const summary: TreeSummary = {
    files: 0,
    skipped: 0,
    deleted: 0,
    failed: 0,
    bytes: 0,
    resumed: 0,
  };
  /** Kept parts offered to the sender, by index, until their FILE comes. */
  const offers = new Map<number, KeptPart>();
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const dry = options.dryRun ?? false;
  const flat = options.files ?? false;
  const event = (e: TreeEvent) => options.onEvent?.(e);
  // This side's own disk work is told of (io.local), so that a server's minimum upload rate
  // counts only the time it waits for the sender.
  const own = flat ? null : await localWait(io.local, () => sink.walker());
  // A receiving folder that was there already is the receiver's own (a home folder, /tmp): it
  // keeps its mode and mtime, whatever the sender says. Only one this transfer makes takes the
  // sender's (finishBase), which a rerun then leaves alone too.
  const madeBase = !own && !dry && !flat;
  if (madeBase) await localWait(io.local, () => sink.makeBase());
  const caseless = !flat &&
    (options.caseInsensitive ??
      (own || !dry ? await localWait(io.local, () => sink.caseInsensitive()) : false));
  /** On a filesystem that folds case: the folded names seen in each folder on the way. */
  const folded = new Map<string, Set<string>>();
  let count = 0;
  let announced = 0;
  let plannedFiles = 0;
  let plannedBytes = 0;
  let previous: string | undefined;
  /** Folders of the manifest on the way to the current entry, as the batch is checked. */
  const open: string[] = [];
  /**
   * The same, as each entry is acted on: folders that may still get entries, each with what the
   * receiver's own walk found there while this transfer has changed nothing in it.
   */
  const entered: { entry: ManifestEntry; found?: WalkEntry }[] = [];
  /**
   * Folders the manifest has left, in the order it left them (deepest first), each with the last
   * index it could hold: given their mtime and mode once every file up to there is done.
   */
  const closing: { entry: ManifestEntry; found?: WalkEntry; upTo: number }[] = [];
  /** Notes that the folder holding `path` is changed by this transfer (see {@link entered}). */
  const changes = (path: string) => {
    const cut = path.lastIndexOf("/");
    const parent = cut < 0 ? "" : path.slice(0, cut);
    for (let i = entered.length - 1; i >= 0; i--) {
      if (entered[i].entry.path === parent) {
        entered[i].found = undefined;
        return;
      }
    }
  };
  /**
   * Files wanted and not yet received, in manifest order. The sender may run one batch ahead of
   * its files, no more (docs/protocol.md), so this holds at most two batches.
   */
  const pending: { index: number; entry: ManifestEntry }[] = [];
  /** Where the latest batch started: files of earlier ones must all have come by the next. */
  let batchFrom = 0;
  let last = false;
  /** Whether a MANIFEST came yet; the first one carries the folder's own mtime and mode. */
  let manifested = false;
  let top: ManifestTop | undefined;
  /** File bytes received so far, for progress (commits may still be under way). */
  let received = 0;
  /** Files being committed, with their indexes (at most {@link COMMIT_WINDOW}). */
  const commits = new Map<Promise<void>, number>();
  /** Files transfers: the commit under way for each name, which a second file of it awaits. */
  const byName = new Map<string, Promise<void>>();
  /** Reports a file that failed, to the user and to the sender. */
  const fail = async (index: number, path: string, error: unknown) => {
    summary.failed++;
    const message = describeError(error);
    const code = error instanceof StoreError || error instanceof RefusedError ? error.code : "io";
    event({ kind: "failed", path, message, index, code });
    await io.out.writeControl(FrameType.RESULT, { index, ok: false, code, message });
  };

  /**
   * Names the sender has and did not send (its notes: a folder it could not read, a symlink, a
   * name ferry does not carry), in walk order, until the walk passes them: `--delete` keeps them
   * and what is under them, as what the sender lacks is only what it does not have.
   */
  const spared: string[] = [];
  /** Forgets the notes the walk has passed on its way to `path`. */
  const passNotes = (path: string) => {
    while (
      spared.length > 0 && comparePath(spared[0], path) < 0 && !path.startsWith(spared[0] + "/")
    ) spared.shift();
  };
  const isSpared = (path: string) => {
    passNotes(path);
    return spared.length > 0 && (path === spared[0] || path.startsWith(spared[0] + "/"));
  };
  const removeExtra = async (extra: WalkEntry) => {
    if (!options.delete || isSpared(extra.path)) return;
    if (!dry) await sink.remove(extra.path);
    changes(extra.path);
    summary.deleted++;
    event({ kind: "deleted", path: extra.path });
    await io.out.writeControl(FrameType.RESULT, { deleted: extra.path });
  };
  /** Moves the walk of the receiver's own tree up to `path`; its entry there, if any. */
  const catchUp = async (path: string | undefined): Promise<WalkEntry | undefined> => {
    for (let mine = own?.peek(); mine; mine = own?.peek()) {
      const order = path === undefined ? -1 : comparePath(mine.path, path);
      if (order > 0) return undefined;
      if (order === 0) return mine;
      await own!.next(false);
      await removeExtra(mine);
    }
    return undefined;
  };
  const needs = async (entry: ManifestEntry, mine: WalkEntry | undefined) => {
    if (!mine || mine.type !== "file" || mine.size !== entry.size) return true;
    if (entry.checksum) {
      return (await localWait(io.local, () => sink.checksum(entry.path))) !== entry.checksum;
    }
    return Math.trunc(mine.mtime) !== Math.trunc(entry.mtime);
  };

  /** Moves the folders the manifest has left, on its way to `path`, to {@link closing}. */
  const leaveFolders = (path: string | undefined, upTo: number) => {
    if (dry || flat) return;
    while (entered.length > 0) {
      const folder = entered.at(-1)!;
      if (path !== undefined && path.startsWith(folder.entry.path + "/")) return;
      entered.pop();
      closing.push({ ...folder, upTo });
    }
  };
  /** The first file not done yet (received and committed, or failed); Infinity when none. */
  const firstUndone = () => {
    let first = pending[0]?.index ?? Infinity;
    for (const index of commits.values()) first = Math.min(first, index);
    return first;
  };
  /**
   * Gives the folders whose files are all done their mtime and mode. Too many waiting (a slow
   * commit while the walk runs on): the commits under way are waited for first.
   */
  const finishFolders = async () => {
    if (closing.length > MAX_CLOSING) await Promise.allSettled([...commits.keys()]);
    let done = 0;
    const first = firstUndone();
    while (done < closing.length && closing[done].upTo < first) {
      const { entry, found } = closing[done++];
      await localWait(io.local, () => sink.finishDir(entry.path, entry, found));
    }
    closing.splice(0, done);
  };

  const onManifest = async (json: Record<string, unknown>) => {
    if (last) throw new ProtocolError("MANIFEST after the last one");
    // Flow control: a sender streams the files of one batch while the receiver answers the
    // next, and no further ahead; a manifest that runs on without them is refused, so what is
    // waiting here stays within two batches whatever the tree's size.
    if (pending.length > 0 && pending[0].index < batchFrom) {
      throw new StoreError(
        "bad_request",
        "Refused tree: the sender ran more than one manifest batch ahead of its files",
      );
    }
    const batch = parseManifest(json, { links: options.links && !flat });
    batchFrom = count;
    if (!manifested && !flat) {
      top = batch.top;
      // A folder made for this tree takes the sender's mode before anything goes in, so that an
      // interrupted run leaves it as a whole one would; it is finished again at the end. (Made
      // here, it held nothing: no part kept for --resume is in it.)
      if (top && madeBase) await sink.finishBase(top);
    }
    manifested = true;
    for (const note of batch.notes ?? []) {
      event({ kind: "ignored", ...note });
      if (options.delete && !flat) {
        // A sender's notes come in walk order and are passed with its batch: only one out of
        // order (a hostile sender's) could pile up, and then it protects less.
        if (spared.length >= 2 * MAX_BATCH_ENTRIES) spared.shift();
        spared.push(note.path);
      }
    }
    if (count + batch.entries.length > maxEntries) {
      throw new StoreError("too_large", `Refused tree: more than ${maxEntries} entries`);
    }
    // The whole batch is checked before anything is done for any of it.
    for (const entry of batch.entries) {
      if (!flat) checkEntry(entry);
      else if (entry.type !== "file") throw badManifest("a folder in a transfer of files");
    }
    const want: number[] = [];
    const resume: { index: number; offset: number; prefix: string }[] = [];
    for (const entry of batch.entries) {
      const index = count++;
      if (flat) {
        try {
          sink.check(entry.path);
          if (options.maxFileSize !== undefined && entry.size > options.maxFileSize) {
            throw new StoreError("too_large", `Over the limit of ${options.maxFileSize} bytes`);
          }
          await sink.admit?.(entry.path, entry, index);
        } catch (error) {
          if (!(error instanceof StoreError)) throw error;
          await fail(index, entry.path, error);
          continue;
        }
        want.push(index);
        pending.push({ index, entry });
        continue;
      }
      const mine = await catchUp(entry.path);
      passNotes(entry.path);
      leaveFolders(entry.path, index - 1);
      if (entry.type === "link") {
        await onLink(index, entry, mine);
        continue;
      }
      if (entry.type === "dir") {
        if (mine?.type === "dir") {
          await own!.next(true);
        } else {
          if (mine) {
            // A file (or link) where the sender has a folder: the folder wins, as a newer file
            // would replace an older one.
            await own!.next(false);
            if (!dry) await sink.remove(entry.path);
          }
          if (!dry) await sink.makeDir(entry.path);
          changes(entry.path);
        }
        entered.push({ entry, found: mine?.type === "dir" ? mine : undefined });
        continue;
      }
      if (mine?.type === "dir") {
        await own!.next(false);
        if (!options.delete) {
          summary.failed++;
          event({ kind: "failed", path: entry.path, message: "a folder is in the way" });
          await io.out.writeControl(FrameType.RESULT, {
            index,
            ok: false,
            message: "A folder is in the way (use --delete to replace it)",
          });
          continue;
        }
      } else if (mine) {
        await own!.next(false);
      }
      // A folder in the way goes only once the file that replaces it is wanted: a file refused
      // (over a limit) leaves it as it was.
      if (options.maxFileSize !== undefined && entry.size > options.maxFileSize) {
        summary.failed++;
        const message = `Over the limit of ${options.maxFileSize} bytes`;
        event({ kind: "failed", path: entry.path, message });
        await io.out.writeControl(FrameType.RESULT, { index, ok: false, message });
        continue;
      }
      if (await needs(entry, mine?.type === "dir" ? undefined : mine)) {
        announced += entry.size;
        changes(entry.path);
        if (options.maxTotalSize !== undefined && announced > options.maxTotalSize) {
          throw new StoreError(
            "too_large",
            `Refused tree: over the limit of ${options.maxTotalSize} bytes in all`,
          );
        }
        if (mine?.type === "dir" && !dry) await sink.remove(entry.path);
        want.push(index);
        if (dry) {
          // Counted as the transfer would count it: a dry run's summary says what it would do.
          summary.files++;
          summary.bytes += entry.size;
          event({ kind: "sent", path: entry.path, size: entry.size });
        } else {
          pending.push({ index, entry });
          if (
            options.resume && sink.resume && entry.size > KEEP_MIN_BYTES &&
            offers.size < MAX_OFFERS
          ) {
            const kept = await localWait(io.local, () => sink.resume!(entry.path, entry));
            if (kept && kept.point.size < entry.size) {
              offers.set(index, kept);
              const prefix = (await kept.point.checksum.fork()).digest();
              resume.push({ index, offset: kept.point.size, prefix });
            } else await kept?.release(true);
          }
        }
      } else {
        summary.skipped++;
        event({ kind: "skipped", path: entry.path });
      }
    }
    last = batch.last;
    if (last) {
      await catchUp(undefined);
      leaveFolders(undefined, count - 1);
    }
    await io.out.writeControl(FrameType.WANT, { want, ...(resume.length ? { resume } : {}) });
    await finishFolders();
    plannedFiles += want.length;
    plannedBytes = announced;
    options.onPlan?.(plannedFiles, plannedBytes);
    if (options.drain) await localWait(io.local, options.drain);
  };

  /** A link of the manifest: made (or replaced) unless the receiver has it already. */
  const onLink = async (index: number, entry: ManifestEntry, mine: WalkEntry | undefined) => {
    const target = entry.target!;
    if (mine) await own!.next(false);
    if (mine?.type === "link") {
      const current = await sink.readLink?.(entry.path).catch(() => null);
      if (current === target) {
        summary.skipped++;
        event({ kind: "skipped", path: entry.path });
        return;
      }
    }
    // Made or replaced below, or failed half-way: either way its folder may not be as it was.
    changes(entry.path);
    try {
      if (mine?.type === "dir") {
        if (!options.delete) {
          throw new StoreError("not_a_file", "A folder is in the way (use --delete to replace it)");
        }
        if (!dry) await sink.remove(entry.path);
      }
      if (!dry) {
        if (!sink.makeLink) throw new StoreError("unsupported", "Links cannot be made here");
        await localWait(io.local, () => sink.makeLink!(entry.path, target));
      }
    } catch (error) {
      if (!(error instanceof StoreError) && !(error instanceof Deno.errors.PermissionDenied)) {
        throw error;
      }
      await fail(index, entry.path, error);
      return;
    }
    summary.files++;
    event({ kind: "sent", path: entry.path, size: 0, index });
    await io.out.writeControl(FrameType.RESULT, { index, ok: true });
  };

  const checkEntry = (entry: ManifestEntry) => {
    try {
      sink.check(entry.path);
    } catch (error) {
      throw error instanceof StoreError ? badManifest(error.message) : error;
    }
    if (entry.type === "link" && !linkStaysInside(entry.path, entry.target!)) {
      throw badManifest(`a symlink that leads outside the tree: ${entry.path}`);
    }
    if (previous !== undefined && comparePath(previous, entry.path) >= 0) {
      throw badManifest("entries out of order or repeated");
    }
    previous = entry.path;
    const cut = entry.path.lastIndexOf("/");
    const parent = cut < 0 ? "" : entry.path.slice(0, cut);
    while (open.length > 0 && open.at(-1) !== parent) folded.delete(open.pop()!);
    if (parent !== "" && open.at(-1) !== parent) {
      throw badManifest("a name in a folder that was not announced");
    }
    if (caseless) {
      // Two names that differ only by case would be one file here: the second would overwrite
      // the first (or land inside it), whatever the manifest meant.
      const names = folded.get(parent) ?? new Set<string>();
      const key = entry.path.slice(cut + 1).normalize("NFC").toLowerCase();
      if (names.has(key)) throw badManifest(`names differ only by case: ${entry.path}`);
      if (names.size >= MAX_FOLDED_NAMES) {
        throw new StoreError(
          "too_large",
          `Refused tree: more than ${MAX_FOLDED_NAMES} names in one folder, on a filesystem ` +
            "that folds case",
        );
      }
      names.add(key);
      folded.set(parent, names);
    }
    if (entry.type === "dir") open.push(entry.path);
  };

  const onFile = async (json: Record<string, unknown>) => {
    const { index, size, offset } = parseFileHeader(json);
    const next = pending.shift();
    if (!next || next.index !== index) throw new ProtocolError("FILE that was not asked for");
    const { entry } = next;
    const kept = offers.get(index);
    offers.delete(index);
    if (offset > 0 && offset !== kept?.point.size) {
      await kept?.release(false);
      throw new ProtocolError("FILE resumed from an offset that was not offered");
    }
    /** The sender continues after the kept bytes; or it starts over, and they go. */
    let resumeFrom: ResumePoint | undefined;
    if (kept && offset > 0) resumeFrom = kept.point;
    else await kept?.release(true);
    if (options.maxFileSize !== undefined && size > options.maxFileSize) {
      throw new StoreError("too_large", `Refused file over the limit: ${entry.path}`);
    }
    let target: TreeFileSink | null = null;
    let refusal: StoreError | undefined;
    // A second file of one name (mput a/x b/x) waits for the first to be named, as it would
    // one put after the other: it then replaces it, or is refused as existing.
    const before = byName.get(entry.path);
    if (before) await before;
    try {
      target = await localWait(
        io.local,
        () => resumeFrom ? kept!.open() : sink.beginFile(entry.path, entry, index),
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
        resumeFrom,
        throttle: options.throttle &&
          ((n, signal) => localWait(io.local, () => options.throttle!(n, signal))),
        maxChunk: options.maxChunk,
        onProgress: (n) => {
          receivedHere = n - offset;
          options.onProgress?.(received + n);
        },
      });
      if (refusal !== undefined) throw refusal;
    } catch (error) {
      const arrived = offset + receivedHere;
      if (
        target?.keep && isInterruption(error) && arrived >= KEEP_MIN_BYTES &&
        (options.keepInterrupted?.() ?? true)
      ) {
        const kept = await target.keep().then(() => true, () => target!.discard());
        if (kept) options.onKept?.(entry.path, arrived);
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
      await fail(index, entry.path, error);
      return;
    }
    received += result.size;
    // Committing (flushing, above all) runs while the next files arrive: a few at once let the
    // filesystem flush them together. Each is reported only once it is durable.
    const committing = (async () => {
      try {
        await localWait(io.local, () => target!.commit(result));
      } catch (error) {
        await fail(index, entry.path, error).catch(() => {});
        return;
      }
      summary.files++;
      summary.bytes += result.size;
      summary.resumed! += offset;
      event({
        kind: "sent",
        path: entry.path,
        size: result.size,
        index,
        checksum: result.checksum,
      });
      await io.out.writeControl(FrameType.RESULT, { index, ok: true }).catch(() => {});
    })().finally(() => {
      commits.delete(committing);
      if (byName.get(entry.path) === committing) byName.delete(entry.path);
    });
    commits.set(committing, index);
    if (flat) byName.set(entry.path, committing);
    if (commits.size >= COMMIT_WINDOW) await Promise.race(commits.keys());
  };

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
          continue;
        case FrameType.MANIFEST:
          // Comparing a batch with this side's tree (and deleting, with --delete) is its own
          // disk work, however long it takes.
          await localWait(io.local, () => onManifest(frame.json));
          continue;
        case FrameType.FILE:
          await onFile(frame.json);
          if (closing.length > 0) await finishFolders();
          continue;
        case FrameType.FINISH: {
          if (!last || pending.length > 0) throw new ProtocolError("FINISH before the end");
          while (commits.size > 0) await Promise.all(commits.keys());
          if (!dry) {
            await localWait(io.local, async () => {
              await finishFolders();
              if (top && madeBase) await sink.finishBase(top);
              await sink.done?.();
            });
          }
          await io.out.writeControl(FrameType.OK, { ...summary });
          await io.out.uncork();
          return summary;
        }
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
    // Files already verified are still being committed: let them finish (or clean up) first,
    // so that what is left is whole files only, even if the process exits next.
    await Promise.allSettled([...commits.keys()]);
    // Offered and never used: kept again for the next run.
    await Promise.allSettled([...offers.values()].map((kept) => kept.release(false)));
    throw error;
  } finally {
    // A big folder's names sorted on disk, if the walk stopped before its end, are given back.
    own?.close?.();
    io.frames.batchReads(false);
    // Whatever is still held back goes before the caller's own answer (an ERROR, say).
    await io.out.uncork().catch(() => {});
  }
}
