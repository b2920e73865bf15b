/**
 * Names Windows cannot hold (lib/windows_names.ts): the rule itself, for every system, and a
 * receiver that keeps Windows' rules (the seam `localSink(..., { os: "windows" })`, since these
 * tests run on Linux) refusing such entries one by one while the rest of the tree lands. A client
 * that keeps them (`prepareDownload`'s `os`, or the real client under `FERRY_TEST_NAME_RULES`)
 * refuses a local name it would make up from a remote one (`get NAME`, `mget`, `get -r DIR`),
 * and writes nothing, but takes a LOCAL the user typed as typed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkFitName, unfitName, windowsNameProblem } from "../lib/windows_names.ts";
import { StoreError } from "../lib/errors.ts";
import { localSink, localSource } from "../lib/tree_local.ts";
import { receiveTree } from "../lib/tree_receive.ts";
import { sendTree } from "../lib/tree_send.ts";
import { TreeCompare } from "../lib/tree_receive_compare.ts";
import { ReceivedFolders } from "../lib/tree_receive_folders.ts";
import { ReceiveReport } from "../lib/tree_receive_report.ts";
import type { ManifestEntry } from "../lib/tree_transfer_protocol.ts";
import { FrameWriter } from "../lib/frame_writer.ts";
import { prepareDownload } from "../lib/local_download.ts";
import { LocalFileError } from "../lib/errors.ts";
import { assertFailure, ferry, makeTempDir, startServer, stderrLines } from "./harness.ts";
import { connectedEnds } from "./tree_helpers.ts";

Deno.test("the names Windows cannot hold, and only those", () => {
  const refused = {
    "CON": /reserves "CON" for a device/,
    "nul": /reserves "nul"/,
    "aux.txt": /reserves "aux"/,
    "Com1.tar.gz": /reserves "Com1"/,
    "LPT\u00b9": /reserves/,
    "NUL .txt": /reserves "NUL"/,
    "CONOUT$": /reserves/,
    "com0": /reserves/,
    "a:b": /does not allow ":"/,
    "star*": /"\*"/,
    "what?": /"\?"/,
    'say"hi"': /"\\""/,
    "<x>": /"<"/,
    "pipe|": /"\|"/,
    "ends.": /trailing dot or space/,
    "ends ": /trailing dot or space/,
  };
  for (const [name, why] of Object.entries(refused)) {
    assert.match(windowsNameProblem(name) ?? "", why, name);
  }
  for (
    const name of ["console", "CON1", "nul_", "auxiliary.txt", "COM10", "LPT10", ".env", "a.b"]
  ) {
    assert.equal(windowsNameProblem(name), undefined, name);
  }
  assert.equal(
    unfitName("src/con/x.c", "windows"),
    'Windows reserves "con" for a device',
  );
  for (const os of ["linux", "darwin", "freebsd"] as const) {
    assert.equal(unfitName("src/con/x.c", os), undefined, os);
  }
  assert.equal(unfitName("src/main.c", "windows"), undefined);
});

Deno.test("a receiver on Windows refuses each entry Windows cannot hold, and takes the rest", async () => {
  await using work = await makeTempDir();
  await Deno.writeTextFile(`${work.path}/keep`, "mine");
  const sink = localSink(work.path, { os: "windows" });
  const failed: string[] = [];
  const report = new ReceiveReport(
    // The sender is not there: what is told to it goes nowhere.
    new FrameWriter(new WritableStream(), { direct: { write: (b) => Promise.resolve(b.length) } }),
    (event) => event.kind === "failed" && failed.push(`${event.path}: ${event.message}`),
  );
  const folders = new ReceivedFolders(() => Promise.resolve());
  const compare = new TreeCompare({ own: await sink.walker(), sink, report, folders }, {
    delete: true,
  });
  const entry = { size: 1, mtime: 0, mode: 0o755 };
  const manifest: ManifestEntry[] = [
    { ...entry, path: "aux", type: "dir" },
    { ...entry, path: "aux/a.txt", type: "file" },
    { ...entry, path: "docs", type: "dir" },
    { ...entry, path: "docs/a:b", type: "file" },
    { ...entry, path: "docs/ok.txt", type: "file" },
    { ...entry, path: "docs/sub.", type: "dir" },
  ];
  const wanted: string[] = [];
  for (const [index, item] of manifest.entries()) {
    if (await compare.visit(index, item)) wanted.push(item.path);
  }
  await compare.end(manifest.length - 1);
  compare.close();
  assert.deepEqual(wanted, ["docs/ok.txt"]);
  assert.deepEqual(failed, [
    'aux: Windows reserves "aux" for a device',
    'aux/a.txt: Windows reserves "aux" for a device',
    'docs/a:b: Windows does not allow ":" in a name',
    "docs/sub.: Windows drops a trailing dot or space, so it would be " +
    "another name",
  ]);
  assert.equal(report.summary.failed, 4);
  // Only what the sender lacks went (--delete); nothing was made for a refused folder.
  assert.deepEqual([...Deno.readDirSync(work.path)].map((e) => e.name).sort(), ["docs"]);
  assert.deepEqual([...Deno.readDirSync(`${work.path}/docs`)], []);
});

Deno.test("a tree sent to a receiver on Windows lands but for the names it refuses, each told once", async () => {
  await using work = await makeTempDir();
  const src = `${work.path}/src`;
  await Deno.mkdir(`${src}/aux`, { recursive: true });
  await Deno.writeTextFile(`${src}/aux/inside.txt`, "1");
  await Deno.writeTextFile(`${src}/notes.txt`, "2");
  await Deno.writeTextFile(`${src}/time 10:30.txt`, "3");
  await Deno.writeTextFile(`${src}/trailing.`, "4");
  await using ends = await connectedEnds();
  const [near, far] = ends;
  const told: string[] = [];
  const [received, sent] = await Promise.all([
    receiveTree(near, localSink(`${work.path}/dest`, { os: "windows" })),
    sendTree(far, await localSource(src), {
      onEvent: (event) => event.kind === "failed" && told.push(event.path),
    }),
  ]);
  assert.deepEqual([received.files, received.failed], [1, 4]);
  assert.deepEqual([sent.files, sent.failed], [1, 4]);
  assert.deepEqual(told.sort(), ["aux", "aux/inside.txt", "time 10:30.txt", "trailing."]);
  assert.deepEqual([...Deno.readDirSync(`${work.path}/dest`)].map((e) => e.name), ["notes.txt"]);
});

Deno.test("a server on Windows refuses to create a name Windows cannot hold, as a bad name; others pass", () => {
  for (const name of ["aux.txt", "docs/CON", "a:b", "notes.", "dir/what?.txt"]) {
    assert.throws(
      () => checkFitName(name, "windows"),
      (error: unknown) =>
        error instanceof StoreError && error.code === "bad_name" &&
        error.message.startsWith(`Refused name "${name}": Windows `),
      name,
    );
    checkFitName(name, "linux");
    checkFitName(name, "darwin");
  }
  for (const name of ["auxiliary.txt", "docs/console", "a-b", "notes.txt"]) {
    checkFitName(name, "windows");
  }
});

Deno.test("prepareDownload with Windows' rules refuses a name it makes up, not one given", async () => {
  await using work = await makeTempDir();
  for (const name of ["aux.txt", "docs/CON", "a:b", "notes."]) {
    await assert.rejects(
      () => prepareDownload(name, name.split("/").at(-1)!, { localGiven: false, os: "windows" }),
      (error: unknown) => error instanceof LocalFileError && /Windows /.test(error.message),
      name,
    );
    // Into a folder the user gave, the name is made up too.
    await assert.rejects(
      () => prepareDownload(name, `${work.path}/`, { os: "windows" }),
      LocalFileError,
      `${name} into a folder`,
    );
  }
  // Typed by the user: taken as given. Elsewhere than Windows, nothing is refused.
  const given = await prepareDownload("aux.txt", `${work.path}/aux.txt`, { os: "windows" });
  assert.equal(given.where, `${work.path}/aux.txt`);
  const linux = await prepareDownload("aux.txt", `${work.path}/`, { os: "linux" });
  assert.equal(linux.where, `${work.path}/aux.txt`);
  assert.deepEqual([...Deno.readDirSync(work.path)], [], "nothing written");
});

/** The real client, keeping Windows' name rules where the tests run. */
const WINDOWS_RULES = {
  env: { FERRY_TEST_NAME_RULES: "windows" },
  permissions: ["--allow-env=FERRY_TEST_NAME_RULES"],
};

