/**
 * Hostile manifests in both directions for `put -r` and `get -r`: a fake server that tries to
 * make `get -r` write outside LOCALDIR (names, links, notes, a local symlink named as a folder),
 * and a raw client that tries to make the server leave its root or resume from bytes it never
 * kept.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { createChecksum } from "../lib/checksum.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  makeTempDir,
  pathExists,
  spawnClient,
  startServer,
  stderrLines,
  waitFor,
} from "./harness.ts";
import {
  checksumOf,
  concat,
  dataWithEnd,
  type FakeScript,
  TREE_PEER,
  Wire,
  withFakeServer,
} from "./wire.ts";
import { dir, file, snapshot } from "./tree_helpers.ts";

// ------------------------------------------------------------------------- hostile manifests

/** A fake server's answer to get_tree: `entries` as its manifest. */
function hostileManifest(
  entries: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): FakeScript {
  return async (wire, request) => {
    assert.equal(request.op, "get_tree");
    await wire.write(concat([
      encodeControl(FrameType.OK, {}),
      encodeControl(FrameType.MANIFEST, { entries, last: true, ...extra }),
    ]));
    await wire.waitForClose(10000);
  };
}

Deno.test("get -r refuses a hostile server's manifest and writes nothing outside LOCALDIR", async () => {
  await using work = await makeTempDir();
  const outside = `${work.path}/outside`;
  await Deno.mkdir(outside);
  const local = `${work.path}/in/dest`;
  await Deno.mkdir(local, { recursive: true });
  await Deno.symlink(outside, `${local}/link`);
  const manifests = [
    ["dot-dot", [file("../evil")], /"\.\." is not allowed/],
    ["deep dot-dot", [dir("a"), file("a/../../evil")], /"\.\." is not allowed/],
    ["absolute", [file(`${outside}/evil`)], /absolute paths are not allowed/],
    ["empty segment", [dir("a"), file("a//evil")], /empty path segment/],
    ["backslash", [file("..\\evil")], /backslashes are not allowed/],
    ["control character", [file("ev\u001bil")], /control character/],
    ["NUL", [file("ev\u0000il")], /NUL/],
    ["dot", [file(".")], /"\." is not allowed/],
    ["through a symlink", [file("link/evil")], /folder that was not announced/],
    ["out of order", [file("b"), file("a")], /out of order or repeated/],
    ["repeated", [file("a"), file("a")], /out of order or repeated/],
    ["bad mode", [{ ...file("a"), mode: 0o4755 }], /bad mode/],
    ["bad top mode", [], /bad mode/, { top: { mtime: 0, mode: 0o4777 } }],
    ["bad top", [], /bad top/, { top: "/etc" }],
    ["bad notes", [], /bad notes/, { notes: [{ path: 1 }] }],
  ] as [string, Record<string, unknown>[], RegExp, Record<string, unknown>?][];
  for (const [what, entries, pattern, extra] of manifests) {
    const result = await withFakeServer(
      hostileManifest(entries, extra),
      (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", local]),
      TREE_PEER,
    );
    assertFailure(result, pattern, { what });
  }
  assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written outside");
  assert.deepEqual([...Deno.readDirSync(`${work.path}/in`)].map((e) => e.name), ["dest"]);
  assert.deepEqual([...Deno.readDirSync(local)].map((e) => e.name), ["link"]);
  assert.ok((await Deno.lstat(`${local}/link`)).isSymlink, "the local symlink is untouched");
});

Deno.test("a hostile server's notes are shown escaped, and its top folder keeps owner rwx", async () => {
  await using work = await makeTempDir();
  const local = `${work.path}/dest`;
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, {
          entries: [],
          last: true,
          top: { mtime: 86_400_000, mode: 0 },
          notes: [{ path: "\u001b]0;pwned\u0007", message: "gone\u001b[2J" }],
        }),
      ]));
      assert.deepEqual(await wire.expectFrame(FrameType.WANT, "want"), { want: [] });
      await wire.write(encodeControl(FrameType.FINISH, {}));
      await wire.expectFrame(FrameType.OK, "summary");
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", local]),
    TREE_PEER,
  );
  assertSuccess(result, "get -r");
  assert.ok(
    stderrLines(result).includes('ferry: "\\u001b]0;pwned\\u0007": gone [2J; not sent'),
    result.stderr,
  );
  assert.ok(!result.stderr.includes("\u001b"), "no escape reaches the terminal");
  const info = await Deno.stat(local);
  assert.equal(info.mode! & 0o777, 0o700, "owner rwx kept whatever the peer says");
  assert.equal(info.mtime!.getTime(), 86_400_000);
});

