/**
 * Byte moving: the data phase of a transfer. A sender reads its source into leased buffers and
 * ships them as DATA frames followed by an END frame with the byte count and checksum; a receiver
 * writes DATA payloads to its sink and verifies both before reporting success. Each side keeps
 * two buffers so reading the next chunk overlaps writing the current one, as the seed describes.
 *
 * @module
 */

import { type BufferPool, defaultPool } from "./buffer_pool.ts";
import { type Checksum, createChecksum } from "./checksum.ts";
import {
  ChecksumMismatchError,
  ClosedEarlyError,
  ProtocolError,
  RefusedError,
  StoreError,
} from "./errors.ts";
import { formatExactBytes } from "./format.ts";
import { parseEnd, parseError } from "./protocol.ts";
import { CHUNK_SIZE, concatBytes, FrameType, frameTypeName } from "./frames.ts";
import type { DirectReader, FrameReader } from "./frame_reader.ts";
import { CORK_LIMIT, type FrameWriter } from "./frame_writer.ts";
import { InPlaceByobReader } from "./in_place_byob_reader.ts";

/** What a finished data phase moved. */
export interface TransferResult {
  /** Payload bytes. */
  size: number;
  /** Checksum of those bytes, `xxh128:<hex>`. */
  checksum: string;
}

/**
 * Told when a transfer starts and stops waiting on its own side (reading the source, writing the
 * sink), so a stall watchdog counts only the time spent waiting on the peer.
 */
export interface LocalWaits {
  /** A wait on the local side begins. */
  begin(): void;
  /** That wait is over. */
  end(): void;
}

/** Runs `wait` as a wait on the local side, if anyone is counting. */
export function localWait<T>(waits: LocalWaits | undefined, wait: () => Promise<T>): Promise<T> {
  // Called for every chunk; without a watchdog it adds nothing.
  if (!waits) return wait();
  waits.begin();
  return wait().finally(() => waits.end());
}

/**
 * `promise`, or the signal's reason as soon as it aborts: a pipe, a device or a full disk can
 * keep a wait going for any time, and a peer's verdict must not wait for it. What `promise` was
 * doing goes on unwatched; its failure, if any, is ignored.
 */
export function orAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Options for {@link sendData}. */
export interface SendOptions {
  /** Where buffers come from; defaults to the process-wide pool. */
  pool?: BufferPool;
  /** Called after each chunk with the running byte count. */
  onProgress?: (bytes: number) => void;
  /** Stops the transfer, even while the source is being waited for; the reason is rethrown. */
  signal?: AbortSignal;
  /** Expected byte count, so small transfers lease small buffers. */
  sizeHint?: number | null;
  /**
   * Awaited before each chunk is sent with its size and {@link signal}: a rate limit's pacing.
   * A paced transfer is never corked: its bytes leave as they are paced.
   */
  throttle?: Throttle;
  /** Largest chunk, to keep a rate limit smooth. */
  maxChunk?: number;
  /** Send bare bytes with no DATA headers and no END (the seed protocol's data phase). */
  raw?: boolean;
  /** Resuming: the peer already has this many bytes, whose checksum state this is. */
  resumeFrom?: ResumePoint;
  /** Told while the source is being waited for. */
  localWaits?: LocalWaits;
  /**
   * Called with the checksum of everything sent (a resumed transfer's prefix included) before END
   * goes; what it throws fails the transfer instead (a stored file that no longer matches the
   * checksum it was stored with: see StoreReader.takeCheck).
   */
  check?: (checksum: string) => void;
}

/**
 * A rate limit's pacing: resolves when `bytes` more may move, or rejects with the signal's reason
 * once it aborts.
 */
export type Throttle = (bytes: number, signal?: AbortSignal) => Promise<void>;

/** Where a resumed transfer picks up: bytes already in place and their running checksum. */
export interface ResumePoint {
  /** Bytes already in place. */
  size: number;
  /** Checksum of those bytes, not yet digested; the transfer goes on updating it. */
  checksum: Checksum;
}

