/**
 * Folders too big to sort in memory: their names are sorted in runs spilled to private files and
 * merged (lib/name_runs.ts), by the walks of both ends. Here the runs are made short (the
 * sorter's `runNames`, or `FERRY_TEST_FOLDER_RUN` for the real programs), so a folder of some
 * thousands of names takes the path a folder of millions would: every transfer must give the
 * same tree, in the same order, and leave no run file behind, also when a client goes mid-walk or
 * a disk thread dies mid-sort (`FERRY_TEST_DISK_THREAD_DIES`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { NameSorter, openSortedRuns, removeRuns } from "../lib/name_runs.ts";
import { compareName, TreeWalker } from "../lib/tree_walk.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { walkFolderListing } from "../lib/folder_listing.ts";
import { LISTING_BATCH } from "../lib/tree_listing.ts";
import { assertSuccess, ferry, makeTempDir, runCommand, startServer, waitFor } from "./harness.ts";
import { createByBytes, out, snapshot, summaryOf } from "./tree_helpers.ts";
import { Wire } from "./wire.ts";

/** Names whose order tells code points from UTF-16 units, and repeats. */
function someNames(count: number): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const tail = ["", "\ue000", "\u{10000}", "é", "-x"][i % 5];
    names.push(`n${(i * 7919) % (count + 11)}${tail}`);
  }
  return names;
}

async function filesIn(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names;
}

Deno.test("NameSorter spills runs past its threshold, merges them in code point order and leaves no file", async () => {
  await using work = await makeTempDir();
  const names = someNames(2000);
  for (const runNames of [3, 300, 10_000]) {
    const sorter = new NameSorter({ compare: compareName, runNames, spillDir: work.path });
    for (const name of names) await sorter.add(name);
    // Past the threshold, the runs wait on disk; under it, nothing was written.
    assert.equal((await filesIn(work.path)).length > 0, runNames < names.length, `${runNames}`);
    const sorted = await sorter.finish();
    // Open and removed: no listing sees them from now on.
    assert.deepEqual(await filesIn(work.path), []);
    const got: string[] = [];
    for (let chunk = await sorted.take(); chunk.length > 0; chunk = await sorted.take()) {
      got.push(...chunk);
    }
    sorted.close();
    assert.deepEqual(got, [...names].sort(compareName), `runs of ${runNames}`);
  }
  // Given up half-way: what was spilled goes.
  const sorter = new NameSorter({ compare: compareName, runNames: 10, spillDir: work.path });
  for (const name of names.slice(0, 95)) await sorter.add(name);
  assert.equal((await filesIn(work.path)).length > 0, true);
  await sorter.discard();
  assert.deepEqual(await filesIn(work.path), []);
  // Without a folder of its own, it makes a temporary one, gone once the runs are open.
  const own = new NameSorter({ compare: compareName, runNames: 10 });
  for (const name of names.slice(0, 100)) await own.add(name);
  const merged = await own.finish();
  assert.deepEqual(await merged.take(1000), [...names.slice(0, 100)].sort(compareName));
  merged.close();
  // Sorted on one thread, merged on another: the runs go over by path, as plain data, and are
  // removed once the merging side opens them.
  for (const runNames of [7, 10_000]) {
    const handing = new NameSorter({ compare: compareName, runNames, spillDir: work.path });
    for (const name of names) await handing.add(name);
    const runs = structuredClone(await handing.finishRuns());
    assert.equal(runs.files.length > 0, runNames < names.length, `${runNames}`);
    assert.equal((await filesIn(work.path)).length, runs.files.length, "still on disk");
    const opened = await openSortedRuns(runs, compareName);
    assert.deepEqual(await filesIn(work.path), []);
    const got: string[] = [];
    for (let chunk = await opened.take(); chunk.length > 0; chunk = await opened.take()) {
      got.push(...chunk);
    }
    opened.close();
    assert.deepEqual(got, [...names].sort(compareName), `handed over, runs of ${runNames}`);
  }
  await assert.rejects(new NameSorter({ compare: compareName }).finishRuns(), TypeError);
});

