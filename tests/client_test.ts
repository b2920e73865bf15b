/**
 * Integration tests of issue 6's client features against the real server: interrupted and
 * resumed gets and puts (the client is killed mid-transfer, rate-limited so the timing is
 * deterministic), damaged and foreign `.part` files, `--limit-rate`, mput/mget of many files
 * over one connection and their per-file failures, tar through pipes, the `--json` reports and
 * `--quiet`; and `--stall-timeout` against a server frozen with SIGSTOP.
 *
 * Every test starts `server.ts` on port 0 with a temporary root (tests/harness.ts) and runs
 * `client.ts` as a user would; waits are bounded polls on the condition itself.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createXXHash128 } from "hash-wasm";
import {
  assertNoStackTrace,
  assertRootHolds,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  REPO_ROOT,
  resultOf,
  RESUME_DIR,
  runCommand,
  type RunResult,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  stderrLines,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { type RunningServer, startServer as startInProcess } from "../lib/server.ts";
import { dataWithEnd, Wire } from "./wire.ts";

const MiB = 1 << 20;
/** The file that is interrupted and resumed: 6 s at the 4 MiB/s the interrupted run uses. */
const BIG = 24 * MiB;
/** How far an interrupted transfer must get before it is killed. */
const INTERRUPT_AT = 3 * MiB;
/** The keys of a successful transfer's JSON report, in any order. */
const REPORT_KEYS = ["checksum", "name", "op", "resumedFrom", "seconds", "size", "transferred"];

const decoder = new TextDecoder();

// ------------------------------------------------------------------------------------ helpers

/** Size of a file, 0 when it does not exist (yet). */
async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

/** Total bytes of the files directly in `dir` whose names end in `suffix` (0 if no folder). */
async function folderBytes(dir: string, suffix = ""): Promise<number> {
  let total = 0;
  for (const name of await listDir(dir)) {
    if (name.endsWith(suffix)) total += await fileSize(`${dir}/${name}`);
  }
  return total;
}

/** `xxh128:<hex>` of a file, computed here with hash-wasm, independently of lib/. */
async function xxh128File(path: string): Promise<string> {
  const hasher = await createXXHash128();
  hasher.init();
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(MiB);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    hasher.update(buffer.subarray(0, n));
  }
  return `xxh128:${hasher.digest("hex")}`;
}

/** The JSON objects of a report stream, one per non-empty line; fails on anything else. */
function jsonLines(text: string, what: string): Record<string, unknown>[] {
  return text.split("\n").filter((line) => line !== "").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`${what}: not a line of JSON: ${JSON.stringify(line)}`);
    }
  });
}

/** The one JSON report a single put or get printed on stdout. */
function onlyReport(result: RunResult, what: string): Record<string, unknown> {
  const reports = jsonLines(decoder.decode(result.stdout), what);
  assert.equal(reports.length, 1, `${what}: one JSON report expected, got ${reports.length}`);
  return reports[0];
}

interface Expected {
  op: "put" | "get";
  name: string;
  size: number;
  resumedFrom: number;
  /** The file whose checksum the report must carry. */
  file: string;
}

/** A successful transfer's report: exactly the documented keys, with consistent values. */
async function assertReport(
  report: Record<string, unknown>,
  expected: Expected,
  what: string,
): Promise<void> {
  assert.deepEqual(Object.keys(report).sort(), REPORT_KEYS, `${what}: report keys`);
  assert.equal(report.op, expected.op, `${what}: op`);
  assert.equal(report.name, expected.name, `${what}: name`);
  assert.equal(report.size, expected.size, `${what}: size`);
  assert.equal(report.resumedFrom, expected.resumedFrom, `${what}: resumedFrom`);
  assert.equal(report.transferred, expected.size - expected.resumedFrom, `${what}: transferred`);
  assert.match(String(report.checksum), /^xxh128:[0-9a-f]{32}$/, `${what}: checksum format`);
  assert.equal(report.checksum, await xxh128File(expected.file), `${what}: checksum value`);
  assert.equal(typeof report.seconds, "number", `${what}: seconds`);
  assert.ok((report.seconds as number) >= 0 && (report.seconds as number) < 120, what);
}

/** What a client killed mid-transfer had said. */
interface Killed {
  status: Deno.CommandStatus;
  stderr: string;
}

