/**
 * The seed's client (tests/seed_peer.py, written from the seed's text) against `server.ts
 * --legacy`, and against a server without it: puts, gets and lists, staging, refused names and
 * requests, read-only, and ferry clients still served. `--legacy` with a token or TLS is in
 * exposure_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertNoStackTrace,
  assertRootHolds,
  assertSuccess,
  type Endpoint,
  ferry,
  filesEqual,
  listDir,
  pathExists,
  randomBytes,
  REPO_ROOT,
  type RunOptions,
  type RunResult,
  STAGING_DIR,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import {
  BIG,
  DEADLINE_MS,
  ferryLegacy,
  readUntil,
  SEED_PEER,
  startLegacyServer,
  workDir,
  writeAll,
} from "./seed.ts";

const MiB = 1 << 20;

/** The seed's refusal word. */
const CANCEL = "cancel";

const encoder = new TextEncoder();

const decoder = new TextDecoder();

/** Runs the seed's client to completion: `seed_peer.py client HOST PORT ...args`. */
async function seed(
  endpoint: Endpoint,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const output = await new Deno.Command("python3", {
    args: [SEED_PEER, "client", endpoint.host, String(endpoint.port), ...args],
    cwd: options.cwd ?? REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(DEADLINE_MS),
  }).output();
  const stderr = decoder.decode(output.stderr);
  if (output.signal !== null) {
    throw new Error(`The seed client was stopped (${output.signal}); its stderr was:\n${stderr}`);
  }
  return { code: output.code, stdout: output.stdout, stderr };
}

/** The seed's client was refused (`cancel`): exit 1, saying so on stderr, nothing on stdout. */
function assertSeedRefused(result: RunResult, what: string): void {
  assert.equal(result.code, 1, `${what}: expected exit 1, got ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result);
  assert.match(result.stderr, /server answered 'cancel'/, what);
  assert.equal(result.stdout.length, 0, `${what}: nothing on stdout`);
}

/** Sends one raw seed request, half-closes, and returns everything the server answered. */
async function rawSeedRequest(endpoint: Endpoint, request: Uint8Array | string): Promise<string> {
  using conn = await Deno.connect({ hostname: endpoint.host, port: endpoint.port });
  await writeAll(conn, typeof request === "string" ? encoder.encode(request) : request);
  await conn.closeWrite();
  return decoder.decode(await readUntil(conn));
}

// ------------------------------------------------------- the seed's client, ferry-server --legacy

Deno.test("the seed's client puts, gets and lists with ferry-server --legacy, and a ferry client reads what it stored", async () => {
  await using server = await startLegacyServer();
  const data = randomBytes(3 * MiB + 4321);
  await using work = await workDir({ "up.bin": data });

  assertSuccess(await seed(server, ["put", "up.bin", "a b.bin"], { cwd: work.path }), "seed put");
  assert.deepEqual(await Deno.readFile(`${server.root}/a b.bin`), data);
  await assertRootHolds(server.root, ["a b.bin"]);

  assertSuccess(await seed(server, ["get", "a b.bin", "back.bin"], { cwd: work.path }), "seed get");
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${work.path}/back.bin`));

  const listed = await seed(server, ["list"]);
  assertSuccess(listed, "seed list");
  assert.equal(decoder.decode(listed.stdout), "a b.bin\n");

  // The same port still speaks ferry's protocol, and ferry's client reads the seed's upload.
  const got = await ferry(server, ["get", "a b.bin", "-"]);
  assertSuccess(got, "ferry get of the seed's upload");
  assert.deepEqual(got.stdout, data);

  // Every seed request is logged; the upload as UNVERIFIED, since nothing could check it.
  await server.waitForLog(new RegExp(` seed put "a b\\.bin" ${data.length} bytes ok UNVERIFIED `));
  await server.waitForLog(new RegExp(` seed get "a b\\.bin" ${data.length} bytes ok `));
  await server.waitForLog(/ seed list - \d+ bytes ok /);
  await assertRootHolds(server.root, ["a b.bin"]);
});