Deno.test("get -r --links refuses a hostile server's links that lead out, or that it writes through", async () => {
  await using work = await makeTempDir();
  const outside = `${work.path}/outside`;
  await Deno.mkdir(outside);
  const local = `${work.path}/in/dest`;
  await Deno.mkdir(local, { recursive: true });
  const link = (path: string, target: string) => ({
    path,
    type: "link",
    size: 0,
    mtime: 0,
    mode: 0o777,
    target,
  });
  const manifests: [string, Record<string, unknown>[], RegExp, string[]][] = [
    ["up and out", [link("l", "../../outside")], /symlink that leads outside the tree: l/, []],
    ["deeper", [dir("d"), link("d/l", "../../x")], /leads outside the tree: d\/l/, []],
    ["absolute", [link("l", outside)], /leads outside the tree/, []],
    ["through a name", [dir("d"), link("d/l", "e/../../../x")], /leads outside/, []],
    ["backslash", [link("l", "..\\..\\x")], /leads outside/, []],
    ["then through it", [link("l", "."), file("l/x")], /folder that was not announced/, []],
    ["not asked for", [link("l", "a")], /links were not asked for/, ["no --links"]],
    ["no target", [{ ...link("l", "a"), target: undefined }], /bad link target/, []],
  ];
  for (const [what, entries, pattern, flags] of manifests) {
    const args = ["get", "-r", "x", local, ...(flags.length ? [] : ["--links"])];
    const result = await withFakeServer(
      hostileManifest(entries),
      (port) => ferry({ host: "127.0.0.1", port }, args),
      TREE_PEER,
    );
    assertFailure(result, pattern, { what });
  }
  assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written outside");
  assert.deepEqual([...Deno.readDirSync(local)], [], "nothing made at all");
});

Deno.test("the server refuses a hostile put -r --links manifest whose link leads out", async () => {
  await using server = await startServer();
  const cases: [boolean, Record<string, unknown>, RegExp][] = [
    [
      true,
      { path: "l", type: "link", size: 0, mtime: 0, mode: 0o777, target: "../x" },
      /leads outside/,
    ],
    [
      true,
      { path: "l", type: "link", size: 0, mtime: 0, mode: 0o777, target: "/etc" },
      /leads outside/,
    ],
    [
      false,
      { path: "l", type: "link", size: 0, mtime: 0, mode: 0o777, target: "a" },
      /not asked for/,
    ],
  ];
  for (const [links, entry, pattern] of cases) {
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op: "put_tree", name: "t", links }));
    await wire.expectFrame(FrameType.OK, "accepted");
    await wire.write(encodeControl(FrameType.MANIFEST, { entries: [entry], last: true }));
    let frame = await wire.readFrame();
    while (frame && frame.type !== FrameType.ERROR) frame = await wire.readFrame();
    assert.ok(frame, `ERROR for ${JSON.stringify(entry)}`);
    assert.match(String(frame!.json!.message), pattern);
  }
  assert.deepEqual([...Deno.readDirSync(`${server.root}/t`)], [], "no link made");
});

Deno.test("get -r replaces a local symlink the server names as a folder, never writing through it", async () => {
  await using work = await makeTempDir();
  const outside = `${work.path}/outside`;
  await Deno.mkdir(outside);
  const local = `${work.path}/dest`;
  await Deno.mkdir(local);
  await Deno.symlink(outside, `${local}/link`);
  const data = new TextEncoder().encode("evil");
  const checksum = await createChecksum();
  checksum.update(data);
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, {
          entries: [dir("link"), file("link/evil")],
          last: true,
        }),
      ]));
      const want = await wire.expectFrame(FrameType.WANT, "want");
      assert.deepEqual(want.want, [1]);
      const header = new Uint8Array(5);
      new DataView(header.buffer).setUint8(0, FrameType.DATA);
      new DataView(header.buffer).setUint32(1, data.length);
      await wire.write(concat([
        encodeControl(FrameType.FILE, { index: 1, size: 4 }),
        header,
        data,
        encodeControl(FrameType.END, { size: 4, checksum: checksum.digest() }),
        encodeControl(FrameType.FINISH, {}),
      ]));
      await wire.expectFrame(FrameType.RESULT, "result");
      const summary = await wire.expectFrame(FrameType.OK, "summary");
      assert.equal(summary.files, 1);
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", local]),
    TREE_PEER,
  );
  assertSuccess(result, "get -r");
  assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written through the link");
  assert.ok((await Deno.lstat(`${local}/link`)).isDirectory, "a real folder replaced the link");
  assert.equal(await Deno.readTextFile(`${local}/link/evil`), "evil");
});

