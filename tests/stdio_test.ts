/**
 * Integration tests of the client with stdin, stdout, devices and FIFOs: `put -` and `get -` carry
 * exactly the bytes, a stalled stdin or a closed or full stdout is reported for what it is, and
 * FIFOs, process substitutions and /dev/null are read or written in place.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertRootHolds,
  assertSuccess,
  assertUsageError,
  ferry,
  listDir,
  makeTempDir,
  PROGRAM_PERMISSIONS,
  randomBytes,
  REPO_ROOT,
  resultOf,
  runCommand,
  type RunResult,
  type ServerProcess,
  spawnClient,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { concat } from "./wire.ts";

const MiB = 1 << 20;

Deno.test("put from stdin and get to stdout carry exactly the bytes", async () => {
  await using server = await startServer();
  // Not a multiple of any buffer size, so a lost tail would show.
  const data = randomBytes(3 * MiB + 12345);

  const put = await ferry(server, ["put", "-", "piped.bin"], { stdin: data });
  assertSuccess(put, "put from stdin");
  assert.equal(put.stdout.length, 0, "put prints nothing on stdout");
  assert.deepEqual(await Deno.readFile(`${server.root}/piped.bin`), data);

  const get = await ferry(server, ["get", "piped.bin", "-"]);
  assertSuccess(get, "get to stdout");
  assert.equal(get.stdout.length, data.length);
  assert.deepEqual(get.stdout, data, "stdout must be exactly the file's bytes");

  // An empty stdin stores an empty file, and an empty file writes nothing to stdout.
  assertSuccess(await ferry(server, ["put", "-", "nothing.bin"], { stdin: "" }), "empty put");
  assert.equal((await Deno.stat(`${server.root}/nothing.bin`)).size, 0);
  const none = await ferry(server, ["get", "nothing.bin", "-"]);
  assertSuccess(none, "empty get to stdout");
  assert.equal(none.stdout.length, 0);
  await assertRootHolds(server.root, ["nothing.bin", "piped.bin"]);
});

// ------------------------------------------------------------------------------ stalled stdin

Deno.test("a put from a stalled stdin reports the server closing it at once, not when stdin moves", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  const child = spawnClient([server.host, String(server.port), "put", "-", "stalled.bin"]);
  const stdin = child.stdin.getWriter();
  let exited = false;
  child.status.then(() => exited = true);
  try {
    await stdin.write(randomBytes(100 * 1024));
    // stdin stays open and silent; the server's idle timeout closes the upload after 1 s.
    await waitFor("the client to report the server's verdict", () => exited, { timeoutMs: 8000 });
  } finally {
    await stdin.close().catch(() => {});
  }
  const result = resultOf(await child.output());
  assertFailure(
    result,
    /^ferry: Server at [\d.]+:\d+ closed the connection: Connection idle for 1 s: closed by the server$/,
    { what: "put from a stalled stdin" },
  );
  await server.waitForLog(/ put "stalled\.bin" \d+ bytes (?!ok)/);
  await assertRootHolds(server.root, []);
});

// ------------------------------------------------------------------------ stdout, the local side

/** The client with stdout sent to /dev/full (a disk that is always full). */
function ferryToDevFull(server: ServerProcess, args: string[]): Promise<RunResult> {
  const deno = [Deno.execPath(), "run", ...PROGRAM_PERMISSIONS];
  const client = [`${REPO_ROOT}client.ts`, server.host, String(server.port), ...args];
  return runCommand("sh", ["-c", 'exec "$@" > /dev/full', "sh", ...deno, ...client], {
    env: { NO_COLOR: "1" },
  });
}

/** The client with its stdout closed after the first bytes, as `| head -c 10` would. */
async function ferryToClosedPipe(server: ServerProcess, args: string[]): Promise<RunResult> {
  const child = spawnClient([server.host, String(server.port), ...args]);
  await child.stdin.close();
  const reader = child.stdout.getReader();
  if (args[0] === "get") await reader.read();
  await reader.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code: status.code, stdout: new Uint8Array(0), stderr };
}