Deno.test("the seed's client is refused an existing name with cancel, and the stored file is unchanged", async () => {
  await using server = await startLegacyServer();
  const first = randomBytes(100000);
  await using work = await workDir({ "first.bin": first, "second.bin": randomBytes(200000) });

  assertSuccess(await seed(server, ["put", "first.bin", "name.bin"], { cwd: work.path }), "put");
  const refused = await seed(server, ["put", "second.bin", "name.bin"], { cwd: work.path });
  assertSeedRefused(refused, "seed put over an existing name");
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  await assertRootHolds(server.root, ["name.bin"]);
  await server.waitForLog(/ seed put "name\.bin" 0 bytes refused \(exists/);
});

Deno.test("the seed's client's get of a missing name exits 1 and creates no local file", async () => {
  await using server = await startLegacyServer();
  await using work = await workDir();

  assertSeedRefused(
    await seed(server, ["get", "missing.bin", "local.bin"], { cwd: work.path }),
    "seed get of a missing name",
  );
  assert.deepEqual(await listDir(work.path), [], "nothing created locally");
  await server.waitForLog(/ seed get "missing\.bin" 0 bytes refused \(not_found/);
  await assertRootHolds(server.root, []);
});

Deno.test("a zero-byte file goes up and comes back with the seed's client", async () => {
  await using server = await startLegacyServer();
  await using work = await workDir({ "empty.txt": new Uint8Array(0) });

  assertSuccess(await seed(server, ["put", "empty.txt"], { cwd: work.path }), "seed put");
  const stored = await Deno.stat(`${server.root}/empty.txt`);
  assert.ok(stored.isFile);
  assert.equal(stored.size, 0);

  assertSuccess(await seed(server, ["get", "empty.txt", "back.txt"], { cwd: work.path }), "get");
  const back = await Deno.stat(`${work.path}/back.txt`);
  assert.ok(back.isFile);
  assert.equal(back.size, 0);
  await server.waitForLog(/ seed put "empty\.txt" 0 bytes ok UNVERIFIED /);
  await assertRootHolds(server.root, ["empty.txt"]);
});

Deno.test("a 50 MiB random file goes up and comes back byte-identical with the seed's client", async () => {
  await using server = await startLegacyServer();
  await using work = await workDir();
  await writeRandomFile(`${work.path}/big.bin`, BIG);

  assertSuccess(await seed(server, ["put", "big.bin"], { cwd: work.path }), "seed put");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${server.root}/big.bin`));
  await assertRootHolds(server.root, ["big.bin"]);

  assertSuccess(await seed(server, ["get", "big.bin", "back.bin"], { cwd: work.path }), "get");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${work.path}/back.bin`));
  await server.waitForLog(new RegExp(` seed put "big\\.bin" ${BIG} bytes ok UNVERIFIED `));
  await server.waitForLog(new RegExp(` seed get "big\\.bin" ${BIG} bytes ok `));
});

// ------------------------------------------------------- storage rules of ferry-server --legacy

Deno.test("a seed upload is staged while it arrives and appears under its name only when the connection ends", async () => {
  await using server = await startLegacyServer();
  const data = randomBytes(2 * MiB);
  using conn = await Deno.connect({ hostname: server.host, port: server.port });
  await writeAll(conn, encoder.encode("put staged.bin"));
  const answer = await readUntil(conn, (received) => received.length >= 4);
  assert.equal(decoder.decode(answer), "pass");

  // Half the bytes are sent: the upload is in the staging folder, and its name does not exist.
  await writeAll(conn, data.subarray(0, MiB));
  const staging = `${server.root}/${STAGING_DIR}`;
  await waitFor("the staged upload", async () => (await listDir(staging)).length === 1);
  assert.equal(await pathExists(`${server.root}/staged.bin`), false, "not under its name yet");
  const listed = await seed(server, ["list"]);
  assertSuccess(listed, "seed list during the upload");
  assert.equal(listed.stdout.length, 0, "an upload in progress is not listed");

  // The rest, then the half-close that ends a seed upload: now it is there, staging is empty.
  await writeAll(conn, data.subarray(MiB));
  await conn.closeWrite();
  assert.equal((await readUntil(conn)).length, 0, "the server just closes");
  assert.deepEqual(await Deno.readFile(`${server.root}/staged.bin`), data);
  await assertRootHolds(server.root, ["staged.bin"]);
  await server.waitForLog(/ seed put "staged\.bin" 2097152 bytes ok UNVERIFIED /);
});

