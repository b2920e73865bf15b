/**
 * Raw-protocol helpers for the integration tests: what a test needs to speak ferry's wire format
 * by hand, for what the real client cannot do (cut an upload mid-frame, send garbage, stall, or
 * play a hostile server). Frames are read here independently of lib/frame_reader.ts, so that a
 * bug there cannot hide itself; only the encoders come from lib/frames.ts and lib/protocol.ts.
 *
 * - {@link concat}, {@link contains} and {@link checksumOf}: the byte utilities the tests share.
 * - {@link bytesReader}: bytes read in pieces, as the socket a frame reader reads might give them.
 * - {@link rawFrame} and {@link dataFrame}: frames built by hand, any type and any payload.
 * - {@link Wire}: one raw TCP connection with a read buffer and bounded reads, usable from either
 *   side: a test client talking to the real server, or a fake server talking to the real client.
 * - {@link serveOnce}: the scaffolding of a one-connection fake server on 127.0.0.1 that the real
 *   client is run against, and {@link serveInTurn} for a client that connects again;
 *   {@link withFakeServer}: such a server that speaks ferry up to the client's REQUEST and lets
 *   the test answer it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createChecksum } from "../lib/checksum.ts";
import { concatBytes } from "../lib/transfer.ts";
import {
  decodePreamble,
  encodeControl,
  encodeHeader,
  encodePreamble,
  FrameType,
  PROTOCOL_VERSION,
} from "../lib/frames.ts";
import type { Endpoint, RunResult } from "./harness.ts";

/** Longest a single read on a {@link Wire} waits by default before the test fails. */
export const READ_TIMEOUT_MS = 10000;

/** Size of a frame header: one type byte and a 32-bit big-endian payload length. */
const HEADER_LENGTH = 5;

/** Size of the preamble that opens every ferry connection, in both directions. */
const PREAMBLE_LENGTH = 8;

const decoder = new TextDecoder();

// ------------------------------------------------------------------------------------- bytes

/** Joins byte arrays into one new array, in order. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  return concatBytes([...parts]);
}

/** True if `needle` occurs anywhere in `haystack`. */
export function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.length)
    .indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.length)) !== -1;
}

/** The checksum ferry puts in END frames (`xxh128:...`) of `bytes`. */
export async function checksumOf(bytes: Uint8Array): Promise<string> {
  const checksum = await createChecksum();
  checksum.update(bytes);
  return checksum.digest();
}

// ------------------------------------------------------------------------------------ frames

/**
 * A reader of `bytes` that gives at most `piece` of them a read, then null at the end: what a
 * frame reader reads from a socket, without the socket.
 */
