/**
 * The seed's own protocol, spoken on both sides so its Python scripts and ferry can replace each
 * other: a bare UTF-8 request line (`put NAME`, `get NAME`, `list`, at most 32 bytes, no
 * terminator), a `pass` or `cancel` answer, then raw bytes ended by closing the connection. It has
 * no framing and no checksum, so nothing received this way can be verified.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import { type ConnectOptions, openConnection } from "./client_connect.ts";
import type {
  ClientSession,
  DownloadTarget,
  GetOptions,
  GetResult,
  PutOptions,
  PutResult,
  RemoteFileInfo,
} from "./client_session.ts";
import { closeQuietly, formatHostPort, normalizeHost } from "./connection.ts";
import { ProtocolError, RefusedError, StoreError, UsageError, UserError } from "./errors.ts";
import { quote } from "./remote_name.ts";
import type { Store } from "./store.ts";
import type { KeptEntry, ListEntry } from "./protocol.ts";
import { FrameReader } from "./frame_reader.ts";
import { FrameWriter } from "./frame_writer.ts";
import type { Watch } from "./watchdog.ts";
import { type ByteSource, cancelSource, concatBytes, receiveRaw, sendData } from "./transfer.ts";

/** Longest request line the seed's server reads. */
export const LEGACY_REQUEST_MAX = 32;

const PASS = new TextEncoder().encode("pass");
const CANCEL = new TextEncoder().encode("cancel");

/** A parsed seed request line. */
export interface LegacyRequest {
  /** Operation. */
  op: "put" | "get" | "list";
  /** Name for put and get; empty for list. */
  name: string;
}

/** Whether a connection's first byte could begin a seed request line. */
export function looksLikeLegacy(firstByte: number): boolean {
  return firstByte === 0x70 /* p */ || firstByte === 0x67 /* g */ || firstByte === 0x6c /* l */;
}

/** Parses a seed request line; throws {@link ProtocolError} if it is not one. */
export function parseLegacyRequest(bytes: Uint8Array): LegacyRequest {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ProtocolError("Seed request is not valid UTF-8");
  }
  if (text === "list") return { op: "list", name: "" };
  const match = /^(put|get) (.+)$/s.exec(text);
  if (!match) throw new ProtocolError(`Not a seed request: ${quote(text)}`);
  return { op: match[1] as "put" | "get", name: match[2] };
}

/** What the server needs to serve a seed request. */
export interface LegacyServeContext {
  /** The served store. */
  store: Store;
  /** Transfer buffers. */
  pool: BufferPool;
  /** Refuse uploads. */
  readOnly?: boolean;
  /** Largest upload accepted. */
  maxSize?: number;
}

/** The connection a seed request arrived on. */
export interface LegacyConnection {
  /** Reader over `conn.readable`, which gave the request's first bytes. */
  frames: FrameReader;
  /** Writer over `conn.writable`. */
  out: FrameWriter;
  /** The socket itself: an upload's data is read from it directly (see {@link serveLegacy}). */
  conn: Deno.Conn;
  /** The server's watchdog, told when the request line is in and when an upload's data flows. */
  watch?: Watch;
  /**
   * Called once the request line is in, to move the connection out of the handshake pool;
   * false refuses the request (every slot is taken).
   */
  admit?: () => boolean;
}

/** What a served seed request did, for the server's log. */
export interface LegacyOutcome {
  /** The request, if one could be parsed. */
  request?: LegacyRequest;
  /** Bytes moved. */
  bytes: number;
  /** Result text for the log. */
  result: string;
}

/**
 * Serves one seed request on a connection whose first bytes (`head`) have been read. The same
 * storage rules hold as for ferry requests; the caller closes the connection afterwards.
 */
