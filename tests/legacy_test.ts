/**
 * Integration tests of the seed ("legacy") protocol, in both directions: the seed's client
 * (tests/seed_peer.py, written from the seed's text) against `server.ts --legacy`, and
 * `client.ts --legacy` against the seed's server. Every test runs real processes on port 0 on
 * loopback with temporary folders, and checks exit codes, output, the files on both sides and
 * the server's log. Also here: the storage rules a `--legacy` server keeps for seed requests, and
 * a seed client meeting a server without `--legacy`. (`--legacy` with a token or TLS is in
 * security_test.ts.)
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertNoStackTrace,
  assertOneStderrLine,
  assertRootHolds,
  assertSuccess,
  assertUsageError,
  closedPort,
  collectLines,
  type Endpoint,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  REPO_ROOT,
  runClient,
  type RunOptions,
  type RunResult,
  type ServerProcess,
  STAGING_DIR,
  startServer,
  type TempDir,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { concat } from "./wire.ts";

const MiB = 1 << 20;
/** The big file of the issue: more than one of the seed's 32 MiB chunks. */
const BIG = 50 * MiB;
/** The seed's peer, run with `python3` from PATH. */
const SEED_PEER = `${REPO_ROOT}tests/seed_peer.py`;
/** Longest a seed process or a raw read may take before the test fails instead of hanging. */
const DEADLINE_MS = 30000;
/** The seed's refusal word. */
const CANCEL = "cancel";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ------------------------------------------------------------------------------------ helpers

/** A running seed server (`seed_peer.py server`); dispose it to stop it and remove its folder. */
interface SeedServer extends Endpoint, AsyncDisposable {
  /** The folder it serves. */
  root: string;
  /** Every stderr line so far: the "listening on" line, then one line per request. */
  lines: string[];
}

