/**
 * `--limit-rate` pacing, and the client noticing a server that goes away whatever it waits for.
 * Paced bytes must leave as they are paced (a server with a short idle timeout sees them from
 * the start, for uploads and downloads), and a client held up by its own side (the rate limit,
 * stdin, a sink nobody reads) must still notice a closed connection within seconds and exit 1
 * with one line that says the server closed it, and why when the server said so.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  randomBytes,
  resultOf,
  runCommand,
  type RunResult,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { concat, dataFrame, Wire, withFakeServer } from "./wire.ts";

/** A generous bound on noticing a closed connection: seconds, never minutes. */
const NOTICE_MS = 10000;

/** Bytes in the server's staging folder: an upload in progress. */
async function stagedBytes(server: ServerProcess): Promise<number> {
  let total = 0;
  for (const name of await listDir(`${server.root}/${STAGING_DIR}`).catch(() => [])) {
    total += (await Deno.stat(`${server.root}/${STAGING_DIR}/${name}`).catch(() => null))?.size ??
      0;
  }
  return total;
}

/** The child's result, or a failure naming `what` if it has not exited within `ms`. */
async function exitWithin(child: Deno.ChildProcess, ms: number, what: string): Promise<RunResult> {
  const output = child.output();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  const first = await Promise.race([output, late]);
  clearTimeout(timer);
  if (first === "late") {
    child.kill("SIGKILL");
    const result = resultOf(await output);
    throw new Error(`${what}: still running after ${ms} ms; stderr:\n${result.stderr}`);
  }
  return resultOf(first);
}

/** A server we may kill outright, serving a root the test owns (disposing it only stops it). */
async function killableServer(root: string, args: string[] = []) {
  const server = await startServer({ root, args });
  return Object.assign(server, {
    kill: () => Deno.kill(server.pid, "SIGKILL"),
    [Symbol.asyncDispose]: async () => void await server.stop(),
  });
}

// -------------------------------------------------------------------------------- pacing

