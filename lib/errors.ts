/**
 * Error classes shared by the server, the client and the CLIs. Each carries a message fit to show
 * a user as one line; the CLIs map them to exit codes.
 *
 * @module
 */

import type { ErrorCode } from "./error_codes.ts";

/** The peer broke the protocol, or the connection ended mid-message. */
export class ProtocolError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/**
 * The connection ended part-way through a message or a transfer. What arrived before it is good
 * (see {@link interruptionOf}).
 */
export class ClosedEarlyError extends ProtocolError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ClosedEarlyError";
  }
}

/**
 * The data received is not what its sender says it sent: another size, or another checksum.
 * The peer is told `checksum`.
 */
export class ChecksumMismatchError extends ProtocolError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ChecksumMismatchError";
  }
}

/** The server refused a request or reported a failure (the seed's `cancel`). */
export class RefusedError extends Error {
  /** Machine-readable reason sent by the server. */
  code: ErrorCode;

  /** Creates the error. */
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "RefusedError";
    this.code = code;
  }

  /**
   * The same refusal with the way out the client knows and the server cannot (which command
   * and flags were used) after its message: `... (use --overwrite to replace it)`.
   */
  withHint(hint: string): RefusedError {
    return new RefusedError(this.code, `${this.message} (${hint})`);
  }
}

/** A request that breaks the rules of the store (bad name, exists, missing, ...). */
export class StoreError extends Error {
  /** Reason to send to the client. */
  code: ErrorCode;

  /** Creates the error. */
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "StoreError";
    this.code = code;
  }
}

/** A command line that cannot be run as written; the CLIs exit with 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A failure the user can act on (local file exists, cannot connect, ...); the CLIs exit with 1. */
export class UserError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/**
 * Standard output's reader went away (`ferry ... list | head`): a listing stops there quietly,
 * as `ls` does; a download to stdout still says it did not finish.
 */
export class StdoutClosed extends UserError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "StdoutClosed";
  }
}

/** Which part of starting a server failed: opening its root folder, or listening. */
export type StartStep = "root" | "listen";

/**
 * A server could not start. `step` says which part failed, so that a message can name the
 * folder or the address, whichever it was; `cause` is the underlying error.
 */
export class StartError extends Error {
  /** The part that failed. */
  readonly step: StartStep;

  /** Creates the error. */
  constructor(step: StartStep, cause: unknown) {
    super(describeError(cause), { cause });
    this.name = "StartError";
    this.step = step;
  }
}

/**
 * A failure of a local file that the message names (`Cannot read PATH: ...`), so whoever
 * reports it need not name the file again.
 */
export class LocalFileError extends UserError {
  /** The local path the message names. */
  readonly path: string;

  /** Creates the error. */
  constructor(path: string, message: string) {
    super(message);
    this.name = "LocalFileError";
    this.path = path;
  }
}

/**
 * The server closed or reset the connection before a request was done, or cut it and said why
 * (an ERROR such as its idle timeout). Counts as an interruption: what arrived before is good.
 */
export class ConnectionClosedError extends UserError {
  /** `host:port` of the server. */
  readonly target: string;
  /** What the server said, or how the connection ended; absent for a plain close. */
  readonly reason?: string;

  /** Creates the error: `Server at TARGET closed the connection[: REASON]`. */
  constructor(target: string, reason?: string) {
    super(`Server at ${target} closed the connection${reason ? `: ${reason}` : ""}`);
    this.name = "ConnectionClosedError";
    this.target = target;
    this.reason = reason;
  }
}

/** Returns a one-line description of any thrown value, for logs and the CLI. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const text = error.message.split("\n")[0] || error.name;
    return text;
  }
  return String(error);
}

/**
 * How the connection went away (cut, reset, timed out), as a few words for a log, if that is why
 * a transfer failed; null for data known to be bad or a refusal. What arrived before such a
 * failure is good and worth keeping for a resume.
 */
export function interruptionOf(error: unknown): string | null {
  if (error instanceof ConnectionClosedError) return "connection closed";
  if (error instanceof ClosedEarlyError) return "connection closed";
  if (error instanceof Deno.errors.UnexpectedEof) return "connection closed";
  if (error instanceof Deno.errors.BadResource) return "connection closed";
  if (error instanceof Deno.errors.ConnectionReset) return "connection reset";
  if (error instanceof Deno.errors.BrokenPipe) return "broken pipe";
  if (error instanceof Deno.errors.ConnectionAborted) return "connection aborted";
  if (error instanceof Deno.errors.TimedOut) return "connection timed out";
  if (error instanceof Deno.errors.Interrupted) return "interrupted";
  return null;
}

/** Whether a transfer failed because the connection went away (see {@link interruptionOf}). */
export function isInterruption(error: unknown): boolean {
  return interruptionOf(error) !== null;
}

/**
 * Whether an operating-system error says the disk is full (ENOSPC), or the user's quota on it
 * is (EDQUOT): either way, freeing space would let the same write succeed.
 */
export function isNoSpace(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "ENOSPC" || code === "EDQUOT";
}
