/**
 * The client's remote tree operations over a session ({@link TreeSession}, which lib/client.ts's
 * `Session` is): `rm`, `mv`, `mkdir`, whole folders sent (`put -r`) and fetched (`get -r`), and
 * lists of files sent (`mput`) and fetched (`mget`) over the same pipelined path. A server that
 * predates them (no `tree` feature) has them refused locally, before anything is sent; its folder
 * listings are lib/remote_listing.ts's. It takes nothing from lib/client.ts.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import type { DownloadTarget } from "./client_session.ts";
import { ProtocolError, RefusedError } from "./errors.ts";
import { utf8Length } from "./format.ts";
import { FrameType } from "./frames.ts";
import type { FrameReader } from "./frame_reader.ts";
import type { FrameWriter } from "./frame_writer.ts";
import type { ListEntry, Ok, Welcome } from "./protocol.ts";
import type { LocalWaits } from "./transfer.ts";
import { TREE_FEATURE, type TreeChangeRequest } from "./tree_protocol.ts";
import {
  encodeTreeTransfer,
  MAX_BATCH_ENTRIES,
  TREE_EXCLUDE_FEATURE,
  TREE_RESUME_FEATURE,
  type TreeSummary,
  type TreeTransferRequest,
} from "./tree_transfer_protocol.ts";
import { localSink, localSource } from "./tree_local.ts";
import { receiveTree, type ReceiveTreeOptions } from "./tree_receive.ts";
import { sendTree, type SendTreeOptions } from "./tree_send.ts";
import type { TreeEvent, TreeFileSink, TreeSink, TreeSource } from "./tree_transfer.ts";
import { PHASE_WORK_FEATURE } from "./tree_work.ts";
import { fileIdOf, loadCheckedOpen, openChecked } from "./checked_open.ts";
import { ListWalk } from "./list_walk.ts";

/** What a request written outside lib/client.ts uses of its session's connection. */
export interface SessionIo {
  /** Frames from the server. */
  frames: FrameReader;
  /** Frames to the server. */
  out: FrameWriter;
  /** Buffer pool for data phases. */
  pool: BufferPool;
  /** Waits on the local side, which the stall watchdog does not count. */
  local: LocalWaits;
  /** How often to tell the server, while hashing for a tree transfer, that this side is at work. */
  noticeMs?: number;
  /** Set for a tree transfer with a server that takes part in the receiver's work notices. */
  phaseWork?: boolean;
  /** Reads the server's answer: OK, or a {@link RefusedError} for ERROR (KEEPALIVE skipped). */
  expectOk(): Promise<Ok>;
}

/** What the tree operations use of a session: lib/client.ts's `Session` has it all. */
export interface TreeSession {
  /** `host:port` of the server, for messages. */
  readonly target: string;
  /** The server's greeting, after the handshake. */
  readonly welcome?: Welcome;
  /** Runs a request on the connection, in its turn and under its stall watchdog. */
  exchange<T>(work: (io: SessionIo) => Promise<T>): Promise<T>;
  /** Lists every file the server shares (an older server's only listing). */
  list(): Promise<ListEntry[]>;
}

/** Whether the server offers the tree requests. */
export function offersTree(session: TreeSession): boolean {
  return session.welcome?.features.includes(TREE_FEATURE) ?? false;
}

/** Whether the server continues a tree's cut files with `--resume` rather than resending them. */
export function offersTreeResume(session: TreeSession): boolean {
  return session.welcome?.features.includes(TREE_RESUME_FEATURE) ?? false;
}

/** Asks the server to remove, rename or create a name; resolves once it is done. */
export async function changeRemote(
  session: TreeSession,
  request: TreeChangeRequest,
): Promise<void> {
  if (!offersTree(session)) {
    throw new RefusedError(
      "unsupported",
      `Server at ${session.target} does not offer ${request.op} (it has no folder operations: an older server)`,
    );
  }
  await session.exchange(async (io) => {
    await io.out.writeControl(FrameType.REQUEST, request);
    await io.expectOk();
  });
}

/** Options for {@link putTree} and {@link getTree}. */
export interface TreeTransferOptions extends SendTreeOptions, ReceiveTreeOptions {
  /** get: flush each file to disk before reporting it (default true). */
  fsync?: boolean;
  /** get: the `--limit-rate` the server is asked to pace its files to, bytes per second. */
  rate?: number;
}

function requireTree(session: TreeSession, what: string, options: TreeTransferOptions = {}): void {
  if (!offersTree(session)) {
    throw new RefusedError(
      "unsupported",
      `Server at ${session.target} does not offer ${what} (it has no folder operations: an older server)`,
    );
  }
  // An older server would ignore the patterns: send what was excluded, or delete it.
  if (options.exclude?.empty === false && !offersTreeExclude(session)) {
    throw new RefusedError(
      "unsupported",
      `Server at ${session.target} does not offer --exclude (an older server): nothing was ` +
        "transferred",
    );
  }
}

