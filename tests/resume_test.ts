/**
 * Integration tests of `get --resume` and `put --resume` against the real server: transfers
 * killed mid-way (rate-limited so the timing is deterministic) continue and are verified,
 * damaged, foreign or too long `.part` files and changed local files start over, and a
 * download's bytes reach its `.part` file as they arrive.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertRootHolds,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  resultOf,
  RESUME_DIR,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { assertReport, BIG, fileSize, folderBytes, onlyReport } from "./client_checks.ts";

const MiB = 1 << 20;

/** How far an interrupted transfer must get before it is killed. */
const INTERRUPT_AT = 3 * MiB;

const decoder = new TextDecoder();

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

Deno.test({
  name:
    "get --resume never continues a .part that is a symlink: its target is neither hashed nor written",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using server = await startServer();
    await using work = await makeTempDir();
    const data = new TextEncoder().encode("the first half|the second half");
    await Deno.writeFile(`${server.root}/doc.txt`, data);
    // Another's file, whose bytes happen to be the download's first half: hashed through the
    // link, they would be offered to the server as what arrived, and the rest appended to it.
    const secret = `${work.path}/secret.txt`;
    await Deno.writeTextFile(secret, "the first half");
    await Deno.symlink(secret, `${work.path}/doc.txt.part`);
    const got = await ferry(server, ["get", "doc.txt", "doc.txt", "--resume", "--json"], {
      cwd: work.path,
    });
    assertSuccess(got, "get --resume past a linked .part");
    assert.equal(onlyReport(got, "get --resume").resumedFrom, 0, "nothing resumed");
    assert.deepEqual(await Deno.readFile(`${work.path}/doc.txt`), data);
    assert.equal(await Deno.readTextFile(secret), "the first half", "the link's target untouched");
    await server.waitForLog(/ get "doc\.txt" 30 bytes ok/);
  },
});
