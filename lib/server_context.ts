/**
 * What the server's parts share: the server-wide {@link Context}, each connection's
 * {@link Tracked} state and {@link Channel}, a request's {@link Outcome}, and the log lines' time
 * stamp.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import type { Store } from "./store.ts";
import type { ErrorMessage } from "./protocol.ts";
import type { FrameReader } from "./frame_reader.ts";
import type { FrameWriter } from "./frame_writer.ts";
import type { Admission, Ticket } from "./admission.ts";
import type { Watch } from "./watchdog.ts";

/** The server-wide settings and state every connection is served with. */
export interface Context {
  store: Store;
  pool: BufferPool;
  log: (line: string) => void;
  legacy: boolean;
  readOnly: boolean;
  showKept: boolean;
  token?: Uint8Array;
  maxSize?: number;
  /** Least data rate, bytes per second (0: none); a paced get goes no slower either. */
  minRate: number;
  /** Set once the server is listening. */
  admission?: Admission<Tracked>;
}

/** Per-connection state the watchdog, the shutdown and the handler share. */
export interface Tracked {
  conn: Deno.Conn;
  /** The watchdog's view of it; its activity is stamped by the frame reader and writer. */
  watch: Watch;
  /** Its place in the admission's pools. */
  ticket: Ticket<Tracked>;
  /**
   * Why the server cut it (idle, shutting down), if it did. An upload on a connection the
   * server cut is discarded, never kept for a resume: the client did not leave, it was sent away.
   */
  reason?: string;
  /** Sends the client an ERROR saying why, then closes; set once it has spoken ferry. */
  tell?: (error: ErrorMessage) => void;
}

/** What a request did, for its log line. */
export interface Outcome {
  bytes: number;
  result: string;
  /** The connection cannot carry another request. */
  close?: boolean;
  /** The server cut it, and `result` says why. */
  cut?: boolean;
}

/** One ferry connection as its requests see it: its frames both ways and what the handshake set. */
export interface Channel {
  frames: FrameReader;
  out: FrameWriter;
  peer: string;
  entry: Tracked;
  /** The server's preamble is out (or queued): an ERROR may follow it directly. */
  preambleSent: boolean;
  /** How often the client asked for KEEPALIVE while the server works (ms); none if unset. */
  keepaliveMs?: number;
}

/** A log line's time stamp. */
export function stamp(): string {
  return new Date().toISOString();
}
