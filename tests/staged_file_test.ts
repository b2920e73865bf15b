/**
 * Unit tests of staged writes (lib/staged_file.ts), which both the server's uploads and the
 * client's downloads go through: a name holds the whole file or nothing, a taken name is never
 * clobbered, and what fails is removed or kept as asked. Each test works in its own temporary
 * folder; the full-disk one mounts a small tmpfs where that is allowed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { moveNoClobber, SMALL_FILE_MAX, StagedFile, syncDirShared } from "../lib/staged_file.ts";
import { makeTempDir } from "./harness.ts";
import { MOUNT_ALLOWED, withTmpfs } from "./tmpfs.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function names(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name).sort();
}

Deno.test("commit names the file only once it is whole, and removes the staging name", async () => {
  await using dir = await makeTempDir();
  for (const writeSync of [false, true]) {
    const part = join(dir.path, `${writeSync}.txt.part`);
    const target = join(dir.path, `${writeSync}.txt`);
    const staged = await StagedFile.open(part, { mode: "replace", writeSync });
    await staged.write(encoder.encode("first "));
    await staged.write(new Uint8Array(70_000).fill(120));
    await staged.write(encoder.encode(" tail"));
    assert.equal(staged.size, 70_011);
    assert.equal(await exists(target), false, "nothing under the name before commit");
    assert.equal((await Deno.stat(part)).size, 70_011, "every write is in the file at once");
    assert.equal(await staged.commit(target, { replace: writeSync }), true);
    const text = await Deno.readTextFile(target);
    assert.ok(text.startsWith("first x") && text.endsWith("x tail") && text.length === 70_011);
    assert.equal(await exists(part), false, "the staging name is gone");
    await staged.discard();
    assert.equal(await exists(target), true, "discard after commit leaves the file");
    await assert.rejects(() => staged.commit(target), /already committed/);
  }
});

Deno.test("without replace, commit refuses a name that is taken, leaves it intact and removes the staged bytes", async () => {
  await using dir = await makeTempDir();
  const target = join(dir.path, "race.txt");
  const staged = await StagedFile.open(join(dir.path, "race.part"));
  await staged.write(encoder.encode("late"));
  await Deno.writeTextFile(target, "first");
  assert.equal(await staged.commit(target), false);
  assert.equal(await Deno.readTextFile(target), "first");
  assert.deepEqual(await names(dir.path), ["race.txt"]);

  const replacing = await StagedFile.open(join(dir.path, "race.part"));
  await replacing.write(encoder.encode("second"));
  assert.equal(await replacing.commit(target, { replace: true }), true);
  assert.equal(await Deno.readTextFile(target), "second");
});

Deno.test("a commit target given as a function is prepared just before the move", async () => {
  await using dir = await makeTempDir();
  const staged = await StagedFile.open(join(dir.path, "x.part"));
  await staged.write(encoder.encode("x"));
  const folder = join(dir.path, "made", "later");
  assert.equal(
    await staged.commit(async () => {
      await Deno.mkdir(folder, { recursive: true });
      return join(folder, "x.txt");
    }),
    true,
  );
  assert.equal(await Deno.readTextFile(join(folder, "x.txt")), "x");
  // A target that cannot be prepared fails the commit, and the staged bytes go.
  const refused = await StagedFile.open(join(dir.path, "y.part"));
  await assert.rejects(() => refused.commit(() => Promise.reject(new Error("no"))), /^Error: no$/);
  assert.equal(await exists(join(dir.path, "y.part")), false);
});

Deno.test("discard removes the staged bytes and is safe to call twice", async () => {
  await using dir = await makeTempDir();
  const staged = await StagedFile.open(join(dir.path, "gone.part"));
  await staged.write(new Uint8Array(1000));
  await staged.discard();
  await staged.discard();
  assert.deepEqual(await names(dir.path), []);
  await assert.rejects(() => staged.commit(join(dir.path, "gone")), /already discarded/);
});

Deno.test("keep leaves the bytes, and an append continues after them", async () => {
  await using dir = await makeTempDir();
  const part = join(dir.path, "big.part");
  const first = await StagedFile.open(part, { mode: "replace" });
  await first.write(encoder.encode("kept "));
  await first.keep();
  assert.equal(await Deno.readTextFile(part), "kept ", "the bytes stay after keep");

  const again = await StagedFile.open(part, { mode: "append", read: true });
  assert.equal(again.offset, 5);
  assert.equal(again.size, 5);
  const back = new Uint8Array(5);
  await again.file.seek(0, Deno.SeekMode.Start);
  assert.equal(await again.file.read(back), 5, "an append opened to read reads the kept bytes");
  assert.equal(decoder.decode(back), "kept ");
  await again.write(encoder.encode("and more"));
  assert.equal(await again.commit(join(dir.path, "big.bin")), true);
  assert.equal(await Deno.readTextFile(join(dir.path, "big.bin")), "kept and more");

  // Keeping something and then discarding it after all removes it.
  const later = await StagedFile.open(part, { mode: "replace" });
  await later.write(encoder.encode("x"));
  await later.keep();
  await later.discard();
  assert.equal(await exists(part), false);
});

Deno.test("an appended file is given its mtime to the millisecond, as a created one is", async () => {
  await using dir = await makeTempDir();
  // Thirty milliseconds in a row: through node:fs, half of all times were stored 1 ms early.
  for (let i = 0; i < 30; i++) {
    const part = join(dir.path, `${i}.part`);
    await Deno.writeTextFile(part, "kept ");
    const mtime = 1_796_339_892_000 + i;
    for (const sync of [false, true]) {
      const staged = await StagedFile.open(part, { mode: "append", fsync: false, sync });
      await staged.write(encoder.encode("more"));
      const target = join(dir.path, `${i}-${sync}.bin`);
      assert.equal(await staged.commit(target, { mtime }), true);
      assert.equal((await Deno.stat(target)).mtime?.getTime(), mtime, `${mtime}, sync ${sync}`);
      await Deno.writeTextFile(part, "kept ");
    }
  }
});

Deno.test("create refuses a staging path in use; failures are told which path they concern", async () => {
  await using dir = await makeTempDir();
  const part = join(dir.path, "taken.part");
  await Deno.writeTextFile(part, "someone else's");
  const failure = (error: unknown, path: string) =>
    new Error(`Cannot write ${path}: ${(error as Error).name}`);
  await assert.rejects(
    () => StagedFile.open(part, { failure }),
    (error: Error) => error.message === `Cannot write ${part}: AlreadyExists`,
  );
  assert.equal(await Deno.readTextFile(part), "someone else's");
  // The move's failure names the target: here its folder is missing.
  const staged = await StagedFile.open(join(dir.path, "mine.part"), { failure });
  const target = join(dir.path, "no-such-folder", "mine.txt");
  await assert.rejects(
    () => staged.commit(target, { replace: true }),
    (error: Error) => error.message === `Cannot write ${target}: NotFound`,
  );
  assert.equal(await exists(join(dir.path, "mine.part")), false, "a failed commit removes it");
});

Deno.test({
  name: "a staged file can be created owner-only, for a secret",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using dir = await makeTempDir();
    const staged = await StagedFile.open(join(dir.path, "key.tmp"), { permissions: 0o600 });
    assert.equal((await Deno.stat(staged.path)).mode! & 0o777, 0o600, "from its first byte");
    await staged.write(encoder.encode("secret"));
    assert.equal(await staged.commit(join(dir.path, "key.pem")), true);
    assert.equal((await Deno.stat(join(dir.path, "key.pem"))).mode! & 0o777, 0o600);
  },
});

Deno.test({
  name: "a write that fills the disk is written again, over itself, once room is made",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const disk = join(base.path, "disk");
    await withTmpfs(disk, "size=1m", async () => {
      const ballast = join(disk, "ballast");
      await Deno.writeFile(ballast, new Uint8Array(700 * 1024));
      const asked: number[] = [];
      const staged = await StagedFile.open(join(disk, "f.part"), {
        fsync: false,
        onNoSpace: async (bytes) => {
          asked.push(bytes);
          if (!await exists(ballast)) return false;
          await Deno.remove(ballast);
          return true;
        },
      });
      const head = new Uint8Array(100 * 1024).fill(1);
      const chunk = new Uint8Array(600 * 1024).fill(2);
      await staged.write(head);
      await staged.write(chunk);
      assert.deepEqual(asked, [chunk.length], "asked for room once, for the whole chunk");
      assert.equal(await staged.commit(join(disk, "f")), true);
      const stored = await Deno.readFile(join(disk, "f"));
      assert.equal(stored.length, head.length + chunk.length, "the retry wrote over, not after");
      assert.ok(stored.subarray(0, head.length).every((b) => b === 1));
      assert.ok(stored.subarray(head.length).every((b) => b === 2));

      // With nothing left to free, the out-of-space error stands and the bytes can be discarded.
      const full = await StagedFile.open(join(disk, "g.part"), {
        fsync: false,
        onNoSpace: () => Promise.resolve(false),
      });
      await assert.rejects(() => full.write(new Uint8Array(900 * 1024)), (error: Error) => {
        return (error as { code?: string }).code === "ENOSPC";
      });
      await full.discard();
      assert.deepEqual(await names(disk), ["f"]);
    });
  },
});

Deno.test("moveNoClobber refuses an existing target and keeps the source", async () => {
  await using dir = await makeTempDir();
  const from = join(dir.path, "from");
  const to = join(dir.path, "to");
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

Deno.test("commits into one folder share a folder sync that starts after their names are given", async () => {
  await using temp = await makeTempDir();
  await using otherTemp = await makeTempDir();
  const dir = temp.path;
  const other = otherTemp.path;
  const first = syncDirShared(dir);
  // Not started yet: a second name given now is covered by the same sync.
  assert.equal(syncDirShared(dir), first);
  assert.notEqual(syncDirShared(other), first);
  await Promise.resolve();
  // Under way now: a name given from here waits for the next one, which starts after it.
  const second = syncDirShared(dir);
  assert.notEqual(second, first);
  let firstDone = false;
  await Promise.all([first.then(() => firstDone = true), second.then(() => assert(firstDone))]);
  // Nothing under way: a fresh sync.
  assert.notEqual(syncDirShared(dir), second);
});

Deno.test("a small file written with sync gets its mode at creation and its mtime before naming", async () => {
  await using temp = await makeTempDir();
  const dir = temp.path;
  const staged = await StagedFile.open(join(dir, "x.part"), {
    sync: true,
    permissions: 0o600,
    fsync: false,
  });
  await staged.write(new Uint8Array(SMALL_FILE_MAX));
  assert(await staged.commit(join(dir, "x"), { replace: true, mtime: 1_600_000_000_000 }));
  const info = await Deno.stat(join(dir, "x"));
  assert.equal(info.size, SMALL_FILE_MAX);
  assert.equal(info.mtime?.getTime(), 1_600_000_000_000);
  // 0o600 survives any usual umask (022, 027, 077).
  if (Deno.build.os !== "windows") assert.equal(info.mode! & 0o777, 0o600);
  assert.equal(await exists(join(dir, "x.part")), false);
});

Deno.test({
  name:
    "a small file's staging path that is not a regular file (a FIFO) is never written on the thread",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using temp = await makeTempDir();
    const fifo = join(temp.path, "x.part");
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(made.code, 0, "mkfifo");
    // A reader that opens the FIFO at once and reads only a second later: a write of more than
    // the pipe holds waits for it.
    const reader = new Deno.Command("sh", {
      args: ["-c", 'exec 3<"$0"; sleep 1; cat <&3 >/dev/null', fifo],
    }).spawn();
    const staged = await StagedFile.open(fifo, { mode: "replace", sync: true, fsync: false });
    let order = "";
    const writing = staged.write(new Uint8Array(1 << 20)).then(() => order += "written ");
    // Written on this thread, the write would hold it until the reader woke: the timer fires
    // only because the write waits elsewhere.
    await new Promise((resolve) => setTimeout(resolve, 50)).then(() => order += "timer ");
    await writing;
    assert.equal(order, "timer written ");
    await staged.discard();
    assert.equal((await reader.status).code, 0);
  },
});
