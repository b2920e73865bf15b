/**
 * Where the folder store's uploads go (lib/file_store.ts resolves the names): one upload of a
 * name at a time, a staged file (lib/staged_file.ts) created for it in the hidden staging folder
 * or taken back from the kept interrupted uploads (lib/kept_uploads.ts) for a resume, the checks
 * that its name is free, and the folders it is named into, which the small uploads of a tree trust
 * for a moment rather than walk again for each file. An upload that runs out of disk space takes
 * it from the kept uploads, oldest first, before it gives up.
 *
 * @module
 */

import { join } from "node:path";
import { fileIdOf, SwappedError } from "./checked_open.ts";
import { StoreError } from "./errors.ts";
import type { FileUploadOptions } from "./tree_store.ts";
import type { KeptUploads } from "./kept_uploads.ts";
import { checkName, quote } from "./remote_name.ts";
import { checkFitName } from "./windows_names.ts";
import {
  CreationModes,
  SMALL_FILE_MAX,
  StagedFile,
  type StagedFileOptions,
} from "./staged_file.ts";
import { Upload } from "./file_upload.ts";

/** What the uploads need of the folder store (lib/file_store.ts's `FileStore`). */
export interface UploadRoot {
  /** Real path of the staging folder. */
  readonly stagingDir: string;
  /** The interrupted uploads kept for `put --resume`. */
  readonly kept: KeptUploads;
  /** Whether uploads are flushed to disk before they are named (not `--no-fsync`). */
  readonly fsync: boolean;
}

/**
 * The store's walk of the folders of a name (`segments`, checked) from the root: the real path
 * of the folder that holds it, refusing symlinks that lead outside and files in the way. Missing
 * folders are created with `create`, otherwise the result is null; `sync` looks them up on the
 * calling thread.
 */
export type ParentOf = (
  name: string,
  segments: string[],
  create: boolean,
  sync?: boolean,
) => Promise<string | null>;

/** The uploads to one folder store. */
export class FolderUploads {
  #store: UploadRoot;
  #parentOf: ParentOf;
  #reserved = new Set<string>();
  /** Whether uploads created in the staging folder keep the mode they are given. */
  #modes = new CreationModes();
  /** The folder a small upload was last named into, checked at `at` (see {@link forgetFolders}). */
  #lastFolder?: { key: string; dir: string; at: number };

  /**
   * Test-only: called just before a kept upload taken for a resume is opened again, with its
   * staging path (FileStoreOptions.beforeOpen, tests/swap_race_test.ts).
   */
  #beforeOpen?: (path: string) => void;

  /** Uploads to `store`, whose folders `parentOf` walks. */
  constructor(store: UploadRoot, parentOf: ParentOf, beforeOpen?: (path: string) => void) {
    this.#store = store;
    this.#parentOf = parentOf;
    this.#beforeOpen = beforeOpen;
  }

  /**
   * For a step of the upload of `name` that ran out of disk space and needs `bytes`: removes kept
   * interrupted uploads, oldest first (at least that much at once rather than one upload per
   * retry), and says whether anything was removed, so the step is worth running again.
   */
  async #makeRoom(name: string, bytes: number): Promise<boolean> {
    return await this.#store.kept.makeRoom(name, bytes) > 0;
  }

  /**
   * Forgets the folder small uploads were last named into: called by whatever removes, renames
   * or replaces names in the tree, so that the next upload checks its folders again.
   */
  forgetFolders(): void {
    this.#lastFolder = undefined;
  }

  /**
   * The store's folder walk ({@link ParentOf}) with `create`, for a small upload of a tree or
   * mput: their files come a folder at a time, and a folder checked less than
   * {@link FOLDER_TRUST_MS} ago, with nothing removed or renamed since through the store, is not
   * walked again for the next file.
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
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    if (info.isDirectory) throw new StoreError("not_a_file", `${quote(name)} is a folder`);
    if (!overwrite) throw new StoreError("exists", `File exists: ${quote(name)}`);
  }

  /**
   * Refuses an upload of `name` that {@link begin} would refuse for its target: a folder
   * there, or a file unless `overwrite`. Lets a transfer of many files refuse one before its
   * bytes are sent; begin checks again.
   */
  async checkFree(name: string, overwrite: boolean): Promise<void> {
    const segments = checkName(name);
    checkFitName(name);
    const parent = await this.#parentOf(name, segments, false);
    if (parent) await this.#checkTarget(name, join(parent, segments.at(-1)!), overwrite);
  }

  /**
   * Starts an upload: checks the name and that it is free (unless overwriting), and creates a
   * staging file. Two uploads of the same name cannot run at once.
   */
  async begin(name: string, options: FileUploadOptions = {}): Promise<Upload> {
    const segments = checkName(name);
    // A name Windows cannot hold would open a device or another file's stream there.
    checkFitName(name);
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
      const stagingPath = join(this.#store.stagingDir, `${id}.upload`);
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
        fsync: this.#store.fsync,
        onNoSpace: (bytes) => this.#makeRoom(key, bytes),
        // A folder where a replacing upload is named: said as the look before naming would.
        failure: (error, path) =>
          error instanceof Deno.errors.IsADirectory && path !== stagingPath
            ? new StoreError("not_a_file", `${quote(name)} is a folder`)
            : error,
      };
      let staged: StagedFile | undefined;
      let keptDropped = false;
      let created = false;
      const taken = options.resume ? await this.#store.kept.take(key, size, stagingPath) : null;
      if (taken) {
        this.#beforeOpen?.(stagingPath);
        try {
          // Only the file taken is continued: never through a link, nor a FIFO's open waited on.
          staged = await StagedFile.open(stagingPath, {
            ...staging,
            mode: "append",
            expect: fileIdOf(taken),
          });
        } catch (error) {
          if (!(error instanceof SwappedError)) throw error;
          // Something else took its place: not the kept upload, which is gone. It starts over.
          await Deno.remove(stagingPath).catch(() => {});
          keptDropped = true;
        }
      }
      if (!staged) {
        created = true;
        // A fresh put replaces whatever was kept for this name; so does a resume of another
        // size, which the client is told (it is not the file it started to send).
        keptDropped = (await this.#store.kept.drop(key) || keptDropped) && options.resume === true;
        staged = await StagedFile.open(stagingPath, staging);
      }
      // Looked at now, while the file is open: a chmod by path is then needed only if not.
      const modeKept = created && mode !== undefined &&
        this.#modes.keeps(this.#store.stagingDir, mode, staged.file);
      return new Upload(name, staged, {
        keptDropped,
        keep: () => this.#store.kept.keep(stagingPath, key, size),
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
}

/**
 * How long, in ms, the folders of a small upload's name, once checked, are trusted for the next
 * small uploads into the same folder: a tree's files arrive a folder at a time, and walking each
 * one's folders again cost an `lstat` per folder per file. Short, so that a folder swapped for a
 * symlink behind the server's back (see docs/security.md) is seen within that long; anything
 * this store removes or renames clears it at once.
 */
const FOLDER_TRUST_MS = 100;
