/**
 * Tree transfers and remote operations on a real filesystem that folds case, as macOS (APFS) and
 * Windows give their users: tests/fixtures/casefold_fs.py, a case-insensitive, case-preserving
 * FUSE filesystem over a temporary folder. Where FUSE, fusermount3 or Debian's python3-fusepy is
 * missing, these tests are skipped with one note (.ci/run installs them).
 *
 * @module
 */

import assert from "node:assert/strict";
import { foldsCase } from "../lib/case_folding.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { FrameWriter } from "../lib/frame_writer.ts";
import { localSink } from "../lib/tree_local.ts";
import { TreeCompare } from "../lib/tree_receive_compare.ts";
import { ReceivedFolders } from "../lib/tree_receive_folders.ts";
import { ReceiveReport } from "../lib/tree_receive_report.ts";
import {
  assertFailure,
  commandWorks,
  ferry,
  filesEqual,
  makeTempDir,
  spawnClient,
  startServer,
  type TempDir,
  waitFor,
} from "./harness.ts";
import {
  changeTimes,
  cuttingRelay,
  kill,
  largest,
  ok,
  resumeTree,
  summaryOf,
} from "./tree_helpers.ts";
import { Wire } from "./wire.ts";

const PYTHON = "/usr/bin/python3";
const FIXTURE = new URL("./fixtures/casefold_fs.py", import.meta.url).pathname;
const UNMOUNT = (await commandWorks("fusermount3", ["-V"])) ? "fusermount3" : "fusermount";

async function canMount(): Promise<string | null> {
  // Deno reads no device files without -A: the shell looks.
  if (!(await commandWorks("test", ["-c", "/dev/fuse"]))) return "no /dev/fuse";
  if (!(await commandWorks(PYTHON, ["-c", "import fusepy"]))) return "no python3-fusepy";
  if (!(await commandWorks(UNMOUNT, ["-V"]))) return "no fusermount3";
  return null;
}

const missing = await canMount();
if (missing) {
  console.error(`Case-folding tests skipped: ${missing} (apt-get install fuse3 python3-fusepy)`);
}
const ignore = missing !== null;

/** Whether a filesystem is mounted at `path`: it is on another device than its parent. */
function mounted(path: string): boolean {
  return Deno.statSync(path).dev !== Deno.statSync(`${path}/..`).dev;
}

/**
 * A case-folding filesystem mounted in a fresh temporary folder; disposing unmounts it. With
 * `log`, the fixture writes a line there for each folder opened for reading (`opendir /PATH`).
 */