/** Starts `seed_peer.py server --port 0` on a fresh temporary root, once it says where it listens. */
async function startSeedServer(): Promise<SeedServer> {
  const temp = await makeTempDir({ prefix: "ferry_seed_" });
  const root = `${temp.path}/root`;
  await Deno.mkdir(root);
  const child = new Deno.Command("python3", {
    args: [SEED_PEER, "server", "--port", "0", "--host", "127.0.0.1", "--root", root],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const { lines, done: reading, firstMatch } = collectLines(child.stderr);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await child.status;
    await reading;
  };
  const match = await firstMatch(/^listening on ([^\s:]+):(\d+)$/, { timeoutMs: DEADLINE_MS });
  if (!match) {
    await stop();
    await temp[Symbol.asyncDispose]();
    throw new Error(`The seed server did not start; its stderr was:\n${lines.join("\n")}`);
  }
  return {
    host: match[1],
    port: Number(match[2]),
    root,
    lines,
    async [Symbol.asyncDispose]() {
      await stop();
      await temp[Symbol.asyncDispose]();
      // Whatever ferry's client did, the seed's server must not have crashed on it.
      assert.ok(!lines.some((line) => /Traceback/.test(line)), `seed server:\n${lines.join("\n")}`);
    },
  };
}

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

/** Runs ferry's client in seed mode: `client.ts --legacy HOST PORT ...args`. */
function ferryLegacy(
  endpoint: Endpoint,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  return runClient(["--legacy", endpoint.host, String(endpoint.port), ...args], options);
}

/** Starts ferry's server with the seed protocol on: `server.ts 0 --legacy ...args`. */
function startLegacyServer(args: string[] = []): Promise<ServerProcess> {
  return startServer({ args: ["--legacy", ...args] });
}

/** ferry's client succeeded, printed nothing on stdout and said on stderr it could not verify. */
function assertUnverifiedSuccess(result: RunResult, pattern: RegExp, what: string): void {
  assertSuccess(result, what);
  assert.equal(result.stdout.length, 0, `${what}: messages go to stderr, not stdout`);
  const line = assertOneStderrLine(result, pattern, { what });
  assert.match(line, /UNVERIFIED/, `${what}: the report must say nothing was verified`);
}

/** The seed's client was refused (`cancel`): exit 1, saying so on stderr, nothing on stdout. */
function assertSeedRefused(result: RunResult, what: string): void {
  assert.equal(result.code, 1, `${what}: expected exit 1, got ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result);
  assert.match(result.stderr, /server answered 'cancel'/, what);
  assert.equal(result.stdout.length, 0, `${what}: nothing on stdout`);
}

/** Writes all of `bytes` to a raw connection. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/**
 * Reads from a raw connection until `enough` says so or the peer closes, within the deadline;
 * returns what arrived.
 */
async function readUntil(
  conn: Deno.Conn,
  enough: (received: Uint8Array) => boolean = () => false,
): Promise<Uint8Array> {
  let received: Uint8Array = new Uint8Array(0);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, DEADLINE_MS);
  try {
    const buffer = new Uint8Array(65536);
    while (!enough(received)) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received = concat([received, buffer.subarray(0, n)]);
    }
  } catch (error) {
    if (timedOut) throw new Error(`No end from the server within ${DEADLINE_MS} ms`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return received;
}

/** Sends one raw seed request, half-closes, and returns everything the server answered. */
async function rawSeedRequest(endpoint: Endpoint, request: Uint8Array | string): Promise<string> {
  using conn = await Deno.connect({ hostname: endpoint.host, port: endpoint.port });
  await writeAll(conn, typeof request === "string" ? encoder.encode(request) : request);
  await conn.closeWrite();
  return decoder.decode(await readUntil(conn));
}

/** A local folder for one side of a test, with `files` written into it. */
async function workDir(files: Record<string, Uint8Array> = {}): Promise<TempDir> {
  const work = await makeTempDir({ prefix: "ferry_legacy_work_" });
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.writeFile(`${work.path}/${name}`, bytes);
  }
  return work;
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

// ---------------------------------------------------------- ferry --legacy, the seed's server

Deno.test("ferry --legacy puts, gets and lists with the seed's server: data on stdout, messages and UNVERIFIED on stderr", async () => {
  await using peer = await startSeedServer();
  // Not a multiple of any buffer size, so a lost tail would show.
  const data = randomBytes(3 * MiB + 12345);
  await using work = await workDir({ "up.bin": data });

  const put = await ferryLegacy(peer, ["put", "up.bin", "a b.bin"], { cwd: work.path });
  assertUnverifiedSuccess(put, /^Uploaded up\.bin as "a b\.bin": /, "put");
  assert.deepEqual(await Deno.readFile(`${peer.root}/a b.bin`), data);

  const get = await ferryLegacy(peer, ["get", "a b.bin", "back.bin"], { cwd: work.path });
  assertUnverifiedSuccess(get, /^Downloaded "a b\.bin" to back\.bin: /, "get");
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${work.path}/back.bin`));
  assert.deepEqual(await listDir(work.path), ["back.bin", "up.bin"], "no .part left behind");

  // get NAME - writes exactly the bytes on stdout, and its report on stderr.
  const piped = await ferryLegacy(peer, ["get", "a b.bin", "-"]);
  assertSuccess(piped, "get to stdout");
  assert.equal(piped.stdout.length, data.length);
  assert.deepEqual(piped.stdout, data, "stdout must be exactly the file's bytes");
  assert.match(piped.stderr, /^Downloaded "a b\.bin" to stdout: .*UNVERIFIED/);

  // put from stdin works too.
  const fromStdin = await ferryLegacy(peer, ["put", "-", "piped.bin"], { stdin: data });
  assertUnverifiedSuccess(fromStdin, /^Uploaded stdin as "piped\.bin": /, "put from stdin");
  assert.deepEqual(await Deno.readFile(`${peer.root}/piped.bin`), data);

  // list prints one name per line, and nothing else.
  const listed = await ferryLegacy(peer, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(decoder.decode(listed.stdout), "a b.bin\npiped.bin\n");
  assert.equal(listed.stderr, "", "a listing has nothing to say on stderr");
});