export async function serveLegacy(
  head: Uint8Array,
  conn: LegacyConnection,
  ctx: LegacyServeContext,
): Promise<LegacyOutcome> {
  // The seed server reads the request with one recv of at most 32 bytes; so do we.
  const line = new Uint8Array(LEGACY_REQUEST_MAX);
  line.set(head);
  let length = head.length;
  if (length < LEGACY_REQUEST_MAX) {
    const more = await conn.frames.readSome(new Uint8Array(LEGACY_REQUEST_MAX - length));
    if (more) {
      line.set(more, length);
      length += more.length;
    }
  }
  const { frames, out } = conn;
  let request: LegacyRequest;
  try {
    request = parseLegacyRequest(line.subarray(0, length));
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    // Refuse in the seed's own word, as the seed's server and a ferry server without --legacy
    // do. Letting the error escape would answer with a ferry ERROR frame, which a seed client
    // cannot read (it saw binary noise instead of `cancel`).
    await out.writeRaw(CANCEL);
    return { bytes: 0, result: `refused (${error.message})` };
  }
  if (conn.admit && !conn.admit()) {
    await out.writeRaw(CANCEL);
    return { request, bytes: 0, result: "refused (busy: every connection slot is taken)" };
  }
  conn.watch?.working();
  if (request.op === "list") {
    // Every file's name on a line, written as the tree is walked (lib/tree_listing.ts), a batch
    // at a time: never the whole list at once.
    let sent = 0;
    for await (const batch of await ctx.store.listTree({ recursive: true, folderTimes: false })) {
      let names = "";
      for (const entry of batch) if (entry.type === "file") names += entry.name + "\n";
      if (names === "") continue;
      const bytes = new TextEncoder().encode(names);
      await out.writeRaw(bytes);
      sent += bytes.length;
    }
    return { request, bytes: sent, result: "ok" };
  }
  if (request.op === "get") {
    let opened;
    try {
      opened = await ctx.store.openFile(request.name);
    } catch (error) {
      await out.writeRaw(CANCEL);
      return { request, bytes: 0, result: `refused (${describeStoreError(error)})` };
    }
    try {
      await out.writeRaw(PASS);
      const sent = await sendData(opened.file, out, {
        pool: ctx.pool,
        sizeHint: opened.size,
        raw: true,
      });
      return { request, bytes: sent.size, result: "ok (seed protocol)" };
    } finally {
      // The stream may have closed the file already, at its end.
      closeQuietly(opened.file);
    }
  }
  let upload;
  try {
    if (ctx.readOnly) throw new StoreError("read_only", "Server is read-only");
    upload = await ctx.store.beginUpload(request.name);
  } catch (error) {
    await out.writeRaw(CANCEL);
    return { request, bytes: 0, result: `refused (${describeStoreError(error)})` };
  }
  try {
    await out.writeRaw(PASS);
    // The upload ends where the client half-closes. The seed client takes the close for
    // "stored", so the socket must stay open until the file is: `frames` reads the socket itself
    // (`conn.readable` would close the whole socket at that end), and the server closes it after.
    conn.watch?.receiving();
    const received = await receiveRaw(frames, upload, {
      pool: ctx.pool,
      maxSize: ctx.maxSize,
      localWaits: conn.watch?.localWaits,
    });
    conn.watch?.working();
    await upload.commit(received);
    return {
      request,
      bytes: received.size,
      result: `ok UNVERIFIED (seed protocol has no checksum) ${received.checksum}`,
    };
  } catch (error) {
    await upload.discard();
    throw error;
  }
}

function describeStoreError(error: unknown): string {
  if (error instanceof StoreError) return `${error.code}: ${error.message}`;
  throw error;
}

/** A client session speaking the seed protocol: one connection per request. */
export class LegacySession implements ClientSession {
  /** `host:port` of the server. */
  readonly target: string;
  /** The seed protocol cannot verify anything. */
  readonly verified = false;
  #host: string;
  #port: number;
  #options: ConnectOptions;

  /** Creates a session; connections are opened per request. */
  constructor(host: string, port: number, options: ConnectOptions = {}) {
    this.#host = host;
    this.#port = port;
    this.#options = options;
    this.target = formatHostPort(normalizeHost(host), port);
  }

