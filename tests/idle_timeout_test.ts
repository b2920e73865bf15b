/**
 * Integration tests of the server's `--idle-timeout`: silent connections are closed in any
 * phase and a stalled upload's staging file removed, while an upload or download that keeps
 * moving, however slowly, is never cut; a cut upload tells its client why and keeps nothing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, encodeHeader, FrameType } from "../lib/frames.ts";
import {
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  RESUME_DIR,
  runCommand,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { checksumOf, dataFrame } from "./wire.ts";
import { assertStored, openRaw } from "./access.ts";

const MiB = 1 << 20;

/** "Within seconds": a bound well under the client's 15 s connect timeout, not a benchmark. */
const PROMPT_MS = 10000;

const decoder = new TextDecoder();

// ------------------------------------------------------------------------------ idle timeout

Deno.test("--idle-timeout 1 closes silent connections in any phase and removes a stalled upload's staging file", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  const staging = `${server.root}/${STAGING_DIR}`;
  const data = randomBytes(MiB);

  const silentOpened = performance.now();
  using silent = await openRaw(server);
  using greeted = await openRaw(server);
  using stalled = await openRaw(server);
  await greeted.handshake();
  await stalled.handshake();
  await stalled.write(
    encodeControl(FrameType.REQUEST, { op: "put", name: "stall.bin", size: data.length }),
  );
  await stalled.expectFrame(FrameType.OK, "upload accepted");
  // One whole DATA frame, then a frame cut short: the upload is really under way.
  await stalled.write(dataFrame(data.subarray(0, 64 * 1024)));
  await stalled.write(encodeHeader(FrameType.DATA, 512 * 1024));
  await stalled.write(data.subarray(64 * 1024, 100 * 1024));
  await waitFor("the first frame to reach a staging file", async () => {
    const files = await listDir(staging);
    return files.length === 1 && (await Deno.stat(`${staging}/${files[0]}`)).size >= 64 * 1024;
  });

  // Each must be closed after about a second of silence, not at once and not never.
  const closedAt = await Promise.all(
    [silent, greeted, stalled].map((raw) => raw.waitForClose(8000).then(() => performance.now())),
  );
  const silentLife = closedAt[0] - silentOpened;
  assert.ok(silentLife > 900, `a silent connection was closed after only ${silentLife} ms`);

  await waitFor("the stalled upload's staging file to go", async () => {
    return (await listDir(staging)).length === 0;
  });
  assert.equal(await pathExists(`${server.root}/stall.bin`), false, "nothing under the name");
  await server.waitForLog(/closed: idle for 1 s/);
  assert.ok(
    server.lines.filter((line) => /closed: idle for 1 s/.test(line)).length >= 2,
    `idle closes are logged:\n${server.lines.join("\n")}`,
  );
  await server.waitForLog(/ put "stall\.bin" \d+ bytes (?!ok)/);
  await assertStored(server, [], "after the idle closes");

  // The server is fine, and an active client is not cut.
  assertSuccess(await ferry(server, ["put", "-", "ok.bin"], { stdin: data }), "put after");
  assert.deepEqual(await Deno.readFile(`${server.root}/ok.bin`), data);
});

