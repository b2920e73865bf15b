/**
 * `--exclude` and `--exclude-from` for `put -r` and `get -r`, against the real server and client:
 * names left out at several depths (a name, an anchored path, folders only, `**`), excluded folders
 * never walked, `--delete` sparing the receiver's excluded names, `--dry-run` and `--json`, usage
 * errors for bad patterns, a server refusing oversized pattern lists on the wire, a client refusing
 * an older server (which would ignore the patterns) and a hostile one that sends an excluded name.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { MAX_PATTERN_BYTES, MAX_PATTERNS } from "../lib/name_patterns.ts";
import {
  assertFailure,
  assertUsageError,
  ferry,
  makeTempDir,
  pathExists,
  type ServerProcess,
  startServer,
} from "./harness.ts";
import { file, ok, out, snapshot, summaryOf } from "./tree_helpers.ts";
import { concat, serveOnce, TREE_PEER, Wire, withFakeServer } from "./wire.ts";

/** The patterns most tests use: a name, a folder's name, anchored, folders only, `**`. */
const PATTERNS = ["*.tmp", "node_modules", "/build", "cache/", "docs/**/*.pdf"];

/** Excluded by {@link PATTERNS}: each of these paths, with all it holds. */
const EXCLUDED = [
  "a.tmp",
  "keep/x.tmp",
  "node_modules",
  "web/node_modules",
  "build",
  "sub/cache",
  "docs/a.pdf",
  "docs/x/y/b.pdf",
];

/**
 * A tree with something for each pattern to leave out, and near misses it must keep: `lib/build`
 * (not at the top), a file named `cache` (not a folder), `docs/readme.md`. The excluded folders
 * hold a symlink, which a walk that went into them would note on stderr.
 */
async function makeTree(dir: string): Promise<void> {
  for (const folder of ["keep", "node_modules/pkg", "web/node_modules", "build", "lib/build"]) {
    await Deno.mkdir(`${dir}/${folder}`, { recursive: true });
  }
  await Deno.mkdir(`${dir}/sub/cache`, { recursive: true });
  await Deno.mkdir(`${dir}/docs/x/y`, { recursive: true });
  const files = {
    "a.txt": "alpha\n",
    "a.tmp": "scratch\n",
    "keep/x.tmp": "scratch\n",
    "keep/y.txt": "kept\n",
    "node_modules/pkg/index.js": "js\n",
    "web/node_modules/z.js": "js\n",
    "web/app.js": "app\n",
    "build/out.bin": "binary\n",
    "lib/build/k.txt": "kept\n",
    "cache": "a file, not a folder\n",
    "sub/cache/c.dat": "cached\n",
    "docs/readme.md": "read me\n",
    "docs/a.pdf": "pdf\n",
    "docs/x/y/b.pdf": "pdf\n",
  };
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  await Deno.symlink("/etc/hostname", `${dir}/node_modules/pkg/link`);
  await Deno.symlink("/etc/hostname", `${dir}/sub/cache/link`);
}

/** Whether a snapshot line's path is under one of `paths` (or is one). */
function under(line: string, paths: string[]): boolean {
  const path = line.split(" ")[0].replace(/\/$/, "");
  return paths.some((p) => path === p || path.startsWith(`${p}/`));
}

/** What `dir`'s snapshot should be once `paths` are left out. */
async function without(dir: string, paths: string[]): Promise<string[]> {
  return (await snapshot(dir)).filter((line) => !under(line, paths));
}

/** `--exclude` for each pattern. */
function excludes(patterns: string[]): string[] {
  return patterns.flatMap((p) => ["--exclude", p]);
}

async function serverWithTree(): Promise<ServerProcess> {
  const server = await startServer();
  await makeTree(`${server.root}/tree`);
  return server;
}