Deno.test("a walk of a big folder gives what a walk in memory gives, on both kinds of walk", async () => {
  await using work = await makeTempDir();
  await using spill = await makeTempDir();
  const tree = `${work.path}/t`;
  await Deno.mkdir(`${tree}/sub/deeper`, { recursive: true });
  for (const name of new Set(someNames(400))) await Deno.writeTextFile(`${tree}/${name}`, "x");
  for (let i = 0; i < 60; i++) await Deno.writeTextFile(`${tree}/sub/s${i}`, "yy");
  await Deno.writeTextFile(`${tree}/sub/deeper/z`, "z");
  // Names that read alike once each bad byte is U+FFFD: walked once, as in memory.
  await createByBytes(tree, "bad\\377name", "x");
  await createByBytes(tree, "bad\\376name", "y");
  await createByBytes(tree, "ok\\377", "z");
  await Deno.writeTextFile(`${tree}/ok\ufffd`, "real");
  const walkAll = async (walk: TreeWalker) => {
    const walked: string[] = [];
    for (let e = walk.peek(); e; e = walk.peek()) {
      walked.push(`${e.path} ${e.type} ${e.size}`);
      await walk.next();
    }
    return walked;
  };
  const expected = await walkAll(await TreeWalker.open(tree, { sync: true, undecodable: true }));
  assert.equal(expected.length, new Set(someNames(400)).size + 63 + 2);
  assert.ok(expected.includes("bad\ufffdname other 0") && expected.includes("ok\ufffd file 4"));
  for (const sync of [true, false]) {
    const options = { sync, bigBytes: 0, runNames: 9, spillDir: spill.path, undecodable: true };
    assert.deepEqual(await walkAll(await TreeWalker.open(tree, options)), expected, `${sync}`);
    assert.deepEqual(await filesIn(spill.path), []);
    // Given up mid-folder: closed, it holds nothing more.
    const walk = await TreeWalker.open(tree, options);
    for (let i = 0; i < 100; i++) await walk.next();
    assert.ok(walk.peek());
    walk.close();
    assert.equal(walk.peek(), undefined);
  }
});

/**
 * Run files the process `pid` holds open (removed ones show as "(deleted)"), as `ls` sees them:
 * Deno itself may read /proc only with every permission.
 */
async function openRuns(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ls", { args: ["-l", `/proc/${pid}/fd`] }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((line) => /\.names\b/.test(line))
    .length;
}

const SHORT_RUNS = {
  env: { FERRY_TEST_FOLDER_RUN: "40" },
  permissions: ["--allow-env=FERRY_TEST_FOLDER_RUN"],
};

Deno.test("a folder past the threshold round-trips with put -r, get -r, a no-change pass, --delete and list", async () => {
  await using server = await startServer(SHORT_RUNS);
  await using work = await makeTempDir();
  const src = `${work.path}/big`;
  await Deno.mkdir(`${src}/inner`, { recursive: true });
  const names = [...new Set(someNames(1000))];
  for (const name of names) await Deno.writeTextFile(`${src}/${name}`, name);
  for (let i = 0; i < 90; i++) await Deno.writeTextFile(`${src}/inner/f${i}`, "inner");
  const run = async (args: string[]) => {
    const result = await ferry(server, args, SHORT_RUNS);
    assertSuccess(result, args.join(" "));
    return result;
  };

  const put = summaryOf(await run(["put", "-r", src, "big", "--json"]));
  assert.equal(put.files, names.length + 90);
  assert.deepEqual(await snapshot(`${server.root}/big`), await snapshot(src));
  const again = summaryOf(await run(["put", "-r", src, "big", "--json"]));
  assert.deepEqual([again.files, again.skipped], [0, names.length + 90]);

  // Names the sender lacks, among the big folder's: --delete removes exactly those.
  await Deno.writeTextFile(`${server.root}/big/n0-extra`, "x");
  await Deno.writeTextFile(`${server.root}/big/inner/zz`, "x");
  const deleted = summaryOf(await run(["put", "-r", src, "big", "--delete", "--json"]));
  assert.deepEqual([deleted.files, deleted.deleted], [0, 2]);
  assert.deepEqual(await snapshot(`${server.root}/big`), await snapshot(src));

  const got = summaryOf(await run(["get", "-r", "big", `${work.path}/got`, "--json"]));
  assert.equal(got.files, names.length + 90);
  assert.deepEqual(await snapshot(`${work.path}/got`), await snapshot(src));

  const listed = out(await run(["list", "big"])).trim().split("\n");
  const expected = [...names.map((name) => `big/${name}`), "big/inner/"].sort((a, b) =>
    a < b ? -1 : a > b ? 1 : 0
  );
  assert.deepEqual(listed, expected);

  assert.deepEqual(await filesIn(`${server.root}/.ferry-staging`), []);
  if (Deno.build.os === "linux") assert.equal(await openRuns(server.pid), 0);
});

