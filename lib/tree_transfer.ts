/**
 * Tree transfers, pipelined over one connection: the sender streams its manifest in batches, the
 * receiver answers each batch with the entries it needs, the sender streams those files back to
 * back, and the receiver reports each file as it commits it. This module holds what both ends
 * share: the connection, the events, and the two ends' view of local files, a {@link TreeSource}
 * for the sender and a {@link TreeSink} for the receiver. The same code runs on the server and
 * on the client: lib/tree_send.ts sends, lib/tree_receive.ts receives.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import type { ErrorCode } from "./protocol.ts";
import type { FrameReader } from "./frame_reader.ts";
import type { FrameWriter } from "./frame_writer.ts";
import type { ByteSink, LocalWaits, ResumePoint, Throttle, TransferResult } from "./transfer.ts";
import type { ManifestEntry, ManifestTop } from "./tree_transfer_protocol.ts";
import { type EntryWalk, MODE_BITS, type WalkEntry } from "./tree_walk.ts";
import type { NamePatterns } from "./name_patterns.ts";
import type { FileId } from "./checked_open.ts";

export interface TreeIo {
  /** Frames from the peer. */
  frames: FrameReader;
  /** Frames to the peer. */
  out: FrameWriter;
  /** Buffer pool for the data phases. */
  pool?: BufferPool;
  /** Told while this side waits on its own files, which a stall watchdog must not count. */
  local?: LocalWaits;
  /**
   * How often to tell the peer, while this side hashes files for `--checksum`, that it is at
   * work (lib/tree_work.ts); none when absent (the peer did not ask).
   */
  noticeMs?: number;
  /** Told how much the peer's work notices grew, for this side's watchdog (`Watch.peerWork`). */
  peerWork?: (grown: number) => void;
  /**
   * Both ends agreed to the receiver's phases (lib/tree_work.ts, `PHASE_WORK_FEATURE`): the
   * receiver tells of its flushes and removals, and the sender takes such notices (default
   * false).
   */
  phaseWork?: boolean;
}

/** Something that happened to one name, for reports. */
export type TreeEvent =
  | { kind: "sent"; path: string; size: number; index?: number; checksum?: string }
  | { kind: "skipped"; path: string }
  | { kind: "deleted"; path: string }
  | { kind: "failed"; path: string; message: string; index?: number; code?: ErrorCode }
  | { kind: "ignored"; path: string; message: string };

/** Options shared by {@link sendTree} and {@link receiveTree}. */
export interface TreeOptions {
  /** Decide and report only: nothing is written, deleted or sent. */
  dryRun?: boolean;
  /**
   * `--exclude`: names the sender leaves out (never going into such a folder) and the receiver
   * refuses from the sender and spares from `--delete` (default: none).
   */
  exclude?: NamePatterns;
  /** Told about each name as its fate is known. */
  onEvent?: (event: TreeEvent) => void;
  /** Running count of file bytes moved. */
  onProgress?: (bytes: number) => void;
  /** The files and bytes to move so far, growing as each manifest batch is answered. */
  onPlan?: (files: number, bytes: number) => void;
  /**
   * `--limit-rate`: awaited for each chunk of file data, one pacing for the whole tree (a
   * `RateLimiter`'s `take`, lib/rate_limit.ts); its waits are this side's own, not the peer's.
   */
  throttle?: Throttle;
  /** Largest chunk of file data moved at once, to keep a rate limit smooth. */
  maxChunk?: number;
  /**
   * Awaited once per manifest batch, so the caller can write out the reports of its events
   * before more come: they never pile up in memory, whatever the tree's size.
   */
  drain?: () => Promise<void>;
}

/** A file a sender reads: a local file, or one in the server's store. */
export interface TreeSourceFile {
  /** Reads into `p`; the number of bytes read, or null at the end. */
  read(p: Uint8Array): Promise<number | null>;
  /** Moves to `offset` (for a checksum of the file's start). */
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  /** What the file is now. */
  stat(): Promise<{ isFile: boolean; size: number }>;
  /** Lets go of the file. */
  close(): void;
  /** See StoreReader.takeCheck: the stored checksum, checked on the sender's one hashing pass. */
  takeCheck?(): ((checksum: string) => void) | undefined;
  /** {@link stat} on the calling thread, where the file offers it (see {@link TreeSource.sync}). */
  statSync?(): { isFile: boolean; size: number };
  /** {@link read} on the calling thread, where the file offers it. */
  readSync?(p: Uint8Array): number | null;
}

/**
 * A file opened in a store (a `StoreReader` of lib/store.ts, which only needs to read, seek and
 * close), as a sender reads it.
 */