/** Whether the server takes `--exclude` patterns in tree transfers (see `TreeTransferRequest`). */
export function offersTreeExclude(session: TreeSession): boolean {
  return session.welcome?.features.includes(TREE_EXCLUDE_FEATURE) ?? false;
}

/** Sends a transfer's request, then, once the server agrees, moves the files with `work`. */
async function transferTree(
  session: TreeSession,
  request: TreeTransferRequest,
  work: (io: SessionIo) => Promise<TreeSummary>,
): Promise<TreeSummary> {
  // A server that takes part hears of the receiver's flushes and removals, and tells of its own.
  const phaseWork = session.welcome?.features.includes(PHASE_WORK_FEATURE) ?? false;
  return await session.exchange(async (io) => {
    await io.out.writeControl(
      FrameType.REQUEST,
      encodeTreeTransfer(phaseWork ? { ...request, phaseWork } : request),
    );
    await io.expectOk();
    return await work({ ...io, phaseWork });
  });
}

/** The request for a folder's transfer: `op` of the remote folder `name`, as `options` say. */
function treeRequest(
  op: "put_tree" | "get_tree",
  name: string | undefined,
  options: TreeTransferOptions,
): TreeTransferRequest {
  return {
    op,
    name,
    delete: options.delete ?? false,
    // Sent whenever delete is: a server then counts a kept top in its OK (an older client's
    // hears an ERROR instead), and a get's (the client receives) ignores it.
    ...(options.delete ? { deleteUnrelated: options.deleteUnrelated ?? false } : {}),
    dryRun: options.dryRun ?? false,
    checksum: options.checksum ?? false,
    links: options.links ?? false,
    ...(options.resume ? { resume: true } : {}),
    ...(options.exclude?.empty === false ? { exclude: options.exclude } : {}),
    // A get is paced by the server too, so its bytes do not wait in the kernel's buffers.
    ...(op === "get_tree" && options.rate ? { rate: options.rate } : {}),
  };
}

/**
 * Sends the local folder `local` as the remote folder `remote` (the root when undefined): one
 * connection, pipelined, each file verified and committed on its own.
 */
export async function putTree(
  session: TreeSession,
  local: string,
  remote: string | undefined,
  options: TreeTransferOptions = {},
): Promise<TreeSummary> {
  return await putSource(session, await localSource(local), remote, options);
}

/**
 * Sends the tree `source` walks (a local folder's: {@link putTree}) as the remote folder
 * `remote` (the root when undefined).
 */
export async function putSource(
  session: TreeSession,
  source: TreeSource,
  remote: string | undefined,
  options: TreeTransferOptions = {},
): Promise<TreeSummary> {
  requireTree(session, "put -r", options);
  return await transferTree(
    session,
    treeRequest("put_tree", remote, options),
    (io) => sendTree(io, source, options),
  );
}

/**
 * Fetches the remote folder `remote` (the root when undefined) into the local folder `local`,
 * which is created if missing. Nothing the server sends can write outside `local`.
 */
export async function getTree(
  session: TreeSession,
  remote: string | undefined,
  local: string,
  options: TreeTransferOptions = {},
): Promise<TreeSummary> {
  const sink = localSink(local, { fsync: options.fsync, resume: options.resume });
  return await getSink(session, remote, sink, options);
}

/**
 * Fetches the remote folder `remote` (the root when undefined) into `sink`, a tree sink of the
 * caller's ({@link getTree}'s is a local folder).
 */
export async function getSink(
  session: TreeSession,
  remote: string | undefined,
  sink: TreeSink,
  options: TreeTransferOptions = {},
): Promise<TreeSummary> {
  requireTree(session, "get -r", options);
  return await transferTree(
    session,
    treeRequest("get_tree", remote, options),
    (io) => receiveTree(io, sink, options),
  );
}

/** A local file for {@link putFiles}: where it is, and the name it is to have on the server. */
export interface FileToPut {
  /** Local path of a regular file. */
  local: string;
  /** Remote name, relative to the root. */
  remote: string;
}

/** Options for {@link putFiles} and {@link getFiles}. */
export interface FilesTransferOptions {
  /** put: replace existing remote files (default false: each is refused as put refuses it). */
  overwrite?: boolean;
  /** Told about each file as it is committed (`sent`, with its checksum) or fails. */
  onEvent?: (event: TreeEvent) => void;
  /** Running count of file bytes moved in this exchange. */
  onProgress?: (bytes: number) => void;
  /**
   * Test-only (put): called between a file's lookup and its open, with its local path, to swap
   * something in for it there (tests/swap_race_test.ts). Never set outside tests.
   */
  beforeOpen?: (path: string) => void;
}

/**
 * Uploads `files` as mput does, over the pipelined path of trees: one manifest, the files back to
 * back, each staged, verified and named on its own on the server and refused on its own (a name
 * that is taken without `overwrite`, say). Events carry the file's place in `files` as `index`.
 * Needs the server's `tree` feature ({@link offersTree}).
 */
