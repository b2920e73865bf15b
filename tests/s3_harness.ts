/**
 * What every S3 test file shares: the real object store (Ceph's radosgw, started by
 * `scripts/ceph.sh up`), a fresh bucket a test, a real server on it, and direct looks into the
 * bucket (keys, staged uploads, object headers) that the servers' answers cannot show.
 *
 * `deno task test:s3` needs the store and fails without it; `deno task test` skips these tests with
 * a note when it is not running (`ignore`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { AwsClient } from "aws4fetch";
import { CREDENTIAL_ENV } from "../lib/s3_config.ts";
import { findS3Store, S3_ENV_FILE } from "../scripts/s3_env.ts";
import {
  assertSuccess,
  collectLines,
  ferry,
  PROGRAM_PERMISSIONS,
  SERVER_BANNER,
  spawnClient,
  spawnServer,
  waitFor,
} from "./harness.ts";

const REQUIRED = Deno.env.get("FERRY_S3_REQUIRED") === "1";
/** Set by .ci/run, which runs these tests once, through `deno task test:s3`, after the rest. */
const LATER = Deno.env.get("FERRY_S3_LATER") === "1" && !REQUIRED;

const store = LATER ? null : await findS3Store();
if (!store && !LATER) {
  const note = `S3 tests skipped: no object store answers (${S3_ENV_FILE}); ` +
    "start one with scripts/ceph.sh up, then deno task test:s3";
  if (REQUIRED) throw new Error(note);
  console.error(note);
}
export const ignore = store === null;
/** The store's folder, where `scripts/ceph.sh` keeps its env file and its processes' ids. */
const STORE_DIR = S3_ENV_FILE.replace(/\/[^/]*$/, "");
export const endpoint = store?.endpoint ?? "";
if (store) {
  // The servers inherit them: credentials never go on a command line.
  Deno.env.set("AWS_ACCESS_KEY_ID", store.key);
  Deno.env.set("AWS_SECRET_ACCESS_KEY", store.secret);
}
export const s3 = new AwsClient({
  accessKeyId: store?.key ?? "-",
  secretAccessKey: store?.secret ?? "-",
  service: "s3",
  region: "us-east-1",
  retries: 0,
});

/** Buckets made by the test that is running, removed when it ends. */
const made: string[] = [];

/** A fresh bucket for one test; it is removed, with all it holds, when the test ends. */
export async function newBucket(): Promise<string> {
  const bucket = `ferry-${crypto.randomUUID().slice(0, 13)}`;
  const response = await s3.fetch(`${endpoint}/${bucket}`, { method: "PUT" });
  await response.body?.cancel();
  assert.equal(response.status, 200, `creating bucket ${bucket}`);
  made.push(bucket);
  return bucket;
}

/** Sends a request whose answer's body is not needed, and returns its status. */
async function send(url: string, method: string): Promise<number> {
  const response = await s3.fetch(url, { method });
  await response.body?.cancel();
  return response.status;
}

/**
 * Removes a bucket: its objects, its unfinished multipart uploads, then the bucket. The store is a
 * single small disk shared by every run, so a test's data must not outlive it.
 */
async function removeBucket(bucket: string): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const objects = await keys(bucket);
    const uploads = await uploadsIn(bucket);
    if (objects.length === 0 && uploads.length === 0) break;
    for (const key of objects) await send(`${endpoint}/${bucket}/${encodeKey(key)}`, "DELETE");
    for (const { key, id } of uploads) {
      await send(
        `${endpoint}/${bucket}/${encodeKey(key)}?uploadId=${encodeURIComponent(id)}`,
        "DELETE",
      );
    }
  }
  await send(`${endpoint}/${bucket}`, "DELETE");
}

function unescapeXml(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

function encodeKey(key: string): string {
  return key.split("/").map(encodeURIComponent).join("/");
}

if (store) {
  Deno.test.afterEach(async () => {
    for (const bucket of made.splice(0)) await removeBucket(bucket);
  });
}

/** Keys in a bucket (directly from the store, staging included). */
export async function keys(bucket: string): Promise<string[]> {
  const response = await s3.fetch(`${endpoint}/${bucket}?list-type=2`);
  const xml = await response.text();
  return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => unescapeXml(m[1]));
}

/** Keys of the servers' own staging objects and claims left in a bucket. */
export async function stagingKeys(bucket: string): Promise<string[]> {
  return (await keys(bucket)).filter((key) => key.includes(".ferry-staging"));
}

/** Multipart uploads in progress in a bucket: their keys and upload ids. */
async function uploadsIn(bucket: string): Promise<{ key: string; id: string }[]> {
  const response = await s3.fetch(`${endpoint}/${bucket}?uploads`);
  const xml = await response.text();
  return [
    ...xml.matchAll(/<Upload>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<UploadId>([^<]*)<\/UploadId>/g),
  ]
    .map((m) => ({ key: unescapeXml(m[1]), id: m[2] }));
}

/** Keys of the multipart uploads in progress in a bucket. */
export async function multipartUploads(bucket: string): Promise<string[]> {
  return (await uploadsIn(bucket)).map((upload) => upload.key);
}

export async function headers(bucket: string, key: string): Promise<Headers | null> {
  const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "HEAD" });
  return response.status === 200 ? response.headers : null;
}

