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
import { describeError, StartError, StoreError, UsageError, UserError } from "./errors.ts";
import { osReason } from "./local_files.ts";
import { readTokenFile } from "./auth.ts";
import { formatAddr, formatHostPort, isUnresolvedHost } from "./connection.ts";
import {
  formatBytes,
  formatDuration,
  formatExactBytes,
  parseDuration,
  parseSize,
} from "./format.ts";
import { KEPT_DEFAULTS } from "./kept_uploads.ts";
import type { KeptView } from "./store.ts";
import { SERVER_DEFAULTS, startServer } from "./server.ts";
import { openS3Store, parseS3Options, S3_OPTIONS, type S3Command } from "./s3_cli.ts";
import { checkSecretsOutsideRoot } from "./server_access.ts";
import {
  identityBanner,
  loadIdentity,
  type ServerIdentity,
  type TlsSource,
} from "./tls_identity.ts";
import { phoneUrl, qrLines } from "./http/qr.ts";
import { NAME, VERSION } from "./version.ts";
import { HASH_ARENA_SIZE } from "./xxh3.ts";

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
  --root DIR       folder to share (default ./${DEFAULT_ROOT}); created if missing,
                   but not the folders above it
  --legacy         also serve the seed's protocol (its Python client works
                   against this server; its uploads cannot be verified)
  --no-fsync       do not flush uploads to disk before committing them (faster,
                   but a power cut may lose recent uploads)
  --http [ADDR:]PORT  also serve the folder over HTTP for browsers and curl
                   (HTTPS with TLS; ADDR defaults to --host); see docs/http.md
  --http-public-read  with --token-file: anyone may browse and download over
                   HTTP; uploads still need the token
  --http-archives  let HTTP clients download a folder as one streamed .tar
  --http-qr        print a QR code of the page's address at start, for phones

Serving an S3 bucket instead of a folder (several servers can serve one bucket;
credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile
AWS_PROFILE of ~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE):
  --store s3://BUCKET[/PREFIX]   serve the objects under PREFIX in BUCKET
  --s3-endpoint URL      the store's address, http(s)://HOST[:PORT] (required)
  --s3-region NAME       region requests are signed for (default us-east-1)
  --s3-timeout SECS      give up on a store request after this long (default 30)
  --s3-clean-after DURATION
                         remove uploads staged by a server that stopped after
                         this long untouched (default 1h)

Access and limits:
  --read-only            refuse uploads, rm, mv and mkdir; downloads and
                         listings are served
  --token-file FILE      require clients to prove they hold the secret in FILE
                         (challenge-response: the secret never crosses the wire)
  --tls                  serve over TLS with a certificate of its own, made on
                         the first start and kept in the state folder; prints
                         the fingerprint clients pin (ferry --fingerprint ...)
  --state-dir DIR        where --tls keeps its key (default
                         ~/.local/state/ferry, or $XDG_STATE_HOME/ferry);
                         never inside the root
  --tls-cert FILE        serve over TLS with this PEM certificate chain
  --tls-key FILE         ...and this PEM private key, instead
  --max-size SIZE        refuse uploads over SIZE bytes (10M, 2G...; default: no limit)
  --max-connections N    connections at once; more are told "server busy"
                         (default ${SERVER_DEFAULTS.maxConnections}; as many again may be in their
                         handshake, counted apart, the oldest making room)
  --max-per-address N    connections from one address (IPv6: one /64); more
                         are told "server busy" (default ${SERVER_DEFAULTS.maxPerAddress}; 0 no limit)
  --handshake-timeout SECS
                         close a connection whose handshake (TLS, greeting,
                         token) is not done this long after it connects, or
                         whose request message is not complete this long after
                         it began (default ${SERVER_DEFAULTS.handshakeTimeoutMs / 1000})
  --idle-timeout SECS    close connections that move no byte for this long
                         (default ${SERVER_DEFAULTS.idleTimeoutMs / 1000}; 0 never)
  --min-rate RATE        close an upload that averages less than RATE bytes/s
                         over an idle-timeout period (default ${SERVER_DEFAULTS.minRate}; 0 none)

Interrupted uploads, kept for put --resume:
  --keep-budget SIZE     keep at most SIZE of them in all; the oldest goes first
                         (default ${
  formatBytes(KEPT_DEFAULTS.budget)
}; 0 keeps none). A new upload that
                         finds the disk full removes kept ones, oldest first
  --keep-for DURATION    remove each after this long: 90s, 30m, 24h, 7d
                         (default ${formatDuration(KEPT_DEFAULTS.maxAgeMs)})
  --no-keep              keep none: the same as --keep-budget 0
  --show-kept            let clients list them (ferry HOST PORT kept): names
                         of uploads that other clients began
  -h, --help       show this help
  -V, --version    show the version

