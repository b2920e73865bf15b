/**
 * The wire messages of tree transfers: `put_tree` and `get_tree` (put -r, get -r) and `put_files`
 * and `get_files` (mput, mget) requests, the manifest batches, WANT (with resume offers), each
 * FILE's header, RESULT and the summary, and their strict validation. docs/protocol.md ("Folders")
 * is the prose version; the other folder requests are in lib/tree_protocol.ts.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { type ErrorCode, parseError } from "./error_codes.ts";
import { flag, malformed, text } from "./tree_protocol.ts";
import { NamePatterns, PatternError } from "./name_patterns.ts";

/**
 * WELCOME feature of a server that continues a tree's cut files with `--resume` (resume offers in
 * WANT, `offset` in FILE). A server without it sends and takes such files whole again.
 */
export const TREE_RESUME_FEATURE = "tree-resume";

/**
 * WELCOME feature of a server that takes `exclude` in put_tree and get_tree: it leaves those names
 * out of what it sends and spares them from `--delete`. One without it would ignore the field, so
 * a client refuses to send patterns to it.
 */
export const TREE_EXCLUDE_FEATURE = "tree-exclude";

/**
 * Uploads (`put_tree`) or downloads (`get_tree`) a whole folder over one connection; or, for
 * mput and mget, uploads (`put_files`) or downloads (`get_files`) a list of files over the same
 * pipelined path, each file named on its own as a single put or get names it.
 */
export interface TreeTransferRequest {
  /** Operation: the client sends (`put_*`) or receives (`get_*`). */
  op: "put_tree" | "get_tree" | "put_files" | "get_files";
  /** The remote folder, relative to the root; absent for the root itself (trees only). */
  name?: string;
  /** Remove what the receiver has and the sender does not (trees only). */
  delete: boolean;
  /**
   * put_tree with `delete` (`"delete_unrelated"` on the wire): true makes a folder that was there
   * already a copy even if it holds none of the tree's top-level names (`--delete-unrelated`);
   * false keeps such a folder's top, as {@link TreeSummary.unrelated} counts. A client that
   * knows of it always sends it with `delete`; its absence (an older client) makes a server end
   * such a transfer with an ERROR rather than an OK that client would take for a success.
   */
  deleteUnrelated?: boolean;
  /** Decide and report, but change nothing and send no file (trees only). */
  dryRun: boolean;
  /** Compare files by content (the sender's manifest carries checksums), not size and mtime. */
  checksum: boolean;
  /** Trees: carry symlinks whose target stays inside the tree (`--links`), as links. */
  links?: boolean;
  /**
   * Trees (`--resume`): the receiver offers, for each file it wants, what an interrupted transfer
   * kept of it, and the sender continues after those bytes when they match its file.
   */
  resume?: boolean;
  /**
   * get_tree: the client's `--limit-rate`, bytes per second; the server paces the files' data to
   * it (never below its own least rate), as for a get.
   */
  rate?: number;
  /**
   * The client takes part in the receiver's work notices (`"phase_work"` on the wire; sent only
   * to a server with the feature `phase-work`, lib/tree_work.ts): whichever end receives tells of
   * its flushes and removals, and the other takes such notices.
   */
  phaseWork?: boolean;
  /**
   * Trees (`--exclude`): names the sender leaves out (its walk never goes into such a folder) and
   * the receiver neither takes nor deletes; only for a server that offers
   * {@link TREE_EXCLUDE_FEATURE}. Parsed and bounded ({@link NamePatterns}).
   */
  exclude?: NamePatterns;
  /** put_files: replace existing files, as put --overwrite does. */
  overwrite?: boolean;
  /** get_files: the names to send, in order (at most {@link MAX_BATCH_ENTRIES}). */
  names?: string[];
}

/** Whether a transfer is one of files named one by one (mput, mget), not a folder. */
export function isFilesTransfer(request: TreeTransferRequest): boolean {
  return request.op === "put_files" || request.op === "get_files";
}