Deno.test("the server refuses a hostile put -r manifest and stays inside its root", async () => {
  await using server = await startServer();
  const cases: [string | undefined, Record<string, unknown>[], RegExp][] = [
    ["t", [file("../escape")], /"\.\." is not allowed/],
    [undefined, [dir(".ferry-staging"), file(".ferry-staging/x")], /reserved for uploads/],
    ["t", [file("a"), file("a/b")], /folder that was not announced/],
    ["t", [dir("d"), file("d/x"), file("c")], /out of order/],
    ["t", [{ ...file("a"), type: "link" }], /links were not asked for/],
    ["t", [{ ...file("a"), type: "fifo" }], /unknown entry type/],
  ];
  for (const [name, entries, pattern] of cases) {
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op: "put_tree", name }));
    await wire.expectFrame(FrameType.OK, "accepted");
    await wire.write(encodeControl(FrameType.MANIFEST, { entries, last: true }));
    let frame = await wire.readFrame();
    while (frame && frame.type !== FrameType.ERROR) frame = await wire.readFrame();
    assert.ok(frame, `ERROR for ${JSON.stringify(entries)}`);
    assert.match(String(frame!.json!.message), pattern);
  }
  assert.equal(await pathExists(`${server.base}/escape`), false);
  assert.deepEqual((await snapshot(server.root)).filter((l) => !l.startsWith(".ferry")), [
    "t/ 755",
  ]);
});

Deno.test("the server refuses a put -r FILE that resumes from an offset it did not offer", async () => {
  await using server = await startServer();
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(
    encodeControl(FrameType.REQUEST, { op: "put_tree", name: "t", resume: true }),
  );
  await wire.expectFrame(FrameType.OK, "accepted");
  const big = { ...file("big"), size: 2 << 20 };
  await wire.write(encodeControl(FrameType.MANIFEST, { entries: [big], last: true }));
  // Nothing is kept for it, so nothing is offered: the whole file is wanted.
  assert.deepEqual(await wire.expectFrame(FrameType.WANT, "want"), { want: [0] });
  await wire.write(encodeControl(FrameType.FILE, { index: 0, size: 2 << 20, offset: 1 << 20 }));
  const error = await wire.expectFrame(FrameType.ERROR, "refusal");
  assert.match(String(error.message), /FILE resumed from an offset that was not offered/);
  assert.equal(await pathExists(`${server.root}/t/big`), false);
});

/** The name the client stages a big file called `leaf` under (lib/tree_local.ts keptPartName). */
async function partNameOf(leaf: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(leaf));
  const hex = [...new Uint8Array(digest).subarray(0, 16)];
  return `.ferry-${hex.map((b) => b.toString(16).padStart(2, "0")).join("")}.part`;
}

Deno.test("get -r --links refuses a link named as the client's own staging file, never writing through it", async () => {
  await using work = await makeTempDir();
  const outside = `${work.path}/outside`;
  await Deno.mkdir(outside);
  await Deno.writeTextFile(`${outside}/victim.txt`, "precious\n");
  const local = `${work.path}/dest`;
  await Deno.mkdir(local);
  // The user's own symlink in the destination, to a folder elsewhere.
  await Deno.symlink(outside, `${local}/docs`);
  const part = await partNameOf("x");
  const data = new Uint8Array(2 << 20).fill(0x41);
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, {
          entries: [
            { path: part, type: "link", size: 0, mtime: 0, mode: 0o777, target: "docs/victim.txt" },
            { ...file("x"), size: data.length },
          ],
          last: true,
        }),
      ]));
      // The link's RESULT, then the WANT (unless the manifest was refused).
      let frame = await wire.readFrame();
      while (frame?.type === FrameType.RESULT) frame = await wire.readFrame();
      if (frame?.type !== FrameType.WANT) return;
      await wire.write(concat([
        encodeControl(FrameType.FILE, { index: 1, size: data.length }),
        await dataWithEnd(data),
        encodeControl(FrameType.FINISH, {}),
      ]));
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "--links", "x", local]),
    TREE_PEER,
  );
  assertFailure(result, /reserved for ferry's own staging files/, {
    what: "a link named as a part",
  });
  assert.equal(await Deno.readTextFile(`${outside}/victim.txt`), "precious\n", "not written");
  assert.deepEqual([...Deno.readDirSync(local)].map((e) => e.name), ["docs"]);
});

Deno.test("get -r refuses a name that is the client's staging name under another case", async () => {
  await using work = await makeTempDir();
  const local = `${work.path}/dest`;
  // On a filesystem that folds case this would be the staging file of `x` itself.
  const part = (await partNameOf("x")).toUpperCase();
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, { entries: [file(part), file("x")], last: true }),
      ]));
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", local]),
    TREE_PEER,
  );
  assertFailure(result, /reserved for ferry's own staging files/, { what: part });
  assert.equal(await pathExists(`${local}/${part}`), false);
});

