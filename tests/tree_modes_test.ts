/**
 * What a tree transfer's receiver gives of the sender's permission bits: everything but write for
 * others. A peer cannot make the receiver's files or folders writable by every local user (who
 * could then change a file others download, or plant a symlink in a served folder); a folder that
 * was sticky and world-writable on the sender (`/tmp`'s 1777) would otherwise arrive without its
 * sticky bit, writable by all. And whose folder a tree's own mode and mtime go to: only one the
 * receiver makes for it, never one that was there already (the user's home, `/tmp`, a folder the
 * server shares), on either side, on a rerun, a dry run or after a cut.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  ferry,
  makeTempDir,
  type ServerProcess,
  startServer,
  writeRandomFile,
} from "./harness.ts";
import { changeTimes, cuttingRelay, ok, out, summaryOf } from "./tree_helpers.ts";

/** A tree with a world-writable file, folder and sticky folder, and a group-writable file. */
async function writeOpenTree(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/open`, { recursive: true });
  await Deno.mkdir(`${dir}/drop`);
  await Deno.writeTextFile(`${dir}/open/w.txt`, "w\n");
  await Deno.writeTextFile(`${dir}/g.txt`, "g\n");
  await Deno.chmod(`${dir}/open/w.txt`, 0o666);
  await Deno.chmod(`${dir}/g.txt`, 0o664);
  await Deno.chmod(`${dir}/open`, 0o777);
  await Deno.chmod(`${dir}/drop`, 0o1777);
  await Deno.chmod(dir, 0o777);
}

async function modesOf(dir: string): Promise<Record<string, string>> {
  const mode = async (path: string) => ((await Deno.stat(path)).mode! & 0o7777).toString(8);
  return {
    ".": await mode(dir),
    open: await mode(`${dir}/open`),
    drop: await mode(`${dir}/drop`),
    "open/w.txt": await mode(`${dir}/open/w.txt`),
    "g.txt": await mode(`${dir}/g.txt`),
  };
}

const EXPECTED = { ".": "775", open: "775", drop: "775", "open/w.txt": "664", "g.txt": "664" };

Deno.test({
  name: "put -r and get -r never make a file or folder writable by others on the receiving side",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using work = await makeTempDir();
    await using server = await startServer();
    const src = `${work.path}/t`;
    await writeOpenTree(src);
    await ok(server, ["put", "-r", src, "up"]);
    assert.deepEqual(await modesOf(`${server.root}/up`), EXPECTED, "on the server");

    await writeOpenTree(`${server.root}/down`);
    await ok(server, ["get", "-r", "down", `${work.path}/down`]);
    assert.deepEqual(await modesOf(`${work.path}/down`), EXPECTED, "on the client");

    // A second run over a copy made world-writable since gives it the receiver's bits again.
    await Deno.chmod(`${work.path}/down/open`, 0o777);
    await Deno.utime(`${server.root}/down/open/w.txt`, new Date(), new Date(86_400_000));
    await ok(server, ["get", "-r", "down", `${work.path}/down`]);
    assert.deepEqual(await modesOf(`${work.path}/down`), EXPECTED, "on the client, again");
  },
});

/** The sender's top folder: mode 750, an old mtime. */
const TOP_MODE = 0o750;
const TOP_TIME = new Date(Date.UTC(2019, 5, 6, 7, 8, 9, 123));
/** What a receiver's folder had before a transfer into it. */
const OWN_TIME = new Date(Date.UTC(2022, 1, 2, 3, 4, 5, 678));

/**
 * A tree whose top holds only `sub` (mode 750): a receiver that has `sub` already adds no name
 * to its own top folder, whose mtime then stays exactly as it was.
 */
async function writeTopTree(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/sub`, { recursive: true });
  await Deno.writeTextFile(`${dir}/sub/a.txt`, "alpha\n");
  await Deno.writeTextFile(`${dir}/sub/x.sh`, "#!/bin/sh\n");
  await Deno.chmod(`${dir}/sub/a.txt`, 0o600);
  await Deno.chmod(`${dir}/sub/x.sh`, 0o755);
  await Deno.chmod(`${dir}/sub`, 0o750);
  await Deno.utime(`${dir}/sub`, TOP_TIME, TOP_TIME);
  await Deno.chmod(dir, TOP_MODE);
  await Deno.utime(dir, TOP_TIME, TOP_TIME);
}

/** A folder that is there before the transfer, holding an empty `sub`, of `mode`. */
async function writeOwnFolder(dir: string, mode: number): Promise<void> {
  await Deno.mkdir(`${dir}/sub`, { recursive: true });
  await Deno.chmod(`${dir}/sub`, 0o700);
  await Deno.chmod(dir, mode);
  await Deno.utime(dir, OWN_TIME, OWN_TIME);
}

async function topOf(dir: string): Promise<{ mode: string; mtime: number }> {
  const info = await Deno.stat(dir);
  return { mode: (info.mode! & 0o7777).toString(8), mtime: info.mtime!.getTime() };
}

