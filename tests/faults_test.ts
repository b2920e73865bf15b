/**
 * Integration tests of issue 5's faults against the real server: a full disk (a small tmpfs
 * mounted at test time), the server SIGKILLed mid-upload and restarted, SIGTERM and SIGINT with
 * uploads in flight, and a seeded protocol fuzz run that also watches the server's memory.
 *
 * These tests signal the server and watch it exit (and read /proc), so {@link launchServer}
 * below spawns it with the harness's spawnServer and keeps the process, its exit status and
 * whether it still runs at hand.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  CHUNK_SIZE,
  encodeControl,
  encodeHeader,
  encodePreamble,
  FrameType,
  MAX_CONTROL_PAYLOAD,
} from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  collectLines,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  runCommand,
  SERVER_BANNER,
  spawnClient,
  spawnServer,
  STAGING_DIR,
  storedFiles,
  waitFor,
  waitForEmptyStaging,
  waitForStagingData,
  writeRandomFile,
} from "./harness.ts";
import { MOUNT_ALLOWED, withTmpfs } from "./tmpfs.ts";
import { checksumOf, concat, contains, dataFrame, dataWithEnd, rawFrame } from "./wire.ts";

const MiB = 1 << 20;
/** The server's grace period is 5 s; it must be gone well within this. */
const SHUTDOWN_LIMIT_MS = 10000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ------------------------------------------------------------------------------------ helpers

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b)) === 0;
}

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

// ------------------------------------------------------------------------------ server process

/** A server subprocess whose pid the test knows. */
interface LaunchedServer extends AsyncDisposable {
  pid: number;
  host: string;
  port: number;
  root: string;
  /** Every stderr line so far. */
  lines: string[];
  /** Settles when the process has exited and its stderr is read. */
  exited: Promise<Deno.CommandStatus>;
  /** Whether it has exited. */
  readonly running: boolean;
  /** Resolves with the first log line matching `pattern`, within a deadline. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends a signal (ignored once the process has exited). */
  kill(signal: Deno.Signal): void;
}

