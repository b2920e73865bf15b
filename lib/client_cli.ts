/**
 * The client command line: `ferry [options] HOST PORT COMMAND ...` (put, get, list, kept, mput,
 * mget, trust, rm, mv, mkdir, put -r and get -r). Parses arguments, opens what a put reads
 * (lib/local_files.ts) and where a get writes (lib/local_download.ts), runs each transfer through
 * lib/client.ts (or lib/legacy.ts, or lib/tree_cli.ts for folders) and reports: data and JSON
 * reports on stdout, messages and progress on stderr.
 *
 * @module
 */

import { basename } from "node:path";
import { readTokenFile } from "./auth.ts";
import { type ClientSession, connect, type FlowOptions, Session } from "./client.ts";
import {
  describeFailure,
  EXIT_FAILED,
  EXIT_OK,
  type OptionSpec,
  parseCommandLine,
  parsePort,
  reportFailure,
  say,
} from "./cli.ts";
import { readsStdin, uploadPathOf } from "./devices.ts";
import { keepsConnection, quotesName } from "./error_codes.ts";
import { LocalFileError, RefusedError, UsageError, UserError } from "./errors.ts";
import {
  displayName,
  formatBytes,
  formatDate,
  formatRate,
  formatSeconds,
  parseSize,
  safeJson,
} from "./format.ts";
import { LegacySession } from "./legacy.ts";
import { downloadName, downloadsToStdout, prepareDownload } from "./local_download.ts";
import { cannotWriteStdout, openUpload, osReason, uploadSourceOf } from "./local_files.ts";
import { ProgressLine, progressWanted } from "./progress.ts";
import type { KeptEntry } from "./protocol.ts";
import { RateLimiter } from "./rate_limit.ts";
import { type TransferResult, writeAll } from "./transfer.ts";
import { knownServersPath } from "./known_servers.ts";
import { runTrust } from "./tls_trust_cli.ts";
import { NAME, VERSION } from "./version.ts";
import { parseFingerprint } from "./x509.ts";
import { formatListing, runTreeCommand, runTreeTransfer, type TreeCommand } from "./tree_cli.ts";

type TreeCommandWord = TreeCommand["command"];

const PROGRAM = NAME;

