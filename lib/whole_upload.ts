/**
 * A server's small upload held in memory until it is verified, then written and named in one job
 * on a disk thread (lib/whole_file.ts, through lib/disk_pool.ts): the event loop, which a tree of
 * small files keeps busy, is spared the staging file's open, write, times, close and rename, and
 * Deno's permission checks of their paths. It stands in for a {@link StagedFile} in an upload
 * (lib/file_upload.ts): the same steps, the same errors, the same ends (named, refused over a
 * taken name, kept, or thrown away).
 *
 * @module
 */

import { dirname } from "node:path";
import { diskPool } from "./disk_pool.ts";
import { isNoSpace, StoreError } from "./errors.ts";
import {
  type CommitOptions,
  type CommitTarget,
  type StagedFileOptions,
  syncDirShared,
} from "./staged_file.ts";
import { WholeFileError } from "./whole_file.ts";

/** Options for {@link WholeUpload}: those of a {@link StagedFile} that apply. */
export type WholeUploadOptions = Pick<
  StagedFileOptions,
  "permissions" | "fsync" | "onNoSpace" | "failure"
>;

/**
 * A small file's bytes, gathered as they come, then written to `path` and named on
 * {@link commit}. Its size is known before the first byte (a tree's or mput's file).
 *
 * @example
 * ```ts
 * import { WholeUpload } from "./whole_upload.ts";
 *
 * const upload = new WholeUpload("x.upload", 5);
 * await upload.write(new TextEncoder().encode("hello"));
 * // ... once the checksum of what arrived is verified:
 * if (!await upload.commit("x.txt")) console.log("x.txt is taken");
 * ```
 */
export class WholeUpload {
  /** Where the file is staged, once it is written. */
  readonly path: string;
  /** Always 0: a whole upload is never a resumed one. */
  readonly offset = 0;
  #bytes: Uint8Array<ArrayBuffer>;
  #position = 0;
  #options: WholeUploadOptions;
  #state: "open" | "committed" | "kept" | "discarded" = "open";

  /** A whole upload of `size` bytes, staged at `path` (where nothing is yet) once verified. */
  constructor(path: string, size: number, options: WholeUploadOptions = {}) {
    this.path = path;
    this.#bytes = new Uint8Array(size);
    this.#options = options;
  }

  /** Never open: there is no kept start to read back. */
  get file(): Deno.FsFile {
    throw new Error("A whole upload has no open file");
  }

  /** Bytes gathered so far. */
  get size(): number {
    return this.#position;
  }

  /** Gathers a chunk (copied: the caller's buffer is used again). */
  write(chunk: Uint8Array): Promise<void> {
    if (this.#state !== "open") return Promise.reject(new Error(`Upload is ${this.#state}`));
    if (this.#position + chunk.length > this.#bytes.length) {
      return Promise.reject(
        new StoreError(
          "bad_request",
          `Upload sent more than the ${this.#bytes.length} bytes it announced`,
        ),
      );
    }
    this.#bytes.set(chunk, this.#position);
    this.#position += chunk.length;
    return Promise.resolve();
  }

  /**
   * Writes the file, flushed when `fsync`, and gives it the name `target`, as
   * {@link StagedFile.commit} does: resolves false when the name is taken and `replace` is not
   * set, and syncs the folder (shared with the other names given there) once named. A full disk
   * makes room through `onNoSpace` and the whole step is run again, the name prepared again too.
   */
  async commit(target: CommitTarget, options: CommitOptions = {}): Promise<boolean> {
    if (this.#state !== "open") throw new Error(`Staged file is already ${this.#state}`);
    this.#state = "committed";
    const bytes = this.#bytes.subarray(0, this.#position);
    const { onNoSpace, failure } = this.#options;
    const fsync = this.#options.fsync ?? true;
    try {
      for (;;) {
        const to = typeof target === "string" ? target : await target();
        let named: boolean;
        try {
          named = await diskPool.writeWhole({
            staging: this.path,
            target: to,
            bytes,
            permissions: this.#options.permissions,
            mtime: options.mtime,
            replace: options.replace ?? false,
            fsync,
          });
        } catch (error) {
          if (!(error instanceof WholeFileError)) throw error;
          if (onNoSpace && isNoSpace(error.cause) && await onNoSpace(bytes.length)) continue;
          throw failure ? failure(error.cause, error.path) : error.cause;
        }
        if (named && fsync) await syncDirShared(dirname(to));
        return named;
      }
    } finally {
      this.#bytes = new Uint8Array(0);
    }
  }

  /**
   * Writes what arrived to the staging path and leaves it there, for a later append (as
   * {@link StagedFile.keep}); {@link discard} still removes it.
   */
  async keep(): Promise<void> {
    if (this.#state !== "open") throw new Error(`Staged file is already ${this.#state}`);
    this.#state = "kept";
    const bytes = this.#bytes.subarray(0, this.#position);
    this.#bytes = new Uint8Array(0);
    try {
      await Deno.writeFile(this.path, bytes, { createNew: true, mode: this.#options.permissions });
    } catch (error) {
      throw this.#options.failure ? this.#options.failure(error, this.path) : error;
    }
  }

  /** Throws the bytes away (and the staging file, once kept). Safe to call more than once. */
  async discard(): Promise<void> {
    if (this.#state === "committed" || this.#state === "discarded") return;
    const kept = this.#state === "kept";
    this.#state = "discarded";
    this.#bytes = new Uint8Array(0);
    if (kept) await Deno.remove(this.path).catch(() => {});
  }
}
