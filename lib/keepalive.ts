/**
 * Telling the peer, while a long job of this end's own runs (hashing, committing), that it is
 * still at work: a KEEPALIVE every so often, so that the peer's idle or stall timeout does not
 * take the silence for a dead connection. One loop for every such job; what each notice says is
 * the caller's.
 *
 * @module
 */

import { FrameType } from "./frames.ts";
import type { FrameWriter } from "./frame_writer.ts";

/**
 * Runs `work`, writing a KEEPALIVE with the body `notice()` gives every `everyMs` meanwhile (none
 * for a tick where it gives undefined; none at all when `everyMs` is undefined: the peer did not
 * ask). Resolves only once the last notice is written, so no frame comes between it and what
 * follows. A notice leaves at once, with whatever a cork held back.
 *
 * @example
 * ```ts
 * import { keepingAlive } from "./keepalive.ts";
 * import type { FrameWriter } from "./frame_writer.ts";
 *
 * declare const out: FrameWriter;
 * const sum = await keepingAlive(out, 1000, () => ({}), () => Promise.resolve("xxh128:..."));
 * ```
 */
export async function keepingAlive<T>(
  out: FrameWriter,
  everyMs: number | undefined,
  notice: () => Record<string, unknown> | undefined,
  work: () => Promise<T>,
): Promise<T> {
  if (everyMs === undefined) return await work();
  let writing = Promise.resolve();
  const timer = setInterval(() => {
    const body = notice();
    if (body === undefined) return;
    // A failed write means the peer is gone; the job's own end will say so.
    writing = writing.then(async () => {
      await out.writeControl(FrameType.KEEPALIVE, body);
      await out.uncork();
    }).catch(() => {});
  }, everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    await writing;
  }
}
