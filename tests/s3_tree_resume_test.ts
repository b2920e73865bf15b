/**
 * `put -r --resume` and `get -r --resume` with a server whose store is S3, against a real object
 * store (see tests/s3_harness.ts): a client killed in the middle of a big file of a tree leaves
 * what the next run needs (the bucket keeps the cut upload as a single `put --resume` does, the
 * client keeps its part), and the same command with `--resume`, through any server on the
 * bucket, finishes the tree without sending the kept bytes again, or sends the file whole when
 * its start changed since.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createChecksum } from "../lib/checksum.ts";
import { StoreError } from "../lib/errors.ts";
import { S3Store } from "../lib/s3_store.ts";
import { assertSuccess, ferry, makeTempDir, randomBytes, spawnClient, waitFor } from "./harness.ts";
import {
  endpoint,
  holdStore,
  ignore,
  keys,
  multipartUploads,
  newBucket,
  PART,
  s3,
  type S3Server,
  stagingKeys,
  startS3Server,
} from "./s3_harness.ts";
import {
  cuttingRelay,
  kill,
  largest,
  out,
  resumeTree,
  snapshot,
  summaryOf,
} from "./tree_helpers.ts";

/** Three parts: a first cut falls after the first part reached the store, a second one later. */
const BIG = 3 * PART;
/** Bytes the relay lets through before it holds: past the first part, short of the second. */
const HOLD_AT = PART + PART / 2;
const KEPT_PREFIX = "files/.ferry-staging/kept/";
/** The server's log line for a `put -r` the client left in the middle of. */
const CUT = / put_tree "up" .*interrupted/;

/** The kept uploads in the bucket, with their sizes. */
async function keptObjects(bucket: string): Promise<{ key: string; bytes: number }[]> {
  const found = [];
  for (const key of (await keys(bucket)).filter((key) => key.startsWith(KEPT_PREFIX))) {
    const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "HEAD" });
    found.push({ key, bytes: Number(response.headers.get("content-length")) });
  }
  return found;
}

/** The file bytes the server's log line for a tree transfer says moved. */
async function moved(server: S3Server, pattern: RegExp): Promise<number> {
  const line = await server.waitForLog(pattern);
  return Number(/ (?:put|get)_tree "[^"]*" (\d+) bytes/.exec(line)![1]);
}

/**
 * Starts `put -r SRC up` (with `args`) through `server`, behind a relay that holds the connection
 * at `hold` bytes, and kills the client once a part of the big file reached the store; returns
 * the bytes the bucket then keeps of it.
 */
async function cutPut(
  server: S3Server,
  bucket: string,
  src: string,
  hold = HOLD_AT,
  args: string[] = [],
): Promise<number> {
  const cuts = () => server.lines.filter((line) => CUT.test(line)).length;
  const before = cuts();
  const relay = cuttingRelay(server, hold, true, true);
  const child = spawnClient(["127.0.0.1", String(relay.port), "put", "-r", src, "up", ...args]);
  await waitFor(
    "a part of the big file staged",
    async () => (await multipartUploads(bucket)).length === 1,
    { timeoutMs: 20000 },
  );
  await kill(child);
  // What the relay let through reaches the server, then the end of the connection.
  await relay.close();
  await waitFor("the server's log of the cut", () => cuts() > before);
  const kept = await keptObjects(bucket);
  assert.equal(kept.length, 1, `one kept upload: ${JSON.stringify(kept)}`);
  return kept[0].bytes;
}

Deno.test({
  name: "s3: put -r --resume through another server continues the big file a killed client cut",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket, ["--show-kept"]);
    await using b = await startS3Server(bucket);
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await resumeTree(src, BIG);

    const kept = await cutPut(a, bucket, src);
    assert.ok(kept > PART && kept < BIG, `part of the file kept: ${kept}`);
    // Kept as a cut put is: under its full name, and shown by the kept query.
    const shown = await ferry(a, ["kept", "--json"]);
    assertSuccess(shown, "kept");
    assert.deepEqual(
      JSON.parse(out(shown)).map((entry: { name: string; bytes: number; size: number }) => [
        entry.name,
        entry.bytes,
        entry.size,
      ]),
      [["up/sub/big.bin", kept, BIG]],
    );
    assert.deepEqual(await multipartUploads(bucket), [], "nothing left staged");
    assert.ok(!(await keys(bucket)).includes("files/up/sub/big.bin"), "no half file published");

    const again = await ferry(b, ["put", "-r", src, "up", "--resume", "--json"]);
    assertSuccess(again, "put -r --resume");
    assert.doesNotMatch(again.stderr, /cannot continue/, "the server says it resumes trees");
    const summary = summaryOf(again);
    assert.equal(summary.resumed, kept, "continued from all that was kept");
    assert.equal(summary.failed, 0);
    assert.match(again.stderr, /of it resumed, not sent again/);
    // The server's log counts the bytes that moved: the big file's rest, and whatever small
    // files had not arrived.
    const sent = await moved(b, / put_tree "up" \d+ bytes ok .* bytes resumed/);
    assert.ok(sent <= BIG - kept + 100, `only the rest was sent: ${sent} bytes`);
    assert.deepEqual(await stagingKeys(bucket), [], "the kept upload is gone once used");
    assert.deepEqual(await multipartUploads(bucket), []);

    // Byte for byte, with mtimes and modes, as a get -r brings it back (checked against the
    // checksum stored with each object on the way).
    const back = `${work.path}/back`;
    assertSuccess(await ferry(a, ["get", "-r", "up", back]), "get -r");
    assert.deepEqual(await snapshot(back), await snapshot(src));
  },
});