/** Options for {@link receiveData}. */
export interface ReceiveOptions {
  /** Where buffers come from; defaults to the process-wide pool. */
  pool?: BufferPool;
  /** Called after each chunk with the running byte count. */
  onProgress?: (bytes: number) => void;
  /** Expected byte count, so small transfers lease small buffers. */
  sizeHint?: number | null;
  /** Refuse (code `too_large`) as soon as more than this many bytes arrive. */
  maxSize?: number;
  /**
   * The size the sender announced for the whole transfer (resumed bytes included), if it did:
   * more is refused as soon as it arrives, and END must carry exactly this size.
   */
  announcedSize?: number | null;
  /** Resuming: bytes already in place, counted in END's size and checksum. */
  resumeFrom?: ResumePoint;
  /**
   * Told of each KEEPALIVE before the first DATA (a resumed put's work notices while the sender
   * hashes its start; it throws to refuse one). Without it, or after DATA, one is a stray frame.
   */
  onNotice?: (json: Record<string, unknown>) => void;
  /** Awaited after each chunk is written, with its size: a rate limit's pacing. */
  throttle?: Throttle;
  /** Largest chunk read at once, to keep a rate limit smooth. */
  maxChunk?: number;
  /** Told while a write to the sink is under way. */
  localWaits?: LocalWaits;
  /**
   * Stops the transfer, even while the sink or the pacing is being waited for (a pipe nobody
   * reads can take a write for ever); the reason is rethrown.
   */
  signal?: AbortSignal;
}

/**
 * Something bytes can be read from: something read in place (a file, stdin: `Deno.FsFile`), a
 * byte stream (BYOB) or any stream of Uint8Array. Read in place is fastest: a stream's BYOB read
 * transfers the buffer it fills, which the pool's buffers in WebAssembly memory do not allow, so
 * a stream is read into a buffer of its own and copied.
 */
export type ByteSource = ReadableStream<Uint8Array> | DirectReader;

/** Gives up on a source that will not be read (only a stream has anything to cancel). */
export async function cancelSource(source: ByteSource): Promise<void> {
  if (source instanceof ReadableStream) await source.cancel().catch(() => {});
}

/** Something bytes are written to; a write must not keep the chunk after it settles. */
export interface ByteSink {
  /** Writes a whole chunk. */
  write(chunk: Uint8Array): Promise<void>;
}

/**
 * What an upload over `--max-size` is told, whether its announced `size` was refused up front or
 * a stream passed the limit (no size): the one wording, with sizes exact and readable.
 */
export function overLimitMessage(limit: number, size?: number): string {
  const upload = size === undefined ? "Upload" : `Upload of ${formatExactBytes(size)}`;
  return `${upload} is over the server's limit of ${formatExactBytes(limit)}`;
}

/** Buffer size for a transfer: the chunk size, or less when the transfer is known to be small. */
function bufferSizeFor(sizeHint: number | null | undefined): number {
  if (sizeHint === null || sizeHint === undefined) return CHUNK_SIZE;
  // One byte more than the file so the end of the source is seen in the same read.
  return Math.min(CHUNK_SIZE, Math.max(65536, sizeHint + 1));
}

// Defined with the frames, below everything that reads them (lib/tree_protocol.ts among them).
export { concatBytes };

/** A pipe's capacity on Linux: a read shorter than this found the pipe drained. */
const PIPE_BUFFER = 65536;

/** Fills buffers from a source: in place, or through a BYOB reader when a stream supports one. */
class Filler {
  #direct?: DirectReader;
  #byob?: InPlaceByobReader;
  #plain?: ReadableStreamDefaultReader<Uint8Array>;
  #leftover?: Uint8Array;
  #done = false;
  #signal?: AbortSignal;

  /** Reads `source`; a fill waiting on it gives up (with its reason) when `signal` aborts. */
  constructor(source: ByteSource, signal?: AbortSignal) {
    if (!(source instanceof ReadableStream)) {
      this.#direct = source;
    } else {
      try {
        this.#byob = new InPlaceByobReader(source);
      } catch {
        this.#plain = source.getReader();
      }
    }
    this.#signal = signal;
  }

  /** `read`, or the signal's reason as soon as it aborts (see {@link orAbort}). */
  #orAbort<T>(read: Promise<T>): Promise<T> {
    return orAbort(read, this.#signal);
  }

