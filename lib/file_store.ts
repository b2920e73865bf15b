/**
 * Storage and path safety for the served root. Every name that arrives from the network passes
 * through {@link checkName} (lib/remote_name.ts) and is resolved inside the root here, symlinks
 * included. Owns opening the root (emptying what a previous run left staged) and that
 * resolution: of a file to read, and of the folders a name is made, moved or uploaded into. The
 * rest of the store is the modules' it hands over to: where uploads go (staged, then named once
 * verified) lib/folder_uploads.ts, the listing walk lib/folder_listing.ts, the tree operations
 * lib/tree_store.ts and lib/folder_tree.ts.
 *
 * @module
 */

import { dirname, join, sep } from "node:path";
import { StoreError } from "./errors.ts";
import type { ListEntry } from "./protocol.ts";
import type {
  BeginUploadOptions,
  ListTreeOptions,
  MakeDirOptions,
  MoveOptions,
  RemoveOptions,
  Store,
  StoreFile,
} from "./store.ts";
import type { TreeSink, TreeSource } from "./tree_transfer.ts";
// The folder operations live in their own modules, which build on this one.
import { folderSink, folderSource } from "./folder_tree.ts";
import {
  type FileUploadOptions,
  listTree,
  makeDir,
  moveName,
  removeName,
  resolveFolder,
  type ServedFolder,
} from "./tree_store.ts";
import { type KeptOptions, KeptUploads, RESUME_DIR } from "./kept_uploads.ts";
import { checkName, quote, STAGING_DIR } from "./remote_name.ts";
import type { Upload } from "./file_upload.ts";
import { FolderUploads } from "./folder_uploads.ts";
import { diskPool, type SmallRead } from "./disk_pool.ts";
import { type CheckedFile, fileIdOf, loadCheckedOpen, openChecked } from "./checked_open.ts";
import type { TreeListing } from "./tree_listing.ts";
import { isListedUndecodable, listFiles, walkFolderListing } from "./folder_listing.ts";

export { RESUME_DIR };
export type { BeginUploadOptions, FileUploadOptions };

/** Options for {@link FileStore.open}. */
export interface FileStoreOptions {
  /** Create the root if it does not exist. */
  create?: boolean;
  /** Flush uploads to disk before they are committed (default true). */
  fsync?: boolean;
  /** Bounds on interrupted uploads kept for `put --resume`. */
  kept?: KeptOptions;
  /**
   * Test-only: called between a file's resolution and its open (a download's, a tree's), with
   * its real path, and before a kept upload taken for a resume is opened again, with its staging
   * path, to swap something in for it there (tests/swap_race_test.ts).
   */
  beforeOpen?: (real: string) => void;
}

/** A file opened for download. */
export interface OpenedFile extends StoreFile {
  /** The open file (the one resolved, never one swapped in since); the caller closes it. */
  file: CheckedFile;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

function symlinkLoop(name: string): StoreError {
  return new StoreError("bad_name", `Refused name ${quote(name)}: it is a symlink loop`);
}

/** The served root folder. */
export class FileStore implements Store, ServedFolder {
  /** Real (symlink-free) absolute path of the root. */
  readonly root: string;
  /** Real path of the staging folder. */
  readonly stagingDir: string;
  /** Where interrupted uploads are kept for `put --resume`. */
  readonly resumeDir: string;
  /** The interrupted uploads kept there. */
  readonly kept: KeptUploads;
  /** A tree's cut files are kept and continued as single puts' are (lib/folder_tree.ts). */
  readonly treeResume = true;
  /** Whether uploads, and the folders names change in, are flushed to disk (not `--no-fsync`). */
  readonly fsync: boolean;
  /** Where uploads go, and the checks before they are named (lib/folder_uploads.ts). */
  #uploads: FolderUploads;
  #beforeOpen?: (real: string) => void;

  private constructor(root: string, fsync: boolean, kept: KeptOptions) {
    this.root = root;
    this.stagingDir = join(root, STAGING_DIR);
    this.resumeDir = join(root, RESUME_DIR);
    this.kept = new KeptUploads(this.resumeDir, kept);
    this.fsync = fsync;
    this.#uploads = new FolderUploads(
      this,
      (name, segments, create, sync) => this.#parentOf(name, segments, create, sync),
      (path) => this.#beforeOpen?.(path),
    );
  }

