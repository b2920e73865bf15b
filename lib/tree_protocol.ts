/**
 * The wire messages of remote tree operations: folder listings, `rm`, `mv` and `mkdir`, and
 * their strict validation. lib/protocol.ts hands these requests here; docs/protocol.md
 * ("Folders") is the prose version. The tree transfers' messages are in
 * lib/tree_transfer_protocol.ts.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { concatBytes } from "./frames.ts";

/** WELCOME feature of a server that offers the requests in this module. */
export const TREE_FEATURE = "tree";

/**
 * WELCOME feature of a server that answers a typed listing with names and types alone when the
 * request says `"names_only": true` ({@link ListRequest.namesOnly}).
 */
export const LIST_NAMES_FEATURE = "list-names";

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
  /**
   * With `recursive` (`"names_only"` on the wire): each entry is `{name, type}` alone (and
   * `notUtf8`), without size or mtime, which spares the server a lookup of each file. Only for a
   * server that names {@link LIST_NAMES_FEATURE} in WELCOME: an older one ignores the field and
   * sends sizes, which a client that asked must refuse from a server that offers the feature.
   */
  namesOnly?: boolean;
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

/** A REQUEST message that breaks its rules (shared with lib/tree_transfer_protocol.ts). */
export function malformed(): ProtocolError {
  return new ProtocolError("Malformed REQUEST message");
}

/** A boolean field that may be absent (false); anything else is malformed. */
export function flag(value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw malformed();
  return value;
}

/** A string field; anything else is malformed. */
export function text(value: unknown): string {
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
  if (flag(json.names_only)) request.namesOnly = true;
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

/** The fields of a names-only listing's entry ({@link ListRequest.namesOnly}): no others. */
const NAMES_ONLY_FIELDS = new Set(["name", "type", "notUtf8"]);

/**
 * Validates one entry of a typed listing. With `namesOnly` (the listing was asked for names
 * alone, from a server that offers it), the entry must be `{name, type}` and perhaps `notUtf8`,
 * nothing else: a size or a time there is a malformed listing. Its size and mtime are then 0.
 */
export function parseTreeEntry(entry: unknown, namesOnly = false): TreeEntry {
  const e = entry as Record<string, unknown> | null;
  if (
    typeof e !== "object" || e === null || typeof e.name !== "string" ||
    (e.type !== "file" && e.type !== "dir") ||
    (namesOnly
      ? Object.keys(e).some((key) => !NAMES_ONLY_FIELDS.has(key)) ||
        (e.notUtf8 !== undefined && e.notUtf8 !== true)
      : !(Number.isSafeInteger(e.size) && (e.size as number) >= 0) ||
        typeof e.mtime !== "number" || !Number.isFinite(e.mtime))
  ) {
    throw new ProtocolError("Malformed listing");
  }
  const parsed: TreeEntry = namesOnly
    ? { name: e.name, type: e.type, size: 0, mtime: 0 }
    : { name: e.name, type: e.type, size: e.size as number, mtime: e.mtime as number };
  if (e.notUtf8 === true) parsed.notUtf8 = true;
  return parsed;
}

/**
 * Validates a typed listing: a JSON array of {@link TreeEntry} (with `namesOnly`, as
 * {@link parseTreeEntry} takes them). Names are checked by the caller, which knows what it will
 * do with them.
 */
export function parseTreeListing(bytes: Uint8Array, namesOnly = false): TreeEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new ProtocolError("Malformed listing");
  }
  if (!Array.isArray(value)) throw new ProtocolError("Malformed listing");
  return value.map((entry) => parseTreeEntry(entry, namesOnly));
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
  #namesOnly: boolean;

  /** With `namesOnly`, each line is a names-only entry (see {@link parseTreeEntry}). */
  constructor(options: { namesOnly?: boolean } = {}) {
    this.#namesOnly = options.namesOnly ?? false;
  }

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
      return parseTreeEntry(value, this.#namesOnly);
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