Deno.test("a closed or full stdout is blamed on stdout, not on the network", async () => {
  await using server = await startServer();
  await writeRandomFile(`${server.root}/big.bin`, 16 * MiB);
  assertSuccess(await ferry(server, ["put", "-", "small.txt"], { stdin: "hello\n" }), "put");

  const closed = /^ferry: Cannot write to stdout: it was closed \(broken pipe\)$/;
  assertFailure(await ferryToClosedPipe(server, ["get", "big.bin", "-"]), closed, {
    what: "get | head",
  });
  // A listing's reader that stops is not a failure: list ends quietly, as ls does.
  const listed = await ferryToClosedPipe(server, ["list"]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stderr, "");
  const full = /^ferry: Cannot write to stdout: no space left on device$/;
  assertFailure(await ferryToDevFull(server, ["get", "big.bin", "-"]), full, {
    what: "get > /dev/full",
  });
  assertFailure(await ferryToDevFull(server, ["list", "--long"]), full, {
    what: "list > /dev/full",
  });
});

Deno.test("get into /dev/null or a FIFO writes in place and leaves the device or FIFO there", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(3 * MiB + 5);
  await Deno.writeFile(`${server.root}/d.bin`, data);

  // /dev/null: no --force needed, nothing renamed over it (as root that would replace it).
  for (const force of [[], ["--force"]]) {
    const result = await ferry(server, ["get", "d.bin", "/dev/null", ...force]);
    assertSuccess(result, `get to /dev/null ${force}`);
    const info = await Deno.stat("/dev/null");
    assert.ok(info.isCharDevice, "/dev/null is still a character device");
    // Deno wants --allow-all to look inside /dev, so ask test(1) instead.
    const part = await runCommand("test", ["-e", "/dev/null.part"]);
    assert.equal(part.code, 1, "no /dev/null.part left behind");
  }
  assertUsageError(await ferry(server, ["get", "d.bin", "/dev/null", "--resume"]), "ferry", {
    what: "resume into /dev/null",
  });

  // A FIFO: its reader gets the bytes, and the FIFO stays a FIFO.
  const fifo = `${work.path}/fifo`;
  const made = await runCommand("mkfifo", [fifo]);
  assert.equal(made.code, 0, `mkfifo: ${made.stderr}`);
  const reading = (async () => {
    using reader = await Deno.open(fifo, { read: true });
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(65536);
    for (let n; (n = await reader.read(buffer)) !== null;) chunks.push(buffer.slice(0, n));
    return concat(chunks);
  })();
  assertSuccess(await ferry(server, ["get", "d.bin", fifo]), "get into a FIFO");
  assert.deepEqual(await reading, data);
  assert.ok((await Deno.lstat(fifo)).isFifo, "still a FIFO");
  assert.deepEqual(await listDir(work.path), ["fifo"], "no .part beside it");
});

Deno.test("put streams a FIFO or a process substitution like stdin; a folder or --resume is refused", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const fifo = `${work.path}/fifo`;
  const made = await runCommand("mkfifo", [fifo]);
  assert.equal(made.code, 0, `mkfifo: ${made.stderr}`);
  const data = randomBytes(3 * MiB + 17);

  const child = spawnClient([server.host, String(server.port), "put", fifo, "fifo.bin"]);
  await child.stdin.close();
  // Opening a FIFO for writing waits for its reader: the client.
  const writer = await Deno.open(fifo, { write: true });
  for (let offset = 0; offset < data.length;) offset += await writer.write(data.subarray(offset));
  writer.close();
  assertSuccess(resultOf(await child.output()), "put FIFO");
  assert.deepEqual(await Deno.readFile(`${server.root}/fifo.bin`), data);

  const substituted = await runCommand("bash", [
    "-c",
    '"$DENO" run --allow-net --allow-read --allow-write "$CLIENT" "$HOST" "$PORT" ' +
    "put <(printf 'made by a command') sub.txt",
  ], {
    env: {
      NO_COLOR: "1",
      DENO: Deno.execPath(),
      CLIENT: `${REPO_ROOT}client.ts`,
      HOST: server.host,
      PORT: String(server.port),
    },
  });
  assert.equal(substituted.code, 0, substituted.stderr);
  assert.equal(await Deno.readTextFile(`${server.root}/sub.txt`), "made by a command");

  // A character device streams too, and like stdin it cannot be resumed.
  assertUsageError(await ferry(server, ["put", "/dev/null", "n.bin", "--resume"]), "ferry", {
    what: "resume",
  });
  assertSuccess(await ferry(server, ["put", "/dev/null", "null.bin"]), "put /dev/null");
  assert.equal((await Deno.stat(`${server.root}/null.bin`)).size, 0);
  await assertRootHolds(server.root, ["fifo.bin", "null.bin", "sub.txt"]);
});
