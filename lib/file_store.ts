/**
 * Storage and path safety for the served root. Every name that arrives from the network passes
 * through {@link checkName} (lib/remote_name.ts) and is resolved inside the root here, symlinks
 * included. Owns that resolution and where uploads go: staged files (lib/staged_file.ts) in a
 * hidden staging folder, linked or renamed to their final name once the caller has verified them
 * (the upload itself is lib/file_upload.ts's). An upload that runs out of disk space takes it from
 * the kept interrupted uploads (lib/kept_uploads.ts), oldest first, before it gives up. The
 * listing walk is lib/folder_listing.ts's.
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
import {
  CreationModes,
  SMALL_FILE_MAX,
  StagedFile,
  type StagedFileOptions,
} from "./staged_file.ts";
import { Upload } from "./file_upload.ts";
import { diskPool, type SmallRead } from "./disk_pool.ts";
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
}

/** A file opened for download. */
export interface OpenedFile extends StoreFile {
  /** The open file; the caller closes it. */
  file: Deno.FsFile;
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
  #reserved = new Set<string>();
  /** Whether uploads created in the staging folder keep the mode they are given. */
  #modes = new CreationModes();
  /** The folder a small upload was last named into, checked at `at` (see {@link forgetFolders}). */
  #lastFolder?: { key: string; dir: string; at: number };

  private constructor(root: string, fsync: boolean, kept: KeptOptions) {
    this.root = root;
    this.stagingDir = join(root, STAGING_DIR);
    this.resumeDir = join(root, RESUME_DIR);
    this.kept = new KeptUploads(this.resumeDir, kept);
    this.fsync = fsync;
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
    const store = new FileStore(real, options.fsync ?? true, options.kept ?? {});
    // Whatever a previous run left half-written goes; kept (resumable) uploads stay.
    await Deno.remove(store.stagingDir, { recursive: true }).catch((error) => {
      if (!isNotFound(error)) throw error;
    });
    await Deno.mkdir(store.stagingDir, { recursive: true });
    await Deno.mkdir(store.resumeDir, { recursive: true });
    await store.kept.prune();
    return store;
  }

  /**
   * For a step of the upload of `name` that ran out of disk space and needs `bytes`: removes kept
   * interrupted uploads, oldest first (at least that much at once rather than one upload per
   * retry), and says whether anything was removed, so the step is worth running again.
   */
  async #makeRoom(name: string, bytes: number): Promise<boolean> {
    return await this.kept.makeRoom(name, bytes) > 0;
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
    return real;
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
  treeSource(base?: string): Promise<TreeSource> {
    return folderSource(this, base);
  }

  /** See {@link Store.treeSink} (lib/folder_tree.ts). */
  treeSink(base?: string): TreeSink {
    return folderSink(this, base);
  }

