/**
 * The ferry frame layout: the preamble that opens a connection, the frame header and its type
 * codes, and a control frame's JSON payload as bytes. The messages those payloads carry are in
 * lib/protocol.ts; docs/protocol.md is the prose version of both.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

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

/** Frame type codes; the messages named here are in lib/protocol.ts. */
export const FrameType = {
  /** Client greeting, JSON `Hello`. */
  HELLO: 0x01,
  /** Server greeting, JSON `Welcome`. */
  WELCOME: 0x02,
  /** Client request, JSON `Request`. */
  REQUEST: 0x03,
  /** Server acceptance (the seed's `pass`), JSON `Ok`. */
  OK: 0x04,
  /** Refusal or failure (the seed's `cancel`), JSON `ErrorMessage`. */
  ERROR: 0x05,
  /** Raw file bytes, 1 to {@link CHUNK_SIZE} of them. */
  DATA: 0x06,
  /** End of a data phase, JSON `End`. */
  END: 0x07,
  /** The sender gives up mid-stream, JSON `ErrorMessage`. */
  ABORT: 0x08,
  /** Client's answer to the server's challenge, JSON `Auth`. */
  AUTH: 0x09,
  /** The server is still at work on the request (the final flush of an upload), JSON `{}`. */
  KEEPALIVE: 0x0a,
  /** Tree transfer: the sender's next batch of entries (lib/tree_transfer_protocol.ts). */
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

/** A control frame as read from the wire. */
export interface ControlFrame {
  /** Frame type code (never DATA). */
  type: number;
  /** Parsed JSON payload. */
  json: Record<string, unknown>;
}

/**
 * Joins byte arrays into one.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./frames.ts";
 * console.log(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])])); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
