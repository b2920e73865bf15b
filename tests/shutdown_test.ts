/**
 * Integration tests of the server stopped with uploads in flight: SIGKILLed mid-upload and
 * restarted it shows no partial file, and SIGTERM or SIGINT let an upload finish within the grace
 * period, then cut the rest, tell their clients why and keep nothing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CHUNK_SIZE, encodeControl, encodePreamble, FrameType } from "../lib/frames.ts";
import {
  assertSuccess,
  ferry,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  spawnClient,
  STAGING_DIR,
  storedFiles,
  waitFor,
  waitForEmptyStaging,
  waitForStagingData,
  writeRandomFile,
} from "./harness.ts";
import { concat, contains, dataFrame } from "./wire.ts";
import { type LaunchedServer, launchServer, sameBytes } from "./launched_server.ts";

const MiB = 1 << 20;

/** The server's grace period is 5 s; it must be gone well within this. */
const SHUTDOWN_LIMIT_MS = 10000;

const decoder = new TextDecoder();

function stagingFiles(root: string): Promise<string[]> {
  return listDir(`${root}/${STAGING_DIR}`);
}

/** Resolves after `ms`; for pacing a deliberately slow sender, never for waiting on a result. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Settles with the promise's value, or rejects if it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True once nothing accepts connections on the port any more. */
async function refusesConnections(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return true;
    throw error;
  }
}

// ------------------------------------------------------------------------------------- SIGKILL

Deno.test("a server SIGKILLed mid-upload and restarted shows no partial file, and the upload succeeds on retry", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  // The client sends its first DATA frame once it has a whole chunk from stdin (or stdin ends),
  // so a chunk and a bit guarantees bytes reach the server's staging file while stdin stays open.
  const data = randomBytes(CHUNK_SIZE + MiB);
  let server = await launchServer(root);
  const client = spawnClient([server.host, String(server.port), "put", "-", "big.bin"]);
  const writer = client.stdin.getWriter();
  let feeding: Promise<void> = Promise.resolve();
  try {
    feeding = (async () => {
      for (let offset = 0; offset < data.length; offset += MiB) {
        await writer.write(data.subarray(offset, offset + MiB));
      }
    })().catch(() => {});
    await waitForStagingData(root, MiB);
    assert.equal(await pathExists(`${root}/big.bin`), false, "not visible mid-upload");
    server.kill("SIGKILL");
    const status = await server.exited;
    assert.equal(status.signal, "SIGKILL", "the server was still running when killed");
  } finally {
    await server[Symbol.asyncDispose]();
    await feeding;
    await writer.close().catch(() => {});
  }
  const output = await within(client.output(), 20000, "the client after the server died");
  assert.equal(output.code, 1, `client exit ${output.code}: ${decoder.decode(output.stderr)}`);
  assert.doesNotMatch(decoder.decode(output.stderr), /^\s+at |error: Uncaught/m);
  assert.equal(await pathExists(`${root}/big.bin`), false, "no file under the name after the kill");

  server = await launchServer(root);
  try {
    assert.deepEqual(await stagingFiles(root), [], "staging emptied at restart");
    assert.deepEqual(await storedFiles(root), [], "no half-written file under any name");
    const listed = await ferry(server, ["list"]);
    assertSuccess(listed, "list after the restart");
    assert.equal(decoder.decode(listed.stdout), "", "nothing listed");

    const retry = await ferry(server, ["put", "-", "big.bin"], { stdin: data });
    assertSuccess(retry, "the same upload after the restart");
    assert.ok(sameBytes(await Deno.readFile(`${root}/big.bin`), data), "stored intact");
    assert.deepEqual(await storedFiles(root), ["big.bin"]);
    await waitForEmptyStaging(root);
  } finally {
    await server[Symbol.asyncDispose]();
  }
});

// ---------------------------------------------------------------------------- SIGTERM, SIGINT

