/**
 * Remote tree operations against the real server and client: `list [DIR]`, `list -r`, `rm`,
 * `rm -r`, `mv` and `mkdir`, their refusals (existing names, missing folders, names that leave
 * the root, symlinks leading out, a read-only server, --legacy), strict request validation on the
 * wire, and the original flat listing that older clients still get.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  ferry,
  makeTempDir,
  pathExists,
  type RunResult,
  type ServerProcess,
  STAGING_DIR,
  startServer,
} from "./harness.ts";
import { dataWithEnd, serveOnce, Wire } from "./wire.ts";

const decoder = new TextDecoder();

function stdout(result: RunResult): string {
  return decoder.decode(result.stdout);
}

/** Runs the client and insists that it succeeded. */
async function ok(server: ServerProcess, args: string[], stdin?: string): Promise<RunResult> {
  const result = await ferry(server, args, stdin === undefined ? {} : { stdin });
  assertSuccess(result, args.join(" "));
  return result;
}

/** A root with files at several depths and an empty folder. */
async function populate(root: string): Promise<void> {
  await Deno.mkdir(`${root}/sub/deep`, { recursive: true });
  await Deno.mkdir(`${root}/empty`);
  await Deno.writeTextFile(`${root}/a.txt`, "aaa");
  await Deno.writeTextFile(`${root}/sub/b.txt`, "bb");
  await Deno.writeTextFile(`${root}/sub/deep/c.txt`, "c");
  // What an upload in progress leaves: never listed.
  await Deno.writeTextFile(`${root}/${STAGING_DIR}/x.upload`, "x");
}

Deno.test("list shows one folder with folders marked; list -r shows the tree", async () => {
  await using server = await startServer();
  await populate(server.root);

  assert.equal(stdout(await ok(server, ["list"])), "a.txt\nempty/\nsub/\n");
  assert.equal(stdout(await ok(server, ["list", "sub"])), "sub/b.txt\nsub/deep/\n");
  assert.equal(stdout(await ok(server, ["list", "sub/"])), "sub/b.txt\nsub/deep/\n", "slash");
  assert.equal(stdout(await ok(server, ["list", "."])), "a.txt\nempty/\nsub/\n", ". is the top");
  assert.equal(stdout(await ok(server, ["list", "empty"])), "");
  assert.equal(
    stdout(await ok(server, ["list", "-r"])),
    "a.txt\nempty/\nsub/\nsub/b.txt\nsub/deep/\nsub/deep/c.txt\n",
  );
  assert.equal(
    stdout(await ok(server, ["list", "--recursive", "sub"])),
    "sub/b.txt\nsub/deep/\nsub/deep/c.txt\n",
  );

  const json = JSON.parse(stdout(await ok(server, ["list", "-r", "--json"])));
  assert.deepEqual(
    json.map((e: Record<string, unknown>) => [e.name, e.type, e.size]),
    [
      ["a.txt", "file", 3],
      ["empty", "dir", 0],
      ["sub", "dir", 0],
      ["sub/b.txt", "file", 2],
      ["sub/deep", "dir", 0],
      ["sub/deep/c.txt", "file", 1],
    ],
  );
  for (const entry of json) {
    assert.deepEqual(Object.keys(entry), ["name", "type", "size", "mtime"]);
    const actual = (await Deno.stat(`${server.root}/${entry.name}`)).mtime!.getTime();
    assert.ok(Math.abs(Date.parse(entry.mtime) - actual) < 1000, `mtime of ${entry.name}`);
  }

  const long = stdout(await ok(server, ["list", "-l", "sub"])).split("\n");
  const date = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d";
  assert.match(long[0], new RegExp(`^       2 B  ${date}  sub/b\\.txt$`));
  assert.match(long[1], new RegExp(`^         -  ${date}  sub/deep/$`));
  assert.equal(long[2], "1 file, 1 folder, 2 B");

  const missing = await ferry(server, ["list", "nothere"]);
  assertFailure(missing, /^ferry: Refused by server: No such folder: "nothere"$/, {
    what: "list of a missing folder",
  });
  const file = await ferry(server, ["list", "a.txt"]);
  assertFailure(file, /^ferry: Refused by server: Not a folder: "a\.txt"$/, {
    what: "list of a file",
  });
  for (const bad of ["..", "sub/../..", "/etc", STAGING_DIR]) {
    assertFailure(await ferry(server, ["list", bad]), /^ferry: Refused by server: Refused name/, {
      what: `list ${bad}`,
    });
  }
});

