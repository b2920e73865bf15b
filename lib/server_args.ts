/**
 * The server's command line, declared and parsed: its options (each declared once, in
 * {@link SERVER_OPTIONS}), the usage text made from them, and {@link parseServerArgs}, which
 * turns arguments into a {@link ServerCommand} or a usage error. Kept apart from running the
 * server (lib/server_cli.ts): the launcher of `deno task serve` parses with it too, and runs
 * nothing. The S3 options are declared beside the store, in lib/s3_cli.ts.
 *
 * @module
 */

import { parsePort } from "./cli.ts";
import { normalizeHost } from "./connection.ts";
import { UsageError } from "./errors.ts";
import { PAGE_SIZE } from "./page_order.ts";
import { formatBytes, formatDuration } from "./format.ts";
import { KEPT_DEFAULTS } from "./kept_uploads.ts";
import {
  checkCommandOptions,
  formatOptions,
  MAX_TIMEOUT_SECONDS,
  type OptionTable,
  type OptionValues,
  parseOptions,
} from "./options.ts";
import { parseS3Options, S3_OPTIONS, type S3Command } from "./s3_cli.ts";
import { SERVER_DEFAULTS } from "./server.ts";
import type { TlsSource } from "./server_access.ts";
import { NAME } from "./version.ts";

const PROGRAM = `${NAME}-server`;

/** Port used when none is given. */
export const DEFAULT_PORT = 9021;
/** Address listened on when none is given: loopback, so nothing is shared by accident. */
export const DEFAULT_HOST = "127.0.0.1";
/** Folder served when none is given, relative to the working directory. */
export const DEFAULT_ROOT = "ferry-data";

const ACCESS = "Access and limits";
const KEEPING = "Interrupted uploads, kept for put\u00a0--resume";

