/**
 * The ferry wire messages: the JSON each control frame carries, and the validation of every
 * message that arrives (parse*), with the listings a data phase carries. The frame layout is in
 * lib/frames.ts, reading and writing frames in lib/frame_reader.ts and lib/frame_writer.ts, the
 * folder requests' messages in lib/tree_protocol.ts and the tree transfers' in
 * lib/tree_transfer_protocol.ts. docs/protocol.md is the prose version of these; keep them in step.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import {
  type ListRequest,
  parseListRequest,
  parseTreeChange,
  type TreeChangeRequest,
} from "./tree_protocol.ts";
import { parseTreeTransfer, type TreeTransferRequest } from "./tree_transfer_protocol.ts";

export type { ListRequest, TreeChangeRequest, TreeTransferRequest };

// ERROR and ABORT are wire messages too; they are declared with the codes they carry.
export { type ErrorCode, type ErrorMessage, parseError } from "./error_codes.ts";

/** Client greeting. */
export interface Hello {
  /** Client software and version, for logs. */
  client: string;
  /**
   * Asks the server to send KEEPALIVE at least this often (ms) while it works on a request
   * without sending anything, so that a client watching for a stalled server can tell the two
   * apart. Absent: the server sends none.
   */
  keepalive?: number;
}

/** Shortest KEEPALIVE interval a server honours, in ms; a shorter request gets this one. */
export const KEEPALIVE_MIN_MS = 100;

/**
 * Longest KEEPALIVE interval either end asks the other for (a quarter of its timeout otherwise):
 * the most a sign of life then costs is a few bytes a second.
 */
export const KEEPALIVE_MAX_MS = 5000;

/**
 * The WELCOME feature of a server that takes work notices (KEEPALIVE `{"work": N}`,
 * lib/tree_work.ts) from a resumed put's client between its OK `{offset, prefix}` and the first
 * DATA, while the client hashes its first `offset` bytes: a client sends them only to a server
 * that names it, which no older server does.
 */
export const PUT_RESUME_WORK_FEATURE = "put-resume-work";

/** Server greeting. */
export interface Welcome {
  /** Server software and version. */
  server: string;
  /** Optional capabilities the server offers; unknown entries are ignored. */
  features: string[];
  /** When the server requires a token: a fresh random nonce, 64 hex digits. */
  challenge?: string;
  /**
   * How often (ms) the server wants a client that hashes files in a tree transfer (or the start of
   * a resumed put) to tell it so (lib/tree_work.ts), within its idle timeout; absent from servers
   * that predate it.
   */
  keepalive?: number;
}

/** Proof that the client knows the shared token, without sending it. */
export interface Auth {
  /** The client's own fresh nonce, 64 hex digits. */
  nonce: string;
  /** HMAC-SHA256 of the challenge and nonce under the token, 64 hex digits. */
  mac: string;
}

/** Upload request. */
export interface PutRequest {
  /** Operation. */
  op: "put";
  /** Remote name, relative to the served root. */
  name: string;
  /** Byte count when known in advance, or null when streamed. */
  size: number | null;
  /** Replace an existing file atomically instead of refusing. */
  overwrite: boolean;
  /** Continue the server's kept copy of an interrupted upload of this name, if it has one. */
  resume?: boolean;
}

/** Download request. */
export interface GetRequest {
  /** Operation. */
  op: "get";
  /** Remote name, relative to the served root. */
  name: string;
  /** Resume: bytes the client already has; honoured only if `prefix` matches. */
  offset?: number;
  /** Resume: checksum of the client's first `offset` bytes. */
  prefix?: string;
  /**
   * The client's `--limit-rate`, bytes per second: the server paces the data phase to it, so
   * bytes leave as the client takes them instead of piling up in the kernel's buffers.
   */
  rate?: number;
}

/**
 * Request for the interrupted uploads the server keeps for `put --resume`; a server answers it
 * only if its operator allows (`--show-kept`), and refuses it with `denied` otherwise.
 */
export interface KeptRequest {
  /** Operation. */
  op: "kept";
}

/** Any client request; the folder and tree transfer requests are in lib/tree_*protocol.ts. */
export type Request =
  | PutRequest
  | GetRequest
  | ListRequest
  | KeptRequest
  | TreeChangeRequest
  | TreeTransferRequest;