Deno.test("put -r --exclude leaves out names, anchored paths, folders only and ** at any depth", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/tree`;
  await makeTree(src);
  const put = await ok(server, ["put", "-r", src, ...excludes(PATTERNS)]);
  // The excluded folders' links would each have had a note: they were never walked.
  assert.doesNotMatch(put.stderr, /link/, put.stderr);
  assert.match(put.stderr, /Uploaded .*: 6 files,/);
  assert.deepEqual(await snapshot(`${server.root}/tree`), await without(src, EXCLUDED));
  // The kept near misses, named: the pattern's rules, not a test of the snapshot alone.
  for (const kept of ["lib/build/k.txt", "cache", "docs/readme.md", "keep/y.txt", "docs/x/y"]) {
    assert.ok(await pathExists(`${server.root}/tree/${kept}`), kept);
  }
  // Run again: the excluded names are still not sent, and nothing is deleted or changed.
  const again = await ok(server, ["put", "-r", src, "--json", "--delete", ...excludes(PATTERNS)]);
  const summary = summaryOf(again);
  assert.equal(summary.files, 0);
  assert.equal(summary.skipped, 6);
  assert.equal(summary.deleted, 0);
});

Deno.test("get -r --exclude and --exclude-from leave out the same names from the server's tree", async () => {
  await using work = await makeTempDir();
  await using server = await serverWithTree();
  const get = await ok(server, ["get", "-r", "tree", `${work.path}/a`, ...excludes(PATTERNS)]);
  assert.doesNotMatch(get.stderr, /link/, "the server never walked an excluded folder");
  const expected = await without(`${server.root}/tree`, EXCLUDED);
  assert.deepEqual(await snapshot(`${work.path}/a`), expected);

  const list = `${work.path}/excludes`;
  await Deno.writeTextFile(
    list,
    `# build products\r\n\n${PATTERNS.slice(0, 3).join("\n")}\n   \n${
      PATTERNS.slice(3).join("\n")
    }`,
  );
  await ok(server, ["get", "-r", "tree", `${work.path}/b`, "--exclude-from", list]);
  assert.deepEqual(await snapshot(`${work.path}/b`), expected);
});

Deno.test("--delete spares the receiver's excluded names, both ways; --dry-run and --json show it", async () => {
  await using work = await makeTempDir();
  await using server = await serverWithTree();
  /** Names the receiver has and the sender lacks: all excluded but `extra.txt` and `gone/`. */
  const plant = async (dir: string) => {
    await Deno.mkdir(`${dir}/node_modules/mine`, { recursive: true });
    await Deno.mkdir(`${dir}/keep/cache`, { recursive: true });
    await Deno.mkdir(`${dir}/gone/deep`, { recursive: true });
    for (const name of ["local.tmp", "keep/z.tmp", "keep/cache/c", "docs/x/c.pdf", "build/b"]) {
      await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${name}`, "mine\n");
    }
    await Deno.writeTextFile(`${dir}/node_modules/mine/m.js`, "mine\n");
    await Deno.writeTextFile(`${dir}/extra.txt`, "the sender lacks it\n");
    await Deno.writeTextFile(`${dir}/gone/deep/g.txt`, "the sender lacks it\n");
  };
  const planted = [
    "local.tmp",
    "keep/z.tmp",
    "keep/cache",
    "docs/x/c.pdf",
    "build",
    "node_modules",
  ];

  // get -r: the client sweeps.
  const local = `${work.path}/tree`;
  await ok(server, ["get", "-r", "tree", work.path + "/", ...excludes(PATTERNS)]);
  await plant(local);
  const before = await snapshot(local);
  const dry = await ok(server, [
    "get",
    "-r",
    "tree",
    work.path + "/",
    "--delete",
    "--dry-run",
    ...excludes(PATTERNS),
  ]);
  // No excluded name is listed: neither sent, nor skipped, nor deleted.
  assert.equal(
    out(dry),
    ["skip a.txt", "skip cache", "skip docs/readme.md", "delete extra.txt", "delete gone"]
      .concat(["skip keep/y.txt", "skip lib/build/k.txt", "skip web/app.js"]).join("\n") + "\n",
  );
  assert.deepEqual(await snapshot(local), before, "a dry run changes nothing");
  const get = await ok(server, [
    "get",
    "-r",
    "tree",
    work.path + "/",
    "--delete",
    "--json",
    ...excludes(PATTERNS),
  ]);
  const deleted = out(get).trim().split("\n").map((line) => JSON.parse(line))
    .filter((report) => report.action === "deleted").map((report) => report.name);
  assert.deepEqual(deleted, ["extra.txt", "gone"]);
  assert.deepEqual(
    { ...summaryOf(get), seconds: 0 },
    { ...summaryOf(get), files: 0, skipped: 6, deleted: 2, failed: 0, bytes: 0, seconds: 0 },
  );
  const kept = before.filter((line) => !under(line, ["extra.txt", "gone"]));
  assert.deepEqual(await snapshot(local), kept);
  assert.ok(planted.every((p) => kept.some((line) => under(line, [p]))), "all planted were kept");

  // put -r: the server sweeps.
  await plant(`${server.root}/tree`);
  const remoteBefore = await snapshot(`${server.root}/tree`);
  const put = await ok(server, ["put", "-r", local, "--delete", "--json", ...excludes(PATTERNS)]);
  assert.equal(summaryOf(put).deleted, 2);
  assert.deepEqual(
    await snapshot(`${server.root}/tree`),
    remoteBefore.filter((line) => !under(line, ["extra.txt", "gone"])),
  );
});

