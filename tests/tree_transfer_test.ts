/**
 * Whole folders, `put -r` and `get -r`, against the real server and client: round trips compared
 * file by file (content, mtime, permission bits), sync (only what changed is sent), --checksum,
 * --delete, --dry-run, scp's destination habits, --links, read-only and --legacy refusals, and an
 * interrupted tree finished by running it again.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  collectLines,
  ferry,
  makeTempDir,
  pathExists,
  PROGRAM_PERMISSIONS,
  randomBytes,
  REPO_ROOT,
  runCommand,
  SERVER_BANNER,
  spawnServing,
  startServer,
  stderrLines,
  writeRandomFile,
} from "./harness.ts";
import { changeTimes, cuttingRelay, ok, out, snapshot, summaryOf } from "./tree_helpers.ts";

/** A small tree: nested folders, an empty one, odd modes and an old mtime, and a symlink. */
async function makeTree(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/sub/deep`, { recursive: true });
  await Deno.mkdir(`${dir}/empty`);
  await Deno.writeTextFile(`${dir}/a.txt`, "alpha\n");
  await Deno.writeFile(`${dir}/sub/big.bin`, crypto.getRandomValues(new Uint8Array(65536)));
  await Deno.writeTextFile(`${dir}/sub/deep/c.txt`, "gamma\n");
  await Deno.writeTextFile(`${dir}/space name.txt`, "spaced\n");
  await Deno.chmod(`${dir}/a.txt`, 0o600);
  await Deno.chmod(`${dir}/sub/deep/c.txt`, 0o755);
  await Deno.utime(`${dir}/sub/big.bin`, new Date(), new Date(Date.UTC(2020, 1, 3, 4, 5, 6, 789)));
  await Deno.symlink("/etc/hostname", `${dir}/link`);
}

Deno.test("put -r and get -r round-trip a tree: contents, mtimes, modes, empty folders", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await makeTree(src);
  // setuid is never carried.
  await Deno.writeTextFile(`${src}/suid`, "s");
  await Deno.chmod(`${src}/suid`, 0o4755);
  // The top folder is carried too: its mode (owner rwx always kept) and, set last, its mtime.
  await Deno.chmod(src, 0o750);
  const topTime = new Date(Date.UTC(2019, 5, 6, 7, 8, 9, 123));
  await Deno.utime(src, new Date(), topTime);
  const assertTop = async (path: string) => {
    const info = await Deno.stat(path);
    assert.equal(info.mode! & 0o777, 0o750, `${path}'s mode`);
    assert.equal(info.mtime!.getTime(), topTime.getTime(), `${path}'s mtime`);
  };

  const dry = await ok(server, ["put", "-r", src, "--dry-run"]);
  assert.equal(
    out(dry),
    ["a.txt", "space name.txt", "sub/big.bin", "sub/deep/c.txt", "suid"].map((n) => `send ${n}\n`)
      .join(""),
  );
  assert.match(stderrLines(dry).at(-1)!, /would send 5 files \(64\.\d+ KiB\); 0 up to date/);
  assert.equal(await pathExists(`${server.root}/src`), false, "a dry run creates nothing");

  const put = await ok(server, ["put", "-r", src]);
  assert.match(stderrLines(put)[0], /^ferry: link: symlink not followed; not sent$/);
  assert.match(
    stderrLines(put)[1],
    /^Uploaded .*src to "src": 5 files, .*; 0 up to date, 0 deleted, 0 failed$/,
  );
  const expected = (await snapshot(src)).map((l) =>
    l.replace(/^suid (\d+ \d+) 4755/, "suid $1 755")
  );
  assert.deepEqual(await snapshot(`${server.root}/src`), expected);
  assert.equal(await pathExists(`${server.root}/src/link`), false, "symlinks are not sent");
  await assertTop(`${server.root}/src`);

  // One progress line for the whole tree: files done of those to send, bytes, total, rate, ETA
  // (drawn once the transfer has run for a tenth of a second: a big file, paced to take at least
  // 0.3 s, makes sure it does, however fast the machine).
  await Deno.mkdir(`${work.path}/big`);
  await writeRandomFile(`${work.path}/big/one.bin`, 48 << 20);
  await Deno.writeTextFile(`${work.path}/big/two.txt`, "2");
  const shown = await ok(server, [
    "put",
    "-r",
    `${work.path}/big`,
    "--progress",
    "--limit-rate",
    "160M",
  ]);
  assert.match(
    shown.stderr.replaceAll("\x1b[2K", "|"),
    /\|big: [012]\/2 files +\d+% +[\d.]+ [KM]iB \/ 48\.0 MiB .*ETA/,
  );

  const got = await ok(server, ["get", "-r", "src", "back"], work.path);
  assert.match(stderrLines(got).at(-1)!, /^Downloaded "src" to back: 5 files/);
  assert.deepEqual(await snapshot(`${work.path}/back`), expected);
  await assertTop(`${work.path}/back`);
  await server.waitForLog(/ put_tree "src" \d+ bytes ok 5 files, 0 skipped, 0 deleted, 0 failed /);
  await server.waitForLog(/ get_tree "src" \d+ bytes ok 5 files, 0 skipped/);
  // Nothing of the staging is left on either side.
  assert.deepEqual(
    [...Deno.readDirSync(`${work.path}/back`)].filter((e) => e.name.startsWith(".ferry-")),
    [],
  );
});