/**
 * Starts `client.ts HOST PORT ...args` in `cwd`, waits (bounded) until `progressed()` says the
 * transfer is well under way, then kills it with SIGKILL. Fails if the client ended on its own
 * first: the interruption must really happen mid-transfer.
 */
async function killMidway(
  server: ServerProcess,
  args: string[],
  cwd: string,
  what: string,
  progressed: () => Promise<boolean>,
): Promise<Killed> {
  const child = spawnClient([server.host, String(server.port), ...args], { cwd });
  await child.stdin.close();
  let exited = false;
  child.status.then(() => exited = true);
  let waited: unknown;
  try {
    await waitFor(what, async () => {
      if (exited) throw new Error(`the client ended before ${what}`);
      return await progressed();
    }, { timeoutMs: 20000 });
  } catch (error) {
    waited = error;
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // It had already exited: reported below.
  }
  const output = await child.output();
  const stderr = decoder.decode(output.stderr);
  if (waited) throw new Error(`${(waited as Error).message}; client stderr:\n${stderr}`);
  assert.equal(output.signal, "SIGKILL", `the client was still running when killed:\n${stderr}`);
  return { status: output, stderr };
}

/** Interrupts `get REMOTE LOCAL --limit-rate 4M` once LOCAL.part holds INTERRUPT_AT bytes. */
function interruptGet(server: ServerProcess, cwd: string, remote: string, local: string) {
  const part = `${cwd}/${local}.part`;
  return killMidway(
    server,
    ["get", remote, local, "--limit-rate", "4M"],
    cwd,
    `${local}.part to reach ${INTERRUPT_AT} bytes`,
    async () => await fileSize(part) >= INTERRUPT_AT,
  );
}

/**
 * Interrupts `put LOCAL REMOTE --limit-rate 4M` once the server has INTERRUPT_AT bytes staged,
 * and waits for the server to log that it kept them; returns the kept byte count.
 */
async function interruptPut(
  server: ServerProcess,
  cwd: string,
  local: string,
  remote: string,
): Promise<number> {
  await killMidway(
    server,
    ["put", local, remote, "--limit-rate", "4M"],
    cwd,
    `${INTERRUPT_AT} bytes staged on the server`,
    async () => await folderBytes(`${server.root}/${STAGING_DIR}`) >= INTERRUPT_AT,
  );
  const quoted = JSON.stringify(remote).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const line = await server.waitForLog(
    new RegExp(` put ${quoted} (\\d+) bytes interrupted, kept for resume`),
  );
  const logged = Number(/ (\d+) bytes interrupted/.exec(line)![1]);
  const kept = await folderBytes(`${server.root}/${RESUME_DIR}`, ".part");
  assert.ok(kept >= INTERRUPT_AT, `kept ${kept} bytes, expected at least ${INTERRUPT_AT}`);
  assert.equal(kept, logged, "the server keeps exactly the bytes it logged as received");
  assert.ok(kept < BIG, "the kept copy is partial");
  return kept;
}

/** Nothing under `name` on the server: not in the root, not listed, staging empty. */
async function assertNotOnServer(server: ServerProcess, name: string): Promise<void> {
  assert.equal(await pathExists(`${server.root}/${name}`), false, `${name} must not appear`);
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(decoder.decode(listed.stdout), "", "nothing listed after an interrupted put");
  await assertRootHolds(server.root, [], { allowKept: true });
}

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

// ------------------------------------------------------------------------------ get --resume

