/**
 * Running the server from its command line (`ferry-server [PORT] [options]`, parsed by
 * lib/server_args.ts): starts the server from lib/server.ts (on a folder, or on an S3 store
 * through lib/s3_cli.ts; with HTTP too if asked), prints where it listens and what it allows,
 * explains a failure to start in one line, and stops it cleanly on SIGINT or SIGTERM.
 *
 * @module
 */

import { resolve } from "node:path";
import { EXIT_OK, reportFailure, say } from "./cli.ts";
import { describeError, StartError, StoreError, UserError } from "./errors.ts";
import { osReason } from "./local_files.ts";
import { readTokenFile } from "./auth.ts";
import {
  formatAddr,
  formatHostPort,
  isLoopback,
  isUnresolvedHost,
  normalizeHost,
} from "./connection.ts";
import { formatBytes, formatDuration, formatExactBytes } from "./format.ts";
import type { KeptView } from "./store.ts";
import { startServer } from "./server.ts";
import { openS3Store } from "./s3_cli.ts";
import { parseServerArgs, SERVER_USAGE, type ServerCommand } from "./server_args.ts";
import { checkSecretsOutsideRoot } from "./server_access.ts";
import { identityBanner, loadIdentity, type ServerIdentity } from "./tls_identity.ts";
import { phoneUrl, qrLines } from "./http/qr.ts";
import { NAME, VERSION } from "./version.ts";
import { HASH_ARENA_SIZE } from "./xxh3.ts";

const PROGRAM = `${NAME}-server`;

