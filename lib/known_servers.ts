/**
 * The client's known servers: the certificates the user chose to trust, one per host and port,
 * in `known_servers` in the user's config folder, as ssh keeps `known_hosts`. Each line is
 * `HOST:PORT SHA256:FINGERPRINT CERTIFICATE` (the certificate as base64 DER, so a pinned
 * connection can hand it to TLS as its only trust anchor); lines starting with `#` are comments.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { formatHostPort, normalizeHost } from "./connection.ts";
import { describeError, UserError } from "./errors.ts";
import { StagedFile } from "./staged_file.ts";
import { chmodQuietly, ensurePrivateDir, userDir } from "./user_dirs.ts";
import { formatFingerprint } from "./x509.ts";

/** Name of the file in the user's config folder. */
export const KNOWN_SERVERS_FILE = "known_servers";

/** A server the user trusts. */
export interface KnownServer {
  /** `SHA256:...` of its certificate. */
  fingerprint: string;
  /** Its certificate, DER. */
  cert: Uint8Array;
}

/** The known-servers file of this user, or null when the config folder cannot be found. */
export function knownServersPath(): string | null {
  const dir = userDir("config");
  return dir === null ? null : join(dir, KNOWN_SERVERS_FILE);
}

/**
 * How a server is named in the file: `host:port`, lower case, IPv6 addresses in brackets. Two
 * spellings of one server (a name and its address) are two entries, as in ssh.
 */
export function serverKey(host: string, port: number): string {
  return formatHostPort(normalizeHost(host).toLowerCase(), port);
}

async function readLines(path: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(path)).split("\n").filter((line) => line !== "");
  } catch (error) {
    // No file, or no folder for it (a path through a regular file): nothing is known.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return [];
    }
    throw new UserError(`Cannot read ${path}: ${error instanceof Error ? error.message : error}`);
  }
}

/**
 * The certificate remembered for `host` and `port` in the file at `path`, if any. A line whose
 * certificate does not match its fingerprint (edited by hand) is ignored.
 *
 * @example
 * ```ts
 * const known = await lookupKnownServer(knownServersPath()!, "files.example.org", 9021);
 * if (known) console.log(known.fingerprint);
 * ```
 */
export async function lookupKnownServer(
  path: string,
  host: string,
  port: number,
): Promise<KnownServer | undefined> {
  const key = serverKey(host, port);
  for (const line of await readLines(path)) {
    const [name, fingerprint, cert] = line.trim().split(/\s+/);
    if (name !== key || cert === undefined) continue;
    let der: Uint8Array;
    try {
      der = Uint8Array.fromBase64(cert);
    } catch {
      // A line spoiled by hand: as if it were not there.
      continue;
    }
    if (await formatFingerprint(der) === fingerprint) return { fingerprint, cert: der };
  }
  return undefined;
}

/**
 * Remembers `cert` (DER) as the certificate of `host` and `port`, replacing what was remembered
 * for them before. The file is replaced atomically, owner-only; returns the fingerprint that was
 * replaced, if any.
 */
export async function rememberServer(
  path: string,
  host: string,
  port: number,
  cert: Uint8Array,
): Promise<string | undefined> {
  const key = serverKey(host, port);
  const lines = await readLines(path);
  const previous = lines.find((line) => line.split(/\s+/)[0] === key)?.split(/\s+/)[1];
  const kept = lines.filter((line) => line.split(/\s+/)[0] !== key);
  if (kept.length === 0) {
    kept.push("# Servers ferry trusts: HOST:PORT SHA256:FINGERPRINT CERTIFICATE");
  }
  kept.push(`${key} ${await formatFingerprint(cert)} ${cert.toBase64()}`);
  try {
    await ensurePrivateDir(dirname(path));
    const staged = await StagedFile.open(`${path}.${crypto.randomUUID()}.tmp`, {
      permissions: 0o600,
    });
    try {
      await staged.write(new TextEncoder().encode(kept.join("\n") + "\n"));
      await chmodQuietly(staged.path, 0o600);
      await staged.commit(path, { replace: true });
    } finally {
      await staged.discard();
    }
  } catch (error) {
    const why = describeError(error);
    throw new UserError(`Cannot remember the server in ${path}: ${why}`);
  }
  return previous;
}
