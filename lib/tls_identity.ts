/**
 * The server's TLS identity: the certificate and key it serves with. Either made by ferry on the
 * first `--tls` start (a self-signed leaf for the names and addresses it serves, kept in a state
 * folder outside the root, owner-only, and reused ever after), or the operator's own files,
 * checked at start for the faults that make every client refuse them.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { join, resolve } from "node:path";
import { describeError, UserError } from "./errors.ts";
import { StagedFile } from "./staged_file.ts";
import { isInside, realPathOf, type TlsSource } from "./server_access.ts";
import { chmodQuietly, ensurePrivateDir, userDir, userDirVariables } from "./user_dirs.ts";
import { formatFingerprint, makeSelfSignedCertificate, pemCertificates } from "./x509.ts";
import { NAME } from "./version.ts";

/** File in the state folder holding the made certificate and its key (PEM, owner-only). */
export const IDENTITY_FILE = "tls-identity.pem";

/** A certificate chain and key to serve TLS with. */
export interface ServerIdentity {
  /** PEM certificate chain, the server's own certificate first. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** Fingerprint of the server's own certificate, as clients pin it (`SHA256:...`). */
  fingerprint: string;
  /** Where it was read from (the identity file, or the certificate file). */
  path: string;
  /** Whether this start made it. */
  created: boolean;
}

const HOW_TO_FIX =
  `make one as docs/security.md shows, or start with --tls alone and ${NAME}-server ` +
  "makes its own";

/**
 * Checks a certificate chain and key that the operator gave, and throws a one-line
 * {@link UserError} saying why and how to do better for the faults that make clients refuse the
 * certificate: a CA certificate used as the server's own, outside its validity, or a key that is
 * not its key. Returns the server certificate's fingerprint.
 *
 * @example
 * ```ts
 * const certPem = await Deno.readTextFile("c.pem");
 * const keyPem = await Deno.readTextFile("k.pem");
 * const fingerprint = await checkServerCertificate(certPem, keyPem, { cert: "c.pem", key: "k.pem" });
 * ```
 */
export async function checkServerCertificate(
  certPem: string,
  keyPem: string,
  files: { cert: string; key: string },
  now: Date = new Date(),
): Promise<string> {
  const fail = (why: string) => new UserError(`Cannot serve TLS with ${why}`);
  const chain = pemCertificates(certPem);
  if (chain.length === 0) {
    throw fail(`${files.cert}: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain[0]);
  } catch {
    throw fail(`${files.cert}: its first certificate cannot be parsed`);
  }
  if (leaf.ca) {
    throw fail(
      `${files.cert}: it is a CA certificate (basicConstraints CA:TRUE), which clients refuse as ` +
        `a server's own (CaUsedAsEndEntity); ${HOW_TO_FIX}`,
    );
  }
  if (leaf.validFromDate.getTime() > now.getTime()) {
    throw fail(
      `${files.cert}: it is not valid until ${leaf.validFromDate.toISOString()} ` +
        `(is this machine's clock right?); ${HOW_TO_FIX}`,
    );
  }
  if (leaf.validToDate.getTime() < now.getTime()) {
    throw fail(
      `${files.cert}: it expired on ${leaf.validToDate.toISOString()}; ${HOW_TO_FIX}`,
    );
  }
  if (!leaf.subjectAltName) {
    throw fail(
      `${files.cert}: it names no host (no subjectAltName), which clients require; ${HOW_TO_FIX}`,
    );
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw fail(`${files.key}: it holds no private key that can be read (PEM, unencrypted)`);
  }
  if (!leaf.checkPrivateKey(key)) {
    throw fail(
      `${files.cert} and ${files.key}: the key is not the certificate's key; ` +
        "give the key the certificate was made for",
    );
  }
  return await formatFingerprint(chain[0]);
}

/**
 * Reads the operator's `--tls-cert` and `--tls-key` files and checks them
 * ({@link checkServerCertificate}).
 */
export async function readServerIdentity(
  certFile: string,
  keyFile: string,
): Promise<ServerIdentity> {
  const cert = await readText(certFile);
  const key = await readText(keyFile);
  const fingerprint = await checkServerCertificate(cert, key, { cert: certFile, key: keyFile });
  return { cert, key, fingerprint, path: certFile, created: false };
}

/** Options for {@link loadOrCreateIdentity}. */
export interface IdentityOptions {
  /** Folder to keep the identity in (default: the user's state folder, see lib/user_dirs.ts). */
  stateDir?: string;
  /** The served root: the state folder must not be inside it. */
  root: string;
  /** Address the server listens on: named in a new certificate, with every local one if wild. */
  hostname: string;
}

/**
 * The server's own identity from the state folder, made there on first use: a self-signed
 * ECDSA certificate (not a CA) naming `hostname`, localhost, 127.0.0.1, ::1, this machine's name
 * and, for a server listening on every address, every address of this machine. The file is
 * written owner-only and never replaced, so the fingerprint clients pinned stays valid.
 *
 * @example
 * ```ts
 * const id = await loadOrCreateIdentity({ root: "/srv/files", hostname: "0.0.0.0" });
 * console.log(id.fingerprint);
 * ```
 */
