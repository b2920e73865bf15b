/**
 * The client's remote tree operations over a {@link Session}: folder listings, `rm`, `mv`,
 * `mkdir`, and whole folders sent (`put -r`) and fetched (`get -r`). A server that predates them (no `tree` feature) still gets listings, built from
 * its flat list of files; the changes are refused locally, before anything is sent.
 *
 * @module
 */

import type { Session } from "./client.ts";
import { RefusedError } from "./errors.ts";
import { FrameType } from "./protocol.ts";
import { concatBytes, receiveData } from "./transfer.ts";
import {
  encodeTreeTransfer,
  parseTreeListing,
  TREE_FEATURE,
  type TreeChangeRequest,
  type TreeEntry,
  type TreeSummary,
} from "./tree_protocol.ts";
import { localSink, localSource } from "./tree_local.ts";
import { receiveTree, type ReceiveTreeOptions } from "./tree_receive.ts";
import { sendTree, type SendTreeOptions } from "./tree_send.ts";

/** Whether the server offers the tree requests. */
export function offersTree(session: Session): boolean {
  return session.welcome?.features.includes(TREE_FEATURE) ?? false;
}

/** Options for {@link listRemote}. */
export interface ListRemoteOptions {
  /** Folder to list, relative to the root; the root when absent. */
  dir?: string;
  /** Everything under the folder (default false: its own entries only). */
  recursive?: boolean;
}

/** Lists a remote folder, or with `recursive` everything under it, sorted by name. */
export async function listRemote(
  session: Session,
  options: ListRemoteOptions = {},
): Promise<TreeEntry[]> {
  if (!offersTree(session)) return fromFlatListing(session, options);
  const recursive = options.recursive ?? false;
  return await session.exchange(async (io) => {
    await io.out.writeControl(FrameType.REQUEST, {
      op: "list",
      recursive,
      ...(options.dir === undefined ? {} : { dir: options.dir }),
    });
    const ok = await io.expectOk();
    const chunks: Uint8Array[] = [];
    await receiveData(io.frames, {
      write(chunk) {
        chunks.push(chunk.slice());
        return Promise.resolve();
      },
    }, { pool: io.pool, sizeHint: ok.size ?? null });
    return parseTreeListing(concatBytes(chunks));
  });
}

/**
 * An older server lists every file in the tree; the folders are the names' prefixes (so an empty
 * folder cannot show). A folder with nothing under it reads as missing.
 */
async function fromFlatListing(session: Session, options: ListRemoteOptions) {
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

/** Asks the server to remove, rename or create a name; resolves once it is done. */
export async function changeRemote(session: Session, request: TreeChangeRequest): Promise<void> {
  if (!offersTree(session)) {
    throw new RefusedError(
      "unsupported",
      `Server at ${session.target} does not offer ${request.op} (it has no folder operations: an older server, or one serving S3)`,
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
}

function requireTree(session: Session, what: string): void {
  if (!offersTree(session)) {
    throw new RefusedError(
      "unsupported",
      `Server at ${session.target} does not offer ${what} (it has no folder operations: an older server, or one serving S3)`,
    );
  }
}

/**
 * Sends the local folder `local` as the remote folder `remote` (the root when undefined): one
 * connection, pipelined, each file verified and committed on its own.
 */
export async function putTree(
  session: Session,
  local: string,
  remote: string | undefined,
  options: TreeTransferOptions = {},
): Promise<TreeSummary> {
  requireTree(session, "put -r");
  const source = await localSource(local);
  return await session.exchange(async (io) => {
    await io.out.writeControl(
      FrameType.REQUEST,
      encodeTreeTransfer({
        op: "put_tree",
        name: remote,
        delete: options.delete ?? false,
        dryRun: options.dryRun ?? false,
        checksum: options.checksum ?? false,
      }),
    );
    await io.expectOk();
    return await sendTree(io, source, options);
  });
}

/**
 * Fetches the remote folder `remote` (the root when undefined) into the local folder `local`,
 * which is created if missing. Nothing the server sends can write outside `local`.
 */
export async function getTree(
  session: Session,
  remote: string | undefined,
  local: string,
  options: TreeTransferOptions = {},
): Promise<TreeSummary> {
  requireTree(session, "get -r");
  const sink = localSink(local, { fsync: options.fsync });
  return await session.exchange(async (io) => {
    await io.out.writeControl(
      FrameType.REQUEST,
      encodeTreeTransfer({
        op: "get_tree",
        name: remote,
        delete: options.delete ?? false,
        dryRun: options.dryRun ?? false,
        checksum: options.checksum ?? false,
      }),
    );
    await io.expectOk();
    return await receiveTree(io, sink, options);
  });
}
