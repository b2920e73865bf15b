/**
 * Integration tests of the interrupted uploads the server keeps for `put --resume` (issue 13):
 * their budget and its eviction oldest first, a full disk on which kept uploads give way to a new
 * upload, the kept query (allowed, refused, and escaped on the client), their expiry, and keeping
 * turned off. Uploads are interrupted by cutting a raw connection (tests/wire.ts) once the server
 * has the bytes, so exactly those bytes are kept.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { parseServerArgs } from "../lib/server_args.ts";
import { KeptUploads } from "../lib/kept_uploads.ts";
import { join } from "node:path";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  type Endpoint,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  randomBytes,
  RESUME_DIR,
  runClient,
  type ServerProcess,
  startServer,
  waitFor,
  waitForStagingData,
} from "./harness.ts";
import { MOUNT_ALLOWED, withTmpfs } from "./tmpfs.ts";
import { checksumOf, concat, dataFrame, Wire, withFakeServer } from "./wire.ts";

const MiB = 1 << 20;
const decoder = new TextDecoder();

/** The kept query's JSON entries, as the client prints them. */
interface KeptJson {
  name: string;
  bytes: number;
  size: number | null;
  keptAt: string;
  expiresAt: string;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Starts an upload of `name` announcing `size` bytes on a raw connection, sends `data` (its
 * first bytes), waits until the server has all of them in staging, and cuts the connection: the
 * client went away. Resolves with the server's log line for the request.
 */
async function interruptUpload(
  server: ServerProcess,
  name: string,
  data: Uint8Array,
  size: number,
): Promise<string> {
  {
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op: "put", name, size, overwrite: false }));
    await wire.expectFrame(FrameType.OK, `put ${name} accepted`);
    await wire.write(dataFrame(data));
    await waitForStagingData(server.root, data.length);
  }
  const quoted = escapeRegExp(JSON.stringify(name));
  return await server.waitForLog(new RegExp(` put ${quoted} ${data.length} bytes interrupted`));
}

/** {@link interruptUpload}, and the server must say it kept the bytes. */
async function leaveKept(
  server: ServerProcess,
  name: string,
  data: Uint8Array,
  size: number,
): Promise<void> {
  const line = await interruptUpload(server, name, data, size);
  assert.match(line, /interrupted, kept for resume \(client went away: .*\), until \d{4}-/, line);
}

/** Runs `kept --json` against `endpoint` and returns what it listed. */
async function keptJson(endpoint: Endpoint): Promise<KeptJson[]> {
  const result = await ferry(endpoint, ["kept", "--json"]);
  assertSuccess(result, "kept --json");
  return JSON.parse(decoder.decode(result.stdout));
}

/** The names `kept --json` lists, oldest first. */
async function keptNames(endpoint: Endpoint): Promise<string[]> {
  return (await keptJson(endpoint)).map((entry) => entry.name);
}

/** The `.part` files in the server's kept folder, for what the disk really holds. */
async function keptParts(root: string): Promise<string[]> {
  return (await listDir(`${root}/${RESUME_DIR}`)).filter((name) => name.endsWith(".part"));
}

/** Lines of the server log that record a kept upload being removed. */
function evictions(server: ServerProcess): string[] {
  return server.lines.filter((line) => / evicted kept upload /.test(line));
}

// ---------------------------------------------------------------------------------- budget

Deno.test("kept uploads stay within --keep-budget: the oldest is evicted first, and one over the budget alone is not kept", async () => {
  await using server = await startServer({ args: ["--keep-budget", "3M", "--show-kept"] });
  await server.waitForLog(
    /interrupted uploads kept for put --resume: budget 3\.00 MiB, each for 24 h; 0 kept now/,
  );
  const part = randomBytes(1.25 * MiB);
  await leaveKept(server, "a.bin", part, 4 * MiB);
  await leaveKept(server, "b.bin", part, 4 * MiB);
  assert.deepEqual(await keptNames(server), ["a.bin", "b.bin"], "2.5 MiB fit in 3 MiB");
  assert.deepEqual(evictions(server), []);

  // A third puts the total at 3.75 MiB: the oldest goes, and the log says which and why.
  await leaveKept(server, "c.bin", part, 4 * MiB);
  const kept = await keptJson(server);
  assert.deepEqual(kept.map((entry) => entry.name), ["b.bin", "c.bin"]);
  const evicted = evictions(server);
  assert.equal(evicted.length, 1, evicted.join("\n"));
  assert.match(
    evicted[0],
    /evicted kept upload "a\.bin" 1310720 bytes: over the keep budget of 3\.00 MiB$/,
  );
  assert.equal((await keptParts(server.root)).length, 2, "a.bin's bytes left the disk");
  for (const entry of kept) {
    assert.equal(entry.bytes, 1.25 * MiB, JSON.stringify(entry));
    assert.equal(entry.size, 4 * MiB, JSON.stringify(entry));
    const keptFor = Date.parse(entry.expiresAt) - Date.parse(entry.keptAt);
    assert.equal(keptFor, 24 * 3600_000, `kept for the default 24 h: ${JSON.stringify(entry)}`);
  }

  // One upload that alone is over the budget is not kept, and costs the others nothing.
  const line = await interruptUpload(server, "huge.bin", randomBytes(3.5 * MiB), 8 * MiB);
  assert.match(
    line,
    /interrupted, discarded \(client went away: .*\): over the keep budget of 3\.00 MiB \d+\.\d+s$/,
    line,
  );
  assert.deepEqual(await keptNames(server), ["b.bin", "c.bin"]);
  assert.equal(evictions(server).length, 1);
});

