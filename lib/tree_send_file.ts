/**
 * One wanted file of a tree transfer's sending end (lib/tree_send.ts): opened, and read whole when
 * small, ahead of its turn; checksummed for a `--checksum` manifest; sent as FILE, its data and
 * END, or ABORT when it cannot be read. Never throws for the file's own fault: that is the
 * receiver's report to make.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import { describeError, StoreError } from "./errors.ts";
import type { ErrorCode } from "./protocol.ts";
import { FrameType } from "./frames.ts";
import { createChecksum } from "./checksum.ts";
import {
  checksumFilePrefix,
  localWait,
  type ResumePoint,
  sendData,
  type TransferResult,
} from "./transfer.ts";
import type { ManifestEntry, ResumeOffer } from "./tree_transfer_protocol.ts";
import type { TreeIo, TreeOptions, TreeSource, TreeSourceFile } from "./tree_transfer.ts";
import type { FileId } from "./checked_open.ts";

/** A wanted file's checksum for the manifest (`--checksum`), or null when it cannot be read. */
export async function checksumOf(
  source: TreeSource,
  path: string,
  index: number,
  pool?: BufferPool,
  onProgress?: (bytes: number) => void,
  id?: FileId,
): Promise<string | null> {
  let file: TreeSourceFile;
  try {
    file = await source.open(path, index, id);
  } catch {
    return null;
  }
  try {
    // The client's own small files are measured and read on its thread, as when sent.
    const size = (source.sync && file.statSync ? file.statSync() : await file.stat()).size;
    const sync = source.sync && size <= SMALL_FILE;
    const sum = await checksumFilePrefix(file, size, { pool, sync, onProgress });
    return sum?.digest() ?? null;
  } finally {
    file.close();
  }
}

/** Files opened (and small ones read) ahead of the one being sent. */
export const PREPARE_AHEAD = 8;

/**
 * The same where the source reads small files whole in one step ({@link TreeSource.readWhole}):
 * the reads asked for together leave for the disk thread in one message. At most 2 MiB wait.
 */
export const READ_WHOLE_AHEAD = 32;

/** Files this small are read whole and their frames held back to leave with the next ones. */
const SMALL_FILE = 64 << 10;

/** A wanted file, opened (and read whole when small) ahead of its turn. */
export interface Prepared {
  /** The open file, for a large one; the sender closes it. */
  file?: TreeSourceFile;
  /** Its size as measured. */
  size: number;
  /** A small file's bytes. */
  bytes?: Uint8Array;
  /** The checksum its store keeps with it, to match (see StoreReader.takeCheck). */
  check?: (checksum: string) => void;
  /** Why it cannot be sent: its ABORT. */
  failure?: { code: string; message: string };
  /** The receiver's kept bytes, when they are the start of this file: not sent again. */
  resumeFrom?: ResumePoint;
}

/** Opens a wanted file, and reads it whole if it is small; never throws for the file's own fault. */
export async function prepareFile(
  io: TreeIo,
  source: TreeSource,
  index: number,
  entry: ManifestEntry,
  offer?: ResumeOffer,
  onProgress?: (bytes: number) => void,
  id?: FileId,
): Promise<Prepared> {
  if (source.readWhole && !offer && entry.size <= SMALL_FILE) {
    try {
      const bytes = await source.readWhole(entry.path, index, SMALL_FILE);
      if (bytes) return { size: bytes.length, bytes };
    } catch (error) {
      return { size: 0, failure: cannotOpen(error) };
    }
  }
  let file: TreeSourceFile;
  let size: number;
  try {
    file = await source.open(entry.path, index, id);
  } catch (error) {
    return { size: 0, failure: cannotOpen(error) };
  }
  try {
    const info = source.sync && file.statSync ? file.statSync() : await file.stat();
    if (!info.isFile) throw new Error("not a regular file");
    size = info.size;
  } catch (error) {
    file.close();
    return { size: 0, failure: cannotOpen(error) };
  }
  // A file read whole must match the checksum its store keeps with it, if any.
  const check = file.takeCheck?.();
  if (offer && offer.offset < size) {
    // As put --resume checks what the server kept: the same checksum over the same bytes.
    try {
      const checksum = await localWait(
        io.local,
        () => checksumFilePrefix(file, offer.offset, { pool: io.pool, onProgress }),
      );
      if (checksum && (await checksum.fork()).digest() === offer.prefix) {
        return { file, size, check, resumeFrom: { size: offer.offset, checksum } };
      }
      await file.seek(0, Deno.SeekMode.Start);
    } catch (error) {
      file.close();
      return { size, failure: { code: "io", message: `Cannot read it: ${describeError(error)}` } };
    }
  }
  if (size > SMALL_FILE) return { file, size, check };
  try {
    const bytes = new Uint8Array(size);
    const readSync = source.sync ? file.readSync?.bind(file) : undefined;
    await localWait(io.local, async () => {
      let filled = 0;
      while (filled < size) {
        const into = bytes.subarray(filled);
        const n = readSync ? readSync(into) : await file.read(into);
        if (n === null) throw new Error("it shrank while being sent");
        filled += n;
      }
    });
    return { size, bytes, check };
  } catch (error) {
    return { size, failure: { code: "io", message: `Cannot read it: ${describeError(error)}` } };
  } finally {
    file.close();
  }
}