Deno.test("bad patterns are usage errors, before anything is sent", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await Deno.mkdir(`${work.path}/src`);
  const cases: [string, string[], RegExp][] = [
    ["empty", ["--exclude", ""], /Bad exclude pattern "": it is empty/],
    ["too long", ["--exclude", "x".repeat(MAX_PATTERN_BYTES + 1)], /too long: 1025 bytes/],
    ["empty segment", ["--exclude", "a//b"], /empty, "\." or "\.\." segment/],
    ["unclosed class", ["--exclude", "[ab"], /a \[ is not closed/],
    ["without -r", ["--exclude", "x", "--exclude", "y"], /--exclude applies to put -r/],
  ];
  for (const [what, args, pattern] of cases) {
    const recursive = what === "without -r" ? [] : ["-r"];
    const result = await ferry(server, ["put", ...recursive, `${work.path}/src`, ...args]);
    assertUsageError(result, "ferry", { what, pattern });
  }
  const list = `${work.path}/list`;
  await Deno.writeTextFile(list, "ok\n[bad\n");
  const fromFile = await ferry(server, ["get", "-r", "x", "--exclude-from", list]);
  assertUsageError(fromFile, "ferry", { what: "--exclude-from", pattern: /"\[bad"/ });
  const missing = await ferry(server, ["get", "-r", "x", "--exclude-from", `${list}.none`]);
  assertFailure(missing, /Cannot read .*list\.none/, { what: "missing --exclude-from" });
  assert.equal(await pathExists(`${server.root}/src`), false);
  assert.equal(await pathExists(`${server.root}/x`), false);
});

Deno.test("a pathological pattern against long names finishes", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${server.root}/long`;
  await Deno.mkdir(src);
  for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${src}/${"a".repeat(200 + i)}`, "a");
  await Deno.writeTextFile(`${src}/${"a".repeat(100)}b`, "b");
  const pattern = `${"*a".repeat(60)}*b`;
  await ok(server, ["get", "-r", "long", `${work.path}/long`, "--exclude", pattern]);
  assert.equal([...Deno.readDirSync(`${work.path}/long`)].length, 20, "all but the one ending b");
});

Deno.test("the server offers tree-exclude and refuses oversized or malformed pattern lists", async () => {
  await using server = await serverWithTree();
  const request = (exclude: unknown) => ({ op: "get_tree", name: "tree", exclude });
  const cases: [string, unknown, RegExp][] = [
    ["too many", Array.from({ length: MAX_PATTERNS + 1 }, (_, i) => `${i}`), /Too many/],
    ["too long", ["x".repeat(MAX_PATTERN_BYTES + 1)], /too long/],
    ["too long in all", Array.from({ length: 40 }, () => "y".repeat(1000)), /in all/],
    ["empty", [""], /it is empty/],
    ["unclosed", ["[a"], /not closed/],
    ["not a list", "*.tmp", /Malformed REQUEST/],
    ["not strings", [1], /Malformed REQUEST/],
  ];
  for (const [what, exclude, pattern] of cases) {
    using wire = await Wire.connect(server);
    const welcome = await wire.handshake();
    assert.ok((welcome.features as string[]).includes("tree-exclude"), what);
    await wire.write(encodeControl(FrameType.REQUEST, request(exclude)));
    const error = await wire.expectFrame(FrameType.ERROR, what);
    assert.equal(error.code, "bad_request", what);
    assert.match(String(error.message), pattern, what);
    await wire.waitForClose(10000);
  }
  // Patterns in a files transfer mean nothing: refused too.
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(
    encodeControl(FrameType.REQUEST, { op: "get_files", names: ["tree/a.txt"], exclude: ["x"] }),
  );
  assert.equal((await wire.expectFrame(FrameType.ERROR, "get_files")).code, "bad_request");
});

Deno.test("the client refuses --exclude with a server that would ignore it", async () => {
  await using work = await makeTempDir();
  await Deno.mkdir(`${work.path}/src`);
  const result = await serveOnce(async (conn) => {
    using wire = new Wire(conn);
    await wire.acceptHandshake(TREE_PEER);
    // Nothing is asked of it: the connection closes with no REQUEST.
    assert.equal(await wire.readFrame(), null);
  }, (port) =>
    ferry({ host: "127.0.0.1", port }, [
      "put",
      "-r",
      `${work.path}/src`,
      "--exclude",
      "*.tmp",
    ]));
  assertFailure(result, /does not offer --exclude \(an older server\): nothing was transferred/, {
    what: "old server",
  });
});

