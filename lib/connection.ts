/**
 * What the client and the server both do with a connection, below the protocol: read a host as
 * given, name the ends as `host:port` and tell a loopback address, send small frames at once
 * ({@link noDelay}), close it whether or not it is closed already, recognise a TLS peer by its
 * first byte, tell a host name that does not resolve from other failures to connect or listen,
 * and how often a watchdog looks at a connection for a time limit.
 *
 * @module
 */

/**
 * A host and port as `host:port`, with an IPv6 address in brackets (`[::1]:9000`), as URLs and
 * most tools write them.
 *
 * @example
 * ```ts
 * formatHostPort("::1", 9000); // "[::1]:9000"
 * formatHostPort("files.example", 9000); // "files.example:9000"
 * ```
 */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** A host as given by a user, without the brackets some put around an IPv6 address. */
export function normalizeHost(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Whether a listening address is this machine's loopback (`localhost`, 127.0.0.0/8, `::1`). */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || hostname.startsWith("127.");
}

/** An address as {@link formatHostPort} writes it; a Unix socket as its transport's name. */
export function formatAddr(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return addr.transport;
  return formatHostPort(addr.hostname, addr.port);
}

/** Closes a connection (or a file, or a listener) that may be closed already. */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}

/** First byte of a TLS handshake record: a TLS client's ClientHello opens with it. */
export const TLS_HANDSHAKE_RECORD = 0x16;

/** First byte of a TLS alert record: how a TLS server answers a client that does not speak TLS. */
export const TLS_ALERT_RECORD = 0x15;

/**
 * Whether a failure to connect or to listen means that the host name does not resolve. Deno
 * reports that as a plain error with no class or code of its own, so only its text (from the
 * system's resolver, which differs between Linux, macOS and Windows) can tell; this is the one
 * place that reads it.
 */
export function isUnresolvedHost(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return /failed to lookup|not known|nodename nor servname/i.test(error.message);
}

/**
 * How often a watchdog checks a time limit of `limitMs`: a quarter of it, so that it fires at
 * most a quarter late, but no more often than every 50 ms and at least once a second.
 *
 * @example
 * ```ts
 * watchInterval(10_000); // 1000
 * watchInterval(400); // 100
 * ```
 */
export function watchInterval(limitMs: number): number {
  return Math.min(1000, Math.max(50, limitMs / 4));
}

/**
 * Turns off Nagle's algorithm: with it, each small frame waited for the peer's delayed ACK, which
 * made an mput of many small files many times slower (docs/performance.md, "Small frames leave at
 * once").
 */
export function noDelay(conn: Deno.Conn): void {
  // TLS connections have no such switch in Deno; only plain TCP ones do.
  if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
}
