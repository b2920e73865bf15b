/**
 * The client commands that browse and change the remote tree: `list [DIR]`, `list -r`, `rm`,
 * `mv`, `mkdir`, `put -r` and `get -r`. Turns their arguments into requests (lib/tree_client.ts)
 * and formats listings and reports for stdout.
 *
 * @module
 */

import { join } from "node:path";
import { describeFailure, say } from "./cli.ts";
import type { Session } from "./client.ts";
import { LocalFileError, RefusedError, UsageError, UserError } from "./errors.ts";
import { localNameRules, unfitName } from "./windows_names.ts";
import { cannotRead, cannotWrite } from "./local_files.ts";
import { unrelatedBefore, unrelatedMessage } from "./tree_delete_guard.ts";
import {
  displayName,
  displayUndecodableName,
  formatBytes,
  formatDate,
  formatRate,
  formatSeconds,
  safeJson,
} from "./format.ts";
import { ProgressLine, progressWanted } from "./progress.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import type { TreeSummary } from "./tree_transfer_protocol.ts";
import { changeRemote, getTree, offersTree, offersTreeResume, putTree } from "./tree_client.ts";
import { listRemote } from "./remote_listing.ts";
import type { TreeEvent } from "./tree_transfer.ts";
import { NAME } from "./version.ts";
import { RateLimiter } from "./rate_limit.ts";
import { NamePatterns, PatternError } from "./name_patterns.ts";

/** How a listing is printed. */
export interface ListingFormat {
  /** A JSON array of `{name, type, size, mtime}`. */
  json: boolean;
  /** A table with sizes and dates, and a total. */
  long: boolean;
}

/**
 * Formats a listing for stdout: one name per line, folders with a trailing `/`; or `--long`'s
 * table; or `--json`. Names come from the server, so any with control or bidi characters is shown
 * escaped: one harmless line, never a painted terminal or a forged line.
 */
export function formatListing(entries: TreeEntry[], format: ListingFormat): string {
  const writer = new ListingWriter(format);
  return writer.add(entries) + writer.end();
}

/**
 * Width of `--long`'s size column: `1023.9 KiB`, the widest size {@link formatBytes} writes below
 * 1024 PiB, so realistic sizes line up from the first row without knowing the others.
 */
export const LONG_SIZE_WIDTH = 10;

/**
 * {@link formatListing} a piece at a time, for a listing printed as it arrives: {@link add}
 * gives the text of the entries it is handed (names one per line, `--long`'s rows, or `--json`'s
 * array so far), {@link end} what closes it (`--long`'s total). The pieces together are exactly
 * {@link formatListing}'s text, and the writer keeps counters only, never the entries.
 * `--long` right-aligns sizes to {@link LONG_SIZE_WIDTH} columns (as `rsync --list-only` pads to
 * a fixed width rather than measuring the listing first); a size wider than that widens the
 * column from its row on.
 *
 * @example
 * ```ts
 * import { ListingWriter } from "./tree_cli.ts";
 *
 * const writer = new ListingWriter({ json: true, long: false });
 * let text = writer.add([{ name: "a.txt", type: "file", size: 1, mtime: 0 }]);
 * text += writer.end();
 * console.log(JSON.parse(text));
 * ```
 */
export class ListingWriter {
  #format: ListingFormat;
  #count = 0;
  #files = 0;
  #bytes = 0;
  #sizeWidth = LONG_SIZE_WIDTH;

  constructor(format: ListingFormat) {
    this.#format = format;
  }

