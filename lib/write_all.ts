/**
 * Writing a whole buffer to something whose writes may take only part of it (a file, a pipe,
 * stdout), in pieces of at most a given size: asynchronously, or on the calling thread for the
 * client's regular files. The data phase (lib/transfer.ts) moves bytes over the connection; this
 * is what puts them on the local side.
 *
 * @module
 */

import type { DirectWriter } from "./frame_writer.ts";

/**
 * Most bytes to hand a file in one write: filling fresh page cache from 1 MiB calls (ferry's
 * chunk) often cost the kernel twice what 512 KiB calls did (docs/performance.md, "Writing files
 * in 512 KiB pieces").
 */
export const FILE_WRITE_PIECE = 512 * 1024;

/** Options for {@link writeAll}. */
export interface WriteAllOptions {
  /** Most bytes per write call (default: all that remain). */
  piece?: number;
}

/**
 * Writes all of `bytes` to something whose writes may take only part (a file, stdout).
 *
 * @example Write a buffer to a file in 512 KiB pieces
 * ```ts
 * import { FILE_WRITE_PIECE, writeAll } from "./write_all.ts";
 *
 * const path = await Deno.makeTempFile();
 * using file = await Deno.open(path, { write: true });
 * await writeAll(file, new Uint8Array(2 << 20), { piece: FILE_WRITE_PIECE });
 * await Deno.remove(path);
 * ```
 */
export async function writeAll(
  to: DirectWriter,
  bytes: Uint8Array,
  options: WriteAllOptions = {},
): Promise<void> {
  const piece = options.piece ?? bytes.length;
  let offset = 0;
  while (offset < bytes.length) {
    offset += await to.write(bytes.subarray(offset, offset + piece));
  }
}

/** Something written to synchronously: a regular file. */
export interface SyncWriter {
  /** Writes from `p`, returning how many bytes it took. */
  writeSync(p: Uint8Array): number;
}

/**
 * {@link writeAll} without leaving the calling thread, for the client's regular files. Deno runs
 * an asynchronous file write on another thread, and waking that thread for every piece cost more
 * than the copy (docs/performance.md, "The client reads and writes its regular files
 * synchronously"). Not for pipes or devices, which can block for any time, nor for the server,
 * where one slow write would hold up every connection.
 *
 * @example Write a buffer to a regular file without leaving the thread
 * ```ts
 * import { FILE_WRITE_PIECE, writeAllSync } from "./write_all.ts";
 *
 * const path = Deno.makeTempFileSync();
 * using file = Deno.openSync(path, { write: true });
 * writeAllSync(file, new Uint8Array(2 << 20), { piece: FILE_WRITE_PIECE });
 * Deno.removeSync(path);
 * ```
 */
export function writeAllSync(
  to: SyncWriter,
  bytes: Uint8Array,
  options: WriteAllOptions = {},
): void {
  const piece = options.piece ?? bytes.length;
  let offset = 0;
  while (offset < bytes.length) {
    offset += to.writeSync(bytes.subarray(offset, offset + piece));
  }
}
