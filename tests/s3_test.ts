/**
 * The S3 store against a real object store: Ceph's radosgw, started by `scripts/ceph.sh up`
 * (`deno task test:s3` needs it; `deno task test` skips these tests with a note when it is not
 * running). Real servers on one bucket, real clients: put through one server and get through
 * another, no partial object while an upload runs, two servers racing for one name, a server
 * killed mid-upload, the store frozen mid-transfer, read-only, listing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { AwsClient } from "aws4fetch";
import { CREDENTIAL_ENV } from "../lib/s3_config.ts";
import { findS3Store, S3_ENV_FILE } from "../scripts/s3_env.ts";
import {
  assertFailure,
  assertSuccess,
  collectLines,
  ferry,
  makeTempDir,
  PROGRAM_PERMISSIONS,
  randomBytes,
  resultOf,
  runServer,
  SERVER_BANNER,
  spawnClient,
  spawnServer,
  waitFor,
} from "./harness.ts";

const REQUIRED = Deno.env.get("FERRY_S3_REQUIRED") === "1";

const store = await findS3Store();
if (!store) {
  const note = `S3 tests skipped: no object store answers (${S3_ENV_FILE}); ` +
    "start one with scripts/ceph.sh up, then deno task test:s3";
  if (REQUIRED) throw new Error(note);
  console.error(note);
}
const ignore = store === null;
const endpoint = store?.endpoint ?? "";
if (store) {
  // The servers inherit them: credentials never go on a command line.
  Deno.env.set("AWS_ACCESS_KEY_ID", store.key);
  Deno.env.set("AWS_SECRET_ACCESS_KEY", store.secret);
}
const s3 = new AwsClient({
  accessKeyId: store?.key ?? "-",
  secretAccessKey: store?.secret ?? "-",
  service: "s3",
  region: "us-east-1",
  retries: 0,
});

/** A fresh bucket for one test. */
async function newBucket(): Promise<string> {
  const bucket = `ferry-${crypto.randomUUID().slice(0, 13)}`;
  const response = await s3.fetch(`${endpoint}/${bucket}`, { method: "PUT" });
  await response.body?.cancel();
  assert.equal(response.status, 200, `creating bucket ${bucket}`);
  return bucket;
}

/** Keys in a bucket (directly from the store, staging included). */
async function keys(bucket: string): Promise<string[]> {
  const response = await s3.fetch(`${endpoint}/${bucket}?list-type=2`);
  const xml = await response.text();
  return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
}

/** Multipart uploads in progress in a bucket. */
async function multipartUploads(bucket: string): Promise<string[]> {
  const response = await s3.fetch(`${endpoint}/${bucket}?uploads`);
  const xml = await response.text();
  return [...xml.matchAll(/<Upload>[\s\S]*?<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
}

async function headers(bucket: string, key: string): Promise<Headers | null> {
  const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "HEAD" });
  return response.status === 200 ? response.headers : null;
}

interface S3Server extends AsyncDisposable {
  host: string;
  port: number;
  pid: number;
  lines: string[];
  child: Deno.ChildProcess;
  /** Resolves with the first log line matching `pattern`, within 10 s. */
  waitForLog(pattern: RegExp): Promise<string>;
}