export async function putFiles(
  session: TreeSession,
  files: FileToPut[],
  options: FilesTransferOptions = {},
): Promise<TreeSummary> {
  requireTree(session, "mput over one pipelined exchange");
  await loadCheckedOpen();
  // Looked up, opened and (when small) read on this thread, as put -r's files are: the client
  // waits for nothing else, and a thread hand-off each cost more than the work.
  const walker = await ListWalk.open(files.length, (index) => {
    let info: Deno.FileInfo | null = null;
    try {
      info = Deno.statSync(files[index].local);
    } catch {
      // A file gone since it was checked fails when it is opened, on its own.
    }
    return Promise.resolve({
      path: files[index].remote,
      type: "file",
      size: info?.size ?? 0,
      mtime: info?.mtime?.getTime() ?? 0,
      mode: (info?.mode ?? 0o644) & 0o777,
      ...(info ? { id: fileIdOf(info) } : {}),
    });
  });
  const source: TreeSource = {
    walker,
    // Each was found a regular file before the exchange (mput sends anything else on its own):
    // that file is opened, or none (a FIFO or another file swapped in since: lib/checked_open.ts).
    // A symlink the user named is followed, as the lookup did.
    open: (_path, index, id) => {
      options.beforeOpen?.(files[index].local);
      return Promise.resolve(openChecked(files[index].local, { follow: true, expect: id }));
    },
    sync: true,
    // The server checks each name, and refuses a bad one on its own.
    allowed: () => true,
  };
  const request: TreeTransferRequest = {
    op: "put_files",
    delete: false,
    dryRun: false,
    checksum: false,
    overwrite: options.overwrite ?? false,
  };
  return await transferTree(session, request, (io) => sendTree(io, source, options));
}

/**
 * Most names in one get_files request, and most bytes of them (UTF-8, as they go out), well under
 * the frame limit.
 */
const NAMES_PER_REQUEST = MAX_BATCH_ENTRIES;
const NAME_BYTES_PER_REQUEST = 32 << 10;

/**
 * Downloads the remote `names` as mget does, over the pipelined path of trees: one request per
 * batch of names (up to 1,024), never one per file. `target(index, size)` opens where file
 * `index` of `names` (of `size` bytes) goes; the server's manifest must list exactly the names
 * asked for, in their order.
 * Events carry the file's place in `names` as `index`. Needs the server's `tree` feature.
 */
export async function getFiles(
  session: TreeSession,
  names: string[],
  target: (index: number, size: number) => Promise<DownloadTarget>,
  options: FilesTransferOptions = {},
): Promise<TreeSummary> {
  requireTree(session, "mget over one pipelined exchange");
  const total: TreeSummary = { files: 0, skipped: 0, deleted: 0, failed: 0, bytes: 0 };
  let before = 0;
  for (let start = 0; start < names.length;) {
    let end = start;
    let bytes = 0;
    while (end < names.length && end - start < NAMES_PER_REQUEST) {
      bytes += utf8Length(JSON.stringify(names[end])) + 1;
      if (bytes > NAME_BYTES_PER_REQUEST && end > start) break;
      end++;
    }
    const batch = names.slice(start, end);
    const offset = start;
    const sink = filesTarget(batch, (index, size) => target(offset + index, size));
    const moved = before;
    const request: TreeTransferRequest = {
      op: "get_files",
      delete: false,
      dryRun: false,
      checksum: false,
      names: batch,
    };
    const summary = await transferTree(session, request, (io) =>
      receiveTree(io, sink, {
        files: true,
        maxEntries: batch.length,
        onEvent: (event) =>
          options.onEvent?.(
            "index" in event && event.index !== undefined
              ? { ...event, index: offset + event.index }
              : event,
          ),
        onProgress: (n) => options.onProgress?.(moved + n),
      }));
    for (const key of Object.keys(total) as (keyof TreeSummary)[]) {
      total[key] = (total[key] ?? 0) + (summary[key] ?? 0);
    }
    before += summary.bytes;
    start = end;
  }
  return total;
}

/**
 * The receiving end of one get_files: file `index` goes where `target(index, size)` says, and
 * only if the server named it as asked. Nothing else is ever written.
 */
function filesTarget(
  names: string[],
  target: (index: number, size: number) => Promise<DownloadTarget>,
): TreeSink {
  const never = () => Promise.reject(new ProtocolError("Not part of a files transfer"));
  return {
    check: () => {},
    walker: () => Promise.resolve(null),
    makeBase: () => Promise.resolve(),
    makeDir: never,
    remove: never,
    beginFile: async (path, entry, index): Promise<TreeFileSink> => {
      if (names[index] !== path) throw new ProtocolError("A file that was not asked for");
      const into = await target(index, entry.size);
      return {
        write: (chunk) => into.write(chunk),
        commit: () => into.commit(),
        discard: () => into.discard(new Error("not verified")),
      };
    },
    finishDir: never,
    finishBase: never,
    caseInsensitive: () => Promise.resolve(false),
    checksum: () => Promise.resolve(null),
  };
}
