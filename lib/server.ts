/**
 * The server loop: accepts connections, runs the handshake and serves requests, each connection
 * on its own so that one slow, broken or hostile client never holds up or crashes another. Logs
 * one line per request.
 *
 * @module
 */

import { type BufferPool, defaultPool } from "./buffer_pool.ts";
import { closeQuietly, formatAddr, TLS_HANDSHAKE_RECORD } from "./connection.ts";
import {
  ChecksumMismatchError,
  describeError,
  interruptionOf,
  isNoSpace,
  ProtocolError,
  RefusedError,
  StartError,
  StoreError,
  UserError,
} from "./errors.ts";
import { FileStore, quote } from "./file_store.ts";
import type { Store } from "./store.ts";
import { type Eviction, type KeepResult, KEPT_DEFAULTS } from "./kept_uploads.ts";
import {
  encodeListing,
  type ErrorCode,
  type ErrorMessage,
  type GetRequest,
  type Ok,
  parseAuth,
  parseHello,
  parseRequest,
  type PutRequest,
  type Request,
} from "./protocol.ts";
import {
  encodePreamble,
  FrameType,
  frameTypeName,
  PROTOCOL_VERSION,
  startsPreamble,
} from "./frames.ts";
import { CORK_LIMIT, FrameReader, FrameWriter } from "./frame_io.ts";
import { authMac, macMatches, newNonce } from "./auth.ts";
import { Admission, type Refusal, type Ticket } from "./admission.ts";
import { type Watch, Watchdog } from "./watchdog.ts";
import { formatBytes, formatDuration } from "./format.ts";
import { looksLikeLegacy, serveLegacy } from "./legacy.ts";
import { RateLimiter } from "./rate_limit.ts";
import {
  checksumFilePrefix,
  noDelay,
  overLimitMessage,
  receiveData,
  type ResumePoint,
  sendData,
} from "./transfer.ts";
import { NAME, VERSION } from "./version.ts";
import { DEFAULT_HASH_ARENA_SIZE, requestHashArena } from "./xxh3.ts";
import { startHttpServer } from "./http/http_server.ts";
import type { RunningHttpServer } from "./http/http_server.ts";
import { createAccess } from "./http/access.ts";
import { encodeTreeListing, TREE_FEATURE } from "./tree_protocol.ts";
import { changeTree, listTree } from "./tree_store.ts";
import type { TreeTransferRequest } from "./tree_protocol.ts";
import { checkTreeRequest, serveTreeTransfer } from "./tree_server.ts";

/** Options for {@link startServer}. */
export interface ServerOptions {
  /** Address to listen on; default 127.0.0.1. */
  hostname?: string;
  /** Port; 0 (the default) picks a free one, found in {@link RunningServer.addr}. */
  port?: number;
  /**
   * Folder to serve, unless `store` is given; its hidden `.ferry-*` folders hold uploads in
   * progress.
   */
  root?: string;
  /** Store to serve instead of the folder `root` (an S3 bucket, say). */
  store?: Store;
  /** Create the root if missing (default true). */
  createRoot?: boolean;
  /** Where log lines go; default stderr. */
  log?: (line: string) => void;
  /** Buffer pool shared by all transfers (default: one shared by the whole process). */
  pool?: BufferPool;
  /** Flush uploads to disk before committing them (default true). */
  fsync?: boolean;
  /** Also serve the seed's legacy protocol, which cannot verify, on the same port (default false). */
  legacy?: boolean;
  /** Refuse uploads (default false). */
  readOnly?: boolean;
  /**
   * Interrupted uploads kept for `put --resume`, all together, stay within this many bytes,
   * the oldest going first; 0 keeps none (default 16 GiB). A new upload that finds the disk
   * full removes kept ones, oldest first, whatever the budget.
   */
  keepBudget?: number;
  /** How long an interrupted upload is kept, in milliseconds (default 24 hours). */
  keepForMs?: number;
  /** Answer clients' `kept` requests (default false: refused). */
  showKept?: boolean;
  /** Shared secret clients must prove they hold (default none: anyone who connects is served). */
  token?: Uint8Array;
  /** PEM certificate chain and key: serve over TLS (default: plain TCP). */
  tls?: { cert: string; key: string };
  /** Largest upload accepted, in bytes; undefined for no limit. */
  maxSize?: number;
  /**
   * Established connections (handshake done) served at once; more are refused as busy
   * (default 64).
   */
  maxConnections?: number;
  /**
   * Connections still in their handshake at once, counted apart from the established ones;
   * when full, the oldest is cut to make room (default: `maxConnections`).
   */
  maxHandshakes?: number;
  /** Connections from one address, or one IPv6 /64 (default 32; 0 for no limit). */
  maxPerAddress?: number;
  /** Close a connection that moves no byte for this long (default 120000 ms; 0 never). */
  idleTimeoutMs?: number;
  /**
   * Bytes of the checksum kernel's memory to reserve for transfer buffers, which are hashed in
   * place there (default 8 MiB, {@link DEFAULT_HASH_ARENA_SIZE}, enough for four transfers at
   * once; `ferry-server` asks for 256 MiB, the most there is: one slot for each buffer its pool may
   * lease). Buffers beyond it work the same, with one more copy per byte. The reserve belongs to
   * the process: until the first transfer the largest request wins, and after it the size is
   * fixed (see {@link requestHashArena}).
   */
  hashArenaSize?: number;
  /**
   * The handshake (TLS, preamble, HELLO, authentication, a seed request line) must be done
   * within this long of the accept, and each request message within this long of its first
   * byte (default 5000 ms; 0 never).
   */
  handshakeTimeoutMs?: number;
  /**
   * Least average rate of an upload's data, bytes per second, over each idle-timeout period
   * (120 s when there is none); a slower upload is cut (default 256; 0 for none). A get that
   * names a rate is paced no slower than this either.
   */
  minRate?: number;
  /** Also serve the root over HTTP (HTTPS with `tls`) here; see docs/http.md. */
  http?: { hostname: string; port: number };
  /** With a token: anyone may browse and download over HTTP; changes still need it. */
  httpPublicRead?: boolean;
  /** Serve folders over HTTP as streamed tar archives. */
  httpArchives?: boolean;
}

