/**
 * Unit tests for storage and path safety: hostile names, symlink escapes, staging and commit
 * rules, and what the listing shows. Each test works in its own temporary folder.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { StoreError } from "../lib/errors.ts";
import { FileStore, RESUME_DIR } from "../lib/file_store.ts";
import { checkName, quote, STAGING_DIR } from "../lib/remote_name.ts";

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

Deno.test("names with C1 controls or bidi controls are refused with a reason", () => {
  const cases: [string, RegExp][] = [
    ["\u009b31mred", /control character/], // C1 CSI: starts an escape sequence on some terminals
    ["a\u0085b", /control character/], // NEL
    ["a\u0080", /control character/],
    ["a\u009f", /control character/],
    ["invoice\u202egnp.exe", /bidirectional control/], // RIGHT-TO-LEFT OVERRIDE
    ["a\u202ab", /bidirectional control/],
    ["a\u2066b\u2069", /bidirectional control/], // isolates
    ["dir/\u2068x", /bidirectional control/],
  ];
  for (const [name, reason] of cases) {
    assert.throws(() => checkName(name), (e: unknown) => {
      assert.ok(e instanceof StoreError && e.code === "bad_name", `code for ${quote(name)}`);
      assert.match(e.message, reason, quote(name));
      // The refusal itself names the name without the raw character.
      assert.doesNotMatch(e.message, /[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/);
      return true;
    });
  }
  // Neighbours of those ranges are ordinary characters.
  assert.deepEqual(checkName("\u00a0nbsp \u00e9 \u2065 \u202f"), [
    "\u00a0nbsp \u00e9 \u2065 \u202f",
  ]);
});

Deno.test("quote escapes what a terminal would act on, so a log line stays one plain line", () => {
  assert.equal(quote("plain é.txt"), '"plain é.txt"');
  assert.equal(quote("a\nb\u001b[31m"), '"a\\nb\\u001b[31m"');
  assert.equal(quote("\u009b31m"), '"\\u009b31m"');
  assert.equal(quote("\u007f"), '"\\u007f"');
  assert.equal(quote("x\u202ey\u2066z\u2069"), '"x\\u202ey\\u2066z\\u2069"');
  assert.equal(quote("\u200e\u200f\u061c\u2028\u2029"), '"\\u200e\\u200f\\u061c\\u2028\\u2029"');
  // What it produces is still JSON for the same name.
  const hostile = '\u009b31m\u202eevil\u2028"quoted"';
  assert.equal(JSON.parse(quote(hostile)), hostile);
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

Deno.test("a symlink loop is refused as such, for get and put, without naming a server path", async () => {
  await withDirs(async (root) => {
    await Deno.symlink("loop", join(root, "loop"));
    await Deno.symlink("b", join(root, "a"));
    await Deno.symlink("a", join(root, "b"));
    const store = await FileStore.open(root);
    const isLoop = (name: string) => (e: unknown) => {
      assert.ok(e instanceof StoreError && e.code === "bad_name", `${name}: ${e}`);
      assert.equal(e.message, `Refused name "${name}": it is a symlink loop`);
      return true;
    };
    for (const name of ["loop", "a", "loop/x", "a/x/y"]) {
      await assert.rejects(() => store.openFile(name), isLoop(name));
    }
    for (const name of ["loop/x", "b/x", "loop/deeper/x"]) {
      await assert.rejects(() => store.beginUpload(name), isLoop(name));
    }
    assert.deepEqual(await store.list(), [], "loops are not listed");
  });
});

Deno.test("a name that goes through a file is not found, not an OS error", async () => {
  await withDirs(async (root) => {
    await Deno.writeTextFile(join(root, "file.txt"), "x");
    const store = await FileStore.open(root);
    await assert.rejects(() => store.openFile("file.txt/x"), (e: unknown) => {
      assert.ok(e instanceof StoreError && e.code === "not_found", String(e));
      assert.equal(e.message, 'No such file: "file.txt/x"');
      return true;
    });
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

Deno.test("an upload's bytes are in its staging file as soon as write resolves", async () => {
  // What commit flushes to disk must already be in the file: Deno's file.writable held writes
  // under 64 KiB back until it was closed, so the flush missed the tail of every upload.
  await withDirs(async (root) => {
    const store = await FileStore.open(root);
    const up = await store.beginUpload("small.txt");
    await up.write(new TextEncoder().encode("first"));
    assert.equal((await Deno.stat(up.stagingPath)).size, 5, "after a 5-byte write");
    await up.write(new Uint8Array(70_000));
    await up.write(new TextEncoder().encode("tail"));
    assert.equal((await Deno.stat(up.stagingPath)).size, 70_009, "after the tail");
    await up.commit();
    assert.equal((await Deno.stat(join(root, "small.txt"))).size, 70_009);
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
    await assert.rejects(
      () => store.beginUpload("same.txt", { overwrite: true }),
      isCode("in_progress"),
    );
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

Deno.test("a small upload checks its folders again once the store removed or moved a name", async () => {
  await withDirs(async (root, outside) => {
    const store = await FileStore.open(root, { fsync: false });
    // A tree's small files: the folder checked for the first is trusted for the next, briefly.
    const small = async (name: string, overwrite = true) => {
      const up = await store.beginUpload(name, { overwrite, size: 1, sync: true, precheck: false });
      await up.write(new TextEncoder().encode("x"));
      await up.commit();
    };
    await small("a/x");
    await store.remove("a", { recursive: true });
    // Swapped for a symlink that leads out: the next file must not be named through it.
    await Deno.symlink(outside, join(root, "a"));
    await assert.rejects(() => small("a/y"), isCode("bad_name"));
    await Deno.remove(join(root, "a"));
    await small("b/x");
    await Deno.mkdir(join(root, "c"));
    await store.move("b", "c/b");
    await Deno.symlink(outside, join(root, "b"));
    await assert.rejects(() => small("b/y"), isCode("bad_name"));
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), ["secret.txt"]);
    assert.equal(await Deno.readTextFile(join(root, "c/b/x")), "x");
  });
});

Deno.test("a root that is a file, or lies under one, is refused as not a folder", async () => {
  await withDirs(async (root) => {
    const file = join(root, "file.txt");
    await Deno.writeTextFile(file, "x");
    for (const create of [true, false]) {
      await assert.rejects(() => FileStore.open(file, { create }), (e: unknown) => {
        assert.ok(e instanceof StoreError, String(e));
        assert.equal(e.message, `Root ${file} is not a folder`);
        return true;
      });
    }
    await assert.rejects(
      () => FileStore.open(join(file, "sub"), { create: true }),
      /^StoreError: Root .*file\.txt\/sub cannot be made: a file is in its path$/,
    );
  });
});

Deno.test("opening a root clears stale staging files and creates a missing root", async () => {
  await withDirs(async (root) => {
    await Deno.mkdir(join(root, STAGING_DIR));
    await Deno.writeTextFile(join(root, STAGING_DIR, "old.upload"), "half");
    const store = await FileStore.open(root);
    assert.deepEqual([...Deno.readDirSync(store.stagingDir)], []);
    const fresh = await FileStore.open(join(root, "new"), { create: true });
    assert.ok((await Deno.stat(fresh.root)).isDirectory);
    // Only the last folder is made: a root under a missing folder is a mistake, reported.
    await assert.rejects(
      () => FileStore.open(join(root, "missing", "root"), { create: true }),
      (e: unknown) => e instanceof StoreError && e.code === "not_found",
    );
    await assert.rejects(() => Deno.stat(join(root, "missing")), Deno.errors.NotFound);
  });
});

Deno.test("names no client could ask for are listed all the same", async () => {
  await withDirs(async (root) => {
    await Deno.writeTextFile(join(root, "bad\nname"), "x");
    await Deno.writeTextFile(join(root, "c1\u009b31m"), "x");
    await Deno.writeTextFile(join(root, "bidi\u202etxt.exe"), "x");
    await Deno.mkdir(join(root, "dir\u2066"));
    await Deno.writeTextFile(join(root, "dir\u2066", "inner"), "x");
    await Deno.writeTextFile(join(root, "good"), "x");
    const store = await FileStore.open(root);
    assert.deepEqual((await store.list()).map((e) => e.name), [
      "bad\nname",
      "bidi\u202etxt.exe",
      "c1\u009b31m",
      "dir\u2066/inner",
      "good",
    ]);
    // The walk that streams gives the same files in the same order, its folders besides.
    const walked = [];
    for await (const batch of await store.listTree({ recursive: true, folderTimes: false })) {
      for (const entry of batch) if (entry.type === "file") walked.push(entry);
    }
    assert.deepEqual(walked.map(({ type: _, ...file }) => file), await store.list());
    await assert.rejects(() => store.openFile("bad\nname"), isCode("bad_name"));
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
    // Kept files are named by the SHA-256 of the name, as in every earlier build, so a server
    // upgraded in between still finds them.
    const stem = createHash("sha256").update("big.bin").digest("hex");
    assert.deepEqual(
      [...Deno.readDirSync(store.resumeDir)].map((entry) => entry.name).sort(),
      [`${stem}.json`, `${stem}.part`],
    );
    const other = await store.beginUpload("big.bin", { resume: true, size: 99 });
    assert.equal(other.offset, 0, "a different size starts fresh");
    assert.equal(other.keptDropped, true, "and says that it dropped what was kept");
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
    const store = await FileStore.open(root, { kept: { maxAgeMs: 0 } });
    const up = await store.beginUpload("x", { size: 5 });
    await up.write(new TextEncoder().encode("12"));
    await up.keep();
    const resumed = await store.beginUpload("x", { resume: true, size: 5 });
    assert.equal(resumed.offset, 0);
    await resumed.discard();
    assert.deepEqual([...Deno.readDirSync(store.resumeDir)], []);
  });
});