/** Client usage text, shown by `--help`. */
export const CLIENT_USAGE = `Usage: ${PROGRAM} [options] HOST PORT COMMAND [ARGS]

Commands:
  put LOCAL [REMOTE]   upload LOCAL as REMOTE (default: LOCAL's base name;
                       REMOTE ending in "/": into that folder); LOCAL "-"
                       reads stdin, and REMOTE is then required
  put -r LOCALDIR [REMOTEDIR]
                       upload a whole folder, sending only what changed
  get -r REMOTEDIR [LOCALDIR]
                       download a whole folder, fetching only what changed
                       (a destination ending in "/", or ".", means into it)
  get REMOTE [LOCAL]   download REMOTE to LOCAL (default: REMOTE's base name
                       in the current folder); LOCAL "-" writes to stdout
  list [DIR]           list a remote folder (default: the top), one name per
                       line, folders ending in "/"; -r: everything under it
  kept                 list the interrupted uploads the server keeps for
                       put --resume (if the server allows it: --show-kept)
  mput FILE...         upload several files over one connection
  mget NAME...         download several files over one connection
  rm NAME              remove a remote file; -r: a folder and all it holds
  mv OLD NEW           rename a remote file or folder (NEW's folder must exist)
  mkdir DIR            create a remote folder; -p: parents too, and an
                       existing folder is fine
  trust                remember the server's TLS certificate (with
                       --fingerprint: only if it has that fingerprint)

Options:
  --overwrite          put, mput, mv: replace existing remote files (atomically)
  -r, --recursive      list, rm, put, get: the whole tree under DIR
  --delete             put -r, get -r: remove what the sender does not have
  --dry-run            put -r, get -r: print what would be sent, skipped and
                       deleted, and change nothing
  --checksum           put -r, get -r: compare contents, not size and mtime
  -p, --parents        mkdir: create missing parent folders
  -f, --force          get, mget: replace existing local files
  --no-fsync           get, mget: do not flush downloads to disk before giving
                       them their name (faster; a power cut may lose them)
  --resume             put, get, mput, mget: continue an interrupted transfer
                       (the bytes already there are verified first)
  --limit-rate RATE    put, get, mput, mget: at most RATE bytes/s (8M = 8 MiB/s)
  --json               list: a JSON array of {name, type, size, mtime}; kept: of
                       {name, bytes, size, keptAt, expiresAt}; transfers:
                       one JSON report per file on stdout (stderr if data
                       goes there)
  -l, --long           list: print sizes and dates too
  -q, --quiet          print nothing but errors
  --progress           show the progress line even when stderr is not a terminal
  --timeout SECONDS    give up connecting after this long (default 15)
  --stall-timeout SECONDS
                       give up a transfer or listing once the server has sent
                       and taken nothing for this long (default: wait forever;
                       time spent on local files and stdin/stdout not counted)
  --token-file FILE    prove to the server that we hold the secret in FILE
                       (it never crosses the wire; the server must prove it too)
  --tls                connect with TLS, trusting the system's certificates,
                       the PEM certificate(s) given with --ca FILE, and the
                       servers remembered by trust (in known_servers, in
                       ~/.config/ferry or $XDG_CONFIG_HOME/ferry)
  --fingerprint SHA256:...
                       connect with TLS only to a server whose certificate has
                       this fingerprint (as ferry-server prints it), and
                       remember it; implies --tls
  --legacy             speak the seed's protocol, to use its Python server
                       (no checksum: transfers cannot be verified)
  -h, --help           show this help
  -V, --version        show the version

HOST may be a name, an IPv4 address or an IPv6 address (brackets optional).
Options may come before or after the other arguments; "--" ends them.
Exit status: 0 done, 1 refused or failed (any file, for mput/mget), 2 usage error.

Examples:
  ${PROGRAM} localhost 9021 put -r photos
  ${PROGRAM} localhost 9021 get -r photos . --delete
  ${PROGRAM} localhost 9021 put report.pdf
  tar c photos | ${PROGRAM} ::1 9021 put - photos.tar
  ${PROGRAM} 10.0.0.5 9021 get photos.tar - | tar x
  ${PROGRAM} localhost 9021 mput *.log --json
  ${PROGRAM} localhost 9021 list -r --json
  ${PROGRAM} localhost 9021 mv drafts/report.pdf final/report.pdf`;