/** Server acceptance; which fields are present depends on the request. */
export interface Ok {
  /** For get: the file's size when the transfer starts. After put: bytes committed. */
  size?: number;
  /** For get: modification time, milliseconds since the epoch. */
  mtime?: number;
  /** After put: checksum of the committed file. */
  checksum?: string;
  /** After AUTH: the server's proof that it knows the token too. */
  mac?: string;
  /** Resume: where the data phase starts (0 when starting over). */
  offset?: number;
  /** Put resume: checksum of the `offset` bytes the server kept. */
  prefix?: string;
  /** For a typed list that asked for it: the listing comes a JSON entry per line, as walked. */
  stream?: boolean;
}

/** End of a data phase: what the receiver must have seen. */
export interface End {
  /** Total payload bytes sent in DATA frames. */
  size: number;
  /** Checksum of those bytes, `xxh128:` followed by 32 lowercase hex digits. */
  checksum: string;
}

/** A listing entry, as sent in a list data phase. */
export interface ListEntry {
  /** Name relative to the root, `/`-separated. */
  name: string;
  /** Size in bytes. */
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  /**
   * The name on the server is not valid UTF-8: `name` holds U+FFFD for each sequence that is
   * not, so no request can name the file, and `size` and `mtime` are 0 (unknown).
   */
  notUtf8?: boolean;
}

