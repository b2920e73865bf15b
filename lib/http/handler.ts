/**
 * What an HTTP read does to the served folder: GET and HEAD of a file (ranges, validators) or of a
 * folder (HTML or JSON listing, whole or a page at a time: lib/folder_page.ts; a tar archive);
 * and what every request shares: URLs as store names, store errors as statuses, the request's
 * record for the log. Every name goes through the store's
 * own rules (lib/remote_name.ts: checkName; lib/file_store.ts: resolveFile). Uploads are
 * lib/http/upload.ts.
 *
 * @module
 */

import { describeError, isNoSpace, StoreError } from "../errors.ts";
import type { FileStore } from "../file_store.ts";
import { quote } from "../remote_name.ts";
import type { ErrorCode } from "../protocol.ts";
import { tarStream } from "./tar_stream.ts";
import {
  type ByteRange,
  ifRangeMatches,
  notModified,
  parseRange,
  validatorsOf,
} from "./conditional.ts";
import { IdleTimer } from "../idle_timer.ts";
import {
  type ListingPageOptions,
  ListingPageWriter,
  pageHref,
  renderError,
} from "./listing_page.ts";
import {
  type FolderPage,
  listFolderPage,
  PAGE_SIZE,
  type PageLink,
  type PageRequest,
  parseCursor,
  parseQuery,
} from "../folder_page.ts";
import { SORT_MAX } from "./page_script.ts";
import { ListingWriter } from "../tree_cli.ts";
import { listTree, resolveFolder } from "../tree_store.ts";
import type { TreeListing } from "../tree_listing.ts";
import type { TreeEntry } from "../tree_protocol.ts";

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
   * {@link PAGE_SIZE}); `?json` always lists it whole.
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

/** Serves GET and HEAD. */
export async function serveRead(call: Call): Promise<Response> {
  const { request, url, target, ctx, exchange } = call;
  exchange.name = target.name === "" ? "/" : target.name;
  if (target.name !== "") {
    try {
      return await serveFile(call);
    } catch (error) {
      // A folder (or a name under which files are listed) is served as a listing below.
      if (!(error instanceof StoreError) || error.code !== "not_a_file") throw error;
    }
  }
  // Here the name is the root, or something the store found that is not a regular file: a
  // folder, listed by the store's folder listing (as `ferry list`), or nothing (404).
  const dir = target.name === "" ? undefined : target.name;
  const recursive = url.searchParams.has("recursive");
  const json = wantsJson(request, url);
  // The folder is looked up now (a missing one is a 404); it is walked when it is sent. A page
  // shows folders first: the store sorts one folder's names in memory anyway, so it costs nothing.
  const listing = await listTree(ctx.store, {
    dir,
    recursive: json && recursive,
    foldersFirst: !json,
  });
  exchange.name = dir === undefined ? "/" : dir + "/";
  if (!target.folder) {
    return new Response(null, {
      status: 301,
      headers: { location: url.pathname + "/" + url.search },
    });
  }
  if (url.searchParams.has("tar")) {
    return await serveArchive(request, target.name, ctx, exchange);
  }
  const paged = ["page", "after", "q"].some((key) => url.searchParams.has(key));
  if (json && paged) {
    if (recursive) throw new HttpError(400, "?page lists one folder: it cannot go with ?recursive");
    return await servePagedJson(call, dir, pageRequestOf(url, ctx));
  }
  if (json) {
    const writer = new ListingWriter({ json: true, long: false });
    return streamListing(request, listing, exchange, "application/json", {
      head: () => "",
      add: (entries) => writer.add(entries),
      end: () => writer.end(),
    });
  }
  const paging = pageRequestOf(url, ctx);
  const options: ListingPageOptions = {
    signedIn: ctx.signedIn,
    canChange: !ctx.readOnly && (ctx.mayWrite ?? true),
    canSignIn: ctx.canSignIn,
    archives: ctx.archives,
  };
  const html = "text/html; charset=utf-8";
  if (request.method !== "HEAD") {
    // One read of the folder tells whether it fits one page; a bigger one (or a search, or a
    // page after a cursor) is shown a page at a time, in memory bounded by the page's size.
    const page = await listFolderPage(ctx.store, { dir, ...paging });
    if (paged || page.total > paging.size) {
      const writer = new ListingPageWriter(target.name, {
        ...options,
        page: { ...page, size: paging.size, query: paging.query ?? "", sortMax: SORT_MAX },
      });
      return wholeListing(
        writer.head() + writer.add(page.entries) + writer.end(),
        html,
        page,
        exchange,
      );
    }
  }
  const page = new ListingPageWriter(target.name, options);
  return streamListing(request, listing, exchange, html, {
    head: () => page.head(),
    add: (entries) => page.add(entries),
    end: () => page.end(),
  });
}

/**
 * `?json&page` (or `?json` with `?after=` or `?q=`): one page of the folder as an object, its
 * entries as `?json` lists them and the addresses of the first, previous, next and last pages
 * (null where there is none), for a script that walks a big folder a page at a time.
 */
async function servePagedJson(call: Call, dir: string | undefined, paging: PageRequest) {
  const { request, target, ctx, exchange } = call;
  const type = "application/json";
  if (request.method === "HEAD") return new Response(null, { headers: listingHeaders(type) });
  const page = await listFolderPage(ctx.store, { dir, ...paging });
  const query = paging.query ?? "";
  const href = (to: PageLink) => {
    if (to === undefined) return null;
    const path = pageHref(target.name, to, query);
    return path + (path.includes("?") ? "&" : "?") + "json";
  };
  const writer = new ListingWriter({ json: true, long: false });
  const head = {
    total: page.total,
    matching: page.matching,
    before: page.before,
    pageSize: paging.size,
    first: href(null),
    previous: page.before === 0 ? null : href(page.previous),
    next: href(page.next),
    last: href(page.last),
  };
  const text = JSON.stringify(head, null, 2).replace(/\n}$/, ',\n  "entries": ') +
    (writer.add(page.entries) + writer.end()).trimEnd().replace(/\n/g, "\n  ") + "\n}\n";
  return wholeListing(text, type, page, exchange);
}

