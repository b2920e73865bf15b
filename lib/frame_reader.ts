/**
 * Reading frames from a socket: {@link FrameReader} reads in place into the caller's buffers,
 * batches the reads of small frames, and reads ahead while the caller is busy to see whether the
 * peer ends the data phase ({@link FrameReader.watch}); it keeps a connection's {@link Activity}
 * for the idle and stall watchdogs. docs/protocol.md says why the hot path reads the socket rather
 * than a stream.
 *
 * @module
 */

import { ClosedEarlyError, ProtocolError, RefusedError } from "./errors.ts";
import { parseError } from "./protocol.ts";
import {
  type ControlFrame,
  decodeHeader,
  decodeJson,
  decodePreamble,
  FRAME_HEADER_LENGTH,
  type FrameHeader,
  FrameType,
  MAX_CONTROL_PAYLOAD,
  PREAMBLE_LENGTH,
} from "./frames.ts";
import type { Activity, FrameStreamOptions } from "./connection_activity.ts";

/** Something read in place, into the caller's buffer: `Deno.Conn`, `Deno.FsFile`. */
export interface DirectReader {
  /** Reads into `p`; the number of bytes read (at least one), or null at the end. */
  read(p: Uint8Array): Promise<number | null>;
}

/**
 * How a stream read ahead by {@link FrameReader.watch} goes on: an END frame is in (the data phase
 * is complete), or the peer has ended it first (`error`: its ERROR or ABORT as a
 * {@link RefusedError}, a close as a {@link ProtocolError}, or the read's own failure).
 */
export type WatchOutcome = { end: true } | { error: unknown };

/** Bytes read ahead of the caller by {@link FrameReader.watch}, and what they were seen to hold. */
interface ReadAhead {
  /** Unread bytes, oldest first. */
  chunks: Uint8Array[];
  /** Their total. */
  bytes: number;
  /** The read under way, if any. */
  reading?: Promise<void>;
  /** The socket's end: a clean close, or `error`. */
  end?: { error?: unknown };
  /** Payload bytes still to pass before the next frame header. */
  skip: number;
  /** A frame header being put together from the bytes. */
  header: Uint8Array;
  headerFilled: number;
  /** An ERROR or ABORT payload being put together. */
  control?: { type: number; bytes: Uint8Array; filled: number };
  /** Set once an END, an ERROR or the end of the stream has been seen. */
  outcome?: WatchOutcome;
}

/** Most bytes one read ahead takes. */
const READ_AHEAD_STEP = 64 << 10;

/**
 * Reads frames from a socket into the caller's buffers, in place: the socket's own `read` fills
 * them with no intermediate copy (a stream's BYOB read would transfer the pool's buffers, which
 * must stay put), and returns what has arrived, so a slow peer's progress shows at once. Over TLS
 * a read returns at most one 16 KiB record whatever the buffer, a cost of Deno's TLS stream that
 * nothing here can batch away (docs/performance.md, "Where TLS time goes").
 */
export class FrameReader {
  #source: DirectReader;
  #small = new Uint8Array(MAX_CONTROL_PAYLOAD);
  #activity?: Activity;
  /** Payload bytes of the current DATA frame not yet read (see {@link readPayload}). */
  #payloadLeft = 0;
  /** Bytes read ahead by {@link watch}, served before the socket. */
  #ahead?: ReadAhead;
  /**
   * With {@link batchReads}: bytes read from the socket beyond what was asked for, served
   * before anything else, and the part of them not yet served.
   */
  #batch?: Uint8Array;
  #batchStart = 0;
  #batchEnd = 0;

  /**
   * Reads `source`, a socket (`Deno.Conn`). Unlike `conn.readable`, reading the socket directly
   * leaves it open at the end, until its owner closes it.
   */
  constructor(source: DirectReader, options: FrameStreamOptions = {}) {
    this.#source = source;
    this.#activity = options.activity;
  }

