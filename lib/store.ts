/**
 * What the server needs of a store: the {@link Store} interface that the folder store
 * (lib/file_store.ts) and the S3 store (lib/s3_store.ts) implement, and the shapes they hand back.
 * Whatever the store, a name arrives through `checkName`, an upload is invisible until committed
 * after verification, and no commit replaces a file unless asked.
 *
 * @module
 */

import type { KeepResult, KeptTotals, KeptUpload } from "./kept_uploads.ts";
import type { ListEntry } from "./protocol.ts";
import type { TransferResult } from "./transfer.ts";
import type { TreeListing } from "./tree_listing.ts";
import type { TreeSink, TreeSource } from "./tree_transfer.ts";

/** A file being read: read in place, and sought for a resume. */
export interface StoreReader {
  /** Reads into `p`; the number of bytes read (at least one), or null at the end. */
  read(p: Uint8Array): Promise<number | null>;
  /** Moves to `offset` (from the start with `Deno.SeekMode.Start`); resolves with the position. */
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  /** Lets go of the file; safe to call more than once. */
  close(): void;
  /**
   * For a store that checks what it reads against a checksum stored with the file: stops doing
   * so and hands the check to the caller, which hashes every byte it sends anyway (one pass
   * instead of two). Resolves `check`, to call with the checksum of the whole file as read; it
   * throws `StoreError` `checksum` when they differ. Undefined when nothing is stored.
   */
  takeCheck?(): ((checksum: string) => void) | undefined;
}

/** A file opened for download. */
export interface StoreFile {
  /** The open file; the caller closes it. */
  file: StoreReader;
  /** Size when opened. */
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
}

/** Options for {@link Store.beginUpload}. */
export interface BeginUploadOptions {
  /** Replace an existing file instead of refusing. */
  overwrite?: boolean;
  /** Continue the kept data of an interrupted upload of this name, if any. */
  resume?: boolean;
  /** Announced size; kept data for a different size is not resumed. */
  size?: number | null;
  /** A tree transfer's file: modification time to give it, ms since the epoch; default: now. */
  mtime?: number;
  /** A tree transfer's file: permission bits to give it, at most 0o777; default: the store's. */
  mode?: number;
  /**
   * One of many small files (a tree's, mput's): a store may write a small one without leaving
   * the calling thread, where each asynchronous call costs more than its work (the folder store
   * does, up to 256 KiB; an object store ignores it). Default false.
   */
  sync?: boolean;
  /**
   * Check the name's folders and target before the data arrives, to refuse early (default
   * true). They are checked again, whole, when the file is named either way: a transfer that has
   * just checked them (a tree's compare, mput's admission) skips this first check (the folder
   * store's three lookups a file; an object store ignores it).
   */
  precheck?: boolean;
}

/** An upload in progress: staged bytes that become the named file on {@link StoreUpload.commit}. */
export interface StoreUpload {
  /** The remote name being uploaded. */
  readonly name: string;
  /** Bytes already present from a kept upload being resumed (0 for a fresh one). */
  readonly offset: number;
  /**
   * A resume was asked for, and data was kept for this name but for another size: it was
   * dropped, and this upload starts from 0.
   */
  readonly keptDropped: boolean;
  /** The staged bytes, for reading back the kept part of a resumed upload. */
  readonly file: StoreReader;
  /** Appends a chunk; the chunk is not kept after the promise settles. */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Makes the staged bytes the named file. Call only after verifying them; `verified` is what the
   * transfer verified (size and checksum), which a store may keep with the file.
   */
  commit(verified?: TransferResult): Promise<void>;
  /** Keeps what arrived for a later `put --resume`, if the store can; says whether it did. */
  keep(): Promise<KeepResult>;
  /** Throws the staged bytes away. Safe to call more than once, and after commit. */
  discard(): Promise<void>;
}

/** The interrupted uploads a store keeps for `put --resume`, as the server shows them. */
export interface KeptView {
  /** Whether interrupted uploads are kept at all. */
  readonly enabled: boolean;
  /** Bytes all kept uploads together may hold. */
  readonly budget: number;
  /** How long one is kept, in milliseconds. */
  readonly maxAgeMs: number;
  /** Where they are kept, for the server's banner. */
  readonly where: string;
  /** Removes what is expired or over the budget; says what is left. */
  prune(): Promise<KeptTotals>;
  /** The kept uploads, for the kept query. */
  list(): Promise<KeptUpload[]>;
}

/** Options for {@link Store.listTree}. */
export interface ListTreeOptions {
  /** Folder to list; the root when absent. */
  dir?: string;
  /** Everything under the folder, not only its own entries (default false). */
  recursive?: boolean;
  /**
   * Give each folder its mtime (default true). The listings of files alone (the original
   * listing, the seed's) ask for none, which spares an S3 store a HEAD per folder.
   */
  folderTimes?: boolean;
  /**
   * Only the names and types are wanted (default false): a store may give sizes and mtimes of 0
   * where finding them costs, as the folder store does (no `lstat` of each file). The names and
   * types are those of the full listing.
   */
  namesOnly?: boolean;
}

