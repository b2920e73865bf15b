/**
 * Running the client's commands (`ferry [options] HOST PORT COMMAND ...`: put, get, list, kept,
 * mput, mget, trust, rm, mv, mkdir, put -r and get -r) once lib/client_args.ts has parsed them.
 * Opens sessions (the {@link Connector}), turns a command into jobs, opens what a put reads
 * (lib/local_files.ts) and where a get writes (lib/local_download.ts), runs each transfer through
 * lib/client.ts (or lib/legacy.ts, or lib/tree_cli.ts for folders), and hands the outcome to
 * lib/client_report.ts to print.
 *
 * @module
 */

import { basename } from "node:path";
import { readTokenFile } from "./auth.ts";
import { Session } from "./client.ts";
import { connect } from "./client_connect.ts";
import type { ClientSession, FlowOptions } from "./client_session.ts";
import { describeFailure, EXIT_FAILED, EXIT_OK, reportFailure, say } from "./cli.ts";
import { readsStdin, uploadPathOf } from "./devices.ts";
import { keepsConnection, quotesName } from "./error_codes.ts";
import { LocalFileError, RefusedError, StdoutClosed, UsageError, UserError } from "./errors.ts";
import {} from "./format.ts";
import { LegacySession } from "./legacy.ts";
import { downloadName, prepareDownload } from "./local_download.ts";
import { openUpload, osReason, uploadSourceOf } from "./local_files.ts";
import type { ProgressLine } from "./progress.ts";
import { RateLimiter } from "./rate_limit.ts";
import { CLIENT_USAGE, type ClientCommand, parseClientArgs, TREE_CHANGES } from "./client_args.ts";
import {
  announce,
  emitJson,
  flowOptions,
  type Report,
  runKept,
  type Transfer,
  writeStdout,
} from "./client_report.ts";
import { knownServersPath } from "./known_servers.ts";
import { runTrust } from "./tls_trust_cli.ts";
import { NAME, VERSION } from "./version.ts";
import {
  formatListing,
  remoteDestination,
  runTreeCommand,
  runTreeTransfer,
  type TreeCommand,
} from "./tree_cli.ts";
import { runFilesPipelined } from "./files_cli.ts";

const PROGRAM = NAME;

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
interface Job extends Transfer {
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
      // scp's habit: a REMOTE ending in "/" (or ".") is a folder to put the file into.
      const leaf = first === "-" ? undefined : basename(first);
      const remote = second === undefined ? undefined : remoteDestination(second, leaf, "REMOTE");
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

  /**
   * After a failure: keep the session only if the server refused in place of an OK (before the
   * data, or after all of it in place of the final OK), never part-way through the data.
   */
  afterFailure(error: unknown): void {
    const inStep = error instanceof RefusedError && keepsConnection(error.code);
    if (!inStep || this.#session?.closed) this.close();
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
      try {
        if (session instanceof Session) {
          await runTreeCommand(
            session,
            { ...cmd, command: cmd.command as TreeCommand["command"] },
            writeStdout,
          );
        } else {
          // The seed protocol lists file names only (parseClientArgs refused the rest).
          const files = await session.list();
          await writeStdout(formatListing(files.map((e) => ({ ...e, type: "file" })), cmd));
        }
      } catch (error) {
        // `list | head`: what was wanted has been read; the rest goes unprinted, unremarked.
        if (!(error instanceof StdoutClosed)) throw error;
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
    /** In mput/mget a failure is reported and the others go on. */
    const onFailure = async (job: Job, caught: unknown, pipelined = false) => {
      const error = withHint(caught, job, cmd);
      failed++;
      // A pipelined file's failure is its own; the exchange's session is still in step.
      if (!pipelined) connector.afterFailure(error);
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
    };
    let perFile = jobs;
    // --resume and --limit-rate are per-file matters: those go the per-file way.
    if (
      (cmd.command === "mput" || cmd.command === "mget") && !cmd.legacy && !cmd.resume &&
      !limiter
    ) {
      const { rest } = await runFilesPipelined(jobs, cmd, {
        session: () =>
          connector.session().catch((error) => {
            throw new Fatal(error);
          }),
        done: (i, done, seconds) =>
          announce(cmd, jobs[i], {
            result: { size: done.size, checksum: done.checksum, resumedFrom: 0 },
            where: done.where,
            verified: true,
          }, seconds),
        failed: (i, error) => onFailure(jobs[i], error, true),
        reset: () => connector.close(),
      }).catch((error) => {
        throw error instanceof Fatal ? error.cause : error;
      });
      perFile = rest.map((i) => jobs[i]);
    }
    for (const job of perFile) {
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
        // A single transfer's failure is the command's; in mput/mget the others go on.
        if (!many) throw withHint(caught, job, cmd);
        await onFailure(job, caught);
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
  if (!(error instanceof RefusedError)) return error;
  const hint = job.op === "put" && !cmd.overwrite && error.code === "exists"
    ? "use --overwrite to replace it"
    // A put's name that is a folder there; a get's name that is no file (a folder, most often).
    : job.op === "put" && error.code === "not_a_file" && job.local !== "-"
    ? `end the name with / to put ${basename(job.local)} into it`
    : job.op === "get" && error.code === "not_a_file"
    ? "get -r fetches a folder"
    : undefined;
  return hint ? error.withHint(hint) : error;
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
