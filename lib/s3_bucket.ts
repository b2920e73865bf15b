/**
 * One bucket (and key prefix) of an S3-compatible object store, spoken to over `fetch` (objects'
 * bodies over lib/s3_http.ts's connections) with requests signed by aws4fetch: the requests
 * ferry's S3 store needs, each under a timeout, and
 * their failures turned into one-line {@link StoreError}s. Knows nothing of ferry's names or
 * guarantees; lib/s3_store.ts builds those on it.
 *
 * @module
 */

import { AwsClient } from "aws4fetch";
import { createHash } from "node:crypto";
import { describeError, StoreError } from "./errors.ts";
import { quote } from "./remote_name.ts";
import type { S3Credentials, S3Location } from "./s3_config.ts";
import { BadResponseError, errorText, type RangeBody, S3Http } from "./s3_http.ts";

/** Options for {@link S3Bucket}. */
export interface S3BucketOptions extends S3Location {
  /** Base URL of the store, `http(s)://HOST[:PORT]`; buckets are addressed path-style. */
  endpoint: string;
  /** Region the requests are signed for (default `us-east-1`). */
  region?: string;
  /** Keys that sign requests. */
  credentials: S3Credentials;
  /** Longest wait for any one request, in milliseconds. */
  timeoutMs: number;
}

/** Details of one request. */
export interface BucketRequest {
  /** Query parameters; an empty value is sent as a bare name (`?uploads`). */
  query?: Record<string, string>;
  /** Headers besides the signature's. */
  headers?: Record<string, string>;
  /** Body. */
  body?: Uint8Array | string;
  /** Statuses the caller handles itself; other non-2xx statuses throw. */
  expect?: number[];
  /** Aborts the request (its body included) besides the timeout. */
  signal?: AbortSignal;
  /** The response body is bytes, not text (read under the timeout all the same). */
  binary?: boolean;
}

/** An object, as a listing shows it. */
export interface BucketObject {
  /** Key, relative to the prefix. */
  key: string;
  /** Bytes. */
  size: number;
  /** Last modified, milliseconds since the epoch (the store's clock). */
  mtime: number;
}

/** A multipart upload in progress. */
export interface BucketUpload {
  /** Key, relative to the prefix. */
  key: string;
  /** Upload id. */
  id: string;
  /** When it began, milliseconds since the epoch (the store's clock). */
  initiated: number;
}

