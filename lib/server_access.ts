/**
 * What the server's process may touch on disk besides the names clients ask for: the folder it
 * serves, and the secrets it reads once at start (`--token-file`, and the TLS identity's files:
 * `--tls-cert` and `--tls-key`, or the state folder of ferry's own, {@link TlsSource}).
 * Owns where these really are (symlinks resolved), the rule that no secret lies inside the
 * served folder (any client could download it), and the exact read and write lists that
 * `deno task serve` grants the server (see lib/server_launch.ts).
 *
 * @module
 */

import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { UserError } from "./errors.ts";
import { userDir } from "./user_dirs.ts";
import { CREDENTIAL_ENV, credentialsFilePath } from "./s3_config.ts";

/**
 * Where a server's TLS identity comes from: the operator's certificate and key files, or
 * ferry's own, made and kept in a state folder.
 */
export type TlsSource = { certFile: string; keyFile: string } | { stateDir?: string };

/** A file the server reads at start and must never serve. */
export interface SecretFile {
  /** The option that named it, for messages. */
  option: "--token-file" | "--tls-cert" | "--tls-key";
  /** The path as given. */
  path: string;
}

/** The parts of a server command line that decide what it touches on disk. */
export interface ServerFiles {
  /** Folder to serve, as given. */
  root: string;
  /** Path of the token file, if any. */
  tokenFile?: string;
  /** The TLS certificate and key files, or the state folder of the server's own; none without TLS. */
  tls?: TlsSource;
  /** An S3 store is served instead of the root. */
  s3?: unknown;
  /** `--http-qr`: the QR code of a wildcard listener needs this machine's addresses. */
  httpQr?: boolean;
}

/** What the server process needs: paths to read, and paths to write. */
export interface ServerAccess {
  /** Absolute paths it may read: the root and each secret file. */
  read: string[];
  /** Absolute paths it may write: the root, and the state folder of `--tls`. */
  write: string[];
  /**
   * Environment variables it may read: where the state folder of `--tls` is by default, and an
   * S3 store's credentials.
   */
  env?: string[];
  /**
   * System information it may read: this machine's names, for the certificate of `--tls`, and
   * its addresses, for the QR code of `--http-qr`.
   */
  sys?: string[];
}

/**
 * The secret files a command line names, in the order of their options.
 *
 * @example
 * ```ts
 * secretFilesOf({ root: "data", tokenFile: "ferry.token" });
 * // [{ option: "--token-file", path: "ferry.token" }]
 * ```
 */
export function secretFilesOf(files: ServerFiles): SecretFile[] {
  const secrets: SecretFile[] = [];
  if (files.tokenFile !== undefined) {
    secrets.push({ option: "--token-file", path: files.tokenFile });
  }
  if (files.tls && "certFile" in files.tls) {
    secrets.push({ option: "--tls-cert", path: files.tls.certFile });
    secrets.push({ option: "--tls-key", path: files.tls.keyFile });
  }
  return secrets;
}

/**
 * The real (symlink-free, absolute) path of `path`. A path that does not exist yet (a root the
 * server will create) is the real path of its nearest existing folder with the rest appended.
 */
export async function realPathOf(path: string): Promise<string> {
  const absolute = resolve(path);
  let existing = absolute;
  // Bounded: each step removes one component, and the file system root always exists.
  while (true) {
    try {
      const real = await Deno.realPath(existing);
      return join(real, relative(existing, absolute));
    } catch (error) {
      const parent = dirname(existing);
      if (parent === existing) throw error;
      if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) {
        throw error;
      }
      existing = parent;
    }
  }
}

/** True when `path` is `folder` or lies somewhere under it (both real, absolute paths). */
export function isInside(path: string, folder: string): boolean {
  const rest = relative(folder, path);
  return rest === "" || (!rest.startsWith("..") && !isAbsolute(rest));
}

/**
 * Refuses (a {@link UserError}) a secret file whose real path lies inside the served folder's:
 * the server would hand it to any client that asks for its name. Symlinks on either side are
 * resolved, so neither a link to the secret in the root nor a root reached through a link
 * escapes the check. The secrets must exist (the server has read them); a root that does not
 * exist yet holds none, nor can a pipe a secret was read from (it has no path there).
 */
export async function checkSecretsOutsideRoot(files: ServerFiles): Promise<void> {
  const secrets = secretFilesOf(files);
  if (secrets.length === 0) return;
  let root: string;
  try {
    root = await Deno.realPath(files.root);
  } catch (error) {
    // A folder that is not there yet holds nothing (and its parents may not be readable); the
    // server then reports why it cannot make it.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return;
    }
    throw error;
  }
  for (const secret of secrets) {
    let real: string;
    try {
      real = await Deno.realPath(secret.path);
    } catch (error) {
      // Read already, yet without a path: a pipe (`--token-file <(pass show ferry)` gives
      // /dev/fd/63), which no client can download.
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (isInside(real, root)) {
      throw new UserError(
        `Will not start: ${secret.option} ${secret.path} is inside the served folder ${root}, ` +
          "where any client could download it; keep it outside",
      );
    }
  }
}

/**
 * Exactly what the server needs to read and write for this command line: the root (as given and
 * as it really is, since the server works in its real path), and each secret file as given
 * (the server reads them by that path).
 */
export async function serverAccessOf(files: ServerFiles): Promise<ServerAccess> {
  const root = resolve(files.root);
  // A root whose way cannot be resolved (an unreadable folder on it) is granted as given; the
  // server then says what is wrong with it.
  const write = [root];
  let own: Pick<ServerAccess, "env" | "sys"> = {};
  if (files.tls && !("certFile" in files.tls)) {
    // The server's own certificate: its state folder, where it is by default, and the names
    // that go into a new certificate.
    const state = files.tls.stateDir === undefined ? userDir("state") : resolve(files.tls.stateDir);
    if (state !== null) write.push(state);
    own = {
      ...(files.tls.stateDir === undefined
        ? { env: ["XDG_STATE_HOME", "HOME", "LOCALAPPDATA"] }
        : {}),
      sys: ["hostname", "networkInterfaces"],
    };
  }
  if (files.httpQr && !own.sys?.includes("networkInterfaces")) {
    own = { ...own, sys: [...own.sys ?? [], "networkInterfaces"] };
  }
  const real = await Promise.all(write.map((path) => realPathOf(path).catch(() => path)));
  const writable = [...new Set([...write, ...real])];
  const read = [...new Set([...writable, ...secretFilesOf(files).map((s) => resolve(s.path))])];
  if (!files.s3) return { read, write: writable, ...own };
  // The keys come from the environment, or from the credentials file if it has none.
  let credentials: string | undefined;
  try {
    credentials = credentialsFilePath();
  } catch {
    // The launcher may not see the environment: the server says what is missing.
  }
  if (credentials) read.push(resolve(credentials));
  const env = [...new Set([...own.env ?? [], ...CREDENTIAL_ENV])];
  return { read, write: writable, ...own, env };
}
