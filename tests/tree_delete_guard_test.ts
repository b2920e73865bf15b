/**
 * `--delete` never takes an unrelated folder for a copy: a destination that was there before the
 * run keeps everything at its top until it shows to hold one of the tree's top-level names
 * (`get -r photos ~ --delete` must not empty a home folder), in both directions, in a dry run
 * too; `--delete-unrelated` makes it a copy whatever it held; a real resync still deletes every
 * extra, those before the first shared name included; an older client hears an ERROR, and a
 * server that predates the guard is checked by the client before it sends. A name systems drop
 * into any folder (`.DS_Store`, `Thumbs.db`: lib/incidental_names.ts) shared by both is no sign
 * of a copy, on either side.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { isIncidentalName } from "../lib/incidental_names.ts";
import {
  assertFailure,
  ferry,
  makeTempDir,
  pathExists,
  startServer,
  stderrLines,
} from "./harness.ts";
import { ok, out, snapshot, summaryOf } from "./tree_helpers.ts";
import { concat, dataWithEnd, serveOnce, Wire, withFakeServer } from "./wire.ts";

/** The tree sent: `a.jpg` and `trip/b.jpg`. */
async function photos(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/trip`, { recursive: true });
  await Deno.writeTextFile(`${dir}/a.jpg`, "a");
  await Deno.writeTextFile(`${dir}/trip/b.jpg`, "b");
}

/** A folder that is nothing like it: a home folder's files and folders, none named as its. */
async function home(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/Documents/deep`, { recursive: true });
  await Deno.writeTextFile(`${dir}/Documents/deep/thesis.txt`, "years of work");
  await Deno.writeTextFile(`${dir}/.bashrc`, "alias ll='ls -l'");
  await Deno.writeTextFile(`${dir}/zz-notes.txt`, "notes");
}

const HOME_NAMES = [".bashrc", "Documents", "zz-notes.txt"];

/**
 * The one line that says what was kept, for `dest` (as named) and the tree `name`: refused
 * before anything moved (`before`), or by the receiver once the tree was in (`after`).
 */
function keptLine(dest: string, name: string, kept: number, when: "before" | "after"): RegExp {
  const quoted = JSON.stringify(dest).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const end = when === "before"
    ? "; nothing transferred"
    : `; ${name} arrived beside them: take it out before running this again`;
  return new RegExp(
    `^ferry: kept the ${kept} entries of ${quoted} that ${name} lacks: it held none of the ` +
      `names in ${name}, so --delete did not take it for a copy \\(name ".*/" to put ${name} ` +
      `into it, or add --delete-unrelated\\)${end}$`,
  );
}

/** The names in `dir`, sorted, ferry's own staging folders aside. */
function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => !n.startsWith(".ferry"))
    .sort();
}

Deno.test("get -r --delete into an unrelated folder changes nothing and fails, again and again", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await photos(`${server.root}/photos`);
  const dest = `${work.path}/home`;
  await home(dest);
  const before = await snapshot(dest);
  for (const extra of [["--dry-run"], ["--json"], [], ["-q"]]) {
    const result = await ferry(server, ["get", "-r", "photos", dest, "--delete", ...extra]);
    // Looked at before anything moved: nothing was fetched, so a second run finds no name of the
    // tree there either (had the tree been merged in, it would take the folder for a copy).
    assertFailure(result, keptLine(dest, "photos", 3, "before"), {
      what: `get -r --delete ${extra}`,
    });
    assert.deepEqual(await snapshot(dest), before, `${extra}: nothing changed`);
  }
});

