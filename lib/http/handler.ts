/**
 * What an HTTP request does to the served folder: GET and HEAD of a file (ranges, validators) or
 * of a folder (HTML or JSON listing), and PUT of a file (staged, checked, renamed into place).
 * Every name goes through the store's own rules (lib/file_store.ts: checkName, resolveFile,
 * beginUpload); this module maps URLs to names and store errors to statuses, and nothing more.
 *
 * @module
 */

import { describeError, isNoSpace, StoreError } from "../errors.ts";
import { type FileStore, quote, type Upload } from "../file_store.ts";
import { safeJson } from "../format.ts";
import { overLimitMessage } from "../transfer.ts";
import type { ErrorCode, ListEntry } from "../protocol.ts";
import { tarStream } from "./tar_stream.ts";
import {
  type ByteRange,
  ifRangeMatches,
  notModified,
  parseContentRange,
  parseRange,
  validatorsOf,
} from "./conditional.ts";
import { type DigestCheck, parseDigestField, startDigestCheck } from "./digest.ts";
import { childrenOf, renderError, renderListing } from "./listing_page.ts";

/** Options of the HTTP side that the handler needs. */
export interface HandlerContext {
  store: FileStore;
  readOnly: boolean;
  maxSize?: number;
  /** Close a transfer that moves no byte for this long, in ms (0 never). */
  idleTimeoutMs: number;
  /** Whether a browser is signed in with the cookie, for the page's sign-out button. */
  signedIn?: boolean;
  /** Whether this visitor may upload (no token needed, or it was given). */
  mayWrite?: boolean;
  /** Whether the page should offer to sign in (token set, reading public, not signed in). */
  canSignIn?: boolean;
  /** Serve folders as tar archives (`?tar`). */
  archives?: boolean;
}

/**
 * What one request did, filled in as it goes, for its log line. A streamed response settles
 * `finished` when the last byte is out or the client has gone.
 */
export class Exchange {
  /** Name the request was about, or "-". */
  name = "-";
  /** Body bytes moved. */
  bytes = 0;
  /** Outcome, for the log. */
  result = "ok";
  /** Aborted when the server cuts the request (idle, shutting down). */
  readonly cut = new AbortController();
  #streaming?: Promise<void>;

  /** Marks the response as streamed: the log waits for `done`. */
  streaming(done: Promise<void>): void {
    this.#streaming = done;
  }

  /** Settles once the response's body is finished with. */
  get finished(): Promise<void> {
    return this.#streaming ?? Promise.resolve();
  }
}

/** A request the handler refuses; carries its status. */
export class HttpError extends Error {
  /** Creates the error. */
  constructor(readonly status: number, message: string, readonly headers: HeadersInit = {}) {
    super(message);
    this.name = "HttpError";
  }
}

const STATUS_OF: Record<ErrorCode, number> = {
  bad_request: 400,
  bad_name: 400,
  exists: 409,
  not_found: 404,
  not_a_file: 409,
  checksum: 400,
  too_large: 413,
  no_space: 507,
  busy: 503,
  read_only: 403,
  denied: 403,
  unsupported: 501,
  timeout: 408,
  shutdown: 503,
  io: 500,
};

