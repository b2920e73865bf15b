/**
 * The checksum stored with each object, checked on every way a file leaves the S3 store (against
 * a real object store, see tests/s3_harness.ts): a resumed get, whose sender checks the whole
 * file's checksum on its one hashing pass, and a get -r, whose reader checks it itself.
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertFailure, assertSuccess, ferry, makeTempDir, randomBytes } from "./harness.ts";
import { endpoint, holdStore, ignore, newBucket, PART, s3, startS3Server } from "./s3_harness.ts";

/** Rewrites the checksum stored with `key`, as another tool might, to that of something else. */
async function damage(bucket: string, key: string): Promise<void> {
  const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, {
    method: "PUT",
    headers: {
      "x-amz-copy-source": `/${bucket}/${key}`,
      "x-amz-metadata-directive": "REPLACE",
      "x-amz-meta-ferry-checksum": "xxh128:00000000000000000000000000000000",
    },
  });
  await response.body?.cancel();
  assert.equal(response.status, 200);
}

Deno.test({
  name: "s3: a resumed get of a file that no longer matches its stored checksum fails",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    const data = randomBytes(PART + 5000);
    assertSuccess(await ferry(a, ["put", "-", "r.bin"], { stdin: data }), "put");
    await damage(bucket, "files/r.bin");
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    await Deno.writeFile(`${dir}/r.bin.part`, data.subarray(0, 3 * 2 ** 20));
    const got = await ferry(a, ["get", "r.bin", `${dir}/r.bin`, "--resume"]);
    assertFailure(got, /does not match the checksum/, { what: "resumed get of a damaged file" });
    await assert.rejects(Deno.stat(`${dir}/r.bin`), Deno.errors.NotFound);
    assert.ok(
      a.lines.some((line) => /get "r\.bin" .*checksum/.test(line)),
      a.lines.join("\n"),
    );
  },
});

Deno.test({
  name: "s3: get -r fails a file that no longer matches its stored checksum, and gets the rest",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using tmp = await makeTempDir();
    const dir = tmp.path;
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/good.txt`, "good\n");
    await Deno.writeTextFile(`${dir}/src/small.txt`, "small\n");
    await Deno.writeFile(`${dir}/src/big.bin`, randomBytes(PART + 5000));
    assertSuccess(await ferry(a, ["put", "-r", `${dir}/src`, "t"]), "put -r");
    // One sent in DATA frames, one small enough to go in one piece (tree_send's two paths).
    await damage(bucket, "files/t/big.bin");
    await damage(bucket, "files/t/small.txt");
    const got = await ferry(a, ["get", "-r", "t", `${dir}/back`]);
    // One line for each file that failed, then the summary, as for any tree with a failure.
    assert.equal(got.code, 1, got.stderr);
    assert.match(got.stderr, /big\.bin: Stored "t\/big\.bin" does not match the checksum/);
    assert.match(got.stderr, /small\.txt: Stored "t\/small\.txt" does not match the checksum/);
    assert.match(got.stderr, /2 failed/);
    assert.equal(await Deno.readTextFile(`${dir}/back/good.txt`), "good\n");
    await assert.rejects(Deno.stat(`${dir}/back/big.bin`), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${dir}/back/small.txt`), Deno.errors.NotFound);
  },
});
