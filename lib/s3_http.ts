/**
 * The bodies of downloads from the S3 store, read over HTTP/1.1 connections this module keeps
 * itself, straight into the reader's buffers. `fetch` hands a body on in chunks of 64 KiB at
 * most, each through a stream's promise machinery: reading a GiB that way cost the server about
 * as much CPU as everything else it does to serve it. A socket read here takes what the kernel
 * has, hundreds of KiB at a time, into the buffer that is then sent. Owns the connections (kept
 * alive, a few idle at most), the request line, and parsing the response head; signing stays
 * aws4fetch's (lib/s3_bucket.ts), and every other request goes through `fetch`.
 *
 * Only what a GET of an object needs: a body with a Content-Length (a store that sends another
 * kind of body for a ranged GET is refused), and no proxy (the proxy variables `fetch` honours
 * are not read here).
 *
 * @module
 */

import { normalizeHost } from "./connection.ts";

/** Bytes a response head may take before the store is refused: S3's are about 1 KiB. */
const MAX_HEAD = 64 * 1024;
/** Bytes of an error's body read, for its message. */
const MAX_ERROR_BODY = 64 * 1024;
const CRLFCRLF = [13, 10, 13, 10];

/** Something wrong with what the store sent, as HTTP. */
export class BadResponseError extends Error {
  override name = "BadResponseError";
}

/** A response whose body is read into the caller's buffers. */
export interface RangeBody {
  /** HTTP status. */
  status: number;
  /** Whether the status is 2xx. */
  ok: boolean;
  /** Response headers. */
  headers: Headers;
  /** Bytes in the body (its Content-Length). */
  length: number;
  /** Reads the next bytes of the body into `into`; null once it is all read. */
  read(into: Uint8Array): Promise<number | null>;
  /** Drops the rest of the body (the connection with it); safe to call more than once. */
  cancel(): void;
}

function indexOfCrlfCrlf(bytes: Uint8Array, end: number, from: number): number {
  for (let i = Math.max(0, from); i + 3 < end; i++) {
    if (
      bytes[i] === CRLFCRLF[0] && bytes[i + 1] === CRLFCRLF[1] && bytes[i + 2] === CRLFCRLF[2] &&
      bytes[i + 3] === CRLFCRLF[3]
    ) return i;
  }
  return -1;
}

/** Whether a header value may go on the wire as it is. */
function safeHeader(text: string): boolean {
  return !/[\r\n]/.test(text);
}

/**
 * HTTP/1.1 GETs to one endpoint over kept-alive connections.
 *
 * @example
 * ```ts ignore
 * const http = new S3Http(new URL("http://127.0.0.1:7480"));
 * const body = await http.get(new URL("http://127.0.0.1:7480/bucket/key"), headers, signal);
 * const buffer = new Uint8Array(body.length);
 * for (let n = 0; n < buffer.length;) n += (await body.read(buffer.subarray(n))) ?? Infinity;
 * ```
 */
export class S3Http {
  readonly #endpoint: URL;
  readonly #maxIdle: number;
  #idle: Deno.Conn[] = [];

  /** `maxIdle`: connections kept open between requests (default 8). */
  constructor(endpoint: URL, maxIdle = 8) {
    this.#endpoint = endpoint;
    this.#maxIdle = maxIdle;
  }