Deno.test("get -r refuses a server that sends a name it was asked to leave out", async () => {
  await using work = await makeTempDir();
  const local = `${work.path}/dest`;
  await Deno.mkdir(local);
  await Deno.writeTextFile(`${local}/.env`, "secret=mine\n");
  const result = await withFakeServer(
    async (wire, request) => {
      assert.deepEqual(request.exclude, [".env"]);
      await wire.write(concat([
        encodeControl(FrameType.OK, {}),
        encodeControl(FrameType.MANIFEST, { entries: [file(".env")], last: true }),
      ]));
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", local, "--exclude", ".env"]),
    { welcome: { server: "evil/1", features: ["tree", "tree-exclude"] } },
  );
  assertFailure(result, /Refused manifest: a name that was excluded: \.env/, { what: "get -r" });
  assert.equal(await Deno.readTextFile(`${local}/.env`), "secret=mine\n");
});

Deno.test("--delete's guard does not count excluded names: a folder holding only those is synced", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/a.txt`, "alpha\n");
  // Each destination holds nothing of the tree's, only what --exclude spares: nothing there can
  // be deleted, so there is nothing to guard.
  await Deno.mkdir(`${server.root}/dest/node_modules`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/dest/node_modules/m.js`, "mine\n");
  const put = await ok(server, ["put", "-r", src, "dest", "--delete", "--exclude", "node_modules"]);
  assert.match(put.stderr, /1 file,.* 0 deleted/);
  assert.deepEqual([...Deno.readDirSync(`${server.root}/dest`)].map((e) => e.name).sort(), [
    "a.txt",
    "node_modules",
  ]);
  const local = `${work.path}/local`;
  await Deno.mkdir(local);
  await Deno.writeTextFile(`${local}/x.tmp`, "mine\n");
  await ok(server, [
    "get",
    "-r",
    "dest",
    local,
    "--delete",
    "--exclude",
    "*.tmp",
    "--exclude",
    "/node_modules",
  ]);
  assert.deepEqual([...Deno.readDirSync(local)].map((e) => e.name).sort(), ["a.txt", "x.tmp"]);
  // Without the patterns, the same folders are not taken for copies: the guard holds.
  const guarded = await ferry(server, ["get", "-r", "dest", `${work.path}/other`, "--delete"]);
  assert.equal(guarded.code, 0, guarded.stderr);
  await Deno.writeTextFile(`${work.path}/other/y.tmp`, "mine\n");
  await Deno.remove(`${work.path}/other/a.txt`);
  await Deno.remove(`${work.path}/other/node_modules`, { recursive: true });
  const refused = await ferry(server, ["get", "-r", "dest", `${work.path}/other`, "--delete"]);
  assertFailure(refused, /kept the 1 entry .* nothing transferred/, { what: "guarded" });
});

Deno.test("a long run of excluded names goes out as empty manifest batches, both ways", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  // The server's folder, sent by the server (get -r) and read by the client as a local one (put -r).
  const many = `${server.root}/many`;
  await Deno.mkdir(many);
  // More than one batch walks past (16,384): the sender sends a batch with no entries between.
  const data = new TextEncoder().encode("x");
  for (let i = 0; i < 16_500; i++) {
    Deno.writeFileSync(`${many}/${String(i).padStart(5, "0")}.tmp`, data);
  }
  await Deno.writeTextFile(`${many}/a.txt`, "first\n");
  await Deno.writeTextFile(`${many}/z.txt`, "last\n");
  const expected = (await snapshot(many)).filter((line) => !line.includes(".tmp"));
  const get = await ok(server, ["get", "-r", "many", `${work.path}/back`, "--exclude", "*.tmp"]);
  assert.match(get.stderr, /: 2 files,/);
  assert.deepEqual(await snapshot(`${work.path}/back`), expected);
  const put = await ok(server, ["put", "-r", many, "copy", "--json", "--exclude", "*.tmp"]);
  assert.equal(summaryOf(put).files, 2);
  assert.deepEqual(await snapshot(`${server.root}/copy`), expected);
});