/** One raw connection that uploads forever, a small DATA frame every 100 ms, until cut. */
async function startEndlessUpload(server: LaunchedServer, name: string) {
  const conn = await Deno.connect({ hostname: server.host, port: server.port });
  const write = async (bytes: Uint8Array) => {
    for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
  };
  await write(
    concat([
      encodePreamble(),
      encodeControl(FrameType.HELLO, { client: "raw-test/1" }),
      encodeControl(FrameType.REQUEST, { op: "put", name, size: null, overwrite: false }),
    ]),
  );
  // Preamble, WELCOME and OK come back; read until OK's header has arrived.
  let reply: Uint8Array = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  while (!contains(reply, new Uint8Array([FrameType.OK, 0, 0, 0]))) {
    const n = await within(conn.read(buffer), 10000, "the upload to be accepted");
    assert.ok(n !== null, "the server hung up before accepting the upload");
    reply = concat([reply, buffer.subarray(0, n)]);
  }
  await write(dataFrame(randomBytes(64 * 1024)));
  let stop = false;
  let cutAfter = 0;
  const started = performance.now();
  const trickle = (async () => {
    try {
      while (!stop) {
        await write(dataFrame(randomBytes(1024)));
        await pause(100);
      }
    } catch {
      cutAfter = performance.now() - started;
    }
  })();
  // The server's side of the connection ends with the shutdown; so does our reader.
  const closed = (async () => {
    try {
      while (await conn.read(buffer) !== null);
    } catch {
      // Reset: closed all the same.
    }
  })();
  return {
    /** Resolves once the server has closed the connection. */
    closed,
    async [Symbol.asyncDispose]() {
      stop = true;
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      await Promise.all([trickle, closed]);
    },
    get cutAfterMs() {
      return cutAfter;
    },
  };
}

async function unfinishedUploadOnSignal(signal: "SIGTERM" | "SIGINT"): Promise<void> {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await using server = await launchServer(root);
  await using upload = await startEndlessUpload(server, "unfinished.bin");
  await waitForStagingData(root, 64 * 1024);

  const signalled = performance.now();
  server.kill(signal);
  await server.waitForLog(/stopping; transfers in flight have 5 s to finish/);
  await waitFor(`${signal}: new connections to be refused`, () => refusesConnections(server.port));
  const status = await within(server.exited, SHUTDOWN_LIMIT_MS, `exit after ${signal}`);
  const ms = performance.now() - signalled;
  await within(upload.closed, 5000, `${signal}: the cut connection to close`);

  assert.equal(status.code, 0, `${signal}: exit code\n${server.lines.join("\n")}`);
  assert.ok(ms < SHUTDOWN_LIMIT_MS, `${signal}: exited after ${ms.toFixed(0)} ms`);
  // The upload kept sending during the grace period and was cut only at its end.
  assert.ok(ms > 3000, `${signal}: exited after only ${ms.toFixed(0)} ms, no grace period`);
  assert.ok(
    server.lines.some((line) => /cut 1 unfinished connection/.test(line)),
    `${signal}: ${server.lines.join("\n")}`,
  );
  assert.ok(server.lines.some((line) => /stopped$/.test(line)));
  assert.deepEqual(await stagingFiles(root), [], `${signal}: staging is empty`);
  assert.deepEqual(await storedFiles(root), [], `${signal}: nothing stored`);
  assert.equal(await pathExists(`${root}/unfinished.bin`), false);
}

Deno.test("SIGTERM and SIGINT cut an unfinished upload after the grace period, leave nothing, exit 0", async () => {
  // Both at once: each waits out the same 5 s grace period.
  await Promise.all([unfinishedUploadOnSignal("SIGTERM"), unfinishedUploadOnSignal("SIGINT")]);
});

