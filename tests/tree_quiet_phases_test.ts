/**
 * The receiver's long phases that move nothing on the wire: flushing a big file before it reports
 * it done, and `--delete` of a big folder. The receiving end tells the sender that it is at work
 * (KEEPALIVE with the bytes it is flushing and the entries it removed, lib/tree_work.ts), so
 * neither the client's `--stall-timeout` (put -r: the server receives) nor the server's
 * `--idle-timeout` (get -r: the client receives) cuts a transfer that is only busy; and a raw
 * client that claims more than it may is still cut.
 *
 * The receiving program's disk is made slow with the test-only seam `FERRY_TEST_SLOW_DISK`
 * (lib/slow_disk.ts): each commit, and each entry removed, waits its turn, so each phase lasts
 * well past the other end's timeout of 1 s, however quiet or loaded the machine. Raw clients
 * check the bounds of what a receiver may claim, and that only a peer that asked hears of them.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertSuccess,
  ferry,
  makeTempDir,
  type RunResult,
  type ServerProcess,
  startServer,
} from "./harness.ts";
import { summaryOf } from "./tree_helpers.ts";
import { concat, dataWithEnd, Wire, withFakeServer } from "./wire.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { FLUSH_FILE_WORK, REMOVED_AT_MOST } from "../lib/tree_work.ts";

/** The seam, for whichever program receives: `ms` for each commit and each entry removed. */
function slowDisk(ms: number) {
  return {
    env: { FERRY_TEST_SLOW_DISK: String(ms) },
    permissions: ["--allow-env=FERRY_TEST_SLOW_DISK"],
  };
}

/**
 * One commit's wait: a flush five times the other end's timeout, past the four idle periods a
 * server gives a client it has just sent much to (lib/watchdog.ts, `BEHIND_PERIODS`).
 */
const SLOW_FLUSH_MS = 5000;
/** Each entry removed: the folder below takes 3 s to go. */
const SLOW_ENTRY_MS = 300;
/** A file big enough that flushing it may take that long (see `FLUSH_PACE`). */
const BIG = 32 << 20;

async function bigTree(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(`${dir}/big.bin`, new Uint8Array(BIG));
}

/** A folder `doomed` of 9 files (10 entries) beside `keep.txt`, which the sender has too (longer). */
async function treeWithDoomed(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/doomed`, { recursive: true });
  for (let i = 0; i < 9; i++) await Deno.writeTextFile(`${dir}/doomed/f${i}`, "x");
  await Deno.writeTextFile(`${dir}/keep.txt`, "old");
}

/**
 * Asserts that the transfer succeeded on both ends: the client's exit, and the server's log line
 * for `op` (a client that receives has all it needs once it sends its OK, so the server's side is
 * what shows a cut).
 */
async function assertDone(
  result: RunResult,
  server: ServerProcess,
  op: string,
): Promise<Record<string, number>> {
  assertSuccess(result, `${op}; server log:\n${server.lines.join("\n")}`);
  const line = await server.waitForLog(new RegExp(`${op} "`));
  assert.match(line, / ok \d+ files/, server.lines.join("\n"));
  return summaryOf(result);
}

Deno.test("put -r of a big file: the server's flush does not let --stall-timeout cut it", async () => {
  await using srv = await startServer(slowDisk(SLOW_FLUSH_MS));
  await using work = await makeTempDir();
  await bigTree(`${work.path}/src`);
  const result = await ferry(srv, [
    "--stall-timeout",
    "1",
    "--json",
    "put",
    "-r",
    `${work.path}/src`,
    "dst",
  ]);
  const summary = await assertDone(result, srv, "put_tree");
  assert.equal(summary.files, 1);
  assert.equal((await Deno.stat(`${srv.root}/dst/big.bin`)).size, BIG);
});

