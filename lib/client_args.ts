/**
 * The client's command line, declared and parsed: its commands (put, get, list, kept, mput, mget,
 * trust, rm, mv, mkdir; put -r and get -r) and options (each declared once,
 * in {@link CLIENT_COMMANDS} and {@link CLIENT_OPTIONS}), the usage text made from them, and
 * {@link parseClientArgs}, which turns arguments into a {@link ClientCommand} or a usage error.
 * Running the command is lib/client_cli.ts's.
 *
 * @module
 */

import { parsePort } from "./cli.ts";
import { UsageError } from "./errors.ts";
import {
  arityOf,
  checkCommandOptions,
  type CommandTable,
  formatCommands,
  formatOptions,
  MAX_TIMEOUT_SECONDS,
  type OptionTable,
  type OptionValues,
  parseOptions,
} from "./options.ts";
import { NAME } from "./version.ts";
import { parseFingerprint } from "./x509.ts";

const PROGRAM = NAME;

/** The client's commands, in the order the usage text lists them. */
export const CLIENT_COMMANDS = {
  put: {
    args: ["LOCAL", "[REMOTE]"],
    help: `upload LOCAL as REMOTE (default: LOCAL's base name; REMOTE ending in "/": into that ` +
      `folder); LOCAL "-" reads stdin, and REMOTE is then required`,
    variants: {
      "put -r LOCALDIR [REMOTEDIR]": "upload a whole folder, sending only what changed",
    },
  },
  get: {
    args: ["REMOTE", "[LOCAL]"],
    help: "download REMOTE to LOCAL (default: REMOTE's base name in the current folder); " +
      `LOCAL "-" writes to stdout`,
    variants: {
      "get -r REMOTEDIR [LOCALDIR]": "download a whole folder, fetching only what changed (a " +
        `destination ending in "/", or ".", means into it)`,
    },
  },
  list: {
    args: ["[DIR]"],
    help: "list a remote folder (default: the top), one name per line, folders ending in " +
      `"/"; -r: everything under it`,
  },
  kept: {
    args: [],
    help: "list the interrupted uploads the server keeps for put\u00a0--resume (if the server " +
      "allows it: --show-kept)",
  },
  mput: { args: ["FILE..."], help: "upload several files over one connection" },
  mget: { args: ["NAME..."], help: "download several files over one connection" },
  trust: {
    args: [],
    help: "remember the server's TLS certificate (with --fingerprint: only if it has that " +
      "fingerprint)",
  },
  rm: { args: ["NAME"], help: "remove a remote file; -r: a folder and all it holds" },
  mv: {
    args: ["OLD", "NEW"],
    help: "rename a remote file or folder (NEW's folder must exist; NEW/ moves it into NEW)",
  },
  mkdir: {
    args: ["DIR"],
    help: "create a remote folder; -p: parents too, and an existing folder is fine",
  },
} as const satisfies CommandTable;

/** The commands that change the remote tree (see lib/tree_cli.ts). */
export const TREE_CHANGES: readonly string[] = ["rm", "mv", "mkdir"] satisfies Command[];

/** A client command word. */
export type Command = keyof typeof CLIENT_COMMANDS;

const TRANSFERS = ["put", "get", "mput", "mget"] as const satisfies Command[];

