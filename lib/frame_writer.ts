/**
 * Writing frames to a socket: {@link FrameWriter} queues frames in order, corks small ones and
 * writes DATA through the socket itself, and keeps a connection's {@link Activity} (the peer is
 * behind while a write waits for room) for the idle and stall watchdogs.
 *
 * @module
 */

import { encodeControl, encodeHeader, FrameType, type FrameTypeCode } from "./frames.ts";
import type { Activity, FrameStreamOptions } from "./connection_activity.ts";

/** Most bytes {@link FrameWriter.cork} holds back before sending anyway. */
export const CORK_LIMIT = 256 << 10;

/** A write slower than this had to wait for room: the peer is behind (see {@link Activity}). */
const SLOW_WRITE_MS = 200;

/** A socket's own write, which takes what the kernel will accept now: `Deno.Conn` is one. */
export interface DirectWriter {
  /** Writes some of `bytes` (at least one) and resolves with how many were taken. */
  write(bytes: Uint8Array): Promise<number>;
}

/** Options for {@link FrameWriter}. */
export interface FrameWriterOptions extends FrameStreamOptions {
  /**
   * The socket under the writable, for writing DATA payloads and raw bytes with partial
   * writes. Each partial write counts as activity, so a slow reader's progress shows as soon as
   * the kernel takes bytes; through the stream it would show only once a whole piece is written
   * (a MiB, which a slow reader can take longer than an idle timeout to drain).
   */
  direct: DirectWriter;
}

/** Writes frames to a byte sink; writes are queued in order. */
export class FrameWriter {
  #writer: WritableStreamDefaultWriter<Uint8Array>;

  #activity?: Activity;
  #direct: DirectWriter;
  #corked?: Uint8Array[];
  #corkedBytes = 0;
  /** Settles once everything handed to the stream so far is written (or has failed). */
  #tail: Promise<unknown> = Promise.resolve();
  /** Set while a DATA frame or raw payload is part-way out; settles when it is done. */
  #busy?: Promise<void>;

  /**
   * Wraps a socket's writable (`conn.writable`), which is locked from now on, for control
   * frames; DATA payloads and raw bytes go through `direct`, the same socket (see
   * {@link FrameWriterOptions}).
   */
  constructor(writable: WritableStream<Uint8Array>, options: FrameWriterOptions) {
    this.#writer = writable.getWriter();
    this.#activity = options.activity;
    this.#direct = options.direct;
  }

  #touch(bytes: number): void {
    const activity = this.#activity;
    if (!activity) return;
    activity.last = Date.now();
    if (activity.sent !== undefined) activity.sent += bytes;
  }

  /** Hands bytes to the stream, remembering the write so direct writes can wait for it. */
  #queue(bytes: Uint8Array): Promise<void> {
    const written = this.#writer.write(bytes);
    this.#tail = written.catch(() => {});
    return written;
  }

  /**
   * Runs `send` as the only writer: a frame written meanwhile (an ERROR from the idle watchdog,
   * say) would otherwise land inside the payload. Callers wait for {@link #busy} to clear
   * before they queue anything, and check again after every wait.
   */
  async #exclusive(send: () => Promise<void>): Promise<void> {
    while (this.#busy) await this.#busy;
    const done = Promise.withResolvers<void>();
    this.#busy = done.promise;
    try {
      await send();
    } finally {
      this.#busy = undefined;
      done.resolve();
    }
  }

  /** Marks the peer as behind (see {@link Activity.peerBehind}) while `write` waits. */
  async #waiting<T>(write: Promise<T>): Promise<T> {
    const activity = this.#activity;
    if (!activity) return await write;
    const wasBehind = activity.peerBehind === true;
    activity.peerBehind = true;
    const started = Date.now();
    try {
      return await write;
    } finally {
      // A quick write found room: nothing piled up, unless something had before. Only the
      // peer's next bytes (see FrameReader) show that it has caught up.
      if (!wasBehind && Date.now() - started <= SLOW_WRITE_MS) activity.peerBehind = false;
    }
  }

  /** Writes through the socket itself, stamping activity after every partial write. */
  async #writeDirect(parts: Uint8Array[]): Promise<void> {
    // Whatever is queued on the stream must leave first.
    await this.#tail;
    for (const part of parts) {
      for (let offset = 0; offset < part.length;) {
        const n = await this.#waiting(this.#direct.write(part.subarray(offset)));
        if (n <= 0) throw new Deno.errors.WriteZero("The connection took no bytes");
        offset += n;
        this.#touch(n);
      }
    }
  }

  /**
   * Holds back small writes until {@link uncork} (or until they pass {@link CORK_LIMIT}), so the
   * frames of a small transfer leave in one packet. Without this each small frame waited for the
   * peer's delayed ACK on TLS connections, which cannot turn Nagle off (docs/performance.md, "Small
   * frames leave at once").
   */
  cork(): void {
    this.#corked ??= [];
  }

  /** Sends everything held back by {@link cork} in one write, and stops holding back. */
  async uncork(): Promise<void> {
    const parts = this.#corked;
    this.#corked = undefined;
    this.#corkedBytes = 0;
    if (!parts?.length) return;
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      all.set(part, offset);
      offset += part.length;
    }
    while (this.#busy) await this.#busy;
    await this.#queue(all);
    this.#touch(all.length);
  }

  /** Holds a copy of `bytes` back if corked; false if it must be written now. */
  async #hold(bytes: Uint8Array): Promise<boolean> {
    if (!this.#corked) return false;
    this.#corked.push(bytes.slice());
    this.#corkedBytes += bytes.length;
    if (this.#corkedBytes > CORK_LIMIT) await this.uncork();
    return true;
  }

  /** Writes raw bytes, such as the preamble or the seed protocol's unframed data. */
  async writeRaw(bytes: Uint8Array): Promise<void> {
    if (await this.#hold(bytes)) return;
    await this.#exclusive(() => this.#writeDirect([bytes]));
  }

  /** Writes a control frame; never inside a DATA frame that is part-way out. */
  async writeControl(type: FrameTypeCode, message: object): Promise<void> {
    const frame = encodeControl(type, message);
    if (await this.#hold(frame)) return;
    while (this.#busy) await this.#busy;
    await this.#queue(frame);
    this.#touch(frame.length);
  }

  /**
   * Writes a DATA frame. The chunk must not be modified until the returned promise settles; it
   * is handed to the socket without a copy (unless corked, when a small chunk is copied).
   */
  async writeData(chunk: Uint8Array): Promise<void> {
    if (this.#corked && this.#corkedBytes + chunk.length <= CORK_LIMIT) {
      await this.#hold(encodeHeader(FrameType.DATA, chunk.length));
      await this.#hold(chunk);
      return;
    }
    await this.uncork();
    const header = encodeHeader(FrameType.DATA, chunk.length);
    await this.#exclusive(() => this.#writeDirect([header, chunk]));
  }

  /** Closes the sink, which half-closes a TCP connection. */
  async close(): Promise<void> {
    while (this.#busy) await this.#busy;
    await this.#writer.close().catch(() => {});
  }

  /** Aborts the sink. */
  async abort(): Promise<void> {
    await this.#writer.abort().catch(() => {});
  }
}
