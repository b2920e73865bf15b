/**
 * Integration tests of the server's root as a boundary: traversal names and symlinks that lead
 * outside are refused, and nothing is written outside the root.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertRootHolds,
  assertSuccess,
  ferry,
  listDir,
  makeTempDir,
  startServer,
} from "./harness.ts";

Deno.test("traversal names are refused and nothing is written outside the root", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  // A file next to the root: a traversal that worked would read or replace it.
  const secret = new TextEncoder().encode("outside the root\n");
  await Deno.writeFile(`${server.base}/secret.txt`, secret);
  await Deno.writeFile(`${work.path}/payload.txt`, new TextEncoder().encode("payload\n"));

  const hostile = [
    "../secret.txt",
    "a/../../secret.txt",
    `${server.base}/secret.txt`,
    "/etc/passwd",
    "./../secret.txt",
    "..",
  ];
  for (const name of hostile) {
    const got = await ferry(server, ["get", name, "out.txt"], { cwd: work.path });
    assertFailure(got, /refused/i, { what: `get ${JSON.stringify(name)}` });
  }
  assert.deepEqual(await listDir(work.path), ["payload.txt"], "no download was created");

  // Never aim a put at a real system file: a bug here must not damage the machine.
  const uploads = [
    "../x.txt",
    "a/../../x.txt",
    `${server.base}/abs.txt`,
    "../secret.txt",
    "sub/../../x.txt",
    "back\\..\\slash.txt",
  ];
  for (const name of uploads) {
    for (const overwrite of [[], ["--overwrite"]]) {
      const put = await ferry(server, ["put", "payload.txt", name, ...overwrite], {
        cwd: work.path,
      });
      assertFailure(put, /refused/i, { what: `put as ${JSON.stringify(name)} ${overwrite}` });
    }
  }
  assert.deepEqual(await listDir(server.base), ["root", "secret.txt"], "nothing written beside");
  assert.deepEqual(await Deno.readFile(`${server.base}/secret.txt`), secret);
  await assertRootHolds(server.root, []);
});

Deno.test("symlinks inside the root that lead outside are refused", async () => {
  await using server = await startServer();
  await using outside = await makeTempDir();
  await using work = await makeTempDir();
  const secret = new TextEncoder().encode("secret outside the root\n");
  await Deno.writeFile(`${outside.path}/secret.txt`, secret);
  await Deno.symlink(`${outside.path}/secret.txt`, `${server.root}/escape.txt`);
  await Deno.symlink(outside.path, `${server.root}/escape_dir`);
  // A symlink that stays inside the root is fine and must keep working.
  const inside = new TextEncoder().encode("inside\n");
  await Deno.writeFile(`${server.root}/real.txt`, inside);
  await Deno.symlink(`${server.root}/real.txt`, `${server.root}/alias.txt`);
  await Deno.writeFile(`${work.path}/payload.txt`, new TextEncoder().encode("payload\n"));

  for (const name of ["escape.txt", "escape_dir/secret.txt"]) {
    const got = await ferry(server, ["get", name, "out.txt"], { cwd: work.path });
    assertFailure(got, /refused/i, { what: `get ${name}` });
    assert.match(got.stderr, /outside/i, "the reason is given");
  }
  assert.deepEqual(await listDir(work.path), ["payload.txt"], "no download was created");

  for (const name of ["escape_dir/new.txt", "escape_dir/secret.txt"]) {
    for (const overwrite of [[], ["--overwrite"]]) {
      const put = await ferry(server, ["put", "payload.txt", name, ...overwrite], {
        cwd: work.path,
      });
      assertFailure(put, /refused/i, {
        what: `put through a symlinked folder: ${name} ${overwrite}`,
      });
    }
  }
  // Without --overwrite the link is an existing name; with it, at most the link itself may be
  // replaced inside the root. Either way the file outside must not change.
  await ferry(server, ["put", "payload.txt", "escape.txt"], { cwd: work.path });
  await ferry(server, ["put", "payload.txt", "escape.txt", "--overwrite"], { cwd: work.path });
  assert.deepEqual(await listDir(outside.path), ["secret.txt"], "nothing written outside");
  assert.deepEqual(await Deno.readFile(`${outside.path}/secret.txt`), secret);

  const alias = await ferry(server, ["get", "alias.txt", "-"]);
  assertSuccess(alias, "get through a symlink that stays inside");
  assert.deepEqual(alias.stdout, inside);
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  const names = new TextDecoder().decode(listed.stdout).split("\n").filter((n) => n !== "");
  assert.ok(!names.some((n) => n.startsWith("escape_dir/")), `listed: ${names}`);
  assert.ok(names.includes("alias.txt") && names.includes("real.txt"), `listed: ${names}`);
});