/** Starts a real server on `s3://bucket/files` at the test store. */
async function startS3Server(bucket: string, args: string[] = []): Promise<S3Server> {
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

/** The radosgw process, to freeze and thaw. */
async function radosgwPid(): Promise<number> {
  const dir = S3_ENV_FILE.replace(/\/[^/]*$/, "");
  return Number((await Deno.readTextFile(`${dir}/run/client.rgw.ferry.pid`)).trim());
}

const PART = 8 * 2 ** 20;

/** Whether the bucket holds exactly one multipart upload: a put has staged a part there. */
async function onePartStaged(bucket: string): Promise<boolean> {
  return (await multipartUploads(bucket)).length === 1;
}

/** A put from stdin through `server` once `first` is staged in the bucket; the rest is to send. */
async function stagedPut(
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
async function stagedFilePut(
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
const SERVER_ENV = [
  ...PROGRAM_PERMISSIONS.find((flag) => flag.startsWith("--allow-env="))!.slice(12).split(","),
  ...CREDENTIAL_ENV,
].join(",");
const encoder = new TextEncoder();

Deno.test({
  name: "s3: put through one server, get through another, with the checksum stored",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    const big = randomBytes(PART * 2 + 12345);
    const put = await ferry(a, ["put", "-", "dir/big file+.bin"], { stdin: big });
    assertSuccess(put, "big put through a");
    const small = encoder.encode("hello from a\n");
    assertSuccess(await ferry(a, ["put", "-", "small.txt"], { stdin: small }), "small put");
    const got = await ferry(b, ["get", "dir/big file+.bin", "-"]);
    assertSuccess(got, "get through b");
    assert.ok(Buffer.from(got.stdout).equals(Buffer.from(big)), "same bytes back");
    const sum = /xxh128:[0-9a-f]{32}/.exec(put.stderr)![0];
    const head = await headers(bucket, "files/dir/big%20file%2B.bin");
    assert.equal(head?.get("x-amz-meta-ferry-checksum"), sum, "checksum kept with the object");
    assert.equal((await ferry(b, ["get", "small.txt", "-"])).stdout.length, small.length);
    assert.deepEqual(await multipartUploads(bucket), [], "no upload left staged");
    assert.deepEqual(
      (await keys(bucket)).filter((key) => key.includes(".ferry-staging")),
      [],
      "no staging object or claim left",
    );
  },
});

Deno.test({
  name: "s3: an upload in progress is invisible until it is complete and verified",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    const data = randomBytes(PART * 2 + 1);
    const { client, writer } = await stagedPut(
      a,
      bucket,
      "slow.bin",
      data.subarray(0, PART + 4096),
    );
    assert.deepEqual((await keys(bucket)).filter((key) => key === "files/slow.bin"), []);
    const listing = await ferry(b, ["list"]);
    assertSuccess(listing, "list through b");
    assert.equal(new TextDecoder().decode(listing.stdout), "", "nothing listed yet");
    assertFailure(await ferry(b, ["get", "slow.bin", "-"]), /No such file/, {
      what: "get during the upload",
    });
    await writer.write(data.subarray(PART + 4096));
    await writer.close();
    assertSuccess(resultOf(await client.output()), "slow put");
    assert.equal(new TextDecoder().decode((await ferry(b, ["list"])).stdout), "slow.bin\n");
  },
});

Deno.test({
  name: "s3: two servers racing for one name: exactly one wins, the other is refused",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    for (const size of [1000, PART + 100]) {
      const name = `race-${size}.bin`;
      const first = randomBytes(size);
      const second = randomBytes(size);
      const [ra, rb] = await Promise.all([
        ferry(a, ["put", "-", name], { stdin: first }),
        ferry(b, ["put", "-", name], { stdin: second }),
      ]);
      const wins = [ra, rb].filter((r) => r.code === 0);
      assert.equal(wins.length, 1, `exactly one wins (${size} bytes):\n${ra.stderr}\n${rb.stderr}`);
      const loser = ra.code === 0 ? rb : ra;
      assertFailure(loser, /File exists/, { what: "the loser" });
      const got = await ferry(a, ["get", name, "-"]);
      const winner = ra.code === 0 ? first : second;
      assert.ok(Buffer.from(got.stdout).equals(Buffer.from(winner)), "the winner's bytes");
    }
    assert.deepEqual(await multipartUploads(bucket), []);
  },
});

Deno.test({
  name: "s3: a server killed mid-upload leaves no object, and its upload is cleaned at next start",
  ignore,
  async fn() {
    const bucket = await newBucket();
    const a = await startS3Server(bucket);
    const { client, writer } = await stagedPut(a, bucket, "cut.bin", randomBytes(PART + 4096));
    a.child.kill("SIGKILL");
    await a[Symbol.asyncDispose]();
    await writer.close().catch(() => {});
    const result = resultOf(await client.output());
    assert.equal(result.code, 1, "the client is told");
    assert.equal(await headers(bucket, "files/cut.bin"), null, "no object appears");
    // The store's clock counts in whole seconds: wait until the upload is older than 1 s on it.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await using b = await startS3Server(bucket, ["--s3-clean-after", "1s"]);
    assert.ok(
      b.lines.some((line) => /cleaned up an upload staged by a server that stopped/.test(line)),
      b.lines.join("\n"),
    );
    assert.deepEqual(await multipartUploads(bucket), [], "the staged upload is gone");
    assertFailure(await ferry(b, ["get", "cut.bin", "-"]), /No such file/, { what: "get" });
  },
});

