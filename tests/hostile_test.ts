/**
 * Hostile clients against the real server: crowds of connections that never finish their
 * handshake, trickle one byte at a time or never answer the token challenge, from one address or
 * many, while a good client must still be served; and each limit that makes that so: the
 * handshake deadline, the request deadline, the per-address limit, the minimum upload rate, and
 * the slot a full server takes back from a connection that sits between requests.
 *
 * Crowds connect from other loopback addresses (127.0.0.2 and up) through `node:net`, whose
 * `localAddress` binds the source address that `Deno.connect` cannot.
 *
 * @module
 */

import assert from "node:assert/strict";
import net from "node:net";
import {
  assertFailure,
  assertSuccess,
  commandWorks,
  type Endpoint,
  ferry,
  makeTempDir,
  resultOf,
  type ServerProcess,
  spawnClient,
  startServer,
  waitFor,
} from "./harness.ts";
import { makePki, tlsArgs } from "./pki.ts";
import { concat, dataFrame, Wire } from "./wire.ts";
import { encodeControl, encodeHeader, encodePreamble, FrameType } from "../lib/frames.ts";

/** The bound for serving a good client while a crowd presses. */
const SERVED_WITHIN_MS = 15000;

/** How a crowd's connections misbehave. */
type Behaviour =
  /** Sends nothing. */
  | "silent"
  /** Sends half a preamble, then nothing. */
  | "half"
  /** Sends one byte every {@link TRICKLE_MS} of a greeting that never ends. */
  | "trickle"
  /** Sends a whole greeting, then never answers the token challenge. */
  | "unauthenticated";

const TRICKLE_MS = 200;

/** A greeting that never ends: the preamble, then a HELLO that claims 60000 bytes of payload. */
function endlessGreeting(index: number): number {
  const head = concat([
    encodePreamble(),
    encodeHeader(FrameType.HELLO, 60000),
    new TextEncoder().encode('{"client":"'),
  ]);
  return index < head.length ? head[index] : 0x78; // then "xxxx..."
}

/** Options for {@link Crowd}. */
interface CrowdOptions {
  /** Connections, kept up: each one the server closes is opened again after a pause. */
  size: number;
  /** Source address of connection `i`. */
  source: (i: number) => string;
  /** What connection `i` does. */
  behaviour: (i: number) => Behaviour;
}

/**
 * Many misbehaving connections to a server, each from a chosen loopback source address, kept up
 * until disposed: a connection the server closes is opened again after a pause, so the pressure
 * lasts as long as the test.
 */
class Crowd implements Disposable {
  /** Connections established so far, reconnections included. */
  connects = 0;
  /** Connections the server has closed so far. */
  closes = 0;
  #sockets = new Set<net.Socket>();
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #stopped = false;

  constructor(target: Endpoint, options: CrowdOptions) {
    for (let i = 0; i < options.size; i++) {
      this.#open(target, options.source(i), options.behaviour(i));
    }
  }

  #open(target: Endpoint, source: string, behaviour: Behaviour): void {
    if (this.#stopped) return;
    const socket = net.connect({ host: target.host, port: target.port, localAddress: source });
    this.#sockets.add(socket);
    let trickle: ReturnType<typeof setInterval> | undefined;
    socket.on("connect", () => {
      this.connects++;
      if (behaviour === "half") socket.write(encodePreamble().subarray(0, 4));
      if (behaviour === "unauthenticated") {
        socket.write(concat([encodePreamble(), encodeControl(FrameType.HELLO, { client: "x" })]));
      }
      if (behaviour === "trickle") {
        let sent = 0;
        trickle = setInterval(() => {
          if (!socket.destroyed) socket.write(new Uint8Array([endlessGreeting(sent++)]));
        }, TRICKLE_MS);
      }
    });
    // Read what the server says (a refusal, a challenge) so that its close is seen.
    socket.on("data", () => {});
    socket.on("end", () => socket.destroy());
    socket.on("error", () => {});
    socket.on("close", () => {
      clearInterval(trickle);
      this.#sockets.delete(socket);
      if (this.#stopped) return;
      this.closes++;
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.#open(target, source, behaviour);
      }, 500);
      this.#timers.add(timer);
    });
  }

  /** Closes every connection and stops reconnecting. */
  [Symbol.dispose](): void {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    for (const socket of this.#sockets) socket.destroy();
  }
}

