/**
 * Tree syncs with the S3 store against a real object store (Ceph's radosgw, `scripts/ceph.sh up`;
 * skipped with a note by `deno task test` when it is not running): the mtime and mode a `put -r`
 * stores with each object let a second `put -r` skip what did not change, as with a folder store,
 * and `get -r` gives local copies the sender's mtime and mode.
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
  randomBytes,
  SERVER_BANNER,
  spawnServer,
} from "./harness.ts";

const store = await findS3Store();
if (!store) {
  const note = `S3 sync tests skipped: no object store answers (${S3_ENV_FILE}); ` +
    "start one with scripts/ceph.sh up, then deno task test:s3";
  if (Deno.env.get("FERRY_S3_REQUIRED") === "1") throw new Error(note);
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

/** What the harness lets a server read, and the credentials' variables. */
const SERVER_ENV = [
  ...PROGRAM_PERMISSIONS.find((flag) => flag.startsWith("--allow-env="))!.slice(12).split(","),
  ...CREDENTIAL_ENV,
].join(",");

/** Bytes of one multipart part: a file bigger than this is staged and published by a copy. */
const PART = 8 * 2 ** 20;

async function newBucket(): Promise<string> {
  const bucket = `ferry-${crypto.randomUUID().slice(0, 13)}`;
  const response = await s3.fetch(`${endpoint}/${bucket}`, { method: "PUT" });
  await response.body?.cancel();
  assert.equal(response.status, 200, `creating bucket ${bucket}`);
  return bucket;
}

async function headers(bucket: string, key: string): Promise<Headers | null> {
  const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "HEAD" });
  return response.status === 200 ? response.headers : null;
}

/** A real server on `s3://bucket/files` at the test store. */
async function startS3Server(bucket: string) {
  const child = spawnServer(
    ["0", "--store", `s3://${bucket}/files`, "--s3-endpoint", endpoint],
    { permissions: [`--allow-env=${SERVER_ENV}`] },
  );
  const { lines, done, firstMatch } = collectLines(child.stderr);
  const match = await firstMatch(SERVER_BANNER, { timeoutMs: 20000 });
  const stop = async () => {
    child.kill("SIGTERM");
    await child.status;
    await done;
  };
  if (!match) {
    await stop();
    throw new Error(`S3 server did not start:\n${lines.join("\n")}`);
  }
  return { host: match[2] ?? match[3], port: Number(match[4]), [Symbol.asyncDispose]: stop };
}

type Server = Awaited<ReturnType<typeof startS3Server>>;

/** Runs a tree transfer with `--json`; its summary's files sent and skipped. */
async function sync(server: Server, args: string[], cwd?: string): Promise<[number, number]> {
  const result = await ferry(server, [...args, "--json"], { cwd });
  assertSuccess(result, args.join(" "));
  const lines = new TextDecoder().decode(result.stdout).trim().split("\n");
  const summary = JSON.parse(lines.at(-1)!);
  assert.equal(summary.failed, 0, args.join(" "));
  return [summary.files, summary.skipped];
}

const DAY = 86_400_000;
/** Whole seconds in the past, so that no filesystem's precision rounds them. */
const PAST = Math.floor((Date.now() - 30 * DAY) / 1000) * 1000;

/** A tree of small files and one of two parts, each with its own past mtime and mode. */
async function makeTree(src: string): Promise<Map<string, { mtime: number; mode: number }>> {
  const files = new Map([
    ["a.txt", { mtime: PAST, mode: 0o640 }],
    ["sub/b.txt", { mtime: PAST - DAY, mode: 0o755 }],
    ["sub/deep/big.bin", { mtime: PAST - 2 * DAY, mode: 0o600 }],
  ]);
  await Deno.mkdir(`${src}/sub/deep`, { recursive: true });
  await Deno.writeTextFile(`${src}/a.txt`, "alpha\n");
  await Deno.writeTextFile(`${src}/sub/b.txt`, "beta\n");
  await Deno.writeFile(`${src}/sub/deep/big.bin`, randomBytes(PART + 4321));
  for (const [path, { mtime, mode }] of files) {
    await Deno.chmod(`${src}/${path}`, mode);
    await Deno.utime(`${src}/${path}`, new Date(mtime), new Date(mtime));
  }
  return files;
}