export function bytesReader(
  bytes: Uint8Array,
  piece = bytes.length || 1,
): { read(p: Uint8Array): Promise<number | null> } {
  let offset = 0;
  return {
    read(p) {
      if (offset >= bytes.length) return Promise.resolve(null);
      const n = Math.min(piece, bytes.length - offset, p.length);
      p.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
  };
}

/**
 * A frame of any type with exactly `payload` after its header, valid or not: the encoders in
 * lib/frames.ts refuse what a hostile peer would send.
 */
export function rawFrame(type: number, payload: Uint8Array): Uint8Array {
  return concat([encodeHeader(type, payload.length), payload]);
}

/** A DATA frame carrying `bytes`. */
export function dataFrame(bytes: Uint8Array): Uint8Array {
  return rawFrame(FrameType.DATA, bytes);
}

/** A whole honest data phase: one DATA frame with `bytes`, then the END that describes them. */
export async function dataWithEnd(bytes: Uint8Array): Promise<Uint8Array> {
  const end = { size: bytes.length, checksum: await checksumOf(bytes) };
  return concat([dataFrame(bytes), encodeControl(FrameType.END, end)]);
}

// -------------------------------------------------------------------------------------- Wire

/** A frame as read off the wire. */
export interface Frame {
  /** The frame type byte. */
  type: number;
  /** The payload, as it arrived. */
  payload: Uint8Array;
  /** The parsed payload, for control frames (every type but DATA). */
  json?: Record<string, unknown>;
}

/** Options for a {@link Wire} ({@link Wire.connect} and the constructor). */
export interface WireOptions {
  /**
   * Longest a single read may wait, in milliseconds, before the test fails instead of hanging
   * (default {@link READ_TIMEOUT_MS}).
   */
  readTimeoutMs?: number;
  /**
   * Count a ConnectionAborted error on read as the end of the stream, as a reset always is.
   * Off by default: an aborted connection then fails the read.
   */
  abortIsEnd?: boolean;
}

/** Options for {@link Wire.acceptHandshake}. */
export interface AcceptHandshakeOptions {
  /** The WELCOME to send (default: a plain `fake/0` server with no features). */
  welcome?: Record<string, unknown>;
}

/**
 * One raw TCP connection with a read buffer. Every read is bounded by the read timeout (a
 * silent peer fails the test rather than hanging it); a reset counts as the end of the stream.
 * Dispose it (`using`) to close it.
 */
export class Wire implements Disposable {
  #conn: Deno.Conn;
  #readTimeoutMs: number;
  #abortIsEnd: boolean;
  #pending: Uint8Array = new Uint8Array(0);
  #eof = false;
  #closed = false;

  /** Wraps an open connection (an accepted one, for a fake server). */
  constructor(conn: Deno.Conn, options: WireOptions = {}) {
    this.#conn = conn;
    this.#readTimeoutMs = options.readTimeoutMs ?? READ_TIMEOUT_MS;
    this.#abortIsEnd = options.abortIsEnd ?? false;
  }

  /**
   * How long a read waits for the peer's next bytes, from now on: a test that proves the peer
   * stays silent shortens it for that read alone, so that every other read may wait out a loaded
   * machine.
   */
  set readTimeoutMs(ms: number) {
    this.#readTimeoutMs = ms;
  }

  /** Connects to `endpoint` (the real server, say) over plain TCP. */
  static async connect(endpoint: Endpoint, options: WireOptions = {}): Promise<Wire> {
    return new Wire(await Deno.connect({ hostname: endpoint.host, port: endpoint.port }), options);
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /** Writes, ignoring a peer that already hung up (it may rightly stop reading garbage). */
  async writeQuietly(bytes: Uint8Array): Promise<void> {
    await this.write(bytes).catch(() => {});
  }

  /** Reads more bytes into the buffer; false at end of stream (a reset counts as the end). */
  async #fill(timeoutMs: number): Promise<boolean> {
    if (this.#eof) return false;
    const buffer = new Uint8Array(65536);
    const reading = this.#conn.read(buffer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    let n: number | null | "timeout";
    try {
      n = await Promise.race([reading, timeout]);
    } catch (error) {
      const ended = error instanceof Deno.errors.ConnectionReset ||
        (this.#abortIsEnd && error instanceof Deno.errors.ConnectionAborted);
      if (!ended) throw error;
      n = null;
    } finally {
      clearTimeout(timer);
    }
    if (n === "timeout") {
      this.close();
      await reading.catch(() => {});
      throw new Error(`Peer sent nothing for ${timeoutMs} ms`);
    }
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#pending = concat([this.#pending, buffer.subarray(0, n)]);
    return true;
  }

  /** Reads exactly `n` bytes; null if the stream ends first. */
  async readExact(n: number): Promise<Uint8Array | null> {
    while (this.#pending.length < n) {
      if (!await this.#fill(this.#readTimeoutMs)) return null;
    }
    const out = this.#pending.slice(0, n);
    this.#pending = this.#pending.slice(n);
    return out;
  }

  /** Everything until the peer closes. */
  async readToEnd(): Promise<Uint8Array> {
    while (await this.#fill(this.#readTimeoutMs));
    const out = this.#pending;
    this.#pending = new Uint8Array(0);
    return out;
  }

  /** Reads one frame; null on a clean end of stream between frames. */
  async readFrame(): Promise<Frame | null> {
    const header = await this.readExact(HEADER_LENGTH);
    if (!header) {
      assert.equal(this.#pending.length, 0, "stream ended inside a frame header");
      return null;
    }
    const view = new DataView(header.buffer);
    const type = view.getUint8(0);
    const length = view.getUint32(1);
    const payload = await this.readExact(length);
    assert.ok(payload, `stream ended inside a frame of type ${type}`);
    if (type === FrameType.DATA) return { type, payload };
    return { type, payload, json: JSON.parse(decoder.decode(payload)) };
  }

  /** Reads a frame and checks its type; returns its JSON. */
  async expectFrame(type: number, what: string): Promise<Record<string, unknown>> {
    const frame = await this.readFrame();
    assert.ok(frame, `${what}: connection closed instead of frame ${type}`);
    assert.equal(
      frame.type,
      type,
      `${what}: got frame ${frame.type} ${JSON.stringify(frame.json)}`,
    );
    return frame.json ?? {};
  }

  /**
   * Sends the preamble and HELLO, checks the server's preamble and WELCOME (which must name the
   * server), and returns the WELCOME. `hello` adds fields to the HELLO.
   */
  async handshake(hello: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    await this.write(
      concat([
        encodePreamble(),
        encodeControl(FrameType.HELLO, { client: "raw-test/1", ...hello }),
      ]),
    );
    const preamble = await this.readExact(PREAMBLE_LENGTH);
    assert.ok(preamble, "server closed during the handshake");
    assert.equal(decodePreamble(preamble), PROTOCOL_VERSION);
    const welcome = await this.expectFrame(FrameType.WELCOME, "handshake");
    assert.equal(typeof welcome.server, "string");
    return welcome;
  }

  /** Plays the server's side of the handshake, for fake servers; returns the client's HELLO. */
  async acceptHandshake(options: AcceptHandshakeOptions = {}): Promise<Record<string, unknown>> {
    const preamble = await this.readExact(PREAMBLE_LENGTH);
    assert.ok(preamble, "client closed before its preamble");
    assert.equal(decodePreamble(preamble), PROTOCOL_VERSION);
    const hello = await this.expectFrame(FrameType.HELLO, "fake server handshake");
    const welcome = options.welcome ?? { server: "fake/0", features: [] };
    await this.write(concat([encodePreamble(), encodeControl(FrameType.WELCOME, welcome)]));
    return hello;
  }

  /**
   * Waits for the peer to close, discarding what it sends; resolves with the milliseconds that
   * took. Throws if the connection is still open after `timeoutMs`.
   */
  async waitForClose(timeoutMs: number): Promise<number> {
    const started = performance.now();
    while (true) {
      const left = timeoutMs - (performance.now() - started);
      if (left <= 0) {
        this.close();
        throw new Error(`Server kept the connection open for over ${timeoutMs} ms`);
      }
      this.#pending = new Uint8Array(0);
      if (!await this.#fill(left)) return performance.now() - started;
    }
  }

  /** Closes the connection; safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Closes the connection (`using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

// ------------------------------------------------------------------------------- fake servers

/**
 * Runs a one-connection fake server on 127.0.0.1 while `run(port)` runs the real client against
 * it, and returns what the client did. `serve` gets the one accepted connection (closed when it
 * returns); a failure inside it, a failed assertion say, fails the call too, with the client's
 * stderr in the message, and so does a client that never connected.
 */
export function serveOnce(
  serve: (conn: Deno.Conn) => Promise<void>,
  run: (port: number) => Promise<RunResult>,
): Promise<RunResult> {
  return serveInTurn([serve], run);
}

/**
 * {@link serveOnce} for a client that connects more than once (again after a failure, say): the
 * fake server accepts one connection after another, and `serves[i]` gets the i-th (closed when it
 * returns, before the next is accepted). A client that makes fewer connections fails the call.
 */
export async function serveInTurn(
  serves: ((conn: Deno.Conn) => Promise<void>)[],
  run: (port: number) => Promise<RunResult>,
): Promise<RunResult> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = (async () => {
    for (const serve of serves) {
      using conn = await listener.accept();
      await serve(conn);
    }
  })();
  serving.catch(() => {}); // awaited below, once the client is done
  let result: RunResult;
  try {
    result = await run(port);
  } finally {
    listener.close();
  }
  try {
    await serving;
  } catch (error) {
    throw new Error(`Fake server failed: ${error}; client stderr:\n${result.stderr}`);
  }
  return result;
}

/** A fake server's handshake that offers the tree requests, as a hostile peer's would. */
export const TREE_PEER: AcceptHandshakeOptions = {
  welcome: { server: "evil/1", features: ["tree"] },
};

/** What a fake server does after the handshake and the client's REQUEST. */
export type FakeScript = (wire: Wire, request: Record<string, unknown>) => Promise<void>;

/**
 * Runs the real client (`run(port)`) against a one-connection fake ferry server on 127.0.0.1: the
 * server plays its side of the handshake (with `options.welcome`, say to offer features), reads
 * the client's REQUEST and lets `script` answer it; the connection closes when `script` returns.
 * Returns what the client did; a failed assertion inside `script` fails the call too.
 */
export function withFakeServer(
  script: FakeScript,
  run: (port: number) => Promise<RunResult>,
  options: AcceptHandshakeOptions = {},
): Promise<RunResult> {
  return serveOnce(async (conn) => {
    using wire = new Wire(conn);
    await wire.acceptHandshake(options);
    const request = await wire.expectFrame(FrameType.REQUEST, "fake server request");
    await script(wire, request);
  }, run);
}