/** Node's sockets and timers outlive a test by a tick after they are destroyed. */
const CROWD_TEST = { sanitizeOps: false, sanitizeResources: false };

/** Waits until the crowd is all connected and the server has turned some of it away. */
async function underPressure(server: ServerProcess, crowd: Crowd, size: number): Promise<void> {
  await waitFor(`all ${size} crowd connections to connect`, () => crowd.connects >= size, {
    timeoutMs: 20000,
  });
  await server.waitForLog(/ 127\.0\.0\.\d+:\d+ (refused|closed): /, { timeoutMs: 20000 });
}

/** Runs a put and a list with the real client and checks both are served within the bound. */
async function assertServed(server: ServerProcess, what: string, args: string[] = []) {
  const started = performance.now();
  const put = await ferry(server, [...args, "put", "-", "good.txt"], { stdin: "good\n" });
  assertSuccess(put, `${what}: put\n${server.lines.slice(-20).join("\n")}`);
  const list = await ferry(server, [...args, "list"]);
  assertSuccess(list, `${what}: list`);
  const ms = performance.now() - started;
  assert.ok(ms < SERVED_WITHIN_MS, `${what}: the good client took ${ms.toFixed(0)} ms`);
  assert.equal(await Deno.readTextFile(`${server.root}/good.txt`), "good\n");
}

// ----------------------------------------------------------------------------- the outcome

Deno.test({
  name:
    "100 half-sent or trickling handshakes from 127.0.0.2 do not keep a client from 127.0.0.1 out (defaults)",
  ...CROWD_TEST,
  async fn() {
    await using server = await startServer();
    using crowd = new Crowd(server, {
      size: 100,
      source: () => "127.0.0.2",
      behaviour: (i) => (i % 2 === 0 ? "half" : "trickle"),
    });
    await underPressure(server, crowd, 100);
    await assertServed(server, "crowd from one address");
    assert.ok(
      server.lines.some((line) =>
        /127\.0\.0\.2:\d+ refused: busy \(limit of 32 per address reached by 127\.0\.0\.2\)/.test(
          line,
        )
      ),
      "the per-address limit turned the crowd away",
    );
  },
});

Deno.test({
  name:
    "100 trickling handshakes from 100 addresses do not keep a client out: the oldest handshake makes room",
  ...CROWD_TEST,
  async fn() {
    await using server = await startServer();
    using crowd = new Crowd(server, {
      size: 100,
      source: (i) => `127.0.0.${i + 2}`,
      behaviour: (i) => (i % 2 === 0 ? "half" : "trickle"),
    });
    await underPressure(server, crowd, 100);
    await assertServed(server, "crowd from many addresses");
    await server.waitForLog(/closed: evicted: 64 other connections in their handshake/);
  },
});

Deno.test({
  name:
    "with --token-file, a client with the token is served while 100 unauthenticated connections pile up",
  ...CROWD_TEST,
  async fn() {
    await using dir = await makeTempDir();
    const tokenPath = `${dir.path}/ferry.token`;
    await Deno.writeTextFile(tokenPath, `tok-${crypto.randomUUID()}\n`);
    await using server = await startServer({ args: ["--token-file", tokenPath] });
    using crowd = new Crowd(server, {
      size: 100,
      source: (i) => `127.0.0.${(i % 50) + 2}`,
      behaviour: () => "unauthenticated",
    });
    await underPressure(server, crowd, 100);
    await assertServed(server, "token server under a crowd", ["--token-file", tokenPath]);
  },
});

// -------------------------------------------------------------------------- handshake deadline

/** A raw connection from 127.0.0.1; a reset counts as the end. */
function openRaw(server: Endpoint): Promise<Wire> {
  return Wire.connect(server, { abortIsEnd: true });
}

