/**
 * What a client session offers, whichever protocol the server speaks ({@link ClientSession}:
 * ferry's `Session`, the seed's `LegacySession`): put, get, list and kept, with their options,
 * results and the {@link DownloadTarget} a download writes to.
 *
 * @module
 */

import type { KeptEntry, ListEntry } from "./protocol.ts";
import type { ByteSink, ByteSource, ResumePoint, Throttle, TransferResult } from "./transfer.ts";

/** Pacing and progress options shared by put and get. */
export interface FlowOptions {
  /** Running byte count, including any resumed start. */
  onProgress?: (bytes: number) => void;
  /** Awaited per chunk with its size: a rate limit's pacing. */
  throttle?: Throttle;
  /** Largest chunk, to keep a rate limit smooth. */
  maxChunk?: number;
  /** The rate limit, bytes per second, for a server that paces downloads to it. */
  rate?: number;
}

/** Options for {@link Session.put}. */
export interface PutOptions extends FlowOptions {
  /** Byte count when known; null when streaming. */
  size?: number | null;
  /** Replace an existing remote file. */
  overwrite?: boolean;
  /**
   * Resume: the open local file behind `source`, so the bytes the server kept can be checked
   * against it and skipped. The file must be positioned at 0.
   */
  resumeFile?: {
    read(p: Uint8Array): Promise<number | null>;
    seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  };
  /**
   * Resume: called when the server kept data for this name that is not the start of this file
   * (other bytes, or another size), so the upload starts over from 0.
   */
  onStartOver?: () => void;
}

/** Options for {@link Session.get}. */
export interface GetOptions extends FlowOptions {
  /** Resume: bytes already downloaded and their running checksum. */
  resume?: ResumePoint;
}

/** What a put did. */
export interface PutResult extends TransferResult {
  /** Bytes the server already had from an interrupted upload (0 when none). */
  resumedFrom: number;
}

/** What a get did. */
export interface GetResult extends TransferResult {
  /** Bytes that were already downloaded (0 when none). */
  resumedFrom: number;
}

/** Where a download goes, opened once the server has accepted the request. */
export interface DownloadTarget extends ByteSink {
  /** Called after the data is verified. */
  commit(): Promise<void>;
  /** Called on any failure with its cause; removes (or keeps, to resume) what was written. */
  discard(cause: unknown): Promise<void>;
}

/** What the server said about a file it is about to send. */
export interface RemoteFileInfo {
  /** Size when the transfer started. */
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  /** Where the data starts: the resumed size, or 0 when starting over. */
  offset: number;
}

/** The operations the CLI needs, in whichever protocol the server speaks. */
export interface ClientSession {
  /** `host:port` of the server, for messages. */
  readonly target: string;
  /** Whether transfers are verified end to end (false for the seed protocol). */
  readonly verified: boolean;
  /** Uploads `source` as `name`. */
  put(source: ByteSource, name: string, options?: PutOptions): Promise<PutResult>;
  /** Downloads `name` into the target `open` returns once the server accepts. */
  get(
    name: string,
    open: (info: RemoteFileInfo) => Promise<DownloadTarget>,
    options?: GetOptions,
  ): Promise<GetResult>;
  /** Lists the server's files. */
  list(): Promise<ListEntry[]>;
  /** Lists the interrupted uploads the server keeps for `put --resume`, if it allows that. */
  kept(): Promise<KeptEntry[]>;
  /**
   * The session can carry no further request: it was closed, or a refusal came part-way
   * through a transfer, after which the server hangs up whatever the refusal's code.
   */
  readonly closed: boolean;
  /** Ends the session. */
  close(): void;
}