async function caseFolding(log?: string): Promise<TempDir> {
  const work = await makeTempDir({ prefix: "ferry_casefold_" });
  const backing = `${work.path}/backing`;
  const path = `${work.path}/mnt`;
  await Deno.mkdir(backing);
  await Deno.mkdir(path);
  const child = new Deno.Command(PYTHON, {
    args: [FIXTURE, backing, path],
    env: log ? { CASEFOLD_LOG: log } : {},
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const unmount = async () => {
    if (mounted(path)) await new Deno.Command(UNMOUNT, { args: ["-u", path] }).output();
    await child.status;
    await work[Symbol.asyncDispose]();
  };
  try {
    await waitFor("the case-folding filesystem to be mounted", () => mounted(path));
  } catch (error) {
    child.kill();
    await unmount();
    throw error;
  }
  return { path, [Symbol.asyncDispose]: unmount };
}

/** A test of its own case-folding filesystem, mounted at `fs` (skipped where FUSE is missing). */
function caseFoldingTest(name: string, fn: (fs: string) => Promise<void>): void {
  Deno.test({
    name,
    ignore,
    fn: async () => {
      await using fs = await caseFolding();
      await fn(fs.path);
    },
  });
}

/** Writes `text` to `path` with the modification time `mtime` (ms). */
async function put(path: string, text: string, mtime = 1_600_000_000_000): Promise<void> {
  await Deno.writeTextFile(path, text);
  await Deno.utime(path, new Date(mtime), new Date(mtime));
}

/**
 * Empty folders under `dir/data`, four deep, with paths long enough to fill more than two
 * manifest batches (48 KiB each): what sorts before `data` and what sorts after it are then
 * compared in batches apart, the second after the first one's files were written.
 */
async function manyBatches(dir: string): Promise<void> {
  const long = "x".repeat(200);
  for (let i = 0; i < 55; i++) {
    await Deno.mkdir(`${dir}/data/${long}${i}/${long}/${long}/${long}`, { recursive: true });
  }
}

/** The names in a folder, sorted. */
function names(path: string): string[] {
  return [...Deno.readDirSync(path)].map((e) => e.name).filter((n) => !n.startsWith(".ferry"))
    .sort();
}

caseFoldingTest(
  "the case probe tells the case-folding filesystem from the folder under it",
  async (fs) => {
    assert.equal(await foldsCase(fs), true);
    assert.equal(await foldsCase(`${fs}/../backing`), false);
    assert.deepEqual(names(fs), [], "the probe leaves nothing behind");
    // A folder holding a name with a letter is told by looking it up in the other case: nothing
    // is written into it, its change time stays.
    await Deno.mkdir(`${fs}/home`);
    await put(`${fs}/home/Notes.txt`, "mine");
    const before = await changeTimes(fs, ["home"]);
    assert.equal(await foldsCase(`${fs}/home`), true);
    assert.equal(await foldsCase(`${fs}/../backing/home`), false);
    assert.deepEqual(await changeTimes(fs, ["home"]), before);
    // Names without letters tell nothing; the folders they name are asked, on this filesystem.
    await Deno.mkdir(`${fs}/years/2024`, { recursive: true });
    await put(`${fs}/years/2024/Photo.jpg`, "jpeg");
    const years = await changeTimes(fs, ["years", "years/2024"]);
    assert.equal(await foldsCase(`${fs}/years`, { probe: false }), true);
    assert.equal(await foldsCase(`${fs}/../backing/years`, { probe: false }), false);
    assert.deepEqual(await changeTimes(fs, ["years", "years/2024"]), years);
    // An empty folder tells nothing, and is left alone unless a probe may be written.
    await Deno.mkdir(`${fs}/empty`);
    assert.equal(await foldsCase(`${fs}/empty`, { probe: false }), undefined);
    // A folder of the caller's own on another filesystem is no place for the probe.
    assert.equal(await foldsCase(`${fs}/empty`, { probe: false, probeIn: `${fs}/..` }), undefined);
    assert.equal(await foldsCase(`${fs}/empty`, { probeIn: `${fs}/home` }), true);
    assert.deepEqual(names(`${fs}/empty`), []);
  },
);

caseFoldingTest(
  "put -r --delete onto a case-folding server keeps a file whose name differs only by case",
  async (fs) => {
    await using work = await makeTempDir();
    await Deno.mkdir(`${fs}/root/dest/Docs`, { recursive: true });
    await put(`${fs}/root/dest/readme.md`, "old");
    await put(`${fs}/root/dest/LICENSE`, "old");
    await put(`${fs}/root/dest/Docs/Guide.txt`, "old");
    await put(`${fs}/root/dest/Docs/extra.txt`, "extra");
    await put(`${fs}/root/dest/gone.txt`, "gone");
    const src = `${work.path}/src`;
    await Deno.mkdir(`${src}/docs`, { recursive: true });
    await put(`${src}/README.md`, "new readme");
    await put(`${src}/license`, "new licence");
    await put(`${src}/docs/guide.txt`, "new guide");
    await manyBatches(src);
    await using server = await startServer({ root: `${fs}/root` });
    const dry = await ok(server, ["put", "-r", src, "dest", "--delete", "--dry-run"]);
    assert.deepEqual(
      new TextDecoder().decode(dry.stdout).split("\n").filter((l) => l.startsWith("delete ")),
      // Named by the sender's folder, which is the receiver's Docs.
      ["delete docs/extra.txt", "delete gone.txt"],
    );
    assert.equal(await Deno.readTextFile(`${fs}/root/dest/readme.md`), "old");
    const sent = await ok(server, ["put", "-r", src, "dest", "--delete", "--json"]);
    const dest = `${fs}/root/dest`;
    assert.equal(await Deno.readTextFile(`${dest}/README.md`), "new readme");
    assert.equal(await Deno.readTextFile(`${dest}/license`), "new licence");
    assert.equal(await Deno.readTextFile(`${dest}/docs/guide.txt`), "new guide");
    assert.equal(names(dest).length, 4, `${names(dest)}`);
    assert.equal(names(`${dest}/docs`).length, 1, `${names(`${dest}/docs`)}`);
    assert.equal(summaryOf(sent).deleted, 2, "gone.txt and Docs/extra.txt only");

    // The same again: nothing to send, nothing to delete, whatever case each name has here.
    const again = await ok(server, ["put", "-r", src, "dest", "--delete", "--json"]);
    assert.deepEqual(
      [summaryOf(again).files, summaryOf(again).skipped, summaryOf(again).deleted],
      [0, 3, 0],
    );
    assert.equal(await Deno.readTextFile(`${dest}/readme.md`), "new readme");
  },
);

caseFoldingTest(
  "get -r --delete into a case-folding folder keeps a file whose name differs only by case",
  async (fs) => {
    await using server = await startServer();
    const tree = `${server.root}/tree`;
    await Deno.mkdir(`${tree}/Sub`, { recursive: true });
    await put(`${tree}/readme.md`, "new readme");
    await put(`${tree}/NOTES`, "new notes");
    await put(`${tree}/Sub/a.txt`, "new a");
    await manyBatches(tree);
    const local = `${fs}/tree`;
    await Deno.mkdir(`${local}/sub`, { recursive: true });
    await put(`${local}/README.md`, "old");
    await put(`${local}/notes`, "old");
    await put(`${local}/sub/A.TXT`, "old");
    await put(`${local}/sub/b.txt`, "extra");
    const got = await ok(server, ["get", "-r", "tree", local, "--delete", "--json"]);
    assert.equal(await Deno.readTextFile(`${local}/readme.md`), "new readme");
    assert.equal(await Deno.readTextFile(`${local}/notes`), "new notes");
    assert.equal(await Deno.readTextFile(`${local}/sub/a.txt`), "new a");
    assert.equal(names(local).length, 4, `${names(local)}`);
    assert.deepEqual(names(`${local}/sub`).map((n) => n.toLowerCase()), ["a.txt"]);
    assert.equal(summaryOf(got).deleted, 1, "sub/b.txt only");
    const again = await ok(server, ["get", "-r", "tree", local, "--delete", "--json"]);
    assert.deepEqual(
      [summaryOf(again).files, summaryOf(again).skipped, summaryOf(again).deleted],
      [0, 3, 0],
    );
  },
);

caseFoldingTest(
  "a tree with two names that differ only by case is refused by a case-folding receiver",
  async (fs) => {
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await Deno.mkdir(src);
    await put(`${src}/a.txt`, "one");
    await put(`${src}/A.txt`, "two");
    await using server = await startServer({ root: `${fs}/root` });
    const refused = await ferry(server, ["put", "-r", src, "dest"]);
    assertFailure(refused, /names differ only by case: a\.txt/, { what: "put -r" });
    assert.deepEqual(names(`${fs}/root/dest`), []);
    // Final and medial sigma: two names to toLowerCase, one to a filesystem that folds by
    // uppercase (NTFS) or by case folding (this one).
    const greek = `${work.path}/greek`;
    await Deno.mkdir(greek);
    await put(`${greek}/\u03c3.txt`, "sigma");
    await put(`${greek}/\u03c2.txt`, "final sigma");
    const sigmas = await ferry(server, ["put", "-r", greek, "greek"]);
    assertFailure(sigmas, /names differ only by case: \u03c3\.txt/, { what: "put -r" });
    assert.deepEqual(names(`${fs}/root/greek`), []);
    // The client on such a filesystem refuses the server's tree as the server refused its own.
    await using plain = await startServer();
    await Deno.mkdir(`${plain.root}/tree/Sub`, { recursive: true });
    await put(`${plain.root}/tree/Sub/x`, "one");
    await put(`${plain.root}/tree/sub`, "two");
    const got = await ferry(plain, ["get", "-r", "tree", `${fs}/tree`]);
    assertFailure(got, /names differ only by case: sub/, { what: "get -r" });
    assert.deepEqual(names(`${fs}/tree`), []);
  },
);

caseFoldingTest(
  "a no-change pass skips a file the receiver has under another case or Unicode form",
  async (fs) => {
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await Deno.mkdir(src);
    // "é" decomposed on the sender, composed on the receiver: one name on APFS.
    await put(`${src}/Cafe\u0301.txt`, "same");
    await put(`${src}/README.md`, "same");
    await Deno.mkdir(`${fs}/root/dest`, { recursive: true });
    await put(`${fs}/root/dest/caf\u00e9.TXT`, "same");
    await put(`${fs}/root/dest/readme.md`, "same");
    await using server = await startServer({ root: `${fs}/root` });
    for (const args of [[], ["--delete"]]) {
      const again = await ok(server, ["put", "-r", src, "dest", "--json", ...args]);
      assert.deepEqual(
        [summaryOf(again).files, summaryOf(again).skipped, summaryOf(again).deleted],
        [0, 2, 0],
        args.join(" "),
      );
    }
    assert.deepEqual(names(`${fs}/root/dest`), ["caf\u00e9.TXT", "readme.md"]);
  },
);

caseFoldingTest(
  "mv changes only the case of a name on a case-folding server; rm and mkdir fold case",
  async (fs) => {
    await Deno.mkdir(`${fs}/root/docs`, { recursive: true });
    await put(`${fs}/root/readme.md`, "text");
    await put(`${fs}/root/other`, "other");
    await using server = await startServer({ root: `${fs}/root` });
    await ok(server, ["mv", "readme.md", "README.md"]);
    await ok(server, ["mv", "docs", "Docs"]);
    assert.deepEqual(names(`${fs}/root`), ["Docs", "README.md", "other"]);
    assert.equal(await Deno.readTextFile(`${fs}/root/README.md`), "text");
    // Another file under a name that folds alike is replaced only with --overwrite.
    assertFailure(await ferry(server, ["mv", "other", "readme.MD"]), /File exists/, {
      what: "mv over a case variant",
    });
    assert.equal(await Deno.readTextFile(`${fs}/root/README.md`), "text");
    assertFailure(await ferry(server, ["mkdir", "DOCS"]), /exists/i, { what: "mkdir" });
    await ok(server, ["rm", "readme.MD"]);
    assert.deepEqual(names(`${fs}/root`), ["Docs", "other"]);
  },
);

caseFoldingTest(
  "--delete keeps what the sender notes and does not send, under any case",
  async (fs) => {
    await using work = await makeTempDir();
    const src = `${work.path}/src`;
    await Deno.mkdir(`${src}/sub`, { recursive: true });
    await put(`${src}/sub/a.txt`, "a");
    // A symlink is left out with a note: the receiver's own file under that name is kept.
    await Deno.symlink("a.txt", `${src}/sub/Link`);
    await Deno.mkdir(`${fs}/root/dest/SUB`, { recursive: true });
    await put(`${fs}/root/dest/SUB/link`, "mine");
    await put(`${fs}/root/dest/SUB/b.txt`, "extra");
    await using server = await startServer({ root: `${fs}/root` });
    const sent = await ok(server, ["put", "-r", src, "dest", "--delete", "--json"]);
    assert.equal(summaryOf(sent).deleted, 1);
    assert.deepEqual(names(`${fs}/root/dest/SUB`), ["a.txt", "link"]);
  },
);

caseFoldingTest(
  "get -r --resume --delete into a case-folding folder continues the cut file, under another case",
  async (fs) => {
    await using server = await startServer();
    const big = 4 << 20;
    await resumeTree(`${server.root}/tree`, big);
    const dest = `${fs}/dest`;
    await Deno.mkdir(`${dest}/SUB`, { recursive: true });
    await put(`${dest}/SUB/C.TXT`, "old");
    await put(`${dest}/A.txt`, "old");
    const relay = cuttingRelay(server, big / 2, false, true);
    const child = spawnClient(["127.0.0.1", String(relay.port), "get", "-r", "tree", dest]);
    await waitFor(
      "the big file half received",
      async () => await largest(`${dest}/SUB`, /^\.ferry-.*\.part$/).catch(() => 0) >= big / 4,
    );
    await kill(child);
    await relay.close();
    const again = await ok(server, ["get", "-r", "tree", dest, "--resume", "--delete", "--json"]);
    assert.ok(summaryOf(again).resumed >= big / 4, `resumed ${summaryOf(again).resumed}`);
    assert.equal(summaryOf(again).deleted, 0);
    assert.ok(await filesEqual(`${server.root}/tree/sub/big.bin`, `${dest}/sub/big.bin`));
    assert.equal(await Deno.readTextFile(`${dest}/a.txt`), "alpha\n");
    assert.equal(await Deno.readTextFile(`${dest}/sub/c.txt`), "gamma\n");
    assert.deepEqual(names(`${dest}/SUB`).map((n) => n.toLowerCase()), ["big.bin", "c.txt"]);
  },
);

caseFoldingTest(
  "put -r --delete onto a case-folding server: a folder sharing no name under any case keeps its top",
  async (fs) => {
    await using work = await makeTempDir();
    const src = `${work.path}/photos`;
    await Deno.mkdir(`${src}/trip`, { recursive: true });
    await put(`${src}/trip/b.jpg`, "b");
    await Deno.mkdir(`${fs}/root/dest`, { recursive: true });
    await put(`${fs}/root/dest/Notes.txt`, "mine");
    await put(`${fs}/root/dest/zz`, "mine");
    await using server = await startServer({ root: `${fs}/root` });
    const refused = await ferry(server, ["put", "-r", src, "dest", "--delete", "-q"]);
    assertFailure(
      refused,
      /^ferry: kept the 2 entries of "dest" that photos lacks: .*; nothing transferred$/,
      {
        what: "put -r --delete onto an unrelated folder",
      },
    );
    // The server's own guard, as a client that does not look first would meet it: its sweep of
    // the top keeps what it found there, and the OK counts it.
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, {
      op: "put_tree",
      name: "dest",
      delete: true,
      delete_unrelated: false,
    }));
    await wire.expectFrame(FrameType.OK, "accepted");
    await wire.write(encodeControl(FrameType.MANIFEST, {
      entries: [{ path: "TRIP", type: "dir", size: 0, mtime: 0, mode: 0o755 }],
      last: true,
    }));
    await wire.expectFrame(FrameType.WANT, "want");
    await wire.write(encodeControl(FrameType.FINISH, {}));
    const done = await wire.expectFrame(FrameType.OK, "summary");
    assert.deepEqual([done.deleted, done.unrelated], [0, 2]);
    assert.deepEqual(names(`${fs}/root/dest`), ["Notes.txt", "TRIP", "zz"]);
    // A name it has under another case is a shared one: the extras go, the folder stays.
    const synced = await ok(server, ["put", "-r", src, "dest", "--delete", "--json"]);
    assert.equal(summaryOf(synced).deleted, 2);
    assert.deepEqual(names(`${fs}/root/dest`).map((n) => n.toLowerCase()), ["trip"]);
  },
);