/** The status and one-line message for any failure. */
export function statusOf(
  error: unknown,
): { status: number; message: string; headers: HeadersInit } {
  if (error instanceof HttpError) {
    return { status: error.status, message: error.message, headers: error.headers };
  }
  if (error instanceof StoreError) {
    return { status: STATUS_OF[error.code] ?? 500, message: error.message, headers: {} };
  }
  if (error instanceof HttpInterruption) {
    return { status: 400, message: `Upload incomplete: ${error.message}`, headers: {} };
  }
  if (isNoSpace(error)) return { status: 507, message: "Server is out of disk space", headers: {} };
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return { status: 403, message: "Server has no permission for that file", headers: {} };
  }
  // Deno appends paths to OS errors; the client is never told where the server keeps files.
  const text = describeError(error).replace(/(['"])\/[^'"]*\1/g, "$1…$1");
  return { status: 500, message: `Server error: ${text}`, headers: {} };
}

/** Whether the client would rather read JSON than HTML or text. */
export function wantsJson(request: Request, url: URL): boolean {
  return url.searchParams.has("json") ||
    (request.headers.get("accept") ?? "").includes("application/json");
}

function wantsHtml(request: Request): boolean {
  return (request.headers.get("accept") ?? "").includes("text/html");
}

/** The response for a failure: HTML for a browser, JSON if asked, a text line otherwise. */
export function errorResponse(error: unknown, request: Request, url: URL): Response {
  const { status, message, headers } = statusOf(error);
  const base = { "cache-control": "no-store", ...headers };
  if (wantsJson(request, url)) {
    return Response.json({ error: message, status }, { status, headers: base });
  }
  if (wantsHtml(request)) {
    return new Response(renderError(status, message), {
      status,
      headers: { ...base, "content-type": "text/html; charset=utf-8" },
    });
  }
  return new Response(message + "\n", {
    status,
    headers: { ...base, "content-type": "text/plain; charset=utf-8" },
  });
}

/** A URL path as a name: "" for the root, and whether it ends with a slash (a folder). */
export interface Target {
  name: string;
  folder: boolean;
}

/**
 * Turns a URL path into a store name. Each segment is percent-decoded on its own; a segment that
 * decodes to a slash, or that cannot be decoded, is refused, and the store's checkName refuses
 * the rest (`..`, empty segments, control characters, private folders).
 */
export function targetOf(pathname: string): Target {
  const folder = pathname.endsWith("/");
  const trimmed = pathname.replace(/^\/+/, "").replace(/\/$/, "");
  if (trimmed === "") return { name: "", folder: true };
  const segments = trimmed.split("/").map((segment) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw new StoreError("bad_name", `Refused path ${quote(segment)}: bad percent-encoding`);
    }
    if (decoded.includes("/")) {
      throw new StoreError("bad_name", `Refused name ${quote(decoded)}: it contains a slash`);
    }
    return decoded;
  });
  return { name: segments.join("/"), folder };
}

/** Serves GET and HEAD. */
export async function serveRead(
  request: Request,
  url: URL,
  target: Target,
  ctx: HandlerContext,
  exchange: Exchange,
): Promise<Response> {
  exchange.name = target.name === "" ? "/" : target.name;
  if (target.name !== "") {
    try {
      return await serveFile(request, url, target, ctx, exchange);
    } catch (error) {
      // A folder (or a name under which files are listed) is served as a listing below.
      if (!(error instanceof StoreError) || error.code !== "not_a_file") throw error;
    }
  }
  // Here the name is the root, or something the store found that is not a regular file: a
  // folder (an empty one lists as empty).
  const entries = await ctx.store.list();
  const prefix = target.name === "" ? "" : target.name + "/";
  exchange.name = prefix || "/";
  if (!target.folder) {
    return new Response(null, {
      status: 301,
      headers: { location: url.pathname + "/" + url.search },
    });
  }
  if (url.searchParams.has("tar")) {
    return serveArchive(request, target.name, entries, ctx, exchange);
  }
  let body: string;
  let type: string;
  if (wantsJson(request, url)) {
    // Exactly what `ferry list --json` prints, for the files under this folder.
    const under = entries.filter((entry) => entry.name.startsWith(prefix));
    body = safeJson(
      under.map((e) => ({ name: e.name, size: e.size, mtime: new Date(e.mtime).toISOString() })),
      2,
    ) + "\n";
    type = "application/json";
  } else {
    body = renderListing(target.name, childrenOf(entries, target.name), {
      signedIn: ctx.signedIn,
      canUpload: !ctx.readOnly && (ctx.mayWrite ?? true),
      canSignIn: ctx.canSignIn,
      archives: ctx.archives,
    });
    type = "text/html; charset=utf-8";
  }
  const bytes = new TextEncoder().encode(body);
  exchange.bytes = request.method === "HEAD" ? 0 : bytes.length;
  return new Response(request.method === "HEAD" ? null : bytes, {
    headers: {
      "content-type": type,
      "content-length": String(bytes.length),
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "content-security-policy": PAGE_CSP,
      vary: "accept, cookie",
    },
  });
}