Deno.test("rm removes files and links, folders only with -r", async () => {
  await using outside = await makeTempDir();
  await Deno.writeTextFile(`${outside.path}/precious`, "keep");
  await using server = await startServer();
  await populate(server.root);
  await Deno.symlink(`${outside.path}/precious`, `${server.root}/link`);

  await ok(server, ["rm", "a.txt"]);
  assert.equal(await pathExists(`${server.root}/a.txt`), false);
  // A symlink is removed, never what it points to.
  await ok(server, ["rm", "link"]);
  assert.equal(await pathExists(`${server.root}/link`), false);
  assert.equal(await Deno.readTextFile(`${outside.path}/precious`), "keep");

  const folder = await ferry(server, ["rm", "sub"]);
  assertFailure(
    folder,
    /^ferry: Refused by server: "sub" is a folder \(use -r to remove a folder and everything in it\)$/,
    { what: "rm of a folder without -r" },
  );
  assert.ok(await pathExists(`${server.root}/sub/deep/c.txt`));
  await ok(server, ["rm", "-r", "sub/"]);
  assert.equal(await pathExists(`${server.root}/sub`), false);
  await ok(server, ["rm", "empty", "--recursive"]);
  assert.equal(stdout(await ok(server, ["list", "-r"])), "");

  assertFailure(await ferry(server, ["rm", "gone"]), /No such file or folder: "gone"$/, {
    what: "rm of a missing name",
  });
  for (const bad of ["../x", STAGING_DIR, `${STAGING_DIR}/x.upload`, "a//b"]) {
    assertFailure(await ferry(server, ["rm", "-r", bad]), /Refused name/, { what: `rm ${bad}` });
  }
  assert.ok(await pathExists(`${server.root}/${STAGING_DIR}`), "the staging folder stays");
  assertUsageError(await ferry(server, ["rm", "-r", "."]), "ferry", {
    what: "rm -r .",
    pattern: /the served folder itself/,
  });
});

Deno.test("mv renames files and folders, refusing taken names unless --overwrite", async () => {
  await using server = await startServer();
  await populate(server.root);

  await ok(server, ["mv", "a.txt", "sub/a2.txt"]);
  assert.equal(await Deno.readTextFile(`${server.root}/sub/a2.txt`), "aaa");
  assert.equal(await pathExists(`${server.root}/a.txt`), false);
  await ok(server, ["mv", "sub", "moved"]);
  assert.equal(await Deno.readTextFile(`${server.root}/moved/deep/c.txt`), "c");
  // A NEW ending in / (or .) is a folder to move into, as put's REMOTE is.
  await ok(server, ["mv", "moved/a2.txt", "empty/"]);
  assert.equal(await Deno.readTextFile(`${server.root}/empty/a2.txt`), "aaa");
  await ok(server, ["mv", "empty/a2.txt", "."]);
  assert.equal(await Deno.readTextFile(`${server.root}/a2.txt`), "aaa");
  await ok(server, ["mv", "a2.txt", "moved/"]);

  const taken = await ferry(server, ["mv", "moved/a2.txt", "moved/b.txt"]);
  assertFailure(
    taken,
    /^ferry: Refused by server: File exists: "moved\/b\.txt" \(use --overwrite to replace it\)$/,
    { what: "mv over a file" },
  );
  assert.equal(await Deno.readTextFile(`${server.root}/moved/b.txt`), "bb", "left alone");
  await ok(server, ["mv", "--overwrite", "moved/a2.txt", "moved/b.txt"]);
  assert.equal(await Deno.readTextFile(`${server.root}/moved/b.txt`), "aaa");
  assert.equal(await pathExists(`${server.root}/moved/a2.txt`), false);

  const refusals: [string[], RegExp][] = [
    [["mv", "moved/b.txt", "empty"], /"empty" is a folder$/],
    [["mv", "--overwrite", "moved/b.txt", "empty"], /"empty" is a folder$/],
    [["mv", "empty", "moved/b.txt"], /Cannot replace file "moved\/b\.txt" with a folder$/],
    [["mv", "moved", "moved/deep/inner"], /Cannot move "moved" into itself$/],
    [["mv", "moved/b.txt", "nowhere/b.txt"], /No such folder for "nowhere\/b\.txt"$/],
    [["mv", "gone", "x"], /No such file or folder: "gone"$/],
    [["mv", "moved/b.txt", "../b.txt"], /Refused name "\.\.\/b\.txt"/],
    [["mv", "moved/b.txt", `${STAGING_DIR}/b.txt`], /reserved for uploads in progress$/],
  ];
  for (const [args, pattern] of refusals) {
    assertFailure(await ferry(server, args), pattern, { what: args.join(" ") });
  }
  assert.equal(await Deno.readTextFile(`${server.root}/moved/b.txt`), "aaa", "nothing moved");
  assert.equal(
    stdout(await ok(server, ["list", "-r"])),
    "empty/\nmoved/\nmoved/b.txt\nmoved/deep/\nmoved/deep/c.txt\n",
  );
});

