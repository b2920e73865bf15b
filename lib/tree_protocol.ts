/**
 * The wire messages of remote tree operations: folder listings, `rm`, `mv` and `mkdir`, and
 * their strict validation. lib/protocol.ts hands these requests here; docs/protocol.md
 * ("Folders") is the prose version.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { type ErrorCode, parseError } from "./error_codes.ts";
import { concatBytes } from "./frames.ts";

/** WELCOME feature of a server that offers the requests in this module. */
export const TREE_FEATURE = "tree";

/**
 * WELCOME feature of a server that continues a tree's cut files with `--resume` (resume offers in
 * WANT, `offset` in FILE). A server without it sends and takes such files whole again.
 */
export const TREE_RESUME_FEATURE = "tree-resume";

/**
 * A listing request. Without `recursive` it is the original request, answered with every file in
 * the tree and no types, for clients that predate folders; with it, a {@link TreeEntry} listing.
 */
export interface ListRequest {
  /** Operation. */
  op: "list";
  /** Folder to list, relative to the root; absent for the root itself. */
  dir?: string;
  /** Present: a typed listing of `dir` alone (false) or of everything under it (true). */
  recursive?: boolean;
  /**
   * With `recursive`: the client takes the listing as it is walked, one JSON entry per line
   * (read with {@link ListingLines}), and the server's OK says `"stream": true`. A server that
   * predates it ignores the field and sends a JSON array, which the client must still take.
   */
  stream?: boolean;
}

/** Removes a file, a symlink (never its target) or, with `recursive`, a folder and its contents. */
export interface RemoveRequest {
  /** Operation. */
  op: "rm";
  /** Name to remove. */
  name: string;
  /** Remove a folder and everything in it. */
  recursive: boolean;
}

/** Renames a file or folder inside the root, atomically. */
export interface MoveRequest {
  /** Operation. */
  op: "mv";
  /** Current name. */
  name: string;
  /** New name; its folder must exist. */
  to: string;
  /** Replace an existing file (never a folder) at `to`. */
  overwrite: boolean;
}

/** Creates a folder. */
export interface MakeDirRequest {
  /** Operation. */
  op: "mkdir";
  /** Folder to create. */
  name: string;
  /** Create missing parent folders too, and accept a folder that exists already. */
  parents: boolean;
}

/** The requests that change the remote tree (all refused by a read-only server). */
export type TreeChangeRequest = RemoveRequest | MoveRequest | MakeDirRequest;

/** A listing entry of a typed (tree) listing. */
export interface TreeEntry {
  /** Name relative to the root, `/`-separated; a folder's has no trailing `/`. */
  name: string;
  /** A regular file (or a symlink to one inside the root) or a folder. */
  type: "file" | "dir";
  /** Size in bytes; 0 for a folder. */
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  /**
   * The name on the server is not valid UTF-8: `name` holds U+FFFD for each bad sequence, so no
   * request can name it, and `size` and `mtime` are 0 (unknown).
   */
  notUtf8?: boolean;
}

function malformed(): ProtocolError {
  return new ProtocolError("Malformed REQUEST message");
}

/** A boolean field that may be absent (false); anything else is malformed. */
function flag(value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw malformed();
  return value;
}

function text(value: unknown): string {
  if (typeof value !== "string") throw malformed();
  return value;
}

/** Validates a list REQUEST (see {@link ListRequest}). */
export function parseListRequest(json: Record<string, unknown>): ListRequest {
  const request: ListRequest = { op: "list" };
  if (json.recursive === undefined) {
    // The original request carries nothing else; a folder without the typed form is an error,
    // not a silent listing of the whole tree.
    if (json.dir !== undefined) throw malformed();
    return request;
  }
  request.recursive = flag(json.recursive);
  if (json.dir !== undefined) request.dir = text(json.dir);
  if (flag(json.stream)) request.stream = true;
  return request;
}

/** Validates an rm, mv or mkdir REQUEST. */
export function parseTreeChange(json: Record<string, unknown>): TreeChangeRequest {
  switch (json.op) {
    case "rm":
      return { op: "rm", name: text(json.name), recursive: flag(json.recursive) };
    case "mv":
      return {
        op: "mv",
        name: text(json.name),
        to: text(json.to),
        overwrite: flag(json.overwrite),
      };
    case "mkdir":
      return { op: "mkdir", name: text(json.name), parents: flag(json.parents) };
    default:
      throw malformed();
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Validates one entry of a typed listing. */
export function parseTreeEntry(entry: unknown): TreeEntry {
  const e = entry as Record<string, unknown> | null;
  if (
    typeof e !== "object" || e === null || typeof e.name !== "string" ||
    (e.type !== "file" && e.type !== "dir") ||
    !(Number.isSafeInteger(e.size) && (e.size as number) >= 0) ||
    typeof e.mtime !== "number" || !Number.isFinite(e.mtime)
  ) {
    throw new ProtocolError("Malformed listing");
  }
  const parsed: TreeEntry = {
    name: e.name,
    type: e.type,
    size: e.size as number,
    mtime: e.mtime,
  };
  if (e.notUtf8 === true) parsed.notUtf8 = true;
  return parsed;
}

/**
 * Validates a typed listing: a JSON array of {@link TreeEntry}. Names are checked by the caller,
 * which knows what it will do with them.
 */
export function parseTreeListing(bytes: Uint8Array): TreeEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new ProtocolError("Malformed listing");
  }
  if (!Array.isArray(value)) throw new ProtocolError("Malformed listing");
  return value.map(parseTreeEntry);
}