Deno.test("an excluded folder of the receiver's is never replaced by the sender's file of its name, both ways", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  /** The receiver's side: an excluded folder `cache` (and `conf`, holding an excluded `.env`). */
  const plant = async (dir: string) => {
    await Deno.mkdir(`${dir}/cache`, { recursive: true });
    await Deno.mkdir(`${dir}/conf`, { recursive: true });
    await Deno.writeTextFile(`${dir}/cache/precious`, "keep me\n");
    await Deno.writeTextFile(`${dir}/conf/.env`, "SECRET=1\n");
    await Deno.writeTextFile(`${dir}/conf/other`, "replaceable\n");
    await Deno.mkdir(`${dir}/lnk`);
    await Deno.writeTextFile(`${dir}/lnk/mine`, "keep me\n");
  };
  const src = `${work.path}/src`;
  await Deno.mkdir(src);
  for (const name of ["cache", "conf", "shared"]) {
    await Deno.writeTextFile(`${src}/${name}`, `the sender's file ${name}\n`);
  }
  // A link the sender has (--links) where the receiver has an excluded folder: the same.
  await Deno.symlink("shared", `${src}/lnk`);
  const patterns = ["--links", "--exclude", "cache/", "--exclude", ".env", "--exclude", "lnk/"];
  const check = async (dir: string, result: { code: number; stderr: string }, what: string) => {
    assert.equal(result.code, 1, `${what}: ${result.stderr}`);
    assert.match(result.stderr, /cache: an excluded name is in the way/i, what);
    assert.match(result.stderr, /conf: an excluded name is in the way/i, what);
    assert.match(result.stderr, /lnk: an excluded name is in the way/i, what);
    assert.match(result.stderr, /1 file,.* 1 deleted, 3 failed/, what);
    assert.equal(await Deno.readTextFile(`${dir}/lnk/mine`), "keep me\n", what);
    assert.equal(await Deno.readTextFile(`${dir}/cache/precious`), "keep me\n", what);
    assert.equal(await Deno.readTextFile(`${dir}/conf/.env`), "SECRET=1\n", what);
    // What the excluded name did not need went, as --delete asked.
    assert.equal(await pathExists(`${dir}/conf/other`), false, what);
  };
  // put -r: the server receives.
  await plant(`${server.root}/dst`);
  const put = await ferry(server, ["put", "-r", "--delete", src, "dst", ...patterns]);
  await check(`${server.root}/dst`, put, "put -r");
  // get -r: the client receives.
  await ok(server, ["put", "-r", "--links", src, "tree"]);
  const local = `${work.path}/local`;
  await plant(local);
  const get = await ferry(server, ["get", "-r", "--delete", "tree", local, ...patterns]);
  await check(local, get, "get -r");
});

Deno.test("--delete keeps excluded names inside a folder it removes, and the folders they are in, both ways", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const plant = async (dir: string) => {
    await Deno.mkdir(`${dir}/old/sub/deeper`, { recursive: true });
    await Deno.mkdir(`${dir}/old/gone`, { recursive: true });
    await Deno.writeTextFile(`${dir}/old/sub/deeper/.env`, "SECRET=1\n");
    await Deno.writeTextFile(`${dir}/old/sub/x.txt`, "goes\n");
    await Deno.writeTextFile(`${dir}/old/gone/y.txt`, "goes\n");
    await Deno.writeTextFile(`${dir}/old/z.txt`, "goes\n");
    // One of the sender's names (another version): --delete's guard takes the folder for a copy.
    await Deno.writeTextFile(`${dir}/shared`, "older\n");
  };
  const src = `${work.path}/src`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/shared`, "x\n");
  const expected = ["old/", "old/sub/", "old/sub/deeper/", "old/sub/deeper/.env 9", "shared 2"];
  const paths = async (dir: string) =>
    (await snapshot(dir)).map((line) => line.split(" ").slice(0, 1).join(" "));
  const expectedPaths = expected.map((line) => line.split(" ")[0]);
  // A dry run tells what the real one does, and changes nothing.
  const check = async (dir: string, args: string[], what: string) => {
    const before = await snapshot(dir);
    const dry = await ok(server, [...args, "--dry-run"]);
    assert.equal(
      out(dry),
      // Deepest first: what went from each folder kept, once the folder is read whole.
      ["delete old/sub/x.txt", "delete old/gone", "delete old/z.txt", "send shared"].join("\n") +
        "\n",
      what,
    );
    assert.deepEqual(await snapshot(dir), before, what);
    const result = await ok(server, [...args, "--json"]);
    assert.equal(summaryOf(result).deleted, 3, what);
    assert.deepEqual(await paths(dir), expectedPaths, what);
    assert.equal(await Deno.readTextFile(`${dir}/old/sub/deeper/.env`), "SECRET=1\n", what);
  };
  await plant(`${server.root}/dst`);
  await check(
    `${server.root}/dst`,
    ["put", "-r", "--delete", src, "dst", "--exclude", ".env"],
    "put -r",
  );
  await ok(server, ["put", "-r", src, "tree"]);
  const local = `${work.path}/local`;
  await plant(local);
  await check(local, ["get", "-r", "--delete", "tree", local, "--exclude", ".env"], "get -r");
});