Deno.test("kept uploads expire after --keep-for", async () => {
  await using server = await startServer({ args: ["--keep-for", "1s", "--show-kept"] });
  await leaveKept(server, "short.bin", randomBytes(1.25 * MiB), 2 * MiB);
  await waitFor("the kept upload to expire", async () => (await keptNames(server)).length === 0, {
    timeoutMs: 15000,
  });
  await server.waitForLog(/evicted kept upload "short\.bin" 1310720 bytes: expired after 1 s$/);
  assert.deepEqual(await keptParts(server.root), []);
});

// ------------------------------------------------------------------------------- full disk

Deno.test({
  name:
    "on a full disk, kept uploads give way oldest first to new uploads, but never the one being resumed",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const disk = `${base.path}/disk`;
    // Well under the default budget: only the disk can run out.
    await withTmpfs(disk, "size=8m", async () => {
      await using server = await startServer({ root: `${disk}/root`, args: ["--show-kept"] });
      const local = `${base.path}/a.bin`;
      const whole = randomBytes(6 * MiB);
      await Deno.writeFile(local, whole);
      // 6 MiB kept on an 8 MiB disk: the oldest is the one about to be resumed.
      await leaveKept(server, "a.bin", whole.subarray(0, 2 * MiB), whole.length);
      await leaveKept(server, "b.bin", randomBytes(2 * MiB), 6 * MiB);
      await leaveKept(server, "c.bin", randomBytes(2 * MiB), 6 * MiB);

      // Resuming a.bin needs 4 MiB more than the 2 MiB free: b.bin and c.bin make way.
      const resumed = await ferry(server, ["put", local, "--resume", "--json"]);
      assertSuccess(resumed, "put --resume on a full disk");
      assert.equal(JSON.parse(decoder.decode(resumed.stdout)).resumedFrom, 2 * MiB);
      assert.ok(await filesEqual(local, `${server.root}/a.bin`), "a.bin stored whole");
      const made = evictions(server);
      assert.ok(made.length >= 1, `something made room:\n${server.lines.join("\n")}`);
      assert.match(
        made[0],
        /evicted kept upload "b\.bin" 2097152 bytes: the disk is full and "a\.bin" needs the space$/,
      );
      assert.ok(made.every((line) => !/upload "a\.bin"/.test(line)), made.join("\n"));

      // A fresh upload too. With the disk emptied (as an operator would), three new kept uploads
      // fill it again, and a 4 MiB put still succeeds by evicting the oldest of them first.
      await Deno.remove(`${server.root}/a.bin`);
      for (const name of await listDir(`${server.root}/${RESUME_DIR}`)) {
        await Deno.remove(`${server.root}/${RESUME_DIR}/${name}`);
      }
      const before = evictions(server).length;
      for (const name of ["d.bin", "e.bin", "f.bin"]) {
        await leaveKept(server, name, randomBytes(2 * MiB), 6 * MiB);
      }
      const fresh = randomBytes(4 * MiB);
      const put = await ferry(server, ["put", "-", "new.bin"], { stdin: fresh });
      assertSuccess(put, "put of a stream on a full disk");
      assert.deepEqual(await Deno.readFile(`${server.root}/new.bin`), fresh);
      const room = evictions(server).slice(before);
      assert.ok(room.every((line) => /"new\.bin" needs the space$/.test(line)), room.join("\n"));
      const order = room.map((line) => /upload "([^"]+)"/.exec(line)![1]);
      const oldest = ["d.bin", "e.bin", "f.bin"];
      assert.deepEqual(order, oldest.slice(0, order.length), "oldest first");
      assert.ok(order.length >= 1 && order.length < oldest.length, `evicted ${order}`);
      assert.deepEqual(await keptNames(server), oldest.slice(order.length), "the rest stay");

      // With nothing left to evict, a disk full of real files still says so.
      const tooBig = await ferry(server, ["put", "-", "big.bin"], { stdin: randomBytes(8 * MiB) });
      assertFailure(tooBig, /out of disk space/, { what: "8 MiB put onto the full disk" });
      assert.deepEqual(await keptNames(server), [], "every kept upload made way first");
    });
  },
});