/** The server's options, in the order the usage text lists them. */
export const SERVER_OPTIONS = {
  port: {
    kind: "port",
    arg: "N",
    min: 0,
    help: `port to listen on (default ${DEFAULT_PORT}; 0 picks a free one); a bare PORT ` +
      "argument means the same",
  },
  host: {
    kind: "string",
    arg: "ADDR",
    key: "hostname",
    help: `address to listen on (default ${DEFAULT_HOST}, this machine only; 0.0.0.0 or :: ` +
      "shares on the network)",
  },
  root: {
    kind: "path",
    arg: "DIR",
    default: DEFAULT_ROOT,
    help: `folder to share (default ./${DEFAULT_ROOT}); created if missing, but not the ` +
      "folders above it",
  },
  ...S3_OPTIONS,
  legacy: {
    kind: "flag",
    help: "also serve the seed's protocol (its Python client works against this server; its " +
      "uploads cannot be verified)",
  },
  "no-fsync": {
    kind: "flag",
    key: "fsync",
    negated: true,
    help: "do not flush uploads to disk before committing them (faster, but a power cut may " +
      "lose recent uploads)",
  },
  http: {
    kind: "string",
    arg: "[ADDR:]PORT",
    help: "also serve the folder over HTTP for browsers and curl (HTTPS with TLS; ADDR " +
      "defaults to --host); see docs/http.md",
  },
  "http-public-read": {
    kind: "flag",
    needs: "http",
    help: "with --token-file: anyone may browse and download over HTTP; uploads still need " +
      "the token",
  },
  "http-archives": {
    kind: "flag",
    needs: "http",
    help: "let HTTP clients download a folder as one streamed .tar",
  },
  "http-page-size": {
    kind: "count",
    arg: "N",
    min: 1,
    default: PAGE_SIZE,
    needs: "http",
    help: "a folder of more entries is shown over HTTP a page of N at a time (default " +
      `${PAGE_SIZE.toLocaleString("en")}; ?json lists it whole)`,
  },
  "http-qr": {
    kind: "flag",
    needs: "http",
    help: "print a QR code of the page's address at start, for phones",
  },
  help: { kind: "flag", short: "h", help: "show this help" },
  version: { kind: "flag", short: "V", help: "show the version" },
  "read-only": {
    kind: "flag",
    section: ACCESS,
    help: "refuse uploads, rm, mv and mkdir; downloads and listings are served",
  },
  "token-file": {
    kind: "path",
    arg: "FILE",
    section: ACCESS,
    help: "require clients to prove they hold the secret in FILE (challenge-response: the " +
      "secret never crosses the wire)",
  },
  tls: {
    kind: "flag",
    section: ACCESS,
    help: "serve over TLS with a certificate of its own, made on the first start and kept in " +
      "the state folder; prints the fingerprint clients pin (ferry --fingerprint ...)",
  },
  "state-dir": {
    kind: "path",
    arg: "DIR",
    section: ACCESS,
    help: "where --tls keeps its key (default ~/.local/state/ferry, or " +
      "$XDG_STATE_HOME/ferry); never inside the root",
  },
  "tls-cert": {
    kind: "path",
    arg: "FILE",
    section: ACCESS,
    help: "serve over TLS with this PEM certificate chain",
  },
  "tls-key": {
    kind: "path",
    arg: "FILE",
    section: ACCESS,
    help: "...and this PEM private key, instead",
  },
  "max-size": {
    kind: "size",
    arg: "SIZE",
    min: 1,
    section: ACCESS,
    help: "refuse uploads over SIZE bytes (10M, 2G...; default: no limit)",
  },
  "max-connections": {
    kind: "count",
    arg: "N",
    min: 1,
    default: SERVER_DEFAULTS.maxConnections,
    section: ACCESS,
    help: `connections at once; more are told "server busy" (default ` +
      `${SERVER_DEFAULTS.maxConnections}; as many again may be in their handshake, counted ` +
      "apart, the oldest making room)",
  },
  "max-per-address": {
    kind: "count",
    arg: "N",
    min: 0,
    default: SERVER_DEFAULTS.maxPerAddress,
    section: ACCESS,
    help: `connections from one address (IPv6: one /64); more are told "server busy" ` +
      `(default ${SERVER_DEFAULTS.maxPerAddress}; 0 no limit)`,
  },
  "handshake-timeout": {
    kind: "seconds",
    arg: "SECS",
    whole: true,
    min: 1,
    key: "handshakeTimeoutMs",
    default: SERVER_DEFAULTS.handshakeTimeoutMs,
    section: ACCESS,
    help: "close a connection whose handshake (TLS, greeting, token) is not done this long " +
      "after it connects, or whose request message is not complete this long after it began " +
      `(default ${SERVER_DEFAULTS.handshakeTimeoutMs / 1000}, at most ${MAX_TIMEOUT_SECONDS})`,
  },
  "idle-timeout": {
    kind: "seconds",
    arg: "SECS",
    whole: true,
    min: 0,
    key: "idleTimeoutMs",
    default: SERVER_DEFAULTS.idleTimeoutMs,
    section: ACCESS,
    help: "close connections that move no byte for this long (default " +
      `${SERVER_DEFAULTS.idleTimeoutMs / 1000}; 0 never)`,
  },
  "min-rate": {
    kind: "size",
    arg: "RATE",
    default: SERVER_DEFAULTS.minRate,
    hint: "use bytes per second or 1K",
    section: ACCESS,
    help: "close an upload that averages less than RATE bytes/s over an idle-timeout period " +
      `(default ${SERVER_DEFAULTS.minRate}; 0 none)`,
  },
  "keep-budget": {
    kind: "size",
    arg: "SIZE",
    default: KEPT_DEFAULTS.budget,
    hint: "use bytes or 10M, 2G (0 keeps none)",
    section: KEEPING,
    help: "keep at most SIZE of them in all; the oldest goes first (default " +
      `${formatBytes(KEPT_DEFAULTS.budget)}; 0 keeps none). A new upload that finds the ` +
      "disk full removes kept ones, oldest first",
  },
  "keep-for": {
    kind: "duration",
    arg: "DURATION",
    key: "keepForMs",
    min: 1000,
    default: KEPT_DEFAULTS.maxAgeMs,
    hint: "use seconds or 30m, 24h, 7d, at least 1 s (--no-keep keeps nothing)",
    section: KEEPING,
    help: "remove each after this long: 90s, 30m, 24h, 7d (default " +
      `${formatDuration(KEPT_DEFAULTS.maxAgeMs)})`,
  },
  "no-keep": {
    kind: "flag",
    section: KEEPING,
    help: "keep none: the same as --keep-budget 0",
  },
  "show-kept": {
    kind: "flag",
    section: KEEPING,
    help: "let clients list them (ferry HOST PORT kept): names of uploads that other clients " +
      "began",
  },
} as const satisfies OptionTable;

/** Server usage text, shown by `--help`. */
export const SERVER_USAGE = `Usage: ${PROGRAM} [PORT] [options]

Shares one folder over TCP for the ${NAME} client (put, get, list).

${formatOptions(SERVER_OPTIONS, 25)}

Uploads never replace a file unless the client asks with --overwrite, and only
complete, verified uploads appear under their name.`;