  /**
   * Opens a root folder: creates it if asked, and empties the staging folder of anything a
   * previous run left behind. Only the root itself is created, never the folders above it: a
   * mistyped path is reported (`not_found`), not built.
   */
  static async open(root: string, options: FileStoreOptions = {}): Promise<FileStore> {
    const notAFolder = () => new StoreError("not_a_file", `Root ${root} is not a folder`);
    if (options.create) {
      await Deno.mkdir(root).catch((error) => {
        // Already there: whether it is a folder is checked below, as for a root not created.
        if (error instanceof Deno.errors.AlreadyExists) return;
        if (error instanceof Deno.errors.NotFound) {
          throw new StoreError(
            "not_found",
            `Root ${root} cannot be made: no such folder ${dirname(root)} ` +
              "(only the last folder of the root is created)",
          );
        }
        if (error instanceof Deno.errors.NotADirectory) {
          throw new StoreError("not_a_file", `Root ${root} cannot be made: a file is in its path`);
        }
        throw error;
      });
    }
    const real = await Deno.realPath(root);
    const info = await Deno.stat(real);
    if (!info.isDirectory) throw notAFolder();
    // Its files are opened through lib/checked_open.ts, here and on the disk threads run inline.
    await loadCheckedOpen();
    const store = new FileStore(real, options.fsync ?? true, options.kept ?? {});
    store.#beforeOpen = options.beforeOpen;
    // Whatever a previous run left half-written goes; kept (resumable) uploads stay.
    await Deno.remove(store.stagingDir, { recursive: true }).catch((error) => {
      if (!isNotFound(error)) throw error;
    });
    await Deno.mkdir(store.stagingDir, { recursive: true });
    await Deno.mkdir(store.resumeDir, { recursive: true });
    await store.kept.prune();
    return store;
  }