/** The page may run only its own embedded script and style, and may send forms only home. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; " +
  "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
  "base-uri 'none'";

/** `?tar`: the folder's files as one streamed tar archive, named after the folder. */
function serveArchive(
  request: Request,
  folder: string,
  entries: ListEntry[],
  ctx: HandlerContext,
  exchange: Exchange,
): Response {
  if (!ctx.archives) {
    throw new HttpError(403, "Folder archives are off on this server (--http-archives)");
  }
  const prefix = folder === "" ? "" : folder + "/";
  const under = entries.filter((entry) => entry.name.startsWith(prefix));
  const top = folder === "" ? "ferry" : folder.split("/").at(-1)!;
  const headers = {
    "content-type": "application/x-tar",
    "content-disposition": `attachment; filename*=UTF-8''${encodeRfc5987(top)}.tar`,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
  exchange.result = `tar of ${under.length} files`;
  if (request.method === "HEAD") return new Response(null, { headers });
  const done = Promise.withResolvers<void>();
  exchange.streaming(done.promise);
  const body = tarStream(ctx.store, under, prefix, top + "/", {
    signal: exchange.cut.signal,
    onBytes: (bytes) => exchange.bytes += bytes,
    onEnd: (result) => {
      exchange.result = `tar of ${under.length} files: ${result}`;
      done.resolve();
    },
  });
  return new Response(body, { headers });
}

/** Size of each read from a file for a download. */
const READ_CHUNK = 1 << 20;

async function serveFile(
  request: Request,
  url: URL,
  target: Target,
  ctx: HandlerContext,
  exchange: Exchange,
): Promise<Response> {
  const opened = await ctx.store.openFile(target.name);
  let handedOver = false;
  try {
    if (target.folder) {
      throw new StoreError("not_found", `No such folder: ${quote(target.name)} is a file`);
    }
    const v = validatorsOf(opened.size, opened.mtime);
    const baseHeaders: Record<string, string> = {
      etag: v.etag,
      "last-modified": v.lastModified,
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
      "x-content-type-options": "nosniff",
      "cache-control": "no-cache",
    };
    if (url.searchParams.has("download")) {
      const last = target.name.split("/").at(-1)!;
      baseHeaders["content-disposition"] = `attachment; filename*=UTF-8''${encodeRfc5987(last)}`;
    }
    if (notModified(request.headers, v)) {
      exchange.result = "not modified";
      return new Response(null, { status: 304, headers: baseHeaders });
    }
    let range: ByteRange | null | "unsatisfiable" = null;
    if (ifRangeMatches(request.headers, v)) {
      range = parseRange(request.headers.get("range"), opened.size);
    } else if (request.headers.has("range")) {
      exchange.result = "ok (If-Range did not match: whole file)";
    }
    if (range === "unsatisfiable") {
      exchange.result = "range not satisfiable";
      return new Response(null, {
        status: 416,
        headers: { ...baseHeaders, "content-range": `bytes */${opened.size}` },
      });
    }
    const { start, end } = range ?? { start: 0, end: opened.size };
    const headers: Record<string, string> = {
      ...baseHeaders,
      "content-length": String(end - start),
    };
    if (range) {
      headers["content-range"] = `bytes ${start}-${end - 1}/${opened.size}`;
      exchange.result = `ok (range ${start}-${end - 1} of ${opened.size})`;
    }
    const status = range ? 206 : 200;
    if (request.method === "HEAD" || end === start) {
      return new Response(null, { status, headers });
    }
    const body = fileBody(opened.file, start, end, ctx, exchange);
    handedOver = true;
    return new Response(body, { status, headers });
  } finally {
    if (!handedOver) opened.file.close();
  }
}

function encodeRfc5987(text: string): string {
  return encodeURIComponent(text).replace(/['()*]/g, (c) => "%" + c.charCodeAt(0).toString(16));
}

/**
 * The bytes `start` to `end` of a file as a stream, read as the client takes them. A client that
 * takes nothing for the idle timeout, or a server cut, ends the response.
 */
function fileBody(
  file: Deno.FsFile,
  start: number,
  end: number,
  ctx: HandlerContext,
  exchange: Exchange,
): ReadableStream<Uint8Array> {
  let position = start;
  let closed = false;
  const done = Promise.withResolvers<void>();
  exchange.streaming(done.promise);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finish = (result?: string) => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    if (result) exchange.result = result;
    try {
      file.close();
    } catch {
      // Already closed.
    }
    done.resolve();
  };
  let control: ReadableStreamDefaultController<Uint8Array>;
  const arm = () => {
    if (ctx.idleTimeoutMs <= 0) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      control.error(new Error("idle"));
      finish(`cut (idle for ${ctx.idleTimeoutMs / 1000} s)`);
    }, ctx.idleTimeoutMs);
  };
  const onCut = () => {
    try {
      control.error(new Error("cut"));
    } catch {
      // Already finished.
    }
    finish(`cut (${String(exchange.cut.signal.reason ?? "server")})`);
  };
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      control = controller;
      exchange.cut.signal.addEventListener("abort", onCut, { once: true });
      if (position > 0) await file.seek(position, Deno.SeekMode.Start);
      arm();
    },
    async pull(controller) {
      arm();
      const buffer = new Uint8Array(Math.min(READ_CHUNK, end - position));
      let filled = 0;
      while (filled < buffer.length) {
        const n = await file.read(buffer.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      if (closed) return;
      if (filled === 0) {
        // The file shrank under us: the length promised cannot be kept; end the response short.
        controller.error(new Error("file shrank while it was being sent"));
        finish("failed (file shrank while it was being sent)");
        return;
      }
      position += filled;
      exchange.bytes += filled;
      controller.enqueue(filled === buffer.length ? buffer : buffer.subarray(0, filled));
      if (position >= end) {
        controller.close();
        finish();
      }
    },
    cancel() {
      finish(`interrupted (client went away after ${exchange.bytes} bytes)`);
    },
  }, { highWaterMark: 1 });
}

