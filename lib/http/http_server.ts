/**
 * The HTTP listener beside the ferry port (`--http`): Deno.serve over the same store, the
 * server's limits applied as far as Deno.serve lets them be (requests in flight over the
 * connection limit are answered 503; transfers idle for the idle timeout are cut), one log line
 * per request, and a shutdown that lets transfers finish for a grace period, then cuts them.
 *
 * @module
 */

import type { FileStore } from "../file_store.ts";
import { quote } from "../remote_name.ts";
import { formatAddr, isLoopback, normalizeHost } from "../connection.ts";
import { isIP } from "node:net";
import { type Access, authorize, crossSite, SAFE_METHODS } from "./access.ts";
import { PAGE_SCRIPT } from "./page_script.ts";
import {
  errorResponse,
  Exchange,
  type HandlerContext,
  HttpError,
  statusOf,
  targetOf,
} from "./handler.ts";
import { serveRead } from "./folder_read.ts";
import { serveTreeChange } from "./tree_change.ts";
import { serveWrite } from "./upload.ts";

/** Options for {@link startHttpServer}. */
export interface HttpServerOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** PEM certificate chain and key: serve HTTPS. */
  tls?: { cert: string; key: string };
  /** The served folder, shared with the ferry port. */
  store: FileStore;
  /** Where log lines go. */
  log: (line: string) => void;
  /** Refuse uploads. */
  readOnly?: boolean;
  /** Largest upload accepted, in bytes. */
  maxSize?: number;
  /** Requests served at once; more are answered 503 (default 64). */
  maxConnections?: number;
  /** Cut a transfer that moves no byte for this long, in ms (default 120000; 0 never). */
  idleTimeoutMs?: number;
  /** Who may do what; default: anyone may do anything the other options allow. */
  access?: Access;
  /** Serve folders as streamed tar archives, `?tar` (default false). */
  archives?: boolean;
  /** A bigger folder's page shows this many entries at a time (default 1,000). */
  pageSize?: number;
}

/** A running HTTP listener. */
export interface RunningHttpServer {
  /** Address actually listened on. */
  addr: Deno.NetAddr;
  /** The base URL, `http://HOST:PORT/` or `https://…`. */
  url: string;
  /** Stops at once, cutting every request in flight. */
  close(): Promise<void>;
  /** Stops accepting; requests in flight have `graceMs` to finish, then are cut. */
  shutdown(graceMs: number): Promise<number>;
}

function stamp(): string {
  return new Date().toISOString();
}

/**
 * Starts serving the store over HTTP (HTTPS with `tls`).
 *
 * @example
 * ```ts
 * import { FileStore } from "../file_store.ts";
 * const store = await FileStore.open("./share", { create: true });
 * const http = await startHttpServer({ hostname: "127.0.0.1", port: 0, store, log: console.error });
 * console.log(http.url);
 * await http.close();
 * ```
 */
export function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const maxConnections = options.maxConnections ?? 64;
  const localOnly = isLoopback(options.hostname);
  const base: Omit<HandlerContext, "signedIn" | "mayWrite" | "canSignIn"> = {
    store: options.store,
    readOnly: options.readOnly ?? false,
    maxSize: options.maxSize,
    idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
    archives: options.archives ?? false,
    pageSize: options.pageSize,
  };
  const active = new Set<Exchange>();
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const handler = async (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
    const started = performance.now();
    const peer = formatAddr(info.remoteAddr);
    const url = new URL(request.url);
    const exchange = new Exchange();
    let response: Response;
    if (active.size >= maxConnections) {
      exchange.result = `refused: busy (${maxConnections} requests)`;
      response = errorResponse(
        new HttpError(
          503,
          `Server busy: all ${maxConnections} connections in use, try again later`,
          { "retry-after": "5" },
        ),
        request,
        url,
      );
    } else {
      active.add(exchange);
      try {
        checkHost(url, localOnly);
        response = await route(request, url, info, base, options.access, exchange);
      } catch (error) {
        if (exchange.result === "ok") exchange.result = `refused (${statusOf(error).message})`;
        response = errorResponse(error, request, url);
      }
    }
    exchange.finished.then(() => {
      active.delete(exchange);
      const seconds = ((performance.now() - started) / 1000).toFixed(3);
      const name = exchange.name === "-" ? "-" : quote(exchange.name);
      options.log(
        `${stamp()} ${peer} http ${request.method} ${name} ${response.status} ` +
          `${exchange.bytes} bytes ${exchange.result} ${seconds}s`,
      );
    });
    return response;
  };
  const serveOptions = {
    hostname: options.hostname,
    port: options.port,
    onListen: (addr: Deno.NetAddr) => listening.resolve(addr),
    onError: (error: unknown) =>
      errorResponse(error, new Request("http://x/"), new URL("http://x/")),
  };
  const server = options.tls
    ? Deno.serve({ ...serveOptions, cert: options.tls.cert, key: options.tls.key }, handler)
    : Deno.serve(serveOptions, handler);
  const cutAll = (reason: string) => {
    for (const exchange of active) exchange.cut.abort(reason);
  };
  return listening.promise.then((addr) => {
    return {
      addr,
      url: `${options.tls ? "https" : "http"}://${formatAddr(addr)}/`,
      async close() {
        const stopping = server.shutdown();
        cutAll("server shutting down");
        await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, 1000))]);
      },
      async shutdown(graceMs: number) {
        const stopping = server.shutdown();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise((resolve) => timer = setTimeout(resolve, graceMs));
        await Promise.race([stopping, grace]);
        clearTimeout(timer);
        const cut = active.size;
        cutAll("server shutting down");
        // Deno.serve cannot close a connection by force: a client that keeps one open after its
        // request was cut must not keep the server from stopping.
        await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, 1000))]);
        return cut;
      },
    };
  });
}