export async function loadOrCreateIdentity(options: IdentityOptions): Promise<ServerIdentity> {
  const dir = await stateDirFor(options);
  const path = join(dir, IDENTITY_FILE);
  try {
    try {
      return await readIdentity(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await ensurePrivateDir(dir);
    const made = await makeSelfSignedCertificate({
      commonName: `${NAME}-server` + (hostName() ? ` on ${hostName()}` : ""),
      names: serverNames(options.hostname),
    });
    const temp = join(dir, `.${IDENTITY_FILE}.${crypto.randomUUID()}.tmp`);
    const staged = await StagedFile.open(temp, { permissions: 0o600 });
    try {
      await staged.write(new TextEncoder().encode(made.cert + made.key));
      await chmodQuietly(temp, 0o600);
      // Another server starting at the same moment may have made one first: then use that one.
      if (!await staged.commit(path)) return await readIdentity(path);
    } finally {
      await staged.discard();
    }
    return { ...await readIdentity(path), created: true };
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new UserError(
        `Missing permission for ${dir}, where --tls keeps its key: run with --allow-read and ` +
          "--allow-write for it, or choose another folder with --state-dir",
      );
    }
    if (error instanceof UserError) throw error;
    const why = describeError(error);
    throw new UserError(`Cannot keep the TLS key in ${dir}: ${why}`);
  }
}

async function stateDirFor(options: IdentityOptions): Promise<string> {
  const base = options.stateDir === undefined ? userDir("state") : resolve(options.stateDir);
  if (base === null) {
    throw new UserError(
      `--tls needs a folder for its key, and ${userDirVariables("state")} cannot be read: ` +
        "choose one with --state-dir DIR (or run with --allow-env)",
    );
  }
  const real = (path: string) => realPathOf(path).catch(() => resolve(path));
  if (isInside(await real(base), await real(options.root))) {
    throw new UserError(
      `State folder ${base} is inside the served folder ${options.root}, which would serve the ` +
        "TLS private key: choose a --state-dir outside it",
    );
  }
  return base;
}

async function readIdentity(path: string): Promise<ServerIdentity> {
  if (Deno.build.os !== "windows") {
    const mode = (await Deno.stat(path)).mode ?? 0;
    if (mode & 0o077) {
      throw new UserError(
        `${path} holds a private key but others may read it (mode ${
          (mode & 0o777).toString(8)
        }): ` +
          `chmod 600 ${path}`,
      );
    }
  }
  const text = await Deno.readTextFile(path);
  const key = text.match(/-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----\n?/)?.[0] ?? "";
  const cert = text.replace(key, "");
  const fingerprint = await checkServerCertificate(cert, key, { cert: path, key: path });
  return { cert, key, fingerprint, path, created: false };
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    // A refusal by Deno's permissions is reported as such, with what to do.
    if (error instanceof Deno.errors.NotCapable) throw error;
    const why = error instanceof Deno.errors.NotFound ? "no such file" : String(error);
    throw new UserError(`Cannot read ${path}: ${why}`);
  }
}

/** Whether an address means every address of this machine. */
export function isWildcard(hostname: string): boolean {
  return hostname === "0.0.0.0" || hostname === "::" || hostname === "";
}

/** This machine's name, when the program may ask for it; never prompts. */
export function hostName(): string | undefined {
  if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state !== "granted") {
    return undefined;
  }
  try {
    return Deno.hostname();
  } catch {
    return undefined;
  }
}

/**
 * The names and addresses a server listening on `hostname` is reached by: that address (or all
 * of this machine's, for a wildcard), localhost and the loopback addresses, and the machine name.
 */
export function serverNames(hostname: string): string[] {
  const names = ["localhost", "127.0.0.1", "::1"];
  if (!isWildcard(hostname)) names.unshift(hostname);
  const machine = hostName();
  if (machine) names.push(machine);
  if (
    isWildcard(hostname) &&
    Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state === "granted"
  ) {
    for (const nic of Deno.networkInterfaces()) names.push(nic.address);
  }
  return names;
}

/** The identity `source` names: checked files, or the state folder's own (made if missing). */
export function loadIdentity(
  source: TlsSource,
  root: string,
  hostname: string,
): Promise<ServerIdentity> {
  return "certFile" in source
    ? readServerIdentity(source.certFile, source.keyFile)
    : loadOrCreateIdentity({ stateDir: source.stateDir, root, hostname });
}

/**
 * The lines a server prints at start about its certificate: the fingerprint, and a client
 * command that pins it, ready to paste.
 */
export function identityBanner(identity: ServerIdentity, addr: Deno.NetAddr): string[] {
  const host = isWildcard(addr.hostname) ? hostName() ?? "HOST" : addr.hostname;
  const origin = identity.created
    ? `made now and kept in ${identity.path}`
    : `from ${identity.path}`;
  return [
    `TLS certificate ${identity.fingerprint} (${origin})`,
    `clients connect with: ${NAME} --fingerprint ${identity.fingerprint} ${host} ${addr.port} list`,
  ];
}
