/**
 * The client's side of TLS: deciding whom to trust and upgrading a TCP connection. A server is
 * trusted through a CA (the system's roots plus `--ca`), or pinned: by `--fingerprint`, or by the
 * certificate remembered in known_servers. A pinned connection hands TLS the pinned certificate
 * as its only anchor for the name it carries, so the check happens inside the handshake, before
 * any ferry byte is sent. Deno's TLS connections do not show the peer's certificate, so when a
 * certificate has to be learned (first use, or to name the one a server showed instead), it is
 * read by a separate handshake through node:tls that sends nothing and is closed at once.
 *
 * @module
 */

import { closeQuietly, formatHostPort } from "./connection.ts";
import { describeError, UserError } from "./errors.ts";
import { lookupKnownServer, rememberServer } from "./known_servers.ts";
import { NAME } from "./version.ts";
import { formatFingerprint, toPem } from "./x509.ts";

/** Whom a TLS client trusts. */
export interface TlsTrust {
  /** PEM certificates trusted on top of the system's roots (`--ca`). */
  caCerts?: string[];
  /** Pin: only a server whose certificate has this fingerprint (`SHA256:...`) is accepted. */
  fingerprint?: string;
  /** The known_servers file: consulted to pin known servers, and written for `--fingerprint`. */
  knownServers?: string | null;
  /** Told when a certificate pinned by `fingerprint` is remembered for later connections. */
  onRemember?: (line: string) => void;
}

/**
 * Reads the certificate a TLS server at `host`, `port` shows, without trusting it and without
 * sending it a byte beyond the handshake. Resolves with its DER, or null when there is no TLS
 * server there (or it did not answer within `timeoutMs`).
 *
 * @example
 * ```ts
 * import { formatFingerprint } from "./x509.ts";
 *
 * const der = await probeCertificate("127.0.0.1", 9021, 5000);
 * if (der) console.log(await formatFingerprint(der));
 * ```
 */
export function probeCertificate(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<Uint8Array | null> {
  // Loaded when used: node:tls costs every client start tens of milliseconds otherwise.
  return Promise.all([import("node:tls"), import("node:net")]).then(([tls, net]) =>
    readPeerCertificate(tls.connect, net.isIP, host, port, timeoutMs)
  );
}

function readPeerCertificate(
  nodeConnectTls: typeof import("node:tls").connect,
  isIP: typeof import("node:net").isIP,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<Uint8Array | null> {
  return new Promise((resolve) => {
    const socket = nodeConnectTls({
      host,
      port,
      rejectUnauthorized: false,
      ...(isIP(host) ? {} : { servername: host }),
    });
    const finish = (der: Uint8Array | null) => {
      clearTimeout(timer);
      // end(), not destroy(): a TLS close the server sees as a peer that simply left.
      if (der) socket.end();
      else socket.destroy();
      resolve(der);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.once("secureConnect", () => {
      const raw = socket.getPeerCertificate()?.raw;
      finish(raw ? new Uint8Array(raw) : null);
    });
    socket.once("error", () => finish(null));
    socket.once("close", () => finish(null));
  });
}

/**
 * The name to check a pinned certificate against: one the certificate carries (localhost first,
 * which no public CA certifies, so only the pinned key can pass), or none when it names no host.
 */
async function pinnedName(der: Uint8Array): Promise<string | undefined> {
  const { X509Certificate } = await import("node:crypto");
  let names: string[] = [];
  try {
    names = (new X509Certificate(der).subjectAltName ?? "").split(/,\s*/)
      .map((entry) => entry.replace(/^(DNS|IP Address):/, ""))
      .filter((name) => name !== "" && !name.includes("*"));
  } catch {
    // Unreadable: checked without a name.
  }
  return names.find((name) => name.toLowerCase() === "localhost") ?? names[0];
}

async function handshake(
  tcp: Deno.TcpConn,
  options: Deno.StartTlsOptions,
  timeoutMs: number,
  target: string,
): Promise<Deno.TlsConn> {
  const conn = await Deno.startTls(tcp, options);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      conn.handshake(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          closeQuietly(conn);
          reject(
            new UserError(`TLS handshake with ${target} timed out after ${timeoutMs / 1000} s`),
          );
        }, timeoutMs);
      }),
    ]);
  } catch (error) {
    closeQuietly(conn);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return conn;
}

function trustCommand(host: string, port: number, fingerprint: string): string {
  return `${NAME} --fingerprint ${fingerprint} ${host} ${port} trust`;
}

/**
 * Upgrades a connected TCP socket to TLS, trusting the server as `trust` says, and throws a
 * one-line {@link UserError} when it cannot be trusted: with the fingerprint seen and the
 * command that trusts it for a server no CA vouches for, with both fingerprints for one that
 * does not match its pin. Nothing is sent but the handshake until the server is trusted.
 */
