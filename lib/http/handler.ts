/**
 * What an HTTP read does to a file: GET and HEAD (ranges, validators; a folder's are
 * lib/http/folder_read.ts); and what every request shares: URLs as store names, store errors as
 * statuses, the request's record for the log. Every name goes through the store's own rules
 * (lib/remote_name.ts: checkName; lib/file_store.ts: resolveFile). Uploads are
 * lib/http/upload.ts.
 *
 * @module
 */

import { describeError, isNoSpace, StoreError } from "../errors.ts";
import type { FileStore } from "../file_store.ts";
import type { CheckedFile } from "../checked_open.ts";
import { quote } from "../remote_name.ts";
import type { ErrorCode } from "../protocol.ts";
import {
  type ByteRange,
  ifRangeMatches,
  notModified,
  parseRange,
  validatorsOf,
} from "./conditional.ts";
import { IdleTimer } from "../idle_timer.ts";
import { renderError } from "./listing_page.ts";

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
  /**
   * A folder of more entries is shown a page of this many at a time (default
   * 1,000: lib/folder_page.ts `PAGE_SIZE`); `?json` always lists it whole.
   */
  pageSize?: number;
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
  in_progress: 409,
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

/**
 * What each method's handler is given: the request, its URL and the name it is about, the
 * options for this visitor, and the record the log line is made from.
 */
export interface Call {
  request: Request;
  url: URL;
  target: Target;
  ctx: HandlerContext;
  exchange: Exchange;
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

/** The page may run only its own embedded script and style, and may send forms only home. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; " +
  "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
  "base-uri 'none'";

/** Size of each read from a file for a download. */
const READ_CHUNK = 1 << 20;

/**
 * GET and HEAD of a regular file: the download (ranges, validators). Anything else the store
 * finds at the name is refused with `not_a_file`, for lib/http/folder_read.ts to list.
 */
export async function serveFile(call: Call): Promise<Response> {
  const { request, url, target, ctx, exchange } = call;
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

/** A file name as an RFC 5987 `filename*` value: percent-encoded UTF-8. */
export function encodeRfc5987(text: string): string {
  return encodeURIComponent(text).replace(/['()*]/g, (c) => "%" + c.charCodeAt(0).toString(16));
}

/**
 * The bytes `start` to `end` of a file as a stream, read as the client takes them. A client that
 * takes nothing for the idle timeout, or a server cut, ends the response.
 */
function fileBody(
  file: CheckedFile,
  start: number,
  end: number,
  ctx: HandlerContext,
  exchange: Exchange,
): ReadableStream<Uint8Array> {
  let position = start;
  let closed = false;
  const done = Promise.withResolvers<void>();
  exchange.streaming(done.promise);
  let idle: IdleTimer | undefined;
  const finish = (result?: string) => {
    if (closed) return;
    closed = true;
    idle?.stop();
    if (result) exchange.result = result;
    try {
      file.close();
    } catch {
      // Already closed.
    }
    done.resolve();
  };
  let control: ReadableStreamDefaultController<Uint8Array>;
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
      idle = new IdleTimer(ctx.idleTimeoutMs, () => {
        control.error(new Error("idle"));
        finish(`cut (idle for ${ctx.idleTimeoutMs / 1000} s)`);
      });
    },
    async pull(controller) {
      idle?.touch();
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
/** The client went away, or stopped sending, before the body was complete. */
export class HttpInterruption extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "HttpInterruption";
  }
}
