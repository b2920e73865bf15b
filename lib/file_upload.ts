/**
 * An upload in progress to the folder store (lib/file_store.ts): a staged file
 * (lib/staged_file.ts) that becomes the named file on {@link Upload.commit}, is kept for a later
 * `put --resume` on {@link Upload.keep}, or is thrown away. The store decides the final name and
 * where kept uploads go; this module owns the upload's life from its first byte to one of those
 * three ends.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import type { KeepResult } from "./kept_uploads.ts";
import { quote } from "./remote_name.ts";
import type { StagedFile, StagingFile } from "./staged_file.ts";
import type { StoreUpload } from "./store.ts";

/** What {@link FileStore.beginUpload} gives an upload: where it goes and how it is kept. */
export interface UploadHooks {
  keptDropped: boolean;
  keep: () => Promise<KeepResult>;
  overwrite: boolean;
  /** Modification time to give the file before it is named, ms since the epoch (default: none). */
  mtime?: number;
  /** Prepares the final name (its folders) and checks it is free to take. */
  target: () => Promise<string>;
  done: () => void;
}

/** An upload in progress: a staging file that becomes the named file on {@link Upload.commit}. */
export class Upload implements StoreUpload {
  /** The remote name being uploaded. */
  readonly name: string;
  /** Path of the staging file. */
  readonly stagingPath: string;
  /** Bytes already present from a kept upload being resumed (0 for a fresh one). */
  readonly offset: number;
  /**
   * A resume was asked for, and data was kept for this name but for another size: it was
   * dropped, and this upload starts from 0.
   */
  readonly keptDropped: boolean;
  #staged: StagedFile;
  #hooks: UploadHooks;
  #finished = false;

  /** Created by {@link FileStore.beginUpload}. */
  constructor(name: string, staged: StagedFile, hooks: UploadHooks) {
    this.name = name;
    this.stagingPath = staged.path;
    this.offset = staged.offset;
    this.keptDropped = hooks.keptDropped;
    this.#staged = staged;
    this.#hooks = hooks;
  }

  /** The staging file, for reading back the kept bytes of a resumed upload. */
  get file(): StagingFile {
    return this.#staged.file;
  }

  /**
   * Appends a chunk to the staging file; once it resolves, the bytes are in the file. A disk
   * that fills up takes space from the kept uploads first (see {@link FileStore}).
   */
  write(chunk: Uint8Array): Promise<void> {
    return this.#staged.write(chunk);
  }

  /**
   * Flushes the staging file and moves it to its final name. Call only after verifying it; the
   * folder keeps no checksum, so what was verified is not needed.
   */
  async commit(_verified?: unknown): Promise<void> {
    if (this.#finished) throw new Error("Upload is already finished");
    this.#finished = true;
    try {
      const { overwrite, target, mtime } = this.#hooks;
      if (!await this.#staged.commit(target, { replace: overwrite, mtime })) {
        throw new StoreError("exists", `File exists: ${quote(this.name)}`);
      }
    } finally {
      this.#hooks.done();
    }
  }

  /**
   * Keeps what arrived so far for a later `put --resume` (within the store's time and size
   * bounds) instead of throwing it away, and says whether it did. Throws, having discarded it,
   * if keeping failed.
   */
  async keep(): Promise<KeepResult> {
    if (this.#finished) throw new Error("Upload is already finished");
    this.#finished = true;
    try {
      await this.#staged.keep();
      return await this.#hooks.keep();
    } catch (error) {
      await this.#staged.discard();
      throw error;
    } finally {
      this.#hooks.done();
    }
  }

  /** Throws the staging file away. Safe to call more than once, and after commit. */
  async discard(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    await this.#staged.discard();
    this.#hooks.done();
  }
}
