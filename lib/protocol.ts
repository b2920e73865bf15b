/**
 * The ferry wire format: the preamble that opens a connection, the frame layout, the message
 * types and the validation of every message that arrives. docs/protocol.md is the prose version
 * of this file; keep the two in step.
 *
 * @module
 */

import { type ErrorCode, isErrorCode } from "./error_codes.ts";
import { ClosedEarlyError, ProtocolError, RefusedError } from "./errors.ts";
import { CONTROL_RUNS } from "./terminal_chars.ts";
import {
  type ListRequest,
  parseListRequest,
  parseTreeChange,
  parseTreeTransfer,
  type TreeChangeRequest,
  type TreeTransferRequest,
} from "./tree_protocol.ts";

export type { ListRequest, TreeChangeRequest, TreeTransferRequest };

export type { ErrorCode };

/** Highest protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * First six bytes of every ferry connection, in both directions. The leading NUL can never begin
 * a seed-protocol request line (`put `, `get `, `list`), which is how the two are told apart.
 */
export const MAGIC: Uint8Array = new Uint8Array([0x00, 0x46, 0x45, 0x52, 0x52, 0x59]); // "\0FERRY"

/** Whether a connection's first byte can begin a ferry preamble (see {@link MAGIC}). */
export function startsPreamble(byte: number): boolean {
  return byte === MAGIC[0];
}

/** Preamble length: MAGIC followed by a big-endian u16 version. */
export const PREAMBLE_LENGTH = 8;

/** Frame header length: a u8 type followed by a big-endian u32 payload length. */
export const FRAME_HEADER_LENGTH = 5;

/** The seed's chunk size, and the largest DATA payload a peer may send. */
export const CHUNK_SIZE = 33554432;

/** Largest control (JSON) payload accepted from a peer. */
export const MAX_CONTROL_PAYLOAD = 65536;

/** Frame type codes. */
export const FrameType = {
  /** Client greeting, JSON {@link Hello}. */
  HELLO: 0x01,
  /** Server greeting, JSON {@link Welcome}. */
  WELCOME: 0x02,
  /** Client request, JSON {@link Request}. */
  REQUEST: 0x03,
  /** Server acceptance (the seed's `pass`), JSON {@link Ok}. */
  OK: 0x04,
  /** Refusal or failure (the seed's `cancel`), JSON {@link ErrorMessage}. */
  ERROR: 0x05,
  /** Raw file bytes, 1 to {@link CHUNK_SIZE} of them. */
  DATA: 0x06,
  /** End of a data phase, JSON {@link End}. */
  END: 0x07,
  /** The sender gives up mid-stream, JSON {@link ErrorMessage}. */
  ABORT: 0x08,
  /** Client's answer to the server's challenge, JSON {@link Auth}. */
  AUTH: 0x09,
  /** The server is still at work on the request (the final flush of an upload), JSON `{}`. */
  KEEPALIVE: 0x0a,
  /** Tree transfer: the sender's next batch of entries (lib/tree_protocol.ts). */
  MANIFEST: 0x0b,
  /** Tree transfer: which entries of a batch the receiver needs. */
  WANT: 0x0c,
  /** Tree transfer: one file's data follows (DATA* then END, or ABORT). */
  FILE: 0x0d,
  /** Tree transfer: what became of one file, or a name the receiver deleted. */
  RESULT: 0x0e,
  /** Tree transfer: the sender has sent everything. */
  FINISH: 0x0f,
} as const;

/** A frame type code. */
export type FrameTypeCode = typeof FrameType[keyof typeof FrameType];

const TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(FrameType).map(([name, code]) => [code, name]),
);

/** Name of a frame type code, for messages. */
export function frameTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `0x${type.toString(16).padStart(2, "0")}`;
}

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

/** Server greeting. */
export interface Welcome {
  /** Server software and version. */
  server: string;
  /** Optional capabilities the server offers; unknown entries are ignored. */
  features: string[];
  /** When the server requires a token: a fresh random nonce, 64 hex digits. */
  challenge?: string;
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

/** Any client request; the listing and tree requests are in lib/tree_protocol.ts. */
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
}

