/**
 * A seeded protocol fuzz run against the real server: thousands of hostile connections (bad
 * frames, bad JSON, hostile names) are each answered or closed, nothing is stored, and the
 * server's memory stays bounded.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CHUNK_SIZE,
  encodeControl,
  encodeHeader,
  encodePreamble,
  FrameType,
  MAX_CONTROL_PAYLOAD,
} from "../lib/frames.ts";
import {
  assertSuccess,
  ferry,
  listDir,
  makeTempDir,
  randomBytes,
  runCommand,
  STAGING_DIR,
  storedFiles,
  waitForEmptyStaging,
} from "./harness.ts";
import { checksumOf, concat, contains, dataFrame, dataWithEnd, rawFrame } from "./wire.ts";
import { launchServer, sameBytes } from "./launched_server.ts";

const MiB = 1 << 20;

const encoder = new TextEncoder();

const decoder = new TextDecoder();

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