Deno.test({
  name: "s3: a store that stops answering mid-transfer costs the client one clear line",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket, ["--s3-timeout", "2"]);
    const pid = await radosgwPid();
    const { client, writer } = await stagedPut(a, bucket, "frozen.bin", randomBytes(PART + 4096));
    Deno.kill(pid, "SIGSTOP");
    try {
      // The next part cannot go: the server gives up on it after 2 s and tells the client, at
      // its next chunk or at its end, whichever comes first.
      const rest = writer.write(randomBytes(PART * 2)).then(() => writer.close()).catch(() => {});
      const started = performance.now();
      const result = resultOf(await client.output());
      await rest;
      assert.ok(performance.now() - started < 15000, "told within 15 s");
      assertFailure(result, /Object store at .* did not answer within 2 s/, { what: "put" });
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    // The server keeps serving once the store is back.
    assertSuccess(await ferry(a, ["put", "-", "after.txt"], { stdin: "back\n" }), "put after");
    assertSuccess(await ferry(a, ["list"]), "list after");
  },
});

Deno.test({
  name: "s3: a store that stops answering mid-download costs the client one clear line",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket, ["--s3-timeout", "2"]);
    assertSuccess(
      // More than a download reads ahead (4 ranges of 8 MiB), so that it must ask the stopped store.
      await ferry(a, ["put", "-", "long.bin"], { stdin: randomBytes(PART * 6) }),
      "put",
    );
    const pid = await radosgwPid();
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    const client = spawnClient([
      a.host,
      String(a.port),
      "get",
      "long.bin",
      `${dir}/long.bin`,
      "--limit-rate",
      "8M",
    ]);
    await waitFor("the download under way", () => partStarted(`${dir}/long.bin`));
    Deno.kill(pid, "SIGSTOP");
    try {
      const started = performance.now();
      const result = resultOf(await client.output());
      assert.ok(performance.now() - started < 15000, "told within 15 s");
      // A range under way stalls, or the next range's request goes unanswered: either way, one
      // line that names the store and the timeout.
      assertFailure(
        result,
        /Object store (stopped sending "long\.bin" for 2 s|at \S+ did not answer within 2 s)/,
        {
          what: "get",
          allowStdout: true,
        },
      );
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
  },
});

/** Whether a download to `path` has begun: its `.part` file holds bytes. */
function partStarted(path: string): boolean {
  try {
    return Deno.statSync(`${path}.part`).size > 0;
  } catch {
    return false;
  }
}

Deno.test({
  name: "s3: a file replaced mid-download is served whole as it was, or not at all: never a mix",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    // More than the ranges a download reads ahead (4 of 8 MiB): some are asked for after the
    // replacement, and the whole second version, read back in ranges, must come out in order.
    const first = randomBytes(PART * 6);
    const second = randomBytes(PART * 6);
    assertSuccess(await ferry(a, ["put", "-", "v.bin"], { stdin: first }), "first version");
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    const local = `${dir}/v.bin`;
    const client = spawnClient([
      a.host,
      String(a.port),
      "get",
      "v.bin",
      local,
      "--limit-rate",
      "4M",
    ]);
    await waitFor("the download under way", () => partStarted(local));
    const replace = await ferry(b, ["put", "-", "v.bin", "--overwrite"], { stdin: second });
    assertSuccess(replace, "second version, through b");
    const result = resultOf(await client.output());
    if (result.code === 0) {
      const got = await Deno.readFile(local);
      assert.ok(Buffer.from(got).equals(Buffer.from(first)), "the first version, whole");
    } else {
      assertFailure(result, /replaced while being read/, { what: "get", allowStdout: true });
    }
    const again = await ferry(a, ["get", "v.bin", "-"]);
    assert.ok(Buffer.from(again.stdout).equals(Buffer.from(second)), "then the second");
  },
});

