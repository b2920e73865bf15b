/**
 * The client command line: `ferry [options] HOST PORT put|get|list ...`. Parses arguments, opens
 * local files, stdin and stdout, runs the operation from lib/client.ts and prints results (data
 * on stdout, messages on stderr).
 *
 * @module
 */

import { basename, join } from "node:path";
import { type ClientSession, connect, type DownloadTarget } from "./client.ts";
import {
  EXIT_OK,
  type OptionSpec,
  parseCommandLine,
  parsePort,
  reportFailure,
  say,
} from "./cli.ts";
import { readTokenFile } from "./auth.ts";
import { UsageError, UserError } from "./errors.ts";
import { moveNoClobber } from "./file_store.ts";
import { LegacySession } from "./legacy.ts";
import { formatBytes, formatDate, formatRate, formatSeconds } from "./format.ts";
import type { ListEntry } from "./protocol.ts";
import type { TransferResult } from "./transfer.ts";
import { NAME, VERSION } from "./version.ts";

const PROGRAM = NAME;

/** Client usage text, shown by `--help`. */
export const CLIENT_USAGE = `Usage: ${PROGRAM} [options] HOST PORT COMMAND [ARGS]

Commands:
  put LOCAL [REMOTE]   upload LOCAL as REMOTE (default: LOCAL's base name);
                       LOCAL "-" reads stdin, and REMOTE is then required
  get REMOTE [LOCAL]   download REMOTE to LOCAL (default: REMOTE's base name
                       in the current folder); LOCAL "-" writes to stdout
  list                 list the server's files, one name per line

Options:
  --overwrite          put: replace an existing remote file (atomically)
  -f, --force          get: replace an existing local file
  --json               list: print a JSON array of {name, size, mtime}
  -l, --long           list: print sizes and dates too
  -q, --quiet          print nothing but errors
  --timeout SECONDS    give up connecting after this long (default 15)
  --token-file FILE    prove to the server that we hold the secret in FILE
                       (it never crosses the wire; the server must prove it too)
  --tls                connect with TLS, trusting the system's certificates...
  --ca FILE            ...and the PEM certificate(s) in FILE (implies --tls)
  --legacy             speak the seed's protocol, to use its Python server
                       (no checksum: transfers cannot be verified)
  -h, --help           show this help
  -V, --version        show the version

HOST may be a name, an IPv4 address or an IPv6 address (brackets optional).
Options may come before or after the other arguments; "--" ends them.
Exit status: 0 done, 1 refused or failed, 2 usage error.

Examples:
  ${PROGRAM} localhost 9021 put report.pdf
  tar c photos | ${PROGRAM} ::1 9021 put - photos.tar
  ${PROGRAM} 10.0.0.5 9021 get photos.tar - | tar x
  ${PROGRAM} localhost 9021 list --json`;

