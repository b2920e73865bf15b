/**
 * The server command line: `ferry-server [PORT] [--host ADDR] [--port N] [--root DIR]`. Parses
 * arguments, starts the server from lib/server.ts, prints where it listens and stops it cleanly
 * on SIGINT or SIGTERM.
 *
 * @module
 */

import { resolve } from "node:path";
import {
  EXIT_OK,
  type OptionSpec,
  parseCommandLine,
  parsePort,
  reportFailure,
  say,
} from "./cli.ts";
import { UsageError, UserError } from "./errors.ts";
import { formatAddr, startServer } from "./server.ts";
import { NAME, VERSION } from "./version.ts";

const PROGRAM = `${NAME}-server`;

/** Port used when none is given. */
export const DEFAULT_PORT = 9021;
/** Address listened on when none is given: loopback, so nothing is shared by accident. */
export const DEFAULT_HOST = "127.0.0.1";
/** Folder served when none is given, relative to the working directory. */
export const DEFAULT_ROOT = "ferry-data";

/** Server usage text, shown by `--help`. */
export const SERVER_USAGE = `Usage: ${PROGRAM} [PORT] [options]

Shares one folder over TCP for the ${NAME} client (put, get, list).

Options:
  --port N         port to listen on (default ${DEFAULT_PORT}; 0 picks a free one);
                   a bare PORT argument means the same
  --host ADDR      address to listen on (default ${DEFAULT_HOST}, this machine only;
                   0.0.0.0 or :: shares on the network)
  --root DIR       folder to share (default ./${DEFAULT_ROOT}, created if missing)
  --legacy         also serve the seed's protocol (its Python client works
                   against this server; its uploads cannot be verified)
  --no-fsync       do not flush uploads to disk before committing them (faster,
                   but a power cut may lose recent uploads)
  -h, --help       show this help
  -V, --version    show the version

Uploads never replace a file unless the client asks with --overwrite, and only
complete, verified uploads appear under their name.`;

const OPTIONS: OptionSpec = {
  port: { type: "string" },
  host: { type: "string" },
  root: { type: "string" },
  "no-fsync": { type: "boolean" },
  legacy: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
};

/** A parsed server command line. */
export interface ServerCommand {
  /** What to do. */
  command: "serve" | "help" | "version";
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on. */
  port: number;
  /** Folder to serve. */
  root: string;
  /** Flush uploads before committing. */
  fsync: boolean;
  /** Serve the seed protocol too. */
  legacy: boolean;
}

/** Parses the server's arguments; throws {@link UsageError} on anything it cannot run. */
export function parseServerArgs(argv: string[]): ServerCommand {
  const { values, positionals } = parseCommandLine(argv, OPTIONS);
  const base = {
    hostname: DEFAULT_HOST,
    port: DEFAULT_PORT,
    root: DEFAULT_ROOT,
    fsync: values["no-fsync"] !== true,
    legacy: values.legacy === true,
  };
  if (values.help === true) return { ...base, command: "help" };
  if (values.version === true) return { ...base, command: "version" };
  if (positionals.length > 1) {
    throw new UsageError(`Unexpected argument ${JSON.stringify(positionals[1])}`);
  }
  const portTexts = [positionals[0], values.port as string | undefined].filter((p) =>
    p !== undefined
  ) as string[];
  const ports = portTexts.map((p) => parsePort(p, true));
  if (ports.length === 2 && ports[0] !== ports[1]) {
    throw new UsageError(`Two different ports given: ${ports[0]} and ${ports[1]}`);
  }
  const host = values.host as string | undefined;
  if (host !== undefined && host.trim() === "") throw new UsageError("--host is empty");
  const root = values.root as string | undefined;
  if (root !== undefined && root === "") throw new UsageError("--root is empty");
  return {
    ...base,
    command: "serve",
    hostname: host?.replace(/^\[(.*)\]$/, "$1") ?? DEFAULT_HOST,
    port: ports[0] ?? DEFAULT_PORT,
    root: root ?? DEFAULT_ROOT,
  };
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || hostname.startsWith("127.");
}

/** Runs the server with command-line arguments; resolves with the exit code once stopped. */
export async function serverMain(argv: string[]): Promise<number> {
  let cmd: ServerCommand;
  try {
    cmd = parseServerArgs(argv);
  } catch (error) {
    return reportFailure(error, PROGRAM, `Try '${PROGRAM} --help' for usage`);
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
  try {
    server = await startServer({
      hostname: cmd.hostname,
      port: cmd.port,
      root,
      fsync: cmd.fsync,
      legacy: cmd.legacy,
    });
  } catch (error) {
    return reportFailure(explainStartFailure(error, cmd, root), PROGRAM, "");
  }
  const where = formatAddr(server.addr);
  const scope = isLoopback(cmd.hostname)
    ? " (this machine only; --host 0.0.0.0 to share on the network)"
    : "";
  say(`${PROGRAM} ${VERSION}: serving ${server.store.root} on ${where}${scope}`);
  if (cmd.legacy) {
    say(`${PROGRAM}: also serving the seed protocol; its uploads cannot be verified`);
  }
  const stop = () => {
    say(`${PROGRAM}: stopping`);
    server.close();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  return EXIT_OK;
}

function explainStartFailure(error: unknown, cmd: ServerCommand, root: string): unknown {
  const where = cmd.hostname.includes(":")
    ? `[${cmd.hostname}]:${cmd.port}`
    : `${cmd.hostname}:${cmd.port}`;
  if (error instanceof Deno.errors.AddrInUse) {
    return new UserError(`Cannot listen on ${where}: address already in use`);
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return new UserError(`Cannot listen on ${where}: no such local address`);
  }
  if (error instanceof Deno.errors.NotCapable) {
    return new UserError(
      `Missing permission for ${root}: run with --allow-read and --allow-write for that folder`,
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new UserError(`Cannot use ${root} or ${where}: permission denied`);
  }
  if (error instanceof Error && /failed to lookup|not known/i.test(error.message)) {
    return new UserError(`Cannot resolve --host ${JSON.stringify(cmd.hostname)}`);
  }
  return error;
}