Deno.test({
  name: "s3: read-only refuses uploads and serves what is there",
  ignore,
  async fn() {
    const bucket = await newBucket();
    {
      await using writer = await startS3Server(bucket);
      assertSuccess(await ferry(writer, ["put", "-", "kept.txt"], { stdin: "x\n" }), "put");
    }
    await using reader = await startS3Server(bucket, ["--read-only"]);
    assertFailure(await ferry(reader, ["put", "-", "new.txt"], { stdin: "y\n" }), /read-only/, {
      what: "put to a read-only server",
    });
    const got = await ferry(reader, ["get", "kept.txt", "-"]);
    assertSuccess(got, "get");
    assert.equal(new TextDecoder().decode(got.stdout), "x\n");
    assert.equal(await headers(bucket, "files/new.txt"), null);
  },
});

Deno.test({
  name: "s3: listing shows the files under the prefix, sorted, and nothing of the server's own",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    for (const name of ["b.txt", "a/z.txt", "a/b c.txt", "ü.txt"]) {
      assertSuccess(await ferry(a, ["put", "-", name], { stdin: name }), `put ${name}`);
    }
    // Objects other tools wrote: outside the prefix, a folder marker, a name no client could ask
    // for, and what looks like the server's own staging.
    for (
      const key of ["elsewhere.txt", "files/folder/", "files/bad%01name", "files/.ferry-staging/x"]
    ) {
      const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "PUT", body: "-" });
      await response.body?.cancel();
    }
    const listing = await ferry(a, ["list"]);
    assertSuccess(listing, "list");
    // Another tool's folder marker is a folder, as one made by mkdir.
    assert.equal(new TextDecoder().decode(listing.stdout), "a/\nb.txt\nfolder/\nü.txt\n");
    const all = await ferry(a, ["list", "-r"]);
    assertSuccess(all, "list -r");
    assert.equal(
      new TextDecoder().decode(all.stdout),
      "a/\na/b c.txt\na/z.txt\nb.txt\nfolder/\nü.txt\n",
    );
  },
});

Deno.test({
  name: "s3: get --resume continues from the part the client has",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    const data = randomBytes(PART + 5000);
    assertSuccess(await ferry(a, ["put", "-", "r.bin"], { stdin: data }), "put");
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    await Deno.writeFile(`${dir}/r.bin.part`, data.subarray(0, 3 * 2 ** 20));
    const got = await ferry(a, ["get", "r.bin", `${dir}/r.bin`, "--resume"]);
    assertSuccess(got, "get --resume");
    assert.ok(Buffer.from(await Deno.readFile(`${dir}/r.bin`)).equals(Buffer.from(data)));
    assert.ok(
      a.lines.some((line) => /get "r\.bin" .* ok .*resumed from 3145728/.test(line)),
      a.lines.join("\n"),
    );
  },
});

Deno.test({
  name: "s3: a stored file that no longer matches its checksum fails the download",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    assertSuccess(await ferry(a, ["put", "-", "c.txt"], { stdin: "checked\n" }), "put");
    // Another tool rewrites the object's metadata with a checksum of something else.
    const response = await s3.fetch(`${endpoint}/${bucket}/files/c.txt`, {
      method: "PUT",
      headers: {
        "x-amz-copy-source": `/${bucket}/files/c.txt`,
        "x-amz-metadata-directive": "REPLACE",
        "x-amz-meta-ferry-checksum": "xxh128:00000000000000000000000000000000",
      },
    });
    await response.body?.cancel();
    assert.equal(response.status, 200);
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    const got = await ferry(a, ["get", "c.txt", `${dir}/c.txt`]);
    assertFailure(got, /does not match the checksum/, { what: "get of a damaged file" });
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing is written");
  },
});

