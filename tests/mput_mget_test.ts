/**
 * Integration tests of `mput` and `mget`: many files over one connection, and per-file failures
 * that are named while the good files are still transferred.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertNoStackTrace,
  assertRootHolds,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  randomBytes,
  runClient,
  startServer,
  stderrLines,
  waitForStagingData,
} from "./harness.ts";
import { jsonLines } from "./client_checks.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { checksumOf, concat, dataFrame, serveInTurn, Wire } from "./wire.ts";

const decoder = new TextDecoder();

Deno.test("mput of 200 files uses one exchange, and mget brings them all back", async () => {
  await using server = await startServer({ args: ["--no-fsync"] });
  await using work = await makeTempDir();
  const names: string[] = [];
  await Deno.mkdir(`${work.path}/up`);
  await Deno.mkdir(`${work.path}/down`);
  for (let i = 0; i < 200; i++) {
    const name = `f-${String(i).padStart(3, "0")}.bin`;
    names.push(name);
    await Deno.writeFile(`${work.path}/up/${name}`, randomBytes(4096));
  }

  const put = await ferry(server, ["mput", ...names], { cwd: `${work.path}/up` });
  assertSuccess(put, "mput of 200 files");
  for (const name of names) {
    assert.ok(await filesEqual(`${work.path}/up/${name}`, `${server.root}/${name}`), name);
  }
  await assertRootHolds(server.root, names);
  // One exchange on one connection, pipelined as a tree's files are (tests/files_test.ts).
  await server.waitForLog(
    / put_files - 819200 bytes ok 200 files, 0 skipped, 0 deleted, 0 failed /,
  );

  const got = await ferry(server, ["mget", ...names], { cwd: `${work.path}/down` });
  assertSuccess(got, "mget of 200 files");
  assert.deepEqual(await listDir(`${work.path}/down`), names, "every file, no .part left");
  for (const name of names) {
    assert.ok(await filesEqual(`${work.path}/up/${name}`, `${work.path}/down/${name}`), name);
  }
  await server.waitForLog(
    / get_files - 819200 bytes ok 200 files, 0 skipped, 0 deleted, 0 failed /,
  );
});

Deno.test("mput and mget of many long names beyond ASCII: frames counted in UTF-8 bytes", async () => {
  await using server = await startServer({ args: ["--no-fsync"] });
  await using work = await makeTempDir();
  // 300 names of 240 bytes in UTF-8 but 80 UTF-16 units: a request or manifest sized by units
  // runs over the 64 KiB control frame.
  const stem = "漢字かなカナ語".repeat(12).slice(0, 76);
  const names = Array.from({ length: 300 }, (_, i) => `${stem}${String(i).padStart(4, "0")}`);
  await Deno.mkdir(`${work.path}/up`);
  await Deno.mkdir(`${work.path}/down`);
  for (const name of names) await Deno.writeTextFile(`${work.path}/up/${name}`, name);
  assertSuccess(await ferry(server, ["mput", ...names], { cwd: `${work.path}/up` }), "mput");
  const got = await ferry(server, ["mget", ...names], { cwd: `${work.path}/down` });
  assertSuccess(got, "mget");
  assert.deepEqual(await listDir(`${work.path}/down`), [...names].sort());
  for (const name of names) {
    assert.equal(await Deno.readTextFile(`${work.path}/down/${name}`), name);
  }
});

Deno.test("mput names each failure, stores the good files and exits 1", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const first = randomBytes(50000);
  const last = randomBytes(70000);
  const old = randomBytes(1000);
  await Deno.writeFile(`${work.path}/first.bin`, first);
  await Deno.writeFile(`${work.path}/existing.bin`, randomBytes(2000));
  await Deno.writeFile(`${work.path}/last.bin`, last);
  await Deno.writeFile(`${server.root}/existing.bin`, old);

  const result = await ferry(
    server,
    ["mput", "first.bin", "existing.bin", "missing.bin", "last.bin", "--json"],
    { cwd: work.path },
  );
  assert.equal(result.code, 1, `mput with failures: exit ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, "mput with failures");
  const lines = stderrLines(result);
  // Each is named once: by the message itself when it names the file, as these do.
  assert.ok(
    lines.some((line) => /^ferry: Refused by server: File exists: "existing\.bin" /.test(line)),
    `the refused file is named:\n${result.stderr}`,
  );
  assert.ok(
    lines.some((line) => /^ferry: Cannot read missing\.bin: no such file$/.test(line)),
    `the missing file is named:\n${result.stderr}`,
  );
  assert.ok(lines.some((line) => /2 of 4 files failed/.test(line)), result.stderr);
  assert.deepEqual(await Deno.readFile(`${server.root}/first.bin`), first);
  assert.deepEqual(
    await Deno.readFile(`${server.root}/last.bin`),
    last,
    "files after a failure go on",
  );
  assert.deepEqual(await Deno.readFile(`${server.root}/existing.bin`), old, "not overwritten");
  await assertRootHolds(server.root, ["existing.bin", "first.bin", "last.bin"]);

  // One report per file, in order: the failures as {op, name, ok: false, error}.
  const reports = jsonLines(decoder.decode(result.stdout), "mput --json");
  assert.deepEqual(reports.map((r) => [r.name, r.ok ?? true]), [
    ["first.bin", true],
    ["existing.bin", false],
    ["missing.bin", false],
    ["last.bin", true],
  ]);
  for (const failed of [reports[1], reports[2]]) {
    assert.deepEqual(Object.keys(failed).sort(), ["error", "name", "ok", "op"]);
    assert.equal(failed.op, "put");
    assert.equal(typeof failed.error, "string");
  }
});

Deno.test("mput whose middle file is refused after its data goes on over the same connection", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const first = randomBytes(1000);
  const middle = randomBytes(600_000);
  const last = randomBytes(1000);
  const theirs = randomBytes(100);
  await Deno.writeFile(`${work.path}/first.bin`, first);
  await Deno.writeFile(`${work.path}/middle.bin`, middle);
  await Deno.writeFile(`${work.path}/last.bin`, last);
  // --limit-rate sends the files one by one (put after put on one connection) and slowly, so
  // another writer can take the middle name while its bytes arrive: the server refuses it in
  // place of the final OK, after all its data.
  const running = ferry(
    server,
    ["mput", "first.bin", "middle.bin", "last.bin", "--limit-rate", "200K"],
    { cwd: work.path },
  );
  await waitForStagingData(server.root, 100_000);
  await Deno.writeFile(`${server.root}/middle.bin`, theirs);
  const result = await running;
  assert.equal(result.code, 1, `mput with a refused file: exit ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, "mput with a file refused after its data");
  const lines = stderrLines(result);
  assert.deepEqual(
    lines.filter((line) => /middle\.bin/.test(line)),
    [
      'ferry: Refused by server: File exists: "middle.bin" (use --overwrite to replace it)',
    ],
    `one line for the refused file:\n${result.stderr}`,
  );
  assert.ok(lines.some((line) => /^ferry: 1 of 3 files failed$/.test(line)), result.stderr);
  assert.deepEqual(await Deno.readFile(`${server.root}/first.bin`), first);
  assert.deepEqual(await Deno.readFile(`${server.root}/last.bin`), last, "the file after it");
  assert.deepEqual(await Deno.readFile(`${server.root}/middle.bin`), theirs, "not overwritten");
  await assertRootHolds(server.root, ["first.bin", "last.bin", "middle.bin"]);
  // All three went over the one connection: the refusal left it in step.
  await server.waitForLog(/ put "last\.bin" 1000 bytes ok /);
  const peers = new Set(
    server.lines.filter((line) => / put "/.test(line)).map((line) => line.split(" ")[1]),
  );
  assert.equal(peers.size, 1, `one connection:\n${server.lines.join("\n")}`);
});

/** Plays a server's side of one put: OK, then every frame up to END, then OK with END's sums. */
async function acceptPut(wire: Wire, name: string): Promise<void> {
  const request = await wire.expectFrame(FrameType.REQUEST, `put ${name}`);
  assert.equal(request.name, name);
  await wire.write(encodeControl(FrameType.OK, {}));
  for (;;) {
    const frame = await wire.readFrame();
    assert.ok(frame, `${name}: the client hung up mid-put`);
    if (frame.type !== FrameType.END) continue;
    await wire.write(encodeControl(FrameType.OK, frame.json!));
    return;
  }
}

