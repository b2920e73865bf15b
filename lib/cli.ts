/**
 * What both command lines share: argument parsing on top of `node:util` parseArgs with usage
 * errors instead of exceptions, port checking, and turning any failure into one line on stderr
 * and an exit code (0 ok, 1 refused or failed, 2 usage).
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { DEVICE_FILES_RULE } from "./devices.ts";
import { describeError, ProtocolError, RefusedError, UsageError, UserError } from "./errors.ts";
import { escapeUnsafe } from "./format.ts";

/** Exit code for success. */
export const EXIT_OK = 0;
/** Exit code for a refusal or failure. */
export const EXIT_FAILED = 1;
/** Exit code for a command line that cannot be run. */
export const EXIT_USAGE = 2;

/** Option definitions, as parseArgs takes them. */
export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

/** Result of {@link parseCommandLine}. */
export interface ParsedCommandLine {
  /** Option values by name. */
  values: Record<string, string | string[] | boolean | undefined>;
  /** Positional arguments, in order. */
  positionals: string[];
}

/** Parses arguments; options may come before or after positionals, `--` ends options. */
export function parseCommandLine(args: string[], options: OptionSpec): ParsedCommandLine {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as ParsedCommandLine["values"], positionals };
  } catch (error) {
    // parseArgs explains at length; the first sentence is the useful part.
    const text = describeError(error).split(". ")[0].replace(/\.$/, "");
    throw new UsageError(text);
  }
}

/**
 * Parses a TCP port number. 0 is allowed only when `allowZero` is set (a server's "any free
 * port"), and the message then says so.
 */
export function parsePort(text: string, allowZero = false): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= (allowZero ? 0 : 1) && port <= 65535)) {
    const range = allowZero ? "from 0 (any free port) to 65535" : "from 1 to 65535";
    throw new UsageError(`Invalid port ${JSON.stringify(text)}: expected a number ${range}`);
  }
  return port;
}

/**
 * Writes a line to stderr. Control and bidi characters are escaped: messages quote names and
 * reasons that come from a server or the file system, and those must not drive the terminal or
 * turn one line into several.
 */
export function say(line: string): void {
  console.error(escapeUnsafe(line));
}

/** What to do when Deno's permissions refuse something, unless a program says otherwise. */
export const PERMISSION_HINT =
  "run it with --allow-net, --allow-read and --allow-write, as deno task client does";

/**
 * Describes a failure in one line, without the program name. A refusal by Deno's permission
 * layer says what was refused and then `permissionHint`, what to do, in place of Deno's own
 * advice (which would be to run with a flag such as --allow-all); a device or kernel file, which
 * only --allow-all opens, is told so instead.
 */
export function describeFailure(error: unknown, permissionHint = PERMISSION_HINT): string {
  if (error instanceof RefusedError) return `Refused by server: ${error.message}`;
  if (error instanceof ProtocolError) return `Transfer failed: ${error.message}`;
  if (error instanceof UserError || error instanceof UsageError) return error.message;
  if (error instanceof Deno.errors.NotCapable) {
    const what = describeError(error).replace(/, (run again|specify the required) .*$/, "")
      .replace(/^Requires /, "");
    // Deno asks for all access only to device and kernel files: the flags a hint would suggest
    // (and the tasks that give them) cannot open those, so the way out is another path.
    const hint = what.startsWith("all access")
      ? `${DEVICE_FILES_RULE}; use a path outside them`
      : permissionHint;
    return `Not allowed by Deno's permissions (${what}): ${hint}`;
  }
  if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe) {
    return `Connection lost: ${describeError(error)}`;
  }
  return describeError(error);
}

/** Options for {@link reportFailure}. */
export interface ReportOptions {
  /** Prefix of the line: the program's name. */
  program: string;
  /** Ends a usage error's line in parentheses, such as `try 'ferry --help'`. */
  helpHint?: string;
  /** What to do when Deno's permissions refused something (default {@link PERMISSION_HINT}). */
  permissionHint?: string;
}

/**
 * Reports a failure as one line on stderr (no stack trace) and returns the exit code. A usage
 * error's help hint goes in parentheses on the same line: errors are one line.
 */
export function reportFailure(error: unknown, options: ReportOptions): number {
  const message = `${options.program}: ${describeFailure(error, options.permissionHint)}`;
  if (error instanceof UsageError) {
    say(options.helpHint ? `${message} (${options.helpHint})` : message);
    return EXIT_USAGE;
  }
  say(message);
  return EXIT_FAILED;
}