caseFoldingTest("the server's private folders are refused under any case", async (fs) => {
  await using work = await makeTempDir();
  await using server = await startServer({ root: `${fs}/root` });
  const local = `${work.path}/x`;
  await Deno.writeTextFile(local, "x");
  for (const folder of [".FERRY-STAGING", ".Ferry-Resume"]) {
    const put = await ferry(server, ["put", local, `${folder}/x`]);
    assertFailure(put, /reserved for uploads in progress/, { what: `put into ${folder}` });
    const list = await ferry(server, ["list", folder]);
    assertFailure(list, /reserved for uploads in progress/, { what: `list ${folder}` });
  }
  assert.deepEqual(names(`${fs}/root/.ferry-staging`), []);
});

caseFoldingTest(
  "an existing empty folder is told whether names fold without anything written into it",
  async (fs) => {
    await using server = await startServer();
    await Deno.mkdir(`${server.root}/empty`);
    await Deno.mkdir(`${server.root}/clean/Sub`, { recursive: true });
    await put(`${server.root}/clean/Sub/Notes.txt`, "notes");
    const tree = `${server.root}/tree`;
    await Deno.mkdir(`${tree}/data`, { recursive: true });
    await put(`${tree}/X.txt`, "upper");
    await put(`${tree}/x.txt`, "lower");
    await manyBatches(tree);
    const dest = `${fs}/dest`;
    await Deno.mkdir(dest);
    // The sender's mtime already: a re-sync sets nothing on the folder (see finishBase).
    await Deno.utime(dest, 1_600_000_000, 1_600_000_000);
    await Deno.utime(`${server.root}/empty`, 1_600_000_000, 1_600_000_000);
    // The backing folder's change time moves with any name made or removed in it.
    const backing = `${fs}/../backing`;
    const before = await changeTimes(backing, ["dest"]);
    // Nothing to write: nothing written, not even a probe.
    await ok(server, ["get", "-r", "empty", dest]);
    const dry = await ok(server, ["get", "-r", "clean", dest, "--dry-run"]);
    assert.match(new TextDecoder().decode(dry.stdout), /^send Sub\/Notes\.txt$/m);
    assert.deepEqual(await changeTimes(backing, ["dest"]), before, "nothing written to dest");
    // X.txt and x.txt are one name here: refused, told by what the transfer wrote by then (the
    // two are batches apart, data/... between them).
    const refused = await ferry(server, ["get", "-r", "tree", dest]);
    assertFailure(refused, /names differ only by case: x\.txt/, { what: "get -r" });
    assert.equal(await Deno.readTextFile(`${dest}/X.txt`), "upper");
    // In one batch, before anything is written: a probe tells, and nothing is written.
    await using work = await makeTempDir();
    await Deno.mkdir(`${fs}/other`);
    await put(`${work.path}/A`, "upper");
    await put(`${work.path}/a`, "lower");
    await using other = await startServer({ root: work.path });
    assertFailure(await ferry(other, ["get", "-r", ".", `${fs}/other`]), /differ only by case/, {
      what: "get -r",
    });
    assert.deepEqual(names(`${fs}/other`), []);
    // The folder under the mount does not fold: both names land.
    await Deno.mkdir(`${backing}/plain`);
    await ok(server, ["get", "-r", "tree", `${backing}/plain`]);
    assert.deepEqual(names(`${backing}/plain`), ["X.txt", "data", "x.txt"]);
  },
);

