/**
 * One connection to a ferry server: {@link Session} runs the handshake (lib/client_handshake.ts),
 * then the requests (put, get, list, kept), one after another under the stall watchdog
 * (lib/client_watchdog.ts). These speak only the protocol; connecting is lib/client_connect.ts's,
 * local files, stdin/stdout and messages the CLI's.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import { closeQuietly } from "./connection.ts";
import { downloadStream } from "./download_stream.ts";
import { cutsConnection } from "./error_codes.ts";
import {
  ConnectionClosedError,
  interruptionOf,
  isInterruption,
  ProtocolError,
  RefusedError,
} from "./errors.ts";
import {
  type KeptEntry,
  type ListEntry,
  type Ok,
  parseError,
  parseKeptListing,
  parseListing,
  parseOk,
  PUT_RESUME_WORK_FEATURE,
  type Welcome,
} from "./protocol.ts";
import { FrameType, frameTypeName } from "./frames.ts";
import { FrameReader } from "./frame_reader.ts";
import { FrameWriter } from "./frame_writer.ts";
import {
  type ByteSource,
  cancelSource,
  checksumFilePrefix,
  concatBytes,
  localWait,
  type LocalWaits,
  orAbort,
  receiveData,
  type ResumePoint,
  sendData,
  type Throttle,
  type TransferResult,
} from "./transfer.ts";
import type {
  ClientSession,
  DownloadTarget,
  FlowOptions,
  GetOptions,
  GetResult,
  PutOptions,
  PutResult,
  RemoteFileInfo,
} from "./client_session.ts";
import { authenticate, greet, type HandshakeIo } from "./client_handshake.ts";
import { StallWatchdog } from "./client_watchdog.ts";
import { listEntries, type ListEntriesOptions } from "./remote_listing.ts";
import type { SessionIo } from "./tree_client.ts";
import type { TreeEntry } from "./tree_protocol.ts";
import { DEFAULT_WORK_NOTICE_MS, WorkNotices } from "./tree_work.ts";

/** The rejection of `promise` if it settles within `ms` as a rejection; otherwise undefined. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) =>
    timer = setTimeout(() => resolve(undefined), ms)
  );
  try {
    return await Promise.race([promise.then(() => undefined, (error) => error), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a failure while sending came from the connection, not from the data's source. */
function fromConnection(error: unknown): boolean {
  return isInterruption(error) || error instanceof ProtocolError ||
    error instanceof Deno.errors.NotConnected || error instanceof Deno.errors.WriteZero ||
    error instanceof Deno.errors.InvalidData;
}

/** Options for {@link Session}. */
export interface SessionOptions {
  /** Buffer pool for transfers. */
  pool: BufferPool;
  /** Shared secret, if the server requires one. */
  token?: Uint8Array;
  /** Whether the connection is TLS (for messages). */
  tls: boolean;
  /**
   * Give up a request (closing the connection) once the server has sent nothing and taken
   * nothing for this many milliseconds, not counting time spent on the local side: reading the
   * source, writing the target, pacing for a rate limit. Off when absent.
   */
  stallTimeoutMs?: number;
}

/** One connection to a ferry server; requests run one after another. */
export class Session implements ClientSession {
  /** `host:port` of the server, for messages. */
  readonly target: string;
  /** Transfers are always verified. */
  readonly verified = true;
  /** The server's greeting, after the handshake. */
  welcome?: Welcome;
  #conn: Deno.Conn;
  #frames: FrameReader;
  #out: FrameWriter;
  #pool: BufferPool;
  #token?: Uint8Array;
  #tls: boolean;
  #stallTimeoutMs?: number;
  /** The stall watchdog every request runs under (lib/client_watchdog.ts). */
  #watchdog: StallWatchdog;
  /** Waits on the local side, which the watchdog does not count: the watchdog's. */
  #local: LocalWaits;
  #closed = false;
  /** Settles when the request under way is over: requests take turns on the connection. */
  #turn: Promise<unknown> = Promise.resolve();