/** Validates a put_tree, get_tree, put_files or get_files REQUEST. */
export function parseTreeTransfer(json: Record<string, unknown>): TreeTransferRequest {
  if (
    json.op !== "put_tree" && json.op !== "get_tree" && json.op !== "put_files" &&
    json.op !== "get_files"
  ) throw malformed();
  const request: TreeTransferRequest = {
    op: json.op,
    delete: flag(json.delete),
    dryRun: flag(json.dry_run),
    checksum: flag(json.checksum),
  };
  if (json.links !== undefined) request.links = flag(json.links);
  if (json.delete_unrelated !== undefined) request.deleteUnrelated = flag(json.delete_unrelated);
  if (json.resume !== undefined) request.resume = flag(json.resume);
  if (json.phase_work !== undefined) request.phaseWork = flag(json.phase_work);
  if (json.rate !== undefined) {
    if (json.op !== "get_tree" || typeof json.rate !== "number" || !(json.rate >= 1)) {
      throw malformed();
    }
    request.rate = json.rate;
  }
  if (json.exclude !== undefined) request.exclude = patternsOf(json.exclude);
  if (json.op === "put_files" || json.op === "get_files") {
    if (request.exclude) throw malformed();
    if (request.links || request.resume || request.deleteUnrelated) throw malformed();
    if (json.name !== undefined || request.delete || request.dryRun) throw malformed();
    if (json.op === "put_files") request.overwrite = flag(json.overwrite);
    if (json.op === "get_files") {
      const names = json.names;
      if (
        !Array.isArray(names) || names.length === 0 || names.length > MAX_BATCH_ENTRIES ||
        !names.every((n) => typeof n === "string")
      ) throw malformed();
      request.names = names as string[];
    }
    return request;
  }
  if (json.name !== undefined) request.name = text(json.name);
  return request;
}

/** A request's `exclude`: a list of strings within {@link NamePatterns}' bounds. */
function patternsOf(value: unknown): NamePatterns {
  if (!Array.isArray(value) || !value.every((p) => typeof p === "string")) throw malformed();
  try {
    return NamePatterns.parse(value);
  } catch (error) {
    if (error instanceof PatternError) {
      throw new ProtocolError(`Malformed REQUEST message: ${error.message}`);
    }
    throw error;
  }
}

/** Encodes a tree transfer REQUEST. */
export function encodeTreeTransfer(request: TreeTransferRequest): Record<string, unknown> {
  return {
    op: request.op,
    ...(request.name === undefined ? {} : { name: request.name }),
    delete: request.delete,
    ...(request.deleteUnrelated === undefined ? {} : { delete_unrelated: request.deleteUnrelated }),
    dry_run: request.dryRun,
    checksum: request.checksum,
    ...(request.links ? { links: true } : {}),
    ...(request.resume ? { resume: true } : {}),
    ...(request.phaseWork ? { phase_work: true } : {}),
    ...(request.rate === undefined ? {} : { rate: request.rate }),
    ...(request.exclude?.empty === false ? { exclude: request.exclude.sources } : {}),
    ...(request.overwrite === undefined ? {} : { overwrite: request.overwrite }),
    ...(request.names === undefined ? {} : { names: request.names }),
  };
}

/** One entry of a manifest: a file or folder the sender has. */
export interface ManifestEntry {
  /** Path relative to the transferred folder, `/`-separated. */
  path: string;
  /**
   * A regular file, a folder, or (only when the request asked for `links`) a symlink whose
   * target stays inside the tree. Other kinds are never sent.
   */
  type: "file" | "dir" | "link";
  /** Size in bytes; 0 for a folder. */
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  /** Permission bits, at most 0o777. */
  mode: number;
  /** With `checksum`: the file's checksum, `xxh128:` and 32 hex digits. */
  checksum?: string;
  /** A link's target, as the link holds it (checked by the receiver: lib/tree_links.ts). */
  target?: string;
}

/** The transferred folder itself, which no entry names: its mtime and permission bits. */
export interface ManifestTop {
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  /** Permission bits, at most 0o777. */
  mode: number;
}

/** A name the sender has and does not send (a symlink, a name ferry does not carry), and why. */
export interface ManifestNote {
  /** The name as the sender reads it; for display only, never a path to act on. */
  path: string;
  /** Why it is not sent. */
  message: string;
}

/** A MANIFEST frame: the next batch of entries, in walk order (lib/tree_walk.ts). */
export interface ManifestBatch {
  /** The entries; their indexes continue from the previous batch's. */
  entries: ManifestEntry[];
  /** No batch follows. */
  last: boolean;
  /** The first batch only: the transferred folder's own mtime and mode (absent from old senders). */
  top?: ManifestTop;
  /** Names left out since the previous batch, so the receiving user hears of them too. */
  notes?: ManifestNote[];
}

/** Most entries in one MANIFEST frame. */
export const MAX_BATCH_ENTRIES = 1024;

const CHECKSUM_TEXT = /^xxh128:[0-9a-f]{32}$/;