caseFoldingTest(
  "put -r into an existing empty folder on a case-folding server writes no probe into it",
  async (fs) => {
    await using work = await makeTempDir();
    await Deno.mkdir(`${work.path}/empty`);
    await Deno.mkdir(`${work.path}/pair`);
    await put(`${work.path}/pair/A`, "upper");
    await put(`${work.path}/pair/a`, "lower");
    await Deno.mkdir(`${fs}/root/dest`, { recursive: true });
    // The sender's mtime already: a re-sync sets nothing on the folder.
    await Deno.utime(`${fs}/root/dest`, 1_600_000_000, 1_600_000_000);
    await Deno.utime(`${work.path}/empty`, 1_600_000_000, 1_600_000_000);
    await using server = await startServer({ root: `${fs}/root` });
    const before = await changeTimes(`${fs}/../backing/root`, ["dest"]);
    await ok(server, ["put", "-r", `${work.path}/empty`, "dest"]);
    assert.deepEqual(await changeTimes(`${fs}/../backing/root`, ["dest"]), before);
    assertFailure(
      await ferry(server, ["put", "-r", `${work.path}/pair`, "dest"]),
      /differ only by case/,
      { what: "put -r" },
    );
  },
);

Deno.test({
  name: "--delete on a case-folding receiver reads each folder it walks once",
  ignore,
  fn: async () => {
    await using work = await makeTempDir();
    const log = `${work.path}/opendir.log`;
    await using fs = await caseFolding(log);
    await using server = await startServer();
    const tree = `${server.root}/tree`;
    await Deno.mkdir(`${tree}/docs`, { recursive: true });
    const dest = `${fs.path}/dest`;
    await Deno.mkdir(`${dest}/docs`, { recursive: true });
    for (let i = 0; i < 100; i++) {
      await put(`${tree}/docs/f${i}.txt`, `${i}`);
      // The receiver has each under another case, and as many the sender lacks.
      await put(`${dest}/docs/F${i}.TXT`, `${i}`);
      await put(`${dest}/docs/extra${i}`, "extra");
    }
    await put(`${tree}/Notes`, "notes");
    await put(`${dest}/gone`, "gone");
    await Deno.writeTextFile(log, "");
    // Without flushes, which open each folder too.
    const got = await ok(server, ["get", "-r", "tree", dest, "--delete", "--json", "--no-fsync"]);
    const reads = (await Deno.readTextFile(log)).split("\n");
    assert.deepEqual(
      [reads.filter((l) => l === "opendir /dest/docs").length, summaryOf(got).deleted],
      [1, 101],
      "docs read by the walk only, not again by the sweep; extra0..99 and gone deleted",
    );
    assert.equal(names(`${dest}/docs`).length, 100);
    assert.ok(names(`${dest}/docs`).every((name) => /^F\d+\.TXT$/.test(name)));
  },
});