Deno.test("--delete into a big folder deletes the extras before its first shared name, from runs on disk", async () => {
  await using server = await startServer(SHORT_RUNS);
  await using work = await makeTempDir();
  const src = `${work.path}/src`;
  await Deno.mkdir(src);
  // The tree's new names fall between the copy's extras; its one name the copy has comes last.
  for (let i = 0; i < 100; i++) await Deno.writeTextFile(`${src}/b${i}`, "new");
  await Deno.writeTextFile(`${src}/m-shared`, "fresh");
  for (const copy of [`${server.root}/src`, `${work.path}/copy`]) {
    await Deno.mkdir(copy);
    for (let i = 0; i < 300; i++) await Deno.writeTextFile(`${copy}/a${i}`, "extra");
    for (let i = 0; i < 100; i++) await Deno.writeTextFile(`${copy}/c${i}`, "extra");
    await Deno.writeTextFile(`${copy}/m-shared`, "stale");
    await Deno.writeTextFile(`${copy}/z`, "extra");
  }
  for (const args of [["put", "-r", src], ["get", "-r", "src", `${work.path}/copy`]]) {
    const result = await ferry(server, [...args, "--delete", "--json"], SHORT_RUNS);
    assertSuccess(result, args.join(" "));
    assert.deepEqual([summaryOf(result).files, summaryOf(result).deleted], [101, 401]);
  }
  assert.deepEqual(await snapshot(`${server.root}/src`), await snapshot(src));
  assert.deepEqual(await snapshot(`${work.path}/copy`), await snapshot(src));
  if (Deno.build.os === "linux") assert.equal(await openRuns(server.pid), 0);
});

Deno.test("a client that goes mid-walk of a big folder leaves no run file open on the server", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  await using server = await startServer(SHORT_RUNS);
  await Deno.mkdir(`${server.root}/big`);
  for (let i = 0; i < 3000; i++) await Deno.writeTextFile(`${server.root}/big/f${i}`, "x");
  for (const op of ["get_tree", "put_tree"]) {
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op, name: "big" }));
    await wire.expectFrame(FrameType.OK, "accepted");
    if (op === "get_tree") {
      await wire.expectFrame(FrameType.MANIFEST, "the first batch");
    } else {
      // One entry of many: the server's own walk of the big folder has only begun.
      const entry = { path: "f0", type: "file", size: 1, mtime: 0, mode: 0o644 };
      await wire.write(encodeControl(FrameType.MANIFEST, { entries: [entry], last: false }));
      await wire.expectFrame(FrameType.WANT, "the answer");
    }
    // The walk holds its sorted runs open, removed from the staging folder already...
    assert.ok(await openRuns(server.pid) > 0, `${op}: runs open`);
    assert.deepEqual(await filesIn(`${server.root}/.ferry-staging`), []);
    wire.close();
    // ... and gives them back once the client is gone.
    await waitFor(`${op}: runs closed`, async () => await openRuns(server.pid) === 0);
  }
});

