/**
 * Integration tests of the client's local file errors: each says which file and why without the
 * OS's raw message, `get` checks LOCAL's folder before asking the server, and a read error
 * mid-upload aborts the upload at once.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertRootHolds,
  assertSuccess,
  ferry,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  REPO_ROOT,
  runCommand,
  startServer,
} from "./harness.ts";

Deno.test("local file errors say which file and why, without the OS's raw message", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.writeTextFile(`${work.path}/a.bin`, "a\n");
  await Deno.mkdir(`${work.path}/folder`);
  assertSuccess(await ferry(server, ["put", "-", "x.bin"], { stdin: "x\n" }), "put x.bin");

  const cwd = { cwd: work.path };
  assertFailure(
    await ferry(server, ["put", "a.bin/"], cwd),
    /^ferry: Cannot read a\.bin\/: not a folder$/,
    { what: "put of a file named with a trailing slash" },
  );
  assertFailure(
    await ferry(server, ["put", "folder"], cwd),
    /^ferry: Cannot upload folder: it is a folder$/,
    { what: "put of a folder" },
  );
  // A folder where the download's .part file would go.
  await Deno.mkdir(`${work.path}/x.bin.part`);
  assertFailure(
    await ferry(server, ["get", "x.bin"], cwd),
    /^ferry: Cannot write x\.bin\.part: it is a folder$/,
    { what: "get with a folder in the way of the .part" },
  );
  assert.equal(await pathExists(`${work.path}/x.bin`), false);
  await assertRootHolds(server.root, ["x.bin"]);
});

Deno.test("get checks LOCAL's folder before asking the server for anything", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.writeTextFile(`${work.path}/file.txt`, "a file, not a folder\n");
  assertSuccess(await ferry(server, ["put", "-", "a.bin"], { stdin: randomBytes(300000) }), "put");

  const cases: [string, RegExp][] = [
    ["nodir/x", /^ferry: Cannot write nodir\/x: no such folder nodir$/],
    ["newdir/", /^ferry: Cannot write into newdir\/: no such folder$/],
    ["file.txt/x", /^ferry: Cannot write file\.txt\/x: file\.txt is not a folder$/],
    ["file.txt/", /^ferry: Cannot write into file\.txt\/: not a folder$/],
  ];
  for (const [local, pattern] of cases) {
    assertFailure(await ferry(server, ["get", "a.bin", local], { cwd: work.path }), pattern, {
      what: local,
    });
  }
  assert.deepEqual(await listDir(work.path), ["file.txt"], "nothing was created");
  // A request that does reach the server, logged after any earlier one would have been.
  assertSuccess(await ferry(server, ["list"]), "list");
  await server.waitForLog(/ list /);
  assert.deepEqual(server.lines.filter((line) => / get /.test(line)), [], "no get was sent");
});

// ----------------------------------------------------------------------------- upload sources

Deno.test("a local read error mid-upload aborts the upload at once and names the file", async () => {
  await using server = await startServer();
  // Opens and stats like a file, but every read fails (EIO): the failure comes after OK. Deno
  // wants --allow-all to open it at all; the read error, not the permission, is under test.
  const result = await runCommand(
    Deno.execPath(),
    ["run", "--allow-all", `${REPO_ROOT}client.ts`, server.host, String(server.port)]
      .concat(["put", "/proc/self/mem", "mem.bin"]),
    { env: { NO_COLOR: "1" } },
  );
  assertFailure(result, /^ferry: Cannot read \/proc\/self\/mem: input\/output error$/, {
    what: "EIO",
  });
  // The server heard it from the client (ABORT), not from a cut connection.
  await server.waitForLog(/ put "mem\.bin" .*Client could not read its file/);
  await assertRootHolds(server.root, []);
});