Deno.test({
  name: "s3: a second put -r without --checksum sends only what changed",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using server = await startS3Server(bucket);
    const dir = await Deno.makeTempDir();
    try {
      const src = `${dir}/src`;
      const files = await makeTree(src);
      assert.deepEqual(await sync(server, ["put", "-r", src, "mirror"]), [3, 0]);
      for (const [path, { mtime, mode }] of files) {
        // Published by one PUT (small files) or by a copy of the staged upload (big.bin).
        const stored = await headers(bucket, `files/mirror/${path}`);
        assert.equal(stored?.get("x-amz-meta-ferry-mtime"), String(mtime), path);
        assert.equal(stored?.get("x-amz-meta-ferry-mode"), mode.toString(8), path);
      }
      assert.deepEqual(await sync(server, ["put", "-r", src, "mirror"]), [0, 3], "nothing sent");

      // Same size, new content and mtime: sent; so is a new file.
      await Deno.writeTextFile(`${src}/sub/b.txt`, "BETA\n");
      await Deno.writeTextFile(`${src}/new.txt`, "new\n");
      assert.deepEqual(await sync(server, ["put", "-r", src, "mirror"]), [2, 2]);
      const got = await ferry(server, ["get", "mirror/sub/b.txt", "-"]);
      assertSuccess(got, "get b.txt");
      assert.equal(new TextDecoder().decode(got.stdout), "BETA\n");
      assert.deepEqual(await sync(server, ["put", "-r", src, "mirror"]), [0, 4]);

      // A move keeps the stamps (the copy takes the metadata with it).
      const moved = await ferry(server, ["mv", "mirror", "moved"]);
      assertSuccess(moved, "mv");
      assert.deepEqual(await sync(server, ["put", "-r", src, "moved"]), [0, 4]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "s3: get -r gives local files the stored mtime and mode, and a second get sends nothing",
  ignore,
  async fn() {
    const bucket = await newBucket();
    await using server = await startS3Server(bucket);
    const dir = await Deno.makeTempDir();
    try {
      const files = await makeTree(`${dir}/src`);
      assert.deepEqual(await sync(server, ["put", "-r", `${dir}/src`, "tree"]), [3, 0]);
      // An object another tool wrote has no stamp: it is dated by the store, mode 0o644.
      const put = await s3.fetch(`${endpoint}/${bucket}/files/tree/other.txt`, {
        method: "PUT",
        body: "other\n",
      });
      await put.body?.cancel();
      assert.equal(put.status, 200);
      const storedAt = Date.parse(
        (await headers(bucket, "files/tree/other.txt"))!.get(
          "last-modified",
        )!,
      );

      assert.deepEqual(await sync(server, ["get", "-r", "tree", "back"], dir), [4, 0]);
      for (const [path, { mtime, mode }] of files) {
        const info = await Deno.stat(`${dir}/back/${path}`);
        assert.equal(info.mtime?.getTime(), mtime, `${path}: the sender's mtime`);
        assert.equal(info.mode! & 0o777, mode, `${path}: the sender's mode`);
      }
      const other = await Deno.stat(`${dir}/back/other.txt`);
      assert.equal(other.mtime?.getTime(), storedAt);
      assert.equal(other.mode! & 0o777, 0o644);

      assert.deepEqual(await sync(server, ["get", "-r", "tree", "back"], dir), [0, 4]);
      // Back from the local copy: nothing changed, nothing sent.
      assert.deepEqual(await sync(server, ["put", "-r", `${dir}/back`, "tree"]), [0, 4]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
