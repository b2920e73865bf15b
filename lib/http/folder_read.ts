/**
 * GET and HEAD of anything: a file goes to its download (lib/http/handler.ts `serveFile`); a
 * folder is answered here, with its listing, HTML or JSON, whole (streamed as it is walked) or a
 * page at a time (lib/folder_page.ts), or with its tar archive (`?tar`).
 *
 * @module
 */

import { describeError, StoreError } from "../errors.ts";
import {
  type Call,
  encodeRfc5987,
  type Exchange,
  type HandlerContext,
  HttpError,
  PAGE_CSP,
  serveFile,
  wantsJson,
} from "./handler.ts";
import { tarStream } from "./tar_stream.ts";
import { type ListingPageOptions, ListingPageWriter, pageHref } from "./listing_page.ts";
import {
  type FolderPage,
  type FolderPageRequest,
  listFolderPage,
  type PageLink,
  type PageRequest,
} from "../folder_page.ts";
import {
  BY_NAME,
  PAGE_SIZE,
  type PageSort,
  parseCursor,
  parseQuery,
  parseSort,
} from "../page_order.ts";
import { ListingWriter } from "../tree_cli.ts";
import { listTree, resolveFolder } from "../tree_store.ts";
import { LISTING_BATCH, type TreeListing } from "../tree_listing.ts";
import type { TreeEntry } from "../tree_protocol.ts";

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
  // The folder is found now, once (a missing one is a 404), and listed from what was found.
  const found = await resolveFolder(ctx.store, dir);
  exchange.name = dir === undefined ? "/" : dir + "/";
  if (!target.folder) {
    return new Response(null, {
      status: 301,
      headers: { location: url.pathname + "/" + url.search },
    });
  }
  if (url.searchParams.has("tar")) {
    return await serveArchive(request, { name: target.name, found }, ctx, exchange);
  }
  // A search or a cursor is always a page; a sort is one for a script (a page object), while a
  // browser's page of a folder that fits one is the whole folder in that order.
  const paged = ["page", "after", "q"].some((key) => url.searchParams.has(key));
  if (json && (paged || url.searchParams.has("sort") || url.searchParams.has("order"))) {
    if (recursive) throw new HttpError(400, "?page lists one folder: it cannot go with ?recursive");
    return await servePagedJson(call, { dir, folder: found, ...pageRequestOf(url, ctx) });
  }
  if (json) {
    // Walked as it is sent (a page is read by lib/folder_page.ts instead).
    const listing = await listTree(ctx.store, { dir, recursive }, found);
    const writer = new ListingWriter({ json: true, long: false });
    return streamListing(request, listing, exchange, "application/json", {
      head: () => "",
      add: (entries) => writer.add(entries),
      end: () => writer.end(),
    });
  }
  const paging = pageRequestOf(url, ctx);
  const sort = paging.sort ?? BY_NAME;
  const options: ListingPageOptions = {
    signedIn: ctx.signedIn,
    canChange: !ctx.readOnly && (ctx.mayWrite ?? true),
    canSignIn: ctx.canSignIn,
    archives: ctx.archives,
    sort,
  };
  const html = "text/html; charset=utf-8";
  if (request.method === "HEAD") return new Response(null, { headers: listingHeaders(html) });
  // One read of the folder tells whether it fits one page and gives its entries, in the order
  // asked for, in memory bounded by the page's size: a folder that fits is shown whole from
  // them; a bigger one (or a search, or a page after a cursor) a page at a time.
  const page = await listFolderPage(ctx.store, { dir, folder: found, ...paging });
  const asPage = paged || page.total > paging.size;
  const writer = new ListingPageWriter(
    target.name,
    asPage
      ? { ...options, page: { ...page, size: paging.size, query: paging.query ?? "" } }
      : options,
  );
  if (asPage) {
    return wholeListing(
      writer.head() + writer.add(page.entries) + writer.end(),
      html,
      page,
      exchange,
    );
  }
  // Written in batches, as a folder's walk would be: the browser draws the head at once.
  return streamListing(request, batchesOf(page.entries), exchange, html, {
    head: () => writer.head(),
    add: (entries) => writer.add(entries),
    end: () => writer.end(),
  });
}

/** A folder's entries, held already, as a listing's batches. */
async function* batchesOf(entries: TreeEntry[]): AsyncGenerator<TreeEntry[]> {
  for (let i = 0; i < entries.length; i += LISTING_BATCH) yield entries.slice(i, i + LISTING_BATCH);
}

/**
 * `?json&page` (or `?json` with `?after=`, `?q=`, `?sort=` or `?order=`): one page of the folder
 * as an object, its entries as `?json` lists them, its order, and the addresses of the first,
 * previous, next and last pages (null where there is none), for a script that walks a big folder
 * a page at a time.
 */
async function servePagedJson(call: Call, paging: FolderPageRequest) {
  const { request, target, ctx, exchange } = call;
  const type = "application/json";
  if (request.method === "HEAD") return new Response(null, { headers: listingHeaders(type) });
  const page = await listFolderPage(ctx.store, paging);
  const query = paging.query ?? "";
  const sort = paging.sort ?? BY_NAME;
  const href = (to: PageLink) => {
    if (to === undefined) return null;
    const path = pageHref(target.name, to, query, sort);
    return path + (path.includes("?") ? "&" : "?") + "json";
  };
  const writer = new ListingWriter({ json: true, long: false });
  const head = {
    total: page.total,
    matching: page.matching,
    before: page.before,
    pageSize: paging.size,
    sort: sort.key,
    order: sort.descending ? "desc" : "asc",
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
 * The page a browser asks for: `?sort=` and `?order=` (lib/page_order.ts), `?after=` (a cursor
 * in that order) and `?q=` (a search by name), checked; a bad one is refused (400) before the
 * folder is read.
 */
function pageRequestOf(url: URL, ctx: HandlerContext): PageRequest & { sort: PageSort } {
  const { searchParams } = url;
  const sort = parseSort(searchParams.get("sort"), searchParams.get("order"));
  const after = searchParams.get("after");
  const query = searchParams.get("q");
  return {
    after: after === null ? undefined : parseCursor(after, sort),
    query: query === null ? undefined : parseQuery(query) || undefined,
    sort,
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

/**
 * `?tar`: the folder's files and folders (empty ones too) as one streamed tar archive, named
 * after the folder.
 */
async function serveArchive(
  request: Request,
  { name: folder, found }: { name: string; found: string },
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
    mtime: (await Deno.stat(found)).mtime?.getTime() ?? 0,
  };
  const listing = await listTree(ctx.store, { dir, recursive: true }, found);
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
