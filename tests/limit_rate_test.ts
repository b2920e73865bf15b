/**
 * Integration test of the client's `--limit-rate` on a put and a get.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertSuccess,
  ferry,
  filesEqual,
  makeTempDir,
  startServer,
  writeRandomFile,
} from "./harness.ts";
import { onlyReport } from "./client_checks.ts";

const MiB = 1 << 20;

Deno.test("--limit-rate 4M holds a 6 MiB put and get to about 4 MiB/s", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/six.bin`, 6 * MiB);

  // 6 MiB at 4 MiB/s is 1.5 s; 1.2 s leaves room for rounding but not for an ignored limit.
  for (
    const [what, args] of [
      ["put", ["put", "six.bin", "--limit-rate", "4M", "--json"]],
      ["get", ["get", "six.bin", "back.bin", "--limit-rate", "4M", "--json"]],
    ] as const
  ) {
    const started = performance.now();
    const result = await ferry(server, [...args], { cwd: work.path });
    const wall = (performance.now() - started) / 1000;
    assertSuccess(result, `${what} --limit-rate`);
    const report = onlyReport(result, what);
    assert.equal(report.size, 6 * MiB);
    assert.ok(
      (report.seconds as number) >= 1.2,
      `${what} of 6 MiB at 4 MiB/s took only ${report.seconds} s`,
    );
    assert.ok(wall >= 1.2 && wall < 30, `${what} wall time ${wall.toFixed(2)} s`);
  }
  assert.ok(await filesEqual(`${work.path}/six.bin`, `${server.root}/six.bin`));
  assert.ok(await filesEqual(`${work.path}/six.bin`, `${work.path}/back.bin`));
});