Deno.test("mv of a symlink is refused when its relative target would point elsewhere, done when not", async () => {
  await using server = await startServer();
  const root = server.root;
  await Deno.mkdir(`${root}/a/b`, { recursive: true });
  await Deno.mkdir(`${root}/a/c`);
  await Deno.writeTextFile(`${root}/x.txt`, "top");
  await Deno.writeTextFile(`${root}/a/x.txt`, "middle");
  await Deno.symlink("../../x.txt", `${root}/a/b/up`);
  await Deno.symlink("x.txt", `${root}/a/near`);
  await Deno.symlink(`${root}/x.txt`, `${root}/a/absolute`);

  // From the root, ../../x.txt would lead out of it; from a/b, x.txt would be another file.
  const refusals: [string[], RegExp][] = [
    [
      ["mv", "a/b/up", "up"],
      /^ferry: Refused by server: Refused to move symlink "a\/b\/up" to "up": its relative target "\.\.\/\.\.\/x\.txt" would point elsewhere from there$/,
    ],
    [["mv", "a/near", "a/b/near"], /its relative target "x\.txt" would point elsewhere/],
    [["mv", "--overwrite", "a/near", "x.txt"], /its relative target "x\.txt" would point/],
  ];
  for (const [args, pattern] of refusals) {
    assertFailure(await ferry(server, args), pattern, { what: args.join(" ") });
  }
  assert.equal(await Deno.readLink(`${root}/a/b/up`), "../../x.txt", "left where it was");
  assert.equal(await Deno.readLink(`${root}/a/near`), "x.txt", "left where it was");
  assert.equal(await Deno.readTextFile(`${root}/x.txt`), "top", "not replaced");
  assert.equal(await pathExists(`${root}/up`), false);

  // A rename in its folder, a folder where the target reads the same, an absolute target: done.
  await ok(server, ["mv", "a/b/up", "a/b/renamed"]);
  await ok(server, ["mv", "a/b/renamed", "a/c/renamed"]);
  await ok(server, ["mv", "a/absolute", "a/b/absolute"]);
  assert.equal(await Deno.readLink(`${root}/a/c/renamed`), "../../x.txt");
  assert.equal(stdout(await ok(server, ["get", "a/c/renamed", "-"])), "top");
  assert.equal(stdout(await ok(server, ["get", "a/b/absolute", "-"])), "top");

  // What the refusal prevents: a link moved by other means that now leads out is refused at
  // use, never followed.
  await Deno.writeTextFile(`${server.base}/x.txt`, "secret");
  await Deno.symlink("../x.txt", `${root}/a/escape`);
  await Deno.rename(`${root}/a/escape`, `${root}/escape`);
  assert.equal(await Deno.readTextFile(`${root}/escape`), "secret", "the link does lead out");
  assertFailure(await ferry(server, ["get", "escape", "-"]), /leads outside the root$/, {
    what: "get of a link leading out",
  });
});