  /** Wraps a connected socket; use {@link connect}. */
  constructor(conn: Deno.Conn, target: string, options: SessionOptions) {
    this.#conn = conn;
    this.target = target;
    this.#pool = options.pool;
    this.#token = options.token;
    this.#tls = options.tls;
    this.#stallTimeoutMs = options.stallTimeoutMs;
    this.#watchdog = new StallWatchdog({
      target,
      stallTimeoutMs: options.stallTimeoutMs,
      close: () => this.close(),
    });
    this.#local = this.#watchdog.local;
    const activity = this.#watchdog.activity;
    this.#frames = new FrameReader(conn, { activity });
    this.#out = new FrameWriter(conn.writable, { direct: conn, activity });
  }

  /**
   * Runs one request once those before it are over, under the stall watchdog: a caller that does
   * not wait for one request before the next (or reads a {@link getStream} slowly) must not
   * interleave their frames on the connection.
   */
  #request<T>(request: () => Promise<T>): Promise<T> {
    const run = this.#turn.then(() =>
      this.#watchdog.run(request, (error) => this.#closedError(error))
    );
    this.#turn = run.catch(() => {});
    return run;
  }

  /**
   * A request's failure as the user should hear it: the server closing or resetting the
   * connection, or cutting it with an ERROR (its idle timeout, a shutdown), is said as such.
   */
  #closedError(error: unknown): unknown {
    if (error instanceof ConnectionClosedError) return error;
    if (error instanceof RefusedError && cutsConnection(error.code)) {
      return new ConnectionClosedError(this.target, error.message);
    }
    const how = interruptionOf(error);
    if (how === null) return error;
    return new ConnectionClosedError(this.target, how === "connection closed" ? undefined : how);
  }

  /** A rate limit's pacing, counted as a wait on the local side. */
  #pacing(throttle?: Throttle): Throttle | undefined {
    return throttle &&
      ((bytes, signal) => localWait(this.#local, () => throttle(bytes, signal)));
  }

  /**
   * How often to send work notices (lib/tree_work.ts) to a server that takes them: every server
   * with tree transfers does, and a newer one says how often.
   */
  get #noticeMs(): number {
    return this.welcome?.keepalive ?? DEFAULT_WORK_NOTICE_MS;
  }

  /** Sends the preamble and HELLO, and checks the server's answer (lib/client_handshake.ts). */
  async handshake(): Promise<void> {
    const io: HandshakeIo = {
      frames: this.#frames,
      out: this.#out,
      target: this.target,
      tls: this.#tls,
      token: this.#token,
      stallTimeoutMs: this.#stallTimeoutMs,
      expectFrame: () => this.#expectFrame(),
      expectOk: () => this.#expectOk(),
    };
    this.welcome = await greet(io);
    await authenticate(io, this.welcome);
  }

  async #expectFrame() {
    let frame = await this.#frames.readControl();
    // Read only to be seen by the stall watchdog (every read counts as activity).
    while (frame?.type === FrameType.KEEPALIVE) frame = await this.#frames.readControl();
    if (!frame) throw new ConnectionClosedError(this.target);
    if (frame.type === FrameType.ERROR) {
      const error = parseError(frame.json);
      throw new RefusedError(error.code, error.message);
    }
    return frame;
  }

  async #expectOk(): Promise<Ok> {
    const frame = await this.#expectFrame();
    if (frame.type !== FrameType.OK) {
      throw new ProtocolError(`Expected OK, got ${frameTypeName(frame.type)}`);
    }
    return parseOk(frame.json);
  }

  /**
   * Uploads `source` under `name`. Resolves once the server has verified and committed it;
   * throws {@link RefusedError} when the server says no, before or during the transfer. If
   * reading `source` fails, the server is told (ABORT, code `io`) and the source's error thrown.
   */
  put(source: ByteSource, name: string, options: PutOptions = {}): Promise<PutResult> {
    return this.#request(() => this.#put(source, name, options));
  }

  async #put(source: ByteSource, name: string, options: PutOptions): Promise<PutResult> {
    const size = options.size ?? null;
    const resumeFile = options.resumeFile;
    await this.#out.writeControl(FrameType.REQUEST, {
      op: "put",
      name,
      size,
      overwrite: options.overwrite ?? false,
      ...(resumeFile ? { resume: true } : {}),
    });
    let accepted: Ok;
    try {
      accepted = await this.#expectOk();
    } catch (error) {
      await cancelSource(source);
      throw error;
    }
    let resumeFrom: ResumePoint | undefined;
    // Offset 0: the server had kept data for this name, for another size, and dropped it.
    if (resumeFile && accepted.offset === 0) options.onStartOver?.();
    if (resumeFile && accepted.offset && accepted.prefix) {
      const offset = accepted.offset;
      // Hashing a big start leaves the connection silent: a server that takes work notices hears
      // of it, so its idle timeout does not cut a put that is only busy (lib/tree_work.ts).
      const resumeWork = this.welcome?.features.includes(PUT_RESUME_WORK_FEATURE);
      const notices = new WorkNotices(this.#out, resumeWork ? this.#noticeMs : undefined);
      const checksum = await notices.during(() =>
        localWait(this.#local, () =>
          checksumFilePrefix(resumeFile, offset, {
            pool: this.#pool,
            onProgress: notices.counter(offset),
          }))
      );
      if (!checksum || (await checksum.fork()).digest() !== accepted.prefix) {
        // What the server kept is not the start of this file: drop it and start over.
        options.onStartOver?.();
        await this.#out.writeControl(FrameType.ABORT, {
          code: "checksum",
          message: "Kept data does not match the local file",
        });
        await resumeFile.seek(0, Deno.SeekMode.Start);
        return await this.#put(source, name, { ...options, resumeFile: undefined });
      }
      resumeFrom = { size: accepted.offset, checksum };
    }
    // The server may refuse mid-upload (disk full, too large) or go away; listen while sending,
    // and give up any wait on the local side (the source, the pacing) once it has spoken.
    const stop = new AbortController();
    const verdict = this.#expectOk();
    verdict.catch((error) => stop.abort(error));
    let sent: TransferResult;
    try {
      sent = await sendData(source, this.#out, {
        pool: this.#pool,
        sizeHint: size === null ? null : size - (resumeFrom?.size ?? 0),
        signal: stop.signal,
        onProgress: options.onProgress,
        resumeFrom,
        throttle: this.#pacing(options.throttle),
        maxChunk: options.maxChunk,
        localWaits: this.#local,
      });
    } catch (error) {
      if (!stop.signal.aborted && !fromConnection(error)) {
        // Neither the server nor the connection: the source failed. Say so, so the server
        // drops the upload at once instead of waiting for more and logging a cut connection.
        verdict.catch(() => {});
        await this.#out.writeControl(FrameType.ABORT, {
          code: "io",
          message: "Client could not read its file",
        }).catch(() => {});
        throw error;
      }
      // Prefer the server's reason over the broken pipe it caused. A refusal during the data
      // phase ends the connection, whatever its code: the server stops reading and hangs up.
      const reason = (await settledWithin(verdict, 2000)) ?? error;
      this.close();
      throw reason;
    }
    const ok = await verdict;
    if (ok.checksum !== sent.checksum || ok.size !== sent.size) {
      throw new ProtocolError("Server confirmed different data than was sent");
    }
    return { ...sent, resumedFrom: resumeFrom?.size ?? 0 };
  }

  /**
   * Downloads `name`. `open` is called with the file's details once the server accepts, so a
   * refusal creates nothing; the target is committed only after size and checksum match. With
   * `resume`, the server continues after the bytes the caller has, if their checksum matches
   * its copy; otherwise it starts over, and `open` is told which.
   */
  get(
    name: string,
    open: (info: RemoteFileInfo) => Promise<DownloadTarget>,
    options: GetOptions = {},
  ): Promise<GetResult> {
    return this.#request(() => this.#get(name, open, options));
  }

  async #get(
    name: string,
    open: (info: RemoteFileInfo) => Promise<DownloadTarget>,
    options: GetOptions,
  ): Promise<GetResult> {
    const have = options.resume;
    await this.#out.writeControl(FrameType.REQUEST, {
      op: "get",
      name,
      ...(have && have.size > 0
        ? { offset: have.size, prefix: (await have.checksum.fork()).digest() }
        : {}),
      ...(options.rate ? { rate: options.rate } : {}),
    });
    const ok = await this.#expectOk();
    const offset = have && ok.offset === have.size ? have.size : 0;
    const info = { size: ok.size ?? 0, mtime: ok.mtime ?? 0, offset };
    // From here the socket is read only between local waits: watch it during the long ones.
    const lost = new AbortController();
    const unwatch = this.#watchdog.watchWhileLocal(this.#frames, lost);
    let target: DownloadTarget | undefined;
    let dataIn = false;
    try {
      target = await orAbort(localWait(this.#local, () => open(info)), lost.signal);
      const result = await receiveData(this.#frames, target, {
        pool: this.#pool,
        sizeHint: info.size - offset,
        onProgress: options.onProgress,
        resumeFrom: offset > 0 ? { size: offset, checksum: have!.checksum } : undefined,
        throttle: this.#pacing(options.throttle),
        maxChunk: options.maxChunk,
        localWaits: this.#local,
        signal: lost.signal,
      });
      // The data is all in: the server going away now takes nothing from this file.
      dataIn = true;
      unwatch();
      // Flushing a large download to disk can take a while; the server is not being waited for.
      const done = target;
      await localWait(this.#local, () => done.commit());
      return { ...result, resumedFrom: offset };
    } catch (error) {
      unwatch();
      // Part-way through the data the connection is out of step, whatever the failure (an
      // ABORT, whose code may be one that keeps it after a refusal in place of the OK): the
      // server hangs up, or is still sending.
      if (!dataIn) this.close();
      await target?.discard(error);
      throw error;
    }
  }

  /**
   * Downloads `name` as a stream. Resolves once the server accepts the request (a refusal
   * rejects, and nothing is streamed). The stream closes only after the size and checksum are
   * verified, and errors if they do not match or the transfer fails, so treat what was read as
   * unverified until it closes. It is read at the reader's pace; cancelling it closes the session,
   * since the protocol cannot stop a download midway. Requests made meanwhile wait for the end.
   *
   * @example Save a file through a stream
   * ```ts ignore
   * const stream = await session.getStream("report.pdf");
   * await stream.pipeTo((await Deno.create("report.pdf.part")).writable);
   * await Deno.rename("report.pdf.part", "report.pdf");
   * ```
   */
  getStream(
    name: string,
    options: FlowOptions = {},
  ): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const { readable, target } = downloadStream({ onCancel: () => this.close() });
    const accepted = Promise.withResolvers<ReadableStream<Uint8Array<ArrayBuffer>>>();
    const done = this.get(name, () => {
      accepted.resolve(readable);
      return Promise.resolve(target);
    }, options);
    // After acceptance a failure reaches the reader through the stream instead.
    done.catch((error) => accepted.reject(error));
    return accepted.promise;
  }

  /**
   * Runs a request written elsewhere (lib/tree_client.ts) on this connection, in its turn and
   * under the same stall watchdog as put, get and list. Not part of the library's API.
   *
   * @ignore
   */
  exchange<T>(work: (io: SessionIo) => Promise<T>): Promise<T> {
    return this.#request(() =>
      work({
        frames: this.#frames,
        out: this.#out,
        pool: this.#pool,
        local: this.#local,
        noticeMs: this.#noticeMs,
        expectOk: () => this.#expectOk(),
      })
    );
  }

  /**
   * The server's files (with `folders`, its folders too), sorted by name, one at a time as they
   * arrive: the streaming form of {@link list}, for a listing of any size. The server sends them
   * as it walks its tree and the session reads at most a batch (about a thousand entries) ahead
   * of the loop, so neither end holds the listing. With the defaults it yields what
   * {@link list} returns: every file under the root. The session carries no other request
   * until the loop ends; breaking out early reads the rest of the listing and drops it, so the
   * session stays usable. Names come from the server: show them escaped. A server older than
   * folders sends its list whole, and the entries are yielded from it. With `namesOnly` the
   * server looks up no file's size or date, and each entry's are 0 (see
   * {@link ListEntriesOptions.namesOnly}).
   *
   * @example List a folder as it arrives
   * ```ts
   * import { connect } from "@ferry/ferry";
   *
   * const session = await connect("127.0.0.1", 9000);
   * try {
   *   let bytes = 0;
   *   for await (const entry of session.listEntries({ dir: "photos" })) bytes += entry.size;
   *   console.log(bytes, "bytes under photos/");
   * } finally {
   *   session.close();
   * }
   * ```
   *
   * @example Names and types alone, which the server lists without a lookup of each file
   * ```ts
   * import { connect } from "@ferry/ferry";
   *
   * const session = await connect("127.0.0.1", 9000);
   * try {
   *   for await (const entry of session.listEntries({ folders: true, namesOnly: true })) {
   *     console.log(entry.type === "dir" ? `${entry.name}/` : entry.name);
   *   }
   * } finally {
   *   session.close();
   * }
   * ```
   */
  listEntries(options: ListEntriesOptions = {}): AsyncGenerator<TreeEntry, void, undefined> {
    return listEntries(this, options);
  }

  /**
   * Lists the files the server shares, sorted by name, all at once: for a listing of any size,
   * {@link listEntries} gives the same entries one at a time without holding them.
   */
  list(): Promise<ListEntry[]> {
    return this.#request(() => this.#list());
  }

  /**
   * Lists the interrupted uploads the server keeps for `put --resume`. Names come from the
   * server: show them escaped. Throws {@link RefusedError} `denied` from a server that does not
   * show them.
   */
  kept(): Promise<KeptEntry[]> {
    return this.#request(async () => parseKeptListing(await this.#listing("kept")));
  }

  async #list(): Promise<ListEntry[]> {
    return parseListing(await this.#listing("list"));
  }

  /** Sends a request whose answer is OK and a data phase, and returns the data. */
  async #listing(op: "list" | "kept"): Promise<Uint8Array> {
    await this.#out.writeControl(FrameType.REQUEST, { op });
    const ok = await this.#expectOk();
    const chunks: Uint8Array[] = [];
    await receiveData(this.#frames, {
      write(chunk) {
        chunks.push(chunk.slice());
        return Promise.resolve();
      },
    }, { pool: this.#pool, sizeHint: ok.size ?? null });
    return concatBytes(chunks);
  }

  /** Whether the session can carry no further request (see {@link ClientSession.closed}). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the connection. */
  close(): void {
    this.#closed = true;
    closeQuietly(this.#conn);
  }
}
