/**
 * Integration tests of the client's `--limit-rate` on a put and a get, and on whole trees.
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
import { snapshot, summaryOf } from "./tree_helpers.ts";
import { Wire } from "./wire.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";

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

Deno.test("--limit-rate paces put -r and get -r as one stream, small files too, within an idle timeout", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--no-fsync"] });
  await using work = await makeTempDir();
  const src = `${work.path}/src`;
  await Deno.mkdir(`${src}/sub`, { recursive: true });
  await writeRandomFile(`${src}/big.bin`, 2 * MiB);
  for (let i = 0; i < 16; i++) await writeRandomFile(`${src}/sub/s${i}.bin`, 64 << 10);

  // 3 MiB at 2 MiB/s is 1.5 s for the whole tree, whatever the files' sizes; small files go as
  // their time comes, never held back past the server's 1 s idle timeout.
  for (
    const [what, args] of [
      ["put -r", ["put", "-r", src, "up", "--limit-rate", "2M", "--json"]],
      ["get -r", ["get", "-r", "up", `${work.path}/down`, "--limit-rate", "2M", "--json"]],
    ] as const
  ) {
    const result = await ferry(server, [...args]);
    assertSuccess(result, `${what} --limit-rate`);
    const summary = summaryOf(result);
    assert.equal(summary.bytes, 3 * MiB);
    assert.ok(summary.seconds >= 1.2, `${what} of 3 MiB at 2 MiB/s took only ${summary.seconds} s`);
  }
  assert.deepEqual(await snapshot(`${server.root}/up`), await snapshot(src));
  assert.deepEqual(await snapshot(`${work.path}/down`), await snapshot(src));
  assert.ok(
    !server.lines.some((line) => / cut | closed: idle/.test(line)),
    server.lines.join("\n"),
  );

  // get -r tells the server its rate: the server paces its files, in small frames.
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "get_tree", name: "up", rate: 2048 }));
  await wire.expectFrame(FrameType.OK, "accepted");
  const manifest = await wire.expectFrame(FrameType.MANIFEST, "manifest");
  const index = (manifest.entries as { path: string }[]).findIndex((e) => e.path === "big.bin");
  await wire.write(encodeControl(FrameType.WANT, { want: [index] }));
  await wire.expectFrame(FrameType.FILE, "file");
  const first = await wire.readFrame();
  assert.equal(first?.type, FrameType.DATA);
  assert.equal(first?.payload.length, 1024, "an eighth of a second's worth, at least 1 KiB");
});