/** The ABORT for a file that could not be opened or measured. */
function cannotOpen(error: unknown): { code: string; message: string } {
  // The source's own refusal (no such file on the server, say) is passed on as it is.
  return error instanceof StoreError ? { code: error.code, message: error.message } : {
    code: "io",
    message: `Cannot read it: ${describeError(error)}`,
  };
}

/**
 * Sends one prepared file: FILE, then DATA* END, or ABORT if it cannot be read. Returns its size
 * and checksum as sent, or null when ABORT went instead. A small file's frames are held back
 * (see FrameWriter.cork) to leave once enough have gathered or the sender waits: many small
 * files go out in few writes.
 */
export async function sendFile(
  io: TreeIo,
  prepared: Prepared,
  index: number,
  before: number,
  options: TreeOptions,
): Promise<TransferResult | null> {
  const { file, size, bytes, check, failure, resumeFrom } = prepared;
  const { onProgress, throttle } = options;
  io.out.cork();
  await io.out.writeControl(FrameType.FILE, {
    index,
    size,
    ...(resumeFrom ? { offset: resumeFrom.size } : {}),
  });
  if (failure) {
    await io.out.writeControl(FrameType.ABORT, failure);
    return null;
  }
  if (throttle) {
    // Paced: each chunk leaves as its time comes, never held back to go with the next files.
    await io.out.uncork();
  } else if (bytes) {
    const checksum = await createChecksum();
    checksum.update(bytes);
    const digest = checksum.digest();
    try {
      check?.(digest);
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      await io.out.writeControl(FrameType.ABORT, { code: error.code, message: error.message });
      return null;
    }
    if (size > 0) await io.out.writeData(bytes);
    await io.out.writeControl(FrameType.END, { size, checksum: digest });
    onProgress?.(before + size);
    return { size, checksum: digest };
  }
  // A small file read already is paced from its bytes, as a large one from its file.
  const source = bytes ? bytesSource(bytes) : limited(file!, size - (resumeFrom?.size ?? 0));
  try {
    return await sendData(source, io.out, {
      pool: io.pool,
      localWaits: io.local,
      sizeHint: size - (resumeFrom?.size ?? 0),
      resumeFrom,
      throttle: throttle && ((n, signal) => localWait(io.local, () => throttle(n, signal))),
      maxChunk: options.maxChunk,
      onProgress: (n) => onProgress?.(before + n),
      check: check && ((sum) => {
        try {
          check(sum);
        } catch (error) {
          if (!(error instanceof StoreError)) throw error;
          throw new SourceError(error.message, error.code);
        }
      }),
    });
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    // The data phase ends with ABORT: the connection stays in step and the tree goes on.
    await io.out.writeControl(FrameType.ABORT, { code: error.code, message: error.message });
    return null;
  } finally {
    file?.close();
  }
}

/** Reads `bytes`, a small file already read whole. */
function bytesSource(bytes: Uint8Array) {
  let at = 0;
  return {
    read: (p: Uint8Array): Promise<number | null> => {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

/** A local file that could not be read mid-send (not the connection's failure). */
class SourceError extends Error {
  constructor(message: string, readonly code: ErrorCode = "io") {
    super(message);
  }
}

/** Reads at most `size` bytes of `file`: a file that grows is sent as it was measured. */
function limited(file: TreeSourceFile, size: number) {
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
