/**
 * ferry as a library: serve a folder and put, get and list files over ferry's protocol from
 * your own Deno program, with the same verified, staged transfers as the `ferry` and
 * `ferry-server` programs.
 *
 * - {@link connect} opens a {@link Session} to a server: {@link Session.put} uploads from a
 *   `ReadableStream` (or a `Deno.FsFile`), {@link Session.getStream} downloads as a
 *   `ReadableStream`, {@link Session.get} into a {@link DownloadTarget} of your own,
 *   {@link Session.listEntries} lists as the entries arrive ({@link Session.list} all at once),
 *   and {@link Session.kept} lists interrupted uploads kept for a resume.
 * - {@link startServer} serves a folder until {@link RunningServer.close} or
 *   {@link RunningServer.shutdown}.
 * - Failures are typed: {@link RefusedError} (the server said no, with a {@link ErrorCode}),
 *   {@link ProtocolError} (a broken peer; {@link ChecksumMismatchError} for data unlike what was
 *   sent, {@link ClosedEarlyError} for a connection that ended part-way), {@link UserError} (cannot
 *   connect, a timeout). Nothing is kept from a failed transfer.
 *
 * Permissions: `--allow-net`, plus `--allow-read` and `--allow-write` for the served folder.
 *
 * @example Serve a folder and move a file through it
 * ```ts
 * import { connect, startServer } from "@ferry/ferry";
 *
 * const root = await Deno.makeTempDir();
 * const server = await startServer({ root, port: 0, log: () => {} });
 * const session = await connect("127.0.0.1", server.addr.port);
 * try {
 *   const data = new TextEncoder().encode("hello");
 *   await session.put(ReadableStream.from([data]), "hello.txt", { size: data.length });
 *   const text = await new Response(await session.getStream("hello.txt")).text();
 *   console.log(text); // "hello"
 * } finally {
 *   session.close();
 *   await server.close();
 *   await Deno.remove(root, { recursive: true });
 * }
 * ```
 *
 * @module
 */

export { Session, type SessionOptions } from "./lib/client.ts";
export { connect, type ConnectOptions } from "./lib/client_connect.ts";
export type {
  ClientSession,
  DownloadTarget,
  FlowOptions,
  GetOptions,
  GetResult,
  PutOptions,
  PutResult,
  RemoteFileInfo,
} from "./lib/client_session.ts";
export { type TlsTrust } from "./lib/tls_connect.ts";
export {
  type RunningServer,
  SERVER_DEFAULTS,
  type ServerOptions,
  startServer,
} from "./lib/server.ts";
export type { RunningHttpServer } from "./lib/http/http_server.ts";
export {
  ChecksumMismatchError,
  ClosedEarlyError,
  ProtocolError,
  RefusedError,
  StartError,
  type StartStep,
  UserError,
} from "./lib/errors.ts";
export {
  ERROR_CODES,
  type ErrorCode,
  type ErrorCodeInfo,
  keepsConnection,
} from "./lib/error_codes.ts";
export type { KeptEntry, ListEntry, Welcome } from "./lib/protocol.ts";
export type { DirectReader } from "./lib/frame_reader.ts";
export type {
  ByteSink,
  ByteSource,
  ResumePoint,
  Throttle,
  TransferResult,
} from "./lib/transfer.ts";
export { BufferPool, type BufferPoolOptions } from "./lib/buffer_pool.ts";
export type { Checksum } from "./lib/checksum.ts";
export type {
  BeginUploadOptions,
  KeptView,
  ListTreeOptions,
  MakeDirOptions,
  MoveOptions,
  RemoveOptions,
  Store,
  StoreFile,
  StoreReader,
  StoreUpload,
} from "./lib/store.ts";
export type { TreeEntry } from "./lib/tree_protocol.ts";
export type { ManifestEntry, ManifestTop } from "./lib/tree_transfer_protocol.ts";
export type { ListEntriesOptions } from "./lib/remote_listing.ts";
export type { TreeListing } from "./lib/tree_listing.ts";
export type {
  KeptPart,
  TreeFileSink,
  TreeSink,
  TreeSource,
  TreeSourceFile,
} from "./lib/tree_transfer.ts";
export type { EntryWalk, WalkEntry } from "./lib/tree_walk.ts";
export type { FileId } from "./lib/checked_open.ts";
export type { KeepResult, KeptTotals, KeptUpload } from "./lib/kept_uploads.ts";
export { DEFAULT_HASH_ARENA_SIZE, HASH_ARENA_SIZE } from "./lib/xxh3.ts";
export { NAME, VERSION } from "./lib/version.ts";