/** The options' values that a server command carries as they are. */
type ServerOptions = Omit<
  OptionValues<typeof SERVER_OPTIONS>,
  | "help"
  | "version"
  | "port"
  | "hostname"
  | "tls"
  | "stateDir"
  | "tlsCert"
  | "tlsKey"
  | "noKeep"
  | "http"
  | keyof OptionValues<typeof S3_OPTIONS>
>;

/**
 * A parsed server command line: what to do, where to listen, and every option's value (see
 * {@link SERVER_OPTIONS} for what each means; times are in milliseconds).
 */
export interface ServerCommand extends ServerOptions {
  /** What to do. */
  command: "serve" | "help" | "version";
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on. */
  port: number;
  /** Where the TLS certificate and key come from; no TLS when absent. */
  tls?: TlsSource;
  /** Serve an S3 bucket instead of `root`. */
  s3?: S3Command;
  /** `--http`: where to serve HTTP too. */
  http?: HttpAddress;
}

/** Where `--http` serves. */
export interface HttpAddress {
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on (0: any free one). */
  port: number;
}

/** Parses the server's arguments; throws {@link UsageError} on anything it cannot run. */
export function parseServerArgs(argv: string[]): ServerCommand {
  const { values, given, positionals } = parseOptions(SERVER_OPTIONS, argv);
  const {
    help,
    version,
    port: portOption,
    hostname,
    tls: selfSigned,
    stateDir,
    tlsCert: certFile,
    tlsKey: keyFile,
    noKeep,
    store,
    s3Endpoint,
    s3Region,
    s3TimeoutMs,
    s3CleanAfterMs,
    http: httpText,
    ...options
  } = values;
  const base = { ...options, hostname: DEFAULT_HOST, port: DEFAULT_PORT };
  checkCommandOptions(SERVER_OPTIONS, given);
  if (help) return { ...base, command: "help" };
  if (version) return { ...base, command: "version" };
  if (positionals.length > 1) {
    throw new UsageError(`Unexpected argument ${JSON.stringify(positionals[1])}`);
  }
  const ports = [
    ...positionals.map((text) => parsePort(text, true)),
    ...(portOption === undefined ? [] : [portOption]),
  ];
  if (ports.length === 2 && ports[0] !== ports[1]) {
    throw new UsageError(`Two different ports given: ${ports[0]} and ${ports[1]}`);
  }
  if (hostname !== undefined && hostname.trim() === "") throw new UsageError("--host is empty");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  if (stateDir !== undefined && (!selfSigned || certFile !== undefined)) {
    throw new UsageError("--state-dir goes with --tls (and without --tls-cert)");
  }
  const tls = certFile !== undefined && keyFile !== undefined
    ? { certFile, keyFile }
    : selfSigned
    ? { stateDir }
    : undefined;
  if (options.legacy && (tls || options.tokenFile !== undefined)) {
    throw new UsageError(
      `--legacy cannot be combined with ${tls ? "TLS" : "--token-file"}: ` +
        "the seed protocol can carry neither",
    );
  }
  if (noKeep && options.keepBudget > 0 && given.has("keep-budget")) {
    throw new UsageError("--no-keep contradicts --keep-budget: choose one");
  }
  const s3 = parseS3Options({ store, s3Endpoint, s3Region, s3TimeoutMs, s3CleanAfterMs });
  if (s3 && given.has("root")) throw new UsageError("--root and --store cannot be combined");
  if (s3 && httpText !== undefined) {
    throw new UsageError("--http serves a folder only: it cannot be combined with --store yet");
  }
  const listen = hostname === undefined ? DEFAULT_HOST : normalizeHost(hostname);
  if (options.httpPublicRead && options.tokenFile === undefined) {
    throw new UsageError("--http-public-read needs --token-file (without one, all is public)");
  }
  return {
    ...base,
    command: "serve",
    hostname: listen,
    http: httpText === undefined ? undefined : parseHttpAddress(httpText, listen),
    port: ports[0] ?? DEFAULT_PORT,
    tls,
    keepBudget: noKeep ? 0 : options.keepBudget,
    s3,
  };
}

/** `--http [ADDR:]PORT`; ADDR defaults to `host`, the address the ferry protocol listens on. */
function parseHttpAddress(text: string, host: string): HttpAddress {
  const match = /^(?:(\[[^\]]+\]|[^:]*):)?([^:]+)$/.exec(text);
  if (!match) throw new UsageError(`Invalid --http ${JSON.stringify(text)}: use PORT or ADDR:PORT`);
  const hostname = match[1] ? normalizeHost(match[1]) : host;
  return { hostname, port: parsePort(match[2], true) };
}