/** The client's options, in the order the usage text lists them. */
export const CLIENT_OPTIONS = {
  overwrite: {
    kind: "flag",
    commands: ["put", "mput", "mv"],
    help: "replace existing remote files (atomically)",
  },
  recursive: {
    kind: "flag",
    short: "r",
    commands: ["list", "rm", "put", "get"],
    help: "the whole tree under DIR",
  },
  delete: {
    kind: "flag",
    commands: ["put", "get"],
    needs: "recursive",
    help: "remove what the sender does not have (a destination that was there already must " +
      "hold one of the tree's top-level names, else its top is kept)",
  },
  "delete-unrelated": {
    kind: "flag",
    commands: ["put", "get"],
    needs: "recursive",
    help: "--delete, even into a destination that holds none of the tree's names: make it a " +
      "copy whatever it held",
  },
  "dry-run": {
    kind: "flag",
    commands: ["put", "get"],
    needs: "recursive",
    help: "print what would be sent, skipped and deleted, and change nothing",
  },
  exclude: {
    kind: "strings",
    arg: "PATTERN",
    commands: ["put", "get"],
    needs: "recursive",
    help: "skip names matching PATTERN (repeatable)",
  },
  "exclude-from": {
    kind: "path",
    arg: "FILE",
    commands: ["put", "get"],
    needs: "recursive",
    help: "--exclude each line of FILE",
  },
  checksum: {
    kind: "flag",
    commands: ["put", "get"],
    needs: "recursive",
    help: "compare contents, not size and mtime",
  },
  links: {
    kind: "flag",
    commands: ["put", "get"],
    needs: "recursive",
    help: "copy symlinks whose target stays inside the tree, as links (others are skipped " +
      "with a note)",
  },
  parents: {
    kind: "flag",
    short: "p",
    commands: ["mkdir"],
    help: "create missing parent folders",
  },
  force: {
    kind: "flag",
    short: "f",
    commands: ["get", "mget"],
    help: "replace existing local files",
  },
  "no-fsync": {
    kind: "flag",
    key: "fsync",
    negated: true,
    commands: ["get", "mget"],
    help: "do not flush downloads to disk before giving them their name (faster; a power cut " +
      "may lose them)",
  },
  resume: {
    kind: "flag",
    commands: TRANSFERS,
    help: "continue an interrupted transfer (the bytes already there are verified first)",
  },
  "limit-rate": {
    kind: "size",
    arg: "RATE",
    min: 1,
    hint: "use bytes per second or 8M",
    commands: TRANSFERS,
    help: "at most RATE bytes/s (8M = 8 MiB/s)",
  },
  json: {
    kind: "flag",
    help: "list: a JSON array of {name, type, size, mtime}; kept: of {name, bytes, size, keptAt, " +
      "expiresAt}; transfers: one JSON report per file on stdout (stderr if data goes there)",
  },
  long: { kind: "flag", short: "l", commands: ["list"], help: "print sizes and dates too" },
  quiet: { kind: "flag", short: "q", help: "print nothing but errors" },
  progress: {
    kind: "flag",
    help: "show the progress line even when stderr is not a terminal",
  },
  timeout: {
    kind: "seconds",
    arg: "SECONDS",
    key: "timeoutMs",
    default: 15_000,
    help: `give up connecting after this long (default 15, at most ${MAX_TIMEOUT_SECONDS})`,
  },
  "stall-timeout": {
    kind: "seconds",
    arg: "SECONDS",
    key: "stallTimeoutMs",
    help: "give up a transfer or listing once the server has sent and taken nothing for this " +
      "long (default: wait forever; time spent on local files and stdin/stdout not counted)",
  },
  "token-file": {
    kind: "path",
    arg: "FILE",
    help: "prove to the server that we hold the secret in FILE (it never crosses the wire; " +
      "the server must prove it too)",
  },
  tls: {
    kind: "flag",
    help: "connect with TLS, trusting the system's certificates, those of --ca, and the " +
      "servers remembered by trust (in known_servers, in ~/.config/ferry or " +
      "$XDG_CONFIG_HOME/ferry)",
  },
  fingerprint: {
    kind: "string",
    arg: "SHA256:...",
    help: "connect with TLS only to a server whose certificate has this fingerprint (as " +
      "ferry-server prints it), and remember it; implies --tls",
  },
  ca: {
    kind: "path",
    arg: "FILE",
    key: "caFile",
    help: "also trust the PEM certificate(s) in FILE; implies --tls",
  },
  legacy: {
    kind: "flag",
    help: "speak the seed's protocol, to use its Python server (no checksum: transfers cannot " +
      "be verified)",
  },
  help: { kind: "flag", short: "h", help: "show this help" },
  version: { kind: "flag", short: "V", help: "show the version" },
} as const satisfies OptionTable;

/** Column where the usage text's help starts. */
const HELP_COLUMN = 23;

