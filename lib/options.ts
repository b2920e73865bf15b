/**
 * A command line's options and commands, declared once. A program lists its options in one
 * table ({@link OptionTable}: name, short letter, kind of value, default, help, which commands
 * take it, limits) and, if it has commands, its commands in another ({@link CommandTable}). From
 * those come the parseArgs spec, the parsed values typed by kind ({@link OptionValues}), the rule
 * that an option is given only to a command that takes it, the argument counts, and the usage
 * text. Adding an option or a command is one entry here, and nothing else to keep in step.
 *
 * @module
 */

import { type OptionSpec, parseCommandLine, parsePort } from "./cli.ts";
import { UsageError } from "./errors.ts";
import { parseDuration, parseSize } from "./format.ts";

/** Longest seconds value: setTimeout's limit of 2^31-1 milliseconds, in whole seconds. */
export const MAX_TIMEOUT_SECONDS = 2147483;

/**
 * What an option's value is, and what it parses to:
 * - `flag`: no value; a boolean.
 * - `string`: any text.
 * - `strings`: any text, given any number of times; a list in the order given (empty when absent).
 * - `path`: a file or folder; an empty one is refused, as it could only fail later (or, for a
 *   secret, silently mean "none").
 * - `port`: a TCP port number (0 allowed when `min` is 0).
 * - `size`: bytes, with binary suffixes (`8M`, `2G`), at least `min` (default 0).
 * - `seconds`: a time in seconds, parsed to milliseconds: more than 0 and fractions allowed, or
 *   with `whole`, a whole number of at least `min` (default 0). At most
 *   {@link MAX_TIMEOUT_SECONDS}, which setTimeout can wait.
 * - `duration`: `90s`, `30m`, `24h`, `7d` (bare: seconds), parsed to milliseconds, at least `min`.
 * - `count`: a whole number of at least `min` (default 0).
 */
export type OptionKind =
  | "flag"
  | "string"
  | "strings"
  | "path"
  | "port"
  | "size"
  | "seconds"
  | "duration"
  | "count";

/** One option, as a program declares it. */
export interface OptionDecl {
  /** What its value is; see {@link OptionKind}. */
  readonly kind: OptionKind;
  /** Its one-letter form, such as `f` for `-f`. */
  readonly short?: string;
  /** What its value is called in the usage text, such as `FILE`. */
  readonly arg?: string;
  /**
   * What it does, for the usage text, which wraps it; a no-break space (`\u00a0`) keeps two
   * words on one line.
   */
  readonly help: string;
  /** Its field in the parsed values (default: the name in camelCase, `limit-rate` → `limitRate`). */
  readonly key?: string;
  /** A `flag` whose value is true unless it is given (`--no-fsync` sets `fsync` to false). */
  readonly negated?: boolean;
  /** The value when the option is absent, in the parsed value's unit (milliseconds for times). */
  readonly default?: number | string;
  /** The commands that take it; absent: all. The usage text names them before the help. */
  readonly commands?: readonly string[];
  /**
   * The long name of an option it goes with, such as `recursive` for an option of `put -r`
   * only. Without that option it is refused, and the usage text names the commands with it.
   */
  readonly needs?: string;
  /** The usage text's heading it is listed under (default "Options"). */
  readonly section?: string;
  /** Least value, in the unit the user types (bytes, seconds; milliseconds for a duration). */
  readonly min?: number;
  /** A `seconds` value that must be whole. */
  readonly whole?: boolean;
  /** For `size` and `duration`: what a valid value looks like, ending an invalid value's message. */
  readonly hint?: string;
}

/** A program's options by long name, in the order the usage text lists them. */
export type OptionTable = Readonly<Record<string, OptionDecl>>;

/** `limit-rate` → `limitRate`. */
type Camel<S extends string> = S extends `${infer Head}-${infer Tail}`
  ? `${Head}${Capitalize<Camel<Tail>>}`
  : S;

/** The field an option's value is parsed into. */
type KeyOf<Name, Decl> = Decl extends { key: infer K extends string } ? K
  : Name extends string ? Camel<Name>
  : never;

/** The type of one option's parsed value: absent values are undefined unless it has a default. */
type ValueOf<Decl extends OptionDecl> = Decl["kind"] extends "flag" ? boolean
  : Decl["kind"] extends "strings" ? string[]
  : Decl extends { default: unknown } ? (Decl["kind"] extends "string" | "path" ? string : number)
  : (Decl["kind"] extends "string" | "path" ? string : number) | undefined;

/** The parsed values of a table's options, each typed by its kind, under its key. */
export type OptionValues<T extends OptionTable> = {
  -readonly [Name in keyof T as KeyOf<Name, T[Name]>]: ValueOf<T[Name]>;
};