  async #request(op: string, name?: string) {
    const line = new TextEncoder().encode(name === undefined ? op : `${op} ${name}`);
    if (line.length > LEGACY_REQUEST_MAX) {
      throw new UserError(
        `Name too long for the seed protocol: ${quote(name ?? "")} (at most ${
          LEGACY_REQUEST_MAX - op.length - 1
        } bytes)`,
      );
    }
    const { conn } = await openConnection(this.#host, this.#port, this.#options);
    const frames = new FrameReader(conn);
    const out = new FrameWriter(conn.writable, { direct: conn });
    await out.writeRaw(line);
    return { conn, frames, out };
  }

  /**
   * Reads the `pass`/`cancel` answer. A `pass` may arrive in the same read as the first file
   * bytes; those are returned as `rest`.
   */
  async #answer(frames: FrameReader, name: string): Promise<Uint8Array> {
    const reply = await frames.readSome(new Uint8Array(LEGACY_REQUEST_MAX));
    const text = reply ? new TextDecoder().decode(reply.subarray(0, 6)) : "";
    if (reply && text.startsWith("pass")) return reply.slice(4);
    if (text === "cancel") {
      throw new RefusedError("unsupported", `Seed server answered cancel for ${quote(name)}`);
    }
    throw new ProtocolError("Seed server sent neither pass nor cancel");
  }

  /** Uploads: `pass`, raw bytes, then a half-close marks the end. */
  async put(source: ByteSource, name: string, options: PutOptions = {}): Promise<PutResult> {
    const { conn, frames, out } = await this.#request("put", name);
    try {
      const rest = await this.#answer(frames, name).catch(async (error) => {
        await cancelSource(source);
        throw error;
      });
      if (rest.length) throw new ProtocolError("Seed server sent data after pass on a put");
      const sent = await sendData(source, out, {
        raw: true,
        sizeHint: options.size,
        onProgress: options.onProgress,
        throttle: options.throttle,
        maxChunk: options.maxChunk,
      });
      // A half-close marks the end; closing the writable would close the whole socket in Deno.
      await conn.closeWrite();
      // The seed server closes once it has everything; wait for that before claiming success.
      await frames.discardAll();
      return { size: sent.size, checksum: "", resumedFrom: 0 };
    } finally {
      closeQuietly(conn);
    }
  }

  /** Downloads: `pass` and then raw bytes until the server closes. */
  async get(
    name: string,
    open: (info: RemoteFileInfo) => Promise<DownloadTarget>,
    options: GetOptions = {},
  ): Promise<GetResult> {
    const { conn, frames } = await this.#request("get", name);
    try {
      const rest = await this.#answer(frames, name);
      const target = await open({ size: 0, mtime: 0, offset: 0 });
      try {
        if (rest.length) await target.write(rest);
        const offset = rest.length;
        const tail = await receiveRaw(frames, target, {
          onProgress: (n) => options.onProgress?.(offset + n),
          throttle: options.throttle,
          maxChunk: options.maxChunk,
        });
        await target.commit();
        // Nothing was verified, so no checksum is claimed.
        return { size: offset + tail.size, checksum: "", resumedFrom: 0 };
      } catch (error) {
        await target.discard(error);
        throw error;
      }
    } finally {
      closeQuietly(conn);
    }
  }

  /** Lists: one name per line, then the server closes. */
  async list(): Promise<ListEntry[]> {
    const { conn, frames } = await this.#request("list");
    try {
      const chunks: Uint8Array[] = [];
      await receiveRaw(frames, {
        write(chunk) {
          chunks.push(chunk.slice());
          return Promise.resolve();
        },
      }, { sizeHint: 65536 });
      const text = new TextDecoder().decode(concatBytes(chunks));
      return text.split("\n").filter((n) => n !== "").map((name) => ({ name, size: 0, mtime: 0 }));
    } finally {
      closeQuietly(conn);
    }
  }

  /** The seed protocol has no such request: refused before connecting. */
  kept(): Promise<KeptEntry[]> {
    return Promise.reject(
      new UsageError(
        "kept is not available with --legacy: the seed protocol cannot list kept uploads",
      ),
    );
  }

  /** Each request has its own connection, so the session itself never closes. */
  readonly closed = false;

  /** Nothing to close: each request had its own connection. */
  close(): void {}
}