Deno.test("put -r --delete into an unrelated server folder changes nothing; --delete-unrelated empties it", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/photos`;
  await photos(src);
  const dest = `${server.root}/backup`;
  await home(dest);
  const before = await snapshot(dest);
  for (const extra of [["--dry-run"], []]) {
    const result = await ferry(server, ["put", "-r", src, "backup", "--delete", "-q", ...extra]);
    assertFailure(result, keptLine("backup", "photos", 3, "before"), {
      what: `put -r --delete ${extra}`,
    });
    assert.deepEqual(await snapshot(dest), before, `${extra}: nothing changed`);
  }

  const forced = await ferry(server, ["put", "-r", src, "backup", "--delete-unrelated", "--json"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.deepEqual(await snapshot(dest), await snapshot(src));
  assert.equal(summaryOf(forced).deleted, 3);
});

Deno.test("get -r --delete-unrelated makes an unrelated local folder a copy", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await photos(`${server.root}/photos`);
  const dest = `${work.path}/home`;
  await home(dest);
  await ok(server, ["get", "-r", "photos", dest, "--delete-unrelated"]);
  assert.deepEqual(names(dest), ["a.jpg", "trip"]);
});

Deno.test("an empty tree is no copy's source; an empty destination loses nothing", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/empty`);
  const dest = `${work.path}/home`;
  await home(dest);
  const refused = await ferry(server, ["get", "-r", "empty", dest, "--delete", "-q"]);
  assertFailure(refused, keptLine(dest, "empty", 3, "before"), { what: "an empty tree" });
  assert.deepEqual(names(dest), HOME_NAMES);

  // A destination that was there, empty: nothing to delete, nothing to fail.
  await photos(`${server.root}/photos`);
  await Deno.mkdir(`${work.path}/bare`);
  await ok(server, ["get", "-r", "photos", `${work.path}/bare`, "--delete"]);
  assert.deepEqual(names(`${work.path}/bare`), ["a.jpg", "trip"]);
});

/**
 * A copy of `photos` gone stale, whose extras sort before its first name the tree has
 * (`m.txt`), between the tree's new names, and after: files and folders with contents.
 */
async function staleCopy(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/a-old/inner`, { recursive: true });
  await Deno.writeTextFile(`${dir}/a-old/inner/f`, "f");
  await Deno.writeTextFile(`${dir}/c-old.txt`, "c");
  await Deno.writeTextFile(`${dir}/m.txt`, "a stale m");
  await Deno.mkdir(`${dir}/z-old`);
  await Deno.writeTextFile(`${dir}/z-old/g`, "g");
}

/** The tree: new names before the one the copy has (`b-new.txt`, `d-new/x`), and `m.txt`. */
async function fresh(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/d-new`, { recursive: true });
  await Deno.writeTextFile(`${dir}/b-new.txt`, "b");
  await Deno.writeTextFile(`${dir}/d-new/x`, "x");
  await Deno.writeTextFile(`${dir}/m.txt`, "fresh m");
}

const STALE_DELETES = ["delete a-old", "delete c-old.txt", "delete z-old"];

Deno.test("a resync with a shared name deletes every extra, those before that name too", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await fresh(src);
  await staleCopy(`${server.root}/src`);

  const dry = await ok(server, ["put", "-r", src, "--delete", "--dry-run"]);
  assert.deepEqual(out(dry).split("\n").filter((l) => l.startsWith("delete ")), STALE_DELETES);
  assert.ok(await pathExists(`${server.root}/src/a-old/inner/f`), "a dry run changes nothing");
  const put = await ok(server, ["put", "-r", src, "--delete", "--json"]);
  assert.equal(summaryOf(put).deleted, 3);
  assert.deepEqual(await snapshot(`${server.root}/src`), await snapshot(src));

  // And the other way, into a local stale copy.
  const local = `${work.path}/copy`;
  await staleCopy(local);
  const dryGet = await ok(server, ["get", "-r", "src", local, "--delete", "--dry-run"]);
  assert.deepEqual(out(dryGet).split("\n").filter((l) => l.startsWith("delete ")), STALE_DELETES);
  const got = await ok(server, ["get", "-r", "src", local, "--delete", "--json"]);
  assert.equal(summaryOf(got).deleted, 3);
  assert.deepEqual(await snapshot(local), await snapshot(src));
});