Deno.test("mkdir needs the parent unless -p, which also accepts an existing folder", async () => {
  await using server = await startServer();
  await ok(server, ["mkdir", "a"]);
  assert.ok((await Deno.stat(`${server.root}/a`)).isDirectory);
  assertFailure(
    await ferry(server, ["mkdir", "x/y/z"]),
    /No such folder for "x\/y\/z" \(use -p to create parent folders too\)$/,
    { what: "mkdir without parents" },
  );
  assert.equal(await pathExists(`${server.root}/x`), false);
  await ok(server, ["mkdir", "-p", "x/y/z"]);
  assert.ok((await Deno.stat(`${server.root}/x/y/z`)).isDirectory);
  await ok(server, ["mkdir", "--parents", "x/y/z"]);
  assertFailure(await ferry(server, ["mkdir", "a"]), /Folder exists: "a"$/, { what: "mkdir a" });
  await Deno.writeTextFile(`${server.root}/f`, "");
  assertFailure(await ferry(server, ["mkdir", "-p", "f"]), /File exists: "f"$/, {
    what: "mkdir over a file",
  });
  assertFailure(await ferry(server, ["mkdir", "-p", "f/g"]), /f is not a folder$/, {
    what: "mkdir under a file",
  });
  assert.equal(stdout(await ok(server, ["list", "-r"])), "a/\nf\nx/\nx/y/\nx/y/z/\n");
});

Deno.test("no tree operation follows a symlink out of the root", async () => {
  await using outside = await makeTempDir();
  await Deno.writeTextFile(`${outside.path}/secret`, "s");
  await using server = await startServer();
  await Deno.writeTextFile(`${server.root}/mine`, "m");
  await Deno.symlink(outside.path, `${server.root}/out`);
  await Deno.symlink(`${server.root}/${STAGING_DIR}`, `${server.root}/staged`);

  const attempts = [
    ["list", "out"],
    ["list", "-r", "out"],
    ["rm", "out/secret"],
    ["mv", "out/secret", "stolen"],
    ["mv", "mine", "out/mine"],
    ["mkdir", "out/new"],
    ["mkdir", "-p", "out/a/b"],
    ["list", "staged"],
    ["mkdir", "staged/x"],
  ];
  for (const args of attempts) {
    assertFailure(await ferry(server, args), /leads outside the root$/, { what: args.join(" ") });
  }
  assert.equal(await Deno.readTextFile(`${outside.path}/secret`), "s");
  assert.deepEqual([...Deno.readDirSync(outside.path)].map((e) => e.name), ["secret"]);
  assert.equal(await Deno.readTextFile(`${server.root}/mine`), "m");
  // The links themselves are not listed (folders behind symlinks are never followed) but can go.
  assert.equal(stdout(await ok(server, ["list", "-r"])), "mine\n");
  // Even with -r and a trailing slash, the link goes and what it points to stays.
  await ok(server, ["rm", "-r", "out/"]);
  assert.equal(await pathExists(`${server.root}/out`), false);
  assert.equal(await Deno.readTextFile(`${outside.path}/secret`), "s");
});

Deno.test("a read-only server refuses rm, mv and mkdir but lists", async () => {
  await using server = await startServer({ args: ["--read-only"] });
  await populate(server.root);
  for (const args of [["rm", "a.txt"], ["rm", "-r", "sub"], ["mv", "a.txt", "b"], ["mkdir", "n"]]) {
    assertFailure(
      await ferry(server, args),
      new RegExp(`^ferry: Refused by server: Server is read-only: ${args[0]} is refused$`),
      { what: args.join(" ") },
    );
  }
  assert.equal(stdout(await ok(server, ["list", "-r"])).split("\n").length, 7);
  assert.equal(await Deno.readTextFile(`${server.root}/a.txt`), "aaa");
});

Deno.test("--legacy refuses the folder commands in one line, before connecting", async () => {
  // Port 9 (discard) is never asked: the refusal comes first.
  const endpoint = { host: "127.0.0.1", port: 9 };
  const cases: [string[], RegExp][] = [
    [["rm", "a"], /rm is not available with --legacy/],
    [["mv", "a", "b"], /mv is not available with --legacy/],
    [["mkdir", "a"], /mkdir is not available with --legacy/],
    [["list", "-r"], /list -r is not available with --legacy/],
    [["list", "sub"], /list DIR is not available with --legacy/],
  ];
  for (const [args, pattern] of cases) {
    assertUsageError(await ferry(endpoint, ["--legacy", ...args]), "ferry", {
      what: args.join(" "),
      pattern,
    });
  }
  assertUsageError(await ferry(endpoint, ["mkdir", "-r", "a"]), "ferry", {
    what: "mkdir -r",
    pattern: /--recursive applies to list, rm, put, get, not mkdir/,
  });
  assertUsageError(await ferry(endpoint, ["mv", "a"]), "ferry", {
    what: "mv with one name",
    pattern: /expected mv OLD NEW/,
  });
});

