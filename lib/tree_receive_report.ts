/**
 * What the receiving end of a tree transfer (lib/tree_receive.ts) says of each name's fate, to
 * both listeners at once: the user, through {@link TreeEvent}s, and the sender, through RESULT
 * frames; and the {@link TreeSummary} it counts on the way and sends with the final OK.
 *
 * @module
 */

import { describeError, RefusedError, StoreError } from "./errors.ts";
import { FrameType } from "./frames.ts";
import type { FrameWriter } from "./frame_writer.ts";
import type { TransferResult } from "./transfer.ts";
import type { TreeSummary } from "./tree_transfer_protocol.ts";
import type { TreeEvent } from "./tree_transfer.ts";

/**
 * The reports of one tree transfer's receiving end, and its summary.
 *
 * @example
 * ```ts
 * import { FrameWriter } from "./frame_writer.ts";
 * import { ReceiveReport } from "./tree_receive_report.ts";
 *
 * const conn = await Deno.connect({ port: 9000 });
 * const out = new FrameWriter(conn.writable, { direct: conn });
 * const report = new ReceiveReport(out, (event) => console.log(event.kind, event.path));
 * report.skipped("docs/a.txt");
 * await report.finish(); // OK {"files": 0, "skipped": 1, ...}
 * ```
 */
export class ReceiveReport {
  /** What the transfer did so far; sent with the final OK. */
  readonly summary: TreeSummary = {
    files: 0,
    skipped: 0,
    deleted: 0,
    failed: 0,
    bytes: 0,
    resumed: 0,
  };
  #out: FrameWriter;
  #onEvent?: (event: TreeEvent) => void;

  /** Reports go to the sender through `out`, to the user through `onEvent` (none by default). */
  constructor(out: FrameWriter, onEvent?: (event: TreeEvent) => void) {
    this.#out = out;
    this.#onEvent = onEvent;
  }

  /** Tells the user of an event that counts for nothing (a name the sender left out, say). */
  note(event: TreeEvent): void {
    this.#onEvent?.(event);
  }

  /** A file (or link) that failed, with its error's code (`io` for one that has none). */
  async failed(index: number, path: string, error: unknown): Promise<void> {
    this.summary.failed++;
    const message = describeError(error);
    const code = error instanceof StoreError || error instanceof RefusedError ? error.code : "io";
    this.#onEvent?.({ kind: "failed", path, message, index, code });
    await this.#out.writeControl(FrameType.RESULT, { index, ok: false, code, message });
  }

  /**
   * A file refused before it was asked for, without a code: the sender hears `message`, the user
   * `note` (by default the same).
   */
  async refused(index: number, path: string, message: string, note = message): Promise<void> {
    this.summary.failed++;
    this.#onEvent?.({ kind: "failed", path, message: note });
    await this.#out.writeControl(FrameType.RESULT, { index, ok: false, message });
  }

  /** A file the receiver has already. */
  skipped(path: string): void {
    this.summary.skipped++;
    this.#onEvent?.({ kind: "skipped", path });
  }

  /** A name the sender does not have, removed (`--delete`). */
  async deleted(path: string): Promise<void> {
    this.summary.deleted++;
    this.#onEvent?.({ kind: "deleted", path });
    await this.#out.writeControl(FrameType.RESULT, { deleted: path });
  }

  /** A dry run's file that would be sent: counted as the transfer would count it. */
  wouldReceive(path: string, size: number): void {
    this.summary.files++;
    this.summary.bytes += size;
    this.#onEvent?.({ kind: "sent", path, size });
  }

  /** A link made as the manifest has it. */
  async madeLink(index: number, path: string): Promise<void> {
    this.summary.files++;
    this.#onEvent?.({ kind: "sent", path, size: 0, index });
    await this.#out.writeControl(FrameType.RESULT, { index, ok: true });
  }

  /**
   * A file received and committed, durable: `result` is what was verified, `resumed` the bytes
   * of it that an interrupted transfer had kept. Counted and told at once; the promise is the
   * RESULT's write.
   */
  committed(index: number, path: string, result: TransferResult, resumed: number): Promise<void> {
    this.summary.files++;
    this.summary.bytes += result.size;
    this.summary.resumed! += resumed;
    this.#onEvent?.({ kind: "sent", path, size: result.size, index, checksum: result.checksum });
    return this.#out.writeControl(FrameType.RESULT, { index, ok: true });
  }

  /** Ends the transfer: OK with the summary. */
  async finish(): Promise<TreeSummary> {
    await this.#out.writeControl(FrameType.OK, { ...this.summary });
    return this.summary;
  }
}
