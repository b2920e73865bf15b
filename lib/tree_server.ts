/**
 * The server's side of tree transfers, on any store: a `put_tree` received into the store and a
 * `get_tree` sent from it, through the store's {@link Store.treeSource} and {@link Store.treeSink}
 * (the folder store's are in lib/folder_tree.ts), and the files transfers of mput and mget. Every
 * name goes through the store ({@link checkName}, {@link Store.beginUpload}), so a tree can
 * neither leave the root nor reach the private folders, and each file is staged, verified and put
 * in place as a single put is.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import { unfitName } from "./windows_names.ts";
import { StoreError } from "./errors.ts";
import { checkName, quote } from "./remote_name.ts";
import type { Store } from "./store.ts";
import {
  isFilesTransfer,
  type TreeSummary,
  type TreeTransferRequest,
} from "./tree_transfer_protocol.ts";
import { receiveTree } from "./tree_receive.ts";
import { DEFAULT_MAX_ENTRIES } from "./tree_receive_check.ts";
import { sendTree } from "./tree_send.ts";
import { RateLimiter } from "./rate_limit.ts";
import {
  sourceFile,
  type TreeFileSink,
  type TreeIo,
  type TreeSink,
  type TreeSource,
} from "./tree_transfer.ts";
import { ListWalk } from "./list_walk.ts";
import type { WalkEntry } from "./tree_walk.ts";

/** What the server's tree handlers need. */
export interface TreeServeContext {
  /** The store served. */
  store: Store;
  /** Buffer pool for the data phases. */
  pool: BufferPool;
  /** Refuse uploads. */
  readOnly: boolean;
  /** Largest upload, applied to each file and to the whole tree. */
  maxSize?: number;
  /** Most entries a tree may have (default {@link DEFAULT_MAX_ENTRIES}). */
  maxEntries?: number;
  /** Least rate a paced get_tree is sent at, whatever rate the client asks for (default 1). */
  minRate?: number;
}

/**
 * Checks a tree request before it is accepted: a put needs a writable server and a name that is
 * a folder or free; a get needs a folder. Throws {@link StoreError} with the reason.
 */
export async function checkTreeRequest(
  request: TreeTransferRequest,
  ctx: TreeServeContext,
): Promise<void> {
  const base = request.name;
  if (base !== undefined) checkName(base);
  if (request.op === "put_files" && ctx.readOnly) {
    throw new StoreError("read_only", "Server is read-only: uploads are refused");
  }
  // Each file is checked on its own, and refused on its own.
  if (isFilesTransfer(request)) return;
  if (request.op === "put_tree") {
    if (ctx.readOnly && !request.dryRun) {
      throw new StoreError("read_only", "Server is read-only: uploads are refused");
    }
    // A folder or a free name: a file in the way is refused.
    await ctx.store.isFolder(base);
    return;
  }
  if (!await ctx.store.isFolder(base)) {
    throw new StoreError("not_found", `No such folder: ${quote(base ?? "")}`);
  }
}

/** Runs an accepted tree request (its OK already sent) and returns the receiver's summary. */
export async function serveTreeTransfer(
  request: TreeTransferRequest,
  io: Omit<TreeIo, "pool"> & { entry?: { reason?: string } },
  ctx: TreeServeContext,
): Promise<TreeSummary> {
  const base = request.name;
  const tree: TreeIo = {
    frames: io.frames,
    out: io.out,
    pool: ctx.pool,
    local: io.local,
    noticeMs: io.noticeMs,
    peerWork: io.peerWork,
    phaseWork: request.phaseWork,
  };
  if (request.op === "get_files") {
    return await sendTree(tree, await filesSource(ctx.store, request.names ?? []), {
      checksum: request.checksum,
    });
  }
  if (request.op === "put_files") {
    return await receiveTree(tree, filesSink(ctx.store, request.overwrite ?? false), {
      files: true,
      maxFileSize: ctx.maxSize,
    });
  }
  if (request.op === "get_tree") {
    // Paced as a get is: bytes leave as the client takes them, never slower than the least rate.
    const pacer = request.rate === undefined
      ? undefined
      : new RateLimiter(Math.max(request.rate, ctx.minRate ?? 1));
    const exclude = request.exclude;
    const source = await ctx.store.treeSource(base, {
      prune: exclude && ((path) => exclude.excludes(path, true)),
    });
    return await sendTree(tree, source, {
      dryRun: request.dryRun,
      checksum: request.checksum,
      links: request.links,
      exclude: request.exclude,
      throttle: pacer && ((bytes, signal) => pacer.take(bytes, signal)),
      maxChunk: pacer?.chunkSize,
    });
  }
  return await receiveTree(tree, ctx.store.treeSink(base), {
    delete: request.delete,
    deleteUnrelated: request.deleteUnrelated,
    // A client that does not send the field cannot read the count: it hears an ERROR instead.
    unrelatedError: request.deleteUnrelated === undefined
      ? (kept) => unrelatedRefusal(base, kept)
      : undefined,
    dryRun: request.dryRun,
    maxEntries: ctx.maxEntries ?? DEFAULT_MAX_ENTRIES,
    maxFileSize: ctx.maxSize,
    maxTotalSize: ctx.maxSize,
    links: request.links,
    resume: request.resume,
    exclude: request.exclude,
    // As for a single put: what the server cut itself (idle, shutting down) is not kept.
    keepInterrupted: () => !io.entry?.reason,
  });
}