/** A kept interrupted upload, as sent in a kept data phase. */
export interface KeptEntry {
  /** The upload's remote name, relative to the root, `/`-separated. */
  name: string;
  /** Bytes kept. */
  bytes: number;
  /** Size the upload announced (the whole file), or null if it announced none. */
  size: number | null;
  /** When it was kept, milliseconds since the epoch. */
  keptAt: number;
  /** When the server will remove it, milliseconds since the epoch. */
  expiresAt: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function isSize(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function malformed(what: string): ProtocolError {
  return new ProtocolError(`Malformed ${what} message`);
}

/** Validates a HELLO payload. */
export function parseHello(json: Record<string, unknown>): Hello {
  if (typeof json.client !== "string") throw malformed("HELLO");
  const hello: Hello = { client: json.client };
  if (json.keepalive !== undefined) {
    if (typeof json.keepalive !== "number" || !(json.keepalive > 0)) throw malformed("HELLO");
    hello.keepalive = Math.max(KEEPALIVE_MIN_MS, json.keepalive);
  }
  return hello;
}

/** Validates a WELCOME payload. */
export function parseWelcome(json: Record<string, unknown>): Welcome {
  if (typeof json.server !== "string") throw malformed("WELCOME");
  const features = Array.isArray(json.features)
    ? json.features.filter((f): f is string => typeof f === "string")
    : [];
  const welcome: Welcome = { server: json.server, features };
  if (json.challenge !== undefined) {
    if (!isHex64(json.challenge)) throw malformed("WELCOME");
    welcome.challenge = json.challenge;
  }
  if (json.keepalive !== undefined) {
    if (typeof json.keepalive !== "number" || !(json.keepalive > 0)) throw malformed("WELCOME");
    welcome.keepalive = Math.max(KEEPALIVE_MIN_MS, json.keepalive);
  }
  return welcome;
}

function isHex64(value: unknown): value is string {
  return typeof value === "string" && /^[0-9a-f]{64}$/.test(value);
}

/** Validates an AUTH payload. */
export function parseAuth(json: Record<string, unknown>): Auth {
  if (!isHex64(json.nonce) || !isHex64(json.mac)) throw malformed("AUTH");
  return { nonce: json.nonce, mac: json.mac };
}

/** Validates a REQUEST payload. */
export function parseRequest(json: Record<string, unknown>): Request {
  switch (json.op) {
    case "put":
      if (typeof json.name !== "string") throw malformed("REQUEST");
      if (json.size !== null && !isSize(json.size)) throw malformed("REQUEST");
      return {
        op: "put",
        name: json.name,
        size: json.size,
        overwrite: json.overwrite === true,
        resume: json.resume === true,
      };
    case "get": {
      if (typeof json.name !== "string") throw malformed("REQUEST");
      const get: GetRequest = { op: "get", name: json.name };
      if (json.offset !== undefined) {
        if (!isSize(json.offset) || typeof json.prefix !== "string") throw malformed("REQUEST");
        get.offset = json.offset;
        get.prefix = json.prefix;
      }
      if (json.rate !== undefined) {
        if (typeof json.rate !== "number" || !(json.rate >= 1) || !Number.isFinite(json.rate)) {
          throw malformed("REQUEST");
        }
        get.rate = json.rate;
      }
      return get;
    }
    case "list":
      return parseListRequest(json);
    case "kept":
      return { op: "kept" };
    case "rm":
    case "mv":
    case "mkdir":
      return parseTreeChange(json);
    case "put_tree":
    case "get_tree":
    case "put_files":
    case "get_files":
      return parseTreeTransfer(json);
    default:
      throw new ProtocolError(`Unknown operation ${JSON.stringify(String(json.op)).slice(0, 40)}`);
  }
}

/** Validates an OK payload. */
export function parseOk(json: Record<string, unknown>): Ok {
  const ok: Ok = {};
  if (json.size !== undefined) {
    if (!isSize(json.size)) throw malformed("OK");
    ok.size = json.size;
  }
  if (json.mtime !== undefined) {
    if (typeof json.mtime !== "number" || !Number.isFinite(json.mtime)) throw malformed("OK");
    ok.mtime = json.mtime;
  }
  if (json.checksum !== undefined) {
    if (typeof json.checksum !== "string") throw malformed("OK");
    ok.checksum = json.checksum;
  }
  if (json.mac !== undefined) {
    if (!isHex64(json.mac)) throw malformed("OK");
    ok.mac = json.mac;
  }
  if (json.offset !== undefined) {
    if (!isSize(json.offset)) throw malformed("OK");
    ok.offset = json.offset;
  }
  if (json.stream !== undefined) {
    if (typeof json.stream !== "boolean") throw malformed("OK");
    ok.stream = json.stream;
  }
  if (json.prefix !== undefined) {
    if (typeof json.prefix !== "string") throw malformed("OK");
    ok.prefix = json.prefix;
  }
  return ok;
}

/** Validates an END payload. */
export function parseEnd(json: Record<string, unknown>): End {
  if (!isSize(json.size) || typeof json.checksum !== "string") throw malformed("END");
  return { size: json.size, checksum: json.checksum };
}

/** Parses a data phase that holds a JSON array of objects; throws `Malformed WHAT` otherwise. */
function parseObjects(bytes: Uint8Array, what: string): Record<string, unknown>[] {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new ProtocolError(`Malformed ${what}`);
  }
  if (!Array.isArray(value)) throw new ProtocolError(`Malformed ${what}`);
  return value.map((entry) => {
    if (typeof entry !== "object" || entry === null) throw new ProtocolError(`Malformed ${what}`);
    return entry;
  });
}

/** Validates a list data phase: a JSON array of {@link ListEntry}. */
export function parseListing(bytes: Uint8Array): ListEntry[] {
  return parseObjects(bytes, "listing").map((entry) => {
    if (typeof entry.name !== "string" || !isSize(entry.size) || typeof entry.mtime !== "number") {
      throw new ProtocolError("Malformed listing");
    }
    return {
      name: entry.name,
      size: entry.size,
      mtime: entry.mtime,
      ...(entry.notUtf8 === true ? { notUtf8: true } : {}),
    };
  });
}

/** Validates a kept data phase: a JSON array of {@link KeptEntry}. */
export function parseKeptListing(bytes: Uint8Array): KeptEntry[] {
  const isTime = (value: unknown): value is number =>
    typeof value === "number" && Number.isFinite(value);
  return parseObjects(bytes, "kept listing").map((entry) => {
    if (
      typeof entry.name !== "string" || !isSize(entry.bytes) ||
      (entry.size !== null && !isSize(entry.size)) || !isTime(entry.keptAt) ||
      !isTime(entry.expiresAt)
    ) {
      throw new ProtocolError("Malformed kept listing");
    }
    return {
      name: entry.name,
      bytes: entry.bytes,
      size: entry.size,
      keptAt: entry.keptAt,
      expiresAt: entry.expiresAt,
    };
  });
}

/** Encodes a listing for a list or kept data phase. */
export function encodeListing(entries: ListEntry[] | KeptEntry[]): Uint8Array {
  return encoder.encode(JSON.stringify(entries));
}