/** Refusal, failure or abort. */
export interface ErrorMessage {
  /** Machine-readable reason. */
  code: ErrorCode;
  /** One human sentence, sentence case, no trailing period. */
  message: string;
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

/** Builds the 8-byte preamble for a version. */
export function encodePreamble(version: number = PROTOCOL_VERSION): Uint8Array {
  const out = new Uint8Array(PREAMBLE_LENGTH);
  out.set(MAGIC);
  new DataView(out.buffer).setUint16(6, version);
  return out;
}

/** Checks a preamble and returns its version; throws {@link ProtocolError} if it is not ferry. */
export function decodePreamble(bytes: Uint8Array): number {
  if (bytes.length !== PREAMBLE_LENGTH || !MAGIC.every((b, i) => bytes[i] === b)) {
    throw new ProtocolError("Peer does not speak the ferry protocol");
  }
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint16(6);
}

/** Encodes a frame header. */
export function encodeHeader(type: number, length: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LENGTH);
  const view = new DataView(out.buffer);
  view.setUint8(0, type);
  view.setUint32(1, length);
  return out;
}

/** A decoded frame header. */
export interface FrameHeader {
  /** Frame type code. */
  type: number;
  /** Payload length in bytes. */
  length: number;
}

/**
 * Decodes and checks a frame header: the type must be known and the length within the limit for
 * that type. Throws {@link ProtocolError} otherwise.
 */
export function decodeHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.length !== FRAME_HEADER_LENGTH) throw new ProtocolError("Truncated frame header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const type = view.getUint8(0);
  const length = view.getUint32(1);
  if (!(type in TYPE_NAMES)) {
    throw new ProtocolError(`Unknown frame type ${frameTypeName(type)}`);
  }
  if (type === FrameType.DATA) {
    if (length === 0 || length > CHUNK_SIZE) {
      throw new ProtocolError(`DATA frame of ${length} bytes is out of range`);
    }
  } else if (length > MAX_CONTROL_PAYLOAD) {
    throw new ProtocolError(`${frameTypeName(type)} frame of ${length} bytes is too large`);
  }
  return { type, length };
}

/** Encodes a control frame (header and JSON payload) as one buffer. */
export function encodeControl(type: number, message: object): Uint8Array {
  const payload = encoder.encode(JSON.stringify(message));
  if (payload.length > MAX_CONTROL_PAYLOAD) {
    throw new RangeError(`${frameTypeName(type)} message is too large`);
  }
  const out = new Uint8Array(FRAME_HEADER_LENGTH + payload.length);
  out.set(encodeHeader(type, payload.length));
  out.set(payload, FRAME_HEADER_LENGTH);
  return out;
}

/** Parses a control payload as a JSON object; throws {@link ProtocolError} on anything else. */
export function decodeJson(type: number, payload: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    throw new ProtocolError(`Malformed ${frameTypeName(type)} message`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(`Malformed ${frameTypeName(type)} message`);
  }
  return value as Record<string, unknown>;
}

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
  if (json.prefix !== undefined) {
    if (typeof json.prefix !== "string") throw malformed("OK");
    ok.prefix = json.prefix;
  }
  return ok;
}