Deno.test("listings of big folders, sorted on disk, are the listings sorted in memory", async () => {
  await using work = await makeTempDir();
  const root = `${work.path}/root`;
  const big = `${root}/big`;
  await Deno.mkdir(`${big}/a/in`, { recursive: true });
  await Deno.mkdir(`${big}/\u{10000}`);
  // Names whose listing order (UTF-16 units, a folder's contents where "a/" falls) is not code
  // point order, symlinks in and out, and names that are not UTF-8.
  for (const name of ["a-b", "a.txt", "a0", "\ue000", "\u{10000}x", "ok\ufffd"]) {
    await Deno.writeTextFile(`${big}/${name}`, name);
  }
  for (let i = 0; i < 400; i++) await Deno.writeTextFile(`${big}/f${i}`, "x".repeat(i));
  for (let i = 0; i < 50; i++) await Deno.mkdir(`${big}/d${i}`);
  await Deno.writeTextFile(`${big}/a/in/deep`, "deep");
  await Deno.symlink("a.txt", `${big}/link-in`);
  await Deno.symlink("/etc/hostname", `${big}/link-out`);
  await Deno.symlink("a", `${big}/link-dir`);
  await createByBytes(big, "bad\\377name", "x");
  await createByBytes(big, "bad\\376name", "y");
  await createByBytes(big, "ok\\377", "z");
  const folder = await runCommand("sh", ["-c", 'mkdir "$(printf "dir\\377")"'], { cwd: big });
  assert.equal(folder.code, 0, folder.stderr);
  const fifo = await runCommand("mkfifo", [`${big}/fifo`]);
  assert.equal(fifo.code, 0, fifo.stderr);

  const http = ["--http", "127.0.0.1:0"];
  await using short = await startServer({ root, args: http, ...SHORT_RUNS });
  await using usual = await startServer({ root, args: http });
  for (
    const args of [
      ["list", "big"],
      ["list", "-r", "big"],
      ["list", "-r", "--long", "big"],
      ["list", "-r", "--json", "big"],
      ["list", "-r"],
      ["list", "--json", "big/a"],
    ]
  ) {
    const listed = await ferry(short, args);
    assertSuccess(listed, args.join(" "));
    const expected = await ferry(usual, args);
    assertSuccess(expected, args.join(" "));
    assert.equal(out(listed), out(expected), args.join(" "));
    assert.ok(out(listed).split("\n").length > (args.includes("big/a") ? 1 : 450));
  }
  // Plain list asks for names alone, which a big folder gives from its read where it can:
  // the same names and marks as the full listing's, on both paths.
  for (const args of [["list", "big"], ["list", "-r", "big"], ["list", "-r"]]) {
    const long = await ferry(usual, [...args, "--long"]);
    assertSuccess(long, `${args.join(" ")} --long`);
    const rows = out(long).trimEnd().split("\n").slice(0, -1).map((row) => row.slice(30));
    for (const server of [short, usual]) {
      const plain = await ferry(server, args);
      assertSuccess(plain, args.join(" "));
      assert.deepEqual(out(plain).trimEnd().split("\n"), rows, `${args.join(" ")} names alone`);
    }
  }
  // The HTTP page of the folder, folders first: the same rows in the same order.
  const rows = async (server: typeof short) => {
    const line = await server.waitForLog(/HTTP on https?:\/\/\S+\//);
    const base = /HTTP on (https?:\/\/\S+\/)/.exec(line)![1];
    const page = await (await fetch(`${base}big/`)).text();
    return [...page.matchAll(/<tr data-name="([^"]*)"[^>]*data-folder="(\d)"/g)].map((m) =>
      m[1] + m[2]
    );
  };
  const page = await rows(short);
  assert.deepEqual(page, await rows(usual));
  assert.ok(page.length > 450 && page[0].endsWith("1") && page.at(-1)!.endsWith("0"));
  assert.deepEqual(await filesIn(`${root}/.ferry-staging`), []);
  if (Deno.build.os === "linux") assert.equal(await openRuns(short.pid), 0);
});

/** A store of the folder `root` as the listings use it, with its staging folder made. */
async function storeIn(root: string) {
  const store = { root, stagingDir: `${root}/.ferry-staging`, isInside: () => true };
  await Deno.mkdir(store.stagingDir);
  return store;
}

Deno.test("a listing of a big folder given up half-way gives its runs back", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  await using work = await makeTempDir();
  const store = await storeIn(work.path);
  await Deno.mkdir(`${work.path}/big`);
  for (let i = 0; i < 3000; i++) await Deno.writeTextFile(`${work.path}/big/f${i}`, "x");
  const listing = walkFolderListing(store, `${work.path}/big`, "big/", {
    recursive: false,
    limits: { bigBytes: 0, runNames: 100 },
  });
  const batches = listing[Symbol.asyncIterator]();
  const first = await batches.next();
  assert.equal(first.done ? 0 : first.value.length, LISTING_BATCH);
  assert.ok(await openRuns(Deno.pid) > 0, "runs open while the listing is under way");
  assert.deepEqual(await filesIn(store.stagingDir), []);
  // A reader that stops (a client gone) ends the walk: its runs are closed.
  await batches.return?.(undefined);
  assert.equal(await openRuns(Deno.pid), 0);
});

