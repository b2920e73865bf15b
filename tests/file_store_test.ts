/**
 * Unit tests for storage and path safety: hostile names, symlink escapes, staging and commit
 * rules, and what the listing shows. Each test works in its own temporary folder.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { StoreError } from "../lib/errors.ts";
import { checkName, FileStore, moveNoClobber, RESUME_DIR, STAGING_DIR } from "../lib/file_store.ts";

async function withDirs(fn: (root: string, outside: string) => Promise<void>): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "ferry_store_" });
  const root = join(base, "root");
  const outside = join(base, "outside");
  await Deno.mkdir(root);
  await Deno.mkdir(outside);
  await Deno.writeTextFile(join(outside, "secret.txt"), "secret");
  try {
    await fn(root, outside);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

function isCode(code: string) {
  return (error: unknown) => error instanceof StoreError && error.code === code;
}

async function upload(store: FileStore, name: string, text: string, overwrite = false) {
  const up = await store.beginUpload(name, { overwrite });
  await up.write(new TextEncoder().encode(text));
  await up.commit();
}

Deno.test("hostile names are refused with a reason", () => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["..", /"\.\." is not allowed/],
    ["../etc/passwd", /"\.\." is not allowed/],
    ["a/../../b", /"\.\." is not allowed/],
    ["/etc/passwd", /absolute/],
    ["a\0b", /NUL/],
    ["a\nb", /control character/],
    ["a\\..\\b", /backslash/],
    ["a//b", /empty path segment/],
    ["a/", /empty path segment/],
    ["./a", /"\." is not allowed/],
    [`${STAGING_DIR}/x.upload`, /reserved/],
    [`${RESUME_DIR}/x.part`, /reserved/],
    ["x".repeat(256), /255 bytes/],
    ["a/".repeat(600) + "b", /longer than/],
  ];
  for (const [name, reason] of cases) {
    assert.throws(() => checkName(name), (e: unknown) => {
      assert.ok(
        e instanceof StoreError && e.code === "bad_name",
        `code for ${JSON.stringify(name)}`,
      );
      assert.match(e.message, reason);
      return true;
    });
  }
});

Deno.test("ordinary names pass, including spaces, dots and non-ASCII", () => {
  assert.deepEqual(checkName("a b.txt"), ["a b.txt"]);
  assert.deepEqual(checkName("dir/sub/ü €.bin"), ["dir", "sub", "ü €.bin"]);
  assert.deepEqual(checkName(".hidden"), [".hidden"]);
  assert.deepEqual(checkName("..."), ["..."]);
});

Deno.test("a symlink leading outside the root is refused for get and put", async () => {
  await withDirs(async (root, outside) => {
    await Deno.symlink(join(outside, "secret.txt"), join(root, "leak.txt"));
    await Deno.symlink(outside, join(root, "outdir"));
    const store = await FileStore.open(root);
    await assert.rejects(() => store.openFile("leak.txt"), /leads outside the root/);
    await assert.rejects(() => store.openFile("outdir/secret.txt"), /leads outside the root/);
    await assert.rejects(() => store.beginUpload("outdir/new.txt"), /leads outside the root/);
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), ["secret.txt"]);
    assert.deepEqual((await store.list()).map((e) => e.name), [], "escaping links are not listed");
  });
});

Deno.test("a symlink that stays inside the root works", async () => {
  await withDirs(async (root) => {
    await Deno.writeTextFile(join(root, "real.txt"), "hello");
    await Deno.symlink("real.txt", join(root, "alias.txt"));
    const store = await FileStore.open(root);
    const opened = await store.openFile("alias.txt");
    opened.file.close();
    assert.equal(opened.size, 5);
    assert.deepEqual((await store.list()).map((e) => e.name), ["alias.txt", "real.txt"]);
  });
});

Deno.test("uploads appear only on commit, and never replace without overwrite", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    const up = await store.beginUpload("a.txt");
    await up.write(new TextEncoder().encode("one"));
    assert.deepEqual(await store.list(), [], "nothing listed before commit");
    await assert.rejects(() => Deno.stat(join(root, "a.txt")));
    await up.commit();
    assert.equal(await Deno.readTextFile(join(root, "a.txt")), "one");
    await assert.rejects(() => store.beginUpload("a.txt"), isCode("exists"));
    await upload(store, "a.txt", "two", true);
    assert.equal(await Deno.readTextFile(join(root, "a.txt")), "two");
    assert.deepEqual([...Deno.readDirSync(store.stagingDir)], [], "staging is empty");
  });
});

Deno.test("a file that appears during an upload is not clobbered", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    const up = await store.beginUpload("race.txt");
    await up.write(new TextEncoder().encode("late"));
    await Deno.writeTextFile(join(root, "race.txt"), "first");
    await assert.rejects(() => up.commit(), isCode("exists"));
    assert.equal(await Deno.readTextFile(join(root, "race.txt")), "first");
    assert.deepEqual([...Deno.readDirSync(store.stagingDir)], []);
  });
});

Deno.test("two uploads of one name cannot run at once", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    const first = await store.beginUpload("same.txt", { overwrite: true });
    await assert.rejects(() => store.beginUpload("same.txt", { overwrite: true }), /in progress/);
    await first.discard();
    const again = await store.beginUpload("same.txt");
    await again.discard();
  });
});

Deno.test("discard removes the staging file and leaves no name", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    const up = await store.beginUpload("gone.txt");
    await up.write(new Uint8Array(1000));
    await up.discard();
    await up.discard();
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), [
      RESUME_DIR,
      STAGING_DIR,
    ]);
    assert.deepEqual([...Deno.readDirSync(store.stagingDir)], []);
  });
});

Deno.test("uploads into folders create them; files in the way are refused", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    await upload(store, "d/e/f.txt", "deep");
    assert.equal(await Deno.readTextFile(join(root, "d/e/f.txt")), "deep");
    await assert.rejects(() => store.beginUpload("d/e/f.txt/g"), isCode("not_a_file"));
    await assert.rejects(() => store.beginUpload("d", { overwrite: true }), isCode("not_a_file"));
    await assert.rejects(() => store.openFile("d"), isCode("not_a_file"));
    await assert.rejects(() => store.openFile("nope"), isCode("not_found"));
    assert.deepEqual((await store.list()).map((e) => [e.name, e.size]), [["d/e/f.txt", 4]]);
  });
});

Deno.test("opening a root clears stale staging files and creates a missing root", async () => {
  await withDirs(async (root) => {
    await Deno.mkdir(join(root, STAGING_DIR));
    await Deno.writeTextFile(join(root, STAGING_DIR, "old.upload"), "half");
    const store = await FileStore.open(root);
    assert.deepEqual([...Deno.readDirSync(store.stagingDir)], []);
    const fresh = await FileStore.open(join(root, "new", "root"), { create: true });
    assert.ok((await Deno.stat(fresh.root)).isDirectory);
  });
});

Deno.test("names no client could ask for are not listed", async () => {
  await withDirs(async (root) => {
    await Deno.writeTextFile(join(root, "bad\nname"), "x");
    await Deno.writeTextFile(join(root, "good"), "x");
    const store = await FileStore.open(root);
    assert.deepEqual((await store.list()).map((e) => e.name), ["good"]);
  });
});

Deno.test("moveNoClobber refuses an existing target and keeps the source", async () => {
  await withDirs(async (root) => {
    const from = join(root, "from");
    const to = join(root, "to");
    await Deno.writeTextFile(from, "new");
    await Deno.writeTextFile(to, "old");
    assert.equal(await moveNoClobber(from, to), false);
    assert.equal(await Deno.readTextFile(to), "old");
    assert.equal(await Deno.readTextFile(from), "new");
    await Deno.remove(to);
    assert.equal(await moveNoClobber(from, to), true);
    assert.equal(await Deno.readTextFile(to), "new");
    await assert.rejects(() => Deno.stat(from));
  });
});

Deno.test("an interrupted upload kept for resume continues only for the same name and size", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    const first = await store.beginUpload("big.bin", { size: 10 });
    assert.equal(first.offset, 0);
    await first.write(new TextEncoder().encode("01234"));
    await first.keep();
    assert.deepEqual(await store.list(), [], "kept data is not listed");
    const other = await store.beginUpload("big.bin", { resume: true, size: 99 });
    assert.equal(other.offset, 0, "a different size starts fresh");
    await other.discard();
    const again = await FileStore.open(root);
    const fresh = await again.beginUpload("big.bin", { size: 10 });
    assert.equal(fresh.offset, 0, "the fresh put above dropped the kept data");
    await fresh.write(new TextEncoder().encode("abc"));
    await fresh.keep();
    const resumed = await again.beginUpload("big.bin", { resume: true, size: 10 });
    assert.equal(resumed.offset, 3);
    await resumed.write(new TextEncoder().encode("defghij"));
    await resumed.commit();
    assert.equal(await Deno.readTextFile(join(root, "big.bin")), "abcdefghij");
    assert.deepEqual([...Deno.readDirSync(again.resumeDir)], []);
  });
});

Deno.test("kept uploads past their age are pruned", async () => {
  await withDirs(async (root) => {
    const store = await FileStore.open(root, { resume: { maxAgeMs: 0 } });
    const up = await store.beginUpload("x", { size: 5 });
    await up.write(new TextEncoder().encode("12"));
    await up.keep();
    const resumed = await store.beginUpload("x", { resume: true, size: 5 });
    assert.equal(resumed.offset, 0);
    await resumed.discard();
    assert.deepEqual([...Deno.readDirSync(store.resumeDir)], []);
  });
});