Deno.test("get -r of a big file: the client's flush does not let the server's idle timeout cut it", async () => {
  await using srv = await startServer({ args: ["--idle-timeout", "1"] });
  await using work = await makeTempDir();
  await bigTree(`${srv.root}/src`);
  const result = await ferry(
    srv,
    ["--json", "get", "-r", "src", `${work.path}/dst`],
    slowDisk(SLOW_FLUSH_MS),
  );
  const summary = await assertDone(result, srv, "get_tree");
  assert.equal(summary.files, 1);
  assert.equal((await Deno.stat(`${work.path}/dst/big.bin`)).size, BIG);
});

Deno.test("put -r --delete of a big folder: the server's removal does not let --stall-timeout cut it", async () => {
  await using srv = await startServer(slowDisk(SLOW_ENTRY_MS));
  await using work = await makeTempDir();
  await Deno.mkdir(`${work.path}/src`);
  await Deno.writeTextFile(`${work.path}/src/keep.txt`, "newer");
  await treeWithDoomed(`${srv.root}/dst`);
  const result = await ferry(srv, [
    "--stall-timeout",
    "1",
    "--json",
    "put",
    "-r",
    "--delete",
    `${work.path}/src`,
    "dst",
  ]);
  const summary = await assertDone(result, srv, "put_tree");
  assert.deepEqual([summary.files, summary.deleted], [1, 1]);
  assert.deepEqual([...Deno.readDirSync(`${srv.root}/dst`)].map((e) => e.name), ["keep.txt"]);
});

Deno.test("get -r --delete of a big folder: the client's removal does not let the server's idle timeout cut it", async () => {
  await using srv = await startServer({ args: ["--idle-timeout", "1"] });
  await using work = await makeTempDir();
  await Deno.mkdir(`${srv.root}/src`);
  await Deno.writeTextFile(`${srv.root}/src/keep.txt`, "newer");
  await treeWithDoomed(`${work.path}/dst`);
  const result = await ferry(
    srv,
    ["--json", "get", "-r", "--delete", "src", `${work.path}/dst`],
    slowDisk(SLOW_ENTRY_MS),
  );
  const summary = await assertDone(result, srv, "get_tree");
  assert.deepEqual([summary.files, summary.deleted], [1, 1]);
  assert.deepEqual([...Deno.readDirSync(`${work.path}/dst`)].map((e) => e.name), ["keep.txt"]);
});

// ------------------------------------------------------------------ claims that do not hold

/** The server's answer that ends a transfer: the first ERROR, whatever comes before it. */
async function refusal(wire: Wire): Promise<Record<string, unknown>> {
  let frame = await wire.readFrame();
  while (frame && frame.type !== FrameType.ERROR) frame = await wire.readFrame();
  assert.ok(frame, "an ERROR before the server closes");
  return frame.json!;
}

/**
 * A raw get -r of the server's folder `t` (one file of 6 bytes), asking for the receiver's work
 * notices when `phases`: wants the file and reads it up to the server's FINISH.
 */
async function rawGet(server: ServerProcess, phases: boolean): Promise<Wire> {
  const wire = await Wire.connect(server);
  const welcome = await wire.handshake();
  assert.ok((welcome.features as string[]).includes("phase-work"), "the server takes part");
  await wire.write(encodeControl(FrameType.REQUEST, {
    op: "get_tree",
    name: "t",
    ...(phases ? { phase_work: true } : {}),
  }));
  await wire.expectFrame(FrameType.OK, "accepted");
  await wire.expectFrame(FrameType.MANIFEST, "manifest");
  await wire.write(encodeControl(FrameType.WANT, { want: [0] }));
  await wire.expectFrame(FrameType.FILE, "file");
  let frame = await wire.readFrame();
  while (frame && frame.type !== FrameType.FINISH) frame = await wire.readFrame();
  assert.ok(frame, "FINISH");
  return wire;
}

