/**
 * A raw session with the real server, for the socket-level tests: a connection that has
 * completed the handshake, and a put REQUEST frame.
 *
 * @module
 */

import { encodeControl, FrameType } from "../lib/frames.ts";
import type { ServerProcess } from "./harness.ts";
import { Wire } from "./wire.ts";

/** Connects to the real server and completes the handshake. */
export async function openSession(server: ServerProcess): Promise<Wire> {
  const wire = await Wire.connect(server);
  try {
    await wire.handshake();
  } catch (error) {
    wire.close();
    throw error;
  }
  return wire;
}

// ------------------------------------------------------------ names, sizes and what is said

/** A put REQUEST frame. */
export function putRequest(name: string, size: number | null, extra: Record<string, unknown> = {}) {
  return encodeControl(FrameType.REQUEST, { op: "put", name, size, overwrite: false, ...extra });
}