export interface S3Server extends AsyncDisposable {
  host: string;
  port: number;
  pid: number;
  lines: string[];
  child: Deno.ChildProcess;
  /** Resolves with the first log line matching `pattern`, within 10 s. */
  waitForLog(pattern: RegExp): Promise<string>;
}

/** Starts a real server on `s3://bucket/files` at the test store. */
export async function startS3Server(bucket: string, args: string[] = []): Promise<S3Server> {
  const child = spawnServer([
    "0",
    "--store",
    `s3://${bucket}/files`,
    "--s3-endpoint",
    endpoint,
    ...args,
  ], { permissions: [`--allow-env=${SERVER_ENV}`] });
  const { lines, done, firstMatch } = collectLines(child.stderr);
  const match = await firstMatch(SERVER_BANNER, { timeoutMs: 20000 });
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone (killed by the test).
    }
    await child.status;
    await done;
  };
  if (!match) {
    await stop();
    throw new Error(`S3 server did not start:\n${lines.join("\n")}`);
  }
  return {
    host: match[2] ?? match[3],
    port: Number(match[4]),
    pid: child.pid,
    lines,
    child,
    async waitForLog(pattern: RegExp) {
      const found = await firstMatch(pattern, { timeoutMs: 10000 });
      if (!found) throw new Error(`No log line ${pattern}:\n${lines.join("\n")}`);
      return found.input ?? found[0];
    },
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Holds the store for one test: shared with the other S3 tests, or `alone` for a test that freezes
 * it (SIGSTOP). `deno task test` runs the S3 files in parallel on the one store, and a frozen store
 * would stall every other test's requests meanwhile. The lock is the operating system's (flock) on
 * a file beside the store's env file, so it holds across the parallel test workers; it is released
 * when the returned file is disposed.
 */
export async function holdStore(options: { alone?: boolean } = {}): Promise<Deno.FsFile> {
  const file = await Deno.open(`${STORE_DIR}/tests.lock`, { create: true, write: true });
  await file.lock(options.alone ?? false);
  return file;
}

/** The radosgw process, to freeze and thaw. */
export async function radosgwPid(): Promise<number> {
  return Number((await Deno.readTextFile(`${STORE_DIR}/run/client.rgw.ferry.pid`)).trim());
}

export const PART = 8 * 2 ** 20;

/** Whether the bucket holds exactly one multipart upload: a put has staged a part there. */
async function onePartStaged(bucket: string): Promise<boolean> {
  return (await multipartUploads(bucket)).length === 1;
}

/** A put from stdin through `server` once `first` is staged in the bucket; the rest is to send. */
export async function stagedPut(
  server: S3Server,
  bucket: string,
  name: string,
  first: Uint8Array,
): Promise<{ client: Deno.ChildProcess; writer: WritableStreamDefaultWriter<Uint8Array> }> {
  const client = spawnClient([server.host, String(server.port), "put", "-", name]);
  const writer = client.stdin.getWriter();
  await writer.write(first);
  // At least one part has reached the store: the upload is staged there.
  await waitFor("a part staged", () => onePartStaged(bucket));
  return { client, writer };
}

/** A put of the file `local` through `server`, slowed to 6 MB/s, once a part is staged. */
export async function stagedFilePut(
  server: S3Server,
  bucket: string,
  local: string,
  name: string,
): Promise<Deno.ChildProcess> {
  const client = spawnClient([
    server.host,
    String(server.port),
    "put",
    local,
    name,
    "--limit-rate",
    "6M",
  ]);
  await waitFor("a part staged", () => onePartStaged(bucket), { timeoutMs: 20000 });
  return client;
}

/** What the harness lets a server read, and the credentials' variables. */
export const SERVER_ENV = [
  ...PROGRAM_PERMISSIONS.find((flag) => flag.startsWith("--allow-env="))!.slice(12).split(","),
  ...CREDENTIAL_ENV,
].join(",");
export const encoder = new TextEncoder();

/** Whether a download to `path` has begun: its `.part` file holds bytes. */
export function partStarted(path: string): boolean {
  try {
    return Deno.statSync(`${path}.part`).size > 0;
  } catch {
    return false;
  }
}

/** A command that must succeed; its stdout as text. */
export async function okText(server: S3Server, args: string[], cwd?: string): Promise<string> {
  const result = await ferry(server, args, { cwd });
  assertSuccess(result, args.join(" "));
  return new TextDecoder().decode(result.stdout);
}

/** Puts `count` small objects under `prefix` straight into the bucket, `limit` at once. */
export async function putMany(
  bucket: string,
  prefix: string,
  count: number,
  limit = 32,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const key = `${prefix}${String(next++).padStart(5, "0")}.txt`;
      const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "PUT", body: "x" });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`PUT ${key}: ${response.status}`);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** How many keys lie under `prefix`, every page counted. */
export async function countKeys(bucket: string, prefix: string): Promise<number> {
  let count = 0;
  let token = "";
  for (let page = 0; page < 100; page++) {
    const query = `list-type=2&prefix=${encodeURIComponent(prefix)}` +
      (token ? `&continuation-token=${encodeURIComponent(token)}` : "");
    const xml = await (await s3.fetch(`${endpoint}/${bucket}?${query}`)).text();
    count += [...xml.matchAll(/<Key>/g)].length;
    token = /<NextContinuationToken>([^<]*)</.exec(xml)?.[1] ?? "";
    if (!/<IsTruncated>true</.test(xml)) return count;
  }
  throw new Error("too many pages");
}