Deno.test("a paced put is seen from the start: 200 KB at 1K outlives a 1 s idle timeout", async () => {
  // Held back and sent at the end, it reached the server only after the idle timeout had cut it.
  await using server = await startServer({ args: ["--idle-timeout", "1", "--no-fsync"] });
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/slow.bin`, 200_000);
  const child = spawnClient([
    server.host,
    String(server.port),
    "put",
    `${work.path}/slow.bin`,
    "--limit-rate",
    "1K",
  ]);
  await child.stdin.close();
  try {
    // The bound covers the client's start, which a busy machine can make slow. Bytes held back
    // are caught all the same: the idle timeout cuts the upload, and that is checked below.
    await waitFor(
      "the first paced bytes on the server",
      async () => await stagedBytes(server) > 0,
      { timeoutMs: 20000 },
    );
    // Three idle periods on, the upload is still moving and nothing was cut.
    await waitFor("4 KiB staged", async () => await stagedBytes(server) >= 4 << 10, {
      timeoutMs: 20000,
    });
    assert.ok(
      !server.lines.some((line) => / cut | closed: idle/.test(line)),
      server.lines.join("\n"),
    );
    assert.ok(await stagedBytes(server) < 200_000, "still paced");
  } finally {
    // The client may have exited already, and a throwing kill would hide why the test failed.
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.output();
  }
});

Deno.test("paced put, get and mget finish under an idle timeout shorter than their pacing", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--no-fsync"] });
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/up.bin`, 12 << 10);
  const put = await ferry(server, ["put", "up.bin", "--limit-rate", "6K"], { cwd: work.path });
  assertSuccess(put, "put 12 KiB at 6K");
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${server.root}/up.bin`));

  // The server paces a download too: it does not push the file into the kernel's buffers at
  // once and then sit idle while the client takes it, so the connection lives on for the next.
  await writeRandomFile(`${server.root}/a.bin`, 6 << 10);
  await writeRandomFile(`${server.root}/b.bin`, 6 << 10);
  const mget = await ferry(server, ["mget", "a.bin", "b.bin", "--limit-rate", "4K"], {
    cwd: work.path,
  });
  assertSuccess(mget, "mget 2 x 6 KiB at 4K");
  for (const name of ["a.bin", "b.bin"]) {
    assert.ok(await filesEqual(`${server.root}/${name}`, `${work.path}/${name}`), name);
  }
  assert.ok(
    !server.lines.some((line) => / cut | closed: idle/.test(line)),
    server.lines.join("\n"),
  );
});

Deno.test("the server paces a get that names a rate, in small frames, never below its --min-rate", async () => {
  await using server = await startServer();
  await writeRandomFile(`${server.root}/small.bin`, 8 << 10);
  for (
    const [rate, frame] of [
      [2048, 1024], // an eighth of a second's worth, at least 1 KiB
      [600, 600], // at most a second's worth
      [1, 256], // a byte a second would keep the server busy for ever: --min-rate (256) at least
    ]
  ) {
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op: "get", name: "small.bin", rate }));
    await wire.expectFrame(FrameType.OK, `get at ${rate}`);
    // Not corked with the rest of the file, as an unpaced small file is: one frame at a time.
    const first = await wire.readFrame();
    assert.equal(first?.type, FrameType.DATA, `get at ${rate}`);
    assert.equal(first?.payload.length, frame, `get at ${rate}: first DATA frame`);
  }
});

// ------------------------------------------------------------------ the server goes away

Deno.test("--limit-rate 1: a server that cuts the upload is noticed at once, and its reason said", async () => {
  await using work = await makeTempDir();
  await Deno.writeFile(`${work.path}/f.bin`, randomBytes(1000));
  for (const said of [true, false]) {
    const what = said ? "cut with an ERROR" : "closed without a word";
    let cutAt = 0;
    const started = performance.now();
    const result = await withFakeServer(async (wire, request) => {
      assert.equal(request.op, "put");
      await wire.write(encodeControl(FrameType.OK, {}));
      // Paced bytes leave from the start: the first one comes at once, not after the pacing.
      const first = await wire.readFrame();
      assert.equal(first?.type, FrameType.DATA, `${what}: first frame`);
      if (said) {
        await wire.write(encodeControl(FrameType.ERROR, {
          code: "timeout",
          message: "Upload slower than 1 KiB/s: closed by the server",
        }));
      }
      cutAt = performance.now();
    }, async (port) => {
      const child = spawnClient(["127.0.0.1", String(port), "put", "f.bin", "--limit-rate", "1"], {
        cwd: work.path,
      });
      await child.stdin.close();
      return await exitWithin(child, 3 * NOTICE_MS, what);
    });
    const pattern = said
      ? /^ferry: Server at 127\.0\.0\.1:\d+ closed the connection: Upload slower than 1 KiB\/s: closed by the server$/
      : /^ferry: Server at 127\.0\.0\.1:\d+ closed the connection/;
    assertFailure(result, pattern, { what });
    const noticed = performance.now() - cutAt;
    assert.ok(cutAt > started && noticed < NOTICE_MS, `${what}: noticed after ${noticed} ms`);
  }
});

Deno.test("a paced put from a stdin that never ends exits 1 promptly when the server dies", async () => {
  // A put from a stdin that is silent is cut by the idle timeout: see stdio_test.ts. Here
  // stdin is open and the rate limit holds the bytes it gave: the limiter's wait must end too.
  await using root = await makeTempDir();
  await using server = await killableServer(`${root.path}/root`, ["--no-fsync"]);
  const child = spawnClient([
    server.host,
    String(server.port),
    "put",
    "-",
    "trickle.txt",
    "--limit-rate",
    "1",
  ]);
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("x".repeat(100)));
  await waitFor("a paced byte on the server", async () => await stagedBytes(server) > 0);
  server.kill();
  const result = await exitWithin(child, NOTICE_MS, "paced put from stdin, server killed");
  await writer.close().catch(() => {});
  assertFailure(result, /^ferry: Server at [\d.]+:\d+ closed the connection/, {
    what: "paced put from stdin, server killed",
  });
});

Deno.test("a get into a pipe nobody reads notices the server going away, and says why", async () => {
  await using work = await makeTempDir();
  for (const said of [true, false]) {
    const what = said ? "cut with an ERROR" : "closed without a word";
    const fifo = `${work.path}/pipe-${said}`;
    assertSuccess(await runCommand("mkfifo", [fifo]), "mkfifo");
    const chunk = randomBytes(1 << 20);
    let cutAt = 0;
    const result = await withFakeServer(async (wire, request) => {
      assert.equal(request.op, "get");
      // Two MiB of a bigger file: the client writes the first into the pipe, which takes 64 KiB
      // and then nothing, reads the second and waits on the pipe, no longer reading the socket.
      await wire.write(encodeControl(FrameType.OK, { size: 8 << 20, mtime: 0, offset: 0 }));
      await wire.write(concat([dataFrame(chunk), dataFrame(chunk)]));
      if (said) {
        await wire.write(encodeControl(FrameType.ERROR, {
          code: "timeout",
          message: "Download slower than 1 KiB/s: closed by the server",
        }));
      }
      cutAt = performance.now();
    }, async (port) => {
      const child = spawnClient(["127.0.0.1", String(port), "get", "big.bin", fifo]);
      await child.stdin.close();
      // Opened, never read.
      using reader = await Deno.open(fifo, { read: true });
      const result = await exitWithin(child, 3 * NOTICE_MS, what);
      void reader;
      return result;
    });
    const pattern = said
      ? /^ferry: Server at 127\.0\.0\.1:\d+ closed the connection: Download slower than 1 KiB\/s: closed by the server$/
      : /^ferry: Server at 127\.0\.0\.1:\d+ closed the connection/;
    assertFailure(result, pattern, { what });
    const noticed = performance.now() - cutAt;
    assert.ok(noticed < NOTICE_MS, `${what}: noticed after ${noticed} ms`);
  }
});