Deno.test({
  name: "s3: put -r --resume sends a file whole when its start changed since the cut",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await resumeTree(src, BIG);
    const kept = await cutPut(a, bucket, src);
    assert.ok(kept > 0);
    // Same size, other bytes where the bucket kept them: what was kept must not be trusted.
    const big = await Deno.open(`${src}/sub/big.bin`, { write: true });
    await big.write(crypto.getRandomValues(new Uint8Array(4096)));
    big.close();

    const again = await ferry(a, ["put", "-r", src, "up", "--resume", "--json"]);
    assertSuccess(again, "put -r --resume");
    assert.doesNotMatch(again.stderr, /cannot continue/, "the server says it resumes trees");
    const summary = summaryOf(again);
    assert.equal(summary.resumed, 0, "nothing resumed from kept bytes that no longer match");
    assert.deepEqual(await stagingKeys(bucket), [], "the kept upload that did not match is gone");
    const back = `${work.path}/back`;
    assertSuccess(await ferry(a, ["get", "-r", "up", back]), "get -r");
    assert.deepEqual(await snapshot(back), await snapshot(src));
  },
});

Deno.test({
  name: "s3: get -r --resume continues the big file a killed client had half received",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await resumeTree(src, BIG);
    assertSuccess(await ferry(a, ["put", "-r", src, "tree"]), "put -r");
    const dest = `${work.path}/dest`;

    const relay = cuttingRelay(a, HOLD_AT, false, true);
    const child = spawnClient(["127.0.0.1", String(relay.port), "get", "-r", "tree", dest]);
    await waitFor(
      "the big file half received",
      async () => await largest(`${dest}/sub`, /^\.ferry-.*\.part$/).catch(() => 0) >= PART,
      { timeoutMs: 20000 },
    );
    await kill(child);
    await relay.close();
    const kept = await largest(`${dest}/sub`, /^\.ferry-.*\.part$/);
    assert.ok(kept >= PART && kept < BIG, `part of the file kept: ${kept}`);

    const again = await ferry(a, ["get", "-r", "tree", dest, "--resume", "--json"]);
    assertSuccess(again, "get -r --resume");
    assert.doesNotMatch(again.stderr, /cannot continue/, "the server says it resumes trees");
    const summary = summaryOf(again);
    assert.equal(summary.resumed, kept, "continued from all that was kept");
    const sent = await moved(a, / get_tree "tree" \d+ bytes ok/);
    assert.ok(sent <= BIG - kept + 100, `only the rest was sent: ${sent} bytes`);
    assert.deepEqual(await snapshot(dest), await snapshot(src));
    assert.equal(await largest(`${dest}/sub`, /^\.ferry-/), 0, "no part left");
  },
});

Deno.test({
  name: "s3: get -r --resume starts a file over when it was replaced since the cut",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await resumeTree(src, BIG);
    assertSuccess(await ferry(a, ["put", "-r", src, "tree"]), "put -r");
    const dest = `${work.path}/dest`;
    const relay = cuttingRelay(a, HOLD_AT, false);
    const cut = await ferry({ host: "127.0.0.1", port: relay.port }, ["get", "-r", "tree", dest]);
    await relay.close();
    assert.equal(cut.code, 1, cut.stderr);
    assert.ok(await largest(`${dest}/sub`, /^\.ferry-.*\.part$/) > 0, "the part is there");
    // Same size, other bytes where the part has them: what was kept must not be trusted.
    const big = await Deno.open(`${src}/sub/big.bin`, { write: true });
    await big.write(crypto.getRandomValues(new Uint8Array(4096)));
    big.close();
    assertSuccess(await ferry(a, ["put", "-r", src, "tree", "--checksum"]), "replace it");

    const again = await ferry(a, ["get", "-r", "tree", dest, "--resume", "--json"]);
    assertSuccess(again, "get -r --resume");
    assert.doesNotMatch(again.stderr, /cannot continue/, "the server says it resumes trees");
    const summary = summaryOf(again);
    assert.equal(summary.resumed, 0, "nothing resumed from a part that no longer matches");
    assert.deepEqual(await snapshot(dest), await snapshot(src));
    assert.equal(await largest(`${dest}/sub`, /^\.ferry-/), 0, "no part left");
  },
});