  /**
   * Fills `view` while the source keeps up: a file fills it at once, but a pipe that pauses
   * (a short read) sends what it has, so a slow producer still shows progress to the server's
   * idle timeout. An empty result means the source has ended.
   */
  async fill(view: Uint8Array): Promise<Uint8Array> {
    const total = view.length;
    let filled = 0;
    while (filled < total && !this.#done) {
      if (this.#direct) {
        const n = await this.#orAbort(this.#direct.read(view.subarray(filled)));
        if (n === null) this.#done = true;
        else filled += n;
        if (n !== null && n < PIPE_BUFFER && filled > 0) break;
      } else if (this.#byob) {
        const { value, done } = await this.#orAbort(this.#byob.read(view.subarray(filled)));
        // The last read can bring bytes and `done` together.
        filled += value?.length ?? 0;
        if (done || !value) this.#done = true;
        else if (value.length < PIPE_BUFFER && filled > 0) break;
      } else {
        let chunk = this.#leftover;
        this.#leftover = undefined;
        if (!chunk) {
          const { value, done } = await this.#orAbort(this.#plain!.read());
          if (done) {
            this.#done = true;
            break;
          }
          chunk = value;
        }
        const take = Math.min(chunk.length, total - filled);
        view.set(chunk.subarray(0, take), filled);
        if (take < chunk.length) this.#leftover = chunk.subarray(take);
        filled += take;
      }
    }
    return view.subarray(0, filled);
  }

  async cancel(): Promise<void> {
    await (this.#byob ?? this.#plain)?.cancel().catch(() => {});
  }
}

/**
 * Sends everything `source` yields as DATA frames, then END with the size and checksum.
 * The source is read to its end (or cancelled on failure).
 */
export async function sendData(
  source: ByteSource,
  frames: FrameWriter,
  options: SendOptions = {},
): Promise<TransferResult> {
  const pool = options.pool ?? defaultPool;
  const checksum = options.resumeFrom?.checksum ?? await createChecksum();
  const filler = new Filler(source, options.signal);
  const wanted = Math.min(bufferSizeFor(options.sizeHint), options.maxChunk ?? CHUNK_SIZE);
  const buffers = [pool.lease(wanted), pool.lease(wanted)];
  let sent = options.resumeFrom?.size ?? 0;
  let index = 0;
  // A small transfer leaves as one write: DATA and END together (see FrameWriter.cork). Not
  // a paced one, which would hold every byte back until the end of its pacing.
  const small = options.sizeHint !== null && options.sizeHint !== undefined &&
    options.sizeHint <= CORK_LIMIT && !options.raw && !options.throttle;
  if (small) frames.cork();
  try {
    const fill = (buffer: Uint8Array) => localWait(options.localWaits, () => filler.fill(buffer));
    let current = await fill(buffers[0]);
    while (current.length > 0) {
      options.signal?.throwIfAborted();
      if (options.throttle) await options.throttle(current.length, options.signal);
      const writing = options.raw ? frames.writeRaw(current) : frames.writeData(current);
      const other = 1 - index;
      const reading = fill(buffers[other]);
      // Either may fail while the other is awaited; mark both handled so neither is reported as
      // an unhandled rejection (which would end the process).
      writing.catch(() => {});
      reading.catch(() => {});
      // Hashing overlaps the socket write and the next read, which run outside JavaScript.
      checksum.update(current);
      await writing;
      sent += current.length;
      options.onProgress?.(sent);
      current = await reading;
      index = other;
    }
    options.signal?.throwIfAborted();
    const result = { size: sent, checksum: checksum.digest() };
    options.check?.(result.checksum);
    if (!options.raw) await frames.writeControl(FrameType.END, result);
    await frames.uncork();
    return result;
  } catch (error) {
    await filler.cancel();
    await frames.uncork().catch(() => {});
    throw error;
  } finally {
    pool.release(buffers[0]);
    pool.release(buffers[1]);
  }
}

/**
 * The receiving half of a data phase: two leased buffers, one being filled from the socket while
 * the other is written to the sink, with the running count, checksum, limit and pacing.
 */
class Receiver {
  received: number;
  readonly checksum: Checksum;
  #sink: ByteSink;
  #options: ReceiveOptions;
  #pool: BufferPool;
  #buffers: Uint8Array<ArrayBuffer>[];
  #index = 0;
  #pending?: Promise<void>;
  /** The sink's own write behind {@link #pending}, which an abort does not end. */
  #writing?: Promise<void>;
  /** Rejects {@link #pending} when the signal aborts (one listener for the whole transfer). */
  #abortWrite?: (reason: unknown) => void;