  async #connect(): Promise<Deno.Conn> {
    const url = this.#endpoint;
    const tls = url.protocol === "https:";
    const hostname = normalizeHost(url.hostname);
    const port = Number(url.port) || (tls ? 443 : 80);
    const conn = tls
      ? await Deno.connectTls({ hostname, port })
      : await Deno.connect({ hostname, port });
    if ("setNoDelay" in conn) conn.setNoDelay(true);
    return conn;
  }

  #release(conn: Deno.Conn): void {
    if (this.#idle.length < this.#maxIdle) this.#idle.push(conn);
    else conn.close();
  }

  /** Closes the idle connections. */
  close(): void {
    for (const conn of this.#idle.splice(0)) conn.close();
  }

  /**
   * Sends `GET url` with `headers` (signed already) and reads the response head. An idle
   * connection the store has closed meanwhile is replaced once. Aborting `signal` closes the
   * connection, which ends any read under way.
   */
  async get(url: URL, headers: Headers, signal: AbortSignal): Promise<RangeBody> {
    let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
    for (const [name, value] of headers) {
      if (!safeHeader(name) || !safeHeader(value)) throw new BadResponseError("bad header");
      if (name !== "host") head += `${name}: ${value}\r\n`;
    }
    const request = new TextEncoder().encode(head + "\r\n");
    for (let attempt = 0;; attempt++) {
      signal.throwIfAborted();
      const reused = this.#idle.pop();
      const conn = reused ?? await this.#connect();
      const abort = () => conn.close();
      signal.addEventListener("abort", abort, { once: true });
      try {
        return await this.#exchange(conn, request, () => {
          signal.removeEventListener("abort", abort);
        });
      } catch (error) {
        signal.removeEventListener("abort", abort);
        try {
          conn.close();
        } catch {
          // Closed already (by the abort).
        }
        signal.throwIfAborted();
        // A kept connection the store closed while it was idle: once more on a new one.
        if (reused && attempt === 0 && !(error instanceof BadResponseError)) continue;
        throw error;
      }
    }
  }

  async #exchange(conn: Deno.Conn, request: Uint8Array, done: () => void): Promise<RangeBody> {
    for (let sent = 0; sent < request.length;) sent += await conn.write(request.subarray(sent));
    let buffer = new Uint8Array(4096);
    let filled = 0;
    let end = -1;
    while (end < 0) {
      if (filled === buffer.length) {
        if (buffer.length >= MAX_HEAD) throw new BadResponseError("response head too long");
        const bigger = new Uint8Array(buffer.length * 4);
        bigger.set(buffer);
        buffer = bigger;
      }
      const n = await conn.read(buffer.subarray(filled));
      if (n === null) throw new Deno.errors.UnexpectedEof("connection closed before a response");
      end = indexOfCrlfCrlf(buffer, filled + n, filled - 3);
      filled += n;
    }
    const lines = new TextDecoder().decode(buffer.subarray(0, end)).split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]);
    if (!status) throw new BadResponseError("not an HTTP/1.1 response");
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new BadResponseError("malformed header line");
      try {
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      } catch {
        throw new BadResponseError("malformed header line");
      }
    }
    const lengthText = headers.get("content-length");
    if (headers.has("transfer-encoding") || lengthText === null || !/^\d{1,15}$/.test(lengthText)) {
      throw new BadResponseError("a response body without a Content-Length");
    }
    const length = Number(lengthText);
    const keep = !/\bclose\b/i.test(headers.get("connection") ?? "") &&
      lines[0].startsWith("HTTP/1.1");
    // What came in after the head already belongs to the body.
    let early = buffer.subarray(end + 4, filled);
    if (early.length > length) throw new BadResponseError("more bytes than the Content-Length");
    let left = length;
    let finished = false;
    const finish = (reuse: boolean) => {
      if (finished) return;
      finished = true;
      done();
      if (reuse) this.#release(conn);
      else {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
    };
    if (left === 0) finish(keep);
    const code = Number(status[1]);
    return {
      status: code,
      ok: code >= 200 && code < 300,
      headers,
      length,
      read: async (into) => {
        if (left === 0) return null;
        if (finished) throw new Deno.errors.Interrupted("the body was cancelled");
        let n: number;
        if (early.length > 0) {
          n = Math.min(early.length, into.length);
          into.set(early.subarray(0, n));
          early = early.subarray(n);
        } else {
          const got = await conn.read(into.subarray(0, Math.min(into.length, left)));
          if (got === null) {
            finish(false);
            throw new Deno.errors.UnexpectedEof("the store closed the connection mid-body");
          }
          n = got;
        }
        left -= n;
        if (left === 0) finish(keep);
        return n;
      },
      cancel: () => finish(false),
    };
  }
}

/** Reads the rest of a (small) error body as text, at most {@link MAX_ERROR_BODY} bytes. */
export async function errorText(body: RangeBody): Promise<string> {
  const bytes = new Uint8Array(Math.min(body.length, MAX_ERROR_BODY));
  let filled = 0;
  try {
    while (filled < bytes.length) {
      const n = await body.read(bytes.subarray(filled));
      if (n === null) break;
      filled += n;
    }
  } finally {
    body.cancel();
  }
  return new TextDecoder().decode(bytes.subarray(0, filled));
}