// -------------------------------------------------------------------------------- kept query

Deno.test("the kept query lists kept uploads when the server allows it, and is refused in one line otherwise", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  {
    await using server = await startServer({ root });
    await leaveKept(server, "dir/half.bin", randomBytes(1.5 * MiB), 4 * MiB);
    const refused = await ferry(server, ["kept"]);
    assertFailure(
      refused,
      /^ferry: Refused by server: This server does not show its kept uploads \(its operator can allow it with --show-kept\)$/,
      { what: "kept without --show-kept" },
    );
    await server.waitForLog(/ kept - 0 bytes refused \(denied: /);
    // A refusal before any data: the connection stays in step for the next request.
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op: "kept" }));
    const denied = await wire.expectFrame(FrameType.ERROR, "kept refused");
    assert.equal(denied.code, "denied", JSON.stringify(denied));
    await wire.write(encodeControl(FrameType.REQUEST, { op: "list" }));
    await wire.expectFrame(FrameType.OK, "list on the same connection");
    await server.waitForLog(
      /; 0 kept now \(0 B\) in \.ferry-resume; kept query refused \(--show-kept\)$/,
    );
  }
  // Restarted on the same root: the banner counts what the last run kept, and the query works.
  await using server = await startServer({ root, args: ["--show-kept"] });
  await server.waitForLog(/; 1 kept now \(1\.50 MiB\) in \.ferry-resume; kept query allowed/);
  const text = await ferry(server, ["kept"]);
  assertSuccess(text, "kept");
  assert.match(
    decoder.decode(text.stdout),
    /^1\.50 MiB of 4\.00 MiB {2}until \d{4}-\d\d-\d\d \d\d:\d\d {2}dir\/half\.bin\n1 kept upload, 1\.50 MiB\n$/,
  );
  const [entry, ...rest] = await keptJson(server);
  assert.deepEqual(rest, []);
  assert.equal(entry.name, "dir/half.bin");
  assert.equal(entry.bytes, 1.5 * MiB);

  // The seed protocol has no such request: refused before connecting.
  const legacy = await runClient(["--legacy", "127.0.0.1", "1", "kept"]);
  assertUsageError(legacy, "ferry", {
    what: "kept with --legacy",
    pattern: /kept is not available with --legacy/,
  });
});

Deno.test("kept names from a server are shown escaped, as list shows them", async () => {
  const names = ["\u001b[2Jwiped", "two\nlines", "rtl\u202etxt.exe"];
  const listing = new TextEncoder().encode(JSON.stringify(names.map((name, i) => ({
    name,
    bytes: MiB,
    size: 2 * MiB,
    keptAt: i,
    expiresAt: 86_400_000 + i,
  }))));
  for (const json of [false, true]) {
    const result = await withFakeServer(async (wire, request) => {
      assert.deepEqual(request, { op: "kept" });
      await wire.write(concat([
        encodeControl(FrameType.OK, { size: listing.length }),
        dataFrame(listing),
        encodeControl(FrameType.END, {
          size: listing.length,
          checksum: await checksumOf(listing),
        }),
      ]));
      await wire.readToEnd();
    }, (port) => runClient(["127.0.0.1", String(port), "kept", ...(json ? ["--json"] : [])]));
    assertSuccess(result, `kept ${json ? "--json" : ""} from a hostile server`);
    const out = decoder.decode(result.stdout);
    assert.ok(
      !/[\u202e]/.test(out) && !out.includes("\u001b"),
      `nothing raw reaches the terminal:\n${out}`,
    );
    if (json) {
      assert.deepEqual(JSON.parse(out).map((e: KeptJson) => e.name), names);
    } else {
      const lines = out.split("\n");
      assert.equal(lines.length, names.length + 2, out);
      assert.match(lines[0], /"\\u001b\[2Jwiped"$/);
      assert.match(lines[1], /"two\\nlines"$/);
      assert.match(lines[2], /"rtl\\u202etxt\.exe"$/);
    }
  }
});