Deno.test({
  name: "s3: a server whose store cannot be reached says so in one line and does not start",
  ignore,
  async fn() {
    const result = await runServer(
      ["0", "--store", "s3://nowhere", "--s3-endpoint", "http://127.0.0.1:9"],
      { permissions: [`--allow-env=${SERVER_ENV}`] },
    );
    assertFailure(result, /Object store at http:\/\/127\.0\.0\.1:9 is unreachable/, {
      what: "server start",
    });
  },
});

Deno.test({
  name:
    "s3: an interrupted put is kept in the bucket, and put --resume through another server ends it",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket, ["--show-kept"]);
    await using b = await startS3Server(bucket);
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    const local = `${dir}/big.bin`;
    const data = randomBytes(PART * 2 + 5000);
    await Deno.writeFile(local, data);
    const client = await stagedFilePut(a, bucket, local, "big.bin");
    client.kill("SIGKILL");
    await client.output();
    const line = await a.waitForLog(/put "big\.bin" .*interrupted, (kept|discarded)/);
    assert.match(line, /kept for resume/);
    assert.equal(await headers(bucket, "files/big.bin"), null, "nothing under the name");
    const kept = await ferry(a, ["kept"]);
    assertSuccess(kept, "kept query");
    assert.match(new TextDecoder().decode(kept.stdout), /big\.bin/);
    const resumed = await ferry(b, ["put", local, "big.bin", "--resume"]);
    assertSuccess(resumed, "put --resume through b");
    assert.ok(
      b.lines.some((l) => /put "big\.bin" .* ok .*\(resumed from [1-9]\d*\)/.test(l)),
      b.lines.join("\n"),
    );
    const got = await ferry(a, ["get", "big.bin", "-"]);
    assert.ok(Buffer.from(got.stdout).equals(Buffer.from(data)), "the whole file, once");
    assert.deepEqual(
      (await keys(bucket)).filter((key) => key.includes(".ferry-staging")),
      [],
      "the kept upload is gone once used",
    );
  },
});

Deno.test({
  name: "s3: an interrupted put over the keep budget is not kept",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket, ["--keep-budget", "1M"]);
    // Keeping needs the size a regular file announces: a stream has none.
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    const local = `${dir}/big.bin`;
    await Deno.writeFile(local, randomBytes(PART * 2));
    const put = await stagedFilePut(a, bucket, local, "big.bin");
    put.kill("SIGKILL");
    await put.output();
    const line = await a.waitForLog(/put "big\.bin" .*interrupted, /);
    assert.match(line, /over the keep budget/);
    await waitFor("nothing staged", async () => (await multipartUploads(bucket)).length === 0);
    assert.deepEqual((await keys(bucket)).filter((key) => key.includes(".ferry-staging")), []);
  },
});

/** A command that must succeed; its stdout as text. */
async function okText(server: S3Server, args: string[], cwd?: string): Promise<string> {
  const result = await ferry(server, args, { cwd });
  assertSuccess(result, args.join(" "));
  return new TextDecoder().decode(result.stdout);
}