/** Validates an ERROR or ABORT payload; unknown codes become `io`, messages are clipped. */
export function parseError(json: Record<string, unknown>): ErrorMessage {
  const code = isErrorCode(json.code) ? json.code : "io";
  const raw = typeof json.message === "string" ? json.message : "No reason given";
  // A hostile peer must not be able to paint the user's terminal: one line, printable only.
  const message = raw.replace(CONTROL_RUNS, " ").slice(0, 500);
  return { code, message };
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

/** A control frame as read from the wire. */
export interface ControlFrame {
  /** Frame type code (never DATA). */
  type: number;
  /** Parsed JSON payload. */
  json: Record<string, unknown>;
}

/** Most bytes {@link FrameWriter.cork} holds back before sending anyway. */
export const CORK_LIMIT = 256 << 10;

/** A write slower than this had to wait for room: the peer is behind (see {@link Activity}). */
const SLOW_WRITE_MS = 200;

/** When a connection last moved a byte, in `Date.now()` milliseconds; for idle timeouts. */
export interface Activity {
  /** Time of the last read or write that made progress. */
  last: number;
  /**
   * True while the peer may still have bytes to read from the kernel's buffers: a write is
   * waiting for room, or one had to wait and the peer has sent nothing since. The kernel reports
   * room only once a third of its send buffer has drained, so meanwhile a slow reader and a
   * stopped one look alike.
   */
  peerBehind?: boolean;
  /** Bytes read so far, counted when set (the server's watchdog judges rates by it). */
  received?: number;
}

/** Options for {@link FrameReader} and {@link FrameWriter}. */
export interface FrameStreamOptions {
  /** Updated whenever bytes move. */
  activity?: Activity;
}

/** A socket's own write, which takes what the kernel will accept now: `Deno.Conn` is one. */
export interface DirectWriter {
  /** Writes some of `bytes` (at least one) and resolves with how many were taken. */
  write(bytes: Uint8Array): Promise<number>;
}

/** Something read in place, into the caller's buffer: `Deno.Conn`, `Deno.FsFile`. */
export interface DirectReader {
  /** Reads into `p`; the number of bytes read (at least one), or null at the end. */
  read(p: Uint8Array): Promise<number | null>;
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

/**
 * A BYOB reader that fills the caller's buffer where it is. A BYOB read transfers the buffer it
 * fills, and the pool's buffers must stay put (they live in WebAssembly memory, which cannot be
 * transferred), so each read goes into a buffer of this reader's own and is copied across.
 */
export class InPlaceByobReader {
  #reader: ReadableStreamBYOBReader;
  #scratch = new ArrayBuffer(0);

  /** Locks `stream` and reads it from now on. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader({ mode: "byob" });
  }

  /**
   * Reads at least `min` bytes (default 1) unless the stream ends, at most `view.length`, into
   * `view`; the result's value is the filled start of `view`.
   */
  async read(view: Uint8Array, min = 1): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#scratch.byteLength < view.length) this.#scratch = new ArrayBuffer(view.length);
    const read = await this.#reader.read(new Uint8Array(this.#scratch, 0, view.length), { min });
    if (read.value) {
      this.#scratch = read.value.buffer as ArrayBuffer;
      view.set(read.value);
    }
    return read.done
      ? { value: read.value && view.subarray(0, read.value.length), done: true }
      : { value: view.subarray(0, read.value.length), done: false };
  }

  /** Cancels the stream. */
  cancel(): Promise<void> {
    return this.#reader.cancel();
  }

  /** Unlocks the stream. */
  releaseLock(): void {
    this.#reader.releaseLock();
  }
}

/**
 * How a stream read ahead by {@link FrameReader.watch} goes on: an END frame is in (the data phase
 * is complete), or the peer has ended it first (`error`: its ERROR or ABORT as a
 * {@link RefusedError}, a close as a {@link ProtocolError}, or the read's own failure).
 */
export type WatchOutcome = { end: true } | { error: unknown };

/** Bytes read ahead of the caller by {@link FrameReader.watch}, and what they were seen to hold. */
interface ReadAhead {
  /** Unread bytes, oldest first. */
  chunks: Uint8Array[];
  /** Their total. */
  bytes: number;
  /** The read under way, if any. */
  reading?: Promise<void>;
  /** The socket's end: a clean close, or `error`. */
  end?: { error?: unknown };
  /** Payload bytes still to pass before the next frame header. */
  skip: number;
  /** A frame header being put together from the bytes. */
  header: Uint8Array;
  headerFilled: number;
  /** An ERROR or ABORT payload being put together. */
  control?: { type: number; bytes: Uint8Array; filled: number };
  /** Set once an END, an ERROR or the end of the stream has been seen. */
  outcome?: WatchOutcome;
}

/** Most bytes one read ahead takes. */
const READ_AHEAD_STEP = 64 << 10;

/**
 * Reads frames from a socket into the caller's buffers, in place: the socket's own `read` fills
 * them with no intermediate copy (a stream's BYOB read would transfer the pool's buffers, which
 * must stay put), and returns what has arrived, so a slow peer's progress shows at once.
 */
export class FrameReader {
  #source: DirectReader;
  #small = new Uint8Array(MAX_CONTROL_PAYLOAD);
  #activity?: Activity;
  /** Payload bytes of the current DATA frame not yet read (see {@link readPayload}). */
  #payloadLeft = 0;
  /** Bytes read ahead by {@link watch}, served before the socket. */
  #ahead?: ReadAhead;

  /**
   * Reads `source`, a socket (`Deno.Conn`). Unlike `conn.readable`, reading the socket directly
   * leaves it open at the end, until its owner closes it.
   */
  constructor(source: DirectReader, options: FrameStreamOptions = {}) {
    this.#source = source;
    this.#activity = options.activity;
  }

  /** Reads what has arrived into `view`: the count (at least one), or null at the end. */
  async #read(view: Uint8Array): Promise<number | null> {
    if (this.#ahead) return await this.#readAhead(view);
    const n = await this.#source.read(view);
    if (this.#activity) {
      this.#activity.last = Date.now();
      // A peer that sends has read what it was sent, or at least is not stuck behind it.
      this.#activity.peerBehind = false;
      if (n !== null && this.#activity.received !== undefined) this.#activity.received += n;
    }
    return n === null || n === 0 ? null : n;
  }

  /** Serves a read from what {@link watch} read ahead, waiting for its read under way if need be. */
  async #readAhead(view: Uint8Array): Promise<number | null> {
    const ahead = this.#ahead!;
    if (ahead.bytes === 0 && ahead.reading) await ahead.reading;
    if (ahead.bytes > 0) {
      let filled = 0;
      while (filled < view.length && ahead.chunks.length > 0) {
        const chunk = ahead.chunks[0];
        const n = Math.min(chunk.length, view.length - filled);
        view.set(chunk.subarray(0, n), filled);
        filled += n;
        if (n === chunk.length) ahead.chunks.shift();
        else ahead.chunks[0] = chunk.subarray(n);
      }
      ahead.bytes -= filled;
      if (ahead.bytes === 0 && !ahead.reading && !ahead.end) this.#ahead = undefined;
      return filled;
    }
    if (ahead.end) {
      if (ahead.end.error !== undefined) throw ahead.end.error;
      return null;
    }
    this.#ahead = undefined;
    return await this.#read(view);
  }

  /**
   * Reads ahead of the caller, into memory, while the caller is busy elsewhere (a slow sink, a
   * rate limit's pause), to see whether the peer ends the data phase: resolves once an END, an
   * ERROR or ABORT, or the end of the connection is in (see {@link WatchOutcome}), or with null
   * once `stop` aborts or `limit` bytes wait. Every byte read ahead is still read, in order, by
   * the calls that follow; stop the watch before making them.
   */
  async watch(limit: number, stop: AbortSignal): Promise<WatchOutcome | null> {
    const ahead = this.#ahead ??= {
      chunks: [],
      bytes: 0,
      skip: this.#payloadLeft,
      header: new Uint8Array(FRAME_HEADER_LENGTH),
      headerFilled: 0,
    };
    while (!ahead.outcome && !stop.aborted && ahead.bytes < limit && this.#ahead === ahead) {
      await (ahead.reading ??= this.#readAheadOnce(ahead));
    }
    return ahead.outcome ?? null;
  }

  #readAheadOnce(ahead: ReadAhead): Promise<void> {
    const buffer = new Uint8Array(READ_AHEAD_STEP);
    return this.#source.read(buffer).then((n) => {
      if (this.#activity) {
        this.#activity.last = Date.now();
        this.#activity.peerBehind = false;
      }
      if (n === null) {
        ahead.end = {};
        ahead.outcome ??= {
          error: new ClosedEarlyError("Connection closed before the transfer was complete"),
        };
        return;
      }
      // A short read keeps only its bytes, not the whole step.
      const bytes = n < READ_AHEAD_STEP / 4 ? buffer.slice(0, n) : buffer.subarray(0, n);
      ahead.chunks.push(bytes);
      ahead.bytes += n;
      if (!ahead.outcome) this.#walk(ahead, bytes);
    }, (error) => {
      ahead.end = { error };
      ahead.outcome ??= { error };
    }).finally(() => ahead.reading = undefined);
  }

  /** Follows the frames in bytes just read ahead, as far as an END, ERROR or ABORT. */
  #walk(ahead: ReadAhead, bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length && !ahead.outcome) {
      if (ahead.skip > 0) {
        const n = Math.min(ahead.skip, bytes.length - i);
        ahead.skip -= n;
        i += n;
        continue;
      }
      const control = ahead.control;
      if (control) {
        const n = Math.min(control.bytes.length - control.filled, bytes.length - i);
        control.bytes.set(bytes.subarray(i, i + n), control.filled);
        control.filled += n;
        i += n;
        if (control.filled === control.bytes.length) this.#endWith(ahead, control);
        continue;
      }
      const n = Math.min(FRAME_HEADER_LENGTH - ahead.headerFilled, bytes.length - i);
      ahead.header.set(bytes.subarray(i, i + n), ahead.headerFilled);
      ahead.headerFilled += n;
      i += n;
      if (ahead.headerFilled < FRAME_HEADER_LENGTH) continue;
      ahead.headerFilled = 0;
      let header: FrameHeader;
      try {
        header = decodeHeader(ahead.header);
      } catch (error) {
        ahead.outcome = { error };
        continue;
      }
      if (header.type === FrameType.END) {
        ahead.outcome = { end: true };
      } else if (header.type === FrameType.ERROR || header.type === FrameType.ABORT) {
        ahead.control = { type: header.type, bytes: new Uint8Array(header.length), filled: 0 };
        if (header.length === 0) this.#endWith(ahead, ahead.control);
      } else {
        ahead.skip = header.length;
      }
    }
  }

  /** The peer's ERROR or ABORT, read ahead, as the error the transfer will end with. */
  #endWith(ahead: ReadAhead, control: { type: number; bytes: Uint8Array }): void {
    ahead.control = undefined;
    try {
      const error = parseError(decodeJson(control.type, control.bytes));
      ahead.outcome = { error: new RefusedError(error.code, error.message) };
    } catch (error) {
      ahead.outcome = { error };
    }
  }

  /**
   * Reads up to `view.length` bytes, at least one, into `view`; returns the filled part, or null
   * at end of stream.
   */
  async readSome(view: Uint8Array): Promise<Uint8Array | null> {
    const n = await this.#read(view);
    return n === null ? null : view.subarray(0, n);
  }

  /**
   * Fills `view` completely and returns it, or null if the stream ended before the first byte
   * and `eofOk` is set; throws {@link ProtocolError} if it ends part-way.
   */
  async readExact(view: Uint8Array, eofOk = false): Promise<Uint8Array | null> {
    const total = view.length;
    let filled = 0;
    while (filled < total) {
      let n: number | null;
      try {
        n = await this.#read(view.subarray(filled));
      } catch (error) {
        // A TLS peer that hangs up between frames without close_notify has still hung up.
        if (filled === 0 && eofOk && error instanceof Deno.errors.UnexpectedEof) return null;
        throw error;
      }
      if (n === null) {
        if (filled === 0 && eofOk) return null;
        throw new ClosedEarlyError("Connection closed mid-message");
      }
      filled += n;
    }
    return view;
  }

  /**
   * Fills `view` until it is full or the stream ends; returns the filled part (empty at the end
   * of the stream). For raw, unframed data such as the seed protocol's.
   */
  async readFill(view: Uint8Array): Promise<Uint8Array> {
    const total = view.length;
    let filled = 0;
    while (filled < total) {
      const n = await this.#read(view.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return view.subarray(0, filled);
  }

  /**
   * Reads the peer's preamble, of which the caller may have read the `first` bytes already (to
   * tell what the peer speaks), and returns its protocol version.
   */
  async readPreamble(first: Uint8Array = EMPTY): Promise<number> {
    if (first.length > PREAMBLE_LENGTH) throw new RangeError("More bytes than a preamble has");
    const preamble = this.#small.subarray(0, PREAMBLE_LENGTH);
    preamble.set(first);
    await this.readExact(preamble.subarray(first.length));
    return decodePreamble(preamble);
  }

  /** Reads a frame header; null on a clean end of stream between frames. */
  async readHeader(): Promise<FrameHeader | null> {
    const bytes = await this.readExact(this.#small.subarray(0, FRAME_HEADER_LENGTH), true);
    const header = bytes && decodeHeader(bytes);
    this.#payloadLeft = header?.type === FrameType.DATA ? header.length : 0;
    return header;
  }

  /**
   * Fills `view` with the next bytes of the DATA payload whose header was just read, as
   * {@link readExact} does; keeps count of what is left of it for {@link watch}.
   */
  async readPayload(view: Uint8Array): Promise<Uint8Array> {
    const bytes = await this.readExact(view);
    this.#payloadLeft -= view.length;
    return bytes!;
  }

  /** Reads and parses the JSON payload of a control frame whose header was just read. */
  async readControlPayload(header: FrameHeader): Promise<ControlFrame> {
    if (header.length === 0) return { type: header.type, json: decodeJson(header.type, EMPTY) };
    const bytes = await this.readExact(this.#small.subarray(0, header.length));
    return { type: header.type, json: decodeJson(header.type, bytes!) };
  }

  /**
   * Reads the next control frame. A DATA frame here is a protocol error; null means a clean end
   * of stream between frames.
   */
  async readControl(): Promise<ControlFrame | null> {
    const header = await this.readHeader();
    if (!header) return null;
    if (header.type === FrameType.DATA) {
      throw new ProtocolError("Unexpected DATA frame");
    }
    return await this.readControlPayload(header);
  }

  /** Reads and throws away everything until the peer closes. */
  async discardAll(): Promise<void> {
    const scratch = new Uint8Array(65536);
    while (await this.readSome(scratch));
  }
}

const EMPTY = new Uint8Array(0);

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

  #touch(): void {
    if (this.#activity) this.#activity.last = Date.now();
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
        this.#touch();
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
    this.#touch();
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
    this.#touch();
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
