/**
 * The client's `trust` command: `ferry [--fingerprint SHA256:...] HOST PORT trust` reads the
 * server's TLS certificate and remembers it in known_servers, so that later `--tls` connections
 * to that host and port are pinned to it.
 *
 * @module
 */

import { EXIT_OK, say } from "./cli.ts";
import { normalizeHost } from "./connection.ts";
import { UserError } from "./errors.ts";
import { knownServersPath } from "./known_servers.ts";
import { trustServer } from "./tls_connect.ts";
import { userDirVariables } from "./user_dirs.ts";
import { NAME } from "./version.ts";

/** What the `trust` command needs from the command line. */
export interface TrustCommand {
  /** Server host. */
  host: string;
  /** Server port. */
  port: number;
  /** Only trust a certificate with this fingerprint. */
  fingerprint?: string;
  /** Give up reading the certificate after this long, milliseconds. */
  timeoutMs: number;
  /** Print nothing on success. */
  quiet: boolean;
}

/** Runs `trust`; throws a {@link UserError} when the certificate cannot be read or remembered. */
export async function runTrust(cmd: TrustCommand): Promise<number> {
  const knownServers = knownServersPath();
  if (knownServers === null) {
    throw new UserError(
      `Cannot find the folder to remember servers in: ${userDirVariables("config")} cannot be ` +
        "read (run with --allow-env, or pin with --fingerprint in each command)",
    );
  }
  const host = normalizeHost(cmd.host);
  const trusted = await trustServer(host, cmd.port, {
    fingerprint: cmd.fingerprint,
    knownServers,
    timeoutMs: cmd.timeoutMs,
  });
  if (!cmd.quiet) {
    const replaced = trusted.replaced ? `, replacing ${trusted.replaced}` : "";
    say(
      `${NAME}: trusted ${host}:${cmd.port} as ${trusted.fingerprint} ` +
        `(remembered in ${knownServers}${replaced})`,
    );
  }
  return EXIT_OK;
}