Deno.test("a second run sends only what changed; --checksum compares contents", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await makeTree(src);
  await ok(server, ["put", "-r", src, "mirror"]);

  const again = await ok(server, ["put", "-r", src, "mirror"]);
  assert.match(stderrLines(again).at(-1)!, /: 0 files, 0 B .*; 4 up to date, 0 deleted, 0 failed$/);

  // Same size, new content and mtime: sent. Same size and mtime, new content: only --checksum.
  await Deno.writeTextFile(`${src}/a.txt`, "ALPHA\n");
  const stat = await Deno.stat(`${src}/sub/deep/c.txt`);
  await Deno.writeTextFile(`${src}/sub/deep/c.txt`, "GAMMA\n");
  await Deno.utime(`${src}/sub/deep/c.txt`, stat.atime!, stat.mtime!);
  const changed = await ok(server, ["put", "-r", src, "mirror", "--json"]);
  const reports = out(changed).trim().split("\n").map((line) => JSON.parse(line));
  const sent = reports.filter((r) => r.action === "sent").map((r) => r.name);
  assert.deepEqual(sent, ["a.txt"]);
  const summary = reports.at(-1);
  assert.equal(summary.summary, true);
  assert.deepEqual(
    [summary.files, summary.skipped, summary.deleted, summary.failed, summary.bytes],
    [1, 3, 0, 0, 6],
  );
  assert.equal(await Deno.readTextFile(`${server.root}/mirror/sub/deep/c.txt`), "gamma\n");

  const checked = await ok(server, ["put", "-r", src, "mirror", "--checksum", "--json"]);
  const names = out(checked).trim().split("\n").map((line) => JSON.parse(line))
    .filter((r) => r.action === "sent").map((r) => r.name);
  assert.deepEqual(names, ["sub/deep/c.txt"]);
  assert.deepEqual(await snapshot(`${server.root}/mirror`), await snapshot(src));

  // The other way, get -r --checksum finds the local file whose content alone changed.
  const copy = `${work.path}/copy`;
  await ok(server, ["get", "-r", "mirror", copy]);
  const big = await Deno.stat(`${copy}/sub/big.bin`);
  await Deno.writeFile(`${copy}/sub/big.bin`, randomBytes(big.size));
  await Deno.utime(`${copy}/sub/big.bin`, big.atime!, big.mtime!);
  const plain = await ok(server, ["get", "-r", "mirror", copy]);
  assert.match(stderrLines(plain).at(-1)!, /: 0 files, 0 B .*; 4 up to date/);
  const fetched = await ok(server, ["get", "-r", "mirror", copy, "--checksum", "--json"]);
  assert.deepEqual(
    out(fetched).trim().split("\n").map((line) => JSON.parse(line))
      .filter((r) => r.action === "sent").map((r) => r.name),
    ["sub/big.bin"],
  );
  assert.deepEqual(await snapshot(copy), await snapshot(src));
});