  private constructor(sink: ByteSink, options: ReceiveOptions, checksum: Checksum) {
    this.#sink = sink;
    this.#options = options;
    this.#pool = options.pool ?? defaultPool;
    this.checksum = checksum;
    this.received = options.resumeFrom?.size ?? 0;
    const wanted = Math.min(bufferSizeFor(options.sizeHint), options.maxChunk ?? CHUNK_SIZE);
    this.#buffers = [this.#pool.lease(wanted), this.#pool.lease(wanted)];
    options.signal?.addEventListener("abort", () => this.#abortWrite?.(options.signal!.reason), {
      once: true,
    });
  }

  static async create(sink: ByteSink, options: ReceiveOptions): Promise<Receiver> {
    return new Receiver(sink, options, options.resumeFrom?.checksum ?? await createChecksum());
  }

  /** The buffer the next chunk should be read into; it is free (its last write has settled). */
  get buffer(): Uint8Array<ArrayBuffer> {
    return this.#buffers[this.#index];
  }

  /** Takes a chunk just read into the start of {@link buffer} and writes it. */
  async accept(chunk: Uint8Array): Promise<void> {
    this.received += chunk.length;
    const { maxSize, announcedSize } = this.#options;
    if (maxSize !== undefined && this.received > maxSize) {
      throw new StoreError("too_large", overLimitMessage(maxSize));
    }
    if (announcedSize !== undefined && announcedSize !== null && this.received > announcedSize) {
      throw new StoreError(
        "bad_request",
        `Upload sent more than the ${announcedSize} bytes it announced`,
      );
    }
    this.checksum.update(chunk);
    // The other buffer's write must finish before that buffer is read into again.
    await this.#pending;
    const writing = this.#writing = localWait(
      this.#options.localWaits,
      () => this.#sink.write(chunk),
    );
    // Only a client watching its connection passes a signal, and gives up a write it aborts:
    // a pipe nobody reads would hold it for ever. The server's path stays as it was.
    this.#pending = this.#options.signal
      ? new Promise<void>((resolve, reject) => {
        this.#abortWrite = reject;
        if (this.#options.signal!.aborted) reject(this.#options.signal!.reason);
        writing.then(resolve, reject);
      })
      : writing;
    this.#pending.catch(() => {}); // awaited later; see sendData
    this.#options.onProgress?.(this.received);
    const throttle = this.#options.throttle;
    if (throttle) await throttle(chunk.length, this.#options.signal);
    this.#index = 1 - this.#index;
  }

  /** Waits for the last write. */
  async flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = undefined;
    await pending;
  }

  /** Returns the buffers, once no write can still read from them. */
  async release(): Promise<void> {
    const giveBack = () => this.#buffers.forEach((buffer) => this.#pool.release(buffer));
    if (this.#options.signal?.aborted && this.#writing) {
      // The connection is gone and the write was given up on: it may never settle (a pipe
      // nobody reads). Its buffers go back only if it does.
      this.#writing.catch(() => {}).finally(giveBack);
      return;
    }
    await this.#pending?.catch(() => {});
    giveBack();
  }
}

/**
 * Receives DATA frames into `sink` until END, then checks the byte count and checksum.
 * Throws {@link ProtocolError} on a cut connection, a stray frame or a mismatch,
 * {@link StoreError} past `maxSize` or the announced size, and {@link RefusedError} when the
 * sender aborts or the peer reports an error.
 */