  #inside(path: string): boolean {
    return path.startsWith(this.root + sep) &&
      ![this.stagingDir, this.resumeDir].some((dir) => path === dir || path.startsWith(dir + sep));
  }

  /** The root, for the server's banner. */
  get location(): string {
    return this.root;
  }

  /** Resolves an existing file for reading: must be a regular file whose real path is inside. */
  async resolveFile(name: string): Promise<string> {
    return (await this.#resolve(name)).real;
  }

  /** {@link resolveFile}, with what the lookup of the real path found. */
  async #resolve(name: string): Promise<{ real: string; info: Deno.FileInfo }> {
    const segments = checkName(name);
    let real: string;
    try {
      real = await Deno.realPath(join(this.root, ...segments));
    } catch (error) {
      // A file where the name wants a folder ("file.txt/x") means there is no such file too.
      if (isNotFound(error) && await isListedUndecodable(this, segments)) {
        throw new StoreError(
          "bad_name",
          `Cannot serve ${quote(name)}: its name on the server is not valid UTF-8`,
        );
      }
      if (isNotFound(error) || error instanceof Deno.errors.NotADirectory) {
        throw new StoreError("not_found", `No such file: ${quote(name)}`);
      }
      if (error instanceof Deno.errors.FilesystemLoop) throw symlinkLoop(name);
      throw error;
    }
    if (!this.#inside(real)) {
      throw new StoreError("bad_name", `Refused name ${quote(name)}: it leads outside the root`);
    }
    const info = await Deno.stat(real);
    if (!info.isFile) throw new StoreError("not_a_file", `Not a regular file: ${quote(name)}`);
    return { real, info };
  }

  /** See {@link Store.readWhole}: the rules of {@link resolveFile}, on a disk thread. */
  async readWhole(name: string, max: number): Promise<Uint8Array | null> {
    let read: SmallRead;
    try {
      read = await diskPool.readSmall(join(this.root, ...checkName(name)), max);
    } catch (error) {
      // resolveFile says why as a get would (no such file, a name that is not UTF-8...).
      await this.resolveFile(name);
      throw error;
    }
    // The same rules as resolveFile, on the path the thread resolved and read.
    if (!this.#inside(read.real)) {
      throw new StoreError("bad_name", `Refused name ${quote(name)}: it leads outside the root`);
    }
    if (read.info.type !== "file") {
      throw new StoreError("not_a_file", `Not a regular file: ${quote(name)}`);
    }
    return read.bytes ?? null;
  }

  /** See {@link Store.listTree} (lib/tree_store.ts). */
  listTree(options?: ListTreeOptions): Promise<TreeListing> {
    return listTree(this, options);
  }

  /** See {@link Store.isFolder}. */
  async isFolder(name?: string): Promise<boolean> {
    try {
      await resolveFolder(this, name);
      return true;
    } catch (error) {
      if (error instanceof StoreError && error.code === "not_found") return false;
      throw error;
    }
  }

  /** See {@link Store.remove} (lib/tree_store.ts). */
  remove(name: string, options?: RemoveOptions): Promise<void> {
    return removeName(this, name, options);
  }

  /** See {@link Store.move} (lib/tree_store.ts): atomic, a rename. */
  move(from: string, to: string, options?: MoveOptions): Promise<void> {
    return moveName(this, from, to, options);
  }

  /** See {@link Store.makeDir} (lib/tree_store.ts). */
  makeDir(name: string, options?: MakeDirOptions): Promise<void> {
    return makeDir(this, name, options);
  }

  /** See {@link Store.treeSource} (lib/folder_tree.ts). */
  treeSource(
    base?: string,
    options: { prune?: (path: string) => boolean } = {},
  ): Promise<TreeSource> {
    return folderSource(this, base, options);
  }

  /** See {@link Store.treeSink} (lib/folder_tree.ts). */
  treeSink(base?: string): TreeSink {
    return folderSink(this, base);
  }

  /**
   * Opens a file for download: the file resolved, or none. Whatever took its place since (a
   * symlink to a file outside the root, a FIFO) is refused, never followed or waited on: a
   * `SwappedError` (lib/checked_open.ts). The open never waits, so it runs on this thread.
   */
  async openFile(name: string): Promise<OpenedFile> {
    const { real, info } = await this.#resolve(name);
    this.#beforeOpen?.(real);
    const file = openChecked(real, { expect: fileIdOf(info) });
    try {
      const now = file.statSync();
      return { file, size: now.size, mtime: now.mtime?.getTime() ?? 0 };
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /**
   * Walks the folders of a name from the root, refusing symlinks that lead outside and files in
   * the way. Missing folders are created when `create` is set, otherwise reported as null.
   */
  async #parentOf(
    name: string,
    segments: string[],
    create: boolean,
    sync = false,
  ): Promise<string | null> {
    // A small file's upload looks its folders up on the calling thread (FileUploadOptions.sync).
    const lstat = sync ? (path: string) => Promise.resolve(Deno.lstatSync(path)) : Deno.lstat;
    let current = this.root;
    for (const segment of segments.slice(0, -1)) {
      const next = join(current, segment);
      let info: Deno.FileInfo;
      try {
        info = await lstat(next);
      } catch (error) {
        if (error instanceof Deno.errors.FilesystemLoop) throw symlinkLoop(name);
        if (!isNotFound(error)) throw error;
        if (!create) return null;
        await Deno.mkdir(next).catch((e) => {
          if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        });
        info = await lstat(next);
      }
      if (info.isSymlink) {
        const real = await Deno.realPath(next).catch((error) => {
          if (error instanceof Deno.errors.FilesystemLoop) throw symlinkLoop(name);
          return null;
        });
        if (!real || !this.#inside(real)) {
          throw new StoreError(
            "bad_name",
            `Refused name ${quote(name)}: it leads outside the root`,
          );
        }
        info = await Deno.stat(real);
        current = real;
      } else {
        current = next;
      }
      if (!info.isDirectory) {
        throw new StoreError(
          "not_a_file",
          `Refused name ${quote(name)}: ${segment} is not a folder`,
        );
      }
    }
    return current;
  }

  /**
   * The real path of the folder that holds `name` (checked with {@link checkName}), every folder
   * on the way checked as for an upload; missing folders are created with `create`, otherwise
   * the result is null. For the tree operations in lib/tree_store.ts.
   */
  async folderOf(name: string, create = false): Promise<string | null> {
    return await this.#parentOf(name, checkName(name), create);
  }

  /** Whether a real path lies inside the root and outside its private folders. */
  isInside(path: string): boolean {
    return this.#inside(path);
  }

  /** See {@link ServedFolder.forgetFolders} (lib/folder_uploads.ts). */
  forgetFolders(): void {
    this.#uploads.forgetFolders();
  }

  /** See {@link Store.checkFree} (lib/folder_uploads.ts). */
  checkFree(name: string, overwrite: boolean): Promise<void> {
    return this.#uploads.checkFree(name, overwrite);
  }

  /** See {@link Store.beginUpload} (lib/folder_uploads.ts). */
  beginUpload(name: string, options: FileUploadOptions = {}): Promise<Upload> {
    return this.#uploads.begin(name, options);
  }

  /**
   * See {@link Store.list} (lib/folder_listing.ts). Holds the whole list: the server streams its
   * listings instead ({@link walkListing}).
   */
  list(): Promise<ListEntry[]> {
    return listFiles(this);
  }

  /** See {@link ServedFolder.walkListing} (lib/folder_listing.ts). */
  walkListing(
    dir: string,
    prefix: string,
    options: { recursive: boolean; namesOnly?: boolean },
  ): TreeListing {
    return walkFolderListing(this, dir, prefix, options);
  }
}
