/**
 * Integration tests of the client's put and get against the real server: random, empty, large
 * and non-ASCII files round-trip intact and are logged one line per request; existing names are
 * refused unless `--overwrite` or `--force`, and a missing name creates no local file.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertRootHolds,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  randomBytes,
  startServer,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1 << 20;

Deno.test("put then get round-trips 5 MiB of random binary, logged one line per request", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(5 * MiB);
  await Deno.writeFile(`${work.path}/random.bin`, data);

  assertSuccess(await ferry(server, ["put", "random.bin"], { cwd: work.path }), "put");
  assert.deepEqual(await Deno.readFile(`${server.root}/random.bin`), data);

  const got = await ferry(server, ["get", "random.bin", "back.bin"], { cwd: work.path });
  assertSuccess(got, "get");
  assert.equal(got.stdout.length, 0, "messages go to stderr, not stdout");
  assert.ok(await filesEqual(`${work.path}/random.bin`, `${work.path}/back.bin`));
  assert.deepEqual(await listDir(work.path), ["back.bin", "random.bin"], "no .part left behind");
  await assertRootHolds(server.root, ["random.bin"]);

  // One log line per request, with the name, the byte count and the result.
  await server.waitForLog(/ put "random\.bin" 5242880 bytes ok /);
  await server.waitForLog(/ get "random\.bin" 5242880 bytes ok /);
  assert.equal(server.lines.filter((line) => /"random\.bin"/.test(line)).length, 2);
});

Deno.test("an empty file round-trips", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.writeFile(`${work.path}/empty.txt`, new Uint8Array(0));

  assertSuccess(await ferry(server, ["put", "empty.txt"], { cwd: work.path }), "put");
  assert.equal((await Deno.stat(`${server.root}/empty.txt`)).size, 0);

  assertSuccess(await ferry(server, ["get", "empty.txt", "back.txt"], { cwd: work.path }), "get");
  const back = await Deno.stat(`${work.path}/back.txt`);
  assert.ok(back.isFile);
  assert.equal(back.size, 0);

  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(new TextDecoder().decode(listed.stdout), "empty.txt\n");
});

Deno.test("a 100 MiB file round-trips intact", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const size = 100 * MiB;
  await writeRandomFile(`${work.path}/big.bin`, size);

  assertSuccess(await ferry(server, ["put", "big.bin"], { cwd: work.path }), "put");
  assert.equal((await Deno.stat(`${server.root}/big.bin`)).size, size);
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${server.root}/big.bin`));

  assertSuccess(await ferry(server, ["get", "big.bin", "back.bin"], { cwd: work.path }), "get");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${work.path}/back.bin`));
  assert.deepEqual(await listDir(work.path), ["back.bin", "big.bin"]);
  await assertRootHolds(server.root, ["big.bin"]);
});

Deno.test("a non-ASCII name with spaces round-trips under its exact name", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const name = "résumé ü 1.txt".normalize("NFC");
  const data = new TextEncoder().encode("Curriculum vitæ — ünïcödé content\n");
  await Deno.mkdir(`${work.path}/up`);
  await Deno.mkdir(`${work.path}/down`);
  await Deno.writeFile(`${work.path}/up/${name}`, data);

  // No REMOTE: the remote name defaults to the local base name.
  assertSuccess(await ferry(server, ["put", name], { cwd: `${work.path}/up` }), "put");
  assert.deepEqual(await Deno.readFile(`${server.root}/${name}`), data);

  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(new TextDecoder().decode(listed.stdout), `${name}\n`, "listed as given (NFC)");

  // No LOCAL: the local name defaults to the remote base name, in the working folder.
  assertSuccess(await ferry(server, ["get", name], { cwd: `${work.path}/down` }), "get");
  assert.deepEqual(await listDir(`${work.path}/down`), [name]);
  assert.deepEqual(await Deno.readFile(`${work.path}/down/${name}`), data);
});

Deno.test("put refuses an existing name, and --overwrite replaces it", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const first = randomBytes(100000);
  const second = randomBytes(200000);
  await Deno.writeFile(`${work.path}/first.bin`, first);
  await Deno.writeFile(`${work.path}/second.bin`, second);

  assertSuccess(await ferry(server, ["put", "first.bin", "name.bin"], { cwd: work.path }), "put");
  const refused = await ferry(server, ["put", "second.bin", "name.bin"], { cwd: work.path });
  assertFailure(refused, /File exists: "name\.bin" \(use --overwrite to replace it\)$/, {
    what: "put over an existing name, with the flag that would replace it",
  });
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  // The same refusal from stdin, where the client may already be reading data.
  const piped = await ferry(server, ["put", "-", "name.bin"], { stdin: second });
  assertFailure(piped, /exists/i, { what: "put from stdin over an existing name" });
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  // mput gives the same hint, file by file, naming the file once.
  await Deno.writeFile(`${work.path}/name.bin`, second);
  const many = await ferry(server, ["mput", "first.bin", "name.bin"], { cwd: work.path });
  assert.equal(many.code, 1);
  assert.match(
    many.stderr,
    /^ferry: Refused by server: File exists: "name\.bin" \(use --overwrite/m,
  );
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  await Deno.remove(`${server.root}/first.bin`);
  await assertRootHolds(server.root, ["name.bin"]);

  const replaced = await ferry(server, ["put", "--overwrite", "second.bin", "name.bin"], {
    cwd: work.path,
  });
  assertSuccess(replaced, "put --overwrite");
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), second);
  await assertRootHolds(server.root, ["name.bin"]);
  await server.waitForLog(/ put "name\.bin" 0 bytes refused \(exists/);
});

Deno.test("get of a missing name exits 1 and creates no local file", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();

  const named = await ferry(server, ["get", "missing.bin", "local.bin"], { cwd: work.path });
  assertFailure(named, /missing\.bin/, { what: "get of a missing name" });
  assert.match(named.stderr, /no such file|not found/i);
  const defaulted = await ferry(server, ["get", "missing.bin"], { cwd: work.path });
  assertFailure(defaulted, /missing\.bin/, { what: "get of a missing name to the default LOCAL" });
  assert.deepEqual(await listDir(work.path), [], "no LOCAL, no LOCAL.part");

  const toStdout = await ferry(server, ["get", "missing.bin", "-"], { cwd: work.path });
  assertFailure(toStdout, /missing\.bin/, { what: "get of a missing name to stdout" });
  assert.deepEqual(await listDir(work.path), []);
});

Deno.test("get refuses an existing local file, and --force replaces it", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const remote = randomBytes(50000);
  const local = new TextEncoder().encode("precious local data\n");
  await Deno.writeFile(`${server.root}/remote.bin`, remote);
  await Deno.writeFile(`${work.path}/local.bin`, local);

  const refused = await ferry(server, ["get", "remote.bin", "local.bin"], { cwd: work.path });
  assertFailure(refused, /exists/i, { what: "get over an existing local file" });
  assert.match(refused.stderr, /--force/, "the message says how to replace it");
  assert.deepEqual(await Deno.readFile(`${work.path}/local.bin`), local, "local file unchanged");
  assert.deepEqual(await listDir(work.path), ["local.bin"], "no .part left behind");

  const forced = await ferry(server, ["get", "remote.bin", "local.bin", "--force"], {
    cwd: work.path,
  });
  assertSuccess(forced, "get --force");
  assert.deepEqual(await Deno.readFile(`${work.path}/local.bin`), remote);
  assert.deepEqual(await listDir(work.path), ["local.bin"]);
});
