/**
 * Names a folder transfer cannot carry as they are: names that differ only by case on a
 * filesystem that folds case, and names that are not UTF-8 or hold control characters; and long
 * names beyond ASCII, which it carries, in manifest frames counted in bytes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { FrameType } from "../lib/frames.ts";
import { localSink } from "../lib/tree_local.ts";
import { receiveTree } from "../lib/tree_receive.ts";
import { foldsCase } from "../lib/case_folding.ts";
import { makeTempDir, startServer, stderrLines } from "./harness.ts";
import {
  changeTimes,
  connectedEnds,
  createByBytes,
  dir,
  file,
  ok,
  out,
  snapshot,
} from "./tree_helpers.ts";

Deno.test({
  name: "the case probe tells a folder holding names without writing to it",
  // GNU stat's %z gives the change time to the nanosecond (Deno's ctime is whole seconds).
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using work = await makeTempDir();
    // A name with no ASCII letter tells nothing; one with letters does, looked up as "pHOTOS".
    await Deno.mkdir(`${work.path}/2024`);
    await Deno.mkdir(`${work.path}/Photos`);
    const before = await changeTimes(work.path, ["."]);
    assert.equal(await foldsCase(work.path), false);
    assert.deepEqual(await changeTimes(work.path, ["."]), before, "nothing written to the folder");
    // Only names in the other case, both there: two files, so no folding either.
    await Deno.writeTextFile(`${work.path}/pHOTOS`, "");
    assert.equal(await foldsCase(work.path), false);
    assert.deepEqual(
      [...Deno.readDirSync(work.path)].map((e) => e.name).sort(),
      ["2024", "Photos", "pHOTOS"],
    );
    // An empty folder tells nothing: left alone unless a probe may be written.
    await Deno.mkdir(`${work.path}/empty`);
    const empty = await changeTimes(work.path, ["empty"]);
    assert.equal(await foldsCase(`${work.path}/empty`, { probe: false }), undefined);
    assert.deepEqual(await changeTimes(work.path, ["empty"]), empty);
    assert.equal(await foldsCase(`${work.path}/empty`), false);
  },
});

Deno.test("on a filesystem that folds case, names that differ only by case are refused", async () => {
  await using work = await makeTempDir();
  // This machine's temporary folder is case-sensitive, so the receiver is told to fold case, as
  // it would find on macOS or Windows; everything else is the real receiver on a real socket.
  assert.equal(await foldsCase(work.path), false, "the probe sees a case-sensitive filesystem");
  await using ends = await connectedEnds();
  const [near, far] = ends;
  const receiving = receiveTree(near, localSink(`${work.path}/dest`), { caseInsensitive: true });
  receiving.catch(() => {});
  await far.out.writeControl(FrameType.MANIFEST, {
    entries: [dir("Docs"), file("Docs/a.txt"), dir("docs"), file("docs/b.txt")],
    last: true,
  });
  await assert.rejects(receiving, /Refused manifest: names differ only by case: docs$/);
  assert.deepEqual([...Deno.readDirSync(`${work.path}/dest`)], [], "nothing was made");
});

Deno.test("get -r leaves out names that are not UTF-8 and names with control characters, and sends the rest", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const root = `${server.root}/odd`;
  await Deno.mkdir(root);
  await Deno.writeTextFile(`${root}/plain.txt`, "1");
  await Deno.writeTextFile(`${root}/ok\ufffd`, "55");
  await Deno.writeTextFile(`${root}/new\nline`, "22");
  // Two names that read alike once each bad byte is U+FFFD, and one that reads like a real name.
  await createByBytes(root, "bad\\377name", "x");
  await createByBytes(root, "bad\\376name", "y");
  await createByBytes(root, "ok\\377", "z");

  const got = await ok(server, ["get", "-r", "odd", `${work.path}/odd`, "--json"]);
  assert.match(got.stderr, /: 2 files, 3 B in .*; 0 up to date, 0 deleted, 0 failed$/m);
  // What the server leaves out is told, as notes, shown escaped: the user knows what is missing.
  const notes = stderrLines(got).filter((line) => line.endsWith("; not sent")).sort();
  assert.deepEqual(notes, [
    'ferry: "new\\nline": a name ferry does not carry; not sent',
    "ferry: bad\ufffdname: its name is not valid UTF-8; not sent",
  ]);
  const ignored = out(got).trim().split("\n").map((l) => JSON.parse(l))
    .filter((r) => r.action === "ignored").map((r) => r.name).sort();
  assert.deepEqual(ignored, ["bad\ufffdname", "new\nline"]);
  assert.deepEqual([...Deno.readDirSync(`${work.path}/odd`)].map((e) => e.name).sort(), [
    "ok\ufffd",
    "plain.txt",
  ]);
  assert.equal(await Deno.readTextFile(`${work.path}/odd/ok\ufffd`), "55");
});

Deno.test("long names beyond ASCII go in manifest batches under the frame limit, both ways", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  // 300 names of 80 CJK characters (240 bytes in UTF-8, 80 UTF-16 units): one batch counted in
  // units, but over the 64 KiB control frame once encoded, unless counted in bytes.
  const src = `${work.path}/src`;
  await Deno.mkdir(src);
  const stem = "漢字かなカナ語".repeat(12).slice(0, 76);
  for (let i = 0; i < 300; i++) {
    await Deno.writeTextFile(`${src}/${stem}${String(i).padStart(4, "0")}`, String(i));
  }
  await ok(server, ["put", "-r", src, "wide"]);
  assert.deepEqual(await snapshot(`${server.root}/wide`), await snapshot(src));
  await ok(server, ["get", "-r", "wide", `${work.path}/back`]);
  assert.deepEqual(await snapshot(`${work.path}/back`), await snapshot(src));
});