Uploads never replace a file unless the client asks with --overwrite, and only
complete, verified uploads appear under their name.`;

const OPTIONS: OptionSpec = {
  port: { type: "string" },
  host: { type: "string" },
  root: { type: "string" },
  ...S3_OPTIONS,
  "no-fsync": { type: "boolean" },
  legacy: { type: "boolean" },
  "read-only": { type: "boolean" },
  "token-file": { type: "string" },
  tls: { type: "boolean" },
  "state-dir": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "max-size": { type: "string" },
  "max-connections": { type: "string" },
  "max-per-address": { type: "string" },
  "handshake-timeout": { type: "string" },
  "idle-timeout": { type: "string" },
  "keep-budget": { type: "string" },
  "keep-for": { type: "string" },
  "no-keep": { type: "boolean" },
  "show-kept": { type: "boolean" },
  "min-rate": { type: "string" },
  http: { type: "string" },
  "http-public-read": { type: "boolean" },
  "http-archives": { type: "boolean" },
  "http-qr": { type: "boolean" },
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
  /** Refuse uploads. */
  readOnly: boolean;
  /** Path of the token file. */
  tokenFile?: string;
  /** Where the TLS certificate and key come from; no TLS when absent. */
  tls?: TlsSource;
  /** Largest upload, bytes. */
  maxSize?: number;
  /** Connection limit. */
  maxConnections: number;
  /** Connections from one address (0 no limit). */
  maxPerAddress: number;
  /** Handshake deadline, milliseconds. */
  handshakeTimeoutMs: number;
  /** Idle timeout, milliseconds (0 never). */
  idleTimeoutMs: number;
  /** Bytes of interrupted uploads kept for `put --resume`, all together (0 keeps none). */
  keepBudget: number;
  /** How long an interrupted upload is kept, milliseconds. */
  keepForMs: number;
  /** Answer clients' kept requests. */
  showKept: boolean;
  /** Least upload rate, bytes per second (0 none). */
  minRate: number;
  /** Serve an S3 bucket instead of `root`. */
  s3?: S3Command;
  /** `--http`: where to serve HTTP too. */
  http?: { hostname: string; port: number };
  /** `--http-public-read`. */
  httpPublicRead?: boolean;
  /** `--http-archives`. */
  httpArchives?: boolean;
  /** `--http-qr`. */
  httpQr?: boolean;
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
    readOnly: values["read-only"] === true,
    maxConnections: SERVER_DEFAULTS.maxConnections as number,
    maxPerAddress: SERVER_DEFAULTS.maxPerAddress as number,
    handshakeTimeoutMs: SERVER_DEFAULTS.handshakeTimeoutMs as number,
    idleTimeoutMs: SERVER_DEFAULTS.idleTimeoutMs as number,
    keepBudget: KEPT_DEFAULTS.budget as number,
    keepForMs: KEPT_DEFAULTS.maxAgeMs as number,
    showKept: values["show-kept"] === true,
    minRate: SERVER_DEFAULTS.minRate as number,
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
  const text = (name: string) => values[name] as string | undefined;
  const certFile = text("tls-cert");
  const keyFile = text("tls-key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  const stateDir = text("state-dir");
  if (stateDir !== undefined && (values.tls !== true || certFile !== undefined)) {
    throw new UsageError("--state-dir goes with --tls (and without --tls-cert)");
  }
  const tls = certFile && keyFile
    ? { certFile, keyFile }
    : values.tls === true
    ? { stateDir }
    : undefined;
  const tokenFile = text("token-file");
  if (base.legacy && (tls || tokenFile)) {
    throw new UsageError(
      `--legacy cannot be combined with ${tls ? "TLS" : "--token-file"}: ` +
        "the seed protocol can carry neither",
    );
  }
  let maxSize: number | undefined;
  if (text("max-size") !== undefined) {
    const parsed = parseSize(text("max-size")!);
    if (parsed === null || parsed < 1) {
      throw new UsageError(
        `Invalid --max-size ${JSON.stringify(text("max-size"))}: use bytes or 10M, 2G`,
      );
    }
    maxSize = parsed;
  }
  const { keepBudget, keepForMs } = parseKeeping(values, base);
  let minRate = base.minRate;
  if (text("min-rate") !== undefined) {
    const parsed = parseSize(text("min-rate")!);
    if (parsed === null) {
      throw new UsageError(
        `Invalid --min-rate ${JSON.stringify(text("min-rate"))}: use bytes per second or 1K`,
      );
    }
    minRate = parsed;
  }
  const s3 = parseS3Options(values);
  if (s3 && root !== undefined) throw new UsageError("--root and --store cannot be combined");
  if (s3 && values.http !== undefined) {
    throw new UsageError("--http serves a folder only: it cannot be combined with --store yet");
  }
  const count = (name: string, fallback: number, min: number) => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min) {
      throw new UsageError(
        `Invalid --${name} ${JSON.stringify(raw)}: expected a whole number of at least ${min}`,
      );
    }
    return Number(raw);
  };
  return {
    ...base,
    command: "serve",
    hostname: host?.replace(/^\[(.*)\]$/, "$1") ?? DEFAULT_HOST,
    port: ports[0] ?? DEFAULT_PORT,
    root: root ?? DEFAULT_ROOT,
    tls,
    tokenFile,
    maxSize,
    maxConnections: count("max-connections", base.maxConnections, 1),
    maxPerAddress: count("max-per-address", base.maxPerAddress, 0),
    handshakeTimeoutMs: count("handshake-timeout", base.handshakeTimeoutMs / 1000, 1) * 1000,
    idleTimeoutMs: count("idle-timeout", base.idleTimeoutMs / 1000, 0) * 1000,
    keepBudget,
    keepForMs,
    minRate,
    s3,
    ...parseHttp(values, host?.replace(/^\[(.*)\]$/, "$1") ?? DEFAULT_HOST, tokenFile),
  };
}

/** `--http [ADDR:]PORT` and `--http-public-read`. */
function parseHttp(
  values: Record<string, string | boolean | undefined>,
  host: string,
  tokenFile: string | undefined,
): {
  http?: { hostname: string; port: number };
  httpPublicRead?: boolean;
  httpArchives?: boolean;
  httpQr?: boolean;
} {
  const text = values.http as string | undefined;
  const publicRead = values["http-public-read"] === true;
  const archives = values["http-archives"] === true;
  const qr = values["http-qr"] === true;
  if (text === undefined) {
    if (qr) throw new UsageError("--http-qr needs --http");
    if (publicRead) throw new UsageError("--http-public-read needs --http");
    if (archives) throw new UsageError("--http-archives needs --http");
    return {};
  }
  if (publicRead && tokenFile === undefined) {
    throw new UsageError("--http-public-read needs --token-file (without one, all is public)");
  }
  const match = /^(?:(\[[^\]]+\]|[^:]*):)?([^:]+)$/.exec(text);
  if (!match) throw new UsageError(`Invalid --http ${JSON.stringify(text)}: use PORT or ADDR:PORT`);
  const hostname = match[1] ? match[1].replace(/^\[(.*)\]$/, "$1") : host;
  return {
    http: { hostname, port: parsePort(match[2], true) },
    httpPublicRead: publicRead,
    httpArchives: archives,
    httpQr: qr,
  };
}

/** The kept uploads' budget and age from `--keep-budget`, `--keep-for` and `--no-keep`. */
function parseKeeping(
  values: Record<string, string | boolean | undefined>,
  defaults: { keepBudget: number; keepForMs: number },
): { keepBudget: number; keepForMs: number } {
  const budgetText = values["keep-budget"] as string | undefined;
  const forText = values["keep-for"] as string | undefined;
  let keepBudget = defaults.keepBudget;
  if (budgetText !== undefined) {
    const parsed = parseSize(budgetText);
    if (parsed === null) {
      throw new UsageError(
        `Invalid --keep-budget ${JSON.stringify(budgetText)}: use bytes or 10M, 2G (0 keeps none)`,
      );
    }
    keepBudget = parsed;
  }
  if (values["no-keep"] === true) {
    if (keepBudget > 0 && budgetText !== undefined) {
      throw new UsageError("--no-keep contradicts --keep-budget: choose one");
    }
    keepBudget = 0;
  }
  let keepForMs = defaults.keepForMs;
  if (forText !== undefined) {
    const parsed = parseDuration(forText);
    if (parsed === null || parsed < 1000) {
      throw new UsageError(
        `Invalid --keep-for ${JSON.stringify(forText)}: ` +
          "use seconds or 30m, 24h, 7d, at least 1 s (--no-keep keeps nothing)",
      );
    }
    keepForMs = parsed;
  }
  return { keepBudget, keepForMs };
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
      isLoopback(host.replace(/^\[(.*)\]$/, "$1"))
        ? " (this machine only: a phone needs --http 0.0.0.0:PORT or this machine's address)"
        : ""
    ),
  );
  const color = !Deno.noColor && Deno.stderr.isTerminal();
  for (const line of qrLines(target, { color })) say(line);
}