Deno.test("--idle-timeout 1 does not cut an upload that keeps sending, however slowly", async () => {
  // The spec: a connection is idle when it "sends nothing for that long". Here a byte arrives
  // every 150 ms (64 KiB at a time) for about 2.4 s, inside one large DATA frame, as the real
  // client sends them.
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  const data = randomBytes(MiB);
  using raw = await openRaw(server);
  await raw.handshake();
  await raw.write(
    encodeControl(FrameType.REQUEST, { op: "put", name: "slow.bin", size: data.length }),
  );
  await raw.expectFrame(FrameType.OK, "slow upload accepted");
  await raw.write(encodeHeader(FrameType.DATA, data.length));
  const piece = 64 * 1024;
  let cut = false;
  for (let offset = 0; offset < data.length && !cut; offset += piece) {
    await raw.write(data.subarray(offset, offset + piece)).catch(() => cut = true);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  assert.equal(cut, false, `the server cut a live upload:\n${server.lines.join("\n")}`);
  await raw.write(
    encodeControl(FrameType.END, { size: data.length, checksum: await checksumOf(data) }),
  ).catch(() => {});
  const frame = await raw.readFrame().catch((error) => error);
  assert.ok(
    !(frame instanceof Error) && frame?.type === FrameType.OK,
    `slow upload not committed: ${frame instanceof Error ? frame.message : JSON.stringify(frame)}` +
      `\n${server.lines.join("\n")}`,
  );
  assert.deepEqual(await Deno.readFile(`${server.root}/slow.bin`), data);
});

Deno.test("--idle-timeout 1 does not cut a piped upload whose producer keeps writing", async () => {
  // `producer | ferry put - NAME` with a producer that writes every 200 ms for about 3 s: the
  // pipeline is alive throughout, so the upload must go through.
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  const piece = randomBytes(4096);
  const pieces = 15;
  const child = spawnClient([server.host, String(server.port), "put", "-", "piped.bin"]);
  const writer = child.stdin.getWriter();
  const collected = child.output();
  let writes = 0;
  try {
    for (; writes < pieces; writes++) {
      await writer.write(piece);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await writer.close();
  } catch {
    // The client exited early (the upload was cut): its stdin is gone.
    await writer.abort().catch(() => {});
  }
  const output = await collected;
  const stderr = decoder.decode(output.stderr);
  assert.equal(
    output.code,
    0,
    `piped upload failed after ${writes} of ${pieces} writes: ${stderr}` +
      `\n${server.lines.join("\n")}`,
  );
  const stored = await Deno.readFile(`${server.root}/piped.bin`);
  assert.equal(stored.length, piece.length * pieces);
});

/** The kernel's largest TCP send buffer: Linux's third `tcp_wmem` figure, 4 MiB if unknown. */
async function maxSendBuffer(): Promise<number> {
  try {
    const output = await runCommand("cat", ["/proc/sys/net/ipv4/tcp_wmem"]);
    const max = Number(decoder.decode(output.stdout).trim().split(/\s+/)[2]);
    if (Number.isSafeInteger(max) && max > 0) return max;
  } catch {
    // No /proc or no cat: assume Linux's default.
  }
  return 4 * MiB;
}

Deno.test("--idle-timeout 1 does not cut a download read slower than one frame per second", async () => {
  // The kernel takes the first few MiB at once, then reports room only each time about a third
  // of its send buffer has drained: with the default 4 MiB buffer, every ~2 s at the 700 KiB/s
  // read here, which is less than one 1 MiB DATA frame per idle period. The server sees no byte
  // move for longer than the timeout, yet the client is reading all along and must get it all.
  const buffer = await maxSendBuffer();
  const rate = Math.ceil(buffer / 3 / 2 / 1024); // KiB/s: a wake every ~2 s
  const size = buffer + 2 * MiB; // past what the kernel takes at once
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  await using work = await makeTempDir();
  await writeRandomFile(`${server.root}/slow.bin`, size);
  const result = await ferry(server, [
    "get",
    "slow.bin",
    `${work.path}/slow.bin`,
    "--limit-rate",
    `${rate}K`,
  ]);
  assertSuccess(result, `slow download at ${rate} KiB/s:\n${server.lines.join("\n")}`);
  assert.ok(
    await filesEqual(`${work.path}/slow.bin`, `${server.root}/slow.bin`),
    "the download is intact",
  );
  await server.waitForLog(new RegExp(` get "slow\\.bin" ${size} bytes ok `));
});

Deno.test("--idle-timeout 1 cuts a download whose client reads nothing, after four idle periods", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  await writeRandomFile(`${server.root}/big.bin`, 32 * MiB);
  using raw = await openRaw(server);
  await raw.handshake();
  const asked = performance.now();
  await raw.write(encodeControl(FrameType.REQUEST, { op: "get", name: "big.bin" }));
  // Nothing is read from here on: the kernel buffers fill and the server's write waits.
  const line = await server.waitForLog(/ get "big\.bin" /, { timeoutMs: 15000 });
  const waited = performance.now() - asked;
  assert.match(line, / get "big\.bin" \d+ bytes cut \(idle for 4 s\) /);
  // The server gives a reader that may be draining its buffers four periods, not one.
  assert.ok(waited > 3500, `cut after only ${waited.toFixed(0)} ms`);
  // And goes on serving.
  assertSuccess(await ferry(server, ["list"]), "list after the cut");
});

Deno.test("--idle-timeout 1 cutting an upload tells the client why and keeps nothing for a resume", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  using raw = await openRaw(server);
  await raw.handshake();
  await raw.write(
    encodeControl(FrameType.REQUEST, { op: "put", name: "stall.bin", size: 4 * MiB }),
  );
  await raw.expectFrame(FrameType.OK, "upload accepted");
  // Half of a known-size upload: what a client that went away would have had kept.
  await raw.write(dataFrame(randomBytes(2 * MiB)));
  await waitFor("2 MiB in the staging file", async () => {
    const files = await listDir(`${server.root}/${STAGING_DIR}`);
    if (files.length !== 1) return false;
    const info = await Deno.stat(`${server.root}/${STAGING_DIR}/${files[0]}`).catch(() => null);
    return info !== null && info.size >= 2 * MiB;
  });
  const error = await raw.expectFrame(FrameType.ERROR, "idle cut mid-upload");
  assert.deepEqual(error, {
    code: "timeout",
    message: "Connection idle for 1 s: closed by the server",
  });
  await raw.waitForClose(PROMPT_MS);
  await server.waitForLog(/ put "stall\.bin" 2097152 bytes cut \(idle for 1 s\) /);
  await assertStored(server, [], "after the idle cut");
  assert.deepEqual(await listDir(`${server.root}/${RESUME_DIR}`), [], "nothing kept for a resume");
});