/** A cut upload shorter than this is not worth keeping for a resume (as for ferry put). */
const KEEP_MIN_BYTES = 1 << 20;

function tooLarge(size: number, limit: number): StoreError {
  return new StoreError("too_large", overLimitMessage(limit, size));
}

/**
 * Serves PUT: the body becomes the file `target.name`, staged and renamed into place only once it
 * has all arrived, its length matches and any digest sent matches. `?overwrite` or `If-Match: *`
 * replaces an existing file; `If-None-Match: *` (the default anyway) answers 412 when it exists.
 * A `Content-Range: bytes N-LAST/SIZE` continues an interrupted upload kept at offset N.
 */
export async function serveWrite(
  request: Request,
  url: URL,
  target: Target,
  ctx: HandlerContext,
  exchange: Exchange,
): Promise<Response> {
  exchange.name = target.name || "/";
  if (ctx.readOnly) throw new StoreError("read_only", "Server is read-only: uploads are refused");
  if (target.folder || target.name === "") {
    throw new HttpError(
      400,
      "PUT needs a file name: curl -T FILE http://HOST:PORT/folder/ adds it for you",
    );
  }
  let partial;
  try {
    partial = parseContentRange(request.headers.get("content-range"));
  } catch (error) {
    throw new HttpError(400, describeError(error));
  }
  const lengthField = request.headers.get("content-length");
  const length = lengthField === null ? null : Number(lengthField);
  if (length !== null && !Number.isSafeInteger(length)) {
    throw new HttpError(400, "Bad Content-Length");
  }
  if (partial && length !== null && length !== partial.end - partial.start) {
    throw new HttpError(400, "Content-Length does not match Content-Range");
  }
  if (partial && partial.end !== partial.size) {
    throw new HttpError(400, "A resumed upload must send the rest of the file, to its end");
  }
  // The whole file's size, when known: the resume key, and what --max-size judges.
  const size = partial ? partial.size : length;
  if (ctx.maxSize !== undefined && size !== null && size > ctx.maxSize) {
    throw tooLarge(size, ctx.maxSize);
  }
  const contentDigest = parseDigestField("Content-Digest", request.headers.get("content-digest"));
  const reprDigest = parseDigestField("Repr-Digest", request.headers.get("repr-digest"));
  const ifNoneMatch = request.headers.get("if-none-match")?.trim();
  const ifMatch = request.headers.get("if-match")?.trim();
  if (ifMatch !== undefined && ifMatch !== "*") {
    throw new HttpError(
      501,
      "Only If-Match: * is supported (replace an existing file); use ?overwrite otherwise",
    );
  }
  const overwrite = ifNoneMatch !== "*" && (url.searchParams.has("overwrite") || ifMatch === "*");
  if (ifMatch === "*") {
    // Replace only what exists: the store resolves it (a folder or a missing file is refused).
    await ctx.store.resolveFile(target.name).catch((error) => {
      if (error instanceof StoreError && error.code === "not_found") {
        throw new HttpError(412, `If-Match: * but there is no file ${quote(target.name)}`);
      }
      throw error;
    });
  }
  let upload: Upload;
  try {
    upload = await ctx.store.beginUpload(target.name, {
      overwrite,
      resume: partial !== null,
      size,
    });
  } catch (error) {
    if (error instanceof StoreError && error.code === "exists" && ifNoneMatch === "*") {
      throw new HttpError(412, error.message);
    }
    if (
      error instanceof StoreError && error.code === "exists" &&
      error.message.startsWith("File exists")
    ) {
      throw new StoreError("exists", `${error.message} (add ?overwrite to replace it)`);
    }
    throw error;
  }
  const startAt = partial?.start ?? 0;
  if (upload.offset !== startAt) {
    // Nothing kept at that offset: put back what is kept (if anything) and say where it stands.
    const offset = upload.offset;
    if (offset > 0) await upload.keep().catch(() => {});
    else await upload.discard();
    throw new HttpError(
      416,
      `Cannot resume at ${startAt}: the server holds ${offset} bytes of ${quote(target.name)}`,
      { "upload-offset": String(offset) },
    );
  }
  let received = 0;
  try {
    const content = contentDigest ? await startDigestCheck(contentDigest) : null;
    const repr = reprDigest ? await startDigestCheck(reprDigest) : null;
    if (repr && upload.offset > 0) await hashPrefix(upload.file, upload.offset, repr);
    if (!request.body) throw new HttpError(400, "PUT without a body");
    await readBody(request.body, ctx, exchange, async (chunk) => {
      received += chunk.length;
      const total = upload.offset + received;
      if (ctx.maxSize !== undefined && total > ctx.maxSize) throw tooLarge(total, ctx.maxSize);
      if (size !== null && total > size) {
        throw new HttpError(400, "More bytes arrived than Content-Length announced");
      }
      content?.update(chunk);
      repr?.update(chunk);
      await upload.write(chunk);
      exchange.bytes = received;
    });
    if (size !== null && upload.offset + received !== size) {
      throw new HttpInterruption(`${upload.offset + received} of ${size} bytes arrived`);
    }
    content?.verify();
    repr?.verify();
    await upload.commit();
    const total = upload.offset + received;
    const resumed = upload.offset > 0 ? ` (resumed from ${upload.offset})` : "";
    exchange.result = `ok${resumed}`;
    return new Response(`Stored ${quote(target.name)}: ${total} bytes${resumed}\n`, {
      status: 201,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  } catch (error) {
    exchange.bytes = received;
    const interrupted = error instanceof HttpInterruption;
    if (
      interrupted && !exchange.cut.signal.aborted && size !== null &&
      upload.offset + received >= KEEP_MIN_BYTES
    ) {
      // What arrived before the client left is good: keep it for a resume, as ferry put does.
      const kept = await upload.keep().catch(() => null);
      exchange.result = kept?.kept
        ? `interrupted, kept for resume at ${upload.offset + received} (${error.message})`
        : `interrupted, discarded (${error.message})`;
    } else {
      await upload.discard();
      exchange.result = interrupted
        ? `interrupted, discarded (${error.message})`
        : `refused (${statusOf(error).message})`;
    }
    throw error;
  }
}

/** The client went away, or stopped sending, before the body was complete. */
export class HttpInterruption extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "HttpInterruption";
  }
}