Deno.test({
  name: "s3: a resumed file cut again keeps all it has, and a third run ends it",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await resumeTree(src, BIG);
    const first = await cutPut(a, bucket, src);
    // The second run sends the rest from the kept bytes: the relay holds it more than a part
    // further on (the receiver writes in chunks of its own, so a little less arrives), and the
    // client is killed once a new part of its own reached the store.
    const second = await cutPut(a, bucket, src, PART * 5 / 4, ["--resume"]);
    assert.ok(second > first + PART / 2 && second < BIG, `kept ${first}, then ${second}`);

    const again = await ferry(a, ["put", "-r", src, "up", "--resume", "--json"]);
    assertSuccess(again, "put -r --resume");
    assert.doesNotMatch(again.stderr, /cannot continue/, "the server says it resumes trees");
    const summary = summaryOf(again);
    assert.equal(summary.resumed, second, "continued from all the two runs sent");
    const sent = await moved(a, / put_tree "up" \d+ bytes ok .* bytes resumed/);
    assert.ok(sent <= BIG - second + 100, `only the rest was sent: ${sent} bytes`);
    assert.deepEqual(await stagingKeys(bucket), []);
    assert.deepEqual(await multipartUploads(bucket), []);
    const back = `${work.path}/back`;
    assertSuccess(await ferry(a, ["get", "-r", "up", back]), "get -r");
    assert.deepEqual(await snapshot(back), await snapshot(src));
  },
});

Deno.test({
  name: "s3: put -r cut with keeping off leaves nothing in the bucket but the whole files",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket, ["--keep-budget", "0"]);
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await resumeTree(src, BIG);
    const relay = cuttingRelay(a, HOLD_AT, true, true);
    const child = spawnClient(["127.0.0.1", String(relay.port), "put", "-r", src, "up"]);
    await waitFor(
      "a part of the big file staged",
      async () => (await multipartUploads(bucket)).length === 1,
      { timeoutMs: 20000 },
    );
    await kill(child);
    await relay.close();
    await a.waitForLog(CUT);
    await waitFor("nothing staged", async () => (await multipartUploads(bucket)).length === 0);
    assert.deepEqual(await stagingKeys(bucket), []);
    assert.deepEqual(
      (await keys(bucket)).filter((key) => !key.endsWith("/")),
      ["files/up/a.txt"],
      "the file that arrived whole, and nothing of the cut one",
    );

    const again = await ferry(a, ["put", "-r", src, "up", "--resume", "--json"]);
    assertSuccess(again, "put -r --resume");
    assert.doesNotMatch(again.stderr, /cannot continue/, "the server says it resumes trees");
    assert.equal(summaryOf(again).resumed, 0);
    const back = `${work.path}/back`;
    assertSuccess(await ferry(a, ["get", "-r", "up", back]), "get -r");
    assert.deepEqual(await snapshot(back), await snapshot(src));
  },
});

Deno.test({
  name: "s3: a kept part offered to a tree is not continued once another version replaced it",
  ignore,
  // The store keeps its connections to radosgw for reuse, as a server does for its whole life.
  sanitizeResources: false,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    const store = await S3Store.open({
      bucket,
      prefix: "files/",
      endpoint,
      credentials: {
        accessKeyId: Deno.env.get("AWS_ACCESS_KEY_ID")!,
        secretAccessKey: Deno.env.get("AWS_SECRET_ACCESS_KEY")!,
      },
    });
    const size = 4 << 20;
    const data = randomBytes(size);
    /** A put --resume of big.bin cut once `bytes` of it arrived. */
    const cutAt = async (bytes: number) => {
      const upload = await store.beginUpload("big.bin", { size, resume: true });
      await upload.write(data.subarray(upload.offset, bytes));
      assert.equal((await upload.keep()).kept, true);
    };
    const entry = { path: "big.bin", type: "file" as const, size, mtime: 0, mode: 0o644 };
    await cutAt(2 << 20);
    const offer = await store.treeSink().resume!("big.bin", entry);
    assert.equal(offer?.point.size, 2 << 20);
    // Another server resumes it and is cut further on before this transfer's file comes.
    await cutAt(3 << 20);
    await assert.rejects(
      offer!.open(),
      (error) =>
        error instanceof StoreError && error.code === "io" && /changed/.test(error.message),
    );

    // What the other server kept is the next run's to continue.
    const next = await store.treeSink().resume!("big.bin", entry);
    assert.equal(next?.point.size, 3 << 20);
    const sink = await next!.open();
    await sink.write(data.subarray(3 << 20));
    const checksum = await createChecksum();
    checksum.update(data);
    await sink.commit({ size, checksum: checksum.digest() });
    const { file } = await store.openFile("big.bin");
    const back = new Uint8Array(size);
    for (let filled = 0; filled < size;) filled += (await file.read(back.subarray(filled)))!;
    file.close();
    assert.ok(Buffer.from(back).equals(Buffer.from(data)), "the whole file, once");
    assert.deepEqual(await stagingKeys(bucket), [], "the kept upload is gone once used");
  },
});