const OPTIONS: OptionSpec = {
  overwrite: { type: "boolean" },
  force: { type: "boolean", short: "f" },
  json: { type: "boolean" },
  long: { type: "boolean", short: "l" },
  quiet: { type: "boolean", short: "q" },
  timeout: { type: "string" },
  legacy: { type: "boolean" },
  "token-file": { type: "string" },
  tls: { type: "boolean" },
  ca: { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
};

/** Which command each command-specific option belongs to. */
const OPTION_COMMANDS: Record<string, string> = {
  overwrite: "put",
  force: "get",
  json: "list",
  long: "list",
};

/** A parsed client command line. */
export interface ClientCommand {
  /** What to do. */
  command: "put" | "get" | "list" | "help" | "version";
  /** Server host. */
  host: string;
  /** Server port. */
  port: number;
  /** Command arguments after the command word. */
  args: string[];
  /** put --overwrite. */
  overwrite: boolean;
  /** get --force. */
  force: boolean;
  /** list --json. */
  json: boolean;
  /** list --long. */
  long: boolean;
  /** --quiet. */
  quiet: boolean;
  /** Connect timeout, milliseconds. */
  timeoutMs: number;
  /** Speak the seed protocol. */
  legacy: boolean;
  /** Path of the token file. */
  tokenFile?: string;
  /** Use TLS. */
  tls: boolean;
  /** Extra trusted CA certificate file. */
  caFile?: string;
}

/** Parses the client's arguments; throws {@link UsageError} on anything it cannot run. */
export function parseClientArgs(argv: string[]): ClientCommand {
  const { values, positionals } = parseCommandLine(argv, OPTIONS);
  const flag = (name: string) => values[name] === true;
  const base = {
    host: "",
    port: 0,
    args: [],
    overwrite: flag("overwrite"),
    force: flag("force"),
    json: flag("json"),
    long: flag("long"),
    quiet: flag("quiet"),
    timeoutMs: 15000,
    legacy: flag("legacy"),
    tls: flag("tls") || typeof values.ca === "string",
    caFile: values.ca as string | undefined,
    tokenFile: values["token-file"] as string | undefined,
  };
  if (flag("help")) return { ...base, command: "help" };
  if (flag("version")) return { ...base, command: "version" };
  if (positionals.length < 3) {
    throw new UsageError(
      positionals.length === 0 ? "Missing HOST, PORT and COMMAND" : "Missing PORT or COMMAND",
    );
  }
  const [host, portText, command, ...args] = positionals;
  if (host === "") throw new UsageError("HOST is empty");
  const port = parsePort(portText);
  if (command !== "put" && command !== "get" && command !== "list") {
    throw new UsageError(`Unknown command ${JSON.stringify(command)}: expected put, get or list`);
  }
  for (const [option, owner] of Object.entries(OPTION_COMMANDS)) {
    if (flag(option) && owner !== command) {
      throw new UsageError(`Option --${option} applies to ${owner}, not ${command}`);
    }
  }
  const arity = { put: [1, 2], get: [1, 2], list: [0, 0] }[command];
  if (args.length < arity[0] || args.length > arity[1]) {
    const shape = { put: "put LOCAL [REMOTE]", get: "get REMOTE [LOCAL]", list: "list" }[command];
    throw new UsageError(`Wrong number of arguments: expected ${shape}`);
  }
  if (command === "put" && args[0] === "-" && args.length < 2) {
    throw new UsageError("put from stdin needs a REMOTE name: put - REMOTE");
  }
  let timeoutMs = 15000;
  if (typeof values.timeout === "string") {
    const seconds = Number(values.timeout);
    if (!(seconds > 0)) throw new UsageError(`Invalid --timeout ${JSON.stringify(values.timeout)}`);
    timeoutMs = seconds * 1000;
  }
  if (flag("json") && flag("long")) throw new UsageError("Choose one of --json and --long");
  if (base.legacy && (base.tls || base.tokenFile !== undefined)) {
    throw new UsageError(
      `--legacy cannot be combined with ${base.tls ? "--tls" : "--token-file"}: ` +
        "the seed protocol can carry neither",
    );
  }
  if (flag("legacy") && (flag("json") || flag("long"))) {
    throw new UsageError(
      `--${
        flag("json") ? "json" : "long"
      } is not available with --legacy: the seed protocol lists names only`,
    );
  }
  return { ...base, command, host, port, args, timeoutMs };
}

/** Runs the client with command-line arguments and returns the exit code. */
export async function clientMain(argv: string[]): Promise<number> {
  try {
    const cmd = parseClientArgs(argv);
    if (cmd.command === "help") {
      console.log(CLIENT_USAGE);
      return EXIT_OK;
    }
    if (cmd.command === "version") {
      console.log(`${NAME} ${VERSION}`);
      return EXIT_OK;
    }
    await runCommand(cmd);
    return EXIT_OK;
  } catch (error) {
    return reportFailure(error, PROGRAM, `Try '${PROGRAM} --help' for usage`);
  }
}

async function runCommand(cmd: ClientCommand): Promise<void> {
  // Local checks come first, so a doomed command never touches the network.
  const prepared = cmd.command === "put"
    ? await preparePut(cmd)
    : cmd.command === "get"
    ? await prepareGet(cmd)
    : undefined;
  const token = cmd.tokenFile ? await readTokenFile(cmd.tokenFile) : undefined;
  const caCerts = cmd.caFile ? [await readCa(cmd.caFile)] : undefined;
  const session: ClientSession = cmd.legacy
    ? new LegacySession(cmd.host, cmd.port, { timeoutMs: cmd.timeoutMs })
    : await connect(cmd.host, cmd.port, {
      timeoutMs: cmd.timeoutMs,
      token,
      tls: cmd.tls ? { caCerts } : undefined,
    });
  try {
    if (cmd.command === "list") await runList(session, cmd);
    else await prepared!(session);
  } finally {
    session.close();
  }
}

async function readCa(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "no such file" : String(error);
    throw new UserError(`Cannot read --ca ${path}: ${why}`);
  }
}

function report(cmd: ClientCommand, message: string): void {
  if (!cmd.quiet) say(message);
}

function summary(result: TransferResult, seconds: number): string {
  const check = result.checksum || "UNVERIFIED (the seed protocol has no checksum)";
  return `${formatBytes(result.size)} in ${formatSeconds(seconds)} ` +
    `(${formatRate(result.size, seconds)}), ${check}`;
}