Deno.test("a sweep past the names it may hold reads its folder again, and deletes the same", async () => {
  // This machine's temporary folder is case-sensitive: the comparison is told names fold, and
  // keeps the receiver's names that fold as the sender's by the sweep's folded names alone.
  for (const maxHeldNames of [undefined, 2]) {
    await using work = await makeTempDir();
    await Deno.mkdir(`${work.path}/docs/Sub`, { recursive: true });
    for (const name of ["a", "B", "c", "extra1", "extra2", "Sub/x"]) {
      await Deno.writeTextFile(`${work.path}/docs/${name}`, name);
    }
    await Deno.writeTextFile(`${work.path}/gone`, "gone");
    const sink = localSink(work.path);
    const deleted: string[] = [];
    const report = new ReceiveReport(
      // The sender is not there: what is told to it goes nowhere.
      new FrameWriter(new WritableStream(), {
        direct: { write: (bytes) => Promise.resolve(bytes.length) },
      }),
      (event) => event.kind === "deleted" && deleted.push(event.path),
    );
    const folders = new ReceivedFolders(() => Promise.resolve(), { dryRun: true });
    const compare = new TreeCompare({ own: await sink.walker(), sink, report, folders }, {
      delete: true,
      dryRun: true,
      caseInsensitive: true,
      maxHeldNames,
    });
    const entry = { size: 1, mtime: 0, mode: 0o644 };
    const paths = ["docs", "docs/A", "docs/C", "docs/b", "docs/sub"];
    for (const [index, path] of paths.entries()) {
      await compare.visit(index, { ...entry, path, type: path.includes("/") ? "file" : "dir" });
    }
    await compare.end(paths.length - 1);
    compare.close();
    assert.deepEqual(deleted, ["docs/extra1", "docs/extra2", "gone"], `held ${maxHeldNames}`);
  }
});