Deno.test(
  "a names-only walk sends a subfolder big on disk down the sorted path without looking it up first",
  {
    ignore: Deno.build.os !== "linux",
  },
  async () => {
    await using work = await makeTempDir();
    const store = await storeIn(work.path);
    await Deno.mkdir(`${work.path}/big/sub`, { recursive: true });
    await Deno.mkdir(`${work.path}/a`);
    await Deno.mkdir(`${work.path}/c`);
    for (const name of ["a/x", "a/y", "c/z", "big/sub/deep"]) {
      await Deno.writeTextFile(`${work.path}/${name}`, name);
    }
    // Some 32 KiB of names on disk (ext4, tmpfs) against a few hundred bytes for the others.
    for (let i = 0; i < 2000; i++) {
      await Deno.writeTextFile(`${work.path}/big/f${String(i).padStart(4, "0")}`, "x");
    }
    const walk = async (options: { namesOnly: boolean; limits?: typeof limits }) => {
      const names: string[] = [];
      let runsInBig = 0;
      for await (
        const batch of walkFolderListing(store, work.path, "", { recursive: true, ...options })
      ) {
        if (batch.some((entry) => entry.name.startsWith("big/f"))) {
          runsInBig = Math.max(runsInBig, await openRuns(Deno.pid));
        }
        for (const entry of batch) {
          names.push(`${entry.name}${entry.type === "dir" ? "/" : ""}`);
          if (options.namesOnly) assert.equal(entry.size + entry.mtime, 0, entry.name);
        }
      }
      return { names, runsInBig };
    };
    // Only `big` is big by these limits: it is sorted in spilled runs, its siblings in memory.
    const limits = { bigBytes: 16 << 10, runNames: 100 };
    const full = await walk({ namesOnly: false });
    assert.equal(full.names.length, 2000 + 8);
    assert.equal(full.runsInBig, 0, "all in memory by the usual limits");
    const sorted = await walk({ namesOnly: true, limits });
    assert.deepEqual(sorted.names, full.names, "the full listing's names and types");
    assert.ok(sorted.runsInBig > 0, "big/ sorted on disk, though nothing looked it up first");
    assert.deepEqual(await filesIn(store.stagingDir), []);
    assert.equal(await openRuns(Deno.pid), 0);
  },
);

Deno.test("a disk thread that dies mid-sort leaves no run file behind, and the listing is whole", async () => {
  await using server = await startServer({
    env: { ...SHORT_RUNS.env, FERRY_TEST_DISK_THREAD_DIES: "1" },
    permissions: ["--allow-env=FERRY_TEST_FOLDER_RUN,FERRY_TEST_DISK_THREAD_DIES"],
    expectedUncaught: /^error: Uncaught \(in worker .*\) Error: FERRY_TEST_DISK_THREAD_DIES: /,
  });
  const names = [...new Set(someNames(300))];
  await Deno.mkdir(`${server.root}/big`);
  for (const name of names) await Deno.writeTextFile(`${server.root}/big/${name}`, name);
  const result = await ferry(server, ["list", "big"], SHORT_RUNS);
  assertSuccess(result, "list big");
  const expected = names.map((name) => `big/${name}`).sort((a, b) => a < b ? -1 : a > b ? 1 : 0);
  assert.deepEqual(out(result).trim().split("\n"), expected);
  // The thread died after its first run of 40 names was on disk; the sort ran again on the event
  // loop, and what the dead thread spilled went with it.
  await server.waitForLog(/disk threads unavailable \(.*FERRY_TEST_DISK_THREAD_DIES/);
  assert.deepEqual(await filesIn(`${server.root}/.ferry-staging`), []);
  if (Deno.build.os === "linux") assert.equal(await openRuns(server.pid), 0);
});

Deno.test("removeRuns removes the run files of its sort's tag, and only those", async () => {
  await using work = await makeTempDir();
  const compare = (a: string, b: string) => a < b ? -1 : a > b ? 1 : 0;
  const sorters = ["mine", "other"].map((runTag) =>
    new NameSorter({ compare, runNames: 10, spillDir: work.path, runTag })
  );
  for (const sorter of sorters) for (const name of someNames(35)) await sorter.add(name);
  await Deno.writeTextFile(`${work.path}/mine.txt`, "not a run");
  assert.equal(await removeRuns(work.path, "mine"), 3);
  const left = (await filesIn(work.path)).sort();
  assert.equal(left.length, 4);
  assert.ok(
    left.every((name) => name === "mine.txt" || /^other\..*\.names$/.test(name)),
    `${left}`,
  );
  await sorters[1].discard();
  assert.deepEqual(await filesIn(work.path), ["mine.txt"]);
  assert.equal(await removeRuns(`${work.path}/none`, "mine"), 0, "no folder, no runs");
});
