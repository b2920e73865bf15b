/**
 * Tree transfers, pipelined over one connection: the sender streams its manifest in batches, the
 * receiver answers each batch with the entries it needs (comparing with its own tree as both
 * stream past, see lib/tree_walk.ts), the sender streams those files back to back, and the
 * receiver reports each file as it commits it. The same two functions run on the server and on
 * the client; what differs (where files come from and go to) is a {@link TreeSource} or a
 * {@link TreeSink}. Memory holds two batches and one folder's names per level, whatever the
 * number of entries.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import { ProtocolError, RefusedError, StoreError } from "./errors.ts";
import {
  type FrameReader,
  FrameType,
  frameTypeName,
  type FrameWriter,
  parseError,
} from "./protocol.ts";
import {
  type ByteSink,
  checksumFilePrefix,
  localWait,
  type LocalWaits,
  receiveData,
  sendData,
} from "./transfer.ts";
import {
  type ManifestEntry,
  MAX_BATCH_ENTRIES,
  parseFileHeader,
  parseManifest,
  parseResult,
  parseSummary,
  parseWant,
  type TreeSummary,
} from "./tree_protocol.ts";
import { comparePath, type TreeWalker, type WalkEntry } from "./tree_walk.ts";

/** The connection a tree transfer runs over. */
export interface TreeIo {
  /** Frames from the peer. */
  frames: FrameReader;
  /** Frames to the peer. */
  out: FrameWriter;
  /** Buffer pool for the data phases. */
  pool?: BufferPool;
  /** Told while this side waits on its own files, which a stall watchdog must not count. */
  local?: LocalWaits;
}

/** Something that happened to one name, for reports. */
export type TreeEvent =
  | { kind: "sent"; path: string; size: number }
  | { kind: "skipped"; path: string }
  | { kind: "deleted"; path: string }
  | { kind: "failed"; path: string; message: string }
  | { kind: "ignored"; path: string; message: string };

/** Options shared by {@link sendTree} and {@link receiveTree}. */
export interface TreeOptions {
  /** Decide and report only: nothing is written, deleted or sent. */
  dryRun?: boolean;
  /** Told about each name as its fate is known. */
  onEvent?: (event: TreeEvent) => void;
  /** Running count of file bytes moved. */
  onProgress?: (bytes: number) => void;
  /** The files and bytes to move so far, growing as each manifest batch is answered. */
  onPlan?: (files: number, bytes: number) => void;
}

/** Where a sender's files come from. */
export interface TreeSource {
  /** A walk of the folder being sent. */
  walker: TreeWalker;
  /** Opens a file of the walk for reading; the caller closes it. */
  open(path: string): Promise<Deno.FsFile>;
  /** Whether a path may be sent at all (a receiver refuses a manifest with a name it may not). */
  allowed(path: string): boolean;
}

/** Options for {@link sendTree}. */
export interface SendTreeOptions extends TreeOptions {
  /** Put each file's checksum in the manifest (the receiver compares contents). */
  checksum?: boolean;
  /** Most entries per MANIFEST frame (default {@link MAX_BATCH_ENTRIES}). */
  batchEntries?: number;
}

/** A manifest batch as the sender keeps it until the receiver has answered it. */
interface Batch {
  from: number;
  entries: ManifestEntry[];
  last: boolean;
}

/** Largest MANIFEST payload ferry builds, well under the control frame limit. */
const BATCH_BYTES = 48 << 10;

/** Reads the peer's frames while the sender writes: WANTs in order, RESULTs, the final OK. */
class SenderInbox {
  #wants: PromiseWithResolvers<Record<string, unknown>>[] = [];
  #nextWant = 0;
  #done = Promise.withResolvers<TreeSummary>();
  #failed?: unknown;