/** Puts `count` small objects under `prefix` straight into the bucket, `limit` at once. */
async function putMany(bucket: string, prefix: string, count: number, limit = 32): Promise<void> {
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
async function countKeys(bucket: string, prefix: string): Promise<number> {
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

Deno.test({
  name: "s3: folders: mkdir through one server, list and list -r through the other",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    await okText(a, ["mkdir", "empty"]);
    await okText(a, ["mkdir", "-p", "sub/deep"]);
    await okText(a, ["put", "-", "sub/b.txt"]);
    assertSuccess(await ferry(a, ["put", "-", "a.txt"], { stdin: "aaa" }), "put a.txt");
    assertSuccess(await ferry(a, ["put", "-", "sub/deep/c.txt"], { stdin: "c" }), "put c");
    // An empty folder is kept by a marker object.
    assert.ok(await headers(bucket, "files/empty/"), "marker of the empty folder");
    assert.equal(await okText(b, ["list"]), "a.txt\nempty/\nsub/\n");
    assert.equal(await okText(b, ["list", "sub"]), "sub/b.txt\nsub/deep/\n");
    assert.equal(await okText(b, ["list", "empty"]), "");
    assert.equal(
      await okText(b, ["list", "-r"]),
      "a.txt\nempty/\nsub/\nsub/b.txt\nsub/deep/\nsub/deep/c.txt\n",
    );
    assert.equal(await okText(b, ["list", "-r", "sub"]), "sub/b.txt\nsub/deep/\nsub/deep/c.txt\n");
    const json = JSON.parse(await okText(b, ["list", "-r", "--json"]));
    assert.deepEqual(
      json.map((e: Record<string, unknown>) => [e.name, e.type, e.size]),
      [
        ["a.txt", "file", 3],
        ["empty", "dir", 0],
        ["sub", "dir", 0],
        ["sub/b.txt", "file", 0],
        ["sub/deep", "dir", 0],
        ["sub/deep/c.txt", "file", 1],
      ],
    );
    assertFailure(await ferry(b, ["list", "nowhere"]), /No such folder: "nowhere"/, {
      what: "list of a missing folder",
    });
    assertFailure(await ferry(b, ["list", "a.txt"]), /Not a folder: "a\.txt"/, {
      what: "list of a file",
    });
    assertFailure(await ferry(b, ["mkdir", "empty"]), /Folder exists: "empty"/, {
      what: "mkdir of a folder",
    });
    assertFailure(await ferry(b, ["mkdir", "a.txt"]), /File exists: "a\.txt"/, {
      what: "mkdir over a file",
    });
    assertFailure(await ferry(b, ["mkdir", "x/y"]), /No such folder for "x\/y"/, {
      what: "mkdir without its parent",
    });
    assertFailure(await ferry(b, ["mkdir", "-p", "a.txt/y"]), /a\.txt is not a folder/, {
      what: "mkdir under a file",
    });
    await okText(b, ["mkdir", "-p", "empty"]);
    assert.equal(await headers(bucket, "files/x/"), null, "nothing made by a refused mkdir");
  },
});

Deno.test({
  name: "s3: rm removes a file (its folder stays), a folder only with -r, over several pages",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    assertSuccess(await ferry(a, ["put", "-", "keep/only.txt"], { stdin: "1" }), "put");
    await okText(b, ["rm", "keep/only.txt"]);
    assert.equal(await okText(a, ["list", "-r"]), "keep/\n", "the folder outlives its file");
    // More keys than one listing page (1,000) and one DeleteObjects request hold.
    await putMany(bucket, "files/big/f/", 1100);
    assertSuccess(await ferry(a, ["put", "-", "big/top.txt"], { stdin: "t" }), "put top");
    assertFailure(await ferry(b, ["rm", "big"]), /"big" is a folder/, { what: "rm without -r" });
    assert.equal(await countKeys(bucket, "files/big/"), 1101);
    assertFailure(await ferry(b, ["rm", "nothing"]), /No such file or folder: "nothing"/, {
      what: "rm of a missing name",
    });
    await okText(b, ["rm", "-r", "big"]);
    assert.equal(await countKeys(bucket, "files/big/"), 0, "every key under the folder removed");
    assert.equal(await okText(a, ["list", "-r"]), "keep/\n");
    await okText(a, ["rm", "-r", "keep"]);
    assert.equal(await okText(b, ["list", "-r"]), "");
  },
});

