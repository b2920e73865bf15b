/**
 * Integration tests of issue 5's access control, encryption and limits against the real server
 * and client: `--read-only`, `--token-file` (challenge-response, checked on the wire by a
 * recording TCP relay), TLS (certificates made with openssl at test time, never committed),
 * `--max-size`, `--max-connections`, `--idle-timeout`, the beyond-loopback warning, the start
 * line, and the `--legacy` combinations that must not start.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { authMac } from "../lib/auth.ts";
import {
  decodePreamble,
  encodeControl,
  encodeHeader,
  encodePreamble,
  FrameType,
} from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  type Endpoint,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  REPO_ROOT,
  RESUME_DIR,
  runClient,
  runCommand,
  type RunResult,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  storedFiles,
  waitFor,
  waitForEmptyStaging,
  writeRandomFile,
} from "./harness.ts";
import { makePki, tlsArgs } from "./pki.ts";
import { checksumOf, concat, contains, dataFrame, dataWithEnd, serveOnce, Wire } from "./wire.ts";

const MiB = 1 << 20;
/** "Within seconds": a bound well under the client's 15 s connect timeout, not a benchmark. */
const PROMPT_MS = 10000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ------------------------------------------------------------------------------------ helpers

/** Runs the client and measures how long it took, in milliseconds. */
async function timedFerry(
  target: Endpoint,
  args: string[],
): Promise<{ result: RunResult; ms: number }> {
  const started = performance.now();
  const result = await ferry(target, args);
  return { result, ms: performance.now() - started };
}

/** The root holds exactly `names`, and no upload is left in staging. */
async function assertStored(server: ServerProcess, names: string[], what: string) {
  assert.deepEqual(await storedFiles(server.root), [...names].sort(), `${what}: stored files`);
  await waitForEmptyStaging(server.root, { what });
}

/** Writes a token file (with the usual trailing newline) and returns its path and bytes. */
async function writeToken(dir: string, name: string): Promise<{ path: string; token: string }> {
  const token = `tok-${crypto.randomUUID().replaceAll("-", "")}`;
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, token + "\n");
  return { path, token };
}

// --------------------------------------------------------------------------- raw connections

/**
 * A raw connection to `target`, for what the client cannot do: hold a connection open, stall
 * mid-frame, or send a wrong proof. An aborted connection counts as closed, as a reset does.
 */
function openRaw(target: Endpoint): Promise<Wire> {
  return Wire.connect(target, { abortIsEnd: true });
}

// ------------------------------------------------------------------------------ TCP recorder

/**
 * A TCP relay on 127.0.0.1:0 that forwards every connection to `upstream` and records every
 * byte in both directions, as a network eavesdropper would see them.
 */
class Relay implements AsyncDisposable, Endpoint {
  readonly host = "127.0.0.1";
  readonly port: number;
  /** Chunks sent by clients, in order. */
  readonly toServer: Uint8Array[] = [];
  /** Chunks sent by the server, in order. */
  readonly toClient: Uint8Array[] = [];
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #accepting: Promise<void>;
  connections = 0;

