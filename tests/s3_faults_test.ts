/**
 * The S3 store when things go wrong, against a real object store (see tests/s3_harness.ts): a server
 * killed mid-upload, the store frozen mid-upload and mid-download, a file replaced mid-download,
 * and a store that cannot be reached at start.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  assertFailure,
  assertSuccess,
  ferry,
  makeTempDir,
  randomBytes,
  resultOf,
  runServer,
  spawnClient,
  waitFor,
} from "./harness.ts";
import {
  headers,
  holdStore,
  ignore,
  multipartUploads,
  newBucket,
  PART,
  partStarted,
  radosgwPid,
  SERVER_ENV,
  stagedPut,
  startS3Server,
} from "./s3_harness.ts";

Deno.test({
  name: "s3: a server killed mid-upload leaves no object, and its upload is cleaned at next start",
  ignore,
  async fn() {
    using _store = await holdStore();
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
    using _store = await holdStore({ alone: true });
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
    using _store = await holdStore({ alone: true });
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

Deno.test({
  name: "s3: a file replaced mid-download is served whole as it was, or not at all: never a mix",
  ignore,
  async fn() {
    using _store = await holdStore();
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
  name: "s3: a server whose store cannot be reached says so in one line and does not start",
  ignore,
  async fn() {
    using _store = await holdStore();
    const result = await runServer(
      ["0", "--store", "s3://nowhere", "--s3-endpoint", "http://127.0.0.1:9"],
      { permissions: [`--allow-env=${SERVER_ENV}`] },
    );
    assertFailure(result, /Object store at http:\/\/127\.0\.0\.1:9 is unreachable/, {
      what: "server start",
    });
  },
});