/**
 * What an older client hears of a put_tree `--delete` whose folder kept its top
 * (`TreeSummary.unrelated`), once the rest of the tree is in: what a newer one says itself.
 */
function unrelatedRefusal(base: string | undefined, kept: number): StoreError {
  const folder = base === undefined ? "the served folder" : quote(base);
  const names = kept === 1 ? "the 1 name" : `the ${kept} names`;
  const into = base === undefined ? "" : ` (put the tree into ${quote(base + "/")} instead)`;
  return new StoreError(
    "exists",
    `Kept ${names} at the top of ${folder} that the tree lacks: it held none of the tree's ` +
      `names, so --delete did not take it for a copy${into}`,
  );
}

/**
 * The files a get_files names, in its order. Every name is in the manifest, even one that cannot
 * be served (the client matches entries to its names by place): its refusal goes, when the file
 * is asked for, as the ABORT of its data phase, with the code and message a get would have had.
 */
async function filesSource(store: Store, names: string[]): Promise<TreeSource> {
  const refusals = new Map<number, StoreError>();
  const measure = async (index: number): Promise<WalkEntry> => {
    const path = names[index];
    try {
      const { file, size } = await store.openFile(path);
      file.close();
      // A single get gives the file the time it arrives, so mget does too: no mtime or mode.
      return { path, type: "file", size, mtime: 0, mode: 0o644 };
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      refusals.set(index, error);
      return { path, type: "file", size: 0, mtime: 0, mode: 0o644 };
    }
  };
  // Several names are measured at once: one after another, each lookup's waits added up.
  const ahead = new Map<number, Promise<WalkEntry>>();
  const walker = await ListWalk.open(names.length, (index) => {
    for (let i = index; i < Math.min(names.length, index + MEASURED_AHEAD); i++) {
      if (ahead.has(i)) continue;
      const measuring = measure(i);
      // One never asked for (a transfer given up) must not fail unheard.
      measuring.catch(() => {});
      ahead.set(i, measuring);
    }
    const measuring = ahead.get(index)!;
    ahead.delete(index);
    return measuring;
  });
  const refused = (index: number) => {
    const refusal = refusals.get(index);
    if (!refusal) return;
    refusals.delete(index);
    throw refusal;
  };
  return {
    walker,
    open: async (path, index) => {
      refused(index);
      // Opened again, as any get: a name swapped for a symlink meanwhile cannot lead out.
      return sourceFile(await store.openFile(path));
    },
    // A small file read whole in one step, where the store can (the folder store's disk threads).
    ...(store.readWhole
      ? {
        readWhole: (path: string, index: number, max: number) => {
          refused(index);
          return store.readWhole!(path, max);
        },
      }
      : {}),
    // Every name goes in the manifest, so the client can match each to its place.
    allowed: () => true,
  };
}

/** Names of a get_files measured ahead of the one the manifest is at. */
const MEASURED_AHEAD = 32;

/** Receives a put_files into the store: each file named and refused on its own, as a put. */
function filesSink(store: Store, overwrite: boolean): TreeSink {
  const never = () => Promise.reject(new StoreError("bad_request", "Not part of a files transfer"));
  return {
    check: (path) => void checkName(path),
    // A server on Windows refuses, file by file, the names Windows cannot hold.
    ...(Deno.build.os === "windows" ? { unfit: (path: string) => unfitName(path) } : {}),
    // A folder store refuses a taken name before its bytes are sent; an S3 store, at beginFile.
    admit: store.checkFree ? (path) => store.checkFree!(path, overwrite) : undefined,
    walker: () => Promise.resolve(null),
    makeBase: () => Promise.resolve(),
    makeDir: never,
    remove: never,
    beginFile: async (path, entry): Promise<TreeFileSink> => {
      const upload = await store.beginUpload(path, {
        overwrite,
        size: entry.size,
        sync: true,
        // The store's checkFree has just looked, on admitting the name; it looks again at naming.
        precheck: store.checkFree === undefined,
      });
      return {
        write: (chunk) => upload.write(chunk),
        commit: (verified) => upload.commit(verified),
        discard: () => upload.discard(),
      };
    },
    finishDir: never,
    finishBase: never,
    caseInsensitive: () => Promise.resolve(false),
    checksum: () => Promise.resolve(null),
  };
}