export function sourceFile(
  opened: { file: Omit<TreeSourceFile, "stat">; size: number },
): TreeSourceFile {
  const { file, size } = opened;
  return {
    read: (p) => file.read(p),
    seek: (offset, whence) => file.seek(offset, whence),
    stat: () => Promise.resolve({ isFile: true, size }),
    close: () => file.close(),
    takeCheck: file.takeCheck && (() => file.takeCheck!()),
  };
}

/**
 * What {@link uploadSink} needs of a store's upload (a `StoreUpload` of lib/store.ts, declared
 * here by its shape so that this module, which the store's interface imports, does not import it).
 */
export interface TreeUpload {
  /** Adds bytes. */
  write(chunk: Uint8Array): Promise<void>;
  /** Verifies and publishes it. */
  commit(verified?: TransferResult): Promise<void>;
  /** Keeps what arrived for a later `--resume`. */
  keep(): Promise<unknown>;
  /** Throws it away. */
  discard(): Promise<void>;
}

/**
 * A file of a tree received through a store's upload, the receiving mirror of
 * {@link sourceFile}: kept for `--resume`, as a single put is, if the connection goes mid-file.
 */
export function uploadSink(upload: TreeUpload): TreeFileSink {
  return {
    write: (chunk) => upload.write(chunk),
    commit: (verified) => upload.commit(verified),
    discard: () => upload.discard(),
    keep: async () => void await upload.keep(),
  };
}

/** Where a sender's files come from. */
export interface TreeSource {
  /** A walk of the folder being sent, or of the list of files. */
  walker: EntryWalk;
  /**
   * Opens a file of the walk for reading (`index`: its place in the manifest); the caller closes
   * it. A {@link StoreError} is the peer's to hear: its code and message go in the ABORT. `id`
   * is which file the walk found there, when it says ({@link WalkEntry.id}): another file at the
   * path (swapped in since) is refused, a `SwappedError` (lib/checked_open.ts).
   */
  open(path: string, index: number, id?: FileId): Promise<TreeSourceFile>;
  /** Whether a path may be sent at all (a receiver refuses a manifest with a name it may not). */
  allowed(path: string): boolean;
  /** The folder's own mtime and mode, which the receiver gives its copy at the end. */
  top?: ManifestTop;
  /** Reads a symlink's target, for `--links`. */
  readLink?(path: string): Promise<string>;
  /**
   * Opens, measures and reads small files on the calling thread, where a thread hand-off per
   * call costs more than the page-cache work (default false). The client's own folders do; a
   * server's do not, since a read that waits for the disk would hold up every connection.
   */
  sync?: boolean;
  /**
   * Reads the file `path` whole in one step when it is at most `max` bytes (a served folder does
   * it on a disk thread, lib/disk_pool.ts); null when it is larger, so the sender opens it as
   * any other. Throws as {@link open} does.
   */
  readWhole?(path: string, index: number, max: number): Promise<Uint8Array | null>;
}

/** Options for {@link sendTree}. */

/** One file being written by a receiver. */
export interface TreeFileSink extends ByteSink {
  /**
   * Gives the verified file its name, mtime and mode; durable once it resolves. `verified` is
   * what the transfer verified (size and checksum), which a store keeps with the file.
   */
  commit(verified: TransferResult): Promise<void>;
  /** Throws what was written away. */
  discard(): Promise<void>;
  /**
   * Keeps what was written for a later `--resume` ({@link TreeSink.resume}) instead: the
   * connection went mid-file. Absent where nothing can be kept.
   */
  keep?(): Promise<void>;
}

/** What an interrupted transfer kept of a file, offered to the sender to continue. */
export interface KeptPart {
  /** The bytes kept and their running checksum. */
  point: ResumePoint;
  /** Continues the file after the kept bytes: the sender's file matched them. */
  open(): Promise<TreeFileSink>;
  /**
   * Lets the kept bytes go: dropped (`drop`: the sender's file did not match them), or kept
   * again for a later run (the transfer ended before the file came).
   */
  release(drop: boolean): Promise<void>;
}