/** The base name of a remote `/`-separated name. */
function remoteBase(name: string): string {
  return name.split("/").filter((s) => s !== "").at(-1) ?? name;
}

async function preparePut(cmd: ClientCommand): Promise<(session: ClientSession) => Promise<void>> {
  const [local, remoteArg] = cmd.args;
  const remote = remoteArg ?? basename(local);
  let source: ReadableStream<Uint8Array>;
  let size: number | null = null;
  if (local === "-") {
    source = Deno.stdin.readable;
  } else {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(local, { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new UserError(`Cannot read ${local}: no such file`);
      }
      if (error instanceof Deno.errors.PermissionDenied) {
        throw new UserError(`Cannot read ${local}: permission denied`);
      }
      throw error;
    }
    const info = await file.stat();
    if (!info.isFile) {
      file.close();
      throw new UserError(`Cannot upload ${local}: not a regular file`);
    }
    size = info.size;
    source = file.readable;
  }
  return async (session) => {
    const started = performance.now();
    const result = await session.put(source, remote, { size, overwrite: cmd.overwrite });
    const seconds = (performance.now() - started) / 1000;
    const from = local === "-" ? "stdin" : local;
    report(cmd, `Uploaded ${from} as ${JSON.stringify(remote)}: ${summary(result, seconds)}`);
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function prepareGet(cmd: ClientCommand): Promise<(session: ClientSession) => Promise<void>> {
  const [remote, localArg] = cmd.args;
  const toStdout = localArg === "-";
  let local = localArg ?? remoteBase(remote);
  if (!toStdout && await isDirectory(local)) local = join(local, remoteBase(remote));
  if (!toStdout && !cmd.force && await exists(local)) {
    throw new UserError(`Local file exists: ${local} (use --force to replace it)`);
  }
  return async (session) => {
    const started = performance.now();
    const result = await session.get(
      remote,
      () => toStdout ? Promise.resolve(stdoutTarget()) : fileTarget(local, cmd.force),
    );
    const seconds = (performance.now() - started) / 1000;
    const to = toStdout ? "stdout" : local;
    report(cmd, `Downloaded ${JSON.stringify(remote)} to ${to}: ${summary(result, seconds)}`);
  };
}

function stdoutTarget(): DownloadTarget {
  const writer = Deno.stdout.writable.getWriter();
  return {
    write: (chunk) => writer.write(chunk),
    commit: async () => {
      await writer.ready;
      writer.releaseLock();
    },
    // Bytes already written to a pipe cannot be taken back; the exit code says they are bad.
    discard: () => Promise.resolve(writer.releaseLock()),
  };
}

/** Writes to `LOCAL.part`, renamed to LOCAL only once verified. */
async function fileTarget(local: string, force: boolean): Promise<DownloadTarget> {
  const part = `${local}.part`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(part, { write: true, create: true, truncate: true });
  } catch (error) {
    const why = error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Deno.errors.NotFound
      ? "no such folder"
      : String(error);
    throw new UserError(`Cannot write ${part}: ${why}`);
  }
  const writer = file.writable.getWriter();
  return {
    write: (chunk) => writer.write(chunk),
    commit: async () => {
      await writer.close();
      if (force) {
        await Deno.rename(part, local);
      } else if (!await moveNoClobber(part, local)) {
        await Deno.remove(part).catch(() => {});
        throw new UserError(`Local file exists: ${local} (it appeared during the download)`);
      }
    },
    discard: async () => {
      await writer.abort().catch(() => {});
      try {
        file.close();
      } catch {
        // Closed by the aborted writer.
      }
      await Deno.remove(part).catch(() => {});
    },
  };
}

async function runList(session: ClientSession, cmd: ClientCommand): Promise<void> {
  const entries = await session.list();
  let text: string;
  if (cmd.json) {
    text = JSON.stringify(
      entries.map((e) => ({ name: e.name, size: e.size, mtime: new Date(e.mtime).toISOString() })),
      null,
      2,
    ) + "\n";
  } else if (cmd.long) {
    text = formatLong(entries);
  } else {
    text = entries.map((e) => e.name + "\n").join("");
  }
  await writeStdout(text);
}

function formatLong(entries: ListEntry[]): string {
  const sizes = entries.map((e) => formatBytes(e.size));
  const width = Math.max(0, ...sizes.map((s) => s.length));
  const lines = entries.map((e, i) =>
    `${sizes[i].padStart(width)}  ${formatDate(e.mtime)}  ${e.name}\n`
  );
  const total = entries.reduce((n, e) => n + e.size, 0);
  return lines.join("") + `${entries.length} files, ${formatBytes(total)}\n`;
}

async function writeStdout(text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += await Deno.stdout.write(bytes.subarray(offset));
}