/**
 * The bits of a manifest's mode a receiver gives: all but write for others. A peer must not open
 * the receiver's files and folders to every local user, who could then change a file others use
 * or plant a symlink in a served folder (and a sender's sticky `/tmp`-like folder, whose sticky
 * bit is never carried, would arrive writable by all).
 */
export const RECEIVED_MODE_BITS = 0o775;

function manifestError(why: string): ProtocolError {
  return new ProtocolError(`Malformed MANIFEST message: ${why}`);
}

/** A manifest's mode (an entry's or the top's), checked, cut to {@link RECEIVED_MODE_BITS}. */
function givenMode(mode: unknown): number {
  if (!(Number.isInteger(mode) && (mode as number) >= 0 && (mode as number) <= 0o777)) {
    throw manifestError("bad mode");
  }
  return (mode as number) & RECEIVED_MODE_BITS;
}

/**
 * Validates a MANIFEST payload's shape: types, sizes, times and modes (each mode then cut to
 * {@link RECEIVED_MODE_BITS}). Paths are checked by the receiver, which knows where they would
 * land.
 */
export function parseManifest(
  json: Record<string, unknown>,
  options: { links?: boolean } = {},
): ManifestBatch {
  if (!Array.isArray(json.entries) || typeof json.last !== "boolean") {
    throw manifestError("no entries");
  }
  if (json.entries.length > MAX_BATCH_ENTRIES) throw manifestError("too many entries");
  const entries = json.entries.map((raw): ManifestEntry => {
    if (typeof raw !== "object" || raw === null) throw manifestError("an entry is not an object");
    const { path, type, size, mtime, mode, checksum, target } = raw as Record<string, unknown>;
    if (typeof path !== "string") throw manifestError("a path is not a string");
    if (type !== "file" && type !== "dir" && !(type === "link" && options.links)) {
      throw manifestError(
        type === "link" ? "a symlink, and links were not asked for" : "unknown entry type",
      );
    }
    if (!(Number.isSafeInteger(size) && (size as number) >= 0)) throw manifestError("bad size");
    if (type !== "file" && size !== 0) throw manifestError("a folder or link with a size");
    if ((type === "link") !== (typeof target === "string")) throw manifestError("bad link target");
    if (typeof mtime !== "number" || !Number.isFinite(mtime)) throw manifestError("bad mtime");
    const entry: ManifestEntry = { path, type, size: size as number, mtime, mode: givenMode(mode) };
    if (type === "link") entry.target = target as string;
    if (checksum !== undefined) {
      if (typeof checksum !== "string" || !CHECKSUM_TEXT.test(checksum)) {
        throw manifestError("bad checksum");
      }
      entry.checksum = checksum;
    }
    return entry;
  });
  const batch: ManifestBatch = { entries, last: json.last };
  if (json.top !== undefined) {
    const top = json.top as Record<string, unknown> | null;
    if (typeof top !== "object" || top === null) throw manifestError("bad top");
    const { mtime, mode } = top;
    if (typeof mtime !== "number" || !Number.isFinite(mtime)) throw manifestError("bad mtime");
    batch.top = { mtime, mode: givenMode(mode) };
  }
  if (json.notes !== undefined) {
    if (!Array.isArray(json.notes) || json.notes.length > MAX_BATCH_ENTRIES) {
      throw manifestError("bad notes");
    }
    batch.notes = json.notes.map((raw): ManifestNote => {
      const { path, message } = (raw ?? {}) as Record<string, unknown>;
      if (typeof path !== "string" || typeof message !== "string") {
        throw manifestError("bad notes");
      }
      // Shown to the user only: one clipped line of printable text, as an ERROR's message.
      return { path: path.slice(0, 4096), message: parseError({ message }).message };
    });
  }
  return batch;
}

/** Validates a WANT payload: indexes, strictly increasing, within `[from, to)`. */
export function parseWant(json: Record<string, unknown>, from: number, to: number): number[] {
  const want = json.want;
  if (!Array.isArray(want)) throw new ProtocolError("Malformed WANT message");
  let previous = from - 1;
  for (const index of want) {
    if (!Number.isSafeInteger(index) || index <= previous || index >= to) {
      throw new ProtocolError("Malformed WANT message");
    }
    previous = index;
  }
  return want as number[];
}

/**
 * A receiver's offer to continue a file it wants from what an interrupted transfer kept: the
 * `offset` bytes it has, and their checksum (`xxh128:` and 32 hex digits).
 */
export interface ResumeOffer {
  /** Bytes kept, more than 0. */
  offset: number;
  /** Checksum of those bytes. */
  prefix: string;
}

