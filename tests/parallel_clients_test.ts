/**
 * Integration test of many clients at once: eight in parallel each put and get back their own
 * file intact.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertRootHolds,
  assertSuccess,
  ferry,
  filesEqual,
  makeTempDir,
  startServer,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1 << 20;

Deno.test("eight clients in parallel each put and get back a distinct 4 MiB file", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const count = 8;
  const originals = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const dir = `${work.path}/c${i}`;
      await Deno.mkdir(dir);
      await writeRandomFile(`${dir}/mine.bin`, 4 * MiB);
      return dir;
    }),
  );

  const results = await Promise.all(originals.map(async (dir, i) => {
    const put = await ferry(server, ["put", "mine.bin", `p${i}.bin`], { cwd: dir });
    const get = put.code === 0
      ? await ferry(server, ["get", `p${i}.bin`, "back.bin"], { cwd: dir })
      : undefined;
    return { put, get };
  }));

  for (const [i, { put, get }] of results.entries()) {
    assertSuccess(put, `client ${i} put`);
    assertSuccess(get!, `client ${i} get`);
    const dir = originals[i];
    assert.ok(await filesEqual(`${dir}/mine.bin`, `${server.root}/p${i}.bin`), `server copy ${i}`);
    assert.ok(await filesEqual(`${dir}/mine.bin`, `${dir}/back.bin`), `round trip ${i}`);
  }
  await assertRootHolds(server.root, Array.from({ length: count }, (_, i) => `p${i}.bin`));
});