Deno.test("get -r --resume never reads or continues a staging name that is a symlink", async () => {
  await using work = await makeTempDir();
  const outside = `${work.path}/outside`;
  await Deno.mkdir(outside);
  const victim = new Uint8Array(1536 << 10).fill(0x56);
  await Deno.writeFile(`${outside}/victim.bin`, victim);
  const local = `${work.path}/dest`;
  await Deno.mkdir(local);
  // Planted where the client stages the big file "x", as if an interrupted run had left it.
  await Deno.symlink(`${outside}/victim.bin`, `${local}/${await partNameOf("x")}`);
  const data = new Uint8Array(3 << 20).fill(0x41);
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, {
          entries: [{ ...file("x"), size: data.length }],
          last: true,
        }),
      ]));
      const want = await wire.expectFrame(FrameType.WANT, "want");
      // A hostile sender takes whatever is offered as matching, and sends only the rest.
      const offer = (want.resume as { offset: number }[] | undefined)?.[0];
      const offset = offer?.offset ?? 0;
      const whole = await createChecksum();
      whole.update(offset ? victim : new Uint8Array(0));
      whole.update(data.subarray(offset));
      const header = new Uint8Array(5);
      new DataView(header.buffer).setUint8(0, FrameType.DATA);
      new DataView(header.buffer).setUint32(1, data.length - offset);
      await wire.write(concat([
        encodeControl(FrameType.FILE, {
          index: 0,
          size: data.length,
          ...(offset ? { offset } : {}),
        }),
        header,
        data.subarray(offset),
        encodeControl(FrameType.END, { size: data.length, checksum: whole.digest() }),
        encodeControl(FrameType.FINISH, {}),
      ]));
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "--resume", "x", local]),
    TREE_PEER,
  );
  assertSuccess(result, "get -r --resume");
  // Compared by checksum: a diff of megabytes would be no help.
  const sum = async (path: string) => await checksumOf(await Deno.readFile(path));
  assert.equal(
    await sum(`${outside}/victim.bin`),
    await checksumOf(victim),
    "the target untouched",
  );
  assert.ok((await Deno.lstat(`${local}/x`)).isFile, "x is a file of its own");
  assert.equal(await sum(`${local}/x`), await checksumOf(data));
});

Deno.test("put -r --dry-run writes a server's deletions out as they come, however many it sends", async () => {
  await using work = await makeTempDir();
  await Deno.mkdir(`${work.path}/t`);
  await Deno.writeTextFile(`${work.path}/t/a.txt`, "a");
  /** Lines of the client's stdout so far. */
  let printed = 0;
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(encodeControl(FrameType.OK, {}));
      await wire.expectFrame(FrameType.MANIFEST, "manifest");
      const deletions = [];
      for (let i = 0; i < 3000; i++) {
        deletions.push(encodeControl(FrameType.RESULT, { deleted: `gone/${i}` }));
      }
      await wire.write(concat([encodeControl(FrameType.WANT, { want: [] }), ...deletions]));
      await wire.expectFrame(FrameType.FINISH, "finish");
      // No end yet: what the client holds of its reports must be on its stdout already.
      await waitFor("reports written while the server holds its summary", () => printed >= 2048);
      const summary = { files: 0, skipped: 0, deleted: 3000, failed: 0, bytes: 0 };
      await wire.write(encodeControl(FrameType.OK, summary));
      await wire.waitForClose(10000);
    },
    async (port) => {
      const child = spawnClient([
        "127.0.0.1",
        String(port),
        "put",
        "-r",
        "--dry-run",
        `${work.path}/t`,
      ]);
      await child.stdin.close();
      const chunks: Uint8Array[] = [];
      const stdout = (async () => {
        for await (const chunk of child.stdout) {
          chunks.push(chunk);
          printed += chunk.filter((b) => b === 10).length;
        }
      })();
      const [status, stderr] = await Promise.all([
        child.status,
        new Response(child.stderr).text(),
        stdout,
      ]).then(([s, e]) => [s, e] as const);
      return { code: status.code, stdout: concat(chunks), stderr };
    },
    TREE_PEER,
  );
  assertSuccess(result, "put -r --dry-run");
  const lines = new TextDecoder().decode(result.stdout).split("\n");
  assert.equal(lines.filter((l) => l.startsWith("delete gone/")).length, 3000);
  assert.equal(
    lines.indexOf("delete gone/2999"),
    lines.indexOf("delete gone/0") + 2999,
    "in order",
  );
});