/** Longest line of a streamed listing a client takes: far beyond any entry a server sends. */
export const MAX_LISTING_LINE = 1 << 20;

/**
 * Splits a streamed listing's data (`"stream": true`) into its entries as the bytes arrive, in
 * whatever pieces: {@link push} returns the entries the piece completed, {@link end} checks that
 * nothing was left half-said. Holds at most one unfinished line ({@link MAX_LISTING_LINE}).
 *
 * @example
 * ```ts
 * import { ListingLines } from "./tree_protocol.ts";
 *
 * const lines = new ListingLines();
 * const bytes = new TextEncoder().encode('{"name":"a","type":"file","size":1,"mtime":0}\n');
 * console.log(lines.push(bytes.subarray(0, 10)), lines.push(bytes.subarray(10)));
 * lines.end();
 * ```
 */
export class ListingLines {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #decoder = new TextDecoder("utf-8", { fatal: true });

  /** The entries `chunk` completes (the chunk is not kept). */
  push(chunk: Uint8Array): TreeEntry[] {
    const last = chunk.lastIndexOf(10);
    if (last < 0) {
      this.#hold(chunk);
      return [];
    }
    let complete = chunk.subarray(0, last);
    if (this.#pendingBytes > 0) {
      complete = concatBytes([...this.#pending, complete]);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    this.#hold(chunk.subarray(last + 1));
    // One decoding for the piece's whole lines, then each line on its own, strictly.
    let text: string;
    try {
      text = this.#decoder.decode(complete);
    } catch {
      throw new ProtocolError("Malformed listing");
    }
    return text.split("\n").map((line) => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new ProtocolError("Malformed listing");
      }
      return parseTreeEntry(value);
    });
  }

  #hold(rest: Uint8Array): void {
    if (rest.length === 0) return;
    this.#pendingBytes += rest.length;
    if (this.#pendingBytes > MAX_LISTING_LINE) {
      throw new ProtocolError("Malformed listing: a line too long");
    }
    this.#pending.push(rest.slice());
  }

  /** Checks that the data ended with a whole line. */
  end(): void {
    if (this.#pendingBytes > 0) throw new ProtocolError("Malformed listing: it ends mid-line");
  }
}

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
  if (json.resume !== undefined) request.resume = flag(json.resume);
  if (json.rate !== undefined) {
    if (json.op !== "get_tree" || typeof json.rate !== "number" || !(json.rate >= 1)) {
      throw malformed();
    }
    request.rate = json.rate;
  }
  if (json.op === "put_files" || json.op === "get_files") {
    if (request.links || request.resume) throw malformed();
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

/** Encodes a tree transfer REQUEST. */
export function encodeTreeTransfer(request: TreeTransferRequest): Record<string, unknown> {
  return {
    op: request.op,
    ...(request.name === undefined ? {} : { name: request.name }),
    delete: request.delete,
    dry_run: request.dryRun,
    checksum: request.checksum,
    ...(request.links ? { links: true } : {}),
    ...(request.resume ? { resume: true } : {}),
    ...(request.rate === undefined ? {} : { rate: request.rate }),
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

function manifestError(why: string): ProtocolError {
  return new ProtocolError(`Malformed MANIFEST message: ${why}`);
}

/**
 * Validates a MANIFEST payload's shape: types, sizes, times and modes. Paths are checked by the
 * receiver, which knows where they would land.
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
    if (!(Number.isInteger(mode) && (mode as number) >= 0 && (mode as number) <= 0o777)) {
      throw manifestError("bad mode");
    }
    const entry: ManifestEntry = {
      path,
      type,
      size: size as number,
      mtime,
      mode: mode as number,
    };
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
    if (!(Number.isInteger(mode) && (mode as number) >= 0 && (mode as number) <= 0o777)) {
      throw manifestError("bad mode");
    }
    batch.top = { mtime, mode: mode as number };
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
  };
}