Deno.test("tree requests are validated strictly; the original list stays flat", async () => {
  await using server = await startServer();
  await populate(server.root);
  const malformed = [
    { op: "list", recursive: "yes" },
    { op: "list", dir: "sub" },
    { op: "list", recursive: false, dir: 5 },
    { op: "rm", name: 1 },
    { op: "rm", name: "a.txt", recursive: 1 },
    { op: "mv", name: "a.txt" },
    { op: "mkdir", name: "n", parents: "true" },
    { op: "put_tree", name: "n", resume: "yes" },
    { op: "put_tree", name: "n", rate: 1024 },
    { op: "get_tree", name: "sub", rate: 0 },
    { op: "put_files", resume: true },
  ];
  for (const request of malformed) {
    using wire = await Wire.connect(server);
    const welcome = await wire.handshake();
    assert.ok((welcome.features as string[]).includes("tree"), "WELCOME offers tree");
    await wire.write(encodeControl(FrameType.REQUEST, request));
    const error = await wire.expectFrame(FrameType.ERROR, JSON.stringify(request));
    assert.equal(error.code, "bad_request", JSON.stringify(request));
  }
  assert.ok(await pathExists(`${server.root}/a.txt`));
  assert.equal(await pathExists(`${server.root}/n`), false);

  // A client that predates folders asks {"op":"list"} and gets every file, untyped, as before.
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "list" }));
  await wire.expectFrame(FrameType.OK, "list");
  const data = await wire.readFrame();
  assert.equal(data?.type, FrameType.DATA);
  assert.deepEqual(
    JSON.parse(decoder.decode(data!.payload)).map((e: Record<string, unknown>) => Object.keys(e)),
    [["name", "size", "mtime"], ["name", "size", "mtime"], ["name", "size", "mtime"]],
  );
  assert.deepEqual(
    JSON.parse(decoder.decode(data!.payload)).map((e: { name: string }) => e.name),
    ["a.txt", "sub/b.txt", "sub/deep/c.txt"],
  );
});

Deno.test("against a server that predates folders, list is built from its files and rm is refused", async () => {
  const files = [
    { name: "a.txt", size: 1, mtime: 0 },
    { name: "sub/b.txt", size: 2, mtime: 0 },
    { name: "sub/deep/c.txt", size: 3, mtime: 0 },
  ];
  const oldServer = (requests: number) => async (conn: Deno.Conn) => {
    using wire = new Wire(conn);
    await wire.acceptHandshake();
    for (let i = 0; i < requests; i++) {
      const request = await wire.expectFrame(FrameType.REQUEST, "request");
      assert.deepEqual(request, { op: "list" }, "only the original list is sent");
      const listing = new TextEncoder().encode(JSON.stringify(files));
      await wire.write(encodeControl(FrameType.OK, { size: listing.length }));
      await wire.write(await dataWithEnd(listing));
    }
    await wire.waitForClose(5000);
  };
  const top = await serveOnce(oldServer(1), (port) => ferry({ host: "127.0.0.1", port }, ["list"]));
  assertSuccess(top, "list");
  assert.equal(stdout(top), "a.txt\nsub/\n");
  const sub = await serveOnce(
    oldServer(1),
    (port) => ferry({ host: "127.0.0.1", port }, ["list", "-r", "sub"]),
  );
  assertSuccess(sub, "list -r sub");
  assert.equal(stdout(sub), "sub/b.txt\nsub/deep/\nsub/deep/c.txt\n");
  const rm = await serveOnce(
    oldServer(0),
    (port) => ferry({ host: "127.0.0.1", port }, ["rm", "a.txt"]),
  );
  assertFailure(
    rm,
    /does not offer rm \(it has no folder operations: an older server\)$/,
    { what: "rm" },
  );
  await using work = await makeTempDir();
  const put = await serveOnce(
    oldServer(0),
    (port) => ferry({ host: "127.0.0.1", port }, ["put", "-r", work.path, "t"]),
  );
  assertFailure(
    put,
    /does not offer put -r \(it has no folder operations: an older server\)$/,
    {
      what: "put -r",
    },
  );
});
