/**
 * Integration tests of TLS on the wire between the real server and client, with certificates
 * made by openssl at test time (never committed): neither the token nor the file contents cross
 * in clear, a plain peer meeting a TLS one (either way round) fails in one line within seconds,
 * and a CA that did not sign the server's certificate is refused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodePreamble } from "../lib/frames.ts";
import { assertFailure, assertSuccess, ferry, makeTempDir, startServer } from "./harness.ts";
import { makePki, tlsArgs } from "./pki.ts";
import { contains } from "./wire.ts";
import { assertStored, Relay, timedFerry, writeToken } from "./access.ts";

const MiB = 1 << 20;

/** "Within seconds": a bound well under the client's 15 s connect timeout, not a benchmark. */
const PROMPT_MS = 10000;

const encoder = new TextEncoder();

const decoder = new TextDecoder();

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
