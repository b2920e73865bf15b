/**
 * Helpers of the TLS tests: a `--tls` server with its key in a given state folder and its
 * fingerprint, the fingerprint's pattern, and openssl runs (where openssl is installed).
 *
 * @module
 */

import { commandWorks, type ServerProcess, startServer } from "./harness.ts";

export const FINGERPRINT = /SHA256:[A-Za-z0-9+/]{43}/;

export const HAS_OPENSSL = await commandWorks("openssl", ["version"]);

/** Starts a `--tls` server keeping its key in `stateDir`; resolves with it and its fingerprint. */
export async function startTlsServer(
  stateDir: string,
  extra: { root?: string; args?: string[] } = {},
): Promise<{ server: ServerProcess; fingerprint: string; command: string[] }> {
  const server = await startServer({
    root: extra.root,
    args: ["--tls", "--state-dir", stateDir, ...(extra.args ?? [])],
  });
  const line = await server.waitForLog(/clients connect with: /);
  const fingerprint = (await server.waitForLog(/TLS certificate SHA256:/)).match(FINGERPRINT)![0];
  const command = line.replace(/^.*clients connect with: ferry /, "").split(" ");
  return { server, fingerprint, command };
}
