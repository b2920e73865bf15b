/**
 * Walk order, which both ends of a tree transfer rely on: a receiver compares its own walk with
 * the sender's manifest as the two stream past, with `comparePath`, so that comparison must order
 * paths exactly as the walk of a real folder gives them, on the caller's thread and on the disk
 * threads alike.
 *
 * @module
 */

import assert from "node:assert/strict";
import { comparePath, TreeWalker } from "../lib/tree_walk.ts";
import { makeTempDir } from "./harness.ts";

/** Names whose order tells code points from UTF-16 units, and segments from characters. */
const FOLDERS = ["a", "a/b", "a/b/c", "a-c", "\uffff", "\u{10000}"];
const FILES = [
  "a.d",
  "a/b-x",
  "a/b/c/z",
  "a/\u00e9",
  "a-c/0",
  "ab",
  "\u{10000}/\ue000",
  "\uffff/y",
];

Deno.test("comparePath orders paths as the walk of a real folder gives them, on both kinds of walk", async () => {
  await using work = await makeTempDir();
  for (const folder of FOLDERS) await Deno.mkdir(`${work.path}/${folder}`, { recursive: true });
  for (const file of FILES) await Deno.writeTextFile(`${work.path}/${file}`, "x");
  for (const sync of [true, false]) {
    const walk = await TreeWalker.open(work.path, { sync });
    const walked: string[] = [];
    for (let e = walk.peek(); e; e = walk.peek()) {
      walked.push(e.path);
      await walk.next();
    }
    assert.equal(walked.length, FOLDERS.length + FILES.length);
    // A folder comes just before what it holds, "a/b" before "a-c" ('/' sorts below '-'), and
    // U+FFFF before U+10000 (UTF-16 units would put the surrogates first).
    assert.ok(walked.indexOf("a/b") < walked.indexOf("a-c"));
    assert.ok(walked.indexOf("\uffff") < walked.indexOf("\u{10000}"));
    for (let i = 1; i < walked.length; i++) {
      assert.ok(comparePath(walked[i - 1], walked[i]) < 0, `${walked[i - 1]} before ${walked[i]}`);
      assert.ok(comparePath(walked[i], walked[i - 1]) > 0, `${walked[i]} after ${walked[i - 1]}`);
    }
    assert.deepEqual([...walked].reverse().sort(comparePath), walked);
  }
});

Deno.test("a walk on the disk threads, which looks folders up ahead, walks as one on the caller's thread does", async () => {
  await using work = await makeTempDir();
  const base = await Deno.realPath(work.path);
  for (let t = 0; t < 3; t++) {
    for (let s = 0; s < 12; s++) {
      const dir = `${base}/t${t}/s${String(s).padStart(2, "0")}`;
      await Deno.mkdir(`${dir}/deeper`, { recursive: true });
      for (let i = 0; i < 3; i++) await Deno.writeTextFile(`${dir}/f${i}`, "x".repeat(i));
      await Deno.writeTextFile(`${dir}/deeper/z`, "z");
    }
  }
  // A folder too large to look up ahead, a link to a folder (never gone into) and a folder left
  // out by `skip`.
  for (let i = 0; i < 1100; i++) await Deno.writeTextFile(`${base}/t1/s05/m${i}`, "");
  await Deno.symlink(`${base}/t0`, `${base}/t2/link`);
  const skip = (path: string) => path === "t2/s03";
  // Folders ending in 7 are passed without going into them, as a receiver passes what the
  // sender lacks.
  const walk = async (sync: boolean, lookAhead?: boolean) => {
    const walker = await TreeWalker.open(base, { sync, skip, lookAhead });
    const walked: string[] = [];
    for (let e = walker.peek(); e; e = walker.peek()) {
      walked.push(`${e.path} ${e.type} ${e.size}`);
      await walker.next(!e.path.endsWith("7"));
    }
    return walked;
  };
  const expected = await walk(true);
  // Each of the 36 folders: itself, 3 files, a folder and its file; less what the 3 passed
  // folders hold and the skipped folder.
  assert.equal(expected.length, 3 + 36 * 6 - 3 * 5 - 6 + 1100 + 1);
  assert.ok(expected.includes("t2/link link 0") && !expected.some((e) => e.startsWith("t2/link/")));
  assert.deepEqual(await walk(false), expected);
  // Without looking ahead (a receiver's sweep of one folder), each folder is read as it comes.
  assert.deepEqual(await walk(false, false), expected);
});
