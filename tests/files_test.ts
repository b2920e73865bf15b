/**
 * `mput` and `mget` over the pipelined path of trees, against the real server and client: one
 * exchange for many files (the server's log has one line for them), each file still reported on
 * its own (text and `--json`), refused on its own (a name that is taken, a missing file), exit 1
 * if any failed; files sharing a name meet as one put after another would; the per-file path
 * when the server predates folders or `--limit-rate` asks for it; and a hostile server that
 * sends what mget did not ask for.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { createChecksum } from "../lib/checksum.ts";
import { assertSuccess, ferry, makeTempDir, startServer, stderrLines } from "./harness.ts";
import {
  concat,
  dataFrame as rawData,
  serveOnce,
  TREE_PEER,
  Wire,
  withFakeServer,
} from "./wire.ts";

const decoder = new TextDecoder();

async function checksum(bytes: Uint8Array): Promise<string> {
  const c = await createChecksum();
  c.update(bytes);
  return c.digest();
}

function reports(stdout: Uint8Array): Record<string, unknown>[] {
  return decoder.decode(stdout).trim().split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

Deno.test("mput sends many files over one exchange, each reported and refused on its own", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const names = Array.from({ length: 120 }, (_, i) => `f${String(i).padStart(3, "0")}.txt`);
  for (const [i, name] of names.entries()) {
    await Deno.writeTextFile(`${work.path}/${name}`, `file ${i}\n`.repeat(i + 1));
  }
  const put = await ferry(server, ["mput", ...names, "--json"], { cwd: work.path });
  assertSuccess(put, "mput");
  const sent = reports(put.stdout);
  assert.equal(sent.length, names.length);
  for (const report of sent) {
    const bytes = await Deno.readFile(`${work.path}/${report.name}`);
    assert.equal(report.size, bytes.length);
    assert.equal(report.checksum, await checksum(bytes), `${report.name}'s checksum`);
    assert.deepEqual(await Deno.readFile(`${server.root}/${report.name}`), bytes);
  }
  // One exchange: one log line for all of them, none per file.
  await server.waitForLog(/ put_files - \d+ bytes ok 120 files, 0 skipped, 0 deleted, 0 failed /);
  assert.equal(server.lines.filter((l) => / put "/.test(l)).length, 0, "no put per file");

  // Again: every name is taken. Each is refused on its own, with the hint, before its bytes go.
  await Deno.writeTextFile(`${work.path}/new.txt`, "new\n");
  const again = await ferry(server, ["mput", names[0], "new.txt", "missing.txt"], {
    cwd: work.path,
  });
  assert.equal(again.code, 1, again.stderr);
  const lines = stderrLines(again);
  assert.ok(lines.includes("ferry: Cannot read missing.txt: no such file"), again.stderr);
  assert.ok(
    lines.includes(
      `ferry: Refused by server: File exists: "${names[0]}" (use --overwrite to replace it)`,
    ),
    again.stderr,
  );
  assert.ok(lines.some((l) => /^Uploaded new\.txt as "new\.txt": 4 B in /.test(l)), again.stderr);
  assert.equal(lines.at(-1), "ferry: 2 of 3 files failed");
  await server.waitForLog(/ put_files - 4 bytes ok 1 files, 0 skipped, 0 deleted, 1 failed /);

  // --overwrite replaces them, still in one exchange.
  await Deno.writeTextFile(`${work.path}/${names[1]}`, "changed\n");
  const over = await ferry(server, ["mput", names[1], "new.txt", "--overwrite", "--quiet"], {
    cwd: work.path,
  });
  assertSuccess(over, "mput --overwrite");
  assert.equal(await Deno.readTextFile(`${server.root}/${names[1]}`), "changed\n");
});

Deno.test("mput: files sharing a name meet as one put after another would", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await Deno.mkdir(`${work.path}/a`);
  await Deno.mkdir(`${work.path}/b`);
  await Deno.writeTextFile(`${work.path}/a/x`, "from a\n");
  await Deno.writeTextFile(`${work.path}/b/x`, "from b\n");
  const first = await ferry(server, ["mput", "a/x", "b/x"], { cwd: work.path });
  assert.equal(first.code, 1);
  assert.match(first.stderr, /File exists: "x"/);
  assert.equal(await Deno.readTextFile(`${server.root}/x`), "from a\n");
  const second = await ferry(server, ["mput", "a/x", "b/x", "--overwrite"], { cwd: work.path });
  assertSuccess(second, "mput --overwrite");
  assert.equal(await Deno.readTextFile(`${server.root}/x`), "from b\n", "the later one wins");
});

Deno.test("mget fetches many files in few exchanges, each reported; missing and existing fail alone", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  // More names than one request carries (1,024): two exchanges.
  const names = Array.from({ length: 1100 }, (_, i) => `g${i}.txt`);
  for (const [i, name] of names.entries()) {
    await Deno.writeTextFile(`${server.root}/${name}`, `${i}\n`);
  }
  const dest = `${work.path}/dest`;
  await Deno.mkdir(dest);
  const got = await ferry(server, ["mget", ...names, "--json"], { cwd: dest });
  assertSuccess(got, "mget");
  assert.equal(reports(got.stdout).length, names.length);
  for (const name of [names[0], names[1099]]) {
    assert.equal(
      await Deno.readTextFile(`${dest}/${name}`),
      await Deno.readTextFile(`${server.root}/${name}`),
    );
  }
  await server.waitForLog(/ get_files - \d+ bytes ok 1024 files, /);
  await server.waitForLog(/ get_files - \d+ bytes ok 76 files, /);
  assert.equal(server.lines.filter((l) => / get "/.test(l)).length, 0, "no get per file");
  assert.deepEqual([...Deno.readDirSync(dest)].filter((e) => e.name.endsWith(".part")), []);

  await Deno.remove(`${dest}/${names[2]}`);
  const again = await ferry(server, ["mget", names[0], "nope.txt", names[2], "--json"], {
    cwd: dest,
  });
  assert.equal(again.code, 1, again.stderr);
  const lines = stderrLines(again);
  assert.ok(
    lines.includes(`ferry: Local file exists: ${names[0]} (use --force to replace it)`),
    again.stderr,
  );
  assert.ok(lines.includes('ferry: Refused by server: No such file: "nope.txt"'), again.stderr);
  assert.equal(lines.at(-1), "ferry: 2 of 3 files failed");
  const byName = new Map(reports(again.stdout).map((r) => [r.name, r]));
  assert.equal(byName.get("nope.txt")?.ok, false);
  assert.equal(byName.get(names[2])?.size, 2);
  assert.equal(await Deno.readTextFile(`${dest}/${names[2]}`), "2\n");
  assert.equal(await Deno.readTextFile(`${dest}/${names[0]}`), "0\n");
});

Deno.test("mput and mget go file by file with --limit-rate, and against a server without folders", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await Deno.writeTextFile(`${work.path}/one.txt`, "1\n");
  await Deno.writeTextFile(`${work.path}/two.txt`, "22\n");
  const paced = await ferry(server, ["mput", "one.txt", "two.txt", "--limit-rate", "1M"], {
    cwd: work.path,
  });
  assertSuccess(paced, "mput --limit-rate");
  await server.waitForLog(/ put "two\.txt" 3 bytes ok /);
  assert.equal(server.lines.filter((l) => / put_files /.test(l)).length, 0);

  // A server that predates folders: no "tree" feature, so one plain put per file.
  const old = await serveOnce(
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake();
      for (const expected of ["one.txt", "two.txt"]) {
        const request = await wire.expectFrame(FrameType.REQUEST, "request");
        assert.equal(request.op, "put");
        assert.equal(request.name, expected);
        await wire.write(encodeControl(FrameType.OK, {}));
        const chunks: Uint8Array[] = [];
        while (true) {
          const frame = await wire.readFrame();
          assert.ok(frame, "data phase");
          if (frame.type === FrameType.DATA) chunks.push(frame.payload);
          else {
            assert.equal(frame.type, FrameType.END);
            break;
          }
        }
        const bytes = concat(chunks);
        await wire.write(
          encodeControl(FrameType.OK, { size: bytes.length, checksum: await checksum(bytes) }),
        );
      }
      await wire.waitForClose(10000);
    },
    (port) =>
      ferry({ host: "127.0.0.1", port }, ["mput", "one.txt", "two.txt"], { cwd: work.path }),
  );
  assertSuccess(old, "mput against an older server");
  assert.equal(stderrLines(old).filter((l) => l.startsWith("Uploaded ")).length, 2);
});

Deno.test("mget refuses a hostile server's file it did not ask for, and writes nothing", async () => {
  await using work = await makeTempDir();
  const manifests: [string, Record<string, unknown>[], RegExp][] = [
    [
      "another name",
      [{ path: "../evil", type: "file", size: 4, mtime: 0, mode: 0o644 }],
      /not asked for/,
    ],
    [
      "a folder",
      [{ path: "a.txt", type: "dir", size: 0, mtime: 0, mode: 0o755 }],
      /folder in a transfer of files/,
    ],
  ];
  for (const [what, entries, pattern] of manifests) {
    const result = await withFakeServer(
      async (wire, request) => {
        assert.deepEqual(request.names, ["a.txt"]);
        await wire.write(concat([
          encodeControl(FrameType.OK, {}),
          encodeControl(FrameType.MANIFEST, { entries, last: true }),
        ]));
        // The client may answer before it reads the file it did not ask for.
        const frame = await wire.readFrame();
        if (frame?.type === FrameType.WANT) {
          await wire.write(concat([
            encodeControl(FrameType.FILE, { index: 0, size: 4 }),
            encodeControl(FrameType.END, { size: 0, checksum: await checksum(new Uint8Array(0)) }),
          ]));
        }
        await wire.waitForClose(10000);
      },
      (port) => ferry({ host: "127.0.0.1", port }, ["mget", "a.txt"], { cwd: work.path }),
      TREE_PEER,
    );
    // The whole exchange stops; each file of it is reported failed, and nothing is written.
    assert.equal(result.code, 1, `${what}: ${result.stderr}`);
    assert.match(result.stderr, pattern, what);
    assert.match(result.stderr, /^ferry: 1 of 1 files failed$/m, what);
  }
  assert.deepEqual([...Deno.readDirSync(work.path)], [], "nothing written");
  assert.deepEqual([...Deno.readDirSync(`${work.path}/..`)].filter((e) => e.name === "evil"), []);
});

Deno.test("the server refuses each bad name of a hostile put_files on its own, and stays inside its root", async () => {
  await using server = await startServer();
  const file = (path: string) => ({ path, type: "file", size: 2, mtime: 0, mode: 0o644 });
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "put_files", overwrite: true }));
  await wire.expectFrame(FrameType.OK, "accepted");
  const entries = ["../escape", ".ferry-staging/x", "/abs", "ok.txt"].map(file);
  await wire.write(encodeControl(FrameType.MANIFEST, { entries, last: true }));
  const results: Record<string, unknown>[] = [];
  let want: Record<string, unknown> | undefined;
  while (!want) {
    const frame = await wire.readFrame();
    assert.ok(frame?.json, "RESULTs, then WANT");
    if (frame.type === FrameType.RESULT) results.push(frame.json);
    else if (frame.type === FrameType.WANT) want = frame.json;
    else assert.fail(`unexpected frame ${frame.type}`);
  }
  assert.deepEqual(results.map((r) => [r.index, r.ok, r.code]), [
    [0, false, "bad_name"],
    [1, false, "bad_name"],
    [2, false, "bad_name"],
  ]);
  assert.deepEqual(want, { want: [3] });
  const bytes = new TextEncoder().encode("ok");
  await wire.write(concat([
    encodeControl(FrameType.FILE, { index: 3, size: 2 }),
    rawData(bytes),
    encodeControl(FrameType.END, { size: 2, checksum: await checksum(bytes) }),
    encodeControl(FrameType.FINISH, {}),
  ]));
  assert.deepEqual(await wire.expectFrame(FrameType.RESULT, "ok.txt"), { index: 3, ok: true });
  const summary = await wire.expectFrame(FrameType.OK, "summary");
  assert.equal(summary.files, 1);
  assert.equal(summary.failed, 3);
  assert.equal(await Deno.readTextFile(`${server.root}/ok.txt`), "ok");
  assert.deepEqual(
    [...Deno.readDirSync(server.base)].map((e) => e.name).filter((n) => n === "escape"),
    [],
  );
});
