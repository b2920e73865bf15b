/**
 * Integration tests of `--token-file` against the real server and client: the challenge-response
 * serves the right token and refuses a missing or wrong one before any file operation, raw
 * requests without a valid proof never reach the store, each side refuses a peer that cannot
 * prove the token, and the token never crosses the wire (checked by a recording TCP relay).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { authMac } from "../lib/auth.ts";
import { encodeControl, encodePreamble, FrameType } from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  makeTempDir,
  randomBytes,
  runClient,
  startServer,
} from "./harness.ts";
import { concat, contains, dataWithEnd, serveOnce, Wire } from "./wire.ts";
import { assertStored, openRaw, Relay, writeToken } from "./access.ts";

/** "Within seconds": a bound well under the client's 15 s connect timeout, not a benchmark. */
const PROMPT_MS = 10000;

const encoder = new TextEncoder();

const decoder = new TextDecoder();

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