/** Where a receiver's files go. Paths are relative to the folder being received into. */
export interface TreeSink {
  /** Refuses a path that breaks the name rules ({@link StoreError} `bad_name`). */
  check(path: string): void;
  /**
   * Why the receiving system cannot hold `path` as it is (a name Windows reserves, on Windows:
   * lib/windows_names.ts), as a one-line refusal; undefined when it can. Such an entry is refused
   * on its own, and the others go on.
   */
  unfit?(path: string): string | undefined;
  /**
   * A walk of what the receiving folder holds now; null when there is no such folder. Given a
   * `path` (`""`: the receiving folder itself), a walk of that folder in the middle of the
   * transfer, which leaves alone whatever the transfer itself may have under way there, and is
   * only moved past the folders it holds, never into them.
   */
  walker(path?: string): Promise<EntryWalk | null>;
  /**
   * What the receiver has at `path`, found by the filesystem's own lookup (which folds case where
   * the filesystem does), never through a symlink on the way; null when nothing is there. Asked
   * only where {@link caseInsensitive} holds, for a name its walk did not find as spelled.
   */
  stat?(path: string): Promise<WalkEntry | null>;
  /** Creates the receiving folder itself, if it is missing. */
  makeBase(): Promise<void>;
  /** Creates a folder whose parent exists. */
  makeDir(path: string): Promise<void>;
  /**
   * Removes a name: a file, a link (never its target) or a folder with all it holds. With
   * `flush: false` the change need not be durable yet (an entry inside a folder being removed,
   * whose own removal will be); default true.
   */
  remove(path: string, options?: { flush?: boolean }): Promise<void>;
  /**
   * Removes the files and links `names` (never a folder) of the folder `folder`, which is found
   * once for them all, as any folder is (never through a symlink on the way); `removed` is
   * awaited after each. Not flushed: for the inside of a folder being removed, whose own removal
   * is. Absent (an S3 store's, which removes a thousand keys a request): a folder is removed in
   * one call, and its entries are not told of.
   */
  removeIn?(folder: string, names: string[], removed: () => Promise<void>): Promise<void>;
  /**
   * Starts writing a file (`index`: its place in the manifest); nothing shows under its name
   * before commit.
   */
  beginFile(path: string, entry: ManifestEntry, index: number): Promise<TreeFileSink>;
  /**
   * Files transfers: refuses a file before it is asked for ({@link StoreError}: a name that is
   * taken, say), so its bytes are never sent for nothing.
   */
  admit?(path: string, entry: ManifestEntry, index: number): Promise<void>;
  /**
   * Makes `path` a symlink to `target` (checked already), replacing a file or link there, never
   * a folder, and never through a symlink on the way.
   */
  makeLink?(path: string, target: string): Promise<void>;
  /** A symlink's target, for `--links`; throws if `path` is not one. */
  readLink?(path: string): Promise<string>;
  /**
   * Gives a folder its mtime and mode once everything in it is written. `found` is what the
   * receiver's own walk found there, given when this transfer changed nothing in the folder: one
   * that has them already ({@link folderIsFinished}) needs nothing done.
   */
  finishDir(path: string, entry: ManifestEntry, found?: WalkEntry): Promise<void>;
  /**
   * Gives the receiving folder itself the sender's mtime, and its mode when `made` (when
   * {@link makeBase} made it in this transfer: once as the first manifest comes, and again at the
   * very end). A folder that was there already keeps its own mode, and takes the mtime only at
   * the end of a transfer that found it a copy of the sender's tree, so that a re-sync leaves
   * the whole tree's times as the sender's.
   */
  finishBase(top: ManifestTop, made: boolean): Promise<void>;
  /**
   * The checksum of a file the receiver has, for `--checksum`; null if it cannot be read, or if
   * it is not the file `id` its walk found there (swapped since). `onProgress` hears the bytes
   * hashed so far, as they grow.
   */
  checksum(
    path: string,
    onProgress?: (bytes: number) => void,
    id?: FileId,
  ): Promise<string | null>;
  /**
   * Whether the receiving folder's filesystem folds case (`A` and `a` are one name there), told
   * by reading what it holds (lib/case_folding.ts); undefined when nothing tells (an empty folder)
   * and `options.probe` is not set. With `probe`, a probe file settles it, written into the
   * receiving folder only when no folder of the receiver's own on that filesystem can hold it.
   */
  caseInsensitive(options?: { probe?: boolean }): Promise<boolean | undefined>;
  /**
   * With `--resume`: what an interrupted transfer kept of the file `path` (announced as
   * `entry`), held for this transfer until {@link KeptPart.open} or {@link KeptPart.release};
   * null when nothing usable is kept. `onProgress` hears the bytes of it hashed so far.
   */
  resume?(
    path: string,
    entry: ManifestEntry,
    onProgress?: (bytes: number) => void,
  ): Promise<KeptPart | null>;
  /** Called once the transfer is complete: what it kept for `--resume` and did not use may go. */
  done?(): Promise<void>;
}

/**
 * Whether a folder the receiver's walk found as `found` has the mtime and mode that finishing it
 * as `entry` gives (owner rwx always kept; no mode on Windows), and so can be left alone: on a
 * pass that changes nothing, that is most folders, a chmod and a utime saved for each.
 */
export function folderIsFinished(
  entry: ManifestEntry | ManifestTop,
  found: WalkEntry | undefined,
): boolean {
  if (found?.type !== "dir" || Math.trunc(found.mtime) !== Math.trunc(entry.mtime)) return false;
  return Deno.build.os === "windows" || found.mode === ((entry.mode | 0o700) & MODE_BITS);
}

/** Options for {@link receiveTree}. */