  /** Opens a file for download. */
  async openFile(name: string): Promise<OpenedFile> {
    const path = await this.resolveFile(name);
    const file = await Deno.open(path, { read: true });
    try {
      const info = await file.stat();
      return { file, size: info.size, mtime: info.mtime?.getTime() ?? 0 };
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

  /**
   * Forgets the folder small uploads were last named into: called by whatever removes, renames
   * or replaces names in the tree, so that the next upload checks its folders again.
   */
  forgetFolders(): void {
    this.#lastFolder = undefined;
  }

  /**
   * {@link #parentOf} with `create`, for a small upload of a tree or mput: their files come a
   * folder at a time, and a folder checked less than {@link FOLDER_TRUST_MS} ago, with nothing
   * removed or renamed since through this store, is not walked again for the next file.
   */
  async #recentParent(name: string, segments: string[], key: string): Promise<string> {
    const parentKey = segments.length === 1 ? "" : key.slice(0, -segments.at(-1)!.length - 1);
    const now = performance.now();
    const last = this.#lastFolder;
    if (last?.key === parentKey && now - last.at < FOLDER_TRUST_MS) return last.dir;
    const dir = (await this.#parentOf(name, segments, true, true))!;
    this.#lastFolder = { key: parentKey, dir, at: now };
    return dir;
  }

  async #checkTarget(
    name: string,
    target: string,
    overwrite: boolean,
    sync = false,
  ): Promise<void> {
    let info: Deno.FileInfo;
    try {
      info = sync ? Deno.lstatSync(target) : await Deno.lstat(target);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    if (info.isDirectory) throw new StoreError("not_a_file", `${quote(name)} is a folder`);
    if (!overwrite) throw new StoreError("exists", `File exists: ${quote(name)}`);
  }

  /**
   * Refuses an upload of `name` that {@link beginUpload} would refuse for its target: a folder
   * there, or a file unless `overwrite`. Lets a transfer of many files refuse one before its
   * bytes are sent; beginUpload checks again.
   */
  async checkFree(name: string, overwrite: boolean): Promise<void> {
    const segments = checkName(name);
    const parent = await this.#parentOf(name, segments, false);
    if (parent) await this.#checkTarget(name, join(parent, segments.at(-1)!), overwrite);
  }

  /**
   * Starts an upload: checks the name and that it is free (unless overwriting), and creates a
   * staging file. Two uploads of the same name cannot run at once.
   */
  async beginUpload(name: string, options: FileUploadOptions = {}): Promise<Upload> {
    const segments = checkName(name);
    const overwrite = options.overwrite ?? false;
    const key = segments.join("/");
    if (this.#reserved.has(key)) {
      throw new StoreError("in_progress", `An upload of ${quote(name)} is already in progress`);
    }
    if (options.precheck ?? true) {
      const parent = await this.#parentOf(name, segments, false);
      if (parent) await this.#checkTarget(name, join(parent, segments.at(-1)!), overwrite);
    }
    this.#reserved.add(key);
    try {
      const id = crypto.randomUUID();
      const stagingPath = join(this.stagingDir, `${id}.upload`);
      const size = options.size ?? null;
      const sync = options.sync === true && size !== null && size <= SMALL_FILE_MAX &&
        !options.resume;
      const mode = options.mode === undefined || Deno.build.os === "windows"
        ? undefined
        : options.mode & 0o777;
      const staging: StagedFileOptions = {
        read: true,
        sync,
        // Given at creation; the umask may take bits away, which the chmod before naming restores.
        permissions: mode,
        fsync: this.fsync,
        onNoSpace: (bytes) => this.#makeRoom(key, bytes),
        // A folder where a replacing upload is named: said as the look before naming would.
        failure: (error, path) =>
          error instanceof Deno.errors.IsADirectory && path !== stagingPath
            ? new StoreError("not_a_file", `${quote(name)} is a folder`)
            : error,
      };
      let staged: StagedFile;
      let keptDropped = false;
      let created = false;
      if (options.resume && await this.kept.take(key, size, stagingPath)) {
        staged = await StagedFile.open(stagingPath, { ...staging, mode: "append" });
      } else {
        created = true;
        // A fresh put replaces whatever was kept for this name; so does a resume of another
        // size, which the client is told (it is not the file it started to send).
        keptDropped = await this.kept.drop(key) && options.resume === true;
        staged = await StagedFile.open(stagingPath, staging);
      }
      // Looked at now, while the file is open: a chmod by path is then needed only if not.
      const modeKept = created && mode !== undefined &&
        this.#modes.keeps(this.stagingDir, mode, staged.file);
      return new Upload(name, staged, {
        keptDropped,
        keep: () => this.kept.keep(stagingPath, key, size),
        overwrite,
        // A tree transfer's file arrives with its mtime, given through the file before naming.
        mtime: options.mtime,
        // Run again if naming it needed room: the folders are made (or found) again too.
        target: async () => {
          // ... and its mode, given at creation, less the umask: set whole before it is named,
          // unless creation is known to have kept all of it.
          if (mode !== undefined && !modeKept) {
            if (sync) Deno.chmodSync(stagingPath, mode);
            else await Deno.chmod(stagingPath, mode);
          }
          const dir = sync
            ? await this.#recentParent(name, segments, key)
            : (await this.#parentOf(name, segments, true))!;
          const target = join(dir, segments.at(-1)!);
          // Replacing needs no look first: rename refuses a folder there (see `failure`).
          if (!overwrite) await this.#checkTarget(name, target, overwrite, sync);
          return target;
        },
        done: () => this.#reserved.delete(key),
      });
    } catch (error) {
      this.#reserved.delete(key);
      throw error;
    }
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
    options: { recursive: boolean; foldersFirst?: boolean },
  ): TreeListing {
    return walkFolderListing(this, dir, prefix, options);
  }
}

/**
 * How long, in ms, the folders of a small upload's name, once checked, are trusted for the next
 * small uploads into the same folder: a tree's files arrive a folder at a time, and walking each
 * one's folders again cost an `lstat` per folder per file. Short, so that a folder swapped for a
 * symlink behind the server's back (see docs/security.md) is seen within that long; anything
 * this store removes or renames clears it at once.
 */
const FOLDER_TRUST_MS = 100;