  constructor(frames: FrameReader, onResult: (json: Record<string, unknown>) => void) {
    this.#done.promise.catch(() => {});
    (async () => {
      while (true) {
        const frame = await frames.readControl();
        if (!frame) throw new ProtocolError("Connection closed during the tree transfer");
        switch (frame.type) {
          case FrameType.KEEPALIVE:
            continue;
          case FrameType.WANT:
            this.#slot(this.#nextWant++).resolve(frame.json);
            continue;
          case FrameType.RESULT:
            onResult(frame.json);
            continue;
          case FrameType.OK:
            this.#done.resolve(parseSummary(frame.json));
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
    });
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
  const inFlight = new Map<number, { path: string; size: number }>();
  /** Files the receiver refused on reading the manifest: neither wanted nor skipped. */
  const refusedEarly = new Set<number>();
  /** The batches sent whose answer is not dealt with yet (two at most). */
  const held: Batch[] = [];
  const entryAt = (index: number) => {
    const batch = held.find((b) => index >= b.from && index < b.from + b.entries.length);
    return batch?.entries[index - batch.from];
  };
  let bytes = 0;
  const inbox = new SenderInbox(io.frames, (json) => {
    const result = parseResult(json);
    if ("deleted" in result) {
      options.onEvent?.({ kind: "deleted", path: result.deleted });
      return;
    }
    // A file sent, or one the receiver refused on reading the manifest (over its limit, say).
    const sent = inFlight.get(result.index);
    const file = sent ?? entryAt(result.index);
    if (!file) throw new ProtocolError("RESULT for a file that was not sent");
    if (!sent) refusedEarly.add(result.index);
    inFlight.delete(result.index);
    options.onEvent?.(
      result.ok
        ? { kind: "sent", path: file.path, size: file.size }
        : { kind: "failed", path: file.path, message: result.message },
    );
  });
  let nextIndex = 0;
  let plannedFiles = 0;
  let plannedBytes = 0;
  /** Builds and sends the next batch; null once the walk is over and the last batch went. */
  const sendBatch = async (): Promise<Batch> => {
    const entries: ManifestEntry[] = [];
    let size = 0;
    const walker = source.walker;
    for (let e = walker.peek(); e && entries.length < batchEntries; e = walker.peek()) {
      const unsendable = !source.allowed(e.path)
        ? "a name ferry does not carry"
        : e.type === "link"
        ? "symlink not followed"
        : e.type === "other"
        ? "not a regular file or folder"
        : undefined;
      if (unsendable || (e.type !== "file" && e.type !== "dir")) {
        options.onEvent?.({ kind: "ignored", path: e.path, message: unsendable ?? "" });
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
      if (options.checksum && e.type === "file") {
        entry.checksum = await localWait(io.local, () => checksumOf(source, e.path, io.pool)) ??
          undefined;
      }
      size += JSON.stringify(entry).length + 1;
      if (size > BATCH_BYTES && entries.length > 0) break;
      entries.push(entry);
      await walker.next(true);
    }
    const last = walker.peek() === undefined;
    const from = nextIndex;
    nextIndex += entries.length;
    const batch = { from, entries, last };
    held.push(batch);
    await io.out.writeControl(FrameType.MANIFEST, { entries, last });
    return batch;
  };
  try {
    let batch = 0;
    let current: Batch | null = await sendBatch();
    while (current) {
      // The next batch goes out before this one's files, so the receiver's answer to it is on
      // its way while they stream: no round trip is waited for but the first.
      const next: Batch | null = current.last ? null : await sendBatch();
      const want = parseWant(
        await inbox.want(batch++),
        current.from,
        current.from + current.entries.length,
      );
      const wanted = new Set(want);
      for (const index of want) {
        plannedFiles++;
        plannedBytes += current.entries[index - current.from]?.size ?? 0;
      }
      options.onPlan?.(plannedFiles, plannedBytes);
      for (const [i, entry] of current.entries.entries()) {
        const index = current.from + i;
        if (refusedEarly.delete(index)) continue;
        if (entry.type === "file" && !wanted.has(index)) {
          options.onEvent?.({ kind: "skipped", path: entry.path });
        }
      }
      if (!options.dryRun) {
        for (const index of want) {
          const entry = current.entries[index - current.from];
          if (entry.type !== "file") throw new ProtocolError("WANT for a folder");
          inFlight.set(index, { path: entry.path, size: entry.size });
          bytes = await sendFile(io, source, index, entry, bytes, options.onProgress);
        }
      } else {
        for (const index of want) {
          const entry = current.entries[index - current.from];
          options.onEvent?.({ kind: "sent", path: entry.path, size: entry.size });
        }
      }
      held.shift();
      current = next;
    }
    await io.out.writeControl(FrameType.FINISH, {});
    return await inbox.done;
  } catch (error) {
    // The receiver's reason, when it gave one, explains the broken pipe it caused.
    throw inbox.failed ?? error;
  }
}

async function checksumOf(
  source: TreeSource,
  path: string,
  pool?: BufferPool,
): Promise<string | null> {
  let file: Deno.FsFile;
  try {
    file = await source.open(path);
  } catch {
    return null;
  }
  try {
    const size = (await file.stat()).size;
    return (await checksumFilePrefix(file, size, { pool }))?.digest() ?? null;
  } finally {
    file.close();
  }
}

/** Sends one file: FILE, then DATA* END, or ABORT if it cannot be read. Returns bytes so far. */
async function sendFile(
  io: TreeIo,
  source: TreeSource,
  index: number,
  entry: ManifestEntry,
  before: number,
  onProgress?: (bytes: number) => void,
): Promise<number> {
  let file: Deno.FsFile | undefined;
  let size = 0;
  let failure: string | undefined;
  try {
    file = await source.open(entry.path);
    const info = await file.stat();
    if (!info.isFile) throw new Error("not a regular file");
    size = info.size;
  } catch (error) {
    file?.close();
    file = undefined;
    failure = `Cannot read it: ${error instanceof Error ? error.message.split("\n")[0] : error}`;
  }
  io.out.cork();
  await io.out.writeControl(FrameType.FILE, { index, size });
  if (!file) {
    await io.out.writeControl(FrameType.ABORT, { code: "io", message: failure });
    await io.out.uncork();
    return before;
  }
  try {
    const result = await sendData(limited(file, size), io.out, {
      pool: io.pool,
      localWaits: io.local,
      sizeHint: size,
      onProgress: (n) => onProgress?.(before + n),
    });
    return before + result.size;
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    // The data phase ends with ABORT: the connection stays in step and the tree goes on.
    await io.out.writeControl(FrameType.ABORT, { code: "io", message: error.message });
    await io.out.uncork();
    return before;
  } finally {
    file.close();
  }
}

/** A local file that could not be read mid-send (not the connection's failure). */
class SourceError extends Error {}

/** Reads at most `size` bytes of `file`: a file that grows is sent as it was measured. */
function limited(file: Deno.FsFile, size: number) {
  let left = size;
  return {
    read: async (p: Uint8Array): Promise<number | null> => {
      if (left <= 0) return null;
      let n: number | null;
      try {
        n = await file.read(p.subarray(0, Math.min(p.length, left)));
      } catch (error) {
        throw new SourceError(`Cannot read it: ${error instanceof Error ? error.message : error}`);
      }
      if (n === null) throw new SourceError("It shrank while being sent");
      left -= n;
      return n;
    },
  };
}

/** One file being written by a receiver. */
export interface TreeFileSink extends ByteSink {
  /** Gives the verified file its name, mtime and mode; durable once it resolves. */
  commit(): Promise<void>;
  /** Throws what was written away. */
  discard(): Promise<void>;
}

/** Where a receiver's files go. Paths are relative to the folder being received into. */
export interface TreeSink {
  /** Refuses a path that breaks the name rules ({@link StoreError} `bad_name`). */
  check(path: string): void;
  /** A walk of what the receiving folder holds now; null when there is no such folder yet. */
  walker(): Promise<TreeWalker | null>;
  /** Creates the receiving folder itself, if it is missing. */
  makeBase(): Promise<void>;
  /** Creates a folder whose parent exists. */
  makeDir(path: string): Promise<void>;
  /** Removes a name: a file, a link (never its target) or a folder with all it holds. */
  remove(path: string): Promise<void>;
  /** Starts writing a file; nothing shows under its name before commit. */
  beginFile(path: string, entry: ManifestEntry): Promise<TreeFileSink>;
  /** Gives a folder its mtime and mode once everything in it is written. */
  finishDir(path: string, entry: ManifestEntry): Promise<void>;
  /** The checksum of a file the receiver has, for `--checksum`; null if it cannot be read. */
  checksum(path: string): Promise<string | null>;
  /** Whether the receiving folder's filesystem folds case (`A` and `a` are one name there). */
  caseInsensitive(): Promise<boolean>;
}

/** Options for {@link receiveTree}. */
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
}

/** Files a receiver commits at once, while the next ones arrive. */
const COMMIT_WINDOW = 16;

/** Default cap on the number of entries a receiver accepts. */
export const DEFAULT_MAX_ENTRIES = 1_000_000;

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
  const summary: TreeSummary = { files: 0, skipped: 0, deleted: 0, failed: 0, bytes: 0 };
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const dry = options.dryRun ?? false;
  const event = (e: TreeEvent) => options.onEvent?.(e);
  let own = await sink.walker();
  if (!own && !dry) await sink.makeBase();
  const caseless = options.caseInsensitive ?? (own || !dry ? await sink.caseInsensitive() : false);
  /** On a filesystem that folds case: the folded names seen in each folder on the way. */
  const folded = new Map<string, Set<string>>();
  let count = 0;
  let announced = 0;
  let plannedFiles = 0;
  let plannedBytes = 0;
  let previous: string | undefined;
  /** Folders of the manifest on the way to the current entry. */
  const open: string[] = [];
  /** Folders to give their mtime and mode at the end, deepest last. */
  const folders: ManifestEntry[] = [];
  const pending: { index: number; entry: ManifestEntry }[] = [];
  let last = false;
  /** File bytes received so far, for progress (commits may still be under way). */
  let received = 0;
  /** Files being committed. */
  const commits = new Set<Promise<void>>();

  const removeExtra = async (extra: WalkEntry) => {
    if (!options.delete) return;
    if (!dry) await sink.remove(extra.path);
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

  const onManifest = async (json: Record<string, unknown>) => {
    if (last) throw new ProtocolError("MANIFEST after the last one");
    const batch = parseManifest(json);
    if (count + batch.entries.length > maxEntries) {
      throw new StoreError("too_large", `Refused tree: more than ${maxEntries} entries`);
    }
    // The whole batch is checked before anything is done for any of it.
    for (const entry of batch.entries) checkEntry(entry);
    const want: number[] = [];
    for (const entry of batch.entries) {
      const index = count++;
      const mine = await catchUp(entry.path);
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
        }
        folders.push(entry);
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
        if (!dry) await sink.remove(entry.path);
      } else if (mine) {
        await own!.next(false);
      }
      if (options.maxFileSize !== undefined && entry.size > options.maxFileSize) {
        summary.failed++;
        const message = `Over the limit of ${options.maxFileSize} bytes`;
        event({ kind: "failed", path: entry.path, message });
        await io.out.writeControl(FrameType.RESULT, { index, ok: false, message });
        continue;
      }
      if (await needs(entry, mine?.type === "dir" ? undefined : mine)) {
        announced += entry.size;
        if (options.maxTotalSize !== undefined && announced > options.maxTotalSize) {
          throw new StoreError(
            "too_large",
            `Refused tree: over the limit of ${options.maxTotalSize} bytes in all`,
          );
        }
        want.push(index);
        if (dry) {
          // Counted as the transfer would count it: a dry run's summary says what it would do.
          summary.files++;
          summary.bytes += entry.size;
          event({ kind: "sent", path: entry.path, size: entry.size });
        } else {
          pending.push({ index, entry });
        }
      } else {
        summary.skipped++;
        event({ kind: "skipped", path: entry.path });
      }
    }
    last = batch.last;
    if (last) await catchUp(undefined);
    await io.out.writeControl(FrameType.WANT, { want });
    plannedFiles += want.length;
    plannedBytes = announced;
    options.onPlan?.(plannedFiles, plannedBytes);
  };

  const checkEntry = (entry: ManifestEntry) => {
    try {
      sink.check(entry.path);
    } catch (error) {
      throw error instanceof StoreError ? badManifest(error.message) : error;
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
      names.add(key);
      folded.set(parent, names);
    }
    if (entry.type === "dir") open.push(entry.path);
  };

  const onFile = async (json: Record<string, unknown>) => {
    const { index, size } = parseFileHeader(json);
    const next = pending.shift();
    if (!next || next.index !== index) throw new ProtocolError("FILE that was not asked for");
    const { entry } = next;
    if (options.maxFileSize !== undefined && size > options.maxFileSize) {
      throw new StoreError("too_large", `Refused file over the limit: ${entry.path}`);
    }
    let target: TreeFileSink | null = null;
    let refusal: string | undefined;
    try {
      target = await sink.beginFile(entry.path, entry);
    } catch (error) {
      if (!(error instanceof StoreError) && !(error instanceof Deno.errors.PermissionDenied)) {
        throw error;
      }
      refusal = error.message;
    }
    const into: ByteSink = target ?? { write: () => Promise.resolve() };
    const fail = async (error: unknown) => {
      summary.failed++;
      const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
      event({ kind: "failed", path: entry.path, message });
      await io.out.writeControl(FrameType.RESULT, { index, ok: false, message });
    };
    let result;
    try {
      result = await receiveData(io.frames, into, {
        pool: io.pool,
        localWaits: io.local,
        sizeHint: size,
        announcedSize: size,
        maxSize: options.maxFileSize,
        onProgress: (n) => options.onProgress?.(received + n),
      });
      if (refusal !== undefined) throw new StoreError("io", refusal);
    } catch (error) {
      await target?.discard();
      // ABORT from the sender, or the receiver's own refusal once the data was read in full:
      // this file only. Anything else leaves the connection out of step.
      if (!(error instanceof RefusedError || error instanceof StoreError && error.code === "io")) {
        throw error;
      }
      await fail(error);
      return;
    }
    received += result.size;
    // Committing (flushing, above all) runs while the next files arrive: a few at once let the
    // filesystem flush them together. Each is reported only once it is durable.
    const committing = (async () => {
      try {
        await localWait(io.local, () => target!.commit());
      } catch (error) {
        await fail(error).catch(() => {});
        return;
      }
      summary.files++;
      summary.bytes += result.size;
      event({ kind: "sent", path: entry.path, size: result.size });
      await io.out.writeControl(FrameType.RESULT, { index, ok: true }).catch(() => {});
    })().finally(() => commits.delete(committing));
    commits.add(committing);
    if (commits.size >= COMMIT_WINDOW) await Promise.race(commits);
  };

  try {
    while (true) {
      const frame = await io.frames.readControl();
      if (!frame) throw new ProtocolError("Connection closed during the tree transfer");
      switch (frame.type) {
        case FrameType.KEEPALIVE:
          continue;
        case FrameType.MANIFEST:
          await onManifest(frame.json);
          continue;
        case FrameType.FILE:
          await onFile(frame.json);
          continue;
        case FrameType.FINISH: {
          if (!last || pending.length > 0) throw new ProtocolError("FINISH before the end");
          while (commits.size > 0) await Promise.all(commits);
          if (!dry) {
            for (const folder of folders.reverse()) await sink.finishDir(folder.path, folder);
          }
          await io.out.writeControl(FrameType.OK, { ...summary });
          own = null;
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
    await Promise.allSettled([...commits]);
    throw error;
  }
}