/** Defaults for the limits, shown at start. */
export const SERVER_DEFAULTS = {
  maxConnections: 64,
  maxPerAddress: 32,
  idleTimeoutMs: 120_000,
  handshakeTimeoutMs: 5_000,
  minRate: 256,
} as const;

/** A running server. */
export interface RunningServer {
  /** Address actually listened on. */
  addr: Deno.NetAddr;
  /**
   * The served store: for ferry's own command line and tests, not a stable API.
   *
   * @internal
   */
  store: Store;
  /** Stops accepting and closes every connection at once. */
  close(): Promise<void>;
  /**
   * Stops accepting, lets transfers in flight finish for up to `graceMs`, then cuts the rest
   * (their staging files are removed). Resolves with the number of connections cut.
   */
  shutdown(graceMs: number): Promise<number>;
  /** Settles when the accept loop has ended. */
  finished: Promise<void>;
  /** The HTTP listener, when `http` was given. */
  http?: RunningHttpServer;
}

interface Context {
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
interface Tracked {
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

/**
 * Cuts a connection on the server's side: records why, tells a ferry client (best effort) and
 * closes. Returns false if it was already being cut.
 */
function cut(entry: Tracked, reason: string, error: ErrorMessage): boolean {
  if (entry.reason) return false;
  entry.reason = reason;
  if (entry.tell) entry.tell(error);
  else closeQuietly(entry.conn);
  return true;
}

/**
 * Opens the root (creating it unless `createRoot` is false), listens, and serves until
 * {@link RunningServer.close} or {@link RunningServer.shutdown}. Uploads are staged and
 * verified before they appear; each connection runs on its own. Throws {@link StartError} saying
 * which failed, opening the root or listening.
 *
 * @example Serve a folder on a free port until told to stop
 * ```ts
 * import { startServer } from "@ferry/ferry";
 *
 * const server = await startServer({
 *   root: "./shared",
 *   port: 0,
 *   readOnly: true,
 *   log: (line) => console.log(line),
 * });
 * console.log(`serving on port ${server.addr.port}`);
 * Deno.addSignalListener("SIGINT", () => server.shutdown(5000));
 * await server.finished;
 * ```
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  requestHashArena(options.hashArenaSize ?? DEFAULT_HASH_ARENA_SIZE);
  const log = options.log ?? ((line: string) => console.error(line));
  const keptBounds = {
    budget: options.keepBudget ?? KEPT_DEFAULTS.budget,
    maxAgeMs: options.keepForMs ?? KEPT_DEFAULTS.maxAgeMs,
  };
  // Each failure says which step it came from: the CLI names the folder or the address.
  const store = options.store ?? await FileStore.open(options.root ?? "", {
    create: options.createRoot ?? true,
    fsync: options.fsync,
    kept: {
      ...keptBounds,
      onEvict: (eviction) => log(`${stamp()} ${describeEviction(eviction, keptBounds)}`),
    },
  }).catch((error) => {
    throw new StartError("root", error);
  });
  const address = { hostname: options.hostname ?? "127.0.0.1", port: options.port ?? 0 };
  let listener: Deno.Listener;
  try {
    listener = options.tls
      ? Deno.listenTls({ ...address, cert: options.tls.cert, key: options.tls.key })
      : Deno.listen(address);
  } catch (error) {
    throw new StartError("listen", error);
  }
  const ctx: Context = {
    store,
    pool: options.pool ?? defaultPool,
    log,
    legacy: options.legacy ?? false,
    readOnly: options.readOnly ?? false,
    showKept: options.showKept ?? false,
    token: options.token,
    maxSize: options.maxSize,
    minRate: options.minRate ?? SERVER_DEFAULTS.minRate,
  };
  const maxConnections = options.maxConnections ?? SERVER_DEFAULTS.maxConnections;
  const admission = new Admission<Tracked>({
    maxConnections,
    maxHandshakes: options.maxHandshakes ?? maxConnections,
    maxPerAddress: options.maxPerAddress ?? SERVER_DEFAULTS.maxPerAddress,
  });
  ctx.admission = admission;
  const watchdog = new Watchdog({
    idleTimeoutMs: options.idleTimeoutMs ?? SERVER_DEFAULTS.idleTimeoutMs,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? SERVER_DEFAULTS.handshakeTimeoutMs,
    minRate: ctx.minRate,
  });
  const idleTimeoutMs = options.idleTimeoutMs ?? SERVER_DEFAULTS.idleTimeoutMs;
  let http: RunningHttpServer | undefined;
  if (options.http) {
    if (!(store instanceof FileStore)) {
      listener.close();
      throw new UserError("HTTP serves a folder only: it cannot serve an S3 store yet");
    }
    try {
      http = await startHttpServer({
        ...options.http,
        tls: options.tls,
        store,
        log,
        readOnly: ctx.readOnly,
        maxSize: ctx.maxSize,
        maxConnections,
        idleTimeoutMs,
        archives: options.httpArchives,
        access: options.token
          ? await createAccess(options.token, {
            publicRead: options.httpPublicRead,
            secure: options.tls !== undefined,
          })
          : undefined,
      });
    } catch (error) {
      listener.close();
      const where = formatAddr({ transport: "tcp", ...options.http });
      const why = error instanceof Deno.errors.AddrInUse
        ? "address already in use"
        : error instanceof Deno.errors.AddrNotAvailable
        ? "no such local address"
        : describeError(error);
      throw new StartError("listen", new UserError(`Cannot serve HTTP on ${where}: ${why}`));
    }
  }
  const tracked = new Set<Tracked>();
  const handlers = new Set<Promise<void>>();
  let refusing = 0;
  const finished = (async () => {
    for await (const conn of listener) {
      noDelay(conn);
      const entry = { conn } as Tracked;
      const admitted = admission.admit(hostOf(conn.remoteAddr), entry);
      if ("refused" in admitted) {
        if (refusing >= MAX_REFUSING) {
          // A flood: refusing politely would itself hold a socket per connection.
          closeQuietly(conn);
          continue;
        }
        refusing++;
        const busy = refuseBusy(conn, admitted.refused, ctx).finally(() => {
          refusing--;
          handlers.delete(busy);
        });
        handlers.add(busy);
        continue;
      }
      if (admitted.evicted) {
        const limit = admission.limits.maxHandshakes;
        cut(admitted.evicted.value, `evicted: ${limit} other connections in their handshake`, {
          code: "busy",
          message: "Server busy: too many clients connecting at once, try again later",
        });
      }
      entry.ticket = admitted.ticket;
      entry.watch = watchdog.watch((broken) => {
        cut(entry, broken.reason, { code: "timeout", message: broken.message });
      });
      tracked.add(entry);
      const handler = handleConnection(entry, ctx).finally(() => {
        tracked.delete(entry);
        admission.release(entry.ticket);
        watchdog.unwatch(entry.watch);
        handlers.delete(handler);
      });
      handlers.add(handler);
    }
  })().catch((error) => {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  });
  const stopAccepting = () => closeQuietly(listener);
  const cutAll = async () => {
    for (const entry of tracked) {
      // One already being cut (idle) is closed at once: the shutdown does not wait for it.
      if (!cut(entry, "server shutting down", SHUTTING_DOWN)) closeQuietly(entry.conn);
    }
    await Promise.allSettled([...handlers]);
    watchdog.stop();
    await finished;
  };
  return {
    addr: listener.addr as Deno.NetAddr,
    store,
    finished,
    http,
    async close() {
      stopAccepting();
      await Promise.all([cutAll(), http?.close()]);
    },
    async shutdown(graceMs: number) {
      const httpCut = http?.shutdown(graceMs) ?? Promise.resolve(0);
      stopAccepting();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise((resolve) => timer = setTimeout(resolve, graceMs));
      await Promise.race([Promise.allSettled([...handlers]), grace]);
      clearTimeout(timer);
      const cut = tracked.size;
      await cutAll();
      return cut + await httpCut;
    },
  };
}

/** What a connection cut by a shutdown is told. */
const SHUTTING_DOWN: ErrorMessage = {
  code: "shutdown",
  message: "Server is shutting down",
};

/**
 * Most refusals under way at once; past it a connection is closed without a word, since telling
 * each one why holds its socket for a moment.
 */
const MAX_REFUSING = 64;

/** The address part of a connection's remote address. */
function hostOf(addr: Deno.Addr): string {
  return addr.transport === "tcp" || addr.transport === "udp" ? addr.hostname : addr.transport;
}

/** What a connection refused at the door is told, and the log says. */
function busyMessage(refusal: Refusal): { message: string; log: string } {
  if (refusal.reason === "full") {
    return {
      message: `Server busy: all ${refusal.limit} connections in use, try again later`,
      log: `busy (${refusal.limit} connections)`,
    };
  }
  return {
    message: `Server busy: too many connections from your address (limit ${refusal.limit}), ` +
      "try again later",
    log: `busy (limit of ${refusal.limit} per address reached by ${refusal.key})`,
  };
}

/** Tells a client over a connection limit that the server is busy, and hangs up. */
async function refuseBusy(conn: Deno.Conn, refusal: Refusal, ctx: Context): Promise<void> {
  const peer = formatAddr(conn.remoteAddr);
  const { message, log } = busyMessage(refusal);
  // Logged first: with TLS the writes wait for a handshake the client may never make.
  ctx.log(`${stamp()} ${peer} refused: ${log}`);
  const timer = setTimeout(() => closeQuietly(conn), REFUSAL_LINGER_MS);
  try {
    const out = new FrameWriter(conn.writable, { direct: conn });
    await out.writeRaw(encodePreamble(PROTOCOL_VERSION));
    await out.writeControl(FrameType.ERROR, { code: "busy", message });
    // Read the client's greeting before closing: closing with it unread would reset the
    // connection, and the client would see a broken pipe instead of the reason.
    await conn.closeWrite();
    await new FrameReader(conn).discardAll();
  } catch {
    // The client left first.
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** How long a refused client may take to finish sending its greeting before it is closed. */
const REFUSAL_LINGER_MS = 2000;

/**
 * An error's text as a client may see it. Deno appends the operation and the path to an OS
 * error ("No such file or directory (os error 2): open '/srv/root/.ferry-staging/...'"); the
 * client is told the error, never where the server keeps its files.
 */
function withoutPaths(text: string): string {
  const os = /^.*?\(os error \d+\)/.exec(text);
  return (os ? os[0] : text).replace(/(['"])\/[^'"]*\1/g, "$1…$1");
}

/** Maps a failure during a request to what the client is told. */
function classify(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof StoreError || error instanceof RefusedError) {
    return { code: error.code, message: error.message };
  }
  if (error instanceof ProtocolError) {
    const code = error instanceof ChecksumMismatchError ? "checksum" : "bad_request";
    return { code, message: error.message };
  }
  if (isNoSpace(error)) return { code: "no_space", message: "Server is out of disk space" };
  const text = describeError(error);
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return { code: "denied", message: "Server has no permission for that file" };
  }
  return { code: "io", message: `Server error: ${withoutPaths(text)}` };
}

/** What a request did, for its log line. */
interface Outcome {
  bytes: number;
  result: string;
  /** The connection cannot carry another request. */
  close?: boolean;
  /** The server cut it, and `result` says why. */
  cut?: boolean;
}

async function handleConnection(entry: Tracked, ctx: Context): Promise<void> {
  const { conn, watch } = entry;
  const { activity } = watch;
  const peer = formatAddr(conn.remoteAddr);
  const frames = new FrameReader(conn, { activity });
  // The socket itself too: see FrameWriterOptions.direct.
  const out = new FrameWriter(conn.writable, { activity, direct: conn });
  const channel: Channel = { frames, out, peer, entry, preambleSent: false };
  // Whether a request's log line already said why the server cut the connection.
  let cutLogged = false;
  try {
    // With TLS, this read waits for the TLS handshake too: the watchdog's deadline covers it.
    const first = await frames.readSome(new Uint8Array(1));
    if (!first) return;
    if (!startsPreamble(first[0])) {
      await serveForeign(first, channel, ctx);
      return;
    }
    // A client that has begun the ferry preamble can read an ERROR frame after ours.
    entry.tell = (error) => {
      // The ERROR waits for a DATA frame part-way out, and a reader that takes nothing would
      // hold it forever: close after a second either way.
      setTimeout(() => closeQuietly(conn), 1000);
      const preamble = channel.preambleSent ? undefined : encodePreamble(PROTOCOL_VERSION);
      channel.preambleSent = true;
      (async () => {
        if (preamble) await out.writeRaw(preamble);
        await out.writeControl(FrameType.ERROR, error);
        // Half-close only: the handler goes on draining what the client sends until the close,
        // so the client reads why rather than a connection reset.
        await conn.closeWrite();
      })().catch(() => closeQuietly(conn));
    };
    if (!await handshake(first, channel, ctx) || entry.reason) return;
    if (!ctx.admission!.establish(entry.ticket)) {
      // Every established slot filled while this one was in its handshake.
      const limit = ctx.admission!.limits.maxConnections;
      const { message, log } = busyMessage({ reason: "full", limit });
      ctx.log(`${stamp()} ${peer} refused: ${log}`);
      await out.writeControl(FrameType.ERROR, { code: "busy", message });
      await drainAndClose(conn, frames);
      return;
    }
    while (true) {
      watch.waiting();
      const frame = await frames.readControl();
      watch.working();
      if (!frame || entry.reason) return;
      if (frame.type !== FrameType.REQUEST) {
        throw new ProtocolError(`Expected REQUEST, got ${frameTypeName(frame.type)}`);
      }
      const request = parseRequest(frame.json);
      const started = performance.now();
      const outcome = await serveRequest(request, channel, ctx);
      const seconds = ((performance.now() - started) / 1000).toFixed(3);
      const name = request.op === "list"
        ? (request.dir === undefined ? "-" : quote(request.dir))
        : request.op === "mv"
        ? `${quote(request.name)} -> ${quote(request.to)}`
        : "name" in request && request.name !== undefined
        ? quote(request.name)
        : "-";
      ctx.log(
        `${stamp()} ${peer} ${request.op} ${name} ${outcome.bytes} bytes ${outcome.result} ${seconds}s`,
      );
      cutLogged = outcome.cut === true;
      if (outcome.close) {
        await drainAndClose(conn, frames);
        return;
      }
    }
  } catch (error) {
    // A connection the server cut fails whatever it was doing; the reason is logged below.
    if (entry.reason) return;
    ctx.log(`${stamp()} ${peer} connection error: ${describeError(error)}`);
    if (error instanceof ProtocolError) {
      const { code, message } = classify(error);
      await out.writeControl(FrameType.ERROR, { code, message }).catch(() => {});
    }
  } finally {
    closeQuietly(conn);
    if (entry.reason && !cutLogged) ctx.log(`${stamp()} ${peer} closed: ${entry.reason}`);
  }
}

interface Channel {
  frames: FrameReader;
  out: FrameWriter;
  peer: string;
  entry: Tracked;
  /** The server's preamble is out (or queued): an ERROR may follow it directly. */
  preambleSent: boolean;
  /** How often the client asked for KEEPALIVE while the server works (ms); none if unset. */
  keepaliveMs?: number;
}

/** A connection that did not open with ferry's preamble: the seed protocol, TLS, or noise. */
async function serveForeign(first: Uint8Array, channel: Channel, ctx: Context): Promise<void> {
  const { frames, out, peer, entry } = channel;
  if (ctx.legacy && looksLikeLegacy(first[0])) {
    const started = performance.now();
    // The socket too: a seed upload must not let it close before the file is stored.
    const legacyConn = {
      frames,
      out,
      conn: entry.conn,
      watch: entry.watch,
      admit: () => ctx.admission!.establish(entry.ticket),
    };
    const outcome = await serveLegacy(first, legacyConn, ctx);
    const seconds = ((performance.now() - started) / 1000).toFixed(3);
    const what = outcome.request
      ? `${outcome.request.op} ${outcome.request.name ? quote(outcome.request.name) : "-"}`
      : "?";
    ctx.log(`${stamp()} ${peer} seed ${what} ${outcome.bytes} bytes ${outcome.result} ${seconds}s`);
    return;
  }
  if (first[0] === TLS_HANDSHAKE_RECORD) {
    ctx.log(`${stamp()} ${peer} refused: TLS client, but this server does not use TLS`);
    return;
  }
  // The seed's clients open with a text request line; tell them no in their own words.
  await out.writeRaw(new TextEncoder().encode("cancel")).catch(() => {});
  ctx.log(`${stamp()} ${peer} refused: not the ferry protocol (seed request without --legacy?)`);
}

/**
 * Completes the preamble, HELLO/WELCOME and, when a token is set, the challenge-response.
 * Returns false when the client was refused (and told why).
 */
async function handshake(first: Uint8Array, channel: Channel, ctx: Context): Promise<boolean> {
  const { frames, out, peer, entry } = channel;
  const version = await frames.readPreamble(first);
  if (version < 1) throw new ProtocolError(`Unsupported protocol version ${version}`);
  const hello = await frames.readControl();
  // Cut meanwhile (the deadline, an eviction): it has been told, and nothing else is sent.
  if (entry.reason) return false;
  if (!hello || hello.type !== FrameType.HELLO) {
    throw new ProtocolError("Expected HELLO after the preamble");
  }
  channel.keepaliveMs = parseHello(hello.json).keepalive;
  channel.preambleSent = true;
  await out.writeRaw(encodePreamble(Math.min(version, PROTOCOL_VERSION)));
  const challenge = ctx.token ? newNonce() : undefined;
  const features = [
    ctx.token ? "auth" : "",
    ctx.readOnly ? "read-only" : "",
    // Folders, and the requests on them, are a folder store's: an S3 store offers none.
    ctx.store instanceof FileStore ? TREE_FEATURE : "",
  ].filter(Boolean);
  await out.writeControl(FrameType.WELCOME, {
    server: `${NAME}/${VERSION}`,
    features,
    ...(challenge ? { challenge } : {}),
  });
  if (!ctx.token || !challenge) return true;
  const frame = await frames.readControl();
  if (entry.reason) return false;
  if (!frame) {
    ctx.log(`${stamp()} ${peer} refused: closed without answering the token challenge`);
    return false;
  }
  const deny = async (message: string) => {
    await out.writeControl(FrameType.ERROR, { code: "denied", message });
    ctx.log(`${stamp()} ${peer} refused: ${message}`);
    return false;
  };
  if (frame.type !== FrameType.AUTH) {
    return await deny("This server requires a token (--token-file)");
  }
  const auth = parseAuth(frame.json);
  const expected = await authMac(ctx.token, { role: "client", challenge, nonce: auth.nonce });
  if (!macMatches(expected, auth.mac)) return await deny("Wrong token");
  const mac = await authMac(ctx.token, { role: "server", challenge, nonce: auth.nonce });
  await out.writeControl(FrameType.OK, { mac });
  return true;
}

/**
 * After refusing mid-upload, the client may still be sending: half-close, then swallow what
 * arrives for a moment so the refusal is read rather than lost to a connection reset.
 */
async function drainAndClose(conn: Deno.Conn, frames: FrameReader): Promise<void> {
  // Half-close only: closing the writable would close the whole socket in Deno.
  await conn.closeWrite().catch(() => {});
  const timer = setTimeout(() => closeQuietly(conn), 5000);
  try {
    await frames.discardAll();
  } catch {
    // Connection reset: nothing left to drain.
  } finally {
    clearTimeout(timer);
  }
}

async function refuse(out: FrameWriter, error: unknown): Promise<Outcome> {
  const { code, message } = classify(error);
  await out.writeControl(FrameType.ERROR, { code, message });
  return { bytes: 0, result: `refused (${code}: ${message})` };
}

async function serveRequest(request: Request, channel: Channel, ctx: Context): Promise<Outcome> {
  switch (request.op) {
    case "put":
      return await servePut(request, channel, ctx);
    case "get":
      return await serveGet(request, channel, ctx);
    case "list": {
      const { dir, recursive } = request;
      // A request without `recursive` is the original one, from a client that predates folders.
      return await serveList(
        channel.out,
        ctx,
        recursive === undefined
          ? async () => encodeListing(await ctx.store.list())
          : async () => encodeTreeListing(await listTree(folderStore(ctx), { dir, recursive })),
      );
    }
    case "kept":
      return await serveKept(channel.out, ctx);
    case "rm":
    case "mv":
    case "mkdir":
      try {
        await changeTree(folderStore(ctx), request, { readOnly: ctx.readOnly });
      } catch (error) {
        return await refuse(channel.out, error);
      }
      await channel.out.writeControl(FrameType.OK, {});
      return { bytes: 0, result: "ok" };
    case "put_tree":
    case "get_tree":
    case "put_files":
    case "get_files":
      return await serveTree(request, channel, ctx);
  }
}

/**
 * The served folder, for the tree requests. A store that is not a folder (S3) does not offer
 * them (no `tree` feature in WELCOME), and refuses a client that asks anyway.
 */
function folderStore(ctx: Context): FileStore {
  if (ctx.store instanceof FileStore) return ctx.store;
  throw new StoreError(
    "unsupported",
    "This server's store has no folders: folder operations are off",
  );
}

/** A whole folder in one request (lib/tree_server.ts); the log line sums it up. */
async function serveTree(
  request: TreeTransferRequest,
  channel: Channel,
  ctx: Context,
): Promise<Outcome> {
  let tree;
  try {
    tree = {
      store: folderStore(ctx),
      pool: ctx.pool,
      readOnly: ctx.readOnly,
      maxSize: ctx.maxSize,
    };
    await checkTreeRequest(request, tree);
  } catch (error) {
    return await refuse(channel.out, error);
  }
  await channel.out.writeControl(FrameType.OK, {});
  try {
    const done = await serveTreeTransfer(request, channel, tree);
    return {
      bytes: done.bytes,
      result: `ok ${done.files} files, ${done.skipped} skipped, ${done.deleted} deleted, ` +
        `${done.failed} failed${request.dryRun ? " (dry run)" : ""}`,
    };
  } catch (error) {
    if (channel.entry.reason) {
      return { bytes: 0, result: `cut (${channel.entry.reason})`, close: true };
    }
    const gone = interruptionOf(error);
    if (gone) return { bytes: 0, result: `interrupted (client went away: ${gone})`, close: true };
    const { code, message } = classify(error);
    await channel.out.writeControl(FrameType.ERROR, { code, message }).catch(() => {});
    return { bytes: 0, result: `failed (${code}: ${message})`, close: true };
  }
}

/**
 * Runs `work`, sending KEEPALIVE every `channel.keepaliveMs` meanwhile if the client asked for
 * it. Resolves only after the last KEEPALIVE is written, so no frame can interleave with what
 * follows.
 */
async function whileKeepingAlive(channel: Channel, work: () => Promise<void>): Promise<void> {
  const every = channel.keepaliveMs;
  if (every === undefined) return await work();
  let writing = Promise.resolve();
  const timer = setInterval(() => {
    // A failed write means the client is gone; the request's own end will say so.
    writing = writing.then(() => channel.out.writeControl(FrameType.KEEPALIVE, {})).catch(() => {});
  }, every);
  try {
    await work();
  } finally {
    clearInterval(timer);
    await writing;
  }
}

/** A cut upload shorter than this is not worth keeping for a resume. */
const KEEP_MIN_BYTES = 1 << 20;

async function servePut(request: PutRequest, channel: Channel, ctx: Context): Promise<Outcome> {
  const { frames, out, entry } = channel;
  const { name, size, overwrite } = request;
  let upload;
  try {
    if (ctx.readOnly) throw new StoreError("read_only", "Server is read-only: uploads are refused");
    if (ctx.maxSize !== undefined && size !== null && size > ctx.maxSize) {
      throw new StoreError("too_large", overLimitMessage(ctx.maxSize, size));
    }
    upload = await ctx.store.beginUpload(name, { overwrite, resume: request.resume, size });
  } catch (error) {
    return await refuse(out, error);
  }
  let received = 0;
  try {
    let resumeFrom: ResumePoint | undefined;
    // Offset 0 says that what was kept for this name was dropped: the client says so.
    let accept: Ok = upload.keptDropped ? { offset: 0 } : {};
    if (upload.offset > 0) {
      const checksum = await checksumFilePrefix(upload.file, upload.offset, { pool: ctx.pool });
      if (checksum) {
        resumeFrom = { size: upload.offset, checksum };
        accept = { offset: upload.offset, prefix: (await checksum.fork()).digest() };
      }
    }
    await out.writeControl(FrameType.OK, accept);
    // The data must now arrive at the minimum rate; the server's own disk waits do not count.
    entry.watch.receiving();
    const result = await receiveData(frames, upload, {
      pool: ctx.pool,
      sizeHint: size,
      maxSize: ctx.maxSize,
      announcedSize: size,
      resumeFrom,
      onProgress: (bytes) => received = bytes,
      localWaits: entry.watch.localWaits,
    }).finally(() => entry.watch.working());
    // The final flush can take seconds: the client hears that the server is still at it.
    await whileKeepingAlive(channel, () => upload.commit(result));
    await out.writeControl(FrameType.OK, result);
    const resumed = resumeFrom ? ` (resumed from ${resumeFrom.size})` : "";
    return { bytes: result.size, result: `ok ${result.checksum}${resumed}` };
  } catch (error) {
    if (error instanceof RefusedError) {
      // The client gave up cleanly with ABORT; the connection is still in step.
      await upload.discard();
      return { bytes: received, result: `aborted by client (${error.message})` };
    }
    if (entry.reason) {
      // The server cut it (idle, shutting down) and has told the client why: nothing is kept.
      await upload.discard();
      return { bytes: received, result: `cut (${entry.reason})`, close: true, cut: true };
    }
    const gone = interruptionOf(error);
    if (gone) {
      const why = `client went away: ${gone}`;
      // What arrived before the client left is good: keep it for put --resume, unless it is too
      // little to matter or the size is unknown (a stream, which no resume could continue).
      if (size !== null && received >= KEEP_MIN_BYTES) {
        const kept = await upload.keep().catch((error) => new Error(describeError(error)));
        return {
          bytes: received,
          result: `interrupted, ${keptOrNot(kept, why, ctx)}`,
          close: true,
        };
      }
      await upload.discard();
      return { bytes: received, result: `interrupted, discarded (${why})`, close: true };
    }
    await upload.discard();
    const { code, message } = classify(error);
    await out.writeControl(FrameType.ERROR, { code, message }).catch(() => {});
    return { bytes: received, result: `failed (${code}: ${message})`, close: true };
  }
}

async function serveGet(request: GetRequest, channel: Channel, ctx: Context): Promise<Outcome> {
  const { out, entry } = channel;
  let opened;
  try {
    opened = await ctx.store.openFile(request.name);
  } catch (error) {
    return await refuse(out, error);
  }
  // Counted from the start of the file, as the END frame counts; the log says what moved.
  let sent = 0;
  let skipped = 0;
  try {
    let resumeFrom: ResumePoint | undefined;
    const { offset, prefix } = request;
    if (offset && prefix && offset <= opened.size) {
      const checksum = await checksumFilePrefix(opened.file, offset, { pool: ctx.pool });
      if (checksum && (await checksum.fork()).digest() === prefix) {
        resumeFrom = { size: offset, checksum };
      }
    }
    // A prefix that does not match starts the download over, from byte 0.
    skipped = resumeFrom?.size ?? 0;
    sent = skipped;
    await opened.file.seek(skipped, Deno.SeekMode.Start);
    // The client's rate limit, if it has one: its bytes leave as it takes them, in small
    // frames, so neither side's idle timeout waits on megabytes stuck in the kernel's buffers.
    // Never slower than the least rate an upload must keep: a client asking for less reads at
    // its own pace beyond it, as one without a rate does, and meets the idle timeout the same
    // way; otherwise a request for a byte a second would keep the server busy for ever.
    const pacer = request.rate ? new RateLimiter(Math.max(request.rate, ctx.minRate)) : undefined;
    // A small file's OK, DATA and END leave together (see FrameWriter.cork); a paced one's not.
    if (!pacer && opened.size - (resumeFrom?.size ?? 0) <= CORK_LIMIT) out.cork();
    await out.writeControl(FrameType.OK, {
      size: opened.size,
      mtime: opened.mtime,
      offset: resumeFrom?.size ?? 0,
    });
    const result = await sendData(opened.file, out, {
      pool: ctx.pool,
      sizeHint: opened.size - (resumeFrom?.size ?? 0),
      resumeFrom,
      onProgress: (bytes) => sent = bytes,
      throttle: pacer && ((bytes) => pacer.take(bytes)),
      maxChunk: pacer?.chunkSize,
    });
    const resumed = resumeFrom ? ` (resumed from ${resumeFrom.size})` : "";
    return { bytes: result.size - skipped, result: `ok ${result.checksum}${resumed}` };
  } catch (error) {
    const bytes = sent - skipped;
    if (entry.reason) return { bytes, result: `cut (${entry.reason})`, close: true, cut: true };
    const gone = interruptionOf(error);
    if (gone) return { bytes, result: `interrupted (client went away: ${gone})`, close: true };
    const { code, message } = classify(error);
    await out.writeControl(FrameType.ABORT, { code, message }).catch(() => {});
    return { bytes, result: `failed (${code}: ${message})`, close: true };
  } finally {
    // The stream may have closed the file already, at its end.
    closeQuietly(opened.file);
  }
}

/** What became of an interrupted upload the server tried to keep, for the log. */
function keptOrNot(kept: KeepResult | Error, why: string, ctx: Context): string {
  if (kept instanceof Error) return `discarded (${why}): could not keep it: ${kept.message}`;
  if (kept.kept) {
    return `kept for resume (${why}), until ${new Date(kept.expiresAt).toISOString()}`;
  }
  return kept.reason === "off"
    ? `discarded (${why}): keeping is off`
    : `discarded (${why}): over the keep budget of ${formatBytes(ctx.store.kept.budget)}`;
}

/** One log line's text for a kept upload removed. */
function describeEviction(eviction: Eviction, bounds: { budget: number; maxAgeMs: number }) {
  const why = {
    budget: `over the keep budget of ${formatBytes(bounds.budget)}`,
    off: "keeping is off",
    expired: `expired after ${formatDuration(bounds.maxAgeMs)}`,
    room: `the disk is full and ${quote(eviction.forName ?? "")} needs the space`,
    replaced: "a new upload of the name started over",
  }[eviction.reason];
  return `evicted kept upload ${quote(eviction.name)} ${eviction.bytes} bytes: ${why}`;
}

async function serveKept(out: FrameWriter, ctx: Context): Promise<Outcome> {
  let listing: Uint8Array;
  try {
    if (!ctx.showKept) {
      throw new StoreError(
        "denied",
        "This server does not show its kept uploads (its operator can allow it with --show-kept)",
      );
    }
    listing = encodeListing(await ctx.store.kept.list());
  } catch (error) {
    return await refuse(out, error);
  }
  return await sendListing(listing, out, ctx);
}

async function serveList(
  out: FrameWriter,
  ctx: Context,
  list: () => Promise<Uint8Array>,
): Promise<Outcome> {
  let listing: Uint8Array;
  try {
    listing = await list();
  } catch (error) {
    return await refuse(out, error);
  }
  return await sendListing(listing, out, ctx);
}

/** Sends an encoded listing as OK and a data phase. */
async function sendListing(listing: Uint8Array, out: FrameWriter, ctx: Context): Promise<Outcome> {
  if (listing.length <= CORK_LIMIT) out.cork();
  await out.writeControl(FrameType.OK, { size: listing.length });
  const result = await sendData(new Blob([listing as Uint8Array<ArrayBuffer>]).stream(), out, {
    pool: ctx.pool,
    sizeHint: listing.length,
  });
  return { bytes: result.size, result: "ok" };
}

function stamp(): string {
  return new Date().toISOString();
}