/** Starts `server.ts 0 --root ROOT ...args` (as startServer does) and waits for its banner. */
async function launchServer(root: string, args: string[] = []): Promise<LaunchedServer> {
  const child = spawnServer(["0", "--root", root, ...args]);
  const { lines, done: reading, firstMatch } = collectLines(child.stderr);
  let running = true;
  const exited = (async () => {
    const status = await child.status;
    running = false;
    await reading;
    return status;
  })();
  const kill = (signal: Deno.Signal) => {
    if (!running) return;
    try {
      child.kill(signal);
    } catch {
      // Exited in the meantime.
    }
  };
  const waitForLog = async (pattern: RegExp, timeoutMs = 10000) => {
    const found = () => lines.find((line) => pattern.test(line));
    await waitFor(`server log line ${pattern}`, () => found() !== undefined || !running, {
      timeoutMs,
    }).catch((error) => {
      throw new Error(`${error.message}; server log so far:\n${lines.join("\n")}`);
    });
    const line = found();
    if (line === undefined) {
      throw new Error(`Server exited without logging ${pattern}:\n${lines.join("\n")}`);
    }
    return line;
  };
  const match = await firstMatch(SERVER_BANNER, { timeoutMs: 20000 });
  if (!match) {
    kill("SIGKILL");
    await exited;
    throw new Error(`Server did not start:\n${lines.join("\n")}`);
  }
  return {
    pid: child.pid,
    host: match[2] ?? match[3],
    port: Number(match[4]),
    root,
    lines,
    exited,
    get running() {
      return running;
    },
    waitForLog,
    kill,
    async [Symbol.asyncDispose]() {
      kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Resident memory of a process, in bytes, from /proc/PID/status. Read through `cat`: Deno wants
 * --allow-all to read /proc itself, and these tests run with --allow-run.
 */
async function residentBytes(pid: number): Promise<number> {
  const output = await runCommand("cat", [`/proc/${pid}/status`]);
  assert.equal(output.code, 0, `cannot read /proc/${pid}/status: ${output.stderr}`);
  const status = decoder.decode(output.stdout);
  const match = status.match(/^VmRSS:\s+(\d+) kB$/m);
  assert.ok(match, `no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

// ----------------------------------------------------------------------------------- full disk

Deno.test({
  name: "get into a read-only folder fails before the server is asked for anything",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const readOnly = `${base.path}/ro`;
    await withTmpfs(readOnly, "ro,size=1m", async () => {
      const root = `${base.path}/root`;
      await Deno.mkdir(root);
      await writeRandomFile(`${root}/big.bin`, 4 * MiB);
      await using server = await launchServer(root);
      // As root, permissions would not stop the write; a read-only mount stops everyone.
      const result = await ferry(server, ["get", "big.bin", `${readOnly}/big.bin`]);
      assertFailure(result, /^ferry: Cannot write .*big\.bin\.part: read-only file system$/, {
        what: "get into a read-only folder",
      });
      assert.deepEqual(await listDir(readOnly), [], "nothing made there");
      // The server logs every request when it ends. A list made afterwards, on a connection of
      // its own, is logged after the get would have been (its connection was long closed).
      assertSuccess(await ferry(server, ["list"]), "list afterwards");
      await server.waitForLog(/ list /);
      const gets = server.lines.filter((line) => / get "/.test(line));
      assert.deepEqual(gets, [], "the server was never asked for the file");
    });
  },
});

Deno.test({
  name:
    "a full disk mid-upload: an out-of-space error, nothing left behind, and the server goes on",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const disk = `${base.path}/disk`;
    await withTmpfs(disk, "size=8m", async () => {
      const root = `${disk}/root`;
      await writeRandomFile(`${base.path}/big.bin`, 20 * MiB);
      await using server = await launchServer(root);

      const fromFile = await ferry(server, ["put", `${base.path}/big.bin`]);
      assertFailure(fromFile, /out of (disk )?space/i, { what: "20 MiB put to an 8 MiB disk" });
      await server.waitForLog(/ put "big\.bin" \d+ bytes failed \(no_space/);
      await waitForEmptyStaging(root);
      assert.equal(await pathExists(`${root}/big.bin`), false, "nothing under the name");

      const fromStdin = await ferry(server, ["put", "-", "piped.bin"], {
        stdin: randomBytes(20 * MiB),
      });
      assertFailure(fromStdin, /out of (disk )?space/i, { what: "20 MiB stream to an 8 MiB disk" });
      await server.waitForLog(/ put "piped\.bin" \d+ bytes failed \(no_space/);
      await waitForEmptyStaging(root);
      assert.deepEqual(await storedFiles(root), [], "nothing stored");

      // The space came back with the staging files, and the server is still serving.
      const small = randomBytes(MiB);
      assertSuccess(await ferry(server, ["put", "-", "small.bin"], { stdin: small }), "small put");
      const got = await ferry(server, ["get", "small.bin", "-"]);
      assertSuccess(got, "get after the full disk");
      assert.ok(sameBytes(got.stdout, small), "the small file came back intact");
      assert.deepEqual(await storedFiles(root), ["small.bin"]);
      assert.ok(server.running, "the server is still running");
    });
  },
});

Deno.test({
  name:
    "a get onto a full local disk fails naming the file, leaves nothing, and the disk has room again",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const root = `${base.path}/root`;
    await Deno.mkdir(root);
    await writeRandomFile(`${root}/big.bin`, 20 * MiB);
    await using server = await launchServer(root);
    const disk = `${base.path}/disk`;
    await withTmpfs(disk, "size=8m", async () => {
      // The client writes a regular file on its main thread (writeSync): its out-of-space error
      // must still be one line about the local file, not a crash or a network error.
      for (const flags of [[], ["--no-fsync"]]) {
        const result = await ferry(server, ["get", "big.bin", `${disk}/big.bin`, ...flags]);
        assertFailure(result, /^ferry: Cannot write .*big\.bin\.part: no space left on device$/, {
          what: `20 MiB get onto an 8 MiB disk ${flags.join(" ")}`,
        });
        assert.deepEqual(await listDir(disk), [], "no .part and no file left behind");
      }
      await writeRandomFile(`${root}/small.bin`, MiB);
      assertSuccess(await ferry(server, ["get", "small.bin", `${disk}/small.bin`]), "small get");
      assert.ok(await filesEqual(`${root}/small.bin`, `${disk}/small.bin`), "small file intact");
    });
  },
});

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

// ---------------------------------------------------------------------------------------- fuzz

/** mulberry32: a tiny seeded PRNG, so every run sends exactly the same connections. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FUZZ_SEED = 0x5eed_f022;
const FUZZ_CONNECTIONS = 2000;
const FUZZ_CONCURRENCY = 20;
/** Longest one connection may stay open after the test has sent everything and half-closed. */
const FUZZ_CONNECTION_DEADLINE_MS = 10000;
const FUZZ_TOTAL_LIMIT_MS = 60000;
const SECRET = encoder.encode("FUZZ-SECRET-7d41 must never be served");

/** One hostile connection: what to send and whether to read the answer or just hang up. */
interface FuzzCase {
  index: number;
  kind: string;
  bytes: Uint8Array;
  /** Hang up right after sending instead of half-closing and reading to the end. */
  abrupt: boolean;
}

class Gen {
  #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

const HELLO = concat([encodePreamble(), encodeControl(FrameType.HELLO, { client: "fuzz/1" })]);

function request(json: object): Uint8Array {
  return encodeControl(FrameType.REQUEST, json);
}

/** Names the server must refuse; `base` is the folder above the root. */
function hostileNames(g: Gen, i: number, base: string): string[] {
  return [
    `../escape-${i}`,
    `../../escape-${i}`,
    `a/../../escape-${i}`,
    "..",
    ".",
    `./x-${i}`,
    `a//b-${i}`,
    `${base}/abs-${i}`,
    `/abs-${i}`,
    `..\\escape-${i}`,
    `a\\b-${i}`,
    `${STAGING_DIR}/x-${i}`,
    STAGING_DIR,
    `nul\u0000-${i}`,
    `bell\u0007-${i}`,
    `del\u007f-${i}`,
    `new\nline-${i}`,
    "",
    `${"a".repeat(256)}-${i}`,
    `${"abc/".repeat(300)}x-${i}`,
    `a/./b-${i}`,
    `trailing-${i}/`,
    `${g.bytes(3).join("")}/../../escape`,
  ];
}

const BAD_JSON = [
  '{"op":',
  "[]",
  '"put"',
  "123",
  "null",
  "",
  "{}",
  '{"op":"put"}',
  '{"op":"put","name":"ok.bin","size":-1}',
  '{"op":"put","name":"ok.bin","size":"5"}',
  '{"op":"put","name":"ok.bin","size":1e400}',
  '{"op":"put","name":"ok.bin","size":1.5}',
  '{"op":"put","name":"ok.bin","size":9007199254740993}',
  '{"op":"put","name":17,"size":1}',
  '{"op":"get"}',
  '{"op":"get","name":{"a":1}}',
  '{"op":"get","name":["x"]}',
  '{"op":"erase","name":"x"}',
  '{"op":null}',
  '{"op":"put","name":"ok.bin","size":1,"op":"list"}',
  '{"__proto__":{"op":"put"},"name":"x"}',
  "\ufeff" + '{"op":"list"}',
  "[".repeat(5000) + "]".repeat(5000),
  '{"a":' + "[".repeat(20000) + "]".repeat(20000) + "}",
  '{"op":"get","name":"\\ud800"}',
];

/** Builds case `index` from its own seed, so any one case can be replayed alone. */
async function fuzzCase(index: number, base: string): Promise<FuzzCase> {
  const g = new Gen(FUZZ_SEED ^ Math.imul(index + 1, 0x9e3779b1));
  const kinds = [
    "random bytes",
    "seed-style text",
    "preamble then random",
    "handshake then random",
    "oversized header",
    "bad UTF-8",
    "bad JSON",
    "unknown frame type",
    "traversal put",
    "traversal get",
    "half-sent frame",
    "wrong checksum",
    "mutated upload",
    "out-of-place frame",
    "pipelined requests",
  ] as const;
  const kind = kinds[index % kinds.length];
  let abrupt = g.int(5) === 0;
  let bytes: Uint8Array;
  const validName = `fuzz-${index}.bin`;
  switch (kind) {
    case "random bytes":
      bytes = g.bytes(1 + g.int(4096));
      break;
    case "seed-style text":
      bytes = encoder.encode(
        g.pick(["put ", "get ", "list", "PUT ", "\u0000FERR"]) +
          g.pick(["../secret.txt", "/etc/passwd", validName, "", "x".repeat(100)]),
      );
      break;
    case "preamble then random": {
      const preamble = encodePreamble(g.pick([0, 1, 2, 0xffff, g.int(65536)]));
      bytes = concat([preamble, g.bytes(g.int(600))]);
      break;
    }
    case "handshake then random":
      bytes = concat([HELLO, g.bytes(1 + g.int(2048))]);
      break;
    case "oversized header": {
      const type = g.pick([
        FrameType.HELLO,
        FrameType.REQUEST,
        FrameType.END,
        FrameType.AUTH,
        FrameType.ERROR,
      ]);
      const header = g.int(3) === 0
        ? encodeHeader(FrameType.DATA, g.pick([0, CHUNK_SIZE + 1 + g.int(1e6), 0xffffffff]))
        : encodeHeader(type, MAX_CONTROL_PAYLOAD + 1 + g.int(0x7fffffff));
      // Sometimes inside an upload, where DATA frames are expected.
      const upload = g.int(2) === 0
        ? request({ op: "put", name: validName, size: null, overwrite: false })
        : new Uint8Array(0);
      // Sometimes before the handshake is even complete.
      const start = g.int(4) === 0 ? encodePreamble() : HELLO;
      bytes = concat([start, upload, header, g.bytes(g.int(200))]);
      break;
    }
    case "bad UTF-8": {
      const invalid = g.pick([[0xff], [0xfe, 0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [
        0xc0,
        0xaf,
      ], [0xf8, 0x88, 0x80, 0x80, 0x80]]);
      const json = concat([
        encoder.encode('{"op":"put","name":"'),
        new Uint8Array(invalid),
        encoder.encode(`${validName}","size":1,"overwrite":true}`),
      ]);
      const type = g.pick([FrameType.REQUEST, FrameType.HELLO]);
      bytes = type === FrameType.HELLO
        ? concat([encodePreamble(), rawFrame(type, json)])
        : concat([HELLO, rawFrame(type, json), dataFrame(new Uint8Array([1]))]);
      break;
    }
    case "bad JSON":
      bytes = concat([HELLO, rawFrame(FrameType.REQUEST, encoder.encode(g.pick(BAD_JSON)))]);
      break;
    case "unknown frame type": {
      const type = g.pick([0x00, 0x0a, 0x0b, 0x10, 0x7f, 0x80, 0xfe, 0xff, 0x0a + g.int(0xf5)]);
      bytes = concat([HELLO, rawFrame(type, g.bytes(g.int(64)))]);
      break;
    }
    case "traversal put": {
      const name = g.pick(hostileNames(g, index, base));
      const data = concat([SECRET, g.bytes(g.int(2000))]);
      const size = g.int(3) === 0 ? null : data.length;
      bytes = concat([
        HELLO,
        request({ op: "put", name, size, overwrite: g.int(2) === 0 }),
        await dataWithEnd(data),
      ]);
      abrupt = false;
      break;
    }
    case "traversal get":
      bytes = concat([
        HELLO,
        request({
          op: "get",
          name: g.pick([
            "../secret.txt",
            "../../secret.txt",
            `${base}/secret.txt`,
            "a/../../secret.txt",
            "..\\secret.txt",
            `${STAGING_DIR}/../../secret.txt`,
          ]),
        }),
      ]);
      abrupt = false;
      break;
    case "half-sent frame":
    case "wrong checksum":
    case "mutated upload": {
      const data = g.bytes(1 + g.int(3000));
      const checksum = await checksumOf(data);
      const head = concat([
        HELLO,
        request({ op: "put", name: validName, size: data.length, overwrite: false }),
      ]);
      const body = dataFrame(data);
      const wrongEnd = g.int(2) === 0
        ? { size: data.length, checksum: "xxh128:" + "0".repeat(32) }
        : { size: data.length + 1 + g.int(10), checksum };
      if (kind === "mutated upload") {
        // Correct END, but 1 to 4 bytes of the DATA frame (header included) are flipped.
        const mutated = body.slice();
        for (let n = 1 + g.int(4); n > 0; n--) mutated[g.int(mutated.length)] ^= 1 + g.int(255);
        bytes = concat([
          head,
          mutated,
          encodeControl(FrameType.END, { size: data.length, checksum }),
        ]);
      } else {
        const full = concat([head, body, encodeControl(FrameType.END, wrongEnd)]);
        bytes = kind === "wrong checksum" ? full : full.subarray(0, 1 + g.int(full.length - 1));
      }
      break;
    }
    case "out-of-place frame": {
      const type = g.pick([
        FrameType.HELLO,
        FrameType.WELCOME,
        FrameType.OK,
        FrameType.ERROR,
        FrameType.END,
        FrameType.ABORT,
        FrameType.AUTH,
      ]);
      const json = g.pick([
        { client: "again" },
        { code: "io", message: "x" },
        { size: 0, checksum: "xxh128:" + "0".repeat(32) },
        { nonce: "1".repeat(64), mac: "2".repeat(64) },
        {},
      ]);
      bytes = concat([HELLO, encodeControl(type, json)]);
      break;
    }
    case "pipelined requests": {
      const parts = [HELLO];
      for (let n = 5 + g.int(30); n > 0; n--) {
        const name = g.pick(hostileNames(g, index, base));
        parts.push(
          g.int(2) === 0
            ? request({ op: "get", name })
            : request({ op: "put", name, size: 1, overwrite: false }),
        );
      }
      parts.push(request({ op: "list" }));
      bytes = concat(parts);
      abrupt = false;
      break;
    }
  }
  return { index, kind, bytes, abrupt };
}

/** What one fuzz connection came to. */
interface FuzzOutcome {
  case: FuzzCase;
  /** Everything the server sent (empty for abrupt cases). */
  reply: Uint8Array;
  /** Set when the server neither answered to the end nor closed in time. */
  failure?: string;
}

async function runFuzzCase(port: number, fuzz: FuzzCase): Promise<FuzzOutcome> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunks: Uint8Array[] = [];
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  try {
    try {
      for (let offset = 0; offset < fuzz.bytes.length;) {
        offset += await conn.write(fuzz.bytes.subarray(offset));
      }
    } catch {
      // The server may rightly hang up before reading everything.
    }
    if (fuzz.abrupt) return { case: fuzz, reply: new Uint8Array(0) };
    await conn.closeWrite().catch(() => {});
    const deadline = performance.now() + FUZZ_CONNECTION_DEADLINE_MS;
    const buffer = new Uint8Array(65536);
    let total = 0;
    while (true) {
      const reading = conn.read(buffer);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(1, deadline - performance.now()));
      });
      let n: number | null | "timeout";
      try {
        n = await Promise.race([reading, timeout]);
      } catch {
        n = null; // reset: closed
      } finally {
        clearTimeout(timer);
      }
      if (n === "timeout") {
        close();
        await reading.catch(() => {});
        return {
          case: fuzz,
          reply: concat(chunks),
          failure: `still open after ${FUZZ_CONNECTION_DEADLINE_MS} ms (${total} bytes received)`,
        };
      }
      if (n === null) break;
      total += n;
      if (total > 4 * MiB) {
        return { case: fuzz, reply: concat(chunks), failure: "more than 4 MiB of reply" };
      }
      chunks.push(buffer.slice(0, n));
    }
    return { case: fuzz, reply: concat(chunks) };
  } finally {
    close();
  }
}