/** Result of {@link parseOptions}. */
export interface ParsedOptions<T extends OptionTable> {
  /** Every option's value, or its default. */
  values: OptionValues<T>;
  /** The long names of the options given. */
  given: ReadonlySet<keyof T & string>;
  /** Positional arguments, in order. */
  positionals: string[];
}

/** The parseArgs spec of a table. */
export function optionSpec(table: OptionTable): OptionSpec {
  const spec: OptionSpec = {};
  for (const [name, decl] of Object.entries(table)) {
    spec[name] = {
      type: decl.kind === "flag" ? "boolean" : "string",
      ...(decl.kind === "strings" ? { multiple: true } : {}),
      ...(decl.short ? { short: decl.short } : {}),
    };
  }
  return spec;
}

/**
 * Parses `argv` against `table`: options may come before or after positionals, `--` ends them.
 * Throws {@link UsageError} for an unknown option or a value its kind does not allow.
 *
 * @example
 * ```ts
 * const table = {
 *   "limit-rate": { kind: "size", arg: "RATE", min: 1, help: "at most RATE bytes/s" },
 *   quiet: { kind: "flag", short: "q", help: "print nothing but errors" },
 * } as const satisfies OptionTable;
 * const { values } = parseOptions(table, ["-q", "--limit-rate", "8M"]);
 * values.limitRate; // 8388608
 * values.quiet; // true
 * ```
 */
export function parseOptions<T extends OptionTable>(
  table: T,
  argv: string[],
): ParsedOptions<T> {
  const { values: raw, positionals } = parseCommandLine(argv, optionSpec(table));
  const values: Record<string, unknown> = {};
  const given = new Set<keyof T & string>();
  for (const [name, decl] of Object.entries(table)) {
    const value = raw[name];
    if (value !== undefined) given.add(name);
    const key = decl.key ?? name.replace(/-(.)/g, (_, letter: string) => letter.toUpperCase());
    values[key] = decl.kind === "strings"
      ? (value ?? []) as string[]
      : typeof value === "string"
      ? parseValue(name, decl, value)
      : decl.kind === "flag"
      ? (value === true) !== (decl.negated === true)
      : decl.default;
  }
  // The one place values meet their types: each was parsed by its declared kind just above.
  return { values: values as OptionValues<T>, given, positionals };
}

/** One option's text, parsed by its kind. */
function parseValue(name: string, decl: OptionDecl, text: string): string | number {
  const invalid = (expected: string) =>
    new UsageError(`Invalid --${name} ${JSON.stringify(text)}: ${expected}`);
  const min = decl.min ?? 0;
  switch (decl.kind) {
    case "flag":
    case "string":
    case "strings":
      return text;
    case "path":
      if (text === "") throw new UsageError(`--${name} is empty`);
      return text;
    case "port":
      return parsePort(text, min === 0);
    case "size": {
      const bytes = parseSize(text);
      if (bytes === null || bytes < min) throw invalid(decl.hint ?? "use bytes or 10M, 2G");
      return bytes;
    }
    case "duration": {
      const ms = parseDuration(text);
      if (ms === null || ms < min) throw invalid(decl.hint ?? "use seconds or 30m, 24h, 7d");
      return ms;
    }
    case "count": {
      const count = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(count >= min && Number.isSafeInteger(count))) {
        throw invalid(`expected a whole number of at least ${min}`);
      }
      return count;
    }
    case "seconds": {
      if (decl.whole) {
        const seconds = /^\d+$/.test(text) ? Number(text) : NaN;
        if (!(seconds >= min && seconds <= MAX_TIMEOUT_SECONDS)) {
          throw invalid(
            `expected a whole number of at least ${min} and at most ${MAX_TIMEOUT_SECONDS}`,
          );
        }
        return seconds * 1000;
      }
      const seconds = text.trim() === "" ? NaN : Number(text);
      // setTimeout takes at most 2^31-1 ms and fires at once for anything longer.
      if (!(seconds > 0 && seconds <= MAX_TIMEOUT_SECONDS)) {
        throw invalid(`expected seconds, more than 0 and at most ${MAX_TIMEOUT_SECONDS}`);
      }
      return seconds * 1000;
    }
  }
}

/**
 * Refuses an option given to a command that does not take it (when the program has commands),
 * or without the option it needs.
 */
export function checkCommandOptions(
  table: OptionTable,
  given: ReadonlySet<string>,
  command?: string,
): void {
  for (const name of given) {
    const { commands, needs } = table[name];
    if (command !== undefined && commands && !commands.includes(command)) {
      throw new UsageError(`Option --${name} applies to ${commands.join(", ")}, not ${command}`);
    }
    if (needs === undefined || given.has(needs)) continue;
    const owners = ownersOf(table, name);
    if (owners.length === 0) throw new UsageError(`--${name} needs --${needs}`);
    const list = owners.length > 1
      ? `${owners.slice(0, -1).join(", ")} and ${owners.at(-1)}`
      : owners[0];
    throw new UsageError(`--${name} applies to ${list} only`);
  }
}