// ---------------------------------------------------------------------------------- keeping off

Deno.test("with keeping off, an interrupted upload is discarded, put --resume starts over, and what was kept goes at start", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  const local = `${base.path}/off.bin`;
  const whole = randomBytes(3 * MiB);
  await Deno.writeFile(local, whole);
  {
    await using server = await startServer({ root });
    await leaveKept(server, "earlier.bin", randomBytes(1.5 * MiB), 4 * MiB);
  }
  for (const args of [["--no-keep"], ["--keep-budget", "0"]]) {
    await using server = await startServer({ root, args: [...args, "--show-kept"] });
    await server.waitForLog(/interrupted uploads are discarded, not kept for put --resume/);
    assert.deepEqual(await keptParts(root), [], `${args}: nothing kept from before`);
    if (args[0] === "--no-keep") {
      assert.match(
        evictions(server).join("\n"),
        /evicted kept upload "earlier\.bin" 1572864 bytes: keeping is off$/,
      );
    }
    const line = await interruptUpload(server, "off.bin", whole.subarray(0, 2 * MiB), whole.length);
    assert.match(
      line,
      /interrupted, discarded \(client went away: .*\): keeping is off \d+\.\d+s$/,
      line,
    );
    assert.deepEqual(await keptParts(root), [], `${args}: the interrupted upload is not kept`);
    assert.deepEqual(await keptNames(server), []);

    const resumed = await ferry(server, ["put", local, "--resume", "--json"]);
    assertSuccess(resumed, `${args}: put --resume`);
    assert.equal(JSON.parse(decoder.decode(resumed.stdout)).resumedFrom, 0, "started over");
    assert.ok(await filesEqual(local, `${root}/off.bin`));
    await Deno.remove(`${root}/off.bin`);
  }
});

Deno.test("--keep-budget, --keep-for and --no-keep are checked", () => {
  const serve = (args: string[]) => parseServerArgs(["0", ...args]);
  assert.equal(serve([]).keepBudget, 16 * 2 ** 30, "16 GiB by default");
  assert.equal(serve([]).keepForMs, 24 * 3600_000, "24 h by default");
  assert.equal(serve([]).showKept, false, "the kept query is refused by default");
  assert.equal(serve(["--keep-budget", "2G"]).keepBudget, 2 * 2 ** 30);
  assert.equal(serve(["--keep-budget", "0"]).keepBudget, 0);
  assert.equal(serve(["--no-keep"]).keepBudget, 0);
  assert.equal(serve(["--keep-for", "90"]).keepForMs, 90_000);
  assert.equal(serve(["--keep-for", "30m"]).keepForMs, 1_800_000);
  assert.equal(serve(["--keep-for", "7d"]).keepForMs, 7 * 86_400_000);
  assert.equal(serve(["--show-kept"]).showKept, true);
  for (
    const [args, pattern] of [
      [["--keep-budget", "lots"], /Invalid --keep-budget "lots"/],
      [["--keep-budget=-1"], /Invalid --keep-budget "-1"/],
      [["--keep-for", "0"], /Invalid --keep-for "0"/],
      [["--keep-for", "1w"], /Invalid --keep-for "1w"/],
      [["--no-keep", "--keep-budget", "1G"], /--no-keep contradicts --keep-budget/],
    ] as const
  ) {
    assert.throws(() => serve([...args]), pattern, args.join(" "));
  }
});

Deno.test("a put drops what is kept for its name, even when the folder was empty a moment before", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kept = new KeptUploads(join(dir, "kept"), { budget: 1 << 20 });
    await Deno.mkdir(join(dir, "kept"));
    // Empty: the store's scan at start finds nothing, and drops cost nothing after it.
    assert.equal((await kept.prune()).count, 0);
    assert.equal(await kept.drop("a.txt"), false);
    const staged = join(dir, "a.part");
    await Deno.writeTextFile(staged, "abc");
    // Asked for without waiting: the drop queued after it must still find it.
    const keeping = kept.keep(staged, "a.txt", 10);
    const dropped = kept.drop("a.txt");
    assert.equal((await keeping).kept, true);
    assert.equal(await dropped, true);
    assert.equal(await kept.drop("a.txt"), false);
    assert.deepEqual(await kept.list(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