Deno.test("mput goes on over a new connection after a refusal part-way through a file's data", async () => {
  await using work = await makeTempDir();
  await Deno.writeFile(`${work.path}/a.bin`, randomBytes(1000));
  await Deno.writeFile(`${work.path}/b.bin`, randomBytes(16 << 20));
  await Deno.writeFile(`${work.path}/c.bin`, randomBytes(1000));
  // A server without the tree feature: each file is a put of its own. It refuses b.bin after
  // its first DATA frame with a code that, in place of an OK, would keep the connection, and
  // hangs up as a server does after any refusal during the data.
  const result = await serveInTurn([
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake();
      await acceptPut(wire, "a.bin");
      const request = await wire.expectFrame(FrameType.REQUEST, "put b.bin");
      assert.equal(request.name, "b.bin");
      await wire.write(encodeControl(FrameType.OK, {}));
      assert.equal((await wire.readFrame())?.type, FrameType.DATA);
      await wire.write(encodeControl(FrameType.ERROR, { code: "denied", message: "No, not that" }));
    },
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake();
      await acceptPut(wire, "c.bin");
      assert.equal(await wire.readFrame(), null, "the client hangs up when done");
    },
  ], (port) =>
    runClient(["127.0.0.1", String(port), "mput", "a.bin", "b.bin", "c.bin"], {
      cwd: work.path,
    }));
  assert.equal(result.code, 1, `exit ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, "mput with a refusal mid-data");
  const lines = stderrLines(result);
  assert.deepEqual(lines.filter((line) => /^ferry: /.test(line)), [
    "ferry: b.bin: Refused by server: No, not that",
    "ferry: 1 of 3 files failed",
  ], result.stderr);
  assert.ok(lines.some((line) => /^Uploaded c\.bin /.test(line)), result.stderr);
});

/** Plays a server's side of one get of `data`: OK, DATA, END. */
async function sendGet(wire: Wire, name: string, data: Uint8Array): Promise<void> {
  const request = await wire.expectFrame(FrameType.REQUEST, `get ${name}`);
  assert.equal(request.name, name);
  await wire.write(encodeControl(FrameType.OK, { size: data.length, mtime: Date.now() }));
  await wire.write(concat([
    dataFrame(data),
    encodeControl(FrameType.END, { size: data.length, checksum: await checksumOf(data) }),
  ]));
}

Deno.test("mget goes on over a new connection after a file is aborted part-way through its data", async () => {
  await using work = await makeTempDir();
  const a = randomBytes(1000);
  const c = randomBytes(2000);
  // A server without the tree feature: each file is a get of its own. It aborts b.bin after
  // some of its data with a code that, in place of an OK, would keep the connection, and hangs up.
  const result = await serveInTurn([
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake();
      await sendGet(wire, "a.bin", a);
      await wire.expectFrame(FrameType.REQUEST, "get b.bin");
      await wire.write(encodeControl(FrameType.OK, { size: 5000, mtime: Date.now() }));
      await wire.write(dataFrame(randomBytes(1000)));
      await wire.write(encodeControl(FrameType.ABORT, { code: "denied", message: "No, not that" }));
    },
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake();
      await sendGet(wire, "c.bin", c);
      assert.equal(await wire.readFrame(), null, "the client hangs up when done");
    },
  ], (port) =>
    runClient(["127.0.0.1", String(port), "mget", "a.bin", "b.bin", "c.bin"], {
      cwd: work.path,
    }));
  assert.equal(result.code, 1, `exit ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, "mget with an ABORT mid-data");
  assert.deepEqual(stderrLines(result).filter((line) => /^ferry: /.test(line)), [
    "ferry: b.bin: Refused by server: No, not that",
    "ferry: 1 of 3 files failed",
  ], result.stderr);
  assert.deepEqual(await listDir(work.path), ["a.bin", "c.bin"], "nothing left of b.bin");
  assert.deepEqual(await Deno.readFile(`${work.path}/a.bin`), a);
  assert.deepEqual(await Deno.readFile(`${work.path}/c.bin`), c);
});

