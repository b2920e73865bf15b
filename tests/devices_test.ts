/**
 * Integration tests of device paths given as LOCAL to the real client, run with its usual
 * permissions (--allow-net --allow-read --allow-write), issue 13: Deno will not open most of
 * /dev without --allow-all, so `/dev/stdout`, `/dev/stderr`, `/dev/stdin` (and their /dev/fd and
 * /proc/self/fd spellings), `/dev/tty` and `/dev/full` have stand-ins, and any other path Deno
 * refuses is one line that says what to do, never Deno's own advice.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  commandWorks,
  ferry,
  makeTempDir,
  PROGRAM_PERMISSIONS,
  randomBytes,
  REPO_ROOT,
  runCommand,
  startServer,
} from "./harness.ts";

const decoder = new TextDecoder();

/** Deno's words for its own permission errors, which a user must never be shown. */
const DENO_ADVICE = /run again with|--allow-all flag|Requires (all|read|write|net) access/;

Deno.test("get into /dev/stdout, /dev/fd/1 or /proc/self/fd/1 streams the file to stdout", async () => {
  await using server = await startServer();
  const data = randomBytes(200_000);
  await Deno.writeFile(`${server.root}/d.bin`, data);
  for (const local of ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]) {
    const result = await ferry(server, ["get", "d.bin", local]);
    assertSuccess(result, `get into ${local}`);
    assert.deepEqual(result.stdout, data, `${local}: the file's bytes on stdout`);
    assert.match(result.stderr, new RegExp(`Downloaded "d.bin" to ${local}`));
  }
  // As with "-", the JSON report leaves stdout to the data.
  const json = await ferry(server, ["get", "d.bin", "/dev/stdout", "--json"]);
  assertSuccess(json, "get --json into /dev/stdout");
  assert.deepEqual(json.stdout, data);
  assert.match(json.stderr, /^\{"op":"get","name":"d.bin"/m);
  const resume = await ferry(server, ["get", "d.bin", "/dev/stdout", "--resume"]);
  assert.equal(resume.code, 2, resume.stderr);
  assert.match(resume.stderr, /--resume needs a regular file, and \/dev\/stdout is not one/);
});

Deno.test("get into /dev/stderr or /dev/fd/2 streams the file to stderr", async () => {
  await using server = await startServer();
  await Deno.writeTextFile(`${server.root}/note.txt`, "NOTE-FOR-STDERR");
  for (const local of ["/dev/stderr", "/dev/fd/2"]) {
    const result = await ferry(server, ["get", "note.txt", local]);
    assertSuccess(result, `get into ${local}`);
    assert.equal(result.stdout.length, 0, "nothing on stdout");
    assert.match(result.stderr, /^NOTE-FOR-STDERRDownloaded "note.txt" to /);
  }
});

Deno.test("put /dev/stdin or /dev/fd/0 uploads what arrives on stdin", async () => {
  await using server = await startServer();
  const data = randomBytes(300_000);
  for (const [local, name] of [["/dev/stdin", "a.bin"], ["/dev/fd/0", "b.bin"]]) {
    const result = await ferry(server, ["put", local, name], { stdin: data });
    assertSuccess(result, `put ${local}`);
    assert.deepEqual(await Deno.readFile(`${server.root}/${name}`), data, `${local} stored`);
  }
  const resume = await ferry(server, ["put", "/dev/stdin", "c.bin", "--resume"], { stdin: "x" });
  assert.equal(resume.code, 2, resume.stderr);
  assert.match(resume.stderr, /--resume needs a regular file, and \/dev\/stdin is not one/);
});

Deno.test("get into /dev/full fails in one line, no space left on device; an empty file fits", async () => {
  await using server = await startServer();
  await Deno.writeTextFile(`${server.root}/f.txt`, "some bytes");
  await Deno.writeTextFile(`${server.root}/empty.txt`, "");
  assertFailure(
    await ferry(server, ["get", "f.txt", "/dev/full"]),
    /^ferry: Cannot write \/dev\/full: no space left on device$/,
    { what: "get into /dev/full" },
  );
  assertSuccess(await ferry(server, ["get", "empty.txt", "/dev/full"]), "empty into /dev/full");
});

/** Quotes a word for sh. */
function shQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