Deno.test({
  name: "s3: mv renames files and folders, refusing taken names unless --overwrite",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    const data = randomBytes(PART + 777);
    assertSuccess(await ferry(a, ["put", "-", "big.bin"], { stdin: data }), "put big");
    assertSuccess(await ferry(a, ["put", "-", "other.txt"], { stdin: "other" }), "put other");
    await okText(a, ["mkdir", "dir"]);
    const sum = (await headers(bucket, "files/big.bin"))?.get("x-amz-meta-ferry-checksum");
    assert.ok(sum);

    await okText(b, ["mv", "big.bin", "dir/moved.bin"]);
    assert.equal(await headers(bucket, "files/big.bin"), null, "the old name is gone");
    const moved = await headers(bucket, "files/dir/moved.bin");
    assert.equal(moved?.get("x-amz-meta-ferry-checksum"), sum, "the checksum moves with it");
    const got = await ferry(a, ["get", "dir/moved.bin", "-"]);
    assertSuccess(got, "get the moved file");
    assert.ok(Buffer.from(got.stdout).equals(Buffer.from(data)));

    assertFailure(await ferry(b, ["mv", "other.txt", "dir/moved.bin"]), /File exists/, {
      what: "mv over a file",
    });
    assert.equal((await ferry(a, ["get", "dir/moved.bin", "-"])).stdout.length, data.length);
    await okText(b, ["mv", "other.txt", "dir/moved.bin", "--overwrite"]);
    assert.equal(
      new TextDecoder().decode((await ferry(a, ["get", "dir/moved.bin", "-"])).stdout),
      "other",
    );
    assertFailure(await ferry(b, ["mv", "dir/moved.bin", "dir"]), /"dir" is a folder/, {
      what: "mv over a folder",
    });
    assertFailure(await ferry(b, ["mv", "dir", "dir/in"]), /into itself/, {
      what: "mv into itself",
    });
    assertFailure(await ferry(b, ["mv", "dir/moved.bin", "no/where"]), /No such folder/, {
      what: "mv into a missing folder",
    });
    assertFailure(await ferry(b, ["mv", "ghost", "x"]), /No such file or folder: "ghost"/, {
      what: "mv of a missing name",
    });

    // A folder moves with all it holds, empty folders included; the folder it left stays.
    await okText(a, ["mkdir", "-p", "tree/empty"]);
    assertSuccess(await ferry(a, ["put", "-", "tree/sub/c.txt"], { stdin: "c" }), "put c");
    await okText(a, ["mkdir", "parent"]);
    await okText(b, ["mv", "tree", "parent/renamed"]);
    assert.equal(
      await okText(a, ["list", "-r"]),
      "dir/\ndir/moved.bin\nparent/\nparent/renamed/\nparent/renamed/empty/\n" +
        "parent/renamed/sub/\nparent/renamed/sub/c.txt\n",
    );
    await okText(b, ["mv", "parent/renamed", "back"]);
    assert.equal(await okText(a, ["list", "parent"]), "", "the folder it left stays, empty");
    assertFailure(await ferry(b, ["mv", "back", "dir/moved.bin"]), /Cannot replace file/, {
      what: "a folder over a file",
    });
    assert.deepEqual(
      (await keys(bucket)).filter((key) => key.includes(".ferry-staging")),
      [],
      "no claim left",
    );
  },
});

