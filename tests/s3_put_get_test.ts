/**
 * Single files through the S3 store, against a real object store (see tests/s3_harness.ts): put
 * through one server and get through another with the checksum kept on the object, no partial
 * object while an upload runs, two servers racing for one name, read-only, get --resume, and a
 * stored file that no longer matches its checksum.
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
} from "./harness.ts";
import {
  encoder,
  endpoint,
  headers,
  holdStore,
  ignore,
  keys,
  multipartUploads,
  newBucket,
  PART,
  s3,
  stagedPut,
  stagingKeys,
  startS3Server,
} from "./s3_harness.ts";

Deno.test({
  name: "s3: put through one server, get through another, with the checksum stored",
  ignore,
  async fn() {
    using _store = await holdStore();
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
      await stagingKeys(bucket),
      [],
      "no staging object or claim left",
    );
  },
});

Deno.test({
  name: "s3: an upload in progress is invisible until it is complete and verified",
  ignore,
  async fn() {
    using _store = await holdStore();
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
    using _store = await holdStore();
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
  name: "s3: read-only refuses uploads and serves what is there",
  ignore,
  async fn() {
    using _store = await holdStore();
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
  name: "s3: get --resume continues from the part the client has",
  ignore,
  async fn() {
    using _store = await holdStore();
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
    using _store = await holdStore();
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