Deno.test("get into /dev/tty writes to the terminal; without one, one line says why", async () => {
  await using server = await startServer();
  await Deno.writeTextFile(`${server.root}/t.txt`, "FERRY-ON-THE-TERMINAL");
  const noTerminal = await ferry(server, ["get", "t.txt", "/dev/tty"]);
  assertFailure(noTerminal, /^ferry: Cannot write \/dev\/tty: .*neither is a terminal here$/, {
    what: "get into /dev/tty with no terminal",
  });

  if (!await commandWorks("script", ["-qec", "true", "/dev/null"])) {
    console.log("skipped the terminal half: script(1) cannot make a terminal here");
    return;
  }
  await using dir = await makeTempDir();
  const out = `${dir.path}/stdout`;
  const client = [Deno.execPath(), "run", ...PROGRAM_PERMISSIONS, `${REPO_ROOT}client.ts`];
  const line = [...client, server.host, String(server.port), "get", "t.txt", "/dev/tty"]
    .map(shQuote).join(" ") + ` > ${shQuote(out)}; echo "exit=$?"`;
  // script(1) runs the line on a new terminal and copies what reaches it to its stdout.
  const result = await runCommand("script", ["-qec", line, "/dev/null"], {
    env: { NO_COLOR: "1" },
  });
  const seen = decoder.decode(result.stdout);
  assert.match(seen, /FERRY-ON-THE-TERMINAL/, seen);
  assert.match(seen, /exit=0/, seen);
  assert.doesNotMatch(seen, DENO_ADVICE);
  assert.equal(await Deno.readTextFile(out), "", "stdout, a file, was left alone");
});

Deno.test("other paths Deno will not open, and a missing permission, get one line that says what to do", async () => {
  await using server = await startServer();
  await Deno.writeTextFile(`${server.root}/f.txt`, "some bytes");
  await using dir = await makeTempDir();
  await Deno.symlink("/dev/full", `${dir.path}/full-link`);
  const cases: [string, string[], RegExp][] = [
    ["get into a link to a device", ["get", "f.txt", `${dir.path}/full-link`], /get NAME - > /],
    ["put from /proc", ["put", "/proc/self/status", "s.txt"], /put - NAME < \/proc\/self\/status/],
  ];
  for (const [what, args, redirect] of cases) {
    const result = await ferry(server, args);
    assertFailure(result, /only with --allow-all; use "-" and a shell redirection instead/, {
      what,
    });
    assert.match(result.stderr, redirect, what);
  }
  // The client run without --allow-net, as a hand-typed deno run might.
  const noNet = await runCommand(Deno.execPath(), [
    "run",
    "--no-prompt",
    "--allow-read",
    "--allow-write",
    `${REPO_ROOT}client.ts`,
    server.host,
    String(server.port),
    "list",
  ]);
  assertFailure(
    noNet,
    /^ferry: Not allowed by Deno's permissions \(net access to .*\): run it with --allow-net/,
    { what: "client without --allow-net" },
  );
  assert.doesNotMatch(noNet.stderr, DENO_ADVICE);
});

/** The one line for a path that Deno opens only with --allow-all, whoever names it. */
const DEVICE_RULE_LINE =
  /: Deno opens device and kernel files \(under \/dev, \/proc, \/sys\) only with --allow-all; use a path outside them$/;

Deno.test("a token or CA file under /dev or /proc gets one line that names Deno's rule, not advice that cannot help", async () => {
  await using server = await startServer();
  // Deno refuses these by their place, before it looks for them: no such file is needed.
  const cases: [string, string[]][] = [
    ["token file under /dev", ["--token-file", "/dev/ferry-no-such.token", "list"]],
    ["CA file under /proc", ["--tls", "--ca", "/proc/ferry-no-such.pem", "list"]],
  ];
  for (const [what, args] of cases) {
    const result = await ferry(server, args);
    assertFailure(result, DEVICE_RULE_LINE, { what });
    assert.match(result.stderr, /^ferry: .*\/(dev|proc)\/ferry-no-such\./, what);
    assert.doesNotMatch(result.stderr, DENO_ADVICE, what);
    // The client was run as deno task client runs it: that advice would send the user in circles.
    assert.doesNotMatch(result.stderr, /as deno task client does/, what);
  }
});
