/**
 * `put -r --resume` and `get -r --resume`: a client killed in the middle of a big file of a tree
 * leaves what the next run needs (the server keeps the cut upload, the client its part), and the
 * same command with `--resume` finishes the tree without sending that file's kept bytes again, or
 * sends it whole when its start changed since.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  ferry,
  filesEqual,
  makeTempDir,
  RESUME_DIR,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  waitForStagingData,
} from "./harness.ts";
import { cuttingRelay, kill, largest, resumeTree, snapshot, summaryOf } from "./tree_helpers.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { TREE_PEER, withFakeServer } from "./wire.ts";

const BIG = 12 << 20;
/** Bytes the relay lets through before it holds: well into the big file. */
const HOLD_AT = 6 << 20;

Deno.test("put -r --resume continues a big file the killed client had half sent", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await resumeTree(src, BIG);

  const relay = cuttingRelay(server, HOLD_AT, true, true);
  const child = spawnClient(["127.0.0.1", String(relay.port), "put", "-r", src, "up"]);
  // The server has a good part of the big file staged: kill the client there.
  await waitForStagingData(server.root, HOLD_AT / 2);
  await kill(child);
  await relay.close();
  await server.waitForLog(/ put_tree "up" .*interrupted/);
  await waitFor(
    "the cut file kept",
    async () => await largest(`${server.root}/${RESUME_DIR}`, /\.part$/) >= HOLD_AT / 2,
  );
  const kept = await largest(`${server.root}/${RESUME_DIR}`, /\.part$/);
  assert.ok(kept < BIG, `part of the file kept: ${kept}`);
  assert.ok(!await Deno.stat(`${server.root}/up/sub/big.bin`).catch(() => null), "no half file");

  const again = await ferry(server, ["put", "-r", src, "up", "--resume", "--json"]);
  assertSuccess(again, "put -r --resume");
  const summary = summaryOf(again);
  assert.equal(summary.resumed, kept, "continued from all that was kept");
  assert.match(again.stderr, /of it resumed, not sent again/);
  // The server's log counts the bytes that moved: the big file's rest, and whatever small
  // files had not arrived.
  const line = await server.waitForLog(/ put_tree "up" \d+ bytes ok .* bytes resumed/);
  const moved = Number(/ put_tree "up" (\d+) bytes/.exec(line)![1]);
  assert.ok(moved <= BIG - kept + 100, `only the rest was sent: ${moved} bytes`);
  assert.ok(
    await filesEqual(`${src}/sub/big.bin`, `${server.root}/up/sub/big.bin`),
    "byte for byte",
  );
  assert.deepEqual(await snapshot(`${server.root}/up`), await snapshot(src));
  assert.deepEqual(await Array.fromAsync(Deno.readDir(`${server.root}/${RESUME_DIR}`)), []);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(`${server.root}/${STAGING_DIR}`)), []);
});

Deno.test("get -r --resume continues a big file the killed client had half received", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await resumeTree(`${server.root}/tree`, BIG);
  const dest = `${work.path}/dest`;

  const relay = cuttingRelay(server, HOLD_AT, false, true);
  const child = spawnClient(["127.0.0.1", String(relay.port), "get", "-r", "tree", dest]);
  await waitFor(
    "the big file half received",
    async () => await largest(`${dest}/sub`, /^\.ferry-.*\.part$/).catch(() => 0) >= HOLD_AT / 2,
  );
  await kill(child);
  await relay.close();
  const kept = await largest(`${dest}/sub`, /^\.ferry-.*\.part$/);
  assert.ok(kept < BIG, `part of the file kept: ${kept}`);

  const again = await ferry(server, ["get", "-r", "tree", dest, "--resume", "--json"]);
  assertSuccess(again, "get -r --resume");
  const summary = summaryOf(again);
  assert.equal(summary.resumed, kept, "continued from all that was kept");
  const line = await server.waitForLog(/ get_tree "tree" \d+ bytes ok/);
  const moved = Number(/ get_tree "tree" (\d+) bytes/.exec(line)![1]);
  assert.ok(moved <= BIG - kept + 100, `only the rest was sent: ${moved} bytes`);
  assert.ok(await filesEqual(`${server.root}/tree/sub/big.bin`, `${dest}/sub/big.bin`), "bytes");
  assert.deepEqual(await snapshot(dest), await snapshot(`${server.root}/tree`));
});