/** Writes `bytes` one at a time every `ms`, until done or the server stops taking them. */
async function trickle(raw: Wire, bytes: Uint8Array, ms: number): Promise<void> {
  for (const byte of bytes) {
    try {
      await raw.write(new Uint8Array([byte]));
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/**
 * The server's ERROR timeout, `${what} not completed within 1 s`, then the close, about a second
 * after `since` (a `performance.now()`): what a 1 s deadline does to a connection that misses it.
 */
async function assertCutAtDeadline(raw: Wire, what: string, since: number): Promise<void> {
  const error = await raw.expectFrame(FrameType.ERROR, `${what.toLowerCase()} deadline`);
  assert.deepEqual(error, {
    code: "timeout",
    message: `${what} not completed within 1 s: closed by the server`,
  });
  await raw.waitForClose(5000);
  const ms = performance.now() - since;
  assert.ok(ms > 900 && ms < 6000, `cut after ${ms.toFixed(0)} ms`);
}

Deno.test("--handshake-timeout 1 cuts a connection that trickles its greeting, though bytes keep coming", async () => {
  await using server = await startServer({ args: ["--handshake-timeout", "1"] });
  using raw = await openRaw(server);
  const opened = performance.now();
  // A whole greeting, sent a byte every 100 ms: about 3 s, three times the deadline; each byte
  // would reset an idle timer.
  const greeting = concat([encodePreamble(), encodeControl(FrameType.HELLO, { client: "slow" })]);
  const sending = trickle(raw, greeting, 100);
  // A ferry client is told why: the server's preamble, then ERROR timeout.
  const preamble = await raw.readExact(8);
  assert.ok(preamble, "the server closed without a word");
  await assertCutAtDeadline(raw, "Handshake", opened);
  await sending;
  const line = await server.waitForLog(/closed: handshake not completed within 1 s/);
  assert.match(line, /127\.0\.0\.1:\d+ closed: handshake not completed within 1 s$/);
  assert.equal(
    server.lines.filter((l) => /127\.0\.0\.1:\d+ (closed|connection error)/.test(l)).length,
    1,
    `one line for the cut:\n${server.lines.join("\n")}`,
  );
  // A silent connection too, and a real client is still served at once.
  using silent = await openRaw(server);
  await silent.waitForClose(5000);
  assertSuccess(await ferry(server, ["list"]), "list with a 1 s handshake deadline");
});

Deno.test("--legacy --handshake-timeout 1 cuts a seed request line that stops part-way", async () => {
  await using server = await startServer({ args: ["--legacy", "--handshake-timeout", "1"] });
  using raw = await openRaw(server);
  // The first letter of "put name", then nothing: the seed protocol's request never completes.
  await raw.write(new TextEncoder().encode("p"));
  const ms = await raw.waitForClose(6000);
  assert.ok(ms > 900, `cut after ${ms.toFixed(0)} ms`);
  await server.waitForLog(/closed: handshake not completed within 1 s/);
});

Deno.test({
  name: "--handshake-timeout 1 frees the slots of connections that never start their TLS handshake",
  ...CROWD_TEST,
  async fn() {
    if (!await commandWorks("openssl", ["version"])) {
      console.log("openssl not found: skipped");
      return;
    }
    await using pki = await makePki();
    await using server = await startServer({
      args: [
        "--handshake-timeout",
        "1",
        "--max-connections",
        "2",
        ...tlsArgs(pki),
      ],
    });
    // TCP connections that never send a TLS ClientHello, from three addresses.
    using crowd = new Crowd(server, {
      size: 3,
      source: (i) => `127.0.0.${i + 2}`,
      behaviour: () => "silent",
    });
    await waitFor("the silent connections", () => crowd.connects >= 3);
    // Each is cut at the deadline, unless a newer one evicted it first (the pool holds two).
    await waitFor("the silent connections to be cut", () => {
      const cuts = server.lines.filter((l) => / closed: (handshake not completed|evicted)/.test(l));
      return cuts.length >= 3;
    });
    await server.waitForLog(/closed: handshake not completed within 1 s/);
    // Deno cannot abort a TLS handshake that never began, so their sockets stay open until the
    // clients go; but the slots are free, and a TLS client is served.
    await assertServed(server, "TLS client after silent connections", ["--tls", "--ca", pki.ca]);
  },
});

Deno.test("--handshake-timeout 1 bounds a request message once begun, though its bytes keep coming", async () => {
  await using server = await startServer({ args: ["--handshake-timeout", "1"] });
  using raw = await openRaw(server);
  await raw.handshake();
  // Between requests a connection may be silent (the idle timeout's business, 120 s here)...
  await new Promise((resolve) => setTimeout(resolve, 1500));
  // ...but a request, once begun, must be complete within the deadline.
  const request = encodeControl(FrameType.REQUEST, { op: "list", pad: "x".repeat(40) });
  const begun = performance.now();
  const sending = trickle(raw, request, 100);
  await assertCutAtDeadline(raw, "Request", begun);
  await sending;
  await server.waitForLog(/closed: request not completed within 1 s/);
});

// --------------------------------------------------------------------------- per-address limit

/** A connection from `source` that has sent a whole greeting; resolves once it is connected. */
async function greetFrom(server: Endpoint, source: string): Promise<net.Socket> {
  const socket = net.connect({ host: server.host, port: server.port, localAddress: source });
  socket.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.write(concat([encodePreamble(), encodeControl(FrameType.HELLO, { client: "held" })]));
  return socket;
}

/**
 * What a node socket receives until the server closes it, or until the text matches `until`;
 * bounded by `timeoutMs`, after which what came so far is returned with "(still open)".
 */
function received(socket: net.Socket, until?: RegExp, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const done = (result: string) => {
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => done(text + "(still open)"), timeoutMs);
    socket.on("data", (chunk: Uint8Array) => {
      text += new TextDecoder().decode(chunk);
      if (until?.test(text)) done(text);
    });
    socket.on("close", () => done(text));
    socket.on("end", () => socket.destroy());
  });
}

Deno.test({
  name:
    "--max-per-address 2: a third connection from 127.0.0.2 is told busy while 127.0.0.1 is served",
  ...CROWD_TEST,
  async fn() {
    await using server = await startServer({ args: ["--max-per-address", "2"] });
    const held = [await greetFrom(server, "127.0.0.2"), await greetFrom(server, "127.0.0.2")];
    try {
      // The server accepts in the order the connections came: the third is over the limit.
      const third = await greetFrom(server, "127.0.0.2");
      const said = await received(third);
      assert.match(said, /"code":"busy"/);
      assert.match(
        said,
        /Server busy: too many connections from your address \(limit 2\), try again later/,
      );
      await server.waitForLog(
        /127\.0\.0\.2:\d+ refused: busy \(limit of 2 per address reached by 127\.0\.0\.2\)/,
      );
      // Another address is not held to 127.0.0.2's share.
      assertSuccess(await ferry(server, ["list"]), "list from 127.0.0.1");
      // And the two held connections are served too.
      const welcome = /"server":"ferry\//;
      assert.match(await received(held[0], welcome), welcome);
    } finally {
      held.forEach((socket) => socket.destroy());
    }
  },
});

Deno.test("--max-per-address 1 with the real client: the second connection is refused busy in one line", async () => {
  await using server = await startServer({ args: ["--max-per-address", "1"] });
  using raw = await openRaw(server);
  await raw.handshake();
  const result = await ferry(server, ["list"]);
  assertFailure(result, /busy: too many connections from your address \(limit 1\)/i, {
    what: "second connection",
  });
  raw.close();
  await waitFor("the held connection to be forgotten", async () => {
    return (await ferry(server, ["list"])).code === 0;
  });
});

// --------------------------------------------------------------------- slots held between requests

Deno.test("a full server gives a newcomer the slot of the connection idle longest between requests, never one in a request", async () => {
  await using server = await startServer({ args: ["--max-connections", "2"] });
  // Two clients that hold their connections open and make a request now and then, often enough
  // for the idle timeout: between requests they hold every slot.
  using older = await openRaw(server);
  await older.handshake();
  using newer = await openRaw(server);
  await newer.handshake();
  await newer.write(encodeControl(FrameType.REQUEST, { op: "mkdir", name: "a" }));
  await newer.expectFrame(FrameType.OK, "mkdir a");
  // A newcomer is let in once a held connection has sat a moment between requests
  // (RECLAIM_AFTER_MS); until then it is told busy.
  await waitFor("a newcomer to be served", async () => {
    return (await ferry(server, ["list"])).code === 0;
  }, { timeoutMs: 15000, intervalMs: 200 });
  // The one idle longest gave up its slot, told why, and was closed.
  const told = await older.expectFrame(FrameType.ERROR, "the reclaimed connection");
  assert.equal(told.code, "busy");
  assert.match(
    String(told.message),
    /^Server busy: this connection sat idle while all 2 connections were taken, and its slot went to another client$/,
  );
  await older.waitForClose(5000);
  await server.waitForLog(/closed: reclaimed: idle between requests for \d+ s/);
  // The other still serves requests.
  await newer.write(encodeControl(FrameType.REQUEST, { op: "mkdir", name: "b" }));
  await newer.expectFrame(FrameType.OK, "mkdir b on the connection that stayed");

  // Connections in a request (uploads accepted, data awaited) are never sent away.
  using third = await openRaw(server);
  await third.handshake();
  for (const [wire, name] of [[newer, "n.bin"], [third, "t.bin"]] as const) {
    await wire.write(
      encodeControl(FrameType.REQUEST, { op: "put", name, size: 10, overwrite: false }),
    );
    await wire.expectFrame(FrameType.OK, `put ${name} accepted`);
  }
  const refused = await ferry(server, ["list"]);
  assertFailure(refused, /Server busy: all 2 connections in use, try again later/, {
    what: "a newcomer while both slots are in a request",
  });
});

// ------------------------------------------------------------------------------ minimum rate

/**
 * Sends 200 bytes every 100 ms (2 KB/s, each gap far under the idle timeout) for at most 10 s,
 * until the server cuts the upload for its minimum rate of 10 KiB/s over 1 s; asserts it did so,
 * within 8 s.
 */
async function assertTrickleCut(raw: Wire): Promise<void> {
  const began = performance.now();
  let cut = false;
  const sending = (async () => {
    for (let i = 0; i < 100 && !cut; i++) {
      await raw.write(new Uint8Array(200)).catch(() => cut = true);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const error = await raw.expectFrame(FrameType.ERROR, "minimum rate");
  assert.deepEqual(error, {
    code: "timeout",
    message: "Upload slower than 10.0 KiB/s over 1 s: closed by the server",
  });
  cut = true;
  await sending;
  const ms = performance.now() - began;
  assert.ok(ms < 8000, `cut after ${ms.toFixed(0)} ms`);
}

Deno.test("--min-rate 10K cuts an upload that trickles below it, though no gap reaches the idle timeout", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--min-rate", "10K"] });
  using raw = await openRaw(server);
  await raw.handshake();
  const size = 1 << 20;
  await raw.write(encodeControl(FrameType.REQUEST, { op: "put", name: "slow.bin", size }));
  await raw.expectFrame(FrameType.OK, "upload accepted");
  // A fast first frame, then a trickle.
  await raw.write(dataFrame(new Uint8Array(64 * 1024)));
  await raw.write(encodeHeader(FrameType.DATA, 512 * 1024));
  await assertTrickleCut(raw);
  const line = await server.waitForLog(/ put "slow\.bin" /);
  assert.match(line, /bytes cut \(upload slower than 10\.0 KiB\/s over 1 s\)/);
  assert.deepEqual(await listNames(server.root), [], "nothing stored");
});

Deno.test("--min-rate 10K cuts a put -r whose file trickles below it, as a single upload", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--min-rate", "10K"] });
  using raw = await openRaw(server);
  await raw.handshake();
  await raw.write(encodeControl(FrameType.REQUEST, { op: "put_tree", name: "t" }));
  await raw.expectFrame(FrameType.OK, "tree accepted");
  const size = 1 << 20;
  const entry = { path: "slow.bin", type: "file", size, mtime: 0, mode: 0o644 };
  await raw.write(encodeControl(FrameType.MANIFEST, { entries: [entry], last: true }));
  assert.deepEqual(await raw.expectFrame(FrameType.WANT, "want"), { want: [0] });
  await raw.write(encodeControl(FrameType.FILE, { index: 0, size }));
  await raw.write(encodeHeader(FrameType.DATA, size));
  await assertTrickleCut(raw);
  await server.waitForLog(/ put_tree "t" .*cut \(upload slower than 10\.0 KiB\/s over 1 s\)/);
});

Deno.test("--min-rate 10K: the real client fed too slowly is told why, in one line", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--min-rate", "10K"] });
  const child = spawnClient([server.host, String(server.port), "put", "-", "trickled.bin"]);
  const stdin = child.stdin.getWriter();
  let exited = false;
  child.status.then(() => exited = true);
  try {
    // 200 bytes every 100 ms: 2 KB/s, never a second without a byte, for at most 10 s.
    for (let i = 0; i < 100 && !exited; i++) {
      await stdin.write(new Uint8Array(200).fill(65)).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await stdin.close().catch(() => {});
  }
  const result = resultOf(await child.output());
  assertFailure(result, /^ferry: .*Upload slower than 10\.0 KiB\/s over 1 s/, {
    what: "put fed at 2 KB/s",
  });
  await server.waitForLog(/ put "trickled\.bin" \d+ bytes cut \(upload slower than/);
  assert.deepEqual(await listNames(server.root), [], "nothing stored");
});

Deno.test("--min-rate 10K lets an upload through that keeps above it", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--min-rate", "10K"] });
  const data = new Uint8Array(200 * 1024).fill(7);
  // The real client, as fast as it goes: far above the rate.
  assertSuccess(await ferry(server, ["put", "-", "fast.bin"], { stdin: data }), "put");
  assert.deepEqual(await Deno.readFile(`${server.root}/fast.bin`), data);
});

Deno.test("--min-rate lets a put -r through, and its --delete, whatever the server's own work", async () => {
  // A lower rate than above: a tree of small files moves fewer bytes a second than one file.
  await using server = await startServer({ args: ["--idle-timeout", "2", "--min-rate", "1K"] });
  await using work = await makeTempDir();
  await Deno.mkdir(`${work.path}/t/sub`, { recursive: true });
  await Deno.writeFile(`${work.path}/t/big.bin`, new Uint8Array(3 << 20).fill(1));
  const small = new Uint8Array(1024).fill(2);
  for (let i = 0; i < 1500; i++) await Deno.writeFile(`${work.path}/t/sub/f${i}`, small);
  assertSuccess(await ferry(server, ["put", "-r", `${work.path}/t`]), "put -r");
  // The server deletes the whole folder the sender lacks, waiting on its own disk meanwhile.
  await Deno.remove(`${work.path}/t/sub`, { recursive: true });
  assertSuccess(await ferry(server, ["put", "-r", `${work.path}/t`, "--delete"]), "--delete");
  assert.deepEqual(await listNames(`${server.root}/t`), ["big.bin"]);
});

async function listNames(root: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(root)) {
    if (!entry.name.startsWith(".ferry-")) names.push(entry.name);
  }
  return names;
}

// ------------------------------------------------------------------------------- start line

Deno.test("the start line shows the new limits, defaults and given ones", async () => {
  {
    await using server = await startServer();
    const line = await server.waitForLog(/max connections/);
    assert.match(
      line,
      /idle timeout 120 s, handshake timeout 5 s, max per address 32, min upload rate 256 B\/s$/,
    );
  }
  await using server = await startServer({
    args: ["--handshake-timeout", "3", "--max-per-address", "0", "--min-rate", "0"],
  });
  const line = await server.waitForLog(/max connections/);
  assert.match(line, /handshake timeout 3 s, max per address unlimited, min upload rate none$/);
});
