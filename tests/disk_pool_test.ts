/**
 * Tests of the disk threads (lib/disk_pool.ts): a folder looked up whole, small files read whole
 * (and only those), many jobs at once spread over the threads, errors carried back as the same
 * Deno error classes, and the same answers on the calling thread when no thread can start.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DiskPool } from "../lib/disk_pool.ts";
import { KIND_DIR, KIND_FILE } from "../lib/folder_entries.ts";

async function withTree(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ferry-disk-" }));
  try {
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeFile(join(dir, "sub", "a.txt"), new TextEncoder().encode("alpha"));
    await Deno.writeFile(join(dir, "big.bin"), new Uint8Array(5000));
    // Names that are also the names of plain objects' own properties.
    await Deno.writeTextFile(join(dir, "__proto__"), "p");
    await Deno.writeTextFile(join(dir, "constructor"), "c");
    await Deno.symlink(join("sub", "a.txt"), join(dir, "link"));
    await Deno.symlink("nowhere", join(dir, "dangling"));
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a folder is looked up whole: every name, its kind, size and mtime, links' targets", async () => {
  const pool = new DiskPool();
  try {
    await withTree(async (dir) => {
      const plain = await pool.folder(dir);
      const names = [...plain.names].sort();
      assert.deepEqual(names, ["__proto__", "big.bin", "constructor", "dangling", "link", "sub"]);
      assert.equal(plain.target("link"), undefined, "no targets without follow");
      assert.equal(plain.entry(plain.names.indexOf("sub")).isDirectory, true);
      assert.equal(plain.entry(plain.names.indexOf("link")).isSymlink, true);
      const info = (name: string) => plain.info(name) as { type: string; size: number };
      assert.equal(info("sub").type, "dir");
      assert.equal(info("big.bin").type, "file");
      assert.equal(info("big.bin").size, 5000);
      assert.equal(info("__proto__").type, "file");
      assert.equal(info("constructor").size, 1);
      // An lstat: the link itself, never what it points to.
      assert.equal(info("link").type, "link");
      const mtime = (await Deno.lstat(join(dir, "big.bin"))).mtime!.getTime();
      assert.equal((plain.info("big.bin") as { mtime: number }).mtime, mtime);
      assert.equal(plain.info("no-such-name"), undefined);

      const followed = await pool.folder(dir, { follow: true });
      const target = followed.target("link") as { real: string; info: { size: number } };
      assert.equal(target.real, join(dir, "sub", "a.txt"));
      assert.equal(target.info.size, 5);
      assert.equal((followed.target("dangling") as { error: string }).error, "NotFound");
      // Split between two threads, the same answers.
      const split = await pool.folder(dir, { follow: true, split: true, splitFrom: 1 });
      for (const name of names) assert.deepEqual(split.info(name), followed.info(name), name);
      assert.deepEqual(split.target("link"), followed.target("link"));
      // Read as it comes (a big folder's way), alone or split: the same answers.
      for (const split of [false, true]) {
        const streamed = await pool.folder(dir, { follow: true, split, splitFrom: 1, bigBytes: 0 });
        assert.deepEqual([...streamed.names].sort(), names);
        for (const name of names) assert.deepEqual(streamed.info(name), followed.info(name), name);
        assert.deepEqual(streamed.target("link"), followed.target("link"));
      }
      for (const bigBytes of [undefined, 0]) {
        await assert.rejects(pool.folder(join(dir, "missing"), { bigBytes }), Deno.errors.NotFound);
        await assert.rejects(pool.folder(join(dir, "big.bin"), { bigBytes }), Error);
      }
    });
  } finally {
    pool.close();
  }
});

Deno.test("with trustKinds, what the folder's read types so is not looked up; links and the untyped are", async () => {
  const pool = new DiskPool();
  try {
    await withTree(async (dir) => {
      const fifo = await new Deno.Command("mkfifo", { args: [join(dir, "fifo")] }).output();
      assert.equal(fifo.code, 0);
      const full = await pool.folder(dir, { follow: true });
      for (
        const [trustKinds, skipped] of [
          [KIND_FILE, ["__proto__", "big.bin", "constructor"]],
          [KIND_FILE | KIND_DIR, ["__proto__", "big.bin", "constructor", "sub"]],
        ] as const
      ) {
        for (const bigBytes of [undefined, 0]) {
          const view = await pool.folder(dir, { follow: true, split: true, trustKinds, bigBytes });
          for (const name of full.names) {
            const expected = (skipped as readonly string[]).includes(name)
              ? undefined
              : full.info(name);
            assert.deepEqual(view.info(name), expected, `${name}, trusting ${trustKinds}`);
          }
          // Links are looked up and followed whatever is trusted; a FIFO, which the read types
          // as none of the kinds, is looked up.
          assert.deepEqual(view.target("link"), full.target("link"));
          assert.equal((view.info("fifo") as { type: string }).type, "other");
          assert.equal(view.entry(view.names.indexOf("big.bin")).isFile, true);
        }
      }
    });
  } finally {
    pool.close();
  }
});

Deno.test("small files are read whole, larger ones and what is not a file only measured", async () => {
  const pool = new DiskPool();
  try {
    await withTree(async (dir) => {
      const small = await pool.readSmall(join(dir, "sub", "a.txt"), 4096);
      assert.equal(new TextDecoder().decode(small.bytes), "alpha");
      assert.equal(small.real, join(dir, "sub", "a.txt"));
      const big = await pool.readSmall(join(dir, "big.bin"), 4096);
      assert.equal(big.bytes, undefined);
      assert.equal(big.info.size, 5000);
      // Through a link: the real path comes back, for the caller to check.
      const linked = await pool.readSmall(join(dir, "link"), 4096);
      assert.equal(linked.real, join(dir, "sub", "a.txt"));
      assert.equal(new TextDecoder().decode(linked.bytes), "alpha");
      const folder = await pool.readSmall(join(dir, "sub"), 4096);
      assert.equal(folder.info.type, "dir");
      assert.equal(folder.bytes, undefined);
      await assert.rejects(pool.readSmall(join(dir, "dangling"), 4096), Deno.errors.NotFound);
      if (Deno.build.os !== "windows") {
        // A FIFO is never opened: opening one would wait for a writer, forever.
        const fifo = join(dir, "fifo");
        const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
        assert.ok(made.success);
        const read = await pool.readSmall(fifo, 4096);
        assert.equal(read.info.type, "other");
        assert.equal(read.bytes, undefined);
      }
    });
  } finally {
    pool.close();
  }
});

Deno.test("many jobs asked for at once all come back right, over several threads", async () => {
  const pool = new DiskPool({ threads: 3 });
  const dir = await Deno.makeTempDir({ prefix: "ferry-disk-" });
  try {
    const count = 300;
    for (let i = 0; i < count; i++) {
      await Deno.writeTextFile(join(dir, `f${i}`), `file ${i}`.repeat(i % 7));
    }
    const reads = await Promise.all(
      Array.from({ length: count }, (_, i) => pool.readSmall(join(dir, `f${i}`), 1 << 16)),
    );
    reads.forEach((read, i) => {
      assert.equal(new TextDecoder().decode(read.bytes), `file ${i}`.repeat(i % 7));
    });
    const folders = await Promise.all([pool.folder(dir), pool.folder(dir), pool.folder(dir)]);
    for (const folder of folders) {
      assert.equal(folder.names.length, count);
      for (const name of folder.names) {
        assert.equal((folder.info(name) as { type: string }).type, "file");
      }
    }
    // A large folder split between threads: every name looked up, by one share or the other.
    const split = await pool.folder(dir, { split: true });
    for (const name of split.names) {
      assert.equal((split.info(name) as { type: string }).type, "file");
    }
  } finally {
    pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without a thread (its script fails), jobs run on the calling thread, and the holder hears", async () => {
  // What a binary built without the script meets: a thread that dies as it starts.
  const script = new URL(`data:text/javascript,throw new Error("no disk thread here")`);
  const pool = new DiskPool({ script });
  const heard: string[] = [];
  const onBroken = (why: string) => heard.push(why);
  pool.hold(onBroken);
  try {
    await withTree(async (dir) => {
      const read = await pool.readSmall(join(dir, "sub", "a.txt"), 4096);
      assert.equal(new TextDecoder().decode(read.bytes), "alpha");
      const folder = await pool.folder(dir);
      assert.equal(folder.names.length, 6);
      assert.equal((folder.info("big.bin") as { size: number }).size, 5000);
      await assert.rejects(pool.readSmall(join(dir, "dangling"), 4096), Deno.errors.NotFound);
    });
    assert.equal(heard.length, 1);
  } finally {
    pool.release(onBroken);
    pool.close();
  }
});

Deno.test("folders asked for together are answered each on its own: one missing or too big fails or passes alone", async () => {
  const pool = new DiskPool({ threads: 1 });
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ferry-disk-" }));
  try {
    // Enough folders, and names, that the batch takes more than a few milliseconds: it is answered
    // in parts, each folder's results in its own place.
    const folders = 60;
    for (let f = 0; f < folders; f++) {
      await Deno.mkdir(join(dir, `d${f}`));
      for (let i = 0; i <= f; i++) await Deno.writeTextFile(join(dir, `d${f}`, `n${i}`), "x");
    }
    const asked = Array.from(
      { length: folders },
      (_, f) => pool.smallFolder(join(dir, `d${f}`), 64),
    );
    const missing = pool.smallFolder(join(dir, "gone"), 64);
    const tooBig = pool.smallFolder(join(dir, `d${folders - 1}`), 10);
    const again = pool.smallFolder(join(dir, "d3"), 64);
    await assert.rejects(missing, Deno.errors.NotFound);
    assert.equal(await tooBig, undefined, "more names than asked for: not looked up");
    const views = await Promise.all(asked);
    views.forEach((view, f) => {
      assert.ok(view);
      assert.equal(view.names.length, f + 1);
      for (const name of view.names) {
        assert.equal((view.info(name) as { type: string }).type, "file");
      }
    });
    assert.deepEqual([...(await again)!.names].sort(), ["n0", "n1", "n2", "n3"]);
  } finally {
    pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});