/** A page of a folder, its text made whole (it is no bigger than the page), as the answer. */
function wholeListing(
  text: string,
  type: string,
  page: FolderPage,
  exchange: Exchange,
): Response {
  const body = new TextEncoder().encode(text);
  exchange.bytes = body.length;
  exchange.result = `ok (page: ${page.entries.length} of ${page.matching} entries)`;
  return new Response(body, { headers: listingHeaders(type) });
}

/**
 * The page a browser asks for: `?after=` (a cursor, lib/folder_page.ts) and `?q=` (a search by
 * name), checked; a bad one is refused (400) before the folder is read.
 */
function pageRequestOf(url: URL, ctx: HandlerContext): PageRequest {
  const after = url.searchParams.get("after");
  const query = url.searchParams.get("q");
  return {
    after: after === null ? undefined : parseCursor(after),
    query: query === null ? undefined : parseQuery(query) || undefined,
    size: ctx.pageSize ?? PAGE_SIZE,
  };
}

/** The text of a streamed listing, a piece at a time: before, for each batch, and after. */
interface ListingText {
  head(): string;
  add(entries: TreeEntry[]): string;
  end(): string;
}

/**
 * A listing written as the folder is walked (lib/tree_listing.ts), so a folder or tree of any size
 * is never held whole: `?json`, exactly as `ferry list DIR --json` (with ?recursive, `ferry list
 * -r DIR --json`) prints it, or the HTML page, its head at once, its rows as they are listed, its
 * foot at the end. Chunked, with no `Content-Length`; a walk that fails part-way cuts the
 * response, so the client sees it unfinished rather than a short listing that looks whole.
 */
function streamListing(
  request: Request,
  listing: TreeListing,
  exchange: Exchange,
  type: string,
  text: ListingText,
): Response {
  const headers = listingHeaders(type);
  if (request.method === "HEAD") return new Response(null, { headers });
  const batches = listing[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  const done = Promise.withResolvers<void>();
  exchange.streaming(done.promise);
  const finish = (result?: string) => {
    if (result) exchange.result = result;
    done.resolve();
  };
  exchange.cut.signal.addEventListener("abort", () => {
    batches.return?.().catch(() => {});
    finish(`cut (${String(exchange.cut.signal.reason ?? "server")})`);
  }, { once: true });
  let started = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        // The head goes out before the walk's first batch, so a browser starts drawing at once.
        if (!started) {
          started = true;
          const head = text.head();
          if (head) {
            const bytes = encoder.encode(head);
            exchange.bytes += bytes.length;
            controller.enqueue(bytes);
            return;
          }
        }
        const next = await batches.next();
        const bytes = encoder.encode(next.done ? text.end() : text.add(next.value));
        exchange.bytes += bytes.length;
        controller.enqueue(bytes);
        if (next.done) {
          controller.close();
          finish();
        }
      } catch (error) {
        controller.error(error);
        finish(`failed (${describeError(error)})`);
      }
    },
    cancel() {
      batches.return?.().catch(() => {});
      finish("interrupted (client went away)");
    },
  }, { highWaterMark: 1 });
  return new Response(body, { headers });
}

/** The headers of a listing, whole or paged, HTML or JSON. */
function listingHeaders(type: string): Record<string, string> {
  return {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "content-security-policy": PAGE_CSP,
    vary: "accept, cookie",
  };
}

/** The page may run only its own embedded script and style, and may send forms only home. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; " +
  "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
  "base-uri 'none'";

/**
 * `?tar`: the folder's files and folders (empty ones too) as one streamed tar archive, named
 * after the folder.
 */
async function serveArchive(
  request: Request,
  folder: string,
  ctx: HandlerContext,
  exchange: Exchange,
): Promise<Response> {
  if (!ctx.archives) {
    throw new HttpError(403, "Folder archives are off on this server (--http-archives)");
  }
  const dir = folder === "" ? undefined : folder;
  const prefix = folder === "" ? "" : folder + "/";
  // The folder itself comes first, so that even an empty one arrives as a folder.
  const self: TreeEntry = {
    name: folder,
    type: "dir",
    size: 0,
    mtime: (await Deno.stat(await resolveFolder(ctx.store, dir))).mtime?.getTime() ?? 0,
  };
  const listing = await listTree(ctx.store, { dir, recursive: true });
  const top = folder === "" ? "ferry" : folder.split("/").at(-1)!;
  const headers = {
    "content-type": "application/x-tar",
    "content-disposition": `attachment; filename*=UTF-8''${encodeRfc5987(top)}.tar`,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
  exchange.result = "tar";
  if (request.method === "HEAD") return new Response(null, { headers });
  const done = Promise.withResolvers<void>();
  exchange.streaming(done.promise);
  // The listing is walked as the archive is written, never held whole.
  async function* entries(): AsyncGenerator<TreeEntry[]> {
    yield [self];
    yield* listing;
  }
  const body = tarStream(ctx.store, entries(), prefix, top + "/", {
    signal: exchange.cut.signal,
    onBytes: (bytes) => exchange.bytes += bytes,
    onEnd: (result, { files, folders }) => {
      exchange.result = `tar of ${files} files, ${folders} folders: ${result}`;
      done.resolve();
    },
  });
  return new Response(body, { headers });
}

/** Size of each read from a file for a download. */
const READ_CHUNK = 1 << 20;

async function serveFile(call: Call): Promise<Response> {
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