Deno.test("seeded protocol fuzz: every hostile connection is answered or closed, nothing is stored, memory stays bounded", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await Deno.writeFile(`${base.path}/secret.txt`, SECRET);
  await using server = await launchServer(root);

  // Warm up with one real round trip, so the baseline includes a served transfer.
  assertSuccess(await ferry(server, ["put", "-", "warm.bin"], { stdin: randomBytes(MiB) }), "warm");
  await Deno.remove(`${root}/warm.bin`);
  const before = await residentBytes(server.pid);

  const started = performance.now();
  const outcomes: FuzzOutcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < FUZZ_CONNECTIONS) {
      if (performance.now() - started > FUZZ_TOTAL_LIMIT_MS) {
        throw new Error(`fuzz run over ${FUZZ_TOTAL_LIMIT_MS} ms at case ${next}`);
      }
      const fuzz = await fuzzCase(next++, base.path);
      outcomes.push(await runFuzzCase(server.port, fuzz));
    }
  };
  await Promise.all(Array.from({ length: FUZZ_CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;

  assert.equal(outcomes.length, FUZZ_CONNECTIONS);
  const failures = outcomes.filter((o) => o.failure);
  assert.deepEqual(
    failures.map((o) => `#${o.case.index} ${o.case.kind}: ${o.failure}`),
    [],
    "every connection is answered and closed",
  );
  const leaks = outcomes.filter((o) => contains(o.reply, SECRET));
  assert.deepEqual(leaks.map((o) => `#${o.case.index} ${o.case.kind}`), [], "no secret served");
  // Connections that were read to the end got the preamble back or a refusal (the seed's word,
  // a ferry ERROR) or were simply closed; never a stack trace in the clear.
  for (const o of outcomes) {
    assert.ok(
      !decoder.decode(o.reply).includes("    at "),
      `#${o.case.index} ${o.case.kind}: stack trace`,
    );
  }
  const handshaken = outcomes.filter((o) => contains(o.reply, encodePreamble())).length;
  assert.ok(handshaken > FUZZ_CONNECTIONS / 3, `only ${handshaken} handshakes were answered`);

  assert.ok(server.running, `the server died:\n${server.lines.slice(-20).join("\n")}`);
  assert.ok(!server.lines.some((line) => /Uncaught|panicked/.test(line)), "no crash in the log");
  await waitForEmptyStaging(root);
  assert.deepEqual(await storedFiles(root), [], "nothing stored under any name");
  assert.deepEqual(await listDir(base.path), ["root", "secret.txt"], "nothing escaped the root");

  const after = await residentBytes(server.pid);
  assert.ok(
    after < 300 * MiB,
    `server RSS grew from ${(before / MiB).toFixed(0)} MiB to ${(after / MiB).toFixed(0)} MiB`,
  );

  // And it still serves a real client.
  const data = randomBytes(3 * MiB);
  assertSuccess(await ferry(server, ["put", "-", "after.bin"], { stdin: data }), "put after fuzz");
  const got = await ferry(server, ["get", "after.bin", "-"]);
  assertSuccess(got, "get after fuzz");
  assert.ok(sameBytes(got.stdout, data), "round trip intact");
  const listed = await ferry(server, ["list"]);
  assert.equal(decoder.decode(listed.stdout), "after.bin\n");
  console.log(
    `fuzz: ${FUZZ_CONNECTIONS} connections in ${seconds.toFixed(1)} s, ` +
      `RSS ${(before / MiB).toFixed(0)} -> ${(after / MiB).toFixed(0)} MiB`,
  );
});
