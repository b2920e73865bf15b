/**
 * Integration tests of the server's start and stop: stale staging files are removed at start, it
 * exits 0 on SIGTERM, and a `--root` that is a regular file is refused in one line.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertRootHolds,
  assertSuccess,
  ferry,
  listDir,
  makeTempDir,
  randomBytes,
  runServer,
  STAGING_DIR,
  startServer,
  stderrLines,
} from "./harness.ts";

Deno.test("stale staging files are removed at start and the server exits 0 on SIGTERM", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await Deno.mkdir(`${root}/${STAGING_DIR}`, { recursive: true });
  await Deno.writeFile(`${root}/${STAGING_DIR}/stale.upload`, randomBytes(1000));
  await Deno.writeFile(`${root}/kept.txt`, new TextEncoder().encode("kept\n"));

  await using server = await startServer({ root });
  assert.deepEqual(await listDir(`${root}/${STAGING_DIR}`), [], "stale upload cleaned at start");
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(new TextDecoder().decode(listed.stdout), "kept.txt\n");
  assert.equal(await server.stop(), 0, "SIGTERM is a clean stop");
  await assertRootHolds(root, ["kept.txt"]);
  assert.equal(await Deno.readTextFile(`${root}/kept.txt`), "kept\n", "the root is left alone");
});

Deno.test("a --root that is a regular file is refused in one line that says so", async () => {
  await using base = await makeTempDir();
  const file = `${base.path}/file.txt`;
  await Deno.writeTextFile(file, "not a folder\n");
  const cases: [string, string][] = [
    [file, `ferry-server: Root ${file} is not a folder`],
    [`${file}/sub`, `ferry-server: Root ${file}/sub cannot be made: a file is in its path`],
  ];
  for (const [root, line] of cases) {
    const result = await runServer(["0", "--root", root]);
    assert.equal(result.code, 1, `--root ${root}: exit ${result.code}\n${result.stderr}`);
    assert.deepEqual(stderrLines(result), [line]);
  }
  assert.equal(await Deno.readTextFile(file), "not a folder\n", "the file is left alone");
});