Deno.test("ferry --legacy is refused an existing name (exit 1), from a file or stdin, and the seed's copy is unchanged", async () => {
  await using peer = await startSeedServer();
  const first = randomBytes(100000);
  const second = randomBytes(200000);
  await using work = await workDir({ "first.bin": first, "second.bin": second });

  const put = await ferryLegacy(peer, ["put", "first.bin", "name.bin"], { cwd: work.path });
  assertUnverifiedSuccess(put, /^Uploaded first\.bin as "name\.bin"/, "put");
  const refused = await ferryLegacy(peer, ["put", "second.bin", "name.bin"], { cwd: work.path });
  assertFailure(refused, /^ferry: .*cancel.*"name\.bin"/, { what: "put over an existing name" });
  assert.deepEqual(await Deno.readFile(`${peer.root}/name.bin`), first, "seed copy unchanged");
  const piped = await ferryLegacy(peer, ["put", "-", "name.bin"], { stdin: second });
  assertFailure(piped, /^ferry: .*cancel.*"name\.bin"/, {
    what: "put from stdin over an existing name",
  });
  assert.deepEqual(await Deno.readFile(`${peer.root}/name.bin`), first, "seed copy unchanged");
  assert.deepEqual(await listDir(peer.root), ["name.bin"]);
});

Deno.test("ferry --legacy get of a missing name exits 1 and leaves no local file and no .part", async () => {
  await using peer = await startSeedServer();
  await using work = await workDir();

  for (const args of [["missing.bin", "local.bin"], ["missing.bin"], ["missing.bin", "-"]]) {
    const result = await ferryLegacy(peer, ["get", ...args], { cwd: work.path });
    assertFailure(result, /^ferry: .*cancel.*"missing\.bin"/, { what: `get ${args.join(" ")}` });
    assert.deepEqual(await listDir(work.path), [], "no LOCAL, no LOCAL.part");
  }
});

Deno.test("a zero-byte file goes up and comes back with ferry --legacy", async () => {
  await using peer = await startSeedServer();
  await using work = await workDir({ "empty.txt": new Uint8Array(0) });

  const put = await ferryLegacy(peer, ["put", "empty.txt"], { cwd: work.path });
  assertUnverifiedSuccess(put, /^Uploaded empty\.txt as "empty\.txt": 0 B/, "put");
  const stored = await Deno.stat(`${peer.root}/empty.txt`);
  assert.ok(stored.isFile);
  assert.equal(stored.size, 0);

  const get = await ferryLegacy(peer, ["get", "empty.txt", "back.txt"], { cwd: work.path });
  assertUnverifiedSuccess(get, /^Downloaded "empty\.txt" to back\.txt: 0 B/, "get");
  const back = await Deno.stat(`${work.path}/back.txt`);
  assert.ok(back.isFile);
  assert.equal(back.size, 0);
  assert.deepEqual(await listDir(work.path), ["back.txt", "empty.txt"], "no .part left behind");

  const piped = await ferryLegacy(peer, ["get", "empty.txt", "-"]);
  assertSuccess(piped, "get to stdout");
  assert.equal(piped.stdout.length, 0);
});

Deno.test("a 50 MiB random file goes up and comes back byte-identical with ferry --legacy", async () => {
  await using peer = await startSeedServer();
  await using work = await workDir();
  await writeRandomFile(`${work.path}/big.bin`, BIG);

  const put = await ferryLegacy(peer, ["put", "big.bin"], { cwd: work.path });
  assertUnverifiedSuccess(put, /^Uploaded big\.bin as "big\.bin": 50\.0 MiB/, "put");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${peer.root}/big.bin`));

  const get = await ferryLegacy(peer, ["get", "big.bin", "back.bin"], { cwd: work.path });
  assertUnverifiedSuccess(get, /^Downloaded "big\.bin" to back\.bin: 50\.0 MiB/, "get");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${work.path}/back.bin`));
  assert.deepEqual(await listDir(work.path), ["back.bin", "big.bin"], "no .part left behind");
});

Deno.test("ferry --legacy copes with pass arriving in the same read as the first file bytes", async () => {
  // A seed server that answers with `pass` and the file in one write, as the seed's may.
  const data = randomBytes(1000);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  const serving = (async () => {
    for (let i = 0; i < 2; i++) {
      using conn = await listener.accept();
      requests.push(decoder.decode(await readUntil(conn, (r) => r.length >= "get x.bin".length)));
      await writeAll(conn, concat([encoder.encode("pass"), i === 0 ? data : data.subarray(0, 10)]));
    }
  })();
  const endpoint = { host: "127.0.0.1", port: listener.addr.port };

  const whole = await ferryLegacy(endpoint, ["get", "x.bin", "-"]);
  assertSuccess(whole, "get of 1000 bytes");
  assert.deepEqual(whole.stdout, data);
  // A file short enough to arrive entirely with the `pass`.
  const short = await ferryLegacy(endpoint, ["get", "x.bin", "-"]);
  assertSuccess(short, "get of 10 bytes");
  assert.deepEqual(short.stdout, data.subarray(0, 10));
  await serving;
  assert.deepEqual(requests, ["get x.bin", "get x.bin"]);
});