  /** The text for `entries`, the next ones of the listing. */
  add(entries: TreeEntry[]): string {
    let text = "";
    if (this.#format.long) {
      for (const e of entries) {
        this.#count++;
        if (e.type === "file") {
          this.#files++;
          this.#bytes += e.size;
        }
        // A name that is not valid UTF-8 cannot be looked at: its size and date are unknown.
        const size = e.notUtf8 ? "?" : e.type === "dir" ? "-" : formatBytes(e.size);
        if (size.length > this.#sizeWidth) this.#sizeWidth = size.length;
        const date = e.notUtf8 ? "?".padEnd(16) : formatDate(e.mtime);
        text += `${size.padStart(this.#sizeWidth)}  ${date}  ${shownName(e)}\n`;
      }
      return text;
    }
    if (this.#format.json) {
      for (const e of entries) {
        const shown = e.notUtf8
          ? { name: e.name, type: e.type, size: null, mtime: null, notUtf8: true }
          : { name: e.name, type: e.type, size: e.size, mtime: new Date(e.mtime).toISOString() };
        // As an element of an array indented by 2: each of its lines two spaces further in.
        text += (this.#count++ === 0 ? "[\n" : ",\n") + safeJson(shown, 2).replace(/^/gm, "  ");
      }
      return text;
    }
    for (const e of entries) text += shownName(e) + "\n";
    return text;
  }

  /** The text that ends the listing. */
  end(): string {
    if (this.#format.json) return this.#count === 0 ? "[]\n" : "\n]\n";
    if (!this.#format.long) return "";
    const files = this.#files;
    const folders = this.#count - files;
    const counts = [
      files === 1 ? "1 file" : `${files} files`,
      ...(folders === 0 ? [] : [folders === 1 ? "1 folder" : `${folders} folders`]),
    ];
    return `${counts.join(", ")}, ${formatBytes(this.#bytes)}\n`;
  }
}

/** A listed name as shown: escaped if need be, a folder's with a trailing `/`. */
function shownName(e: TreeEntry): string {
  return e.notUtf8
    ? displayUndecodableName(e.name + (e.type === "dir" ? "/" : ""))
    : displayName(e.name) + (e.type === "dir" ? "/" : "");
}

/**
 * A remote name as typed: trailing slashes go (`rm -r photos/`), and for a folder to list, `.`
 * and `/` mean the root (undefined). Anything else is checked by the server.
 */
export function remoteArg(arg: string, what: string, rootOk = false): string | undefined {
  const trimmed = arg.replace(/\/+$/, "");
  if (trimmed === "" || trimmed === ".") {
    if (rootOk) return undefined;
    throw new UsageError(`${what} ${JSON.stringify(arg)} is the served folder itself`);
  }
  return trimmed;
}

/** What {@link runTreeCommand} needs of the command line. */
export interface TreeCommand extends ListingFormat {
  /** The command word. */
  command: "list" | "rm" | "mv" | "mkdir";
  /** Its arguments. */
  args: string[];
  /** `-r`: list or remove everything under a folder. */
  recursive: boolean;
  /** `-p`: mkdir creates parents too and accepts an existing folder. */
  parents: boolean;
  /** `--overwrite`: mv replaces a file. */
  overwrite: boolean;
}

/**
 * Runs a tree command; a listing goes to `write`. A refusal the user can overcome with a flag says
 * which (the server cannot: it does not know the client's flags).
 */
export async function runTreeCommand(
  session: Session,
  cmd: TreeCommand,
  write: (text: string) => Promise<void>,
): Promise<void> {
  const [first, second] = cmd.args;
  try {
    switch (cmd.command) {
      case "list": {
        const dir = first === undefined ? undefined : remoteArg(first, "DIR", true);
        // Printed as the entries arrive, --long too: a listing of any size starts at once and is
        // never held whole.
        const writer = new ListingWriter(cmd);
        await listRemote(session, {
          dir,
          recursive: cmd.recursive,
          // Plain names: the server need not look up each file's size and time.
          namesOnly: !cmd.long && !cmd.json,
          onEntries: async (entries) => {
            const text = writer.add(entries);
            if (text) await write(text);
          },
        });
        await write(writer.end());
        return;
      }
      case "rm":
        return await changeRemote(session, {
          op: "rm",
          name: remoteArg(first, "NAME")!,
          recursive: cmd.recursive,
        });
      case "mv": {
        const name = remoteArg(first, "OLD")!;
        return await changeRemote(session, {
          op: "mv",
          name,
          // `mv notes.txt docs/` moves it into docs, as put does.
          to: remoteDestination(second, name.split("/").at(-1)!, "NEW")!,
          overwrite: cmd.overwrite,
        });
      }
      case "mkdir":
        return await changeRemote(session, {
          op: "mkdir",
          name: remoteArg(first, "DIR")!,
          parents: cmd.parents,
        });
    }
  } catch (error) {
    throw withFlagHint(error, cmd);
  }
}

function withFlagHint(error: unknown, cmd: TreeCommand): unknown {
  if (!(error instanceof RefusedError)) return error;
  const hint = cmd.command === "rm" && !cmd.recursive && error.code === "not_a_file"
    ? "use -r to remove a folder and everything in it"
    : cmd.command === "mv" && !cmd.overwrite && error.code === "exists"
    ? "use --overwrite to replace it"
    : cmd.command === "mkdir" && !cmd.parents && error.code === "not_found"
    ? "use -p to create parent folders too"
    : undefined;
  return hint ? error.withHint(hint) : error;
}

/** What {@link runTreeTransfer} needs of the command line. */
export interface TreeTransferCommand {
  /** put -r or get -r. */
  command: "put" | "get";
  /** LOCALDIR and REMOTEDIR (put), or REMOTEDIR and LOCALDIR (get). */
  args: string[];
  /** --delete. */
  delete: boolean;
  /** --delete-unrelated: --delete, even into a destination that holds none of the tree's names. */
  deleteUnrelated: boolean;
  /** --dry-run. */
  dryRun: boolean;
  /** --checksum. */
  checksum: boolean;
  /** --links: symlinks that stay inside the tree are copied as links. */
  links: boolean;
  /** --exclude: patterns of names to leave out (lib/name_patterns.ts), in the order given. */
  exclude: string[];
  /** --exclude-from: a file of such patterns, one a line. */
  excludeFrom?: string;
  /** Flush downloads to disk (off with --no-fsync). */
  fsync: boolean;
  /** --resume: continue big files an interrupted run cut, from what it left. */
  resume: boolean;
  /** --limit-rate, bytes per second: one pacing for all the tree's file data. */
  limitRate?: number;
  /** One JSON report per file, and a summary. */
  json: boolean;
  /** Nothing but errors. */
  quiet: boolean;
  /** Show the progress line even when stderr is not a terminal. */
  progress: boolean;
}

/**
 * The patterns of `--exclude` and the lines of `--exclude-from`'s file (blank ones and `#`
 * comments skipped, a line's end `\r` too, nothing else trimmed: a name may end in a space),
 * parsed; a bad pattern is a usage error.
 */
export async function excludePatterns(cmd: TreeTransferCommand): Promise<NamePatterns> {
  const patterns = [...cmd.exclude];
  if (cmd.excludeFrom !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(cmd.excludeFrom);
    } catch (error) {
      throw cannotRead(cmd.excludeFrom, error);
    }
    for (const line of text.split("\n")) {
      const pattern = line.endsWith("\r") ? line.slice(0, -1) : line;
      if (pattern.trim() !== "" && !pattern.startsWith("#")) patterns.push(pattern);
    }
  }
  try {
    return NamePatterns.parse(patterns);
  } catch (error) {
    if (error instanceof PatternError) throw new UsageError(error.message);
    throw error;
  }
}

/** Report lines of a tree held before they are written out mid-transfer. */
const REPORTS_HELD = 1024;

/** The last segment of a local or remote path, trailing slashes aside. */
function lastSegment(path: string): string | undefined {
  const segments = path.split(/[\\/]+/).filter((s) => s !== "" && s !== ".");
  return segments.at(-1);
}

/** Whether a destination means "into this folder": `.`, `..`, or a trailing slash. */
function meansInto(path: string): boolean {
  return path === "." || path === ".." || /[\\/]$/.test(path);
}

/**
 * A remote destination as typed, as scp users expect: one ending in `/` (or `.`) is a folder to
 * put `leaf` into, under that name; any other is the new name itself. Undefined: the served
 * folder. A folder to put into needs a `leaf` (standard input has none).
 *
 * @example
 * ```ts
 * import { remoteDestination } from "./tree_cli.ts";
 *
 * remoteDestination("docs/", "notes.txt", "REMOTE"); // "docs/notes.txt"
 * remoteDestination("docs/old.txt", "notes.txt", "REMOTE"); // "docs/old.txt"
 * ```
 */
export function remoteDestination(
  arg: string,
  leaf: string | undefined,
  what: string,
): string | undefined {
  const folder = remoteArg(arg, what, true);
  if (!meansInto(arg)) return folder;
  const into = (name: string) => folder === undefined ? name : `${folder}/${name}`;
  if (leaf === undefined) {
    throw new UsageError(
      `Cannot tell what to name it in ${arg}: give a name, as in ${into("NAME")}`,
    );
  }
  return into(leaf);
}

/**
 * Where a tree goes, as scp and cp -r users expect: a destination ending in `/` (or `.`) is a
 * folder to put the tree into, under its own name; any other destination is the tree's new name.
 * So `get -r photos .` makes `./photos`, and running a command again lands in the same place.
 * A get's local folder named after the remote one must be a name this system can hold (on
 * Windows, not `aux`: lib/windows_names.ts), as every name in the tree must.
 */
export function treeEnds(cmd: TreeTransferCommand): { local: string; remote?: string } {
  const [first, second] = cmd.args;
  if (cmd.command === "put") {
    const local = first;
    const name = lastSegment(local) ?? lastSegment(Deno.cwd());
    if (second === undefined) return { local, remote: name };
    if (name === undefined && meansInto(second)) {
      throw new UsageError(`Cannot tell the folder's name from ${local}`);
    }
    return { local, remote: remoteDestination(second, name, "REMOTEDIR") };
  }
  const remote = remoteArg(first, "REMOTEDIR", true);
  const name = remote === undefined ? undefined : remote.split("/").at(-1);
  if (second === undefined) {
    if (name === undefined) throw new UsageError("get -r of the whole server needs a LOCALDIR");
    return { local: madeUpFolder(remote!, name, name), remote };
  }
  if (!meansInto(second) || name === undefined) return { local: second, remote };
  return { local: madeUpFolder(remote!, name, join(second, name)), remote };
}

/** `path`, the local folder named `name` after the remote `remote`, if this system can hold it. */
function madeUpFolder(remote: string, name: string, path: string): string {
  const why = unfitName(name, localNameRules());
  if (!why) return path;
  throw new LocalFileError(
    path,
    `Cannot write ${path}: ${why} (get -r ${remote} LOCALDIR saves it under a name of your own)`,
  );
}

/**
 * Runs `put -r` or `get -r`: reports go to `write` (stdout: with `--json` one object per file and
 * a summary, with `--dry-run` one line per file), messages and progress to stderr. Resolves with
 * whether every file made it.
 */
export async function runTreeTransfer(
  connect: () => Promise<Session>,
  cmd: TreeTransferCommand,
  write: (text: string) => Promise<void>,
): Promise<boolean> {
  const { local, remote } = treeEnds(cmd);
  const exclude = await excludePatterns(cmd);
  // Local checks come first, so a doomed transfer never touches the network.
  const info = await Deno.stat(local).catch((error) => {
    if (cmd.command === "put" || !(error instanceof Deno.errors.NotFound)) {
      throw cmd.command === "put" ? cannotRead(local, error) : cannotWrite(local, error);
    }
    return null;
  });
  if (info && !info.isDirectory) {
    throw new UserError(
      cmd.command === "put"
        ? `${local} is not a folder (put without -r sends one file)`
        : `Cannot write into ${local}: not a folder`,
    );
  }
  const session = await connect();
  if (cmd.resume && !cmd.quiet && offersTree(session) && !offersTreeResume(session)) {
    // Not an error: the transfer still completes, only without what the last run left.
    say(
      `${NAME}: note: ${session.target} cannot continue files cut inside a folder ` +
        "(an older server, or its store cannot keep them): those are sent whole",
    );
  }
  const remoteShown = remote === undefined ? "/" : remote;
  // The tree's own name: a long path would leave no room for the numbers.
  const name = cmd.command === "put" ? lastSegment(local) ?? local : remoteShown;
  const guarded = cmd.delete && !cmd.deleteUnrelated;
  /** The one line that says a destination's top was kept, and the ways out. */
  const unrelatedLine = (kept: number) =>
    unrelatedMessage(cmd.command === "put" ? remoteShown : local, name, kept);
  if (guarded && (cmd.command === "put" || info !== null)) {
    // Looked at before anything moves: a refusal at the end (the receiver's own guard, which
    // holds whatever the client) would leave the tree merged into the folder, and the same
    // command run again would then find the tree's names there and take it for a copy.
    const kept = await unrelatedBefore(session, cmd.command, local, remote, exclude);
    if (kept > 0) throw new UserError(`${unrelatedLine(kept)}; nothing transferred`);
  }
  /**
   * The line when the receiver kept the top at the end (the client's look passed): the tree is
   * in the folder now, which the same command run again would take for a copy.
   */
  const keptAfter = (kept: number) =>
    `${unrelatedLine(kept)}; ${name} arrived beside them: take it out before running this again`;
  const shown = !cmd.quiet && !cmd.dryRun && (cmd.progress || progressWanted());
  const progress = new ProgressLine(name, { total: null, enabled: shown });
  /** Files done and planned, for the progress line's label. */
  const files = { done: 0, planned: 0, bytes: 0 };
  // A line nobody sees is not relabelled for each file.
  const retitle = () => {
    if (shown) {
      progress.retitle(`${name}: ${files.done}/${files.planned} files`, files.bytes || null);
    }
  };
  let lines: string[] = [];
  /** The reports being written: flushes may overlap (the sender's two loops), writes may not. */
  let writing = Promise.resolve();
  const flush = () => {
    if (lines.length === 0) return writing;
    const text = lines.join("");
    lines = [];
    writing = writing.then(() => write(text));
    return writing;
  };
  const onEvent = (event: TreeEvent) => {
    if (event.kind === "sent") {
      files.done++;
      retitle();
    }
    // Names may come from the server: shown escaped, never painting the terminal.
    if (event.kind === "ignored" && !cmd.quiet) {
      say(`${NAME}: ${displayName(event.path)}: ${event.message}; not sent`);
    }
    if (event.kind === "failed") say(`${NAME}: ${displayName(event.path)}: ${event.message}`);
    if (cmd.json) {
      lines.push(
        safeJson({
          op: cmd.command,
          name: event.path,
          action: event.kind,
          ...(event.kind === "sent" ? { size: event.size } : {}),
          ...(event.kind === "failed" || event.kind === "ignored" ? { error: event.message } : {}),
          ...(cmd.dryRun ? { dryRun: true } : {}),
        }) + "\n",
      );
    } else if (cmd.dryRun && event.kind !== "ignored" && event.kind !== "failed") {
      const verb = { sent: "send", skipped: "skip", deleted: "delete" }[event.kind];
      lines.push(`${verb} ${displayName(event.path)}\n`);
    }
  };
  const started = performance.now();
  const limiter = cmd.limitRate ? new RateLimiter(cmd.limitRate) : undefined;
  /** Files the connection was cut in and that were kept for --resume. */
  let kept = 0;
  const options = {
    delete: cmd.delete,
    deleteUnrelated: cmd.deleteUnrelated,
    dryRun: cmd.dryRun,
    checksum: cmd.checksum,
    links: cmd.links,
    exclude,
    fsync: cmd.fsync,
    resume: cmd.resume,
    throttle: limiter && ((bytes: number, signal?: AbortSignal) => limiter.take(bytes, signal)),
    maxChunk: limiter?.chunkSize,
    rate: limiter?.rate,
    onKept: () => void kept++,
    // Reports of a big tree go out as they gather, never held for the whole tree; a small
    // tree's, at the end, after the progress line.
    drain: () => lines.length >= REPORTS_HELD ? flush() : Promise.resolve(),
    onEvent,
    onProgress: (bytes: number) => progress.update(bytes),
    onPlan: (planned: number, bytes: number) => {
      files.planned = planned;
      files.bytes = bytes;
      retitle();
    },
  };
  let summary: TreeSummary;
  try {
    summary = cmd.command === "put"
      ? await putTree(session, local, remote, options)
      : await getTree(session, remote, local, options);
  } catch (error) {
    // get -r of a file: the way out, as a get of a folder says get -r.
    if (
      cmd.command === "get" && error instanceof RefusedError && error.code === "not_a_file"
    ) {
      throw error.withHint("get without -r fetches a file");
    }
    // As a single get says of its .part: the next run can continue what arrived.
    if (kept > 0) {
      throw new UserError(
        `${describeFailure(error)}; ${kept === 1 ? "1 partial file" : `${kept} partial files`} ` +
          "kept (run again with --resume to continue)",
      );
    }
    throw error;
  } finally {
    progress.done();
    await flush();
  }
  const seconds = (performance.now() - started) / 1000;
  if (cmd.json) {
    await write(
      safeJson({
        op: cmd.command,
        summary: true,
        local,
        remote: remoteShown,
        ...summary,
        seconds: Math.round(seconds * 1000) / 1000,
        ...(cmd.dryRun ? { dryRun: true } : {}),
      }) + "\n",
    );
  }
  if (!cmd.quiet) {
    const files = summary.files === 1 ? "1 file" : `${summary.files} files`;
    const rest = `${summary.skipped} up to date, ${summary.deleted} deleted, ` +
      `${summary.failed} failed` +
      (summary.resumed ? `; ${formatBytes(summary.resumed)} of it resumed, not sent again` : "");
    const what = cmd.command === "put"
      ? `${local} to ${JSON.stringify(remoteShown)}`
      : `${JSON.stringify(remoteShown)} to ${local}`;
    say(
      cmd.dryRun
        ? `Dry run, nothing changed: ${what} would send ${files} (${formatBytes(summary.bytes)}); ${
          rest.replace("deleted", "would be deleted")
        }`
        : `${cmd.command === "put" ? "Uploaded" : "Downloaded"} ${what}: ${files}, ` +
          `${formatBytes(summary.bytes)} in ${formatSeconds(seconds)} ` +
          `(${formatRate(summary.bytes, seconds)}); ${rest}`,
    );
  }
  // After the summary, so it is the last line: what was kept, and how to do what was meant.
  if (summary.unrelated) {
    say(`${NAME}: ${cmd.dryRun ? unrelatedLine(summary.unrelated) : keptAfter(summary.unrelated)}`);
  }
  return summary.failed === 0 && !summary.unrelated;
}