export async function upgradeToTls(
  tcp: Deno.TcpConn,
  host: string,
  port: number,
  trust: TlsTrust,
  timeoutMs: number,
): Promise<Deno.TlsConn> {
  const target = formatHostPort(host, port);
  const known = trust.knownServers
    ? await lookupKnownServer(trust.knownServers, host, port)
    : undefined;
  const pin = trust.fingerprint ?? known?.fingerprint;
  if (pin === undefined) {
    try {
      return await handshake(tcp, { hostname: host, caCerts: trust.caCerts }, timeoutMs, target);
    } catch (error) {
      if (error instanceof UserError) throw error;
      const seen = error instanceof Deno.errors.InvalidData
        ? await probeCertificate(host, port, timeoutMs)
        : null;
      if (seen === null) {
        throw new UserError(
          `TLS handshake with ${target} failed: ${describeError(error)} ` +
            "(does the server use TLS, and does --ca match?)",
        );
      }
      const fingerprint = await formatFingerprint(seen);
      throw new UserError(
        `Server ${target} is not known and no CA vouches for its certificate ` +
          `(${describeError(error).replace(/^invalid peer certificate: /, "")}); ` +
          `its fingerprint is ${fingerprint}: if ${NAME}-server printed the same, trust it with ` +
          `'${trustCommand(host, port, fingerprint)}' (or pin it in each command with ` +
          `--fingerprint ${fingerprint})`,
      );
    }
  }
  let cert = known?.fingerprint === pin ? known.cert : undefined;
  if (cert === undefined) {
    // First use of this pin: learn the certificate it names.
    const seen = await probeCertificate(host, port, timeoutMs);
    if (seen === null) {
      closeQuietly(tcp);
      throw new UserError(`Cannot read a TLS certificate from ${target}: is it a TLS server?`);
    }
    const seenPrint = await formatFingerprint(seen);
    if (seenPrint !== pin) {
      closeQuietly(tcp);
      throw mismatch(target, host, port, pin, seenPrint, false);
    }
    cert = seen;
    if (trust.knownServers) {
      // Remembering saves the next connection a handshake; failing to is no reason to stop.
      try {
        await rememberServer(trust.knownServers, host, port, cert);
        trust.onRemember?.(`remembered ${target} as ${pin} in ${trust.knownServers}`);
      } catch (error) {
        trust.onRemember?.(`could not remember ${target}: ${describeError(error)}`);
      }
    }
  }
  const name = await pinnedName(cert);
  if (name === undefined) {
    // Without a name to check, any certificate a public CA issued would pass: refuse instead.
    closeQuietly(tcp);
    throw new UserError(
      `The certificate of ${target} names no host (no subjectAltName), so it cannot be pinned; ` +
        "the server needs one that does (docs/security.md)",
    );
  }
  try {
    return await handshake(
      tcp,
      { hostname: name, caCerts: [toPem("CERTIFICATE", cert)] },
      timeoutMs,
      target,
    );
  } catch (error) {
    if (error instanceof UserError) throw error;
    const seen = await probeCertificate(host, port, timeoutMs);
    const seenPrint = seen === null ? null : await formatFingerprint(seen);
    if (seenPrint !== null && seenPrint !== pin) {
      throw mismatch(target, host, port, pin, seenPrint, trust.fingerprint === undefined);
    }
    throw new UserError(`TLS handshake with ${target} failed: ${describeError(error)}`);
  }
}

function mismatch(
  target: string,
  host: string,
  port: number,
  expected: string,
  seen: string,
  remembered: boolean,
): UserError {
  if (remembered) {
    return new UserError(
      `WARNING: THE CERTIFICATE OF ${target} HAS CHANGED: it was ${expected} and is now ${seen}. ` +
        "Someone may be intercepting the connection, or the server has a new certificate; " +
        "nothing was sent. If the server's operator confirms the new fingerprint, trust it with " +
        `'${trustCommand(host, port, seen)}'`,
    );
  }
  return new UserError(
    `Server ${target} has certificate ${seen}, not the pinned ${expected}: nothing was sent ` +
      "(check the fingerprint the server printed)",
  );
}

/** What {@link trustServer} did. */
export interface Trusted {
  /** The fingerprint now trusted. */
  fingerprint: string;
  /** The fingerprint it replaced, when a different one was known. */
  replaced?: string;
}

/**
 * Reads the certificate of the server at `host`, `port` and remembers it in `knownServers`: the
 * `trust` command. With `fingerprint`, only a certificate with that fingerprint is remembered.
 */
export async function trustServer(
  host: string,
  port: number,
  options: { fingerprint?: string; knownServers: string; timeoutMs: number },
): Promise<Trusted> {
  const target = formatHostPort(host, port);
  const seen = await probeCertificate(host, port, options.timeoutMs);
  if (seen === null) {
    throw new UserError(`Cannot read a TLS certificate from ${target}: is it a TLS server?`);
  }
  const fingerprint = await formatFingerprint(seen);
  if (options.fingerprint !== undefined && options.fingerprint !== fingerprint) {
    throw mismatch(target, host, port, options.fingerprint, fingerprint, false);
  }
  const previous = await rememberServer(options.knownServers, host, port, seen);
  return { fingerprint, replaced: previous !== fingerprint ? previous : undefined };
}
