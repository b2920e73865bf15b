/**
 * Integration tests of what `put` reads and `get` writes outside plain files: a file that grows
 * or shrinks during a put, and tar through pipes with `put -` and `get -`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertRootHolds,
  assertSuccess,
  filesEqual,
  makeTempDir,
  randomBytes,
  REPO_ROOT,
  runCommand,
  type RunResult,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { fileSize, folderBytes } from "./client_checks.ts";

const MiB = 1 << 20;

const decoder = new TextDecoder();

/** Runs `bash -o pipefail -c SCRIPT bash ARGS...`; the client is "$CLIENT" in the script. */
async function pipeline(
  script: string,
  args: string[],
  cwd: string,
): Promise<RunResult> {
  return await runCommand("bash", ["-o", "pipefail", "-c", script, "bash", ...args], {
    cwd,
    env: {
      NO_COLOR: "1",
      DENO: Deno.execPath(),
      CLIENT: `${REPO_ROOT}client.ts`,
    },
  });
}

/** The client as a pipeline stage: `"$DENO" run ... "$CLIENT"`. */
const CLIENT = '"$DENO" run --allow-net --allow-read --allow-write "$CLIENT"';

/**
 * Starts `put LOCAL NAME --limit-rate 2M`, waits (bounded) until the server is receiving it, so
 * the client has measured LOCAL, runs `change`, and returns the finished client's result.
 */
async function changeMidUpload(
  server: ServerProcess,
  local: string,
  name: string,
  change: () => Promise<void>,
): Promise<{ code: number; stderr: string }> {
  const child = spawnClient([
    server.host,
    String(server.port),
    "put",
    local,
    name,
    "--limit-rate",
    "2M",
  ]);
  await child.stdin.close();
  await waitFor(
    "the upload to be under way",
    async () => await folderBytes(`${server.root}/${STAGING_DIR}`) >= MiB,
  );
  await change();
  const output = await child.output();
  return { code: output.code, stderr: decoder.decode(output.stderr) };
}

Deno.test("a file that grows during put is sent as it was measured; one that shrinks fails", async () => {
  await using server = await startServer({ args: ["--no-fsync"] });
  await using dir = await makeTempDir();
  const grows = `${dir.path}/grows.log`;
  await writeRandomFile(grows, 3 * MiB);
  const original = await Deno.readFile(grows);
  const grew = await changeMidUpload(server, grows, "grows.log", async () => {
    using file = await Deno.open(grows, { append: true });
    await file.write(randomBytes(4096));
  });
  assert.equal(grew.code, 0, grew.stderr);
  assert.match(grew.stderr, /warning: .*grows\.log grew during the upload; sent the 3145728 bytes/);
  // The server holds exactly the bytes the file had when the upload began.
  assert.deepEqual(await Deno.readFile(`${server.root}/grows.log`), original);

  const shrinks = `${dir.path}/shrinks.bin`;
  await writeRandomFile(shrinks, 3 * MiB);
  const shrank = await changeMidUpload(server, shrinks, "shrinks.bin", async () => {
    await Deno.truncate(shrinks, 2 * MiB - 5);
  });
  assert.equal(shrank.code, 1, shrank.stderr);
  assert.match(
    shrank.stderr,
    /^ferry: Cannot read .*shrinks\.bin: it shrank while being uploaded\n$/,
  );
  await server.waitForLog(/put "shrinks\.bin" .*aborted by client/);
  await assertRootHolds(server.root, ["grows.log"]);
});

// ------------------------------------------------------------------------------------ pipes

Deno.test("tar through pipes: put - and get - with the right exit codes", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const src = `${work.path}/photos`;
  await Deno.mkdir(`${src}/sub`, { recursive: true });
  await writeRandomFile(`${src}/one.bin`, 2 * MiB);
  await writeRandomFile(`${src}/two.bin`, 3 * MiB + 17);
  await writeRandomFile(`${src}/sub/three.bin`, MiB);
  await Deno.writeTextFile(`${src}/notes.txt`, "a few words\n");
  const expected = ["./", "./notes.txt", "./one.bin", "./sub/", "./sub/three.bin", "./two.bin"];
  const where = [server.host, String(server.port)];

  const put = await pipeline(
    `tar -C "$1" -cf - . | ${CLIENT} "$2" "$3" put - x.tar`,
    [src, ...where],
    work.path,
  );
  assertSuccess(put, "tar c | put - x.tar");
  assert.ok((await fileSize(`${server.root}/x.tar`)) > 6 * MiB, "the whole archive is stored");

  const listed = await pipeline(`${CLIENT} "$1" "$2" get x.tar - | tar -tf -`, where, work.path);
  assertSuccess(listed, "get x.tar - | tar t");
  assert.deepEqual(decoder.decode(listed.stdout).split("\n").filter(Boolean).sort(), expected);

  // The bytes are the archive: unpacked, every file is the same.
  await Deno.mkdir(`${work.path}/out`);
  const unpacked = await pipeline(
    `${CLIENT} "$1" "$2" get x.tar - | tar -C "$3" -xf -`,
    [...where, `${work.path}/out`],
    work.path,
  );
  assertSuccess(unpacked, "get x.tar - | tar x");
  for (const name of ["one.bin", "two.bin", "sub/three.bin", "notes.txt"]) {
    assert.ok(await filesEqual(`${src}/${name}`, `${work.path}/out/${name}`), name);
  }

  // Refused (the name exists, no --overwrite): the pipeline fails, with the client's status.
  const before = await Deno.readFile(`${server.root}/x.tar`);
  const refused = await pipeline(
    `tar -C "$1" -cf - . | ${CLIENT} "$2" "$3" put - x.tar`,
    [src, ...where],
    work.path,
  );
  assert.equal(refused.code, 1, `refused put pipeline: exit ${refused.code}:\n${refused.stderr}`);
  assert.match(refused.stderr, /exists/i);
  assert.deepEqual(await Deno.readFile(`${server.root}/x.tar`), before, "x.tar unchanged");

  // A missing name: the get pipeline fails too.
  const missing = await pipeline(
    `${CLIENT} "$1" "$2" get nope.tar - | tar -tf -`,
    where,
    work.path,
  );
  assert.notEqual(missing.code, 0, "get of a missing name in a pipeline must fail");
  assert.match(missing.stderr, /nope\.tar/);
  await assertRootHolds(server.root, ["x.tar"]);
});
