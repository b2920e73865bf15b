/**
 * The protocol's error codes, declared once: what each means, and what it means for the
 * connection. The {@link ErrorCode} type, the check of codes that arrive from a peer and the
 * client's rule for keeping a connection after a failure all come from {@link ERROR_CODES}. Also
 * the {@link ErrorMessage} that carries a code (ERROR, ABORT, a tree file's failed RESULT) and its
 * validation, {@link parseError}, shared by lib/protocol.ts and lib/tree_transfer_protocol.ts.
 * docs/protocol.md ("Error codes") is the prose version of this table.
 *
 * @module
 */

import { CONTROL_RUNS } from "./terminal_chars.ts";

/** What one error code says. */
export interface ErrorCodeInfo {
  /** What went wrong, as docs/protocol.md says it. */
  readonly meaning: string;
  /**
   * The connection stays in step and can carry the next request: the server sends this code
   * only in place of an OK, refusing a request before its data phase or a put after it (in place
   * of the final OK). False for a code that may come part-way through a transfer, or as the
   * server hangs up.
   */
  readonly inStep: boolean;
  /** The message quotes the name asked for, so a client need not name it again. */
  readonly quotesName?: true;
  /**
   * The server sends it as it cuts the connection (a time limit passed, it is shutting down),
   * not to refuse the request: the connection is gone, whatever the request was.
   */
  readonly cuts?: true;
}

/** Every error code of the protocol, with what it means. */
export const ERROR_CODES = {
  bad_request: {
    meaning: "malformed or unexpected message, or an upload unlike its announced size",
    inStep: false,
  },
  bad_name: {
    meaning: "the name breaks the naming rules, or leads outside",
    inStep: true,
    quotesName: true,
  },
  exists: {
    meaning: "put without overwrite, and the name is taken",
    inStep: true,
    quotesName: true,
  },
  in_progress: {
    meaning: "another upload of the name is under way (overwriting would not help; waiting may)",
    inStep: true,
    quotesName: true,
  },
  not_found: { meaning: "get of a name that does not exist", inStep: true, quotesName: true },
  not_a_file: {
    meaning: "the name is a folder, or a folder in its path is a file",
    inStep: true,
    quotesName: true,
  },
  checksum: { meaning: "END did not match the data received", inStep: false },
  too_large: { meaning: "over the server's size limit", inStep: false },
  no_space: { meaning: "the server's disk is full", inStep: false },
  busy: { meaning: "the server has too many connections", inStep: false },
  read_only: { meaning: "the server does not accept uploads", inStep: true },
  denied: { meaning: "not allowed", inStep: true },
  unsupported: { meaning: "the server does not offer this", inStep: false },
  timeout: {
    meaning: "a time limit passed: idle, handshake, request or minimum rate",
    inStep: false,
    cuts: true,
  },
  shutdown: {
    meaning: "the server is shutting down and cut the connection",
    inStep: false,
    cuts: true,
  },
  io: {
    meaning: "anything else; the message says what, never where the server keeps its files",
    inStep: false,
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** Machine-readable reasons for a refusal or failure. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Whether `code` is one of the protocol's error codes.
 *
 * @example
 * ```ts
 * isErrorCode("exists"); // true
 * isErrorCode("toString"); // false
 * ```
 */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

/**
 * Whether a refusal with `code` leaves the connection in step, ready for the next request (see
 * {@link ErrorCodeInfo.inStep}).
 */
export function keepsConnection(code: ErrorCode): boolean {
  return ERROR_CODES[code].inStep;
}

/** Whether the message of a refusal with `code` quotes the name asked for. */
export function quotesName(code: ErrorCode): boolean {
  const info: ErrorCodeInfo = ERROR_CODES[code];
  return info.quotesName === true;
}

/** Whether the server sends `code` as it cuts the connection (see {@link ErrorCodeInfo.cuts}). */
export function cutsConnection(code: ErrorCode): boolean {
  const info: ErrorCodeInfo = ERROR_CODES[code];
  return info.cuts === true;
}

/** Refusal, failure or abort. */
export interface ErrorMessage {
  /** Machine-readable reason. */
  code: ErrorCode;
  /** One human sentence, sentence case, no trailing period. */
  message: string;
}

/** Validates an ERROR or ABORT payload; unknown codes become `io`, messages are clipped. */
export function parseError(json: Record<string, unknown>): ErrorMessage {
  const code = isErrorCode(json.code) ? json.code : "io";
  const raw = typeof json.message === "string" ? json.message : "No reason given";
  // A hostile peer must not be able to paint the user's terminal: one line, printable only.
  const message = raw.replace(CONTROL_RUNS, " ").slice(0, 500);
  return { code, message };
}
