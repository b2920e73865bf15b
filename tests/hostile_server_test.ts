/**
 * The real client against one-connection fake servers: names and refusals that would drive the
 * terminal are printed escaped on one line each, and a peer that is not a plain ferry server (or
 * a `--ca` file with no certificate) fails in one plain line.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeListing, type ListEntry } from "../lib/protocol.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { assertFailure, assertSuccess, makeTempDir, runClient, type RunResult } from "./harness.ts";
import {
  checksumOf,
  dataFrame,
  READ_TIMEOUT_MS,
  serveOnce,
  type Wire,
  withFakeServer,
} from "./wire.ts";

const decoder = new TextDecoder();

/** Characters that would drive a terminal: C0, DEL, C1, bidi controls, line separators. */
const TERMINAL_CONTROLS =
  // deno-lint-ignore no-control-regex -- finding control characters is the point
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

// ---------------------------------------------------------------------- names from a server

/** Runs the real client with `args` against the fake server at `port`. */
function client(args: string[]): (port: number) => Promise<RunResult> {
  return (port) => runClient(["127.0.0.1", String(port), ...args]);
}

/** Waits until the client hangs up, so that it never sees the connection cut. */
async function untilHangUp(wire: Wire): Promise<void> {
  await wire.waitForClose(READ_TIMEOUT_MS).catch(() => {});
}

/** Answers a list request with `entries`, as the real server does. */
async function sendListing(wire: Wire, entries: ListEntry[]): Promise<void> {
  const listing = encodeListing(entries);
  await wire.write(encodeControl(FrameType.OK, { size: listing.length }));
  await wire.write(dataFrame(listing));
  await wire.write(encodeControl(FrameType.END, {
    size: listing.length,
    checksum: await checksumOf(listing),
  }));
}

Deno.test("names from a server that would drive the terminal are listed escaped, one line each", async () => {
  const hostile = [
    "colour\x1b[31mred",
    "c1\u009b2Jclear",
    "gnp.\u202eexe",
    "iso\u2066late\u2069",
    "two\nlines",
    "bell\x07del\x7f",
  ];
  const names = ["plain name.txt", ...hostile];
  const entries = names.map((name, i) => ({ name, size: i, mtime: Date.UTC(2026, 0, 2) }));
  const list = (args: string[]) =>
    withFakeServer(async (wire, request) => {
      assert.equal(request.op, "list");
      await sendListing(wire, entries);
      await untilHangUp(wire);
    }, client(["list", ...args]));

  const plain = await list([]);
  assertSuccess(plain, "list");
  const text = decoder.decode(plain.stdout);
  assert.doesNotMatch(text, TERMINAL_CONTROLS, `raw controls in ${JSON.stringify(text)}`);
  const lines = text.split("\n").slice(0, -1);
  assert.equal(lines.length, names.length, "one line per name");
  assert.equal(lines[0], "plain name.txt", "a harmless name is printed as it is");
  // Any other is JSON-quoted with \u escapes, which say exactly what it holds.
  assert.deepEqual(lines.slice(1).map((line) => JSON.parse(line)), hostile);

  const long = await list(["--long"]);
  assertSuccess(long, "list --long");
  const table = decoder.decode(long.stdout);
  assert.doesNotMatch(table, TERMINAL_CONTROLS, `raw controls in ${JSON.stringify(table)}`);
  const rows = table.split("\n").slice(0, -1);
  assert.equal(rows.length, names.length + 1, "one line per name and the total");
  assert.deepEqual(rows.slice(1, -1).map((row) => JSON.parse(row.split("  ").at(-1)!)), hostile);

  const json = await list(["--json"]);
  assertSuccess(json, "list --json");
  const document = decoder.decode(json.stdout);
  assert.doesNotMatch(document, /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, document);
  assert.deepEqual(JSON.parse(document).map((e: { name: string }) => e.name), names);
});

Deno.test("a server's refusal that would drive the terminal is printed escaped, on one line", async () => {
  const result = await withFakeServer(async (wire, request) => {
    assert.equal(request.op, "get");
    await wire.write(encodeControl(FrameType.ERROR, {
      code: "not_found",
      message: "No such file: \u202eexe.txt\u2066\x1b[2J\u2028fake line",
    }));
    await untilHangUp(wire);
  }, client(["get", "x.txt", "-"]));
  assertFailure(result, /^ferry: Refused by server: No such file: /, { what: "refused get" });
  assert.doesNotMatch(result.stderr.slice(0, -1), TERMINAL_CONTROLS, result.stderr);
  assert.match(result.stderr, /\\u202eexe\.txt\\u2066/, "the bidi controls are shown escaped");
});

// ------------------------------------------------------------------------- TLS and handshakes

/** A server on 127.0.0.1 that answers any connection with `reply` and closes. */
function withRawServer(reply: Uint8Array, args: string[]): Promise<RunResult> {
  return serveOnce(async (conn) => {
    try {
      await conn.read(new Uint8Array(64));
      await conn.write(reply);
    } catch {
      // The client may hang up first; what it did is in its result.
    }
  }, (port) => runClient(["127.0.0.1", String(port), ...args]));
}

Deno.test("--ca with no certificate in the file, and a peer that is not a plain ferry server, fail in one plain line", async () => {
  await using work = await makeTempDir();
  const key = `${work.path}/server.key`;
  await Deno.writeTextFile(
    key,
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  assertFailure(
    await runClient(["127.0.0.1", String(port), "--ca", key, "list"]),
    new RegExp(`^ferry: No certificate in ${key.replaceAll(".", "\\.")}`),
    { what: "--ca given a key" },
  );

  // A TLS alert where the ferry preamble should be: the server wants TLS.
  const tls = await withRawServer(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]), [
    "list",
  ]);
  assertFailure(tls, /^ferry: Server at 127\.0\.0\.1:\d+ answered with TLS; use --tls$/, {
    what: "TLS peer",
  });
  const seed = await withRawServer(new TextEncoder().encode("cancel"), ["list"]);
  assertFailure(seed, /^ferry: Server at .* speaks the seed protocol; try --legacy$/, {
    what: "seed peer",
  });
});