/** What arrived inside: the sender's modes, nested folder included, and sub's mtime. */
async function assertInside(dir: string): Promise<void> {
  const mode = async (path: string) => ((await Deno.stat(path)).mode! & 0o7777).toString(8);
  assert.deepEqual(
    {
      sub: await mode(`${dir}/sub`),
      "sub/a.txt": await mode(`${dir}/sub/a.txt`),
      "sub/x.sh": await mode(`${dir}/sub/x.sh`),
    },
    { sub: "750", "sub/a.txt": "600", "sub/x.sh": "755" },
    dir,
  );
  assert.equal((await Deno.stat(`${dir}/sub`)).mtime!.getTime(), TOP_TIME.getTime(), "sub");
}

/**
 * Runs `transfer` into the folders `own` (there already, of mode 700), `sticky` (there already,
 * 1777, as `/tmp`) and `fresh` (made by the transfer) under `base`: the first two keep their mode
 * and take the sender's mtime (they hold `sub`, so they are copies), the third takes both; a dry
 * run before changes nothing, and a second run changes nothing (not even a folder's change time).
 */
async function checkTops(
  base: string,
  transfer: (to: string, ...more: string[]) => Promise<string>,
): Promise<void> {
  await writeOwnFolder(`${base}/own`, 0o700);
  await writeOwnFolder(`${base}/sticky`, 0o1777);
  const dry = await transfer("own", "--dry-run");
  assert.equal(dry, "send sub/a.txt\nsend sub/x.sh\n", "a dry run names the files alone");
  assert.deepEqual(await topOf(`${base}/own`), { mode: "700", mtime: OWN_TIME.getTime() }, "dry");
  for (const name of ["own", "sticky", "fresh"]) await transfer(name, "--json");
  assert.deepEqual(await topOf(`${base}/own`), { mode: "700", mtime: TOP_TIME.getTime() });
  assert.deepEqual(await topOf(`${base}/sticky`), { mode: "1777", mtime: TOP_TIME.getTime() });
  assert.deepEqual(await topOf(`${base}/fresh`), { mode: "750", mtime: TOP_TIME.getTime() });
  for (const name of ["own", "sticky", "fresh"]) await assertInside(`${base}/${name}`);

  const names = ["own", "sticky", "fresh", "own/sub", "fresh/sub"];
  const before = await changeTimes(base, names);
  for (const name of ["own", "sticky", "fresh"]) {
    const again = JSON.parse((await transfer(name, "--json")).trim().split("\n").at(-1)!);
    assert.equal(again.files, 0, `nothing sent again into ${name}`);
    // --resume with nothing to resume: the same, and neither touches the top folder.
    await transfer(name, "--resume");
  }
  assert.deepEqual(await changeTimes(base, names), before, "a rerun touches no folder");
  assert.deepEqual(await topOf(`${base}/own`), { mode: "700", mtime: TOP_TIME.getTime() });
}

Deno.test({
  name:
    "get -r leaves an existing destination's mode alone and gives it the sender's mtime; one it makes takes both",
  // GNU stat's %z gives the change time to the nanosecond (Deno's ctime is whole seconds).
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using work = await makeTempDir();
    await using server = await startServer();
    await writeTopTree(`${server.root}/photos`);
    await checkTops(
      work.path,
      async (to, ...more) =>
        out(await ok(server, ["get", "-r", "photos", `${work.path}/${to}`, ...more])),
    );
  },
});

Deno.test({
  name:
    "put -r leaves an existing remote folder's mode alone and gives it the sender's mtime; one it makes takes both",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using work = await makeTempDir();
    await using server = await startServer();
    await writeTopTree(`${work.path}/photos`);
    await checkTops(
      server.root,
      async (to, ...more) =>
        out(await ok(server, ["put", "-r", `${work.path}/photos`, to, ...more])),
    );
  },
});

/**
 * Cuts `args` (a tree transfer of `src` into `dest`, which is not there yet) in the middle of a big
 * file: the folder made for the tree has the sender's mode from its first manifest on, so the cut
 * leaves it so, and the rerun with `--resume`, which finds the folder there, keeps it and gives it
 * the sender's mtime again (the files it wrote there changed it).
 */
async function checkCutTop(
  server: ServerProcess,
  src: string,
  dest: string,
  args: string[],
  up: boolean,
): Promise<void> {
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/a.txt`, "alpha\n");
  await writeRandomFile(`${src}/big.bin`, 4 << 20);
  await Deno.chmod(src, TOP_MODE);
  await Deno.utime(src, TOP_TIME, TOP_TIME);
  const relay = cuttingRelay(server, 2 << 20, up);
  const cut = await ferry({ host: "127.0.0.1", port: relay.port }, args);
  await relay.close();
  assertFailure(cut, /^ferry: /, { what: `${args.join(" ")} cut` });
  if (up) await server.waitForLog(/ put_tree .*interrupted/);
  assert.equal((await topOf(dest)).mode, "750", "the cut leaves the sender's mode");
  const again = await ferry(server, [...args, "--resume", "--json"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(summaryOf(again).failed, 0);
  assert.deepEqual(await topOf(dest), { mode: "750", mtime: TOP_TIME.getTime() }, "the rerun");
}

Deno.test({
  name:
    "a folder made for a tree has the sender's mode even when the run is cut; the rerun keeps it",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using work = await makeTempDir();
    await using server = await startServer();
    const down = `${work.path}/down`;
    await checkCutTop(server, `${server.root}/down`, down, ["get", "-r", "down", down], false);
    const up = `${work.path}/up`;
    await checkCutTop(server, up, `${server.root}/up`, ["put", "-r", up], true);
  },
});