  constructor(upstream: Endpoint) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) {
          this.connections++;
          this.#track(this.#relay(conn, upstream));
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.BadResource)) throw error;
      }
    })();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #relay(client: Deno.Conn, upstream: Endpoint): Promise<void> {
    this.#conns.add(client);
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: upstream.host, port: upstream.port });
    } catch {
      this.#close(client);
      return;
    }
    this.#conns.add(server);
    await Promise.all([
      this.#pump(client, server, this.toServer),
      this.#pump(server, client, this.toClient),
    ]);
    this.#close(client);
    this.#close(server);
  }

  /** Copies `from` to `to`, recording; passes a half-close on, and a failure as a full close. */
  async #pump(from: Deno.Conn, to: Deno.Conn, record: Uint8Array[]): Promise<void> {
    const buffer = new Uint8Array(65536);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        record.push(chunk);
        for (let offset = 0; offset < n;) offset += await to.write(chunk.subarray(offset));
      }
      await to.closeWrite().catch(() => {});
    } catch {
      this.#close(from);
      this.#close(to);
    }
  }

  #close(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Everything recorded, both directions. */
  recorded(): Uint8Array {
    return concat([...this.toServer, ...this.toClient]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
    for (const conn of [...this.#conns]) this.#close(conn);
    await Promise.allSettled([...this.#tasks]);
  }
}

// --------------------------------------------------------------------------------- read-only

Deno.test("--read-only refuses uploads (exit 1, nothing stored) but serves downloads and lists", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await Deno.mkdir(root);
  const shared = randomBytes(300000);
  await Deno.writeFile(`${root}/shared.bin`, shared);
  await Deno.writeFile(`${base.path}/upload.bin`, randomBytes(1000));

  await using server = await startServer({ root, args: ["--read-only"] });
  const fromFile = await ferry(server, ["put", `${base.path}/upload.bin`, "new.bin"]);
  assertFailure(fromFile, /read-only/i, { what: "put of a file to a read-only server" });
  const fromStdin = await ferry(server, ["put", "-", "piped.bin"], { stdin: randomBytes(5000) });
  assertFailure(fromStdin, /read-only/i, { what: "put from stdin to a read-only server" });
  const replace = await ferry(server, [
    "put",
    "--overwrite",
    `${base.path}/upload.bin`,
    "shared.bin",
  ]);
  assertFailure(replace, /read-only/i, { what: "put --overwrite to a read-only server" });
  await server.waitForLog(/ put "new\.bin" 0 bytes refused \(read_only/);
  await server.waitForLog(/ put "piped\.bin" 0 bytes refused \(read_only/);

  const got = await ferry(server, ["get", "shared.bin", "-"]);
  assertSuccess(got, "get from a read-only server");
  assert.deepEqual(got.stdout, shared);
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list on a read-only server");
  assert.equal(decoder.decode(listed.stdout), "shared.bin\n");

  await assertStored(server, ["shared.bin"], "read-only");
  assert.deepEqual(await Deno.readFile(`${root}/shared.bin`), shared, "left untouched");
});

// ------------------------------------------------------------------------------------- token

Deno.test("--token-file: the right token is served; a missing or wrong one is refused before any file operation", async () => {
  await using dir = await makeTempDir();
  const right = await writeToken(dir.path, "right.token");
  const wrong = await writeToken(dir.path, "wrong.token");
  const data = randomBytes(100000);
  await Deno.writeFile(`${dir.path}/data.bin`, data);
  await using server = await startServer({ args: ["--token-file", right.path] });

  // The right token: put, get and list all work.
  assertSuccess(
    await ferry(server, ["--token-file", right.path, "put", `${dir.path}/data.bin`, "ok.bin"]),
    "put with the right token",
  );
  const got = await ferry(server, ["--token-file", right.path, "get", "ok.bin", "-"]);
  assertSuccess(got, "get with the right token");
  assert.deepEqual(got.stdout, data);
  const listed = await ferry(server, ["list", "--token-file", right.path]);
  assertSuccess(listed, "list with the right token");
  assert.equal(decoder.decode(listed.stdout), "ok.bin\n");

  // No token, or the wrong one: refused in one line, and nothing is stored.
  for (
    const op of [["put", `${dir.path}/data.bin`, "none.bin"], ["get", "ok.bin", "-"], ["list"]]
  ) {
    const result = await ferry(server, op);
    assertFailure(result, /requires a token.*--token-file/, { what: `${op[0]} without a token` });
    assert.equal(result.stdout.length, 0, `${op[0]} without a token: no data`);
  }
  for (const op of [["put", `${dir.path}/data.bin`, "wrong.bin"], ["get", "ok.bin", "-"]]) {
    const result = await ferry(server, ["--token-file", wrong.path, ...op]);
    assertFailure(result, /wrong token/i, { what: `${op[0]} with the wrong token` });
    assert.equal(result.stdout.length, 0, `${op[0]} with the wrong token: no data`);
  }
  await server.waitForLog(/refused: Wrong token/);
  assert.equal(
    server.lines.filter((line) => /"(none|wrong)\.bin"/.test(line)).length,
    0,
    "no put was even looked at for refused clients",
  );
  await assertStored(server, ["ok.bin"], "after the refusals");
});

Deno.test("--token-file: raw requests without a valid proof are refused and never reach the store", async () => {
  await using dir = await makeTempDir();
  const right = await writeToken(dir.path, "right.token");
  await using server = await startServer({ args: ["--token-file", right.path] });
  const data = randomBytes(10000);
  const put = concat([
    encodeControl(FrameType.REQUEST, { op: "put", name: "sneak.bin", size: data.length }),
    await dataWithEnd(data),
  ]);

  // A wrong proof, with a whole upload pipelined behind it.
  {
    using raw = await openRaw(server);
    const welcome = await raw.handshake();
    assert.match(String(welcome.challenge), /^[0-9a-f]{64}$/, "the server sends a challenge");
    assert.ok((welcome.features as string[]).includes("auth"));
    const forged = { nonce: "1".repeat(64), mac: "2".repeat(64) };
    await raw.write(concat([encodeControl(FrameType.AUTH, forged), put]));
    const error = await raw.expectFrame(FrameType.ERROR, "forged AUTH");
    assert.equal(error.code, "denied", JSON.stringify(error));
    await raw.waitForClose(PROMPT_MS);
  }
  // No proof at all: straight to the request.
  {
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(put);
    const error = await raw.expectFrame(FrameType.ERROR, "REQUEST without AUTH");
    assert.equal(error.code, "denied", JSON.stringify(error));
    await raw.waitForClose(PROMPT_MS);
  }
  // A proof for a different challenge (replayed from another connection) fails too.
  {
    using first = await openRaw(server);
    const challenge = String((await first.handshake()).challenge);
    using second = await openRaw(server);
    const other = String((await second.handshake()).challenge);
    assert.notEqual(challenge, other, "every connection gets a fresh challenge");
    first.close();
    const token = encoder.encode(right.token);
    const nonce = "3".repeat(64);
    const stale = await authMac(token, { role: "client", challenge, nonce });
    await second.write(concat([encodeControl(FrameType.AUTH, { nonce, mac: stale }), put]));
    const error = await second.expectFrame(FrameType.ERROR, "replayed AUTH");
    assert.equal(error.code, "denied", JSON.stringify(error));
    await second.waitForClose(PROMPT_MS);
  }
  await server.waitForLog(/refused: Wrong token/);
  await server.waitForLog(/refused: This server requires a token/);
  assert.ok(!server.lines.some((line) => line.includes('"sneak.bin"')), "no put was served");
  await assertStored(server, [], "after the raw refusals");
});

Deno.test("a client with a token refuses a server that does not ask for one", async () => {
  await using dir = await makeTempDir();
  const token = await writeToken(dir.path, "client.token");
  await Deno.writeFile(`${dir.path}/data.bin`, randomBytes(1000));
  await using server = await startServer();
  const result = await ferry(server, [
    "--token-file",
    token.path,
    "put",
    `${dir.path}/data.bin`,
    "leak.bin",
  ]);
  assertFailure(result, /did not ask for the token/, { what: "token client, tokenless server" });
  assert.equal(result.stdout.length, 0);
  await assertStored(server, [], "tokenless server");
  // Control: the same upload without --token-file is stored, so the refusal was the client's.
  assertSuccess(await ferry(server, ["put", `${dir.path}/data.bin`, "leak.bin"]), "control put");
  await assertStored(server, ["leak.bin"], "control");
});

Deno.test("a client refuses a server that cannot prove it holds the token", async () => {
  await using dir = await makeTempDir();
  const token = await writeToken(dir.path, "client.token");
  await Deno.writeFile(`${dir.path}/data.bin`, randomBytes(1000));
  // A fake server that challenges, accepts any answer and sends a made-up proof.
  let sawRequest = false;
  const result = await serveOnce(async (conn) => {
    using raw = new Wire(conn, { abortIsEnd: true });
    await raw.acceptHandshake({
      welcome: { server: "fake/0", features: ["auth"], challenge: "a".repeat(64) },
    });
    const auth = await raw.expectFrame(FrameType.AUTH, "fake server");
    assert.match(String(auth.mac), /^[0-9a-f]{64}$/);
    await raw.write(encodeControl(FrameType.OK, { mac: "b".repeat(64) }));
    const next = await raw.readFrame().catch(() => null);
    sawRequest = next?.type === FrameType.REQUEST;
  }, (port) =>
    runClient([
      "127.0.0.1",
      String(port),
      "--token-file",
      token.path,
      "put",
      `${dir.path}/data.bin`,
    ]));
  assertFailure(result, /could not prove it holds the token/, { what: "impostor server" });
  assert.equal(sawRequest, false, "the client sent no request to the impostor");
});

Deno.test("the token never crosses the wire (plain TCP, recorded by a relay)", async () => {
  await using dir = await makeTempDir();
  const { path, token } = await writeToken(dir.path, "secret.token");
  const marker = encoder.encode("ferry-plain-marker-5c1e|");
  const payload = new Uint8Array(64 * marker.length);
  for (let i = 0; i < 64; i++) payload.set(marker, i * marker.length);
  await Deno.writeFile(`${dir.path}/payload.bin`, payload);

  await using server = await startServer({ args: ["--token-file", path] });
  await using relay = new Relay(server);
  assertSuccess(
    await ferry(relay, ["--token-file", path, "put", `${dir.path}/payload.bin`, "p.bin"]),
    "put through the relay",
  );
  const got = await ferry(relay, ["--token-file", path, "get", "p.bin", "-"]);
  assertSuccess(got, "get through the relay");
  assert.deepEqual(got.stdout, payload);
  assert.equal(relay.connections, 2, "both connections went through the relay");

  const wire = relay.recorded();
  // The recorder works: in plain TCP the file contents are plainly visible.
  assert.ok(contains(wire, marker), "the relay recorded the (unencrypted) file contents");
  assert.ok(contains(concat(relay.toServer), encodePreamble()), "plain ferry went through");
  const tokenBytes = encoder.encode(token);
  assert.ok(!contains(wire, tokenBytes), "the token itself never crosses the wire");
  assert.ok(!contains(wire, encoder.encode(btoa(token))), "nor its base64");
  assert.ok(
    !contains(wire, encoder.encode(Buffer.from(tokenBytes).toString("hex"))),
    "nor its hex",
  );
});

Deno.test("under TLS neither the token nor the file contents cross in clear, and the transfer works", async () => {
  await using pki = await makePki();
  await using dir = await makeTempDir();
  const { path, token } = await writeToken(dir.path, "secret.token");
  const marker = encoder.encode("FERRY-TLS-MARKER-do-not-leak|");
  const payload = new Uint8Array(MiB);
  for (let offset = 0; offset < payload.length; offset += marker.length) {
    payload.set(marker.subarray(0, Math.min(marker.length, payload.length - offset)), offset);
  }
  await Deno.writeFile(`${dir.path}/payload.bin`, payload);

  await using server = await startServer({ args: [...tlsArgs(pki), "--token-file", path] });
  await using relay = new Relay(server);
  const client = ["--ca", pki.ca, "--token-file", path];
  assertSuccess(
    await ferry(relay, [...client, "put", `${dir.path}/payload.bin`, "secret.bin"]),
    "TLS put through the relay",
  );
  assert.deepEqual(await Deno.readFile(`${server.root}/secret.bin`), payload, "stored intact");
  const got = await ferry(relay, [...client, "get", "secret.bin", "-"]);
  assertSuccess(got, "TLS get through the relay");
  assert.deepEqual(got.stdout, payload);
  const listed = await ferry(relay, ["list", "--tls", "--ca", pki.ca, "--token-file", path]);
  assertSuccess(listed, "TLS list through the relay");
  assert.equal(decoder.decode(listed.stdout), "secret.bin\n");
  assert.equal(relay.connections, 3, "every connection went through the relay");

  const wire = relay.recorded();
  assert.ok(wire.length > 2 * MiB, `the relay saw the transfers (${wire.length} bytes)`);
  assert.equal(relay.toServer[0][0], 0x16, "the client opened with a TLS handshake record");
  assert.ok(!contains(wire, marker), "the file contents never appear in clear");
  assert.ok(!contains(wire, marker.subarray(0, 12)), "not even part of the marker");
  assert.ok(!contains(wire, encoder.encode(token)), "the token never appears");
  assert.ok(!contains(wire, encoder.encode("secret.bin")), "nor the file name");
  assert.ok(!contains(wire, encodePreamble()), "nor ferry's own preamble");
});

// --------------------------------------------------------------------------------------- TLS

Deno.test("a plain client against a TLS server fails in one line within seconds; the server goes on", async () => {
  await using pki = await makePki();
  await using server = await startServer({ args: tlsArgs(pki) });
  for (const args of [["list"], ["get", "x.bin", "-"]]) {
    const { result, ms } = await timedFerry(server, args);
    assertFailure(result, /^ferry: .*TLS/, { what: `plain ${args[0]} against TLS` });
    assert.equal(result.stdout.length, 0);
    assert.ok(ms < PROMPT_MS, `plain client against TLS took ${ms.toFixed(0)} ms`);
  }
  assertSuccess(
    await ferry(server, ["--ca", pki.ca, "put", "-", "after.txt"], { stdin: "hi\n" }),
    "TLS put after",
  );
  const got = await ferry(server, ["--ca", pki.ca, "get", "after.txt", "-"]);
  assertSuccess(got, "TLS get after");
  assert.equal(decoder.decode(got.stdout), "hi\n");
  await assertStored(server, ["after.txt"], "TLS server");
});

Deno.test("a TLS client against a plain server fails in one line within seconds; the server goes on", async () => {
  await using pki = await makePki();
  await using server = await startServer();
  for (const args of [["list"], ["put", "-", "x.bin"]]) {
    const started = performance.now();
    const result = await ferry(server, ["--ca", pki.ca, ...args], { stdin: "data" });
    const ms = performance.now() - started;
    assertFailure(result, /^ferry: TLS handshake .*failed/, {
      what: `TLS ${args[0]} against plain`,
    });
    assert.ok(ms < PROMPT_MS, `TLS client against plain took ${ms.toFixed(0)} ms`);
  }
  await server.waitForLog(/refused: TLS client/);
  assertSuccess(
    await ferry(server, ["put", "-", "after.txt"], { stdin: "hi\n" }),
    "plain put after",
  );
  const got = await ferry(server, ["get", "after.txt", "-"]);
  assertSuccess(got, "plain get after");
  assert.equal(decoder.decode(got.stdout), "hi\n");
  await assertStored(server, ["after.txt"], "plain server");
});

Deno.test("TLS with a CA that did not sign the server's certificate fails, and stores nothing", async () => {
  await using pki = await makePki();
  await using server = await startServer({ args: tlsArgs(pki) });
  for (const trust of [["--ca", pki.otherCa], ["--tls"]]) {
    const { result, ms } = await timedFerry(server, [...trust, "put", pki.ca, "ca.pem"]);
    assertFailure(result, /no CA vouches for its certificate \(UnknownIssuer\); its fingerprint/, {
      what: `TLS client trusting ${trust.join(" ")}`,
    });
    assert.ok(ms < PROMPT_MS, `wrong-CA failure took ${ms.toFixed(0)} ms`);
  }
  await assertStored(server, [], "after wrong CAs");
  // Control: the right CA works, so the failures above were the certificate check.
  assertSuccess(await ferry(server, ["--ca", pki.ca, "put", pki.ca, "ca.pem"]), "right CA");
  await assertStored(server, ["ca.pem"], "right CA");
});

// ---------------------------------------------------------------------------------- max size

Deno.test("--max-size refuses a known-size upload over the limit before any data is sent", async () => {
  await using dir = await makeTempDir();
  await writeRandomFile(`${dir.path}/big.bin`, 2 * MiB);
  await writeRandomFile(`${dir.path}/exact.bin`, MiB);
  await using server = await startServer({ args: ["--max-size", "1M"] });

  const result = await ferry(server, ["put", `${dir.path}/big.bin`]);
  assertFailure(result, /over the server's limit of 1\.00 MiB/, {
    what: "2 MiB put over a 1M limit",
  });
  await server.waitForLog(/ put "big\.bin" 0 bytes refused \(too_large/);
  await assertStored(server, [], "after the refused put");

  // On the wire: the announcement alone is refused; the server asks for no data.
  {
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(
      encodeControl(FrameType.REQUEST, { op: "put", name: "raw.bin", size: MiB + 1 }),
    );
    const error = await raw.expectFrame(FrameType.ERROR, "announced size over the limit");
    assert.equal(error.code, "too_large", JSON.stringify(error));
    // Refused before the data phase, the connection stays usable.
    await raw.write(encodeControl(FrameType.REQUEST, { op: "list" }));
    await raw.expectFrame(FrameType.OK, "list after the refusal");
  }

  assertSuccess(await ferry(server, ["put", `${dir.path}/exact.bin`]), "put of exactly 1 MiB");
  assert.deepEqual(
    await Deno.readFile(`${server.root}/exact.bin`),
    await Deno.readFile(`${dir.path}/exact.bin`),
  );
  await assertStored(server, ["exact.bin"], "after the put at the limit");
});

Deno.test("--max-size cuts off a streamed upload over the limit; one at the limit is stored", async () => {
  await using server = await startServer({ args: ["--max-size", "1M"] });
  const over = await ferry(server, ["put", "-", "over.bin"], { stdin: randomBytes(3 * MiB) });
  assertFailure(over, /over the server's limit/, { what: "3 MiB from stdin over a 1M limit" });
  const byOne = await ferry(server, ["put", "-", "by-one.bin"], { stdin: randomBytes(MiB + 1) });
  assertFailure(byOne, /over the server's limit/, { what: "1 MiB + 1 from stdin over a 1M limit" });
  await server.waitForLog(/ put "over\.bin" \d+ bytes failed \(too_large/);
  await server.waitForLog(/ put "by-one\.bin" \d+ bytes failed \(too_large/);
  await assertStored(server, [], "after the cut uploads");

  // A stream of small DATA frames is cut as soon as it passes the limit, without waiting for
  // the end: the test sends 1.25 MiB and then nothing more, and the refusal must still come.
  {
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(encodeControl(FrameType.REQUEST, { op: "put", name: "raw.bin", size: null }));
    await raw.expectFrame(FrameType.OK, "streamed put accepted");
    for (let i = 0; i < 5; i++) await raw.write(dataFrame(randomBytes(256 * 1024)));
    const error = await raw.expectFrame(FrameType.ERROR, "stream past the limit");
    assert.equal(error.code, "too_large", JSON.stringify(error));
    await raw.waitForClose(PROMPT_MS);
  }
  await server.waitForLog(/ put "raw\.bin" \d+ bytes failed \(too_large/);
  await assertStored(server, [], "after the raw stream");

  const exact = randomBytes(MiB);
  assertSuccess(await ferry(server, ["put", "-", "exact.bin"], { stdin: exact }), "1 MiB stream");
  const under = randomBytes(1000);
  assertSuccess(await ferry(server, ["put", "-", "under.bin"], { stdin: under }), "small stream");
  assert.deepEqual(await Deno.readFile(`${server.root}/exact.bin`), exact);
  assert.deepEqual(await Deno.readFile(`${server.root}/under.bin`), under);
  await assertStored(server, ["exact.bin", "under.bin"], "after the streams within the limit");
});

Deno.test("--max-size: an upload a byte over is told both sizes exactly, as rounding would show them equal", async () => {
  await using server = await startServer({ args: ["--max-size", "1M"] });
  await using dir = await makeTempDir();
  await writeRandomFile(`${dir.path}/by-one.bin`, MiB + 1);
  const result = await ferry(server, ["put", `${dir.path}/by-one.bin`]);
  const exact =
    /Upload of 1\.00 MiB \(1048577 bytes\) is over the server's limit of 1\.00 MiB \(1048576 bytes\)$/;
  assertFailure(result, exact, {
    what: "a known-size put one byte over",
  });
  {
    // Streamed, the refusal comes as the byte arrives; "1.00 MiB" would not explain it either.
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(encodeControl(FrameType.REQUEST, { op: "put", name: "raw.bin", size: null }));
    await raw.expectFrame(FrameType.OK, "streamed put accepted");
    await raw.write(concat([dataFrame(randomBytes(MiB)), dataFrame(randomBytes(1))]));
    const error = await raw.expectFrame(FrameType.ERROR, "stream one byte past the limit");
    assert.deepEqual(error, {
      code: "too_large",
      message: "Upload is over the server's limit of 1.00 MiB (1048576 bytes)",
    });
  }
  await assertStored(server, [], "after the refusals");
});

// --------------------------------------------------------------------------- max connections

Deno.test("--max-connections 2: a third client is told the server is busy at once, and served once a slot frees", async () => {
  await using server = await startServer({ args: ["--max-connections", "2"] });
  using first = await openRaw(server);
  await first.handshake();
  using second = await openRaw(server);
  await second.handshake();

  const { result, ms } = await timedFerry(server, ["list"]);
  assertFailure(result, /busy/i, { what: "third connection" });
  assert.ok(ms < PROMPT_MS, `the busy refusal took ${ms.toFixed(0)} ms`);
  await server.waitForLog(/refused: busy \(2 connections\)/);
  {
    // On the wire: the ferry preamble, one ERROR busy, and the server hangs up.
    using third = await openRaw(server);
    const preamble = await third.readExact(8);
    assert.ok(preamble, "a busy server still answers");
    decodePreamble(preamble);
    const error = await third.expectFrame(FrameType.ERROR, "busy refusal");
    assert.equal(error.code, "busy", JSON.stringify(error));
    await third.waitForClose(PROMPT_MS);
  }
  // The held connections still work.
  await first.write(encodeControl(FrameType.REQUEST, { op: "list" }));
  await first.expectFrame(FrameType.OK, "held connection still served");

  second.close();
  // The server notices the hang-up asynchronously; every attempt before it does must be a busy
  // refusal, and one must succeed within the deadline.
  let served: RunResult | undefined;
  await waitFor("a client to be served after a slot frees", async () => {
    const attempt = await ferry(server, ["put", "-", "later.txt"], { stdin: "later\n" });
    if (attempt.code !== 0) {
      assertFailure(attempt, /busy/i, { what: "attempt while the slot frees" });
    } else served = attempt;
    return attempt.code === 0;
  });
  assertSuccess(served!, "put after a slot freed");
  assert.equal(await Deno.readTextFile(`${server.root}/later.txt`), "later\n");
});

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

// -------------------------------------------------------------------- start line and warning

/** Waits until the server has served one request, so its start-up lines are all in. */
async function startupLines(server: ServerProcess, clientArgs: string[] = []): Promise<string[]> {
  const listed = await ferry({ host: "127.0.0.1", port: server.port }, ["list", ...clientArgs]);
  assertSuccess(listed, "list");
  await server.waitForLog(/ list - /);
  return server.lines.slice(0, server.lines.findIndex((line) => / list - /.test(line)));
}

const WARNING = /warning: listening beyond this machine with neither --token-file nor TLS/;

Deno.test("listening beyond loopback with neither token nor TLS warns; a token, TLS or loopback does not", async () => {
  await using dir = await makeTempDir();
  await using pki = await makePki();
  const token = await writeToken(dir.path, "t.token");
  {
    await using server = await startServer({ host: "0.0.0.0" });
    const lines = await startupLines(server);
    assert.ok(lines.some((line) => WARNING.test(line)), `no warning:\n${lines.join("\n")}`);
    assert.match(lines.find((line) => WARNING.test(line))!, /read and write/);
  }
  {
    await using server = await startServer({ host: "0.0.0.0", args: ["--read-only"] });
    const line = (await startupLines(server)).find((line) => WARNING.test(line));
    assert.ok(line, "read-only beyond loopback still warns");
    assert.doesNotMatch(line, /write/, "a read-only server cannot be written to");
  }
  for (
    const [what, host, args, clientArgs] of [
      ["token", "0.0.0.0", ["--token-file", token.path], ["--token-file", token.path]],
      ["TLS", "0.0.0.0", tlsArgs(pki), ["--ca", pki.ca]],
      ["loopback", "127.0.0.1", [], []],
    ] as const
  ) {
    await using server = await startServer({ host, args: [...args] });
    const lines = await startupLines(server, [...clientArgs]);
    assert.ok(lines.length >= 2, `start-up lines:\n${lines.join("\n")}`);
    assert.ok(!lines.some((line) => /warning/i.test(line)), `${what}: ${lines.join("\n")}`);
  }
});

Deno.test("the start line shows the limits, defaults and given ones", async () => {
  {
    await using server = await startServer();
    const line = await server.waitForLog(/max connections/);
    assert.match(line, /no TLS, no token, uploads allowed/);
    assert.match(line, /max size unlimited, max connections 64, idle timeout 120 s/);
  }
  await using dir = await makeTempDir();
  const token = await writeToken(dir.path, "t.token");
  await using pki = await makePki();
  {
    await using server = await startServer({
      args: [
        "--max-size",
        "10M",
        "--max-connections",
        "7",
        "--idle-timeout",
        "42",
        "--read-only",
        "--token-file",
        token.path,
        ...tlsArgs(pki),
      ],
    });
    const line = await server.waitForLog(/max connections/);
    assert.match(line, /TLS, token required, read-only/);
    assert.doesNotMatch(line, /no TLS|no token/);
    assert.match(
      line,
      /max size 10\.0 MiB \(10485760 bytes\), max connections 7, idle timeout 42 s/,
    );
  }
  {
    await using server = await startServer({ args: ["--idle-timeout", "0"] });
    assert.match(await server.waitForLog(/max connections/), /idle timeout none/);
  }
});

// --------------------------------------------------------------------------- legacy conflicts

/**
 * Runs `server.ts ARGS` expecting it to stop by itself (a usage error); a server that starts
 * instead is killed after a few seconds, and the result says so, rather than hanging the test.
 */
async function runServerBounded(args: string[]): Promise<RunResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-write", "server.ts", ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), PROMPT_MS);
  try {
    const output = await child.output();
    const stderr = decoder.decode(output.stderr) +
      (output.signal === "SIGKILL" ? `(still running after ${PROMPT_MS} ms)\n` : "");
    return { code: output.code, stdout: output.stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("--legacy with a token or TLS will not start (exit 2, one line), on the server and the client", async () => {
  await using dir = await makeTempDir();
  await using pki = await makePki();
  const token = await writeToken(dir.path, "t.token");
  const root = `${dir.path}/never`;
  for (
    const [what, args] of [
      ["token", ["--token-file", token.path]],
      ["TLS", tlsArgs(pki)],
      ["token and TLS", ["--token-file", token.path, ...tlsArgs(pki)]],
    ] as const
  ) {
    const result = await runServerBounded(["0", "--root", root, "--legacy", ...args]);
    assertUsageError(result, "ferry-server", {
      pattern: /--legacy cannot be combined/,
      what: `server: ${what}`,
    });
    assert.equal(await pathExists(root), false, `server with --legacy and ${what} did not start`);
  }
  for (
    const [what, args] of [
      ["--tls", ["--tls"]],
      ["--ca", ["--ca", pki.ca]],
      ["--token-file", ["--token-file", token.path]],
    ] as const
  ) {
    const result = await runClient(["127.0.0.1", "9", "--legacy", ...args, "list"]);
    assertUsageError(result, "ferry", {
      pattern: /--legacy cannot be combined/,
      what: `client: ${what}`,
    });
    assert.equal(result.stdout.length, 0);
  }
});