Deno.test({
  name: "a pass leaves alone the folders it changes nothing in, and finishes the others again",
  // GNU stat's %z gives the change time to the nanosecond (Deno's ctime is whole seconds).
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using work = await makeTempDir();
    await using server = await startServer();
    const src = `${work.path}/src`;
    await makeTree(src);
    const folders = ["sub", "sub/deep", "empty"];
    const old = new Date(Date.UTC(2021, 2, 4, 5, 6, 7, 890));
    for (const folder of folders) await Deno.utime(`${src}/${folder}`, old, old);
    await ok(server, ["put", "-r", src, "mirror"]);
    const copy = `${work.path}/copy`;
    await ok(server, ["get", "-r", "mirror", copy]);
    const mirror = `${server.root}/mirror`;
    const before = await changeTimes(mirror, folders);
    const local = await changeTimes(copy, folders);

    // Nothing changed: neither end so much as touches a folder (a chmod or utime would show).
    await ok(server, ["put", "-r", src, "mirror"]);
    await ok(server, ["get", "-r", "mirror", copy]);
    assert.deepEqual(await changeTimes(mirror, folders), before);
    assert.deepEqual(await changeTimes(copy, folders), local);

    // A file changed in sub/deep, and empty's mtime on the server: those two are finished again.
    await Deno.writeTextFile(`${src}/sub/deep/c.txt`, "GAMMA\n");
    await Deno.utime(`${src}/sub/deep`, old, old);
    await Deno.utime(`${mirror}/empty`, new Date(), new Date());
    await ok(server, ["put", "-r", src, "mirror"]);
    const after = await changeTimes(mirror, folders);
    assert.equal(after[0], before[0], "sub is left alone");
    assert.notEqual(after[1], before[1], "sub/deep is finished again");
    for (const folder of folders) {
      const info = await Deno.stat(`${mirror}/${folder}`);
      assert.equal(info.mtime!.getTime(), old.getTime(), `${folder}'s mtime`);
    }
  },
});