/** The commands an option applies to as the usage text names them: `put -r`, or `--recursive`. */
function ownersOf(table: OptionTable, name: string): string[] {
  const { commands, needs } = table[name];
  if (needs === undefined) return [...commands ?? []];
  const flag = table[needs]?.short ? `-${table[needs].short}` : `--${needs}`;
  return (commands ?? []).map((command) => `${command} ${flag}`);
}

/** One command, as a program declares it. */
export interface CommandDecl {
  /**
   * Its arguments' names, in order: `[NAME]` is optional, `NAME...` takes one or more. An
   * optional or repeated one comes last.
   */
  readonly args: readonly string[];
  /** What it does, for the usage text. */
  readonly help: string;
  /**
   * Other forms of it, each listed after it in the usage text with its own help, such as
   * `put -r LOCALDIR [REMOTEDIR]`.
   */
  readonly variants?: Readonly<Record<string, string>>;
}

/** A program's commands by word, in the order the usage text lists them. */
export type CommandTable = Readonly<Record<string, CommandDecl>>;

/** How many arguments a command takes, what they are called, and its shape for messages. */
export interface Arity {
  min: number;
  max: number;
  /** Argument names without brackets or dots, in order. */
  names: string[];
  /** The command and its arguments, such as `mput FILE [FILE ...]`. */
  shape: string;
}

/** The {@link Arity} of `word`'s declaration. */
export function arityOf(word: string, decl: CommandDecl): Arity {
  let min = 0;
  let max = 0;
  const names: string[] = [];
  const shape = [word];
  for (const arg of decl.args) {
    const name = arg.replace(/^\[(.*)\]$/, "$1").replace(/\.\.\.$/, "");
    names.push(name);
    if (arg.endsWith("...")) {
      min++;
      max = Infinity;
      shape.push(`${name} [${name} ...]`);
    } else {
      if (!arg.startsWith("[")) min++;
      max++;
      shape.push(arg);
    }
  }
  return { min, max, names, shape: shape.join(" ") };
}

/** Width the usage text is wrapped to. */
const USAGE_WIDTH = 80;

/**
 * Lines of a usage table: each label (`put LOCAL [REMOTE]`, `-f, --force`) indented by two, its
 * help wrapped to start at `column`, or on the next line when the label is too long.
 */
function formatEntries(entries: [string, string][], column: number): string[] {
  const lines: string[] = [];
  const indent = " ".repeat(column);
  for (const [label, help] of entries) {
    const head = `  ${label}`;
    let line = indent;
    if (head.length + 2 <= column) line = head.padEnd(column);
    else lines.push(head);
    let empty = true;
    // A no-break space keeps words together (`put\u00a0--resume`); it is printed as a space.
    for (const word of help.split(/[ \t\n]+/).filter((w) => w !== "")) {
      if (!empty && line.length + 1 + word.length > USAGE_WIDTH) {
        lines.push(line);
        line = indent;
        empty = true;
      }
      line += (empty ? "" : " ") + word.replaceAll("\u00a0", " ");
      empty = false;
    }
    lines.push(line);
  }
  return lines;
}

/** The usage text's list of commands, under `Commands:`. */
export function formatCommands(table: CommandTable, column: number): string {
  const entries = Object.entries(table).flatMap(([word, decl]): [string, string][] => [
    [[word, ...decl.args].join(" "), decl.help],
    ...Object.entries(decl.variants ?? {}),
  ]);
  return ["Commands:", ...formatEntries(entries, column)].join("\n");
}

/**
 * The usage text's lists of options, one per section, each option with its short form, its
 * value's name, the commands that take it and its help.
 */
export function formatOptions(table: OptionTable, column: number): string {
  const sections = new Map<string, [string, string][]>();
  for (const [name, decl] of Object.entries(table)) {
    const label = (decl.short ? `-${decl.short}, ` : "") + `--${name}` +
      (decl.arg ? ` ${decl.arg}` : "");
    const owners = ownersOf(table, name);
    const help = owners.length > 0 ? `${owners.join(", ")}: ${decl.help}` : decl.help;
    const section = decl.section ?? "Options";
    sections.set(section, [...sections.get(section) ?? [], [label, help]]);
  }
  return [...sections].map(([heading, entries]) =>
    [`${heading}:`, ...formatEntries(entries, column)].join("\n")
  ).join("\n\n");
}