caseFoldingTest(
  "an excluded name is never overwritten under another case, nor one under a folder spelled otherwise",
  async (fs) => {
    await using work = await makeTempDir();
    /** The receiver's: `.env` and `Secrets/key`, excluded by its own spelling of them. */
    const plant = async (dir: string) => {
      await Deno.mkdir(`${dir}/Secrets`, { recursive: true });
      await put(`${dir}/.env`, "SECRET=mine\n");
      await put(`${dir}/Secrets/key`, "mine\n");
      await Deno.mkdir(`${dir}/node_modules`);
      await put(`${dir}/node_modules/m.js`, "mine\n");
    };
    const src = `${work.path}/src`;
    await Deno.mkdir(`${src}/secrets`, { recursive: true });
    await put(`${src}/.ENV`, "SECRET=theirs\n", 1_700_000_000_000);
    await put(`${src}/secrets/KEY`, "theirs\n", 1_700_000_000_000);
    await put(`${src}/a.txt`, "alpha\n");
    await Deno.mkdir(`${src}/NODE_MODULES`);
    await put(`${src}/NODE_MODULES/m.js`, "theirs\n", 1_700_000_000_000);
    const patterns = [
      "--exclude",
      ".env",
      "--exclude",
      "/Secrets/key",
      "--exclude",
      "node_modules",
    ];
    const check = async (dir: string, result: { code: number; stderr: string }, what: string) => {
      assert.equal(result.code, 1, `${what}: ${result.stderr}`);
      assert.match(result.stderr, /\.ENV: an excluded name is in the way/i, what);
      assert.match(result.stderr, /secrets\/KEY: an excluded name is in the way/i, what);
      assert.equal(await Deno.readTextFile(`${dir}/.env`), "SECRET=mine\n", what);
      assert.equal(await Deno.readTextFile(`${dir}/Secrets/key`), "mine\n", what);
      assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "alpha\n", what);
      // A folder refused so has nothing written into it either.
      assert.match(result.stderr, /NODE_MODULES: an excluded name is in the way/i, what);
      assert.equal(await Deno.readTextFile(`${dir}/node_modules/m.js`), "mine\n", what);
    };
    // put -r: the server receives on the folding filesystem.
    await plant(`${fs}/root/dest`);
    await using server = await startServer({ root: `${fs}/root` });
    const sent = await ferry(server, ["put", "-r", src, "dest", ...patterns]);
    await check(`${fs}/root/dest`, sent, "put -r");
    // get -r: the client receives there.
    await using other = await startServer();
    await Deno.mkdir(`${other.root}/tree`);
    await Deno.rename(src, `${other.root}/tree/src`);
    await plant(`${fs}/local`);
    const got = await ferry(other, ["get", "-r", "tree/src", `${fs}/local`, ...patterns]);
    await check(`${fs}/local`, got, "get -r");
  },
);