/** Client usage text, shown by `--help`. */
export const CLIENT_USAGE = `Usage: ${PROGRAM} [options] HOST PORT COMMAND [ARGS]

${formatCommands(CLIENT_COMMANDS, HELP_COLUMN)}

${formatOptions(CLIENT_OPTIONS, HELP_COLUMN)}

HOST may be a name, an IPv4 address or an IPv6 address (brackets optional).
Options may come before or after the other arguments; "--" ends them.
Exit status: 0 done, 1 refused or failed (any file, for mput/mget),
2 usage error.

Examples:
  ${PROGRAM} localhost 9021 put -r photos
  ${PROGRAM} localhost 9021 get -r photos . --delete
  ${PROGRAM} localhost 9021 put report.pdf
  tar c photos | ${PROGRAM} ::1 9021 put - photos.tar
  ${PROGRAM} 10.0.0.5 9021 get photos.tar - | tar x
  ${PROGRAM} localhost 9021 mput *.log --json
  ${PROGRAM} localhost 9021 list -r --json
  ${PROGRAM} localhost 9021 mv drafts/report.pdf final/report.pdf`;

/** The options' values, each under its key (`limitRate`, `timeoutMs`, `fsync`...). */
type ClientOptions = Omit<OptionValues<typeof CLIENT_OPTIONS>, "help" | "version">;

/**
 * A parsed client command line: what to do, where, with which arguments, and every option's
 * value (see {@link CLIENT_OPTIONS} for what each means; times are in milliseconds).
 */
export interface ClientCommand extends ClientOptions {
  /** What to do. */
  command: Command | "help" | "version";
  /** Server host. */
  host: string;
  /** Server port. */
  port: number;
  /** Command arguments after the command word. */
  args: string[];
}

/** Parses the client's arguments; throws {@link UsageError} on anything it cannot run. */
export function parseClientArgs(argv: string[]): ClientCommand {
  const { values, given, positionals } = parseOptions(CLIENT_OPTIONS, argv);
  const { help, version, ...options } = values;
  const base: Omit<ClientCommand, "command"> = {
    ...options,
    host: "",
    port: 0,
    args: [],
    tls: options.tls || options.caFile !== undefined || options.fingerprint !== undefined,
    delete: options.delete || options.deleteUnrelated,
    fingerprint: pinnedFingerprint(options.fingerprint),
  };
  if (help) return { ...base, command: "help" };
  if (version) return { ...base, command: "version" };
  if (positionals.length < 3) {
    throw new UsageError(
      positionals.length === 0 ? "Missing HOST, PORT and COMMAND" : "Missing PORT or COMMAND",
    );
  }
  const [host, portText, word, ...args] = positionals;
  if (host === "") throw new UsageError("HOST is empty");
  const port = parsePort(portText);
  if (!isCommand(word)) {
    const words = Object.keys(CLIENT_COMMANDS);
    throw new UsageError(
      `Unknown command ${JSON.stringify(word)}: expected ${words.slice(0, -1).join(", ")} ` +
        `or ${words.at(-1)}`,
    );
  }
  const command = word;
  checkCommandOptions(CLIENT_OPTIONS, given, command);
  const { min, max, shape, names } = arityOf(command, CLIENT_COMMANDS[command]);
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
  if (base.legacy && base.stallTimeoutMs !== undefined) {
    throw new UsageError("--stall-timeout is not available with --legacy");
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
  if (tree) {
    if (args.includes("-")) throw new UsageError(`${command} -r takes folders, not "-"`);
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
  return { ...base, command, host, port, args };
}

function isCommand(word: string): word is Command {
  return Object.hasOwn(CLIENT_COMMANDS, word);
}

/** The --fingerprint value in its canonical form; undefined when the option is absent. */
function pinnedFingerprint(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const fingerprint = parseFingerprint(value);
  if (fingerprint === null) {
    throw new UsageError(
      `Invalid --fingerprint ${JSON.stringify(value)}: expected SHA256: and 43 base64 ` +
        "characters, as ferry-server prints it (or openssl's hex form)",
    );
  }
  return fingerprint;
}