/** Options for {@link Store.remove}. */
export interface RemoveOptions {
  /** Remove a folder with everything in it (default false: folders are refused). */
  recursive?: boolean;
  /**
   * Flush the removal to disk before it resolves, where the store flushes (default true). False
   * for an entry inside a folder that is being removed, whose own removal is flushed.
   */
  flush?: boolean;
}

/** Options for {@link Store.move}. */
export interface MoveOptions {
  /** Replace a file (never a folder) that has the new name (default false: refuse). */
  overwrite?: boolean;
}

/** Options for {@link Store.makeDir}. */
export interface MakeDirOptions {
  /** Create missing parents too, and accept a folder that exists (default false). */
  parents?: boolean;
}

/**
 * Where the server keeps its files.
 *
 * @example
 * ```ts
 * import type { Store } from "./store.ts";
 * // Every file's name as the store walks its tree, never the whole list at once.
 * async function printNames(store: Store): Promise<void> {
 *   for await (const batch of await store.listTree({ recursive: true, folderTimes: false })) {
 *     for (const entry of batch) if (entry.type === "file") console.log(entry.name);
 *   }
 * }
 * ```
 */
export interface Store {
  /** What is served, for the server's banner: a folder's path, or `s3://bucket/prefix`. */
  readonly location: string;
  /** The interrupted uploads kept for `put --resume`. */
  readonly kept: KeptView;
  /** Opens a file for download; throws `StoreError` `not_found`, `bad_name`... */
  openFile(name: string): Promise<StoreFile>;
  /** Starts an upload: checks the name and that it is free (unless overwriting). */
  beginUpload(name: string, options?: BeginUploadOptions): Promise<StoreUpload>;
  /**
   * Refuses an upload of `name` that {@link beginUpload} would refuse for its target, before its
   * bytes are sent (a transfer of many files refuses each on its own). A store without it (S3)
   * refuses at beginUpload.
   */
  checkFree?(name: string, overwrite: boolean): Promise<void>;
  /**
   * Every file, sorted by name, in one array: the whole list is held. The server never calls it;
   * to go through a store of any size, walk {@link listTree} with `recursive` (and `folderTimes`
   * false) and keep the entries of type `"file"`: the same files, in the same order.
   */
  list(): Promise<ListEntry[]>;
  /**
   * A folder's files and subfolders, or with `recursive` everything under it, sorted by name
   * (names relative to the root), produced as it is walked, a folder at a time
   * (lib/tree_listing.ts): however many entries, a store holds no more than the folders on the
   * way. Throws `StoreError` `not_found` or `not_a_file` for `dir` before it resolves.
   */
  listTree(options?: ListTreeOptions): Promise<TreeListing>;
  /**
   * Whether `name` (the root when absent) is a folder: false when nothing has that name; throws
   * `StoreError` `not_a_file` when a file has it.
   */
  isFolder(name?: string): Promise<boolean>;
  /** Removes a file or, with `recursive`, a folder and all it holds. */
  remove(name: string, options?: RemoveOptions): Promise<void>;
  /**
   * Renames a file or a folder. The new name's folder must exist; a name that is taken is refused
   * unless `overwrite` is set and it is not a folder.
   */
  move(from: string, to: string, options?: MoveOptions): Promise<void>;
  /** Creates a folder; its parent must exist unless `parents` is set. */
  makeDir(name: string, options?: MakeDirOptions): Promise<void>;
  /**
   * What `get -r` sends from the folder `base` (the root when absent), which must exist.
   * `options.prune` says which folders (by path in the tree) the sender will not go into (they
   * are `--exclude`d): a store may spare itself looking into them ahead of its walk.
   */
  treeSource(base?: string, options?: { prune?: (path: string) => boolean }): Promise<TreeSource>;
  /** Where `put -r` receives into the folder `base` (the root when absent). */
  treeSink(base?: string): TreeSink;
  /**
   * Reads the file `name` whole in one step when it is at most `max` bytes (the folder store does
   * it on a disk thread); null when it is larger, to be opened as any other. Throws as
   * {@link openFile} does. Absent where a store has no such shortcut.
   */
  readWhole?(name: string, max: number): Promise<Uint8Array | null>;
  /**
   * Whether `put -r --resume` and `get -r --resume` continue a tree's big files that a cut
   * connection left here, rather than sending them whole again (default false). The server
   * says so in its WELCOME (feature `tree-resume`), so a client can tell its user.
   */
  readonly treeResume?: boolean;
}