Deno.test({
  name: "s3: put -r through one server, get -r through the other; read-only refuses changes",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    const dir = await Deno.makeTempDir();
    try {
      const src = `${dir}/src`;
      await Deno.mkdir(`${src}/sub/deep`, { recursive: true });
      await Deno.mkdir(`${src}/empty`);
      await Deno.writeTextFile(`${src}/a.txt`, "alpha\n");
      await Deno.writeTextFile(`${src}/sub/b.txt`, "beta\n");
      const big = randomBytes(PART + 4321);
      await Deno.writeFile(`${src}/sub/deep/big.bin`, big);
      await okText(a, ["put", "-r", src, "mirror"]);
      assert.equal(
        await okText(b, ["list", "-r", "mirror"]),
        "mirror/a.txt\nmirror/empty/\nmirror/sub/\nmirror/sub/b.txt\nmirror/sub/deep/\n" +
          "mirror/sub/deep/big.bin\n",
      );
      const sum = (await headers(bucket, "files/mirror/sub/deep/big.bin"))
        ?.get("x-amz-meta-ferry-checksum");
      assert.match(sum ?? "", /^xxh128:/, "each file stored with its checksum");
      // By content, nothing differs: nothing is sent again.
      const again = await ferry(a, ["put", "-r", src, "mirror", "--checksum", "--json"]);
      assertSuccess(again, "put -r --checksum");
      const summary = JSON.parse(new TextDecoder().decode(again.stdout).trim().split("\n").at(-1)!);
      assert.deepEqual([summary.files, summary.skipped, summary.failed], [0, 3, 0]);

      await okText(b, ["get", "-r", "mirror", "back"], dir);
      assert.equal(await Deno.readTextFile(`${dir}/back/a.txt`), "alpha\n");
      assert.equal(await Deno.readTextFile(`${dir}/back/sub/b.txt`), "beta\n");
      assert.ok(
        Buffer.from(await Deno.readFile(`${dir}/back/sub/deep/big.bin`)).equals(
          Buffer.from(big),
        ),
      );
      assert.ok((await Deno.stat(`${dir}/back/empty`)).isDirectory);
      // A second get finds the local copy up to date (size and mtime).
      const second = await ferry(b, ["get", "-r", "mirror", "back", "--json"], { cwd: dir });
      assertSuccess(second, "second get -r");
      const got = JSON.parse(new TextDecoder().decode(second.stdout).trim().split("\n").at(-1)!);
      assert.deepEqual([got.files, got.skipped], [0, 3]);

      // --delete removes on the store what the sender lacks.
      await Deno.remove(`${src}/sub`, { recursive: true });
      await okText(a, ["put", "-r", src, "mirror", "--delete"]);
      assert.equal(await okText(b, ["list", "-r", "mirror"]), "mirror/a.txt\nmirror/empty/\n");

      await using reader = await startS3Server(bucket, ["--read-only"]);
      for (
        const args of [
          ["rm", "mirror/a.txt"],
          ["mv", "mirror/a.txt", "x.txt"],
          ["mkdir", "new"],
          ["put", "-r", src, "other"],
        ]
      ) {
        assertFailure(await ferry(reader, args), /read-only/, { what: args.join(" ") });
      }
      assert.equal(await okText(reader, ["list", "-r"]), "mirror/\nmirror/a.txt\nmirror/empty/\n");
      await okText(reader, ["get", "-r", "mirror", "ro"], dir);
      assert.equal(await Deno.readTextFile(`${dir}/ro/a.txt`), "alpha\n");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "s3: two servers moving two files to one new name: exactly one wins, the other is refused",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    for (let round = 0; round < 3; round++) {
      const target = `won-${round}.txt`;
      assertSuccess(await ferry(a, ["put", "-", `x-${round}.txt`], { stdin: "from a" }), "put x");
      assertSuccess(await ferry(b, ["put", "-", `y-${round}.txt`], { stdin: "from b" }), "put y");
      const [ra, rb] = await Promise.all([
        ferry(a, ["mv", `x-${round}.txt`, target]),
        ferry(b, ["mv", `y-${round}.txt`, target]),
      ]);
      const wins = [ra, rb].filter((r) => r.code === 0);
      assert.equal(wins.length, 1, `exactly one wins:\n${ra.stderr}\n${rb.stderr}`);
      const loser = ra.code === 0 ? rb : ra;
      assertFailure(loser, /File exists/, { what: "the loser" });
      const got = new TextDecoder().decode((await ferry(a, ["get", target, "-"])).stdout);
      assert.equal(got, ra.code === 0 ? "from a" : "from b", "the winner's bytes");
      // The loser's file is still under its old name.
      const kept = ra.code === 0 ? `y-${round}.txt` : `x-${round}.txt`;
      assert.ok(await headers(bucket, `files/${kept}`), "the refused move left its source");
    }
  },
});

Deno.test({
  name: "s3: mput through one server, mget through the other; a taken name is refused on its own",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    await using work = await makeTempDir();
    const big = randomBytes(PART + 999);
    await Deno.writeFile(`${work.path}/big.bin`, big);
    await Deno.writeTextFile(`${work.path}/small.txt`, "small\n");
    await okText(a, ["mput", "big.bin", "small.txt"], work.path);
    assert.match(
      (await headers(bucket, "files/big.bin"))?.get("x-amz-meta-ferry-checksum") ?? "",
      /^xxh128:/,
    );
    const again = await ferry(b, ["mput", "small.txt"], { cwd: work.path });
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /File exists: "small\.txt"/);
    await Deno.mkdir(`${work.path}/back`);
    await okText(b, ["mget", "big.bin", "small.txt"], `${work.path}/back`);
    assert.ok(
      Buffer.from(await Deno.readFile(`${work.path}/back/big.bin`)).equals(
        Buffer.from(big),
      ),
    );
    assert.equal(await Deno.readTextFile(`${work.path}/back/small.txt`), "small\n");
  },
});