Deno.test("get -r cut mid-file says what it kept; a rerun without --resume starts that file over", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await resumeTree(`${server.root}/tree`, BIG);
  const dest = `${work.path}/dest`;

  const relay = cuttingRelay(server, HOLD_AT, false);
  const cut = await ferry({ host: "127.0.0.1", port: relay.port }, ["get", "-r", "tree", dest]);
  await relay.close();
  assertFailure(cut, /; 1 partial file kept \(run again with --resume to continue\)$/, {
    what: "get -r cut",
  });
  assert.ok(await largest(`${dest}/sub`, /^\.ferry-.*\.part$/) > 0, "the part is there");

  const again = await ferry(server, ["get", "-r", "tree", dest, "--json"]);
  assertSuccess(again, "get -r again");
  const summary = summaryOf(again);
  assert.equal(summary.resumed, 0, "nothing resumed without --resume");
  assert.deepEqual(await snapshot(dest), await snapshot(`${server.root}/tree`));
  assert.equal(await largest(`${dest}/sub`, /^\.ferry-/), 0, "no part left");
});

Deno.test("get -r --resume starts a file over when its start changed since the cut", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await resumeTree(`${server.root}/tree`, BIG);
  const dest = `${work.path}/dest`;

  const relay = cuttingRelay(server, HOLD_AT, false);
  const cut = await ferry({ host: "127.0.0.1", port: relay.port }, ["get", "-r", "tree", dest]);
  await relay.close();
  assert.equal(cut.code, 1, cut.stderr);
  assert.ok(await largest(`${dest}/sub`, /^\.ferry-.*\.part$/) > 0, "the part is there");
  // Same size, other bytes where the part has them: what was kept must not be trusted.
  const big = await Deno.open(`${server.root}/tree/sub/big.bin`, { write: true });
  await big.write(crypto.getRandomValues(new Uint8Array(4096)));
  big.close();

  const again = await ferry(server, ["get", "-r", "tree", dest, "--resume", "--json"]);
  assertSuccess(again, "get -r --resume");
  const summary = summaryOf(again);
  assert.equal(summary.resumed, 0, "nothing resumed from a part that no longer matches");
  assert.deepEqual(await snapshot(dest), await snapshot(`${server.root}/tree`));
  assert.equal(await largest(`${dest}/sub`, /^\.ferry-/), 0, "no part left");
});

Deno.test("--resume against a server that cannot continue a tree's files says so, once, and goes on", async () => {
  await using work = await makeTempDir();
  await resumeTree(`${work.path}/src`, BIG);
  // An older server: folders, but no `tree-resume` in its WELCOME. It takes the request and
  // refuses it, so only what the client said before sending anything is looked at.
  const result = await withFakeServer(
    async (wire, request) => {
      assert.equal(request.op, "put_tree");
      assert.equal(request.resume, true);
      await wire.write(encodeControl(FrameType.ERROR, { code: "denied", message: "not today" }));
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["put", "-r", "--resume", `${work.path}/src`]),
    TREE_PEER,
  );
  assert.equal(result.code, 1, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 2, result.stderr);
  assert.match(
    lines[0],
    /note: .* cannot continue files cut inside a folder .*: those are sent whole$/,
  );
  assert.match(lines[1], /Refused by server: not today$/);

  // A folder server continues them: no note.
  await using server = await startServer();
  const ok = await ferry(server, ["put", "-r", "--resume", `${work.path}/src`]);
  assertSuccess(ok, "put -r --resume");
  assert.doesNotMatch(ok.stderr, /note:/);
});
