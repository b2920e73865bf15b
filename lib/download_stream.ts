/**
 * A download as a `ReadableStream`: the {@link DownloadTarget} behind `Session.getStream`. It owns
 * the hand-over from the transfer's reused buffers to a stream reader, with backpressure, and
 * when the stream ends: it closes only after the transfer is verified, and errors otherwise.
 *
 * @module
 */

import type { DownloadTarget } from "./client_session.ts";

/** Options for {@link downloadStream}. */
export interface DownloadStreamOptions {
  /**
   * Called once if the reader cancels the stream before the transfer ends. The protocol cannot
   * stop a download midway, so the session's connection must be closed.
   */
  onCancel?: () => void;
}

/** The two ends of a download stream. */
export interface DownloadStream {
  /** What the reader reads: verified once it closes. */
  readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** What the transfer writes into. */
  target: DownloadTarget;
}

/** Thrown into the transfer when the reader cancels the stream. */
class Cancelled extends Error {
  constructor() {
    super("Download stream cancelled by its reader");
    this.name = "Cancelled";
  }
}

/**
 * A target whose bytes come out of `readable`. Each write is copied (the transfer reuses its
 * buffers) and then waits until the reader wants more, so at most about one chunk (1 MiB) waits
 * in the stream, however slow the reader.
 */
export function downloadStream(options: DownloadStreamOptions = {}): DownloadStream {
  let controller!: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>>;
  let demand: PromiseWithResolvers<void> | undefined;
  let cancelled = false;
  let ended = false;
  const readable = new ReadableStream<Uint8Array<ArrayBuffer>>({
    start(c) {
      controller = c;
    },
    pull() {
      demand?.resolve();
    },
    cancel() {
      cancelled = true;
      demand?.resolve();
      if (!ended) options.onCancel?.();
    },
  }, { highWaterMark: 1 });
  const target: DownloadTarget = {
    async write(chunk) {
      if (cancelled) throw new Cancelled();
      controller.enqueue(chunk.slice());
      while (!cancelled && (controller.desiredSize ?? 0) <= 0) {
        demand = Promise.withResolvers();
        await demand.promise;
      }
      if (cancelled) throw new Cancelled();
    },
    commit() {
      ended = true;
      if (!cancelled) controller.close();
      return Promise.resolve();
    },
    discard(cause) {
      ended = true;
      if (!cancelled) controller.error(cause);
      return Promise.resolve();
    },
  };
  return { readable, target };
}