Deno.test("the client on Windows refuses a local name a get, mget or get -r would make up; a LOCAL typed stays", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  for (const name of ["aux.txt", "a:b", "trail.", "ok.txt"]) {
    await Deno.writeTextFile(`${server.root}/${name}`, name);
  }
  await Deno.mkdir(`${server.root}/con`);
  await Deno.writeTextFile(`${server.root}/con/inside.txt`, "in");
  const cwd = `${work.path}/cwd`;
  await Deno.mkdir(cwd);
  const run = (args: string[]) => ferry(server, args, { ...WINDOWS_RULES, cwd });

  assertFailure(
    await run(["get", "aux.txt"]),
    /^ferry: Cannot write aux\.txt: Windows reserves "aux" for a device \(get aux\.txt LOCAL saves it under a name of your own\)$/,
    { what: "get NAME" },
  );
  assertFailure(
    await run(["get", "a:b", "./"]),
    /^ferry: Cannot write a:b: Windows does not allow ":"/,
    {
      what: "get NAME DIR/",
    },
  );
  assertFailure(
    await run(["get", "-r", "con"]),
    /^ferry: Cannot write con: Windows reserves "con" for a device \(get -r con LOCALDIR saves/,
    { what: "get -r DIR" },
  );
  assert.deepEqual([...Deno.readDirSync(cwd)], [], "nothing written");

  const mget = await run(["mget", "ok.txt", "trail.", "aux.txt"]);
  assert.equal(mget.code, 1, mget.stderr);
  const lines = stderrLines(mget).filter((l) => l.startsWith("ferry: Cannot"));
  assert.equal(lines.length, 2, mget.stderr);
  assert.match(lines[0], /^ferry: Cannot write trail\.: Windows drops a trailing dot or space/);
  assert.match(lines[1], /^ferry: Cannot write aux\.txt: Windows reserves "aux" for a device/);
  assert.deepEqual([...Deno.readDirSync(cwd)].map((e) => e.name), ["ok.txt"], "the rest landed");

  // Names the user typed are taken as typed; a Linux client takes all of them.
  const typed = await run(["get", "aux.txt", "mine.txt"]);
  assert.equal(typed.code, 0, typed.stderr);
  const tree = await run(["get", "-r", "con", "mine"]);
  assert.equal(tree.code, 0, tree.stderr);
  const linux = await ferry(server, ["get", "a:b"], { cwd });
  assert.equal(linux.code, 0, linux.stderr);
  assert.deepEqual(
    [...Deno.readDirSync(cwd)].map((e) => e.name).sort(),
    ["a:b", "mine", "mine.txt", "ok.txt"],
  );
});
