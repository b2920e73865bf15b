/**
 * Interrupted puts kept in the S3 store for resume, against a real object store (see
 * tests/s3_harness.ts): kept in the bucket and ended through another server, or not kept when over
 * the keep budget.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { assertSuccess, ferry, makeTempDir, randomBytes, waitFor } from "./harness.ts";
import {
  headers,
  holdStore,
  ignore,
  multipartUploads,
  newBucket,
  PART,
  stagedFilePut,
  stagingKeys,
  startS3Server,
} from "./s3_harness.ts";

Deno.test({
  name:
    "s3: an interrupted put is kept in the bucket, and put --resume through another server ends it",
  ignore,
  async fn() {
    using _store = await holdStore();
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
      await stagingKeys(bucket),
      [],
      "the kept upload is gone once used",
    );
  },
});

Deno.test({
  name: "s3: an interrupted put over the keep budget is not kept",
  ignore,
  async fn() {
    using _store = await holdStore();
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
    assert.deepEqual(await stagingKeys(bucket), []);
  },
});
