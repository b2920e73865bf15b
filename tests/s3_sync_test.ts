/**
 * Tree syncs with the S3 store against a real object store (see tests/s3_harness.ts): the mtime
 * and mode a `put -r` stores with each object let a second `put -r` skip what did not change, as
 * with a folder store, and `get -r` gives local copies the sender's mtime and mode.
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertSuccess, ferry, randomBytes } from "./harness.ts";
import {
  endpoint,
  headers,
  holdStore,
  ignore,
  newBucket,
  PART,
  s3,
  type S3Server,
  startS3Server,
} from "./s3_harness.ts";

/** Runs a tree transfer with `--json`; its summary's files sent and skipped. */
async function sync(server: S3Server, args: string[], cwd?: string): Promise<[number, number]> {
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
    using _store = await holdStore();
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
    using _store = await holdStore();
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