/**
 * Validates a WANT's `resume` offers (absent: none): `[{index, offset, prefix}, ...]`, each for a
 * wanted file, in increasing order, for fewer bytes than `sizeOf(index)` announced.
 */
export function parseResumeOffers(
  json: Record<string, unknown>,
  want: number[],
  sizeOf: (index: number) => number,
): Map<number, ResumeOffer> {
  const offers = new Map<number, ResumeOffer>();
  if (json.resume === undefined) return offers;
  const bad = () => new ProtocolError("Malformed WANT message: bad resume offer");
  if (!Array.isArray(json.resume) || json.resume.length > want.length) throw bad();
  const wanted = new Set(want);
  let previous = -1;
  for (const raw of json.resume) {
    const { index, offset, prefix } = (raw ?? {}) as Record<string, unknown>;
    if (
      !Number.isSafeInteger(index) || !wanted.has(index as number) ||
      (index as number) <= previous || !Number.isSafeInteger(offset) ||
      (offset as number) <= 0 || (offset as number) >= sizeOf(index as number) ||
      typeof prefix !== "string" || !CHECKSUM_TEXT.test(prefix)
    ) throw bad();
    previous = index as number;
    offers.set(index as number, { offset: offset as number, prefix });
  }
  return offers;
}

/** A FILE payload: `offset` is where its data starts (an accepted resume offer), else 0. */
export interface FileHeader {
  /** The file's index in the manifest. */
  index: number;
  /** Its size when opened. */
  size: number;
  /** Bytes the receiver kept and the sender does not send again. */
  offset: number;
}

/** Validates a FILE payload. */
export function parseFileHeader(json: Record<string, unknown>): FileHeader {
  const { index, size } = json;
  const offset = json.offset ?? 0;
  if (
    !Number.isSafeInteger(index) || (index as number) < 0 || !Number.isSafeInteger(size) ||
    (size as number) < 0 || !Number.isSafeInteger(offset) || (offset as number) < 0 ||
    (offset as number) > (size as number)
  ) {
    throw new ProtocolError("Malformed FILE message");
  }
  return { index: index as number, size: size as number, offset: offset as number };
}

/** What the receiver says about one file it committed or failed, or a name it deleted. */
export type TreeResult =
  | { index: number; ok: true }
  | { index: number; ok: false; code: ErrorCode; message: string }
  | { deleted: string };

/** Validates a RESULT payload (messages clipped and stripped of control characters). */
export function parseResult(json: Record<string, unknown>): TreeResult {
  if (typeof json.deleted === "string") return { deleted: json.deleted };
  if (!Number.isSafeInteger(json.index) || typeof json.ok !== "boolean") {
    throw new ProtocolError("Malformed RESULT message");
  }
  const index = json.index as number;
  if (json.ok) return { index, ok: true };
  // Cleaned as an ERROR's is: a known code (else `io`), one line, printable only, clipped.
  return { index, ok: false, ...parseError({ code: json.code, message: json.message }) };
}

/** What a tree transfer did, as the receiver counts it (its final OK). */
export interface TreeSummary {
  /** Files sent and committed. */
  files: number;
  /** Files skipped as already up to date. */
  skipped: number;
  /** Names deleted (or, in a dry run, that would be). */
  deleted: number;
  /** Files that failed. */
  failed: number;
  /** Bytes of the files committed. */
  bytes: number;
  /**
   * Of those, bytes an interrupted transfer had left and that were not sent again (`--resume`);
   * absent from receivers that predate it.
   */
  resumed?: number;
  /**
   * `--delete` into a folder that was there already and held none of the sender's top-level
   * names: how many names at its top it kept (not deleted, not counted in {@link deleted}), as it
   * was not taken for a copy of the tree. Absent when none, and from receivers that predate it.
   */
  unrelated?: number;
}

/** Validates the receiver's final OK. */
export function parseSummary(json: Record<string, unknown>): TreeSummary {
  const count = (value: unknown) => {
    if (!Number.isSafeInteger(value) || (value as number) < 0) {
      throw new ProtocolError("Malformed tree summary");
    }
    return value as number;
  };
  return {
    files: count(json.files),
    skipped: count(json.skipped),
    deleted: count(json.deleted),
    failed: count(json.failed),
    bytes: count(json.bytes),
    ...(json.resumed === undefined ? {} : { resumed: count(json.resumed) }),
    ...(json.unrelated === undefined ? {} : { unrelated: count(json.unrelated) }),
  };
}
