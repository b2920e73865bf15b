/**
 * Integration tests of what a server offers and says when it is exposed: `--read-only`, the
 * warning when it listens beyond loopback with neither token nor TLS, the start line with its
 * limits, and the `--legacy` combinations with a token or TLS that must not start.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  ferry,
  makeTempDir,
  pathExists,
  randomBytes,
  REPO_ROOT,
  runClient,
  type RunResult,
  type ServerProcess,
  startServer,
} from "./harness.ts";
import { makePki, tlsArgs } from "./pki.ts";
import { assertStored, writeToken } from "./access.ts";

/** "Within seconds": a bound well under the client's 15 s connect timeout, not a benchmark. */
const PROMPT_MS = 10000;

const decoder = new TextDecoder();

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