Deno.test("seed names with '..' or an absolute path are refused with cancel and nothing is written outside the root", async () => {
  await using server = await startLegacyServer();
  await Deno.writeFile(`${server.base}/secret.txt`, encoder.encode("not for the network\n"));
  await using work = await workDir({ "up.txt": encoder.encode("payload\n") });
  // Absolute names short enough for the 32-byte request line.
  const names = ["../outside.txt", "../secret.txt", "a/../../x", "/etc/passwd", "/ferry-out.txt"];

  for (const name of names) {
    for (const op of ["put", "get"]) {
      // The exact reply, on the wire, and then what the seed's own client makes of it.
      assert.equal(await rawSeedRequest(server, `${op} ${name}`), CANCEL, `${op} ${name}`);
      const args = op === "put" ? ["put", "up.txt", name] : ["get", name, "down.txt"];
      assertSeedRefused(await seed(server, args, { cwd: work.path }), `seed ${op} ${name}`);
    }
  }
  await server.waitForLog(/ seed put "\.\.\/outside\.txt" 0 bytes refused \(bad_name/);
  await server.waitForLog(/ seed get "\/etc\/passwd" 0 bytes refused \(bad_name/);
  assert.deepEqual(await listDir(server.base), ["root", "secret.txt"], "nothing beside the root");
  assert.equal(await pathExists("/ferry-out.txt"), false, "nothing at the absolute path");
  assert.deepEqual(await listDir(work.path), ["up.txt"], "nothing downloaded");
  await assertRootHolds(server.root, []);
});

Deno.test("the seed listing hides the server's private folders and shows subfolder files as sub/name", async () => {
  await using server = await startLegacyServer();
  await Deno.mkdir(`${server.root}/sub`);
  await Deno.writeFile(`${server.root}/b.txt`, encoder.encode("b"));
  await Deno.writeFile(`${server.root}/sub/inner.txt`, encoder.encode("inner"));
  // What an upload in progress and a kept partial upload would leave in the private folders.
  await Deno.writeFile(`${server.root}/${STAGING_DIR}/leftover.upload`, new Uint8Array(10));
  await Deno.mkdir(`${server.root}/.ferry-resume`, { recursive: true });
  await Deno.writeFile(`${server.root}/.ferry-resume/kept.part`, new Uint8Array(10));

  const listed = await seed(server, ["list"]);
  assertSuccess(listed, "seed list");
  assert.equal(decoder.decode(listed.stdout), "b.txt\nsub/inner.txt\n");
  // ferry's own client in seed mode sees the same.
  const ours = await ferryLegacy(server, ["list"]);
  assertSuccess(ours, "ferry --legacy list");
  assert.equal(decoder.decode(ours.stdout), "b.txt\nsub/inner.txt\n");
  // And the private folders cannot be read by name either.
  assert.equal(await rawSeedRequest(server, `get ${STAGING_DIR}/leftover.upload`), CANCEL);
  assert.equal(await rawSeedRequest(server, "get .ferry-resume/kept.part"), CANCEL);
});

Deno.test("a malformed seed request is answered cancel, and the server goes on serving", async () => {
  await using server = await startLegacyServer();
  for (const request of ["lsx", "put", "get ", "pu x", "list extra", "put \u0000x"]) {
    assert.equal(await rawSeedRequest(server, request), CANCEL, JSON.stringify(request));
  }
  // Not UTF-8 at all.
  assert.equal(
    await rawSeedRequest(server, new Uint8Array([0x67, 0x65, 0x74, 0x20, 0xff])),
    CANCEL,
  );
  await server.waitForLog(/ seed \? 0 bytes refused \(Not a seed request: "lsx"\)/);

  await using work = await workDir({ "ok.txt": encoder.encode("fine\n") });
  assertSuccess(await seed(server, ["put", "ok.txt"], { cwd: work.path }), "seed put afterwards");
  assertSuccess(await ferry(server, ["get", "ok.txt", "-"]), "ferry get afterwards");
  await assertRootHolds(server.root, ["ok.txt"]);
});

Deno.test("a read-only --legacy server refuses seed uploads with cancel and still serves downloads", async () => {
  await using server = await startLegacyServer(["--read-only"]);
  await Deno.writeFile(`${server.root}/there.txt`, encoder.encode("published\n"));
  await using work = await workDir({ "up.txt": encoder.encode("upload\n") });

  assertSeedRefused(await seed(server, ["put", "up.txt"], { cwd: work.path }), "seed put");
  assertSuccess(await seed(server, ["get", "there.txt"], { cwd: work.path }), "seed get");
  assert.equal(await Deno.readTextFile(`${work.path}/there.txt`), "published\n");
  await server.waitForLog(/ seed put "up\.txt" 0 bytes refused \(read_only/);
  await assertRootHolds(server.root, ["there.txt"]);
});

// ------------------------------------------------------------------------------- no --legacy

Deno.test("the seed's client meets a server without --legacy: cancel, exit 1, nothing stored, and ferry clients are still served", async () => {
  await using server = await startServer();
  await Deno.writeFile(`${server.root}/there.txt`, encoder.encode("ferry's file\n"));
  await using work = await workDir({ "up.txt": encoder.encode("seed upload\n") });

  assertSeedRefused(await seed(server, ["put", "up.txt"], { cwd: work.path }), "seed put");
  assertSeedRefused(await seed(server, ["get", "there.txt"], { cwd: work.path }), "seed get");
  // The seed's client cannot tell a refusal from a listing: it prints the answer as it came.
  const listed = await seed(server, ["list"]);
  assertSuccess(listed, "seed list");
  assert.equal(decoder.decode(listed.stdout), `${CANCEL}\n`, "no name is given away");
  assert.deepEqual(await listDir(work.path), ["up.txt"], "nothing downloaded");
  await assertRootHolds(server.root, ["there.txt"]);
  await server.waitForLog(/refused: not the ferry protocol \(seed request without --legacy\?\)/);

  // ferry's own client, on the same server, afterwards.
  const put = await ferry(server, ["put", "up.txt"], { cwd: work.path });
  assertSuccess(put, "ferry put after the seed requests");
  const got = await ferry(server, ["get", "there.txt", "-"]);
  assertSuccess(got, "ferry get after the seed requests");
  assert.equal(decoder.decode(got.stdout), "ferry's file\n");
  await assertRootHolds(server.root, ["there.txt", "up.txt"]);
});