Deno.test("get --resume continues a download killed mid-way and verifies the result", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${server.root}/big.bin`, BIG);

  await interruptGet(server, work.path, "big.bin", "local.bin");
  assert.equal(await pathExists(`${work.path}/local.bin`), false, "LOCAL only once verified");
  const kept = await fileSize(`${work.path}/local.bin.part`);
  assert.ok(kept >= INTERRUPT_AT && kept < BIG, `the .part holds ${kept} of ${BIG} bytes`);

  const resumed = await ferry(server, ["get", "big.bin", "local.bin", "--resume", "--json"], {
    cwd: work.path,
  });
  assertSuccess(resumed, "get --resume");
  assert.ok(await filesEqual(`${server.root}/big.bin`, `${work.path}/local.bin`), "same bytes");
  assert.deepEqual(await listDir(work.path), ["local.bin"], "the .part is gone");
  await assertReport(onlyReport(resumed, "get --resume"), {
    op: "get",
    name: "big.bin",
    size: BIG,
    resumedFrom: kept,
    file: `${work.path}/local.bin`,
  }, "get --resume report");
  assert.match(resumed.stderr, /resumed after/, "the message says it resumed");
  await server.waitForLog(
    // The log counts the bytes this request moved: those after the resume point.
    new RegExp(` get "big\\.bin" ${BIG - kept} bytes ok .*resumed from ${kept}\\)`),
  );
});

Deno.test("get --resume detects a damaged .part and starts over", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(8 * MiB);
  await Deno.writeFile(`${server.root}/data.bin`, data);
  // What an interrupted download leaves, then damaged: a few bytes flipped inside the prefix.
  const part = data.slice(0, 5 * MiB);
  for (const offset of [1, 2 * MiB + 7, 5 * MiB - 1]) part[offset] ^= 0xff;
  await Deno.writeFile(`${work.path}/data.bin.part`, part);

  const result = await ferry(server, ["get", "data.bin", "--resume", "--json"], {
    cwd: work.path,
  });
  assertSuccess(result, "get --resume with a damaged .part");
  assert.match(result.stderr, /data\.bin\.part does not match the server's file; starting over/);
  assert.deepEqual(await Deno.readFile(`${work.path}/data.bin`), data, "the file is correct");
  assert.deepEqual(await listDir(work.path), ["data.bin"], "the .part is gone");
  await assertReport(onlyReport(result, "get --resume"), {
    op: "get",
    name: "data.bin",
    size: data.length,
    resumedFrom: 0,
    file: `${work.path}/data.bin`,
  }, "report after starting over");
});

Deno.test("get --resume detects a foreign .part, or one longer than the file, and starts over", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(4 * MiB + 321);
  await Deno.writeFile(`${server.root}/data.bin`, data);

  for (
    const [what, foreign] of [
      ["random bytes of another file", randomBytes(2 * MiB)],
      ["longer than the remote file", randomBytes(5 * MiB)],
    ] as const
  ) {
    await Deno.writeFile(`${work.path}/data.bin.part`, foreign);
    const result = await ferry(server, ["get", "data.bin", "--resume", "--json", "--force"], {
      cwd: work.path,
    });
    assertSuccess(result, `get --resume, .part ${what}`);
    assert.match(result.stderr, /does not match the server's file; starting over/, what);
    assert.deepEqual(await Deno.readFile(`${work.path}/data.bin`), data, what);
    assert.deepEqual(await listDir(work.path), ["data.bin"], `${what}: the .part is gone`);
    const report = onlyReport(result, what);
    assert.equal(report.resumedFrom, 0, what);
    assert.equal(report.transferred, data.length, what);
  }
});

Deno.test("a 253-byte name downloads to its own name, and --resume finds its shortened .part", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  // The server takes names up to 255 bytes; NAME.part would be 258, too long for the disk.
  const name = `${"n".repeat(249)}.bin`;
  assert.equal(new TextEncoder().encode(name).length, 253);
  await writeRandomFile(`${server.root}/${name}`, BIG);

  await Deno.mkdir(`${work.path}/whole`);
  assertSuccess(await ferry(server, ["get", name], { cwd: `${work.path}/whole` }), "get");
  assert.ok(await filesEqual(`${server.root}/${name}`, `${work.path}/whole/${name}`));
  assert.deepEqual(await listDir(`${work.path}/whole`), [name], "no .part left behind");

  // Interrupted: the partial download is kept under a shortened name that fits.
  const partBytes = async () => await folderBytes(work.path, ".part");
  await killMidway(
    server,
    ["get", name, "--limit-rate", "4M"],
    work.path,
    `the .part to reach ${INTERRUPT_AT} bytes`,
    async () => await partBytes() >= INTERRUPT_AT,
  );
  const left = (await listDir(work.path)).filter((entry) => entry !== "whole");
  assert.equal(left.length, 1, `one .part: ${left}`);
  const part = left[0];
  assert.ok(new TextEncoder().encode(part).length <= 255, `${part} fits in 255 bytes`);
  assert.match(part, /^n{200,}~[0-9a-f]{12}\.part$/, "shortened, with a hash of the full name");
  const kept = await fileSize(`${work.path}/${part}`);
  assert.ok(kept >= INTERRUPT_AT && kept < BIG, `the .part holds ${kept} of ${BIG} bytes`);

  const resumed = await ferry(server, ["get", name, "--resume", "--json"], { cwd: work.path });
  assertSuccess(resumed, "get --resume");
  assert.match(resumed.stderr, /resumed after/, "the shortened .part was found and continued");
  assert.ok(await filesEqual(`${server.root}/${name}`, `${work.path}/${name}`), "same bytes");
  assert.deepEqual(await listDir(work.path), [name, "whole"], "the .part is gone");
  await assertReport(onlyReport(resumed, "get --resume"), {
    op: "get",
    name,
    size: BIG,
    resumedFrom: kept,
    file: `${work.path}/${name}`,
  }, "get --resume report");
});

// ------------------------------------------------------------------------------ put --resume

Deno.test("put --resume continues an upload killed mid-way; nothing shows until it is whole", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/big.bin`, BIG);

  const kept = await interruptPut(server, work.path, "big.bin", "big.bin");
  await assertNotOnServer(server, "big.bin");

  const resumed = await ferry(server, ["put", "big.bin", "--resume", "--json"], {
    cwd: work.path,
  });
  assertSuccess(resumed, "put --resume");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${server.root}/big.bin`), "stored intact");
  await assertReport(onlyReport(resumed, "put --resume"), {
    op: "put",
    name: "big.bin",
    size: BIG,
    resumedFrom: kept,
    file: `${work.path}/big.bin`,
  }, "put --resume report");
  assert.match(resumed.stderr, /resumed after/, "the message says it resumed");
  await server.waitForLog(new RegExp(` put "big\\.bin" ${BIG} bytes ok .*resumed from ${kept}\\)`));
  // The kept copy was used up: nothing is left in the server's private folders.
  await assertRootHolds(server.root, ["big.bin"]);
});

Deno.test("put without --resume after an interruption starts fresh and drops the kept copy", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/big.bin`, BIG);

  await interruptPut(server, work.path, "big.bin", "big.bin");
  await assertNotOnServer(server, "big.bin");

  const fresh = await ferry(server, ["put", "big.bin", "--json"], { cwd: work.path });
  assertSuccess(fresh, "plain put after an interruption");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${server.root}/big.bin`), "stored intact");
  await assertReport(onlyReport(fresh, "plain put"), {
    op: "put",
    name: "big.bin",
    size: BIG,
    resumedFrom: 0,
    file: `${work.path}/big.bin`,
  }, "plain put report");
  await assertRootHolds(server.root, ["big.bin"]);
});

Deno.test("put --resume with a changed local file (same size) detects it and starts over", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/big.bin`, BIG);

  await interruptPut(server, work.path, "big.bin", "big.bin");
  await assertNotOnServer(server, "big.bin");
  // Same name, same size, other bytes: what the server kept is not a prefix of this file.
  await writeRandomFile(`${work.path}/big.bin`, BIG);

  const result = await ferry(server, ["put", "big.bin", "--resume", "--json"], {
    cwd: work.path,
  });
  assertSuccess(result, "put --resume of a changed file");
  assert.ok(
    await filesEqual(`${work.path}/big.bin`, `${server.root}/big.bin`),
    "the server holds the new local file, not a splice of old and new",
  );
  await assertReport(onlyReport(result, "put --resume"), {
    op: "put",
    name: "big.bin",
    size: BIG,
    resumedFrom: 0,
    file: `${work.path}/big.bin`,
  }, "report after starting over");
  await assertRootHolds(server.root, ["big.bin"]);
});

