/**
 * The client's listings of a server's folders over a session (lib/tree_client.ts's
 * {@link TreeSession}): {@link listRemote} for `ferry list` and `--delete`'s guard, and
 * {@link listEntries}, the streaming form behind lib/client.ts's `Session.listEntries`, read at
 * most a batch ahead of its caller. A server that streams its listings sends the entries as it
 * walks; an older one sends them whole, and one that predates folders (no `tree` feature) is
 * listed from its flat list of files.
 *
 * @module
 */

import { RefusedError } from "./errors.ts";
import { FrameType } from "./frames.ts";
import { concatBytes, receiveData } from "./transfer.ts";
import {
  LIST_NAMES_FEATURE,
  ListingLines,
  parseTreeListing,
  type TreeEntry,
} from "./tree_protocol.ts";
import { offersTree, type TreeSession } from "./tree_client.ts";

/** Whether the server answers a listing with names alone when asked (see `ListRequest`). */
export function offersListNames(session: TreeSession): boolean {
  return session.welcome?.features.includes(LIST_NAMES_FEATURE) ?? false;
}

/** Options for {@link listRemote}. */
export interface ListRemoteOptions {
  /** Folder to list, relative to the root; the root when absent. */
  dir?: string;
  /** Everything under the folder (default false: its own entries only). */
  recursive?: boolean;
  /**
   * Only names and types are wanted (default false): a server that offers it (see
   * `ListRequest.namesOnly`) is asked for nothing else, which spares it a lookup of each file,
   * and the entries' size and mtime are then 0; another sends them as ever.
   */
  namesOnly?: boolean;
  /**
   * Told about the entries as they arrive, in listing order (lib/tree_listing.ts), a batch at a
   * time; the next batch waits for it. With it, {@link listRemote} keeps nothing and resolves
   * with an empty array. Default: the entries are collected and returned.
   */
  onEntries?: (entries: TreeEntry[]) => Promise<void> | void;
}

/**
 * Lists a remote folder, or with `recursive` everything under it, sorted by name. A server that
 * streams its listings sends the entries as it walks its tree, and `onEntries` hears of them as
 * they come; one that does not sends them whole, and `onEntries` hears of them at once.
 *
 * @example Count what a folder holds, without keeping the entries
 * ```ts
 * import { listRemote } from "./remote_listing.ts";
 * import type { TreeSession } from "./tree_client.ts";
 *
 * declare const session: TreeSession;
 * let files = 0;
 * await listRemote(session, {
 *   dir: "photos",
 *   recursive: true,
 *   namesOnly: true,
 *   onEntries: (entries) => void (files += entries.filter((e) => e.type === "file").length),
 * });
 * ```
 */
export async function listRemote(
  session: TreeSession,
  options: ListRemoteOptions = {},
): Promise<TreeEntry[]> {
  const collected: TreeEntry[] = [];
  const take = options.onEntries ?? ((entries: TreeEntry[]) => void collected.push(...entries));
  if (!offersTree(session)) {
    await take(await fromFlatListing(session, options));
    return collected;
  }
  const recursive = options.recursive ?? false;
  // Asked of a server that offers it, which must then answer so (sizes from it are malformed).
  const namesOnly = (options.namesOnly ?? false) && offersListNames(session);
  return await session.exchange(async (io) => {
    await io.out.writeControl(FrameType.REQUEST, {
      op: "list",
      recursive,
      ...(options.dir === undefined ? {} : { dir: options.dir }),
      stream: true,
      ...(namesOnly ? { names_only: true } : {}),
    });
    const ok = await io.expectOk();
    if (ok.stream) {
      // Each piece's entries are handed on before the next piece is read.
      const lines = new ListingLines({ namesOnly });
      await receiveData(io.frames, {
        async write(chunk) {
          const entries = lines.push(chunk);
          if (entries.length > 0) await take(entries);
        },
      }, { pool: io.pool, sizeHint: null });
      lines.end();
      return collected;
    }
    // A server that predates streamed listings: a JSON array, whole.
    const chunks: Uint8Array[] = [];
    await receiveData(io.frames, {
      write(chunk) {
        chunks.push(chunk.slice());
        return Promise.resolve();
      },
    }, { pool: io.pool, sizeHint: ok.size ?? null });
    await take(parseTreeListing(concatBytes(chunks), namesOnly));
    return collected;
  });
}