Deno.test("ferry --legacy exits 2 on what the seed protocol cannot carry, and 1 on names too long or no server", async () => {
  await using peer = await startSeedServer();
  await using work = await workDir({ "up.txt": encoder.encode("up\n") });

  // Usage the seed protocol cannot express: exit 2 before any connection.
  assertUsageError(await ferryLegacy(peer, ["list", "--json"]), "ferry", {
    pattern: /--json/,
    what: "list --json",
  });
  assertUsageError(await ferryLegacy(peer, ["list", "--long"]), "ferry", {
    pattern: /--long/,
    what: "list --long",
  });
  assertUsageError(
    await ferryLegacy(peer, ["put", "up.txt", "--resume"], { cwd: work.path }),
    "ferry",
    { pattern: /--resume/, what: "put --resume" },
  );
  assertUsageError(await ferryLegacy(peer, ["get", "x", "--resume"]), "ferry", {
    pattern: /--resume/,
    what: "get --resume",
  });

  // The request line is at most 32 bytes: "put " and a 28-byte name fit, one byte more does not.
  const longest = "n".repeat(28);
  const fits = await ferryLegacy(peer, ["put", "up.txt", longest], { cwd: work.path });
  assertUnverifiedSuccess(fits, /^Uploaded up\.txt as /, "put of a 28-byte name");
  assert.equal(await Deno.readTextFile(`${peer.root}/${longest}`), "up\n");
  const tooLong = await ferryLegacy(peer, ["put", "up.txt", `${longest}n`], { cwd: work.path });
  assertFailure(tooLong, /^ferry: Name too long for the seed protocol/, {
    what: "put of a 29-byte name",
  });
  const getLong = await ferryLegacy(peer, ["get", `${longest}n`], { cwd: work.path });
  assertFailure(getLong, /^ferry: Name too long for the seed protocol/, {
    what: "get of a 29-byte name",
  });
  assert.deepEqual(await listDir(work.path), ["up.txt"], "nothing created locally");
  assert.deepEqual(await listDir(peer.root), [longest]);

  // Nobody listening.
  const port = await closedPort();
  const refused = await ferryLegacy({ host: "127.0.0.1", port }, ["list"]);
  assertFailure(refused, /^ferry: Cannot connect to .*connection refused/, { what: "no server" });
});

Deno.test("ferry --legacy and ferry-server --legacy work with each other too", async () => {
  await using server = await startLegacyServer();
  const data = randomBytes(MiB + 7);
  await using work = await workDir({ "up.bin": data });

  const put = await ferryLegacy(server, ["put", "up.bin"], { cwd: work.path });
  assertUnverifiedSuccess(put, /^Uploaded up\.bin as "up\.bin"/, "put");
  const again = await ferryLegacy(server, ["put", "up.bin"], { cwd: work.path });
  assertFailure(again, /^ferry: .*cancel.*"up\.bin"/, { what: "put over an existing name" });
  const got = await ferryLegacy(server, ["get", "up.bin", "-"]);
  assertSuccess(got, "get to stdout");
  assert.deepEqual(got.stdout, data);
  const listed = await ferryLegacy(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(decoder.decode(listed.stdout), "up.bin\n");
  await server.waitForLog(/ seed put "up\.bin" 1048583 bytes ok UNVERIFIED /);
  await assertRootHolds(server.root, ["up.bin"]);
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

Deno.test("ferry without --legacy meeting the seed's server exits 1 and suggests --legacy", async () => {
  await using peer = await startSeedServer();
  const result = await ferry(peer, ["list"]);
  assertFailure(result, /speaks the seed protocol; try --legacy/, {
    what: "ferry list on a seed server",
  });
  assert.deepEqual(await listDir(peer.root), [], "nothing stored by the seed's server");
});