/** Encodes a key for a URL path, segment by segment (RFC 3986, as S3 signs it). */
export function encodeKey(key: string): string {
  return key.split("/").map((segment) =>
    encodeURIComponent(segment).replace(
      /[!'()*]/g,
      (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
    )
  ).join("/");
}

function xmlText(text: string): string {
  return text.replace(/&(#x?[0-9a-fA-F]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[entity]!;
  });
}

/** Every `<tag>…</tag>` in `xml`, as the raw text inside. */
export function xmlAll(xml: string, tag: string): string[] {
  const pattern = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g");
  return [...xml.matchAll(pattern)].map((match) => match[1]);
}

/** The text of the first `<tag>…</tag>` in `xml`, entities decoded. */
export function xmlOne(xml: string, tag: string): string | undefined {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return match ? xmlText(match[1]) : undefined;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;");
}

/**
 * A request the object store answered with a failure; `reply` is the store's own error code
 * (`NoSuchKey`, `PreconditionFailed`, ...), or `HTTP STATUS` when it sent none.
 */
export class BucketError extends StoreError {
  /** The store's error code. */
  readonly reply: string;

  /** Creates the error; the client is told `io` and the message. */
  constructor(reply: string, message: string) {
    super("io", message);
    this.name = "BucketError";
    this.reply = reply;
  }
}

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException &&
    (error.name === "TimeoutError" || error.name === "AbortError");
}

/**
 * A bucket and prefix: keys given to its methods are relative to the prefix.
 *
 * @example
 * ```ts
 * import { S3Bucket } from "./s3_bucket.ts";
 * const bucket = new S3Bucket({
 *   bucket: "ferry",
 *   prefix: "files/",
 *   endpoint: "http://127.0.0.1:7480",
 *   credentials: { accessKeyId: "KEY", secretAccessKey: "SECRET" },
 *   timeoutMs: 30_000,
 * });
 * console.log(await bucket.head("report.pdf") !== null);
 * ```
 */
export class S3Bucket {
  /** The store's base URL. */
  readonly endpoint: string;
  /** Bucket name. */
  readonly bucket: string;
  /** Key prefix, empty or ending in `/`. */
  readonly prefix: string;
  /** Longest wait for any one request, in milliseconds. */
  readonly timeoutMs: number;
  readonly #client: AwsClient;
  readonly #http: S3Http;

  /** Makes no request: {@link S3Bucket.head} of the bucket (key null) checks it answers. */
  constructor(options: S3BucketOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.timeoutMs = options.timeoutMs;
    this.#client = new AwsClient({
      ...options.credentials,
      service: "s3",
      region: options.region ?? "us-east-1",
      // Retrying is the client's choice, made with the whole transfer in view.
      retries: 0,
    });
    this.#http = new S3Http(new URL(this.endpoint));
  }

  #url(key: string | null, query?: Record<string, string>): string {
    let url = `${this.endpoint}/${this.bucket}`;
    if (key !== null) url += "/" + encodeKey(this.prefix + key);
    if (query) {
      const pairs = Object.entries(query).map(([k, v]) =>
        v === "" ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`
      );
      if (pairs.length) url += "?" + pairs.join("&");
    }
    return url;
  }

  /** The error for a store that did not answer, or could not be reached. */
  unavailable(error: unknown): StoreError {
    if (isTimeout(error)) {
      return new StoreError(
        "io",
        `Object store at ${this.endpoint} did not answer within ${this.timeoutMs / 1000} s`,
      );
    }
    return new StoreError(
      "io",
      `Object store at ${this.endpoint} is unreachable: ${describeError(error)}`,
    );
  }

  /** The error for a request the store answered with a failure. */
  failure(status: number, text: string, method: string, key: string | null): BucketError {
    const code = xmlOne(text, "Code") ?? `HTTP ${status}`;
    if (code === "NoSuchBucket") {
      return new BucketError(code, `Bucket ${this.bucket} does not exist at ${this.endpoint}`);
    }
    if (status === 403) {
      return new BucketError(code, `Object store refused the server's credentials (${code})`);
    }
    const what = key === null ? `bucket ${this.bucket}` : quote(key);
    return new BucketError(code, `Object store failed ${method} ${what}: ${code}`);
  }

  /**
   * Sends one signed request under the timeout; its (small) body is read under it too (an
   * object's body is read by {@link S3Bucket.getRange}). Statuses not 2xx and not expected throw.
   */
  async request(method: string, key: string | null, init: BucketRequest = {}): Promise<Response> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("timeout", "TimeoutError")),
      this.timeoutMs,
    );
    const abort = () => controller.abort(init.signal?.reason);
    init.signal?.addEventListener("abort", abort, { once: true });
    try {
      const response = await this.#client.fetch(this.#url(key, init.query), {
        method,
        headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD", ...init.headers },
        body: init.body as BodyInit | undefined,
        signal: controller.signal,
      });
      if (response.ok || init.expect?.includes(response.status)) {
        const body = method === "HEAD" || response.status === 204
          ? null
          : init.binary && response.ok
          ? await response.arrayBuffer()
          : await response.text();
        return new Response(body, {
          status: response.status,
          headers: response.headers,
        });
      }
      const text = await response.text().catch(() => "");
      throw this.failure(response.status, text, method, key);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw this.unavailable(controller.signal.reason ?? error);
    } finally {
      clearTimeout(timer);
      init.signal?.removeEventListener("abort", abort);
    }
  }

  /**
   * GETs bytes `from` to `to` (inclusive; to the end when null) of `key`, only of the version
   * `etag` when given (status 412 if it is gone), its body read into the caller's buffers
   * (lib/s3_http.ts). The response head is awaited under the timeout; reading the body is the
   * caller's to time. Aborting `signal` ends the request and its body.
   */
  async getRange(
    key: string,
    range: { from: number; to: number | null; etag?: string },
    signal: AbortSignal,
  ): Promise<RangeBody> {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new DOMException("timeout", "TimeoutError")),
      this.timeoutMs,
    );
    const both = AbortSignal.any([signal, timeout.signal]);
    try {
      const signed = await this.#client.sign(this.#url(key), {
        method: "GET",
        headers: {
          "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
          Range: `bytes=${range.from}-${range.to ?? ""}`,
          ...(range.etag ? { "If-Match": range.etag } : {}),
        },
      });
      const body = await this.#http.get(new URL(signed.url), signed.headers, both);
      if (body.ok || body.status === 412) return body;
      throw this.failure(body.status, await errorText(body), "GET", key);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      if (error instanceof BadResponseError) {
        throw new StoreError(
          "io",
          `Object store at ${this.endpoint} sent a bad response: ${error.message}`,
        );
      }
      throw this.unavailable(timeout.signal.reason ?? signal.reason ?? error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The object's headers, or null if there is none; `key` null checks the bucket. */
  async head(key: string | null): Promise<Response | null> {
    const response = await this.request("HEAD", key, { expect: [404] });
    return response.status === 404 ? null : response;
  }

  /** The store's clock: ages of objects are measured on it, whatever this machine's says. */
  async now(): Promise<number> {
    const response = await this.request("HEAD", null);
    return Date.parse(response.headers.get("date") ?? "") || Date.now();
  }

  /** Objects under `under`, page by page (ListObjectsV2). */
  async *listObjects(under: string): AsyncGenerator<BucketObject> {
    for await (const entry of this.#list(under)) {
      if ("key" in entry) yield entry;
    }
  }

  /**
   * One level under `under` (which is empty or ends in `/`), page by page: the objects right
   * there, and each deeper prefix once, as `{ prefix }` (ListObjectsV2 with delimiter `/`).
   */
  listLevel(under: string): AsyncGenerator<BucketObject | { prefix: string }> {
    return this.#list(under, "/");
  }

  /** ListObjectsV2 under `under`, every page, with the bucket's own prefix taken off each name. */
  async *#list(
    under: string,
    delimiter?: string,
  ): AsyncGenerator<BucketObject | { prefix: string }> {
    const query: Record<string, string> = {
      "list-type": "2",
      prefix: this.prefix + under,
      ...(delimiter === undefined ? {} : { delimiter }),
    };
    for (let page = 0; page < 1_000_000; page++) {
      const xml = await (await this.request("GET", null, { query })).text();
      for (const contents of xmlAll(xml, "Contents")) {
        const key = xmlOne(contents, "Key") ?? "";
        if (!key.startsWith(this.prefix)) continue;
        yield {
          key: key.slice(this.prefix.length),
          size: Number(xmlOne(contents, "Size") ?? 0),
          mtime: Date.parse(xmlOne(contents, "LastModified") ?? "") || 0,
        };
      }
      for (const common of xmlAll(xml, "CommonPrefixes")) {
        const prefix = xmlOne(common, "Prefix") ?? "";
        if (prefix.startsWith(this.prefix)) yield { prefix: prefix.slice(this.prefix.length) };
      }
      const next = xmlOne(xml, "NextContinuationToken");
      if (xmlOne(xml, "IsTruncated") !== "true" || !next) return;
      query["continuation-token"] = next;
    }
  }

  /** Whether any object lies under `under`. */
  async hasAny(under: string): Promise<boolean> {
    const response = await this.request("GET", null, {
      query: { "list-type": "2", prefix: this.prefix + under, "max-keys": "1" },
    });
    return xmlAll(await response.text(), "Contents").length > 0;
  }

  /** Multipart uploads in progress under `under`. */
  async listUploads(under: string): Promise<BucketUpload[]> {
    const found: BucketUpload[] = [];
    const query: Record<string, string> = { uploads: "", prefix: this.prefix + under };
    for (let page = 0; page < 10_000; page++) {
      const xml = await (await this.request("GET", null, { query })).text();
      for (const upload of xmlAll(xml, "Upload")) {
        const key = xmlOne(upload, "Key") ?? "";
        if (!key.startsWith(this.prefix)) continue;
        found.push({
          key: key.slice(this.prefix.length),
          id: xmlOne(upload, "UploadId") ?? "",
          initiated: Date.parse(xmlOne(upload, "Initiated") ?? "") || 0,
        });
      }
      if (xmlOne(xml, "IsTruncated") !== "true") break;
      query["key-marker"] = xmlOne(xml, "NextKeyMarker") ?? "";
      query["upload-id-marker"] = xmlOne(xml, "NextUploadIdMarker") ?? "";
    }
    return found;
  }

  /** When the newest part of an upload arrived (or it began, without parts). */
  async lastActive(upload: BucketUpload): Promise<number> {
    const parts = await this.request("GET", upload.key, { query: { uploadId: upload.id } });
    return Math.max(
      upload.initiated,
      ...xmlAll(await parts.text(), "LastModified").map((t) => Date.parse(t) || 0),
    );
  }

  /** The `x-amz-copy-source` value naming an object of this bucket. */
  copySource(key: string): string {
    return `/${this.bucket}/${encodeKey(this.prefix + key)}`;
  }

  /** Starts a multipart upload; resolves with its id. */
  async createUpload(key: string): Promise<string> {
    const response = await this.request("POST", key, { query: { uploads: "" } });
    const id = xmlOne(await response.text(), "UploadId");
    if (!id) throw new StoreError("io", "Object store started an upload without an id");
    return id;
  }

  /** Sends one part; resolves with its ETag. */
  async uploadPart(key: string, id: string, part: number, bytes: Uint8Array): Promise<string> {
    const response = await this.request("PUT", key, {
      query: { partNumber: String(part), uploadId: id },
      body: bytes,
    });
    return response.headers.get("etag") ?? "";
  }

  /** Copies bytes `start` to `end` (inclusive) of `from` as one part; resolves with its ETag. */
  async copyPart(
    key: string,
    id: string,
    part: number,
    from: { key: string; etag: string },
    start: number,
    end: number,
  ): Promise<string> {
    const response = await this.request("PUT", key, {
      query: { partNumber: String(part), uploadId: id },
      headers: {
        "x-amz-copy-source": this.copySource(from.key),
        "x-amz-copy-source-range": `bytes=${start}-${end}`,
        "x-amz-copy-source-if-match": from.etag,
      },
    });
    const text = await response.text();
    const etag = xmlOne(text, "ETag");
    if (!etag) throw this.failure(200, text, "PUT", key);
    return etag;
  }

  /** Joins the parts, in order, into the object. */
  async completeUpload(key: string, id: string, etags: string[]): Promise<void> {
    const parts = etags.map((etag, i) =>
      `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`
    ).join("");
    const response = await this.request("POST", key, {
      query: { uploadId: id },
      body: `<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>`,
    });
    // A complete can fail after its 200 has begun: the error is then in the body.
    const text = await response.text();
    if (text.includes("<Error>")) throw this.failure(200, text, "POST", key);
  }

  /** Abandons a multipart upload, best effort. */
  async abortUpload(key: string, id: string): Promise<void> {
    await this.request("DELETE", key, { query: { uploadId: id }, expect: [404] }).catch(() => {});
  }

  /**
   * Removes up to 1000 objects in one request (DeleteObjects); those not there are no error.
   * Throws when the store could not remove one of them.
   */
  async removeMany(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    const body = `<Delete><Quiet>true</Quiet>${
      keys.map((key) => `<Object><Key>${escapeXml(this.prefix + key)}</Key></Object>`).join("")
    }</Delete>`;
    // S3 requires the body's MD5 on this request, whatever signs it.
    const md5 = createHash("md5").update(body).digest("base64");
    const response = await this.request("POST", null, {
      query: { delete: "" },
      headers: { "Content-MD5": md5, "Content-Type": "application/xml" },
      body,
    });
    const text = await response.text();
    const failed = xmlAll(text, "Error");
    if (failed.length > 0) {
      const key = (xmlOne(failed[0], "Key") ?? "").slice(this.prefix.length);
      throw this.failure(200, failed[0], "DELETE", key);
    }
  }

  /** Removes an object; one that is not there is no error. */
  async remove(key: string): Promise<void> {
    await this.request("DELETE", key, { expect: [404] });
  }
}
