/**
 * `--delete` removes only what the sender does not have, never what it has and could not read or
 * send: a folder the sender may not read, or a name it notes as not sent, is kept on the
 * receiving side with everything under it (as rsync keeps everything when its sender had an I/O
 * error). The sender runs without the capabilities that let root read any folder, so that a
 * folder of mode 000 is unreadable to it here as it is to any other user.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertSuccess,
  collectLines,
  ferry,
  makeTempDir,
  pathExists,
  PROGRAM_PERMISSIONS,
  REPO_ROOT,
  runCommand,
  SERVER_BANNER,
  spawnServing,
  startServer,
  stderrLines,
} from "./harness.ts";

/**
 * `deno run ARGS` as a process that may not read a folder of mode 000: as is, for a user other
 * than root; for root, without the capabilities that bypass permissions (capsh).
 */
function unprivileged(args: string[]): [string, string[]] {
  const deno = [Deno.execPath(), "run", ...PROGRAM_PERMISSIONS, ...args];
  if (Deno.uid() !== 0) return [deno[0], deno.slice(1)];
  const quoted = deno.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  return ["capsh", ["--drop=cap_dac_override,cap_dac_read_search", "--", "-c", `exec ${quoted}`]];
}

Deno.test("put -r --delete keeps the server's copy of a folder the client may not read", async () => {
  await using base = await makeTempDir();
  const src = `${base.path}/t`;
  await Deno.mkdir(`${src}/secret`, { recursive: true });
  await Deno.writeTextFile(`${src}/secret/s.txt`, "s\n");
  await Deno.writeTextFile(`${src}/a.txt`, "a\n");
  await Deno.chmod(`${src}/secret`, 0);
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/t/secret/deep`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/t/secret/theirs.txt`, "theirs\n");
  await Deno.writeTextFile(`${server.root}/t/secret/deep/x.txt`, "x\n");
  await Deno.writeTextFile(`${server.root}/t/gone.txt`, "gone\n");
  try {
    const [program, args] = unprivileged(
      ["client.ts", server.host, String(server.port), "put", "-r", src, "--delete"],
    );
    const result = await runCommand(program, args, { cwd: REPO_ROOT, env: { NO_COLOR: "1" } });
    assertSuccess(result, "put -r --delete");
    assert.ok(
      stderrLines(result).includes("ferry: secret: folder not readable: its contents; not sent"),
      result.stderr,
    );
  } finally {
    await Deno.chmod(`${src}/secret`, 0o755);
  }
  assert.equal(await pathExists(`${server.root}/t/gone.txt`), false, "an extra file goes");
  assert.equal(await Deno.readTextFile(`${server.root}/t/a.txt`), "a\n");
  assert.equal(await Deno.readTextFile(`${server.root}/t/secret/theirs.txt`), "theirs\n");
  assert.equal(await Deno.readTextFile(`${server.root}/t/secret/deep/x.txt`), "x\n");
});

Deno.test("get -r --delete keeps the local copy of a folder the server may not read", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await Deno.mkdir(`${root}/t/secret`, { recursive: true });
  await Deno.writeTextFile(`${root}/t/secret/s.txt`, "s\n");
  await Deno.writeTextFile(`${root}/t/a.txt`, "a\n");
  await Deno.chmod(`${root}/t/secret`, 0);
  const local = `${base.path}/dest`;
  await Deno.mkdir(`${local}/secret`, { recursive: true });
  await Deno.writeTextFile(`${local}/secret/mine.txt`, "mine\n");
  await Deno.writeTextFile(`${local}/gone.txt`, "gone\n");
  const [program, args] = unprivileged(["server.ts", "0", "--root", root]);
  const child = spawnServing(program, args);
  const { firstMatch, done } = collectLines(child.stderr);
  try {
    const banner = await firstMatch(SERVER_BANNER, { timeoutMs: 20000 });
    assert.ok(banner, "the server started");
    const result = await ferry(
      { host: "127.0.0.1", port: Number(banner[4]) },
      ["get", "-r", "t", local, "--delete"],
    );
    assertSuccess(result, "get -r --delete");
    assert.ok(
      stderrLines(result).includes("ferry: secret: folder not readable: its contents; not sent"),
      result.stderr,
    );
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await done;
    await Deno.chmod(`${root}/t/secret`, 0o755);
  }
  assert.equal(await pathExists(`${local}/gone.txt`), false, "an extra file goes");
  assert.equal(await Deno.readTextFile(`${local}/a.txt`), "a\n");
  assert.equal(await Deno.readTextFile(`${local}/secret/mine.txt`), "mine\n", "kept");
});

Deno.test("put -r --delete leaves a folder in the way of a file the server refuses", async () => {
  await using base = await makeTempDir();
  const src = `${base.path}/t`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/x`, "more than ten bytes\n");
  await using server = await startServer({ args: ["--max-size", "10"] });
  await Deno.mkdir(`${server.root}/t/x`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/t/x/inner.txt`, "kept\n");
  const result = await ferry(server, ["put", "-r", src, "--delete"]);
  assert.equal(result.code, 1, result.stderr);
  assert.ok(
    stderrLines(result).includes(
      "ferry: x: Upload of 20 bytes is over the server's limit of 10 bytes",
    ),
    result.stderr,
  );
  assert.equal(await Deno.readTextFile(`${server.root}/t/x/inner.txt`), "kept\n");
});