// ------------------------------------------------------------------------------ --limit-rate

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

Deno.test("--limit-rate 4M holds a 6 MiB put and get to about 4 MiB/s", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/six.bin`, 6 * MiB);

  // 6 MiB at 4 MiB/s is 1.5 s; 1.2 s leaves room for rounding but not for an ignored limit.
  for (
    const [what, args] of [
      ["put", ["put", "six.bin", "--limit-rate", "4M", "--json"]],
      ["get", ["get", "six.bin", "back.bin", "--limit-rate", "4M", "--json"]],
    ] as const
  ) {
    const started = performance.now();
    const result = await ferry(server, [...args], { cwd: work.path });
    const wall = (performance.now() - started) / 1000;
    assertSuccess(result, `${what} --limit-rate`);
    const report = onlyReport(result, what);
    assert.equal(report.size, 6 * MiB);
    assert.ok(
      (report.seconds as number) >= 1.2,
      `${what} of 6 MiB at 4 MiB/s took only ${report.seconds} s`,
    );
    assert.ok(wall >= 1.2 && wall < 30, `${what} wall time ${wall.toFixed(2)} s`);
  }
  assert.ok(await filesEqual(`${work.path}/six.bin`, `${server.root}/six.bin`));
  assert.ok(await filesEqual(`${work.path}/six.bin`, `${work.path}/back.bin`));
});

// ------------------------------------------------------------------------------ mput / mget

Deno.test("a download's bytes reach its .part file as they arrive", async () => {
  // What `get` flushes to disk before the rename must already be in the file. Deno's
  // file.writable held writes under 64 KiB back until it was closed, so a small download sat in
  // memory until the end and the flush missed it; at 16 KiB/s each 16 KiB piece must show.
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(48 << 10);
  await Deno.writeFile(`${server.root}/slow.bin`, data);
  const child = spawnClient(
    [server.host, String(server.port), "get", "slow.bin", "--limit-rate", "16K"],
    { cwd: work.path },
  );
  await child.stdin.close();
  const output = child.output();
  const part = `${work.path}/slow.bin.part`;
  try {
    await waitFor("part of the download in slow.bin.part", async () => {
      const size = await fileSize(part);
      return size >= 16 << 10 && size < data.length;
    }, { timeoutMs: 20000 });
  } catch (error) {
    child.kill("SIGKILL");
    throw new Error(
      `${(error as Error).message}; client stderr:\n${resultOf(await output).stderr}`,
    );
  }
  assertSuccess(resultOf(await output), "get --limit-rate 16K");
  assert.deepEqual(await Deno.readFile(`${work.path}/slow.bin`), data);
});

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

// ----------------------------------------------------------------------------- --json, --quiet

Deno.test("--json: one report per file for put, get, mput and mget", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const files = ["a.bin", "b.bin", "c.bin"];
  await Deno.mkdir(`${work.path}/down`);
  for (const [i, name] of files.entries()) {
    await Deno.writeFile(`${work.path}/${name}`, randomBytes(100000 * (i + 1) + i));
  }
  const sizeOf = (name: string) => fileSize(`${work.path}/${name}`);

  const put = await ferry(server, ["put", "a.bin", "--json"], { cwd: work.path });
  assertSuccess(put, "put --json");
  await assertReport(onlyReport(put, "put"), {
    op: "put",
    name: "a.bin",
    size: await sizeOf("a.bin"),
    resumedFrom: 0,
    file: `${work.path}/a.bin`,
  }, "put report");
  assert.match(put.stderr, /Uploaded/, "the human report still goes to stderr");

  const get = await ferry(server, ["get", "a.bin", "--json"], { cwd: `${work.path}/down` });
  assertSuccess(get, "get --json");
  await assertReport(onlyReport(get, "get"), {
    op: "get",
    name: "a.bin",
    size: await sizeOf("a.bin"),
    resumedFrom: 0,
    file: `${work.path}/a.bin`,
  }, "get report");
  assert.equal(onlyReport(get, "get").checksum, onlyReport(put, "put").checksum);

  const mput = await ferry(server, ["mput", "b.bin", "c.bin", "--json"], { cwd: work.path });
  assertSuccess(mput, "mput --json");
  const mputReports = jsonLines(decoder.decode(mput.stdout), "mput");
  assert.equal(mputReports.length, 2);
  for (const [i, name] of ["b.bin", "c.bin"].entries()) {
    await assertReport(mputReports[i], {
      op: "put",
      name,
      size: await sizeOf(name),
      resumedFrom: 0,
      file: `${work.path}/${name}`,
    }, `mput report ${name}`);
  }

  const mget = await ferry(server, ["mget", "b.bin", "c.bin", "--json"], {
    cwd: `${work.path}/down`,
  });
  assertSuccess(mget, "mget --json");
  const mgetReports = jsonLines(decoder.decode(mget.stdout), "mget");
  assert.equal(mgetReports.length, 2);
  for (const [i, name] of ["b.bin", "c.bin"].entries()) {
    await assertReport(mgetReports[i], {
      op: "get",
      name,
      size: await sizeOf(name),
      resumedFrom: 0,
      file: `${work.path}/down/${name}`,
    }, `mget report ${name}`);
  }
  for (const name of files) {
    assert.ok(await filesEqual(`${work.path}/${name}`, `${work.path}/down/${name}`), name);
  }

  // get to stdout: stdout is exactly the file, and the report moves to stderr.
  const data = await Deno.readFile(`${work.path}/c.bin`);
  const piped = await ferry(server, ["get", "c.bin", "-", "--json"]);
  assertSuccess(piped, "get c.bin - --json");
  assert.equal(piped.stdout.length, data.length, "stdout holds only the file's bytes");
  assert.deepEqual(piped.stdout, data);
  const onStderr = stderrLines(piped).filter((line) => line.startsWith("{"));
  assert.equal(onStderr.length, 1, `one JSON report on stderr:\n${piped.stderr}`);
  await assertReport(JSON.parse(onStderr[0]), {
    op: "get",
    name: "c.bin",
    size: data.length,
    resumedFrom: 0,
    file: `${work.path}/c.bin`,
  }, "get - report");
});

Deno.test("--quiet: a successful put or get prints nothing at all", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(MiB + 1);
  await Deno.writeFile(`${work.path}/q.bin`, data);

  const put = await ferry(server, ["put", "q.bin", "--quiet"], { cwd: work.path });
  assertSuccess(put, "put --quiet");
  assert.equal(put.stderr, "", "nothing on stderr");
  assert.equal(put.stdout.length, 0, "nothing on stdout");
  assert.deepEqual(await Deno.readFile(`${server.root}/q.bin`), data);

  const get = await ferry(server, ["get", "q.bin", "back.bin", "-q"], { cwd: work.path });
  assertSuccess(get, "get -q");
  assert.equal(get.stderr, "", "nothing on stderr");
  assert.equal(get.stdout.length, 0, "nothing on stdout");
  assert.deepEqual(await Deno.readFile(`${work.path}/back.bin`), data);

  // Errors still get through.
  const refused = await ferry(server, ["put", "q.bin", "--quiet"], { cwd: work.path });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /exists/i, "--quiet keeps errors");
});

// ----------------------------------------------------------------------- --stall-timeout

Deno.test("--stall-timeout: get gives up on a server that freezes mid-transfer", async () => {
  // No flush at the end: a slow disk must not be what these tests time.
  await using server = await startServer({ args: ["--no-fsync"] });
  await using work = await makeTempDir();
  await writeRandomFile(`${server.root}/big.bin`, BIG);
  const child = spawnClient([
    server.host,
    String(server.port),
    "get",
    "big.bin",
    "--limit-rate",
    "4M",
    "--stall-timeout",
    "2",
  ], { cwd: work.path });
  await child.stdin.close();
  let frozen = false;
  try {
    // Paced at 4 MiB/s, which must not count as a stall: the pauses are the client's own.
    await waitFor(
      "the download under way",
      async () => await fileSize(`${work.path}/big.bin.part`) >= 2 * MiB,
      { timeoutMs: 20000 },
    );
    Deno.kill(server.pid, "SIGSTOP");
    frozen = true;
    // Bounded: without the watchdog the client would wait for ever (killed in `finally`).
    let exited = false;
    const output = child.output().finally(() => exited = true);
    await waitFor("the client to give up", () => exited, { timeoutMs: 30000 });
    const result = resultOf(await output);
    assert.equal(result.code, 1, `exit code; stderr:\n${result.stderr}`);
    assertNoStackTrace(result);
    // What arrived is kept for --resume, as after any cut connection: said after the reason.
    assert.deepEqual(stderrLines(result), [
      `ferry: Server at ${server.host}:${server.port} sent and took nothing for 2 s; ` +
      "gave up (--stall-timeout); partial download kept in big.bin.part " +
      "(run again with --resume to continue)",
    ]);
    assert.equal(await pathExists(`${work.path}/big.bin`), false, "no file under the final name");
  } finally {
    if (frozen) Deno.kill(server.pid, "SIGCONT");
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited, as it should.
    }
  }
});

/**
 * A server in this process whose uploads take `ms` to commit, as the final flush of a large
 * upload to a slow disk does. (Run in-process to slow just that step; the client is the real one.)
 */
async function serverWithSlowCommit(root: string, ms: number): Promise<RunningServer> {
  const server = await startInProcess({ root, port: 0, log: () => {} });
  const begin = server.store.beginUpload.bind(server.store);
  server.store.beginUpload = async (name, options) => {
    const upload = await begin(name, options);
    const commit = upload.commit.bind(upload);
    upload.commit = async () => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      await commit();
    };
    return upload;
  };
  return server;
}

Deno.test("--stall-timeout: a slow final flush on the server is not a stall (KEEPALIVE)", async () => {
  await using work = await makeTempDir();
  const root = `${work.path}/root`;
  const server = await serverWithSlowCommit(root, 2000);
  try {
    const data = randomBytes(MiB + 3);
    await Deno.writeFile(`${work.path}/slow.bin`, data);
    const endpoint = { host: "127.0.0.1", port: server.addr.port };
    const result = await ferry(endpoint, ["put", "slow.bin", "--stall-timeout", "0.5"], {
      cwd: work.path,
    });
    assertSuccess(result, "put with a 2 s commit and a 0.5 s stall timeout");
    assert.deepEqual(await Deno.readFile(`${root}/slow.bin`), data);
  } finally {
    await server.close();
  }
});

Deno.test("KEEPALIVE comes only to a client that asks, at about the interval it asked for", async () => {
  await using work = await makeTempDir();
  const server = await serverWithSlowCommit(`${work.path}/root`, 1000);
  const endpoint = { host: "127.0.0.1", port: server.addr.port };
  const upload = async (hello: Record<string, unknown>, name: string) => {
    using wire = await Wire.connect(endpoint);
    await wire.handshake(hello);
    await wire.write(encodeControl(FrameType.REQUEST, { op: "put", name, size: 5 }));
    await wire.expectFrame(FrameType.OK, "accepted");
    await wire.write(await dataWithEnd(new TextEncoder().encode("hello")));
    let keepalives = 0;
    while (true) {
      const frame = await wire.readFrame();
      assert.ok(frame, "connection closed before the verdict");
      if (frame.type !== FrameType.KEEPALIVE) {
        assert.equal(frame.type, FrameType.OK, JSON.stringify(frame.json));
        return keepalives;
      }
      keepalives++;
    }
  };
  try {
    assert.equal(await upload({}, "plain.txt"), 0, "not asked for: none");
    // Asked for every 200 ms over a 1 s commit: about five (timers are not exact).
    const count = await upload({ keepalive: 200 }, "asked.txt");
    assert.ok(count >= 3 && count <= 6, `${count} KEEPALIVE frames`);
    // Asked for every 1 ms: held to the 100 ms floor, so about ten, not a thousand.
    const floor = await upload({ keepalive: 1 }, "floor.txt");
    assert.ok(floor >= 6 && floor <= 11, `${floor} KEEPALIVE frames at the floor`);
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(`${work.path}/root`)))
        .map((e) => e.name).filter((n) => !n.startsWith(".")).sort(),
      [
        "asked.txt",
        "floor.txt",
        "plain.txt",
      ],
    );
  } finally {
    await server.close();
  }
});

Deno.test("--stall-timeout: a pause in stdin longer than the timeout is not a stall", async () => {
  // No flush at the end: a slow disk must not be what these tests time.
  await using server = await startServer({ args: ["--no-fsync"] });
  const child = spawnClient([
    server.host,
    String(server.port),
    "put",
    "-",
    "paused.txt",
    "--stall-timeout",
    "2",
  ]);
  const stdin = child.stdin.getWriter();
  await stdin.write(new TextEncoder().encode("before the pause, "));
  // The upload is under way once its first bytes reach the server's staging folder.
  await waitFor(
    "the first bytes at the server",
    async () => await folderBytes(`${server.root}/${STAGING_DIR}`) > 0,
    { timeoutMs: 20000 },
  );
  // Deliberately longer than the timeout: nothing moves, but the client is waiting on stdin.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  await stdin.write(new TextEncoder().encode("and after it"));
  await stdin.close();
  const result = resultOf(await child.output());
  assertSuccess(result, "put - with a pause in stdin");
  assert.equal(
    await Deno.readTextFile(`${server.root}/paused.txt`),
    "before the pause, and after it",
  );
});