  /**
   * Reads small frames many at a time: a read the size of a header or a control frame asks the
   * socket for up to {@link READ_AHEAD_STEP} bytes and keeps the rest for the next reads. A tree
   * transfer of small files turns on this way, since each file is three frames (FILE, DATA, END),
   * six reads of the socket one by one. Large DATA payloads still go straight to the caller's
   * buffer. Bytes kept are served first, whatever comes next, so it may be turned off any time.
   */
  batchReads(on: boolean): void {
    if (on) this.#batch ??= new Uint8Array(READ_AHEAD_STEP);
    else if (this.#batchStart === this.#batchEnd) this.#batch = undefined;
  }

  /**
   * Whether the bytes {@link batchReads} kept hold a whole frame, so the next frame can be read
   * without waiting for the peer. A receiver holds its answers back while this is true and sends
   * them together before it waits.
   */
  get frameKept(): boolean {
    const kept = this.#batchEnd - this.#batchStart;
    if (this.#payloadLeft > 0 || kept < FRAME_HEADER_LENGTH) return false;
    const view = new DataView(this.#batch!.buffer, this.#batch!.byteOffset + this.#batchStart);
    return kept >= FRAME_HEADER_LENGTH + view.getUint32(1);
  }

  /** Serves a read from the bytes {@link batchReads} kept, if any: the count, or 0. */
  #fromBatch(view: Uint8Array): number {
    const n = Math.min(view.length, this.#batchEnd - this.#batchStart);
    if (n <= 0) return 0;
    view.set(this.#batch!.subarray(this.#batchStart, this.#batchStart + n));
    this.#batchStart += n;
    return n;
  }

  /**
   * The next `n` bytes, in place in what {@link batchReads} kept, when all of them are there
   * (most frames of a tree's small files): read without an asynchronous call or a copy. Only
   * until the next read, which may fill that buffer again.
   */
  #kept(n: number): Uint8Array | undefined {
    const start = this.#batchStart;
    if (!this.#batch || n === 0 || this.#batchEnd - start < n) return undefined;
    this.#batchStart = start + n;
    return this.#batch.subarray(start, start + n);
  }

  /** Reads what has arrived into `view`: the count (at least one), or null at the end. */
  async #read(view: Uint8Array): Promise<number | null> {
    const kept = this.#fromBatch(view);
    if (kept > 0) return kept;
    if (this.#ahead) return await this.#readAhead(view);
    // The buffer is empty here; a large read goes straight to the caller, as without batching.
    const batch = this.#batch && view.length < this.#batch.length / 4 ? this.#batch : undefined;
    const n = await this.#source.read(batch ?? view);
    if (batch && n !== null && n > 0) {
      this.#batchStart = 0;
      this.#batchEnd = n;
      // Read from the socket: counted below as received, then served from the buffer.
      this.#record(n);
      return this.#fromBatch(view);
    }
    this.#record(n);
    return n === null || n === 0 ? null : n;
  }

  #record(n: number | null): void {
    if (this.#activity) {
      this.#activity.last = Date.now();
      // A peer that sends has read what it was sent, or at least is not stuck behind it.
      this.#activity.peerBehind = false;
      if (n !== null && this.#activity.received !== undefined) this.#activity.received += n;
    }
  }

  /** Serves a read from what {@link watch} read ahead, waiting for its read under way if need be. */
  async #readAhead(view: Uint8Array): Promise<number | null> {
    const ahead = this.#ahead!;
    if (ahead.bytes === 0 && ahead.reading) await ahead.reading;
    if (ahead.bytes > 0) {
      let filled = 0;
      while (filled < view.length && ahead.chunks.length > 0) {
        const chunk = ahead.chunks[0];
        const n = Math.min(chunk.length, view.length - filled);
        view.set(chunk.subarray(0, n), filled);
        filled += n;
        if (n === chunk.length) ahead.chunks.shift();
        else ahead.chunks[0] = chunk.subarray(n);
      }
      ahead.bytes -= filled;
      if (ahead.bytes === 0 && !ahead.reading && !ahead.end) this.#ahead = undefined;
      return filled;
    }
    if (ahead.end) {
      if (ahead.end.error !== undefined) throw ahead.end.error;
      return null;
    }
    this.#ahead = undefined;
    return await this.#read(view);
  }

  /**
   * Reads ahead of the caller, into memory, while the caller is busy elsewhere (a slow sink, a
   * rate limit's pause), to see whether the peer ends the data phase: resolves once an END, an
   * ERROR or ABORT, or the end of the connection is in (see {@link WatchOutcome}), or with null
   * once `stop` aborts or `limit` bytes wait. Every byte read ahead is still read, in order, by
   * the calls that follow; stop the watch before making them.
   */
  async watch(limit: number, stop: AbortSignal): Promise<WatchOutcome | null> {
    const ahead = this.#ahead ??= {
      chunks: [],
      bytes: 0,
      skip: this.#payloadLeft,
      header: new Uint8Array(FRAME_HEADER_LENGTH),
      headerFilled: 0,
    };
    if (this.#batchEnd > this.#batchStart) {
      // Bytes that batched reads kept come first: the watch follows them as if just read.
      const kept = this.#batch!.slice(this.#batchStart, this.#batchEnd);
      this.#batchStart = this.#batchEnd = 0;
      ahead.chunks.push(kept);
      ahead.bytes += kept.length;
      this.#walk(ahead, kept);
    }
    while (!ahead.outcome && !stop.aborted && ahead.bytes < limit && this.#ahead === ahead) {
      await (ahead.reading ??= this.#readAheadOnce(ahead));
    }
    return ahead.outcome ?? null;
  }

  #readAheadOnce(ahead: ReadAhead): Promise<void> {
    const buffer = new Uint8Array(READ_AHEAD_STEP);
    return this.#source.read(buffer).then((n) => {
      // Counted as received now: serving these bytes later reads no socket, so counts nothing.
      this.#record(n);
      if (n === null) {
        ahead.end = {};
        ahead.outcome ??= {
          error: new ClosedEarlyError("Connection closed before the transfer was complete"),
        };
        return;
      }
      // A short read keeps only its bytes, not the whole step.
      const bytes = n < READ_AHEAD_STEP / 4 ? buffer.slice(0, n) : buffer.subarray(0, n);
      ahead.chunks.push(bytes);
      ahead.bytes += n;
      if (!ahead.outcome) this.#walk(ahead, bytes);
    }, (error) => {
      ahead.end = { error };
      ahead.outcome ??= { error };
    }).finally(() => ahead.reading = undefined);
  }

