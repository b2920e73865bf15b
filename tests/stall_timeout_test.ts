/**
 * Integration tests of the client's `--stall-timeout` against a server frozen with SIGSTOP, and
 * of the KEEPALIVE frames that keep a slow but live server or a paused stdin from counting as
 * a stall.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertNoStackTrace,
  assertSuccess,
  ferry,
  makeTempDir,
  pathExists,
  randomBytes,
  resultOf,
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
import { BIG, fileSize, folderBytes } from "./client_checks.ts";

const MiB = 1 << 20;

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