/** Options for {@link Session.listEntries}. */
export interface ListEntriesOptions {
  /** Folder to list, relative to the root (default: the root). */
  dir?: string;
  /** Everything under the folder, not only its own entries (default true, as `list()`). */
  recursive?: boolean;
  /** Give the folders too, as entries of type `"dir"` (default false: files only, as `list()`). */
  folders?: boolean;
  /**
   * Only names and types are wanted (default false): the server is asked for nothing else, which
   * spares it a lookup of each file (most of a large folder's listing), and each entry's `size`
   * and `mtime` are then 0. The names and types are those of the full listing. A server that
   * predates names-only listings (its `welcome.features` lack `list-names`) sends sizes and times
   * as ever.
   */
  namesOnly?: boolean;
}

/**
 * The entries of a listing one at a time, as they arrive (see {@link Session.listEntries}): the
 * listing is read a batch ahead of the caller at most, so however long it is, it is never held.
 * Breaking off early reads the rest and drops it, so the session stays usable.
 */
export async function* listEntries(
  session: TreeSession,
  options: ListEntriesOptions = {},
): AsyncGenerator<TreeEntry, void, undefined> {
  const folders = options.folders ?? false;
  const batches = pulled<TreeEntry[]>((take) =>
    listRemote(session, {
      dir: options.dir,
      recursive: options.recursive ?? true,
      namesOnly: options.namesOnly ?? false,
      onEntries: take,
    })
  );
  for await (const batch of batches) {
    for (const entry of batch) if (folders || entry.type === "file") yield entry;
  }
}

const END = Symbol("end");

/** A promise whose rejection is handled, for one that may be rejected before it is awaited. */
function handled<T>(): PromiseWithResolvers<T> {
  const resolvers = Promise.withResolvers<T>();
  resolvers.promise.catch(() => {});
  return resolvers;
}

/**
 * Turns `run`, which hands its batches to `take` and waits for each to be taken, into batches
 * pulled one at a time: `run` waits while the caller has not asked for the next. Once the caller
 * stops early, `take` takes everything at once, so `run` ends, and its end is awaited.
 */
async function* pulled<T>(
  run: (take: (batch: T) => Promise<void>) => Promise<unknown>,
): AsyncGenerator<T, void, undefined> {
  let stopped = false;
  let ready = handled<T | typeof END>();
  let taken = Promise.withResolvers<void>();
  const work = run((batch) => {
    if (stopped) return Promise.resolve();
    const wait = taken.promise;
    ready.resolve(batch);
    return wait;
  }).then(() => ready.resolve(END), (error) => ready.reject(error));
  let release = () => {};
  try {
    while (true) {
      const next = await ready.promise;
      if (next === END) return;
      release = taken.resolve;
      ready = handled();
      taken = Promise.withResolvers();
      yield next;
      release();
    }
  } finally {
    stopped = true;
    release();
    await work;
  }
}

/**
 * An older server lists every file in the tree; the folders are the names' prefixes (so an empty
 * folder cannot show). A folder with nothing under it reads as missing.
 */
async function fromFlatListing(session: TreeSession, options: ListRemoteOptions) {
  const files = await session.list();
  const prefix = options.dir === undefined ? "" : options.dir + "/";
  const entries = new Map<string, TreeEntry>();
  for (const file of files) {
    if (!file.name.startsWith(prefix)) continue;
    const segments = file.name.slice(prefix.length).split("/");
    const depth = options.recursive ? segments.length : 1;
    for (let i = 1; i <= depth; i++) {
      const name = prefix + segments.slice(0, i).join("/");
      if (i === segments.length) {
        const entry: TreeEntry = { name, type: "file", size: file.size, mtime: file.mtime };
        if (file.notUtf8) entry.notUtf8 = true;
        entries.set(name, entry);
      } else if (!entries.has(name)) {
        entries.set(name, { name, type: "dir", size: 0, mtime: 0 });
      }
    }
  }
  if (prefix !== "" && entries.size === 0) {
    throw new RefusedError("not_found", `No such folder: ${JSON.stringify(options.dir)}`);
  }
  // In the server's order, which is sorted already.
  return [...entries.values()];
}
