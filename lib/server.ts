/**
 * The server: {@link startServer} opens the store, listens, and runs the accept loop, each
 * connection on its own so that one slow, broken or hostile client never holds up or crashes
 * another; it wires admission (connection limits) and the watchdog to each connection, and stops
 * with a close or a graceful shutdown. One connection is served by lib/server_connection.ts, one
 * request by lib/server_requests.ts.
 *
 * @module
 */

import { type BufferPool, defaultPool } from "./buffer_pool.ts";
import { closeQuietly, formatAddr, noDelay } from "./connection.ts";
import { describeError, StartError, UserError } from "./errors.ts";
import { FileStore } from "./file_store.ts";
import { diskPool } from "./disk_pool.ts";
import type { Store } from "./store.ts";
import { KEPT_DEFAULTS } from "./kept_uploads.ts";
import type { ErrorMessage } from "./protocol.ts";
import { Admission } from "./admission.ts";
import { Watchdog } from "./watchdog.ts";
import { DEFAULT_HASH_ARENA_SIZE, requestHashArena } from "./xxh3.ts";
import { startHttpServer } from "./http/http_server.ts";
import type { RunningHttpServer } from "./http/http_server.ts";
import { createAccess } from "./http/access.ts";
import { type Context, stamp, type Tracked } from "./server_context.ts";
import { handleConnection, refuseBusy } from "./server_connection.ts";
import { describeEviction } from "./server_requests.ts";

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
  /** A bigger folder's HTTP page shows this many entries at a time (default 1,000). */
  httpPageSize?: number;
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
  }, {
    // Connections admitted but not yet watched are in their handshake: never reclaimed.
    idleFor: (entry) => entry.watch?.idleBetweenRequests(Date.now()),
    reclaimed: (ticket) => {
      const idle = Math.round((ticket.value.watch.idleBetweenRequests(Date.now()) ?? 0) / 1000);
      cut(
        ticket.value,
        `reclaimed: idle between requests for ${idle} s, its slot given to a new client`,
        {
          code: "busy",
          message: `Server busy: this connection sat idle while all ${maxConnections} ` +
            "connections were taken, and its slot went to another client",
        },
      );
    },
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
        pageSize: options.httpPageSize,
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
  // A served folder's lookups run on a disk thread, kept ready while the server listens.
  let holdsDisk = store instanceof FileStore;
  const diskBroken = (why: string) =>
    log(`${stamp()} disk threads unavailable (${why}): lookups run on the event loop`);
  if (holdsDisk) diskPool.hold(diskBroken);
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
    if (holdsDisk) diskPool.release(diskBroken);
    holdsDisk = false;
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