/** Hashes the first `bytes` of a resumed upload's staging file into `check`. */
async function hashPrefix(file: Deno.FsFile, bytes: number, check: DigestCheck): Promise<void> {
  await file.seek(0, Deno.SeekMode.Start);
  const buffer = new Uint8Array(READ_CHUNK);
  let left = bytes;
  while (left > 0) {
    const n = await file.read(buffer.subarray(0, Math.min(buffer.length, left)));
    if (n === null) throw new Error("Kept upload is shorter than recorded");
    check.update(buffer.subarray(0, n));
    left -= n;
  }
  await file.seek(bytes, Deno.SeekMode.Start);
}

/**
 * Reads a request body chunk by chunk. A body that stops for the idle timeout, a client that
 * goes away and a server cut all end it with {@link HttpInterruption}.
 */
async function readBody(
  body: ReadableStream<Uint8Array>,
  ctx: HandlerContext,
  exchange: Exchange,
  onChunk: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const reader = body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Why the body was stopped, if the server stopped it. (Not a race of each read against one
  // long-lived promise: every race would hang a reaction, and its chunk, on that promise.)
  let stopped: HttpInterruption | undefined;
  const stop = (why: HttpInterruption) => {
    stopped ??= why;
    reader.cancel(why).catch(() => {});
  };
  const arm = () => {
    if (ctx.idleTimeoutMs <= 0) return;
    clearTimeout(timer);
    timer = setTimeout(
      () => stop(new HttpInterruption(`idle for ${ctx.idleTimeoutMs / 1000} s`)),
      ctx.idleTimeoutMs,
    );
  };
  const onCut = () =>
    stop(new HttpInterruption(String(exchange.cut.signal.reason ?? "server cut")));
  exchange.cut.signal.addEventListener("abort", onCut, { once: true });
  try {
    while (true) {
      arm();
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await reader.read();
      } catch (error) {
        throw stopped ?? new HttpInterruption(`client went away: ${describeError(error)}`);
      }
      if (stopped) throw stopped;
      if (step.done) return;
      await onChunk(step.value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
    exchange.cut.signal.removeEventListener("abort", onCut);
  }
}