Deno.test("SIGTERM lets an upload that finishes within the grace period complete and be stored", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await using server = await launchServer(root);
  const data = randomBytes(3 * MiB);
  const client = spawnClient([server.host, String(server.port), "put", "-", "done.bin"]);
  const writer = client.stdin.getWriter();
  const collected = client.output();
  try {
    await writer.write(data.subarray(0, 2 * MiB));
    // The request is accepted: its staging file exists. The rest of stdin comes after SIGTERM.
    await waitFor("the upload to be accepted", async () => (await stagingFiles(root)).length > 0);
    server.kill("SIGTERM");
    await server.waitForLog(/stopping; transfers in flight have 5 s to finish/);
    await waitFor("new connections to be refused", () => refusesConnections(server.port));
    await writer.write(data.subarray(2 * MiB));
    await writer.close();
  } catch (error) {
    client.kill("SIGKILL");
    await writer.abort().catch(() => {});
    await collected;
    throw error;
  }
  const output = await within(collected, 20000, "the client");
  assert.equal(output.code, 0, `client failed: ${decoder.decode(output.stderr)}`);
  const status = await within(server.exited, SHUTDOWN_LIMIT_MS, "exit after SIGTERM");
  assert.equal(status.code, 0, server.lines.join("\n"));
  assert.ok(server.lines.some((line) => / put "done\.bin" 3145728 bytes ok /.test(line)));
  assert.ok(!server.lines.some((line) => /cut \d+ unfinished/.test(line)), "nothing was cut");
  assert.ok(sameBytes(await Deno.readFile(`${root}/done.bin`), data), "stored intact");
  assert.deepEqual(await stagingFiles(root), []);
  assert.deepEqual(await storedFiles(root), ["done.bin"]);
});

Deno.test("SIGTERM cuts a known-size upload after the grace period: its client is told why, and nothing is kept", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await writeRandomFile(`${base.path}/big.bin`, 16 * MiB);
  await using server = await launchServer(root);
  // A greeted connection that sits idle is cut too, and told why in a frame it can read.
  const idle = await Deno.connect({ hostname: server.host, port: server.port });
  const idleReply = (async () => {
    try {
      await idle.write(
        concat([encodePreamble(), encodeControl(FrameType.HELLO, { client: "raw-test/1" })]),
      );
      let got: Uint8Array = new Uint8Array(0);
      const buffer = new Uint8Array(4096);
      while (true) {
        const n = await idle.read(buffer).catch(() => null);
        if (n === null) return got;
        got = concat([got, buffer.subarray(0, n)]);
      }
    } finally {
      idle.close();
    }
  })();
  // Slow enough to be unfinished after the grace period, and past the 1 MiB a resume would
  // keep if the client had gone away by itself.
  const client = spawnClient(
    [server.host, String(server.port), "put", `${base.path}/big.bin`, "--limit-rate", "1M"],
  );
  client.stdin.close().catch(() => {});
  const collected = client.output();
  try {
    await waitForStagingData(root, 2 * MiB);
    server.kill("SIGTERM");
    await server.waitForLog(/stopping; transfers in flight have 5 s to finish/);
  } catch (error) {
    client.kill("SIGKILL");
    await collected;
    throw error;
  }
  const output = await within(collected, 20000, "the client after the shutdown");
  const stderr = decoder.decode(output.stderr);
  assert.equal(output.code, 1, `client exit ${output.code}: ${stderr}`);
  assert.match(stderr, /shutting down/i, "the client says why");
  assert.doesNotMatch(stderr, /^\s+at |error: Uncaught/m);

  const status = await within(server.exited, SHUTDOWN_LIMIT_MS, "exit after SIGTERM");
  assert.equal(status.code, 0, server.lines.join("\n"));
  assert.ok(
    server.lines.some((line) =>
      / put "big\.bin" \d+ bytes cut \(server shutting down\) /.test(line)
    ),
    server.lines.join("\n"),
  );
  assert.ok(server.lines.some((line) => /cut 2 unfinished connection/.test(line)));

  // The idle connection's last frame is ERROR shutdown, after the preamble and WELCOME.
  const reply = await within(idleReply, 5000, "the idle connection to close");
  const error = encodeControl(FrameType.ERROR, {
    code: "shutdown",
    message: "Server is shutting down",
  });
  assert.ok(contains(reply, error), `idle connection got ${decoder.decode(reply)}`);

  assert.deepEqual(await stagingFiles(root), [], "staging is empty");
  assert.deepEqual(await listDir(`${root}/.ferry-resume`), [], "nothing kept for a resume");
  assert.deepEqual(await storedFiles(root), [], "nothing stored");
});