export async function receiveData(
  frames: FrameReader,
  sink: ByteSink,
  options: ReceiveOptions = {},
): Promise<TransferResult> {
  const receiver = await Receiver.create(sink, options);
  let onNotice = options.onNotice;
  try {
    while (true) {
      const header = await frames.readHeader();
      if (!header) {
        throw new ClosedEarlyError("Connection closed before the transfer was complete");
      }
      if (header.type === FrameType.DATA) {
        onNotice = undefined;
        let remaining = header.length;
        while (remaining > 0) {
          const size = Math.min(remaining, receiver.buffer.length);
          await receiver.accept(await frames.readPayload(receiver.buffer.subarray(0, size)));
          remaining -= size;
        }
        continue;
      }
      const frame = await frames.readControlPayload(header);
      if (header.type === FrameType.KEEPALIVE && onNotice) {
        onNotice(frame.json);
        continue;
      }
      if (header.type === FrameType.END) {
        const end = parseEnd(frame.json);
        await receiver.flush();
        if (end.size !== receiver.received) {
          throw new ChecksumMismatchError(
            `Size mismatch: sender sent ${end.size} bytes, ${receiver.received} arrived`,
          );
        }
        const announced = options.announcedSize;
        if (announced !== undefined && announced !== null && end.size !== announced) {
          throw new StoreError(
            "bad_request",
            `Upload ended after ${end.size} bytes but announced ${announced}`,
          );
        }
        const actual = receiver.checksum.digest();
        if (end.checksum !== actual) {
          throw new ChecksumMismatchError(
            `Checksum mismatch: sender has ${end.checksum}, received data has ${actual}`,
          );
        }
        return { size: receiver.received, checksum: actual };
      }
      if (header.type === FrameType.ABORT || header.type === FrameType.ERROR) {
        const error = parseError(frame.json);
        throw new RefusedError(error.code, error.message);
      }
      throw new ProtocolError(`Unexpected ${frameTypeName(header.type)} frame during transfer`);
    }
  } finally {
    await receiver.release();
  }
}

/**
 * Receives bare bytes until the peer closes its side (the seed protocol's data phase). There is
 * nothing to verify against: a cut connection that ends with a clean close looks complete.
 */
export async function receiveRaw(
  frames: FrameReader,
  sink: ByteSink,
  options: ReceiveOptions = {},
): Promise<TransferResult> {
  const receiver = await Receiver.create(sink, options);
  try {
    while (true) {
      const chunk = await frames.readFill(receiver.buffer);
      if (chunk.length === 0) break;
      await receiver.accept(chunk);
    }
    await receiver.flush();
    return { size: receiver.received, checksum: receiver.checksum.digest() };
  } finally {
    await receiver.release();
  }
}

/** Options for {@link checksumFilePrefix}. */
export interface ChecksumPrefixOptions {
  /** Where the read buffer comes from. */
  pool?: BufferPool;
  /**
   * Read a file just opened (so from its start, with no seek) on the calling thread, where the
   * file offers `readSync`: for a client's own small files, whose few reads cost less than one
   * hand-off of an asynchronous read to another thread (default false).
   */
  sync?: boolean;
  /** Told the bytes hashed so far after each piece (a tree transfer's work notices). */
  onProgress?: (bytes: number) => void;
}

/**
 * Checksums the first `length` bytes of a file, leaving the file positioned just after them.
 * Returns the running checksum (not digested) so a resumed transfer can carry on from it, or
 * null if the file is shorter than `length`.
 */
export async function checksumFilePrefix(
  file: Pick<Deno.FsFile, "read" | "seek"> & { readSync?(p: Uint8Array): number | null },
  length: number,
  options: ChecksumPrefixOptions = {},
): Promise<Checksum | null> {
  const pool = options.pool ?? defaultPool;
  const readSync = options.sync ? file.readSync?.bind(file) : undefined;
  const checksum = await createChecksum();
  const buffer = pool.lease(bufferSizeFor(length));
  try {
    if (!readSync) await file.seek(0, Deno.SeekMode.Start);
    let done = 0;
    while (done < length) {
      const into = buffer.subarray(0, Math.min(buffer.length, length - done));
      const n = readSync ? readSync(into) : await file.read(into);
      if (n === null) return null;
      checksum.update(buffer.subarray(0, n));
      done += n;
      options.onProgress?.(done);
    }
    return checksum;
  } finally {
    pool.release(buffer);
  }
}