Deno.test("mget with a missing name downloads the others and exits 1", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const a = randomBytes(30000);
  const b = randomBytes(40000);
  await Deno.writeFile(`${server.root}/a.bin`, a);
  await Deno.writeFile(`${server.root}/b.bin`, b);

  const result = await ferry(server, ["mget", "a.bin", "missing.bin", "b.bin"], {
    cwd: work.path,
  });
  assert.equal(result.code, 1, `mget with a missing name: exit ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, "mget with a missing name");
  assert.ok(
    stderrLines(result).some((line) =>
      /^ferry: Refused by server: No such file: "missing\.bin"$/.test(line)
    ),
    `the missing name is named:\n${result.stderr}`,
  );
  assert.match(result.stderr, /1 of 3 files failed/);
  assert.deepEqual(await listDir(work.path), ["a.bin", "b.bin"], "nothing made for the missing");
  assert.deepEqual(await Deno.readFile(`${work.path}/a.bin`), a);
  assert.deepEqual(await Deno.readFile(`${work.path}/b.bin`), b);
});

Deno.test("mget refuses a small file whose name leads outside the root, and gets the rest", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await using outside = await makeTempDir();
  await Deno.writeTextFile(`${outside.path}/secret.txt`, "not yours\n");
  await Deno.symlink(`${outside.path}/secret.txt`, `${server.root}/leak.txt`);
  await Deno.mkdir(`${server.root}/sub`);
  await Deno.symlink(outside.path, `${server.root}/sub/out`);
  await Deno.writeTextFile(`${server.root}/ok.txt`, "fine\n");
  const result = await ferry(server, ["mget", "leak.txt", "sub/out/secret.txt", "ok.txt"], {
    cwd: work.path,
  });
  assert.equal(result.code, 1, result.stderr);
  assert.equal(
    stderrLines(result).filter((line) => /leads outside the root/.test(line)).length,
    2,
    result.stderr,
  );
  assert.deepEqual(await listDir(work.path), ["ok.txt"], "nothing of what lies outside");
});