Deno.test("the server takes a get -r client's flushes up to the files it sent, and removals up to a bound, only when agreed", async () => {
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/t`);
  await Deno.writeTextFile(`${server.root}/t/a`, "alpha\n");
  {
    // A file sent counts for 4 MiB of flushing at least, whatever its size: claimed, the
    // transfer ends as usual.
    using wire = await rawGet(server, true);
    await wire.write(encodeControl(FrameType.KEEPALIVE, { flushed: FLUSH_FILE_WORK }));
    await wire.write(encodeControl(FrameType.KEEPALIVE, { removed: 3, work: 1 }));
    await wire.write(encodeControl(FrameType.RESULT, { index: 0, ok: true }));
    const summary = { files: 1, skipped: 0, deleted: 0, failed: 0, bytes: 6 };
    await wire.write(encodeControl(FrameType.OK, summary));
    assert.match(await server.waitForLog(/get_tree "t"/), / ok 1 files/);
  }
  const refused = async (phases: boolean, claim: Record<string, unknown>, message: RegExp) => {
    using wire = await rawGet(server, phases);
    await wire.write(encodeControl(FrameType.KEEPALIVE, claim));
    const error = await refusal(wire);
    assert.equal(error.code, "bad_request", JSON.stringify(claim));
    assert.match(String(error.message), message);
  };
  await refused(true, { flushed: FLUSH_FILE_WORK + 1 }, /more flushing than the files sent/);
  await refused(true, { removed: REMOVED_AT_MOST + 1 }, /more entries removed/);
  await refused(true, { removed: 0 }, /without growing work/);
  // A client that did not ask for them may not send them either.
  await refused(false, { flushed: 1 }, /not agreed: flushed/);
  await refused(false, { removed: 1 }, /not agreed: removed/);
});

/** The KEEPALIVEs a raw put -r of one new file gets from the server, up to its OK. */
async function putNotices(server: ServerProcess, phases: boolean) {
  using wire = await Wire.connect(server);
  // Notices go only to a client that asked for KEEPALIVE, at that interval.
  await wire.handshake({ keepalive: 100 });
  await wire.write(encodeControl(FrameType.REQUEST, {
    op: "put_tree",
    name: phases ? "told" : "untold",
    ...(phases ? { phase_work: true } : {}),
  }));
  await wire.expectFrame(FrameType.OK, "accepted");
  const entries = [{ path: "f", type: "file", size: 6, mtime: 0, mode: 0o644 }];
  await wire.write(encodeControl(FrameType.MANIFEST, { entries, last: true }));
  await wire.expectFrame(FrameType.WANT, "want");
  await wire.write(concat([
    encodeControl(FrameType.FILE, { index: 0, size: 6 }),
    await dataWithEnd(new TextEncoder().encode("alpha\n")),
    encodeControl(FrameType.FINISH, {}),
  ]));
  const notices: Record<string, unknown>[] = [];
  let frame = await wire.readFrame();
  for (; frame && frame.type !== FrameType.OK; frame = await wire.readFrame()) {
    if (frame.type === FrameType.KEEPALIVE) notices.push(frame.json!);
  }
  assert.ok(frame, `OK after ${JSON.stringify(notices)}:\n${server.lines.join("\n")}`);
  return notices;
}

Deno.test("a server flushing for put -r tells a client that asked of it, and only such a client", async () => {
  // Each commit waits 1 s: ten notice intervals of the client's.
  await using server = await startServer(slowDisk(1000));
  const told = await putNotices(server, true);
  assert.ok(told.length > 0, "notices while the file is flushed");
  const flushed = told.map((notice) => notice.flushed as number);
  assert.ok(flushed.every((n, i) => i === 0 ? n > 0 : n > flushed[i - 1]), JSON.stringify(told));
  assert.ok(flushed.at(-1)! <= FLUSH_FILE_WORK, JSON.stringify(told));
  // A client that predates them hears none: it would refuse them.
  assert.deepEqual(await putNotices(server, false), []);
});

/**
 * The KEEPALIVEs a client receiving one file with get -r sends a fake server whose WELCOME has
 * `features`, while its disk takes 1 s over the commit; and whether it asked for them.
 */
async function clientNotices(features: string[]) {
  await using work = await makeTempDir();
  const notices: Record<string, unknown>[] = [];
  let asked: unknown;
  const result = await withFakeServer(
    async (wire, request) => {
      asked = request.phase_work;
      const entries = [{ path: "f", type: "file", size: 6, mtime: 0, mode: 0o644 }];
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, { entries, last: true }),
      ]));
      assert.deepEqual(await wire.expectFrame(FrameType.WANT, "want"), { want: [0] });
      await wire.write(concat([
        encodeControl(FrameType.FILE, { index: 0, size: 6 }),
        await dataWithEnd(new TextEncoder().encode("alpha\n")),
        encodeControl(FrameType.FINISH, {}),
      ]));
      let frame = await wire.readFrame();
      for (; frame && frame.type !== FrameType.OK; frame = await wire.readFrame()) {
        if (frame.type === FrameType.KEEPALIVE) notices.push(frame.json!);
      }
      assert.ok(frame, "the client's OK");
    },
    (port) =>
      ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", `${work.path}/dst`], slowDisk(1000)),
    { welcome: { server: "fake/1", features, keepalive: 100 } },
  );
  assertSuccess(result, "get -r");
  return { asked, notices };
}

Deno.test("a client flushing for get -r tells a server that takes part, and asks only such a server", async () => {
  const told = await clientNotices(["tree", "phase-work"]);
  assert.equal(told.asked, true);
  assert.ok(told.notices.length > 0, "notices while the file is flushed");
  assert.ok(told.notices.every((n) => typeof n.flushed === "number"), JSON.stringify(told));
  // A server that predates them neither hears of them nor is asked.
  assert.deepEqual(await clientNotices(["tree"]), { asked: undefined, notices: [] });
});

Deno.test("--delete entry by entry removes nested folders, and links as links, on both ends", async () => {
  await using srv = await startServer();
  await using work = await makeTempDir();
  const outside = `${work.path}/outside`;
  await Deno.mkdir(`${outside}/deep`, { recursive: true });
  await Deno.writeTextFile(`${outside}/deep/precious`, "keep me");
  /** A doomed folder with files, a nested folder, links to a folder and a file outside. */
  const doomed = async (dir: string) => {
    await treeWithDoomed(dir);
    await Deno.mkdir(`${dir}/doomed/inner/deeper`, { recursive: true });
    await Deno.writeTextFile(`${dir}/doomed/inner/deeper/x`, "x");
    await Deno.symlink(outside, `${dir}/doomed/inner/to-outside`);
    await Deno.symlink(`${outside}/deep/precious`, `${dir}/doomed/to-file`);
  };
  await Deno.mkdir(`${work.path}/src`);
  await Deno.writeTextFile(`${work.path}/src/keep.txt`, "newer");
  await doomed(`${srv.root}/dst`);
  await doomed(`${work.path}/dst`);
  // The server removes entry by entry for a client that asked for KEEPALIVE; the client always.
  const put = await ferry(srv, [
    "--stall-timeout",
    "30",
    "--json",
    "put",
    "-r",
    "--delete",
    `${work.path}/src`,
    "dst",
  ]);
  assert.deepEqual((await assertDone(put, srv, "put_tree")).deleted, 1);
  const get = await ferry(srv, ["--json", "get", "-r", "--delete", "dst", `${work.path}/dst`]);
  assert.deepEqual((await assertDone(get, srv, "get_tree")).deleted, 1);
  for (const dir of [`${srv.root}/dst`, `${work.path}/dst`]) {
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["keep.txt"], dir);
  }
  assert.equal(await Deno.readTextFile(`${outside}/deep/precious`), "keep me");
});