Deno.test("--delete removes what the sender lacks, both ways; --dry-run changes nothing", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await makeTree(src);
  await ok(server, ["put", "-r", src]);
  // Extras on the server: a file, a folder with contents, a file deep down.
  await Deno.writeTextFile(`${server.root}/src/extra.txt`, "x");
  await Deno.mkdir(`${server.root}/src/old/inner`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/src/old/inner/f`, "f");
  await Deno.writeTextFile(`${server.root}/src/sub/deep/zz`, "z");
  const before = await snapshot(`${server.root}/src`);

  const plain = await ok(server, ["put", "-r", src]);
  assert.match(stderrLines(plain).at(-1)!, /0 deleted/);
  assert.deepEqual(await snapshot(`${server.root}/src`), before, "no --delete: extras stay");

  const dry = await ok(server, ["put", "-r", src, "--delete", "--dry-run"]);
  assert.deepEqual(out(dry).split("\n").filter((l) => l.startsWith("delete ")), [
    "delete extra.txt",
    "delete old",
    "delete sub/deep/zz",
  ]);
  assert.ok(out(dry).includes("skip a.txt\n"));
  assert.match(stderrLines(dry).at(-1)!, /^Dry run, nothing changed: /);
  assert.deepEqual(await snapshot(`${server.root}/src`), before, "a dry run changes nothing");

  await ok(server, ["put", "-r", src, "--delete"]);
  assert.deepEqual(await snapshot(`${server.root}/src`), await snapshot(src));

  // And the other way: local extras go with get -r --delete, after a dry run that keeps them.
  await ok(server, ["get", "-r", "src", "copy"], work.path);
  await Deno.writeTextFile(`${work.path}/copy/local-only`, "l");
  await Deno.mkdir(`${work.path}/copy/sub/local-dir`);
  const dryGet = await ok(server, ["get", "-r", "src", "copy", "--delete", "--dry-run"], work.path);
  assert.deepEqual(out(dryGet).split("\n").filter((l) => l.startsWith("delete ")), [
    "delete local-only",
    "delete sub/local-dir",
  ]);
  assert.ok(await pathExists(`${work.path}/copy/local-only`));
  await ok(server, ["get", "-r", "src", "copy", "--delete"], work.path);
  assert.deepEqual(await snapshot(`${work.path}/copy`), await snapshot(src));
});

Deno.test("scp's habits: put FILE dir/, put FILE ., get -r dir ., put -r dir dest/", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  await makeTree(`${work.path}/tree`);
  await Deno.writeTextFile(`${work.path}/one.txt`, "1");
  await Deno.mkdir(`${server.root}/docs`);

  await ok(server, ["put", `${work.path}/one.txt`, "docs/"]);
  assert.equal(await Deno.readTextFile(`${server.root}/docs/one.txt`), "1");
  await ok(server, ["put", `${work.path}/one.txt`, "."]);
  assert.equal(
    await Deno.readTextFile(`${server.root}/one.txt`),
    "1",
    "put FILE . puts at the top",
  );
  // Without the slash the name is the file's new name: a folder there is refused, with the way in.
  assertFailure(
    await ferry(server, ["put", `${work.path}/one.txt`, "docs"]),
    /^ferry: Refused by server: "docs" is a folder \(end the name with \/ to put one\.txt into it\)$/,
    { what: "put FILE onto a folder's name" },
  );
  assertFailure(
    await ferry(server, ["get", "docs", `${work.path}/x`]),
    /^ferry: Refused by server: Not a regular file: "docs" \(get -r fetches a folder\)$/,
    { what: "get of a folder" },
  );
  assertFailure(
    await ferry(server, ["get", "-r", "docs/one.txt", `${work.path}/y`]),
    /^ferry: Refused by server: Not a folder: "docs\/one\.txt" \(get without -r fetches a file\)$/,
    { what: "get -r of a file" },
  );
  assertUsageError(
    await ferry(server, ["put", "-", "docs/"], { stdin: "data" }),
    "ferry",
    {
      what: "put - into a folder",
      pattern: /Cannot tell what to name it in docs\/: give a name, as in docs\/NAME /,
    },
  );
  await ok(server, ["put", "-r", `${work.path}/tree`, "docs/"]);
  assert.ok(await pathExists(`${server.root}/docs/tree/sub/deep/c.txt`));
  // Without a trailing slash the destination is the tree's new name, so a rerun lands there too.
  await ok(server, ["put", "-r", `${work.path}/tree`, "renamed"]);
  await ok(server, ["put", "-r", `${work.path}/tree`, "renamed"]);
  assert.ok(await pathExists(`${server.root}/renamed/sub/deep/c.txt`));
  assert.equal(await pathExists(`${server.root}/renamed/tree`), false);

  await Deno.mkdir(`${work.path}/here`);
  await ok(server, ["get", "-r", "docs", "."], `${work.path}/here`);
  assert.ok(await pathExists(`${work.path}/here/docs/tree/sub/deep/c.txt`));
  await ok(server, ["get", "-r", "docs/tree"], `${work.path}/here`);
  assert.deepEqual(await snapshot(`${work.path}/here/tree`), await snapshot(`${work.path}/tree`));
});

Deno.test("put -r is refused by a read-only server, and -r by --legacy", async () => {
  await using work = await makeTempDir();
  await using server = await startServer({ args: ["--read-only"] });
  await makeTree(`${work.path}/src`);
  assertFailure(
    await ferry(server, ["put", "-r", `${work.path}/src`]),
    /^ferry: Refused by server: Server is read-only: uploads are refused$/,
    { what: "put -r to a read-only server" },
  );
  assert.deepEqual([...Deno.readDirSync(server.root)].filter((e) => !e.name.startsWith(".")), []);
  const endpoint = { host: "127.0.0.1", port: 9 };
  for (const command of ["put", "get"]) {
    assertUsageError(await ferry(endpoint, ["--legacy", command, "-r", "x"]), "ferry", {
      what: `--legacy ${command} -r`,
      pattern: new RegExp(`${command} -r is not available with --legacy`),
    });
  }
  // Local trouble is found before any connection is made (nothing listens on port 9).
  assertFailure(
    await ferry(endpoint, ["put", "-r", `${work.path}/missing`]),
    /Cannot read .*missing/,
    {
      what: "put -r of a missing folder",
    },
  );
  assertFailure(
    await ferry(endpoint, ["put", "-r", `${work.path}/src/a.txt`]),
    /a\.txt is not a folder \(put without -r sends one file\)$/,
    { what: "put -r of a file" },
  );
  assertFailure(
    await ferry(endpoint, ["get", "-r", "x", `${work.path}/src/a.txt`]),
    /Cannot write into .*a\.txt: not a folder$/,
    { what: "get -r into a file" },
  );
  assertUsageError(await ferry(endpoint, ["put", "x", "--delete"]), "ferry", {
    what: "--delete without -r",
    pattern: /--delete applies to put -r and get -r only/,
  });
});

Deno.test("--links copies symlinks that stay inside the tree, both ways, and notes the others", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await Deno.mkdir(`${src}/sub/deep`, { recursive: true });
  await Deno.writeTextFile(`${src}/a.txt`, "a\n");
  await Deno.writeTextFile(`${src}/sub/deep/c.txt`, "c\n");
  const inside: [string, string][] = [
    ["in", "sub/deep/c.txt"],
    ["sub/up", "../a.txt"],
    ["sub/dir", "deep"],
  ];
  const outside: [string, string][] = [
    ["abs", "/etc/hostname"],
    ["sub/esc", "../../x"],
    // Lexically inside, but "deep" could be a link: a ".." after a name is never trusted.
    ["sub/sneaky", "deep/../../a.txt"],
  ];
  for (const [path, target] of [...inside, ...outside]) {
    await Deno.symlink(target, `${src}/${path}`);
  }
  const links = async (dir: string) => {
    const found: [string, string][] = [];
    for (const [path] of [...inside, ...outside]) {
      const info = await Deno.lstat(`${dir}/${path}`).catch(() => null);
      if (info?.isSymlink) found.push([path, await Deno.readLink(`${dir}/${path}`)]);
    }
    return found;
  };

  // Without --links, as before: none is sent, each with a note.
  const plain = await ok(server, ["put", "-r", src, "plain"]);
  assert.equal(
    stderrLines(plain).filter((l) => l.endsWith("symlink not followed; not sent")).length,
    6,
  );
  assert.deepEqual(await links(`${server.root}/plain`), []);

  const put = await ok(server, ["put", "-r", src, "--links"]);
  assert.deepEqual(
    stderrLines(put).filter((l) => l.endsWith("; not sent")).sort(),
    outside.map(([p]) => `ferry: ${p}: symlink leads outside the tree; not sent`).sort(),
  );
  assert.deepEqual(await links(`${server.root}/src`), inside);
  assert.equal(await Deno.readTextFile(`${server.root}/src/sub/up`), "a\n");

  const got = await ok(server, ["get", "-r", "src", `${work.path}/back`, "--links", "--json"]);
  assert.deepEqual(await links(`${work.path}/back`), inside);
  const sent = out(got).trim().split("\n").map((l) => JSON.parse(l)).filter((r) =>
    r.action === "sent"
  ).map((r) => r.name).sort();
  assert.deepEqual(sent, ["a.txt", "in", "sub/deep/c.txt", "sub/dir", "sub/up"]);

  // Again: links that match are up to date; a changed one is replaced, never written through.
  await Deno.remove(`${src}/sub/up`);
  await Deno.symlink("deep/c.txt", `${src}/sub/up`);
  const again = await ok(server, ["put", "-r", src, "--links"]);
  assert.match(
    stderrLines(again).at(-1)!,
    /: 1 file, 0 B in .*; 4 up to date, 0 deleted, 0 failed$/,
  );
  assert.equal(await Deno.readLink(`${server.root}/src/sub/up`), "deep/c.txt");
  assert.equal(await Deno.readTextFile(`${server.root}/src/a.txt`), "a\n", "not written through");
});

/** Runs a command under umask 077: `sh -c 'umask 077 && exec "$@"' sh COMMAND...`. */
const UNDER_UMASK_077 = ["-c", 'umask 077 && exec "$@"', "sh"];

/**
 * In `dir` and `dir/sub`, files of modes a umask of 077 keeps whole (600, 700) and modes it cuts
 * (the others), each more than once, small ones and large ones (staged another way). With
 * `touch`, their mtimes change, so that a sync sends each again.
 */
async function writeModes(dir: string, touch = false): Promise<void> {
  const modes = [0o600, 0o644, 0o600, 0o755, 0o700, 0o664, 0o644, 0o604];
  await Deno.mkdir(`${dir}/sub`, { recursive: true });
  for (const [i, mode] of modes.entries()) {
    const path = `${dir}/${i % 2 ? "sub/" : ""}f${i}`;
    if (touch) {
      await Deno.utime(path, new Date(), new Date(Date.UTC(2021, 0, 1 + i)));
      continue;
    }
    await Deno.writeFile(path, randomBytes(i === 6 ? 300 << 10 : i === 7 ? 1536 << 10 : 100));
    await Deno.chmod(path, mode);
  }
}

Deno.test({
  name: "get -r gives every file its whole mode, whatever the umask took from it at creation",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using work = await makeTempDir();
    await using server = await startServer();
    await writeModes(`${server.root}/modes`);
    const get = async (to: string) => {
      const result = await runCommand("sh", [
        ...UNDER_UMASK_077,
        Deno.execPath(),
        "run",
        ...PROGRAM_PERMISSIONS,
        `${REPO_ROOT}client.ts`,
        server.host,
        String(server.port),
        "get",
        "-r",
        "modes",
        to,
      ]);
      assertSuccess(result, "get -r under umask 077");
    };
    await get(`${work.path}/back`);
    const expected = await snapshot(`${server.root}/modes`);
    assert.deepEqual(await snapshot(`${work.path}/back`), expected);
    // Changed on the server, so each is sent again over the copy there.
    await writeModes(`${server.root}/modes`, true);
    await get(`${work.path}/back`);
    assert.deepEqual(await snapshot(`${work.path}/back`), await snapshot(`${server.root}/modes`));
  },
});

Deno.test({
  name: "put -r gives every file its whole mode on the server, whatever the server's umask took",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using work = await makeTempDir();
    const root = `${work.path}/root`;
    // The server itself runs under umask 077, so creation cuts most of these modes.
    const child = spawnServing("sh", [
      ...UNDER_UMASK_077,
      Deno.execPath(),
      "run",
      ...PROGRAM_PERMISSIONS,
      "server.ts",
      "0",
      "--root",
      root,
    ]);
    const output = collectLines(child.stderr);
    try {
      const banner = await output.firstMatch(SERVER_BANNER);
      assert.ok(banner, output.lines.join("\n"));
      const server = { host: "127.0.0.1", port: Number(banner[4]) };
      const src = `${work.path}/modes`;
      await writeModes(src);
      assertSuccess(await ferry(server, ["put", "-r", src]), "put -r to a server under umask 077");
      assert.deepEqual(await snapshot(`${root}/modes`), await snapshot(src));
      // Changed here, so each is sent again over the copy there.
      await writeModes(src, true);
      assertSuccess(await ferry(server, ["put", "-r", src]), "put -r again");
      assert.deepEqual(await snapshot(`${root}/modes`), await snapshot(src));
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await output.done;
    }
  },
});

// --------------------------------------------------------------------- interrupted trees

async function manyFiles(dir: string, count: number, size: number): Promise<void> {
  await Deno.mkdir(`${dir}/nested`, { recursive: true });
  for (let i = 0; i < count; i++) {
    const name = i % 2 ? `nested/f${String(i).padStart(3, "0")}` : `f${String(i).padStart(3, "0")}`;
    await Deno.writeFile(`${dir}/${name}`, randomBytes(size));
  }
}

Deno.test("an interrupted tree leaves only complete files, and running it again finishes it", async () => {
  await using work = await makeTempDir();
  await using server = await startServer();
  const src = `${work.path}/src`;
  await manyFiles(src, 24, 100_000);

  for (const op of ["put", "get"]) {
    const relay = cuttingRelay(server, 1_200_000, op === "put");
    const args = op === "put"
      ? ["put", "-r", src, "up"]
      : ["get", "-r", "up", `${work.path}/down`, "--json"];
    const cut = await ferry({ host: "127.0.0.1", port: relay.port }, args);
    await relay.close();
    assert.equal(cut.code, 1, `${op} -r through a cut connection fails:\n${cut.stderr}`);
    const where = op === "put" ? `${server.root}/up` : `${work.path}/down`;
    if (op === "put") await server.waitForLog(/ put_tree "up" .*(interrupted|failed)/);
    // Only whole files, each identical to its source; nothing half-written under any name.
    const arrived = (await snapshot(where)).filter((line) => !line.endsWith("/ 755"));
    const expected = new Set(await snapshot(src));
    assert.ok(arrived.length > 0 && arrived.length < 24, `${op}: ${arrived.length} arrived`);
    for (const line of arrived) assert.ok(expected.has(line), `${op}: whole and intact: ${line}`);
    assert.deepEqual(
      (await snapshot(where)).filter((line) => line.includes(".ferry-")),
      [],
      `${op}: no staging file under the tree`,
    );

    const again = await ferry(server, args);
    assertSuccess(again, `${op} -r again`);
    const summary = op === "get" ? summaryOf(again) : undefined;
    if (summary) assert.equal(summary.skipped, arrived.length, "what arrived is not sent again");
    else {
      assert.match(
        stderrLines(again).at(-1)!,
        new RegExp(`: ${24 - arrived.length} files, .*; ${arrived.length} up to date`),
      );
    }
    assert.deepEqual(await snapshot(where), await snapshot(src));
  }
});