Deno.test("a rerun after a cut run into a folder ferry made is a copy: --delete proceeds", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await fresh(src);
  // What a cut first run leaves: the folder ferry made, some of the tree's names in it.
  await Deno.mkdir(`${server.root}/src/d-new`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/src/b-new.txt`, "b");
  await Deno.writeTextFile(`${server.root}/src/0-extra`, "gone since");
  const again = await ok(server, ["put", "-r", src, "--delete", "--json"]);
  assert.equal(summaryOf(again).deleted, 1);
  assert.deepEqual(await snapshot(`${server.root}/src`), await snapshot(src));
});

Deno.test("the server's own guard: put_tree --delete into an unrelated folder keeps its top", async () => {
  await using server = await startServer();
  // As a client that does not look first would send it (the receiver holds, whatever the client).
  const cases = [["new", false, false], ["dry", false, true], ["old", undefined, false]] as const;
  for (const [name, unrelated, dryRun] of cases) {
    const dest = `${server.root}/${name}`;
    await home(dest);
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, {
      op: "put_tree",
      name,
      delete: true,
      dry_run: dryRun,
      // Absent: an older client, which cannot read the count in the summary.
      ...(unrelated === undefined ? {} : { delete_unrelated: unrelated }),
    }));
    await wire.expectFrame(FrameType.OK, "accepted");
    await wire.write(encodeControl(FrameType.MANIFEST, {
      entries: [{ path: "trip", type: "dir", size: 0, mtime: 0, mode: 0o755 }],
      last: true,
    }));
    await wire.expectFrame(FrameType.WANT, "want");
    await wire.write(encodeControl(FrameType.FINISH, {}));
    let frame = await wire.readFrame();
    while (frame && frame.type === FrameType.KEEPALIVE) frame = await wire.readFrame();
    if (unrelated === false) {
      assert.equal(frame?.type, FrameType.OK, `${name}: the summary`);
      assert.deepEqual([frame!.json!.deleted, frame!.json!.unrelated], [0, 3]);
      await server.waitForLog(
        / put_tree "new" .* 0 deleted, 0 failed, 3 kept \(no name in common\)/,
      );
    } else {
      assert.equal(frame?.type, FrameType.ERROR, `${name}: an ERROR in place of the OK`);
      assert.equal(frame!.json!.code, "exists");
      assert.match(
        String(frame!.json!.message),
        /^Kept the 3 names at the top of "old" that the tree lacks: .* \(put the tree into "old\/" instead\)$/,
      );
    }
    const made = dryRun ? [] : ["trip"];
    assert.deepEqual(names(dest), [...HOME_NAMES, ...made].sort(), `${name}: nothing deleted`);
  }
});

Deno.test("the client's own guard: get -r --delete keeps the top of a folder the manifest shares nothing with", async () => {
  await using work = await makeTempDir();
  const dest = `${work.path}/home`;
  await home(dest);
  // The listing the client looks at first names one of the folder's (a tree changed since,
  // say): only the receiver, which holds the manifest against the folder, can tell.
  const listing = new TextEncoder().encode(
    JSON.stringify([{ name: "photos/zz-notes.txt", type: "file", size: 1, mtime: 0 }]),
  );
  let summary: Record<string, unknown> = {};
  const result = await serveOnce(
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake({ welcome: { server: "ferry/1", features: ["tree"] } });
      const list = await wire.expectFrame(FrameType.REQUEST, "list");
      assert.equal(list.op, "list");
      await wire.write(concat([
        encodeControl(FrameType.OK, { size: listing.length }),
        await dataWithEnd(listing),
      ]));
      const get = await wire.expectFrame(FrameType.REQUEST, "get_tree");
      assert.equal(get.op, "get_tree");
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, {
          entries: [{ path: "trip", type: "dir", size: 0, mtime: 0, mode: 0o755 }],
          last: true,
        }),
      ]));
      await wire.expectFrame(FrameType.WANT, "want");
      await wire.write(encodeControl(FrameType.FINISH, {}));
      summary = await wire.expectFrame(FrameType.OK, "summary");
    },
    (port) =>
      ferry({ host: "127.0.0.1", port }, ["get", "-r", "photos", dest, "--delete", "--json"]),
  );
  assert.equal(result.code, 1, result.stderr);
  assert.deepEqual([summary.deleted, summary.unrelated], [0, 3]);
  const last = summaryOf(result);
  assert.deepEqual([last.deleted, last.unrelated, last.failed], [0, 3, 0]);
  const actions = out(result).trim().split("\n").map((l) => JSON.parse(l).action);
  assert.ok(!actions.includes("deleted"), "no name reported deleted");
  const lines = stderrLines(result);
  assert.match(lines.at(-2)!, /^Downloaded .*: 0 files, .*; 0 up to date, 0 deleted, 0 failed$/);
  assert.match(lines.at(-1)!, keptLine(dest, "photos", 3, "after"));
  assert.deepEqual(names(dest), [...HOME_NAMES, "trip"].sort(), "nothing deleted");
});

Deno.test("against a server that predates the guard, put -r --delete looks first and sends nothing", async () => {
  await using work = await makeTempDir();
  const src = `${work.path}/photos`;
  await photos(src);
  const listing = new TextEncoder().encode(JSON.stringify(
    HOME_NAMES.map((n) => ({ name: `backup/${n}`, type: "file", size: 1, mtime: 0 })),
  ));
  const result = await withFakeServer(
    async (wire, request) => {
      assert.equal(request.op, "list", "a listing first, never the put_tree");
      assert.equal(request.dir, "backup");
      await wire.write(concat([
        encodeControl(FrameType.OK, { size: listing.length }),
        await dataWithEnd(listing),
      ]));
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["put", "-r", src, "backup", "--delete", "-q"]),
    { welcome: { server: "ferry/0.0.9", features: ["tree"] } },
  );
  assertFailure(result, keptLine("backup", "photos", 3, "before"), {
    what: "put -r --delete to an old server",
  });
});

Deno.test("the names systems drop into any folder, and only those", () => {
  const dropped = [
    ".DS_Store",
    "._beach.jpg",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    ".directory",
    ".localized",
    "Icon\r",
    "$RECYCLE.BIN",
    ".Trashes",
    ".Spotlight-V100",
    ".fseventsd",
    ".TemporaryItems",
    ".Trash-1000",
  ];
  for (const name of dropped) {
    assert.ok(isIncidentalName(name), name);
    assert.ok(isIncidentalName(name, { foldCase: false }), `${name}, exact`);
  }
  // Windows writes its own under other cases too: they count where names fold, the default.
  for (const name of ["DESKTOP.INI", "thumbs.db", ".ds_store", "$Recycle.Bin"]) {
    assert.ok(isIncidentalName(name), name);
    assert.equal(isIncidentalName(name, { foldCase: false }), false, `${name}, exact`);
  }
  for (const name of ["._", "photos", ".DS_Store.bak", "Icon", ".Trash-", "desktop", "a.jpg"]) {
    assert.equal(isIncidentalName(name), false, name);
  }
});

/** What a Mac and a Windows Explorer leave in a folder the user looked at. */
async function dropJunk(dir: string, names = [".DS_Store", "Thumbs.db"]): Promise<void> {
  for (const name of names) await Deno.writeTextFile(`${dir}/${name}`, `junk of ${dir}`);
}

Deno.test("a .DS_Store both hold makes no copy: get -r and put -r --delete refuse, nothing changes", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await photos(`${server.root}/photos`);
  await dropJunk(`${server.root}/photos`, [".DS_Store", "Thumbs.db", "._a.jpg"]);
  const dest = `${work.path}/home`;
  await home(dest);
  await dropJunk(dest, [".DS_Store", "Thumbs.db", "._a.jpg"]);
  const before = await snapshot(dest);
  for (const extra of [["--dry-run"], []]) {
    const result = await ferry(server, ["get", "-r", "photos", dest, "--delete", "-q", ...extra]);
    // The three names only the folder has are counted, not the ones both hold.
    assertFailure(result, keptLine(dest, "photos", 3, "before"), { what: `get -r ${extra}` });
    assert.deepEqual(await snapshot(dest), before, `${extra}: nothing changed`);
  }

  const src = `${work.path}/photos`;
  await photos(src);
  await dropJunk(src, [".DS_Store", "desktop.ini"]);
  const backup = `${server.root}/backup`;
  await home(backup);
  // Explorer writes its own name under another case: a put looks by folded name too.
  await dropJunk(backup, [".DS_Store", "Desktop.ini"]);
  const stored = await snapshot(backup);
  const put = await ferry(server, ["put", "-r", src, "backup", "--delete", "-q"]);
  assertFailure(put, keptLine("backup", "photos", 3, "before"), { what: "put -r" });
  assert.deepEqual(await snapshot(backup), stored, "nothing changed on the server");
});

Deno.test("the server's own guard: a shared .DS_Store lifts nothing; the junk is the sender's, the rest kept", async () => {
  await using server = await startServer();
  const dest = `${server.root}/backup`;
  await home(dest);
  await Deno.mkdir(`${dest}/.Spotlight-V100`);
  // As a client that does not look first would send it: the receiver holds, whatever the client.
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, {
    op: "put_tree",
    name: "backup",
    delete: true,
    delete_unrelated: false,
  }));
  await wire.expectFrame(FrameType.OK, "accepted");
  await wire.write(encodeControl(FrameType.MANIFEST, {
    entries: [
      { path: ".Spotlight-V100", type: "dir", size: 0, mtime: 0, mode: 0o755 },
      { path: "trip", type: "dir", size: 0, mtime: 0, mode: 0o755 },
    ],
    last: true,
  }));
  await wire.expectFrame(FrameType.WANT, "want");
  await wire.write(encodeControl(FrameType.FINISH, {}));
  let frame = await wire.readFrame();
  while (frame && frame.type === FrameType.KEEPALIVE) frame = await wire.readFrame();
  assert.equal(frame?.type, FrameType.OK, "the summary");
  assert.deepEqual([frame!.json!.deleted, frame!.json!.unrelated], [0, 3]);
  assert.deepEqual(names(dest), [".Spotlight-V100", ...HOME_NAMES, "trip"].sort(), "none deleted");
});

Deno.test("the client's own guard: a shared .Spotlight-V100 in the manifest lifts nothing", async () => {
  await using work = await makeTempDir();
  const dest = `${work.path}/home`;
  await home(dest);
  await Deno.mkdir(`${dest}/.Spotlight-V100`);
  // The listing the client looks at first names one of the folder's: the receiver decides.
  const listing = new TextEncoder().encode(
    JSON.stringify([{ name: "photos/zz-notes.txt", type: "file", size: 1, mtime: 0 }]),
  );
  const result = await serveOnce(
    async (conn) => {
      using wire = new Wire(conn);
      await wire.acceptHandshake({ welcome: { server: "ferry/1", features: ["tree"] } });
      await wire.expectFrame(FrameType.REQUEST, "list");
      await wire.write(concat([
        encodeControl(FrameType.OK, { size: listing.length }),
        await dataWithEnd(listing),
      ]));
      await wire.expectFrame(FrameType.REQUEST, "get_tree");
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, {
          entries: [
            { path: ".Spotlight-V100", type: "dir", size: 0, mtime: 0, mode: 0o755 },
            { path: "trip", type: "dir", size: 0, mtime: 0, mode: 0o755 },
          ],
          last: true,
        }),
      ]));
      await wire.expectFrame(FrameType.WANT, "want");
      await wire.write(encodeControl(FrameType.FINISH, {}));
      await wire.expectFrame(FrameType.OK, "summary");
    },
    (port) =>
      ferry({ host: "127.0.0.1", port }, ["get", "-r", "photos", dest, "--delete", "--json"]),
  );
  assert.equal(result.code, 1, result.stderr);
  assert.deepEqual([summaryOf(result).deleted, summaryOf(result).unrelated], [0, 3]);
  assert.match(stderrLines(result).at(-1)!, keptLine(dest, "photos", 3, "after"));
  assert.deepEqual(names(dest), [".Spotlight-V100", ...HOME_NAMES, "trip"].sort());
});

Deno.test("a real resync still deletes a stale extra before the first shared name, never the junk the tree has", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/Thumbs.db`, "the tree's own");
  await Deno.writeTextFile(`${src}/m.txt`, "m");
  await ok(server, ["put", "-r", src]);
  // Walk order: A-old (held), Thumbs.db (both have it, unchanged: skipped), ehthumbs.db (only
  // the copy has it), m.txt (shared: the guard lifts, and what it held goes).
  await Deno.writeTextFile(`${server.root}/src/A-old`, "stale");
  await Deno.writeTextFile(`${server.root}/src/ehthumbs.db`, "stale junk");
  const dry = await ok(server, ["put", "-r", src, "--delete", "--dry-run"]);
  assert.deepEqual(
    out(dry).split("\n").filter((l) => l.startsWith("delete ")),
    ["delete A-old", "delete ehthumbs.db"],
  );
  const put = await ok(server, ["put", "-r", src, "--delete", "--json"]);
  assert.deepEqual([summaryOf(put).deleted, summaryOf(put).skipped], [2, 2]);
  assert.deepEqual(await snapshot(`${server.root}/src`), await snapshot(src));
});