/**
 * On a listener for this machine only, refuses a request whose Host is a name other than
 * `localhost`: a web page the user visits can point its own name at 127.0.0.1 (DNS rebinding)
 * and then read and change the served folder as the same origin, which no Origin check stops.
 * An address (`127.0.0.1`, `[::1]`) or `localhost` is what a browser on this machine sends.
 */
function checkHost(url: URL, localOnly: boolean): void {
  if (!localOnly) return;
  const host = normalizeHost(url.hostname);
  if (isIP(host) !== 0 || host === "localhost" || host.endsWith(".localhost")) return;
  throw new HttpError(
    403,
    `Refused: this server is for this machine only, and ${quote(host)} is not its address ` +
      "(open it as 127.0.0.1 or localhost)",
  );
}

async function route(
  request: Request,
  url: URL,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  base: Omit<HandlerContext, "signedIn" | "mayWrite" | "canSignIn">,
  access: Access | undefined,
  exchange: Exchange,
): Promise<Response> {
  const method = request.method;
  if ((method === "GET" || method === "HEAD") && url.searchParams.get("asset") === "page.js") {
    // The page's script holds no data: served to anyone, as the sign-in form is.
    exchange.name = "page.js";
    return new Response(method === "HEAD" ? null : PAGE_SCRIPT, {
      headers: {
        "content-type": "text/javascript; charset=utf-8",
        "cache-control": "public, max-age=86400",
        "x-content-type-options": "nosniff",
      },
    });
  }
  const granted = access
    ? await authorize(request, url, info, access, exchange)
    : { response: null, signedIn: false, mayWrite: true };
  if (!access && !SAFE_METHODS.has(method) && crossSite(request, url)) {
    // Without a token anyone may change files, but not through a visitor's browser from
    // another site (a form POSTs there with no preflight; a page on the LAN is reachable).
    throw new HttpError(403, "Refused: the request was sent from another site");
  }
  if (granted.response) return granted.response;
  const ctx: HandlerContext = {
    ...base,
    signedIn: granted.signedIn,
    mayWrite: granted.mayWrite,
    canSignIn: access !== undefined && !granted.mayWrite,
  };
  const target = targetOf(url.pathname);
  const call = { request, url, target, ctx, exchange };
  switch (method) {
    case "GET":
    case "HEAD":
      if (url.searchParams.has("resume")) return await serveKeptOffset(target.name, ctx, exchange);
      return await serveRead(call);
    case "PUT":
      return await serveWrite(call);
    case "DELETE":
    case "MOVE":
    case "MKCOL":
      return await serveTreeChange(call);
    case "OPTIONS":
      return new Response(null, { status: 204, headers: { allow: ALLOW } });
    default:
      throw new HttpError(405, `Method ${method} is not allowed`, { allow: ALLOW });
  }
}

const ALLOW = "GET, HEAD, PUT, DELETE, MOVE, MKCOL, OPTIONS";

/**
 * `?resume`: how many bytes of an interrupted upload of the name the server keeps, as
 * `Upload-Offset` (and the whole size as `Upload-Length`), for `curl -C OFFSET -T FILE`.
 */
async function serveKeptOffset(
  name: string,
  ctx: HandlerContext,
  exchange: Exchange,
): Promise<Response> {
  exchange.name = name || "/";
  if (ctx.readOnly) throw new HttpError(403, "Server is read-only: uploads are refused");
  const targetName = targetOf("/" + name).name;
  const kept = (await ctx.store.kept.list()).find((entry) => entry.name === targetName);
  if (!kept) {
    throw new HttpError(404, `No interrupted upload of ${quote(name)} is kept`, {
      "upload-offset": "0",
    });
  }
  exchange.result = `kept ${kept.bytes} bytes`;
  return new Response(`${kept.bytes}\n`, {
    headers: {
      "upload-offset": String(kept.bytes),
      ...(kept.size !== null ? { "upload-length": String(kept.size) } : {}),
      "upload-expires": new Date(kept.expiresAt).toUTCString(),
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
    },
  });
}