/** Runs the server with command-line arguments; resolves with the exit code once stopped. */
export async function serverMain(argv: string[]): Promise<number> {
  let cmd: ServerCommand;
  try {
    cmd = parseServerArgs(argv);
  } catch (error) {
    return reportFailure(error, { program: PROGRAM, helpHint: `try '${PROGRAM} --help'` });
  }
  if (cmd.command === "help") {
    console.log(SERVER_USAGE);
    return EXIT_OK;
  }
  if (cmd.command === "version") {
    console.log(`${PROGRAM} ${VERSION}`);
    return EXIT_OK;
  }
  const root = resolve(cmd.root);
  let server;
  let identity: ServerIdentity | undefined;
  try {
    const token = cmd.tokenFile ? await readTokenFile(cmd.tokenFile) : undefined;
    identity = cmd.tls ? await loadIdentity(cmd.tls, root, cmd.hostname) : undefined;
    const tls = identity ? { cert: identity.cert, key: identity.key } : undefined;
    await checkSecretsOutsideRoot(cmd);
    const kept = { budget: cmd.keepBudget, maxAgeMs: cmd.keepForMs };
    const store = cmd.s3 ? await openS3Store(cmd.s3, kept, say) : undefined;
    server = await startServer({
      store,
      hostname: cmd.hostname,
      port: cmd.port,
      root,
      fsync: cmd.fsync,
      legacy: cmd.legacy,
      readOnly: cmd.readOnly,
      token,
      tls,
      maxSize: cmd.maxSize,
      maxConnections: cmd.maxConnections,
      maxPerAddress: cmd.maxPerAddress,
      handshakeTimeoutMs: cmd.handshakeTimeoutMs,
      idleTimeoutMs: cmd.idleTimeoutMs,
      keepBudget: cmd.keepBudget,
      keepForMs: cmd.keepForMs,
      showKept: cmd.showKept,
      // A server's pool may lease 256 MiB at once; every buffer in the arena saves a copy.
      hashArenaSize: HASH_ARENA_SIZE,
      minRate: cmd.minRate,
      http: cmd.http,
      httpPublicRead: cmd.httpPublicRead,
      httpArchives: cmd.httpArchives,
      httpPageSize: cmd.httpPageSize,
    });
  } catch (error) {
    return reportFailure(explainStartFailure(error, cmd, root), {
      program: PROGRAM,
      permissionHint: PERMISSION_HINT,
    });
  }
  // Listen for signals before the banner: whoever reads it may signal at once, and an
  // unhandled SIGTERM would kill the process instead of stopping it cleanly.
  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const stop = () => {
    if (stopping) {
      say(`${PROGRAM}: stopping now`);
      server.close().then(() => stopped.resolve());
      return;
    }
    stopping = true;
    say(`${PROGRAM}: stopping; transfers in flight have ${GRACE_MS / 1000} s to finish`);
    server.shutdown(GRACE_MS).then((cut) => {
      if (cut > 0) {
        say(`${PROGRAM}: cut ${cut} unfinished connection(s); their uploads were discarded`);
      }
      stopped.resolve();
    });
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const where = formatAddr(server.addr);
  const scope = isLoopback(cmd.hostname)
    ? " (this machine only; --host 0.0.0.0 to share on the network)"
    : "";
  say(`${PROGRAM} ${VERSION}: serving ${server.store.location} on ${where}${scope}`);
  if (cmd.legacy) {
    say(`${PROGRAM}: also serving the seed protocol; its uploads cannot be verified`);
  }
  say(
    `${PROGRAM}: ${cmd.tls ? "TLS" : "no TLS"}, ${
      cmd.tokenFile ? "token required" : "no token"
    }, ` +
      `${cmd.readOnly ? "read-only" : "uploads allowed"}; ` +
      `max size ${cmd.maxSize === undefined ? "unlimited" : formatExactBytes(cmd.maxSize)}, ` +
      `max connections ${cmd.maxConnections}, ` +
      `idle timeout ${cmd.idleTimeoutMs ? `${cmd.idleTimeoutMs / 1000} s` : "none"}, ` +
      `handshake timeout ${cmd.handshakeTimeoutMs / 1000} s, ` +
      `max per address ${cmd.maxPerAddress || "unlimited"}, ` +
      `min upload rate ${cmd.minRate ? `${formatBytes(cmd.minRate)}/s` : "none"}`,
  );
  say(await describeKeeping(server.store.kept, cmd.showKept));
  if (identity) {
    identityBanner(identity, server.addr as Deno.NetAddr).forEach((line) =>
      say(`${PROGRAM}: ${line}`)
    );
  }
  if (server.http) {
    const access = !cmd.tokenFile
      ? "no token"
      : cmd.httpPublicRead
      ? "anyone may browse and download, uploads need the token"
      : "token required (Bearer or sign-in)";
    say(
      `${PROGRAM}: HTTP on ${server.http.url} (${access}; ` +
        `${cmd.readOnly ? "read-only" : "uploads allowed"}` +
        `${cmd.httpArchives ? "; folders as .tar" : ""})`,
    );
    if (cmd.httpQr) printQr(server.http.url);
    if (!isLoopback(server.http.addr.hostname) && !cmd.tokenFile) {
      say(
        `${PROGRAM}: warning: HTTP beyond this machine without --token-file; anyone who can ` +
          "reach it can read" + (cmd.readOnly ? "" : " and write") + " files",
      );
    }
  }
  if (!isLoopback(server.addr.hostname) && !cmd.tls && !cmd.tokenFile) {
    say(
      `${PROGRAM}: warning: listening beyond this machine with neither --token-file nor TLS; ` +
        "anyone who can reach the port can read" + (cmd.readOnly ? "" : " and write") + " files",
    );
  }
  await stopped.promise;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  say(`${PROGRAM}: stopped`);
  return EXIT_OK;
}

/** The banner's line on kept uploads: the bounds, and what is kept now. */
async function describeKeeping(kept: KeptView, shown: boolean): Promise<string> {
  const { count, bytes } = await kept.prune();
  if (!kept.enabled) {
    return `${PROGRAM}: interrupted uploads are discarded, not kept for put --resume (--no-keep)`;
  }
  return `${PROGRAM}: interrupted uploads kept for put --resume: budget ` +
    `${formatBytes(kept.budget)}, each for ${formatDuration(kept.maxAgeMs)}; ` +
    `${count} kept now (${formatBytes(bytes)}) in ${kept.where}; ` +
    `kept query ${shown ? "allowed" : "refused (--show-kept)"}`;
}

/** What to do when Deno's permissions refuse the server a path: what its options need. */
const PERMISSION_HINT = "run it with deno task serve, which grants the folder and the files its " +
  "options name, or give deno run --allow-read and --allow-write for them";

/** How long in-flight transfers may run on after SIGINT or SIGTERM. */
export const GRACE_MS = 5000;

/** Turns a failure to start into one line that names what failed: the root or the address. */
function explainStartFailure(error: unknown, cmd: ServerCommand, root: string): unknown {
  if (!(error instanceof StartError)) return error;
  return error.step === "root"
    ? explainRootFailure(error.cause, root)
    : explainListenFailure(error.cause, cmd);
}

function explainRootFailure(error: unknown, root: string): unknown {
  // The store's own refusals (not a folder, no parent to create it in) already name the root.
  if (error instanceof StoreError) return new UserError(error.message);
  // A missing Deno permission is told in the same words as anywhere else (see describeFailure).
  if (error instanceof Deno.errors.NotCapable) return error;
  return new UserError(`Cannot use root ${root}: ${osReason(error, "no such folder")}`);
}

function explainListenFailure(error: unknown, cmd: ServerCommand): unknown {
  // The HTTP side's failures (lib/server.ts) already say which address and why.
  if (error instanceof UserError) return error;
  const where = formatHostPort(cmd.hostname, cmd.port);
  if (error instanceof Deno.errors.AddrInUse) {
    return new UserError(`Cannot listen on ${where}: address already in use`);
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return new UserError(`Cannot listen on ${where}: no such local address`);
  }
  // A missing Deno permission is told in the same words as anywhere else (see describeFailure).
  if (error instanceof Deno.errors.NotCapable) return error;
  if (error instanceof Deno.errors.PermissionDenied) {
    return new UserError(`Cannot listen on ${where}: permission denied`);
  }
  if (isUnresolvedHost(error)) {
    return new UserError(`Cannot resolve --host ${JSON.stringify(cmd.hostname)}`);
  }
  if (cmd.tls && "certFile" in cmd.tls && error instanceof Error) {
    return new UserError(
      `Cannot start TLS with ${cmd.tls.certFile} and ${cmd.tls.keyFile}: ${describeError(error)}`,
    );
  }
  return new UserError(`Cannot listen on ${where}: ${describeError(error)}`);
}

/** `--http-qr`: the page's address as a QR code, with what a phone needs to know about it. */
function printQr(url: string): void {
  const target = phoneUrl(url);
  if (target === null) {
    say(
      `${PROGRAM}: no QR code: this machine's network addresses cannot be listed; ` +
        "give --http this machine's address instead of a wildcard",
    );
    return;
  }
  const host = new URL(target).hostname;
  say(
    `${PROGRAM}: scan to open ${target}` + (
      isLoopback(normalizeHost(host))
        ? " (this machine only: a phone needs --http 0.0.0.0:PORT or this machine's address)"
        : ""
    ),
  );
  const color = !Deno.noColor && Deno.stderr.isTerminal();
  for (const line of qrLines(target, { color })) say(line);
}