const OPTIONS: OptionSpec = {
  overwrite: { type: "boolean" },
  recursive: { type: "boolean", short: "r" },
  parents: { type: "boolean", short: "p" },
  delete: { type: "boolean" },
  "dry-run": { type: "boolean" },
  checksum: { type: "boolean" },
  force: { type: "boolean", short: "f" },
  "no-fsync": { type: "boolean" },
  resume: { type: "boolean" },
  "limit-rate": { type: "string" },
  json: { type: "boolean" },
  long: { type: "boolean", short: "l" },
  quiet: { type: "boolean", short: "q" },
  progress: { type: "boolean" },
  timeout: { type: "string" },
  "stall-timeout": { type: "string" },
  legacy: { type: "boolean" },
  "token-file": { type: "string" },
  tls: { type: "boolean" },
  ca: { type: "string" },
  fingerprint: { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
};

type Command = "put" | "get" | "list" | "kept" | "mput" | "mget" | "trust" | TreeChangeCommand;

/** The commands that change the remote tree (see lib/tree_cli.ts). */
type TreeChangeCommand = "rm" | "mv" | "mkdir";

const TREE_CHANGES: readonly string[] = ["rm", "mv", "mkdir"] satisfies TreeChangeCommand[];

/** Longest --timeout: setTimeout's limit of 2^31-1 milliseconds, in whole seconds. */
export const MAX_TIMEOUT_SECONDS = 2147483;

/** Which commands each command-specific option belongs to. */
const OPTION_COMMANDS: Record<string, Command[]> = {
  overwrite: ["put", "mput", "mv"],
  recursive: ["list", "rm", "put", "get"],
  delete: ["put", "get"],
  "dry-run": ["put", "get"],
  checksum: ["put", "get"],
  parents: ["mkdir"],
  force: ["get", "mget"],
  "no-fsync": ["get", "mget"],
  resume: ["put", "get", "mput", "mget"],
  "limit-rate": ["put", "get", "mput", "mget"],
  long: ["list"],
};

/** Each command's argument count, its shape for messages, and its arguments' names. */
const SHAPES: Record<Command, { min: number; max: number; shape: string; names: string[] }> = {
  put: { min: 1, max: 2, shape: "put LOCAL [REMOTE]", names: ["LOCAL", "REMOTE"] },
  get: { min: 1, max: 2, shape: "get REMOTE [LOCAL]", names: ["REMOTE", "LOCAL"] },
  list: { min: 0, max: 1, shape: "list [DIR]", names: ["DIR"] },
  kept: { min: 0, max: 0, shape: "kept", names: [] },
  mput: { min: 1, max: Infinity, shape: "mput FILE [FILE ...]", names: ["FILE"] },
  mget: { min: 1, max: Infinity, shape: "mget NAME [NAME ...]", names: ["NAME"] },
  trust: { min: 0, max: 0, shape: "trust", names: [] },
  rm: { min: 1, max: 1, shape: "rm NAME", names: ["NAME"] },
  mv: { min: 2, max: 2, shape: "mv OLD NEW", names: ["OLD", "NEW"] },
  mkdir: { min: 1, max: 1, shape: "mkdir DIR", names: ["DIR"] },
};

/** A parsed client command line. */
export interface ClientCommand {
  /** What to do. */
  command: Command | "help" | "version";
  /** Server host. */
  host: string;
  /** Server port. */
  port: number;
  /** Command arguments after the command word. */
  args: string[];
  /** --overwrite. */
  overwrite: boolean;
  /** -r, --recursive. */
  recursive: boolean;
  /** -p, --parents. */
  parents: boolean;
  /** --delete (put -r, get -r). */
  delete: boolean;
  /** --dry-run (put -r, get -r). */
  dryRun: boolean;
  /** --checksum (put -r, get -r). */
  checksum: boolean;
  /** --force. */
  force: boolean;
  /** Flush downloads to disk before renaming them (off with --no-fsync). */
  fsync: boolean;
  /** --resume. */
  resume: boolean;
  /** --limit-rate, bytes per second. */
  limitRate?: number;
  /** --json. */
  json: boolean;
  /** --long. */
  long: boolean;
  /** --quiet. */
  quiet: boolean;
  /** --progress. */
  progress: boolean;
  /** Connect timeout, milliseconds. */
  timeoutMs: number;
  /** Stall timeout, milliseconds; none when absent. */
  stallTimeoutMs?: number;
  /** Speak the seed protocol. */
  legacy: boolean;
  /** Path of the token file. */
  tokenFile?: string;
  /** Use TLS. */
  tls: boolean;
  /** Extra trusted CA certificate file. */
  caFile?: string;
  /** Pinned certificate fingerprint (`SHA256:...`). */
  fingerprint?: string;
}

/** Parses the client's arguments; throws {@link UsageError} on anything it cannot run. */
export function parseClientArgs(argv: string[]): ClientCommand {
  const { values, positionals } = parseCommandLine(argv, OPTIONS);
  const flag = (name: string) => values[name] === true;
  const base = {
    host: "",
    port: 0,
    args: [] as string[],
    overwrite: flag("overwrite"),
    recursive: flag("recursive"),
    parents: flag("parents"),
    delete: flag("delete"),
    dryRun: flag("dry-run"),
    checksum: flag("checksum"),
    force: flag("force"),
    fsync: !flag("no-fsync"),
    resume: flag("resume"),
    json: flag("json"),
    long: flag("long"),
    quiet: flag("quiet"),
    progress: flag("progress"),
    timeoutMs: 15000,
    legacy: flag("legacy"),
    tls: flag("tls") || typeof values.ca === "string" || typeof values.fingerprint === "string",
    caFile: values.ca as string | undefined,
    fingerprint: pinnedFingerprint(values.fingerprint),
    tokenFile: values["token-file"] as string | undefined,
  };
  if (flag("help")) return { ...base, command: "help" };
  if (flag("version")) return { ...base, command: "version" };
  if (positionals.length < 3) {
    throw new UsageError(
      positionals.length === 0 ? "Missing HOST, PORT and COMMAND" : "Missing PORT or COMMAND",
    );
  }
  const [host, portText, word, ...args] = positionals;
  if (host === "") throw new UsageError("HOST is empty");
  const port = parsePort(portText);
  if (!(word in SHAPES)) {
    throw new UsageError(
      `Unknown command ${JSON.stringify(word)}: ` +
        "expected put, get, list, kept, mput, mget, trust, rm, mv or mkdir",
    );
  }
  const command = word as Command;
  const option = Object.entries(OPTION_COMMANDS).find(([name, owners]) =>
    values[name] !== undefined && !owners.includes(command)
  );
  if (option) {
    throw new UsageError(
      `Option --${option[0]} applies to ${option[1].join(", ")}, not ${command}`,
    );
  }
  const { min, max, shape, names } = SHAPES[command];
  if (args.length < min || args.length > max) {
    throw new UsageError(`Wrong number of arguments: expected ${shape}`);
  }
  const empty = args.findIndex((arg) => arg === "");
  if (empty >= 0) {
    // An empty name can only fail later, after connecting (or even after downloading).
    throw new UsageError(`${names[Math.min(empty, names.length - 1)]} is empty`);
  }
  if (command === "put" && args[0] === "-" && args.length < 2) {
    throw new UsageError("put from stdin needs a REMOTE name: put - REMOTE");
  }
  if (
    base.resume &&
    ((command === "put" && args[0] === "-") || (command === "get" && args[1] === "-"))
  ) {
    throw new UsageError("--resume needs a local file, not stdin or stdout");
  }
  if ((command === "mput" || command === "mget") && args.includes("-")) {
    throw new UsageError(`${command} takes files, not "-"`);
  }
  const timeoutMs = parseSeconds(values.timeout, "timeout") ?? 15000;
  const stallTimeoutMs = parseSeconds(values["stall-timeout"], "stall-timeout");
  if (base.legacy && stallTimeoutMs !== undefined) {
    throw new UsageError("--stall-timeout is not available with --legacy");
  }
  let limitRate: number | undefined;
  if (typeof values["limit-rate"] === "string") {
    const rate = parseSize(values["limit-rate"]);
    if (rate === null || rate < 1) {
      throw new UsageError(
        `Invalid --limit-rate ${JSON.stringify(values["limit-rate"])}: use bytes per second or 8M`,
      );
    }
    limitRate = rate;
  }
  if (base.json && base.long) throw new UsageError("Choose one of --json and --long");
  if (base.legacy && (base.tls || base.tokenFile !== undefined)) {
    throw new UsageError(
      `--legacy cannot be combined with ${base.tls ? "--tls" : "--token-file"}: ` +
        "the seed protocol can carry neither",
    );
  }
  if (base.legacy && command === "list" && (base.json || base.long)) {
    throw new UsageError(
      `--${base.json ? "json" : "long"} is not available with --legacy: ` +
        "the seed protocol lists names only",
    );
  }
  const tree = base.recursive && (command === "put" || command === "get");
  const treeOnly = ["delete", "dry-run", "checksum"].find((name) => values[name] !== undefined);
  if (treeOnly && !tree) throw new UsageError(`--${treeOnly} applies to put -r and get -r only`);
  if (tree) {
    if (args.includes("-")) throw new UsageError(`${command} -r takes folders, not "-"`);
    const not = base.resume ? "--resume" : values["limit-rate"] ? "--limit-rate" : undefined;
    if (not) throw new UsageError(`${not} is not available with ${command} -r yet`);
  }
  const folders = TREE_CHANGES.includes(command) || tree ||
    (command === "list" && (base.recursive || args.length > 0));
  if (base.legacy && folders) {
    const what = TREE_CHANGES.includes(command)
      ? command
      : base.recursive
      ? `${command} -r`
      : "list DIR";
    throw new UsageError(
      `${what} is not available with --legacy: the seed protocol has no folder operations`,
    );
  }
  if (base.legacy && base.resume) {
    throw new UsageError(
      "--resume is not available with --legacy: the seed protocol cannot resume",
    );
  }
  return { ...base, command, host, port, args, timeoutMs, stallTimeoutMs, limitRate };
}

/** The --fingerprint value in its canonical form; undefined when the option is absent. */
function pinnedFingerprint(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const fingerprint = parseFingerprint(value);
  if (fingerprint === null) {
    throw new UsageError(
      `Invalid --fingerprint ${JSON.stringify(value)}: expected SHA256: and 43 base64 ` +
        "characters, as ferry-server prints it (or openssl's hex form)",
    );
  }
  return fingerprint;
}

/** A --timeout style value in milliseconds, or undefined when the option is absent. */
function parseSeconds(value: unknown, option: string): number | undefined {
  if (typeof value !== "string") return undefined;
  const seconds = value.trim() === "" ? NaN : Number(value);
  // setTimeout takes at most 2^31-1 ms and fires at once for anything longer.
  if (!(seconds > 0 && seconds <= MAX_TIMEOUT_SECONDS)) {
    throw new UsageError(
      `Invalid --${option} ${JSON.stringify(value)}: ` +
        `expected seconds, more than 0 and at most ${MAX_TIMEOUT_SECONDS}`,
    );
  }
  return seconds * 1000;
}

/** Runs the client with command-line arguments and returns the exit code. */
export async function clientMain(argv: string[]): Promise<number> {
  try {
    const cmd = parseClientArgs(argv);
    if (cmd.command === "help") {
      await writeStdout(CLIENT_USAGE + "\n");
      return EXIT_OK;
    }
    if (cmd.command === "version") {
      await writeStdout(`${NAME} ${VERSION}\n`);
      return EXIT_OK;
    }
    return await runCommand(cmd);
  } catch (error) {
    return reportFailure(error, { program: PROGRAM, helpHint: `try '${PROGRAM} --help'` });
  }
}

/** One file to move. */
interface Job {
  op: "put" | "get";
  /** Local path, or "-" for stdin/stdout. */
  local: string;
  /** Remote name. */
  remote: string;
  /**
   * Whether the user gave LOCAL. A get into a folder needs it to: the name a get picked
   * itself is never taken to mean "into the folder of that name".
   */
  localGiven: boolean;
}

function jobsOf(cmd: ClientCommand): Job[] {
  const [first, second] = cmd.args;
  switch (cmd.command) {
    case "put": {
      // scp's habit: a REMOTE ending in "/" is a folder to put the file into.
      const into = second?.endsWith("/") && first !== "-";
      const remote = into ? second + basename(first) : second;
      return [{ op: "put", local: first, remote: remote ?? basename(first), localGiven: true }];
    }
    case "get":
      return [{
        op: "get",
        remote: first,
        local: second ?? downloadName(first),
        localGiven: second !== undefined,
      }];
    case "mput":
      return cmd.args.map((local) => ({
        op: "put",
        local,
        remote: basename(local),
        localGiven: true,
      }));
    case "mget":
      return cmd.args.map((remote) => ({
        op: "get",
        remote,
        local: downloadName(remote),
        localGiven: false,
      }));
    default:
      return [];
  }
}

/** Opens sessions on demand, and a fresh one after a failure that may have broken the last. */
class Connector {
  #cmd: ClientCommand;
  #session?: ClientSession;
  #token?: Uint8Array;
  #caCerts?: string[];
  #loaded = false;

  constructor(cmd: ClientCommand) {
    this.#cmd = cmd;
  }

  async session(): Promise<ClientSession> {
    if (this.#session) return this.#session;
    const cmd = this.#cmd;
    if (!this.#loaded) {
      this.#token = cmd.tokenFile ? await readTokenFile(cmd.tokenFile) : undefined;
      this.#caCerts = cmd.caFile ? [await readCa(cmd.caFile)] : undefined;
      this.#loaded = true;
    }
    this.#session = cmd.legacy
      ? new LegacySession(cmd.host, cmd.port, { timeoutMs: cmd.timeoutMs })
      : await connect(cmd.host, cmd.port, {
        timeoutMs: cmd.timeoutMs,
        stallTimeoutMs: cmd.stallTimeoutMs,
        token: this.#token,
        tls: cmd.tls
          ? {
            caCerts: this.#caCerts,
            fingerprint: cmd.fingerprint,
            knownServers: knownServersPath(),
            onRemember: (line) => cmd.quiet || say(`${PROGRAM}: ${line}`),
          }
          : undefined,
      });
    return this.#session;
  }

  /** After a failure: keep the session only if the server refused before any data moved. */
  afterFailure(error: unknown): void {
    if (!(error instanceof RefusedError && keepsConnection(error.code))) this.close();
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }
}

async function runCommand(cmd: ClientCommand): Promise<number> {
  if (cmd.command === "trust") return await runTrust(cmd);
  const connector = new Connector(cmd);
  try {
    if (cmd.recursive && (cmd.command === "put" || cmd.command === "get")) {
      const ok = await runTreeTransfer(
        // parseClientArgs refused -r with --legacy, so this is a ferry session.
        async () => await connector.session() as Session,
        { ...cmd, command: cmd.command },
        writeStdout,
      );
      return ok ? EXIT_OK : EXIT_FAILED;
    }
    if (cmd.command === "list" || TREE_CHANGES.includes(cmd.command)) {
      const session = await connector.session();
      if (session instanceof Session) {
        await runTreeCommand(
          session,
          { ...cmd, command: cmd.command as TreeCommandWord },
          writeStdout,
        );
      } else {
        // The seed protocol lists file names only (parseClientArgs refused the rest).
        const files = await session.list();
        await writeStdout(formatListing(files.map((e) => ({ ...e, type: "file" })), cmd));
      }
      return EXIT_OK;
    }
    if (cmd.command === "kept") {
      await runKept(await connector.session(), cmd);
      return EXIT_OK;
    }
    const jobs = jobsOf(cmd);
    const many = jobs.length > 1 || cmd.command === "mput" || cmd.command === "mget";
    let failed = 0;
    const limiter = cmd.limitRate ? new RateLimiter(cmd.limitRate) : undefined;
    for (const job of jobs) {
      const started = performance.now();
      try {
        const prepared = job.op === "put" ? await preparePut(job, cmd) : await prepareGet(job, cmd);
        // Not reaching the server fails the whole command at once, not file by file.
        const session = await connector.session().catch((error) => {
          throw new Fatal(error);
        });
        const report = await prepared(session, limiter);
        const seconds = (performance.now() - started) / 1000;
        await announce(cmd, job, report, seconds);
      } catch (caught) {
        if (caught instanceof Fatal) throw caught.cause;
        const error = withHint(caught, job, cmd);
        // A single transfer's failure is the command's; in mput/mget the others go on.
        if (!many) throw error;
        failed++;
        connector.afterFailure(error);
        const whose = namesItsFile(error) ? "" : `${job.op === "put" ? job.local : job.remote}: `;
        say(`${PROGRAM}: ${whose}${describeFailure(error)}`);
        if (cmd.json) {
          await emitJson(job, {
            op: job.op,
            name: job.remote,
            ok: false,
            error: describeFailure(error),
          });
        }
      }
    }
    if (failed > 0) {
      say(`${PROGRAM}: ${failed} of ${jobs.length} files failed`);
      return EXIT_FAILED;
    }
    return EXIT_OK;
  } finally {
    connector.close();
  }
}

/**
 * A refusal the user can overcome with a flag says which, as a local refusal does. The server
 * cannot say it: it does not know which client, or which flags, it is talking to.
 */
function withHint(error: unknown, job: Job, cmd: ClientCommand): unknown {
  if (
    job.op === "put" && !cmd.overwrite && error instanceof RefusedError &&
    error.code === "exists"
  ) {
    return new RefusedError(error.code, `${error.message} (use --overwrite to replace it)`);
  }
  return error;
}

/**
 * Whether a failure's message names its file already, so an mput or mget line need not: a local
 * file's failure, a usage error about one file (`--resume needs a regular file, and X is not
 * one`), or a server's refusal of the name.
 */
function namesItsFile(error: unknown): boolean {
  return error instanceof LocalFileError || error instanceof UsageError ||
    (error instanceof RefusedError && quotesName(error.code));
}

/** Wraps a failure that ends the whole command (no connection), not just one file. */
class Fatal extends Error {
  constructor(override readonly cause: unknown) {
    super("Fatal");
  }
}

/** What a finished transfer reports. */
interface Report {
  result: TransferResult & { resumedFrom: number };
  /** Where the bytes went or came from, for the message. */
  where: string;
  verified: boolean;
}

async function announce(
  cmd: ClientCommand,
  job: Job,
  report: Report,
  seconds: number,
): Promise<void> {
  const { result } = report;
  if (cmd.json) {
    await emitJson(job, {
      op: job.op,
      name: job.remote,
      size: result.size,
      transferred: result.size - result.resumedFrom,
      resumedFrom: result.resumedFrom,
      checksum: report.verified ? result.checksum : null,
      seconds: Math.round(seconds * 1000) / 1000,
    });
  }
  if (cmd.quiet) return;
  const moved = result.size - result.resumedFrom;
  const check = report.verified
    ? result.checksum
    : "UNVERIFIED (the seed protocol has no checksum)";
  const resumed = result.resumedFrom > 0
    ? `, resumed after ${formatBytes(result.resumedFrom)}`
    : "";
  const summary = `${formatBytes(result.size)} in ${formatSeconds(seconds)} ` +
    `(${formatRate(moved, seconds)}${resumed}), ${check}`;
  say(
    job.op === "put"
      ? `Uploaded ${report.where} as ${JSON.stringify(job.remote)}: ${summary}`
      : `Downloaded ${JSON.stringify(job.remote)} to ${report.where}: ${summary}`,
  );
}

async function emitJson(job: Job, report: Record<string, unknown>): Promise<void> {
  const line = safeJson(report);
  // stdout belongs to the data when a get writes there.
  if (job.op === "get" && downloadsToStdout(job.local)) {
    say(line);
  } else await writeStdout(line + "\n");
}

function flowOptions(
  cmd: ClientCommand,
  label: string,
  total: number | null,
  start: number,
  limiter?: RateLimiter,
) {
  const progress = new ProgressLine(label, {
    total,
    start,
    enabled: !cmd.quiet && (cmd.progress || progressWanted()),
  });
  const flow: FlowOptions = {
    onProgress: (bytes) => progress.update(bytes),
    throttle: limiter ? (bytes, signal) => limiter.take(bytes, signal) : undefined,
    maxChunk: limiter?.chunkSize,
  };
  return { flow, progress };
}

type Runner = (session: ClientSession, limiter?: RateLimiter) => Promise<Report>;

/** Local checks come first, so a doomed transfer never touches the network. */
async function preparePut(job: Job, cmd: ClientCommand): Promise<Runner> {
  const fromStdin = job.local === "-" || readsStdin(job.local);
  const upload = fromStdin ? undefined : await openUpload(uploadPathOf(job.local));
  const size = upload ? upload.size : null;
  if (cmd.resume && size === null) {
    upload?.file.close();
    // As for stdin: resuming means re-reading the start, which only a regular file can do.
    throw new UsageError(`--resume needs a regular file, and ${job.local} is not one`);
  }
  const where = upload ? job.local : "stdin";
  const source = uploadSourceOf(upload?.file ?? Deno.stdin, {
    name: where,
    size,
    onGrew: () =>
      cmd.quiet || say(
        `${PROGRAM}: warning: ${where} grew during the upload; ` +
          `sent the ${size} bytes it had when the upload began`,
      ),
  });
  return async (session, limiter) => {
    const { flow, progress } = flowOptions(cmd, job.remote, size, 0, limiter);
    try {
      const result = await session.put(source, job.remote, {
        ...flow,
        size,
        overwrite: cmd.overwrite,
        resumeFile: cmd.resume ? upload?.file : undefined,
        onStartOver: () =>
          cmd.quiet || say(
            `${PROGRAM}: ${where} does not match what the server kept of ` +
              `${JSON.stringify(job.remote)}; starting over`,
          ),
      });
      return { result, where, verified: session.verified };
    } finally {
      progress.done();
      upload?.file.close();
    }
  };
}

/** Local checks come first (lib/local_download.ts), so a doomed get never touches the network. */
async function prepareGet(job: Job, cmd: ClientCommand): Promise<Runner> {
  const local = await prepareDownload(job.remote, job.local, {
    localGiven: job.localGiven,
    force: cmd.force,
    resume: cmd.resume,
    fsync: cmd.fsync,
  });
  return async (session, limiter) => {
    let progress: ProgressLine | undefined;
    let flow: FlowOptions = {};
    try {
      const result = await session.get(job.remote, (info) => {
        ({ flow, progress } = flowOptions(cmd, job.remote, info.size, info.offset, limiter));
        if (local.resume && info.offset === 0 && !cmd.quiet) {
          say(`${PROGRAM}: ${local.part} does not match the server's file; starting over`);
        }
        return local.open(info.offset);
      }, {
        resume: local.resume,
        onProgress: (bytes) => flow.onProgress?.(bytes),
        throttle: limiter ? (bytes, signal) => limiter.take(bytes, signal) : undefined,
        maxChunk: limiter?.chunkSize,
        rate: limiter?.rate,
      });
      return { result, where: local.where, verified: session.verified };
    } catch (error) {
      // The note on the kept `.part` follows the reason, on the same line.
      if (local.kept) {
        throw new UserError(
          `${describeFailure(error)}; partial download kept in ${local.part} ` +
            "(run again with --resume to continue)",
        );
      }
      throw error;
    } finally {
      progress?.done();
    }
  };
}

/** The PEM text of a --ca file, which must hold at least one certificate. */
async function readCa(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    // A refusal by Deno's permissions is reported as such, with what to do (lib/cli.ts).
    if (error instanceof Deno.errors.NotCapable) throw error;
    throw new UserError(`Cannot read --ca ${path}: ${osReason(error)}`);
  }
  // Without this check a key or any other file fails later as "UnknownIssuer", which misleads.
  if (!/-----BEGIN CERTIFICATE-----/.test(text)) {
    throw new UserError(`No certificate in ${path}: --ca needs a PEM certificate`);
  }
  return text;
}

async function runKept(session: ClientSession, cmd: ClientCommand): Promise<void> {
  const entries = await session.kept();
  // Names come from the server: shown escaped, as list shows them.
  if (cmd.json) {
    const time = (ms: number) => new Date(ms).toISOString();
    await writeStdout(
      safeJson(
        entries.map((e) => ({
          name: e.name,
          bytes: e.bytes,
          size: e.size,
          keptAt: time(e.keptAt),
          expiresAt: time(e.expiresAt),
        })),
        2,
      ) + "\n",
    );
    return;
  }
  await writeStdout(formatKept(entries));
}

/** `kept` as text: bytes kept of the whole, until when, and the name; then the totals. */
function formatKept(entries: KeptEntry[]): string {
  const kept = entries.map((e) => formatBytes(e.bytes));
  const sizes = entries.map((e) => e.size === null ? "?" : formatBytes(e.size));
  const keptWidth = Math.max(0, ...kept.map((s) => s.length));
  const sizeWidth = Math.max(0, ...sizes.map((s) => s.length));
  const lines = entries.map((e, i) =>
    `${kept[i].padStart(keptWidth)} of ${sizes[i].padStart(sizeWidth)}  ` +
    `until ${formatDate(e.expiresAt)}  ${displayName(e.name)}\n`
  );
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  const uploads = entries.length === 1 ? "1 kept upload" : `${entries.length} kept uploads`;
  return lines.join("") + `${uploads}, ${formatBytes(total)}\n`;
}

/** Writes all of `text` to stdout; a closed pipe or a full disk is reported as stdout's. */
async function writeStdout(text: string): Promise<void> {
  try {
    await writeAll(Deno.stdout, new TextEncoder().encode(text));
  } catch (error) {
    throw cannotWriteStdout(error);
  }
}