  /** Follows the frames in bytes just read ahead, as far as an END, ERROR or ABORT. */
  #walk(ahead: ReadAhead, bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length && !ahead.outcome) {
      if (ahead.skip > 0) {
        const n = Math.min(ahead.skip, bytes.length - i);
        ahead.skip -= n;
        i += n;
        continue;
      }
      const control = ahead.control;
      if (control) {
        const n = Math.min(control.bytes.length - control.filled, bytes.length - i);
        control.bytes.set(bytes.subarray(i, i + n), control.filled);
        control.filled += n;
        i += n;
        if (control.filled === control.bytes.length) this.#endWith(ahead, control);
        continue;
      }
      const n = Math.min(FRAME_HEADER_LENGTH - ahead.headerFilled, bytes.length - i);
      ahead.header.set(bytes.subarray(i, i + n), ahead.headerFilled);
      ahead.headerFilled += n;
      i += n;
      if (ahead.headerFilled < FRAME_HEADER_LENGTH) continue;
      ahead.headerFilled = 0;
      let header: FrameHeader;
      try {
        header = decodeHeader(ahead.header);
      } catch (error) {
        ahead.outcome = { error };
        continue;
      }
      if (header.type === FrameType.END) {
        ahead.outcome = { end: true };
      } else if (header.type === FrameType.ERROR || header.type === FrameType.ABORT) {
        ahead.control = { type: header.type, bytes: new Uint8Array(header.length), filled: 0 };
        if (header.length === 0) this.#endWith(ahead, ahead.control);
      } else {
        ahead.skip = header.length;
      }
    }
  }

  /** The peer's ERROR or ABORT, read ahead, as the error the transfer will end with. */
  #endWith(ahead: ReadAhead, control: { type: number; bytes: Uint8Array }): void {
    ahead.control = undefined;
    try {
      const error = parseError(decodeJson(control.type, control.bytes));
      ahead.outcome = { error: new RefusedError(error.code, error.message) };
    } catch (error) {
      ahead.outcome = { error };
    }
  }

  /**
   * Reads up to `view.length` bytes, at least one, into `view`; returns the filled part, or null
   * at end of stream.
   */
  async readSome(view: Uint8Array): Promise<Uint8Array | null> {
    const n = await this.#read(view);
    return n === null ? null : view.subarray(0, n);
  }

  /**
   * Fills `view` completely and returns it, or null if the stream ended before the first byte
   * and `eofOk` is set; throws {@link ProtocolError} if it ends part-way.
   */
  async readExact(view: Uint8Array, eofOk = false): Promise<Uint8Array | null> {
    const total = view.length;
    let filled = 0;
    while (filled < total) {
      let n: number | null;
      try {
        n = await this.#read(view.subarray(filled));
      } catch (error) {
        // A TLS peer that hangs up between frames without close_notify has still hung up.
        if (filled === 0 && eofOk && error instanceof Deno.errors.UnexpectedEof) return null;
        throw error;
      }
      if (n === null) {
        if (filled === 0 && eofOk) return null;
        throw new ClosedEarlyError("Connection closed mid-message");
      }
      filled += n;
    }
    return view;
  }

  /**
   * Fills `view` until it is full or the stream ends; returns the filled part (empty at the end
   * of the stream). For raw, unframed data such as the seed protocol's.
   */
  async readFill(view: Uint8Array): Promise<Uint8Array> {
    const total = view.length;
    let filled = 0;
    while (filled < total) {
      const n = await this.#read(view.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return view.subarray(0, filled);
  }

  /**
   * Reads the peer's preamble, of which the caller may have read the `first` bytes already (to
   * tell what the peer speaks), and returns its protocol version.
   */
  async readPreamble(first: Uint8Array = EMPTY): Promise<number> {
    if (first.length > PREAMBLE_LENGTH) throw new RangeError("More bytes than a preamble has");
    const preamble = this.#small.subarray(0, PREAMBLE_LENGTH);
    preamble.set(first);
    await this.readExact(preamble.subarray(first.length));
    return decodePreamble(preamble);
  }

  /** Reads a frame header; null on a clean end of stream between frames. */
  async readHeader(): Promise<FrameHeader | null> {
    const bytes = this.#kept(FRAME_HEADER_LENGTH) ??
      await this.readExact(this.#small.subarray(0, FRAME_HEADER_LENGTH), true);
    const header = bytes && decodeHeader(bytes);
    this.#payloadLeft = header?.type === FrameType.DATA ? header.length : 0;
    return header;
  }

  /**
   * Fills `view` with the next bytes of the DATA payload whose header was just read, as
   * {@link readExact} does; keeps count of what is left of it for {@link watch}.
   */
  async readPayload(view: Uint8Array): Promise<Uint8Array> {
    const kept = this.#kept(view.length);
    if (kept) view.set(kept);
    else await this.readExact(view);
    this.#payloadLeft -= view.length;
    return view;
  }

  /** Reads and parses the JSON payload of a control frame whose header was just read. */
  async readControlPayload(header: FrameHeader): Promise<ControlFrame> {
    if (header.length === 0) return { type: header.type, json: decodeJson(header.type, EMPTY) };
    const bytes = this.#kept(header.length) ??
      await this.readExact(this.#small.subarray(0, header.length));
    return { type: header.type, json: decodeJson(header.type, bytes!) };
  }

  /**
   * Reads the next control frame. A DATA frame here is a protocol error; null means a clean end
   * of stream between frames.
   */
  async readControl(): Promise<ControlFrame | null> {
    const header = await this.readHeader();
    if (!header) return null;
    if (header.type === FrameType.DATA) {
      throw new ProtocolError("Unexpected DATA frame");
    }
    return await this.readControlPayload(header);
  }

  /** Reads and throws away everything until the peer closes. */
  async discardAll(): Promise<void> {
    const scratch = new Uint8Array(65536);
    while (await this.readSome(scratch));
  }
}

const EMPTY = new Uint8Array(0);
