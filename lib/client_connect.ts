/**
 * Connecting a client: {@link openConnection} opens the TCP (or TLS) connection with a timeout
 * and one-line errors for the usual failures, and {@link connect} completes the handshake on it
 * within the same timeout and hands back the {@link Session}.
 *
 * @module
 */

import { type BufferPool, defaultPool } from "./buffer_pool.ts";
import { formatHostPort, isUnresolvedHost, noDelay, normalizeHost } from "./connection.ts";
import { describeError, UserError } from "./errors.ts";
import { type TlsTrust, upgradeToTls } from "./tls_connect.ts";
import { DEFAULT_HASH_ARENA_SIZE, requestHashArena } from "./xxh3.ts";
import { Session } from "./client.ts";

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** Give up connecting and handshaking after this many milliseconds (default 15000). */
  timeoutMs?: number;
  /** Buffer pool for transfers (default: one shared by the whole process). */
  pool?: BufferPool;
  /**
   * Shared secret to prove to the server, which must then prove it too (default none: a server
   * that asks for a token is refused with a {@link UserError}).
   */
  token?: Uint8Array;
  /**
   * Use TLS, trusting the server as this says: CAs, a pinned fingerprint, known servers
   * (default: plain TCP).
   */
  tls?: TlsTrust;
  /**
   * Give up a request once the server has sent and taken nothing for this many milliseconds,
   * not counting waits on the local side (default: never; see {@link SessionOptions}).
   */
  stallTimeoutMs?: number;
  /**
   * Bytes of the checksum kernel's memory to reserve for transfer buffers, which are hashed in
   * place there (default 8 MiB, {@link DEFAULT_HASH_ARENA_SIZE}: room for a session's two 1 MiB
   * buffers and more). The reserve belongs to the process: until the first transfer the largest
   * request wins, and after it the size is fixed (see {@link requestHashArena}).
   */
  hashArenaSize?: number;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string, onTimeout: () => void) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new UserError(`${what} timed out after ${ms / 1000} s`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Opens a TCP connection with a timeout and one-line errors for the usual failures. */
export async function openConnection(
  host: string,
  port: number,
  options: ConnectOptions = {},
): Promise<{ conn: Deno.Conn; target: string }> {
  const hostname = normalizeHost(host);
  const target = formatHostPort(hostname, port);
  const timeoutMs = options.timeoutMs ?? 15000;
  let conn: Deno.Conn | undefined;
  const connecting = Deno.connect({ hostname, port }).then((c) => conn = c);
  connecting.catch(() => {});
  try {
    await withTimeout(connecting, timeoutMs, `Connecting to ${target}`, () => {});
  } catch (error) {
    connecting.then((c) => c.close(), () => {});
    // A refusal by Deno's permissions is reported as such, with what to do (lib/cli.ts).
    if (error instanceof UserError || error instanceof Deno.errors.NotCapable) throw error;
    if (error instanceof Deno.errors.ConnectionRefused) {
      throw new UserError(`Cannot connect to ${target}: connection refused`);
    }
    if (isUnresolvedHost(error)) {
      throw new UserError(`Cannot resolve host ${JSON.stringify(hostname)}`);
    }
    throw new UserError(`Cannot connect to ${target}: ${describeError(error)}`);
  }
  // Nagle off on the socket itself: Deno's TLS connections have no such switch of their own.
  noDelay(conn!);
  if (options.tls) {
    return {
      conn: await upgradeToTls(conn! as Deno.TcpConn, hostname, port, options.tls, timeoutMs),
      target,
    };
  }
  return { conn: conn!, target };
}

/**
 * Connects to a ferry server and completes the handshake (and the token exchange, with
 * `token`). Throws {@link UserError} when the server cannot be reached or is not a ferry server,
 * and {@link ProtocolError} when it breaks the protocol.
 *
 * @example Upload a stream, then read it back
 * ```ts
 * import { connect } from "@ferry/ferry";
 *
 * async function roundTrip(port: number): Promise<string> {
 *   const session = await connect("127.0.0.1", port, { timeoutMs: 5000 });
 *   try {
 *     const bytes = new TextEncoder().encode("some text\n");
 *     // A ReadableStream in; `size` is optional, and lets the server refuse early.
 *     const put = await session.put(ReadableStream.from([bytes]), "notes.txt", {
 *       size: bytes.length,
 *       overwrite: true,
 *     });
 *     console.log(`stored ${put.size} bytes, ${put.checksum}`);
 *     // A ReadableStream out, verified once it closes.
 *     return await new Response(await session.getStream("notes.txt")).text();
 *   } finally {
 *     session.close();
 *   }
 * }
 * ```
 */
export async function connect(
  host: string,
  port: number,
  options: ConnectOptions = {},
): Promise<Session> {
  requestHashArena(options.hashArenaSize ?? DEFAULT_HASH_ARENA_SIZE);
  const { conn, target } = await openConnection(host, port, options);
  const timeoutMs = options.timeoutMs ?? 15000;
  const session = new Session(conn, target, {
    pool: options.pool ?? defaultPool,
    token: options.token,
    tls: options.tls !== undefined,
    stallTimeoutMs: options.stallTimeoutMs,
  });
  await withTimeout(
    session.handshake(),
    timeoutMs,
    `Handshake with ${target}`,
    () => session.close(),
  );
  return session;
}
