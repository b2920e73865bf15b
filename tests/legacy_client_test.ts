/**
 * `client.ts --legacy` against the seed's server (tests/seed_peer.py) and against
 * `server.ts --legacy`: puts, gets and lists with data on stdout and UNVERIFIED on stderr,
 * refusals, what the seed protocol cannot carry, and a client without `--legacy` told to use it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
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
  randomBytes,
  type RunResult,
  writeRandomFile,
} from "./harness.ts";
import { concat } from "./wire.ts";
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

/** ferry's client succeeded, printed nothing on stdout and said on stderr it could not verify. */
function assertUnverifiedSuccess(result: RunResult, pattern: RegExp, what: string): void {
  assertSuccess(result, what);
  assert.equal(result.stdout.length, 0, `${what}: messages go to stderr, not stdout`);
  const line = assertOneStderrLine(result, pattern, { what });
  assert.match(line, /UNVERIFIED/, `${what}: the report must say nothing was verified`);
}

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

Deno.test("ferry without --legacy meeting the seed's server exits 1 and suggests --legacy", async () => {
  await using peer = await startSeedServer();
  const result = await ferry(peer, ["list"]);
  assertFailure(result, /speaks the seed protocol; try --legacy/, {
    what: "ferry list on a seed server",
  });
  assert.deepEqual(await listDir(peer.root), [], "nothing stored by the seed's server");
});
